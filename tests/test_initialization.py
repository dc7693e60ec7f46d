"""Where a run's weights start (``init``, bench/initialization.py): a state-dict file loaded into
the full-precision model before binarization, and ReActNet's two-step recipe (step 1 with real
weights, trained once and cached; step 2 from its final weights). Digits, 128 images, 1 epoch."""
import dataclasses
import hashlib

import pytest
import torch
from torch import nn

import estimators
from bench import engine, initialization
from bench.api import RunContext
from bench.errors import UserError
from bench.plugins import get_task
from bench.states import ModelStates
from tasks.classification.models import MODELS

from tests.digits_runs import digits_config, private_cache  # noqa: F401 - private_cache: an autouse fixture

TASK = get_task("classification")


def fp_model(seed: int = 123, num_classes: int = 10) -> nn.Module:
    """A full-precision digits ResNet-20 unlike the one a run builds: other weights and BN statistics."""
    torch.manual_seed(seed)
    model = MODELS.get("resnet20_cifar")(num_classes=num_classes, in_channels=1, block="bireal")
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
            module.num_batches_tracked.fill_(7)
    return model


def run(config, states=None):
    context = RunContext(quiet=True, states=ModelStates(states))
    return TASK.run(config, context)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- reading a file --------------------------------------------------------------------------------
def test_a_state_dict_is_found_plain_nested_and_ddp_prefixed(tmp_path):
    state = fp_model().state_dict()
    layouts = {"plain": state, "state_dict": {"state_dict": state, "epoch": 3},
               "model": {"model": state, "optimizer": {"lr": 0.1}},
               "ddp": {"state_dict": {f"module.{k}": v for k, v in state.items()}}}
    for name, content in layouts.items():
        torch.save(content, tmp_path / f"{name}.pt")
        read = initialization.read_state_dict(tmp_path / f"{name}.pt")
        assert list(read) == list(state), name
        assert all(torch.equal(read[k], state[k]) for k in state), name


# -- init=<file> ----------------------------------------------------------------------------------
def test_init_file_loads_exactly_its_weights_before_binarization(tmp_path):
    source = fp_model()
    path = tmp_path / "fp.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    result = run(digits_config("surge", init=path), states=tmp_path / "states")
    start = ModelStates(tmp_path / "states").load(0)  # the binarized model before its first step
    for key, value in source.state_dict().items():
        assert torch.equal(start[key], value), key
    # SURGE's auxiliary weight is cloned from W when binarized: from the loaded W, so loading came first
    aux = [k for k in start if k.endswith(".aux_weight")]
    assert aux and all(torch.equal(start[k], source.state_dict()[k.replace(".aux_weight", ".weight")]) for k in aux)
    assert result.scope["init"] == {"from": "file", "file": str(path), "sha256": sha256(path), "ignored": {}}


def test_a_kept_state_of_a_binarized_run_loads_with_its_binarization_only_keys_ignored(tmp_path):
    first = digits_config("surge", weight_scale="learnable")
    run(first, states=tmp_path / "states")
    kept = ModelStates(tmp_path / "states").path(1)  # results/states/<hash>/epoch_001.pt's layout
    state = torch.load(kept, weights_only=True)
    plain = set(fp_model().state_dict())
    extra = [k for k in state if k not in plain]
    names = {k.rsplit(".", 1)[-1] for k in extra}
    assert "aux_weight" in names and "scale" in names  # SURGE's auxiliary weight, the learnable scale
    result = run(digits_config("clipped_ste", init=kept), states=tmp_path / "second")
    start = ModelStates(tmp_path / "second").load(0)
    assert all(torch.equal(start[k], state[k]) for k in plain)
    counts = result.scope["init"]["ignored"]
    assert counts == {name: sum(k.endswith("." + name) for k in extra) for name in names}
    assert result.scope["init"]["sha256"] == sha256(kept)


def _one_line_error(model, path, *words):
    with pytest.raises(UserError) as caught:
        initialization.load_state_file(model, path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    for word in words:
        assert word in message, (word, message)
    return message


def test_a_file_that_does_not_fit_is_a_one_line_error_naming_the_keys(tmp_path):
    model, state = fp_model(), fp_model().state_dict()
    missing = {k: v for k, v in state.items() if k != "fc.weight"}
    torch.save(missing, tmp_path / "missing.pt")
    _one_line_error(model, tmp_path / "missing.pt", "1 of the model's keys missing", "fc.weight", "same model")
    # a key on a BatchNorm is no binarization extra (only conv/linear/embedding layers get those)
    torch.save({**state, "layers.0.0.bn1.alpha": torch.ones(1)}, tmp_path / "unexpected.pt")
    _one_line_error(model, tmp_path / "unexpected.pt", "1 keys the model has not", "layers.0.0.bn1.alpha")
    torch.save(fp_model(num_classes=5).state_dict(), tmp_path / "classes.pt")
    _one_line_error(model, tmp_path / "classes.pt", "2 shapes differ", "fc.weight: file [5, 64], model [10, 64]")
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "no_state.pt")
    _one_line_error(model, tmp_path / "no_state.pt", "holds no state dict", "epoch")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    _one_line_error(model, tmp_path / "text.pt", "cannot be loaded as weights only")
    # a caller's pattern marks a key binarization-only
    initialization.load_state_file(model, tmp_path / "unexpected.pt", ignore=["*.alpha"])


def test_the_run_check_refuses_a_file_that_does_not_fit_before_anything_is_written(tmp_path):
    torch.save(fp_model(num_classes=5).state_dict(), tmp_path / "classes.pt")
    config = digits_config(init=tmp_path / "classes.pt")
    with pytest.raises(UserError, match="shapes differ"):
        TASK.check(config)


# -- init=two_step --------------------------------------------------------------------------------
@pytest.mark.parametrize("estimator", sorted(set(estimators.available()) - {"fp32"}))
def test_weight_only_settings_do_not_act_with_real_weights(estimator):
    """Why Task.step_one resets them: with binary_weights off a layer's forward and backward are
    the same whatever weight_scale, weight_grad, weight_balance and a gradient clip say."""
    variants = [dict(), dict(weight_scale="none"), dict(weight_scale="layer"), dict(weight_scale="pow2"),
                dict(weight_grad="identity"), dict(weight_balance="standardize"),
                dict(weight_balance="recu"), dict(weight_clip="gradient")]
    with pytest.raises(ValueError, match="weight_scale learnable scales binary weights"):  # an unused parameter
        estimators.binarize_model(nn.Sequential(nn.Conv2d(3, 4, 3)), estimators.build(estimator), scope="all",
                                  binary_weights=False, weight_scale="learnable")
    x = torch.randn(4, 3, 6, 6) * 2
    outputs = []
    for variant in variants:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 2, 3, padding=1))
        with torch.no_grad():
            model[1].weight.mul_(20)  # |W| > 1 somewhere, where a gradient clip would act
        estimators.binarize_model(model, estimators.build(estimator), scope="all", binary_weights=False, **variant)
        inputs = x.clone().requires_grad_(True)
        model(inputs).square().sum().backward()
        outputs.append([model(x).detach(), inputs.grad, model[0].weight.grad, model[1].weight.grad])
    for variant, got in zip(variants[1:], outputs[1:]):
        for a, b in zip(outputs[0], got):
            assert torch.equal(a, b), variant


def test_step_one_is_the_run_with_real_weights_and_the_step1_weight_decay():
    config = digits_config("surge", weight_decay=0.0, step1_weight_decay=1e-5, weight_scale="pow2",
                           weight_balance="center", weight_clip="gradient", kd="distribution")
    step1 = initialization.step_one_config(TASK, config)
    assert not step1.binary_weights and step1.init == "scratch" and step1.weight_decay == 1e-5
    assert (step1.weight_scale, step1.weight_balance, step1.weight_clip) == ("channel", "none", "none")
    assert step1.estimator_hparams == config.estimator_hparams and step1.seed == config.seed
    assert step1.options["step1_weight_decay"] is None
    # step 1 distils from step 2's teacher (trained with the run's weight decay, not step 1's)
    assert TASK.teacher_config(step1).hash() == TASK.teacher_config(config).hash()
    folder = initialization.step_one_folder
    assert folder(TASK, config) == folder(TASK, dataclasses.replace(config, weight_scale="none"))
    # without distillation, step1_weight_decay=1e-5 is the same step 1 as a run's weight decay of 1e-5 (with
    # it, not: the teacher the suite trains takes the run's weight decay)
    no_kd = digits_config("surge", weight_decay=0.0, step1_weight_decay=1e-5)
    assert folder(TASK, no_kd) == folder(TASK, digits_config("surge", weight_decay=1e-5, weight_clip="gradient"))
    assert folder(TASK, config) != folder(TASK, digits_config("surge", weight_decay=1e-5, kd="distribution"))
    assert folder(TASK, config) != folder(TASK, dataclasses.replace(config, seed=1))
    assert folder(TASK, config) != folder(TASK, digits_config("surge", eta=0.3, weight_decay=0.0,
                                                              step1_weight_decay=1e-5, kd="distribution"))


def test_two_step_trains_step_one_with_real_weights_once_and_starts_step_two_from_it(tmp_path, monkeypatch):
    trained = []
    real_train_task = engine.train_task

    def recording(task, config, context, label=None):  # the real training, with its model kept
        model, result = real_train_task(task, config, context, label)
        trained.append((config, model, result))
        return model, result

    monkeypatch.setattr(engine, "train_task", recording)
    config = digits_config("surge", init="two_step", step1_weight_decay=1e-5)
    result = run(config, states=tmp_path / "states")
    (step1, step1_model, step1_result), (step2, _, _) = trained
    assert step2 == config and not step1.binary_weights and step1.weight_decay == 1e-5
    layers = estimators.binary_layers(step1_model)
    assert layers and all(not layer.options.binary_weights for _, layer in layers)

    folder = initialization.step_one_folder(TASK, config)
    weights = folder / initialization.STEP1_WEIGHTS
    cached = torch.load(weights, weights_only=True)
    final = step1_model.state_dict()
    start = ModelStates(tmp_path / "states").load(0)  # step 2 before its first step, binarized
    plain = set(fp_model().state_dict())
    for key in plain:
        assert torch.equal(cached[key], final[key]) and torch.equal(start[key], final[key]), key
    assert result.scope["init"]["two_step"] == folder.name
    assert result.scope["init"]["step1_metrics"] == step1_result.metrics
    assert result.scope["init"]["sha256"] == sha256(weights)
    assert result.scope["init"]["ignored"] == {"aux_weight": 18}  # step 1's SURGE branch, re-made in step 2

    # another step 2 of the same step 1 (a weight-only setting differs): step 1 comes from the cache
    stamp = weights.stat().st_mtime_ns
    trained.clear()
    again = run(digits_config("surge", init="two_step", step1_weight_decay=1e-5, weight_balance="center"),
                states=tmp_path / "again")
    assert [c.init for c, _, _ in trained] == ["two_step"]  # only step 2 trained
    assert weights.stat().st_mtime_ns == stamp
    assert again.scope["init"]["two_step"] == folder.name
    assert again.scope["init"]["step1_metrics"] == step1_result.metrics
    start_again = ModelStates(tmp_path / "again").load(0)
    assert all(torch.equal(start_again[k], final[k]) for k in plain)
