"""The objective of a tuning trial: a config with some options changed, trained for ``seeds`` seeds.

Shared by the local (Optuna) and the Ray Tune backends. Every seed's fit is an analysis
:class:`~biasvar.analysis.jobs.FitJob` stored in the run's :class:`~biasvar.analysis.jobs.JobStore`
(``run_dir/fits/<key>/``), so a rerun — or another trial that samples the same values — reuses
the finished fits, and a fit killed mid-way resumes from its own ``last.pt``.

The value minimised is the validation error (a fraction, 0–1), the mean over the seeds; the test
error is kept alongside but never steers the search.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from ..analysis.jobs import FitJob, JobStore, run_job
from ..config import ExperimentConfig, from_dict, resolve
from ..train import Callback

__all__ = ["evaluate_params", "apply_params", "trial_jobs", "seed_list"]


def seed_list(cfg: ExperimentConfig, seeds: int) -> list[int]:
    """The seeds of a trial: ``cfg.seed``, ``cfg.seed + 1``, … (the first one is the seed of
    ``best_config.yaml``, so training that file reproduces the first seed's fit)."""
    return [int(cfg.seed) + i for i in range(int(seeds))]


def apply_params(cfg: ExperimentConfig, params: Mapping[str, Any]) -> ExperimentConfig:
    """``cfg`` with ``params`` set, coerced and checked by the config's own validation
    (a refused value raises :class:`~biasvar.errors.ConfigError`), then resolved."""
    return resolve(from_dict(dict(params), base=cfg, source="tune parameter"))


def trial_jobs(cfg: ExperimentConfig, params: Mapping[str, Any], *, seeds: int) -> list[FitJob]:
    """One full-data fit job per seed (the same spec as an analysis' reference fit of that
    seed, so a diagnose run in the same directory would share them)."""
    c = apply_params(cfg, params)
    what = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items())
    return [FitJob(c, s, None, noise_seed=c.split_seed, tag=f"tune {what} seed={s}".strip())
            for s in seed_list(cfg, seeds)]


class _EpochReport(Callback):
    """Calls ``on_epoch(epoch, val_error)`` after each epoch (the pruning signal). Whatever it
    raises (``optuna.TrialPruned``, a Ray stop) ends the fit before its checkpoint for that
    epoch, and the job stays unfinished: no truncated fit is ever stored as a result."""

    def __init__(self, on_epoch: Callable[[int, float], None]):
        self.on_epoch = on_epoch

    def on_epoch_end(self, trainer: Any, logs: dict | None = None, **kwargs: Any) -> None:
        assert logs is not None
        self.on_epoch(int(logs["epoch"]), 1.0 - float(logs["val_accuracy"]))


def evaluate_params(cfg: ExperimentConfig, params: Mapping[str, Any], *, seeds: int, data: Any,
                    store: JobStore, on_epoch: Callable[[int, float], None] | None = None
                    ) -> dict[str, Any]:
    """Train ``cfg`` with ``params`` for ``seeds`` seeds; return the validation errors.

    Returns ``{"values": [val error per seed], "mean", "std", "test_errors": [per seed],
    "keys": [fit job key per seed]}``; ``std`` is the sample standard deviation over the seeds
    (ddof=1; 0.0 for one seed). ``on_epoch(epoch, val_error)`` is called after each epoch of the
    first seed's fit (epochs count from 1); for a fit already stored it is called with the
    stored history, so a pruner sees the same curve on a rerun. It may raise to stop the trial.

    >>> from biasvar import ExperimentConfig, load_data                       # doctest: +SKIP
    >>> cfg = ExperimentConfig(dataset="digits", model="mlp", epochs=2)       # doctest: +SKIP
    >>> r = evaluate_params(cfg, {"width": 32}, seeds=2, data=load_data(cfg),
    ...                     store=JobStore("runs/t"))                         # doctest: +SKIP
    >>> r["mean"]                                                             # doctest: +SKIP
    0.08
    """
    jobs = trial_jobs(cfg, params, seeds=seeds)
    values: list[float] = []
    tests: list[float] = []
    for i, job in enumerate(jobs):
        report = on_epoch if i == 0 else None
        if store.done(job):
            res = store.load(job, log_probs=False)
            if report is not None:
                for row in res.history:
                    report(int(row["epoch"]), 1.0 - float(row["val_accuracy"]))
        else:
            callbacks = [_EpochReport(report)] if report is not None else []
            res = run_job(job, data, store.dir(job), progress=False, callbacks=callbacks)
        values.append(float(res.metrics["val_error"]))
        tests.append(float(res.metrics["test_error"]))
    mean = sum(values) / len(values)
    std = (math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
           if len(values) > 1 else 0.0)
    return {"values": values, "mean": mean, "std": std, "test_errors": tests,
            "keys": [j.key for j in jobs]}
