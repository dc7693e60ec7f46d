"""The binarization options the papers differ by (estimators.layers.BinarizationOptions, the
RunConfig fields of the same names): each one's exact effect, its cost accounting, its
parameter groups and schedule, and that every estimator trains under every option."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import estimators
from bench.config import build_config
from bench.training import build_optimizer, lr_factor, parameter_groups
from estimators.accounting import count_cost
from estimators.layers import RECU_TAU, BinaryConv2d, BinaryLinear, recu_tau


def _conv(seed: int = 0, **options) -> BinaryConv2d:
    torch.manual_seed(seed)
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    return BinaryConv2d.from_module(conv, estimators.build(options.pop("estimator", "clipped_ste")), **options)


def _per_channel(w: torch.Tensor) -> torch.Tensor:
    return w.reshape(w.shape[0], -1)


# -- weight balance ------------------------------------------------------------------------
def test_standardize_gives_each_filter_mean_0_and_std_1_before_sign():
    layer = _conv(weight_balance="standardize")
    balanced = _per_channel(layer.balanced_weight())
    torch.testing.assert_close(balanced.mean(1), torch.zeros(4), atol=1e-6, rtol=0)
    torch.testing.assert_close(balanced.std(1), torch.ones(4))
    assert torch.equal(layer.binary_weight(), torch.where(layer.balanced_weight() >= 0, 1.0, -1.0))


def test_center_is_per_channel_or_layerwise_with_the_layer_scale():
    channel = _per_channel(_conv(weight_balance="center").balanced_weight())
    torch.testing.assert_close(channel.mean(1), torch.zeros(4), atol=1e-7, rtol=0)
    layer = _conv(weight_balance="center", weight_scale="layer")
    balanced = layer.balanced_weight()
    torch.testing.assert_close(balanced, layer.weight - layer.weight.mean())
    assert _per_channel(balanced).mean(1).abs().max() > 1e-4  # not centred per channel


@pytest.mark.parametrize("progress", [0.0, 0.5, 1.0])
def test_recu_balance_is_the_closed_form_with_its_tau_schedule(progress):
    layer = _conv(weight_balance="recu")
    layer.progress = progress
    w = layer.weight.detach()
    centred = w - w.mean(dim=(1, 2, 3), keepdim=True)
    w1 = centred / (torch.sqrt(centred.var(dim=(1, 2, 3), keepdim=True) + 1e-5) / 2 / math.sqrt(2))
    tau = RECU_TAU[0] + (RECU_TAU[1] - RECU_TAU[0]) * (math.exp(progress) - 1) / (math.e - 1)
    bound = float(-w1.abs().mean() * math.log(2 - 2 * tau))
    torch.testing.assert_close(layer.balanced_weight().detach(), w1.clamp(-bound, bound))
    assert layer.balanced_weight().detach().abs().max() <= bound + 1e-5
    assert recu_tau(0.0) == pytest.approx(0.85) and recu_tau(1.0) == pytest.approx(0.99)


def test_set_progress_reaches_the_layers():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3))
    estimators.binarize_model(model, estimators.build("ste"), scope="all", weight_balance="recu")
    estimators.set_progress(model, 0.75)
    assert [layer.progress for _, layer in estimators.binary_layers(model)] == [0.75, 0.75]


# -- weight scale -----------------------------------------------------------------------------
def test_weight_scales_values():
    channel, layer, pow2 = (_conv(weight_scale=mode) for mode in ("channel", "layer", "pow2"))
    mean_abs = _per_channel(channel.weight.detach()).abs().mean(1)
    torch.testing.assert_close(channel.weight_scale().flatten(), mean_abs)
    torch.testing.assert_close(layer.weight_scale(), channel.weight.detach().abs().mean())
    exponents = torch.log2(pow2.weight_scale().flatten())
    assert torch.equal(exponents, exponents.round())
    assert ((pow2.weight_scale().flatten() / mean_abs).log2().abs() <= 0.5 + 1e-6).all()
    none = _conv(weight_scale="none")
    assert set(none.effective_weight().detach().unique().tolist()) == {-1.0, 1.0}


def test_layer_scale_is_not_detached_and_channel_scale_is():
    x = torch.randn(2, 3, 5, 5)
    grads = {}
    for mode in ("channel", "layer"):
        layer = _conv(weight_scale=mode, weight_grad="identity")
        layer(x).square().sum().backward()
        grads[mode] = layer.weight.grad
    w = _conv().weight.detach()
    # with identity sign and a detached scale, dL/dW = alpha * dL/dW_eff; the layer scale adds
    # d alpha / dW = sign(W) / numel times sum(dL/dW_eff * sign(W)), so the two differ
    assert not torch.allclose(grads["channel"], grads["layer"])
    assert grads["layer"].shape == w.shape


def test_learnable_scale_is_a_parameter_that_learns_and_starts_uniform():
    layer = _conv(weight_scale="learnable")
    assert isinstance(layer.scale, nn.Parameter) and layer.scale.shape == (4, 1, 1, 1)
    assert ((layer.scale >= 0) & (layer.scale < 1)).all()
    layer(torch.randn(2, 3, 5, 5)).sum().backward()
    assert layer.scale.grad is not None and layer.scale.grad.abs().sum() > 0
    assert "scale" in dict(layer.named_parameters())


# -- weight clip ----------------------------------------------------------------------------
def test_gradient_clip_zeroes_the_weight_gradient_beyond_one():
    layer = _conv(weight_clip="gradient", weight_grad="identity")
    with torch.no_grad():
        layer.weight[0].fill_(1.5)
        layer.weight[1].fill_(-2.0)
    layer(torch.randn(2, 3, 5, 5)).square().sum().backward()
    assert torch.equal(layer.weight.grad[:2], torch.zeros_like(layer.weight.grad[:2]))
    assert layer.weight.grad[2:].abs().sum() > 0


def test_update_clip_clamps_latent_weights_after_each_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 9, 2))
    estimators.binarize_model(model, estimators.build("ste"), scope="all", weight_clip="update")
    with torch.no_grad():
        model[0].weight.mul_(100)
    config = build_config("classification", "ste", dataset="digits",
                          sets=["weight_clip=update", "optimizer=sgd", "lr=0.5"])
    optimizer = build_optimizer(config, model)
    model(torch.randn(4, 3, 5, 5)).sum().backward()
    optimizer.step()
    assert model[0].weight.abs().max() <= 1.0 and model[2].weight.abs().max() <= 1.0
    assert model[0].weight.abs().max() == 1.0  # it was far outside, so it sits on the bound


# -- padding -------------------------------------------------------------------------------
@pytest.mark.parametrize("pad_value", [-1.0, 1.0])
def test_nonzero_padding_gives_a_binary_border(pad_value):
    layer = _conv(pad_value=pad_value, weight_scale="none")
    seen = {}
    layer.register_forward_hook(lambda m, i, o: seen.update(out=o))
    with torch.no_grad():
        layer.weight.fill_(1.0)
    x = torch.ones(1, 3, 4, 4)
    out = layer(x)
    # every tap is +-1: an all-ones kernel sums 27 taps, the corner's 15 in the border add 15 pad_value
    assert out[0, 0, 0, 0].item() == 12 + 15 * pad_value
    assert out[0, 0, 1, 1].item() == 27
    padded = F.pad(torch.ones(1, 3, 4, 4), (1, 1, 1, 1), value=pad_value)
    assert torch.equal(out, F.conv2d(padded, torch.ones(4, 3, 3, 3)))
    assert set(padded[0, 0, 0].tolist()) == {pad_value}


def test_zero_padding_border_is_zero_and_ternary():
    layer = _conv(weight_scale="none")
    with torch.no_grad():
        layer.weight.fill_(1.0)
    assert layer(torch.ones(1, 3, 4, 4))[0, 0, 0, 0].item() == 12


@pytest.mark.parametrize("pad_value", [0.0, -1.0])
def test_backward_products_match_autograd_with_padding(pad_value):
    layer = _conv(pad_value=pad_value)
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    out = layer.functional(x, w, None)
    grad_out = torch.randn_like(out)
    expected = torch.autograd.grad(out, (x, w), grad_out)
    got = layer.backward_products(grad_out, x.detach(), w.detach(), True, True)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


def test_surge_with_minus_one_padding_matches_its_definition():
    """dL/dx = g_b + lambda g_a with both products of the -1-padded op, and dL/dW_a likewise."""
    layer = _conv(estimator="surge", pad_value=-1.0)
    estimators.build("surge")  # a fresh estimator attaches below
    surge = layer.estimator
    surge.attach([layer])
    layer.train()
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    out = layer(x)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    w_eff = layer.effective_weight().detach()
    xb = torch.where(x.detach() >= 0, 1.0, -1.0).requires_grad_()
    g_b, = torch.autograd.grad(layer.functional(xb, w_eff, None), xb, grad_out)
    g_b = g_b * (x.detach().abs() <= 1)
    xa, wa = x.detach().clone().requires_grad_(), layer.aux_weight.detach().clone().requires_grad_()
    g_a, g_wa = torch.autograd.grad(layer.functional(xa, wa, None), (xa, wa), grad_out)
    lam = surge.eta * g_b.norm() / (g_a.norm() + 1e-8)
    torch.testing.assert_close(x.grad, g_b + lam * g_a)
    torch.testing.assert_close(layer.aux_weight.grad, lam * g_wa)


def test_nonzero_padding_needs_numeric_padding():
    with pytest.raises(ValueError, match="pad_value -1.0 needs numeric padding"):
        BinaryConv2d(3, 4, 3, padding="same", estimator=estimators.build("ste"),
                     options=estimators.BinarizationOptions(pad_value=-1.0))


# -- real weights (ReActNet step 1) ------------------------------------------------------------
def test_binary_weights_off_keeps_real_weights_and_binary_inputs():
    layer = _conv(binary_weights=False)
    assert layer.effective_weight() is layer.weight
    seen = {}
    original = layer.functional
    layer.functional = lambda x, w, b: seen.update(x=x, w=w) or original(x, w, b)
    layer(torch.randn(2, 3, 5, 5))
    assert set(seen["x"].unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(seen["w"], layer.weight)


# -- accounting ------------------------------------------------------------------------------
def _cost(**options):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(4 * 16, 2))
    estimators.binarize_model(model, estimators.build("ste"), scope="all", **options)
    return count_cost(model, torch.zeros(1, 3, 4, 4))


def test_accounting_counts_each_choice():
    macs = 4 * 16 * 27 + 2 * 64           # conv: 4 channels x 16 positions x 27 taps; linear 2 x 64
    for options in ({}, dict(pad_value=-1.0), dict(weight_scale="pow2"), dict(weight_scale="none"),
                    dict(weight_balance="standardize", weight_scale="layer")):
        cost = _cost(**options)   # scales fold into BN, balances into the bits, the zero border is masked
        assert (cost.binary_ops, cost.float_ops, cost.n_binary_params) == (macs, 0, 4 * 27 + 2 * 64), options
    real = _cost(binary_weights=False)
    assert (real.binary_ops, real.float_ops, real.n_binary_params) == (0, macs, 0)
    assert _cost(weight_scale="learnable").n_params == _cost().n_params + 4 + 2


def test_bireal_resnet18_counts_bi_real_nets_published_ops():
    """Bi-Real Net (arXiv:1808.00278, Table 4): ResNet-18, 1.63e8 OPs (BOPs / 64 + FLOPs)."""
    from tasks.classification.models import MODELS

    model = MODELS.get("resnet18_imagenet")(num_classes=1000, in_channels=3, block="bireal")
    estimators.binarize_model(model, estimators.build("ste"), scope="standard")
    cost = count_cost(model, torch.zeros(1, 3, 224, 224))
    assert cost.ops == pytest.approx(1.63e8, rel=0.02)


# -- weight decay groups and schedules ---------------------------------------------------------
def test_weight_decay_on_conv_holds_exactly_the_conv_kernels():
    from tasks.classification.models import MODELS

    model = MODELS.get("resnet20_cifar")(num_classes=10, in_channels=3, block="reactnet")
    estimators.binarize_model(model, estimators.build("surge"), scope="standard", weight_scale="learnable")
    config = build_config("classification", "surge", dataset="digits", sets=["weight_decay_on=conv",
                                                                             "weight_decay=1e-5"])
    decayed, rest = parameter_groups(config, model)
    scales = {id(layer.scale) for _, layer in estimators.binary_layers(model)}
    assert scales and all(layer.scale.dim() == 4 for _, layer in estimators.binary_layers(model))
    kernels = {id(p) for p in model.parameters() if p.dim() == 4} - scales   # 4-D, but a scale is not a kernel
    assert {id(p) for p in decayed["params"]} == kernels and decayed["weight_decay"] == 1e-5
    assert rest["weight_decay"] == 0.0 and not kernels & {id(p) for p in rest["params"]}
    assert scales <= {id(p) for p in rest["params"]}
    aux = [layer.aux_weight for _, layer in estimators.binary_layers(model)]
    assert aux and all(id(a) in kernels for a in aux)  # SURGE's auxiliary conv weights are kernels
    assert any(p is model.fc.weight for p in rest["params"])  # the classifier's 2-D weight is not
    everything = parameter_groups(build_config("classification", "surge", dataset="digits"), model)
    assert len(everything) == 1 and len(everything[0]["params"]) == len(list(model.parameters()))


def test_step_schedule_and_warmup_start():
    config = build_config("classification", "ste", dataset="digits",
                          sets=["schedule=step", "milestones=0.3,0.6,0.9", "warmup_start=0.25"])
    factors = [lr_factor(config, step, 100, warmup_steps=4) for step in range(100)]
    assert factors[:4] == [0.25 + 0.75 * (s + 1) / 4 for s in range(4)]   # IR-Net: 0.2 -> 0.8
    assert factors[29] == 1.0 and factors[30] == pytest.approx(0.1) and factors[60] == pytest.approx(0.01)
    assert factors[90] == pytest.approx(0.001) and factors[99] == pytest.approx(0.001)


def test_nesterov_optimizer():
    config = build_config("classification", "ste", dataset="digits", sets=["optimizer=sgd_nesterov"])
    optimizer = build_optimizer(config, nn.Linear(2, 2))
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.param_groups[0]["nesterov"]


# -- every estimator trains under every option ----------------------------------------------
@pytest.mark.parametrize("estimator", ["clipped_ste", "ede", "surge"])
@pytest.mark.parametrize("options", [dict(weight_balance="standardize", weight_scale="pow2"),
                                     dict(weight_balance="recu", weight_scale="learnable"),
                                     dict(weight_balance="center", weight_scale="layer", weight_clip="gradient"),
                                     dict(pad_value=-1.0, binary_weights=False)],
                         ids=["irnet", "recu", "bit", "step1"])
def test_every_estimator_trains_under_the_options(estimator, options):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Conv2d(8, 8, 3, padding=1),
                          nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 25, 3))
    record = estimators.binarize_model(model, estimators.build(estimator), scope="first_last", **options)
    assert {k: record.options[k] for k in options if k in record.options} == \
        {k: v for k, v in options.items() if k not in ("weight_scale",)}
    model(torch.randn(4, 3, 5, 5)).square().mean().backward()
    layer = model[2]
    assert isinstance(layer, BinaryConv2d)
    assert torch.isfinite(layer.weight.grad).all() and layer.weight.grad.abs().sum() > 0
    assert torch.isfinite(model[0].weight.grad).all()


def test_options_are_recorded_in_the_run_config_and_hash():
    base = build_config("classification", "ste", dataset="digits")
    for pair in ("weight_balance=standardize", "weight_scale=pow2", "weight_clip=gradient", "pad_value=-1",
                 "binary_weights=false", "weight_decay_on=conv", "precision=bf16", "channels_last=true"):
        changed = build_config("classification", "ste", dataset="digits", sets=[pair])
        assert changed.hash() != base.hash(), pair
    assert build_config("classification", "ste", dataset="digits", sets=["pad_value=-1"]).pad_value == -1.0
    assert "weight_balance" not in base.identity()  # at their defaults the added fields leave old hashes alone


def test_binarized_model_deep_copies_and_loads_with_a_learnable_scale():
    layer = _conv(weight_scale="learnable", weight_balance="standardize")
    clone = copy.deepcopy(layer)
    clone.load_state_dict(layer.state_dict())
    x = torch.randn(1, 3, 5, 5)
    assert torch.equal(clone(x), layer(x))


def test_linear_options():
    torch.manual_seed(0)
    layer = BinaryLinear.from_module(nn.Linear(6, 3), estimators.build("ste"), weight_scale="layer",
                                     weight_balance="center")
    torch.testing.assert_close(layer.effective_weight(),
                               torch.where(layer.weight >= layer.weight.mean(), 1.0, -1.0)
                               * (layer.weight - layer.weight.mean()).abs().mean())


def test_every_option_is_in_run_help_and_list_options(capsys):
    from bench.cli import main

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert main(["list", "options"]) == 0
    listed = capsys.readouterr().out
    for name, choices in (("weight_balance", "none|center|standardize|recu"),
                          ("weight_scale", "channel|layer|pow2|learnable|none"), ("weight_clip", "none|gradient|update"),
                          ("pad_value", "0|-1|1"), ("weight_decay_on", "all|conv"), ("init", "scratch|two_step|FILE"),
                          ("binary_weights", "true|false"), ("precision", "fp32|bf16|fp16")):
        assert f"{name} ({choices})" in help_text, name
        assert any(line.split()[1:2] == [name] and choices in line for line in listed.splitlines()), name
