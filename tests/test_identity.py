"""Run identity: machine-local values are out of the config hash, the family's version is in
it, and a database written by the previous rule (tests/data/identity_rule1.sqlite, written by commit 36a2a7c; see
tests/data/make_identity_rule1.py) keeps working: its rows are rehashed once when it is opened,
so finished runs are found and an interrupted one resumes from its old-named checkpoint."""
import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bench.cli import main
from bench.config import RunConfig, build_config
from bench.db import ResultsDB
from bench.plugins import get_task

FIXTURE = Path(__file__).parent / "data" / "identity_rule1.sqlite"
DIGITS = ["--task", "classification", "--dataset", "digits", "--epochs", "2", "--quiet",
          "--set", "train_subset=96", "--set", "eval_subset=48", "--set", "batch_size=32"]
DIGITS_SETS = ["train_subset=96", "eval_subset=48", "batch_size=32"]


def _digits(estimator: str, *sets: str):
    return build_config(task="classification", estimator=estimator, dataset="digits", epochs=2,
                        sets=[*DIGITS_SETS, *sets])


def test_machine_local_values_are_out_of_the_hash_and_the_rest_is_in():
    base = _digits("ste")
    assert build_config(task="classification", estimator="ste", dataset="digits", epochs=2, sets=DIGITS_SETS,
                        data_root="/elsewhere").hash() == base.hash()
    assert _digits("ste", "augment=false").hash() != base.hash()
    # loader workers draw the augmentation from their own generators: a worker count is a different run
    assert _digits("ste", "num_workers=3").hash() != base.hash()
    glue = build_config(task="glue", estimator="ste")
    assert build_config(task="glue", estimator="ste", sets=["cache_dir=/tmp/x"]).hash() == glue.hash()
    assert build_config(task="glue", estimator="ste", sets=["max_seq_length=32"]).hash() != glue.hash()
    detection = build_config(task="detection", estimator="ste")
    assert build_config(task="detection", estimator="ste", sets=["cache_dir=/tmp/x"]).hash() == detection.hash()
    assert detection.hash() != detection.hash(task_version="1")  # another family version: another run


def test_a_cache_folder_keeps_its_key_across_a_version_bump_it_is_pinned_to(tmp_path):
    """A pre-trained detector keyed by PRETRAINING_VERSION survives a bump of the family version."""
    from tasks.detection.task import PRETRAINING_VERSION

    detection = build_config(task="detection", estimator="fp32")
    assert get_task("detection").version != PRETRAINING_VERSION
    pinned = detection.cache_folder(tmp_path, PRETRAINING_VERSION)
    assert pinned.name == detection.hash(task_version=PRETRAINING_VERSION)[:16]
    assert pinned != detection.cache_folder(tmp_path)


def _as_of_today(connection) -> None:
    """The fixture's rows ran models that are gone (the Hardtanh blocks before the ``block``
    field): give their configs today's quick-preset block, weight gradient and validation split (the
    classification rows today's family version too), with the rule-1
    hash of that config, so they are rows a rule-1 surge-bench could have written of an
    experiment this checkout can run."""
    import json

    for run_id, config in connection.execute("SELECT id, config FROM runs").fetchall():
        config = json.loads(config)
        today = build_config(task=config["task"], estimator=config["estimator"], dataset=config["dataset"])
        config.update(block=today.block, weight_grad=today.weight_grad)
        config["options"] = {**config["options"], "val_size": today.options["val_size"]}
        connection.execute("UPDATE runs SET config = ?, config_hash = ? WHERE id = ?",
                           (json.dumps(config), RunConfig.from_dict(config).hash_rule1(), run_id))
        if config["task"] == "classification":  # and today's family version (detection's rows stay version 1)
            connection.execute("UPDATE runs SET task_version = ? WHERE id = ?",
                               (get_task("classification").version, run_id))


@pytest.fixture
def rule1_db(tmp_path):
    path = tmp_path / "results.sqlite"
    shutil.copy(FIXTURE, path)
    with sqlite3.connect(path) as connection:
        _as_of_today(connection)
        old = dict(connection.execute("SELECT id, config_hash FROM runs").fetchall())
    return f"sqlite:///{path}", old


def test_stored_configs_without_the_added_fields_keep_their_hash():
    """``block`` and ``weight_grad`` came after these rows: at their legacy values they stay out of the hash."""
    with sqlite3.connect(FIXTURE) as connection:
        rows = connection.execute("SELECT config, config_hash FROM runs").fetchall()
    import json

    for config, stored_hash in rows:
        config = json.loads(config)
        assert "block" not in config and RunConfig.from_dict(config).hash_rule1() == stored_hash
    assert _digits("ste", "block=irnet").hash() != _digits("ste").hash()
    assert _digits("ste", "weight_grad=surrogate").hash() != _digits("ste").hash()


def test_a_rule1_database_is_rehashed_once_and_its_finished_runs_are_found(rule1_db, capsys):
    url, old = rule1_db
    db = ResultsDB(url)
    runs = {run.id: db.get_run(run.id) for run in db.list_runs()}
    assert [(r.task, r.estimator, r.status) for r in runs.values()] == [
        ("classification", "ste", "finished"), ("classification", "surge", "interrupted"),
        ("detection", "clipped_ste", "finished")]
    for run in runs.values():
        assert run.provenance["config_hash_rule1"] == old[run.id] != run.config_hash
        assert RunConfig.from_dict(run.config).hash_rule1() == old[run.id]  # the old rule, reproduced
    # the ste run used one loader worker: the same experiment is found under the new rule
    ste = _digits("ste", "num_workers=1")
    assert runs[1].config_hash == ste.hash() != _digits("ste").hash()
    # detection's renamed option takes its new name; its rows were trained by family version 1
    # (the old progress formula) and stay apart from today's version 2
    options = build_config(task="detection", estimator="clipped_ste",  # the fixture's preset values of then
                           sets=["num_workers=3", "train_subset=none", "eval_subset=none", "pretrain_epochs=12",
                                 "pretrain_subset=none"])
    assert runs[3].config["options"]["num_workers"] == 3 and "workers" not in runs[3].config["options"]
    assert runs[3].config_hash == options.hash(task_version="1") != options.hash()
    assert (runs[1].variant, runs[1].report_average, runs[3].variant) == ("ste", False, "clipped_ste")

    assert main(["run", *DIGITS, "--estimator", "ste", "--set", "num_workers=1", "--db", url]) == 0
    assert "skipped" in capsys.readouterr().out  # found as finished: not run again
    assert len(ResultsDB(url).list_runs()) == 3
    again = ResultsDB(url)  # a second opening changes nothing
    assert {r.id: r.config_hash for r in again.list_runs()} == {i: r.config_hash for i, r in runs.items()}


def test_rows_written_under_rule1_after_the_upgrade_are_adopted_when_their_config_runs(rule1_db, capsys):
    url, old = rule1_db
    ResultsDB(url).engine.dispose()  # upgraded; now an older surge-bench writes a rule-1 row
    with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
        connection.execute("UPDATE runs SET config_hash = ? WHERE id = 1", (old[1],))
    assert main(["run", *DIGITS, "--estimator", "ste", "--set", "num_workers=1", "--db", url]) == 0
    assert "skipped" in capsys.readouterr().out
    run = ResultsDB(url).get_run(1)
    assert run.config_hash == _digits("ste", "num_workers=1").hash() and len(ResultsDB(url).list_runs()) == 3


def test_a_rule1_interrupted_run_resumes_from_its_old_named_checkpoint(rule1_db, tmp_path):
    url, old = rule1_db
    checkpoints = tmp_path / "checkpoints"
    # the checkpoint the interrupted run left (the file format is unchanged): the same config,
    # stopped after epoch 1, then put where rule 1 named it
    from test_reliability import ctrl_c_after_first_checkpoint

    with ctrl_c_after_first_checkpoint():
        assert main(["run", *DIGITS, "--estimator", "surge", "--set", "eta=0.2",  # the fixture's, then the default
                     "--db", f"sqlite:///{tmp_path}/scratch.sqlite",
                     "--checkpoint-dir", str(tmp_path / "scratch")]) == 130
    new_hash = _digits("surge", "eta=0.2").hash()
    (checkpoints / old[2]).parent.mkdir(parents=True)
    shutil.move(tmp_path / "scratch" / new_hash, checkpoints / old[2])

    assert main(["run", *DIGITS, "--estimator", "surge", "--set", "eta=0.2", "--db", url,
                 "--checkpoint-dir", str(checkpoints)]) == 0
    run = ResultsDB(url).get_run(2)
    assert run.status == "finished" and run.provenance["resumed"] == 1 and run.config_hash == new_hash
    assert sorted(c.epoch for c in run.curves if c.name == "train_loss") == [1, 2]
    assert not (checkpoints / old[2]).exists()


def test_older_schemas_get_the_new_columns_on_either_backend(backend_url):
    db = ResultsDB(backend_url)
    config = _digits("ste", "num_workers=2")
    run_id = db.start_run(config_hash="rule-one-hash", config=config.to_dict(), task="classification",
                          task_version=get_task("classification").version, dataset="digits", model=config.model, estimator="ste", preset="quick",
                          seed=0, provenance={})
    db.finish_run(run_id, "finished", metrics=[dict(name="top1", value=1.0, higher_is_better=True, primary=True)])
    db.engine.dispose()
    engine = create_engine(backend_url)
    with engine.begin() as connection:  # back to the layout of a rule-1 database
        connection.execute(text("ALTER TABLE runs DROP COLUMN variant"))
        connection.execute(text("ALTER TABLE runs DROP COLUMN report_average"))
        connection.execute(text("DROP TABLE bench_meta"))
    engine.dispose()
    reopened = ResultsDB(backend_url)
    run = reopened.get_run(run_id)
    assert run.config_hash == config.hash() and run.provenance["config_hash_rule1"] == "rule-one-hash"
    assert run.variant == "ste" and run.report_average is False


def test_a_read_only_rule1_database_is_listed_and_reported_from_an_upgraded_copy_in_memory(tmp_path):
    import tempfile

    from test_reliability import _without_write_privilege

    folder = Path(tempfile.mkdtemp(prefix="bench-ro-rule1-"))  # not under pytest's 0700 tmp folder
    try:
        db_file = folder / "results.sqlite"
        shutil.copy(FIXTURE, db_file)
        db_file.chmod(0o444)
        folder.chmod(0o555)
        before = db_file.read_bytes()
        listed = _without_write_privilege(["runs", "--db", f"sqlite:///{db_file}"], folder)
        assert listed.returncode == 0 and "clipped_ste" in listed.stdout and "interrupted" in listed.stdout, \
            listed.stderr
        out = tmp_path / "report"
        reported = _without_write_privilege(["report", "--format", "md", "--out", str(out), "--db",
                                             f"sqlite:///{db_file}"], folder)
        assert reported.returncode == 0, reported.stderr
        assert "| ste |" in (out / "results.md").read_text()
        assert db_file.read_bytes() == before and sorted(p.name for p in folder.iterdir()) == ["results.sqlite"]
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder, ignore_errors=True)


def test_rows_are_relabelled_when_an_estimator_default_changes(backend_url):
    """A run stored with the former default (SURGE's eta 0.2, label "surge") reads
    "surge (eta=0.2)" once the database is opened by a surge-bench whose default is 0.1."""
    from bench.db import Meta
    from bench.identity import ESTIMATOR_DEFAULTS

    db = ResultsDB(backend_url)
    config = _digits("surge", "eta=0.2")
    run_id = db.start_run(config_hash=config.hash(), config=config.to_dict(), task="classification",
                          task_version=get_task("classification").version, dataset="digits", model=config.model,
                          estimator="surge", preset="quick", seed=0, provenance={}, variant="surge")
    db.finish_run(run_id, "finished", metrics=[dict(name="top1", value=1.0, higher_is_better=True, primary=True)])
    db.engine.dispose()
    engine = create_engine(backend_url)
    with engine.begin() as connection:   # as written before the default moved
        connection.execute(Meta.__table__.update().where(Meta.key == "estimator_defaults")
                           .values(value=str(ESTIMATOR_DEFAULTS - 1)))
    engine.dispose()
    assert ResultsDB(backend_url).get_run(run_id).variant == "surge (eta=0.2)"
