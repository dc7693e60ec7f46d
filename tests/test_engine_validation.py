"""The engine's validation protocol: every epoch scored on the validation split, the best one
chosen there, and the test split scored only once training is over, on the last weights and on
the best epoch's."""
import torch

from bench.api import RunContext
from bench.checkpoint import Checkpointer
from bench.config import build_config
from bench.engine import StepOutput, fit


def _fit(tmp_path, validation_scores, checkpoint=None):
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1, bias=False)
    config = build_config(task="classification", estimator="fp32", epochs=len(validation_scores),
                          sets=["optimizer=sgd", "lr=0.5", "momentum=0", "schedule=constant"])
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 1)), batch_size=4)
    tested, epoch = [], iter(range(len(validation_scores)))

    def step(m, batch):  # every step moves the weight by -0.5: the weight tells the epoch
        return StepOutput(m.weight.sum(), 4)

    def evaluate(m):
        tested.append(float(m.weight.detach()))
        return {"top1": float(m.weight.detach())}

    def validate(m):
        return {"val_top1": validation_scores[next(epoch)]}

    context = RunContext(quiet=True, checkpoint=checkpoint or Checkpointer(None))
    result = fit(model, config, data, step, evaluate, context, "test", primary="top1", validate=validate)
    return model, result.scores, tested


def test_the_test_split_is_scored_once_at_the_end_on_the_last_and_the_best_weights(tmp_path):
    model, scores, tested = _fit(tmp_path, [50.0, 70.0, 60.0, 65.0])
    start = float(model.weight) + 4 * 0.5
    assert tested == [start - 2.0, start - 1.0]                # last epoch's weights, then the best (epoch 2)
    assert scores["best_val_epoch"] == 2 and scores["val_top1@best_val"] == 70.0
    assert scores["top1@best_val"] == start - 1.0 and scores["top1"] == start - 2.0 == float(model.weight)
    assert scores["val_top1"] == 65.0


def test_when_the_last_epoch_is_the_best_the_test_split_is_scored_once(tmp_path):
    _, scores, tested = _fit(tmp_path, [50.0, 60.0])
    assert len(tested) == 1 and scores["top1@best_val"] == scores["top1"] and scores["best_val_epoch"] == 2


def test_without_a_validation_split_every_epoch_is_scored_on_the_test_split(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1, bias=False)
    config = build_config(task="classification", estimator="fp32", epochs=3, sets=["optimizer=sgd", "lr=0.5"])
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 1)), batch_size=4)
    tested = []
    result = fit(model, config, data, lambda m, b: StepOutput(m.weight.sum(), 4),
                 lambda m: tested.append(1) or {"top1": 1.0}, RunContext(quiet=True), "test", primary="top1",
                 validate=lambda m: None)
    # the last epoch's scores, and those of the epoch best on the test split (the first of equals)
    assert len(tested) == 3 and set(result.scores) == {"top1", "top1@best_test", "best_test_epoch"}
    assert result.scores["best_test_epoch"] == 1.0


def test_a_resumed_run_keeps_the_best_epoch_and_its_weights(tmp_path):
    """Stopped after its last epoch's checkpoint, the rerun scores the best epoch's weights as the
    uninterrupted run does: they travel in the checkpoint."""
    folder = tmp_path / "checkpoint"
    _, whole, _ = _fit(tmp_path, [50.0, 70.0, 60.0], Checkpointer(folder))
    assert (folder / "last.pt").exists()
    _, resumed, tested = _fit(tmp_path, [50.0, 70.0, 60.0], Checkpointer(folder))
    assert resumed == whole and len(tested) == 1  # only the best epoch's weights left to score


def test_scoring_a_split_draws_no_random_number_of_the_training():
    """Evaluation loaders have their own generator: evaluating cannot move the augmentation or
    dropout of the epochs after it, so a run's result does not depend on how often it is scored."""
    from bench.engine import evaluation_loader

    loader = evaluation_loader(torch.utils.data.TensorDataset(torch.arange(10.0)), batch_size=4)
    before = torch.get_rng_state()
    assert [len(b[0]) for b in loader] == [4, 4, 2]
    assert torch.equal(before, torch.get_rng_state())
    plain = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.arange(10.0)), batch_size=4)
    list(plain)
    assert not torch.equal(before, torch.get_rng_state())  # what a plain DataLoader does
