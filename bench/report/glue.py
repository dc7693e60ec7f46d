"""The GLUE table: per estimator, each GLUE task's official metric(s), the task's score and the
average of the scores, as the GLUE leaderboard defines them.

The definition (:data:`GLUE_TASKS`)
    Wang et al., "GLUE: A Multi-Task Benchmark and Analysis Platform for Natural Language
    Understanding", ICLR 2019 (arXiv:1804.07461), §3.4: "The benchmark site shows per-task scores
    and a macro-average of those scores ... For tasks with multiple metrics (e.g., accuracy and F1),
    we use an unweighted average of the metrics as the score for the task"; §3.1-3.3 and Table 4
    name the metrics: CoLA Matthews correlation, MRPC and QQP F1 and accuracy, STS-B Pearson and
    Spearman, MNLI accuracy on the matched and the mismatched sections, every other task accuracy.
    Table 6 (dev sets): "For MNLI, we report accuracy averaged over the matched and mismatched".

    So MNLI is ONE task whose score is the mean of MNLI-m and MNLI-mm; the GLUE score is the
    unweighted mean over the nine tasks, WNLI included, the diagnostic AX not. The leaderboard's
    own rows confirm it: BERT-base 78.3 (CoLA 52.1, SST-2 93.5, MRPC 88.9/84.8, STS-B 87.1/85.8,
    QQP 71.2/89.2, MNLI-m 84.6, MNLI-mm 83.4, QNLI 90.5, RTE 66.4, WNLI 65.1; as the
    PaddlePaddle/ERNIE README copies the leaderboard's GLUE-test table) is 78.34 over nine tasks
    with MNLI averaged, 78.91 with MNLI-m and MNLI-mm as two entries; BERT-large 80.5 (80.52 vs
    81.10), ERNIE 2.0 base 80.6 (80.59 vs 81.11) and large 83.6 (83.57 vs 84.09) agree.

What the binary-BERT papers' "Avg." columns are (not this score)
    BiBERT (Qin et al., ICLR 2022, arXiv:2203.06390) and BiT (Liu et al., NeurIPS 2022,
    arXiv:2205.13016) print MNLI-m/mm, QQP, QNLI, SST-2, CoLA, STS-B, MRPC, RTE (no WNLI) with one
    number for MRPC and QQP (accuracy: ``acc_tasks`` in htqin/BiBERT ``quant_task_glue.py`` and
    facebookresearch/bit ``kd_learner_glue.py``, which keeps the best dev ``acc``, STS-B's
    ``corr`` = mean of Pearson and Spearman). Their averages disagree about MNLI: in the table of
    the facebookresearch/bit README the BERT, BinaryBERT and BiBERT rows' Avg. is the mean of nine
    entries with MNLI-m and MNLI-mm counted separately (BERT 83.93 -> 83.9, BiBERT 63.18 -> 63.2;
    with MNLI once: 83.78, 62.72), BiT's own rows the mean of eight with MNLI once (BiT 1-1-1
    73.51 -> 73.5; nine entries: 74.17). Neither is comparable with the leaderboard's score.

The table
    One per (task, preset, model) of runs whose family asked for an average (``report_average``)
    and that include GLUE tasks. Rows are estimators (as every results table); a column per task
    present, headed as papers print it (``MRPC (F1/acc)``, ``STS-B (P/S)``, ``MNLI (m/mm)``); a
    cell is the task's score, the unweighted mean of its metrics per run, mean ± sample std over
    seeds (n = runs), after the metrics' means for a two-metric task: ``88.10/84.30 → 86.20 ±
    0.40 (n=3)``. The last column averages the task scores over the tasks present, labelled with
    them: ``GLUE score (9 tasks)`` only with all nine, else e.g. ``avg (8 tasks, no WNLI)``; per
    seed that ran every task, the mean of that seed's task scores, then mean ± std over those
    seeds. An estimator without a score on some task of the table gets no average (and a note):
    an average over other tasks is never shown next to it as if it were the same. Bold, ``*`` and
    "not ranked" follow the results table (paired differences to the reference on the task scores
    and on the per-seed averages).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import pandas as pd

from bench.report.columns import SELECTION_SUFFIX, SELECTION_TEXT, ReportColumn
from bench.report.tables import Cell, ColumnMetric, ReportTable, order_estimators, rank_columns, slug


@dataclasses.dataclass(frozen=True)
class GlueTask:
    """One GLUE task: the runs' dataset name, its title, the stored metrics whose unweighted mean
    is its score, and their short names as papers print them."""

    dataset: str
    title: str
    metrics: tuple[str, ...]
    short: tuple[str, ...]

    @property
    def header(self) -> str:
        return f"{self.title} ({'/'.join(self.short)})"


#: The nine GLUE tasks in the leaderboard's order (AX, the diagnostic, is not part of the score).
#: Metric names are the ones the glue family stores (MNLI's per dev split: ``accuracy_matched``).
GLUE_TASKS: tuple[GlueTask, ...] = (
    GlueTask("cola", "CoLA", ("mcc",), ("MCC",)),
    GlueTask("sst2", "SST-2", ("accuracy",), ("acc",)),
    GlueTask("mrpc", "MRPC", ("f1", "accuracy"), ("F1", "acc")),
    GlueTask("stsb", "STS-B", ("pearson", "spearman"), ("P", "S")),
    GlueTask("qqp", "QQP", ("f1", "accuracy"), ("F1", "acc")),
    GlueTask("mnli", "MNLI", ("accuracy_matched", "accuracy_mismatched"), ("m", "mm")),
    GlueTask("qnli", "QNLI", ("accuracy",), ("acc",)),
    GlueTask("rte", "RTE", ("accuracy",), ("acc",)),
    GlueTask("wnli", "WNLI", ("accuracy",), ("acc",)),
)
GLUE_DATASETS = {t.dataset: t for t in GLUE_TASKS}
SOURCE = "Wang et al. 2019 (GLUE, ICLR; arXiv:1804.07461) §3.4"
SCORE_RULE = ("GLUE score as the leaderboard defines it (" + SOURCE + "): a task's score is the unweighted mean of "
              "its metrics (MRPC, QQP: F1 and accuracy; STS-B: Pearson and Spearman; MNLI: matched and mismatched "
              "accuracy, one task), CoLA Matthews correlation, the others accuracy; the GLUE score is the unweighted "
              "mean of the nine task scores (WNLI included, AX not)")


def average_label(tasks: list[GlueTask]) -> str:
    """``GLUE score (9 tasks)`` with every task, else what the average covers: ``avg (8 tasks, no WNLI)``."""
    missing = [t.title for t in GLUE_TASKS if t not in tasks]
    if not missing:
        return f"GLUE score ({len(tasks)} tasks)"
    return f"avg ({len(tasks)} task{'s' if len(tasks) != 1 else ''}, no {', '.join(missing)})"


def task_scores(rows, task: GlueTask, suffix: str = "") -> tuple[pd.DataFrame, list[str]]:
    """Per run of ``task``: its metrics (``rows`` are metric rows: run_id, estimator, seed, metric,
    value; ``suffix`` the selection's, e.g. ``@best_val``) and ``value``, their unweighted mean (NaN
    where one is NaN); runs without every metric are left out, with a note."""
    names = [m + suffix for m in task.metrics]
    values = (rows[rows["metric"].isin(names)].pivot(index="run_id", columns="metric", values="value")
              .reindex(columns=names).rename(columns=dict(zip(names, task.metrics))))
    stored = rows[rows["metric"].isin(names)].groupby("run_id")["metric"].nunique()
    complete = sorted(stored[stored == len(names)].index)
    notes = []
    if len(complete) < rows["run_id"].nunique():
        notes.append(f"{task.title}: {rows['run_id'].nunique() - len(complete)} run(s) store not all of "
                     f"{', '.join(names)}: not scored")
    runs = rows.drop_duplicates("run_id").set_index("run_id").loc[complete, ["estimator", "seed"]]
    scored = runs.join(values.astype(float))
    scored["value"] = scored[list(task.metrics)].mean(axis=1, skipna=False)   # a NaN metric: a NaN score
    return scored.reset_index(), notes


def seed_averages(scores: dict[str, pd.DataFrame], estimator: str) -> tuple[Optional[pd.DataFrame], str]:
    """Per seed on which ``estimator`` has a score on every task of ``scores``: the mean of that
    seed's task scores (columns estimator, seed, value); None and why where there is none."""
    mine = {name: s[s["estimator"] == estimator] for name, s in scores.items()}
    missing = [name for name, s in mine.items() if s.empty]
    if missing:
        return None, f"{estimator}: no {', '.join(missing)} score: no average (one over fewer tasks is not shown)"
    if any(s["seed"].duplicated().any() for s in mine.values()):
        return None, f"{estimator}: several runs for one seed (pooled configurations): no per-seed average"
    per_seed = pd.concat([s.set_index("seed")["value"].rename(name) for name, s in mine.items()], axis=1, join="inner")
    if per_seed.empty:
        return None, f"{estimator}: no seed ran every task: no average"
    frame = pd.DataFrame({"estimator": estimator, "seed": per_seed.index,
                          "value": per_seed.astype(float).mean(axis=1, skipna=False).to_numpy()})
    return frame, ""


def _cell(runs: pd.DataFrame, task: GlueTask) -> Cell:
    from bench.report import statistics

    cell = statistics.cell(runs["value"])
    if len(task.metrics) > 1:
        cell.parts = tuple(float(runs[m].astype(float).mean()) for m in task.metrics)
    return cell


def glue_table(group, model: str, block: Optional[str], reference: str, ci: str = "t",
               select: str = "last") -> ReportTable:
    """The GLUE table of one model (and block) of a :class:`~bench.report.columns.ReportGroup`; a
    table with a message and no rows where no run stores every metric of its task for ``select``."""
    from bench.report import statistics
    from bench.report.deltas import MARKER_LEGEND
    from bench.report.paired import NOT_RANKED, paired_column

    frame = group.frame
    same = (frame["model"] == model) & (frame["block"].isna() if block is None else frame["block"] == block)
    frame = frame[same]
    suffix = SELECTION_SUFFIX[select]
    scores: dict[str, pd.DataFrame] = {}
    tasks, notes = [], []
    for task in GLUE_TASKS:
        rows = frame[frame["dataset"] == task.dataset]
        if rows.empty:
            continue
        runs, why = task_scores(rows, task, suffix)
        notes += why
        if not runs.empty:
            tasks.append(task)
            scores[task.title] = runs
    which = model + (f" ({block})" if block else "")
    title = f"{group.task}, preset {group.preset}: GLUE tasks and score, {which}"
    label = f"tab:{slug(f'{group.task}-{group.preset}')}-glue-{slug(which)}"
    if not tasks:
        return ReportTable(task=group.task, preset=group.preset, kind="glue", title=title, label=label, notes=notes,
                           message=f"no run stores every metric of its GLUE task {SELECTION_TEXT[select]}")
    estimators = order_estimators(e for s in scores.values() for e in s["estimator"].unique())
    columns = [t.header for t in tasks]
    cells = {e: [] for e in estimators}
    report_columns = []
    for task in tasks:
        runs = scores[task.title]
        for estimator in estimators:
            mine = runs[runs["estimator"] == estimator]
            cells[estimator].append(_cell(mine, task) if not mine.empty else Cell())
            if mine["seed"].duplicated().any():
                notes.append(f"{estimator} on {task.title} pools {len(mine)} runs over {mine['seed'].nunique()} "
                             "seeds: runs with different configurations share this cell")
        report_columns.append(ReportColumn(task.header, task.dataset, model, "task score", True, runs, block))
    if len(tasks) > 1:
        columns.append(average_label(tasks))
        averages = []
        for estimator in estimators:
            runs, why = seed_averages(scores, estimator)
            if runs is None:
                notes.append(why)
                cells[estimator].append(Cell())
            else:
                averages.append(runs)
                cells[estimator].append(statistics.cell(runs["value"]))
        runs = pd.concat(averages, ignore_index=True) if averages else pd.DataFrame(columns=["estimator", "seed",
                                                                                           "value"])
        report_columns.append(ReportColumn(columns[-1], "GLUE", model, "average of the task scores", True, runs, block))
    metrics = [ColumnMetric(c.label, c.metric, True) for c in report_columns]
    rows = [cells[e] for e in estimators]
    paired = [paired_column(c, reference, ci) for c in report_columns] if select != "best" else []
    unranked = rank_columns(rows, metrics, paired, estimators, columns, select)
    notes += [f"every column: {NOT_RANKED}"] if len(unranked) == len(columns) > 1 else unranked
    notes.append("GLUE's test labels are hidden: these are dev scores, not comparable with the leaderboard's test "
                 "scores")
    return ReportTable(
        task=group.task, preset=group.preset, kind="glue", title=title, label=label,
        rows=estimators, columns=columns, cells=rows, metrics=metrics, notes=notes,
        description=(f"scores {SELECTION_TEXT[select]}; {SCORE_RULE}. A cell: the task's score (for a two-metric "
                     "task after its metrics' means as papers print them, e.g. MRPC F1/acc → score), mean ± sample "
                     "std (ddof=1) over seeds, n = number of runs. The last column averages the task scores of the "
                     "tasks it names, per seed that ran all of them (n = those seeds); it is the GLUE score only "
                     "with all nine tasks, and it is left empty for an estimator missing one of them. "
                     + ("No bold, markers or paired differences on test-selected scores." if select == "best" else
                        f"Best per ranked column in bold; {MARKER_LEGEND.format(reference=reference)} (paired by "
                        "seed, on the task scores and on the per-seed averages).")),
    )


def glue_tables(group, reference: str, ci: str = "t", select: str = "last") -> list[ReportTable]:
    """The GLUE tables of a (task, preset) group, one per model (and block): only where its runs
    asked for an average (``report_average``) and some are on a GLUE task."""
    frame = group.frame
    if not frame["report_average"].astype("boolean").fillna(False).any():
        return []
    on_glue = frame[frame["dataset"].isin(GLUE_DATASETS)]
    keys = sorted({(m, b if isinstance(b, str) and b else None) for m, b in zip(on_glue["model"], on_glue["block"])},
                  key=lambda k: (k[0], k[1] or ""))
    return [glue_table(group, model, block, reference, ci, select) for model, block in keys]
