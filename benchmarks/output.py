"""Where a benchmark script's markdown table goes: stdout, and the --out file if given."""
from __future__ import annotations

from pathlib import Path
from typing import Optional


def publish(table: str, out: Optional[str]) -> None:
    print(table)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(table + "\n")
