"""mmengine hooks that connect an OpenMMLab training run to surge-bench.

    EstimatorProgressHook  sets every estimator's training progress p = iter / max_iters
                           before each iteration (SURGE's schedules, EDE's t/k, ...)
    BenchReportHook        progress bar (loss, images/s), the NaN guard (raises Diverged,
                           so the run is marked diverged), step timing, and per-epoch
                           curves and validation metrics for the results database
    BenchCheckpointHook    the harness's checkpoint (model, optimizer, LR schedulers, epoch,
                           iteration, random states; loaded weights-only) after every epoch,
                           and the resume from it before training starts
"""
from __future__ import annotations

import math
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

import estimators
from bench.task_api import Reporter
from bench.training import StepTimer, check_finite, progress_bar


def unwrap(model):
    return model.module if is_model_wrapper(model) else model


class EstimatorProgressHook(Hook):
    priority = "VERY_HIGH"

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        estimators.set_progress(unwrap(runner.model), min(runner.iter / max(runner.max_iters, 1), 1.0))


class BenchReportHook(Hook):
    priority = "LOW"

    def __init__(self, reporter: Reporter, timer: StepTimer, label: str, batch_size: int,
                 metric_names: Optional[dict[str, str]] = None) -> None:
        self.reporter, self.timer, self.label, self.batch_size = reporter, timer, label, batch_size
        self.metric_names = metric_names or {}
        self.last_metrics: dict[str, float] = {}
        self._bar = None
        self._losses: list[float] = []

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self._bar is None:  # here, not in before_train: a resume sets runner.iter there
            self._bar = progress_bar(runner.max_iters, self.label, self.reporter.quiet)
            self._bar.update(runner.iter)
        self.timer.start()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self.timer.stop()
        loss = float(outputs["loss"].detach()) if outputs and "loss" in outputs else math.nan
        check_finite(loss, "training loss", runner.iter + 1)
        self._losses.append(loss)
        if self._bar is not None:
            self._bar.update(1)
            elapsed = self._bar.format_dict.get("elapsed") or 0.0
            rate = self.batch_size * self._bar.n / elapsed if elapsed else 0.0
            self._bar.set_postfix(loss=f"{loss:.3f}", img_s=f"{rate:.1f}")

    def after_train_epoch(self, runner) -> None:
        values = {"train_loss": sum(self._losses) / max(len(self._losses), 1)}
        self._losses = []
        lrs = runner.optim_wrapper.get_lr().get("lr")
        if lrs:
            values["lr"] = float(lrs[0])
        lambda_mean = estimators.mean_auxiliary_lambda(unwrap(runner.model))
        if lambda_mean is not None:
            values["surge_lambda_mean"] = lambda_mean
        self.reporter.epoch_end(runner.epoch + 1, runner.iter, values)

    def after_val_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        # mmdet rounds its metrics to 3 decimals: in percent, 4 decimals drop the float noise (14.000000000000002)
        named = {ours: round(100.0 * float(metrics[theirs]), 4) for ours, theirs in self.metric_names.items()
                 if metrics and theirs in metrics}
        if metrics is not None and not named:
            # mmdet leaves the keys out when no image got a detection above the score threshold.
            named = {ours: 0.0 for ours in self.metric_names}
        for name, value in named.items():
            check_finite(value, f"val {name}", runner.iter)
        self.last_metrics = named
        self.reporter.epoch_end(runner.epoch, runner.iter, {f"val_{k}": v for k, v in named.items()})

    def after_train(self, runner) -> None:
        if self._bar is not None:
            self._bar.close()


class _ParamSchedulers:
    """mmengine's list of parameter schedulers as one state_dict / load_state_dict object."""

    def __init__(self, schedulers) -> None:
        self.schedulers = list(schedulers or [])

    def state_dict(self) -> list[dict]:
        return [scheduler.state_dict() for scheduler in self.schedulers]

    def load_state_dict(self, states: list[dict]) -> None:
        for scheduler, state in zip(self.schedulers, states, strict=True):
            scheduler.load_state_dict(state)


class BenchCheckpointHook(Hook):
    """Checkpoint and resume through the harness (the same file format as every family).

    An epoch is saved once it is complete: after its validation where one follows it, else
    after its training. Lowest priority: it restores after the other hooks' ``before_train``
    and saves after the report hook has written the epoch's curves and scores.
    """

    priority = "LOWEST"

    def __init__(self, reporter: Reporter, report: BenchReportHook) -> None:
        self.reporter, self.report = reporter, report

    def before_train(self, runner) -> None:
        epoch, step, scores = self.reporter.restore(unwrap(runner.model), runner.optim_wrapper,
                                                    _ParamSchedulers(runner.param_schedulers))
        if epoch > 1:  # the loop goes on after the last saved epoch, at its iteration
            runner.train_loop._epoch, runner.train_loop._iter = epoch - 1, step
            self.report.last_metrics = scores

    def after_train_epoch(self, runner) -> None:
        done, interval = runner.epoch + 1, runner.train_loop.val_interval
        if not (done % interval == 0 or done == runner.max_epochs):  # no validation follows this epoch
            self._save(runner, done)

    def after_val_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        self._save(runner, runner.epoch)

    def _save(self, runner, epoch: int) -> None:
        self.reporter.save(epoch, runner.iter, unwrap(runner.model), runner.optim_wrapper,
                           _ParamSchedulers(runner.param_schedulers), scores=self.report.last_metrics)
