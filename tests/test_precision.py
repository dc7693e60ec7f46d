"""GPU readiness on a CPU (issue 15, part 4): every estimator trains under autocast (bf16 here: the
CPU's autocast runs the same casts as CUDA's), the engine's ``precision`` and ``channels_last``,
fp16's gradient scaler resumed bit for bit, the fused surrogate kernels in half precision and
channels_last, and the one-line refusals."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch._dynamo.utils import counters

import estimators
from bench.api import Reporter, RunContext, Task
from bench.checkpoint import Checkpointer
from bench.config import build_config
from bench.engine import StepOutput, fit
from bench.errors import Diverged, UserError
from bench.precision import check_precision
from estimators import fused
from estimators.base import ElementwiseEstimator

#: cosine of a whole network's bf16 weight gradients to its fp32 ones (same weights, same batch).
#: A binary network's gradient moves with every sign that flips, and bf16 flips the few pre-sign
#: values within its rounding of 0 (0.06 % of the inputs of the first binary conv here): over 8
#: seeds the lowest layer's cosine ranged 0.72-0.95 for every estimator, and the fp32 gradient of
#: the same batch merely rounded to bf16 is as far from the fp32 one (0.94 against bf16's 0.94 at
#: seed 0). So this is a floor against a broken gradient only; closeness is tested layer by layer
#: below, where the sign inputs are the same in both precisions (cosine > 0.9999).
MIN_NETWORK_COSINE = 0.6
MIN_LAYER_COSINE = 0.9999


def tiny_model() -> nn.Module:
    """A full-precision stem, two binarized convs and a binarized linear (scope "standard" keeps
    the first conv and the classifier full precision)."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
        nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
        nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 16), nn.BatchNorm1d(16), nn.Linear(16, 10))


def binarized(name: str, seed: int = 0, model: nn.Module | None = None, scope: str = "standard"):
    torch.manual_seed(seed)
    model = tiny_model() if model is None else model
    record = estimators.binarize_model(model, estimators.build(name), scope=scope)
    estimators.set_progress(model, 0.5)
    return model.train(), record


def batch(seed: int = 1, n: int = 8):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def gradients(model: nn.Module, images, labels, dtype=None) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        loss = F.cross_entropy(model(images), labels)
    loss.backward()
    assert torch.isfinite(loss), loss
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def watched(model: nn.Module, record) -> list[str]:
    """The gradients an estimator makes: its binarized layers' weights and SURGE's auxiliary
    weights; for the full-precision reference the conv and linear weights."""
    names = [f"{layer}.weight" for layer in record.binarized]
    names += [f"{layer}.aux_weight" for layer in record.binarized
              if getattr(model.get_submodule(layer), "aux_weight", None) is not None]
    return names or [n for n, p in model.named_parameters() if p.dim() > 1]


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return F.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0).item()


@pytest.mark.parametrize("name", estimators.available())
def test_every_estimator_trains_under_cpu_bf16_autocast(name):
    model, record = binarized(name)
    assert record.binarized or name == "fp32"
    if name == "surge":
        assert all(model.get_submodule(layer).aux_weight is not None for layer in record.binarized)
    names = watched(model, record)
    images, labels = batch()
    reference, low = gradients(model, images, labels), gradients(model, images, labels, torch.bfloat16)
    for n in names:
        assert low[n].dtype == torch.float32 and torch.isfinite(low[n]).all(), n
        assert low[n].abs().sum() > 0, f"{n}: no gradient"
        assert cosine(low[n], reference[n]) > MIN_NETWORK_COSINE, f"{name} {n}: {cosine(low[n], reference[n]):.3f}"
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for step in range(3):  # a few steps: the loss stays finite, every watched gradient too
        grads = gradients(model, *batch(seed=10 + step), dtype=torch.bfloat16)
        assert all(torch.isfinite(grads[n]).all() and grads[n].abs().sum() > 0 for n in names)
        optimizer.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())


def _layer_gradients(model: nn.Module, x: torch.Tensor, upstream: torch.Tensor, dtype=None):
    model.zero_grad(set_to_none=True)
    leaf = x.detach().to(dtype or x.dtype).clone().requires_grad_()  # half precision, as a conv's output is
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        out = model(leaf)
    assert out.dtype == (dtype or torch.float32)
    (out.float() * upstream).sum().backward()
    return {"input": leaf.grad, **{n: p.grad for n, p in model.named_parameters() if p.grad is not None}}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", estimators.available())
def test_each_binarized_layer_under_autocast_gives_its_fp32_gradient(name, dtype):
    """One binarized conv and one binarized linear fed the same input in both precisions (values
    exact in ``dtype``, so sign sees the same numbers): the input gradient comes back in the
    input's dtype, the weight (and SURGE's auxiliary weight) gradients in float32, and all of them
    are the fp32 ones up to the dtype's rounding of the products."""
    gen = torch.Generator().manual_seed(3)
    cases = [(nn.Conv2d(16, 16, 3, padding=1, bias=False), (8, 16, 6, 6)), (nn.Linear(32, 16), (8, 32))]
    for layer, shape in cases:
        model, record = binarized(name, model=nn.Sequential(layer), scope="all")
        x = torch.randn(shape, generator=gen).to(dtype).float()
        upstream = torch.randn(model(x).shape, generator=gen).to(dtype).float()
        reference, low = _layer_gradients(model, x, upstream), _layer_gradients(model, x, upstream, dtype)
        assert set(low) == set(reference) and (name != "surge" or "0.aux_weight" in low)
        assert low["input"].dtype == dtype
        for key, grad in low.items():
            assert grad.dtype == (dtype if key == "input" else torch.float32), key
            assert torch.isfinite(grad).all(), key
            assert cosine(grad, reference[key]) > MIN_LAYER_COSINE, f"{name} {type(layer).__name__} {key}"


def fused_estimators() -> list[str]:
    return [name for name in estimators.available()
            if issubclass(cls := estimators.ESTIMATORS.get(name), ElementwiseEstimator) and cls.derivative is not None]


@pytest.mark.parametrize("name", fused_estimators())
def test_fused_kernels_in_half_precision_and_channels_last(name, monkeypatch):
    """The compiled surrogate backward of a bf16/fp16 or channels_last tensor: the op-by-op
    result to the dtype's rounding, in x's dtype and memory format, computed in float32 (so it
    is the float64 formula to the dtype's rounding), one flat kernel per dtype whatever the shape
    and format (no recompile per layer shape)."""
    est = estimators.build(name)
    est.set_progress(0.3)
    peak = est.activation_grad(torch.linspace(-3, 3, 6001, dtype=torch.float64)).abs().max().item()
    graphs = counters["stats"]["unique_graphs"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a recompile-limit fallback would warn
        for dtype in (torch.float32, torch.bfloat16, torch.float16):
            for i, shape in enumerate([(4, 8, 5, 5), (2, 16, 3, 3), (3, 4, 7, 6)]):
                gen = torch.Generator().manual_seed(i)
                x = (torch.randn(shape, generator=gen) * 1.3).to(dtype).to(memory_format=torch.channels_last)
                grad = torch.randn(shape, generator=gen).to(dtype).to(memory_format=torch.channels_last)
                if i == 2:
                    grad = grad.contiguous()  # the other format: copied to x's
                kernel = fused.surrogate_backward(type(est).derivative, est.constants())
                monkeypatch.setenv(fused.ENV_VAR, "1")
                got = fused.surrogate_backward(type(est).derivative, est.constants())(x, grad)
                monkeypatch.setenv(fused.ENV_VAR, "0")
                want = fused.surrogate_backward(type(est).derivative, est.constants())(x, grad)
                assert kernel is not None and got.dtype == dtype and got.stride() == x.stride()
                exact = est.activation_grad(x.double()) * grad.double()
                # one rounding to dtype of a value at most the derivative's peak times |grad| (float32:
                # the tolerance of tests/test_fused_backward.py, its transcendental functions' ulps)
                atol = max(2 * torch.finfo(dtype).eps, 4e-6) * peak * grad.abs().max().item()
                torch.testing.assert_close(got.double(), exact, rtol=0, atol=atol)
                torch.testing.assert_close(want.double(), exact, rtol=0, atol=atol)
    assert counters["stats"]["unique_graphs"] - graphs <= 3  # at most one new graph per dtype


# ---------------------------------------------------------------------------- the engine

def _image_data(n: int = 12, batch_size: int = 4, seed: int = 5):
    gen = torch.Generator().manual_seed(seed)
    dataset = torch.utils.data.TensorDataset(torch.randn(n, 3, 8, 8, generator=gen),
                                             torch.randint(0, 10, (n,), generator=gen))
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                       generator=torch.Generator().manual_seed(0))


def _fit(name: str, sets: list[str], epochs: int = 2, checkpoint=None, step_hook=None, loss_factor: float = 1.0,
         reporter=None):
    config = build_config(task="classification", estimator=name, epochs=epochs,
                          sets=["optimizer=sgd", "lr=0.05", "schedule=cosine", *sets])
    model, _ = binarized(name)
    loader = _image_data()
    seen = {"images": [], "dtypes": set()}

    def step(m, data):
        images, labels = data
        seen["images"].append(images)
        logits = m(images)
        seen["dtypes"].add(logits.dtype)
        loss = F.cross_entropy(logits, labels) * loss_factor
        if step_hook is not None:
            loss = step_hook(loss)
        return StepOutput(loss, len(labels))

    @torch.no_grad()
    def evaluate(m):
        m.eval()
        images = torch.cat([b[0] for b in _image_data()])
        seen["eval_dtype"] = m(images).dtype
        return {"top1": float(m(images).sum())}  # a number that moves with every weight

    context = RunContext(quiet=True, checkpoint=checkpoint or Checkpointer(None), reporter=reporter or Reporter())
    result = fit(model, config, loader, step, evaluate, context, "test", primary="top1", max_grad_norm=5.0)
    return model, result, seen


@pytest.mark.parametrize("name", ["clipped_ste", "surge"])
def test_channels_last_trains_as_contiguous_does(name):
    plain, plain_result, _ = _fit(name, [])
    model, result, seen = _fit(name, ["channels_last=true"])
    assert all(images.is_contiguous(memory_format=torch.channels_last) for images in seen["images"])
    four_d = [p for p in model.parameters() if p.dim() == 4]
    assert four_d and all(p.is_contiguous(memory_format=torch.channels_last) for p in four_d)
    for (key, a), b in zip(plain.state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=lambda m: f"{name} {key}: {m}")
    assert result.scores["top1"] == pytest.approx(plain_result.scores["top1"], rel=1e-4, abs=1e-4)


def test_bf16_runs_the_forward_under_autocast_and_scores_in_fp32():
    _, result, seen = _fit("clipped_ste", ["precision=bf16"], epochs=1)
    assert seen["dtypes"] == {torch.bfloat16} and seen["eval_dtype"] == torch.float32
    assert torch.isfinite(torch.tensor(result.scores["top1"]))


class _Stop(Exception):
    pass


def test_an_fp16_run_resumed_from_its_checkpoint_is_bit_identical(tmp_path):
    """fp16 with a gradient scaler. The loss is scaled so that the scaler's first scale (2^16)
    overflows the fp16 gradients: epoch 1 skips steps and lowers the scale, so a resumed run that
    did not get the scaler's state back would skip them again and end elsewhere."""
    curves = []
    reporter = Reporter(on_epoch=lambda epoch, step, values: curves.append(values))
    whole, whole_result, _ = _fit("clipped_ste", ["precision=fp16"], epochs=3, loss_factor=20.0, reporter=reporter)
    assert curves[0]["amp_skipped_steps"] > 0 and curves[0]["amp_scale"] < 2.0 ** 16
    assert sum(c["amp_skipped_steps"] for c in curves) < 9  # it trained

    folder = tmp_path / "checkpoint"
    calls = {"n": 0}

    def interrupt_in_epoch_2(loss):
        calls["n"] += 1
        if calls["n"] == 5:  # epoch 2's second step (3 steps per epoch)
            raise _Stop
        return loss

    with pytest.raises(_Stop):
        _fit("clipped_ste", ["precision=fp16"], epochs=3, loss_factor=20.0, checkpoint=Checkpointer(folder),
             step_hook=interrupt_in_epoch_2)
    saved = torch.load(folder / "last.pt", weights_only=True)
    assert saved["epoch"] == 1 and saved["scaler"]["scale"] < 2.0 ** 16
    resumed, resumed_result, seen = _fit("clipped_ste", ["precision=fp16"], epochs=3, loss_factor=20.0,
                                         checkpoint=Checkpointer(folder))
    assert len(seen["images"]) == 6  # epochs 2 and 3 only
    assert resumed_result.scores == whole_result.scores
    for (key, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), key


def test_a_scaler_skipped_step_is_not_a_divergence_but_a_nan_loss_is():
    _fit("clipped_ste", ["precision=fp16"], epochs=1, loss_factor=1e4)  # overflowing gradients: skipped
    with pytest.raises(Diverged, match="training loss is nan"):
        _fit("clipped_ste", ["precision=fp16"], epochs=1, step_hook=lambda loss: loss * float("nan"))


# ---------------------------------------------------------------------------- refusals

def test_fp16_and_bf16_autocast_run_on_this_cpu():
    """The decision for fp16 on a CPU: torch 2.x's CPU autocast has float16 (and GradScaler
    runs on CPU), so it is allowed; only a torch without it is refused."""
    for precision in ("fp32", "bf16", "fp16"):
        check_precision(precision, torch.device("cpu"))


def test_a_precision_the_device_cannot_run_is_one_line_at_check_time(monkeypatch, tmp_path):
    from bench import precision
    from bench.validation import check_runs

    monkeypatch.setattr(precision, "_autocast_fault", lambda device_type, dtype: "no float16 kernels")
    config = build_config(task="classification", estimator="ste", dataset="digits", sets=["precision=fp16"])
    with pytest.raises(UserError) as error:
        check_runs([config], device="cpu")
    message = str(error.value)
    assert "\n" not in message and "precision fp16" in message and "--set precision=fp32" in message


def test_a_family_with_its_own_loop_refuses_precision_and_channels_last(monkeypatch):
    from bench import plugins
    from bench.validation import check_runs

    class OwnLoop(Task):
        name = "own_loop"

        def run(self, config, context):  # pragma: no cover - never reached
            raise AssertionError

    monkeypatch.setattr(plugins, "get_task", lambda name: OwnLoop())
    for sets in (["precision=bf16"], ["channels_last=true"]):
        config = build_config(task="classification", estimator="ste", dataset="digits", sets=sets)
        with pytest.raises(UserError, match="own_loop trains with a loop of its own"):
            check_runs([config], device="cpu")
    check_runs([build_config(task="classification", estimator="ste", dataset="digits")], device="cpu")


def test_a_bf16_bench_run_lands_a_finished_row(tmp_path):
    from bench.cli import main
    from bench.db import ResultsDB

    url = f"sqlite:///{tmp_path}/bench.sqlite"
    assert main(["run", "--task", "classification", "--estimator", "surge", "--dataset", "digits", "--epochs", "1",
                 "--quiet", "--db", url, "--checkpoint-dir", str(tmp_path / "checkpoints"),
                 "--set", "train_subset=64", "--set", "eval_subset=32", "--set", "batch_size=32",
                 "--set", "val_size=0", "--set", "precision=bf16"]) == 0
    (run,) = ResultsDB(url).list_runs()
    row = ResultsDB(url).get_run(run.id)
    assert row.status == "finished" and row.config["precision"] == "bf16"
    assert 0 <= {m.name: m.value for m in row.metrics}["top1"] <= 100
