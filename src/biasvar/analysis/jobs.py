"""Fit jobs: the unit of work of every analysis.

A :class:`FitJob` is a frozen spec — resolved config, which training rows, seed, label noise —
with a deterministic key (a hash of the spec). Its result is stored under
``<run_dir>/fits/<key>/``: ``last.pt``/``best.pt``/``history.csv`` while it trains, then
``test_log_probs.npy`` (fp32, m×K) and ``result.json`` (written last, atomically: its presence
means the job is done); then ``last.pt`` keeps only the final weights (no optimizer state). A
config with ``snapshots`` also leaves ``snapshot-K.pt`` and ``snapshot_test_log_probs.npy``
(K×m×C). Analyses ask a :class:`JobStore` for results; an executor runs the jobs
that are missing — serially, in local processes, or as Ray tasks — and the same spec
gives the same result (to float tolerance, same thread count). A job killed mid-way resumes from
its own ``last.pt``.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .._io import atomic_write_bytes, atomic_write_json, read_json
from ..config import ExperimentConfig, semantic_dict
from ..data import DataBundle

__all__ = ["FitJob", "JobResult", "JobStore", "SerialExecutor", "ProcessExecutor", "RayExecutor",
           "Executor", "require_ray", "run_job", "run_jobs_together", "side_by_side_groups",
           "side_by_side_speed", "plan_summary", "estimate_seconds", "Estimate", "fit_work",
           "fit_speed"]

#: a snapshot job's (K, m, C) test log-probabilities, one row per cycle's weights
SNAPSHOT_LOG_PROBS = "snapshot_test_log_probs.npy"


@dataclass(frozen=True, eq=False)
class FitJob:
    """One training to run. ``train_indices`` are rows of ``data.train`` (sorted; repeats allowed
    for bootstrap samples; ``None`` = all rows). ``label_noise`` replaces that fraction of the
    training labels with random other classes (deterministic given ``noise_seed``)."""

    config: ExperimentConfig
    seed: int
    train_indices: np.ndarray | None = None
    label_noise: float = 0.0
    noise_seed: int = 0
    tag: str = ""
    #: also score every training row (``train_log_probs.npy``): the rows the model did not
    #: train on get out-of-sample predictions (the noise floor's input)
    score_train: bool = False

    def __post_init__(self) -> None:
        if self.train_indices is not None:
            idx = np.sort(np.asarray(self.train_indices, dtype=np.int64))
            object.__setattr__(self, "train_indices", idx)

    @property
    def n_train(self) -> int | None:
        return None if self.train_indices is None else int(len(self.train_indices))

    def spec(self) -> dict[str, Any]:
        cfg = semantic_dict(self.config)  # where/how fast it runs does not change the result
        idx = None
        if self.train_indices is not None:
            idx = hashlib.sha256(self.train_indices.tobytes()).hexdigest()[:16]
        spec = {"config": cfg, "seed": self.seed, "train_indices": idx,
                "n_train": self.n_train, "label_noise": self.label_noise,
                "noise_seed": self.noise_seed if self.label_noise else None}
        if self.score_train:
            spec["score_train"] = True
        return spec

    @property
    def key(self) -> str:
        blob = json.dumps(self.spec(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass
class JobResult:
    key: str
    metrics: dict[str, float]           # train/val/test error and loss
    history: list[dict[str, float]]
    n_train: int
    seconds: float
    test_log_probs: np.ndarray | None = None  # (m, K) float32, loaded on demand
    reused: bool = False
    steps: int = 0                       # optimizer steps taken
    stop_reason: str | None = None       # why it stopped before its epochs (early stopping)


def noisy_labels(y: np.ndarray, fraction: float, num_classes: int, seed: int) -> np.ndarray:
    """Replace ``fraction`` of the labels (chosen at random) by a different random class."""
    rng = np.random.default_rng(seed)
    y = y.copy()
    flip = rng.random(len(y)) < fraction
    shift = rng.integers(1, num_classes, size=int(flip.sum()))
    y[flip] = (y[flip] + shift) % num_classes
    return y


def run_job(job: FitJob, data: DataBundle, job_dir: Path, *, progress: Any = False,
            callbacks: Sequence[Any] = ()) -> JobResult:
    """Train one job into ``job_dir`` (continuing its own last.pt if a kill interrupted it),
    score it, and write its result files. Module-level so process pools and Ray can call it.
    ``callbacks`` go to ``fit`` (e.g. tune's pruning; one that raises leaves no result)."""
    return run_jobs_together([job], data, [job_dir], progress=progress,
                             callbacks=callbacks)[0]


def run_jobs_together(jobs: Sequence[FitJob], data: DataBundle, job_dirs: Sequence[Path], *,
                      progress: Any = False, callbacks: Sequence[Any] = (),
                      on_apart: Callable[[str], None] | None = None) -> list[JobResult]:
    """:func:`run_job` for each job, their fits trained side by side
    (``train_side_by_side``: one batched step for all; see :func:`side_by_side_groups` for
    which jobs can). Each job writes what ``run_job`` writes, and gets what it would return up
    to rounding. One job: exactly ``run_job``. Fits that turn out unable to share their steps
    (``side_by_side_supported``: e.g. one resumed with another precision than the others)
    train one after another, and ``on_apart`` is told why."""
    from ..train import make_trainer, run_trainers, side_by_side_supported, train_side_by_side

    if len(jobs) > 1 and callbacks:
        raise ValueError("run_jobs_together: callbacks are one fit's (run the jobs one by one)")
    started = [_start_job(job, data, job_dir) for job, job_dir in zip(jobs, job_dirs)]
    t0 = time.perf_counter()
    trainers = []
    for job, job_dir, (job_data, resume) in zip(jobs, job_dirs, started):
        # A fit on a part of the training rows (a resampled model, a learning-curve point) is
        # read by its final scores only: its per-epoch validation pass is skipped unless early
        # stopping or a callback (tune's pruning) reads it. Whole-set fits, which may serve as
        # a run's reference (its history plotted), keep it. Either way the weights are the same.
        validate = job.train_indices is None or job.config.early_stopping or bool(callbacks)
        trainers.append(make_trainer(job.config, job_data, seed=job.seed,
                                     train_indices=job.train_indices, run_dir=job_dir,
                                     resume=resume, progress=progress,
                                     desc=job.tag or job.key, callbacks=callbacks,
                                     validate=validate))
    why = side_by_side_supported(trainers) if len(trainers) > 1 else None
    if len(trainers) > 1 and why is None:
        fits = run_trainers(trainers, together=train_side_by_side)
    else:
        if why is not None and on_apart is not None:
            on_apart(why)
        # each fit's global RNG is seeded by its own epochs (dropout), so building them all
        # first changes nothing
        fits = [run_trainers([t])[0] for t in trainers]
    seconds = (time.perf_counter() - t0) / len(jobs)  # side by side: the group's time, shared
    return [_finish_job(job, job_data, job_dir, res, seconds)
            for job, (job_data, _), job_dir, res in zip(jobs, started, job_dirs, fits)]


def _start_job(job: FitJob, data: DataBundle, job_dir: Path) -> tuple[DataBundle, bool]:
    """Prepare ``job_dir`` for the job: its spec, the data it trains on (its noisy labels),
    and whether its last.pt holds a training state to resume."""
    import torch

    from ..train import load_checkpoint

    job_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(job_dir / "spec.json", job.spec())
    if job.label_noise > 0:
        y = noisy_labels(data.train.y.numpy(), job.label_noise, data.num_classes, job.noise_seed)
        data = replace(data, train=replace(data.train, y=torch.from_numpy(y)))
    resume = False
    if (job_dir / "last.pt").is_file():
        try:
            ck = load_checkpoint(job_dir / "last.pt")
        except Exception:  # noqa: BLE001 - a damaged partial checkpoint: start the job again
            ck = None
        # Only a training state can be resumed. A "final" last.pt is a finished job whose
        # result files were removed since: it has no optimizer state, so train it again (the
        # same spec gives the same result).
        if ck is not None and ck.get("kind") not in ("final", "best"):
            resume = True
        else:
            (job_dir / "last.pt").unlink()
    return data, resume


def _finish_job(job: FitJob, data: DataBundle, job_dir: Path, res: Any,
                seconds: float) -> JobResult:
    """Score a trained job and write its result files (result.json last)."""
    from ..train import evaluate

    # train error on the rows this model was trained on (eval mode, no augmentation)
    t0 = time.perf_counter()
    rows = None if job.train_indices is None else np.unique(job.train_indices)
    scored = data if rows is None or job.score_train else replace(
        data, train=data.train.subset(rows))
    metrics, lps = evaluate(res.model, scored, device=job.config.device,
                            channels_last=res.precision["channels_last"], return_log_probs=True,
                            workers=job.config.loader_workers)
    if job.score_train and rows is not None:  # all rows scored: keep the trained ones' metrics
        from ..metrics import classification_metrics

        metrics["train"] = classification_metrics(data.train.y.numpy()[rows],
                                                  log_probs=lps["train"][rows],
                                                  classes=data.classes)
        atomic_write_bytes(job_dir / "train_log_probs.npy", _npy(lps["train"]))
    if rows is None:  # a full-data fit: its complete metrics serve as the reference's
        atomic_write_json(job_dir / "metrics.json", metrics)
    flat = {}
    for s, m in metrics.items():
        flat[f"{s}_error"], flat[f"{s}_loss"] = m["error"], m["loss"]
    lp = lps["test"].astype(np.float32)
    if res.snapshots:  # a snapshot run: each cycle's weights scored on the test set too
        atomic_write_bytes(job_dir / SNAPSHOT_LOG_PROBS,
                           _npy(_snapshot_log_probs(res, data, job.config)))
    atomic_write_bytes(job_dir / "test_log_probs.npy", _npy(lp))
    n = len(data.train) if job.train_indices is None else len(job.train_indices)
    steps = max(1, n // min(int(res.config.batch_size), n)) * len(res.history)
    result = JobResult(job.key, flat, res.history, n, seconds + time.perf_counter() - t0, lp,
                       steps=steps, stop_reason=res.stop_reason)
    atomic_write_json(job_dir / "result.json", {
        "key": job.key, "tag": job.tag, "metrics": flat, "history": res.history, "n_train": n,
        "seconds": result.seconds, "precision": res.precision, "best_epoch": res.best_epoch,
        "stop_reason": res.stop_reason, "resumed_from_epoch": res.resumed_from_epoch,
        "steps": steps, "epochs": len(res.history)})
    _drop_training_state(job_dir / "last.pt")
    return result


def _snapshot_log_probs(res: Any, data: DataBundle, cfg: Any) -> np.ndarray:
    """(K, m, C) test log-probabilities of a fit's K snapshots (fp32, eval mode)."""
    import copy

    from ..train import normalizer, predict_log_probs

    model = copy.deepcopy(res.model)
    device = next(model.parameters()).device
    scale, shift = normalizer(data, device)
    out = []
    for state in res.snapshots:
        model.load_state_dict(state)
        out.append(predict_log_probs(model, data.test.x, scale, shift, device,
                                     channels_last=res.precision["channels_last"],
                                     workers=cfg.loader_workers).cpu().numpy())
    return np.stack(out)


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(a, dtype=np.float32))
    return buf.getvalue()


def _drop_training_state(path: Path) -> None:
    """A done job is reused, never resumed: its last.pt keeps the weights and what describes
    them, and drops the optimizer and scheduler state (for Adam twice the weights' size)."""
    from ..train import checkpoint_bytes, load_checkpoint

    try:
        ck = load_checkpoint(path)
    except Exception:  # noqa: BLE001 - nothing there to slim
        return
    if "optimizer" not in ck:
        return
    ck = {k: v for k, v in ck.items() if k not in ("optimizer", "scheduler")}
    ck["kind"] = "final"
    atomic_write_bytes(path, checkpoint_bytes(ck))


class JobStore:
    """Results of fit jobs under ``root/fits/<key>/``."""

    def __init__(self, root: str | Path):
        self.root = Path(root) / "fits"

    def dir(self, job: FitJob) -> Path:
        return self.root / job.key

    def done(self, job: FitJob) -> bool:
        return (self.dir(job) / "result.json").is_file() and \
            (self.dir(job) / "test_log_probs.npy").is_file()

    def load(self, job: FitJob, *, log_probs: bool = True) -> JobResult:
        d = self.dir(job)
        r = read_json(d / "result.json")
        lp = np.load(d / "test_log_probs.npy") if log_probs else None
        return JobResult(r["key"], r["metrics"], r["history"], r["n_train"], r["seconds"], lp,
                         reused=True, steps=int(r.get("steps", 0)),
                         stop_reason=r.get("stop_reason"))

    def snapshot_log_probs(self, job: FitJob) -> np.ndarray:
        """(K, m, C) test log-probabilities of the snapshots of a job with ``snapshots``."""
        path = self.dir(job) / SNAPSHOT_LOG_PROBS
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no snapshot predictions (the job's config has "
                                    "no --snapshots, or it has not run)")
        return np.load(path)

    def train_log_probs(self, job: FitJob) -> np.ndarray | None:
        """The job's log-probabilities on every training row (jobs with ``score_train``)."""
        path = self.dir(job) / "train_log_probs.npy"
        return np.load(path) if path.is_file() else None


class Executor(Protocol):
    def run(self, jobs: Sequence[FitJob], store: JobStore, data: DataBundle,
            on_done: Callable[[FitJob, JobResult], None], progress: Any) -> None: ...


#: ``auto`` trains a group of fits side by side only where the probe measures it at least this
#: much faster than one after another: a margin over the probe's timing noise (its rounds
#: differ by a few percent on an idle machine, more on a busy one).
SIDE_BY_SIDE_GAIN = 1.15

#: ``auto`` does not read a gain measured while other processes kept more than this share of
#: the machine's cores busy: the gain is then the contention's (digits' CNN on 2 cores, 2 or 5
#: fits: 0.45–2.4x beside another training process, which kept 1.0–1.5 cores busy; 0.73–1.02x
#: on the idle machine), and the fits train one after another.
SIDE_BY_SIDE_BUSY = 0.25

#: At most this many fits side by side (each holds its own copy of its training rows on the
#: device, and adds its batch's activations, at once).
SIDE_BY_SIDE_MAX = 8

SIDE_BY_SIDE_MODES = ("auto", "on", "off")

_SIDE_SPEEDS: dict[tuple, Any] = {}


def side_by_side_groups(jobs: Sequence[FitJob], data: DataBundle, *,
                        most: int = SIDE_BY_SIDE_MAX) -> list[list[FitJob]]:
    """The jobs in the groups that could train side by side, in the order of their first jobs:
    one architecture, optimizer, batch size, augmentation, precision and device (what a fit's
    speed depends on, ``_speed_key``) and the same training-set size, at most ``most`` a group.
    The learning rates, schedules, weight decay, label smoothing, epochs, seeds, rows and label
    noise may differ. A job with an L1 term or dropout (each fit's masks are drawn from its
    own seed's stream, which one batched step cannot do), or on streamed images, is a group
    of its own."""
    groups: dict[tuple, list[list[FitJob]]] = {}
    order: list[list[FitJob]] = []
    for job in jobs:
        if job.config.l1 > 0 or (job.config.dropout or 0) > 0 or data.streamed:
            order.append([job])
            continue
        n = len(data.train) if job.train_indices is None else len(job.train_indices)
        chunks = groups.setdefault((_speed_key(job.config, data), n), [])
        if not chunks or len(chunks[-1]) >= most:
            chunks.append([])
            order.append(chunks[-1])
        chunks[-1].append(job)
    return order


def side_by_side_speed(cfg: ExperimentConfig, data: DataBundle, k: int) -> Any:
    """The :class:`~biasvar.train._speed.SideBySideSpeed` of ``k`` fits of ``cfg``: measured
    once per configuration and group size in this process, then cached. One after another
    is ``k`` × the fit's median step that :func:`fit_speed` timed (for the time estimate,
    so usually already there); only the side-by-side steps are timed, and no more of them than
    the decision at ``SIDE_BY_SIDE_GAIN`` needs."""
    from ..config import resolve
    from ..train._speed import measure_side_by_side

    cfg = resolve(cfg)
    key = (_speed_key(cfg, data), k)
    if key not in _SIDE_SPEEDS:
        sp = fit_speed(cfg, data)
        _SIDE_SPEEDS[key] = measure_side_by_side(cfg, data, k,
                                                 apart_s=k * sp.quantile(sp.step_s, 0.5),
                                                 need=SIDE_BY_SIDE_GAIN)
    return _SIDE_SPEEDS[key]


class SerialExecutor:
    """Runs the jobs in this process (sharing one progress bar): one after another, or a group
    side by side (``run_jobs_together``). ``side_by_side``: ``off``; ``on`` (every group of
    :func:`side_by_side_groups`); ``auto`` (a group where :func:`side_by_side_speed` measures
    it at least ``SIDE_BY_SIDE_GAIN`` times faster, on a machine not otherwise busy:
    ``SIDE_BY_SIDE_BUSY``). ``choices`` records each group's decision and its measurement
    (results.json's ``timing.side_by_side``); a group trained together is also said on
    stdout."""

    def __init__(self, side_by_side: str = "off"):
        from ..errors import unknown_name

        if side_by_side not in SIDE_BY_SIDE_MODES:
            raise unknown_name("side_by_side", side_by_side, SIDE_BY_SIDE_MODES)
        self.side_by_side = side_by_side
        self.choices: list[dict[str, Any]] = []
        self._choice_of: dict[tuple[str, ...], dict[str, Any]] = {}  # by the group's job keys

    def _groups(self, jobs: Sequence[FitJob], data: DataBundle) -> list[list[FitJob]]:
        return [[j] for j in jobs] if self.side_by_side == "off" else \
            side_by_side_groups(jobs, data)

    def plan(self, jobs: Sequence[FitJob], data: DataBundle) -> dict[str, float]:
        """Decide each group's way before training (``run`` keeps the decisions): for the
        time estimate, the factor on the training steps' time of each job that trains
        together (1 / the measured gain; 1 where not measured, with ``on``)."""
        factors = {}
        for group in self._groups(jobs, data):
            if len(group) > 1 and self._together(group, data):
                gain = self._choice_of[tuple(j.key for j in group)].get("gain", 1.0)
                factors.update({j.key: 1.0 / gain for j in group})
        return factors

    def run(self, jobs: Sequence[FitJob], store: JobStore, data: DataBundle,
            on_done: Callable[[FitJob, JobResult], None], progress: Any = False) -> None:
        together: dict[str, list[FitJob]] = {}  # job key → its group, trained together
        for group in self._groups(jobs, data):
            if len(group) > 1 and self._together(group, data):
                together.update({j.key: group for j in group})
        done: set[str] = set()
        for job in jobs:  # in the order asked; a group when its first job's turn comes
            if job.key in done:
                continue
            group = together.get(job.key, [job])
            choice = self._choice_of.get(tuple(j.key for j in group))

            def apart(why: str, choice: dict | None = choice) -> None:
                if choice is not None:
                    choice.update(together=False, why=why)

            results = run_jobs_together(group, data, [store.dir(j) for j in group],
                                        progress=progress, on_apart=apart)
            for j, r in zip(group, results):
                done.add(j.key)
                on_done(j, r)

    def _together(self, group: list[FitJob], data: DataBundle) -> bool:
        """Whether this group trains side by side; says why in ``choices`` and on stdout
        (once per group: ``plan`` and ``run`` ask alike)."""
        keys = tuple(j.key for j in group)
        if keys in self._choice_of:
            return bool(self._choice_of[keys]["together"])
        cfg, k = group[0].config, len(group)
        choice: dict[str, Any] = {"fits": k, "model": cfg.model, "mode": self.side_by_side}
        if self.side_by_side == "on":
            choice["together"] = True
        else:
            try:
                sp = side_by_side_speed(cfg, data, k)
            except (ValueError, RuntimeError) as e:  # they cannot share their steps, or K
                sp = None                                # of them do not fit in memory
                choice.update(together=False, why=f"{type(e).__name__}: {e}"[:300])
            if sp is not None:
                busy = sp.others_cores is not None and \
                    sp.others_cores > SIDE_BY_SIDE_BUSY * (os.cpu_count() or 1)
                choice.update(apart_s=round(sp.apart_s, 5), together_s=round(sp.together_s, 5),
                              gain=round(sp.gain, 3),
                              together=sp.gain >= SIDE_BY_SIDE_GAIN and not busy)
                if sp.others_cores is not None:
                    choice["others_cores"] = round(sp.others_cores, 2)
                if busy:
                    choice["why"] = (f"other processes kept {sp.others_cores:.1f} of the "
                                     f"{os.cpu_count()} cores busy while timing")
            if sp is not None and choice["together"]:  # the usual case, one after another, is only recorded
                print(f"side by side: {k} fits of {cfg.model} measured {sp.gain:.2f}x faster "
                      f"together ({sp.apart_s * 1000:.1f} ms one after another, "
                      f"{sp.together_s * 1000:.1f} ms together, per step of all {k}): "
                      "they train together", flush=True)
        self.choices.append(choice)
        self._choice_of[keys] = choice
        return bool(choice["together"])


def _worker(job: FitJob, data: DataBundle, job_dir: str, threads: int) -> JobResult:
    import torch

    torch.set_num_threads(threads)
    if data.streamed and job.config.loader_workers is None:
        # this process has `threads` of the cores: its image decoders share them, rather than
        # every fit process starting one decoder per core of the machine
        job = replace(job, config=replace(job.config, loader_workers=max(1, threads - 1)))
    return run_job(job, data, Path(job_dir), progress=False)


class ProcessExecutor:
    """Runs jobs in ``workers`` local processes, ``threads`` torch threads each (default: the
    cores divided among the workers). Results equal the serial ones at the same thread count."""

    def __init__(self, workers: int = 2, threads: int | None = None):
        self.workers = workers
        self.threads = threads or max(1, (os.cpu_count() or 1) // workers)

    def run(self, jobs: Sequence[FitJob], store: JobStore, data: DataBundle,
            on_done: Callable[[FitJob, JobResult], None], progress: Any = False) -> None:
        import multiprocessing as mp
        import pickle

        if data.streamed:  # in-memory tensors always pickle; a user's Dataset may not
            try:
                pickle.dumps(data)
            except Exception as e:  # noqa: BLE001 - whatever the user's object raises
                from ..errors import DataError

                raise DataError(f"the streamed dataset cannot be sent to worker processes "
                                f"({type(e).__name__}: {e}); define its Dataset class at module "
                                "level, or run the fits in this process (--workers 1).") from None
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(self.workers, mp_context=ctx) as pool:
            futures = {pool.submit(_worker, j, data, str(store.dir(j)), self.threads): j
                       for j in jobs}
            try:
                for fut in futures:  # in submission order: deterministic bookkeeping
                    job = futures[fut]
                    result = fut.result()
                    if progress:
                        progress.update(result_steps(job, data))
                    on_done(job, result)
            except BaseException:
                # a failed fit (or Ctrl-C) stops the analysis now, not after the queued fits
                pool.shutdown(wait=True, cancel_futures=True)
                raise


# -- Ray ----------------------------------------------------------------------------------------
#
# How data and results travel. The DataBundle is put into Ray's object store ONCE per `run` and
# every task gets the same ObjectRef (Ray hands the task the stored value; the tensors are not
# pickled per task). A task trains its job in a temporary folder on whatever machine runs it,
# then returns the JobResult and every file `run_job` wrote there as bytes; the driver writes
# them into the run directory's JobStore (result.json last, atomically, as run_job does). So
# the run directory lives only on the driver's filesystem and the same code works on a local
# cluster and on remote machines with no shared disk. The cost is one copy of each fit's files
# through the object store (checkpoints included), small next to the training.
# A job that a kill interrupted earlier resumes on the worker from the run directory's files
# (its last.pt is shipped with the task).

#: attempts after the first when a fit fails on a worker (an exception or a lost worker)
RAY_RETRIES = 1


def require_ray() -> Any:
    """``import ray``, or the ConfigError saying which extra to install."""
    from ..errors import ConfigError

    try:
        import ray
    except ImportError:
        raise ConfigError("backend: 'ray' needs Ray, which is not installed; install the "
                          "extra: pip install 'biasvar[ray]'") from None
    return ray


def _job_files(job_dir: Path) -> dict[str, bytes]:
    """Every file under ``job_dir`` (relative path → bytes); temporary files left out."""
    if not job_dir.is_dir():
        return {}
    return {str(f.relative_to(job_dir)): f.read_bytes() for f in sorted(job_dir.rglob("*"))
            if f.is_file() and not f.name.endswith(".tmp")}


def _ray_fit(job: FitJob, data: DataBundle, threads: int,
             start: dict[str, bytes]) -> tuple[JobResult, dict[str, bytes]]:
    """A Ray task: train ``job`` in a temporary folder (seeded with ``start``, the files of an
    interrupted earlier attempt), return its result and the files it wrote."""
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix=f"biasvar-fit-{job.key}-"))
    try:
        job_dir = tmp / job.key
        for rel, blob in start.items():
            atomic_write_bytes(job_dir / rel, blob)
        result = _worker(job, data, str(job_dir), threads)
        return result, _job_files(job_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_job_files(job_dir: Path, files: dict[str, bytes]) -> None:
    """Write a task's files into the store; result.json (the 'done' mark) last."""
    for rel in sorted(files, key=lambda r: r == "result.json"):
        atomic_write_bytes(job_dir / rel, files[rel])


class RayExecutor:
    """Runs jobs as Ray tasks, on a local Ray cluster (started here with ``num_cpus`` CPUs,
    default all of this machine's, when Ray is not running in this process yet) or on the
    cluster at ``address`` (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``).

    Each task reserves ``threads`` CPUs and trains with that many torch threads (a job's own
    ``config.threads`` wins; default 1), so the cluster runs as many fits at once as its CPUs
    hold; ``workers`` caps that number (None: no cap). The data goes through the object store
    once; each fit's files come back to this process and are written into the run directory
    (see the comment above), so results equal the serial executor's at the same thread count.
    A fit that fails on a worker is retried ``retries`` times, then stops the analysis with a
    BiasvarError naming its key. A cluster started here stays up until the process exits (or
    ``ray.shutdown()``), so later analyses in the same process reuse it.

    >>> executor = RayExecutor(num_cpus=4)              # doctest: +SKIP
    >>> JobRunner(JobStore("runs/x"), data, executor).run(jobs)  # doctest: +SKIP
    """

    def __init__(self, address: str | None = None, *, workers: int | None = None,
                 threads: int | None = None, num_cpus: int | None = None,
                 retries: int = RAY_RETRIES, runtime_env: dict[str, Any] | None = None):
        self.address = address
        self.workers = workers
        self.threads = threads or 1
        self.num_cpus = num_cpus
        self.retries = retries
        self.runtime_env = runtime_env or {}
        self._task: Any = None  # the remote function, made once

    def fits_at_once(self) -> int | None:
        """How many fits run side by side: the local cluster's CPUs over ``threads`` (capped by
        ``workers``); on a cluster at an address, ``workers`` if given, else None (its size is
        known only once connected, and the estimate then assumes one fit at a time)."""
        if self.address is not None and self.num_cpus is None:
            return self.workers
        slots = max(1, (self.num_cpus or os.cpu_count() or 1) // self.threads)
        return min(slots, self.workers) if self.workers else slots

    def _runtime_env(self) -> dict[str, Any]:
        """What workers need to import and run biasvar. A local cluster's workers run this
        Python (the venv, where biasvar is installed, editable or not) with this process's
        environment and sys.path; a remote cluster also gets the biasvar package shipped
        (``py_modules``: the cluster needs torch and the other dependencies installed) and the
        BIASVAR_* environment variables."""
        env: dict[str, Any] = {}
        if self.address is not None:
            import biasvar

            env["py_modules"] = [str(Path(biasvar.__file__).parent)]
            env["env_vars"] = {k: v for k, v in os.environ.items() if k.startswith("BIASVAR_")}
        for k, v in self.runtime_env.items():
            env[k] = {**env.get(k, {}), **v} if isinstance(v, dict) else v
        return env

    def connect(self) -> Any:
        """Start (or join) the cluster, unless Ray already runs in this process; the module."""
        import logging

        ray = require_ray()
        if not ray.is_initialized():
            kw: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False,
                                      logging_level=logging.WARNING,
                                      runtime_env=self._runtime_env() or None)
            if self.address is None:
                kw["num_cpus"] = self.num_cpus or os.cpu_count() or 1
                # Ray >= 2.5x turns token authentication on for a new local cluster (kept: it
                # is the safe default) and warns about it at every start; not the user's news
                logging.getLogger("ray._private.authentication.authentication_token_setup"
                                  ).setLevel(logging.ERROR)
            try:
                ray.init(self.address, **kw)
            except ConnectionError as e:
                from ..errors import ConfigError

                raise ConfigError(f"address: cannot connect to a Ray cluster at "
                                  f"{self.address!r} ({e}); start one (ray start --head) or "
                                  "fix --address.") from None
        return ray

    def _put_data(self, ray: Any, data: DataBundle) -> Any:
        try:
            return ray.put(data)
        except Exception as e:  # noqa: BLE001 - whatever the user's Dataset raises on pickling
            from ..errors import DataError

            raise DataError(f"the dataset cannot be sent to Ray workers ({type(e).__name__}: "
                            f"{e}); define its Dataset class at module level, or run the fits "
                            "in this process (--backend local).") from None

    def _submit(self, ray: Any, job: FitJob, data_ref: Any, store: JobStore) -> Any:
        threads = job.config.threads or self.threads
        if self._task is None:
            self._task = ray.remote(_ray_fit)
        task = self._task.options(num_cpus=threads, max_retries=self.retries,
                                  retry_exceptions=True, name=f"fit-{job.key}")
        return task.remote(job, data_ref, threads, _job_files(store.dir(job)))

    def run(self, jobs: Sequence[FitJob], store: JobStore, data: DataBundle,
            on_done: Callable[[FitJob, JobResult], None], progress: Any = False) -> None:
        ray = self.connect()
        data_ref = self._put_data(ray, data)
        queue = list(jobs)
        cap = self.workers or len(queue)
        running: dict[Any, FitJob] = {}
        try:
            while queue or running:
                while queue and len(running) < cap:
                    job = queue.pop(0)
                    running[self._submit(ray, job, data_ref, store)] = job
                ready, _ = ray.wait(list(running), num_returns=1)
                job = running.pop(ready[0])
                try:
                    result, files = ray.get(ready[0])
                except ray.exceptions.RayError as e:
                    raise self._failed(job, e) from None
                _write_job_files(store.dir(job), files)
                if progress:
                    progress.update(result_steps(job, data))
                on_done(job, result)
        except BaseException:
            # a failed fit (or Ctrl-C) stops the analysis now, not after the queued fits; the
            # fits already written stay in the store and are reused by the next run
            for ref in running:
                ray.cancel(ref, force=True)
            raise

    def _failed(self, job: FitJob, e: Exception) -> Exception:
        from ..errors import BiasvarError

        cause = getattr(e, "cause", None) or e
        what = f"{type(cause).__name__}: {cause}".strip().splitlines()
        attempts = self.retries + 1
        msg = (f"fit {job.key}{f' ({job.tag})' if job.tag else ''} failed on a Ray worker "
               f"{attempts} time{'s' * (attempts > 1)}: {what[0] if what else type(cause)}. "
               "The fits finished before it are stored: run again to continue.")
        if isinstance(cause, BiasvarError):
            try:
                return type(cause)(msg)
            except Exception:  # noqa: BLE001 - a subclass with another constructor
                pass
        return BiasvarError(msg)


def result_steps(job: FitJob, data: DataBundle) -> int:
    n = len(data.train) if job.train_indices is None else len(job.train_indices)
    bs = min(int(job.config.batch_size), n)
    return max(1, n // bs) * int(job.config.epochs)


# -- the time estimate --------------------------------------------------------------------------
#
# Every fit is costed from what it does (run_job): its training steps, a validation pass over
# the validation split each epoch, a checkpoint (last.pt, best.pt) each epoch, and at the end the
# scoring passes (train rows, validation, test: inference and metrics) and the slimmed last.pt.
# The per-step and per-image times are measured on the real training loop of each distinct
# configuration (`fit_speed`); the rest of a fit's fixed cost is FIT_OVERHEAD_S.

#: Seconds every fit costs beyond what the probe measures: result files, spec.json,
#: history.csv, the copy of its training rows, Python bookkeeping. Small: on digits (20–80
#: epochs of 40 steps of ~9 ms) the probe's terms already came within 1 s of each fit's measured time.
FIT_OVERHEAD_S = 0.15

#: The range around the central estimate: the sum is repeated with the timed steps' and
#: inference chunks' lower and upper quartiles, times these factors. The probe times ~16 steps
#: in under a second; a fit runs for minutes on a machine whose speed comes and goes. Measured on
#: the idle 2-core development machine (default Fashion-MNIST quick diagnose: 4 fits of 3.3 to
#: 4.2 min in all): probes a minute apart put the central estimate anywhere from 210 to 330 s
#: for the same fits (the machine, not the probe: single steps vary as much), and two measured
#: runs took 200 s (estimated 186–324 s) and 237 s (186–342 s); digits took 36 s (29–45 s).
#: So the range is lopsided: a busier machine only makes fits slower.
RANGE_FACTORS = (0.85, 1.30)

#: Serialisations per epoch (last.pt with the optimizer's state, best.pt, their disk writes)
#: and at the end (the final last.pt read and rewritten), in units of one timed last.pt.
CHECKPOINTS_PER_EPOCH = 2.0
CHECKPOINTS_AT_END = 2.0

#: Other processes busy on this many cores (on average, while timing) make the estimate say so.
BUSY_CORES = 0.3

_SPEEDS: dict[tuple, Any] = {}


def _speed_key(cfg: ExperimentConfig, data: DataBundle) -> tuple:
    """What a fit's speed depends on: the model, its optimizer and batch, the augmentation, the
    precision, device and threads, and the data's shape and sizes (not the seed or the lr)."""
    names = ("model", "width", "depth", "dropout", "batchnorm", "weights", "freeze_backbone",
             "optimizer", "batch_size", "augment", "augment_strength", "precision",
             "channels_last", "device", "threads", "loader_workers")
    return (*(getattr(cfg, k) for k in names), cfg.l1 > 0, data.name, tuple(data.input_shape),
            data.num_classes, len(data.train), len(data.val), data.streamed)


def fit_speed(cfg: ExperimentConfig, data: DataBundle) -> Any:
    """The :class:`~biasvar.train._speed.FitSpeed` of ``cfg`` on ``data``: measured once per
    distinct configuration in this process (see ``measure_fit_speed``), then cached."""
    from ..train._speed import measure_fit_speed

    key = _speed_key(cfg, data)
    if key not in _SPEEDS:
        _SPEEDS[key] = measure_fit_speed(cfg, data)
    return _SPEEDS[key]


@dataclass(frozen=True)
class FitWork:
    """What one fit does, in units the probe times: ``steps`` training steps of ``batch``
    images, ``inference`` images scored by forward passes (a validation pass per epoch and the
    final train/val/test scoring), ``scored`` images whose metrics are computed at the end, and
    ``epochs`` (a checkpoint each)."""

    steps: int
    batch: int
    inference: int
    scored: int
    epochs: int


def fit_work(job: FitJob, data: DataBundle) -> FitWork:
    """The work of ``job`` as run_job does it (every epoch run: early stopping may do less)."""
    n = len(data.train) if job.train_indices is None else len(job.train_indices)
    bs = min(int(job.config.batch_size), n)
    epochs = int(job.config.epochs)
    if job.train_indices is None or job.score_train:
        train_scored = len(data.train)
    else:
        train_scored = int(np.unique(job.train_indices).size)
    scored = train_scored + len(data.val) + len(data.test)
    return FitWork(steps=max(1, n // bs) * epochs, batch=bs,
                   inference=epochs * len(data.val) + scored, scored=scored, epochs=epochs)


@dataclass(frozen=True)
class Estimate:
    """The time to train some fits: ``seconds`` (central), the range ``lo``–``hi``, each fit's
    central seconds by key, and ``basis``, a line that says what was measured."""

    seconds: float
    lo: float
    hi: float
    per_job: dict[str, float] = field(default_factory=dict)
    basis: str = ""
    #: cores other processes kept busy while the probe timed (the most of any probe), or None
    others_cores: float | None = None

    def __str__(self) -> str:
        """The range, and where other processes were busy while timing, how busy."""
        busy = self.others_cores
        if busy is not None and busy >= BUSY_CORES:
            cores = os.cpu_count() or 1
            return (f"{format_range(self.lo, self.hi)} (timed while other processes kept "
                    f"{busy:.1f} of {cores} cores busy: the fits speed up or slow down as that "
                    "load changes)")
        return format_range(self.lo, self.hi)


def format_range(lo: float, hi: float) -> str:
    """``"40–55 s"``, ``"4.5–6.0 min"``, ``"1.2–1.6 h"``: a time range in one unit."""
    if hi < 90:
        return f"{lo:.0f}–{max(hi, 1):.0f} s"
    if hi < 90 * 60:
        return f"{lo / 60:.1f}–{hi / 60:.1f} min"
    return f"{lo / 3600:.1f}–{hi / 3600:.1f} h"


def _fit_seconds(w: FitWork, sp: Any, step: float, image: float) -> float:
    """Seconds of one fit of work ``w`` at ``step`` seconds a step (of ``sp.batch_size``
    images) and ``image`` seconds an inference image."""
    per_step = step * min(1.0, w.batch / sp.batch_size)  # a set smaller than one batch
    return (w.steps * per_step + w.inference * image + w.scored * sp.metrics_s + sp.setup_s
            + (w.epochs * CHECKPOINTS_PER_EPOCH + CHECKPOINTS_AT_END) * sp.checkpoint_s
            + FIT_OVERHEAD_S)


def estimate_seconds(jobs: Sequence[FitJob], data: DataBundle, *, workers: int = 1,
                     threads: int | None = None,
                     step_factors: dict[str, float] | None = None) -> Estimate:
    """The time to train ``jobs`` (``workers`` fits at once, of ``threads`` torch threads each:
    local worker processes or Ray tasks).

    Each fit's time is the sum over what it does (:func:`fit_work`): training steps × the
    median timed step, inference images (a validation pass each epoch, the final scoring of
    train, validation and test) × the median time per image, the final metrics, building the
    fit, its checkpoints, and FIT_OVERHEAD_S; step and image times are measured for each
    distinct configuration (a complexity curve's widths are timed one by one) by
    :func:`fit_speed`. The range repeats the sum with the lower and upper quartiles of the
    timed steps and chunks, times RANGE_FACTORS. With several workers the fits run side by side:
    the total over the workers, no less than the longest fit. ``step_factors``: job key → a
    factor on that job's step time (``SerialExecutor.plan``: the jobs trained together; an
    approximation where a group's fits differ in epochs, whose longer ones end alone).
    """
    from dataclasses import replace as _replace

    totals = [0.0, 0.0, 0.0]
    longest = [0.0, 0.0, 0.0]
    per_job: dict[str, float] = {}
    timed: dict[tuple, str] = {}
    busy: list[float] = []
    for j in jobs:
        cfg = j.config
        if threads is not None and cfg.threads is None:  # the worker processes' thread count
            cfg = _replace(cfg, threads=threads)
        sp = fit_speed(cfg, data)
        if sp.others_cores is not None:
            busy.append(sp.others_cores)
        w = fit_work(j, data)
        q = sp.quantile
        f = (step_factors or {}).get(j.key, 1.0)
        secs = [_fit_seconds(w, sp, q(sp.step_s, a) * f, q(sp.eval_s, a))
                for a in (0.5, 0.25, 0.75)]
        per_job[j.key] = secs[0]
        for i in range(3):
            totals[i] += secs[i]
            longest[i] = max(longest[i], secs[i])
        what = cfg.model + (f" width {cfg.width}" if cfg.width is not None else "")
        timed[_speed_key(cfg, data)] = (
            f"{what}: {q(sp.step_s, 0.5) * 1e3:.3g} ms/step of {sp.batch_size} "
            f"(median of {len(sp.step_s)}), inference {q(sp.eval_s, 0.5) * 1e6:.3g} µs/image")
    if workers > 1:
        totals = [max(t / workers, m) for t, m in zip(totals, longest)]
    mid, lo, hi = totals
    basis = ("timed here: " + "; ".join(timed.values()) + f"; range = quartiles of the timed "
             f"steps × {RANGE_FACTORS[0]:g}–{RANGE_FACTORS[1]:g}") if timed else ""
    return Estimate(mid, lo * RANGE_FACTORS[0], hi * RANGE_FACTORS[1], per_job, basis,
                    max(busy) if busy else None)


def plan_summary(jobs: Sequence[FitJob], store: JobStore,
                 estimate: Estimate | None = None) -> list[dict[str, Any]]:
    per_job = estimate.per_job if estimate is not None else {}
    return [{"key": j.key, "tag": j.tag, "n_train": j.n_train, "seed": j.seed,
             "epochs": j.config.epochs, "stored": store.done(j),
             "seconds": per_job.get(j.key)} for j in jobs]


@dataclass
class JobRunner:
    """Deduplicates the jobs an analysis asks for, reuses stored ones, runs the rest, and counts
    ``planned``/``trained``/``reused``."""

    store: JobStore
    data: DataBundle
    executor: Any = field(default_factory=SerialExecutor)
    progress: Any = False
    planned: int = 0
    trained: int = 0
    reused: int = 0
    _seen: set = field(default_factory=set)

    def run(self, jobs: Sequence[FitJob]) -> list[JobResult]:
        unique: dict[str, FitJob] = {}
        for j in jobs:
            unique.setdefault(j.key, j)
        for k in unique:
            if k not in self._seen:
                self._seen.add(k)
                self.planned += 1
        results: dict[str, JobResult] = {}
        missing = []
        for k, j in unique.items():
            if self.store.done(j):
                results[k] = self.store.load(j)
            else:
                missing.append(j)
        for k, r in results.items():
            if r.reused and k not in self._counted:
                self.reused += 1
                self._counted.add(k)
                if self.progress:
                    self.progress.update(result_steps(unique[k], self.data))

        def on_done(job: FitJob, r: JobResult) -> None:
            results[job.key] = r
            if job.key not in self._counted:
                self.trained += 1
                self._counted.add(job.key)
            done = getattr(self.progress, "fit_done", None)
            if done is not None:  # e.g. a line per fit where no bar is shown
                done(job, r)

        if missing:
            self.executor.run(missing, self.store, self.data, on_done, self.progress)
        return [results[j.key] for j in jobs]

    def __post_init__(self) -> None:
        self._counted: set = set()

    def counts(self) -> dict[str, int]:
        return {"planned": self.planned, "trained": self.trained, "reused": self.reused}
