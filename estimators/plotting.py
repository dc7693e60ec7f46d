"""Plot each elementwise estimator's surrogate forward and its backward curve.

    python -m estimators.plotting --out reports/figures

writes one PNG per estimator (``estimator_<name>.png``: left, sign(x) and the
surrogate F(x); right, the pseudo-gradient dF/dx used by the backward) and an
overview of all backward curves (``estimators_backward.png``). Scheduled estimators
are drawn at progress p = 0, 0.5 and 1. SURGE is a layer-level estimator with no
elementwise curve; its main path is the clipped STE plotted here.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from estimators import ElementwiseEstimator, available, binary_sign, build

PROGRESS_POINTS = (0.0, 0.5, 1.0)


def _elementwise_names() -> list[str]:
    return [n for n in available() if isinstance(build(n), ElementwiseEstimator)]


def _curves(name: str, x: torch.Tensor) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    estimator = build(name)
    points = PROGRESS_POINTS if estimator.scheduled else (0.0,)
    curves = []
    for p in points:
        estimator.set_progress(p)
        label = f"p = {p:g}" if estimator.scheduled else name
        curves.append((label, estimator.surrogate(x), estimator.activation_grad(x)))
    return curves


def plot_estimators(out_dir: str | Path, names: list[str] | None = None) -> list[Path]:
    """Write the figures; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = names or _elementwise_names()
    x = torch.linspace(-2.5, 2.5, 2001, dtype=torch.float64)
    written = []
    for name in names:
        estimator = build(name)
        fig, (ax_f, ax_b) = plt.subplots(1, 2, figsize=(8, 3.2))
        ax_f.plot(x, binary_sign(x), color="0.6", lw=1, ls="--", label="sign(x)")
        for label, surrogate, grad in _curves(name, x):
            ax_f.plot(x, surrogate, label=label)
            ax_b.plot(x, grad, label=label)
        ax_f.set_title(f"{name}: forward / surrogate F(x)")
        ax_b.set_title(f"{name}: backward dF/dx")
        for ax in (ax_f, ax_b):
            ax.axhline(0, color="0.85", lw=0.8)
            ax.set_xlabel("x")
            ax.legend(fontsize=7)
        fig.suptitle(estimator.paper, fontsize=8)
        fig.tight_layout()
        path = out / f"estimator_{name}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)

    fig, ax = plt.subplots(figsize=(7, 4))
    for name in names:
        label, _, grad = _curves(name, x)[0]
        ax.plot(x, grad, label=name if label == name else f"{name} ({label})")
    ax.set_xlabel("x")
    ax.set_ylabel("dF/dx")
    ax.set_title("Backward of every elementwise estimator (scheduled ones at p = 0)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = out / "estimators_backward.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="reports/figures", help="output folder (default: reports/figures)")
    parser.add_argument("--estimators", default=None, help="comma-separated names (default: all elementwise)")
    args = parser.parse_args(argv)
    names = args.estimators.split(",") if args.estimators else None
    for path in plot_estimators(args.out, names):
        print(path)


if __name__ == "__main__":
    main()
