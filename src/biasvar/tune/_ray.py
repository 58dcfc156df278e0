"""The Ray Tune backend of ``tune`` (``backend="ray"``, ``--backend ray``).

Trials run as Ray Tune trials (``ray.tune.Tuner``): Optuna's sampler picks the values
(``OptunaSearch``; TPE by default, seeded like the local backend) and the ``ASHAScheduler``
stops trials whose validation error falls behind, epoch by epoch (``--pruner none``: no
scheduler, every trial runs to the end). Each trial calls the shared objective
:func:`~biasvar.tune._objective.evaluate_params`, whose ``on_epoch`` hook reports
``{"epoch", "val_error"}`` to Tune after every epoch of the first seed; a last report
(``final: True``) carries the mean over the seeds, which is what the search minimises.

How things travel. The data is put into Ray's object store once (``tune.with_parameters``);
each trial's fits are analysis fit jobs written straight into the run directory's ``fits/``
(so a rerun, or a later trial with the same values, reuses them). That needs the run directory
on a filesystem every node of the cluster sees: always true of a local cluster (the default);
on a multi-node cluster put the run directory on shared storage (as Ray Tune itself requires
for its ``storage_path``). When the search ends, every Ray trial is recorded in the run's Optuna
study (``optuna.journal``, or ``--storage``) as a COMPLETE, PRUNED (stopped by ASHA) or FAIL
trial, with its per-epoch values; the local backend's ``_finish`` then writes trials.csv,
best_config.yaml, tune.json and the report from that study, so both backends give the same
files. A rerun continues the study: the trials already in it are handed to OptunaSearch as
evaluated points, and only the missing ones are run.

A trial ASHA stops is told to the sampler with its last reported (first seed's) error, as Ray's
OptunaSearch does; it is recorded as PRUNED and never becomes the best trial.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import ExperimentConfig, resolve
from ..errors import BiasvarError
from ._study import RUNNERS, _finish, _finished, _sampler, open_tune_run
from ._space import Space, load_space

__all__ = ["run_ray_tune", "ray_search_space"]

#: Ray Tune's own experiment folder inside the run directory (removed when the search ends)
RAY_DIR = ".ray-tune"


def ray_search_space(space: Space) -> dict[str, Any]:
    """The space as OptunaSearch's search space: one Optuna distribution per parameter —
    ``FloatDistribution(low, high, log, step)``, ``IntDistribution(low, high, log, step)``
    (both ends included), ``CategoricalDistribution(choices)``.

    Optuna's distributions rather than ``ray.tune`` domains: Ray's integer domains exclude
    their upper end and its quantised ones round to the step differently, while OptunaSearch
    takes Optuna's distributions as given — so the Ray backend samples exactly the values the
    local backend does."""
    import optuna.distributions as d

    out: dict[str, Any] = {}
    for name, p in space.items():
        if p.type == "categorical":
            out[name] = d.CategoricalDistribution(list(p.choices or ()))
        elif p.type == "int":
            out[name] = d.IntDistribution(int(p.low), int(p.high), log=p.log,
                                          step=int(p.step or 1))
        else:
            out[name] = d.FloatDistribution(float(p.low), float(p.high), log=p.log,
                                            step=None if p.step is None else float(p.step))
    return out


def _trainable(params: dict[str, Any], *, cfg: ExperimentConfig, seeds: int, data: Any,
               run_dir: str, threads: int, cwd: str) -> None:
    """One Ray Tune trial: ``evaluate_params`` with each epoch reported to Tune."""
    import os

    import torch
    from ray import tune

    from ..analysis.jobs import JobStore
    from ._objective import evaluate_params

    torch.set_num_threads(threads)
    if os.path.isdir(cwd):  # Tune starts a trial in its own folder: relative paths (--weights,
        os.chdir(cwd)       # a model file) mean what they meant where the command ran
    t0 = time.perf_counter()
    last = [0]

    def on_epoch(epoch: int, val_error: float) -> None:
        last[0] = epoch
        tune.report({"epoch": epoch, "val_error": float(val_error)})

    r = evaluate_params(cfg, params, seeds=seeds, data=data, store=JobStore(run_dir),
                        on_epoch=on_epoch)
    tune.report({"epoch": last[0], "val_error": float(r["mean"]), "final": True,
                 "values": [float(v) for v in r["values"]], "std": float(r["std"]),
                 "test_errors": [float(v) for v in r["test_errors"]],
                 "seconds": time.perf_counter() - t0})


def _trial_index(result: Any) -> int:
    """The order Ray created the trial in. A search algorithm's trials get random 8-hex-digit
    ids (``Trial.generate_id``), so the id says nothing about order; the experiment tag starts
    with the trial's creation counter ("3_lr=0.001,width=16"). Ray adds it to every result, and
    the trial's folder is named ``<trainable>_<id>_<tag>_<date>`` (a trial that failed before
    its first report has only the folder)."""
    m = dict(result.metrics or {})
    head = str(m.get("experiment_tag") or "").split("_", 1)[0]
    if head.isdigit():
        return int(head)
    found = re.search(r"_[0-9a-f]{8}_(\d+)_", Path(str(getattr(result, "path", "") or "")).name)
    if found:
        return int(found.group(1))
    raise BiasvarError(f"tune: a Ray result ({m.get('trial_id')!r}) has no experiment tag to "
                       "order it by; this Ray version is not one biasvar supports "
                       "(pip install 'biasvar[ray]').")


def trial_records(results: Any, space: Space) -> list[dict[str, Any]]:
    """Ray Tune's results as tune.json's trial records (``number`` left for the study):
    state COMPLETE (the last report is the final one), PRUNED (stopped before it) or FAIL."""
    rows = []
    for res in sorted(results, key=_trial_index):
        m = dict(res.metrics or {})
        params = {k: (res.config or {}).get(k) for k in space}
        inter: dict[str, float] = {}
        df = getattr(res, "metrics_dataframe", None)
        if df is not None and "epoch" in df and "val_error" in df:
            final = df["final"].fillna(False).astype(bool) if "final" in df else None
            for i, (ep, v) in enumerate(zip(df["epoch"], df["val_error"])):
                if final is not None and bool(final.iloc[i]):
                    continue
                inter[str(int(ep))] = float(v)
        if res.error is not None:
            state = "FAIL"
        elif m.get("final"):
            state = "COMPLETE"
        else:
            state = "PRUNED"
        done = state == "COMPLETE"
        err = None
        if res.error is not None:
            cause = getattr(res.error, "cause", None) or res.error
            lines = str(cause).strip().splitlines()
            err = f"{type(cause).__name__}: {lines[-1] if lines else ''}".strip(": ")
        rows.append({
            "state": state, "params": params,
            "values": list(m.get("values", [])) if done else [],
            "mean": float(m["val_error"]) if done else None,
            "std": float(m["std"]) if done and "std" in m else None,
            "test_errors": list(m.get("test_errors", [])) if done else [],
            "intermediate": dict(sorted(inter.items(), key=lambda kv: int(kv[0]))),
            "seconds": float(m["seconds"]) if done and "seconds" in m else (
                float(m["time_total_s"]) if "time_total_s" in m else None),
            **({"error": err} if err else {}),
        })
    return rows


def _record(st: Any, rows: list[dict[str, Any]], space: Space) -> None:
    """Add the Ray trials to the Optuna study, so the local backend's bookkeeping (trials.csv,
    tune.json, importances) reads them as it reads its own."""
    import optuna
    from optuna.trial import TrialState

    dists = ray_search_space(space)
    for r in rows:
        attrs: dict[str, Any] = {"backend": "ray"}
        if r["state"] == "COMPLETE":
            attrs.update(values=r["values"], std=r["std"], test_errors=r["test_errors"])
        if r["seconds"] is not None:
            attrs["seconds"] = r["seconds"]
        if "error" in r:
            attrs["error"] = r["error"]
        params = {k: v for k, v in r["params"].items() if v is not None or
                  (k in dists and None in getattr(dists[k], "choices", ()))}
        st.add_trial(optuna.trial.create_trial(
            state=getattr(TrialState, r["state"]), params=params,
            distributions={k: dists[k] for k in params},
            value=r["mean"] if r["state"] == "COMPLETE" else None,
            intermediate_values={int(k): v for k, v in r["intermediate"].items()},
            user_attrs=attrs))


class _Lines:
    """A line per finished trial (as the local backend prints), made a Tune callback below."""

    def __init__(self, total: int | None, done: int):
        self.total, self.done = total, done

    def line(self, trial: Any) -> str:
        self.done += 1
        m = trial.last_result or {}
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in (trial.config or {}).items())
        what = (f"val error {100 * m['val_error']:.2f}%" if m.get("final") else
                "failed" if trial.status == "ERROR" else "pruned")
        return f"trial [{self.done}/{self.total or '?'}]: {what}  {params}"


def _callback(total: int | None, done: int, out: Any) -> Any:
    from ray.tune import Callback

    lines = _Lines(total, done)

    class Printer(Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            print(lines.line(trial), file=out, flush=True)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            print(lines.line(trial), file=out, flush=True)

    return Printer()


def run_ray_tune(*, config: ExperimentConfig | None, space: str | Path | Mapping,
                 sampler: str = "tpe", trials: int | None = 20, timeout: float | None = None,
                 seeds: int = 1, pruner: str = "median", storage: str | None = None,
                 study: str | None = None, workers: int = 1, address: str | None = None,
                 diagnose: bool = False, out: str | Path | None = None, fresh: bool = False,
                 progress: bool = True, report: bool = True) -> Any:
    """``tune(..., backend="ray")``: the same arguments and results as the local backend
    (:func:`~biasvar.tune.tune`, whose checks have already run), the trials run by Ray Tune on
    a local cluster or the one at ``address``. ``workers`` > 1 caps the trials running at once
    (default: as many as the cluster's CPUs hold, each trial reserving ``config.threads`` CPUs,
    default 1). ``pruner`` "median" or "hyperband" → the ASHA scheduler (asynchronous
    successive halving over epochs), "none" → no early stopping."""
    import numpy as np

    from ..analysis.jobs import RayExecutor, require_ray

    require_ray()  # before the run directory is touched
    from ray import tune as rt
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.optuna import OptunaSearch

    t_start = time.perf_counter()
    cfg0 = resolve(config if config is not None else ExperimentConfig())
    sp = load_space(space, cfg0)

    # -- the run directory and the study: as the local backend opens them
    run_dir, cfg, data, study_name, st = open_tune_run(
        cfg0, sp, sampler=sampler, pruner=pruner, seeds=seeds, storage=storage, study=study,
        out=out, fresh=fresh)

    # -- what is left to run, and what the sampler already knows
    done_before = _finished(st)
    todo = None if trials is None else trials - done_before
    known = [t for t in st.get_trials(deepcopy=False) if t.state.name == "COMPLETE"
             and set(t.params) == set(sp)]
    if known:  # a continued study: the sampler is told its results, nothing is re-run
        points, rewards = [dict(t.params) for t in known], [float(t.value) for t in known]
    else:
        defaults = sp.defaults(cfg)
        points = [defaults] if sampler != "grid" and sp.contains(defaults) else []
        rewards = None
    if todo is not None and todo <= 0:
        return _finish(st, sp, cfg, data, run_dir, sampler=sampler, pruner=pruner,
                       seeds=seeds, trials=trials, timeout=timeout, storage=storage,
                       study_name=study_name, workers=workers, diagnose=diagnose,
                       progress=progress, report=report, t_start=t_start, backend="ray")

    seed = int(np.random.SeedSequence([int(cfg.seed), len(st.get_trials(deepcopy=False)),
                                       0]).generate_state(1)[0])
    search = OptunaSearch(space=ray_search_space(sp), metric="val_error", mode="min",
                          sampler=_sampler(sampler, sp, seed), points_to_evaluate=points or None,
                          evaluated_rewards=rewards)
    epochs = int(cfg.epochs or 1)
    scheduler = (FIFOScheduler() if pruner == "none" else
                 # max_t one past the last epoch: ASHA stops a trial that reaches max_t, and
                 # the trial must live on to report its other seeds' fits (the final report)
                 ASHAScheduler(time_attr="epoch", max_t=epochs + 1, grace_period=1,
                               reduction_factor=3))
    threads = int(cfg.threads or 1)
    RayExecutor(address).connect()
    trainable = rt.with_resources(
        rt.with_parameters(_trainable, cfg=cfg, seeds=seeds, data=data,
                           run_dir=str(run_dir.resolve()), threads=threads, cwd=os.getcwd()),
        {"cpu": threads})
    ray_dir = (run_dir / RAY_DIR).resolve()
    tuner = rt.Tuner(
        trainable,
        tune_config=rt.TuneConfig(metric="val_error", mode="min", search_alg=search,
                                  scheduler=scheduler, num_samples=-1 if todo is None else todo,
                                  max_concurrent_trials=workers if workers > 1 else None,
                                  time_budget_s=timeout),
        run_config=rt.RunConfig(name="tune", storage_path=str(ray_dir), verbose=0,
                                failure_config=rt.FailureConfig(max_failures=1),
                                callbacks=[_callback(trials, done_before, sys.stdout)]
                                if progress else None))
    try:  # Ray's own tables and paths are not ours to print (even at verbose=0 it prints some)
        with contextlib.redirect_stdout(io.StringIO()):
            grid = tuner.fit()
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
    rows = trial_records(grid, sp)
    _record(st, rows, sp)
    failed = [r for r in rows if r["state"] == "FAIL"]
    if failed and len(failed) == len(rows) and len(rows) >= 3:
        raise BiasvarError(f"tune: {len(failed)} trials failed on Ray (the last: "
                           f"{failed[-1].get('error', 'see trials.csv')}); narrow the space to "
                           "values that train (e.g. a lower lr range).")
    return _finish(st, sp, cfg, data, run_dir, sampler=sampler, pruner=pruner, seeds=seeds,
                   trials=trials, timeout=timeout, storage=storage, study_name=study_name,
                   workers=workers, diagnose=diagnose, progress=progress, report=report,
                   t_start=t_start, backend="ray")


RUNNERS["ray"] = run_ray_tune
