"""larq-style tests of the elementwise gradient estimators.

Every estimator's backward is compared, on a dense float64 grid that includes the
exact edges of each piecewise region and the values just inside and outside them,
with an independent numpy reference of the closed-form derivative written here from
docs/ESTIMATORS.md and the estimators' docstrings (not from the estimator code).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import estimators
from estimators import BinaryConv2d, BinaryLinear, binary_layers, binary_sign, sign_with_surrogate_grad


# --------------------------------------------------------------------------------------
# Independent numpy references (float64) of d surrogate / dx.
# --------------------------------------------------------------------------------------


def ref_ste(x: np.ndarray, hp: dict, p: float) -> np.ndarray:
    return np.ones_like(x)


def ref_clipped_ste(x: np.ndarray, hp: dict, p: float) -> np.ndarray:
    c = hp.get("c", 1.0)
    return np.where(np.abs(x) <= c, 1.0, 0.0)


def ref_approx_sign(x: np.ndarray, hp: dict, p: float) -> np.ndarray:
    return np.where(np.abs(x) <= 1.0, 2.0 - 2.0 * np.abs(x), 0.0)


def ref_swish_sign(x: np.ndarray, hp: dict, p: float) -> np.ndarray:
    beta = hp.get("beta", 5.0)
    bx = beta * x
    return beta * (2.0 - bx * np.tanh(bx / 2.0)) / (1.0 + np.cosh(bx))


def ede_t_k(hp: dict, p: float) -> tuple[float, float]:
    t_min, t_max = hp.get("t_min", 0.1), hp.get("t_max", 10.0)
    t = t_min * (t_max / t_min) ** p  # == Tmin * 10^(p log10(Tmax/Tmin))
    return t, max(1.0 / t, 1.0)


def ref_ede(x: np.ndarray, hp: dict, p: float) -> np.ndarray:
    t, k = ede_t_k(hp, p)
    return k * t * (1.0 - np.tanh(t * x) ** 2)


def reste_o(hp: dict, p: float) -> float:
    o_end = hp.get("o_end", 3.0)
    return 1.0 + (o_end - 1.0) * (1.0 - np.cos(np.pi / 2.0 * p))


def ref_reste(x: np.ndarray, hp: dict, p: float) -> np.ndarray:
    t = hp.get("t", 1.5)
    o = reste_o(hp, p)
    a = np.abs(x)
    out = np.zeros_like(x)
    low = a <= 0.1
    mid = (a > 0.1) & (a <= t)
    out[low] = 0.1 ** ((1.0 - o) / o)
    out[mid] = (1.0 / o) * a[mid] ** ((1.0 - o) / o)
    return out


def fda_n(hp: dict, p: float) -> int:
    n_start, n_end = hp.get("n_start", 9), hp.get("n_end", 18)
    return n_start + math.floor((n_end - n_start) * p)


def ref_fda(x: np.ndarray, hp: dict, p: float) -> np.ndarray:
    w = hp.get("w", 0.1)
    n = fda_n(hp, p)
    total = np.zeros_like(x)
    for i in range(n + 1):  # the explicit Fourier sum, not the Dirichlet closed form
        total += np.cos((2 * i + 1) * w * x)
    return np.where(np.abs(x) <= 1.0, 4.0 * w / np.pi * total, 0.0)


def ref_dsq(x: np.ndarray, hp: dict, p: float) -> np.ndarray:
    alpha = hp.get("alpha", 0.2)
    delta = 2.0  # one interval [-1, 1] at 1 bit
    k = np.log(2.0 / alpha - 1.0) / delta
    s = 1.0 / np.tanh(0.5 * k * delta)
    return np.where(np.abs(x) <= 1.0, s * k * (1.0 - np.tanh(k * x) ** 2), 0.0)


REFERENCES = {
    "ste": ref_ste,
    "clipped_ste": ref_clipped_ste,
    "approx_sign": ref_approx_sign,
    "swish_sign": ref_swish_sign,
    "ede": ref_ede,
    "reste": ref_reste,
    "fda": ref_fda,
    "dsq": ref_dsq,
}
ELEMENTWISE = sorted(REFERENCES)
SCHEDULED = ("ede", "fda", "reste")
#: estimators whose weight gradient is the identity (the rest use the activation derivative)
WEIGHT_IDENTITY = {"ste", "clipped_ste", "approx_sign"}
PROGRESSES = (0.0, 0.5, 1.0)

# (name, hyperparameters): defaults and a non-default setting for each, so a
# hyperparameter the backward ignores is caught.
CONFIGS = [
    ("ste", {}),
    ("clipped_ste", {}),
    ("clipped_ste", {"c": 0.5}),
    ("clipped_ste", {"c": 2.0}),
    ("approx_sign", {}),
    ("swish_sign", {}),
    ("swish_sign", {"beta": 2.0}),
    ("ede", {}),
    ("ede", {"t_min": 0.5, "t_max": 4.0}),
    ("reste", {}),
    ("reste", {"t": 1.2, "o_end": 2.0}),
    ("fda", {}),
    ("fda", {"w": 0.3, "n_start": 2, "n_end": 5}),
    ("dsq", {}),
    ("dsq", {"alpha": 0.5}),
]
CASES = [
    pytest.param(name, hp, p, id=f"{name}-{hp or 'default'}-p{p}")
    for name, hp in CONFIGS
    for p in (PROGRESSES if name in SCHEDULED else (0.0,))
]

# Edges of every piecewise region used above (clips, thresholds, reste's t, 0).
EDGES = (0.0, 0.1, 0.5, 1.0, 1.2, 1.5, 2.0)


def edge_points() -> np.ndarray:
    pts = []
    for e in EDGES:
        for v in (e, -e):
            pts += [v, np.nextafter(v, np.inf), np.nextafter(v, -np.inf), v + 1e-9, v - 1e-9, v + 1e-6, v - 1e-6]
    return np.array(pts + [-0.0, 1e-300, -1e-300, 5e-324, -5e-324], dtype=np.float64)


def grid() -> torch.Tensor:
    dense = torch.linspace(-3.0, 3.0, 6001, dtype=torch.float64)
    return torch.cat([dense, torch.from_numpy(edge_points())])


def upstream(like: torch.Tensor, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(like.shape, generator=gen, dtype=like.dtype)


def build(name: str, hp: dict, p: float):
    est = estimators.build(name, **hp)
    est.set_progress(p)
    return est


def expected(name: str, hp: dict, p: float, x: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(REFERENCES[name](x.detach().numpy().astype(np.float64), hp, p))


TIGHT = dict(rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------
# The references themselves (sanity of the test's own formulas at known points).
# --------------------------------------------------------------------------------------


def test_reference_values_at_known_points():
    zero = np.array([0.0])
    assert ref_approx_sign(zero, {}, 0)[0] == 2.0
    assert ref_swish_sign(zero, {}, 0)[0] == pytest.approx(5.0)  # beta * 2 / 2
    assert ref_ede(zero, {}, 0.0)[0] == pytest.approx(1.0)  # early: k t = 1 (STE-like)
    assert ref_ede(zero, {}, 1.0)[0] == pytest.approx(10.0)  # late: t = 10, k = 1
    assert ref_reste(np.array([0.05, 1.0, 1.6]), {}, 0.0) == pytest.approx([1.0, 1.0, 0.0])  # o = 1
    assert reste_o({}, 1.0) == pytest.approx(3.0)
    assert fda_n({}, 0.0) == 9 and fda_n({}, 0.5) == 13 and fda_n({}, 1.0) == 18
    assert ref_fda(zero, {}, 0.0)[0] == pytest.approx(4 * 0.1 / np.pi * 10)
    # DSQ's s makes the surrogate reach +-1 at the clip: s tanh(k) = 1.
    k = np.log(2 / 0.2 - 1) / 2
    assert ref_dsq(zero, {}, 0)[0] == pytest.approx(k / np.tanh(k))
    assert ref_dsq(np.array([1.0 + 1e-12]), {}, 0)[0] == 0.0


def test_every_elementwise_estimator_is_covered():
    names = {n for n in estimators.available() if isinstance(estimators.build(n), estimators.ElementwiseEstimator)}
    assert names == set(ELEMENTWISE)
    assert {n for n in names if estimators.build(n).scheduled} == set(SCHEDULED)


# --------------------------------------------------------------------------------------
# Autograd against the closed form.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,hp,p", CASES)
def test_activation_gradient_matches_closed_form(name, hp, p):
    est = build(name, hp, p)
    x = grid().requires_grad_()
    g = upstream(x)
    y = est.binarize_activation(x)
    y.backward(g)
    torch.testing.assert_close(x.grad, g * expected(name, hp, p, x), **TIGHT)
    # activation_grad (used by the plots and by SURGE's base path) is the same function
    torch.testing.assert_close(est.activation_grad(x.detach()), expected(name, hp, p, x), **TIGHT)


@pytest.mark.parametrize("name,hp,p", CASES)
def test_weight_gradient_matches_closed_form(name, hp, p):
    est = build(name, hp, p)
    w = grid().requires_grad_()
    g = upstream(w, seed=1)
    est.binarize_weight(w).backward(g)
    if name in WEIGHT_IDENTITY:
        torch.testing.assert_close(w.grad, g, rtol=0, atol=0)
    else:
        torch.testing.assert_close(w.grad, g * expected(name, hp, p, w), **TIGHT)


def test_ste_and_clipped_ste_exact_values():
    x = torch.tensor([-1.0 - 1e-12, -1.0, 0.0, 1.0, 1.0 + 1e-12, 5.0], dtype=torch.float64, requires_grad=True)
    estimators.build("clipped_ste").binarize_activation(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0, 0.0]  # |x| <= c is inclusive
    x.grad = None
    estimators.build("ste").binarize_activation(x).sum().backward()
    assert x.grad.tolist() == [1.0] * 6


@pytest.mark.parametrize("name", SCHEDULED)
def test_progress_changes_the_backward(name):
    """The schedule is not a no-op: p = 0 and p = 1 give different gradients."""
    est = estimators.build(name)
    x = torch.linspace(-0.9, 0.9, 7, dtype=torch.float64)
    est.set_progress(0.0)
    early = est.activation_grad(x)
    est.set_progress(1.0)
    late = est.activation_grad(x)
    assert not torch.allclose(early, late)
    torch.testing.assert_close(late, expected(name, {}, 1.0, x), **TIGHT)


@pytest.mark.parametrize("name", SCHEDULED)
@pytest.mark.parametrize("p", (1.0, 0.0, 0.5, 0.25))
def test_model_set_progress_reaches_layer_estimator(name, p):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 3, bias=False)).double()
    est = estimators.build(name)
    estimators.binarize_model(model, est, scope="all", weight_scale="none")
    layer = model[0]
    assert isinstance(layer, BinaryLinear) and layer.estimator is est
    with torch.no_grad():  # put latent weights inside every region of the estimators
        layer.weight.copy_(torch.linspace(-1.4, 1.4, 24, dtype=torch.float64).reshape(3, 8))
    estimators.set_progress(model, p)
    assert layer.estimator.progress == p

    x = (torch.linspace(-1.3, 1.3, 40, dtype=torch.float64).reshape(5, 8)).requires_grad_()
    g = upstream(torch.empty(5, 3, dtype=torch.float64), seed=2)
    model(x).backward(g)
    w = layer.weight.detach()
    dx = (g @ binary_sign(w)) * expected(name, {}, p, x)
    dw = (g.t() @ binary_sign(x.detach())) * expected(name, {}, p, w)
    torch.testing.assert_close(x.grad, dx, **TIGHT)
    torch.testing.assert_close(layer.weight.grad, dw, **TIGHT)


# --------------------------------------------------------------------------------------
# The forward: exactly +-1, sign(0) = +1, input dtype kept.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("dtype", (torch.float16, torch.bfloat16, torch.float32, torch.float64))
def test_binarized_outputs_are_exactly_pm1(name, dtype):
    est = estimators.build(name)
    values = [-3.0, -1.0, -1e-3, -0.0, 0.0, 1e-3, 0.5, 1.0, 7.0]
    x = torch.tensor(values, dtype=dtype)
    assert math.copysign(1.0, x[3].item()) == -1.0  # really -0.0
    tiny = torch.tensor([torch.finfo(dtype).tiny, -torch.finfo(dtype).tiny], dtype=dtype)
    x = torch.cat([x, tiny])
    want = torch.tensor([-1, -1, -1, 1, 1, 1, 1, 1, 1, 1, -1], dtype=dtype)
    for fn in (est.binarize_activation, est.binarize_weight):
        y = fn(x.clone().requires_grad_())
        assert y.dtype == dtype
        assert torch.equal(y.detach(), want)
        assert set(y.detach().abs().tolist()) == {1.0}


def test_binary_sign_and_sign_with_surrogate_grad_forward():
    x = torch.tensor([-2.0, -0.0, 0.0, 3.0], dtype=torch.float64)
    want = torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    assert torch.equal(binary_sign(x), want) and binary_sign(x).dtype == torch.float64
    y = sign_with_surrogate_grad(x.clone().requires_grad_(), lambda t, g: 3 * g)
    assert torch.equal(y.detach(), want)
    xr = x.clone().requires_grad_()
    sign_with_surrogate_grad(xr, lambda t, g: t * 2 * g).backward(torch.ones_like(x))
    torch.testing.assert_close(xr.grad, 2 * x, rtol=0, atol=0)


# --------------------------------------------------------------------------------------
# surrogate(x): its derivative is activation_grad (the plots rely on it).
# --------------------------------------------------------------------------------------

_BREAKS = np.array(sorted({s * e for e in EDGES for s in (1, -1)}))


@pytest.mark.parametrize("name,hp,p", CASES)
def test_surrogate_derivative_is_activation_grad(name, hp, p):
    est = build(name, hp, p)
    x = np.linspace(-2.9, 2.9, 2321)
    x = x[np.min(np.abs(x[:, None] - _BREAKS[None, :]), axis=1) > 1e-3]  # away from breakpoints
    xt = torch.from_numpy(x)
    h = 1e-6
    with torch.no_grad():
        fd = (est.surrogate(xt + h) - est.surrogate(xt - h)) / (2 * h)
        grad = est.activation_grad(xt)
    assert fd.dtype == torch.float64
    torch.testing.assert_close(fd, grad, rtol=1e-6, atol=2e-7)


@pytest.mark.parametrize("name", ["approx_sign", "dsq", "fda", "clipped_ste"])
def test_surrogate_is_continuous_at_the_clip(name):
    est = estimators.build(name)
    edge = torch.tensor([1.0], dtype=torch.float64)
    inside = est.surrogate(edge - 1e-9)
    outside = est.surrogate(edge + 1e-9)
    torch.testing.assert_close(inside, outside, rtol=0, atol=1e-7)


# --------------------------------------------------------------------------------------
# Real layers: what a binarized conv/linear computes and the latent gradient it gets.
# --------------------------------------------------------------------------------------


def small_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.Conv2d(4, 5, 3, stride=2, padding=1, bias=True),
        nn.BatchNorm2d(5),
        nn.Conv2d(5, 6, 1, bias=False),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 7),
    ).double()


def scale_of(w: torch.Tensor, weight_scale: str):
    if weight_scale == "none":
        return 1.0
    return w.detach().abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)


def op(layer: nn.Module, x: torch.Tensor, w: torch.Tensor, b):
    if isinstance(layer, nn.Conv2d):
        return F.conv2d(x, w, b, layer.stride, layer.padding, layer.dilation, layer.groups)
    return F.linear(x, w, b)


@pytest.mark.parametrize("name", ["clipped_ste", "approx_sign"])
@pytest.mark.parametrize("weight_scale", ["none", "channel"])
def test_binarized_layers_compute_and_backprop_closed_form(name, weight_scale):
    model = small_net()
    record = estimators.binarize_model(model, estimators.build(name), scope="all", weight_scale=weight_scale)
    layers = binary_layers(model)
    assert [n for n, _ in layers] == record.binarized == ["0", "2", "4", "6"]
    assert record.full_precision == {}
    assert [type(m) for _, m in layers] == [BinaryConv2d, BinaryConv2d, BinaryConv2d, BinaryLinear]

    seen_functional: dict[str, tuple] = {}
    seen_io: dict[str, dict] = {}
    for lname, layer in layers:
        original = layer.functional

        def recording(x, w, b, _orig=original, _name=lname):
            seen_functional[_name] = (x.detach().clone(), w.detach().clone())
            return _orig(x, w, b)

        layer.functional = recording

        def hook(module, inputs, output, _name=lname):
            entry = seen_io[_name] = {"x": inputs[0].detach().clone(), "y": output.detach().clone()}
            output.register_hook(lambda grad: entry.__setitem__("g", grad.detach().clone()))

        layer.register_forward_hook(hook)

    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 1.5
    x.requires_grad_()
    out = model(x)
    out.backward(upstream(out, seed=4))
    ref_act = REFERENCES[name]

    for lname, layer in layers:
        w = layer.weight.detach()
        x_in, y_out, g_out = seen_io[lname]["x"], seen_io[lname]["y"], seen_io[lname]["g"]
        scale = scale_of(w, weight_scale)
        fx, fw = seen_functional[lname]
        # the op sees exactly +-1 inputs and +-1 weights (times the detached scale)
        assert set(fx.unique().tolist()) <= {-1.0, 1.0}
        assert torch.equal(fx, binary_sign(x_in))
        assert set((fw / scale).unique().tolist()) <= {-1.0, 1.0}
        torch.testing.assert_close(fw, binary_sign(w) * scale, rtol=0, atol=0)
        if weight_scale == "channel":
            assert fw.shape == w.shape and not torch.equal(fw.abs(), torch.ones_like(fw))
        # the output is functional(sign(x), sign(W) * scale)
        torch.testing.assert_close(y_out, op(layer, binary_sign(x_in), binary_sign(w) * scale, layer.bias), **TIGHT)

        # latent weight gradient: identity through sign, times the (detached) scale
        if isinstance(layer, nn.Conv2d):
            dw = torch.nn.grad.conv2d_weight(binary_sign(x_in), w.shape, g_out, layer.stride, layer.padding)
        else:
            dw = g_out.t() @ binary_sign(x_in)
        torch.testing.assert_close(layer.weight.grad, dw * scale, **TIGHT)
        if layer.bias is not None:
            reduce = (0, 2, 3) if isinstance(layer, nn.Conv2d) else (0,)
            torch.testing.assert_close(layer.bias.grad, g_out.sum(dim=reduce), **TIGHT)

    # input gradient of the first layer: transposed op on the binary weights, times the surrogate'
    first = model[0]
    g0 = seen_io["0"]["g"]
    w0 = binary_sign(first.weight.detach()) * scale_of(first.weight, weight_scale)
    dx = torch.nn.grad.conv2d_input(x.shape, w0, g0, first.stride, first.padding)
    torch.testing.assert_close(x.grad, dx * torch.from_numpy(ref_act(x.detach().numpy(), {}, 0.0)), **TIGHT)
    assert (x.detach().abs() > 1).any()  # the clip is exercised


def test_weight_scale_is_per_output_channel_and_detached():
    conv = nn.Conv2d(2, 3, 3, bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(torch.arange(54, dtype=torch.float64).reshape(3, 2, 3, 3) - 20)
    model = nn.Sequential(conv)
    estimators.binarize_model(model, estimators.build("ste"), scope="all", weight_scale="channel")
    layer = model[0]
    scale = layer.weight_scale()
    assert scale.shape == (3, 1, 1, 1) and not scale.requires_grad
    want = (torch.arange(54, dtype=torch.float64).reshape(3, 18) - 20).abs().mean(dim=1)
    torch.testing.assert_close(scale.flatten(), want, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------
# Regressions found in review
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ede", "reste", "fda"])
def test_backward_uses_the_progress_of_the_forward(name):
    """set_progress between forward and backward (gradient accumulation) must not leak in."""
    est = estimators.build(name)
    x = torch.linspace(-1.2, 1.2, 101, dtype=torch.float64, requires_grad=True)
    est.set_progress(0.0)
    y = est.binarize_activation(x)
    est.set_progress(1.0)
    y.sum().backward()
    est.set_progress(0.0)
    expected = est.activation_grad(x.detach())
    torch.testing.assert_close(x.grad, expected)


def test_swish_sign_is_finite_in_half_precision():
    est = estimators.build("swish_sign")
    x = torch.tensor([-2e4, -30.0, -3.0, 0.0, 3.0, 30.0, 6e4], dtype=torch.float16)
    grad = est.activation_grad(x)
    assert torch.isfinite(grad).all()
    reference = est.activation_grad(x.double())
    torch.testing.assert_close(grad.double(), reference, atol=1e-3, rtol=1e-2)


def test_record_lists_conv_linear_subclasses_it_cannot_patch():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.att = nn.MultiheadAttention(8, 2)
            self.fc = nn.Linear(8, 8)

    record = estimators.binarize_model(Net(), estimators.build("clipped_ste"), scope="all")
    assert record.binarized == ["fc"]
    assert "not patched" in record.full_precision["att.out_proj"]
