"""The written report: results.md, results.tex (a complete document), tables/*.tex for
``\\input`` into a paper, and the figures, all from the database."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Iterable, Optional

from bench.db import ResultsDB
from bench.report.columns import DEFAULT_REFERENCE
from bench.report.diagnostics import build_diagnostic_tables, plot_diagnostics
from bench.report.efficiency import build_efficiency_tables
from bench.report.figures import plot_learning_curves, plot_sign_inputs
from bench.report.forest import forest_name, plot_forests
from bench.report.paired import ALPHA, MIN_SEEDS
from bench.report.render import DASH_MD, latex_escape, render_latex_table, render_markdown_table
from bench.report.tables import ReportTable, build_tables, slug

FORMATS = ("md", "latex")
#: the figure sections after the tables: (heading, file-name prefix)
FIGURE_SECTIONS = (("Learning curves", "curves_"),
                   ("Inputs of sign with |x| > 1 (0 in a Hardtanh block: clipped and unclipped estimators coincide)",
                    "sign_inputs_"))
#: the tables written in sections of their own after the per-task ones
SECTION_KINDS = ("efficiency", "diagnostics")
DIAGNOSTICS_HEADING = "Gradient diagnostics (bench diagnose)"
DIAGNOSTICS_FIGURES = "diagnostics_"


def _table_stem(table: ReportTable) -> str:
    if table.kind in SECTION_KINDS + ("glue",):  # a GLUE table's label names its model
        return table.label.removeprefix("tab:")
    stem = f"{slug(table.task)}_{slug(table.preset)}"
    return stem + (f"_{table.kind}" if table.kind in ("deltas", "aggregate") else "")


def _statistics_legend(reference: str) -> str:
    return (f"Paired differences: Δ = estimator − {reference} on the same seed (positive = a higher value), mean "
            f"with its 95 % CI and a two-sided paired t-test, Holm-adjusted over the estimators of a column; "
            f"* = Holm-adjusted p < {ALPHA:g}, in the deltas and the results tables; n < {MIN_SEEDS} paired seeds: "
            "not tested; MDD = the smallest difference the column's seeds detect with 80 % power. Aggregate: "
            "rliable's interquartile mean of scores relative to fp32 and probability of improvement over "
            f"{reference}, across the columns.")


def _forest(table: ReportTable, forests: dict[str, Path]) -> Path | None:
    return forests.get(forest_name(table.task, table.preset)) if table.kind == "aggregate" else None


def _markdown_document(tables: list[ReportTable], figures: list[Path], forests: dict[str, Path], out_dir: Path,
                       url: str, when: str, reference: str) -> str:
    parts = [
        "# surge-bench results", "",
        f"- database: `{url}`",
        f"- generated: {when} (UTC)",
        "- cells: the primary metric of each (task, dataset, model), mean ± sample standard deviation "
        "(ddof=1) over seeds, n = number of seeds (std omitted when n=1); finished runs only, the latest "
        "execution of each configuration; best mean per column in **bold** (respecting higher/lower is "
        f"better); {DASH_MD} = no result.",
        "- " + _statistics_legend(reference).replace("*", r"\*"), "",
    ]
    for table in tables:
        if table.kind == "results":
            parts += [f"## {table.task} ({table.preset})", ""]
        if table.kind == "aggregate" and table.empty:
            parts += [f"_{table.title}: {table.message}._", ""]
        elif table.kind not in SECTION_KINDS:
            parts.append(render_markdown_table(table))
        forest = _forest(table, forests)
        if forest is not None:
            parts += [f"![{forest.stem}]({forest.relative_to(out_dir).as_posix()})", ""]
    efficiency = [t for t in tables if t.kind == "efficiency"]
    if efficiency:
        parts += ["## Efficiency", ""] + [render_markdown_table(t) for t in efficiency]
    diagnostics = [t for t in tables if t.kind == "diagnostics"]
    if diagnostics:
        parts += [f"## {DIAGNOSTICS_HEADING}", ""] + [render_markdown_table(t) for t in diagnostics]
        for path in (p for p in figures if p.stem.startswith(DIAGNOSTICS_FIGURES)):
            parts += [f"![{path.stem}]({path.relative_to(out_dir).as_posix()})", ""]
    for heading, prefix in FIGURE_SECTIONS:
        chosen = [path for path in figures if path.stem.startswith(prefix)]
        if chosen:
            parts += [f"## {heading}", ""]
            for path in chosen:
                parts += [f"![{path.stem}]({path.relative_to(out_dir).as_posix()})", ""]
    return "\n".join(parts).rstrip() + "\n"


def _latex_figure(path: Path, out_dir: Path, caption: str) -> list[str]:
    return [r"\begin{figure}[htbp]", r"\centering",
            rf"\includegraphics[width=0.8\linewidth]{{{path.relative_to(out_dir).as_posix()}}}",
            rf"\caption{{{latex_escape(caption)}}}", r"\end{figure}", ""]


def _latex_document(tables: list[ReportTable], figures: list[Path], forests: dict[str, Path], out_dir: Path,
                    url: str, when: str, reference: str) -> str:
    parts = [
        r"\documentclass{article}",
        r"\usepackage[margin=2cm]{geometry}",
        r"\usepackage{booktabs}",
        r"\usepackage{graphicx}",
        r"\begin{document}",
        r"\section*{surge-bench results}",
        rf"Database: \texttt{{{latex_escape(url)}}}. Generated {latex_escape(when)} (UTC). "
        r"Cells: primary metric, mean $\pm$ sample standard deviation (ddof=1) over seeds, "
        r"n = number of seeds; best per column in bold; -- = no result. "
        + latex_escape(_statistics_legend(reference)),
        "",
    ]
    for table in tables:
        if table.kind == "aggregate" and table.empty:
            parts += [rf"\par\noindent\textit{{{latex_escape(f'{table.title}: {table.message}.')}}}\par", ""]
        else:
            parts.append(render_latex_table(table))
        forest = _forest(table, forests)
        if forest is not None:
            parts += _latex_figure(forest, out_dir, f"Paired differences to {reference}, 95 % CI: "
                                                    f"{table.task} ({table.preset})")
    for heading, prefix in FIGURE_SECTIONS + ((DIAGNOSTICS_HEADING, DIAGNOSTICS_FIGURES),):
        for path in (p for p in figures if p.stem.startswith(prefix)):
            parts += _latex_figure(path, out_dir, f"{heading}: {path.stem.removeprefix(prefix)}")
    parts.append(r"\end{document}")
    return "\n".join(parts) + "\n"


def write_report(db: ResultsDB, out_dir: str | Path, formats: Iterable[str] = FORMATS, reference: Optional[str] = None,
                 ci: str = "t", select: str = "last") -> list[Path]:
    """Write results.md / results.tex (+ tables/*.tex) and figures/*.png; return the paths.

    ``reference`` (clipped_ste when None) and ``ci`` (``t`` or ``bootstrap``) choose what the paired
    differences are taken to and their interval; ``select`` the epoch shown (``last`` or
    ``best_val``); see :func:`bench.report.tables.build_tables`.
    """
    formats = tuple(formats)
    if "all" in formats:
        formats = FORMATS
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown report format(s) {', '.join(unknown)}; valid: {', '.join(FORMATS)}, all")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    url = db.display_url
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")

    tables = (build_tables(db, reference=reference, ci=ci, select=select) + build_efficiency_tables(db)
              + build_diagnostic_tables(db))
    forests = {} if select == "best" else {  # no intervals on test-selected scores
        p.name: p for p in plot_forests(db, out_dir / "figures", reference=reference, ci=ci, select=select)}
    reference = reference or DEFAULT_REFERENCE
    figures = (plot_learning_curves(db, out_dir / "figures") + plot_sign_inputs(db, out_dir / "figures")
               + plot_diagnostics(db, out_dir / "figures"))
    written: list[Path] = []
    if "md" in formats:
        path = out_dir / "results.md"
        path.write_text(_markdown_document(tables, figures, forests, out_dir, url, when, reference), encoding="utf-8")
        written.append(path)
    if "latex" in formats:
        path = out_dir / "results.tex"
        path.write_text(_latex_document(tables, figures, forests, out_dir, url, when, reference), encoding="utf-8")
        written.append(path)
        for table in tables:
            if table.empty:
                continue
            table_path = out_dir / "tables" / f"{_table_stem(table)}.tex"
            table_path.parent.mkdir(parents=True, exist_ok=True)
            table_path.write_text(render_latex_table(table), encoding="utf-8")
            written.append(table_path)
    return written + list(forests.values()) + figures
