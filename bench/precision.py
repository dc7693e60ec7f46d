"""Precision and memory format of a run's training on its device: cuDNN's flags, the autocast
dtype of ``RunConfig.precision`` (with fp16's gradient scaler) and ``channels_last`` batches, and
whether a device can train under a precision at all (checked before any row exists)."""
from __future__ import annotations

import contextlib
import functools
from typing import Optional

import torch


#: the harness's cuDNN flags on CUDA (see configure_cudnn)
CUDNN_BENCHMARK, CUDNN_DETERMINISTIC = True, False


def configure_cudnn() -> None:
    """cuDNN's flags for every CUDA run: ``benchmark`` on, ``deterministic`` off (speed over
    run-to-run bit equality).

    Why: a CUDA run is not bit-reproducible whatever these flags say (cuDNN's weight-gradient
    kernels and index_add/scatter backwards accumulate with atomics unless
    ``torch.use_deterministic_algorithms`` is forced, which refuses ops without a deterministic
    kernel, mmcv's among them), and the suite does not promise it: bit-for-bit results and resumes
    are promised on a CPU only. What pairs the estimators of a seed (initial weights, data order,
    augmentation) is drawn from the seeded generators and does not depend on cuDNN. A
    classification run's convolution shapes are fixed (GLUE runs none; detection's offline set is
    square, and a set resized with its aspect ratio pads to a multiple of 32, a few shapes), so
    ``benchmark`` autotunes each convolution once and then runs the fastest kernel: the step times
    (the efficiency table, the SURGE/clipped_ste ratios) are those of tuned kernels for every
    estimator alike, and the autotuning falls in the first steps, which :class:`StepTimer` skips.
    ``deterministic=True`` would restrict cuDNN to slower deterministic algorithms, unevenly across
    the layer shapes and the extra backward products SURGE runs, and so bias the cost comparison.
    TF32 is left at PyTorch's defaults (cuDNN convolutions may use TF32 on Ampere and newer;
    matmuls do not). mmengine's Runner (detection) leaves ``benchmark`` as set here unless its
    config asks for it.
    """
    torch.backends.cudnn.benchmark = CUDNN_BENCHMARK
    torch.backends.cudnn.deterministic = CUDNN_DETERMINISTIC


#: ``RunConfig.precision`` -> the autocast dtype of the training forward (None: none, fp32)
AUTOCAST_DTYPES: dict[str, Optional[torch.dtype]] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> None:
    """ValueError (one line naming the fix) when ``device`` cannot train under ``precision``:
    autocast of that dtype on the device type must run a convolution forward and backward (fp16 on
    CPU needs a torch whose CPU autocast has float16, 2.x has), bf16 on CUDA a GPU of compute
    capability 8.0 or newer (Ampere: emulated bf16 elsewhere is slow)."""
    dtype = AUTOCAST_DTYPES.get(precision, None)
    if dtype is None:
        return
    device = torch.device(device)
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if dtype is torch.bfloat16 and torch.version.hip is None and major < 8:
            raise ValueError(f"precision bf16 needs a GPU of compute capability 8.0 or newer (this one is "
                             f"{major}.{minor}); use --set precision=fp16 or precision=fp32")
        return
    reason = _autocast_fault(device.type, dtype)
    if reason:
        other = "bf16" if precision == "fp16" else "fp16"
        raise ValueError(f"precision {precision} does not run on {device.type} with torch {torch.__version__} "
                         f"({reason}); use --set precision=fp32 (or {other}), or a CUDA device")


@functools.cache
def _autocast_fault(device_type: str, dtype: torch.dtype) -> Optional[str]:
    """Why a tiny convolution + linear step under autocast fails on a device type (None: it runs)."""
    try:
        if not torch.amp.is_autocast_available(device_type):
            return f"no autocast on {device_type}"
        conv, linear = torch.nn.Conv2d(2, 2, 3).to(device_type), torch.nn.Linear(2, 2).to(device_type)
        with torch.autocast(device_type, dtype=dtype):
            out = linear(conv(torch.ones(1, 2, 3, 3, device=device_type)).flatten(1))
        if out.dtype != dtype:
            return f"autocast gave {out.dtype}"
        out.float().sum().backward()
    except Exception as exc:  # noqa: BLE001 - any failure means "not supported here"
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ''}"
    return None


class MixedPrecision:
    """A run's ``precision``: the training forward (and loss) under ``torch.autocast`` with bf16
    or fp16, the backward outside it; fp16 with a gradient scaler (``torch.amp.GradScaler``),
    whose state the checkpoint carries. Evaluation is not under autocast: it stays fp32.

    ``skipped()`` after each step tells whether the scaler skipped it (an inf/NaN gradient: the
    scale was lowered); such a step is not a divergence, a non-finite loss still is."""

    def __init__(self, precision: str, device: torch.device) -> None:
        if precision not in AUTOCAST_DTYPES:
            raise ValueError(f"unknown precision {precision!r}; valid choices: {', '.join(AUTOCAST_DTYPES)}")
        self.precision, self.device_type = precision, torch.device(device).type
        self.dtype = AUTOCAST_DTYPES[precision]
        self.scaler = torch.amp.GradScaler(self.device_type) if precision == "fp16" else None
        self._scale: Optional[float] = None
        self.skipped_steps = 0

    def autocast(self):
        """The context of the training forward: autocast, or nothing for fp32."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def start(self) -> None:
        """Before the first step (after a checkpoint restored the scaler): the scale to compare with."""
        self._scale = self.scaler.get_scale() if self.scaler is not None else None

    def skipped(self) -> bool:
        """After a step: whether the scaler skipped it (its scale went down). One host sync (fp16 only)."""
        if self.scaler is None:
            return False
        scale = self.scaler.get_scale()
        skipped = self._scale is not None and scale < self._scale
        self._scale = scale
        self.skipped_steps += skipped
        return skipped


def channels_last(batch):
    """A batch (tensors in lists, tuples and dicts) with its 4-D floating tensors (images) in
    ``torch.channels_last`` memory format; everything else as it is."""
    if isinstance(batch, torch.Tensor):
        return batch.to(memory_format=torch.channels_last) if batch.dim() == 4 and batch.is_floating_point() \
            else batch
    if isinstance(batch, dict):
        return {k: channels_last(v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(channels_last(v) for v in batch)
    return batch
