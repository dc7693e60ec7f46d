"""The bench path end to end: CLI -> run config -> task -> patched model -> database."""
import subprocess
import sys

import pytest
import torch
from sqlalchemy import create_engine, inspect, text

from bench.cli import main
from bench.config import build_config
from bench.db import ResultsDB

TINY = ["--dataset", "digits", "--epochs", "1", "--quiet",
        "--set", "train_subset=120", "--set", "eval_subset=60", "--set", "batch_size=40"]


@pytest.fixture
def db_url(tmp_path):
    return f"sqlite:///{tmp_path}/bench.sqlite"


def _bench(db_url, *args):
    return main(["run", "--task", "classification", "--db", db_url, *args])


def _row_count(db_url) -> int:
    engine = create_engine(db_url)
    if "runs" not in inspect(engine).get_table_names():
        return 0
    with engine.connect() as conn:
        return conn.execute(text("select count(*) from runs")).scalar_one()


def test_quick_runs_land_finished_rows_with_metrics(db_url, capsys):
    assert _bench(db_url, "--estimator", "clipped_ste", *TINY) == 0
    assert _bench(db_url, "--estimator", "surge", *TINY) == 0
    runs = ResultsDB(db_url).list_runs()
    assert [(r.estimator, r.status) for r in runs] == [("clipped_ste", "finished"), ("surge", "finished")]
    for run in runs:
        full = ResultsDB(db_url).get_run(run.id)
        metrics = {m.name: m for m in full.metrics}
        assert 0.0 <= metrics["top1"].value <= 100.0
        assert metrics["top1"].higher_is_better and metrics["top1"].primary
        assert not metrics["loss"].higher_is_better
        assert {c.name for c in full.curves} >= {"train_loss", "val_top1", "lr"}
        assert full.n_binary_params > 0 and full.binary_ops > 0 and full.train_step_ms > 0
        assert full.scope["scope"] == "standard" and "conv1" in full.scope["full_precision"]
        assert full.provenance["torch"] == torch.__version__
        assert full.finished_at >= full.started_at
    surge = ResultsDB(db_url).get_run(runs[1].id)
    assert "surge_lambda_mean" in {c.name for c in surge.curves}
    assert surge.config["estimator_hparams"]["eta"] == 0.1


def test_identical_run_is_skipped_and_force_reruns(db_url, capsys):
    assert _bench(db_url, "--estimator", "ste", *TINY) == 0
    capsys.readouterr()
    assert _bench(db_url, "--estimator", "ste", *TINY) == 0
    assert "skipped" in capsys.readouterr().out
    assert _row_count(db_url) == 1
    assert _bench(db_url, "--estimator", "ste", *TINY, "--force") == 0
    runs = ResultsDB(db_url).list_runs()
    assert len(runs) == 2 and runs[0].config_hash == runs[1].config_hash
    # a different seed is a different run
    assert _bench(db_url, "--estimator", "ste", *TINY, "--seed", "1") == 0
    assert _row_count(db_url) == 3


def test_forced_nan_marks_the_run_diverged(db_url, capsys):
    # valid values whose first update overflows the weights: w <- w (1 - lr * wd) = w (1 - 1e40)
    assert _bench(db_url, "--estimator", "clipped_ste", *TINY, "--set", "optimizer=sgd", "--set", "lr=1e20",
                  "--set", "weight_decay=1e20") == 1
    (run,) = ResultsDB(db_url).list_runs()
    assert run.status == "diverged"
    assert "not finite" in run.error or "nan" in run.error.lower()
    assert ResultsDB(db_url).get_run(run.id).metrics == []


@pytest.mark.parametrize("args, expected", [
    (["--task", "nope", "--estimator", "ste"], "unknown task 'nope'; valid choices: classification"),
    (["--task", "classification", "--estimator", "nope"], "valid choices: approx_sign, clipped_ste"),
    (["--task", "classification", "--estimator", "ste", "--dataset", "svhn"], "valid choices: fashion_mnist"),
    (["--task", "classification", "--estimator", "ste", "--preset", "huge"], "valid choices: quick, irnet, recu, reste, reactnet, bireal, paper"),
    (["--task", "classification", "--estimator", "ste", "--model", "vit"], "valid choices: resnet18_cifar"),
    (["--task", "classification", "--estimator", "surge", "--set", "etaa=1"], "valid keys:"),
    (["--task", "classification", "--estimator", "surge", "--set", "eta=-1"], "eta must be >= 0"),
    (["--task", "classification", "--estimator", "ste", "--set", "lr=fast"], "expected a float"),
    (["--task", "classification", "--estimator", "ste", "--set", "scope=most"], "valid choices: all, first_last"),
    (["--task", "classification", "--estimator", "ste", "--set", "optimizer=lion"], "valid choices: sgd, sgd_nesterov, adam, adamw"),
])
def test_bad_input_is_one_line_and_leaves_no_row(db_url, capsys, args, expected):
    assert main(["run", "--db", db_url, "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench: error:") and expected in err
    assert len(err.splitlines()) == 1
    assert _row_count(db_url) == 0


def test_missing_data_folder_names_the_fix(db_url, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["run", "--task", "classification", "--estimator", "ste", "--dataset", "cifar10",
                 "--data-root", str(empty), "--db", db_url])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cifar-10" in err.lower() and str(empty) in err
    assert _row_count(db_url) == 0


def test_unreachable_database_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(["run", "--task", "classification", "--estimator", "ste", *TINY,
                 "--db", f"sqlite:///{blocker}/sub/bench.sqlite"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench: error: cannot") and len(err.splitlines()) == 1


def test_config_hash_ignores_the_data_root_but_not_hyperparameters():
    a = build_config("classification", "surge", dataset="digits", data_root="/a")
    b = build_config("classification", "surge", dataset="digits", data_root="/b")
    c = build_config("classification", "surge", dataset="digits", sets=["eta=0.3"])
    assert a.hash() == b.hash() != c.hash()
    assert c.estimator_hparams["eta"] == 0.3 and isinstance(c.estimator_hparams["eta"], float)


def test_crash_is_recorded_as_failed(db_url, monkeypatch, capsys):
    from tasks.classification import task as classification_task

    def explode(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(classification_task.ClassificationTask, "load_data", explode)
    assert _bench(db_url, "--estimator", "ste", *TINY) == 1
    (run,) = ResultsDB(db_url).list_runs()
    assert run.status == "failed" and "RuntimeError: disk on fire" in run.error


def test_runs_show_list_and_report_commands(db_url, tmp_path, capsys):
    assert _bench(db_url, "--estimator", "fp32", *TINY) == 0
    capsys.readouterr()
    assert main(["runs", "--db", db_url]) == 0
    assert "finished" in capsys.readouterr().out
    assert main(["show", "1", "--db", db_url]) == 0
    shown = capsys.readouterr().out
    assert "top1" in shown and "provenance" in shown
    assert main(["show", "99", "--db", db_url]) == 2
    assert main(["report", "--db", db_url, "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "results.md").read_text().count("fp32") >= 1
    assert main(["list", "estimators"]) == 0
    assert "arXiv:2605.10989" in capsys.readouterr().out
    assert main(["list", "options"]) == 0
    rows = {tuple(line.split()[:2]): line for line in capsys.readouterr().out.splitlines()}
    assert "no (local)" in rows[("glue", "cache_dir")] and "yes" in rows[("classification", "num_workers")]


def test_console_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "bench", "list", "tasks"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "classification" in out.stdout


def test_a_reader_that_leaves_early_gets_no_traceback():
    # `true` reads nothing and exits at once: bench's first line meets a closed pipe
    out = subprocess.run(f"{sys.executable} -m bench list estimators | true", shell=True, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stderr == "", out.stderr
