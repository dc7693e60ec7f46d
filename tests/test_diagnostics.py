"""bench diagnose: the smoothed reference gradient against its exact value, the measures, and
the command end to end (state runs, rows, the report's section)."""
import itertools
import math
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from bench.diagnostics.measures import gradient_measures
from bench.diagnostics.reference import estimator_gradients, smoothed_reference
from estimators import BinaryLinear, ElementwiseEstimator, binary_sign, build
from estimators.fused import ENV_VAR


@pytest.fixture(autouse=True)
def _op_by_op(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "0")  # the test estimators' derivatives run eagerly (no compile)


def _binary_linear(fan_in: int, fan_out: int, generator: torch.Generator, estimator=None) -> BinaryLinear:
    layer = nn.Linear(fan_in, fan_out)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(fan_out, fan_in, generator=generator))
        layer.bias.copy_(torch.randn(fan_out, generator=generator) * 0.1)
    return BinaryLinear.from_module(layer, estimator or build("clipped_ste"))


class TwoBinaryLayers(nn.Module):
    """x -> FP linear -> binary linear (4 units in) -> binary linear (3 units in) -> logits:
    7 binary units per example, few enough to enumerate."""

    def __init__(self, seed: int = 0, registered_backwards: bool = False) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        if registered_backwards:   # module order is not the forward's order (as a ResNet's shortcut conv)
            self.second = _binary_linear(3, 2, g)
        self.stem = nn.Linear(3, 4)
        with torch.no_grad():
            self.stem.weight.copy_(torch.randn(4, 3, generator=g))
        self.first = _binary_linear(4, 3, g)
        if not registered_backwards:
            self.second = _binary_linear(3, 2, g)

    def forward(self, x):
        return self.second(self.first(self.stem(x)))


def _cross_entropy(model, batch):
    inputs, labels = batch
    return nn.functional.cross_entropy(model(inputs), labels, reduction="none")


def _phi_cdf(z):
    return 0.5 * (1 + torch.erf(z / math.sqrt(2)))


def _signs(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product((-1.0, 1.0), repeat=n)))


def _binary_out(layer: BinaryLinear, b: torch.Tensor) -> torch.Tensor:
    return layer.functional(b, binary_sign(layer.weight) * layer.weight_scale(), layer.bias)


def _exact_smoothed_gradients(model: TwoBinaryLayers, batch, sigmas: dict[str, float]):
    """d/dx of the mean smoothed loss by enumerating every binary state: for the first layer's
    input, noise on both layers; for the second's, on the second only. Differentiable through
    the probabilities P(b = s) = Phi(s x / sigma)."""
    inputs, labels = batch
    with torch.no_grad():
        x1 = model.stem(inputs)
        x2_clean = model.first(x1)
    states1, states2 = _signs(4), _signs(3)

    def second_layer_loss(x2, n):
        """E over the second layer's noise of example n's loss, for the second layer's input x2 [..., 3]."""
        probs = _phi_cdf(states2 * x2.unsqueeze(-2) / sigmas["second"]).prod(-1)           # [..., 8]
        logits = _binary_out(model.second, states2)                                          # [8, 2]
        losses = nn.functional.cross_entropy(logits, labels[n].expand(len(states2)), reduction="none")
        return (probs * losses).sum(-1)

    x1 = x1.clone().requires_grad_(True)
    total = 0
    for n in range(len(inputs)):
        probs1 = _phi_cdf(states1 * x1[n] / sigmas["first"]).prod(-1)                         # [16]
        with torch.no_grad():
            x2_given = _binary_out(model.first, states1)                                      # [16, 3]
        total = total + (probs1 * second_layer_loss(x2_given, n)).sum()
    (grad1,) = torch.autograd.grad(total / len(inputs), x1)

    x2 = x2_clean.clone().requires_grad_(True)
    total = sum(second_layer_loss(x2[n], n) for n in range(len(inputs)))
    (grad2,) = torch.autograd.grad(total / len(inputs), x2)
    return {"first": grad1.reshape(-1), "second": grad2.reshape(-1)}


@pytest.mark.parametrize("registered_backwards", [False, True])
def test_monte_carlo_reference_matches_the_enumerated_smoothed_gradient(registered_backwards):
    model = TwoBinaryLayers(registered_backwards=registered_backwards)
    g = torch.Generator().manual_seed(1)
    batch = (torch.randn(3, 3, generator=g), torch.tensor([0, 1, 1]))
    reference = smoothed_reference(model, batch, _cross_entropy, units=64, samples=4000, sigma=0.5, seed=3)
    exact = _exact_smoothed_gradients(model, batch, reference.sigmas)
    for name in ("first", "second"):
        units = reference.units[name]
        assert len(units) == exact[name].numel()  # every unit measured (fewer than ``units``)
        mc, se, truth = reference.values[name], reference.stderr[name], exact[name][units]
        # within its reported standard error (a unit whose difference does not depend on the
        # noise has se 0 and matches to rounding)
        assert ((mc - truth).abs() <= 4.5 * se + 1e-6 * truth.abs().max()).all(), (name, mc, truth, se)
        assert se.norm() < 0.1 * truth.norm(), name             # and that error is small
        assert truth.abs().max() > 0
    assert reference.relative_stderr("first") < 0.1


@dataclass
class GaussianSmoothedSign(ElementwiseEstimator):
    """Backward 2 phi(x / sigma) / sigma: the exact smoothed derivative of sign (test only)."""

    sigma: float = 1.0
    flip: bool = False

    name = "gaussian_smoothed_sign_test"

    @staticmethod
    def derivative(x, sigma, sign):
        return sign * 2 * torch.exp(-0.5 * (x / sigma) ** 2) / (math.sqrt(2 * math.pi) * sigma)

    def constants(self):
        return (self.sigma, -1.0 if self.flip else 1.0)


def test_an_estimator_equal_to_the_reference_scores_one_and_its_negation_minus_one():
    """With a loss linear in the layer's binary output, E[L(+1) - L(-1)] = 2 dL/db exactly, so
    the smoothed gradient is the layer's upstream gradient times 2 phi(x / sigma) / sigma."""
    g = torch.Generator().manual_seed(0)
    stem = nn.Linear(5, 8)
    layer = _binary_linear(8, 4, g)
    model = nn.Sequential(stem, layer)
    weights = torch.randn(4, generator=g)
    batch = (torch.randn(16, 5, generator=g),)

    def linear_loss(model_, batch_):
        return model_(batch_[0]) @ weights

    reference = smoothed_reference(model, batch, linear_loss, units=1000, samples=4, sigma=0.7)
    sigma = reference.sigmas["1"]
    for flip, expected in ((False, 1.0), (True, -1.0)):
        layer.estimator = GaussianSmoothedSign(sigma, flip)
        grads = estimator_gradients(model, batch, linear_loss)
        measures = gradient_measures(grads["1"][reference.units["1"]], reference.values["1"], reference.stderr["1"])
        assert measures["cosine"] == pytest.approx(expected, abs=1e-5)
        assert measures["sign_agreement"] == pytest.approx(1.0 if not flip else 0.0)
        assert measures["norm_ratio"] == pytest.approx(1.0, rel=1e-4)
    layer.estimator = build("ste")  # ungated: the same direction only where phi is flat, i.e. nowhere
    grads = estimator_gradients(model, batch, linear_loss)
    ste = gradient_measures(grads["1"][reference.units["1"]], reference.values["1"], reference.stderr["1"])
    assert 0 < ste["cosine"] < 0.999


def test_the_measured_gradient_is_the_layers_own_not_the_shortcuts():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Linear(4, 6)
            self.binary = _binary_linear(6, 6, torch.Generator().manual_seed(2), build("ste"))

        def forward(self, x):
            h = self.stem(x)
            return h + self.binary(h)

    model = Residual()
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(3))
    loss_of = lambda m, b: m(b[0]).pow(2).sum(1)  # noqa: E731
    grads = estimator_gradients(model, (x,), loss_of)

    h = model.stem(x).detach().requires_grad_(True)
    out = model.binary(h)
    upstream = 2 * (h.detach() + out.detach()) / len(x)   # d(mean loss)/d(output)
    (through_layer,) = torch.autograd.grad(out, h, upstream)
    torch.testing.assert_close(grads["binary"], through_layer.reshape(-1))


def test_measures_of_hand_made_vectors():
    reference = torch.tensor([1.0, -2.0, 0.0, 2.0])
    stderr = torch.zeros(4)
    same = gradient_measures(3 * reference, reference, stderr)
    assert same["cosine"] == pytest.approx(1.0)
    assert same["norm_ratio"] == pytest.approx(3.0)
    assert same["rel_error"] == pytest.approx(2.0)
    orthogonal = gradient_measures(torch.tensor([2.0, 1.0, 5.0, 0.0]), reference, stderr)
    assert orthogonal["cosine"] == pytest.approx(0.0)
    # the reference's noise: subtracted from the norm, never below zero in the error
    noisy = gradient_measures(reference, reference, torch.full((4,), 0.5))
    assert noisy["norm_ratio"] == pytest.approx(3.0 / math.sqrt(9.0 - 1.0))
    assert noisy["rel_error"] == 0.0
    assert noisy["sign_agreement"] == 1.0
    lost = gradient_measures(reference, reference, torch.full((4,), 10.0))
    assert lost["cosine"] is None and lost["sign_agreement"] is None


def test_weight_flip_and_gradient_stability_curves():
    from bench.engine import GradientStability, TrainState, WeightFlips

    layer = _binary_linear(4, 2, torch.Generator().manual_seed(0), build("ste"))
    model = nn.Sequential(layer)
    state = TrainState(model=model, optimizer=None, scheduler=None, epochs=1, total_steps=2)
    flips, stability = WeightFlips(), GradientStability()
    flips.before_epoch(state)
    stability.before_train(state)
    with torch.no_grad():
        layer.weight[0, :3] *= -1                      # 3 of 8 latent weights change sign
    grads = [torch.tensor([[1.0, -1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 4.0]]), torch.ones(2, 4)]
    for grad in grads:
        layer.weight.backward(grad)
    flips.after_epoch(state)
    stability.after_epoch(state)
    assert state.train_values["flip_ratio/0"] == pytest.approx(3 / 8)
    assert state.train_values["flip_ratio_mean"] == pytest.approx(3 / 8)
    expected = (grads[0].abs().var() + grads[1].abs().var()) / 2   # ReSTE's var(|g|), mean over steps
    assert state.train_values["grad_abs_var/0"] == pytest.approx(float(expected))
    stability.after_train(state)
    assert not layer.weight._backward_hooks


DIAGNOSE_TINY = ["--set", "epochs=2", "--set", "train_subset=128", "--set", "batch_size=64", "--set", "units=8",
                 "--set", "samples=4", "--set", "probe_batches=2", "--set", "probe_size=8", "--quiet"]


def _diagnose(tmp_path, *args):
    from bench.cli import main

    return main(["diagnose", "--task", "classification", "--db", f"sqlite:///{tmp_path}/bench.sqlite",
                 "--states-dir", str(tmp_path / "states"), "--checkpoint-dir", str(tmp_path / "checkpoints"),
                 *args])


def test_diagnose_lands_rows_the_report_shows_and_a_rerun_replaces(tmp_path, capsys):
    from bench.db import ResultsDB
    from bench.report import write_report

    assert _diagnose(tmp_path, "--estimator", "clipped_ste", "surge", "ste", *DIAGNOSE_TINY) == 0
    db = ResultsDB(f"sqlite:///{tmp_path}/bench.sqlite")
    runs = db.list_runs()
    assert [(r.estimator, r.status) for r in runs] == [("clipped_ste", "finished")]   # the shared state run
    state_dir = next((tmp_path / "states").iterdir())
    assert sorted(p.name for p in state_dir.iterdir()) == ["epoch_000.pt", "epoch_001.pt", "epoch_002.pt", "run_id"]
    assert (state_dir / "run_id").read_text().strip() == str(runs[0].id)
    frame = db.diagnostics_frame()
    layers = frame["layer"].nunique()
    assert layers == 18                                                   # ResNet-20's binarized convs
    assert len(frame) == 3 * 3 * layers * 2                               # estimators x points x layers x batches
    assert set(frame["epoch"]) == {0, 1, 2} and set(frame["state_run_id"]) == {runs[0].id}
    defined = frame["cosine"].dropna()       # none where 8 units x 4 draws leave the reference in its noise
    assert len(defined) > 0 and defined.between(-1, 1).all() and (frame["reference_rel_se"] > 0).all()
    curves = {c.name for c in db.get_run(runs[0].id).curves}
    assert {"flip_ratio_mean", "grad_abs_var_mean"} <= curves
    # SURGE at the start, on clipped_ste's weights with its auxiliary weights = W, differs from its base
    start = frame[frame["epoch"] == 0].set_index(["estimator", "layer", "probe_batch"])["norm_ratio"]
    assert (start.loc["surge"] - start.loc["clipped_ste"]).abs().max() > 0

    assert _diagnose(tmp_path, "--estimator", "clipped_ste", "surge", "ste", *DIAGNOSE_TINY) == 0
    assert len(db.diagnostics_frame()) == len(frame)                       # replaced, not added
    assert len(db.list_runs()) == 1                                       # the kept states were reused

    paths = write_report(db, tmp_path / "report", formats=["md"])
    text = (tmp_path / "report" / "results.md").read_text()
    assert "## Gradient diagnostics" in text and "cosine minus clipped_ste's" in text
    assert any(p.name.startswith("diagnostics_layers_") for p in paths)
    assert any(p.name.startswith("diagnostics_training_") for p in paths)


def test_diagnose_reruns_a_state_run_whose_states_are_gone(tmp_path, capsys):
    import shutil

    from bench.db import ResultsDB

    assert _diagnose(tmp_path, "--estimator", "ste", *DIAGNOSE_TINY) == 0
    shutil.rmtree(tmp_path / "states")
    assert _diagnose(tmp_path, "--estimator", "ste", *DIAGNOSE_TINY) == 0
    assert "kept no model states" in capsys.readouterr().err
    runs = ResultsDB(f"sqlite:///{tmp_path}/bench.sqlite").list_runs()
    assert [r.status for r in runs] == ["finished", "finished"]          # a forced rerun of the same config
    assert runs[0].config_hash == runs[1].config_hash


@pytest.mark.parametrize("args, expected", [
    (["--task", "detection"], "does not support task detection"),
    (["--estimator", "fp32"], "cannot diagnose fp32; valid choices: approx_sign"),
    (["--set", "units=0"], "units must be an integer >= 1"),
    (["--reference", "fp32"], "cannot diagnose fp32"),
    (["--run", "7"], "run 7 is not a finished run"),
])
def test_diagnose_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, expected):
    from bench.cli import main
    from bench.db import ResultsDB

    url = f"sqlite:///{tmp_path}/bench.sqlite"
    task = [] if "--task" in args else ["--task", "classification"]
    assert main(["diagnose", *task, "--db", url, "--states-dir", str(tmp_path / "states"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench: error:") and expected in err and "\n" not in err
    db = ResultsDB(url)
    assert db.list_runs() == [] and db.diagnostics_frame().empty


def test_own_mode_measures_each_estimator_on_its_own_runs_states(tmp_path, capsys):
    from bench.db import ResultsDB

    assert _diagnose(tmp_path, "--mode", "own", "--estimator", "ste", "reste", *DIAGNOSE_TINY) == 0
    db = ResultsDB(f"sqlite:///{tmp_path}/bench.sqlite")
    runs = {r.estimator: r.id for r in db.list_runs()}
    assert sorted(runs) == ["reste", "ste"]
    frame = db.diagnostics_frame()
    assert set(zip(frame["estimator"], frame["state_run_id"])) == {("ste", runs["ste"]), ("reste", runs["reste"])}
    assert set(frame["mode"]) == {"own"}


def test_diagnose_a_named_run_uses_its_kept_states_and_its_config(tmp_path, capsys):
    from bench.cli import main
    from bench.db import ResultsDB

    url = f"sqlite:///{tmp_path}/bench.sqlite"
    run = ["run", "--task", "classification", "--estimator", "reste", "--db", url, "--quiet", "--checkpoint-dir",
           str(tmp_path / "checkpoints"), "--states-dir", str(tmp_path / "states"), "--set", "epochs=2",
           "--set", "train_subset=128", "--set", "batch_size=64", "--set", "block=reactnet"]
    assert main(run) == 0                                         # no --keep-states: nothing kept
    assert _diagnose(tmp_path, "--run", "1", "--estimator", "ste", "--quiet") == 2
    assert "run 1 kept no model states" in capsys.readouterr().err
    assert main([*run, "--keep-states", "--force"]) == 0
    assert _diagnose(tmp_path, "--run", "2", "--estimator", "ste", "--set", "units=8", "--set", "samples=4",
                     "--set", "probe_batches=2", "--set", "probe_size=8", "--quiet") == 0
    frame = ResultsDB(url).diagnostics_frame()
    assert set(frame["state_run_id"]) == {2} and set(frame["estimator"]) == {"ste"}
    assert len(ResultsDB(url).list_runs()) == 2                   # the named run's states, nothing retrained
