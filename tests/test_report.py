"""The report generator: tables, renderers, figures and the written report, from a known database."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from bench.db import ResultsDB
from bench.identity import variant_label
from bench.report import (
    build_tables, latex_escape, plot_learning_curves, render_latex_table, render_markdown_table, write_report,
)

CLS_COL = "cifar10 / resnet18_cifar"
MNIST_COL = "mnist / mlp"
REG_COL = "toy / mlp"


def add_run(db, estimator, seed, top1, *, task="classification", dataset="cifar10", model="resnet18_cifar",
            preset="quick", status="finished", config_hash=None, curve=None, primary_name="top1",
            primary_hib=True, loss=0.5, hparams=None):
    run_id = db.start_run(
        config_hash=config_hash or f"{task}-{dataset}-{model}-{estimator}-{preset}-{seed}-{hparams}",
        config={"estimator": estimator, "seed": seed, "estimator_hparams": hparams or {}}, task=task,
        task_version="1", dataset=dataset,
        model=model, estimator=estimator, preset=preset, seed=seed, variant=variant_label(estimator, hparams or {}),
    )
    for epoch, value in enumerate(curve or [], start=1):
        db.add_curve_points(run_id, epoch, epoch * 10, {f"val_{primary_name}": value, "train_loss": 1.0 / epoch})
    metrics = [dict(name=primary_name, value=top1, higher_is_better=primary_hib, primary=True)]
    if primary_name != "loss":
        metrics.append(dict(name="loss", value=loss, higher_is_better=False, primary=False))
    db.finish_run(run_id, status, metrics=metrics if status == "finished" else None)
    return run_id


@pytest.fixture
def db(tmp_path):
    db = ResultsDB(f"sqlite:///{tmp_path}/r.sqlite")
    # classification / quick on cifar10: fp32 90.58; clipped_ste 90,91,92 -> 91 ± 1; surge 91.5, 92.5 -> 92 ± 0.71
    add_run(db, "fp32", 0, 90.58, curve=[50, 80, 90.58])
    for seed, value in enumerate([90.0, 91.0, 92.0]):
        add_run(db, "clipped_ste", seed, value, curve=[40 + seed, 70 + seed, value])
    for seed, value in enumerate([91.5, 92.5]):
        add_run(db, "surge", seed, value, curve=[45, 75, value])
    # surge also on mnist / mlp; nobody else -> dashes in that column for the others
    add_run(db, "surge", 0, 98.0, dataset="mnist", model="mlp")
    # runs that must be ignored: failed, diverged, and a superseded execution of a config
    add_run(db, "surge", 7, 0.0, status="failed")
    add_run(db, "clipped_ste", 7, 10.0, status="diverged")
    add_run(db, "ste", 0, 10.0, config_hash="ste-rerun")          # replaced by the rerun below
    add_run(db, "ste", 0, 89.0, config_hash="ste-rerun")
    # a second task whose primary metric is lower-is-better
    add_run(db, "clipped_ste", 0, 0.30, task="regression", dataset="toy", model="mlp", primary_name="mse",
            primary_hib=False)
    add_run(db, "surge", 0, 0.20, task="regression", dataset="toy", model="mlp", primary_name="mse",
            primary_hib=False)
    add_run(db, "ste", 0, 0.20, task="regression", dataset="toy", model="mlp", primary_name="mse",
            primary_hib=False)
    return db


def _table(tables, task, kind, preset="quick"):
    [table] = [t for t in tables if t.task == task and t.kind == kind and t.preset == preset]
    return table


def _md_row(markdown: str, name: str) -> list[str]:
    [line] = [line for line in markdown.splitlines() if line.startswith(f"| {name} |")]
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_results_deltas_and_aggregate_tables_per_task_and_preset(db):
    tables = build_tables(db)
    assert sorted((t.task, t.preset, t.kind) for t in tables) == [
        ("classification", "quick", "aggregate"), ("classification", "quick", "deltas"),
        ("classification", "quick", "results"),
        ("regression", "quick", "aggregate"), ("regression", "quick", "deltas"), ("regression", "quick", "results"),
    ]
    # fp32 ran once on one column of classification: only clipped_ste has 3 seeds there; regression has no fp32
    classification = _table(tables, "classification", "aggregate")
    assert classification.rows == ["clipped_ste"]
    assert "mnist / mlp: no fp32 run: not aggregated" in classification.notes
    assert "surge: 2 seed(s) on every column, fewer than 3: not aggregated" in classification.notes
    assert "no column has fp32 runs" in _table(tables, "regression", "aggregate").message
    results = _table(tables, "classification", "results")
    assert results.columns == [CLS_COL, MNIST_COL]
    assert results.rows == ["fp32", "clipped_ste", "ste", "surge"]   # references first, then alphabetical
    assert [m.metric for m in results.metrics] == ["top1", "top1"]


def test_mean_sample_std_and_seed_count(db):
    results = _table(build_tables(db), "classification", "results")
    cell = results.cell("clipped_ste", CLS_COL)
    assert cell.n == 3 and cell.mean == pytest.approx(91.0) and cell.std == pytest.approx(1.0)
    surge = results.cell("surge", CLS_COL)
    assert surge.n == 2 and surge.std == pytest.approx(0.7071, abs=1e-4)   # ddof=1, not 0.5
    md = render_markdown_table(results)
    assert _md_row(md, "clipped_ste")[1] == "91.00 ± 1.00 (n=3)"
    assert _md_row(md, "surge")[1] == "92.00 ± 0.71 (n=2)"   # no bold: no column here has 3 paired seeds
    assert _md_row(md, "fp32")[1] == "90.58 (n=1)"                     # single seed: std omitted
    assert f"{CLS_COL}: not ranked" in md


def test_ignores_failed_diverged_and_superseded_runs(db):
    results = _table(build_tables(db), "classification", "results")
    assert results.cell("clipped_ste", CLS_COL).n == 3                 # the diverged seed 7 is not counted
    assert results.cell("surge", CLS_COL).n == 2                       # the failed seed 7 is not counted
    ste = results.cell("ste", CLS_COL)
    assert ste.n == 1 and ste.mean == pytest.approx(89.0)              # the forced rerun counts once: the latest


def _ranked_db(tmp_path):
    """Three paired seeds per estimator: columns that rank (cifar10 higher-is-better, toy mse lower)."""
    db = ResultsDB(f"sqlite:///{tmp_path}/ranked.sqlite")
    top1 = {"clipped_ste": [90.0, 90.1, 90.2], "ste": [89.0, 89.3, 89.1], "surge": [92.0, 92.2, 92.4],
            "fp32": [91.0, 91.4, 91.1]}
    mse = {"clipped_ste": [0.30, 0.32, 0.31], "ste": [0.20, 0.21, 0.22], "surge": [0.21, 0.22, 0.20]}
    for estimator, values in top1.items():
        for seed, value in enumerate(values):
            add_run(db, estimator, seed, value)
    for estimator, values in mse.items():
        for seed, value in enumerate(values):
            add_run(db, estimator, seed, value, task="regression", dataset="toy", model="mlp", primary_name="mse",
                    primary_hib=False)
    return db


def test_best_cell_bold_respects_direction_and_ties_in_ranked_columns(tmp_path, db):
    tables = build_tables(_ranked_db(tmp_path))
    cls = _table(tables, "classification", "results")
    assert [cls.cell(r, CLS_COL).bold for r in cls.rows] == [False, False, False, True]   # max top1: surge
    reg = _table(tables, "regression", "results")
    assert reg.metrics[0].metric == "mse" and not reg.metrics[0].higher_is_better
    bold = {r: reg.cell(r, REG_COL).bold for r in reg.rows}
    assert bold == {"clipped_ste": False, "ste": True, "surge": True}   # min mse, tie -> both bold
    md = render_markdown_table(reg)
    assert _md_row(md, "clipped_ste")[1].startswith("0.3100 ± ")       # a column within (-1, 1): 4 decimals
    assert reg.cell("ste", REG_COL).mean == pytest.approx(reg.cell("surge", REG_COL).mean)
    assert _md_row(md, "ste")[1].startswith("**") and not _md_row(md, "clipped_ste")[1].startswith("**")
    assert not any("not ranked" in note for note in cls.notes + reg.notes)
    # the one-seed fixture ranks nothing: no bold anywhere, and a note says why
    small = _table(build_tables(db), "classification", "results")
    assert not any(c.bold for row in small.cells for c in row)
    assert sum("not ranked" in note for note in small.notes) == 2


def test_missing_cell_is_a_dash(db):
    cls = _table(build_tables(db), "classification", "results")
    assert cls.cell("fp32", MNIST_COL).missing
    assert _md_row(render_markdown_table(cls), "fp32")[2] == "\u2013"
    assert _md_row(render_markdown_table(cls), "surge")[2] == "98.00 (n=1)"   # one seed: not ranked, no bold
    latex_row = [line for line in render_latex_table(cls).splitlines() if line.startswith("fp32 &")][0]
    assert latex_row.rstrip(" \\").split(" & ")[2] == "--"


def test_deltas_are_paired_by_seed_to_clipped_ste(db):
    deltas = _table(build_tables(db), "classification", "deltas")
    delta, p = f"{CLS_COL}: Δ [95 % CI]", f"{CLS_COL}: p (Holm)"
    assert deltas.rows == ["fp32", "ste", "surge"]              # every estimator but the reference; no MDD row:
    assert deltas.columns[:2] == [delta, p]                     # nothing has 3 paired seeds
    surge = deltas.cell("surge", delta)                         # seeds 0, 1: 91.5 - 90, 92.5 - 91
    assert (surge.mean, surge.n, surge.interval, surge.significant) == (pytest.approx(1.5), 2, None, False)
    assert deltas.cell("ste", delta).mean == pytest.approx(-1.0)        # seed 0 only: 89 - 90
    assert deltas.cell("fp32", delta).mean == pytest.approx(0.58)       # fp32 is a row like the others
    assert deltas.cell("surge", f"{MNIST_COL}: Δ [95 % CI]").missing    # no reference there
    md = render_markdown_table(deltas)
    assert _md_row(md, "surge")[1:] == ["+1.50 (n=2)", "n < 3: not tested", "\u2013", "\u2013"]
    assert _md_row(md, "ste")[1] == "-1.00 (n=1)"
    assert "Δ = estimator − clipped_ste" in md and "higher is better" in md
    assert any("n < 3 paired seeds: not tested" in note for note in deltas.notes)
    assert any(note.startswith(f"{MNIST_COL}: no clipped_ste run") for note in deltas.notes)
    assert r"$-$1.00 (n=1)" in render_latex_table(deltas)


def test_pooled_configurations_are_flagged(db):
    add_run(db, "surge", 0, 93.0, config_hash="surge-other-eta-seed0")   # same seed, another config
    results = _table(build_tables(db), "classification", "results")
    assert results.cell("surge", CLS_COL).n == 3
    assert any("surge" in note and "pools 3 runs over 2 seeds" in note for note in results.notes)
    assert "> Note:" in render_markdown_table(results)


def test_estimator_hyperparameter_variants_get_their_own_rows(db):
    add_run(db, "surge", 0, 80.0, hparams={"eta": 0.5, "base": "clipped_ste"})
    add_run(db, "surge", 1, 82.0, hparams={"eta": 0.5, "base": "clipped_ste"})
    add_run(db, "surge", 2, 70.0, hparams={"eta": 0.1})  # the default eta: the plain row
    results = _table(build_tables(db), "classification", "results")
    assert "surge (eta=0.5)" in results.rows
    variant = results.cell("surge (eta=0.5)", CLS_COL)
    assert (variant.n, variant.mean) == (2, 81.0)
    assert results.cell("surge", CLS_COL).n == 3
    assert variant_label("surge", {"eta": 0.1, "shared_aux": True}) == "surge (shared_aux=True)"
    assert variant_label("gone_estimator", {"x": 1}) == "gone_estimator"


def test_preset_filter(db):
    add_run(db, "surge", 0, 95.0, preset="paper")
    assert {t.preset for t in build_tables(db)} == {"quick", "paper"}
    paper = build_tables(db, preset="paper")
    assert {t.preset for t in paper} == {"paper"}
    assert _table(paper, "classification", "results", preset="paper").rows == ["surge"]
    [empty] = build_tables(db, preset="nope")
    assert empty.empty and "no finished runs" in empty.message


def test_markdown_is_a_valid_table(db):
    for table in build_tables(db):
        if table.empty:
            assert table.message and table.message in render_markdown_table(table)
            continue
        lines = [line for line in render_markdown_table(table).splitlines() if line.startswith("|")]
        assert len(lines) == 2 + len(table.rows)
        assert len({line.count("|") for line in lines}) == 1
        assert lines[0].count("|") == len(table.columns) + 2
        assert re.fullmatch(r"\|(:?-+:?\|)+", lines[1])


def _balanced(text: str) -> bool:
    depth = 0
    for ch in re.sub(r"\\[{}]", "", text):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def _environments_paired(text: str) -> bool:
    stack = []
    for kind, name in re.findall(r"\\(begin|end)\{([^}]*)\}", text):
        if kind == "begin":
            stack.append(name)
        elif not stack or stack.pop() != name:
            return False
    return not stack


def test_latex_table_booktabs_bold_escaping(db, tmp_path):
    tables = build_tables(db)
    cls = _table(tables, "classification", "results")
    tex = render_latex_table(cls)
    for token in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{table}", r"\caption{", r"\label{tab:",
                  r"\begin{tabular}{lcc}"):
        assert token in tex
    assert tex.index(r"\toprule") < tex.index(r"\midrule") < tex.index(r"\bottomrule")
    assert r"clipped\_ste &" in tex and "clipped_ste &" not in tex
    assert r"92.00 $\pm$ 0.71 (n=2)" in tex and r"\textbf" not in tex  # not ranked: nothing bold
    assert r"91.00 $\pm$ 1.00 (n=3)" in tex and "±" not in tex
    ranked = render_latex_table(_table(build_tables(_ranked_db(tmp_path)), "classification", "results"))
    assert r"\textbf{92.20 $\pm$ 0.20 (n=3)}" in ranked
    for table in tables:
        tex = render_latex_table(table)
        assert _balanced(tex) and _environments_paired(tex)
        assert tex.isascii()
    deltas = render_latex_table(_table(tables, "classification", "deltas"))
    assert r"\begin{tabular}{lcccc}" in deltas and r"\cmidrule(lr){2-3}" in deltas


def test_latex_escape():
    assert latex_escape("a_b 50% R&D #1 $x {y} ~^\\") == (
        r"a\_b 50\% R\&D \#1 \$x \{y\} \textasciitilde{}\textasciicircum{}\textbackslash{}")


def test_empty_database_does_not_crash(tmp_path):
    db = ResultsDB(f"sqlite:///{tmp_path}/empty.sqlite")
    [table] = build_tables(db)
    assert table.empty and "no finished runs" in table.message
    assert "no finished runs" in render_markdown_table(table)
    assert _balanced(render_latex_table(table)) and _environments_paired(render_latex_table(table))
    assert plot_learning_curves(db, tmp_path / "fig") == []
    paths = write_report(db, tmp_path / "out")
    assert {p.name for p in paths} == {"results.md", "results.tex"}
    assert "no finished runs" in (tmp_path / "out" / "results.md").read_text()


def test_learning_curves_written(db, tmp_path):
    paths = plot_learning_curves(db, tmp_path / "figs")
    # curves exist only for classification / cifar10 / resnet18_cifar / quick
    assert [p.name for p in paths] == ["curves_classification_cifar10_resnet18_cifar_quick.png"]
    data = paths[0].read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_report(db, tmp_path):
    out = tmp_path / "report"
    paths = write_report(db, out)
    names = {p.relative_to(out).as_posix() for p in paths}
    assert names == {
        "results.md", "results.tex",
        "tables/classification_quick.tex", "tables/classification_quick_deltas.tex",
        "tables/classification_quick_aggregate.tex", "tables/regression_quick.tex", "tables/regression_quick_deltas.tex",
        "tables/classification-quick-cifar10-resnet18_cifar-efficiency.tex",
        "tables/classification-quick-mnist-mlp-efficiency.tex", "tables/regression-quick-toy-mlp-efficiency.tex",
        "figures/curves_classification_cifar10_resnet18_cifar_quick.png",
        "figures/forest_classification_quick.png", "figures/forest_regression_quick.png",
    }
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)
    md = (out / "results.md").read_text()
    assert db.url.split("///")[-1] in md and "generated:" in md and "sample standard deviation" in md
    assert "91.00 ± 1.00 (n=3)" in md and "figures/curves_classification" in md
    assert "figures/forest_classification_quick.png" in md and "aggregate over columns: not computed" in md
    tex = (out / "results.tex").read_text()
    assert tex.startswith(r"\documentclass{article}") and r"\usepackage{booktabs}" in tex
    assert tex.rstrip().endswith(r"\end{document}") and _balanced(tex) and _environments_paired(tex)
    # results and deltas of both tasks, classification's aggregate, 3 efficiency tables
    assert tex.count(r"\begin{table}") == 4 + 1 + 3 and tex.isascii()
    assert "figures/forest_regression_quick.png" in tex and "aggregate over columns: not computed" in tex
    alone = (out / "tables" / "classification_quick.tex").read_text()
    assert alone.startswith(r"\begin{table}") and r"\documentclass" not in alone

    only_md = write_report(db, tmp_path / "md_only", formats=("md",))
    assert not any(p.suffix == ".tex" for p in only_md)
    with pytest.raises(ValueError):
        write_report(db, tmp_path / "bad", formats=("html",))


def test_database_password_is_not_written(tmp_path, db):
    db.url = "postgresql+psycopg://alice:s3cret@db.example/bench"    # only the rendered URL matters
    write_report(db, tmp_path / "out", formats=("md",))
    md = (tmp_path / "out" / "results.md").read_text()
    assert "s3cret" not in md and "alice" in md


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_results_tex_compiles(db, tmp_path):
    out = tmp_path / "report"
    write_report(db, out, formats=("latex",))
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "results.tex"],
                          cwd=out, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    assert (out / "results.pdf").stat().st_size > 0


def test_the_primary_metric_is_the_stored_one_of_the_latest_run_not_a_vote(tmp_path):
    db = ResultsDB(f"sqlite:///{tmp_path}/p.sqlite")
    for seed in range(3):  # three older runs flagged loss (lower is better) as their primary metric
        add_run(db, "ste", seed, 0.9, primary_name="loss", primary_hib=False)
    add_run(db, "surge", 0, 91.0)  # the latest run flags top1
    results = _table(build_tables(db), "classification", "results")
    assert [(m.metric, m.higher_is_better) for m in results.metrics] == [("top1", True)]
    assert any("older runs stored loss as their primary metric" in note for note in results.notes)


def test_the_average_column_is_where_the_runs_asked_for_it(tmp_path):
    """A family with report_average and no GLUE tasks: the mean of the primary metrics per model; on
    GLUE tasks the GLUE table has the average instead (tests/test_report_glue.py)."""
    from bench.db import Run

    db = ResultsDB(f"sqlite:///{tmp_path}/a.sqlite")
    for task, dataset, value in (("nlp", "toy_a", 60.0), ("nlp", "toy_b", 80.0), ("glue", "rte", 60.0),
                                 ("glue", "sst2", 80.0)):
        run_id = add_run(db, "surge", 0, value, task=task, dataset=dataset, model="bert", primary_name="accuracy")
        with db.session() as s:  # what the runner stores for a family with report_average
            s.get(Run, run_id).report_average = True
    tables = build_tables(db)
    results = _table(tables, "nlp", "results")
    assert results.columns[-1] == "average / bert" and results.cell("surge", "average / bert").mean == 70.0
    assert _table(tables, "glue", "results").columns == ["rte / bert", "sst2 / bert"]
    assert _table(tables, "glue", "glue").cell("surge", "avg (2 tasks, no CoLA, MRPC, STS-B, QQP, MNLI, QNLI, "
                                                        "WNLI)").mean == 70.0


def test_the_report_reads_only_the_database():
    import ast
    from pathlib import Path

    for path in (Path(__file__).parent.parent / "bench" / "report").glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not {m for m in imported if m.split(".")[0] in ("estimators", "tasks") or m == "bench.plugins"}, path


def _costed_run(db, estimator, seed, step_ms, peak_mb, device="cpu", binary_ops=6.4e9, float_ops=1.0e8, host="node1"):
    from bench.db import Run

    run_id = add_run(db, estimator, seed, 90.0)
    with db.session() as s:
        run = s.get(Run, run_id)
        run.n_params, run.n_binary_params, run.binary_ops, run.float_ops = 11_173_962, 10_985_472, binary_ops, float_ops
        run.train_step_ms, run.peak_memory_mb = step_ms, peak_mb
        run.provenance = {"device": device, "host": host}


def test_efficiency_table_counts_ops_and_divides_timings_only_on_one_device(tmp_path):
    from bench.report import build_efficiency_tables

    db = ResultsDB(f"sqlite:///{tmp_path}/e.sqlite")
    for seed, step in enumerate([100.0, 110.0]):
        _costed_run(db, "clipped_ste", seed, step, 1000.0)
        _costed_run(db, "surge", seed, 1.6 * step, 950.0)
    _costed_run(db, "ste", 0, 50.0, 500.0, device="cuda")
    _costed_run(db, "reste", 0, 120.0, 900.0, host="node2")  # a CPU, but another machine's
    [table] = build_efficiency_tables(db)
    assert table.kind == "efficiency" and table.rows == ["clipped_ste", "reste", "ste", "surge"]
    col = {name: j for j, name in enumerate(table.columns)}
    surge = table.cells[table.rows.index("surge")]
    assert surge[col["params"]].text == "11.2M" and surge[col["BOPs"]].text == "6.4G"
    assert surge[col["OPs"]].text == "200M"  # 6.4e9 / 64 + 1e8
    assert surge[col["step ms"]].text == "168.0 (n=2)" and surge[col["step x clipped_ste"]].text == "1.60x"
    assert surge[col["peak x clipped_ste"]].text == "0.95x" and surge[col["device"]].text == "cpu (node1)"
    ste = table.cells[table.rows.index("ste")]
    assert ste[col["step x clipped_ste"]].missing and ste[col["step ms"]].text == "50.0 (n=1)"
    assert any(note.startswith("ste: no ratio to clipped_ste") for note in table.notes)
    assert table.cells[table.rows.index("reste")][col["step x clipped_ste"]].missing
    assert "| surge | 11.2M |" in render_markdown_table(table) and r"\textbf" not in render_latex_table(table)


def test_the_written_report_has_an_efficiency_section(tmp_path):
    db = ResultsDB(f"sqlite:///{tmp_path}/e.sqlite")
    _costed_run(db, "clipped_ste", 0, 100.0, 1000.0)
    write_report(db, tmp_path / "out")
    assert "## Efficiency" in (tmp_path / "out" / "results.md").read_text()
    assert (tmp_path / "out" / "tables" / "classification-quick-cifar10-resnet18_cifar-efficiency.tex").is_file()


def _block_run(db, estimator, seed, block, last, best=None, fraction=None):
    run_id = db.start_run(config_hash=f"{estimator}-{seed}-{block}", config={"estimator": estimator, "seed": seed,
                          "estimator_hparams": {}, "block": block}, task="classification", task_version="1",
                          dataset="fashion_mnist", model="resnet20_cifar", estimator=estimator, preset="quick",
                          seed=seed, variant=estimator)
    metrics = [dict(name="top1", value=last, higher_is_better=True, primary=True)]
    if best is not None:
        metrics.append(dict(name="top1@best_val", value=best, higher_is_better=True, primary=False))
    if fraction is not None:
        for epoch in (1, 2):
            db.add_curve_points(run_id, epoch, epoch, {"frac_abs_gt1_mean": fraction, "val_top1": last})
    db.finish_run(run_id, "finished", metrics=metrics)


def test_columns_are_per_block_select_picks_the_epoch_and_fp32_in_a_sign_only_block_is_explained(tmp_path):
    db = ResultsDB(f"sqlite:///{tmp_path}/blocks.sqlite")
    for seed in range(3):
        _block_run(db, "clipped_ste", seed, "bireal", 80.0 + seed, best=81.0 + seed, fraction=0.6)
        _block_run(db, "fp32", seed, "bireal", 90.0 + seed, best=91.0 + seed)
        _block_run(db, "clipped_ste", seed, "irnet", 70.0 + seed, fraction=0.0)
    last = _table(build_tables(db), "classification", "results")
    assert last.columns == ["fashion_mnist / resnet20_cifar (bireal)", "fashion_mnist / resnet20_cifar (irnet)"]
    assert last.cell("clipped_ste", last.columns[1]).mean == pytest.approx(71.0)
    assert any("fp32 applies ReLU where the binary networks apply sign" in n and "(bireal)" in n for n in last.notes)
    assert "at the last epoch" in last.description
    best = _table(build_tables(db, select="best_val"), "classification", "results")
    assert best.columns == ["fashion_mnist / resnet20_cifar (bireal)"]  # the irnet runs had no validation split
    assert best.cell("clipped_ste", best.columns[0]).mean == pytest.approx(82.0)
    assert "at the epoch best on the validation split" in best.description
    assert any("3 run(s) without a validation split have no top1@best_val" in n for n in best.notes)
    paths = write_report(db, tmp_path / "report", formats=("md",))
    names = {p.name for p in paths}
    assert {"sign_inputs_classification_fashion_mnist_resnet20_cifar_bireal_quick.png",
            "sign_inputs_classification_fashion_mnist_resnet20_cifar_irnet_quick.png"} <= names
    assert "Inputs of sign with |x| > 1" in (tmp_path / "report" / "results.md").read_text()
