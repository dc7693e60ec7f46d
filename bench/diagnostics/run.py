"""``bench diagnose``: every estimator's gradient against the smoothed reference, per layer, at
several points of training, into the results database.

Model states come from runs that keep them (:mod:`bench.states`): in ``shared`` mode (the
default) every estimator is measured on the states of one reference run (``clipped_ste`` of the
same config unless ``--reference``); in ``own`` mode each estimator on its own run's states. A
state run that is missing is trained first (an ordinary run, recorded); one that finished
without kept states is run again with them (a forced rerun, which replaces it in reports).

At each point (an epoch of the state run: 0 is before training) the reference
(:func:`bench.diagnostics.reference.smoothed_reference`) is measured on ``probe_batches`` fixed
batches of ``probe_size`` training examples; each estimator is put on the same weights (SURGE's
auxiliary weights start as copies of the latent ones, as at SURGE's own start, unless the state
has its own), given the progress p of that point (its schedule), and its gradient at every
measured layer's input is compared with the reference (:mod:`bench.diagnostics.measures`).
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Optional

import torch

import estimators
from bench import options as typed
from bench.validation import Range
from bench.config import RunConfig, build_config
from bench.db import ResultsDB
from bench.diagnostics.measures import gradient_measures
from bench.diagnostics.reference import (
    Reference, diagnostic_mode, estimator_gradients, layer_inputs, smoothed_reference,
)
from bench.engine import training_progress
from bench.errors import UserError
from bench.identity import variant_label
from bench.plugins import get_task
from bench.runner import execute
from bench.states import DEFAULT_STATES_DIR, ModelStates
from bench.training import pick_device, progress_bar, seed_everything

MODES = ("shared", "own")
POINTS = ("start", "middle", "end")


@dataclasses.dataclass(frozen=True)
class DiagnoseSettings:
    """The reference's settings (``--set KEY=VALUE`` of ``bench diagnose``)."""

    sigma: float = typed.option(0.5, Range(0.0, low_open=True),
                                help="noise sd as a fraction of each layer's input std")
    units: int = typed.option(256, Range(1, integer=True), help="measured units per layer and probe batch")
    samples: int = typed.option(32, Range(2, integer=True), help="noise draws per unit")
    probe_batches: int = typed.option(4, Range(1, integer=True), help="fixed batches measured per point")
    probe_size: int = typed.option(64, Range(1, integer=True), help="training examples per probe batch")
    probe_seed: int = typed.option(0, Range(0, integer=True), help="draws the probe examples, units and noise")


def split_sets(sets: list[str], estimator_names: list[str]) -> tuple[DiagnoseSettings, list[str], dict[str, list[str]]]:
    """``--set`` pairs into the reference's settings, the state runs' config keys, and each
    estimator's own hyperparameters (a key some estimator accepts goes to those that do)."""
    values, run_sets, hparam_sets = {}, [], {name: [] for name in estimator_names}
    fields = {f.name for f in dataclasses.fields(DiagnoseSettings)}
    for pair in sets:
        key, raw = typed.split_pair(pair)
        if key in fields:
            values[key] = typed.parse_into(DiagnoseSettings, key, raw, flag="--set ")
            continue
        takers = [name for name in estimator_names if key.removeprefix("estimator.") in estimators.hparam_names(name)]
        for name in takers:
            hparam_sets[name].append(pair)
        if not takers:
            run_sets.append(pair)
    typed.check_rules(DiagnoseSettings, values)
    return DiagnoseSettings(**values), run_sets, hparam_sets


def binary_estimators() -> list[str]:
    """The estimators with binary units to measure (all but the full-precision reference)."""
    return [name for name in estimators.available() if estimators.ESTIMATORS.get(name).binarizes]


def point_epochs(epochs: int) -> dict[str, int]:
    """start, middle and end of training as epochs of the state run (0: before training)."""
    return {"start": 0, "middle": epochs // 2, "end": epochs}


@dataclasses.dataclass
class Diagnosis:
    """What a ``bench diagnose`` call did: the state runs it used and the rows it wrote."""

    state_runs: dict[str, int]
    rows: int


def diagnose(task_name: str, estimator_names: list[str], *, db: ResultsDB, dataset: Optional[str] = None,
             model: Optional[str] = None, preset: str = "quick", seed: int = 0, sets: Optional[list[str]] = None,
             data_root: Optional[str] = None, mode: str = "shared", reference: str = "clipped_ste",
             run_id: Optional[int] = None, device: Optional[str] = None, quiet: bool = False,
             states_dir: str = DEFAULT_STATES_DIR, checkpoint_dir: Optional[str] = None) -> Diagnosis:
    task = get_task(task_name)
    if task.diagnose_unsupported:
        raise UserError(f"bench diagnose does not support task {task_name}: {task.diagnose_unsupported}")
    if mode not in MODES:
        raise UserError(f"unknown mode {mode!r}; valid choices: {', '.join(MODES)}")
    binary = binary_estimators()
    unknown = [name for name in [*estimator_names, reference] if name not in binary]
    if unknown:
        raise UserError(f"cannot diagnose {', '.join(unknown)}; valid choices: {', '.join(binary)} (fp32 has no "
                        "binary unit)")
    settings, run_sets, hparam_sets = split_sets(sets or [], estimator_names)
    if run_id is not None:
        if mode == "own":
            raise UserError("--run names one state run: it goes with --mode shared")
        if run_sets:
            raise UserError(f"--run takes its config from the run; drop --set {', '.join(run_sets)}")
        state_run = db.get_run(run_id)
        if state_run is None or state_run.status != "finished":
            raise UserError(f"run {run_id} is not a finished run of this database; see bench runs")
        base = RunConfig.from_dict(state_run.config)
        task = get_task(base.task)
        configs = {name: _with_estimator(base, name, hparam_sets[name]) for name in estimator_names}
        state_configs = {name: base for name in estimator_names}
    else:
        configs = {name: build_config(task_name, name, dataset, model, preset, seed, data_root=data_root,
                                      sets=run_sets + hparam_sets[name]) for name in estimator_names}
        if mode == "shared":
            shared = build_config(task_name, reference, dataset, model, preset, seed, data_root=data_root,
                                  sets=run_sets)
            state_configs = {name: shared for name in estimator_names}
        else:
            state_configs = configs
    points = point_epochs(next(iter(state_configs.values())).epochs)
    unique = {config.hash(): config for config in state_configs.values()}
    if run_id is not None:
        state_runs = {base.hash(): (run_id, _kept_states(base, run_id, states_dir, list(points.values())))}
    else:
        state_runs = {key: _state_run(config, db, states_dir, list(points.values()), quiet, device, checkpoint_dir)
                      for key, config in unique.items()}

    device_ = pick_device(device)
    first = next(iter(state_configs.values()))
    seed_everything(first.seed)
    data = task.load_data(first)
    probes = _probe_batches(task, data, settings, device_)
    losses = lambda model_, batch: task.example_losses(model_, batch, data)  # noqa: E731
    steps_per_epoch = len(data.train)
    rows_per_reference = 2 * settings.samples * sum(
        min(settings.units, x.numel()) for x in _layer_sizes(task, first, data, probes[0], device_))
    references_due = len(points) * settings.probe_batches * len(unique)
    bar = progress_bar(rows_per_reference * references_due, f"diagnose {task_name} (reference rows)", quiet)
    written = 0
    try:
        for point, epoch in points.items():
            loaded_hash, state, references = None, None, []   # one state config's, kept while it is in use
            for name in estimator_names:
                state_config = state_configs[name]
                run_number, states = state_runs[state_config.hash()]
                if state_config.hash() != loaded_hash:
                    loaded_hash, state = state_config.hash(), states.load(epoch)
                    bar.set_postfix_str(f"reference at {point} (epoch {epoch})")
                    model_ref, _ = _model_on(task, state_config, data, state, device_)
                    references = [smoothed_reference(model_ref, probe, losses, units=settings.units,
                                                     samples=settings.samples, sigma=settings.sigma,
                                                     seed=settings.probe_seed + 1000 * index, progress=bar.update)
                                  for index, probe in enumerate(probes)]
                bar.set_postfix_str(f"{name} at {point}")
                p = training_progress(epoch * steps_per_epoch, state_config.epochs * steps_per_epoch)
                model_e, estimator = _model_on(task, configs[name], data, state, device_)
                estimator.set_progress(p)
                common = dict(state_run_id=run_number, state_config_hash=state_config.hash(), task=task_name,
                              dataset=state_config.dataset, model=state_config.model, mode=mode, estimator=name,
                              estimator_hparams=configs[name].estimator_hparams,
                              variant=variant_label(name, configs[name].estimator_hparams), epoch=epoch, progress=p,
                              sigma=settings.sigma, units=settings.units, samples=settings.samples,
                              batch_size=settings.probe_size, seed=settings.probe_seed)
                rows = [{**common, **row} for index, (probe, ref) in enumerate(zip(probes, references))
                        for row in _layer_rows(estimator_gradients(model_e, probe, losses), ref, index)]
                db.replace_diagnostics(rows)
                written += len(rows)
    finally:
        bar.close()
    return Diagnosis({unique[key].estimator: run for key, (run, _) in state_runs.items()}, written)


def _layer_rows(grads: dict, ref: Reference, probe_batch: int) -> list[dict]:
    """One row per measured layer: the estimator's gradient at the reference's units, measured."""
    rows = []
    for layer_index, layer in enumerate(ref.values):
        g = grads[layer][ref.units[layer].to(grads[layer].device)]
        rows.append(dict(layer=layer, layer_index=layer_index, probe_batch=probe_batch,
                         layer_sigma=ref.sigmas[layer], reference_rel_se=ref.relative_stderr(layer),
                         **gradient_measures(g, ref.values[layer], ref.stderr[layer])))
    return rows


def _with_estimator(base: RunConfig, name: str, hparam_sets: list[str]) -> RunConfig:
    """``base`` (a stored run's config) with another estimator and its hyperparameters."""
    hparams = build_config(base.task, name, base.dataset, base.model, base.preset, base.seed,
                           data_root=base.data_root, sets=hparam_sets).estimator_hparams
    return dataclasses.replace(base, estimator=name, estimator_hparams=hparams)


def _kept_states(config: RunConfig, run_id: int, states_dir: str, epochs: list[int]) -> ModelStates:
    """The states run ``run_id`` kept at ``epochs``; a one-line error naming the fix if it kept none."""
    states = ModelStates.of(states_dir, config.hash())
    if states.run_id() != run_id or not set(epochs) <= set(states.epochs()):
        raise UserError(f"run {run_id} kept no model states in {states.folder} (epochs {epochs} needed); run "
                        "bench diagnose without --run to train its config with them, or bench run ... "
                        "--keep-states --force")
    return states


def _state_run(config: RunConfig, db: ResultsDB, states_dir: str, epochs: list[int], quiet: bool,
               device: Optional[str], checkpoint_dir: Optional[str]) -> tuple[int, ModelStates]:
    """The finished run of ``config`` with its states at ``epochs`` kept, run first if need be
    (a rerun, forced, when the finished run or a resumed one kept none)."""
    states = ModelStates.of(states_dir, config.hash())
    done = db.finished_run(config.hash())
    if done is not None and states.run_id() == done.id and set(epochs) <= set(states.epochs()):
        return done.id, states
    if done is not None:
        print(f"bench: run {done.id} ({config.estimator}) kept no model states in {states.folder}; running its "
              "config again to keep them (the new run replaces it in reports)", file=sys.stderr, flush=True)
    for force in ((True,) if done is not None else (False, True)):
        outcome = execute(config, db, force=force, quiet=quiet, device=device, checkpoint_dir=checkpoint_dir,
                          states_dir=states_dir)
        if outcome.status != "finished":
            raise UserError(f"the state run of {config.estimator} ended {outcome.status}: {outcome.error}")
        if states.run_id() == outcome.run_id and set(epochs) <= set(states.epochs()):
            return outcome.run_id, states
    raise UserError(f"the state run of {config.estimator} (run {outcome.run_id}) kept no states in {states.folder}")


def _model_on(task, config: RunConfig, data, state: Optional[dict], device: torch.device):
    """The config's binarized model carrying ``state`` (missing SURGE auxiliary weights start
    as copies of the latent weights), in diagnostic mode, and its estimator."""
    model = task.build_model(config, data)
    estimator = estimators.build(config.estimator, **config.estimator_hparams)
    task.binarize(model, estimator, config)
    if state is not None:
        result = model.load_state_dict(state, strict=False)
        foreign = [k for k in (*result.missing_keys, *result.unexpected_keys) if not k.endswith("aux_weight")]
        if foreign:
            raise UserError(f"the kept state does not fit {config.estimator}'s model ({', '.join(foreign[:3])})")
        if result.missing_keys:
            estimator.attach([layer for _, layer in estimators.binary_layers(model)])
    model.to(device)
    diagnostic_mode(model)
    return model, estimator


def _layer_sizes(task, config: RunConfig, data, probe: tuple, device: torch.device) -> list:
    model, _ = _model_on(task, config, data, None, device)
    return list(layer_inputs(model, probe, lambda model_, batch: task.example_losses(model_, batch, data)).values())


def _probe_batches(task, data, settings: DiagnoseSettings, device: torch.device) -> list[tuple]:
    """``probe_batches`` disjoint batches of ``probe_size`` training examples, drawn with the
    probe seed (augmentation, if any, drawn from it too)."""
    dataset = task.probe_dataset(data)
    needed = settings.probe_batches * settings.probe_size
    if needed > len(dataset):
        raise UserError(f"probe_batches x probe_size = {needed} exceeds the {len(dataset)} training examples")
    generator = torch.Generator().manual_seed(settings.probe_seed)
    order = torch.randperm(len(dataset), generator=generator)[:needed].tolist()
    torch.manual_seed(settings.probe_seed)
    collate = torch.utils.data.default_collate
    return [tuple(part.to(device) for part in collate([dataset[i] for i in order[k:k + settings.probe_size]]))
            for k in range(0, needed, settings.probe_size)]
