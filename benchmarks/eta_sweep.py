"""Sweep SURGE's eta (and the fixed-lambda ablation) on a small real data set.

    python benchmarks/eta_sweep.py --seeds 0 1 2 --out reports/eta_sweep.md

Trains a binarized ResNet-20 (standard scope) on scikit-learn's digits (1,797 real
8x8 handwritten digits; a stratified 80/20 split, fixed across seeds) with SGD +
cosine schedule, once per (setting, seed), and prints mean +- std test accuracy.
eta = 0 is exactly clipped_ste (the auxiliary gradient is scaled to nothing). It is
the evidence behind SURGE's default eta; rerun it with larger data via `bench`.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import estimators  # noqa: E402
from tasks.classification.models import MODELS  # noqa: E402


def load_digits_split(device: torch.device):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = (x - x.mean()) / x.std()
    y = torch.tensor(digits.target)
    idx_train, idx_test = train_test_split(range(len(y)), test_size=0.2, random_state=0, stratify=digits.target)
    return (x[idx_train].to(device), y[idx_train].to(device)), (x[idx_test].to(device), y[idx_test].to(device))


def train_once(setting: dict, seed: int, data, epochs: int, batch_size: int, lr: float, device) -> float:
    torch.manual_seed(seed)
    (x_train, y_train), (x_test, y_test) = data
    model = MODELS.get("resnet20_cifar")(num_classes=10, in_channels=1).to(device)
    estimators.binarize_model(model, estimators.build(setting["estimator"], **setting["hparams"]))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    steps_per_epoch = math.ceil(len(y_train) / batch_size)
    total = epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total)
    generator = torch.Generator().manual_seed(seed)
    step = 0
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y_train), generator=generator).to(device)
        for i in range(steps_per_epoch):
            batch = order[i * batch_size:(i + 1) * batch_size]
            estimators.set_progress(model, step / max(total - 1, 1))
            loss = F.cross_entropy(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
    model.eval()
    with torch.no_grad():
        return (model(x_test).argmax(1) == y_test).float().mean().item() * 100


def settings(etas: list[float], fixed: list[float]) -> list[dict]:
    rows = [{"label": "clipped_ste", "estimator": "clipped_ste", "hparams": {}}]
    rows += [{"label": f"surge eta={e:g}", "estimator": "surge", "hparams": {"eta": e}} for e in etas]
    rows += [{"label": f"surge fixed_lambda={f:g}", "estimator": "surge", "hparams": {"fixed_lambda": f}}
             for f in fixed]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--etas", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.5, 1.0])
    parser.add_argument("--fixed-lambdas", type=float, nargs="*", default=[0.1, 10.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=None, help="also write the markdown table here")
    args = parser.parse_args()

    device = torch.device(args.device)
    data = load_digits_split(device)
    lines = [
        f"eta sweep: binarized ResNet-20 on sklearn digits (1437 train / 360 test), {args.epochs} epochs, "
        f"batch {args.batch_size}, SGD lr {args.lr} cosine, seeds {args.seeds}, device {device}",
        "",
        "| setting | test acc % (mean +- std) | per seed |",
        "|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for setting in settings(args.etas, args.fixed_lambdas):
        started = time.time()
        accs = [train_once(setting, s, data, args.epochs, args.batch_size, args.lr, device) for s in args.seeds]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        line = (f"| {setting['label']} | {statistics.mean(accs):.2f} +- {std:.2f} | "
                f"{', '.join(f'{a:.2f}' for a in accs)} |")
        lines.append(line)
        print(line, f"({time.time() - started:.0f} s)", file=sys.stdout, flush=True)
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as handle:
            handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
