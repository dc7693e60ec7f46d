"""The scopes bibert and bit: exactly which tensors are binary, that gradients reach every binarized
weight, BiT's elastic binarizer against its backward formulas, and both papers' distillation."""

import math

import pytest
import torch
import torch.nn.functional as F

import estimators
from estimators.base import binary_sign
from estimators.elastic import ElasticBinarizer
from estimators.layers import BinaryEmbedding, BinaryLinear, binary_layers
from tasks.glue import paper_scopes
from tasks.glue.losses import captured_projections, direction_distance, distillation_loss, similarity
from tasks.glue.models import SCOPES, load_model, load_tokenizer, offline_minilm_path

pytest.importorskip("transformers")

SENTENCES = ["a gripping , funny film", "a dull , lifeless and far too long mess of a script"]


def _model(scope, estimator="clipped_ste"):
    torch.manual_seed(0)
    model = load_model(offline_minilm_path(), num_labels=2, regression=False, num_hidden_layers=2)
    built = estimators.build(estimator)
    record = estimators.binarize_model(model, built, scope, scopes=SCOPES, weight_balance="center")
    attention = paper_scopes.binarize_as_paper(model, scope, built.binarize_activation)
    return model, record, attention


def _batch():
    return dict(load_tokenizer(offline_minilm_path())(SENTENCES, padding=True, return_tensors="pt"))


def _recorded_signs(model):
    """Wrap every attention module's sign so the tensors it binarizes are kept."""
    kept = []
    for module in paper_scopes._self_attentions(model):
        sign = module.binary_sign

        def recording(x, sign=sign):
            out = sign(x)
            kept.append(out.detach())
            return out
        module.binary_sign = recording
    return kept


def _layer_inputs(model):
    """Every binarized linear's binarized input, as its op sees it (by re-running binary_input)."""
    seen = {}
    for name, layer in binary_layers(model):
        if isinstance(layer, BinaryLinear):
            layer.register_forward_hook(lambda m, args, out, name=name: seen.__setitem__(
                name, (m.binary_input(args[0], binary_sign).detach(), args[0].detach(), out.detach())))
    return seen


@pytest.mark.parametrize("scope", ["bibert", "bit"])
def test_paper_scopes_binarize_the_word_embedding_the_encoder_and_the_pooler(scope):
    model, record, _ = _model(scope)
    assert "bert.embeddings.word_embeddings" in record.binarized
    assert "bert.pooler.dense" in record.binarized
    assert sum(".encoder.layer." in name for name in record.binarized) == 2 * 6  # Q, K, V, attn-out, FFN in/out
    assert set(record.full_precision) == {"bert.embeddings.position_embeddings",
                                          "bert.embeddings.token_type_embeddings", "classifier"}
    for name, layer in binary_layers(model):  # every binary weight is alpha * (+-1)
        assert torch.equal(layer.binary_weight().detach().abs(), torch.ones_like(layer.weight)), name
    assert isinstance(model.bert.embeddings.word_embeddings, BinaryEmbedding)


def test_bibert_binarizes_q_k_v_and_the_attention_probabilities_and_every_layer_input():
    model, _, attention = _model("bibert")
    assert attention.startswith("bibert")
    kept, inputs = _recorded_signs(model), _layer_inputs(model)
    model.eval()
    with torch.no_grad():
        out = model(**_batch(), output_attentions=True)
    assert len(kept) == 3 * 2  # Q, K, V in each of 2 layers, each exactly +-1
    for tensor in kept:
        assert set(tensor.unique().tolist()) == {-1.0, 1.0}
    for probs in out.attentions:  # Bi-Attention: bool(scores), no softmax
        assert set(probs.unique().tolist()) <= {0.0, 1.0} and probs.sum(-1).max() > 1
    assert len(inputs) == 2 * 6 + 1  # encoder linears and the pooler
    for name, (binary, real, output) in inputs.items():
        assert set(binary.unique().tolist()) <= {-1.0, 1.0}, name
        layer = model.get_submodule(name)
        expected = F.linear(torch.where(real >= 0, 1.0, -1.0), layer.effective_weight(), layer.bias)
        torch.testing.assert_close(output, expected, msg=name)  # the op really ran on the +-1 input


def test_bit_uses_relu_and_elastic_binarizers_with_unsigned_ffn_outputs_and_probabilities():
    model, _, attention = _model("bit")
    assert attention.startswith("bit")
    assert all(isinstance(layer.intermediate.intermediate_act_fn, torch.nn.ReLU) for layer in model.bert.encoder.layer)
    values = {}
    for name, module in model.named_modules():
        if isinstance(module, ElasticBinarizer):
            module.register_forward_hook(lambda m, args, out, name=name: values.__setitem__(name, (m, out.detach())))
    model.train()
    out = model(**_batch(), output_attentions=True)
    out.logits.sum().backward()
    unsigned = {n for n, (m, _) in values.items() if not m.signed}
    assert unsigned == {f"bert.encoder.layer.{i}.{part}" for i in range(2)
                        for part in ("output.dense.input_binarizer", "attention.self.clip_attn")}
    assert len(values) == 2 * (6 + 4) + 1  # six layer inputs and Q, K, V, P per layer; the pooler's input
    for name, (module, tensor) in values.items():
        alpha = module.alpha.detach().clamp(min=1e-5)
        allowed = {0.0, 1.0} if not module.signed else {-1.0, 1.0}
        assert set((tensor / alpha).round(decimals=5).unique().tolist()) <= allowed, name
        assert bool(module.initialized) and module.alpha.grad is not None and module.alpha.grad != 0, name
        if module.move is not None:
            assert module.move.grad is not None and module.move.grad.abs().sum() > 0, name
    for i, probs in enumerate(out.attentions):  # the probabilities the model returns are the binarized ones
        alpha = model.bert.encoder.layer[i].attention.self.clip_attn.alpha.detach()
        assert set((probs.detach() / alpha).round(decimals=5).unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize("estimator", ["clipped_ste", "surge", "ede"])
@pytest.mark.parametrize("scope", ["bibert", "bit"])
def test_gradients_reach_every_binarized_weight(scope, estimator):
    model, record, _ = _model(scope, estimator)
    model.train()
    out = model(**_batch(), labels=torch.tensor([1, 0]))
    out.loss.backward()
    for name, layer in binary_layers(model):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0, name
        if getattr(layer, "aux_weight", None) is not None:
            assert layer.aux_weight.grad.abs().sum() > 0, name
    assert len(binary_layers(model)) == len(record.binarized)


def test_surge_folds_the_elastic_scale_into_the_weight_without_changing_the_forward():
    torch.manual_seed(0)
    losses = {}
    for estimator in ("clipped_ste", "surge"):
        model, _, _ = _model("bit", estimator)
        model.train()
        torch.manual_seed(1)
        losses[estimator] = model(**_batch(), labels=torch.tensor([1, 0])).loss
    torch.testing.assert_close(losses["surge"], losses["clipped_ste"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("signed", [True, False])
def test_the_elastic_binarizer_is_bits_backward_with_the_clipped_ste(signed):
    sign = estimators.build("clipped_ste").binarize_activation
    binarizer = ElasticBinarizer(signed=signed, features=5)
    x = torch.randn(4, 5, dtype=torch.float64) * 2
    binarizer.double()
    grad = torch.randn(4, 5, dtype=torch.float64)
    x.requires_grad_(True)
    out = binarizer(x, sign)
    (out * grad).sum().backward()
    alpha, n = binarizer.alpha.detach(), x.numel()
    assert alpha == pytest.approx((2 if signed else 4) * x.detach().abs().mean().item())
    q = x.detach() / alpha
    if signed:  # BiT ElasticQuantBinarizerSigned, 1 bit
        assert torch.equal(out.detach(), alpha * torch.where(x.detach() >= 0, 1.0, -1.0).double())
        middle = (q >= -1) & (q <= 1)
        grad_alpha = (torch.sign(x.detach()) * grad).sum() / math.sqrt(n)
    else:  # ElasticQuantBinarizerUnsigned: round(q).clamp(0, 1) * alpha
        torch.testing.assert_close(out.detach(), alpha * (q >= 0.5).double())
        middle = (q >= 0) & (q <= 1)
        step = torch.where(q > 1, 1.0, torch.where(middle, q.round() - q, 0.0)).double()
        grad_alpha = (step * grad).sum() / math.sqrt(n)
    torch.testing.assert_close(x.grad, grad * middle)
    torch.testing.assert_close(binarizer.move.grad, (grad * middle).sum(0))
    torch.testing.assert_close(binarizer.alpha.grad, grad_alpha)


def test_the_elastic_scale_is_set_once_by_the_first_training_forward_and_kept_in_the_state():
    binarizer = ElasticBinarizer(signed=True)
    sign = estimators.build("clipped_ste").binarize_activation
    binarizer.eval()
    binarizer(torch.full((3,), 5.0), sign)
    assert binarizer.alpha.item() == 1.0  # an evaluation before training does not set it
    binarizer.train()
    binarizer(torch.full((3,), 5.0), sign)
    binarizer(torch.full((3,), 50.0), sign)
    assert binarizer.alpha.item() == 10.0
    restored = ElasticBinarizer(signed=True)
    restored.load_state_dict(binarizer.state_dict())
    assert bool(restored.initialized) and restored.alpha.item() == 10.0


def test_direction_distance_ignores_scale_and_sees_direction():
    a = torch.randn(2, 3, 4)
    assert direction_distance(3 * a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert direction_distance(a, torch.randn(2, 3, 4)).item() > 0.1
    sim = similarity(torch.randn(2, 5, 8), heads=2)
    assert sim.shape == (2, 2, 5, 5) and torch.allclose(sim, sim.transpose(-1, -2))


def test_bibert_distillation_is_zero_between_identical_models_apart_from_the_label_term():
    model, _, _ = _model("bibert")
    model.eval()
    batch, labels = _batch(), torch.tensor([1, 0])
    with captured_projections(model, "bibert") as projections:
        out = model(**batch, output_hidden_states=True)
    assert [len(projections[k]) for k in ("query", "key", "value")] == [2, 2, 2]
    loss = distillation_loss(out, out, False, "bibert", labels=labels, student_projections=projections,
                             teacher_projections=projections, heads=model.config.num_attention_heads)
    soft = (-F.softmax(out.logits, -1) * F.log_softmax(out.logits, -1)).mean()
    torch.testing.assert_close(loss, soft + 0.5 * F.cross_entropy(out.logits, labels))
    with captured_projections(model, "bit") as nothing:
        model(**batch)
    assert nothing == {"query": [], "key": [], "value": []}


def test_bit_distillation_is_the_mean_soft_cross_entropy_and_hidden_state_mse():
    model, _, _ = _model("bit")
    model.eval()
    with torch.no_grad():
        student = model(**_batch(), output_hidden_states=True)
        teacher_model = load_model(offline_minilm_path(), num_labels=2, regression=False, num_hidden_layers=2)
        teacher = teacher_model(**_batch(), output_hidden_states=True)
    loss = distillation_loss(student, teacher, False, "bit")
    expected = (-F.softmax(teacher.logits, -1) * F.log_softmax(student.logits, -1)).mean()
    expected = expected + sum(F.mse_loss(s, t) for s, t in zip(student.hidden_states, teacher.hidden_states))
    torch.testing.assert_close(loss, expected)
    assert len(student.hidden_states) == 3  # the embeddings' output and two layers


@pytest.mark.slow
@pytest.mark.parametrize("scope", ["bibert", "bit"])
def test_a_cli_run_in_a_paper_scope_with_its_distillation_lands_a_row(tmp_path, scope):
    from bench.cli import main
    from bench.db import ResultsDB

    folder = tmp_path / "glue_data" / "SST-2"
    folder.mkdir(parents=True)
    for split, n in (("train", 24), ("dev", 8)):
        rows = ["sentence\tlabel"] + [f"{SENTENCES[i % 2]} {i}\t{1 - i % 2}" for i in range(n)]
        (folder / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    db_url = f"sqlite:///{tmp_path}/glue.sqlite"
    teacher = ["--set", f"teacher_path={offline_minilm_path()}"] if scope == "bibert" else []  # as it is
    code = main(["run", "--task", "glue", "--estimator", "surge", "--dataset", "sst2", "--data-root", str(tmp_path),
                 "--db", db_url, "--epochs", "1", "--quiet", "--set", f"scope={scope}", "--set", f"kd={scope}", *teacher,
                 "--set", "num_hidden_layers=2", "--set", "batch_size=8", "--set", "max_seq_length=16",
                 "--set", "eval_steps=2", "--set", "val_size=0", "--set", f"cache_dir={tmp_path / 'cache'}"])
    assert code == 0
    run = ResultsDB(db_url).get_run(ResultsDB(db_url).list_runs()[0].id)
    assert run.status == "finished" and run.config["options"]["kd"] == scope
    assert run.scope["attention"] == paper_scopes.ATTENTION_RECORDS[scope]
    assert "bert.pooler.dense" in run.scope["binarized"]
    metrics = {m.name: m.value for m in run.metrics}
    assert 0 <= metrics["accuracy"] <= 100 and "accuracy@best_test" in metrics  # 3 steps: evaluated at 2 and 3
    assert (tmp_path / "cache" / "teachers").exists() == (scope == "bit")  # teacher_path is used, not trained


def test_paper_scope_misuse_is_a_one_line_error_that_writes_nothing(tmp_path, capsys):
    from bench.cli import main
    from bench.db import ResultsDB

    db_url = f"sqlite:///{tmp_path}/x.sqlite"
    for sets, message in ((["scope=bit", "init=two_step"], "init cannot restore them"),
                          (["scope=bibert", "attention=binary"], "drop --set attention"),
                          ([f"teacher_path={tmp_path}"], "is not a checkpoint folder")):
        code = main(["run", "--task", "glue", "--estimator", "surge", "--db", db_url,
                     *[a for option in sets for a in ("--set", option)]])
        error = capsys.readouterr().err.strip()
        assert code != 0 and message in error and len(error.splitlines()) == 1, (sets, error)
    assert not (tmp_path / "x.sqlite").exists() or ResultsDB(db_url).list_runs() == []


def test_surge_without_its_auxiliary_path_gives_clipped_stes_gradients_in_scope_bit():
    grads = {}
    for name, hparams in (("clipped_ste", {}), ("surge", dict(fixed_lambda=0.0))):
        torch.manual_seed(0)
        model = load_model(offline_minilm_path(), num_labels=2, regression=False, num_hidden_layers=1)
        built = estimators.build(name, **hparams)
        estimators.binarize_model(model, built, "bit", scopes=SCOPES, weight_balance="center", weight_scale="layer")
        paper_scopes.binarize_as_paper(model, "bit", built.binarize_activation)
        model.train()
        torch.manual_seed(1)
        model(**_batch(), labels=torch.tensor([1, 0])).loss.backward()
        grads[name] = {n: p.grad for n, p in model.named_parameters() if "aux_weight" not in n and p.grad is not None}
    assert grads["surge"].keys() == grads["clipped_ste"].keys()
    assert any("input_binarizer.alpha" in n for n in grads["surge"]) and any(".move" in n for n in grads["surge"])
    for name, grad in grads["clipped_ste"].items():
        torch.testing.assert_close(grads["surge"][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_a_deeper_teacher_is_mapped_as_bibert_maps_it_and_refused_by_the_same_depth_losses():
    from types import SimpleNamespace

    torch.manual_seed(0)
    hidden = [torch.randn(2, 4, 8) for _ in range(7)]  # a 6-layer teacher's embeddings + 6 layers
    teacher = SimpleNamespace(logits=torch.randn(2, 2), hidden_states=tuple(hidden))
    student = SimpleNamespace(logits=torch.randn(2, 2), hidden_states=(hidden[0], hidden[3], 2 * hidden[6]))
    teacher_projections = {k: [torch.randn(2, 4, 8) for _ in range(6)] for k in ("query", "key", "value")}
    student_projections = {k: [v[2], v[5]] for k, v in teacher_projections.items()}  # layers 3 and 6 of 6
    loss = distillation_loss(student, teacher, False, "bibert", labels=torch.tensor([0, 1]),
                             student_projections=student_projections, teacher_projections=teacher_projections, heads=2)
    soft = (-F.softmax(teacher.logits, -1) * F.log_softmax(student.logits, -1)).mean()
    torch.testing.assert_close(loss, soft + 0.5 * F.cross_entropy(student.logits, torch.tensor([0, 1])))
    with pytest.raises(ValueError, match="as deep as the student"):
        distillation_loss(student, teacher, False, "bit")
