"""``eval_steps``: evaluating every N optimizer steps (BiBERT's and BiT's ``eval_step``) as well as
after every epoch. It changes no weight and no last score, the best of all evaluations is kept
(mid-epoch ones included) with its epoch and step, a resumed run evaluates at the same steps, and
stored configs keep their hashes."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.api import RunContext
from bench.checkpoint import Checkpointer
from bench.config import RunConfig, build_config
from bench.db import ResultsDB
from bench.engine import StepOutput, evaluation_loader, fit
from bench.errors import Diverged, UserError
from bench.runner import execute, metric_direction
from bench.validation import check_values


class _Stop(Exception):
    pass


def _config(epochs: int, eval_steps: int = 0, lr: float = 0.5, **sets) -> RunConfig:
    values = {"optimizer": "sgd", "lr": lr, "momentum": 0, "schedule": "constant", "eval_steps": eval_steps, **sets}
    return build_config(task="classification", estimator="fp32", epochs=epochs,
                        sets=[f"{k}={v}" for k, v in values.items()])


# -- a weight that tells the step: w = w0 - 0.5 * step ------------------------------------------

def _line(tmp_path, epochs: int, eval_steps: int, validation=None, checkpoint=None, stop_at_step=None):
    """A 1-weight model, 4 one-example batches an epoch, each step moving the weight by -0.5.
    ``validation``: the val score as a function of the step the weight tells (None: no split)."""
    torch.manual_seed(0)
    model = nn.Linear(1, 1, bias=False)
    start = float(model.weight.detach())
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 1)), batch_size=1)
    calls = {"steps": 0, "validated": [], "tested": []}

    def step_of(m) -> int:
        return round((start - float(m.weight.detach())) / 0.5)

    def step(m, batch):
        calls["steps"] += 1
        if stop_at_step is not None and calls["steps"] == stop_at_step:
            raise _Stop
        return StepOutput(m.weight.sum(), 1)

    def evaluate(m):
        calls["tested"].append(step_of(m))
        return {"top1": float(-step_of(m))}  # the earlier the better (a test-only run picks by it)

    def validate(m):
        if validation is None:
            return None
        calls["validated"].append(step_of(m))
        return {"val_top1": validation(step_of(m))}

    context = RunContext(quiet=True, checkpoint=checkpoint or Checkpointer(None))
    result = fit(model, _config(epochs, eval_steps), data, step, evaluate, context, "test", primary="top1",
                 validate=validate)
    return result.scores, calls


def test_every_nth_step_is_evaluated_and_the_epoch_ends_too_once_each(tmp_path):
    scores, calls = _line(tmp_path, epochs=3, eval_steps=3, validation=lambda s: float(s))
    assert calls["validated"] == [3, 4, 6, 8, 9, 12]  # 3, 6, 9 mid-epoch; 12 is epoch 3's end: once
    assert calls["tested"] == [12]  # the best is the last: the test split once, at the end
    assert scores["best_val_step"] == 12 and scores["best_val_epoch"] == 3


def test_eval_steps_0_evaluates_at_epoch_ends_only_and_stores_no_step(tmp_path):
    scores, calls = _line(tmp_path, epochs=2, eval_steps=0, validation=lambda s: float(s))
    assert calls["validated"] == [4, 8]
    assert "best_val_step" not in scores and "best_test_step" not in scores


def test_the_best_evaluation_may_fall_mid_epoch_and_the_test_split_scores_its_weights(tmp_path):
    # steps 3 (mid epoch 1), 4 (end), 6 (mid epoch 2: the best, in the last epoch), 8 (the last)
    script = {3: 50.0, 4: 60.0, 6: 70.0, 8: 65.0}
    scores, calls = _line(tmp_path, epochs=2, eval_steps=3, validation=script.__getitem__)
    assert calls["validated"] == [3, 4, 6, 8]
    assert calls["tested"] == [8, 6]  # the last weights, then the best evaluation's (mid-epoch)
    assert scores["val_top1@best_val"] == 70.0 and scores["top1@best_val"] == -6.0
    assert scores["best_val_epoch"] == 2 and scores["best_val_step"] == 6
    assert scores["val_top1"] == 65.0 and scores["top1"] == -8.0


def test_without_a_validation_split_the_best_test_evaluation_keeps_its_step(tmp_path):
    scores, calls = _line(tmp_path, epochs=1, eval_steps=2, validation=None)
    assert calls["tested"] == [2, 4]  # one epoch, two evaluations: a selection
    assert scores["top1"] == -4.0 and scores["top1@best_test"] == -2.0
    assert scores["best_test_epoch"] == 1 and scores["best_test_step"] == 2


def test_a_non_finite_mid_epoch_score_is_a_divergence(tmp_path):
    with pytest.raises(Diverged, match="evaluation val_top1 is nan.*step 2"):
        _line(tmp_path, epochs=1, eval_steps=2, validation=lambda s: math.nan if s == 2 else 1.0)


def test_a_resumed_run_evaluates_at_the_same_steps_and_keeps_the_mid_epoch_best(tmp_path):
    """Checkpoints are at epoch ends: stopped in epoch 2, the rerun goes on from epoch 1's, whose
    extra holds the best evaluation so far (step 3, mid epoch 1) and its weights."""
    script = {3: 70.0, 4: 60.0, 6: 50.0, 8: 65.0}
    whole, whole_calls = _line(tmp_path, epochs=2, eval_steps=3, validation=script.__getitem__,
                               checkpoint=Checkpointer(tmp_path / "whole"))
    assert whole["best_val_step"] == 3 and whole["top1@best_val"] == -3.0 and whole_calls["tested"] == [8, 3]
    folder = tmp_path / "checkpoint"
    with pytest.raises(_Stop):  # epoch 2's third step, after its mid-epoch evaluation at step 6
        _line(tmp_path, epochs=2, eval_steps=3, validation=script.__getitem__, checkpoint=Checkpointer(folder),
              stop_at_step=7)
    assert torch.load(folder / "last.pt", weights_only=True)["epoch"] == 1
    resumed, calls = _line(tmp_path, epochs=2, eval_steps=3, validation=script.__getitem__,
                           checkpoint=Checkpointer(folder))
    assert calls["validated"] == [6, 8] and calls["tested"] == [8, 3]
    assert resumed == whole


# -- dropout, batch norm and a shuffled loader: the training's random numbers -------------------

def _noisy(tmp_path, epochs: int, eval_steps: int, with_validation: bool = True, checkpoint=None, stop_at_step=None):
    """An MLP with batch norm and dropout on shuffled batches (the loader's own generator, dropout
    the global one), scored on evaluation loaders: weights, last scores and the global RNG after."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 6, generator=gen), torch.randint(0, 3, (40,), generator=gen)
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    config = _config(epochs, eval_steps, lr=0.1)
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:30], y[:30]), batch_size=4, shuffle=True,
                                        generator=torch.Generator().manual_seed(config.seed))
    held_out = {"val": evaluation_loader(torch.utils.data.TensorDataset(x[30:35], y[30:35]), batch_size=2),
                "test": evaluation_loader(torch.utils.data.TensorDataset(x[35:], y[35:]), batch_size=2)}
    steps = {"n": 0}

    def step(m, batch):
        steps["n"] += 1
        if steps["n"] == stop_at_step:
            raise _Stop
        assert m.training  # back in train mode after a mid-epoch evaluation: dropout on, batch norm learning
        images, labels = batch
        return StepOutput(F.cross_entropy(m(images), labels), len(labels))

    @torch.inference_mode()
    def loss_on(m, split: str) -> float:
        m.eval()
        return sum(float(F.cross_entropy(m(a), b, reduction="sum")) for a, b in held_out[split])

    context = RunContext(quiet=True, checkpoint=checkpoint or Checkpointer(None))
    result = fit(model, config, train, step, lambda m: {"top1": -loss_on(m, "test")}, context, "test",
                 primary="top1", validate=(lambda m: {"val_top1": -loss_on(m, "val")}) if with_validation else None)
    return model, result.scores, torch.get_rng_state()


def _last(scores: dict) -> dict:
    return {k: v for k, v in scores.items() if "best" not in k}


@pytest.mark.parametrize("with_validation", [True, False])
def test_mid_epoch_evaluations_change_no_weight_no_last_score_and_no_random_number(tmp_path, with_validation):
    plain, plain_scores, plain_rng = _noisy(tmp_path, 3, 0, with_validation)
    model, scores, rng = _noisy(tmp_path, 3, 3, with_validation)  # 8 steps an epoch: mid-epoch at 3, 6, 9, ...
    for (key, a), b in zip(plain.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), key
    assert _last(scores) == _last(plain_scores) and torch.equal(rng, plain_rng)
    best = "best_val_step" if with_validation else "best_test_step"
    assert best in scores and best not in plain_scores


def test_a_resumed_run_with_eval_steps_is_bit_identical_to_an_uninterrupted_one(tmp_path):
    whole, whole_scores, _ = _noisy(tmp_path, 3, 3, checkpoint=Checkpointer(tmp_path / "whole"))
    folder = tmp_path / "checkpoint"
    with pytest.raises(_Stop):  # epoch 2's seventh step: after its mid-epoch evaluations at 9 and 12
        _noisy(tmp_path, 3, 3, checkpoint=Checkpointer(folder), stop_at_step=15)
    assert torch.load(folder / "last.pt", weights_only=True)["epoch"] == 1
    resumed, scores, _ = _noisy(tmp_path, 3, 3, checkpoint=Checkpointer(folder))
    assert scores == whole_scores and "best_val_step" in scores
    for (key, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), key


# -- a family run end to end ---------------------------------------------------------------------

def _digits_run(tmp_path, eval_steps: int):
    config = build_config("classification", "surge", dataset="digits", epochs=2, seed=0,
                          sets=["train_subset=160", "eval_subset=64", "batch_size=32", "val_size=100",
                                f"eval_steps={eval_steps}"])
    db = ResultsDB(f"sqlite:///{tmp_path}/eval_steps{eval_steps}.sqlite")
    outcome = execute(config, db, quiet=True, device="cpu", checkpoint_dir=str(tmp_path / f"ck{eval_steps}"))
    assert outcome.status == "finished", outcome.error
    run = db.get_run(outcome.run_id)
    return ({m.name: m for m in run.metrics},
            {(c.epoch, c.name): c.value for c in run.curves})


def test_a_classification_run_stores_the_same_last_scores_and_curves_and_the_best_step(tmp_path):
    plain, plain_curves = _digits_run(tmp_path, 0)
    metrics, curves = _digits_run(tmp_path, 2)  # 5 steps an epoch: mid-epoch at 2, 4, 6, 8
    assert {k: m.value for k, m in metrics.items() if "best" not in k} == \
           {k: m.value for k, m in plain.items() if "best" not in k}
    assert curves == plain_curves
    assert "best_val_step" not in plain and metrics["best_val_step"].higher_is_better
    assert metrics["best_val_step"].value in (2, 4, 5, 6, 8, 10)
    assert metrics["best_val_epoch"].value == (1 if metrics["best_val_step"].value <= 5 else 2)
    assert metrics["val_top1@best_val"].value >= plain["val_top1@best_val"].value  # more evaluations to pick from


def test_a_glue_run_with_dropout_trains_the_same_with_eval_steps(tmp_path):
    pytest.importorskip("transformers")
    values = {}
    for eval_steps in (0, 2):
        config = build_config("glue", "ede", dataset="vader_sst2", seed=1, epochs=2,
                              sets=["train_subset=64", "eval_subset=32", "batch_size=16", "max_seq_length=32",
                                    "num_hidden_layers=1", "val_size=32", f"eval_steps={eval_steps}"])
        db = ResultsDB(f"sqlite:///{tmp_path}/glue{eval_steps}.sqlite")
        outcome = execute(config, db, quiet=True, device="cpu", checkpoint_dir=str(tmp_path / f"ck{eval_steps}"))
        assert outcome.status == "finished", outcome.error
        values[eval_steps] = {m.name: m.value for m in db.get_run(outcome.run_id).metrics}
    assert {k: v for k, v in values[2].items() if "best" not in k} == \
           {k: v for k, v in values[0].items() if "best" not in k}
    assert "best_val_step" in values[2] and "best_val_step" not in values[0]


# -- the config ----------------------------------------------------------------------------------

def test_eval_steps_0_keeps_every_stored_hash_and_n_is_a_new_run():
    plain = build_config("classification", "surge", dataset="digits")
    assert plain.eval_steps == 0
    assert "eval_steps" not in plain.identity()
    stored = {k: v for k, v in plain.to_dict().items() if k != "eval_steps"}  # a config of before the field
    assert RunConfig.from_dict(stored).hash() == plain.hash() == \
           build_config("classification", "surge", dataset="digits", sets=["eval_steps=0"]).hash()
    assert build_config("classification", "surge", dataset="digits", sets=["eval_steps=50"]).hash() != plain.hash()


@pytest.mark.parametrize("raw, message", [
    ("-1", "eval_steps must be an integer >= 0, got -1"),
    ("1.5", "--set eval_steps='1.5': expected an integer"),
    ("ten", "--set eval_steps='ten': expected an integer"),
])
def test_eval_steps_must_be_an_integer_of_at_least_0(raw, message):
    with pytest.raises(UserError) as error:
        build_config("classification", "surge", sets=[f"eval_steps={raw}"])
    assert str(error.value) == message


@pytest.mark.parametrize("value", [True, 2.5, None, -3])
def test_a_config_from_elsewhere_with_a_bad_eval_steps_is_refused(value):
    from bench.plugins import get_task

    config = dataclasses.replace(build_config("classification", "surge"), eval_steps=value)
    with pytest.raises(UserError, match="eval_steps must be an integer >= 0"):
        check_values(config, get_task("classification"))


def test_a_family_with_a_loop_of_its_own_refuses_eval_steps(monkeypatch):
    pytest.importorskip("mmengine")
    with pytest.raises(UserError, match="eval_steps 5: task detection trains with mmengine's Runner, not "
                                        "bench.engine.fit: its val loop runs at epoch ends only"):
        build_config("detection", "clipped_ste", sets=["eval_steps=5"])
    assert build_config("detection", "clipped_ste", sets=["eval_steps=0"]).eval_steps == 0

    from bench.plugins import TASKS, get_task

    class OwnLoop(type(get_task("classification"))):
        name = "own_loop"

        def run(self, config, context):  # pragma: no cover - never reached
            raise AssertionError

    monkeypatch.setitem(TASKS._entries, "own_loop", OwnLoop())
    with pytest.raises(UserError, match="task own_loop trains with a loop of its own, not bench.engine.fit"):
        build_config("own_loop", "surge", sets=["eval_steps=5"])


def test_the_runner_knows_the_direction_of_the_best_steps():
    assert metric_direction("best_val_step", []) and metric_direction("best_test_step", [])


def test_the_cli_sets_and_lists_eval_steps(capsys):
    from bench.cli import main

    assert main(["list", "options"]) == 0
    assert "eval_steps" in capsys.readouterr().out
