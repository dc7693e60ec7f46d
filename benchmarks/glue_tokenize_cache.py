"""What the GLUE tokenisation cache saves: ``GlueTask.load_data`` cold (an empty cache folder) and warm
(the next process on the same folder), each in a fresh process, round after round.

    python benchmarks/glue_tokenize_cache.py --pairs 100000 --rounds 3 --out reports/glue_tokenize_cache.md
    python benchmarks/glue_tokenize_cache.py --pairs 0 --rounds 3      # the offline default, quick preset

``--pairs N`` writes a QQP-shaped ``glue_data/QQP`` folder (N training pairs, N / 10 dev pairs of
random words, max length 128, no subsets); ``--pairs 0`` measures the offline ``vader_sst2`` with
the quick preset (its data are built once, before the rounds, and copied into each round's cache).
The table gives each phase's load_data seconds (median and range over the rounds), the ratio
warm / cold per round, and whether the warm process wrote no tokenised file (it must reuse them).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.output import publish  # noqa: E402

_WORDS = ("what", "how", "is", "the", "best", "way", "to", "learn", "a", "new", "language", "why", "do", "people",
          "think", "about", "money", "time", "water", "india", "quora", "question", "can", "i", "get", "good")


def write_qqp(root: Path, pairs: int, seed: int = 0) -> None:
    """A QQP-shaped folder in the classic GLUE layout (id, qid1, qid2, question1, question2, is_duplicate)."""
    rng = random.Random(seed)
    folder = root / "glue_data" / "QQP"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", pairs), ("dev", max(pairs // 10, 1))):
        lines = ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"]
        for i in range(n):
            question = lambda: " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 20))) + " ?"  # noqa: E731
            lines.append(f"{i}\t{2 * i}\t{2 * i + 1}\t{question()}\t{question()}\t{rng.randint(0, 1)}")
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n")


def _measure(dataset: str, data_root: str, cache: str, preset: str, sets: list[str]) -> dict:
    """One process: check and load_data of one config, timed (the child's whole job)."""
    from bench.config import build_config
    from bench.plugins import get_task

    config = build_config("glue", "clipped_ste", dataset=dataset, preset=preset,
                          data_root=data_root or None, sets=[f"cache_dir={cache}", *sets])
    task = get_task("glue")
    task.check(config)
    start = time.perf_counter()
    task.load_data(config)
    seconds = time.perf_counter() - start
    tokenized = Path(cache) / "glue" / "tokenized"
    files = sorted(f"{p.name}:{p.stat().st_mtime_ns}" for p in tokenized.rglob("*") if p.is_file())
    return {"load_data_s": seconds, "files": files}


def _child(args: list[str]) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(args)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _interval(values: list[float], digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}, {max(values):.{digits}f}]"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100_000, help="QQP-shaped training pairs (0: vader_sst2 quick)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(_measure(*json.loads(args.child))))
        return ""

    with tempfile.TemporaryDirectory(prefix="glue_tokenize_cache_") as work:
        work = Path(work)
        if args.pairs:
            write_qqp(work, args.pairs)
            dataset, root, preset = "qqp", str(work), "quick"
            sets = ["max_seq_length=128", "train_subset=none", "eval_subset=none", "val_size=0"]
            seed_cache = None
        else:
            dataset, root, preset, sets = "vader_sst2", "", "quick", []
            seed_cache = work / "seed"
            _child([dataset, root, str(seed_cache), preset, sets])  # builds vader_sst2 once, outside the timing
            shutil.rmtree(seed_cache / "glue" / "tokenized", ignore_errors=True)
        cold, warm, ratios, reused = [], [], [], []
        for round_ in range(args.rounds):
            cache = work / f"round{round_}"
            if seed_cache is not None:
                shutil.copytree(seed_cache, cache)
            first = _child([dataset, root, str(cache), preset, sets])
            second = _child([dataset, root, str(cache), preset, sets])
            cold.append(first["load_data_s"])
            warm.append(second["load_data_s"])
            ratios.append(second["load_data_s"] / first["load_data_s"])
            reused.append(bool(first["files"]) and first["files"] == second["files"])
    name = f"QQP-shaped, {args.pairs} + {max(args.pairs // 10, 1)} pairs" if args.pairs else "vader_sst2, quick preset"
    table = "\n".join([
        f"GlueTask.load_data, {name}: seconds, median [range] over {args.rounds} rounds (a fresh process each)",
        "",
        "| data | cold (empty cache) | warm (same cache) | warm / cold | warm wrote no tokenised file |",
        "|---|---|---|---|---|",
        f"| {name} | {_interval(cold)} | {_interval(warm)} | {_interval(ratios)} | {all(reused)} |",
    ])
    publish(table, args.out)
    return table


if __name__ == "__main__":
    main()
