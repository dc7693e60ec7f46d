"""Where a result came from: code version, library versions, device, host."""
from __future__ import annotations

import os
import platform
import socket
import subprocess
from pathlib import Path

import torch

from estimators.fused import fused_enabled

REPO_ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def collect(device: str) -> dict:
    status = _git("status", "--porcelain", "--untracked-files=no")
    info = {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "torch": torch.__version__,
        "fused_backward": fused_enabled(),
        "python": platform.python_version(),
        "device": device,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
