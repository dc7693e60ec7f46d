"""The fused surrogate backwards (estimators/fused.py): the same gradient as the op-by-op
formula over each estimator's whole schedule, one compiled kernel per estimator, and the
switch and failure paths."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch._dynamo.utils import counters

import estimators
from estimators import fused
from estimators.base import ElementwiseEstimator

#: a second hyperparameter setting per estimator (the first is the default)
OTHER_HPARAMS = {"clipped_ste": {"c": 1.3}, "dsq": {"alpha": 0.5}, "ede": {"t_max": 3.0},
                 "fda": {"w": 0.7, "n_end": 30}, "reste": {"o_end": 2.0, "t": 2.0}, "swish_sign": {"beta": 2.0}}
PROGRESSES = [i / 11 for i in range(12)]  # more values than torch.compile's recompile limit (8)


def fused_estimators() -> list[str]:
    return [name for name in estimators.available()
            if issubclass(cls := estimators.ESTIMATORS.get(name), ElementwiseEstimator) and cls.derivative is not None]


def tensors(shape, seed: int, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=dtype) * 1.3
    return x, torch.randn(shape, generator=gen, dtype=dtype)


def tolerance(est, grad: torch.Tensor) -> dict:
    """float32 rounding of g * F'(x), F' at most its peak: absolute error relative to that
    scale (where F' cancels to almost nothing, e.g. k t (1 - tanh^2), relative error is large)."""
    peak = est.activation_grad(torch.linspace(-3, 3, 6001, dtype=torch.float64)).abs().max().item()
    return dict(rtol=2e-6, atol=4e-6 * peak * grad.abs().max().item())


def backward(est, x: torch.Tensor, grad: torch.Tensor, weight: bool = False) -> torch.Tensor:
    leaf = torch.nn.Parameter(x.clone()) if weight else x.clone().requires_grad_()
    out = est.binarize_weight(leaf) if weight else est.binarize_activation(leaf)
    out.backward(grad)
    return leaf.grad


def test_every_elementwise_estimator_with_a_derivative_is_covered():
    assert set(fused_estimators()) == set(OTHER_HPARAMS) | {"approx_sign"}


@pytest.mark.parametrize("name", fused_estimators())
def test_fused_backward_is_the_op_by_op_formula_over_the_whole_schedule(name, monkeypatch):
    """Activations (contiguous 4-D, 2-D, 1-D, a transposed view) and weights (a Parameter), at
    12 points of the schedule and two hyperparameter settings: the fused gradient is the
    op-by-op one to float32 rounding, and the estimator compiled at most one kernel."""
    cases = [((16, 8, 6, 6), False), ((33, 17), False), ((7,), False), ((12, 8, 3, 3), True)]
    graphs = counters["stats"]["unique_graphs"]
    for hparams in ({}, OTHER_HPARAMS.get(name, {})):
        est = estimators.build(name, **hparams)
        for i, p in enumerate(PROGRESSES):
            est.set_progress(p)
            for j, (shape, weight) in enumerate(cases):
                x, grad = tensors(shape, seed=100 * i + j)
                monkeypatch.setenv(fused.ENV_VAR, "1")
                got = backward(est, x, grad, weight)
                monkeypatch.setenv(fused.ENV_VAR, "0")
                want = backward(est, x, grad, weight)
                torch.testing.assert_close(got, want, **tolerance(est, grad),
                                           msg=lambda m: f"{name} {hparams} p={p} {shape}: {m}")
            x, grad = tensors((9, 6), seed=i)
            transposed = backward(est, x.t(), grad.t())  # not contiguous: the unflattened kernel
            monkeypatch.setenv(fused.ENV_VAR, "1")
            torch.testing.assert_close(backward(est, x.t(), grad.t()), transposed, **tolerance(est, grad))
    # one graph for flat float32 tensors, one for the 2-D transposed case; a constant that
    # became part of the kernel would have recompiled at each progress value instead
    assert counters["stats"]["unique_graphs"] - graphs <= 2


def test_op_by_op_mode_is_the_derivative_times_the_gradient_bit_for_bit(monkeypatch):
    monkeypatch.setenv(fused.ENV_VAR, "0")
    est = estimators.build("fda")
    est.set_progress(0.4)
    x, grad = tensors((5, 40), seed=1)
    assert torch.equal(backward(est, x, grad), est.activation_grad(x) * grad)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fused_backward_in_half_precision(dtype, monkeypatch):
    """Half-precision activations (AMP) stay finite, keep their dtype, and agree with the
    float64 formula to the precision of the dtype."""
    monkeypatch.setenv(fused.ENV_VAR, "1")
    est = estimators.build("swish_sign")
    x = torch.tensor([-2e4, -30.0, -3.0, -0.5, 0.0, 0.5, 3.0, 30.0, 6e4], dtype=dtype)
    grad = torch.ones_like(x)
    got = backward(est, x, grad)
    assert got.dtype == dtype and torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), est.activation_grad(x.double()), atol=2e-2, rtol=2e-2)


def test_the_switch_rejects_other_values(monkeypatch):
    monkeypatch.setenv(fused.ENV_VAR, "yes")
    with pytest.raises(ValueError, match=r"BENCH_FUSED_BACKWARD='yes': expected 1 .* or 0"):
        estimators.build("fda").activation_grad_fn()


def _local_derivative(x, c):
    return x.abs().le_(c)


def test_past_the_recompile_limit_the_kernel_runs_op_by_op_with_a_warning(monkeypatch):
    monkeypatch.setenv(fused.ENV_VAR, "1")
    kernel = fused.surrogate_backward(_local_derivative, (0.5,))
    results = []
    with torch._dynamo.config.patch(recompile_limit=1), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # dense tensors run one flat graph; strided ones of other ranks need new graphs (each dtype
        # has a kernel, and a recompile budget, of its own)
        for shape, dims in (((4, 5), (0, 1)), ((5, 4), (1, 0)), ((3, 4, 5), (2, 0, 1))):
            x, grad = (t.permute(*dims) for t in tensors(shape, seed=2))
            results.append((kernel(x, grad), x.abs().le(0.5) * grad))
    assert any("recompile limit" in str(w.message) and "op by op" in str(w.message) for w in caught)
    for got, want in results:
        assert torch.equal(got, want)


def _uncompilable_derivative(x, c):
    return x.abs().le_(c).mul_(3)


def test_a_machine_that_cannot_compile_gets_a_one_line_fix(monkeypatch, tmp_path):
    import torch._inductor.config as inductor_config

    monkeypatch.setenv(fused.ENV_VAR, "1")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))  # nothing cached to load instead
    kernel = fused.surrogate_backward(_uncompilable_derivative, (0.5,))
    x, grad = tensors((64,), seed=3)
    no_compiler = {"fx_graph_cache": False, "cpp.cxx": (None, str(tmp_path / "no-such-compiler"))}
    with inductor_config.patch(no_compiler), \
            pytest.raises(RuntimeError, match=r"could not compile the fused backward .* BENCH_FUSED_BACKWARD=0"):
        kernel(x, grad)
