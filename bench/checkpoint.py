"""Per-run checkpoints, so a killed run resumes where it stopped with the same final result.

One file per run config: ``<checkpoint dir>/<config hash>/last.pt`` (default checkpoint dir
``results/checkpoints``), written atomically at the end of every epoch. It holds the model,
optimizer and LR-schedule state (and an fp16 run's gradient-scaler state: its scale and growth
tracker), the epoch and global step, and every random state the next
epoch draws from (Python, NumPy, torch CPU/CUDA, and the data loader's shuffling generator),
so an interrupted run that resumes reaches the same final metrics as an uninterrupted one
(bit for bit on a CPU with the same thread count). The file is deleted when the run finishes.
In a multi-process run only rank 0 writes it; every rank restores from it.

A checkpoint is data, never code: it holds tensors and plain Python values only (the random
states too, as tensors) and is read with ``torch.load(weights_only=True)``, so a planted
file cannot execute anything. A file that cannot be read that way (truncated, corrupt,
foreign) is a :class:`CorruptCheckpoint`; :meth:`Checkpointer.quarantine` moves it aside.
"""
from __future__ import annotations

import datetime as dt
import os
import random
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from bench import distributed

DEFAULT_CHECKPOINT_DIR = "results/checkpoints"
_KEYS = ("epoch", "step", "model", "optimizer", "scheduler", "rng", "extra")
_RNG_TENSORS = ("python", "numpy", "torch")


class CorruptCheckpoint(RuntimeError):
    """A checkpoint file that cannot be loaded as tensors and plain values; names the file."""


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside DistributedDataParallel (checkpoints do not depend on the process count)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def _rng_state(generator: Optional[torch.Generator]) -> dict[str, Any]:
    """Every random state as tensors (Python's and NumPy's Mersenne Twister words included)."""
    version, words, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "python": torch.tensor(words, dtype=torch.int64), "python_version": version, "python_gauss": gauss,
        "numpy": torch.from_numpy(keys.astype(np.int64)), "numpy_kind": kind, "numpy_position": int(position),
        "numpy_has_gauss": int(has_gauss), "numpy_cached": float(cached),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "loader": generator.get_state() if generator is not None else None,
    }


def _set_rng_state(rng: dict[str, Any], generator: Optional[torch.Generator]) -> None:
    random.setstate((rng["python_version"], tuple(int(w) for w in rng["python"].tolist()), rng["python_gauss"]))
    np.random.set_state((rng["numpy_kind"], rng["numpy"].numpy().astype(np.uint32), rng["numpy_position"],
                         rng["numpy_has_gauss"], rng["numpy_cached"]))
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    if generator is not None and rng["loader"] is not None:
        generator.set_state(rng["loader"])


def load_weights_only(path: Path) -> Any:
    """``torch.load(path, weights_only=True)``; CorruptCheckpoint naming the file on any failure."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - zip, pickle, EOF and allowlist errors all mean "unreadable"
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        # torch's weights-only refusal is a paragraph; its telling line names the refused global
        reason = next((line for line in lines if "Unsupported global" in line), lines[0])
        reason = reason.removeprefix("WeightsUnpickler error: ").split(" was not an allowed global")[0]
        raise CorruptCheckpoint(f"checkpoint {path} cannot be loaded as weights only ({reason[:160]})") from None


class Checkpointer:
    def __init__(self, folder: Optional[Path]) -> None:
        self.folder = Path(folder) if folder is not None else None
        self._loaded: Optional[dict[str, Any]] = None

    @property
    def enabled(self) -> bool:
        return self.folder is not None

    @property
    def path(self) -> Optional[Path]:
        return self.folder / "last.pt" if self.folder is not None else None

    def exists(self) -> bool:
        """A state to resume from."""
        return self.path is not None and self.path.is_file()

    def save(self, *, epoch: int, step: int, model: torch.nn.Module, optimizer, scheduler,
             generator: Optional[torch.Generator] = None, extra: Optional[dict] = None,
             scaler: Optional[torch.amp.GradScaler] = None) -> None:
        if self.folder is None or not distributed.is_main():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        state = {
            "epoch": epoch, "step": step, "model": _unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": _rng_state(generator), "extra": extra or {},
            "scaler": scaler.state_dict() if scaler is not None else None,
        }
        partial = self.folder / f"last.pt.tmp{os.getpid()}"
        torch.save(state, partial)
        partial.replace(self.path)

    def verify(self) -> None:
        """Load the checkpoint now (CorruptCheckpoint if it cannot be); ``restore`` reuses it."""
        if not self.exists():
            return
        state = load_weights_only(self.path)
        missing = [key for key in _KEYS if not isinstance(state, dict) or key not in state]
        rng = state.get("rng") if isinstance(state, dict) else None
        missing += [f"rng.{key}" for key in _RNG_TENSORS
                    if not isinstance(rng, dict) or not isinstance(rng.get(key), torch.Tensor)]
        if missing:
            raise CorruptCheckpoint(f"checkpoint {self.path} lacks {', '.join(missing)} (written by another "
                                    "program or an older surge-bench)")
        self._loaded = state

    def restore(self, *, model: torch.nn.Module, optimizer, scheduler,
                generator: Optional[torch.Generator] = None,
                scaler: Optional[torch.amp.GradScaler] = None) -> Optional[dict[str, Any]]:
        """Load the checkpoint into the given objects; returns {"epoch", "step", "extra"} or None.
        A run with a gradient ``scaler`` (fp16) needs the scaler state saved with it."""
        if self.path is None or not self.path.is_file():
            return None
        if self._loaded is None:
            self.verify()
        state, self._loaded = self._loaded, None
        try:
            _unwrap(model).load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None and state["scheduler"] is not None:
                scheduler.load_state_dict(state["scheduler"])
            _set_rng_state(state["rng"], generator)
            if scaler is not None:
                if state.get("scaler") is None:
                    raise ValueError("it holds no gradient-scaler state, which an fp16 run needs")
                scaler.load_state_dict(state["scaler"])
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:  # tensors that do not fit this run
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CorruptCheckpoint(f"checkpoint {self.path} does not fit this run ({reason[:160]})") from None
        return {"epoch": state["epoch"], "step": state["step"], "extra": state["extra"]}

    def quarantine(self) -> Optional[Path]:
        """Move the folder aside (``<hash>.corrupt-<UTC time>``) so the run starts from scratch
        and the bad file stays for inspection; returns where it went."""
        if self.folder is None or not self.folder.exists() or not distributed.is_main():
            return None
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        target = self.folder.with_name(f"{self.folder.name}.corrupt-{stamp}")
        self.folder.rename(target)
        self._loaded = None
        return target

    def discard(self) -> None:
        self._loaded = None
        if self.folder is not None and distributed.is_main():
            shutil.rmtree(self.folder, ignore_errors=True)
