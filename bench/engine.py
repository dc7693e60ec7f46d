"""The training engine: one loop for every task family, everything cross-cutting as hooks.

A family supplies its data, its model, a train step and an evaluation
(:class:`bench.api.Task`); :func:`run_task` does the rest, the same way for every family:

    seed -> family.load_data -> family.build_model -> init (bench.initialization: a state-dict
    file, or the run's step 1) -> family.prepare (a teacher, ...)
    -> estimator + family.binarize -> parameters and OPs -> fit -> TaskResult

:func:`fit` owns the epoch loop; the hooks own what every loop needs:

    EstimatorProgress  p = step / (total_steps - 1) before each step (:func:`training_progress`,
                       the one formula; detection's mmengine hook uses it too)
    Divergence         a non-finite training loss or evaluation score raises Diverged
    Timing             the mean wall time of a step (warm-up skipped) and the peak memory
    ProgressBar        tqdm on stderr with the loss and the throughput
    SignInputs         per binarized layer and epoch, the fraction of its training inputs with
                       |x| > 1 (``frac_abs_gt1/<layer>``, and their mean ``frac_abs_gt1_mean``)
    WeightFlips        per binarized layer and epoch, the share of latent weights whose sign
                       changed in the epoch (larq's FlipRatio; ``flip_ratio/<layer>``, ``_mean``)
    GradientStability  per binarized layer and epoch, the mean over steps of var(|dL/dW|)
                       (ReSTE's "gradient stability"; ``grad_abs_var/<layer>``, ``_mean``)
    BestValidation     the scores (and weights) of the evaluation best on the validation split's
                       primary metric
    BestTest           without a validation split, the scores of the evaluation best on the test
                       split's primary metric (a test-set selection, labelled)
    Curves             per epoch: train means, validation (``val_*``) and test (``test_*``)
                       scores, the epoch's starting lr and SURGE's mean lambda, to the
                       reporter (the results database)
    KeptStates         with ``context.states`` enabled (``bench run --keep-states``, ``bench
                       diagnose``): the model's weights before training and after every epoch,
                       kept after the run (:mod:`bench.states`)
    Checkpointing      restore before training (resume), save after every epoch

Every evaluation (after each epoch, and with ``config.eval_steps`` = N > 0 after every N-th
optimizer step too) calls the hooks' ``after_evaluation`` once: Divergence, BestValidation and
BestTest see each one there, mid-epoch ones included.

Detection keeps mmengine's Runner; ``tasks/detection/hooks.py`` drives the same hook
objects from mmengine's hook points, so the two loops share every rule above.
"""
from __future__ import annotations

import dataclasses
import math
import time
import warnings
from typing import Any, Callable, Iterable, Optional

import torch

import estimators
from bench import distributed
from bench.api import RunContext, TaskResult
from bench.precision import MixedPrecision, channels_last
from bench.training import (
    StepTimer, build_optimizer, build_scheduler, check_finite, peak_memory_mb,
    progress_bar, reset_peak_memory, seed_everything,
)
from estimators.accounting import count_cost


@dataclasses.dataclass
class StepOutput:
    """What a family's train step returns: the loss to minimise, the number of examples, and
    per-batch sums that the epoch averages over its examples (``{"train_top1": 100 * correct}``)."""

    loss: torch.Tensor
    batch_size: int
    sums: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TrainState:
    """The loop's state, as every hook sees it."""

    model: torch.nn.Module          # the trained model (DDP-wrapped in a multi-process run)
    optimizer: Any
    scheduler: Any
    epochs: int
    total_steps: int
    label: str = ""
    generator: Optional[torch.Generator] = None  # the train loader's: its state is checkpointed
    epoch: int = 0                  # the current epoch, 1-based
    first_epoch: int = 1
    step: int = 0                   # optimizer steps done
    steps_per_epoch: int = 0
    loss: float = math.nan          # the last step's training loss
    seen: int = 0                   # examples of this epoch so far
    epoch_started: float = 0.0
    lr: float = math.nan            # the learning rate the epoch started with
    train_values: dict[str, float] = dataclasses.field(default_factory=dict)
    scores: dict[str, float] = dataclasses.field(default_factory=dict)  # the last evaluation
    evaluated: bool = False         # whether this epoch ended with an evaluation (detection: val_every)
    best: dict = dataclasses.field(default_factory=dict)  # {"epoch", "step", "scores"} of the best validation
    best_test: dict = dataclasses.field(default_factory=dict)  # the same of the best test evaluation (BestTest)
    eval_steps: int = 0             # config.eval_steps: > 0, final_metrics also stores the best one's step
    scaler: Any = None              # fp16's torch.amp.GradScaler: its state is checkpointed


def training_progress(step: int, total_steps: int) -> float:
    """The estimators' training progress p in [0, 1] before optimizer step ``step`` (0-based)
    of ``total_steps``: 0 at the first step, 1 at the last, for every family."""
    return min(step / max(total_steps - 1, 1), 1.0)


class Hook:
    """A point-in-the-loop callback; every method is optional."""

    def before_train(self, state: TrainState) -> None: ...
    def before_epoch(self, state: TrainState) -> None: ...
    def before_step(self, state: TrainState) -> None: ...
    def after_step(self, state: TrainState) -> None: ...
    def after_evaluation(self, state: TrainState) -> None: ...  # state.scores: this evaluation's
    def after_epoch(self, state: TrainState) -> None: ...
    def after_train(self, state: TrainState) -> None: ...


class EstimatorProgress(Hook):
    def before_step(self, state: TrainState) -> None:
        estimators.set_progress(state.model, training_progress(state.step, state.total_steps))


class Divergence(Hook):
    def after_step(self, state: TrainState) -> None:
        check_finite(state.loss, "training loss", state.step)

    def after_evaluation(self, state: TrainState) -> None:
        for name, value in state.scores.items():
            check_finite(value, f"evaluation {name}", state.step)


class Timing(Hook):
    """Step time and peak memory, and the wall-clock start of the run's first step."""

    def __init__(self, context: RunContext) -> None:
        self.device, self.timeline = context.device, context.timeline
        self.timer = StepTimer(self.device)

    def before_train(self, state: TrainState) -> None:
        reset_peak_memory(self.device)

    def before_step(self, state: TrainState) -> None:
        if self.timeline.first_step is None:
            self.timeline.first_step = time.time()
        self.timer.start()

    def after_step(self, state: TrainState) -> None:
        self.timer.stop()

    @property
    def peak_memory_mb(self) -> float:
        return peak_memory_mb(self.device)


class ProgressBar(Hook):
    """One bar per epoch, with the running loss and examples (or images) per second."""

    def __init__(self, quiet: bool, unit: str = "ex") -> None:
        self.quiet, self.unit, self._bar = quiet, unit, None

    def before_epoch(self, state: TrainState) -> None:
        self._bar = progress_bar(state.steps_per_epoch, f"{state.label} epoch {state.epoch}/{state.epochs}",
                                 self.quiet)

    def after_step(self, state: TrainState) -> None:
        self._bar.update(1)
        rate = state.seen / max(time.perf_counter() - state.epoch_started, 1e-9)
        self._bar.set_postfix({"loss": f"{state.loss:.3f}", f"{self.unit}_s": f"{rate:.0f}"})

    def after_epoch(self, state: TrainState) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    after_train = after_epoch


def curve_name(score: str) -> str:
    """A score's curve: ``val_*`` (validation split) as it is, the others ``test_*``."""
    return score if score.startswith(VALIDATION_PREFIX) else f"test_{score}"


def epoch_values(model: torch.nn.Module, state: TrainState) -> dict[str, float]:
    """An epoch's curve points: train means, validation (``val_``) and test (``test_``) scores,
    the lr the epoch started with, and SURGE's mean lambda where the model has auxiliary branches."""
    values = {**state.train_values,
              **{curve_name(k): v for k, v in (state.scores if state.evaluated else {}).items()}}
    if math.isfinite(state.lr):
        values["lr"] = state.lr
    lambda_mean = estimators.mean_auxiliary_lambda(model)
    if lambda_mean is not None:
        values["surge_lambda_mean"] = lambda_mean
    return values


class _PerLayerMean(Hook):
    """Per binarized layer, a sum and a count that hooks accumulate on the device during an epoch;
    after it, their ratio as ``<PREFIX>/<layer>`` and the mean over layers as ``<PREFIX>_mean``
    (one host sync per epoch), then the sums start again. Hooks are removed after training."""

    PREFIX = ""

    def __init__(self) -> None:
        self.handles: list = []
        self.sums: dict[str, list] = {}

    def after_epoch(self, state: TrainState) -> None:
        ratios = {name: float(total) / count for name, (total, count) in self.sums.items() if count}
        state.train_values = {**state.train_values, **_layer_means(self.PREFIX, ratios)}
        self.sums = {name: [0, 0] for name in self.sums}

    def after_train(self, state: TrainState) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


class SignInputs(_PerLayerMean):
    """Per binarized layer, the fraction of its inputs with |x| > 1 over an epoch's training steps.

    It is the share of sign's inputs where a clipped estimator (clipped_ste, SURGE's main path)
    passes no gradient and an unclipped one (ste, ReSTE up to t, SURGE's auxiliary path) does:
    0 in a Hardtanh block, where the estimators' supports cannot differ. Embedding layers
    (token ids in) are left out.
    """

    PREFIX = "frac_abs_gt1"

    def before_train(self, state: TrainState) -> None:
        for name, layer in estimators.binary_layers(state.model):
            if isinstance(layer, torch.nn.Embedding):
                continue
            name = name.removeprefix("module.")  # a DDP-wrapped model
            self.sums[name] = [0, 0]
            self.handles.append(layer.register_forward_pre_hook(self._counter(name)))

    def _counter(self, name: str):
        def count(module, inputs) -> None:
            if module.training and torch.is_grad_enabled():
                x = inputs[0].detach()
                self.sums[name][0] += (x.abs() > 1).sum()
                self.sums[name][1] += x.numel()
        return count


def _layer_means(prefix: str, values: dict[str, float]) -> dict[str, float]:
    """``{prefix/<layer>: v}`` plus their mean as ``<prefix>_mean`` (nothing for no layers)."""
    curves = {f"{prefix}/{name}": value for name, value in values.items()}
    if curves:
        curves[f"{prefix}_mean"] = sum(values.values()) / len(values)
    return curves


def _binary_weights(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(name.removeprefix("module."), layer.weight) for name, layer in estimators.binary_layers(model)]


class WeightFlips(Hook):
    """Per binarized layer, the fraction of its latent weights whose sign changed over the epoch
    (larq's FlipRatio, ``larq/metrics.py``, taken per epoch): how much the binary network still
    moves. sign(0) counts as +1, as in the forward."""

    PREFIX = "flip_ratio"

    def __init__(self) -> None:
        self.signs: dict[str, torch.Tensor] = {}

    def before_epoch(self, state: TrainState) -> None:
        self.signs = {name: weight.detach() >= 0 for name, weight in _binary_weights(state.model)}

    def after_epoch(self, state: TrainState) -> None:
        flips = {name: float((weight.detach() >= 0).ne(self.signs[name]).float().mean())
                 for name, weight in _binary_weights(state.model) if name in self.signs}
        state.train_values = {**state.train_values, **_layer_means(self.PREFIX, flips)}


class GradientStability(_PerLayerMean):
    """Per binarized layer, var(|dL/dW|) of its latent weight's gradient, averaged over the
    epoch's steps: ReSTE's gradient-stability indicator (Wu et al., ICCV 2023, ``utils/tools.py``
    ``get_stability_var``, which sums it over layers every iteration). Taken by a gradient hook
    on the weight (so mmengine's loop, which zeroes gradients inside its step, sees it too); in
    a multi-process run, rank 0's local gradient."""

    PREFIX = "grad_abs_var"

    def before_train(self, state: TrainState) -> None:
        for name, weight in _binary_weights(state.model):
            if weight.requires_grad:
                self.sums[name] = [0, 0]
                self.handles.append(weight.register_hook(self._accumulate(name)))

    def _accumulate(self, name: str):
        def accumulate(grad: torch.Tensor) -> None:
            if grad.numel() > 1:
                self.sums[name][0] += grad.detach().abs().float().var()
                self.sums[name][1] += 1
        return accumulate


class KeptStates(Hook):
    """The model's weights before training (epoch 0) and after every epoch, kept after the run
    for ``bench diagnose``; nothing unless the run context enables it."""

    def __init__(self, context: RunContext) -> None:
        self.states = context.states

    def before_epoch(self, state: TrainState) -> None:
        if self.states.enabled and state.epoch == 1:   # after Checkpointing's restore: a fresh start
            self.states.save(0, state.model)

    def after_epoch(self, state: TrainState) -> None:   # before the resume checkpoint: no epoch lost
        if self.states.enabled:
            self.states.save(state.epoch, state.model)


VALIDATION_PREFIX = "val_"
BEST_VAL = "@best_val"


class BestValidation(Hook):
    """Keeps the scores of the evaluation (an epoch's, or with ``eval_steps`` a mid-epoch one)
    whose validation primary metric (``val_<primary>``) is best (the first of equals), its epoch
    and optimizer step, and with ``keep_weights`` a CPU copy of the model's weights then, so the
    test split can be scored on them once training is over; nothing without a validation split.
    The papers differ in whether they report the last epoch or the best one; :func:`final_metrics`
    stores both."""

    def __init__(self, primary: Optional[str], higher_is_better: bool = True, keep_weights: bool = False) -> None:
        self.key = f"{VALIDATION_PREFIX}{primary}" if primary else None
        self.higher_is_better, self.keep_weights = higher_is_better, keep_weights

    def after_evaluation(self, state: TrainState) -> None:
        value = state.scores.get(self.key) if self.key else None
        if value is None:
            return
        best = state.best.get("scores", {}).get(self.key)
        if best is None or (value > best if self.higher_is_better else value < best):
            state.best = {"epoch": state.epoch, "step": state.step, "scores": dict(state.scores)}
            if self.keep_weights:
                plain = getattr(state.model, "module", state.model)  # a DDP-wrapped model's own
                state.best["weights"] = {k: v.detach().to("cpu", copy=True) for k, v in plain.state_dict().items()}


BEST_TEST = "@best_test"


class BestTest(Hook):
    """Without a validation split, every epoch is scored on the test split: keeps the scores of the
    epoch whose primary test score is best (the first of equals), which the papers that keep
    ``best_prec1`` report. A test-set selection: stored under ``<name>@best_test`` so the report
    can show it to compare with them (``--select best``), labelled, never to rank; only when the
    test split was scored more than once (one evaluation selects nothing)."""

    def __init__(self, primary: Optional[str], higher_is_better: bool = True) -> None:
        self.primary, self.higher_is_better = primary, higher_is_better

    def after_evaluation(self, state: TrainState) -> None:
        value = state.scores.get(self.primary) if self.primary else None
        if value is None or any(k.startswith(VALIDATION_PREFIX) for k in state.scores):
            return
        best = state.best_test.get("scores", {}).get(self.primary)
        evaluations = state.best_test.get("evaluations", 0) + 1
        if best is None or (value > best if self.higher_is_better else value < best):
            state.best_test = {"epoch": state.epoch, "step": state.step, "scores": dict(state.scores)}
        state.best_test["evaluations"] = evaluations


def scores_with(model: torch.nn.Module, weights: dict, evaluate: Callable[[torch.nn.Module], dict]) -> dict:
    """``evaluate`` of ``model`` carrying ``weights``; the model gets its own weights back after."""
    own = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(weights)
    try:
        return evaluate(model)
    finally:
        model.load_state_dict(own)


def final_metrics(state: TrainState) -> dict[str, float]:
    """What a run stores: the last evaluation's scores, and where a validation split chose an
    evaluation, its scores under ``<name>@best_val`` and the epoch it fell in as ``best_val_epoch``
    (with ``eval_steps`` > 0 also its optimizer step, ``best_val_step``); the same of the best test
    evaluation under ``@best_test``, ``best_test_epoch`` and ``best_test_step``."""
    metrics = dict(state.scores)
    if state.best:
        metrics.update({f"{k}{BEST_VAL}": v for k, v in state.best["scores"].items()})
        metrics["best_val_epoch"] = float(state.best["epoch"])
        if state.eval_steps > 0 and "step" in state.best:
            metrics["best_val_step"] = float(state.best["step"])
    if state.best_test.get("evaluations", 0) > 1:
        metrics.update({f"{k}{BEST_TEST}": v for k, v in state.best_test["scores"].items()})
        metrics["best_test_epoch"] = float(state.best_test["epoch"])
        if state.eval_steps > 0 and "step" in state.best_test:
            metrics["best_test_step"] = float(state.best_test["step"])
    return metrics


class Curves(Hook):
    def __init__(self, context: RunContext) -> None:
        self.context = context

    def before_epoch(self, state: TrainState) -> None:
        state.lr = float(state.optimizer.param_groups[0]["lr"])

    def after_epoch(self, state: TrainState) -> None:
        self.context.reporter.epoch_end(state.epoch, state.step, epoch_values(state.model, state))


class Checkpointing(Hook):
    """Resume from the run's checkpoint before training; save one after every epoch."""

    def __init__(self, context: RunContext) -> None:
        self.context = context

    def before_train(self, state: TrainState) -> None:
        saved = self.context.checkpoint.restore(model=state.model, optimizer=state.optimizer,
                                                scheduler=state.scheduler, generator=state.generator,
                                                scaler=state.scaler)
        if saved is not None:
            self.context.reporter.resumed(saved["epoch"])
            state.first_epoch, state.step = saved["epoch"] + 1, saved["step"]
            state.scores = saved["extra"].get("scores", {})
            state.best = saved["extra"].get("best", {})
            state.best_test = saved["extra"].get("best_test", {})

    def after_epoch(self, state: TrainState) -> None:
        self.context.checkpoint.save(epoch=state.epoch, step=state.step, model=state.model,
                                     optimizer=state.optimizer, scheduler=state.scheduler,
                                     generator=state.generator,
                                     extra={"scores": state.scores, "best": state.best, "best_test": state.best_test},
                                     scaler=state.scaler)


def standard_hooks(context: RunContext, unit: str = "ex", primary: Optional[str] = None,
                   higher_is_better: bool = True, keep_best_weights: bool = False) -> list[Hook]:
    """The hooks of every training run, in the order they are called (``primary``: the metric
    whose validation score picks the best epoch; ``keep_best_weights``: see BestValidation)."""
    return [EstimatorProgress(), Timing(context), Divergence(), ProgressBar(context.quiet, unit), SignInputs(),
            WeightFlips(), GradientStability(), BestValidation(primary, higher_is_better, keep_best_weights),
            BestTest(primary, higher_is_better),
            Curves(context), KeptStates(context), Checkpointing(context)]


def _call(hooks: Iterable[Hook], point: str, state: TrainState) -> None:
    for hook in hooks:
        getattr(hook, point)(state)


def to_device(batch: Any, device: torch.device) -> Any:
    """A batch (tensors in lists, tuples and dicts) on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def train_loader(dataset, config, **loader_options) -> torch.utils.data.DataLoader:
    """The training DataLoader of every family: the config's global batch split over the
    processes (each its shard, DistributedSampler) or one shuffled process, shuffled by a
    generator seeded with the run's seed (its state is checkpointed, so a resumed epoch
    draws the same batches)."""
    sampler = distributed.sampler(dataset, shuffle=True, seed=config.seed)  # None in a single process
    return torch.utils.data.DataLoader(
        dataset, batch_size=max(config.batch_size // distributed.world_size(), 1), shuffle=sampler is None,
        sampler=sampler, generator=torch.Generator().manual_seed(config.seed), **loader_options)


def evaluation_loader(dataset, **loader_options) -> torch.utils.data.DataLoader:
    """An evaluation DataLoader (in order) with a generator of its own: a DataLoader draws its
    workers' base seed from its generator each time it is iterated, from the global one without,
    so scoring a split would move the training's random numbers and a run's result would depend
    on how often it was evaluated."""
    return torch.utils.data.DataLoader(dataset, shuffle=False, generator=torch.Generator().manual_seed(0),
                                       **loader_options)


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler,
                   max_grad_norm: Optional[float] = None, scaler: Optional[torch.amp.GradScaler] = None) -> float:
    """Backward, optional gradient clipping, optimizer and LR-schedule step; the loss value.

    With fp16's gradient ``scaler``: the scaled loss's backward, the gradients unscaled before
    they are clipped, and the optimizer step skipped by the scaler when a gradient is inf/NaN (it
    lowers its scale); the LR schedule steps anyway, as it counts iterations."""
    optimizer.zero_grad(set_to_none=True)
    (loss if scaler is None else scaler.scale(loss)).backward()
    if max_grad_norm is not None:
        if scaler is not None:
            scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    if scaler is None:
        optimizer.step()
        scheduler.step()
    else:
        scaler.step(optimizer)
        scaler.update()
        with warnings.catch_warnings():  # a skipped first step: torch warns that the schedule stepped first
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
            scheduler.step()
    return loss.item()


@dataclasses.dataclass
class FitResult:
    scores: dict[str, float]       # final_metrics: the last evaluation, and the best validation epoch's
    train_step_ms: Optional[float]
    peak_memory_mb: float


def fit(model: torch.nn.Module, config, train_loader, train_step: Callable[[torch.nn.Module, Any], StepOutput],
        evaluate: Callable[[torch.nn.Module], dict[str, float]], context: RunContext, label: str,
        epochs: Optional[int] = None, max_grad_norm: Optional[float] = None, unit: str = "ex",
        primary: Optional[str] = None, higher_is_better: bool = True,
        validate: Optional[Callable[[torch.nn.Module], Optional[dict[str, float]]]] = None) -> FitResult:
    """Train ``model`` for ``epochs`` (default ``config.epochs``) with the config's optimizer and
    schedule, evaluating after every epoch; returns :func:`final_metrics` and the costs.

    ``config.eval_steps`` = N > 0: also after every N-th optimizer step (counted from the run's
    first, so a resumed run evaluates at the same steps) that does not end an epoch, the same way
    (the validation split, else the test split), the model back in train mode after it. It draws no
    random number of the training's, so the weights and the last scores are those of N = 0; the
    hooks' ``after_evaluation`` sees each evaluation, so the best one may fall mid-epoch.

    ``evaluate`` scores the test split, ``validate`` the validation split (``val_*`` scores; None
    for a run without one); both see the unwrapped model on every rank (the full set each). With a
    validation split, every epoch is scored on it and ``primary``'s score picks the best evaluation;
    the test split is scored once training is over, on the last weights and on the best evaluation's
    (kept in memory), so it is never looked at to train or to choose. Without one, every epoch is
    scored on the test split, as the papers do.

    ``config.precision``: the train step (forward and loss) under ``torch.autocast`` with bf16 or
    fp16 and the backward outside it, fp16 with a gradient scaler (:class:`MixedPrecision`); the
    scores are taken outside autocast, in fp32, so they compare across precisions.
    ``config.channels_last``: the model and the 4-D batches in channels_last memory format.
    """
    epochs = config.epochs if epochs is None else epochs
    if config.channels_last:  # before DDP and the optimizer: parameters, their gradients and state alike
        model = model.to(memory_format=torch.channels_last)
    precision = MixedPrecision(config.precision, context.device)
    plain_model, model = model, distributed.wrap(model, context.device)
    optimizer = build_optimizer(config, model)
    total_steps = epochs * len(train_loader)
    scheduler = build_scheduler(config, optimizer, total_steps,
                                warmup_steps=math.ceil(config.warmup_epochs * len(train_loader)))
    hooks = standard_hooks(context, unit, primary, higher_is_better, keep_best_weights=validate is not None)
    timing = next(h for h in hooks if isinstance(h, Timing))
    state = TrainState(model=model, optimizer=optimizer, scheduler=scheduler, epochs=epochs, total_steps=total_steps,
                       label=label, generator=getattr(train_loader, "generator", None),
                       steps_per_epoch=len(train_loader), scaler=precision.scaler, eval_steps=config.eval_steps)

    def evaluation(last: bool) -> None:
        """Score the validation split (else the test split; after the ``last`` epoch both) into
        ``state.scores``, then the hooks' ``after_evaluation``."""
        scores = validate(plain_model) if validate is not None else None
        if scores is None:
            scores = evaluate(plain_model)
        elif last:
            scores = {**evaluate(plain_model), **scores}
        state.scores, state.evaluated = scores, True
        _call(hooks, "after_evaluation", state)

    _call(hooks, "before_train", state)
    precision.start()
    for epoch in range(state.first_epoch, epochs + 1):
        state.epoch = epoch
        if hasattr(train_loader.sampler, "set_epoch"):
            train_loader.sampler.set_epoch(epoch)
        _call(hooks, "before_epoch", state)
        model.train()
        loss_sum, state.seen, sums = 0.0, 0, {}
        skipped_before = precision.skipped_steps
        state.epoch_started = time.perf_counter()
        for index, batch in enumerate(train_loader):
            batch = to_device(batch, context.device)
            if config.channels_last:
                batch = channels_last(batch)
            _call(hooks, "before_step", state)
            with precision.autocast():  # the forward and the loss; the backward outside
                out = train_step(model, batch)
            state.loss = optimizer_step(out.loss, optimizer, scheduler, max_grad_norm, precision.scaler)
            precision.skipped()
            state.step += 1
            state.seen += out.batch_size
            loss_sum += state.loss * out.batch_size
            for name, value in out.sums.items():
                sums[name] = sums.get(name, 0.0) + value
            _call(hooks, "after_step", state)
            if config.eval_steps and state.step % config.eval_steps == 0 and index + 1 < state.steps_per_epoch:
                evaluation(last=False)  # mid-epoch: the epoch's end evaluates anyway
                model.train()
        seen = max(state.seen, 1)
        state.train_values = {"train_loss": loss_sum / seen, **{name: total / seen for name, total in sums.items()}}
        if precision.scaler is not None:  # fp16: the steps the scaler skipped this epoch, and its scale after it
            state.train_values.update(amp_skipped_steps=float(precision.skipped_steps - skipped_before),
                                      amp_scale=precision.scaler.get_scale())
        evaluation(last=epoch == epochs)
        _call(hooks, "after_epoch", state)
    # the best evaluation was the last one unless it came earlier (a checkpoint of before steps were kept: its epoch)
    best_is_last = state.best.get("epoch") == epochs and state.best.get("step", state.step) == state.step
    if "weights" in state.best and not best_is_last:
        state.best["scores"] = {**scores_with(plain_model, state.best["weights"], evaluate), **state.best["scores"]}
    _call(hooks, "after_train", state)
    return FitResult(final_metrics(state), timing.timer.mean_ms, timing.peak_memory_mb)


def run_task(task, config, context: RunContext) -> TaskResult:
    """One run of a family that supplies load_data / build_model / train_step / evaluate."""
    return train_task(task, config, context)[1]


def train_task(task, config, context: RunContext, label: Optional[str] = None) -> tuple[torch.nn.Module, TaskResult]:
    """:func:`run_task`, also returning the trained model (a two-step run's step 1 is one).

    ``config.init`` is loaded into the full-precision model right after ``build_model``
    (:mod:`bench.initialization`); the record (the run's ``scope``) keeps it under ``"init"``,
    and whatever the family's ``prepare`` put in ``data.record`` (classification: its teacher)."""
    from bench import initialization

    seed_everything(config.seed)
    data = task.load_data(config)
    model = task.build_model(config, data)
    start = initialization.initialize(task, config, model, context)
    task.prepare(config, data, model, context)
    estimator = estimators.build(config.estimator, **config.estimator_hparams)
    record = {**task.binarize(model, estimator, config), "init": start, **(getattr(data, "record", None) or {})}
    model.to(context.device)
    args, kwargs = task.example_inputs(config, data)
    cost = count_cost(model, *to_device(args, context.device), **to_device(kwargs, context.device))
    cost_fields = dict(n_params=cost.n_params, n_binary_params=cost.n_binary_params, binary_ops=cost.binary_ops,
                       float_ops=cost.float_ops)
    context.reporter.info(scope=record, **cost_fields)
    primary = task.metric_specs(config.dataset)[0]
    result = fit(model, config, data.train, lambda m, batch: task.train_step(m, batch, data),
                 lambda m: task.evaluate(m, data, context.device), context,
                 label or f"{config.estimator} {config.dataset}", max_grad_norm=task.max_grad_norm,
                 unit=task.throughput_unit, primary=primary.key, higher_is_better=primary.higher_is_better,
                 validate=lambda m: task.validate(m, data, context.device))
    return model, TaskResult(metrics=result.scores, scope=record, train_step_ms=result.train_step_ms,
                             peak_memory_mb=result.peak_memory_mb, **cost_fields)
