"""How tests/data/identity_rule1.sqlite was written: with the code of commit 36a2a7c (identity rule 1),
``git worktree add /tmp/rule1 36a2a7c && cd /tmp/rule1 && PYTHONPATH=. python <this file> OUT`` (the checkpoint
it also writes is not kept: the test makes its own, the file format is unchanged)."""
import shutil, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
out = Path(sys.argv[1]); shutil.rmtree(out, ignore_errors=True); out.mkdir(parents=True)
from bench.cli import main
from bench.config import build_config
from bench.db import ResultsDB
from bench.task_api import Reporter
db_url = f"sqlite:///{out}/results.sqlite"
common = ["--task", "classification", "--dataset", "digits", "--epochs", "2", "--quiet", "--db", db_url,
          "--set", "train_subset=96", "--set", "eval_subset=48", "--set", "batch_size=32",
          "--checkpoint-dir", str(out / "checkpoints")]
# 1. a finished run with one loader worker
assert main(["run", "--estimator", "ste", "--set", "num_workers=1", *common]) == 0
# 2. an interrupted run (Ctrl-C after its epoch-1 checkpoint), resumable
original = Reporter.save
def save_then_stop(self, *a, **k):
    original(self, *a, **k)
    raise KeyboardInterrupt
Reporter.save = save_then_stop
assert main(["run", "--estimator", "surge", *common]) == 130
Reporter.save = original
# 3. a finished detection row as the old code recorded it (option "workers"), metrics written directly
config = build_config(task="detection", estimator="clipped_ste", sets=["workers=3"])
db = ResultsDB(db_url)
run_id = db.start_run(config_hash=config.hash(), config=config.to_dict(), task="detection", task_version="1",
                      dataset=config.dataset, model=config.model, estimator="clipped_ste", preset="quick", seed=0,
                      provenance={"host": "elsewhere"})
db.finish_run(run_id, "finished", metrics=[dict(name="bbox_mAP", value=12.5, higher_is_better=True, primary=True)])
for run in db.list_runs():
    print(run.id, run.task, run.estimator, run.status, run.config_hash[:12])
