"""The analyses, as clients of fit jobs: gap diagnosis, learning curve, complexity curve and the
decomposition by retraining. Each returns the typed block of results.json it fills
(:mod:`biasvar.analysis._results`); nothing here plots or prints.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import math

import numpy as np

from ..config import ExperimentConfig, coerce, resolve
from ..data import DataBundle
from ..errors import ConfigError, DataError
from ..knobs import KNOBS
from ._profiles import SAMPLINGS
from ._results import (Band, ComplexityCurve, CurvePoint, Decomposition, LearningCurve,
                       PowerLaw)
from .curvefit import fit_power_law, loss_still_falling, summarize
from ._formulas import decompose
from .jobs import FitJob, JobResult, JobRunner

__all__ = ["reference_job", "gap_diagnosis", "nested_order", "stratified_parts", "held_steps",
           "learning_curve",
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


def reference_job(cfg: ExperimentConfig, seed: int | None = None, *,
                  label_noise: float = 0.0) -> FitJob:
    seed = cfg.seed if seed is None else seed
    return FitJob(cfg, seed, None, label_noise=label_noise, noise_seed=cfg.split_seed,
                  tag="reference" if seed == cfg.seed else f"reference seed={seed}")


def steps_per_epoch(cfg: ExperimentConfig, n: int) -> int:
    """Optimizer steps per epoch over ``n`` images (the trainer drops the last partial batch)."""
    return max(1, n // min(int(cfg.batch_size), n))


def held_steps(cfg: ExperimentConfig, n: int, n_ref: int) -> ExperimentConfig:
    """``cfg`` for a fit on ``n`` images that takes at least the optimizer steps of the same fit
    on ``n_ref`` images: its epochs scaled up by the ratio of steps per epoch (the schedule,
    defined over the fit's steps, stretches with them). A learning curve then varies the data
    and not the optimisation."""
    if n >= n_ref:
        return cfg
    r = resolve(cfg)
    epochs = math.ceil(int(r.epochs) * steps_per_epoch(r, n_ref) / steps_per_epoch(r, n))
    return replace(cfg, epochs=min(epochs, EPOCHS_MAX))


#: the configuration's upper bound on epochs (a held-steps fit on a tiny subset stops there)
EPOCHS_MAX = 10000


def stratified_parts(y: np.ndarray, rounds: int, seed: int) -> list[np.ndarray]:
    """A random stratified partition of the rows into ``rounds`` disjoint parts: each class's
    rows, in a random order, are dealt to the parts in turn, continuing where the previous class
    stopped, so every part holds ⌊n_c/R⌋ or ⌈n_c/R⌉ rows of class c and the parts' sizes differ
    by at most one — for any number of rounds and any class balance."""
    rng = np.random.default_rng(seed)
    part = np.empty(len(y), dtype=np.int64)
    offset = 0
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        part[rows] = (offset + np.arange(len(rows))) % rounds
        offset = (offset + len(rows)) % rounds
    return [np.flatnonzero(part == r) for r in range(rounds)]


def gap_diagnosis(refs: JobResult | Sequence[JobResult], target: dict[str, Any]
                  ) -> dict[str, Any]:
    """Avoidable bias (train − target) and variance gap (val − train) of the reference fits
    (their mean over seeds), and whether the first one's training loss was still falling at the
    end."""
    refs = [refs] if isinstance(refs, JobResult) else list(refs)
    tr = float(np.mean([r.metrics["train_error"] for r in refs]))
    va = float(np.mean([r.metrics["val_error"] for r in refs]))
    return {"target_error": target, "avoidable_bias": tr - target["value"],
            "variance_gap": va - tr,
            "train_loss_still_falling": loss_still_falling(refs[0].history)}


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
                        seeds: Sequence[int] | dict[int, Sequence[int]], label_noise: float = 0.0
                        ) -> list[FitJob]:
    """Jobs (size-major) on nested stratified subsets, ``seeds`` per size (one list for all, or
    a list per size). Every subset fit takes at least the full-size fit's optimizer steps
    (:func:`held_steps`); the full size uses all rows, so it is the reference fit of that
    seed."""
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
        size_seeds = seeds.get(size, ()) if isinstance(seeds, dict) else seeds
        for s in size_seeds:
            jobs.append(FitJob(held_steps(cfg, size, n), s, idx, label_noise=label_noise,
                               noise_seed=cfg.split_seed,
                               tag=f"learning curve n={size} seed={s}"))
    return jobs


def _ragged_band(groups: Sequence[Sequence[float]]) -> Band:
    """A Band over curve points with any number of fits each (a point with one fit has no
    interval: lo = hi = its value)."""
    mean, lo, hi = [], [], []
    for g in groups:
        b = _summarize_errors(np.asarray(g, dtype=float).reshape(1, -1))
        mean.append(b["mean"][0])
        lo.append(b["lo"][0])
        hi.append(b["hi"][0])
    return Band(mean=mean, lo=lo, hi=hi, values=[[float(v) for v in g] for g in groups])


POLICY = ("optimisation held fixed: every fit takes at least the full-size fit's optimizer "
          "steps (epochs scaled up on smaller sets, the learning-rate schedule stretched to "
          "match); only the data varies")


def summarize_learning_curve(points: Sequence[tuple[int, FitJob, JobResult]], *,
                             n_max: int | None = None) -> LearningCurve:
    """The learning curve of fits given as (nominal size, job, result): per-size summaries
    (ragged seeds allowed), every point with its optimizer steps, and the power law of the
    validation error."""
    by_size: dict[int, list[tuple[FitJob, JobResult]]] = {}
    for size, job, res in points:
        by_size.setdefault(int(size), []).append((job, res))
    sizes = sorted(by_size)
    tr = [[r.metrics["train_error"] for _, r in by_size[z]] for z in sizes]
    va = [[r.metrics["val_error"] for _, r in by_size[z]] for z in sizes]
    pts = []
    for z in sizes:
        for job, r in by_size[z]:
            pts.append(CurvePoint(size=int(r.n_train), seed=int(job.seed),
                                  train_error=float(r.metrics["train_error"]),
                                  val_error=float(r.metrics["val_error"]),
                                  steps=int(r.steps), epochs=len(r.history),
                                  stopped_early=bool(r.stop_reason), fit=job.tag))
    n_max = int(max(sizes)) if n_max is None else n_max
    return LearningCurve(
        sizes=sizes, seeds=sorted({int(j.seed) for _, j, _ in points}),
        train_error=_ragged_band(tr), val_error=_ragged_band(va),
        power_law=PowerLaw.from_dict(_power_law(sizes, va, n_max)), points=pts, policy=POLICY)


def _power_law(sizes: Sequence[int], values: Sequence[Sequence[float]], n_max: int
               ) -> dict[str, Any]:
    from . import curvefit

    if hasattr(curvefit, "power_law"):  # with intervals over seed resamples
        return curvefit.power_law(list(sizes), [list(v) for v in values], n_max=n_max)
    return fit_power_law(np.asarray(sizes, float), np.array([np.mean(v) for v in values]),
                         n_max=n_max)


def learning_curve(runner: JobRunner, cfg: ExperimentConfig, data: DataBundle, *,
                   sizes: Sequence[int], seeds: Sequence[int]) -> LearningCurve:
    """Train/validation error at each size × seed on nested stratified subsets, their mean and
    95% interval, and a power-law fit of the validation error."""
    jobs = learning_curve_jobs(cfg, data, sizes=sizes, seeds=seeds)
    return summarize_learning_curve([(j.n_train or len(data.train), j, r)
                                     for j, r in zip(jobs, runner.run(jobs))])


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


def _curve_jobs(cfgs: Sequence[ExperimentConfig], vals: Sequence[Any], param: str,
                seeds: Sequence[int], label_noise: float) -> list[FitJob]:
    return [FitJob(c, s, None, label_noise=label_noise, noise_seed=c.split_seed,
                   tag=f"complexity {param}={v} seed={s}")
            for c, v in zip(cfgs, vals) for s in seeds]


def complexity_jobs(cfg: ExperimentConfig, data: DataBundle, *, param: str,
                    values: str | Sequence[Any], seeds: Sequence[int], rounds: int = 0,
                    sampling: str = "bootstrap", fraction: float = 0.5,
                    label_noise: float = 0.0) -> list[FitJob]:
    vals, cfgs = complexity_configs(cfg, param, values)
    jobs = _curve_jobs(cfgs, vals, param, seeds, label_noise)
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
    res = runner.run(_curve_jobs(cfgs, vals, param, seeds, label_noise))
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
                       fraction: float | None = 0.5, label_noise: float = 0.0,
                       hold_steps: bool = False) -> list[FitJob]:
    """R fit jobs on resampled training sets. Every model also gets its own seed (``seed + r``),
    so the variance measured includes initialisation and data-order variance. Each model also
    scores the training rows it did not train on (out-of-sample predictions for the noise
    floor). With ``hold_steps``, a model on fewer images than the training set takes the full
    set's optimizer steps (:func:`held_steps`), as learning-curve points do."""
    fraction = 0.5 if fraction is None else fraction
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
        parts = stratified_parts(y, rounds, cfg.split_seed + 1)
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
        c = held_steps(cfg, len(np.unique(idx)), n) if hold_steps and idx is not None else cfg
        jobs.append(FitJob(c, cfg.seed + r, idx, label_noise=label_noise,
                           noise_seed=cfg.split_seed, score_train=idx is not None,
                           tag=f"decomposition {sampling} {r + 1}/{rounds}"))
    return jobs


def training_labels(data: DataBundle, label_noise: float, noise_seed: int) -> np.ndarray:
    """The training labels as the fits saw them (with ``label_noise`` flipped, as in
    :func:`biasvar.analysis.jobs.run_job`)."""
    from .jobs import noisy_labels

    y = data.train.y.numpy()
    return noisy_labels(y, label_noise, data.num_classes, noise_seed) if label_noise > 0 else y


def out_of_sample(store: Any, jobs: Sequence[FitJob], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-sample predicted probabilities of the training rows: for each row, the mean
    probability over the models (``jobs`` with ``score_train``) that did not train on it.
    Returns (probabilities (m, K), the m rows that have at least one such model)."""
    total: np.ndarray | None = None
    count = np.zeros(n, dtype=np.int64)
    for job in jobs:
        if not job.score_train or job.train_indices is None:
            continue
        lp = store.train_log_probs(job)
        if lp is None or len(lp) != n:
            continue
        held_out = np.ones(n, dtype=bool)
        held_out[job.train_indices] = False
        p = np.exp(lp.astype(np.float64))
        total = np.zeros_like(p) if total is None else total
        total[held_out] += p[held_out]
        count += held_out
    rows = np.flatnonzero(count > 0)
    if total is None or rows.size == 0:
        return np.zeros((0, 0)), rows
    probs = total[rows] / count[rows, None]
    return probs / probs.sum(1, keepdims=True), rows


def decomposition(runner: JobRunner, cfg: ExperimentConfig, data: DataBundle, *, rounds: int,
                  sampling: str = "bootstrap", fraction: float | None = 0.5,
                  label_noise: float = 0.0, n_boot: int = 1000,
                  hold_steps: bool = False) -> Decomposition:
    """Bias, variance and net variance (0-1, squared error, cross-entropy) of R retrained models
    on the fixed test set; see :func:`biasvar.analysis._formulas.decompose`."""
    jobs = decomposition_jobs(cfg, data, rounds=rounds, sampling=sampling, fraction=fraction,
                              label_noise=label_noise, hold_steps=hold_steps)
    res = runner.run(jobs)
    lp = np.stack([r.test_log_probs for r in res]).astype(np.float32)  # (R, m, K)
    return Decomposition.from_dict(decompose(
        lp, data.test.y.numpy(), classes=data.classes, sampling=sampling,
        n_train_per_model=[r.n_train for r in res], n_boot=n_boot, seed=cfg.seed,
        label_noise=label_noise))
