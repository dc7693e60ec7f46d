"""A surrogate's backward, grad * F'(x), as one fused kernel per tensor.

Written op by op, a closed-form derivative is a chain of elementwise passes over every
activation and weight (FDA's is eleven). ``torch.compile`` turns the chain and the
multiplication by the upstream gradient into one loop that reads x and grad once and writes
the result once: one C++/OpenMP kernel on CPU, one Triton kernel on CUDA.

* The derivative is written once, as a pure function ``derivative(x, *constants)``; the
  estimator's eager ``activation_grad`` calls the same function, so the tests of the closed
  forms check what the kernel computes.
* The constants (FDA's term count, ReSTE's o, ...) reach the derivative as 0-dim float64
  tensors (float32 on MPS) on x's device, never as Python numbers: torch.compile would bake a number into the
  kernel and recompile whenever a schedule moves it. Write derivatives with tensor operations
  on them (``x * t``, ``x.abs().le_(c)``, ``torch.where(m, c, y)``); the results keep x's dtype.
* Shapes are dynamic and dense tensors (contiguous, or channels_last like their gradient) are
  passed flat, so one compiled kernel serves every layer of a model in either memory format.
* Half-precision tensors (bf16 / fp16, under autocast) are computed in float32 and rounded to their
  dtype once, op by op as in the kernel (inductor computes half-precision elementwise code in
  float32 anyway): no constant or intermediate is rounded to half precision, the fused and the
  op-by-op results agree to the dtype's rounding, and the gradient keeps x's dtype.
* The compiled code lands in inductor's on-disk cache ($TORCHINDUCTOR_CACHE_DIR, default
  /tmp/torchinductor_$USER): a process pays the compile once per machine, later ones load it.
* The fused kernel agrees with the op-by-op chain to a few ulps (transcendental functions and
  fused multiply-adds round differently), not bit for bit. ``BENCH_FUSED_BACKWARD=0`` runs the
  chain op by op (slower); a run records which one it used.
"""
from __future__ import annotations

import functools
import logging
import os
import threading
import warnings
from typing import Callable, Optional

import torch
from torch import Tensor

ENV_VAR = "BENCH_FUSED_BACKWARD"

Derivative = Callable[..., Tensor]
SurrogateBackward = Callable[[Tensor, Tensor], Tensor]


class _KernelCalls(threading.local):
    depth = 0
    held: Optional[int] = None


_calls = _KernelCalls()


def hold_signal(signum: int) -> bool:
    """For a signal handler that raises KeyboardInterrupt: True when this thread is inside a
    compiled kernel call, which then raises KeyboardInterrupt(signum) as it returns. Raised
    inside torch.compile's guards or wrappers, the interrupt could be lost there."""
    if _calls.depth:
        _calls.held = signum
        return True
    return False


def fused_enabled() -> bool:
    """Whether surrogate backwards run as compiled kernels ($BENCH_FUSED_BACKWARD, default 1)."""
    value = os.environ.get(ENV_VAR, "1").strip().lower()
    if value not in ("0", "1"):
        raise ValueError(f"{ENV_VAR}={value!r}: expected 1 (fused kernels, the default) or 0 (op by op)")
    return value == "1"


def constant_tensors(values: tuple, device: torch.device) -> tuple[Tensor, ...]:
    """The derivative's constants as 0-dim float64 tensors on ``device``."""
    return _constants_on(tuple(float(v) for v in values), torch.device(device))


@functools.lru_cache(maxsize=256)
def _constants_on(values: tuple[float, ...], device: torch.device) -> tuple[Tensor, ...]:
    # One small tensor per distinct set of constants and device; on CUDA an asynchronous copy
    # from pinned memory, so a schedule that moves every step adds no host synchronisation.
    host = torch.tensor(values, dtype=torch.float32 if device.type == "mps" else torch.float64)  # MPS: no float64
    if device.type == "cuda":
        host = host.pin_memory().to(device, non_blocking=True)
    elif device.type != "cpu":
        host = host.to(device)
    return host.unbind()


def surrogate_backward(derivative: Derivative, constants: tuple) -> SurrogateBackward:
    """``(x, grad) -> grad * derivative(x, *constants)``, with the constants frozen now.

    Frozen at the forward, so a backward uses the progress of its own forward even if the
    schedule moves in between (gradient accumulation).
    """
    if not fused_enabled():
        return functools.partial(_op_by_op, derivative, constants)
    return functools.partial(_fused, derivative, constants)


#: dtypes whose derivative is computed in float32 and rounded back once
HALF_DTYPES = (torch.float16, torch.bfloat16)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a derivative is evaluated in for inputs of ``dtype``: float32 for half precision."""
    return torch.float32 if dtype in HALF_DTYPES else dtype


def times_grad(derivative: Derivative, x: Tensor, grad: Tensor, *constants: Tensor) -> Tensor:
    """``grad * derivative(x, *constants)`` as a fresh tensor of x's dtype (half precision
    computed in float32)."""
    if x.dtype in HALF_DTYPES:
        return derivative(x.float(), *constants).mul_(grad).to(x.dtype)
    return derivative(x, *constants).mul_(grad)


def _op_by_op(derivative: Derivative, constants: tuple, x: Tensor, grad: Tensor) -> Tensor:
    return times_grad(derivative, x, grad, *constant_tensors(constants, x.device))  # a fresh tensor


def _dense_format(t: Tensor) -> Optional[torch.memory_format]:
    """The memory format in which ``t`` is dense (its elements one block of its storage, in that
    format's order): contiguous or channels_last; None for other strides."""
    if t.is_contiguous():
        return torch.contiguous_format
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return None


def _fused(derivative: Derivative, constants: tuple, x: Tensor, grad: Tensor) -> Tensor:
    kernel = _compiled(derivative, x.dtype, grad.dtype, x.device.type)
    values = constant_tensors(constants, x.device)
    dense = _dense_format(x)
    if dense is torch.contiguous_format and grad.is_contiguous():
        return kernel(_flat(x), _flat(grad), *values).view(x.shape)
    if dense is torch.channels_last and grad.shape == x.shape:
        # the same flat kernel over the storage order; a gradient in the other format is copied to x's
        grad = grad.contiguous(memory_format=torch.channels_last)
        return kernel(_flat(x), _flat(grad), *values).as_strided(x.shape, x.stride())
    return kernel(x.detach(), grad.detach(), *values)


def _flat(t: Tensor) -> Tensor:
    """A 1-D tensor on a contiguous tensor's memory that is not a view: torch.compile guards a
    view on the shape of its base (one graph per layer shape) and on requires_grad (weights)."""
    return t.new_empty(0).set_(t.untyped_storage(), t.storage_offset(), (t.numel(),), (1,))


def _import_compiler_quietly() -> None:
    """Import the C++ build helpers with their CUDA_HOME note silenced: on a machine without a
    CUDA runtime it warns "No CUDA runtime is found" once, on every run's stderr."""
    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        import torch.utils.cpp_extension  # noqa: F401
    finally:
        log.setLevel(level)


@functools.cache
def _compiled(derivative: Derivative, x_dtype: torch.dtype, grad_dtype: torch.dtype, device_type: str) -> Callable:
    _import_compiler_quietly()

    def fused_times_grad(x: Tensor, grad: Tensor, *constants: Tensor) -> Tensor:
        return times_grad(derivative, x, grad, *constants)

    # torch.compile keeps its compiled graphs (and its recompile limit) per code object: each
    # derivative, input dtypes and device get a code object of their own, named after them in
    # compile logs and profiles, so one process's fp32, bf16 and fp16 layers (and a float64 test)
    # never share, and never exhaust, one recompile budget.
    dtypes = f"{str(x_dtype).removeprefix('torch.')}_{str(grad_dtype).removeprefix('torch.')}_{device_type}"
    name = f"{derivative.__qualname__.replace('.', '_')}_times_grad_{dtypes}"
    fused_times_grad.__code__ = fused_times_grad.__code__.replace(co_name=name)
    fused_times_grad.__name__ = fused_times_grad.__qualname__ = name
    compiled = torch.compile(fused_times_grad, dynamic=True, fullgraph=True)
    op_by_op = False

    def kernel(x: Tensor, grad: Tensor, *constants: Tensor) -> Tensor:
        _calls.depth += 1
        try:
            return call(x, grad, *constants)
        finally:
            _calls.depth -= 1
            if not _calls.depth and _calls.held is not None:
                signum, _calls.held = _calls.held, None
                raise KeyboardInterrupt(signum)

    def call(x: Tensor, grad: Tensor, *constants: Tensor) -> Tensor:
        nonlocal op_by_op
        if op_by_op:
            return fused_times_grad(x, grad, *constants)
        try:
            return compiled(x, grad, *constants)
        except torch._dynamo.exc.FailOnRecompileLimitHit:
            warnings.warn(f"{name}: torch.compile reached its recompile limit "
                          f"(torch._dynamo.config.recompile_limit); running it op by op from now on")
            op_by_op = True
            return fused_times_grad(x, grad, *constants)
        except torch._dynamo.exc.BackendCompilerFailed as error:
            inner = str(error.inner_exception).strip().splitlines()
            raise RuntimeError(
                f"could not compile the fused backward {name} ({type(error.inner_exception).__name__}: "
                f"{inner[0][:200] if inner else ''}): torch.compile needs a C++ compiler on CPU and Triton on "
                f"CUDA; install them, or set {ENV_VAR}=0 to run the surrogate op by op") from error

    return kernel
