"""What the engine's per-layer curves cost a training step, side by side in one process.

    python benchmarks/hook_overhead.py --rounds 5 --steps 20 --out reports/hook_overhead.md

The quick classification model (bireal ResNet-20, 14 x 14 Fashion-MNIST-sized random batches of
128, Adam) is trained with ``clipped_ste`` and with ``surge``, each in two arms that alternate
block by block: the bare step (forward, cross-entropy, backward, Adam step) and the same step
with the hooks that log per-layer curves attached (``SignInputs``: |x| > 1 fractions,
``GradientStability``: var(|dL/dW|); ``WeightFlips`` works once per epoch and is left out). Each
round times ``--steps`` steps per arm after warm-up; the table gives the median step of each arm
and the ratio hooks / bare per round (its median and range over the rounds).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.output import publish  # noqa: E402


HOOKS = ("sign_inputs", "grad_stability")


def _hooks(names: list[str]) -> list:
    from bench.engine import GradientStability, SignInputs

    return [{"sign_inputs": SignInputs, "grad_stability": GradientStability}[name]() for name in names]


def _setup(estimator_name: str):
    import torch

    import estimators
    from tasks.classification.models import MODELS

    torch.manual_seed(0)
    model = MODELS.get("resnet20_cifar")(num_classes=10, in_channels=1, block="bireal")
    estimators.binarize_model(model, estimators.build(estimator_name), scope="standard", weight_grad="identity")
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    images, labels = torch.randn(128, 1, 14, 14), torch.randint(0, 10, (128,))
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()

    return model, step


def _timed(step, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(1e3 * (time.perf_counter() - start))
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--estimators", nargs="+", default=["clipped_ste", "surge"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hooks", nargs="+", default=list(HOOKS), choices=list(HOOKS), help="the hooks of the arm")
    parser.add_argument("--out")
    args = parser.parse_args(argv)

    import torch

    from bench.engine import TrainState

    torch.set_num_threads(args.threads)
    lines = [f"Per-layer curve hooks ({', '.join(args.hooks)}), step time (ms), bare vs hooks attached: "
             f"{args.rounds} rounds x {args.steps} "
             f"steps per arm, {args.threads} thread(s)", "",
             "| estimator | bare ms (median) | hooks ms (median) | hooks / bare, median [range over rounds] |",
             "|---|---|---|---|"]
    for name in args.estimators:
        model, step = _setup(name)
        _timed(step, args.warmup)
        state = TrainState(model=model, optimizer=None, scheduler=None, epochs=1, total_steps=1)
        bare_all, hooked_all, ratios = [], [], []
        for round_ in range(args.rounds):
            hooks = _hooks(args.hooks)
            arms = ("bare", "hooks") if round_ % 2 == 0 else ("hooks", "bare")
            medians = {}
            for arm in arms:
                if arm == "hooks":
                    for hook in hooks:
                        hook.before_train(state)
                times = _timed(step, args.steps)
                if arm == "hooks":
                    for hook in hooks:
                        hook.after_epoch(state)   # the once-per-epoch read (a host sync)
                        hook.after_train(state)
                medians[arm] = statistics.median(times)
                (hooked_all if arm == "hooks" else bare_all).extend(times)
            ratios.append(medians["hooks"] / medians["bare"])
        lines.append(f"| {name} | {statistics.median(bare_all):.1f} | {statistics.median(hooked_all):.1f} | "
                     f"{statistics.median(ratios):.3f} [{min(ratios):.3f}, {max(ratios):.3f}] |")
    publish("\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
