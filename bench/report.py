"""Result tables and learning-curve figures, built from the results database only.

Everything here reads :meth:`ResultsDB.metrics_frame` and :meth:`ResultsDB.curves_frame`
(finished runs only; a forced rerun of a config hash replaces its predecessor), never
log files.

Tables
    :func:`build_tables` makes two :class:`ReportTable` objects per (task, preset):

    * results: rows = estimators, columns = "dataset / model"; each column shows the
      PRIMARY metric of that (task, dataset, model). A cell is
      ``mean ± std (n=N)`` over seeds, std the sample standard deviation (ddof=1).
      With a single seed the std is undefined and is *omitted*: ``91.23 (n=1)``.
      The best mean of each column is bold (maximum, or minimum for a
      lower-is-better metric); ties at the displayed precision are all bold.
    * deltas: for each column, Δ vs ``clipped_ste`` and Δ vs ``fp32``:
      ``mean(estimator) - mean(reference)``, signed (``+0.42`` / ``-1.10``), raw
      (not flipped for lower-is-better metrics). ``–`` when either side is missing.

    Rows: ``fp32`` first, ``clipped_ste`` second (the references), then the other
    estimators alphabetically. A missing cell is ``–`` in markdown, ``--`` in LaTeX.
    Values print with 2 decimals, or 4 in a column whose values all lie in (-1, 1).

    One table object, two renderers: :func:`render_markdown_table` (GitHub markdown)
    and :func:`render_latex_table` (booktabs, ``table`` environment, caption, label).

Figures
    :func:`plot_learning_curves`: one PNG per (task, dataset, model, preset) with, per
    estimator, the mean over seeds of the validation curve of the primary metric
    (``val_<primary>``, else the alphabetically first ``val_*`` curve) against the
    epoch, shaded ± std where more than one seed has that epoch.

:func:`write_report` writes ``results.md``, ``results.tex`` (a complete document),
``tables/<task>_<preset>.tex`` (+ ``_deltas.tex``) for ``\\input`` into a paper, and
``figures/curves_<task>_<dataset>_<model>_<preset>.png``.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from pathlib import Path
from typing import Iterable, Optional

from bench.db import ResultsDB

REFERENCES = ("fp32", "clipped_ste")
DASH_MD = "\u2013"          # en dash
DASH_TEX = "--"
FORMATS = ("md", "latex")


# -- the table object ------------------------------------------------------------------
@dataclasses.dataclass
class Cell:
    """One cell: a mean ± std over ``n`` seeds, or a signed difference (``delta``)."""

    mean: Optional[float] = None
    std: Optional[float] = None
    n: int = 0
    bold: bool = False
    delta: bool = False
    decimals: int = 2

    @property
    def missing(self) -> bool:
        return self.mean is None or (isinstance(self.mean, float) and math.isnan(self.mean))


@dataclasses.dataclass
class ColumnMetric:
    """The metric shown in a "dataset / model" column."""

    column: str
    metric: str
    higher_is_better: bool


@dataclasses.dataclass
class ReportTable:
    """A renderer-neutral table: both markdown and LaTeX are written from it.

    ``columns`` are the leaf headers; ``column_groups`` (label, span), when set, is a
    spanning header above them (the deltas table: one group per dataset / model).
    ``cells[i][j]`` belongs to ``rows[i]`` and ``columns[j]``. A table with a
    ``message`` and no rows stands for "nothing to show" (an empty database).
    """

    task: str
    preset: str
    kind: str                      # "results" | "deltas" | "empty"
    title: str
    label: str
    rows: list[str] = dataclasses.field(default_factory=list)
    columns: list[str] = dataclasses.field(default_factory=list)
    cells: list[list[Cell]] = dataclasses.field(default_factory=list)
    column_groups: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    metrics: list[ColumnMetric] = dataclasses.field(default_factory=list)
    description: str = ""
    notes: list[str] = dataclasses.field(default_factory=list)
    message: str = ""
    row_header: str = "estimator"

    @property
    def empty(self) -> bool:
        return not self.rows

    def cell(self, row: str, column: str) -> Cell:
        """The cell of an estimator row and a leaf column header (KeyError if absent)."""
        try:
            i, j = self.rows.index(row), self.columns.index(column)
        except ValueError:
            raise KeyError((row, column)) from None
        return self.cells[i][j]


# -- building --------------------------------------------------------------------------
def order_estimators(names: Iterable[str]) -> list[str]:
    """fp32, clipped_ste (the references) first, then the others alphabetically."""
    names = set(names)
    return [r for r in REFERENCES if r in names] + sorted(names - set(REFERENCES))


def variant_label(estimator: str, hparams: dict) -> str:
    """The row name of an estimator: its name, plus every hyperparameter that differs from
    the estimator's default (``surge (eta=0.2)``), so ablations get rows of their own."""
    import estimators as estimator_library

    try:
        defaults = estimator_library.build(estimator).hparams()
    except ValueError:  # an estimator this checkout no longer has: show its name alone
        return estimator
    changed = [f"{k}={v}" for k, v in sorted((hparams or {}).items()) if defaults.get(k, v) != v]
    return f"{estimator} ({', '.join(changed)})" if changed else estimator


def _with_variants(frame):
    if frame.empty or "estimator_hparams" not in frame:
        return frame
    frame = frame.copy()
    frame["estimator"] = [variant_label(e, h) for e, h in zip(frame["estimator"], frame["estimator_hparams"])]
    return frame


def _reports_average(task: str) -> bool:
    from bench.plugins import TASKS, load_task_plugins

    load_task_plugins()
    return task in TASKS and TASKS.get(task).report_average


def _add_average_columns(keys, columns, metrics, stats, estimators) -> None:
    """Per model, an "average" column (the GLUE score): the mean over that model's dataset
    columns of an estimator's means, shown only where the estimator has every dataset."""
    for model in sorted({m for _, m in keys}):
        indices = [j for j, (_, m) in enumerate(keys) if m == model]
        if len(indices) < 2:
            continue
        label = _column_label("average", model)
        columns.append(label)
        metrics.append(ColumnMetric(label, "mean of the primary metrics",
                                    all(metrics[j].higher_is_better for j in indices)))
        for estimator in estimators:
            cells = [stats.get((estimator, j)) for j in indices]
            if all(cell is not None for cell in cells):
                stats[(estimator, len(columns) - 1)] = Cell(
                    mean=sum(c.mean for c in cells) / len(cells), n=min(c.n for c in cells))


def _column_label(dataset: str, model: str) -> str:
    return f"{dataset} / {model}"


def _mode(values) -> object:
    """The most frequent value; ties broken by sort order (deterministic)."""
    counts = values.value_counts()
    best = counts.max()
    return sorted(v for v, c in counts.items() if c == best)[0]


def _primary_metrics(frame) -> dict[tuple[str, str, str], tuple[str, bool]]:
    """(task, dataset, model) -> (primary metric name, higher_is_better).

    The metric flagged primary (the most frequent one if runs disagree); if no run of
    that combination flags one, the most frequent metric name.
    """
    out = {}
    for key, group in frame.groupby(["task", "dataset", "model"], sort=True):
        flagged = group[group["primary"].astype(bool)]
        pool = flagged if not flagged.empty else group
        name = _mode(pool["metric"])
        hib = bool(_mode(pool.loc[pool["metric"] == name, "higher_is_better"].astype(bool)))
        out[tuple(key)] = (str(name), hib)
    return out


def _decimals(values: list[float], default: int = 2) -> int:
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    return default + 2 if finite and max(finite) < 1.0 else default


def _empty_table(message: str, preset: Optional[str]) -> ReportTable:
    return ReportTable(task="", preset=preset or "", kind="empty", title="No finished runs",
                       label="tab:no-results", message=message)


def build_tables(db: ResultsDB, preset: str | None = None) -> list[ReportTable]:
    """Results and deltas tables, two per (task, preset), from the finished runs.

    ``preset`` keeps only that preset. With nothing to show, one ``kind="empty"``
    table whose ``message`` says so (never an exception).
    """
    frame = _with_variants(db.metrics_frame())
    if not frame.empty and preset is not None:
        frame = frame[frame["preset"] == preset]
    if frame.empty:
        where = f" for preset {preset!r}" if preset is not None else ""
        return [_empty_table(f"no finished runs{where} in {_safe_url(db.url)}", preset)]

    primaries = _primary_metrics(frame)
    tables: list[ReportTable] = []
    for (task, preset_name), group in frame.groupby(["task", "preset"], sort=True):
        keys = sorted({(d, m) for d, m in zip(group["dataset"], group["model"])})
        columns, metrics, rows_per_column = [], [], []
        for dataset, model in keys:
            name, hib = primaries[(task, dataset, model)]
            sel = group[(group["dataset"] == dataset) & (group["model"] == model) & (group["metric"] == name)]
            columns.append(_column_label(dataset, model))
            metrics.append(ColumnMetric(columns[-1], name, hib))
            rows_per_column.append(sel)
        estimators = order_estimators(
            e for sel in rows_per_column for e in sel["estimator"].unique()
        )

        stats: dict[tuple[str, int], Cell] = {}
        notes: list[str] = []
        for j, sel in enumerate(rows_per_column):
            for estimator, runs in sel.groupby("estimator"):
                values = runs["value"].astype(float)
                n = len(values)
                std = float(values.std(ddof=1)) if n > 1 else None
                stats[(estimator, j)] = Cell(mean=float(values.mean()), std=std, n=n)
                if runs["seed"].duplicated().any():
                    notes.append(
                        f"{estimator} on {columns[j]} pools {n} runs over {runs['seed'].nunique()} seeds: "
                        "runs with different configurations (other than estimator hyperparameters, "
                        "e.g. lr or epochs) share this cell."
                    )

        if _reports_average(task):
            _add_average_columns(keys, columns, metrics, stats, estimators)

        results_cells: list[list[Cell]] = []
        for estimator in estimators:
            results_cells.append([dataclasses.replace(stats.get((estimator, j), Cell()))
                                  for j in range(len(columns))])
        for j, metric in enumerate(metrics):
            column = [row[j] for row in results_cells]
            decimals = _decimals([c.mean for c in column if not c.missing])
            for c in column:
                c.decimals = decimals
            present = [c for c in column if not c.missing]
            if present:
                pick = max if metric.higher_is_better else min
                best = pick(round(c.mean, decimals) for c in present)
                for c in present:
                    c.bold = round(c.mean, decimals) == best

        slug = _slug(f"{task}-{preset_name}")
        metric_text = "; ".join(
            f"{m.column}: {m.metric} ({'higher' if m.higher_is_better else 'lower'} is better)" for m in metrics
        )
        tables.append(ReportTable(
            task=task, preset=preset_name, kind="results",
            title=f"{task}, preset {preset_name}",
            label=f"tab:{slug}", rows=estimators, columns=columns, cells=results_cells, metrics=metrics,
            description=("primary metric, mean ± sample std (ddof=1) over seeds, n = number of seeds "
                         "(std omitted for n=1); best per column in bold. " + metric_text),
            notes=notes,
        ))

        delta_cells: list[list[Cell]] = []
        for estimator in estimators:
            row = []
            for j in range(len(columns)):
                mine = stats.get((estimator, j))
                decimals = results_cells[0][j].decimals
                for reference in ("clipped_ste", "fp32"):
                    ref = stats.get((reference, j))
                    if mine is None or ref is None:
                        row.append(Cell(delta=True, decimals=decimals))
                    else:
                        row.append(Cell(mean=mine.mean - ref.mean, delta=True, decimals=decimals))
            delta_cells.append(row)
        tables.append(ReportTable(
            task=task, preset=preset_name, kind="deltas",
            title=f"{task}, preset {preset_name}: differences to the references",
            label=f"tab:{slug}-deltas", rows=estimators,
            columns=[f"{c}: Δ {r}" for c in columns for r in ("clipped_ste", "fp32")],
            cells=delta_cells, column_groups=[(c, 2) for c in columns], metrics=metrics,
            description=("mean of the estimator minus mean of the reference (clipped_ste, fp32), "
                         "signed; positive = higher value. " + metric_text),
        ))
    return tables


# -- rendering -------------------------------------------------------------------------
def _fmt_number(value: float, decimals: int, signed: bool = False) -> str:
    text = f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"
    if signed and float(text) == 0:       # "-0.00" -> "+0.00"
        text = f"{0.0:+.{decimals}f}"
    return text


def _cell_text(cell: Cell, fmt: str) -> str:
    if cell.missing:
        return DASH_MD if fmt == "md" else DASH_TEX
    if cell.delta:
        text = _fmt_number(cell.mean, cell.decimals, signed=True)
        if fmt == "latex" and text.startswith("-"):
            text = "$-$" + text[1:]
    else:
        pm = " ± " if fmt == "md" else r" $\pm$ "
        text = _fmt_number(cell.mean, cell.decimals)
        if cell.std is not None:
            text += pm + _fmt_number(cell.std, cell.decimals)
        text += f" (n={cell.n})"
    if cell.bold:
        text = f"**{text}**" if fmt == "md" else rf"\textbf{{{text}}}"
    return text


def _md_escape(text: str) -> str:
    return str(text).replace("|", r"\|")


_TEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "Δ": r"$\Delta$", "–": "--", "—": "---",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials (``_ % & # $ { } ~ ^ \\``) and map ± Δ – to LaTeX."""
    return "".join(_TEX_SPECIALS.get(ch, ch) for ch in str(text))


def render_markdown_table(table: ReportTable) -> str:
    """GitHub markdown: a bold title line, the table (best cells in ``**…**``), notes."""
    lines = [f"**{_md_escape(table.title)}**" + (f" — {table.description}" if table.description else ""), ""]
    if table.empty:
        lines.append(f"_{table.message or 'no results'}_")
        return "\n".join(lines) + "\n"
    headers = list(table.columns)
    header = [_md_escape(table.row_header)] + [_md_escape(h) for h in headers]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join([":---"] + [":---:"] * len(headers)) + "|")
    for name, cells in zip(table.rows, table.cells):
        lines.append("| " + " | ".join([_md_escape(name)] + [_cell_text(c, "md") for c in cells]) + " |")
    for note in table.notes:
        lines.append("")
        lines.append(f"> Note: {_md_escape(note)}")
    return "\n".join(lines) + "\n"


def render_latex_table(table: ReportTable) -> str:
    """A booktabs ``table`` environment with a caption and a label."""
    caption = latex_escape(table.title) + (f": {latex_escape(table.description)}" if table.description else "")
    out = [r"\begin{table}[htbp]", r"\centering", r"\small",
           rf"\caption{{{caption}}}", rf"\label{{{table.label}}}"]
    if table.empty:
        out += [r"\begin{tabular}{l}", r"\toprule", latex_escape(table.message or "no results") + r" \\",
                r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        return "\n".join(out) + "\n"
    out.append(r"\begin{tabular}{l" + "c" * len(table.columns) + "}")
    out.append(r"\toprule")
    if table.column_groups:
        spans, rules, start = [], [], 2
        for label, span in table.column_groups:
            spans.append(rf"\multicolumn{{{span}}}{{c}}{{{latex_escape(label)}}}")
            rules.append(rf"\cmidrule(lr){{{start}-{start + span - 1}}}")
            start += span
        out.append(" & ".join([""] + spans) + r" \\")
        out.append(" ".join(rules))
        leaves = [c.rsplit(": ", 1)[-1] for c in table.columns]
    else:
        leaves = table.columns
    out.append(" & ".join([latex_escape(table.row_header)] + [latex_escape(c) for c in leaves]) + r" \\")
    out.append(r"\midrule")
    for name, cells in zip(table.rows, table.cells):
        out.append(" & ".join([latex_escape(name)] + [_cell_text(c, "latex") for c in cells]) + r" \\")
    out.append(r"\bottomrule")
    out.append(r"\end{tabular}")
    for note in table.notes:
        out.append(rf"\par\smallskip\footnotesize Note: {latex_escape(note)}")
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


# -- figures ---------------------------------------------------------------------------
def _slug(text: str) -> str:
    """A file-name/label-safe form: letters, digits, '_' and '-' only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(text)).strip("-") or "x"


def _curve_name(names: Iterable[str], primary: Optional[str]) -> Optional[str]:
    names = set(names)
    if primary and f"val_{primary}" in names:
        return f"val_{primary}"
    validation = sorted(n for n in names if n.startswith("val_"))
    return validation[0] if validation else None


def plot_learning_curves(db: ResultsDB, out_dir: str | Path) -> list[Path]:
    """One PNG per (task, dataset, model, preset): mean validation curve per estimator."""
    curves = _with_variants(db.curves_frame())
    if curves.empty:
        return []
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    metrics = db.metrics_frame()
    primaries = _primary_metrics(metrics) if not metrics.empty else {}
    out_dir = Path(out_dir)
    written: list[Path] = []
    for (task, dataset, model, preset), group in curves.groupby(["task", "dataset", "model", "preset"], sort=True):
        primary = primaries.get((task, dataset, model), (None, True))[0]
        name = _curve_name(group["curve"].unique(), primary)
        if name is None:
            continue
        points = group[group["curve"] == name]
        # one value per (run, epoch): the last evaluation of that epoch
        points = points.sort_values("step").groupby(["estimator", "run_id", "epoch"], as_index=False).last()
        fig = Figure(figsize=(6.4, 4.2))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        for estimator in order_estimators(points["estimator"].unique()):
            runs = points[points["estimator"] == estimator]
            agg = runs.groupby("epoch")["value"].agg(["mean", "std", "count"]).sort_index()
            n_seeds = runs["run_id"].nunique()
            (line,) = ax.plot(agg.index, agg["mean"], marker="o" if len(agg) < 15 else None, markersize=3,
                              label=f"{estimator} (n={n_seeds})")
            spread = agg[agg["count"] > 1]
            if not spread.empty:
                ax.fill_between(spread.index, spread["mean"] - spread["std"], spread["mean"] + spread["std"],
                                color=line.get_color(), alpha=0.2, linewidth=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(f"{task}: {dataset} / {model} ({preset})")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"curves_{_slug(task)}_{_slug(dataset)}_{_slug(model)}_{_slug(preset)}.png"
        fig.savefig(path, dpi=120)
        written.append(path)
    return written


# -- the report ------------------------------------------------------------------------
def _safe_url(url: str) -> str:
    """The database URL with any password masked."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL: drop anything like user:pass@
        return re.sub(r"//[^@/]*@", "//***@", str(url))


def _table_stem(table: ReportTable) -> str:
    stem = f"{_slug(table.task)}_{_slug(table.preset)}"
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
        parts.append(render_markdown_table(table))
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
    url = _safe_url(db.url)
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")

    tables = build_tables(db)
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
