"""A new family is a thin folder: the README's recipe (tests/toy_family.py) runs through
``bench run``, lands a finished row with its metric, and appears in the report."""
import pytest

from bench.cli import main
from bench.db import ResultsDB
from bench.plugins import TASKS, load_task_plugins
from bench.report import build_tables, render_markdown_table
from toy_family import ToyTask


@pytest.fixture
def toy():
    load_task_plugins()
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(TASKS._entries, "toy", ToyTask())  # registered for this test only
        yield


def test_a_metric_name_nobody_registered_is_refused_before_any_row(toy, tmp_path, capsys, monkeypatch):
    from bench.api import MetricSpec

    monkeypatch.setattr(ToyTask, "metric_specs", lambda self, dataset: [MetricSpec("toy_acuracy")])
    db_url = f"sqlite:///{tmp_path}/toy.sqlite"
    assert main(["run", "--task", "toy", "--estimator", "ste", "--db", db_url, "--quiet"]) == 2
    assert "toy_acuracy, which names no registered metric" in capsys.readouterr().err
    assert ResultsDB(db_url).list_runs() == []


def test_a_toy_family_runs_through_bench_run_and_appears_in_the_report(toy, tmp_path, capsys):
    db_url = f"sqlite:///{tmp_path}/toy.sqlite"
    for estimator in ("clipped_ste", "surge"):
        assert main(["run", "--task", "toy", "--estimator", estimator, "--db", db_url, "--quiet",
                     "--checkpoint-dir", str(tmp_path / "checkpoints")]) == 0
    db = ResultsDB(db_url)
    runs = [db.get_run(run.id) for run in db.list_runs()]
    assert [(r.task, r.estimator, r.status) for r in runs] == [("toy", "clipped_ste", "finished"),
                                                               ("toy", "surge", "finished")]
    for run in runs:
        # the last epoch's score, and (3 epochs, each scored on the test split) the best epoch's
        metrics = {m.name: m for m in run.metrics}
        assert set(metrics) == {"toy_accuracy", "toy_accuracy@best_test", "best_test_epoch"}
        metric = metrics["toy_accuracy"]
        assert metrics["toy_accuracy@best_test"].value >= metric.value
        assert metric.name == "toy_accuracy" and metric.primary and metric.higher_is_better
        assert 0.0 <= metric.value <= 100.0
        assert run.scope["binarized"] == ["0", "2"] and run.n_binary_params == 2 * 32 + 32 * 32
        assert sorted({c.epoch for c in run.curves}) == [1, 2, 3]
    assert any(c.name == "surge_lambda_mean" for c in runs[1].curves)
    results = next(t for t in build_tables(db) if t.task == "toy" and t.kind == "results")
    assert results.rows == ["clipped_ste", "surge"] and results.columns == ["quadrants / mlp"]
    assert "toy_accuracy (higher is better)" in render_markdown_table(results)
