"""Training-step cost of every gradient estimator on a binarized CIFAR ResNet-18.

Measures, side by side in one run on one machine, the time and the peak memory of
one training step (forward, cross-entropy, backward, SGD(momentum 0.9) step,
zero_grad, with ``estimators.set_progress`` before each step) of
``resnet18_cifar`` binarized with ``scope="standard"``, for every registered
estimator plus SURGE variants, and checks the cost targets:

    surge (all variants)      <= 1.70x clipped_ste step time, <= 1.50x peak memory
    elementwise estimators    <= 1.10x clipped_ste step time, <= 1.05x peak memory
    fp32                      reference only (no target)

Fairness: every model is built from the same seed and trained on the same fixed
random batch; the estimators are interleaved round-robin over several rounds (the
starting estimator rotates each round), so drifting machine load hits all of them
alike; the reported time is the median over all timed steps of all rounds. On CUDA
every step is synchronized (before the clock starts and after the step), cuDNN runs with
the harness's flags (``bench.precision.configure_cudnn``: benchmark on, so the first,
untimed warm-up step of each estimator autotunes its convolutions).

Precision (``--precision``, as a run's ``precision``): fp32, or the forward and the loss
under ``torch.autocast`` with bf16 or fp16, the backward outside it, fp16 with a
``torch.amp.GradScaler`` (each estimator its own; its scale, unscale check and update are
part of the step). ``--channels-last`` puts the model and the batch in channels_last.

Memory:
    cuda  torch.cuda.max_memory_allocated over one step after reset_peak_memory_stats
          (everything on the GPU: parameters, optimizer state, batch, activations,
          gradients and temporaries).
    cpu   the same quantity rebuilt from PyTorch's CPU allocator: bytes of every
          tensor alive before the step (parameters incl. SURGE's aux_weight, buffers,
          momentum buffers, the batch) plus the peak of the bytes allocated during the
          step and still alive (activations saved for backward, gradients,
          temporaries), read from the allocation events of torch.profiler
          (profile_memory=True). Memory that oneDNN or the OS allocates outside the
          PyTorch allocator is not included.
    both  "saved" = bytes of the distinct storages saved for backward
          (saved_tensors_hooks, deduplicated by storage, parameters excluded), i.e.
          the activation memory that the forward holds for the backward.

Usage (from the repository root)::

    python benchmarks/estimator_cost.py --batch-size 64 --steps 2 --warmup 1 --rounds 3 --threads 1 \
        --out reports/estimator_cost.md
    python -m benchmarks.estimator_cost --estimators clipped_ste,surge,surge:shared_aux=true
    python benchmarks/estimator_cost.py --device cuda --precision bf16 --channels-last --estimators clipped_ste,surge

An estimator spec is ``name`` or ``name:key=value[:key=value...]`` (hyperparameters
as ``estimators.build`` reads them from the command line).
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

if not __package__:  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # keep the profiler's log lines off stdout/stderr

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import estimators  # noqa: E402
from bench.options import parse_into  # noqa: E402
from benchmarks.output import publish  # noqa: E402
from estimators.base import ElementwiseEstimator  # noqa: E402
from bench.precision import MixedPrecision, check_precision, configure_cudnn  # noqa: E402
from estimators.fused import fused_enabled  # noqa: E402
from tasks.classification.models import MODELS  # noqa: E402

MODEL = "resnet18_cifar"
REFERENCE = "clipped_ste"
EXTRA_VARIANTS = ("surge:shared_aux=true", "surge:ags=previous")
SURGE_TIME, SURGE_MEM, ELEMENTWISE_TIME, ELEMENTWISE_MEM = 1.70, 1.50, 1.10, 1.05
MIB = 2 ** 20


# ---------------------------------------------------------------- configuration

def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``surge:shared_aux=true:eta=0.2`` -> ("surge", {"shared_aux": "true", "eta": "0.2"})."""
    name, *pairs = spec.strip().split(":")
    hparams = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"bad estimator spec {spec!r}: expected name[:key=value...]")
        hparams[key.strip()] = value.strip()
    return name.strip(), hparams


def default_specs() -> list[str]:
    return estimators.available() + [s for s in EXTRA_VARIANTS if parse_spec(s)[0] in estimators.available()]


def build_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Targets: surge <= %.2fx clipped_ste time and <= %.2fx peak memory; "
               "elementwise estimators <= %.2fx clipped_ste time and <= %.2fx peak memory."
               % (SURGE_TIME, SURGE_MEM, ELEMENTWISE_TIME, ELEMENTWISE_MEM),
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=3, help="timed steps per estimator per round (default 3)")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed steps per estimator before its first timed step, in round 1 (default 1)")
    p.add_argument("--round-warmup", type=int, default=0,
                   help="untimed steps per estimator at the start of each later round (default 0)")
    p.add_argument("--rounds", type=int, default=3, help="round-robin rounds over all estimators (default 3)")
    p.add_argument("--estimators", default=None,
                   help="comma list of specs name[:key=value...] (default: all registered + %s)"
                        % ", ".join(EXTRA_VARIANTS))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="fp32, or the forward under autocast with bf16 / fp16 (fp16 with a GradScaler)")
    p.add_argument("--channels-last", action="store_true", help="model and batch in channels_last memory format")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    p.add_argument("--strict", action="store_true", help="exit with status 1 when a target fails")
    p.add_argument("--out", default=None, help="also write the table as markdown to this path")
    p.add_argument("--json", default=None, help="also write all measurements as JSON to this path")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but CUDA is not available")
    try:
        check_precision(args.precision, torch.device(args.device))
    except ValueError as exc:
        p.error(str(exc))
    for name in ("batch_size", "image_size", "steps", "rounds"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0 or args.round_warmup < 0:
        p.error("--warmup and --round-warmup must be >= 0")
    specs = [s for s in (args.estimators.split(",") if args.estimators else default_specs()) if s.strip()]
    if REFERENCE not in [s.strip() for s in specs]:
        specs.insert(0, REFERENCE)  # the ratios need the reference
    args.specs = list(dict.fromkeys(s.strip() for s in specs))
    return args


# ---------------------------------------------------------------- the runs

@dataclass
class Run:
    spec: str
    estimator: estimators.Estimator
    model: nn.Module
    optimizer: torch.optim.Optimizer
    total_steps: int
    steps_done: int = 0
    times_ms: list[float] = field(default_factory=list)       # every timed step
    round_median_ms: list[float] = field(default_factory=list)
    peak_bytes: Optional[int] = None
    static_bytes: Optional[int] = None
    saved_bytes: Optional[int] = None
    binarized_layers: int = 0
    precision: Optional[MixedPrecision] = None

    @property
    def kind(self) -> str:
        name = parse_spec(self.spec)[0]
        if name == REFERENCE:
            return "reference"
        if name == "surge":
            return "surge"
        if isinstance(self.estimator, ElementwiseEstimator):
            return "elementwise"
        return "other"

    @property
    def trainable_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)


def make_run(spec: str, args: argparse.Namespace, device: torch.device) -> Run:
    name, raw = parse_spec(spec)
    cls = estimators.ESTIMATORS.get(name)
    estimator = estimators.build(name, **{k: parse_into(cls, k, v) for k, v in raw.items()})
    torch.manual_seed(args.seed)  # identical initial weights for every estimator
    model = MODELS.get(MODEL)(num_classes=10)
    record = estimators.binarize_model(model, estimator, scope="standard")
    model.to(device).train()
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=args.lr, momentum=0.9)
    total = args.warmup + (args.rounds - 1) * args.round_warmup + args.rounds * args.steps + 1
    return Run(spec, estimator, model, optimizer, total, binarized_layers=len(record.binarized),
               precision=MixedPrecision(args.precision, device))


def train_step(run: Run, x: torch.Tensor, y: torch.Tensor) -> None:
    estimators.set_progress(run.model, min(1.0, run.steps_done / max(1, run.total_steps - 1)))
    precision = run.precision or MixedPrecision("fp32", x.device)
    with precision.autocast():
        loss = F.cross_entropy(run.model(x), y)
    if precision.scaler is None:
        loss.backward()
        run.optimizer.step()
    else:
        precision.scaler.scale(loss).backward()
        precision.scaler.step(run.optimizer)
        precision.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    run.steps_done += 1


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_block(run: Run, x, y, warmup: int, args, device) -> list[float]:
    gc.collect()
    for _ in range(warmup):
        train_step(run, x, y)
    sync(device)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        train_step(run, x, y)
        sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return times


# ---------------------------------------------------------------- memory

def _storage_key(t: torch.Tensor) -> tuple[int, int]:
    s = t.untyped_storage()
    return s.data_ptr(), s.nbytes()


def static_bytes(run: Run, x: torch.Tensor, y: torch.Tensor) -> int:
    """Bytes of the tensors alive before a step: params, buffers, optimizer state, batch."""
    tensors = list(run.model.parameters()) + list(run.model.buffers()) + [x, y]
    for state in run.optimizer.state.values():
        tensors += [v for v in state.values() if torch.is_tensor(v)]
    seen = {}
    for t in tensors:
        if t.device.type != "meta":
            ptr, nbytes = _storage_key(t)
            seen[ptr] = max(nbytes, seen.get(ptr, 0))
    return sum(seen.values())


class SavedTensorMeter:
    """Bytes of distinct storages saved for backward (parameters excluded)."""

    def __init__(self, model: nn.Module) -> None:
        self.exclude = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.storages: dict[int, int] = {}

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        ptr, nbytes = _storage_key(t)
        if ptr and ptr not in self.exclude:
            self.storages[ptr] = max(nbytes, self.storages.get(ptr, 0))
        return t

    @staticmethod
    def unpack(t: torch.Tensor) -> torch.Tensor:
        return t

    @property
    def total(self) -> int:
        return sum(self.storages.values())


def _profiler_peak(prof) -> int:
    """Max of the allocator's running total over the allocation events of a profile."""
    from torch._C._profiler import _EventType

    peak = 0
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        if event.tag == _EventType.Allocation:
            peak = max(peak, int(event.extra_fields.total_allocated))
        stack.extend(event.children)
    return peak


def measure_memory(run: Run, x, y, device: torch.device) -> None:
    """One (untimed) step: peak memory, and the bytes saved for backward."""
    gc.collect()
    meter = SavedTensorMeter(run.model)
    sync(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        run.static_bytes = torch.cuda.memory_allocated(device)
        with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
            train_step(run, x, y)
        sync(device)
        run.peak_bytes = torch.cuda.max_memory_allocated(device)
    else:
        run.static_bytes = static_bytes(run, x, y)
        activities = [torch.profiler.ProfilerActivity.CPU]
        with torch.profiler.profile(activities=activities, profile_memory=True) as prof:
            with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
                train_step(run, x, y)
        run.peak_bytes = run.static_bytes + _profiler_peak(prof)
    run.saved_bytes = meter.total


# ---------------------------------------------------------------- report

def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu ({model}, {os.cpu_count()} logical cores)"


def quantile(values: list[float], q: float) -> float:
    values = sorted(values)
    pos = (len(values) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def evaluate(run: Run, ref: Run, batch_size: int) -> dict[str, Any]:
    med, ref_med = statistics.median(run.times_ms), statistics.median(ref.times_ms)
    paired = [a / b for a, b in zip(run.round_median_ms, ref.round_median_ms)]
    row: dict[str, Any] = {
        "estimator": run.spec,
        "kind": run.kind,
        "hparams": run.estimator.hparams(),
        "binarized_layers": run.binarized_layers,
        "trainable_params": run.trainable_params,
        "ms_median": med,
        "images_per_s": batch_size * 1000.0 / med,
        "ms_p25": quantile(run.times_ms, 0.25),
        "ms_p75": quantile(run.times_ms, 0.75),
        "ms_all": run.times_ms,
        "ms_round_medians": run.round_median_ms,
        "time_ratio": med / ref_med,
        "time_ratio_per_round": paired,
        "peak_bytes": run.peak_bytes,
        "static_bytes": run.static_bytes,
        "saved_bytes": run.saved_bytes,
        "mem_ratio": (run.peak_bytes / ref.peak_bytes) if run.peak_bytes and ref.peak_bytes else None,
    }
    checks = []
    if run.kind == "surge":
        checks.append(("time", row["time_ratio"], SURGE_TIME))
        if row["mem_ratio"] is not None:
            checks.append(("mem", row["mem_ratio"], SURGE_MEM))
        row["target"] = f"time <= {SURGE_TIME:.2f}x, mem <= {SURGE_MEM:.2f}x"
    elif run.kind == "elementwise":
        checks.append(("time", row["time_ratio"], ELEMENTWISE_TIME))
        if row["mem_ratio"] is not None:
            checks.append(("mem", row["mem_ratio"], ELEMENTWISE_MEM))
        row["target"] = f"time <= {ELEMENTWISE_TIME:.2f}x, mem <= {ELEMENTWISE_MEM:.2f}x"
    else:
        row["target"] = "reference" if run.kind == "reference" else "-"
    failed = [what for what, value, limit in checks if value > limit]
    row["passed"] = None if not checks else not failed
    row["result"] = "-" if not checks else ("PASS" if not failed else "FAIL (" + ", ".join(failed) + ")")
    return row


def render(rows: list[dict[str, Any]], meta: dict[str, Any], device: torch.device) -> str:
    mem_note = (
        "peak = torch.cuda.max_memory_allocated over one step (params, optimizer state, batch, activations, "
        "grads, temporaries)"
        if device.type == "cuda" else
        "peak (CPU) = bytes alive before the step (params incl. aux_weight, buffers, momentum, batch) + peak of "
        "bytes allocated by PyTorch's CPU allocator during the step and still alive (torch.profiler "
        "profile_memory allocation events); excludes oneDNN/OS memory outside that allocator"
    )
    numerics = f"precision: {meta['precision']}" + (" | channels_last" if meta["channels_last"] else "")
    if device.type == "cuda":
        numerics += f" | cudnn.benchmark: {meta['cudnn_benchmark']} | cudnn {meta['cudnn']}"
    autocast = ("" if meta["precision"] == "fp32" else
                f" Forward and loss under torch.autocast({meta['precision']}), backward outside"
                + (", with a GradScaler (scale, unscale check, update)." if meta["precision"] == "fp16" else "."))
    lines = [
        f"## Estimator training-step cost: {MODEL}, scope=standard",
        "",
        f"device: {meta['device']} | {numerics} | torch {meta['torch']} | threads: {meta['threads']} | "
        f"surrogate backward: {meta['backward']} | "
        f"batch size: {meta['batch_size']} | image: {meta['image_size']}x{meta['image_size']} | "
        f"{meta['rounds']} rounds x {meta['steps']} timed steps per estimator, interleaved round-robin "
        f"(warmup: {meta['warmup']} step(s) in round 1, {meta['round_warmup']} in later rounds) | {meta['date']}",
        "",
        f"step = forward + cross-entropy + backward + SGD(momentum 0.9) step + zero_grad (+ set_progress). "
        f"ms/step = median over all {meta['rounds'] * meta['steps']} timed steps (IQR = p25-p75); "
        f"img/s = batch size / median step time; "
        f"x ref = ratio to {REFERENCE}; paired = min-max over rounds of (round median / {REFERENCE}'s "
        f"round median).{autocast}",
        f"Memory: {mem_note}. saved = activation bytes saved for backward (saved_tensors_hooks, distinct "
        f"storages, parameters excluded). params = trainable parameters (SURGE adds aux_weight).",
        "",
        "| estimator | params | ms/step | IQR ms | img/s | x ref | paired x ref | peak MiB | x ref | saved MiB | target "
        "| result |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]

    def mib(b: Optional[int]) -> str:
        return "-" if b is None else f"{b / MIB:.1f}"

    for r in rows:
        paired = r["time_ratio_per_round"]
        lines.append(
            f"| {r['estimator']} | {r['trainable_params'] / 1e6:.2f}M | {r['ms_median']:.1f} "
            f"| {r['ms_p25']:.0f}-{r['ms_p75']:.0f} | {r['images_per_s']:.0f} | {r['time_ratio']:.2f}x "
            f"| {min(paired):.2f}-{max(paired):.2f} | {mib(r['peak_bytes'])} "
            f"| {'-' if r['mem_ratio'] is None else format(r['mem_ratio'], '.2f') + 'x'} "
            f"| {mib(r['saved_bytes'])} | {r['target']} | {r['result']} |"
        )
    checked = [r for r in rows if r["passed"] is not None]
    failed = [r["estimator"] for r in checked if not r["passed"]]
    lines += ["", f"Targets: {len(checked) - len(failed)}/{len(checked)} pass"
              + (f"; failing: {', '.join(failed)}" if failed else ".")]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main

def main(argv: Optional[list[str]] = None) -> int:
    args = build_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        configure_cudnn()

    runs = [make_run(spec, args, device) for spec in args.specs]
    gen = torch.Generator().manual_seed(args.seed + 1)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=gen).to(device)
    if args.channels_last:
        x = x.to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch_size,), generator=gen).to(device)

    started = time.perf_counter()
    for rnd in range(args.rounds):
        order = runs[rnd % len(runs):] + runs[:rnd % len(runs)]  # rotate the starting estimator
        for run in order:
            times = timed_block(run, x, y, args.warmup if rnd == 0 else args.round_warmup, args, device)
            run.times_ms += times
            run.round_median_ms.append(statistics.median(times))
        print(f"# round {rnd + 1}/{args.rounds} done ({time.perf_counter() - started:.0f} s): "
              + ", ".join(f"{r.spec}={r.round_median_ms[-1]:.0f}ms" for r in runs), file=sys.stderr, flush=True)
    if not args.no_memory:
        for run in runs:
            measure_memory(run, x, y, device)
        print(f"# memory done ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)

    ref = next(r for r in runs if r.spec == REFERENCE)
    rows = [evaluate(run, ref, args.batch_size) for run in runs]
    meta = {
        "model": MODEL, "scope": "standard", "device": device_name(device), "torch": torch.__version__,
        "precision": args.precision, "channels_last": args.channels_last,
        "cudnn_benchmark": torch.backends.cudnn.benchmark, "cudnn": torch.backends.cudnn.version(),
        "threads": torch.get_num_threads(),
        "backward": "fused (torch.compile)" if fused_enabled() else "op by op (BENCH_FUSED_BACKWARD=0)",
        "batch_size": args.batch_size, "image_size": args.image_size,
        "steps": args.steps, "warmup": args.warmup, "round_warmup": args.round_warmup, "rounds": args.rounds, "seed": args.seed,
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "command": " ".join(
            (["python", "-m", "benchmarks.estimator_cost"] if __package__ else ["python", sys.argv[0]])
            + (sys.argv[1:] if argv is None else list(argv))),
        "wall_s": time.perf_counter() - started,
    }
    publish(render(rows, meta, device) + f"\nCommand: `{meta['command']}`", args.out)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=str) + "\n")
    failed = any(r["passed"] is False for r in rows)
    return 1 if (failed and args.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
