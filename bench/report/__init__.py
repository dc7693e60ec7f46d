"""Result tables and learning-curve figures, built from the results database only.

Everything here reads :meth:`ResultsDB.metrics_frame` and :meth:`ResultsDB.curves_frame`
(finished runs only; a forced rerun of a config hash replaces its predecessor), never
log files, the estimator library or the task registry: each column's primary metric and
its direction are the ones the runs stored, row names are the stored variants
(``surge (eta=0.2)``), and the average column appears where the runs' family asked for it.

Modules: ``tables`` (the table model and building it), ``columns`` (which runs a column holds),
``statistics`` (what a cell says), ``paired`` (paired differences to a reference, Holm, the
minimal detectable difference), ``deltas`` (their table), ``aggregate`` (rliable across columns),
``efficiency`` (cost per estimator, ratios to clipped_ste), ``glue`` (GLUE's task scores and
average as the leaderboard defines them), ``render`` (markdown, LaTeX),
``figures`` (learning curves), ``forest`` (paired differences), ``document`` (the files).

Tables
    :func:`build_tables` makes three :class:`ReportTable` objects per (task, preset):

    * results: rows = estimators, columns = "dataset / model"; each column shows the
      PRIMARY metric of that (task, dataset, model). A cell is
      ``mean ± std (n=N)`` over seeds, std the sample standard deviation (ddof=1).
      With a single seed the std is undefined and is *omitted*: ``91.23 (n=1)``.
      The best mean of each column is bold (maximum, or minimum for a
      lower-is-better metric); ties at the displayed precision are all bold. A
      marker (``*``) flags a significant paired difference to the reference.
    * deltas: for each column and estimator, Δ = estimator − reference (``clipped_ste``
      unless ``reference=``) paired by seed: ``+0.42 [+0.10, +0.74] (n=3)``, mean and
      95 % interval (Student t, or ``ci="bootstrap"``), signed and raw (not flipped for
      lower-is-better metrics), and the Holm-adjusted p of a paired t-test; ``*`` where
      it is below 0.05; fewer than 3 paired seeds: not tested. A last row gives the
      column's minimal detectable difference (:func:`minimal_detectable_difference`).
    * aggregate: rliable's IQM of scores relative to fp32 and probability of improvement
      over the reference across the columns, or a message saying why not.

    For a family that asks for an average (``report_average``: GLUE), :func:`bench.report.glue.glue_tables`
    adds a GLUE table per (task, preset, model) after the results table: a column per GLUE task with
    its official metric(s) (``MRPC (F1/acc)``, ``STS-B (P/S)``, ``MNLI (m/mm)``) and score (their
    unweighted mean), and the average of the scores over the tasks present, labelled with them
    (``GLUE score (9 tasks)``, ``avg (8 tasks, no WNLI)``), empty for an estimator missing a task.
    Without GLUE tasks (or for another such family) the results table gets an "average / model"
    column instead: the mean of the primary metrics.

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
    :func:`plot_forests`: one PNG per (task, preset), the paired differences with their
    intervals, a panel per column.

:func:`write_report` writes ``results.md``, ``results.tex`` (a complete document),
``tables/<task>_<preset>.tex`` (+ ``_deltas.tex``, ``_aggregate.tex``; GLUE's ``<task>-<preset>-glue-<model>.tex``)
for ``\\input`` into a paper, ``figures/forest_<task>_<preset>.png`` and ``figures/curves_<task>_<dataset>_<model>_<preset>.png``.
"""
from bench.report.aggregate import aggregate
from bench.report.columns import DEFAULT_REFERENCE, UnknownReference
from bench.report.document import FORMATS, write_report
from bench.report.efficiency import build_efficiency_tables
from bench.report.figures import plot_learning_curves
from bench.report.forest import plot_forests
from bench.report.glue import GLUE_TASKS, glue_tables
from bench.report.paired import CI_METHODS, minimal_detectable_difference, paired_column
from bench.report.render import latex_escape, render_latex_table, render_markdown_table
from bench.report.tables import Cell, ColumnMetric, ReportTable, build_tables, order_estimators

__all__ = [
    "FORMATS", "write_report", "build_efficiency_tables", "plot_learning_curves", "latex_escape", "render_latex_table",
    "render_markdown_table", "Cell", "ColumnMetric", "ReportTable", "build_tables", "order_estimators",
    "aggregate", "DEFAULT_REFERENCE", "UnknownReference", "plot_forests", "CI_METHODS",
    "minimal_detectable_difference", "paired_column", "GLUE_TASKS", "glue_tables",
]
