"""The report's GLUE table: each task's official metric(s) and score, and the average of the
scores as the GLUE leaderboard defines it (bench.report.glue), from rows inserted into a database."""
from __future__ import annotations

import pytest

from bench.db import ResultsDB, Run
from bench.report import build_tables, render_latex_table, render_markdown_table, write_report
from bench.report.glue import GLUE_TASKS, average_label
from test_report import _md_row

MODEL = "minilm_l6"
# per task, the metrics one run stores (the glue family's names; the first is the primary metric)
METRICS = {"cola": ("mcc",), "sst2": ("accuracy",), "mrpc": ("f1", "accuracy"), "stsb": ("pearson", "spearman"),
           "qqp": ("f1", "accuracy"), "mnli": ("accuracy_matched", "accuracy_mismatched"), "qnli": ("accuracy",),
           "rte": ("accuracy",), "wnli": ("accuracy",), "vader_sst2": ("accuracy",)}
# BERT-base on the GLUE leaderboard (test): score 78.3 (PaddlePaddle/ERNIE README copies the row)
BERT_BASE = {"cola": (52.1,), "sst2": (93.5,), "mrpc": (88.9, 84.8), "stsb": (87.1, 85.8), "qqp": (71.2, 89.2),
             "mnli": (84.6, 83.4), "qnli": (90.5,), "rte": (66.4,), "wnli": (65.1,)}


def glue_run(db, estimator, seed, dataset, values, *, model=MODEL, preset="quick", suffix=""):
    """A finished glue run storing ``values`` under its dataset's metric names (+ ``suffix``), with
    ``report_average`` set as the runner sets it for the glue family."""
    run_id = db.start_run(config_hash=f"glue-{dataset}-{model}-{estimator}-{preset}-{seed}",
                          config={"estimator": estimator, "seed": seed, "estimator_hparams": {}}, task="glue",
                          task_version="3", dataset=dataset, model=model, estimator=estimator, preset=preset,
                          seed=seed, variant=estimator)
    names = METRICS[dataset]
    metrics = [dict(name=name + suffix, value=value, higher_is_better=True, primary=i == 0 and not suffix)
               for i, (name, value) in enumerate(zip(names, values))]
    if suffix:  # the last epoch's too, so the run has a primary metric
        metrics += [dict(name=name, value=0.0, higher_is_better=True, primary=i == 0) for i, name in enumerate(names)]
    db.finish_run(run_id, "finished", metrics=metrics)
    with db.session() as s:
        s.get(Run, run_id).report_average = True
    return run_id


def _glue(tables, model=MODEL):
    [table] = [t for t in tables if t.kind == "glue" and t.title.endswith(model)]
    return table


@pytest.fixture
def db(tmp_path):
    return ResultsDB(f"sqlite:///{tmp_path}/glue.sqlite")


def test_the_definition_names_the_metrics_the_glue_family_stores():
    """Every metric the table averages is one a glue run stores under that name (MNLI per dev split)."""
    from tasks.glue.task import GlueTask

    task = GlueTask()
    assert [t.dataset for t in GLUE_TASKS] == list(task.dataset_groups["all"])
    for glue in GLUE_TASKS:
        stored = [spec.key for spec in task.metric_specs(glue.dataset)]
        assert stored == list(glue.metrics), glue.dataset
    assert GLUE_TASKS[5].metrics == ("accuracy_matched", "accuracy_mismatched")


def test_task_scores_are_the_unweighted_mean_of_their_metrics(db):
    for dataset, values in BERT_BASE.items():
        glue_run(db, "fp32", 0, dataset, values)
    table = _glue(build_tables(db))
    expected = {"CoLA (MCC)": 52.1, "SST-2 (acc)": 93.5, "MRPC (F1/acc)": 86.85, "STS-B (P/S)": 86.45,
                "QQP (F1/acc)": 80.2, "MNLI (m/mm)": 84.0, "QNLI (acc)": 90.5, "RTE (acc)": 66.4, "WNLI (acc)": 65.1}
    assert table.columns[:-1] == list(expected)
    for column, score in expected.items():
        assert table.cell("fp32", column).mean == pytest.approx(score)
    assert table.cell("fp32", "MRPC (F1/acc)").parts == pytest.approx((88.9, 84.8))   # F1 first, as papers print it
    assert table.cell("fp32", "MNLI (m/mm)").parts == pytest.approx((84.6, 83.4))


def test_the_glue_score_reproduces_the_leaderboard(db):
    """Nine tasks, MNLI once as the mean of m and mm: BERT-base's 78.3 (78.34); counting MNLI-m and
    MNLI-mm as two entries would give 78.91, leaving WNLI out 80.00."""
    for dataset, values in BERT_BASE.items():
        glue_run(db, "fp32", 0, dataset, values)
    table = _glue(build_tables(db))
    assert table.columns[-1] == "GLUE score (9 tasks)"
    score = table.cell("fp32", "GLUE score (9 tasks)").mean
    assert score == pytest.approx(705.1 / 9) and round(score, 1) == 78.3


def test_mnli_is_one_task_whose_score_is_the_mean_of_matched_and_mismatched(db):
    glue_run(db, "fp32", 0, "mnli", (80.0, 84.0))
    glue_run(db, "fp32", 0, "rte", (60.0,))
    table = _glue(build_tables(db))
    assert table.columns == ["MNLI (m/mm)", "RTE (acc)", "avg (2 tasks, no CoLA, SST-2, MRPC, STS-B, QQP, QNLI, WNLI)"]
    assert table.cell("fp32", "MNLI (m/mm)").mean == pytest.approx(82.0)
    assert table.cell("fp32", table.columns[-1]).mean == pytest.approx((82.0 + 60.0) / 2)   # not (80+84+60)/3


def test_the_average_is_per_seed_mean_and_sample_std_and_labelled_with_its_tasks(db):
    # clipped_ste on 3 seeds: mrpc (f1, acc), cola (mcc); WNLI never ran
    mrpc = [(80.0, 70.0), (82.0, 72.0), (84.0, 74.0)]   # scores 75, 77, 79
    cola = [20.0, 30.0, 40.0]
    for seed in range(3):
        glue_run(db, "clipped_ste", seed, "mrpc", mrpc[seed])
        glue_run(db, "clipped_ste", seed, "cola", (cola[seed],))
    table = _glue(build_tables(db))
    label = "avg (2 tasks, no SST-2, STS-B, QQP, MNLI, QNLI, RTE, WNLI)"
    assert table.columns == ["CoLA (MCC)", "MRPC (F1/acc)", label]
    mrpc_cell = table.cell("clipped_ste", "MRPC (F1/acc)")
    assert (mrpc_cell.mean, mrpc_cell.std, mrpc_cell.n) == (pytest.approx(77.0), pytest.approx(2.0), 3)
    average = table.cell("clipped_ste", label)   # per seed: 47.5, 53.5, 59.5
    assert (average.mean, average.std, average.n) == (pytest.approx(53.5), pytest.approx(6.0), 3)
    assert average_label(list(GLUE_TASKS[:-1])) == "avg (8 tasks, no WNLI)"
    assert average_label(list(GLUE_TASKS)) == "GLUE score (9 tasks)"


def test_a_missing_task_leaves_the_average_empty_with_a_note(db):
    for dataset, values in BERT_BASE.items():
        glue_run(db, "fp32", 0, dataset, values)
        if dataset != "wnli":                       # ste never ran WNLI
            glue_run(db, "ste", 0, dataset, values)
    table = _glue(build_tables(db))
    assert table.cell("ste", "GLUE score (9 tasks)").missing
    assert table.cell("ste", "WNLI (acc)").missing and table.cell("ste", "RTE (acc)").mean == pytest.approx(66.4)
    assert any(n.startswith("ste: no WNLI score: no average") for n in table.notes)
    md = render_markdown_table(table)
    assert _md_row(md, "ste")[-1] == "–" and _md_row(md, "fp32")[-1] == "78.34 (n=1)"


def test_seeds_that_did_not_run_every_task_are_not_averaged(db):
    glue_run(db, "surge", 0, "rte", (60.0,))
    glue_run(db, "surge", 1, "rte", (62.0,))
    glue_run(db, "surge", 1, "qnli", (80.0,))
    glue_run(db, "surge", 2, "qnli", (82.0,))
    table = _glue(build_tables(db))
    average = table.cell("surge", table.columns[-1])
    assert (average.mean, average.n) == (pytest.approx(71.0), 1)   # seed 1 only


def test_runs_off_glue_stay_in_the_results_table_which_loses_its_primary_metric_average(db):
    for dataset, values in BERT_BASE.items():
        glue_run(db, "fp32", 0, dataset, values)
    glue_run(db, "fp32", 0, "vader_sst2", (70.0,))
    tables = build_tables(db)
    glue = _glue(tables)
    assert "vader_sst2" not in " ".join(glue.columns)
    [results] = [t for t in tables if t.kind == "results"]
    assert "vader_sst2 / minilm_l6" in results.columns
    assert not any(c.startswith("average") for c in results.columns)   # the GLUE table has the average
    assert [t.kind for t in tables] == ["results", "glue", "deltas", "aggregate"]


def test_one_table_per_model(db):
    for model in ("minilm_l6", "bert_base"):
        glue_run(db, "fp32", 0, "rte", (60.0,), model=model)
        glue_run(db, "fp32", 0, "mrpc", (80.0, 70.0), model=model)
    tables = [t for t in build_tables(db) if t.kind == "glue"]
    assert [t.title.rsplit(", ", 1)[1] for t in tables] == ["bert_base", "minilm_l6"]
    assert len({t.label for t in tables}) == 2


def test_the_selection_reads_the_suffixed_metrics(db):
    glue_run(db, "fp32", 0, "mnli", (70.0, 72.0), suffix="@best_val")
    glue_run(db, "fp32", 0, "rte", (60.0,), suffix="@best_val")
    last = _glue(build_tables(db))
    assert last.cell("fp32", "MNLI (m/mm)").mean == pytest.approx(0.0)
    best = _glue(build_tables(db, select="best_val"))
    assert best.cell("fp32", "MNLI (m/mm)").mean == pytest.approx(71.0)
    assert best.cell("fp32", best.columns[-1]).mean == pytest.approx(65.5)


def test_bold_and_markers_follow_the_paired_statistics(db):
    """Three paired seeds: the best score in bold, a significant paired difference marked."""
    for seed in range(3):
        glue_run(db, "clipped_ste", seed, "rte", (60.0 + seed,))
        glue_run(db, "clipped_ste", seed, "mrpc", (80.0 + seed, 70.0))
        glue_run(db, "surge", seed, "rte", (65.0 + seed + 0.1 * seed * seed,))
        glue_run(db, "surge", seed, "mrpc", (85.0 + seed, 75.0 + 0.2 * seed))
    table = _glue(build_tables(db))
    for column in table.columns:
        assert table.cell("surge", column).bold and not table.cell("clipped_ste", column).bold
        assert table.cell("surge", column).significant
    md = render_markdown_table(table)
    assert _md_row(md, "surge")[1].startswith("**86.00/75.20 → 80.60 ± ")   # MRPC: F1/acc → score
    assert all(cell.endswith(r"\*") for cell in _md_row(md, "surge")[1:])


def test_too_few_seeds_are_not_ranked(db):
    glue_run(db, "clipped_ste", 0, "rte", (60.0,))
    glue_run(db, "surge", 0, "rte", (70.0,))
    table = _glue(build_tables(db))
    assert not table.cell("surge", "RTE (acc)").bold
    assert any(n.startswith("RTE (acc): not ranked") for n in table.notes)


def test_rendered_headers_and_cells_in_both_formats(db):
    for dataset, values in BERT_BASE.items():
        glue_run(db, "fp32", 0, dataset, values)
    table = _glue(build_tables(db))
    md = render_markdown_table(table)
    header = next(line for line in md.splitlines() if line.startswith("| estimator"))
    assert header == ("| estimator | CoLA (MCC) | SST-2 (acc) | MRPC (F1/acc) | STS-B (P/S) | QQP (F1/acc) | "
                      "MNLI (m/mm) | QNLI (acc) | RTE (acc) | WNLI (acc) | GLUE score (9 tasks) |")
    row = _md_row(md, "fp32")
    assert row[3] == "88.90/84.80 → 86.85 (n=1)" and row[6] == "84.60/83.40 → 84.00 (n=1)"
    assert "Wang et al. 2019" in md and "dev scores" in md
    tex = render_latex_table(table)
    assert (r"estimator & CoLA (MCC) & SST-2 (acc) & MRPC (F1/acc) & STS-B (P/S) & QQP (F1/acc) & MNLI (m/mm) & "
            r"QNLI (acc) & RTE (acc) & WNLI (acc) & GLUE score (9 tasks) \\") in tex
    assert r"88.90/84.80 $\rightarrow$ 86.85 (n=1)" in tex
    assert r"\label{tab:glue-quick-glue-minilm_l6}" in tex


def test_the_written_report_has_the_glue_table(db, tmp_path):
    for dataset, values in BERT_BASE.items():
        glue_run(db, "fp32", 0, dataset, values)
    paths = write_report(db, tmp_path / "out")
    text = (tmp_path / "out" / "results.md").read_text()
    assert "glue, preset quick: GLUE tasks and score, minilm_l6" in text and "78.34 (n=1)" in text
    assert (tmp_path / "out" / "tables" / "glue-quick-glue-minilm_l6.tex") in paths


def test_no_glue_table_without_glue_tasks_or_without_the_average(db, tmp_path):
    glue_run(db, "fp32", 0, "vader_sst2", (70.0,))
    assert not [t for t in build_tables(db) if t.kind == "glue"]
    other = ResultsDB(f"sqlite:///{tmp_path}/other.sqlite")
    run_id = glue_run(other, "fp32", 0, "rte", (60.0,))
    with other.session() as s:
        s.get(Run, run_id).report_average = False
    assert not [t for t in build_tables(other) if t.kind == "glue"]


def test_runs_without_every_metric_of_their_task_are_not_scored(db, tmp_path):
    glue_run(db, "fp32", 0, "mrpc", (88.0,))            # F1 only: no MRPC score
    glue_run(db, "fp32", 0, "rte", (60.0,))
    table = _glue(build_tables(db))
    assert table.columns == ["RTE (acc)"]               # one task: no average column
    assert "MRPC: 1 run(s) store not all of f1, accuracy: not scored" in table.notes
    only_f1 = ResultsDB(f"sqlite:///{tmp_path}/only_f1.sqlite")
    glue_run(only_f1, "fp32", 0, "mrpc", (88.0,))
    empty = _glue(build_tables(only_f1))
    assert empty.empty and empty.message.startswith("no run stores every metric of its GLUE task")
