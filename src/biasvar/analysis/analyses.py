"""The analyses, as clients of fit jobs: gap diagnosis, learning curve, complexity curve and the
decomposition by retraining. Each returns the typed block of results.json it fills
(:mod:`biasvar.analysis._results`); nothing here plots or prints.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ..config import ExperimentConfig, coerce
from ..data import DataBundle
from ..errors import ConfigError, DataError
from ..knobs import KNOBS
from ._profiles import SAMPLINGS
from ._results import Band, ComplexityCurve, Decomposition, LearningCurve
from .curvefit import fit_power_law, loss_still_falling, summarize
from .decompose import decompose
from .jobs import FitJob, JobResult, JobRunner

__all__ = ["reference_job", "gap_diagnosis", "nested_order", "learning_curve",
           "learning_curve_jobs", "summarize_learning_curve", "complexity_jobs",
           "complexity_curve", "decomposition_jobs", "decomposition", "parse_sizes"]


def _summarize_errors(values: np.ndarray) -> dict[str, Any]:
    """summarize() for error rates: the t-interval is clipped to [0, 1], where errors live (with
    2 seeds the t-interval is wide enough to leave it)."""
    out = summarize(values)
    out["lo"] = [max(0.0, v) for v in out["lo"]]
    out["hi"] = [min(1.0, v) for v in out["hi"]]
    return out


def _band(values: np.ndarray) -> Band:
    return Band.from_dict(_summarize_errors(values))


def reference_job(cfg: ExperimentConfig, seed: int | None = None) -> FitJob:
    return FitJob(cfg, cfg.seed if seed is None else seed, None, tag="reference")


def gap_diagnosis(ref: JobResult, target: dict[str, Any]) -> dict[str, Any]:
    """Avoidable bias (train − target), variance gap (val − train), and whether the training loss
    was still falling at the end."""
    tr, va = ref.metrics["train_error"], ref.metrics["val_error"]
    return {"target_error": target, "avoidable_bias": tr - target["value"],
            "variance_gap": va - tr, "train_loss_still_falling": loss_still_falling(ref.history)}


def nested_order(y: np.ndarray, seed: int) -> np.ndarray:
    """An ordering of rows whose every prefix is (nearly) stratified: rows of each class get
    evenly spaced ranks ``(i + u) / n_c`` in a random order, and all rows are sorted by rank.
    Prefixes are nested by construction, so a larger learning-curve size contains the smaller."""
    rng = np.random.default_rng(seed)
    rank = np.empty(len(y))
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        perm = rng.permutation(len(rows))
        rank[rows[perm]] = (np.arange(len(rows)) + rng.random()) / len(rows)
    return np.argsort(rank, kind="stable")


def parse_sizes(spec: str | Sequence[float], n: int) -> list[int]:
    """Sizes as counts (``500,1000``) or fractions of the training set (``0.1,0.5,1``)."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    sizes = []
    for s in items:
        try:
            v = float(s)
        except (TypeError, ValueError):
            raise ConfigError(f"sizes: {s!r} is not a number; give counts (500,1000) or fractions "
                              "of the training set (0.1,0.5,1).") from None
        if v <= 0:
            raise ConfigError(f"sizes: {s!r} must be positive.")
        size = int(round(v * n)) if v <= 1 and not float(v).is_integer() or v == 1.0 else int(v)
        if size > n:
            raise ConfigError(f"sizes: {size} is larger than the training set ({n} images); use "
                              f"at most {n}, or fractions up to 1.")
        sizes.append(size)
    sizes = sorted(set(sizes))
    if not sizes:
        raise ConfigError("sizes: give at least one size.")
    return sizes


def _check_classes(y_sub: np.ndarray, classes: Sequence[str], what: str) -> None:
    missing = sorted(set(range(len(classes))) - set(np.unique(y_sub).tolist()))
    if missing:
        raise DataError(f"{what}: {len(y_sub)} training images leave class(es) "
                        f"{', '.join(repr(classes[k]) for k in missing[:5])} without any "
                        "example; use a larger size so every class is represented.")


def smallest_curve_size(cfg: ExperimentConfig, data: DataBundle) -> int:
    """The smallest learning-curve size whose nested subset holds every class."""
    y = data.train.y.numpy()[nested_order(data.train.y.numpy(), cfg.split_seed)]
    present = np.unique(y)
    return int(max(np.flatnonzero(y == c)[0] for c in present)) + 1


def learning_curve_jobs(cfg: ExperimentConfig, data: DataBundle, *, sizes: Sequence[int],
                        seeds: Sequence[int]) -> list[FitJob]:
    """L×S jobs (size-major) on nested stratified subsets; the full size uses all rows, so it is
    the same job as a reference fit of that seed."""
    y = data.train.y.numpy()
    n = len(y)
    order = nested_order(y, cfg.split_seed)
    jobs = []
    for size in sizes:
        if size > n:
            raise ConfigError(f"sizes: {size} is larger than the training set ({n} images).")
        idx = None if size == n else order[:size]
        if idx is not None:
            _check_classes(y[idx], data.classes, f"learning curve size {size}")
        for s in seeds:
            jobs.append(FitJob(cfg, s, idx, tag=f"learning curve n={size} seed={s}"))
    return jobs


def summarize_learning_curve(results: Sequence[JobResult], *, sizes: Sequence[int],
                             seeds: Sequence[int]) -> LearningCurve:
    L, S = len(sizes), len(seeds)
    tr = np.array([r.metrics["train_error"] for r in results]).reshape(L, S)
    va = np.array([r.metrics["val_error"] for r in results]).reshape(L, S)
    val = _summarize_errors(va)
    return LearningCurve.from_dict({
        "sizes": [int(s) for s in sizes], "seeds": [int(s) for s in seeds],
        "train_error": _summarize_errors(tr), "val_error": val,
        "power_law": fit_power_law(np.asarray(sizes, float), np.asarray(val["mean"]),
                                   n_max=int(max(sizes)))})


def learning_curve(runner: JobRunner, cfg: ExperimentConfig, data: DataBundle, *,
                   sizes: Sequence[int], seeds: Sequence[int]) -> LearningCurve:
    """Train/validation error at each size (L) × seed (S) on nested stratified subsets, their
    mean and 95% interval, and a power-law fit of the validation error."""
    jobs = learning_curve_jobs(cfg, data, sizes=sizes, seeds=seeds)
    return summarize_learning_curve(runner.run(jobs), sizes=sizes, seeds=seeds)


def _param_values(param: str, values: str | Sequence[Any]) -> list[Any]:
    KNOBS.get(param)  # an unknown knob: "did you mean"
    items = values.split(",") if isinstance(values, str) else list(values)
    out = []
    for v in items:
        out.append(coerce(param, v.strip() if isinstance(v, str) else v))
    if len(out) < 2:
        raise ConfigError(f"values: a curve needs at least 2 values of {param}, got {items!r}.")
    return out


def complexity_configs(cfg: ExperimentConfig, param: str, values: str | Sequence[Any]
                       ) -> tuple[list[Any], list[ExperimentConfig]]:
    vals = _param_values(param, values)
    cfgs = []
    for v in vals:
        try:
            cfgs.append(replace(cfg, **{param: v}))
        except ConfigError as e:
            raise ConfigError(f"values: {e}") from None
    return vals, cfgs


def complexity_jobs(cfg: ExperimentConfig, data: DataBundle, *, param: str,
                    values: str | Sequence[Any], seeds: Sequence[int], rounds: int = 0,
                    sampling: str = "bootstrap", fraction: float = 0.5,
                    label_noise: float = 0.0) -> list[FitJob]:
    vals, cfgs = complexity_configs(cfg, param, values)
    jobs = [FitJob(c, s, None, tag=f"complexity {param}={v} seed={s}")
            for c, v in zip(cfgs, vals) for s in seeds]
    if rounds:
        for c in cfgs:
            jobs += decomposition_jobs(c, data, rounds=rounds, sampling=sampling,
                                       fraction=fraction, label_noise=label_noise)
    return jobs


def complexity_curve(runner: JobRunner, cfg: ExperimentConfig, data: DataBundle, *,
                     param: str, values: str | Sequence[Any], seeds: Sequence[int],
                     rounds: int = 0, sampling: str = "bootstrap", fraction: float = 0.5,
                     label_noise: float = 0.0) -> ComplexityCurve:
    """Train/validation error for each value (V) of ``param`` × seed (S); with ``rounds`` ≥ 2,
    also the decomposition at each value."""
    vals, cfgs = complexity_configs(cfg, param, values)
    jobs = [FitJob(c, s, None, tag=f"complexity {param}={v} seed={s}")
            for c, v in zip(cfgs, vals) for s in seeds]
    res = runner.run(jobs)
    V, S = len(vals), len(seeds)
    tr = np.array([r.metrics["train_error"] for r in res]).reshape(V, S)
    va = np.array([r.metrics["val_error"] for r in res]).reshape(V, S)
    decs = ([decomposition(runner, c, data, rounds=rounds, sampling=sampling, fraction=fraction,
                           label_noise=label_noise) for c in cfgs] if rounds else None)
    return ComplexityCurve(param=param, values=vals, seeds=[int(s) for s in seeds],
                           train_error=_band(tr), val_error=_band(va),
                           best_value=vals[int(np.argmin(va.mean(1)))],
                           reference_value=getattr(cfg, param), decomposition=decs)


def decomposition_jobs(cfg: ExperimentConfig, data: DataBundle, *, rounds: int, sampling: str,
                       fraction: float = 0.5, label_noise: float = 0.0) -> list[FitJob]:
    """R fit jobs on resampled training sets. Every model also gets its own seed (``seed + r``),
    so the variance measured includes initialisation and data-order variance."""
    if rounds < 2:
        raise ConfigError(f"rounds: {rounds} is too few; the variance between models needs at "
                          "least 2 models (5–10 give usable intervals).")
    SAMPLINGS.get(sampling)  # an unknown scheme: "did you mean"
    if not 0 <= label_noise < 1:
        raise ConfigError(f"label_noise: {label_noise} is out of range; allowed [0, 1).")
    if not 0 < fraction <= 1:
        raise ConfigError(f"fraction: {fraction} is out of range; allowed (0, 1].")
    y = data.train.y.numpy()
    n = len(y)
    rng = np.random.default_rng(cfg.split_seed + 7)
    jobs = []
    if sampling == "split":
        order = nested_order(y, cfg.split_seed + 1)
        parts = [np.sort(order[r::rounds]) for r in range(rounds)]  # stratified, disjoint
    for r in range(rounds):
        if sampling == "bootstrap":
            idx = rng.integers(0, n, size=n)
        elif sampling == "split":
            idx = parts[r]
        elif sampling == "subsample":
            idx = np.sort(rng.permutation(n)[: max(1, int(round(fraction * n)))])
        else:
            idx = None
        if idx is not None:
            _check_classes(y[idx], data.classes, f"{sampling} sample {r}")
        jobs.append(FitJob(cfg, cfg.seed + r, idx, label_noise=label_noise,
                           noise_seed=cfg.split_seed,
                           tag=f"decomposition {sampling} {r + 1}/{rounds}"))
    return jobs


def decomposition(runner: JobRunner, cfg: ExperimentConfig, data: DataBundle, *, rounds: int,
                  sampling: str = "bootstrap", fraction: float = 0.5, label_noise: float = 0.0,
                  n_boot: int = 1000) -> Decomposition:
    """Bias, variance and net variance (0-1, squared error, cross-entropy) of R retrained models
    on the fixed test set; see :func:`biasvar.analysis.decompose.decompose`."""
    jobs = decomposition_jobs(cfg, data, rounds=rounds, sampling=sampling, fraction=fraction,
                              label_noise=label_noise)
    res = runner.run(jobs)
    lp = np.stack([r.test_log_probs for r in res]).astype(np.float32)  # (R, m, K)
    return Decomposition.from_dict(decompose(
        lp, data.test.y.numpy(), classes=data.classes, sampling=sampling,
        n_train_per_model=[r.n_train for r in res], n_boot=n_boot, seed=cfg.seed,
        label_noise=label_noise))
