"""Every detection preset's numbers against the table below: a change to a preset must change
this table too, deliberately. Sources: tasks/detection/presets.py (each number cited there)."""
import pytest

from bench.config import build_config
from bench.errors import UserError

pytest.importorskip("mmdet")

from tasks.detection import presets  # noqa: E402
from tasks.detection.task import DetectionTask  # noqa: E402

#: preset -> the RunConfig values it fixes (options under "options")
EXPECTED = {
    "quick": dict(
        block="bireal", scope="backbone", weight_scale="channel", weight_grad="identity", epochs=1, batch_size=4,
        optimizer="adamw", lr=5e-4, momentum=0.9, weight_decay=1e-4, schedule="cosine", warmup_epochs=0.1,
        train_subset=160, eval_subset=100,
        options=dict(image_scale="160", pretrain_epochs=3, pretrain_subset=900, pretrain_optimizer="adamw",
                     pretrain_lr=1e-3, max_grad_norm=10.0, num_workers=2, val_size=100)),
    "bibench_c4": dict(
        block="irnet", scope="backbone", weight_scale="none", weight_grad="identity", weight_clip="gradient",
        weight_balance="none", pad_value=0.0, binary_weights=True, weight_decay_on="all", init="scratch",
        precision="fp32", channels_last=False, epochs=25, batch_size=16, optimizer="adam", lr=1e-4, momentum=0.9,
        weight_decay=0.0, schedule="cosine", warmup_epochs=0.0, warmup_start=0.0, milestones="",
        train_subset=None, eval_subset=None,
        options=dict(image_scale="1000x600", pretrain_epochs=25, pretrain_optimizer="sgd", pretrain_lr=0.01,
                     max_grad_norm=0.0, num_workers=4, val_size=0, roi_samples=512, test_proposals=1000)),
    "bidet": dict(
        block="bireal", scope="all", weight_scale="channel", weight_grad="identity", weight_clip="none",
        weight_balance="none", pad_value=-1.0, binary_weights=True, weight_decay_on="all", init="scratch",
        precision="fp32", channels_last=False, epochs=50, batch_size=16, optimizer="adam", lr=0.01, momentum=0.9,
        weight_decay=0.0, schedule="step", warmup_epochs=0.0, warmup_start=0.0, milestones="0.12,0.24,0.36,0.48",
        train_subset=None, eval_subset=None,
        options=dict(image_scale="1000x600", pretrain_epochs=0, max_grad_norm=0.0, num_workers=4, val_size=0,
                     roi_samples=256, test_proposals=300)),
}


@pytest.mark.parametrize("preset", sorted(EXPECTED))
def test_each_preset_fixes_exactly_the_numbers_of_the_table(preset):
    model = "retinanet_r18_fpn" if preset == "quick" else presets.C4
    assert presets.preset_values(preset, "voc", model) == EXPECTED[preset]


@pytest.mark.parametrize("preset", sorted(EXPECTED))
def test_each_preset_builds_a_valid_config_with_its_values(preset):
    dataset = "fmnist_det" if preset == "quick" else "voc"
    config = build_config("detection", "clipped_ste", dataset=dataset, preset=preset)
    values = dict(EXPECTED[preset])
    options = values.pop("options")
    assert {name: getattr(config, name) for name in values} == values
    assert {name: config.options[name] for name in options} == options
    assert config.preset == preset and config.model == ("retinanet_r18_fpn" if preset == "quick" else presets.C4)


def test_paper_is_an_alias_of_bidet():
    assert presets.ALIASES == {"paper": "bidet"} and presets.SOURCES["paper"].alias_of == "bidet"
    assert presets.preset_values("paper", "voc", presets.C4) == presets.preset_values("bidet", "voc", presets.C4)
    task = DetectionTask()
    assert task.resolve_preset("paper") == "bidet"
    assert build_config("detection", "surge", dataset="voc", preset="paper").preset == "bidet"


def test_every_preset_is_listed_with_its_source():
    task = DetectionTask()
    assert set(task.presets) == {"quick", "bibench_c4", "bidet", "paper"}
    assert set(task.preset_sources) == set(task.presets)
    assert "arXiv:2301.11233" in presets.SOURCES["bibench_c4"].source
    assert "configs/acc_voc/resnet18_bnn_faster-rcnn.py" in presets.SOURCES["bibench_c4"].files
    assert "arXiv:2003.03961" in presets.SOURCES["bidet"].source
    assert "faster_rcnn/trainval_net.py" in presets.SOURCES["bidet"].files
    assert all(presets.SOURCES[name].fixes for name in presets.PRESETS)


def test_the_source_presets_are_the_c4_recipes_and_refuse_another_model():
    for preset in ("bibench_c4", "bidet", "paper"):
        with pytest.raises(UserError, match="add --model faster_rcnn_r18_c4 \\(got faster_rcnn_r18_fpn\\)"):
            build_config("detection", "clipped_ste", dataset="voc", model="faster_rcnn_r18_fpn", preset=preset)
    task = DetectionTask()
    assert task.preset_model("bidet", "voc") == task.preset_model("paper", "coco") == presets.C4
    assert task.preset_model("quick", "voc") is None and task.default_model("voc") == "faster_rcnn_r18_fpn"


def test_quick_with_the_c4_model_samples_fewer_rois_and_other_models_keep_mmdets():
    c4 = presets.preset_values("quick", "fmnist_det", presets.C4)["options"]
    assert (c4["roi_samples"], c4["test_proposals"]) == (64, 100)
    for model in ("retinanet_r18_fpn", "faster_rcnn_r18_fpn"):
        assert "roi_samples" not in presets.preset_values("quick", "fmnist_det", model)["options"]


def test_the_bidet_milestones_are_its_four_decays_over_fifty_epochs():
    """trainval_net.py decays at the start of epochs 7, 13, 19 and 25 (then the 1e-6 floor stops it)."""
    fractions = [float(m) for m in EXPECTED["bidet"]["milestones"].split(",")]
    assert [round(f * EXPECTED["bidet"]["epochs"]) for f in fractions] == [6, 12, 18, 24]


def test_bidet_without_an_imagenet_resnet18_or_a_full_precision_stage_is_a_one_line_error(tmp_path):
    from tasks.detection.task import check_run_options

    with pytest.raises(UserError, match="preset bidet starts from an ImageNet ResNet-18") as error:
        check_run_options(build_config("detection", "clipped_ste", dataset="voc", preset="paper"))
    assert "\n" not in str(error.value)
    resnet = tmp_path / "resnet18.pth"
    resnet.write_bytes(b"")
    check_run_options(build_config("detection", "clipped_ste", dataset="voc", preset="bidet",
                                   sets=[f"backbone_checkpoint={resnet}"]))
    check_run_options(build_config("detection", "clipped_ste", dataset="voc", preset="bidet",
                                   sets=["pretrain_epochs=12"]))
