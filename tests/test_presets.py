"""The paper track's presets: every number against a table written here (a change must be
deliberate), the alias, each source's citation, and the best-test-epoch selection some sources
report."""
from __future__ import annotations

import pytest

from bench.cli import main
from bench.config import build_config
from bench.db import ResultsDB
from bench.errors import UserError
from bench.plugins import get_task
from bench.report import build_tables

FIELDS = ("model", "epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "schedule",
          "warmup_epochs", "warmup_start", "milestones", "block", "weight_grad", "weight_balance", "weight_scale",
          "weight_clip", "pad_value", "weight_decay_on", "init")

# preset, dataset, model -> the values above, in that order (sources: tasks/classification/presets.py)
EXPECTED = {
    ("irnet", "cifar10", "resnet20_cifar"): ("resnet20_cifar", 400, 128, "sgd", 0.1, 0.9, 1e-4, "cosine", 0.0, 0.0, "",
                                             "irnet", "surrogate", "standardize", "pow2", "none", 0.0, "all",
                                             "scratch"),
    ("irnet", "cifar10", "vgg_small"): ("vgg_small", 300, 128, "sgd", 0.007, 0.9, 1e-4, "cosine", 0.0, 0.0, "",
                                        "irnet", "surrogate", "standardize", "pow2", "none", 0.0, "all", "scratch"),
    ("irnet", "imagenet", "resnet18_imagenet"): ("resnet18_imagenet", 100, 2048, "sgd_nesterov", 0.8, 0.9, 1e-4,
                                                 "step", 4.0, 0.25, "0.3,0.6,0.9", "irnet", "surrogate",
                                                 "standardize", "pow2", "none", 0.0, "all", "scratch"),
    ("recu", "cifar10", "resnet20_cifar"): ("resnet20_cifar", 600, 256, "sgd", 0.1, 0.9, 5e-4, "cosine", 5.0, 0.0, "",
                                            "recu", "identity", "recu", "learnable", "none", 0.0, "all", "scratch"),
    ("recu", "imagenet", "resnet18_imagenet"): ("resnet18_imagenet", 200, 512, "sgd", 0.1, 0.9, 1e-4, "cosine", 5.0,
                                                0.0, "", "recu", "identity", "recu", "learnable", "none", 0.0, "conv",
                                                "scratch"),
    ("reste", "cifar10", "resnet20_cifar"): ("resnet20_cifar", 1000, 256, "sgd", 0.1, 0.9, 1e-4, "cosine", 5.0, 0.0,
                                             "", "bireal", "surrogate", "none", "layer", "none", 0.0, "all",
                                             "scratch"),
    ("reste", "cifar10", "resnet18_cifar"): ("resnet18_cifar", 2000, 96, "sgd", 0.1, 0.9, 1e-4, "cosine", 5.0, 0.0,
                                             "", "bireal", "surrogate", "none", "layer", "none", 0.0, "all",
                                             "scratch"),
    ("reste", "imagenet", "resnet18_imagenet"): ("resnet18_imagenet", 250, 750, "sgd", 0.1, 0.9, 1e-4, "cosine", 0.0,
                                                 0.0, "", "bireal", "surrogate", "none", "layer", "none", 0.0, "all",
                                                 "scratch"),
    ("reactnet", "imagenet", "resnet18_imagenet"): ("resnet18_imagenet", 128, 512, "adam", 2.5e-3, 0.9, 0.0,
                                                    "linear", 0.0, 0.0, "", "reactnet", "identity", "none",
                                                    "channel", "gradient", 0.0, "conv", "two_step"),
    ("bireal", "imagenet", "resnet18_imagenet"): ("resnet18_imagenet", 256, 512, "adam", 1e-3, 0.9, 0.0, "linear",
                                                  0.0, 0.0, "", "bireal", "identity", "none", "channel", "gradient",
                                                  0.0, "conv", "scratch"),
}
OPTIONS = {
    "reactnet": dict(val_size=0, kd="distribution", teacher_model="resnet34_torchvision", step1_weight_decay=1e-5),
    "bireal": dict(val_size=0, label_smoothing=0.1),
}


@pytest.mark.parametrize("key", sorted(EXPECTED), ids=["-".join(k) for k in sorted(EXPECTED)])
def test_every_classification_preset_number(key):
    preset, dataset, model = key
    config = build_config("classification", "clipped_ste", dataset=dataset, model=model, preset=preset)
    assert tuple(getattr(config, name) for name in FIELDS) == EXPECTED[key]
    assert config.preset == preset and config.train_subset is None and config.eval_subset is None
    for name, value in OPTIONS.get(preset, {"val_size": 0}).items():
        assert config.options[name] == value, name


def test_irnet_fixes_ede_schedule_on_resnets_and_a_flag_still_wins():
    resnet = build_config("classification", "ede", dataset="cifar10", model="resnet20_cifar", preset="irnet")
    assert (resnet.estimator_hparams["t_min"], resnet.estimator_hparams["t_max"]) == (1e-3, 10.0)
    vgg = build_config("classification", "ede", dataset="cifar10", model="vgg_small", preset="irnet")
    assert (vgg.estimator_hparams["t_min"], vgg.estimator_hparams["t_max"]) == (0.1, 10.0)
    mine = build_config("classification", "ede", dataset="cifar10", model="resnet20_cifar", preset="irnet",
                        sets=["t_min=0.01", "epochs=3"])
    assert mine.estimator_hparams["t_min"] == 0.01 and mine.epochs == 3
    assert build_config("classification", "surge", dataset="cifar10", preset="irnet").estimator_hparams["eta"] == 0.1


def test_paper_is_an_alias_of_recu_stored_under_recu():
    paper = build_config("classification", "surge", dataset="cifar10", model="resnet20_cifar", preset="paper")
    recu = build_config("classification", "surge", dataset="cifar10", model="resnet20_cifar", preset="recu")
    assert paper == recu and paper.preset == "recu"
    assert get_task("classification").preset_sources["paper"].alias_of == "recu"


def test_a_preset_without_a_recipe_for_the_dataset_names_the_ones_it_has():
    with pytest.raises(UserError, match=r"preset reactnet has no recipe for cifar10 with resnet18_cifar; "
                                        r"it has: imagenet with resnet18_imagenet"):
        build_config("classification", "ste", dataset="cifar10", preset="reactnet")
    with pytest.raises(UserError, match="preset irnet has no recipe for cifar10 with resnet18_cifar"):
        build_config("classification", "ste", dataset="cifar10", model="resnet18_cifar", preset="irnet")
    with pytest.raises(UserError, match="preset irnet has no recipe for fashion_mnist"):
        build_config("classification", "ste", dataset="fashion_mnist", preset="irnet")


def test_every_source_preset_is_cited(capsys):
    task = get_task("classification")
    for name in set(task.presets) - {"quick"}:
        source = task.preset_sources[name]
        assert source.alias_of or ("arXiv:" in source.source and source.files and source.fixes), name
    assert main(["list", "presets"]) == 0
    out = capsys.readouterr().out
    for fragment in ("irnet", "IR-Net, Qin et al., CVPR 2020, arXiv:1909.10788", "best test epoch", "last epoch",
                     "CIFAR-10/ResNet20/1w1a/trainer.py", "paper", "= recu"):
        assert fragment in out, fragment


# -- the best test epoch ---------------------------------------------------------------------
TINY = ["--dataset", "digits", "--set", "epochs=2", "--set", "train_subset=128", "--set", "eval_subset=64",
        "--set", "batch_size=64"]


def test_runs_without_a_validation_split_keep_the_best_test_epoch(tmp_path):
    url = f"sqlite:///{tmp_path}/b.sqlite"
    assert main(["run", "--task", "classification", "--estimator", "clipped_ste", "--db", url, "--quiet", *TINY,
                 "--set", "val_size=0"]) == 0
    assert main(["run", "--task", "classification", "--estimator", "ste", "--db", url, "--quiet", *TINY,
                 "--set", "val_size=64"]) == 0
    db = ResultsDB(url)
    frame = db.metrics_frame()
    metrics = {estimator: dict(zip(rows["metric"], rows["value"])) for estimator, rows in frame.groupby("estimator")}
    test_only, validated = metrics["clipped_ste"], metrics["ste"]
    assert test_only["best_test_epoch"] in (1.0, 2.0) and test_only["top1@best_test"] >= test_only["top1"]
    assert not any(name.endswith("@best_test") for name in validated)  # the test split is scored once
    best = [t for t in build_tables(db, select="best") if t.kind == "results"]
    assert len(best) == 1 and "a test-set selection" in best[0].description
    assert best[0].cell("clipped_ste", best[0].columns[0]).mean == pytest.approx(test_only["top1@best_test"])
    assert any("not ranked" in note for note in best[0].notes)
    assert not any(c.bold for row in best[0].cells for c in row)
    assert not [t for t in build_tables(db, select="best") if t.kind in ("deltas", "aggregate")]


# GLUE: preset -> task -> (epochs, max_seq_length, batch_size, lr, eval_steps) (tasks/glue/presets.py cites the files)
GLUE_EXPECTED = {
    "bibert": {"cola": (50, 64, 16, 1e-4, 500), "mnli": (5, 128, 16, 5e-5, 1000), "mrpc": (20, 128, 16, 2e-4, 200),
               "sst2": (10, 64, 16, 1e-4, 200), "stsb": (20, 128, 16, 1e-4, 200), "qqp": (5, 128, 16, 1e-4, 1000),
               "qnli": (10, 128, 16, 1e-4, 1000), "rte": (20, 128, 16, 1e-5, 200)},
    "bit": {"cola": (50, 64, 16, 5e-4, 100), "mnli": (6, 128, 16, 2e-4, 100), "mrpc": (20, 128, 8, 5e-4, 100),
            "sst2": (10, 64, 8, 1e-4, 100), "stsb": (20, 128, 8, 5e-4, 100), "qqp": (6, 128, 32, 2e-4, 100),
            "qnli": (10, 128, 8, 2e-4, 100), "rte": (20, 128, 8, 5e-4, 100)},
}
GLUE_BINARIZATION = {  # scope, kd, weight_balance, weight_scale, weight_clip, weight_grad
    "bibert": ("bibert", "bibert", "center", "channel", "gradient", "identity"),
    "bit": ("bit", "bit", "center", "layer", "none", "identity"),
}


@pytest.mark.parametrize("preset", ["bibert", "bit"])
def test_every_glue_preset_number(preset):
    for dataset, (epochs, max_length, batch_size, lr, eval_steps) in GLUE_EXPECTED[preset].items():
        config = build_config("glue", "surge", dataset=dataset, preset=preset)
        assert (config.model, config.epochs, config.options["max_seq_length"], config.batch_size, config.lr,
                config.eval_steps) == ("bert_base", epochs, max_length, batch_size, lr, eval_steps), dataset
        assert (config.optimizer, config.schedule, config.weight_decay, config.options["val_size"]) == \
            ("adamw", "linear", 0.01, 0)
        assert config.warmup_epochs == pytest.approx(0.1 * epochs)  # the first 10 % of the steps
        assert (config.scope, config.options["kd"], config.weight_balance, config.weight_scale, config.weight_clip,
                config.weight_grad) == GLUE_BINARIZATION[preset]
        assert config.preset == preset and config.train_subset is None and config.eval_subset is None


def test_glue_paper_is_bit_and_the_paper_presets_refuse_tasks_without_a_recipe():
    assert build_config("glue", "surge", dataset="rte", preset="paper").preset == "bit"
    for preset in ("bibert", "bit"):
        for dataset in ("wnli", "vader_sst2"):
            with pytest.raises(UserError, match=f"preset {preset} has no recipe for {dataset}; it has: cola"):
                build_config("glue", "surge", dataset=dataset, preset=preset)
    sources = get_task("glue").preset_sources
    assert sources["bibert"].reports == sources["bit"].reports == "best"
