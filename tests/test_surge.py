"""SURGE against its closed form (SURGE.md): forward, the three gradients, variants, export."""
import copy

import pytest
import torch
from torch import nn
from torch.nn.grad import conv2d_input, conv2d_weight

import estimators
from estimators import binary_sign

ETA = 0.25


def _conv_model():
    return nn.Sequential(nn.Conv2d(4, 6, 3, stride=1, padding=1, bias=True))


def _linear_model():
    return nn.Sequential(nn.Linear(5, 7, bias=True))


def _patched_pair(make, surge_kwargs=None, scope="all"):
    base = make()
    twin = copy.deepcopy(base)
    estimators.binarize_model(base, estimators.build("clipped_ste"), scope=scope)
    estimators.binarize_model(twin, estimators.build("surge", **(surge_kwargs or {"eta": ETA})), scope=scope)
    return base, twin


def _grads(model, x, upstream):
    x = x.clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    out = model(x)
    (out * upstream).sum().backward()
    return out.detach(), x.grad


def _conv_case():
    x = torch.randn(3, 4, 8, 8) * 1.5  # many |x| > 1, so the clip matters
    upstream = torch.randn(3, 6, 8, 8)
    return x, upstream


def _fp_conv_grads(layer, x, upstream, weight):
    """op^T of the full-precision path: (dL/dx, dL/dW) at real input x, weight W_a."""
    g_x = conv2d_input(x.shape, weight, upstream, stride=1, padding=1)
    g_w = conv2d_weight(x, weight.shape, upstream, stride=1, padding=1)
    return g_x, g_w


@pytest.mark.parametrize("make", [_conv_model, _linear_model])
def test_forward_equals_clipped_ste_bit_for_bit(make):
    base, twin = _patched_pair(make)
    x = torch.randn(4, 4, 8, 8) if make is _conv_model else torch.randn(2, 3, 5)
    for mode in ("train", "eval"):
        getattr(base, mode)()
        getattr(twin, mode)()
        assert torch.equal(base(x), twin(x)), mode


def test_gradients_match_the_closed_form_conv():
    base, twin = _patched_pair(_conv_model)
    x, upstream = _conv_case()
    _, g_b = _grads(base, x, upstream)
    _, g_x = _grads(twin, x, upstream)
    layer = twin[0]
    g_a, g_wa = _fp_conv_grads(layer, x, upstream, layer.aux_weight.detach())

    diff = g_x - g_b
    torch.testing.assert_close(diff.norm(), ETA * g_b.norm(), rtol=1e-5, atol=0)
    cosine = torch.nn.functional.cosine_similarity(diff.flatten(), g_a.flatten(), dim=0)
    assert cosine == pytest.approx(1.0, abs=1e-5)

    torch.testing.assert_close(layer.weight.grad, base[0].weight.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(layer.bias.grad, base[0].bias.grad)
    lam = ETA * g_b.norm() / (g_a.norm() + 1e-8)
    torch.testing.assert_close(layer.aux_weight.grad, lam * g_wa, rtol=1e-4, atol=1e-6)
    assert float(layer.last_lambda) == pytest.approx(float(lam), rel=1e-5)


def test_gradients_match_the_closed_form_linear_3d_input():
    base, twin = _patched_pair(_linear_model)
    x = torch.randn(2, 3, 5) * 1.5
    upstream = torch.randn(2, 3, 7)
    _, g_b = _grads(base, x, upstream)
    _, g_x = _grads(twin, x, upstream)
    layer = twin[0]
    w_a = layer.aux_weight.detach()
    g_a = upstream @ w_a
    g_wa = upstream.reshape(-1, 7).t() @ x.reshape(-1, 5)
    lam = ETA * g_b.norm() / (g_a.norm() + 1e-8)
    torch.testing.assert_close(g_x, g_b + lam * g_a, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(layer.weight.grad, base[0].weight.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(layer.aux_weight.grad, lam * g_wa, rtol=1e-5, atol=1e-6)


def test_clipped_ste_input_gradient_is_the_clipped_binary_path():
    """The reference itself: g_b = op^T(delta, alpha sign W) * 1{|x| <= 1}."""
    base, _ = _patched_pair(_conv_model)
    x, upstream = _conv_case()
    _, g_b = _grads(base, x, upstream)
    w = base[0].weight.detach()
    w_binary = binary_sign(w) * w.abs().mean(dim=(1, 2, 3), keepdim=True)
    expected = conv2d_input(x.shape, w_binary, upstream, padding=1) * (x.abs() <= 1)
    torch.testing.assert_close(g_b, expected, rtol=1e-5, atol=1e-6)


def test_fixed_lambda_switches_ags_off():
    base, twin = _patched_pair(_conv_model, {"fixed_lambda": 0.5})
    x, upstream = _conv_case()
    _, g_b = _grads(base, x, upstream)
    _, g_x = _grads(twin, x, upstream)
    layer = twin[0]
    g_a, g_wa = _fp_conv_grads(layer, x, upstream, layer.aux_weight.detach())
    torch.testing.assert_close(g_x, g_b + 0.5 * g_a, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.aux_weight.grad, 0.5 * g_wa, rtol=1e-5, atol=1e-5)


def test_shared_aux_uses_the_latent_weight():
    base, twin = _patched_pair(_conv_model, {"eta": ETA, "shared_aux": True})
    layer = twin[0]
    assert layer.aux_weight is None
    assert sum(p.numel() for p in twin.parameters()) == sum(p.numel() for p in base.parameters())
    x, upstream = _conv_case()
    _, g_b = _grads(base, x, upstream)
    _, g_x = _grads(twin, x, upstream)
    g_a, g_w_fp = _fp_conv_grads(layer, x, upstream, layer.weight.detach())
    lam = ETA * g_b.norm() / (g_a.norm() + 1e-8)
    torch.testing.assert_close(g_x, g_b + lam * g_a, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(layer.weight.grad, base[0].weight.grad + lam * g_w_fp, rtol=1e-5, atol=1e-5)


def test_eta_zero_is_clipped_ste():
    base, twin = _patched_pair(_conv_model, {"eta": 0.0})
    x, upstream = _conv_case()
    _, g_b = _grads(base, x, upstream)
    _, g_x = _grads(twin, x, upstream)
    torch.testing.assert_close(g_x, g_b)
    assert torch.count_nonzero(twin[0].aux_weight.grad) == 0


def test_other_base_estimator_sets_the_main_path():
    approx = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1))
    twin = copy.deepcopy(approx)
    estimators.binarize_model(approx, estimators.build("approx_sign"), scope="all")
    estimators.binarize_model(twin, estimators.build("surge", eta=0.0, base="approx_sign"), scope="all")
    x, upstream = _conv_case()
    torch.testing.assert_close(_grads(twin, x, upstream)[1], _grads(approx, x, upstream)[1])


def test_eval_mode_never_touches_aux_weight():
    base, twin = _patched_pair(_conv_model)
    twin[0].aux_weight.data.fill_(float("nan"))
    base.eval()
    twin.eval()
    x, upstream = _conv_case()
    out_twin, g_twin = _grads(twin, x, upstream)
    out_base, g_base = _grads(base, x, upstream)
    assert torch.equal(out_twin, out_base)
    assert torch.isfinite(g_twin).all()
    torch.testing.assert_close(g_twin, g_base)
    assert twin[0].aux_weight.grad is None


def test_export_strips_aux_and_keeps_outputs():
    from tasks.classification.models import MODELS

    model = MODELS.get("resnet20_cifar")()
    record = estimators.binarize_model(model, estimators.build("surge", eta=ETA))
    n_binary = len(record.binarized)
    x = torch.randn(2, 3, 32, 32)
    (model(x) ** 2).sum().backward()  # train a step's worth of state
    model.eval()
    before = model(x)
    n_params = sum(p.numel() for p in model.parameters())
    removed = estimators.strip_auxiliary(model)
    assert removed == n_binary
    assert not any("aux_weight" in k for k in model.state_dict())
    aux_numel = sum(model.get_submodule(n).weight.numel() for n in record.binarized)
    assert sum(p.numel() for p in model.parameters()) == n_params - aux_numel
    assert torch.equal(model(x), before)
    model.train()
    assert torch.isfinite(model(x)).all()


def test_aux_weight_is_a_copy_trained_by_an_ordinary_optimizer():
    _, twin = _patched_pair(_conv_model)
    layer = twin[0]
    assert torch.equal(layer.aux_weight, layer.weight)
    assert layer.aux_weight.data_ptr() != layer.weight.data_ptr()
    assert any(p is layer.aux_weight for p in twin.parameters())
    opt = torch.optim.SGD(twin.parameters(), lr=0.1)
    x, upstream = _conv_case()
    _grads(twin, x, upstream)
    before = layer.aux_weight.detach().clone()
    opt.step()
    assert not torch.equal(layer.aux_weight, before)


def test_last_k_restricts_dpgc():
    from tasks.classification.models import MODELS

    model = MODELS.get("resnet20_cifar")()
    record = estimators.binarize_model(model, estimators.build("surge", last_k=3))
    with_aux = [n for n in record.binarized if model.get_submodule(n).aux_weight is not None]
    assert with_aux == record.binarized[-3:]
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    model(x).sum().backward()
    assert set(estimators.auxiliary_lambdas(model)) == set(record.binarized[-3:])


def test_previous_ags_uses_last_steps_lambda():
    _, exact = _patched_pair(_conv_model)
    _, previous = _patched_pair(_conv_model, {"eta": ETA, "ags": "previous"})
    previous.load_state_dict(exact.state_dict())
    x1, up1 = _conv_case()
    x2, up2 = torch.randn_like(x1), torch.randn_like(up1)
    _grads(exact, x1, up1)
    lam_step1 = exact[0].last_lambda.clone()
    _grads(previous, x1, up1)
    # Second step: the 'previous' layer uses step 1's lambda on step 2's gradients.
    _, g_exact = _grads(exact, x2, up2)
    _, g_prev = _grads(previous, x2, up2)
    layer = previous[0]
    g_a, _ = _fp_conv_grads(layer, x2, up2, layer.aux_weight.detach())
    lam_step2 = exact[0].last_lambda
    assert not torch.isclose(lam_step1, lam_step2)
    torch.testing.assert_close(g_prev - g_exact, (lam_step1 - lam_step2) * g_a, rtol=1e-4, atol=1e-5)


def test_surge_unsupported_padding_mode_is_a_clear_error():
    model = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect"))
    with pytest.raises(ValueError, match="padding_mode"):
        estimators.binarize_model(model, estimators.build("surge"), scope="all")


def test_scheduled_base_uses_the_progress_of_the_forward():
    """surge(base=ede) at eta 0 is ede; set_progress between forward and backward must not leak in."""
    ede_model = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1))
    surge_model = copy.deepcopy(ede_model)
    estimators.binarize_model(ede_model, estimators.build("ede"), scope="all")
    estimators.binarize_model(surge_model, estimators.build("surge", eta=0.0, base="ede"), scope="all")
    x, upstream = _conv_case()
    _, expected = _grads(ede_model, x, upstream)  # progress 0 throughout
    x = x.clone().requires_grad_(True)
    out = surge_model(x)
    estimators.set_progress(surge_model, 1.0)
    (out * upstream).sum().backward()
    torch.testing.assert_close(x.grad, expected)
    torch.testing.assert_close(surge_model[0].weight.grad, ede_model[0].weight.grad)
