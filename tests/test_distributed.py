"""bench run --gpus N: torchrun + DistributedDataParallel, tested on CPUs with the gloo backend."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.db import ResultsDB

ROOT = Path(__file__).resolve().parent.parent


def _bench(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_two_process_gloo_classification_run_lands_exactly_one_finished_row(tmp_path):
    db_url = f"sqlite:///{tmp_path}/ddp.sqlite"
    done = _bench("run", "--task", "classification", "--dataset", "digits", "--estimator", "surge", "--gpus", "2",
                  "--set", "epochs=2", "--set", "train_subset=256", "--set", "eval_subset=128", "--quiet",
                  "--db", db_url, "--checkpoint-dir", str(tmp_path / "checkpoints"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("finished:") == 1  # only rank 0 reports
    (run,) = ResultsDB(db_url).list_runs()
    full = ResultsDB(db_url).get_run(run.id)
    assert full.status == "finished" and full.provenance["device"] == "cpu x 2 processes"
    assert {c.epoch for c in full.curves} == {1, 2} and len(full.curves) == len({(c.epoch, c.name) for c in full.curves})


@pytest.mark.slow
def test_two_process_gloo_glue_run_lands_exactly_one_finished_row(tmp_path):
    pytest.importorskip("transformers")
    folder = tmp_path / "glue_data" / "SST-2"
    folder.mkdir(parents=True)
    for split, n in (("train", 64), ("dev", 16)):
        rows = ["sentence\tlabel"] + [f"{'a fine film' if i % 2 else 'a dull film'} {i}\t{i % 2}" for i in range(n)]
        (folder / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    db_url = f"sqlite:///{tmp_path}/ddp.sqlite"
    done = _bench("run", "--task", "glue", "--dataset", "sst2", "--data-root", str(tmp_path), "--estimator",
                  "clipped_ste", "--gpus", "2", "--epochs", "1", "--set", "num_hidden_layers=2", "--set", "val_size=16", "--set",
                  "batch_size=16", "--set", "max_seq_length=16", "--quiet", "--db", db_url,
                  "--checkpoint-dir", str(tmp_path / "checkpoints"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert [r.status for r in ResultsDB(db_url).list_runs()] == ["finished"]


def test_gpus_validates_before_launching(tmp_path, capsys):
    db_url = f"sqlite:///{tmp_path}/ddp.sqlite"
    assert main(["run", "--task", "classification", "--estimator", "sureg", "--gpus", "2", "--db", db_url]) == 2
    assert "unknown estimator 'sureg'" in capsys.readouterr().err
    assert main(["run", "--task", "classification", "--estimator", "ste", "--gpus", "0", "--db", db_url]) == 2
    assert "--gpus must be >= 1" in capsys.readouterr().err
