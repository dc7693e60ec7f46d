"""Model states a run keeps for later analysis (``bench diagnose``): its weights before training
and after every epoch, ``<states dir>/<config hash>/epoch_<k>.pt`` (default states dir
``results/states``).

Unlike the resume checkpoint (:mod:`bench.checkpoint`), which is deleted when a run finishes,
these files stay; a run keeps them only when asked (``bench run --keep-states``, or ``bench
diagnose`` for the runs it needs). They hold the model's ``state_dict`` only and are read with
``torch.load(weights_only=True)``; the folder's ``run_id`` file names the run that wrote them
(a rerun of the config without kept states leaves them to the older run, and ``bench diagnose``
does not take them for the newer one). Only rank 0 writes; a file is written atomically.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Optional

import torch

from bench import distributed
from bench.checkpoint import _unwrap, load_weights_only

DEFAULT_STATES_DIR = "results/states"
_NAME = re.compile(r"epoch_(\d+)\.pt")
_RUN_FILE = "run_id"


class ModelStates:
    """The kept states of one run config (disabled: a folder of None)."""

    def __init__(self, folder: Optional[Path]) -> None:
        self.folder = Path(folder) if folder is not None else None

    @classmethod
    def of(cls, states_dir: Optional[str], config_hash: str) -> "ModelStates":
        return cls(Path(states_dir) / config_hash if states_dir else None)

    @property
    def enabled(self) -> bool:
        return self.folder is not None

    def path(self, epoch: int) -> Path:
        assert self.folder is not None
        return self.folder / f"epoch_{epoch:03d}.pt"

    def save(self, epoch: int, model: torch.nn.Module) -> None:
        if self.folder is None or not distributed.is_main():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.folder / f"epoch_{epoch:03d}.pt.tmp{os.getpid()}"
        torch.save({k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}, partial)
        partial.replace(self.path(epoch))

    def claim(self, run_id: int) -> None:
        """Start the folder afresh for run ``run_id``: states belong to one execution of a config."""
        if self.folder is None or not distributed.is_main():
            return
        self.discard()
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / _RUN_FILE).write_text(f"{run_id}\n")

    def run_id(self) -> Optional[int]:
        """The run whose states these are (None: none kept, or written by another program)."""
        try:
            return int((self.folder / _RUN_FILE).read_text()) if self.folder is not None else None
        except (OSError, ValueError):
            return None

    def epochs(self) -> list[int]:
        """The epochs kept, ascending (0: before training)."""
        if self.folder is None or not self.folder.is_dir():
            return []
        return sorted(int(m.group(1)) for f in self.folder.iterdir() if (m := _NAME.fullmatch(f.name)))

    def load(self, epoch: int) -> dict[str, torch.Tensor]:
        return load_weights_only(self.path(epoch))

    def discard(self) -> None:
        if self.folder is not None and distributed.is_main():
            shutil.rmtree(self.folder, ignore_errors=True)
