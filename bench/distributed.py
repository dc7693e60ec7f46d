"""Multi-GPU runs: ``bench run ... --gpus N`` relaunches itself under torchrun.

Each of the N processes trains with DistributedDataParallel (NCCL on GPUs; gloo on a
machine without CUDA, which is how the launch path is tested on CPUs). The global batch is
the config's batch size, split evenly over the processes; only rank 0 touches the results
database and the checkpoints. Detection hands the same environment to mmengine's Runner
(launcher ``pytorch``), the OpenMMLab way.
"""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Optional

import torch
import torch.distributed as dist


def launched() -> bool:
    """True inside a process started by torchrun."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def init() -> Optional[torch.device]:
    """Join the process group torchrun set up; returns this process's device (None when not launched)."""
    if not launched():
        return None
    local_rank = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (the identity outside a process group)."""
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait for every rank (a no-op outside a process group)."""
    if world_size() > 1:
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def relaunch(n_processes: int, argv: list[str]) -> int:
    """Run ``bench`` with ``argv`` in ``n_processes`` processes under torchrun; its exit status."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n_processes}",
               "-m", "bench", *argv]
    return subprocess.run(command).returncode


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around ``model`` when in a process group, else ``model``."""
    if world_size() == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def sampler(dataset, shuffle: bool, seed: int):
    """A DistributedSampler over ``dataset`` in a process group, else None (the loader shuffles)."""
    if world_size() == 1:
        return None
    return torch.utils.data.distributed.DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=False)
