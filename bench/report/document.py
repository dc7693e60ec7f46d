"""The written report: results.md, results.tex (a complete document), tables/*.tex for
``\\input`` into a paper, and the figures, all from the database."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Iterable

from bench.db import ResultsDB
from bench.report.efficiency import build_efficiency_tables
from bench.report.figures import plot_learning_curves
from bench.report.render import DASH_MD, latex_escape, render_latex_table, render_markdown_table
from bench.report.tables import ReportTable, build_tables, slug

FORMATS = ("md", "latex")


def _table_stem(table: ReportTable) -> str:
    if table.kind == "efficiency":
        return table.label.removeprefix("tab:")
    stem = f"{slug(table.task)}_{slug(table.preset)}"
    return stem + ("_deltas" if table.kind == "deltas" else "")


def _markdown_document(tables: list[ReportTable], figures: list[Path], out_dir: Path, url: str, when: str) -> str:
    parts = [
        "# surge-bench results", "",
        f"- database: `{url}`",
        f"- generated: {when} (UTC)",
        "- cells: the primary metric of each (task, dataset, model), mean ± sample standard deviation "
        "(ddof=1) over seeds, n = number of seeds (std omitted when n=1); finished runs only, the latest "
        "execution of each configuration; best mean per column in **bold** (respecting higher/lower is "
        f"better); {DASH_MD} = no result.",
        "- deltas: mean of the estimator minus mean of the reference (clipped_ste, fp32), signed.", "",
    ]
    for table in tables:
        if table.kind == "results":
            parts += [f"## {table.task} ({table.preset})", ""]
        if table.kind != "efficiency":
            parts.append(render_markdown_table(table))
    efficiency = [t for t in tables if t.kind == "efficiency"]
    if efficiency:
        parts += ["## Efficiency", ""] + [render_markdown_table(t) for t in efficiency]
    if figures:
        parts += ["## Learning curves", ""]
        for path in figures:
            rel = path.relative_to(out_dir).as_posix()
            parts += [f"![{path.stem}]({rel})", ""]
    return "\n".join(parts).rstrip() + "\n"


def _latex_document(tables: list[ReportTable], figures: list[Path], out_dir: Path, url: str, when: str) -> str:
    parts = [
        r"\documentclass{article}",
        r"\usepackage[margin=2cm]{geometry}",
        r"\usepackage{booktabs}",
        r"\usepackage{graphicx}",
        r"\begin{document}",
        r"\section*{surge-bench results}",
        rf"Database: \texttt{{{latex_escape(url)}}}. Generated {latex_escape(when)} (UTC). "
        r"Cells: primary metric, mean $\pm$ sample standard deviation (ddof=1) over seeds, "
        r"n = number of seeds; best per column in bold; -- = no result.",
        "",
    ]
    for table in tables:
        parts.append(render_latex_table(table))
    for path in figures:
        rel = path.relative_to(out_dir).as_posix()
        parts += [r"\begin{figure}[htbp]", r"\centering",
                  rf"\includegraphics[width=0.8\linewidth]{{{rel}}}",
                  rf"\caption{{Learning curve: {latex_escape(path.stem.removeprefix('curves_'))}}}",
                  r"\end{figure}", ""]
    parts.append(r"\end{document}")
    return "\n".join(parts) + "\n"


def write_report(db: ResultsDB, out_dir: str | Path, formats: Iterable[str] = FORMATS) -> list[Path]:
    """Write results.md / results.tex (+ tables/*.tex) and figures/*.png; return the paths."""
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

    tables = build_tables(db) + build_efficiency_tables(db)
    figures = plot_learning_curves(db, out_dir / "figures")
    written: list[Path] = []
    if "md" in formats:
        path = out_dir / "results.md"
        path.write_text(_markdown_document(tables, figures, out_dir, url, when), encoding="utf-8")
        written.append(path)
    if "latex" in formats:
        path = out_dir / "results.tex"
        path.write_text(_latex_document(tables, figures, out_dir, url, when), encoding="utf-8")
        written.append(path)
        for table in tables:
            if table.empty:
                continue
            table_path = out_dir / "tables" / f"{_table_stem(table)}.tex"
            table_path.parent.mkdir(parents=True, exist_ok=True)
            table_path.write_text(render_latex_table(table), encoding="utf-8")
            written.append(table_path)
    return written + figures
