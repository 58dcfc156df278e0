"""``tune``: search training options with Optuna, minimising the validation error.

One study per run directory (or per ``--study`` name in a shared ``--storage``). Every trial
trains its configuration for ``seeds`` seeds as analysis fit jobs (``fits/<key>/``), so a
rerun reuses every finished fit, and a run killed at any point continues where it stopped:
its study is loaded again, the trials the dead process left RUNNING are failed and retried once,
and the study still ends with exactly ``trials`` finished (COMPLETE or PRUNED) trials — also
when ``workers`` processes (or several commands) share the study.
"""
from __future__ import annotations

import csv
import io
import math
import os
import re
import shutil
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .._io import atomic_write_json, atomic_write_text, read_json
from ..config import ExperimentConfig, config_to_dict, resolve, to_yaml
from ..errors import BiasvarError, ConfigError, ModelError, TrainingDiverged
from ._objective import apply_params, evaluate_params
from ._space import Space, load_space

__all__ = ["tune", "TuneResults", "SAMPLERS", "PRUNERS"]

SAMPLERS = ("grid", "random", "tpe")
PRUNERS = ("median", "hyperband", "none")
BACKENDS = ("local", "ray")
JOURNAL = "optuna.journal"
#: what a tune writes in its run directory (``fresh`` removes these, with rundir's own files)
TUNE_FILES = ("space.yaml", "trials.csv", "best_config.yaml", "tune.json", "report.html",
              "diagnose-start", "diagnose-best", "compare.html")
#: a RUNNING trial with no owner recorded, older than this, was left by a dead process (s)
ORPHAN_AFTER_S = 30.0


@dataclass
class TuneResults:
    """What a tune found. Errors are fractions (0–1) of the validation set; ``gain`` is
    ``default_mean - best_mean`` (positive: the best trial is better), ``beats_default`` is
    whether the gain exceeds the seed-to-seed spread (the larger std of the two)."""

    run_dir: Path
    best_params: dict[str, Any]
    best_mean: float | None
    best_std: float | None
    default_params: dict[str, Any]
    default_mean: float | None
    default_std: float | None
    gain: float | None
    spread: float | None
    beats_default: bool
    trials: int
    best_number: int | None = None
    best_test_error: float | None = None
    seeds: int = 1
    report: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def best_config(self) -> Path:
        return self.run_dir / "best_config.yaml"

    def __str__(self) -> str:
        def pm(m: float | None, s: float | None) -> str:
            if m is None:
                return "n/a"
            return f"{100 * m:.2f}%" + (f" ± {100 * s:.2f}" if s and self.seeds > 1 else "")

        params = ", ".join(f"{k}={_fmt(v)}" for k, v in self.best_params.items()) or "-"
        lines = [f"tune: {self.trials} finished trials, validation error "
                 f"(mean over {self.seeds} seed{'s' if self.seeds != 1 else ''})",
                 f"  best (trial {self.best_number}): {params}",
                 f"  best     {pm(self.best_mean, self.best_std)}",
                 f"  default  {pm(self.default_mean, self.default_std)}"]
        if self.gain is not None:
            verdict = ("beats the default" if self.seeds == 1 and self.beats_default else
                       "does not beat the default" if self.seeds == 1 else
                       "beats the default by more than the seed-to-seed spread"
                       if self.beats_default else
                       "does not beat the default by more than the seed-to-seed spread")
            lines.append(f"  gain     {100 * self.gain:+.2f} points: {verdict}"
                         + (f" ({100 * (self.spread or 0):.2f})" if self.seeds > 1 else
                            " (one seed: no spread measured; use --seeds 3)"))
        lines.append(f"  best config: {self.best_config}  "
                     f"(`biasvar train --config {self.best_config}`)")
        if self.report is not None:
            lines.append(f"  report: {self.report}")
        return "\n".join(lines)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# -- checking the options -----------------------------------------------------------------------

def _check(sampler: str, pruner: str, trials: Any, timeout: Any, seeds: Any, workers: Any,
           backend: str) -> None:
    for name, value, known in (("sampler", sampler, SAMPLERS), ("pruner", pruner, PRUNERS),
                               ("backend", backend, BACKENDS)):
        if value not in known:
            from ..errors import suggest

            raise ConfigError(f"{name}: {value!r} is not known.{suggest(str(value), known)} "
                              f"Choose one of: {', '.join(known)}.")
    for name, value in (("trials", trials), ("seeds", seeds), ("workers", workers)):
        if value is None and name == "trials":
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name}: {value!r} must be a whole number, at least 1.")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not timeout > 0 or not math.isfinite(timeout)):
        raise ConfigError(f"timeout: {timeout!r} must be a positive number of seconds.")
    if trials is None and timeout is None and sampler != "grid":
        raise ConfigError("trials: with neither --trials nor --timeout the search would never "
                          "end; give --trials N, --timeout SECONDS, or both.")


def redact(url: str | None) -> str:
    """A storage URL without its password: ``postgresql://user:***@host/db``."""
    if url is None:
        return JOURNAL
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


# -- Optuna pieces ------------------------------------------------------------------------------

def _sampler(name: str, space: Space, seed: int) -> Any:
    import optuna

    if name == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


#: intermediate values are reported at the share of a trial's schedule done, in per mille
PROGRESS_STEPS = 1000


def progress_step(epoch: int, epochs: int) -> int:
    """Epoch ``epoch`` of ``epochs`` as the per-mille share of the schedule done (1..1000)."""
    return max(1, min(PROGRESS_STEPS, round(PROGRESS_STEPS * epoch / max(1, epochs))))


def _pruner(name: str, epochs: int) -> Any:
    import optuna

    if name == "median":
        # prune a trial whose error is above the median of the earlier trials' at the same share
        # of their schedules, from half-way through it, once 5 trials have finished: early in a
        # schedule the error says little about where it ends
        return optuna.pruners.MedianPruner(n_startup_trials=5,
                                           n_warmup_steps=PROGRESS_STEPS // 2)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=PROGRESS_STEPS // 10,
                                              max_resource=PROGRESS_STEPS, reduction_factor=3)
    return optuna.pruners.NopPruner()


#: the other backends' entry points, by name (tune/_ray.py registers "ray"); each takes
#: :func:`tune`'s keyword arguments
RUNNERS: dict[str, Any] = {}


def open_storage(storage: str | None, run_dir: Path) -> Any:
    """The default journal file (safe for several local processes: file locks) or any Optuna
    storage URL (an RDB with heartbeats: a dead worker's trial is failed and retried once)."""
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage

    if storage is None:
        # a lock file left by a process killed while writing is taken over after 10 s (its
        # writes take milliseconds)
        path = str(run_dir / JOURNAL)
        return JournalStorage(JournalFileBackend(path, JournalFileOpenLock(path,
                                                                           grace_period=10)))
    url = driver_url(storage)
    try:
        for attempt in range(3):
            try:
                return RDBStorage(url, heartbeat_interval=60, grace_period=120,
                                  heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                                      max_retry=1))
            except Exception as e:  # noqa: BLE001
                # several workers creating Optuna's tables in an empty database at once: one
                # wins, the others see a duplicate key; they then find the tables made
                if attempt == 2 or "duplicate key" not in str(e) and "already exists" not in str(e):
                    raise
                time.sleep(0.5 + attempt)
    except (ImportError, ModuleNotFoundError) as e:
        raise ConfigError(f"storage: {redact(storage)} needs a database driver that is not "
                          f"installed ({e}); install it (e.g. psycopg2 for postgresql://) or "
                          "leave --storage out (a journal file in the run directory).") from None
    except Exception as e:  # noqa: BLE001 - SQLAlchemy's many connection/URL errors
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"storage: cannot open {redact(storage)}: {redact(msg)}. Check the "
                          "URL (e.g. postgresql://user:password@host/db, sqlite:///tune.db) "
                          "and that the database is reachable.") from None


def driver_url(url: str) -> str:
    """``postgresql://`` with the driver that is installed: SQLAlchemy 2.1 reads the bare scheme
    as psycopg (3); the ``postgres`` extra installs psycopg2."""
    import importlib.util

    if url.startswith(("postgresql://", "postgres://")) and \
            importlib.util.find_spec("psycopg") is None and \
            importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def quiet_optuna() -> None:
    """Optuna's experimental/deprecation warnings (heartbeats, the retry callback) are for
    Optuna's own users, not biasvar's: one line per error stays one line."""
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"optuna(\.|$)")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"optuna(\.|$)")
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) is dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _dead(t: Any, ownerless: bool = False) -> bool:
    owner = t.user_attrs.get("worker")
    if owner is None:
        if ownerless:
            return True
        start = t.datetime_start
        return start is not None and (time.time() - start.timestamp()) > ORPHAN_AFTER_S
    host, _, pid = str(owner).rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid))


def fail_dead_trials(study: Any, *, ownerless: bool = False) -> list[int]:
    """Fail the RUNNING trials whose process died (this machine; an RDB's heartbeat covers the
    others) and queue each once again (Optuna's RetryHeartbeatStaleTrialCallback). Returns their
    numbers. ``ownerless``: also the trials with no owner recorded yet, whatever their age
    (a process killed between creating a trial and naming itself its owner) — only where no
    live process can hold such a trial."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _dead(t, ownerless):
            continue
        try:
            study._storage.set_trial_user_attr(t._trial_id, "error",
                                               "its process died (killed); retried")
            ok = study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
            continue  # another process failed it first
        if ok:
            RetryHeartbeatStaleTrialCallback(max_retry=1)(
                study, study._storage.get_trial(t._trial_id))
            failed.append(t.number)
    return failed


def _finished(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


# -- the objective in a study -------------------------------------------------------------------

class _Surplus(Exception):
    """A trial started after the study already had its trials (another worker took the last)."""


class _Objective:
    def __init__(self, cfg: ExperimentConfig, space: Space, *, seeds: int, data: Any,
                 store: Any, prune: bool, trials: int | None):
        self.cfg, self.space, self.seeds, self.data, self.store = cfg, space, seeds, data, store
        self.prune, self.trials = prune, trials

    def _surplus(self, trial: Any) -> bool:
        """Trial numbers are unique and ordered: the trials before this one that finished or
        still run already make the study's N, so this one is not needed."""
        from optuna.trial import TrialState

        if self.trials is None:
            return False
        before = [t for t in trial.study.get_trials(deepcopy=False, states=(
            TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
            if t.number < trial.number and not t.user_attrs.get("surplus")]
        return len(before) >= self.trials

    def __call__(self, trial: Any) -> float:
        import optuna

        trial.set_user_attr("worker", _owner())
        if self._surplus(trial):
            trial.set_user_attr("surplus", True)
            trial.study.stop()
            raise _Surplus(f"trial {trial.number} is not needed: the study already has "
                           f"{self.trials} trials (another worker took the last one)")
        params = self.space.suggest(trial)

        total = int(params.get("epochs") or self.cfg.epochs or 1)
        by_epoch: dict[str, float] = {}

        def on_epoch(epoch: int, val_error: float) -> None:
            # reported against the share of the trial's own schedule done (per mille), so that
            # trials of different lengths are compared at the same point of their schedules
            # (a 60-epoch trial at epoch 10 still has a high learning rate), not at epoch 10
            by_epoch[str(epoch)] = float(val_error)
            trial.set_user_attr("val_by_epoch", dict(by_epoch))
            trial.report(val_error, progress_step(epoch, total))
            # not at its last epoch: the trial has trained in full, its result is final
            if self.prune and epoch < total and trial.should_prune():
                raise optuna.TrialPruned(f"validation error {val_error:.4f} at epoch {epoch}")

        t0 = time.perf_counter()
        try:
            r = evaluate_params(self.cfg, params, seeds=self.seeds, data=self.data,
                                store=self.store, on_epoch=on_epoch)
        except (TrainingDiverged, ModelError, ConfigError) as e:
            trial.set_user_attr("error", str(e).splitlines()[0] if str(e) else type(e).__name__)
            raise
        trial.set_user_attr("values", r["values"])
        trial.set_user_attr("test_errors", r["test_errors"])
        trial.set_user_attr("std", r["std"])
        trial.set_user_attr("seconds", time.perf_counter() - t0)
        return float(r["mean"])


def _progress_callback(total: int | None) -> Any:
    from optuna.trial import TrialState

    def cb(study: Any, t: Any) -> None:
        if t.user_attrs.get("surplus"):
            return
        n = _finished(study)
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in t.params.items())
        what = (f"val error {100 * t.value:.2f}%" if t.state == TrialState.COMPLETE else
                t.state.name.lower() + (f" ({t.user_attrs['error']})" if "error" in
                                        t.user_attrs and t.state == TrialState.FAIL else ""))
        print(f"trial {t.number} [{n}/{total if total else '?'}]: {what}  {params}", flush=True)
    return cb


@dataclass
class _Spec:
    """What a worker process needs to run trials of the study (picklable)."""

    cfg: ExperimentConfig
    space: dict[str, Any]
    run_dir: str
    storage: str | None
    study: str
    sampler: str
    pruner: str
    seeds: int
    trials: int | None
    deadline: float | None     # time.time() after which no trial starts
    worker: int = 0
    threads: int | None = None
    progress: bool = True


def _load_study(spec: _Spec, space: Space) -> Any:
    import numpy as np
    import optuna

    storage = open_storage(spec.storage, Path(spec.run_dir))
    probe = optuna.load_study(study_name=spec.study, storage=storage)
    # seeded from the config's seed, the trials already in the study and the worker: a rerun
    # (or a second worker) does not repeat the first one's suggestions, and the same command
    # on the same study state suggests the same values
    n = len(probe.get_trials(deepcopy=False))
    seed = int(np.random.SeedSequence([int(spec.cfg.seed), n, spec.worker]).generate_state(1)[0])
    if spec.sampler == "grid":  # Optuna's grid sampler gives trial k the k-th point of its
        # seeded shuffle of the grid: every worker must shuffle alike, or two run one point
        seed = int(spec.cfg.seed)
    return optuna.load_study(study_name=spec.study, storage=storage,
                             sampler=_sampler(spec.sampler, space, seed),
                             pruner=_pruner(spec.pruner, int(spec.cfg.epochs or 1)))


def run_trials(spec: _Spec, data: Any = None) -> int:
    """Run trials of the study until it has ``spec.trials`` finished ones (or the deadline);
    the loop of every local worker. Returns the trials this call saw fail."""
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    from ..analysis.jobs import JobStore

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if spec.threads is not None:
        import torch

        torch.set_num_threads(spec.threads)
    if data is None:
        from ..data import load_data

        data = load_data(spec.cfg)
    space = load_space(spec.space, spec.cfg)
    study = _load_study(spec, space)
    fail_dead_trials(study)
    if spec.trials is not None and _finished(study) >= spec.trials:
        return 0
    failures: list[int] = []

    def count_failures(st: Any, t: Any) -> None:
        if t.state == TrialState.FAIL and not t.user_attrs.get("surplus"):
            failures.append(t.number)
            if len(failures) >= max(3, spec.trials or 3):
                st.stop()

    callbacks = [count_failures]
    if spec.trials is not None:
        callbacks.insert(0, MaxTrialsCallback(spec.trials, states=(TrialState.COMPLETE,
                                                                    TrialState.PRUNED)))
    if spec.progress:
        callbacks.append(_progress_callback(spec.trials))
    objective = _Objective(spec.cfg, space, seeds=spec.seeds, data=data,
                           store=JobStore(spec.run_dir), prune=spec.pruner != "none",
                           trials=spec.trials)
    timeout = None if spec.deadline is None else max(0.0, spec.deadline - time.time())
    if timeout == 0.0:
        return 0
    study.optimize(objective, timeout=timeout, callbacks=callbacks, gc_after_trial=False,
                   catch=(_Surplus, TrainingDiverged, ModelError, ConfigError),
                   show_progress_bar=False)
    if len(failures) >= max(3, spec.trials or 3):
        last = study._storage.get_trial(study._storage.get_trial_id_from_study_id_trial_number(
            study._study_id, failures[-1]))
        raise BiasvarError(f"tune: {len(failures)} trials failed in a row (the last: "
                           f"{last.user_attrs.get('error', 'see trials.csv')}); narrow the "
                           "space to values that train (e.g. a lower lr range).")
    return len(failures)


def _worker_main(spec: _Spec, data: Any) -> int:
    quiet_optuna()
    return run_trials(spec, data)


# -- the results --------------------------------------------------------------------------------

def _trial_rows(study: Any, space: Space, seeds: int) -> list[dict[str, Any]]:
    """Every trial of the study (but the surplus ones) as tune.json's trial records. A trial
    another worker has just created and not yet sampled (running, no parameters) is left out:
    it may still turn out surplus."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("surplus") or (t.state.name == "RUNNING" and not t.params):
            continue
        values = t.user_attrs.get("values") if t.state.name == "COMPLETE" else None
        secs = t.user_attrs.get("seconds")
        if secs is None and t.datetime_start is not None and t.datetime_complete is not None:
            secs = (t.datetime_complete - t.datetime_start).total_seconds()
        rows.append({
            "number": t.number, "state": t.state.name,
            "params": {k: t.params.get(k) for k in space},
            "values": [float(v) for v in values] if values else [],
            "mean": float(t.value) if t.state.name == "COMPLETE" and t.value is not None
            else None,
            "std": float(t.user_attrs["std"]) if values and "std" in t.user_attrs else None,
            "test_errors": t.user_attrs.get("test_errors", []) if values else [],
            "intermediate": dict(sorted(
                ((str(k), float(v)) for k, v in (t.user_attrs.get("val_by_epoch") or
                                                 t.intermediate_values).items()),
                key=lambda kv: int(kv[0]))),
            "seconds": None if secs is None else float(secs),
            **({"error": t.user_attrs["error"]} if "error" in t.user_attrs
               and t.state.name == "FAIL" else {}),
        })
    return rows


def trials_csv(rows: list[dict[str, Any]], space: Space, seeds: int) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["number", "state", *space, *(f"value_seed{i}" for i in range(seeds)),
                "mean", "std", "seconds"])
    for r in rows:
        vals = list(r["values"]) + [""] * (seeds - len(r["values"]))
        w.writerow([r["number"], r["state"],
                    *("" if r["params"].get(k) is None else r["params"][k] for k in space),
                    *(repr(v) if v != "" else "" for v in vals),
                    "" if r["mean"] is None else repr(r["mean"]),
                    "" if r["std"] is None else repr(r["std"]),
                    "" if r["seconds"] is None else f"{r['seconds']:.3f}"])
    return buf.getvalue()


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _importances(study: Any) -> dict[str, float]:
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < 3 or not done[0].params:
        return {}
    try:
        import optuna

        imp = optuna.importance.get_param_importances(study)
    except Exception:  # noqa: BLE001 - too few distinct values, a missing extra...
        return {}
    return {k: float(v) for k, v in imp.items()}


def _drop_tune_files(run_dir: Path) -> None:
    if not run_dir.is_dir():
        return
    for entry in run_dir.iterdir():
        if entry.name in TUNE_FILES or entry.name.startswith(JOURNAL):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


# -- the entry point ----------------------------------------------------------------------------

def open_tune_run(cfg0: ExperimentConfig, sp: Space, *, sampler: str, pruner: str, seeds: int,
                  storage: str | None, study: str | None, out: str | Path | None,
                  fresh: bool) -> tuple[Path, ExperimentConfig, Any, str, Any]:
    """Open a tune's run directory and its study, as every backend does: a bad storage fails
    before anything is written, a run directory holding another space is refused, the config,
    split and space are written. Returns (run_dir, config, data, study name, study)."""
    import optuna

    from ..rundir import default_run_dir
    from ..runs import open_run

    quiet_optuna()
    if storage is not None:  # a bad or unreachable URL fails before anything is written
        open_storage(storage, Path("."))
    key = {"space": sp.to_dict(), "sampler": sampler, "pruner": pruner, "seeds": seeds,
           "storage": redact(storage) if storage else None, "study": study}
    run_dir = Path(out) if out else default_run_dir("tune", cfg0, extra=key)
    setup = open_run("tune", cfg0, out=run_dir, fresh=fresh)
    cfg, data = setup.cfg, setup.data
    study_name = study or run_dir.name
    # check the stored space before anything is written
    stored = run_dir / "space.yaml"
    if not fresh and stored.is_file() and (run_dir / JOURNAL).exists() and storage is None:
        import yaml

        prev = yaml.safe_load(stored.read_text(encoding="utf-8"))
        if prev != yaml.safe_load(sp.to_yaml()):
            raise ConfigError(f"space: {str(run_dir)!r} holds a tune over another space "
                              f"({', '.join(prev or {})}); add --fresh to start over there, or "
                              "--out DIR for a new run.")
    setup.prepare(fresh=fresh)
    if fresh:
        _drop_tune_files(run_dir)
    setup.write()
    atomic_write_text(run_dir / "space.yaml", sp.to_yaml())

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    store_obj = open_storage(storage, run_dir)
    if fresh and storage is not None:
        try:
            optuna.delete_study(study_name=study_name, storage=store_obj)
        except KeyError:
            pass
    st = optuna.create_study(study_name=study_name, storage=store_obj, direction="minimize",
                             load_if_exists=True)
    return run_dir, cfg, data, study_name, st


def tune(config: ExperimentConfig | None = None, *, space: str | Path | Mapping = "bias",
         sampler: str = "tpe", trials: int | None = 20, timeout: float | None = None,
         seeds: int = 1, pruner: str = "median", storage: str | None = None,
         study: str | None = None, workers: int = 1, backend: str = "local",
         address: str | None = None, diagnose: bool = False, out: str | Path | None = None,
         fresh: bool = False, progress: bool = True, report: bool = True,
         dry_run: bool = False) -> Any:
    """Search the training options in ``space`` for the lowest validation error.

    Args:
        config: the starting configuration (default ``ExperimentConfig()``); options outside
            the space keep its values, and its own values are evaluated too (the "default").
        space: a built-in space (``"bias"``: capacity and optimisation up; ``"variance"``:
            regularisation up, width down; see :data:`~biasvar.tune.SPACES`), a YAML file, or a
            mapping ``{option: {type, low, high, log, step, choices}}``.
        sampler: ``"tpe"``, ``"random"`` or ``"grid"`` (every combination; needs discrete
            parameters), seeded from ``config.seed``.
        trials: finished (complete or pruned) trials to reach; ``timeout``: seconds after which
            no trial starts (either, or both).
        seeds: fits per trial (seeds ``config.seed``, +1, …); the value is their mean error.
        pruner: ``"median"``, ``"hyperband"`` or ``"none"``: stop a trial whose first seed's
            validation error falls behind (epoch by epoch).
        storage: an Optuna storage URL (``postgresql://…``, ``sqlite:///…``); default a journal
            file ``optuna.journal`` in the run directory. ``study``: the study's name.
        workers: local processes running trials of the one study side by side.
        backend: ``"local"`` or ``"ray"`` (Ray Tune; needs ``biasvar[ray]``; ``address``).
        diagnose: also diagnose (quick profile) the starting and the best config and compare.
        out: the run directory (default ``runs/tune-<dataset>-<model>-<hash>``); running the
            same command again continues the study. ``fresh``: start over.
        dry_run: return a :class:`~biasvar.tune.TunePlan` (what the search would cost here,
            trial by trial) instead; nothing is trained or written.

    Returns:
        :class:`TuneResults` (a :class:`~biasvar.tune.TunePlan` with ``dry_run``); the run
        directory holds ``trials.csv``, ``best_config.yaml``,
        ``tune.json`` and ``report.html``.

    >>> from biasvar import ExperimentConfig, tune                            # doctest: +SKIP
    >>> r = tune(ExperimentConfig(dataset="digits", model="mlp", epochs=3),
    ...          space={"width": {"type": "int", "low": 8, "high": 64, "log": True}},
    ...          trials=8, seeds=2, progress=False)                          # doctest: +SKIP
    >>> r.best_params, r.beats_default                                        # doctest: +SKIP
    ({'width': 61}, True)
    """
    t_start = time.perf_counter()
    _check(sampler, pruner, trials, timeout, seeds, workers, backend)
    cfg0 = resolve(config if config is not None else ExperimentConfig())
    sp = load_space(space, cfg0)
    if sampler == "grid":
        n_grid = sp.grid_size()
        trials = n_grid if trials is None else min(trials, n_grid)
    if address is not None and backend != "ray":
        raise ConfigError("address: a Ray cluster address applies to --backend ray only; add "
                          "--backend ray or drop --address.")
    if dry_run:
        from ._plan import plan_tune

        return plan_tune(cfg0, sp, sampler=sampler, trials=trials, seeds=seeds,
                         workers=workers, diagnose=diagnose, pruner=pruner)
    if backend != "local":  # registered by its module (tune/_ray.py: "ray")
        return RUNNERS[backend](config=config, space=space, sampler=sampler, trials=trials,
                            timeout=timeout, seeds=seeds, pruner=pruner, storage=storage,
                            study=study, workers=workers, address=address, diagnose=diagnose,
                            out=out, fresh=fresh, progress=progress, report=report)

    run_dir, cfg, data, study_name, st = open_tune_run(
        cfg0, sp, sampler=sampler, pruner=pruner, seeds=seeds, storage=storage, study=study,
        out=out, fresh=fresh)
    defaults = sp.defaults(cfg)
    if not st.get_trials(deepcopy=False) and sampler != "grid" and sp.contains(defaults):
        st.enqueue_trial(defaults, user_attrs={"default": True})
    if storage is None:
        # the run directory's journal: no worker of this command runs yet, so a RUNNING trial
        # is a dead process's, also one killed before it named itself the owner (it counted as
        # running, and the study ended one trial short)
        fail_dead_trials(st, ownerless=True)

    deadline = None if timeout is None else time.time() + float(timeout)
    spec = _Spec(cfg, sp.to_dict(), str(run_dir), storage, study_name, sampler, pruner, seeds,
                 trials, deadline, progress=progress)
    if workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        threads = cfg.threads or max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            futs = [pool.submit(_worker_main, replace(spec, worker=i, threads=threads), data)
                    for i in range(workers)]
            for f in futs:
                f.result()
    # top up: a worker that stopped early (a surplus guess, a trial that failed) leaves the
    # study short; this process finishes it alone
    for _ in range(3):
        if trials is not None and _finished(st) >= trials:
            break
        if deadline is not None and time.time() >= deadline:
            break
        run_trials(replace(spec, worker=workers + _), data)
        if trials is None:
            break

    return _finish(st, sp, cfg, data, run_dir, sampler=sampler, pruner=pruner, seeds=seeds,
                   trials=trials, timeout=timeout, storage=storage, study_name=study_name,
                   workers=workers, diagnose=diagnose, progress=progress, report=report,
                   t_start=t_start)


def _finish(st: Any, sp: Space, cfg: ExperimentConfig, data: Any, run_dir: Path, *,
            sampler: str, pruner: str, seeds: int, trials: int | None, timeout: float | None,
            storage: str | None, study_name: str, workers: int, diagnose: bool,
            progress: bool, report: bool, t_start: float, backend: str = "local") -> TuneResults:
    """Write trials.csv, best_config.yaml, tune.json (and the diagnoses, the report)."""
    from ..analysis.jobs import JobStore

    rows = _trial_rows(st, sp, seeds)
    atomic_write_text(run_dir / "trials.csv", trials_csv(rows, sp, seeds))
    complete = [r for r in rows if r["state"] == "COMPLETE" and r["mean"] is not None]
    if not complete:
        raise BiasvarError("tune: no trial completed (all were pruned or failed; see "
                           f"{run_dir / 'trials.csv'}); run more trials or use --pruner none.")
    best = min(complete, key=lambda r: (r["mean"], r["number"]))
    best_cfg = apply_params(cfg, best["params"])
    atomic_write_text(run_dir / "best_config.yaml",
                      f"# the best trial ({best['number']}) of {run_dir.name}: validation error "
                      f"{best['mean']:.4f} (seed {cfg.seed} first)\n# biasvar train --config "
                      "best_config.yaml\n" + to_yaml(best_cfg))
    defaults = sp.defaults(cfg)
    if progress:
        print("evaluating the default config (its stored fits are reused)", flush=True)
    d = evaluate_params(cfg, defaults, seeds=seeds, data=data, store=JobStore(run_dir))
    gain = d["mean"] - best["mean"]
    spread = max(best["std"] or 0.0, d["std"])
    one = seeds < 2
    result = {
        "schema_version": 1, "command": "tune", "dataset": cfg.dataset, "model": cfg.model,
        "sampler": sampler, "pruner": pruner, "seeds": seeds, "metric": "validation error",
        "space": sp.to_dict(), "trials_requested": trials, "timeout": timeout,
        "storage": redact(storage), "study": study_name, "backend": backend,
        "workers": workers,
        "trials": [{k: v for k, v in r.items() if k not in ("test_errors", "error")}
                   for r in rows],
        "best": {"number": best["number"], "params": best["params"], "values": best["values"],
                 "mean": best["mean"], "std": None if one else best["std"],
                 "test_error": _mean(best["test_errors"]), "config": config_to_dict(best_cfg)},
        "default": {"params": defaults, "values": d["values"], "mean": d["mean"],
                    "std": None if one else d["std"], "test_error": _mean(d["test_errors"])},
        # one seed measures no spread: whether the gain beats it is unknown, not "yes"
        "gain": gain, "spread": None if one else spread,
        "beats_default": None if one else bool(gain > spread),
        "importances": _importances(st), "diagnose": None,
        "timing": {"seconds": time.perf_counter() - t_start},
    }
    atomic_write_json(run_dir / "tune.json", result)
    if diagnose:
        result["diagnose"] = _diagnose(cfg, best_cfg, run_dir, progress=progress)
        result["timing"] = {"seconds": time.perf_counter() - t_start}
        atomic_write_json(run_dir / "tune.json", result)
    report_path = _report(run_dir) if report else None
    return TuneResults(run_dir, best["params"], best["mean"], best["std"], defaults, d["mean"],
                       d["std"], gain, spread, bool(gain > spread),
                       sum(r["state"] in ("COMPLETE", "PRUNED") for r in rows),
                       best_number=best["number"], best_test_error=_mean(best["test_errors"]),
                       seeds=seeds, report=report_path)


def _diagnose(start: ExperimentConfig, best: ExperimentConfig, run_dir: Path, *,
              progress: bool) -> dict[str, str]:
    from ..analysis import diagnose
    from ..report import compare

    for name, c in (("diagnose-start", start), ("diagnose-best", best)):
        if progress:
            print(f"diagnosing the {name.split('-')[1]} config → {run_dir / name}", flush=True)
        diagnose(c, profile="quick", out=run_dir / name, progress=progress)
    compare([run_dir / "diagnose-start", run_dir / "diagnose-best"], out=run_dir / "compare.html",
            labels=["start", "best"])
    return {"start": "diagnose-start", "best": "diagnose-best", "compare": "compare.html"}


def _report(run_dir: Path) -> Path | None:
    try:
        from ..report._tune import render_tune_report
    except ImportError:
        return None
    try:
        return Path(render_tune_report(run_dir))
    except BiasvarError as e:
        import warnings

        warnings.warn(f"report: not written ({e})", stacklevel=2)
        return None


def load_tune_json(run_dir: str | Path) -> dict[str, Any]:
    return read_json(Path(run_dir) / "tune.json")
