"""Markdown and LaTeX renderings of a :class:`bench.report.tables.ReportTable`."""
from __future__ import annotations

from bench.report.tables import Cell, ReportTable

DASH_MD = "\u2013"          # en dash
DASH_TEX = "--"
MARKER_MD = r"\*"           # escaped: a bare * next to ** would read as emphasis
MARKER_TEX = r"$^{*}$"


def _fmt_number(value: float, decimals: int, signed: bool = False) -> str:
    text = f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"
    if signed and float(text) == 0:       # "-0.00" -> "+0.00"
        text = f"{0.0:+.{decimals}f}"
    return text


def _signed(value: float, decimals: int, fmt: str) -> str:
    text = _fmt_number(value, decimals, signed=True)
    return "$-$" + text[1:] if fmt == "latex" and text.startswith("-") else text


def _cell_text(cell: Cell, fmt: str) -> str:
    if cell.missing:
        return DASH_MD if fmt == "md" else DASH_TEX
    if cell.text is not None:
        text = cell.text if fmt == "md" else latex_escape(cell.text)
    elif cell.delta:
        text = _signed(cell.mean, cell.decimals, fmt)
        if cell.interval is not None:
            low, high = (_signed(v, cell.decimals, fmt) for v in cell.interval)
            text += f" [{low}, {high}]"
        if cell.n:
            text += f" (n={cell.n})"
    else:
        pm = " ± " if fmt == "md" else r" $\pm$ "
        text = _fmt_number(cell.mean, cell.decimals)
        if cell.parts:  # "88.10/84.30 → 86.20": the metrics, then their mean
            arrow = " → " if fmt == "md" else r" $\rightarrow$ "
            text = "/".join(_fmt_number(p, cell.decimals) for p in cell.parts) + arrow + text
        if cell.std is not None:
            text += pm + _fmt_number(cell.std, cell.decimals)
        text += f" (n={cell.n})"
    if cell.bold:
        text = f"**{text}**" if fmt == "md" else rf"\textbf{{{text}}}"
    if cell.significant:
        text += MARKER_MD if fmt == "md" else MARKER_TEX
    return text


def _md_escape(text: str) -> str:
    return str(text).replace("|", r"\|").replace("*", r"\*")


_TEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "Δ": r"$\Delta$", "−": r"$-$", "–": "--", "—": "---", "<": r"$<$", ">": r"$>$",
    "|": r"$|$", "→": r"$\rightarrow$",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials (``_ % & # $ { } ~ ^ \\``) and map ± Δ − – — < > | → to LaTeX."""
    return "".join(_TEX_SPECIALS.get(ch, ch) for ch in str(text))


def render_markdown_table(table: ReportTable) -> str:
    """GitHub markdown: a bold title line, the table (best cells in ``**…**``), notes."""
    lines = [f"**{_md_escape(table.title)}**" + (f" — {_md_escape(table.description)}" if table.description else ""),
             ""]
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
    for i, (name, cells) in enumerate(zip(table.rows, table.cells)):
        if table.summary_rows and i == len(table.rows) - table.summary_rows:
            out.append(r"\midrule")
        out.append(" & ".join([latex_escape(name)] + [_cell_text(c, "latex") for c in cells]) + r" \\")
    out.append(r"\bottomrule")
    out.append(r"\end{tabular}")
    for note in table.notes:
        out.append(rf"\par\smallskip\footnotesize Note: {latex_escape(note)}")
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"
