"""The report's statistics: paired differences to a reference by seed, Holm, the minimal
detectable difference, the rliable aggregate, and how the tables and the forest plot show them."""
from __future__ import annotations

import math
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.power import TTestPower

from bench.db import ResultsDB
from bench.report import (
    UnknownReference, aggregate, build_tables, minimal_detectable_difference, paired_column, plot_forests,
    render_latex_table, render_markdown_table, write_report,
)
from bench.report.columns import ReportColumn
from bench.report.paired import confidence_interval, holm
from test_report import _balanced, _environments_paired, _md_row, _table, add_run

CIFAR, MNIST, TOY = "cifar10 / resnet18_cifar", "mnist / mlp", "toy / mlp"
SEEDS = range(5)
# per seed: clipped_ste's value; surge = clipped_ste + about 1 (significant); ste = clipped_ste + noise (cifar10)
CLIPPED = {"cifar10": [86.0, 86.5, 85.7, 86.3, 86.1], "mnist": [97.0, 97.3, 96.8, 97.1, 97.2]}
FP32 = {"cifar10": [92.0, 92.4, 91.8, 92.2, 92.1], "mnist": [99.0, 99.2, 98.9, 99.1, 99.0]}
SURGE_GAIN = [1.1, 0.9, 1.0, 1.2, 0.95]
STE_NOISE = [0.3, -0.4, 0.1, -0.2, 0.15]


def column(rows, label=CIFAR, metric="top1", higher_is_better=True) -> ReportColumn:
    """A column from (estimator, seed, value) rows, without a database."""
    runs = pd.DataFrame(rows, columns=["estimator", "seed", "value"])
    dataset, model = label.split(" / ")
    return ReportColumn(label, dataset, model, metric, higher_is_better, runs)


def _fill(db):
    for dataset, model in (("cifar10", "resnet18_cifar"), ("mnist", "mlp")):
        for seed in SEEDS:
            base = CLIPPED[dataset][seed]
            add_run(db, "fp32", seed, FP32[dataset][seed], dataset=dataset, model=model)
            add_run(db, "clipped_ste", seed, base, dataset=dataset, model=model)
            add_run(db, "surge", seed, base + SURGE_GAIN[seed], dataset=dataset, model=model)
            if dataset == "cifar10":          # ste on one column only: not in the aggregate
                add_run(db, "ste", seed, base + STE_NOISE[seed], dataset=dataset, model=model)
    # a lower-is-better task with two seeds only: a large, consistent difference that is not tested
    for seed, (ref, mine) in enumerate([(0.30, 0.10), (0.31, 0.11)]):
        for estimator, value in (("clipped_ste", ref), ("surge", mine)):
            add_run(db, estimator, seed, value, task="regression", dataset="toy", model="mlp", primary_name="mse",
                    primary_hib=False)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    db = ResultsDB(f"sqlite:///{tmp_path_factory.mktemp('stats')}/s.sqlite")
    _fill(db)
    return db


@pytest.fixture(scope="module")
def tables(db):
    return build_tables(db)


# --- paired differences -------------------------------------------------------------------------------

def test_paired_t_interval_is_the_t_quantile_interval():
    low, high = confidence_interval([3.0, 4.0, 5.0], [2.0, 2.0, 2.0])      # differences 1, 2, 3
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)                     # sd 1, n 3
    assert (low, high) == (pytest.approx(2 - half), pytest.approx(2 + half))
    delta = paired_column(column([("clipped_ste", s, 2.0) for s in range(3)]
                                 + [("surge", s, 3.0 + s) for s in range(3)]), "clipped_ste").deltas["surge"]
    assert (delta.n, delta.mean, delta.sd) == (3, pytest.approx(2.0), pytest.approx(1.0))
    assert (delta.low, delta.high) == (pytest.approx(2 - half), pytest.approx(2 + half))
    assert delta.p == pytest.approx(2 * stats.t.sf(2.0 / (1.0 / math.sqrt(3)), 2))   # two-sided, df 2
    assert delta.p_holm == pytest.approx(delta.p)                                     # the only test


def test_holm_on_known_pvalues_and_in_a_column():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    rows = [("clipped_ste", s, v) for s, v in enumerate([1.0, 2.0, 3.0, 4.0])]
    for name, gain in (("a", [1.0, 1.2, 0.9, 1.1]), ("b", [0.5, -0.1, 0.4, 0.6]), ("c", [0.2, -0.3, 0.1, 0.3])):
        rows += [(name, s, 1.0 + s + g) for s, g in enumerate(gain)]
    deltas = paired_column(column(rows), "clipped_ste").deltas
    ps = {name: d.p for name, d in deltas.items()}
    assert all(deltas[n].p_holm >= deltas[n].p for n in ps)
    smallest = min(ps, key=ps.get)
    assert deltas[smallest].p_holm == pytest.approx(3 * ps[smallest])   # the first Holm step: m * p


def test_pairing_is_by_seed_whatever_the_row_order_and_drops_unmatched_seeds():
    rows = [("clipped_ste", s, 10.0 + s) for s in range(5)] + [("surge", s, 11.0 + s + 0.1 * s * s) for s in range(5)]
    rows += [("surge", 9, 100.0)]                 # a seed clipped_ste did not run: not paired, not counted
    ordered = paired_column(column(rows), "clipped_ste").deltas["surge"]
    shuffled = paired_column(column(pd.DataFrame(rows).sample(frac=1, random_state=3).values.tolist()),
                             "clipped_ste").deltas["surge"]
    assert ordered.n == 5 and ordered == shuffled
    assert ordered.mean == pytest.approx(1.0 + 0.1 * np.mean([s * s for s in range(5)]))
    unpaired_mean = np.mean([11.0 + s + 0.1 * s * s for s in range(5)] + [100.0]) - 12.0
    assert ordered.mean != pytest.approx(unpaired_mean)


def test_several_runs_on_one_seed_are_not_paired():
    rows = [("clipped_ste", s, 1.0) for s in range(3)] + [("surge", s, 2.0 + s) for s in (0, 0, 1, 2)]
    paired = paired_column(column(rows), "clipped_ste")
    assert "surge" not in paired.deltas
    assert any("surge on" in note and "not paired" in note for note in paired.notes)


def test_bootstrap_interval_is_deterministic_and_differs_from_t():
    values, reference = [3.0, 4.5, 5.0, 7.0, 4.0], [2.0, 2.0, 2.5, 3.0, 2.0]
    first = confidence_interval(values, reference, "bootstrap")
    assert first == confidence_interval(values, reference, "bootstrap")
    diffs = np.subtract(values, reference)
    assert diffs.min() <= first[0] < diffs.mean() < first[1] <= diffs.max()
    assert first != pytest.approx(confidence_interval(values, reference, "t"))
    with pytest.raises(ValueError):
        confidence_interval(values, reference, "normal")


# --- minimal detectable difference ---------------------------------------------------------------------

def test_mdd_is_effect_size_times_sd_and_shrinks_with_n():
    mdd = minimal_detectable_difference(5, 2.0, m=3)
    effect = TTestPower().solve_power(effect_size=None, nobs=5, alpha=0.05 / 3, power=0.8, alternative="two-sided")
    assert mdd.value == pytest.approx(effect * 2.0) and mdd.effect_size == pytest.approx(effect)
    assert TTestPower().power(mdd.effect_size, 5, 0.05 / 3, alternative="two-sided") == pytest.approx(0.8, abs=1e-3)
    by_n = [minimal_detectable_difference(n, 1.0).value for n in (3, 5, 10, 30)]
    assert by_n == sorted(by_n, reverse=True) and len(set(by_n)) == 4
    assert minimal_detectable_difference(5, 1.0, m=3).value > minimal_detectable_difference(5, 1.0, m=1).value
    with pytest.raises(ValueError):
        minimal_detectable_difference(1, 1.0)


def test_the_column_mdd_pools_the_estimators_sd(tables):
    deltas = _table(tables, "classification", "deltas")
    differences = [np.subtract(FP32["cifar10"], CLIPPED["cifar10"]), SURGE_GAIN, STE_NOISE]
    pooled = float(np.median([np.std(d, ddof=1) for d in differences]))      # the median of the sds
    expected = minimal_detectable_difference(5, pooled, m=3).value
    assert deltas.rows[-1] == "MDD (80 % power)" and deltas.summary_rows == 1
    assert deltas.cell("MDD (80 % power)", f"{CIFAR}: Δ [95 % CI]").text == f"{expected:.2f} (n=5, m=3)"
    assert deltas.cell("MDD (80 % power)", f"{CIFAR}: p (Holm)").text == "alpha = 0.05/3"
    tex = render_latex_table(deltas)
    assert "\\midrule\nMDD (80 \\% power) &" in tex


# --- tables ----------------------------------------------------------------------------------------------

def test_significant_differences_carry_the_marker_in_both_renderings(tables):
    deltas = _table(tables, "classification", "deltas")
    assert deltas.rows == ["fp32", "ste", "surge", "MDD (80 % power)"]    # the reference has no row
    surge, ste = deltas.cell("surge", f"{CIFAR}: Δ [95 % CI]"), deltas.cell("ste", f"{CIFAR}: Δ [95 % CI]")
    assert surge.significant and not ste.significant
    assert surge.mean == pytest.approx(np.mean(SURGE_GAIN)) and surge.n == 5
    md = render_markdown_table(deltas)
    assert re.fullmatch(r"\+1\.03 \[\+0\.\d\d, \+1\.\d\d\] \(n=5\)\\\*", _md_row(md, "surge")[1])
    assert not _md_row(md, "ste")[1].endswith("\\*") and float(_md_row(md, "ste")[2]) >= 0.05
    assert float(_md_row(md, "surge")[2].lstrip("<")) < 0.05
    tex = render_latex_table(deltas)
    [surge_tex] = [line for line in tex.splitlines() if line.startswith("surge &")]
    [ste_tex] = [line for line in tex.splitlines() if line.startswith("ste &")]
    assert "$^{*}$" in surge_tex and "$^{*}$" not in ste_tex
    assert "Holm-adjusted p $<$ 0.05" in tex and "\\multicolumn{2}{c}{cifar10 / resnet18\\_cifar}" in tex

    results = _table(tables, "classification", "results")       # the main table shows it too
    md = render_markdown_table(results)
    assert _md_row(md, "surge")[1].endswith("\\*") and not _md_row(md, "ste")[1].endswith("\\*")
    assert not _md_row(md, "clipped_ste")[1].endswith("\\*")
    assert "\\* = differs from clipped_ste" in md
    [surge_tex] = [line for line in render_latex_table(results).splitlines() if line.startswith("surge &")]
    assert surge_tex.count("$^{*}$") == 2


def test_fewer_than_three_seeds_are_not_tested_and_never_marked(tables):
    deltas = _table(tables, "regression", "deltas")
    cell = deltas.cell("surge", f"{TOY}: Δ [95 % CI]")
    assert (cell.mean, cell.n, cell.interval, cell.significant) == (pytest.approx(-0.2), 2, None, False)
    assert deltas.rows == ["surge"]                             # nothing tested: no MDD row
    md = render_markdown_table(deltas)
    assert _md_row(md, "surge")[1:] == ["-0.2000 (n=2)", "n < 3: not tested"]
    assert "\\*" not in "".join(_md_row(md, "surge"))
    assert "n < 3 paired seeds: not tested" in md and "mse, lower is better" in md
    tex = render_latex_table(deltas)
    assert "n $<$ 3: not tested" in tex and "$^{*}$" not in tex.split("\\midrule")[1]
    results = _table(tables, "regression", "results")
    assert not any(c.significant for row in results.cells for c in row)


def test_another_reference_and_the_bootstrap(db):
    deltas = _table(build_tables(db, reference="fp32", ci="bootstrap"), "classification", "deltas")
    assert deltas.rows[:3] == ["clipped_ste", "ste", "surge"] and "fp32" not in deltas.rows
    assert "percentile bootstrap" in deltas.description and "Δ = estimator − fp32" in deltas.description
    clipped = deltas.cell("clipped_ste", f"{CIFAR}: Δ [95 % CI]")
    assert clipped.mean == pytest.approx(np.mean(np.subtract(CLIPPED["cifar10"], FP32["cifar10"])))
    assert clipped.interval == pytest.approx(confidence_interval(CLIPPED["cifar10"], FP32["cifar10"], "bootstrap"))
    assert clipped.significant


def test_an_unknown_reference_is_an_error_naming_the_choices(db, tmp_path, capsys):
    with pytest.raises(UnknownReference, match="valid choices: clipped_ste, fp32, ste, surge"):
        build_tables(db, reference="nope")
    from bench.cli import main

    assert main(["report", "--db", db.url, "--out", str(tmp_path / "r"), "--reference", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench: error: unknown reference 'nope'") and "\n" not in err
    assert not (tmp_path / "r" / "results.md").exists()


# --- the aggregate -------------------------------------------------------------------------------------

def test_an_estimator_equal_to_fp32_has_iqm_one_and_beats_a_worse_reference():
    cols = []
    for label, fp32, worse in ((CIFAR, [89.0, 90.0, 91.0], [80.0, 81.0, 82.0]), (MNIST, [97.0, 98.0, 99.0],
                                                                                  [90.0, 91.0, 90.5])):
        rows = [("fp32", s, v) for s, v in enumerate(fp32)] + [("twin", s, v) for s, v in enumerate(fp32)]
        cols.append(column(rows + [("clipped_ste", s, v) for s, v in enumerate(worse)], label))
    result = aggregate(cols, "clipped_ste")
    rows = {r.estimator: r for r in result.rows}
    assert result.columns == [CIFAR, MNIST] and not result.message
    twin = rows["twin"]
    assert twin.iqm == pytest.approx(1.0) and twin.iqm_low <= 1.0 <= twin.iqm_high and twin.seeds == 3
    assert twin.poi == pytest.approx(1.0) and rows["clipped_ste"].poi is None
    assert rows["clipped_ste"].iqm < 0.95


def test_aggregate_uses_common_seeds_flips_lower_is_better_and_says_why_not():
    lower = column([("fp32", s, 0.2) for s in range(3)] + [("surge", s, 0.4) for s in range(4)]
                   + [("ste", s, 0.3) for s in range(3)], TOY, metric="mse", higher_is_better=False)
    higher = column([("fp32", s, 50.0) for s in range(4)] + [("surge", s, 25.0) for s in (0, 1, 2, 5)]
                    + [("ste", s, 40.0) for s in (0, 1)], CIFAR)
    result = aggregate([higher, lower], "clipped_ste")
    assert aggregate([higher, lower], "clipped_ste") == result                # fixed seeds
    [surge] = [r for r in result.rows if r.estimator == "surge"]
    assert surge.seeds == 3 and surge.iqm == pytest.approx(0.5)          # 25 / 50 and 0.2 / 0.4, seeds 0, 1, 2
    assert "ste" not in [r.estimator for r in result.rows]               # 2 common seeds: a bootstrap of nothing
    assert any(note.startswith("ste: 2 seed(s) on every column, fewer than 3") for note in result.notes)
    assert any("clipped_ste is not aggregated" in note for note in result.notes)
    single = aggregate([higher], "clipped_ste")  # one column: the IQM over its runs
    assert [r.estimator for r in single.rows] == ["fp32", "surge"] and single.rows[1].iqm == pytest.approx(0.5)
    no_fp32 = aggregate([column([("surge", 0, 1.0)]), column([("surge", 0, 1.0)], MNIST)], "clipped_ste")
    assert no_fp32.message.startswith("not computed: no column has fp32")
    one_seed = aggregate([column([("fp32", 0, 1.0), ("surge", 0, 0.5)])], "clipped_ste")
    assert not one_seed.rows and one_seed.message.startswith("not computed: no estimator has 3 seeds")


def test_the_aggregate_table(tables):
    table = _table(tables, "classification", "aggregate")
    assert table.rows == ["fp32", "clipped_ste", "surge"]
    assert table.notes == ["ste: no run on mnist / mlp: not aggregated"]
    assert table.columns == ["IQM of score / fp32 [95 % CI]", "P(> clipped_ste) [95 % CI]", "seeds"]
    md = render_markdown_table(table)
    assert _md_row(md, "clipped_ste")[2] == "\u2013" and _md_row(md, "surge")[3] == "5"
    iqm = {r: float(_md_row(md, r)[1].split()[0]) for r in table.rows}
    assert iqm["surge"] > iqm["clipped_ste"] and iqm["fp32"] == pytest.approx(1.0, abs=0.003)
    assert float(_md_row(md, "surge")[2].split()[0]) > 0.5
    assert "over the 2 columns with fp32 runs" in md
    tex = render_latex_table(table)
    assert _balanced(tex) and _environments_paired(tex) and tex.isascii()


# --- the written report --------------------------------------------------------------------------------

def test_forest_plot_per_task_and_preset(db, tmp_path):
    paths = plot_forests(db, tmp_path)
    assert [p.name for p in paths] == ["forest_classification_quick.png", "forest_regression_quick.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    empty = ResultsDB(f"sqlite:///{tmp_path}/e.sqlite")
    add_run(empty, "surge", 0, 90.0)                         # no reference: nothing to plot
    assert plot_forests(empty, tmp_path / "none") == []


def test_the_written_report_carries_the_statistics_in_both_formats(db, tmp_path):
    out = tmp_path / "report"
    paths = write_report(db, out)
    names = {p.relative_to(out).as_posix() for p in paths}
    assert {"tables/classification_quick_aggregate.tex", "tables/classification_quick_deltas.tex",
            "figures/forest_classification_quick.png"} <= names
    assert "tables/regression_quick_aggregate.tex" not in names       # not computable: a line, no table
    md, tex = (out / "results.md").read_text(), (out / "results.tex").read_text()
    for text in (md, tex):
        assert "figures/forest_classification_quick.png" in text and "figures/forest_regression_quick.png" in text
        assert "regression, preset quick: aggregate over columns: not computed" in text
        assert "Holm" in text and "MDD" in text
    assert md.count("\\*") >= 4 and tex.count("$^{*}$") >= 4
    assert _balanced(tex) and _environments_paired(tex) and tex.isascii()
    if shutil.which("pdflatex"):
        done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "results.tex"],
                              cwd=out, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout[-3000:]
