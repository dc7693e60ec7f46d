"""Per-run checkpoints, so a killed run resumes where it stopped with the same final result.

One file per run config: ``<checkpoint dir>/<config hash>/last.pt`` (default checkpoint dir
``results/checkpoints``), written atomically at the end of every epoch. It holds the model,
optimizer and LR-schedule state, the epoch and global step, and every random state the next
epoch draws from (Python, NumPy, torch CPU/CUDA, and the data loader's shuffling generator),
so an interrupted run that resumes reaches the same final metrics as an uninterrupted one
(bit for bit on a CPU with the same thread count). The file is deleted when the run finishes.
In a multi-process run only rank 0 writes it; every rank restores from it.
"""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from bench import distributed

DEFAULT_CHECKPOINT_DIR = "results/checkpoints"


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside DistributedDataParallel (checkpoints do not depend on the process count)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


class Checkpointer:
    def __init__(self, folder: Optional[Path]) -> None:
        self.folder = Path(folder) if folder is not None else None

    @property
    def enabled(self) -> bool:
        return self.folder is not None

    @property
    def path(self) -> Optional[Path]:
        return self.folder / "last.pt" if self.folder is not None else None

    def exists(self) -> bool:
        """A state to resume from: ours, or mmengine's (detection keeps its Runner's under ``mmengine/``)."""
        return self.folder is not None and (
            (self.folder / "last.pt").is_file() or (self.folder / "mmengine" / "last_checkpoint").is_file())

    def save(self, *, epoch: int, step: int, model: torch.nn.Module, optimizer, scheduler,
             generator: Optional[torch.Generator] = None, extra: Optional[dict] = None) -> None:
        if self.folder is None or not distributed.is_main():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        state = {
            "epoch": epoch, "step": step, "model": _unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                    "loader": generator.get_state() if generator is not None else None},
            "extra": extra or {},
        }
        partial = self.folder / f"last.pt.tmp{os.getpid()}"
        torch.save(state, partial)
        partial.replace(self.path)

    def restore(self, *, model: torch.nn.Module, optimizer, scheduler,
                generator: Optional[torch.Generator] = None) -> Optional[dict[str, Any]]:
        """Load the checkpoint into the given objects; returns {"epoch", "step", "extra"} or None."""
        if not self.exists():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        _unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state["scheduler"] is not None:
            scheduler.load_state_dict(state["scheduler"])
        rng = state["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        if generator is not None and rng["loader"] is not None:
            generator.set_state(rng["loader"])
        return {"epoch": state["epoch"], "step": state["step"], "extra": state["extra"]}

    def discard(self) -> None:
        if self.folder is not None and distributed.is_main():
            shutil.rmtree(self.folder, ignore_errors=True)
