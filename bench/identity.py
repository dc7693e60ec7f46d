"""What a run is, as the database stores it: its config hash under the current identity rule,
and the labels the report shows (read from the database, never recomputed there).

:func:`labels` fills the ``variant`` and ``report_average`` columns when a run starts.
:func:`upgrade_row` brings a row written by an older surge-bench to the current rule, once
per database (``bench.db`` runs it, under the schema lock, when the database is opened):

- identity rule 1 hashed every config value but ``data_root``; rule 2 also leaves out the
  machine-local options (cache folders) and adds the family's version (a row keeps the
  version it was trained under: detection's rows of version 1, with the old progress
  formula, stay apart from version 2's). An old row gets the rule-2 hash of its stored
  config, so the same experiment is found as finished; its old hash is kept in
  ``provenance["config_hash_rule1"]`` (an interrupted run's checkpoint folder is named by
  it, and the runner moves that folder to the new name when it resumes). Rows written
  under rule 1 after the upgrade (an older surge-bench on a shared database) are adopted
  when their config next runs (:meth:`bench.db.ResultsDB.adopt_rows`);
- options a family renamed (detection's ``workers`` is ``num_workers``) take the new name;
- the report labels are filled in, and taken again against the current estimator defaults
  whenever one changes (:data:`ESTIMATOR_DEFAULTS`).
"""
from __future__ import annotations

import estimators
from bench import db as results_db
from bench.config import IDENTITY_RULE, RunConfig
from bench.errors import UserError
from bench.plugins import get_task


def variant_label(estimator: str, hparams: dict) -> str:
    """The estimator's name, plus every hyperparameter that differs from its default
    (``surge (eta=0.2)``), so ablations get rows of their own in the report."""
    try:
        defaults = estimators.build(estimator).hparams()
    except ValueError:  # an estimator this checkout no longer has: its name alone
        return estimator
    changed = [f"{k}={v}" for k, v in sorted((hparams or {}).items()) if defaults.get(k, v) != v]
    return f"{estimator} ({', '.join(changed)})" if changed else estimator


def labels(config: RunConfig) -> dict:
    """The report columns of a new run's row."""
    return {"variant": variant_label(config.estimator, config.estimator_hparams),
            "report_average": bool(get_task(config.task).report_average)}


def upgrade_row(run) -> None:
    try:
        task = get_task(run.task)
    except UserError:  # a family this checkout does not have: left as it is
        return
    config = dict(run.config or {})
    renamed = getattr(task.Options, "renamed", {})
    options = {renamed.get(k, k): v for k, v in (config.get("options") or {}).items()}
    if options != config.get("options"):
        config["options"] = options
        run.config = config
    try:
        new_hash = RunConfig.from_dict(config).hash(task_version=run.task_version)
    except TypeError:  # a config of a much older layout: its hash stays
        new_hash = run.config_hash
    if new_hash != run.config_hash:
        run.provenance = {**(run.provenance or {}), "config_hash_rule1": run.config_hash}
        run.config_hash = new_hash
    if run.variant is None:
        run.variant = variant_label(run.estimator, config.get("estimator_hparams") or {})
    if run.report_average is None:
        run.report_average = bool(task.report_average)


results_db.register_row_upgrade("identity_rule", IDENTITY_RULE, upgrade_row)

#: bumped when an estimator's default hyperparameter changes (2: SURGE's eta 0.2 -> 0.1, chosen on
#: the validation split), so every stored row's report label is taken against the current defaults:
#: a run stored as "surge" with eta = 0.2 reads "surge (eta=0.2)", not the new default's row
ESTIMATOR_DEFAULTS = 2


def relabel_row(run) -> None:
    run.variant = variant_label(run.estimator, (run.config or {}).get("estimator_hparams") or {})


results_db.register_row_upgrade("estimator_defaults", ESTIMATOR_DEFAULTS, relabel_row)
