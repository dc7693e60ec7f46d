"""The engine's hooks, driven from mmengine's hook points (detection trains with mmengine's Runner).

One mmengine hook, :class:`EngineHooks`, mirrors the Runner into the engine's
:class:`bench.engine.TrainState` and calls the same hook objects as ``bench.engine.fit``:
progress p = iter / (max_iters - 1) before each iteration, the NaN guard, step timing and
peak memory, the progress bar, per-epoch curves and the harness's checkpoint (model,
optimizer, LR schedulers, epoch, iteration, random states; loaded weights-only), restored
before training and saved after each complete epoch: after its validation where one
follows it, else after its training.

With a validation split the Runner's val loop scores it (``val_*`` scores) and the hook
scores the test split with the Runner's test loop right after (plain names), so each
evaluated epoch has both; the engine's BestValidation picks the best epoch on the
validation split's primary metric.

With ``weight_clip="update"`` (BinaryNet's latent-weight clip) the hook clamps every binarized
layer's latent weights to [-1, 1] right after each optimizer step
(:func:`estimators.clip_latent_weights`), before the engine's hooks see the iteration.
"""
from __future__ import annotations

import math
import time
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

import estimators
from bench.api import RunContext
from bench.engine import VALIDATION_PREFIX, TrainState, Timing, final_metrics, standard_hooks


def unwrap(model):
    return model.module if is_model_wrapper(model) else model


class _ParamSchedulers:
    """mmengine's list of parameter schedulers as one state_dict / load_state_dict object."""

    def __init__(self, schedulers) -> None:
        self.schedulers = list(schedulers or [])

    def state_dict(self) -> list[dict]:
        return [scheduler.state_dict() for scheduler in self.schedulers]

    def load_state_dict(self, states: list[dict]) -> None:
        for scheduler, state in zip(self.schedulers, states, strict=True):
            scheduler.load_state_dict(state)


class EngineHooks(Hook):
    """Lowest priority: it restores after the other hooks' ``before_train`` and saves last."""

    priority = "LOWEST"

    def __init__(self, context: RunContext, label: str, batch_size: int,
                 metric_names: Optional[dict[str, str]] = None, primary: Optional[str] = None,
                 higher_is_better: bool = True, validation: bool = False, clip_latent_weights: bool = False) -> None:
        """``metric_names``: our metric name -> mmdet's key; ``primary``: the metric whose
        validation score picks the best epoch; ``validation``: the Runner's val loop scores the
        validation split and its test loop the test split (else the val loop scores the test split);
        ``clip_latent_weights``: clamp the binarized layers' latent weights to [-1, 1] after every
        optimizer step (``weight_clip="update"``)."""
        self.hooks = standard_hooks(context, "img", primary, higher_is_better)
        self.timing = next(h for h in self.hooks if isinstance(h, Timing))
        self.label, self.batch_size = label, batch_size
        self.metric_names = metric_names or {}
        self.validation = validation
        self.clip_latent_weights = clip_latent_weights
        self.state: Optional[TrainState] = None
        self._loss_sum, self._iterations = 0.0, 0

    @property
    def run_metrics(self) -> dict[str, float]:
        """What the run stores: the last evaluation and the best validation epoch's (final_metrics)."""
        return final_metrics(self.state) if self.state is not None else {}

    def _call(self, point: str) -> None:
        for hook in self.hooks:
            getattr(hook, point)(self.state)

    def before_train(self, runner) -> None:
        self.state = TrainState(model=unwrap(runner.model), optimizer=runner.optim_wrapper,
                                scheduler=_ParamSchedulers(runner.param_schedulers), epochs=runner.max_epochs,
                                total_steps=runner.max_iters, label=self.label)
        self._call("before_train")
        if self.state.first_epoch > 1:  # resumed: the loop goes on after the last saved epoch, at its iteration
            runner.train_loop._epoch, runner.train_loop._iter = self.state.first_epoch - 1, self.state.step

    def before_train_epoch(self, runner) -> None:
        self.state.epoch, self.state.seen, self._loss_sum, self._iterations = runner.epoch + 1, 0, 0.0, 0
        self.state.steps_per_epoch = len(runner.train_dataloader)
        self.state.epoch_started = time.perf_counter()
        self._call("before_epoch")

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self.state.step = runner.iter
        self._call("before_step")

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.clip_latent_weights:  # mmengine's train_step has stepped the optimizer
            estimators.clip_latent_weights(unwrap(runner.model))
        self.state.loss = float(outputs["loss"].detach()) if outputs and "loss" in outputs else math.nan
        self.state.step = runner.iter + 1
        self.state.seen += self.batch_size
        self._loss_sum += self.state.loss
        self._iterations += 1
        self._call("after_step")

    def after_train_epoch(self, runner) -> None:
        self.state.train_values = {"train_loss": self._loss_sum / max(self._iterations, 1)}
        done, interval = runner.epoch + 1, runner.train_loop.val_interval
        if not (done % interval == 0 or done == runner.max_epochs):  # no validation follows this epoch
            self.state.evaluated = False
            self._call("after_epoch")

    def _named(self, metrics: Optional[dict]) -> dict[str, float]:
        """mmdet's metrics under our names, in percent."""
        # mmdet rounds its metrics to 3 decimals: in percent, 4 decimals drop the float noise (14.000000000000002)
        named = {ours: round(100.0 * float(metrics[theirs]), 4) for ours, theirs in self.metric_names.items()
                 if metrics and theirs in metrics}
        if metrics is not None and not named:
            # mmdet leaves the keys out when no image got a detection above the score threshold.
            named = {ours: 0.0 for ours in self.metric_names}
        return named

    def after_val_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        scores = self._named(metrics)
        if self.validation:
            # The test loop calls no val hook (nothing recurses) and leaves the model in eval mode,
            # as the val loop does: the train loop sets train mode at the start of every epoch.
            validation = {f"{VALIDATION_PREFIX}{name}": value for name, value in scores.items()}
            scores = {**self._named(runner.test_loop.run()), **validation}
        self.state.scores, self.state.evaluated = scores, True
        self._call("after_evaluation")  # the NaN guard and the best evaluation, as in bench.engine.fit
        self._call("after_epoch")

    def after_train(self, runner) -> None:
        self._call("after_train")
