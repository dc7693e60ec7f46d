"""The GLUE family end to end on a 2-layer MiniLM: rows in the database, binary encoder, gradients."""

import pytest
import torch

import estimators
from bench.cli import main
from bench.db import ResultsDB
from bench.errors import UserError
from tasks.glue import data
from tasks.glue.models import SCOPES, load_model, load_tokenizer, offline_minilm_path

pytest.importorskip("transformers")

TINY = ["--epochs", "1", "--quiet", "--set", "num_hidden_layers=2", "--set", "train_subset=64", "--set", "val_size=8",
        "--set", "eval_subset=32", "--set", "batch_size=32", "--set", "max_seq_length=32"]


@pytest.fixture
def sst2_root(tmp_path):
    """A small SST-2 in the real GLUE layout, so tests need neither the network nor the vader cache."""
    folder = tmp_path / "glue_data" / "SST-2"
    folder.mkdir(parents=True)
    good = ["a gripping , funny film", "wonderful acting and a moving story", "a joy to watch"]
    bad = ["a dull , lifeless mess", "tedious and far too long", "the worst script in years"]
    for split, n in (("train", 40), ("dev", 12)):
        rows = ["sentence\tlabel"] + [f"{good[i % 3]} {i}\t1" if i % 2 else f"{bad[i % 3]} {i}\t0" for i in range(n)]
        (folder / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    return tmp_path


def binarize_bert(model, estimator, scope):
    return estimators.binarize_model(model, estimator, scope, scopes=SCOPES)


def _bert(attention="softmax"):
    model = load_model(offline_minilm_path(), num_labels=2, regression=False, num_hidden_layers=2,
                       attention=attention)
    return model, load_tokenizer(offline_minilm_path())


def test_quick_runs_land_finished_rows(tmp_path, sst2_root):
    db_url = f"sqlite:///{tmp_path}/glue.sqlite"
    for estimator in ("clipped_ste", "surge"):
        code = main(["run", "--task", "glue", "--estimator", estimator, "--dataset", "sst2",
                     "--data-root", str(sst2_root), "--db", db_url, *TINY])
        assert code == 0
    runs = ResultsDB(db_url).list_runs()
    assert [(r.estimator, r.status) for r in runs] == [("clipped_ste", "finished"), ("surge", "finished")]
    full = ResultsDB(db_url).get_run(runs[1].id)
    accuracy = {m.name: m for m in full.metrics}["accuracy"]
    assert accuracy.primary and accuracy.higher_is_better and 0 <= accuracy.value <= 100
    assert len(full.scope["binarized"]) == 12  # 2 layers x (q, k, v, attention out, 2 FFN)
    assert "classifier" in full.scope["full_precision"]
    assert full.n_binary_params > 0


@pytest.mark.parametrize("attention", ["softmax", "binary"])
def test_gradients_reach_every_binarized_linear(attention):
    model, tokenizer = _bert(attention)
    record = binarize_bert(model, estimators.build("surge"), "encoder")
    model.train()
    batch = tokenizer(["a fine film", "a dreadful film indeed"], padding=True, return_tensors="pt")
    out = model(**batch, labels=torch.tensor([1, 0]))
    out.loss.backward()
    for name in record.binarized:
        layer = model.get_submodule(name)
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0, name
        assert layer.aux_weight.grad is not None and layer.aux_weight.grad.abs().sum() > 0, name
    names = " ".join(record.binarized)
    assert "attention.self.query" in names and "attention.self.key" in names


def test_encoder_linears_see_exactly_pm1_weights_and_inputs():
    model, tokenizer = _bert()
    record = binarize_bert(model, estimators.build("clipped_ste"), "encoder")
    seen = {}
    for name in record.binarized:
        layer = model.get_submodule(name)
        original = layer.functional

        def spy(x, w, b, _name=name, _original=original):
            scale = w.abs().amax(dim=1, keepdim=True)
            seen[_name] = (x.unique(), (w / scale).unique())
            return _original(x, w, b)

        layer.functional = spy
    model.eval()
    with torch.no_grad():
        model(**tokenizer(["binary networks are fun"], return_tensors="pt"))
    assert set(seen) == set(record.binarized)
    for name, (inputs, weights) in seen.items():
        assert set(inputs.tolist()) <= {-1.0, 1.0}, name
        assert set(weights.tolist()) <= {-1.0, 1.0}, name


def test_embedding_scope_binarizes_the_tables():
    model, _ = _bert()
    record = binarize_bert(model, estimators.build("ste"), "encoder+embeddings")
    word = model.get_submodule("bert.embeddings.word_embeddings")
    assert "bert.embeddings.word_embeddings" in record.binarized
    table = estimators.binary_sign(word.weight)
    assert set(table.unique().tolist()) == {-1.0, 1.0}
    ids = torch.tensor([[101, 2023, 102]])
    expected = table[ids] * word.weight.detach().abs().mean(dim=1)[ids].unsqueeze(-1)
    torch.testing.assert_close(word(ids), expected)


def test_binary_attention_is_recorded_and_binary():
    from tasks.glue.models import binary_attention_forward

    q, k = torch.randn(1, 2, 5, 4, requires_grad=True), torch.randn(1, 2, 5, 4, requires_grad=True)
    v = torch.randn(1, 2, 5, 4)
    mask = torch.zeros(1, 1, 1, 5)
    mask[..., -1] = torch.finfo(torch.float32).min  # a padded key
    out, probs = binary_attention_forward(None, q, k, v, mask)
    assert set(probs.unique().tolist()) <= {0.0, 1.0}
    assert torch.all(probs[..., -1] == 0)
    out.sum().backward()
    assert q.grad.abs().sum() > 0 and k.grad.abs().sum() > 0


def test_dataset_all_expands_to_every_glue_task(tmp_path, monkeypatch):
    """--dataset all validates every task's config first: with no data the error names the first."""
    monkeypatch.setattr(data, "_hf_examples", lambda spec, split: (None, "no datasets library"))
    db_url = f"sqlite:///{tmp_path}/glue.sqlite"
    code = main(["run", "--task", "glue", "--estimator", "ste", "--dataset", "all", "--data-root",
                 str(tmp_path), "--db", db_url, *TINY])
    assert code == 2
    assert ResultsDB(db_url).list_runs() == []


@pytest.mark.slow
def test_dataset_all_runs_every_glue_task_and_reports_the_average(tmp_path):
    from test_glue_data import LAYOUTS

    from bench.report import build_tables, render_markdown_table

    for folder, splits in LAYOUTS.values():
        (tmp_path / folder).mkdir()
        for split, (lines, _) in splits.items():
            (tmp_path / folder / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    db_url = f"sqlite:///{tmp_path}/glue.sqlite"
    code = main(["run", "--task", "glue", "--estimator", "fp32", "--dataset", "all", "--data-root",
                 str(tmp_path), "--db", db_url, *TINY, "--set", "val_size=0"])  # two training examples a task
    assert code == 0
    runs = ResultsDB(db_url).list_runs()
    assert sorted(r.dataset for r in runs) == sorted(LAYOUTS) and {r.status for r in runs} == {"finished"}
    mnli = ResultsDB(db_url).get_run(next(r.id for r in runs if r.dataset == "mnli"))
    assert {m.name for m in mnli.metrics} == {"accuracy_matched", "accuracy_mismatched"}
    stsb = ResultsDB(db_url).get_run(next(r.id for r in runs if r.dataset == "stsb"))
    assert {m.name for m in stsb.metrics} == {"pearson", "spearman"}
    table = next(t for t in build_tables(ResultsDB(db_url)) if t.task == "glue" and t.kind == "glue")
    assert table.columns[-1] == "GLUE score (9 tasks)"
    scores = [table.cell("fp32", c).mean for c in table.columns[:-1]]
    assert table.cell("fp32", "GLUE score (9 tasks)").mean == pytest.approx(sum(scores) / 9)
    assert "GLUE score (9 tasks)" in render_markdown_table(table)


def test_knowledge_distillation_trains_the_teacher_once(tmp_path, sst2_root):
    db_url = f"sqlite:///{tmp_path}/glue.sqlite"
    args = ["run", "--task", "glue", "--dataset", "sst2", "--data-root", str(sst2_root), "--db", db_url,
            *TINY, "--set", "kd=logits_hidden_attention", "--set", f"cache_dir={tmp_path / 'cache'}"]
    assert main([*args, "--estimator", "clipped_ste"]) == 0
    teachers = list((tmp_path / "cache" / "teachers").iterdir())
    assert len(teachers) == 1 and (teachers[0] / "config.json").exists()
    stamp = (teachers[0] / "config.json").stat().st_mtime_ns
    assert main([*args, "--estimator", "surge"]) == 0
    assert (teachers[0] / "config.json").stat().st_mtime_ns == stamp
    assert [r.status for r in ResultsDB(db_url).list_runs()] == ["finished", "finished"]
    # the student does not depend on whether its teacher was trained in the run or loaded
    assert main([*args, "--estimator", "clipped_ste", "--force"]) == 0
    db = ResultsDB(db_url)
    first, _, again = (db.get_run(r.id) for r in db.list_runs())
    assert {m.name: m.value for m in again.metrics} == {m.name: m.value for m in first.metrics}
    assert sorted((c.epoch, c.name, c.value) for c in again.curves) == sorted(
        (c.epoch, c.name, c.value) for c in first.curves)


def test_distillation_loss_terms():
    from types import SimpleNamespace

    from tasks.glue.losses import distillation_loss

    logits = torch.tensor([[0.0, 0.0]])
    teacher_logits = torch.tensor([[0.0, 100.0]])  # teacher is sure of class 1
    hidden_s, hidden_t = (torch.zeros(1, 2, 3),), (torch.ones(1, 2, 3),)
    att_s, att_t = (torch.zeros(1, 1, 2, 2),), (torch.full((1, 1, 2, 2), 0.5),)
    student = SimpleNamespace(logits=logits, hidden_states=hidden_s, attentions=att_s)
    teacher = SimpleNamespace(logits=teacher_logits, hidden_states=hidden_t, attentions=att_t)
    soft_ce = torch.log(torch.tensor(2.0))  # -log softmax([0, 0])[1]
    torch.testing.assert_close(distillation_loss(student, teacher, False, "logits"), soft_ce)
    torch.testing.assert_close(distillation_loss(student, teacher, False, "logits_hidden"), soft_ce + 1.0)
    torch.testing.assert_close(distillation_loss(student, teacher, False, "logits_hidden_attention"),
                               soft_ce + 1.0 + 0.25)
    regression = SimpleNamespace(logits=torch.tensor([[1.0]]), hidden_states=(), attentions=())
    target = SimpleNamespace(logits=torch.tensor([[3.0]]), hidden_states=(), attentions=())
    torch.testing.assert_close(distillation_loss(regression, target, True, "logits"), torch.tensor(4.0))


def test_an_interrupted_run_resumes_from_its_checkpoint_to_the_same_metrics(tmp_path, sst2_root, monkeypatch):
    args = ["run", "--task", "glue", "--estimator", "surge", "--dataset", "sst2", "--data-root", str(sst2_root),
            *TINY, "--epochs", "3", "--checkpoint-dir", str(tmp_path / "checkpoints")]
    reference_url, resumed_url = f"sqlite:///{tmp_path}/reference.sqlite", f"sqlite:///{tmp_path}/resumed.sqlite"
    assert main([*args, "--db", reference_url]) == 0

    original = ResultsDB.add_curve_points

    def ctrl_c_in_epoch_2(self, run_id, epoch, step, values):
        original(self, run_id, epoch, step, values)
        if epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(ResultsDB, "add_curve_points", ctrl_c_in_epoch_2)
    assert main([*args, "--db", resumed_url]) == 130  # one line on stderr, the row closed as interrupted
    (interrupted,) = ResultsDB(resumed_url).list_runs()
    assert interrupted.status == "interrupted" and interrupted.error.endswith("rerun to resume")
    monkeypatch.setattr(ResultsDB, "add_curve_points", original)

    assert main([*args, "--db", resumed_url]) == 0
    (resumed,) = ResultsDB(resumed_url).list_runs()
    (reference,) = ResultsDB(reference_url).list_runs()
    assert resumed.id == interrupted.id and resumed.status == "finished"
    assert {m.name: m.value for m in resumed.metrics} == {m.name: m.value for m in reference.metrics}
    curves = ResultsDB(resumed_url).get_run(resumed.id).curves
    assert sorted(c.epoch for c in curves if c.name == "train_loss") == [1, 2, 3]  # epoch 2 redone once


@pytest.mark.parametrize("attention", ["softmax", "binary"])
def test_a_binarized_example_scores_the_same_whatever_padding_its_batch_has(attention):
    """Evaluation batches go in length order (fewer pad tokens); that is only sound if an
    example's logits do not depend on how far its batch pads it."""
    from tasks.glue.data.encoding import EncodedExamples, make_collate

    torch.manual_seed(0)
    model, tokenizer = _bert(attention)
    binarize_bert(model, estimators.build("surge"), "encoder")
    model.eval()
    texts = ["short", "a much longer sentence that pads the short one by many tokens in its batch", "mid size one"]
    examples = [data.Example(text, None, 0) for text in texts]
    encoded = EncodedExamples(examples, tokenizer, max_length=32, regression=False)
    collate = make_collate(tokenizer)
    with torch.inference_mode():
        padded = model(**{k: v for k, v in collate([encoded[i] for i in range(3)]).items() if k != "labels"}).logits
        for i in range(3):
            alone = model(**{k: v for k, v in collate([encoded[i]]).items() if k != "labels"}).logits
            torch.testing.assert_close(padded[i], alone[0], rtol=1e-5, atol=1e-5)
    assert encoded.by_length() == [0, 2, 1]


def test_the_validation_split_is_held_out_of_train_deterministically():
    from tasks.glue.task import hold_out

    examples = [f"sentence {i}" for i in range(50)]
    train, held = hold_out(examples, 10)
    assert len(held) == 10 and len(train) == 40 and not set(train) & set(held)
    assert hold_out(examples, 10) == (train, held) and held != examples[:10]  # a fixed shuffle, file order kept
    assert train == [e for e in examples if e not in held]
    assert hold_out(examples, 0) == (examples, [])
    with pytest.raises(UserError, match="val_size must be between 1 and 49"):
        hold_out(examples, 50)


def test_a_run_with_a_validation_split_stores_both_splits(tmp_path, capsys):
    db_url = f"sqlite:///{tmp_path}/glue.sqlite"
    assert main(["run", "--task", "glue", "--estimator", "clipped_ste", "--db", db_url, *TINY]) == 0
    run = ResultsDB(db_url).get_run(1)
    names = {m.name for m in run.metrics}
    assert {"accuracy", "val_accuracy", "accuracy@best_val", "best_val_epoch"} <= names
    assert {"val_accuracy", "test_accuracy"} <= {c.name for c in run.curves}
    assert run.config["options"]["val_size"] == 8
