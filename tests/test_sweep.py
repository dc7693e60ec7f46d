"""bench sweep: grid expansion, skipping finished runs, isolated failures, executors, bad input."""
import os

import pytest

from bench import sweep
from bench.cli import main
from bench.db import ResultsDB

TINY = ["--set", "epochs=1", "--set", "train_subset=128", "--set", "eval_subset=64", "--set", "batch_size=64"]


@pytest.fixture
def paths(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return dict(db=f"sqlite:///{tmp_path}/sweep.sqlite", checkpoints=str(tmp_path / "checkpoints"),
                logs=str(tmp_path / "logs"), root=tmp_path)


def _sweep(paths, *args):
    return main(["sweep", "--task", "classification", "--dataset", "digits", "--quiet", "--db", paths["db"],
                 "--checkpoint-dir", paths["checkpoints"], "--log-dir", paths["logs"], *TINY, *args])


def test_grid_expansion_applies_hyperparameters_only_to_estimators_that_have_them():
    grid = sweep.grid_from({}, ["classification"], ["digits"], [], ["clipped_ste", "surge"], [0, 1], None,
                           ["eta=0.1,0.2", "epochs=1"], None)
    configs = sweep.expand(grid)
    assert sorted((c.estimator, c.estimator_hparams.get("eta"), c.seed) for c in configs) == [
        ("clipped_ste", None, 0), ("clipped_ste", None, 1),
        ("surge", 0.1, 0), ("surge", 0.1, 1), ("surge", 0.2, 0), ("surge", 0.2, 1)]
    assert all(c.epochs == 1 for c in configs) and len({c.hash() for c in configs}) == 6


def test_grid_file_yaml_and_toml_give_the_same_configs(tmp_path):
    (tmp_path / "grid.yaml").write_text(
        "tasks: [classification]\ndatasets: [digits]\nestimators: [ste, surge]\nseeds: [0, 2]\n"
        "set:\n  eta: [0.5]\n  epochs: 2\n")
    (tmp_path / "grid.toml").write_text(
        'tasks = ["classification"]\ndatasets = ["digits"]\nestimators = ["ste", "surge"]\nseeds = [0, 2]\n'
        "[set]\neta = [0.5]\nepochs = 2\n")
    hashes = []
    for name in ("grid.yaml", "grid.toml"):
        values = sweep.load_grid_file(str(tmp_path / name))
        grid = sweep.grid_from(values, [], [], [], [], [], None, [], None)
        hashes.append(sorted(c.hash() for c in sweep.expand(grid)))
    assert hashes[0] == hashes[1] and len(hashes[0]) == 4


@pytest.mark.slow
@pytest.mark.parametrize("isolation, processes", [("pool", 2), ("process", 4)])
def test_sweep_runs_on_two_workers_and_a_second_sweep_executes_nothing(paths, capsys, isolation, processes):
    args = ["--estimator", "clipped_ste", "surge", "--seeds", "0", "1", "--jobs", "2", "--isolation", isolation]
    assert _sweep(paths, *args) == 0
    runs = ResultsDB(paths["db"]).list_runs()
    assert sorted((r.estimator, r.seed, r.status) for r in runs) == [
        ("clipped_ste", 0, "finished"), ("clipped_ste", 1, "finished"),
        ("surge", 0, "finished"), ("surge", 1, "finished")]
    # two long-lived workers, or a process per run
    assert len({r.provenance["pid"] for r in runs}) == processes
    assert all(r.startup_s is not None and r.teardown_s is not None for r in runs)
    capsys.readouterr()
    assert _sweep(paths, *args) == 0
    assert "4 configs, 4 already finished, 0 to run" in capsys.readouterr().out
    assert len(ResultsDB(paths["db"]).list_runs()) == 4


@pytest.mark.slow
def test_one_failing_run_leaves_the_others_finished(paths, capsys):
    # A CIFAR-10 folder whose files are all there but corrupt passes the data check (the
    # files exist) and fails when the run reads them; digits ignores the data root.
    folder = paths["root"] / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).write_bytes(b"not a pickle")
    code = main(["sweep", "--task", "classification", "--dataset", "digits", "cifar10", "--quiet",
                 "--db", paths["db"], "--checkpoint-dir", paths["checkpoints"], "--log-dir", paths["logs"], *TINY,
                 "--estimator", "clipped_ste", "surge", "--data-root", str(paths["root"] / "data"), "--jobs", "2"])
    assert code == 1
    runs = {(r.estimator, r.dataset): r for r in ResultsDB(paths["db"]).list_runs()}
    assert len(runs) == 4
    for estimator in ("clipped_ste", "surge"):
        assert runs[(estimator, "digits")].status == "finished"
        failed = runs[(estimator, "cifar10")]
        assert failed.status == "failed" and "data_batch_1" in failed.error and "\n" not in failed.error
    assert "failed:" in capsys.readouterr().err


@pytest.mark.slow
def test_submitit_local_executor_runs_the_slurm_code_path(paths):
    assert _sweep(paths, "--estimator", "ste", "--seeds", "0", "1", "--executor", "submitit-local") == 0
    runs = ResultsDB(paths["db"]).list_runs()
    assert [(r.seed, r.status) for r in sorted(runs, key=lambda r: r.seed)] == [(0, "finished"), (1, "finished")]
    assert any((paths["root"] / "logs" / "submitit").iterdir())


@pytest.mark.parametrize("case, extra, expected", [
    ("bad grid file", ["--grid", "GRID"], "is not valid YAML"),
    ("unknown grid key", ["--grid", "KEYS"], "unknown key(s) estimator; valid keys"),
    ("missing grid file", ["--grid", "/nonexistent/grid.yaml"], "grid file not found"),
    ("unknown executor", ["--estimator", "ste", "--executor", "kubernetes"], "unknown executor 'kubernetes'; valid"),
    ("unknown isolation", ["--estimator", "ste", "--isolation", "thread"], "unknown isolation 'thread'; valid choices: pool, process"),
    ("no runs per worker", ["--estimator", "ste", "--recycle-after", "0"], "--recycle-after must be >= 1"),
    ("negative timeout", ["--estimator", "ste", "--run-timeout", "-5"], "--run-timeout must be > 0 seconds"),
    ("bad Slurm option", ["--estimator", "ste", "--executor", "slurm", "--slurm", "partitio=gpu"],
     "unknown Slurm option 'partitio'; valid options: job_name, partition"),
    ("unknown estimator", ["--estimator", "sureg"], "unknown estimator 'sureg'; valid choices"),
    ("unreachable database", ["--estimator", "ste", "--db", "postgresql+psycopg://bench@127.0.0.1:1/none"],
     "cannot open database"),
    ("unwritable results folder", ["--estimator", "ste", "--checkpoint-dir", "FILE/checkpoints"],
     "checkpoint folder: cannot write under"),
])
def test_bad_sweep_input_is_one_line_and_leaves_no_row(paths, capsys, case, extra, expected):
    (paths["root"] / "grid.yaml").write_text("tasks: [classification\nestimators: [ste]\n")
    (paths["root"] / "keys.yaml").write_text("tasks: [classification]\nestimator: [ste]\n")
    (paths["root"] / "a_file").write_text("not a folder")
    replace = {"GRID": str(paths["root"] / "grid.yaml"), "KEYS": str(paths["root"] / "keys.yaml"),
               "FILE/checkpoints": str(paths["root"] / "a_file" / "checkpoints")}
    extra = [replace.get(a, a) for a in extra]
    args = ["sweep", "--task", "classification", "--dataset", "digits", "--quiet", "--log-dir", paths["logs"],
            *TINY, *extra]
    if "--db" not in extra:
        args += ["--db", paths["db"]]
    if "--checkpoint-dir" not in extra:
        args += ["--checkpoint-dir", paths["checkpoints"]]
    assert main(args) == 2, case
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench: error: ") and "\n" not in err and expected in err, err
    if os.path.exists(str(paths["root"] / "sweep.sqlite")):
        assert ResultsDB(paths["db"]).list_runs() == []
