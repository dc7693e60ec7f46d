"""Where the wall time of one quick run goes, per task family.

Each family's run (the quick preset, its default data set and model) executes in a fresh
``python`` process, the way ``bench run`` or a one-process-per-run sweep worker starts, through
the ordinary runner into a throw-away database. Every second of the process is given to exactly
one phase (the innermost one running):

    start-up         interpreter start and imports, until the run's config is built
    checks           config and data checks before the run claims its row
    database         every call into bench.db.ResultsDB (claim, curves, heartbeats, close)
    load data        the family's load_data / data build
    build model      model construction, binarization, the parameter and OP count
    prepare          what a family builds before training (GLUE's teacher, detection's
                     full-precision pre-training: cached after their first run)
    batches          fetching batches from a DataLoader (training and evaluation)
    train step       forward, loss, backward and optimizer step
    evaluation       the evaluations after each epoch (but their batches)
    checkpointing    saving (and verifying) the run's checkpoint
    other            the rest (the engine's hooks, logging, Python between the phases)

Usage (from the repository root)::

    python benchmarks/run_profile.py --out reports/run_profile.md
    python benchmarks/run_profile.py --families classification --estimator surge

Run it twice to see the warm case: the GLUE teacher and the detection pre-training are cached
(in $BENCH_CACHE) by their first run, and the fused surrogate kernels by torch.compile.
"""
from __future__ import annotations

import time

_PROCESS_STARTED = time.time()  # before the heavy imports: they are start-up

import argparse  # noqa: E402
import datetime  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Optional  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if not __package__:  # run as a file: make the repository root importable
    sys.path.insert(0, str(ROOT))

from benchmarks.output import publish  # noqa: E402

FAMILIES = ("classification", "glue", "detection")
PHASES = ("start-up", "checks", "database", "load data", "build model", "prepare", "batches", "train step",
          "evaluation", "checkpointing", "other")


_INHERITED = object()  # a wrapped attribute that its owner only inherited


class PhaseClock:
    """Exclusive wall time per phase: nested phases pause the one they interrupt."""

    def __init__(self, started: float) -> None:
        self.totals = {phase: 0.0 for phase in PHASES}
        self.stack = ["other"]
        self.since = started
        self._undo: list[tuple] = []

    def _switch(self, now: float) -> None:
        self.totals[self.stack[-1]] += now - self.since
        self.since = now

    def enter(self, phase: str) -> None:
        self._switch(time.time())
        # "prepare" is opaque: the teacher's or pre-trained detector's own steps, batches and
        # evaluations are preparation, not the run's training
        self.stack.append("prepare" if self.stack[-1] == "prepare" else phase)

    def leave(self) -> None:
        self._switch(time.time())
        self.stack.pop()

    def wrap(self, owner, name: str, phase: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            self.enter(phase)
            try:
                return original(*args, **kwargs)
            finally:
                self.leave()

        own = vars(owner).get(name, _INHERITED)
        self._undo.append((owner, name, own))
        setattr(owner, name, staticmethod(timed) if isinstance(own, staticmethod) else timed)

    def restore(self) -> None:
        """Take every wrapper off again (last first)."""
        for owner, name, original in reversed(self._undo):
            if original is _INHERITED:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        self._undo.clear()

    def wrap_public_methods(self, cls, phase: str) -> None:
        for name, value in list(vars(cls).items()):
            if callable(value) and not name.startswith("_"):
                self.wrap(cls, name, phase)


def instrument(clock: PhaseClock, task) -> None:
    import torch.utils.data.dataloader as dataloader

    from bench import engine
    from bench.checkpoint import Checkpointer
    from bench.db import ResultsDB

    clock.wrap_public_methods(ResultsDB, "database")
    for name in ("save", "verify", "load"):
        if hasattr(Checkpointer, name):
            clock.wrap(Checkpointer, name, "checkpointing")
    clock.wrap(dataloader._BaseDataLoaderIter, "__next__", "batches")
    clock.wrap(engine, "optimizer_step", "train step")
    cls = type(task)
    for name, phase in (("load_data", "load data"), ("build_model", "build model"), ("binarize", "build model"),
                        ("prepare", "prepare"), ("train_step", "train step"), ("evaluate", "evaluation")):
        if name in vars(cls) or hasattr(cls, name):
            clock.wrap(cls, name, phase)
    clock.wrap(engine, "count_cost", "build model")
    if task.name == "detection":
        _instrument_detection(clock, cls)


def _instrument_detection(clock: PhaseClock, cls) -> None:
    from mmengine.model import BaseModel
    from mmengine.runner import loops

    from tasks.detection import data as detection_data

    clock.wrap(detection_data, "build", "load data")
    clock.wrap(cls, "_detector", "build model")
    clock.wrap(cls, "_cost", "build model")
    clock.wrap(cls, "_pretrained", "prepare")
    clock.wrap(BaseModel, "train_step", "train step")
    clock.wrap(loops.ValLoop, "run", "evaluation")


def child(family: str, estimator: str, launched: float, out: Path) -> None:
    """The profiled run (in the process the parent launched at ``launched``); the profile to ``out``."""
    from bench.config import build_config
    from bench.db import ResultsDB
    from bench.plugins import get_task
    from bench.runner import execute

    clock = PhaseClock(launched)
    task = get_task(family)
    config = build_config(family, estimator, preset="quick")
    clock.totals["start-up"] = time.time() - launched
    clock.since = time.time()
    try:
        instrument(clock, task)
        clock.enter("checks")
        from bench.runner import check_values

        check_values(config, task)
        task.check(config)
        clock.leave()
        with tempfile.TemporaryDirectory() as tmp:
            db = ResultsDB(f"sqlite:///{tmp}/profile.sqlite")
            outcome = execute(config, db, quiet=True, checkpoint_dir=str(Path(tmp) / "checkpoints"), checked=True)
        clock._switch(time.time())
        total = time.time() - launched
    finally:
        clock.restore()
    out.write_text(json.dumps({"family": family, "config": f"{config.dataset}/{config.model} {config.estimator} "
                               f"{config.epochs} epochs", "status": outcome.status, "error": outcome.error,
                               "total_s": total, "phases": clock.totals, "launch_s": _PROCESS_STARTED - launched}))


def render(profiles: list[dict], meta: str) -> str:
    lines = ["## Where one quick run's wall time goes, per family", "", meta, "",
             "Seconds (and share of the process's wall time) per phase; each second is counted once, in the "
             "innermost phase running. start-up includes the interpreter start "
             "(launch to the first line of the script: " +
             ", ".join(f"{p['family']} {p['launch_s']:.2f} s" for p in profiles) + ").", ""]
    lines.append("| phase | " + " | ".join(f"{p['family']}: {p['config']}" for p in profiles) + " |")
    lines.append("|---|" + "---:|" * len(profiles))
    for phase in PHASES:
        cells = [f"{p['phases'][phase]:.1f} ({100 * p['phases'][phase] / p['total_s']:.0f} %)" for p in profiles]
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    lines.append("| **total** | " + " | ".join(f"**{p['total_s']:.1f}** ({p['status']})" for p in profiles) + " |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--families", default=",".join(FAMILIES), help="comma list (default: all three)")
    p.add_argument("--estimator", default="clipped_ste")
    p.add_argument("--out", default=None, help="also write the markdown table here")
    p.add_argument("--child", nargs=3, metavar=("FAMILY", "LAUNCHED", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child[0], args.estimator, float(args.child[1]), Path(args.child[2]))
        return 0
    profiles = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families.split(","):
            out = Path(tmp) / f"{family}.json"
            launched = time.time()
            done = subprocess.run([sys.executable, __file__, "--estimator", args.estimator,
                                   "--child", family, repr(launched), str(out)], cwd=ROOT)
            if done.returncode != 0 or not out.is_file():
                raise SystemExit(f"{family}: the profiled run's process failed (exit {done.returncode})")
            profiles.append(json.loads(out.read_text()))
            error = f": {profiles[-1]['error']}" if profiles[-1]["error"] else ""
            print(f"# {family}: {profiles[-1]['total_s']:.1f} s ({profiles[-1]['status']}{error})", file=sys.stderr,
                  flush=True)
    import torch

    meta = (f"{datetime.datetime.now():%Y-%m-%d %H:%M} | {os.cpu_count()} logical cores | torch {torch.__version__} | "
            f"estimator {args.estimator} | OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    publish(render(profiles, meta), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
