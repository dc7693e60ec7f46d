"""Faster R-CNN R18-C4 (BiBench, BiDet): its structure, its scopes, and the detection side of the
run options (weight decay groups, step schedule and warm-up start, Nesterov SGD, mixed precision,
the latent-weight clip, what detection refuses), on the real mmdet 3.3 / mmengine."""
import dataclasses
import types

import pytest
import torch

import estimators
from bench.cli import main
from bench.config import build_config
from bench.db import ResultsDB
from bench.errors import UserError

pytest.importorskip("mmdet")

from tasks.detection.task import import_openmmlab  # noqa: E402

C4 = "faster_rcnn_r18_c4"
#: a tiny C4 run: 2 iterations of 4 images at 96 px, 16 RoIs per image, 20 test proposals
TINY = ["--epochs", "1", "--quiet", "--set", "train_subset=8", "--set", "batch_size=4", "--set", "eval_subset=4",
        "--set", "num_workers=0", "--set", "val_size=0", "--set", "pretrain_epochs=0", "--set", "image_scale=96",
        "--set", "roi_samples=16", "--set", "test_proposals=20"]


def _detector(model=C4, scope="backbone", estimator="clipped_ste", block="bireal", checkpoint=None,
              roi_samples=16, test_proposals=20, **options):
    from mmdet.registry import MODELS
    from mmengine.config import ConfigDict

    from tasks.detection.backbone import sign_preserving_activations
    from tasks.detection.models import DETECTORS, SCOPES
    from tasks.detection.task import sized

    import_openmmlab()
    detector = MODELS.build(ConfigDict(sized(DETECTORS.get(model)(10, checkpoint, block), roi_samples,
                                             test_proposals)))
    detector.init_weights()
    for part in ("neck", "rpn_head", "roi_head", "bbox_head"):
        if hasattr(detector, part):
            sign_preserving_activations(getattr(detector, part))
    record = estimators.binarize_model(detector, estimators.build(estimator), scope, scopes=SCOPES, **options)
    return detector, record


def _batch(detector, size=96, images=2):
    """Random images with two boxes each, through the detector's data preprocessor."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    samples = []
    for _ in range(images):
        sample = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size), scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(bboxes=torch.tensor([[8.0, 10.0, 50.0, 60.0], [40.0, 30.0, 90.0, 85.0]]),
                                           labels=torch.tensor([1, 3]))
        samples.append(sample)
    data = dict(inputs=[torch.randint(0, 256, (3, size, size), dtype=torch.uint8) for _ in range(images)],
                data_samples=samples)
    return detector.data_preprocessor(data, True)


# -- the model -------------------------------------------------------------------------------
def test_c4_is_stem_to_layer3_at_stride_16_and_layer4_as_the_shared_head_of_the_runs_block():
    from mmdet.models.roi_heads import StandardRoIHead

    from tasks.detection.backbone import BiRealResLayer, SignedBasicBlock
    from tasks.detection.models import DETECTORS

    torch.manual_seed(0)
    detector, _ = _detector(block="reactnet")
    assert not hasattr(detector, "neck") and not hasattr(detector.backbone, "layer4")
    assert isinstance(detector.roi_head, StandardRoIHead)
    head = detector.roi_head.shared_head
    assert isinstance(head, BiRealResLayer) and [type(b) for b in head.layer4] == [SignedBasicBlock] * 2
    assert type(head.layer4[0].post1).__name__ == "RPReLU"  # the run's block, not mmdet's BasicBlock
    assert head.layer4[0].conv1.in_channels == 256 and head.layer4[1].conv2.out_channels == 512
    assert detector.rpn_head.rpn_conv.in_channels == 256
    assert detector.roi_head.bbox_roi_extractor.out_channels == 256
    assert detector.roi_head.bbox_head.fc_cls.in_features == 512
    features = detector.backbone(torch.zeros(1, 3, 96, 96))
    assert len(features) == 1 and features[0].shape == (1, 256, 6, 6)  # stride 16
    c4, fpn = DETECTORS.get(C4)(10), DETECTORS.get("faster_rcnn_r18_fpn")(10)
    assert c4["data_preprocessor"] == fpn["data_preprocessor"]  # pytorch-style, not mmdet's caffe C4 one
    assert c4["roi_head"]["shared_head"]["bnn_block"] == c4["backbone"]["bnn_block"] == "bireal"


def test_an_imagenet_resnet18_file_loads_into_backbone_and_shared_head(tmp_path):
    """One file, as BiBench and BiDet start from: layer1-3 into the backbone, layer4 into the shared head."""
    from mmdet.registry import MODELS

    import_openmmlab()
    torch.manual_seed(1)
    resnet = MODELS.build(dict(type="BiRealResNet", depth=18, avg_down=True))
    path = tmp_path / "resnet18.pth"
    torch.save(resnet.state_dict(), path)
    detector, _ = _detector(checkpoint=str(path), estimator="fp32")
    for name in ("layer3.1.conv2.weight", "conv1.weight", "layer2.0.downsample.1.weight"):
        torch.testing.assert_close(detector.backbone.state_dict()[name], resnet.state_dict()[name])
    for name in ("layer4.0.conv1.weight", "layer4.1.bn2.running_var", "layer4.0.downsample.2.weight"):
        torch.testing.assert_close(detector.roi_head.shared_head.state_dict()[name], resnet.state_dict()[name])


# -- scopes ----------------------------------------------------------------------------------
def test_c4_scopes_backbone_binarizes_stem_to_layer3_and_all_adds_shared_head_and_rpn_conv():
    _, backbone = _detector(scope="backbone")
    assert len(backbone.binarized) == 12
    assert all(n.startswith(("backbone.layer1", "backbone.layer2", "backbone.layer3")) for n in backbone.binarized)
    assert backbone.full_precision["roi_head.shared_head.layer4.0.conv1"] == (
        "roi_head.shared_head outside the scope (layer4 of the C4 ResNet; BiBench keeps it full precision)")
    assert backbone.full_precision["rpn_head.rpn_conv"] == "rpn_head outside the scope"
    for scope in ("all",):
        _, record = _detector(scope=scope)
        assert len(record.binarized) == 12 + 4 + 1, scope
        assert {"roi_head.shared_head.layer4.0.conv1", "roi_head.shared_head.layer4.1.conv2",
                "rpn_head.rpn_conv"} <= set(record.binarized)
        assert record.full_precision == {
            "backbone.conv1": "stem conv",
            "backbone.layer2.0.downsample.1": "downsample shortcut",
            "backbone.layer3.0.downsample.1": "downsample shortcut",
            "roi_head.shared_head.layer4.0.downsample.1": "downsample shortcut",
            "rpn_head.rpn_cls": "prediction layer", "rpn_head.rpn_reg": "prediction layer",
            "roi_head.bbox_head.fc_cls": "prediction layer", "roi_head.bbox_head.fc_reg": "prediction layer",
        }


def test_backbone_plus_neck_is_refused_for_the_c4_model_which_has_no_neck():
    from tasks.detection.task import check_run_options

    with pytest.raises(UserError, match="faster_rcnn_r18_c4 has no neck"):
        check_run_options(build_config("detection", "clipped_ste", model=C4, sets=["scope=backbone+neck"]))
    check_run_options(build_config("detection", "clipped_ste", model="faster_rcnn_r18_fpn",
                                   sets=["scope=backbone+neck"]))


def test_all_c4_binarized_convs_see_plus_minus_one_and_the_fp_shared_head_keeps_its_relu():
    torch.manual_seed(0)
    detector, record = _detector(scope="all")
    seen = {}
    layers = dict(estimators.binary_layers(detector))
    for name, layer in layers.items():
        def recording(x, weight, bias, _layer=layer, _name=name):
            seen[_name] = x.detach()
            return type(_layer).functional(_layer, x, weight, bias)
        layer.functional = recording
    detector.train()
    losses = detector(**_batch(detector), mode="loss")
    detector.parse_losses(losses)[0].backward()
    assert set(seen) == set(record.binarized)
    for name, x in seen.items():
        assert set(x.unique().tolist()) == {-1.0, 1.0}, name
        assert layers[name].weight.grad is not None and layers[name].weight.grad.abs().sum() > 0, name
    # under scope backbone the shared head stays full precision: its convs get ReLU of their input
    fp_detector, _ = _detector(scope="backbone")
    assert isinstance(fp_detector.roi_head.shared_head.layer4[0].real, torch.nn.ReLU)


# -- optimizer and schedule ------------------------------------------------------------------
def _config(**fields):
    config = build_config("detection", "clipped_ste", model=C4)
    return dataclasses.replace(config, **fields)


def _wrapper(detector, config):
    from mmengine.optim import build_optim_wrapper

    from tasks.detection.mmengine_runner import optim_wrapper

    return build_optim_wrapper(detector, optim_wrapper(config))


def test_weight_decay_on_conv_decays_exactly_the_4d_conv_kernels():
    detector, _ = _detector(scope="all", estimator="surge", block="reactnet")
    wrapper = _wrapper(detector, _config(weight_decay_on="conv", weight_decay=5e-4, optimizer="sgd"))
    decayed, rest = wrapper.optimizer.param_groups
    kernels = {id(p) for p in detector.parameters() if p.dim() == 4}
    assert {id(p) for p in decayed["params"]} == kernels and decayed["weight_decay"] == 5e-4
    assert rest["weight_decay"] == 0.0 and not {id(p) for p in rest["params"]} & kernels
    assert len(decayed["params"]) + len(rest["params"]) == len(list(detector.parameters()))
    names = {id(p): n for n, p in detector.named_parameters()}
    assert any(names[id(p)].endswith("aux_weight") for p in decayed["params"])  # SURGE's kernels are convs
    assert any("move1" in names[id(p)] or "prelu" in names[id(p)] for p in rest["params"])
    assert any(names[id(p)].endswith("fc_cls.weight") for p in rest["params"])
    everything = _wrapper(detector, _config(weight_decay=5e-4))  # "all": one group, as before
    assert len(everything.optimizer.param_groups) == 1


def _learning_rates(config, iters_per_epoch: int) -> list[float]:
    """The LR of every iteration under the run's mmengine schedulers, stepped as the Runner does."""
    from mmengine.registry import PARAM_SCHEDULERS

    from tasks.detection.mmengine_runner import param_schedulers

    wrapper = _wrapper(torch.nn.Linear(2, 2), config)
    schedulers = [PARAM_SCHEDULERS.build(dict(cfg, optimizer=wrapper))
                  for cfg in param_schedulers(config, iters_per_epoch)]
    rates = []
    for _ in range(config.epochs * iters_per_epoch):
        rates.append(wrapper.optimizer.param_groups[0]["lr"])
        for scheduler in schedulers:
            scheduler.step()
    return rates


@pytest.mark.filterwarnings("ignore:Detected call of `scheduler.step\\(\\)` before")
def test_the_bidet_step_schedule_reproduces_trainval_net_rates_epoch_by_epoch():
    """BiDet's trainval_net.py: lr 0.01, x0.1 at the start of epochs 7, 13, 19, 25, never below 1e-6."""
    bidet = build_config("detection", "clipped_ste", dataset="voc", preset="bidet")
    rates = _learning_rates(bidet, iters_per_epoch=3)
    expected, lr = [], 0.01
    for epoch in range(1, 51):
        if epoch != 1 and (epoch - 1) % 6 == 0 and lr * 0.1 >= 1e-6:
            lr *= 0.1
        expected += [lr] * 3
    assert rates == pytest.approx(expected, rel=1e-9)


@pytest.mark.filterwarnings("ignore:Detected call of `scheduler.step\\(\\)` before")
def test_warmup_starts_at_warmup_start_and_sgd_nesterov_is_nesterov():
    config = _config(optimizer="sgd_nesterov", lr=0.8, warmup_epochs=1.0, warmup_start=0.25, schedule="constant",
                     epochs=2)
    rates = _learning_rates(config, iters_per_epoch=4)
    # mmengine's LinearLR: warmup_start at the first iteration, 1 at the warm-up's last
    assert rates == pytest.approx([0.2, 0.4, 0.6, 0.8, 0.8, 0.8, 0.8, 0.8])
    legacy = _learning_rates(dataclasses.replace(config, warmup_start=0.0), iters_per_epoch=4)
    assert legacy[0] == pytest.approx(0.8e-3)  # 0: mmdet's 1e-3, as detection runs did before warmup_start
    group = _wrapper(torch.nn.Linear(2, 2), config).optimizer.param_groups[0]
    assert group["nesterov"] and group["momentum"] == 0.9


@pytest.mark.parametrize("precision, dtype", [("bf16", "bfloat16"), ("fp16", "float16")])
def test_mixed_precision_is_mmengines_amp_wrapper_and_refused_on_cpu(precision, dtype):
    from tasks.detection.mmengine_runner import optim_wrapper
    from tasks.detection.task import check_run_options

    config = _config(precision=precision)
    assert optim_wrapper(config)["type"] == "AmpOptimWrapper" and optim_wrapper(config)["dtype"] == dtype
    assert optim_wrapper(_config())["type"] == "OptimWrapper"
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match=f"precision {precision}: .* CUDA GPU only; on this machine use "
                                            f"precision=fp32"):
            check_run_options(config)


def test_weight_clip_update_clamps_latent_weights_after_each_iteration():
    from bench.api import RunContext
    from tasks.detection.hooks import EngineHooks

    detector, _ = _detector(scope="all", weight_clip="update")
    layers = [layer for _, layer in estimators.binary_layers(detector)]
    with torch.no_grad():
        for layer in layers:
            layer.weight.mul_(1e3)
    stem = detector.backbone.conv1.weight.detach().clone()
    hooks = EngineHooks(RunContext(quiet=True), "test", 2, clip_latent_weights=True)
    runner = types.SimpleNamespace(model=detector, iter=0, max_iters=4, max_epochs=1, epoch=0,
                                   optim_wrapper=torch.optim.SGD(detector.parameters(), lr=0.1),
                                   param_schedulers=[], train_dataloader=[0] * 4, train_loop=None)
    hooks.before_train(runner)
    hooks.before_train_epoch(runner)
    hooks.before_train_iter(runner, 0)
    hooks.after_train_iter(runner, 0, outputs={"loss": torch.tensor(1.0)})
    assert all(layer.weight.abs().max() <= 1.0 for layer in layers)
    assert max(layer.weight.abs().max() for layer in layers) == 1.0
    torch.testing.assert_close(detector.backbone.conv1.weight, stem)  # full-precision layers untouched


# -- what detection refuses, and the full-precision stage -------------------------------------
@pytest.mark.parametrize("sets, message", [
    (["channels_last=true"], "channels_last: mmcv 2.1's RoIAlign"),
    (["init=two_step"], "init two_step: detection's two-step recipe is its full-precision detector stage"),
])
def test_options_detection_cannot_honour_are_one_line_errors(sets, message):
    from tasks.detection.task import check_run_options

    with pytest.raises(UserError, match=message) as error:
        check_run_options(build_config("detection", "clipped_ste", model=C4, sets=sets))
    assert "\n" not in str(error.value)


def test_mmcv_roi_align_misreads_channels_last_which_is_why_detection_refuses_it():
    from mmcv.ops import RoIAlign

    features = torch.randn(1, 8, 20, 20)
    rois = torch.tensor([[0.0, 1.0, 2.0, 15.0, 17.0]])
    align = RoIAlign((7, 7), 1.0, 0, aligned=True)
    assert not torch.allclose(align(features, rois), align(features.contiguous(memory_format=torch.channels_last),
                                                           rois))


def test_init_file_and_a_pretraining_stage_together_are_refused(tmp_path):
    from tasks.detection.task import check_run_options

    path = tmp_path / "detector.pth"
    torch.save({}, path)
    with pytest.raises(UserError, match="set pretrain_epochs=0 to start from the file"):
        check_run_options(build_config("detection", "clipped_ste", sets=[f"init={path}", "pretrain_epochs=2"]))


def test_the_pretraining_stage_ignores_the_binarized_layer_options():
    from tasks.detection.task import DetectionTask

    plain = build_config("detection", "clipped_ste", model=C4)
    options = build_config("detection", "clipped_ste", model=C4, sets=[
        "pad_value=-1", "weight_clip=update", "weight_balance=standardize", "binary_weights=false"])
    stage, other = (DetectionTask.pretraining_stage(c, "data") for c in (plain, options))
    assert stage.hash() == other.hash() and stage.estimator == "fp32" and other.pad_value == 0.0


# -- end to end ------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_tiny_c4_run_under_scope_all_lands_a_finished_row(tmp_path):
    """About 45 s on 2 cores, 25 of them generating the offline set."""
    db_url = f"sqlite:///{tmp_path}/det.sqlite"
    code = main(["run", "--task", "detection", "--model", C4, "--estimator", "clipped_ste", "--db", db_url, *TINY,
                 "--set", "scope=all", "--set", "pad_value=-1", "--set", "weight_decay_on=conv",
                 "--set", "weight_clip=update", "--set", "schedule=step", "--set", "milestones=0.5",
                 "--set", f"cache_dir={tmp_path / 'cache'}"])
    assert code == 0
    db = ResultsDB(db_url)
    (run,) = db.list_runs()
    full = db.get_run(run.id)
    assert full.status == "finished" and full.model == C4
    assert full.scope["scope"] == "all" and len(full.scope["binarized"]) == 17
    assert {"bbox_mAP", "bbox_mAP_50", "bbox_mAP_75"} <= {m.name for m in full.metrics}
    assert full.n_binary_params == sum(c * c * 9 * n for c, n in ((64, 4), (128, 3), (256, 3), (512, 3))) \
        + (64 * 128 + 128 * 256 + 256 * 512) * 9 + 256 * 256 * 9  # + the RPN conv
