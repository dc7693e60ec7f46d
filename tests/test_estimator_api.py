"""The public estimator API: registry, build(), binarize_model() scopes, set_progress()."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import estimators
from estimators import BinaryConv2d, BinaryLinear, binary_layers
from tasks.classification.models import MODELS

ALL_NAMES = ["approx_sign", "clipped_ste", "dsq", "ede", "fda", "fp32", "reste", "ste", "surge", "swish_sign"]

# resnet18_cifar's conv/linear layers, in module order (bireal block: downsample = AvgPool, 1x1 conv, BN).
BLOCK_CONVS = [f"layers.{i}.{j}.conv{k}" for i in range(4) for j in range(2) for k in (1, 2)]
DOWNSAMPLES = [f"layers.{i}.0.downsample.1" for i in (1, 2, 3)]
ALL_LAYERS = [
    "conv1",
    *[n for i in range(4) for n in (
        f"layers.{i}.0.conv1", f"layers.{i}.0.conv2",
        *([f"layers.{i}.0.downsample.1"] if i > 0 else []),
        f"layers.{i}.1.conv1", f"layers.{i}.1.conv2",
    )],
    "fc",
]


def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return MODELS.get("resnet18_cifar")()


def module_types(model: nn.Module) -> dict[str, type]:
    return {n: type(m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


# --------------------------------------------------------------------------------------
# Registry and build()
# --------------------------------------------------------------------------------------


def test_available_lists_exactly_the_ten_estimators():
    names = estimators.available()
    assert names == ALL_NAMES  # sorted, no extras, no duplicates
    for name in names:
        est = estimators.build(name)
        assert isinstance(est, estimators.Estimator) and est.name == name


def test_build_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        estimators.build("sste")
    message = str(info.value)
    assert "sste" in message
    for name in ALL_NAMES:
        assert name in message


@pytest.mark.parametrize(
    "name,bad,valid",
    [
        ("clipped_ste", {"beta": 3.0}, ["c"]),
        ("fda", {"n": 3}, ["w", "n_start", "n_end"]),
        ("surge", {"etta": 0.1}, ["eta", "base", "shared_aux", "fixed_lambda", "last_k", "ags"]),
    ],
)
def test_build_unknown_hyperparameter_names_valid_ones(name, bad, valid):
    assert sorted(estimators.hparam_names(name)) == sorted(valid)
    with pytest.raises(ValueError) as info:
        estimators.build(name, **bad)
    message = str(info.value)
    assert next(iter(bad)) in message
    for hp in valid:
        assert hp in message


def test_build_hyperparameter_for_estimator_without_any():
    with pytest.raises(ValueError, match="none"):
        estimators.build("ste", c=1.0)
    with pytest.raises(ValueError):
        estimators.build("approx_sign", beta=1.0)


@pytest.mark.parametrize(
    "name,hp",
    [
        ("clipped_ste", {"c": -1}),
        ("clipped_ste", {"c": 0.0}),
        ("swish_sign", {"beta": 0.0}),
        ("dsq", {"alpha": 1.5}),
        ("dsq", {"alpha": 0.0}),
        ("ede", {"t_min": 5.0, "t_max": 1.0}),
        ("ede", {"t_min": -0.1}),
        ("reste", {"o_end": 0.5}),
        ("reste", {"t": 0.05}),
        ("fda", {"n_start": 5, "n_end": 2}),
        ("fda", {"w": 0.0}),
        ("surge", {"ags": "bogus"}),
        ("surge", {"base": "surge"}),
        ("surge", {"base": "fp32"}),
        ("surge", {"base": "nope"}),
        ("surge", {"eta": -0.1}),
        ("surge", {"last_k": 0}),
        ("surge", {"fixed_lambda": -1.0}),
    ],
)
def test_build_rejects_invalid_values(name, hp):
    with pytest.raises(ValueError):
        estimators.build(name, **hp)


def test_build_keeps_valid_values_and_defaults():
    assert estimators.build("clipped_ste").hparams() == {"c": 1.0}
    assert estimators.build("clipped_ste", c=2.5).c == 2.5
    assert estimators.build("dsq").hparams() == {"alpha": 0.2}
    assert estimators.build("fda").hparams() == {"w": 0.1, "n_start": 9, "n_end": 18}
    assert estimators.build("reste").hparams() == {"t": 1.5, "o_end": 3.0}
    assert estimators.build("ede").hparams() == {"t_min": 0.1, "t_max": 10.0}
    assert estimators.build("swish_sign").hparams() == {"beta": 5.0}
    assert estimators.build("ste").hparams() == {} and estimators.build("fp32").hparams() == {}
    surge = estimators.build("surge", base="approx_sign")
    assert surge.base_estimator.name == "approx_sign"


def _parsed(name: str, **raw: str):
    """Command-line text through the one typed parser, then build()."""
    from bench.options import parse_into

    cls = estimators.ESTIMATORS.get(name)
    return estimators.build(name, **{k: parse_into(cls, k, v) for k, v in raw.items()})


def test_cli_strings_are_parsed_by_the_field_types():
    est = _parsed("surge", eta="0.3", shared_aux="true", last_k="2", fixed_lambda="none")
    assert est.eta == 0.3 and type(est.eta) is float
    assert est.shared_aux is True
    assert est.last_k == 2 and type(est.last_k) is int
    assert est.fixed_lambda is None
    est = _parsed("surge", shared_aux="false", fixed_lambda="0.5", base="ede", ags="previous")
    assert est.shared_aux is False and est.fixed_lambda == 0.5 and type(est.fixed_lambda) is float
    assert est.base == "ede" and est.ags == "previous"
    fda = _parsed("fda", w="0.2", n_start="3", n_end="7")
    assert (fda.w, fda.n_start, fda.n_end) == (0.2, 3, 7)
    assert type(fda.n_start) is int and type(fda.n_end) is int and type(fda.w) is float
    c = _parsed("clipped_ste", c="2").c
    assert c == 2.0 and type(c) is float
    assert type(estimators.build("clipped_ste", c=2).c) is float  # an int for a float field: the same config


@pytest.mark.parametrize(
    "name,hp",
    [
        ("clipped_ste", {"c": "abc"}),
        ("surge", {"shared_aux": "maybe"}),
        ("surge", {"last_k": "2.5"}),
        ("fda", {"n_start": "one"}),
        ("surge", {"eta": "none"}),  # eta is not Optional
    ],
)
def test_unreadable_strings_are_refused_in_one_line(name, hp):
    from bench.errors import UserError

    with pytest.raises(UserError, match="expected"):
        _parsed(name, **hp)
    with pytest.raises(ValueError, match="expected"):  # build() takes typed values only
        estimators.build(name, **hp)


# --------------------------------------------------------------------------------------
# binarize_model(): argument errors
# --------------------------------------------------------------------------------------


def tiny() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4, 2))


def test_binarize_unknown_scope_lists_valid_scopes():
    model = tiny()
    with pytest.raises(ValueError) as info:
        estimators.binarize_model(model, estimators.build("ste"), scope="everything")
    message = str(info.value)
    for scope in ("all", "standard", "first_last"):
        assert scope in message
    assert binary_layers(model) == []  # nothing was patched


def test_binarize_unknown_weight_scale():
    model = tiny()
    with pytest.raises(ValueError) as info:
        estimators.binarize_model(model, estimators.build("ste"), scope="all", weight_scale="tensor")
    assert "channel" in str(info.value) and "none" in str(info.value)
    assert binary_layers(model) == []


def test_binarize_needs_an_estimator_object():
    model = tiny()
    with pytest.raises(ValueError):
        estimators.binarize_model(model, "clipped_ste", scope="all")
    assert binary_layers(model) == []


def test_binarize_twice_is_refused():
    model = tiny()
    estimators.binarize_model(model, estimators.build("ste"), scope="all")
    assert len(binary_layers(model)) == 2
    with pytest.raises(ValueError):
        estimators.binarize_model(model, estimators.build("clipped_ste"), scope="all")
    assert all(layer.estimator.name == "ste" for _, layer in binary_layers(model))


# --------------------------------------------------------------------------------------
# Scope semantics on resnet18_cifar
# --------------------------------------------------------------------------------------


def test_resnet18_layer_inventory():
    assert list(module_types(resnet18())) == ALL_LAYERS
    assert len(ALL_LAYERS) == 21 and len(BLOCK_CONVS) == 16


def test_scope_standard_on_resnet18():
    model = resnet18()
    record = estimators.binarize_model(model, estimators.build("clipped_ste"), scope="standard")
    assert record.binarized == BLOCK_CONVS
    assert record.full_precision == {
        "conv1": "first conv",
        **{n: "downsample shortcut" for n in DOWNSAMPLES},
        "fc": "last linear (classifier)",
    }
    assert [n for n, _ in binary_layers(model)] == BLOCK_CONVS
    types = module_types(model)
    assert all(types[n] is BinaryConv2d for n in BLOCK_CONVS)
    assert types["conv1"] is nn.Conv2d and types["fc"] is nn.Linear
    assert all(types[n] is nn.Conv2d for n in DOWNSAMPLES)
    assert record.scope == "standard" and record.weight_scale == "channel"
    assert record.estimator == "clipped_ste" and record.hparams == {"c": 1.0}
    d = record.to_dict()
    assert d["binarized"] == BLOCK_CONVS and d["scope"] == "standard"


def test_scope_all_on_resnet18():
    model = resnet18()
    record = estimators.binarize_model(model, estimators.build("ste"), scope="all", weight_scale="none")
    assert record.binarized == ALL_LAYERS and record.full_precision == {}
    types = module_types(model)
    assert sum(t is BinaryConv2d for t in types.values()) == 20
    assert types["fc"] is BinaryLinear
    assert all(layer.weight_scale_mode == "none" for _, layer in binary_layers(model))


def test_scope_first_last_on_resnet18():
    model = resnet18()
    record = estimators.binarize_model(model, estimators.build("ste"), scope="first_last")
    assert record.full_precision == {"conv1": "first conv", "fc": "last linear (classifier)"}
    assert record.binarized == [n for n in ALL_LAYERS if n not in ("conv1", "fc")]
    assert all(module_types(model)[n] is BinaryConv2d for n in DOWNSAMPLES)


def test_exclude_patterns():
    model = resnet18()
    record = estimators.binarize_model(model, estimators.build("ste"), scope="all", exclude=["layers.3.*", "fc"])
    excluded = [n for n in ALL_LAYERS if n.startswith("layers.3.")] + ["fc"]
    assert len(excluded) == 6
    assert record.full_precision == {n: "excluded by pattern" for n in excluded}
    assert record.binarized == [n for n in ALL_LAYERS if n not in excluded]
    assert record.exclude == ["layers.3.*", "fc"]
    types = module_types(model)
    assert types["layers.3.0.conv1"] is nn.Conv2d and types["layers.2.1.conv2"] is BinaryConv2d


def test_exclude_does_not_override_scope_reasons():
    model = resnet18()
    record = estimators.binarize_model(model, estimators.build("ste"), scope="standard", exclude=("layers.1.*",))
    assert record.full_precision["layers.1.0.downsample.1"] == "downsample shortcut"
    assert record.full_precision["layers.1.0.conv1"] == "excluded by pattern"
    assert record.binarized == [n for n in BLOCK_CONVS if not n.startswith("layers.1.")]


def test_fp32_patches_nothing_and_records_would_be_binarized():
    model = resnet18()
    params_before = [id(p) for p in model.parameters()]
    types_before = module_types(model)
    record = estimators.binarize_model(model, estimators.build("fp32"), scope="standard")
    assert binary_layers(model) == []
    assert module_types(model) == types_before
    assert [id(p) for p in model.parameters()] == params_before
    assert record.binarized == []
    assert record.estimator == "fp32" and record.scope == "standard"
    assert set(record.full_precision) == set(ALL_LAYERS)
    assert record.full_precision["conv1"] == "first conv"
    assert record.full_precision["fc"] == "last linear (classifier)"
    assert all(record.full_precision[n] == "downsample shortcut" for n in DOWNSAMPLES)
    for n in BLOCK_CONVS:
        assert "fp32" in record.full_precision[n] and "would be binarized" in record.full_precision[n]


# --------------------------------------------------------------------------------------
# Patching keeps the parameters (pretrained weights, optimizer state)
# --------------------------------------------------------------------------------------


def test_patching_keeps_the_same_parameter_objects():
    model = resnet18()
    original = model.layers[0][0].conv1.weight
    original_value = original.detach().clone()
    all_params = [id(p) for p in model.parameters()]
    state_keys = list(model.state_dict())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    estimators.binarize_model(model, estimators.build("clipped_ste"), scope="standard")

    assert isinstance(model.layers[0][0].conv1, BinaryConv2d)
    assert model.layers[0][0].conv1.weight is original
    assert isinstance(original, nn.Parameter) and original.device.type == "cpu"
    assert torch.equal(original, original_value)
    assert [id(p) for p in model.parameters()] == all_params
    assert list(model.state_dict()) == state_keys
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == set(all_params)



def test_optimizer_built_before_patching_trains_the_binarized_layers():
    torch.manual_seed(0)
    model = MODELS.get("resnet20_cifar")()  # small: a real forward/backward stays fast
    original = model.layers[0][0].conv1.weight
    original_value = original.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    estimators.binarize_model(model, estimators.build("clipped_ste"), scope="standard")
    assert model.layers[0][0].conv1.weight is original
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    model.train()
    model(x).sum().backward()
    for name, layer in binary_layers(model):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0, name
    optimizer.step()
    assert not torch.equal(original.detach(), original_value)


def test_patching_keeps_train_eval_mode():
    model = tiny().eval()
    estimators.binarize_model(model, estimators.build("ste"), scope="all")
    assert all(not layer.training for _, layer in binary_layers(model))


# --------------------------------------------------------------------------------------
# set_progress
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [-0.1, 1.0001, 2.0, math.nan, -math.inf])
def test_set_progress_rejects_p_outside_unit_interval(p):
    model = tiny()
    est = estimators.build("ede")
    estimators.binarize_model(model, est, scope="all")
    estimators.set_progress(model, 0.3)
    with pytest.raises(ValueError):
        estimators.set_progress(model, p)
    assert est.progress == 0.3  # unchanged


@pytest.mark.parametrize("p", [0.0, 1.0, 0.7])
def test_set_progress_accepts_unit_interval_and_reaches_every_estimator(p):
    model = tiny()
    est = estimators.build("surge", base="reste")
    estimators.binarize_model(model, est, scope="all")
    estimators.set_progress(model, p)
    assert est.progress == p and est.base_estimator.progress == p
    assert all(layer.estimator is est for _, layer in binary_layers(model))


def test_the_estimator_library_never_imports_the_harness():
    code = ("import sys, estimators; estimators.build('surge'); "
            "print(sorted(m for m in sys.modules if m == 'bench' or m.startswith('bench.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
