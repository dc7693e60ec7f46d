"""Paired differences to a reference estimator, seed by seed, and the smallest difference the
design can detect.

Runs with the same seed share the initialisation, the data order and the augmentation across
estimators, so a seed's two runs differ by the estimator (and by GPU nondeterminism) only:
pairing them removes the seed-to-seed spread that an unpaired comparison of means carries.

Per column and estimator: Δ = estimator − reference on each seed both ran (positive = a higher
value, which is better or worse by the column's metric), its mean, a 95 % confidence interval
(Student t, or a percentile bootstrap with a fixed seed), a two-sided paired t-test and its
Holm-adjusted p over the estimators tested in the column. Fewer than ``MIN_SEEDS`` pairs: the
mean only, not tested. Every statistic comes from scipy or statsmodels.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

from bench.report.tables import order_estimators

ALPHA = 0.05
POWER = 0.8
MIN_SEEDS = 3
CI_METHODS = ("t", "bootstrap")
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0
NOT_TESTED = f"n < {MIN_SEEDS} paired seeds: not tested"


@dataclasses.dataclass
class PairedDelta:
    """One estimator's paired difference to the reference in one column."""

    estimator: str
    n: int                                   # seeds both ran
    mean: Optional[float] = None             # mean of estimator − reference
    sd: Optional[float] = None               # sample std (ddof=1) of the differences
    low: Optional[float] = None              # confidence interval of the mean
    high: Optional[float] = None
    p: Optional[float] = None                # two-sided paired t-test
    p_holm: Optional[float] = None           # Holm-adjusted over the column's tested estimators
    untested: str = ""                       # why there is no interval and no p

    @property
    def tested(self) -> bool:
        return self.p is not None

    @property
    def significant(self) -> bool:
        return self.p_holm is not None and self.p_holm < ALPHA


@dataclasses.dataclass
class MinimalDetectableDifference:
    """The smallest |Δ| a paired t-test at ``alpha`` detects with ``power``: effect_size · sd."""

    value: float
    n: int
    m: int
    sd: float
    effect_size: float
    alpha: float


@dataclasses.dataclass
class PairedColumn:
    """The paired differences of one column, its MDD and what could not be paired."""

    label: str
    metric: str
    higher_is_better: bool
    reference: str
    deltas: dict[str, PairedDelta]
    mdd: Optional[MinimalDetectableDifference] = None
    notes: list[str] = dataclasses.field(default_factory=list)


def pair_by_seed(runs, estimator: str, reference: str):
    """``seed, value, reference`` for every seed both estimators ran (others are dropped), by seed."""
    mine = runs.loc[runs["estimator"] == estimator, ["seed", "value"]]
    theirs = runs.loc[runs["estimator"] == reference, ["seed", "value"]].rename(columns={"value": "reference"})
    pairs = mine.merge(theirs, on="seed", how="inner").sort_values("seed", kind="stable")
    return pairs.astype({"value": float, "reference": float}).reset_index(drop=True)


def confidence_interval(values, reference, ci: str = "t") -> tuple[float, float]:
    """95 % interval of mean(values − reference): Student t (``scipy.stats.ttest_rel``) or a
    percentile bootstrap of the mean difference (``scipy.stats.bootstrap``, fixed seed)."""
    from scipy import stats

    if ci == "t":
        interval = stats.ttest_rel(values, reference).confidence_interval(1 - ALPHA)
    elif ci == "bootstrap":
        diffs = np.asarray(values, dtype=float) - np.asarray(reference, dtype=float)
        interval = stats.bootstrap((diffs,), np.mean, method="percentile", confidence_level=1 - ALPHA,
                                   n_resamples=BOOTSTRAP_RESAMPLES,
                                   random_state=np.random.default_rng(BOOTSTRAP_SEED)).confidence_interval
    else:
        raise ValueError(f"unknown confidence interval {ci!r}; valid: {', '.join(CI_METHODS)}")
    return float(interval.low), float(interval.high)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (``statsmodels.stats.multitest.multipletests``), in the given order."""
    from statsmodels.stats.multitest import multipletests

    if not len(pvalues):
        return []
    return [float(p) for p in multipletests(list(pvalues), alpha=ALPHA, method="holm")[1]]


def minimal_detectable_difference(n: int, sd: float, m: int = 1, alpha: float = ALPHA,
                                  power: float = POWER) -> MinimalDetectableDifference:
    """The smallest |Δ| that a two-sided paired t-test on ``n`` seeds at level ``alpha / m`` (the
    strictest Holm step among ``m`` tests) detects with probability ``power``, for differences
    whose standard deviation is ``sd``: statsmodels' standardized effect size times ``sd``."""
    from statsmodels.stats.power import TTestPower

    if n < 2 or m < 1:
        raise ValueError(f"need n >= 2 paired seeds and m >= 1 tests, got n={n}, m={m}")
    effect = float(TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha / m, power=power,
                                            alternative="two-sided"))
    return MinimalDetectableDifference(value=effect * sd, n=n, m=m, sd=sd, effect_size=effect, alpha=alpha / m)


def pooled_sd(sds: Sequence[float]) -> float:
    """The median of the per-estimator standard deviations of Δ: the spread of a typical
    comparison, which an estimator that fails to train (ste in a bireal block: sd 4.5 points
    against 0.5-1 for the others) would dominate in a mean."""
    return float(np.median(np.asarray(sds, dtype=float)))


def _delta(pairs, estimator: str, ci: str) -> PairedDelta:
    from scipy import stats

    diffs = (pairs["value"] - pairs["reference"]).to_numpy()
    n = len(diffs)
    if n == 0:
        return PairedDelta(estimator, 0, untested="no seed in common with the reference")
    delta = PairedDelta(estimator, n, mean=float(diffs.mean()), sd=float(diffs.std(ddof=1)) if n > 1 else None)
    if n < MIN_SEEDS:
        delta.untested = NOT_TESTED
    elif np.ptp(diffs) <= 1e-9 * max(1.0, float(np.abs(diffs).max())):
        # no spread (up to float rounding): scipy's t statistic is ±inf, nan or noise here, no test
        delta.untested = "the same difference on every seed: not tested"
    else:
        delta.low, delta.high = confidence_interval(pairs["value"], pairs["reference"], ci)
        delta.p = float(stats.ttest_rel(pairs["value"], pairs["reference"]).pvalue)
    return delta


def paired_column(column, reference: str, ci: str = "t") -> PairedColumn:
    """Paired differences of every other estimator of a :class:`ReportColumn` to ``reference``;
    Holm over the tested ones; the MDD at their smallest n and pooled sd."""
    if ci not in CI_METHODS:
        raise ValueError(f"unknown confidence interval {ci!r}; valid: {', '.join(CI_METHODS)}")
    runs = column.runs
    result = PairedColumn(column.label, column.metric, column.higher_is_better, reference, {})
    others = [e for e in order_estimators(runs["estimator"].unique()) if e != reference]
    reference_runs = runs[runs["estimator"] == reference]
    if reference_runs.empty:
        if others:
            result.notes.append(f"{column.label}: no {reference} run: no paired differences")
        return result
    if reference_runs["seed"].duplicated().any():
        result.notes.append(f"{column.label}: {reference} has several runs for one seed (pooled configurations): "
                            "nothing is paired")
        return result
    for estimator in others:
        if runs.loc[runs["estimator"] == estimator, "seed"].duplicated().any():
            result.notes.append(f"{estimator} on {column.label}: several runs for one seed (pooled configurations): "
                                "not paired")
            continue
        delta = result.deltas[estimator] = _delta(pair_by_seed(runs, estimator, reference), estimator, ci)
        if delta.untested and delta.untested != NOT_TESTED:
            result.notes.append(f"{estimator} on {column.label}: {delta.untested}")

    tested = [d for d in result.deltas.values() if d.tested]
    for delta, adjusted in zip(tested, holm([d.p for d in tested])):
        delta.p_holm = adjusted
    if tested:
        result.mdd = minimal_detectable_difference(min(d.n for d in tested), pooled_sd([d.sd for d in tested]),
                                                   m=len(tested))
    if any(d.untested == NOT_TESTED for d in result.deltas.values()):
        result.notes.append(f"{column.label}: {NOT_TESTED} (mean difference only)")
    return result


NOT_RANKED = (f"not ranked: no estimator has {MIN_SEEDS} seeds paired with the reference, so no difference is "
              "tested (a smoke test); no best mean is marked")


def ranked(paired: PairedColumn) -> bool:
    """Whether a column can rank its estimators: at least one paired difference was tested."""
    return any(delta.tested for delta in paired.deltas.values())


def significant(paired: Optional[PairedColumn], estimator: str) -> bool:
    """Whether ``estimator`` differs from the reference in that column (Holm-adjusted p < ALPHA)."""
    delta = paired.deltas.get(estimator) if paired is not None else None
    return delta is not None and delta.significant

