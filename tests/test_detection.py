"""The detection family on mmdet: offline data, VOC reading, the validation split, scopes, binary
convs, runs in the database."""
import dataclasses
import json
import math
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import estimators
from bench.cli import main
from bench.db import ResultsDB
from bench.errors import DataMissingError, Diverged, UserError
from estimators.base import binary_sign

pytest.importorskip("mmdet")

from tasks.detection import data as detection_data  # noqa: E402
from tasks.detection.data import fmnist_det as synthetic  # noqa: E402
from tasks.detection.task import import_openmmlab  # noqa: E402

SMALL = synthetic.SceneSpec(image_size=96, n_train=6, n_val=5, max_objects=3)
TWO_ITERATIONS = ["--epochs", "1", "--quiet", "--set", "train_subset=8", "--set", "batch_size=4",
                  "--set", "eval_subset=4", "--set", "num_workers=0", "--set", "val_size=0"]
#: a validation split of 4 training images (later --set values win)
FOUR_VALIDATION_IMAGES = ["--set", "val_size=4"]
COCO_METRICS = {"bbox_mAP", "bbox_mAP_50", "bbox_mAP_75"}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    return synthetic.build_offline_set(tmp_path_factory.mktemp("det"), SMALL)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """A cache holding the offline set of the quick preset (generated once, about 10 s)."""
    folder = tmp_path_factory.mktemp("cache")
    detection_data.offline_folder(str(folder))
    return folder


# -- the offline set -----------------------------------------------------------------------
def test_offline_set_loads_in_pycocotools_and_ground_truth_scores_ap_one(small_set):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(small_set / "annotations" / "instances_val.json"))
    assert len(gt.getImgIds()) == SMALL.n_val and len(gt.getCatIds()) == 10
    detections = [dict(image_id=a["image_id"], category_id=a["category_id"], bbox=a["bbox"], score=1.0)
                  for a in gt.dataset["annotations"]]
    evaluation = COCOeval(gt, gt.loadRes(detections), "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0) and evaluation.stats[1] == pytest.approx(1.0)


def test_boxes_are_the_exact_tight_boxes_of_the_pasted_masks():
    items = np.zeros((1, 28, 28), np.uint8)
    items[0, 5:20, 8:12] = 255  # a 4x15 bar: pasted at scale 1 its box is exactly 4 wide, 15 high
    spec = synthetic.SceneSpec(image_size=64, n_train=6, max_objects=1, min_scale=1.0, max_scale=1.0)
    flat = [np.full((80, 80, 3), 90, np.uint8)]
    for scene in synthetic.generate_scenes(spec, "train", items, np.array([4]), flat):
        (x0, y0, x1, y1), = scene.boxes
        assert (x1 - x0 + 1, y1 - y0 + 1) == (4, 15) and scene.labels == [4]
        background = scene.image[(0, -1, 0, -1), (0, 0, -1, -1)]  # the corners: the bar is never there
        assert (background == background[0]).all()
        changed = np.argwhere((scene.image != background[0]).any(axis=2))
        assert (changed.min(0).tolist(), changed.max(0).tolist()) == ([y0, x0], [y1, x1])


def test_generation_is_deterministic(tmp_path, small_set):
    again = synthetic.build_offline_set(tmp_path, SMALL)
    for name in ("instances_train.json", "instances_val.json"):
        assert (again / "annotations" / name).read_bytes() == (small_set / "annotations" / name).read_bytes()
    assert (again / "val" / "000003.png").read_bytes() == (small_set / "val" / "000003.png").read_bytes()


# -- VOC and malformed input ---------------------------------------------------------------
def test_voc_folder_with_difficult_flags_loads_through_mmdet(tmp_path, small_set):
    import_openmmlab()
    from mmdet.datasets import VOCDataset

    items, labels = synthetic.load_items(synthetic.find_fashion_mnist(), "val")
    scenes = list(synthetic.generate_scenes(SMALL, "val", items, labels, synthetic.load_backgrounds()))
    difficult = [[j == 0 for j in range(len(s.boxes))] for s in scenes]
    voc_names = detection_data.VOC_CLASSES[:10]
    for year, split in (("2007", "trainval"), ("2007", "test")):
        synthetic.write_voc(tmp_path / "VOCdevkit", year, split, scenes, voc_names, difficult)
    detection_data.check("voc2007", str(tmp_path), None)  # the suite's own validation passes

    dataset = VOCDataset(data_root=str(tmp_path / "VOCdevkit"), ann_file="VOC2007/ImageSets/Main/test.txt",
                         data_prefix=dict(sub_data_root="VOC2007/"), pipeline=[], test_mode=True)
    assert len(dataset) == len(scenes)
    for info, scene in zip((dataset.get_data_info(i) for i in range(len(dataset))), scenes):
        assert [i["ignore_flag"] for i in info["instances"]] == [1] + [0] * (len(scene.boxes) - 1)
        assert [i["bbox_label"] for i in info["instances"]] == scene.labels
        # written as VOC's 1-based inclusive corners; mmdet subtracts 1 from all four
        assert [i["bbox"] for i in info["instances"]] == [list(box) for box in scene.boxes]


def _voc_0712(folder: Path) -> None:
    """A VOCdevkit of the small set's scenes: 3 VOC2007 trainval, 5 VOC2012 trainval, 4 VOC2007 test images."""
    items, labels = synthetic.load_items(synthetic.find_fashion_mnist(), "val")
    scenes = list(synthetic.generate_scenes(SMALL, "val", items, labels, synthetic.load_backgrounds()))
    for year, split, count in (("2007", "trainval", 3), ("2012", "trainval", 5), ("2007", "test", 4)):
        synthetic.write_voc(folder / "VOCdevkit", year, split, scenes[:count], detection_data.VOC_CLASSES[:10])


def test_voc_0712_configs_build_mmdet_datasets_with_the_voc07_metric(tmp_path, small_set):
    import_openmmlab()
    from mmdet.registry import DATASETS

    _voc_0712(tmp_path)
    data = detection_data.build("voc", str(tmp_path), None, (96, 96), None, None, tmp_path)
    assert data.metric_style == "voc" and data.evaluator["eval_mode"] == "11points"
    assert len(DATASETS.build(data.train)) == 3 + 5 and len(DATASETS.build(data.val)) == 4  # 07+12 -> 07 test
    subset = detection_data.build("voc", str(tmp_path), None, (96, 96), 2, 1, tmp_path)
    assert len(DATASETS.build(subset.train)) == 2 and len(DATASETS.build(subset.val)) == 1
    assert data.eval_batch_size == 1  # images of many sizes: each scored alone, never padded to a neighbour


def test_malformed_voc_xml_is_one_line_naming_the_file(tmp_path, small_set):
    items, labels = synthetic.load_items(synthetic.find_fashion_mnist(), "val")
    scenes = list(synthetic.generate_scenes(SMALL, "val", items, labels, synthetic.load_backgrounds()))[:2]
    for split in ("trainval", "test"):
        base = synthetic.write_voc(tmp_path / "VOCdevkit", "2007", split, scenes, detection_data.VOC_CLASSES[:10])
    broken = base / "Annotations" / "2007_000001.xml"
    broken.write_text(broken.read_text().replace("</annotation>", ""))
    with pytest.raises(UserError, match=f"malformed annotation file {broken}") as error:
        detection_data.check("voc2007", str(tmp_path), None)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("content, fault", [
    ("{not json", "not valid JSON"),
    (json.dumps({"images": [], "annotations": []}), "no 'categories' list"),
    (json.dumps({"images": [{"id": 1}], "categories": [{"id": 1}],
                 "annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3]}]}), "annotation 0 has no"),
    (json.dumps({"images": [{"id": 1}], "categories": [{"id": 1}],
                 "annotations": [{"image_id": 7, "category_id": 1, "bbox": [1, 2, 3, 4]}]}), "unknown image_id 7"),
])
def test_malformed_coco_json_is_one_line_naming_the_file(tmp_path, content, fault):
    path = tmp_path / "instances_val.json"
    path.write_text(content)
    with pytest.raises(UserError, match=fault) as error:
        detection_data.check_coco_json(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_missing_data_folder_names_the_folder(tmp_path):
    with pytest.raises(DataMissingError, match=f"no VOCdevkit/VOC2007 under {tmp_path}"):
        detection_data.check("voc", str(tmp_path), None)
    with pytest.raises(DataMissingError, match="needs --data-root"):
        detection_data.check("coco", None, None)


def test_cli_bad_data_is_one_line_and_leaves_no_row(tmp_path, capsys):
    db_url = f"sqlite:///{tmp_path}/det.sqlite"
    coco = tmp_path / "coco" / "annotations"
    coco.mkdir(parents=True)
    (coco / "instances_train2017.json").write_text("{broken")
    code = main(["run", "--task", "detection", "--estimator", "surge", "--dataset", "coco",
                 "--data-root", str(tmp_path), "--db", db_url, "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert f"malformed annotation file {coco / 'instances_train2017.json'}" in err
    assert ResultsDB(db_url).list_runs() == []


# -- the validation split ------------------------------------------------------------------
def _fmnist(cache_dir, work_dir: Path, val_size: int, train_subset=None):
    work_dir.mkdir(exist_ok=True)
    return detection_data.build("fmnist_det", None, str(cache_dir), (96, 96), train_subset, None, work_dir, val_size)


def _coco_file(ann_file) -> tuple[set, list]:
    """A COCO annotation file's image ids and its annotations' image ids."""
    content = json.loads(Path(ann_file).read_text())
    return {image["id"] for image in content["images"]}, [a["image_id"] for a in content["annotations"]]


def test_the_validation_split_is_held_out_of_the_training_images_and_the_test_split_is_untouched(tmp_path, cache_dir):
    import_openmmlab()
    from mmdet.registry import DATASETS

    without = _fmnist(cache_dir, tmp_path / "none", 0)
    assert without.validation is None and without.validation_evaluator is None
    assert without.train["ann_file"].endswith("annotations/instances_train.json")  # as before: the file itself
    every_image, every_annotation = _coco_file(without.train["ann_file"])

    split = _fmnist(cache_dir, tmp_path / "fifty", 50)
    held, held_annotations = _coco_file(split.validation["ann_file"])
    kept, kept_annotations = _coco_file(split.train["ann_file"])
    assert len(held) == 50 and not held & kept and held | kept == every_image
    assert sorted(held_annotations + kept_annotations) == sorted(every_annotation)
    assert set(held_annotations) <= held and set(kept_annotations) <= kept
    # the validation metric scores exactly the held-out images, in test mode with the test pipeline
    assert split.validation_evaluator["ann_file"] == split.validation["ann_file"]
    assert split.validation["test_mode"] and split.validation["pipeline"] == split.val["pipeline"]
    assert {info["img_id"] for info in DATASETS.build(split.validation).load_data_list()} == held
    assert split.val == without.val and split.evaluator == without.evaluator  # the reported split

    assert _coco_file(_fmnist(cache_dir, tmp_path / "again", 50).validation["ann_file"])[0] == held
    assert _coco_file(_fmnist(cache_dir, tmp_path / "sixty", 60).validation["ann_file"])[0] != held
    subset = DATASETS.build(_fmnist(cache_dir, tmp_path / "subset", 50, train_subset=8).train)
    assert len(subset) == 8 and {subset.get_data_info(i)["img_id"] for i in range(8)} <= kept


def test_voc_0712_validation_split_comes_from_both_years_trainval_lists(tmp_path, small_set):
    import_openmmlab()
    from mmdet.registry import DATASETS

    _voc_0712(tmp_path)
    data = detection_data.build("voc", str(tmp_path), None, (96, 96), None, None, tmp_path, 3)
    train, validation = DATASETS.build(data.train), DATASETS.build(data.validation)

    def images(dataset) -> list[str]:
        return [dataset.get_data_info(i)["img_path"] for i in range(len(dataset))]

    assert len(images(train)) == 5 and len(images(validation)) == 3
    assert len(set(images(train)) | set(images(validation))) == 3 + 5  # disjoint, together all of trainval
    assert len(DATASETS.build(data.val)) == 4 and data.validation_evaluator == data.evaluator
    with pytest.raises(UserError, match=r"^val_size must be between 1 and 7 \(the train split has 8 images\), "
                                        r"got 8$"):
        detection_data.check("voc", str(tmp_path), None, 8)


def test_a_validation_split_of_every_training_image_is_one_line_and_leaves_no_row(tmp_path, cache_dir, capsys):
    db_url = f"sqlite:///{tmp_path}/det.sqlite"
    code = main(["run", "--task", "detection", "--estimator", "surge", "--db", db_url, *TWO_ITERATIONS,
                 "--set", "val_size=1000", "--set", f"cache_dir={cache_dir}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert "val_size must be between 1 and 999 (the train split has 1000 images), got 1000" in err
    assert ResultsDB(db_url).list_runs() == []


def test_the_quick_preset_holds_out_100_images_and_the_paper_preset_none():
    from bench.config import build_config
    from tasks.detection.task import DetectionTask

    quick = build_config("detection", "surge")
    assert quick.options["val_size"] == 100 and quick.train_subset == 160
    assert build_config("detection", "surge", dataset="voc", preset="paper").options["val_size"] == 0
    # the pre-training trains on all 900 images the validation split leaves, the fine-tuning on 160
    stage = DetectionTask.pretraining_stage(quick, "data")
    assert stage.train_subset == 900 and stage.options["pretrain_subset"] is None and stage.estimator == "fp32"


def test_the_pretraining_cache_key_tells_validation_splits_apart_and_keeps_its_old_key_without_one(tmp_path):
    from bench.config import build_config
    from tasks.detection.task import DetectionTask

    def key(config) -> str:
        return DetectionTask.pretraining_stage(config, "data").cache_folder(tmp_path).name

    configs = {size: build_config("detection", "surge", sets=[f"val_size={size}"]) for size in (0, 200)}
    assert key(configs[0]) != key(configs[200])
    before = {name: value for name, value in configs[0].options.items() if name != "val_size"}  # a config of then
    assert key(dataclasses.replace(configs[0], options=before)) == key(configs[0])


# -- models and scopes ---------------------------------------------------------------------
def _detector(model="faster_rcnn_r18_fpn", scope="backbone", estimator="surge", num_classes=10):
    from mmdet.registry import MODELS
    from mmengine.config import ConfigDict

    from tasks.detection.backbone import sign_preserving_activations
    from tasks.detection.models import DETECTORS, SCOPES

    import_openmmlab()
    detector = MODELS.build(ConfigDict(DETECTORS.get(model)(num_classes)))
    detector.init_weights()
    for part in ("neck", "rpn_head", "roi_head", "bbox_head"):
        if hasattr(detector, part):
            sign_preserving_activations(getattr(detector, part))
    record = estimators.binarize_model(detector, estimators.build(estimator), scope, scopes=SCOPES)
    return detector, record


def test_backbone_scope_binarizes_the_sixteen_3x3_convs_and_keeps_stem_and_shortcuts():
    _, record = _detector(scope="backbone")
    assert len(record.binarized) == 16 and all(n.startswith("backbone.layer") for n in record.binarized)
    assert record.full_precision["backbone.conv1"] == "stem conv"
    assert record.full_precision["backbone.layer2.0.downsample.1"] == "downsample shortcut"
    assert record.full_precision["neck.lateral_convs.0.conv"] == "neck outside the scope"


def test_wider_scopes_add_neck_then_heads_but_never_prediction_layers():
    _, neck = _detector(scope="backbone+neck")
    assert len(neck.binarized) == 16 + 8  # FPN: 4 lateral + 4 output convs
    _, faster = _detector(scope="all")
    assert {"rpn_head.rpn_conv", "roi_head.bbox_head.shared_fcs.0", "roi_head.bbox_head.shared_fcs.1"} <= set(
        faster.binarized)
    for name in ("rpn_head.rpn_cls", "rpn_head.rpn_reg", "roi_head.bbox_head.fc_cls", "roi_head.bbox_head.fc_reg"):
        assert faster.full_precision[name] == "prediction layer"
    _, retina = _detector(model="retinanet_r18_fpn", scope="all")
    assert len([n for n in retina.binarized if n.startswith("bbox_head")]) == 8  # 2 towers x 4 convs
    assert retina.full_precision["bbox_head.retina_cls"] == "prediction layer"


@pytest.mark.parametrize("estimator", ["clipped_ste", "surge"])
def test_binarized_convs_see_exactly_plus_minus_one_weights_and_inputs(cache_dir, estimator):
    from mmdet.registry import DATASETS
    from mmengine.dataset import pseudo_collate

    detector, record = _detector(model="retinanet_r18_fpn", scope="all", estimator=estimator)
    folder = detection_data.offline_folder(str(cache_dir))
    data = detection_data.coco_data(folder, "train", "val", synthetic.FASHION_CLASSES,
                                detection_data.pipelines((96, 96)), 2, None, cache_dir)
    dataset = DATASETS.build(data.train)
    seen = {}
    layers = dict(estimators.binary_layers(detector))
    for name, layer in layers.items():
        def recording(x, weight, bias, _layer=layer, _name=name):
            seen[_name] = (x.detach(), weight.detach(), _layer.weight_scale().detach())
            return type(_layer).functional(_layer, x, weight, bias)
        layer.functional = recording
    detector.train()
    batch = detector.data_preprocessor(pseudo_collate([dataset[0], dataset[1]]), True)
    losses = detector(**batch, mode="loss")
    detector.parse_losses(losses)[0].backward()
    assert set(seen) == set(record.binarized) and len(seen) == 16 + 8 + 8
    for name, (x, weight, scale) in seen.items():
        assert set(x.unique().tolist()) <= {-1.0, 1.0}, name
        assert len(x.unique()) == 2, f"{name} sees one sign only: its input lost the sign"
        torch.testing.assert_close(weight, binary_sign(layers[name].weight.detach()) * scale, rtol=0, atol=0)
        assert layers[name].weight.grad is not None and layers[name].weight.grad.abs().sum() > 0


def test_fmnist_det_images_score_the_same_in_a_batch_of_eight_as_alone(cache_dir):
    """fmnist_det evaluates 8 images a batch: sound only because its images share one size, so
    a batch pads nothing and a binarized detector scores each image as it would alone."""
    from mmdet.registry import DATASETS
    from mmengine.dataset import pseudo_collate

    torch.manual_seed(0)
    detector, _ = _detector(model="retinanet_r18_fpn", estimator="clipped_ste")
    detector.eval()
    data = detection_data.build("fmnist_det", None, str(cache_dir), (96, 96), None, 3, cache_dir)
    assert data.eval_batch_size == 8
    samples = [DATASETS.build(data.val)[i] for i in range(3)]

    def head_outputs(batch):  # every level's class scores and box regressions, before any threshold
        inputs = detector.data_preprocessor(pseudo_collate(batch), False)["inputs"]
        return [level for outputs in detector._forward(inputs) for level in outputs]

    with torch.no_grad():
        together = head_outputs(samples)
        for i, sample in enumerate(samples):
            for level_together, level_alone in zip(together, head_outputs([sample]), strict=True):
                torch.testing.assert_close(level_together[i], level_alone[0], rtol=1e-4, atol=1e-4)


# -- hooks -----------------------------------------------------------------------------------
def _engine_hooks(detector, iteration: int, max_iters: int):
    from bench.api import RunContext
    from tasks.detection.hooks import EngineHooks

    hooks = EngineHooks(RunContext(quiet=True), "test", 2)
    runner = types.SimpleNamespace(model=detector, iter=iteration, max_iters=max_iters, max_epochs=1, epoch=0,
                                   optim_wrapper=torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1),
                                   param_schedulers=[], train_dataloader=[0] * max_iters, train_loop=None)
    hooks.before_train(runner)
    hooks.before_train_epoch(runner)
    return hooks, runner


def test_progress_is_the_engines_formula_iteration_over_max_iters_minus_one():
    from bench.engine import training_progress

    detector, _ = _detector(model="retinanet_r18_fpn", estimator="ede")
    estimator = next(layer.estimator for _, layer in estimators.binary_layers(detector))
    hooks, runner = _engine_hooks(detector, 30, 121)
    hooks.before_train_iter(runner, 0)
    assert estimator.progress == pytest.approx(0.25) == training_progress(30, 121)
    runner.iter = 120
    hooks.before_train_iter(runner, 0)
    assert estimator.progress == 1.0  # the last iteration ends the schedule, as in every family


def test_engine_hooks_raise_diverged_on_a_nan_loss():
    hooks, runner = _engine_hooks(torch.nn.Linear(1, 1), 4, 10)
    hooks.before_train_iter(runner, 0)
    hooks.after_train_iter(runner, 0, outputs={"loss": torch.tensor(1.5)})
    hooks.before_train_iter(runner, 1)
    with pytest.raises(Diverged, match="training loss is nan at step 5"):
        hooks.after_train_iter(runner, 1, outputs={"loss": torch.tensor(math.nan)})


# -- end to end ------------------------------------------------------------------------------
def test_a_run_leaves_no_loader_worker_behind(tmp_path, cache_dir):
    """Persistent loader workers are shut down as the run ends: a pool worker's next run found
    them in its garbage collection and waited about 15 s on them. With a validation split the
    Runner has three loaders (train, validation, test)."""
    import multiprocessing

    args = [a if a != "num_workers=0" else "num_workers=1" for a in TWO_ITERATIONS]
    code = main(["run", "--task", "detection", "--estimator", "clipped_ste", "--db", f"sqlite:///{tmp_path}/d.sqlite",
                 *args, *FOUR_VALIDATION_IMAGES, "--set", "pretrain_epochs=0", "--set", f"cache_dir={cache_dir}"])
    assert code == 0
    assert multiprocessing.active_children() == []


def _tiny_run(tmp_path, cache_dir, *extra) -> tuple[dict, set]:
    """A two-iteration binary run without pre-training: its stored metrics and curve names."""
    db_url = f"sqlite:///{tmp_path}/det.sqlite"
    code = main(["run", "--task", "detection", "--estimator", "clipped_ste", "--db", db_url, *TWO_ITERATIONS, *extra,
                 "--set", "pretrain_epochs=0", "--set", f"cache_dir={cache_dir}"])
    assert code == 0
    db = ResultsDB(db_url)
    (run,) = db.list_runs()
    return {m.name: m for m in db.get_run(run.id).metrics}, {c.name for c in db.get_run(run.id).curves}


def test_a_run_with_a_validation_split_stores_both_splits_and_its_best_validation_epoch(tmp_path, cache_dir):
    metrics, curves = _tiny_run(tmp_path, cache_dir, *FOUR_VALIDATION_IMAGES)
    scores = COCO_METRICS | {f"val_{name}" for name in COCO_METRICS}
    assert set(metrics) == scores | {f"{name}@best_val" for name in scores} | {"best_val_epoch"}
    assert metrics["best_val_epoch"].value == 1.0  # the only evaluated epoch
    assert all(metrics[f"{name}@best_val"].value == metrics[name].value for name in scores)
    assert metrics["bbox_mAP"].primary and metrics["val_bbox_mAP"].higher_is_better
    assert {"val_bbox_mAP", "test_bbox_mAP", "train_loss"} <= curves


def test_a_run_without_a_validation_split_stores_the_metric_names_of_before(tmp_path, cache_dir):
    metrics, curves = _tiny_run(tmp_path, cache_dir)
    assert set(metrics) == COCO_METRICS
    assert "test_bbox_mAP" in curves and not [name for name in curves if name.startswith("val_")]


@pytest.mark.slow
def test_two_iteration_quick_runs_land_finished_rows_with_bbox_map(tmp_path, cache_dir):
    """Two-step like the presets: a 2-iteration full-precision stage, cached, then 2 binary iterations."""
    db_url = f"sqlite:///{tmp_path}/det.sqlite"
    cached = []
    for estimator in ("clipped_ste", "surge"):
        code = main(["run", "--task", "detection", "--estimator", estimator, "--db", db_url, *TWO_ITERATIONS,
                     "--set", "pretrain_epochs=1", "--set", f"cache_dir={cache_dir}"])
        assert code == 0
        cached += [(p, p.stat().st_mtime_ns) for p in (cache_dir / "detection" / "detectors").glob("*/detector.pth")]
    assert len(cached) == 2 and cached[0] == cached[1]  # trained once, reused by the second run
    db = ResultsDB(db_url)
    runs = db.list_runs()
    assert [(r.estimator, r.status, r.model) for r in runs] == [
        ("clipped_ste", "finished", "retinanet_r18_fpn"), ("surge", "finished", "retinanet_r18_fpn")]
    for run in runs:
        full = db.get_run(run.id)
        metrics = {m.name: m for m in full.metrics}
        assert set(metrics) == COCO_METRICS
        assert metrics["bbox_mAP"].primary and metrics["bbox_mAP"].higher_is_better
        assert all(0.0 <= m.value <= 100.0 for m in metrics.values())
        assert full.scope["scope"] == "backbone" and len(full.scope["binarized"]) == 16
        assert full.scope["pretraining"]["cache_key"] == cached[0][0].parent.name
        assert set(full.scope["pretraining"]["metrics"]) == COCO_METRICS
        assert full.n_binary_params == sum(
            c * c * 9 * n for c, n in ((64, 4), (128, 3), (256, 3), (512, 3))) + 64 * 128 * 9 + 128 * 256 * 9 \
            + 256 * 512 * 9
        curves = db.curves_frame()
        assert set(curves[curves.run_id == run.id].curve) >= {"train_loss", "lr", "test_bbox_mAP"}


@pytest.mark.slow
@pytest.mark.parametrize("validation", [[], [*FOUR_VALIDATION_IMAGES, "--set", "val_every=1"]],
                         ids=["no-validation", "validation-every-epoch"])
def test_an_interrupted_detection_run_resumes_to_the_uninterrupted_result(tmp_path, cache_dir, monkeypatch,
                                                                          validation):
    db_url, reference_url = f"sqlite:///{tmp_path}/det.sqlite", f"sqlite:///{tmp_path}/reference.sqlite"
    args = ["run", "--task", "detection", "--estimator", "surge", *TWO_ITERATIONS, *validation,
            "--epochs", "2", "--set", "pretrain_epochs=0", "--set", f"cache_dir={cache_dir}",
            "--checkpoint-dir", str(tmp_path / "checkpoints")]
    assert main([*args, "--db", reference_url]) == 0
    original = ResultsDB.add_curve_points

    def ctrl_c_after_epoch_2(self, run_id, epoch, step, values):
        original(self, run_id, epoch, step, values)
        if epoch == 2 and "train_loss" in values:
            raise KeyboardInterrupt

    monkeypatch.setattr(ResultsDB, "add_curve_points", ctrl_c_after_epoch_2)
    assert main([*args, "--db", db_url]) == 130  # one line on stderr, the row closed as interrupted
    (interrupted,) = ResultsDB(db_url).list_runs()
    assert interrupted.status == "interrupted" and interrupted.error.endswith("rerun to resume")
    (checkpoint,) = (tmp_path / "checkpoints").glob("*/last.pt")
    saved = torch.load(checkpoint, weights_only=True)  # the harness's format: tensors and plain values only
    if validation:  # epoch 1's validation, the best so far, is kept for the resumed run to compare with
        assert saved["extra"]["best"]["epoch"] == 1 and "val_bbox_mAP" in saved["extra"]["best"]["scores"]
    monkeypatch.setattr(ResultsDB, "add_curve_points", original)

    assert main([*args, "--db", db_url]) == 0
    (run,) = ResultsDB(db_url).list_runs()
    full = ResultsDB(db_url).get_run(run.id)
    assert run.id == interrupted.id and full.status == "finished" and full.provenance["resumed"] == 1
    assert sorted(c.epoch for c in full.curves if c.name == "train_loss") == [1, 2]  # epoch 2 redone once
    (reference,) = ResultsDB(reference_url).list_runs()
    expected = ResultsDB(reference_url).get_run(reference.id)
    assert {m.name: m.value for m in full.metrics} == {m.name: m.value for m in expected.metrics}
    assert sorted((c.epoch, c.name, c.value) for c in full.curves) == sorted(
        (c.epoch, c.name, c.value) for c in expected.curves)
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())
