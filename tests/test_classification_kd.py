"""Knowledge distillation and label smoothing of the classification family
(tasks/classification/losses.py and the teacher in tasks/classification/task.py)."""
import math

import pytest
import torch
import torch.nn.functional as F
import torchvision

from bench.api import RunContext
from bench.errors import UserError
from bench.plugins import get_task
from tasks.classification.losses import distribution_loss, label_loss
from tasks.classification.task import TORCHVISION_RESNET34

from tests.digits_runs import digits_config, private_cache  # noqa: F401 - private_cache: an autouse fixture

TASK = get_task("classification")
NEW_OPTIONS = ("label_smoothing", "kd", "teacher_model", "teacher_checkpoint", "teacher_epochs",
               "teacher_weight_decay", "step1_weight_decay")


# -- the losses -----------------------------------------------------------------------------------
def test_the_distribution_loss_is_the_cross_entropy_against_the_teachers_softmax():
    student = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    teacher = torch.tensor([[0.2, 0.1, 2.0], [1.0, 1.0, 1.0]])
    expected = []
    for s, t in zip(student.tolist(), teacher.tolist()):
        p_t = [math.exp(v) / sum(math.exp(u) for u in t) for v in t]
        log_norm = math.log(sum(math.exp(u) for u in s))
        expected.append(-sum(p * (v - log_norm) for p, v in zip(p_t, s)))
    assert distribution_loss(student, teacher).item() == pytest.approx(sum(expected) / 2, rel=1e-6)
    assert distribution_loss(student, teacher, "none").tolist() == pytest.approx(expected, rel=1e-6)


def test_the_distribution_loss_gradient_pulls_the_student_to_the_teacher_only():
    torch.manual_seed(0)
    student, teacher = torch.randn(8, 10, requires_grad=True), torch.randn(8, 10, requires_grad=True)
    distribution_loss(student, teacher).backward()
    # d/ds = (softmax(s) - softmax(t)) / batch; the teacher is a target and gets no gradient
    assert torch.allclose(student.grad, (F.softmax(student, 1) - F.softmax(teacher, 1)).detach() / 8, atol=1e-7)
    assert teacher.grad is None
    # zero where the student agrees with the teacher (up to a constant per row: softmax's invariance)
    agreeing = (teacher.detach() + torch.randn(8, 1) * 3).requires_grad_(True)
    distribution_loss(agreeing, teacher.detach()).backward()
    assert agreeing.grad.abs().max() < 1e-7
    # ... which is its minimum: KL(p_t || p_s) >= 0 above the teacher's entropy
    entropy = -(F.softmax(teacher, 1) * F.log_softmax(teacher, 1)).sum(1).mean()
    assert distribution_loss(agreeing, teacher).item() == pytest.approx(entropy.item(), rel=1e-5)
    for _ in range(5):
        assert distribution_loss(teacher + torch.randn(8, 10), teacher).item() > entropy.item()


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.35])
def test_label_smoothing_is_torchs(smoothing):
    torch.manual_seed(1)
    logits, labels = torch.randn(16, 7) * 3, torch.randint(0, 7, (16,))
    for reduction in ("mean", "none"):
        ours = label_loss(logits, labels, smoothing, reduction)
        theirs = F.cross_entropy(logits, labels, label_smoothing=smoothing, reduction=reduction)
        assert torch.allclose(ours, theirs, atol=1e-6), reduction
    if smoothing == 0:  # the loss every earlier run trained with, bit for bit
        assert torch.equal(label_loss(logits, labels), F.cross_entropy(logits, labels))


# -- options --------------------------------------------------------------------------------------
def test_the_new_options_leave_stored_runs_hashes_alone():
    config = digits_config()
    assert not set(NEW_OPTIONS) & set(config.identity()["options"])
    assert digits_config(kd="distribution").hash() != config.hash()
    assert digits_config(label_smoothing=0.1).hash() != config.hash()


def test_a_torchvision_teacher_needs_rgb_and_a_teacher_checkpoint_must_exist(tmp_path):
    with pytest.raises(UserError, match="RGB"):
        TASK.check(digits_config(kd="distribution", teacher_model=TORCHVISION_RESNET34))
    with pytest.raises(UserError, match="not a file"):
        TASK.check(digits_config(kd="distribution", teacher_checkpoint=tmp_path / "absent.pt"))
    with pytest.raises(UserError, match="unknown teacher_model"):
        digits_config(kd="distribution", teacher_model="resnet50")


# -- the teacher ----------------------------------------------------------------------------------
def _prepared(config):
    torch.manual_seed(config.seed)
    data = TASK.load_data(config)
    model = TASK.build_model(config, data)
    TASK.prepare(config, data, model, RunContext(quiet=True))
    return data, model


def test_a_teacher_is_trained_once_and_reused(tmp_path):
    config = digits_config("clipped_ste", kd="distribution")
    result = TASK.run(config, RunContext(quiet=True))
    teacher = result.scope["teacher"]
    folder = tmp_path / "cache" / "classification" / "teachers" / teacher["cache_key"]
    weights = folder / "teacher.pt"
    stamp = weights.stat().st_mtime_ns
    assert teacher["model"] == "resnet20_cifar" and teacher["epochs"] == 1
    assert {"top1", "loss"} <= set(teacher["metrics"])

    # another student (estimator, seed, binarization) of the same teacher: loaded, not trained
    other = digits_config("ste", seed=3, kd="distribution", weight_scale="none")
    assert TASK.teacher_config(other).hash() == TASK.teacher_config(config).hash()
    data, _ = _prepared(other)
    assert weights.stat().st_mtime_ns == stamp
    assert len(list(folder.parent.iterdir())) == 1
    assert data.record["teacher"] == teacher
    saved = torch.load(weights, weights_only=True)
    assert all(torch.equal(v, saved[k]) for k, v in data.teacher.state_dict().items())
    # in eval mode with frozen weights; the student's loss is the distribution loss against it
    assert not data.teacher.training and not any(p.requires_grad for p in data.teacher.parameters())
    images, labels = next(iter(data.train))
    student = TASK.build_model(other, data).eval()
    out = TASK.train_step(student, (images, labels), data)
    with torch.no_grad():
        target = data.teacher(images)
    assert torch.equal(out.loss, distribution_loss(student(images), target))
    assert not data.teacher.training

    # teacher_epochs is the teacher's: another teacher
    assert TASK.teacher_config(digits_config(kd="distribution", teacher_epochs=2)).hash() != \
        TASK.teacher_config(config).hash()


def test_a_torchvision_resnet34_teacher_loads_from_a_local_file(tmp_path):
    torch.manual_seed(5)
    source = torchvision.models.resnet34(weights=None, num_classes=10)
    path = tmp_path / "resnet34.pth"
    torch.save(source.state_dict(), path)  # torchvision's own format
    config = digits_config(kd="distribution", teacher_model=TORCHVISION_RESNET34, teacher_checkpoint=path)
    data = TASK.load_data(config)
    teacher, record = TASK._teacher(config, data, RunContext(quiet=True))
    assert isinstance(teacher, torchvision.models.ResNet) and not teacher.training
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in teacher.state_dict().items())
    assert record["model"] == TORCHVISION_RESNET34 and record["file"] == str(path) and len(record["sha256"]) == 64
    assert not (tmp_path / "cache" / "classification").exists()  # nothing trained


def test_a_two_step_run_distils_both_steps_from_one_teacher(tmp_path):
    config = digits_config("clipped_ste", kd="distribution", init="two_step", step1_weight_decay=1e-5)
    result = TASK.run(config, RunContext(quiet=True))
    teachers = list((tmp_path / "cache" / "classification" / "teachers").iterdir())
    assert [t.name for t in teachers] == [result.scope["teacher"]["cache_key"]]
    assert result.scope["init"]["from"] == "two_step"
