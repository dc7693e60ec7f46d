"""The detection task family: binarized Faster R-CNN / RetinaNet on mmdet 3.3 (mmengine Runner)."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import ClassVar, Optional

import estimators
from bench import distributed
from bench.api import MetricSpec, RunContext, Task, TaskResult
from bench.errors import UserError
from bench.options import option
from bench.training import seed_everything
from bench.validation import OneOf, Range
from estimators.accounting import count_cost
from estimators.blocks import BLOCKS
from tasks.detection import data as detection_data, metrics as _metrics  # noqa: F401 - registers metrics
from tasks.detection import presets as recipes
from tasks.detection.data import DATASETS
from tasks.detection.models import NO_NECK, SCOPES

MODEL_NAMES = ("faster_rcnn_r18_fpn", "faster_rcnn_r18_c4", "retinanet_r18_fpn")
#: the family version that keys the cached full-precision pre-training: version 3 changed only
#: the evaluation batch, which the pre-trained weights do not depend on
PRETRAINING_VERSION = "2"
_INSTALL_HINT = "the detection task needs the OpenMMLab stack: scripts/setup_env.sh detection"


def import_openmmlab():
    """Import mmdet (registering its modules and our backbone) or fail with the install command."""
    try:
        import mmcv.ops  # noqa: F401 - mmdet's RoIAlign and nms are compiled ops
        import mmdet  # noqa: F401
        from mmdet.utils import register_all_modules
    except ImportError as error:
        raise UserError(f"{_INSTALL_HINT} ({error})") from None
    register_all_modules(init_default_scope=True)
    from mmengine.logging import MMLogger

    # mmengine logs every parameter's initialiser at INFO; the Runner sets its own level later.
    MMLogger.get_current_instance().setLevel(logging.WARNING)
    from tasks.detection import backbone, models  # noqa: F401 - registers BiRealResNet

    return models


@dataclasses.dataclass(frozen=True)
class DetectionOptions:
    image_scale: str = option("160", help="input size: N (square) or WxH")
    pretrain_epochs: int = option(0, Range(0, integer=True), help="full-precision pre-training epochs (0: none)")
    pretrain_optimizer: str = option("adamw", OneOf(("sgd", "adam", "adamw")), help="pre-training optimizer")
    pretrain_lr: float = option(1e-3, Range(0, low_open=True), help="pre-training learning rate")
    pretrain_subset: Optional[int] = option(None, Range(1, integer=True, optional=True), legacy=None,
                                            help="training images of the pre-training (none: the run's train_subset)")
    max_grad_norm: float = option(10.0, Range(0), help="gradient clipping (0: none)")
    val_every: int = option(0, Range(0, integer=True), help="validate every N epochs (0: after the last)")
    backbone_checkpoint: str = option("", help="backbone weights to start from (a .pth file)")
    roi_samples: int = option(0, Range(0, integer=True), legacy=0,
                              help="RoIs sampled per training image for the box head of Faster R-CNN (mmdet's rcnn "
                                   "sampler num; 0: the model config's, 512)")
    test_proposals: int = option(0, Range(0, integer=True), legacy=0,
                                 help="RPN proposals kept per test image of Faster R-CNN (0: the model config's, "
                                      "1000)")
    # in the hash: worker processes draw the augmentation's random numbers from their own generators
    num_workers: int = option(2, Range(0, integer=True), help="DataLoader worker processes")
    val_size: int = option(0, Range(0, integer=True), legacy=0,
                           help="train images held out as the validation split (0: none; the test split stays "
                                "the reported one; quick preset 200, paper preset 0: the papers train on all of "
                                "trainval)")
    cache_dir: str = option("", local=True, help="where the offline set and pre-trained detectors are kept")

    #: options renamed since rows were written (the database upgrade applies it)
    renamed: ClassVar[dict[str, str]] = {"workers": "num_workers"}


def sized(model_cfg: dict, roi_samples: int, test_proposals: int) -> dict:
    """A Faster R-CNN config with ``roi_samples`` RoIs sampled per training image and
    ``test_proposals`` RPN proposals kept per test image (0: the config's own)."""
    train_cfg, test_cfg = model_cfg.get("train_cfg", {}), model_cfg.get("test_cfg", {})
    if roi_samples and "rcnn" in train_cfg:
        train_cfg["rcnn"]["sampler"]["num"] = roi_samples
    if test_proposals and "rpn" in test_cfg:
        test_cfg["rpn"]["max_per_img"] = test_proposals
    return model_cfg


def check_run_options(config) -> None:
    """The run's choices the detection family cannot honour, as one-line errors before anything runs."""
    import torch

    if config.model in NO_NECK and config.scope == "backbone+neck":
        raise UserError(f"{config.model} has no neck: scope backbone+neck would binarize what backbone does; "
                        f"use backbone or all")
    if config.precision != "fp32" and not torch.cuda.is_available():
        raise UserError(f"precision {config.precision}: detection's mixed precision is mmengine's AmpOptimWrapper, "
                        f"which runs on a CUDA GPU only; on this machine use precision=fp32")
    if config.channels_last:
        raise UserError("channels_last: mmcv 2.1's RoIAlign reads a channels_last feature map as if it were "
                        "contiguous NCHW (wrong RoI features, no error); detection runs contiguous: "
                        "leave channels_last off")
    if config.init == "two_step":
        raise UserError("init two_step: detection's two-step recipe is its full-precision detector stage "
                        "(--set pretrain_epochs=N); leave init at scratch or give a detector state-dict file")
    if config.init != "scratch" and int(config.options["pretrain_epochs"]) > 0:
        raise UserError(f"init {config.init} and pretrain_epochs {config.options['pretrain_epochs']} both name the "
                        f"weights to start from; set pretrain_epochs=0 to start from the file")
    if (recipes.resolve(config.preset) == "bidet" and not config.options["backbone_checkpoint"]
            and int(config.options["pretrain_epochs"]) == 0 and config.init == "scratch"):
        raise UserError("preset bidet starts from an ImageNet ResNet-18 (BiDet's --basenet) and has no "
                        "full-precision stage: give one with --set backbone_checkpoint=FILE (or train a "
                        "full-precision detector first with --set pretrain_epochs=N)")


class DetectionTask(Task):
    name = "detection"
    diagnose_unsupported = ("mmdet computes a batch's loss with anchors assigned and sampled per batch, so a "
                            "per-example loss of copied images, which the reference needs, is not defined")
    # 2: progress p = iter / (max_iters - 1), the engine's formula (1: iter / max_iters)
    # 3: evaluation one image a batch where image sizes differ (2: two, padded to one size)
    version = "3"
    description = "object detection with a binarized backbone on mmdet 3.3; offline default fmnist_det"
    datasets = DATASETS
    default_dataset = "fmnist_det"
    models = MODEL_NAMES
    #: ReCU's block (per-sample normalisation) has no detection source: not offered here
    blocks = tuple(b for b in BLOCKS if b != "recu")
    scope_registry = SCOPES
    #: precision through mmengine's AmpOptimWrapper; channels_last is refused (check_run_options)
    applies_precision = True
    #: eval_steps > 0 is refused (bench.validation.check_values)
    own_loop = ("mmengine's Runner, not bench.engine.fit: its val loop runs at epoch ends only (every "
                "val_interval epochs), so it cannot evaluate every eval_steps optimizer steps")
    presets = (*recipes.PRESETS, *recipes.ALIASES)
    preset_sources = recipes.SOURCES
    Options = DetectionOptions
    throughput_unit = "img"

    def metric_specs(self, dataset: str) -> list[MetricSpec]:
        if dataset.startswith("voc"):
            return [MetricSpec("mAP50")]
        return [MetricSpec("bbox_mAP"), MetricSpec("bbox_mAP_50"), MetricSpec("bbox_mAP_75")]

    def default_model(self, dataset: str) -> str:
        # The offline set is the CPU smoke test: RetinaNet trains 2.5x faster than Faster R-CNN there.
        return "retinanet_r18_fpn" if dataset == "fmnist_det" else "faster_rcnn_r18_fpn"

    def preset_model(self, preset: str, dataset: str) -> Optional[str]:
        """The papers' detector for their presets: BiBench and BiDet both train Faster R-CNN R18-C4."""
        return recipes.C4 if recipes.resolve(preset) in ("bibench_c4", "bidet") else None

    def preset_values(self, preset: str, dataset: str, model: str) -> dict:
        return recipes.preset_values(preset, dataset, model)

    def check(self, config) -> None:
        import_openmmlab()
        options = config.options
        detection_data.parse_image_scale(options["image_scale"])
        checkpoint = options["backbone_checkpoint"]
        if checkpoint and not Path(checkpoint).expanduser().is_file():
            raise UserError(f"backbone_checkpoint not found: {checkpoint}")
        check_run_options(config)
        detection_data.check(config.dataset, config.data_root, options["cache_dir"] or None, int(options["val_size"]))

    # -- building blocks ---------------------------------------------------------------
    def _cache_root(self, config) -> Path:
        cache = config.options["cache_dir"]
        return Path(cache).expanduser() if cache else detection_data.default_cache_dir()

    def _detector(self, config, data):
        from mmdet.registry import MODELS
        from mmengine.config import ConfigDict

        models = import_openmmlab()
        checkpoint = config.options["backbone_checkpoint"] or None
        model_cfg = sized(models.DETECTORS.get(config.model)(len(data.classes), checkpoint, config.block),
                          int(config.options["roi_samples"]), int(config.options["test_proposals"]))
        detector = MODELS.build(ConfigDict(model_cfg))  # mmdet reads train_cfg.rpn etc. as attributes
        detector.init_weights()
        from tasks.detection.backbone import sign_preserving_activations

        for part in ("neck", "rpn_head", "roi_head", "bbox_head"):
            if hasattr(detector, part):
                sign_preserving_activations(getattr(detector, part))
        return detector

    @staticmethod
    def pretraining_stage(config, data_version: str):
        """The RunConfig of the full-precision stage; its hash is the cached detector's key.

        It keeps the run's options, so it trains on the same images (the training images less
        the ``val_size`` held out: a different validation split is a different detector), and
        is scored once, after its last epoch (``val_every`` 0), on both splits. Trained in this
        process (no loader workers): the same detector whichever run trains it. The settings
        that act on binarized layers only (``weight_balance``, ``weight_clip``, ``pad_value``,
        ``binary_weights``) and ``init`` take their defaults: runs that differ only in them share
        one full-precision detector (and its cache key is the one of before they existed).
        """
        subset = config.options["pretrain_subset"]
        return dataclasses.replace(
            config, estimator="fp32", estimator_hparams={}, scope="backbone", weight_grad="surrogate",
            weight_balance="none", weight_clip="none", pad_value=0.0, binary_weights=True, init="scratch",
            epochs=int(config.options["pretrain_epochs"]), seed=0,
            optimizer=config.options["pretrain_optimizer"], lr=float(config.options["pretrain_lr"]),
            train_subset=config.train_subset if subset is None else subset,
            options={**config.options, "pretrain_epochs": 0, "val_every": 0, "num_workers": 0,
                     "pretrain_subset": None, "data_version": data_version},
        )

    def _pretrained(self, config, data, work_dir: Path, context: RunContext) -> tuple[Optional[Path], dict]:
        """The full-precision detector of the two-step recipe: trained once, cached by its config.

        Returns the weights file (None without pre-training) and what the run record keeps of it.
        """
        from tasks.detection.mmengine_runner import fit

        epochs = int(config.options["pretrain_epochs"])
        if epochs <= 0:
            return None, {}
        stage = self.pretraining_stage(config, data.version)
        folder = stage.cache_folder(self._cache_root(config) / "detection" / "detectors", PRETRAINING_VERSION)
        key = folder.name
        weights, metrics_file = folder / "detector.pth", folder / "metrics.json"
        if not weights.is_file():
            import torch

            if stage.train_subset != config.train_subset:  # the stage trains on more (or other) images
                data = self._data(stage, work_dir / "pretrain-data")
            detector = self._detector(stage, data)
            seed_everything(0)
            scores = fit(detector, data, stage, work_dir / "pretrain", context.private(),
                         f"full-precision pre-training {config.model}", self.metric_specs(config.dataset)[0]).scores
            if distributed.is_main():
                folder.mkdir(parents=True, exist_ok=True)
                metrics_file.write_text(json.dumps(scores))
                partial = folder / f"detector.pth.tmp{os.getpid()}"
                torch.save(detector.state_dict(), partial)
                partial.replace(weights)
            distributed.barrier()
        scores = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        return weights, {"cache_key": key, "epochs": epochs, "metrics": scores}

    @staticmethod
    def _initialize(config, detector) -> dict:
        """``init`` a state-dict file: loaded into the full-precision detector before binarization
        (:func:`bench.initialization.load_state_file`); the record keeps the file and its sha256."""
        if config.init == "scratch":
            return {}
        from bench.initialization import load_state_file

        return load_state_file(detector, Path(config.init).expanduser())

    @staticmethod
    def _data(config, work_dir: Path):
        work_dir.mkdir(parents=True, exist_ok=True)
        return detection_data.build(config.dataset, config.data_root, config.options["cache_dir"] or None,
                                    detection_data.parse_image_scale(config.options["image_scale"]),
                                    config.train_subset, config.eval_subset, work_dir, int(config.options["val_size"]))

    @staticmethod
    def _cost(detector, data):
        """Parameters and OPs of one forward pass on the first val image."""
        from mmdet.registry import DATASETS
        from mmengine.dataset import pseudo_collate

        sample = DATASETS.build(data.val)[0]
        batch = detector.data_preprocessor(pseudo_collate([sample]), False)
        return count_cost(detector, batch["inputs"], batch["data_samples"], mode="predict")

    # -- the run ------------------------------------------------------------------------
    def run(self, config, context: RunContext) -> TaskResult:
        # pycocotools and mmengine print loading notes and evaluation tables to stdout; the
        # progress bar (stderr) and the CLI's summary line are what a user reads.
        with contextlib.redirect_stdout(io.StringIO()):
            return self._run(config, context)

    def _run(self, config, context: RunContext) -> TaskResult:
        from tasks.detection.mmengine_runner import fit, load_state

        import_openmmlab()
        with tempfile.TemporaryDirectory(prefix="bench-detection-") as tmp:
            work_dir = Path(tmp)
            data = self._data(config, work_dir)
            pretrained, pretraining = self._pretrained(config, data, work_dir, context)
            seed_everything(config.seed)
            detector = self._detector(config, data)
            load_state(detector, pretrained)
            start = self._initialize(config, detector)
            estimator = estimators.build(config.estimator, **config.estimator_hparams)
            record = self.binarize(detector, estimator, config)
            record["pretraining"] = pretraining
            if start:
                record["init"] = start
            cost = self._cost(detector, data)
            cost_fields = dict(n_params=cost.n_params, n_binary_params=cost.n_binary_params,
                               binary_ops=cost.binary_ops, float_ops=cost.float_ops)
            context.reporter.info(scope=record, **cost_fields)
            result = fit(detector, data, config, work_dir / "run", context, f"{config.estimator} {config.dataset}",
                         self.metric_specs(config.dataset)[0])
        return TaskResult(metrics=result.scores, scope=record, train_step_ms=result.train_step_ms,
                          peak_memory_mb=result.peak_memory_mb, **cost_fields)
