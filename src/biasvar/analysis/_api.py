"""The analyses as Python functions: ``diagnose``, ``learning_curve``, ``complexity_curve``,
``decompose`` and ``decompose_predictions``. Keyword-only, each returns a typed
:class:`~biasvar.analysis.Results` (or, with ``dry_run=True``, the :class:`Plan`) and never
exits the process; the CLI is a thin layer over them.

>>> from biasvar import ExperimentConfig, diagnose
>>> d = diagnose(ExperimentConfig(dataset="digits"), progress=False)   # doctest: +SKIP
>>> d.verdict.label, d.decomposition.zero_one.bias.value                # doctest: +SKIP
('high_variance', 0.031)
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..config import AnalysisConfig, ExperimentConfig, resolve
from ..errors import ConfigError
from ._profiles import PROFILES
from ._results import Fits, LossTrend, Reference, Results, TargetError, save_results

__all__ = ["diagnose", "learning_curve", "complexity_curve", "decompose",
           "decompose_predictions", "resolve_analysis", "Plan"]


def resolve_analysis(command: str, a: AnalysisConfig) -> AnalysisConfig:
    """Fill the options left at None with the command's defaults (diagnose: its profile's)."""
    if command == "diagnose":
        p = PROFILES.get(a.profile)
        rounds, sampling = p.rounds, p.sampling
    else:
        rounds = {"decompose": 5, "complexity": 0}.get(command, a.rounds)
        sampling = "bootstrap"
    if command == "complexity" and (a.rounds or 0) == 0 and (
            a.sampling is not None or a.fraction is not None):
        given = "sampling" if a.sampling is not None else "fraction"
        raise ConfigError(f"{given}: a complexity curve resamples data only for its "
                          f"decomposition; add --rounds R (R ≥ 2), or drop --{given}.")
    a = replace(a, rounds=rounds if a.rounds is None else a.rounds,
                sampling=sampling if a.sampling is None else a.sampling)
    if a.fraction is not None and a.sampling != "subsample":
        raise ConfigError(f"fraction: {a.fraction} applies to --sampling subsample only (the "
                          f"sampling is {a.sampling}); drop --fraction or add --sampling "
                          "subsample.")
    if a.sampling == "subsample" and a.fraction is None:
        a = replace(a, fraction=0.5)
    if command in ("diagnose", "decompose") and a.rounds is not None and a.rounds < 2:
        raise ConfigError(f"rounds: {a.rounds} is too few; the variance between models needs "
                          "at least 2 models (5–10 give usable intervals).")
    if command == "complexity":
        if a.rounds == 1:
            raise ConfigError("rounds: 1 is too few for a decomposition; use 0 (none) or ≥ 2.")
        for name in ("param", "values"):
            if getattr(a, name) is None:
                raise ConfigError(f"{name}: a complexity curve needs --{name} (e.g. --param "
                                  "width --values 8,16,32,64).")
    return a


def _options(analysis: AnalysisConfig | None, **given: Any) -> AnalysisConfig:
    """``analysis`` (or the defaults) with the keyword arguments that were given."""
    given = {k: v for k, v in given.items() if v is not None}
    return replace(analysis or AnalysisConfig(), **given)


@dataclass
class Plan:
    """What an analysis would train (``dry_run=True``): one row per fit and a time estimate.

    ``seconds`` is the central estimate of the fits still to train and ``lo``–``hi`` its
    range, measured on this machine by timing each distinct configuration's real training step
    and inference (see :func:`~biasvar.analysis.jobs.estimate_seconds`); ``basis`` says what
    was timed. Each row's ``seconds`` is that fit's central estimate (None when stored)."""

    run_dir: Path
    rows: list[dict[str, Any]]
    seconds: float
    header: str = ""
    lo: float | None = None
    hi: float | None = None
    basis: str = ""

    def __post_init__(self) -> None:
        self.lo = self.seconds if self.lo is None else self.lo
        self.hi = self.seconds if self.hi is None else self.hi

    @property
    def estimate(self) -> str:
        """The range as printed, e.g. ``"4.5–6.0 min"``."""
        from .jobs import format_range

        return format_range(float(self.lo), float(self.hi))  # type: ignore[arg-type]

    def __str__(self) -> str:
        lines = [self.header, *([self.basis] if self.basis else []), "",
                 f"{'key':<17} {'n_train':>8} {'seed':>4} {'epochs':>6} {'est. s':>6}  "
                 f"{'stored':<6} what"]
        for r in self.rows:
            est = r.get("seconds")
            lines.append(f"{r['key']:<17} {r['n_train']:>8} {r['seed']:>4} {r['epochs']:>6} "
                         f"{'-' if est is None or r['stored'] else f'{est:.0f}':>6}  "
                         f"{'yes' if r['stored'] else 'no':<6} {r['tag']}")
        return "\n".join(lines)


class _DryRun(Exception):
    def __init__(self, plan: Plan):
        self.plan = plan


class _OverallBar:
    """One progress bar across all fits; fits report steps into it (start/close are no-ops).

    The bar shows only where stderr is a terminal (or a notebook): in a log file its carriage
    returns would pile up. There, each trained fit prints one line to stdout instead
    (``fit 2/4 (decomposition split 1/2) done in 71 s``). ``enabled=False``: neither."""

    def __init__(self, total: int, enabled: bool = True, fits: int = 0):
        from tqdm.auto import tqdm

        from ..train._callbacks import bars_visible

        visible = enabled and bars_visible()
        self.lines = enabled and not visible
        self.fits, self.done = fits, 0
        self.bar = tqdm(total=total, unit="step", desc="fits", dynamic_ncols=True,
                        disable=not visible)

    def start(self, total_steps: int, desc: str) -> None:
        self.bar.set_description_str(desc[:40])

    def update(self, steps: int) -> None:
        self.bar.update(steps)

    def postfix(self, values: dict[str, float]) -> None:
        self.bar.set_postfix({k: f"{v:.3g}" for k, v in values.items()}, refresh=False)

    def close(self) -> None:
        pass

    def fit_done(self, job: Any, result: Any) -> None:
        """A fit finished training (the runner calls this): its line, where no bar shows."""
        self.done += 1
        if self.lines:
            what = job.tag if len(job.tag) <= 60 else job.tag[:57] + "..."
            secs = result.seconds
            print(f"fit {self.done}/{self.fits} ({what or job.key}) done in "
                  f"{secs:.{0 if secs >= 10 else 1}f} s", flush=True)

    def __bool__(self) -> bool:
        return True

    def finish(self) -> None:
        self.bar.close()


def _dedupe(jobs: list) -> list:
    """One job per key, in first-asked order; a job shared by analyses lists every use."""
    out: dict[str, Any] = {}
    for j in jobs:
        if j.key in out:
            if j.tag and j.tag not in out[j.key].tag:
                out[j.key] = replace(out[j.key], tag=f"{out[j.key].tag}; {j.tag}")
        else:
            out[j.key] = j
    return list(out.values())


@dataclass
class _Session:
    """An opened analysis run: plans jobs, runs them with one progress bar, writes results."""

    command: str
    setup: Any
    runner: Any
    progress: bool
    dry_run: bool
    fresh: bool
    t0: float = field(default_factory=time.perf_counter)
    #: the time estimate printed before training (lo, seconds, hi, fits), when any trained
    estimate: dict[str, float] | None = None

    @classmethod
    def open(cls, command: str, cfg: ExperimentConfig | None, analysis: AnalysisConfig, *,
             out: Any, fresh: bool, workers: int, progress: bool, dry_run: bool,
             variants: Sequence[ExperimentConfig] = (), source: Any = None,
             backend: str = "local", address: str | None = None) -> _Session:
        from ..errors import unknown_name
        from ..runs import open_run
        from .jobs import (JobRunner, JobStore, ProcessExecutor, RayExecutor, SerialExecutor,
                           require_ray)

        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ConfigError(f"workers: {workers!r} must be a whole number, at least 1.")
        if backend not in ("local", "ray"):
            raise unknown_name("backend", backend, ("local", "ray"))
        if address is not None and backend != "ray":
            raise ConfigError(f"address: {address!r} is a Ray cluster's address and applies "
                              "to --backend ray only; add --backend ray or drop --address.")
        if backend == "ray":
            require_ray()  # before the run directory is touched: a missing Ray writes nothing
        setup = open_run(command, cfg if cfg is not None else ExperimentConfig(), out=out,
                         fresh=fresh, analysis=analysis, variants=variants, source=source)
        side = getattr(analysis, "side_by_side", "off") if analysis is not None else "off"
        if side == "on" and (workers > 1 or backend == "ray"):
            other = "--backend ray" if backend == "ray" else f"--workers {workers}"
            raise ConfigError(f"side_by_side: 'on' trains the fits together in this process; "
                              f"it cannot with {other}. Drop one of them (--side-by-side auto "
                              "is the default).")
        if backend == "ray":  # workers > 1 caps the fits running at once on the cluster
            executor: Any = RayExecutor(address, workers=workers if workers > 1 else None)
        else:
            executor = SerialExecutor(side) if workers == 1 else ProcessExecutor(workers)
        runner = JobRunner(JobStore(setup.run_dir), setup.data, executor)
        return cls(command, setup, runner, progress, dry_run, fresh)

    @property
    def store(self) -> Any:
        return self.runner.store

    @property
    def cfg(self) -> ExperimentConfig:
        return self.setup.cfg

    @property
    def data(self) -> Any:
        return self.setup.data

    @property
    def run_dir(self) -> Path:
        return self.setup.run_dir

    def start(self) -> None:
        """Prepare the run directory and write the config and split (not on a dry run)."""
        if not self.dry_run:
            self.setup.prepare(fresh=self.fresh)
            self.setup.write()

    def execute(self, jobs: list) -> None:
        """Run every job (deduplicated); with dry_run, stop with the plan instead. The header
        says how many fits there are and the time range to train those not stored."""
        from .jobs import (ProcessExecutor, RayExecutor, estimate_seconds, plan_summary,
                           result_steps)

        unique = _dedupe(jobs)
        todo = [j for j in unique if not self.store.done(j)]
        ex = self.runner.executor
        at_once, threads = 1, None
        if isinstance(ex, ProcessExecutor):
            at_once, threads = ex.workers, ex.threads
        elif isinstance(ex, RayExecutor):  # its tasks train with ex.threads threads each
            at_once, threads = ex.fits_at_once() or 1, ex.threads
        plan = getattr(ex, "plan", None)  # which fits train side by side, decided now
        est = estimate_seconds(todo, self.data, workers=at_once, threads=threads,
                               step_factors=plan(todo, self.data) if plan else None)
        for note in self.data.notes:
            print(f"note: {note}")
        header = (f"{self.data.summary()}\nrun directory: {self.run_dir}\n"
                  f"{len(unique)} fits planned, {len(unique) - len(todo)} already stored, "
                  f"{len(todo)} to train" + (f"; estimated {est}" if todo else ""))
        if self.dry_run:
            rows = plan_summary(unique, self.store, est)
            for r in rows:
                r["n_train"] = r["n_train"] if r["n_train"] is not None else len(self.data.train)
            raise _DryRun(Plan(self.run_dir, rows, est.seconds, header, lo=est.lo, hi=est.hi,
                               basis=est.basis))
        print(header, flush=True)
        if todo:  # saved with the results, to hold against the time the fits took
            self.estimate = {"lo": round(est.lo, 1), "seconds": round(est.seconds, 1),
                             "hi": round(est.hi, 1), "fits": len(todo)}
        total = sum(result_steps(j, self.data) for j in unique)
        bar = _OverallBar(total, enabled=self.progress, fits=len(todo))
        self.runner.progress = bar
        try:
            self.runner.run(unique)
        finally:
            bar.finish()

    def results(self, **blocks: Any) -> Results:
        from ..config import config_to_dict
        from ..rundir import environment

        return Results(
            command=self.command, dataset=self.cfg.dataset, model=self.cfg.model,
            classes=list(self.data.classes), config=config_to_dict(self.cfg),
            analysis=self.setup.analysis.__dict__.copy() if self.setup.analysis else None,
            fits=Fits(**self.runner.counts()),
            environment=environment(seed=self.cfg.seed, device=str(self.cfg.device),
                                    precision=self.setup.precision),
            timing={"seconds": round(time.perf_counter() - self.t0, 1),
                    **({"estimate": self.estimate} if self.estimate else {}),
                    **({"side_by_side": choices} if (choices := getattr(
                        self.runner.executor, "choices", None)) else {})},
            **{k: v for k, v in blocks.items() if v is not None})


def _finish(results: Results, run_dir: Path, *, report: bool) -> Results:
    """The verdict, results.json and (with ``report``) report.html."""
    from .verdict import verdict

    results = results.replace(verdict=verdict(results))
    results = save_results(results, run_dir)
    if report:
        from ..report import render_report

        render_report(run_dir)
    return results


def _dry(fn: Any) -> Any:
    """A dry run's plan comes back as the return value, not as an exception."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _DryRun as stop:
            return stop.plan
    return wrapper


def _reference_metrics(s: _Session, ref_job: Any) -> tuple[dict[str, Any], np.ndarray]:
    """Full metrics of the reference fit (train/val/test), as its job scored them (or, for a
    job stored before jobs kept them, from its stored best/last weights)."""
    from .._io import read_json
    from ..train import build_model, evaluate, load_checkpoint

    stored = s.store.dir(ref_job) / "metrics.json"
    if stored.is_file():
        return read_json(stored), s.store.load(ref_job).test_log_probs
    ck = load_checkpoint(s.store.dir(ref_job) /
                         ("best.pt" if s.cfg.early_stopping else "last.pt"))
    model = build_model(s.cfg, s.data)
    model.load_state_dict(ck["model"])
    metrics, lps = evaluate(model, s.data, device=s.cfg.device, return_log_probs=True,
                            workers=s.cfg.loader_workers)
    return metrics, lps["test"]


def _steps_of(fit_dir: Path) -> list[dict[str, float]]:
    """A fit's per-step training loss and learning rate (its steps.csv; none for a fit stored
    before they were logged)."""
    from ..train._checkpoint import read_steps_csv

    try:
        return read_steps_csv(fit_dir / "steps.csv")
    except (OSError, ValueError):
        return []


@_dry
def diagnose(config: ExperimentConfig | None = None, *, profile: str | None = None,
             target_error: float | None = None, workers: int = 1, out: str | Path | None = None,
             progress: bool = True, rounds: int | None = None, sampling: str | None = None,
             fraction: float | None = None, label_noise: float | None = None,
             analysis: AnalysisConfig | None = None, fresh: bool = False,
             dry_run: bool = False, report: bool = True, source: Any = None,
             backend: str = "local", address: str | None = None) -> Results:
    """The main job: a reference fit, a learning curve, a decomposition (and with the thorough
    profile a width complexity curve) → a verdict with ranked remedies.

    Args:
        config: the experiment (default ``ExperimentConfig()``: Fashion-MNIST, the CNN).
        profile: ``"quick"`` (default) or ``"thorough"``.
        target_error: the best achievable error (default: a built-in dataset's best known).
        workers: fits trained in this many local processes (1: in this process); with
            ``backend="ray"``, at most this many fits at once on the cluster (1: as many as
            its CPUs hold, each fit reserving ``config.threads`` CPUs, default 1).
        backend: ``"local"`` (this machine) or ``"ray"`` (fits as Ray tasks; needs the extra
            ``biasvar[ray]``): the same fits and results, elsewhere.
        address: the Ray cluster to use (``"auto"``, ``"ray://host:10001"``); default: a
            local cluster is started. Only with ``backend="ray"``.
        out: the run directory (default ``runs/diagnose-<dataset>-<model>-<hash>``); running
            again with the same options trains only what is missing.
        rounds, sampling, fraction, label_noise: the decomposition's options (default: the
            profile's).
        analysis: all analysis options at once (keyword arguments given here win).
        fresh: discard what the run directory holds and start over.
        dry_run: return the :class:`Plan` (fits and time estimate) without training.
        report: also write report.html.
        source: a ``torch.utils.data.Dataset`` to use as the data (see ``load_data``).

    Returns:
        :class:`Results` with ``verdict``, ``reference``, ``learning_curve``,
        ``decomposition`` (and ``complexity_curve``), saved as ``run_dir/results.json``.
    """
    from ..train import most_confidently_wrong
    from .._io import atomic_write_json
    from .analyses import (complexity_curve as _cx, complexity_jobs, decomposition,
                           decomposition_jobs, gap_diagnosis, learning_curve_jobs,
                           reference_job, smallest_curve_size, summarize_learning_curve)
    from .targets import has_known_target, target_error as _target

    a = resolve_analysis("diagnose", _options(analysis, profile=profile, rounds=rounds,
                                              sampling=sampling, fraction=fraction,
                                              label_noise=label_noise,
                                              target_error=target_error))
    prof = PROFILES.get(a.profile)
    cfg = config if config is not None else ExperimentConfig()
    if (a.target_error is None and not has_known_target(cfg.dataset)
            and a.sampling == "seed"):
        raise ConfigError("target_error: this dataset has no published best error, and "
                          "--sampling seed trains every model on all images, so no "
                          "out-of-sample predictions estimate its label noise; pass "
                          "--target-error E, or use --sampling split (the default).")
    note = prof.note
    s = _Session.open("diagnose", cfg, a, out=out, fresh=fresh, workers=workers,
                      progress=progress, dry_run=dry_run, source=source, backend=backend,
                      address=address)
    known = (_target(cfg.dataset, a.target_error)
             if a.target_error is not None or has_known_target(cfg.dataset) else None)
    s.start()
    cfg, data = s.cfg, s.data
    n = len(data.train)
    noise = a.label_noise
    refs = [reference_job(cfg, cfg.seed + k, label_noise=noise) for k in prof.ref_seeds]
    dec_opts = dict(rounds=a.rounds, sampling=a.sampling, fraction=a.fraction,
                    label_noise=noise, hold_steps=True)
    dec_jobs = decomposition_jobs(cfg, data, **dec_opts)
    # fits shared with the learning curve: the references at n, split models at n/R
    shared = {n: refs}
    if a.sampling == "split":
        shared[int(round(n / a.rounds))] = dec_jobs
    sizes = sorted({max(1, int(round(f * n))) for f in prof.lc_fractions} | set(shared))
    smallest = smallest_curve_size(cfg, data)
    if sizes[0] < smallest:  # a rare class: the smallest subsets would leave it out
        dropped = [z for z in sizes if z < smallest]
        sizes = sorted({z for z in sizes if z >= smallest} | {smallest})
        note += (f" Learning-curve sizes {', '.join(map(str, dropped))} were replaced by "
                 f"{smallest}, the smallest subset that holds every class.")
    own = [z for z in sizes if z not in shared]
    lc_jobs = learning_curve_jobs(cfg, data, sizes=own,
                                  seeds=[cfg.seed + k for k in prof.lc_seeds], label_noise=noise)
    cx_jobs, cx_values, complexity = [], None, prof.complexity
    if complexity and getattr(cfg, complexity[0]) is None:  # e.g. linear, or a user factory
        note += (f" The {complexity[0]} complexity curve was skipped: model {cfg.model!r} has "
                 f"no {complexity[0]} (give --{complexity[0]} when its builder takes one).")
        complexity = None
    cx_seeds = [cfg.seed]
    if complexity:
        param, mults = complexity
        cx_values = sorted({max(1, int(round(getattr(cfg, param) * m))) for m in mults})
        cx_jobs = complexity_jobs(cfg, data, param=param, values=cx_values, seeds=cx_seeds,
                                  label_noise=noise)
    s.execute([*refs, *dec_jobs, *lc_jobs, *cx_jobs])

    ref, ref_res = refs[0], s.runner.run(refs[:1])[0]
    metrics, test_lp = _reference_metrics(s, ref)
    points = [(n, j, r) for j, r in zip(refs, s.runner.run(refs))]
    if a.sampling == "split":
        points += [(int(round(n / a.rounds)), j, r)
                   for j, r in zip(dec_jobs, s.runner.run(dec_jobs))]
    points += [(int(j.n_train), j, r) for j, r in zip(lc_jobs, s.runner.run(lc_jobs))]
    lc = summarize_learning_curve(points, n_max=n)
    dec = decomposition(s.runner, cfg, data, **dec_opts)
    cx = (_cx(s.runner, cfg, data, param=complexity[0], values=cx_values, seeds=cx_seeds,
              label_noise=noise) if complexity else None)
    floor = _noise_floor(s, dec_jobs, noise)
    if known is not None:
        target = known
    elif floor is not None:
        from .noise import noise_target

        target = noise_target(floor).to_dict()
    else:
        raise ConfigError("target_error: this dataset has no published best error and its "
                          "label noise could not be estimated (no model left images out); "
                          "pass --target-error E.")
    gap = gap_diagnosis(ref_res, target)
    results = s.results(
        profile=a.profile, profile_note=note,
        reference=Reference.from_dict({**metrics, "history": ref_res.history,
                                       "steps": _steps_of(s.store.dir(ref))}),
        target_error=TargetError.from_dict(gap["target_error"]),
        avoidable_bias=gap["avoidable_bias"], variance_gap=gap["variance_gap"],
        train_loss_still_falling=LossTrend.from_dict(gap["train_loss_still_falling"]),
        learning_curve=lc, complexity_curve=cx, decomposition=dec, noise_floor=floor)
    atomic_write_json(s.run_dir / "metrics.json", metrics)
    atomic_write_json(s.run_dir / "gallery.json", most_confidently_wrong(data, test_lp))
    return _finish(results, s.run_dir, report=report)


def _noise_floor(s: _Session, jobs: list, label_noise: float) -> Any:
    """The label-noise rate of the training labels (as the models saw them), estimated from the
    decomposition models' out-of-sample predictions; writes suspects.csv and suspects.json.
    None when no model left any image out."""
    from .analyses import out_of_sample, training_labels
    from .noise import estimate_noise_floor, save_suspects, suspect_gallery

    probs, rows = out_of_sample(s.store, jobs, len(s.data.train))
    if rows.size == 0:
        return None
    labels = training_labels(s.data, label_noise, s.cfg.split_seed)
    names = s.data.train.names
    models = sum(1 for j in jobs if j.score_train)
    # the bootstrap re-runs confident learning per resample: fewer resamples on large sets
    # (74 on Fashion-MNIST's 54,000 images) keep it to seconds
    n_boot = max(50, min(200, int(4e6 / rows.size)))
    floor, issues = estimate_noise_floor(
        probs, labels[rows], classes=list(s.data.classes), rows=rows, n_boot=n_boot,
        files=[names[i] for i in rows] if names is not None else None, seed=s.cfg.seed,
        predictions=f"out-of-sample predictions of the decomposition's {models} models "
                    "(each image scored by the models that did not train on it)")
    return save_suspects(s.run_dir, floor, issues, suspect_gallery(s.data, floor.suspects))


@_dry
def learning_curve(config: ExperimentConfig | None = None, *,
                   sizes: str | Sequence[float] | None = None, seeds: int | None = None,
                   workers: int = 1,
                   out: str | Path | None = None, progress: bool = True,
                   analysis: AnalysisConfig | None = None, fresh: bool = False,
                   dry_run: bool = False, report: bool = True, source: Any = None,
                   backend: str = "local", address: str | None = None) -> Results:
    """Train and validation error against the training-set size: ``seeds`` fits per size on
    nested stratified subsets, and a power law err(n) ≈ a·n^(−b) + c fitted to them.

    ``sizes`` are counts (``[500, 1000]``) or fractions (``"0.1,0.5,1"``); the other arguments
    are those of :func:`diagnose`. Returns :class:`Results` with ``learning_curve``.
    """
    from .analyses import learning_curve_jobs, parse_sizes, summarize_learning_curve

    if sizes is not None and not isinstance(sizes, str):
        sizes = ",".join(str(x) for x in sizes)
    a = resolve_analysis("learning", _options(analysis, sizes=sizes, seeds=seeds))
    cfg = resolve(config if config is not None else ExperimentConfig())
    seed_list = list(range(cfg.seed, cfg.seed + a.seeds))
    s = _Session.open("curve-learning", cfg, a, out=out, fresh=fresh, workers=workers,
                      progress=progress, dry_run=dry_run, source=source, backend=backend,
                      address=address)
    s.start()
    size_list = parse_sizes(a.sizes, len(s.data.train))
    jobs = learning_curve_jobs(s.cfg, s.data, sizes=size_list, seeds=seed_list)
    s.execute(jobs)
    lc = summarize_learning_curve([(j.n_train or len(s.data.train), j, r)
                                   for j, r in zip(jobs, s.runner.run(jobs))],
                                  n_max=len(s.data.train))
    return _finish(s.results(learning_curve=lc), s.run_dir, report=report)


@_dry
def complexity_curve(config: ExperimentConfig | None = None, *, param: str | None = None,
                     values: str | Sequence[Any] | None = None, seeds: int | None = None,
                     rounds: int | None = None, sampling: str | None = None,
                     fraction: float | None = None, label_noise: float | None = None,
                     workers: int = 1,
                     out: str | Path | None = None, progress: bool = True,
                     analysis: AnalysisConfig | None = None, fresh: bool = False,
                     dry_run: bool = False, report: bool = True,
                     source: Any = None, backend: str = "local",
                     address: str | None = None) -> Results:
    """Train and validation error against one knob (``param``, a name of
    :data:`biasvar.knobs.KNOBS`) at each of ``values``, ``seeds`` fits each; with ``rounds`` ≥
    2 also the decomposition at each value. Returns :class:`Results` with
    ``complexity_curve``."""
    from .analyses import complexity_configs, complexity_curve as _cx, complexity_jobs

    if values is not None and not isinstance(values, str):
        values = ",".join(str(v) for v in values)
    a = resolve_analysis("complexity", _options(
        analysis, param=param, values=values, seeds=seeds, rounds=rounds, sampling=sampling,
        fraction=fraction, label_noise=label_noise))
    cfg = resolve(config if config is not None else ExperimentConfig())
    seed_list = list(range(cfg.seed, cfg.seed + a.seeds))
    _, variants = complexity_configs(cfg, a.param, a.values)
    s = _Session.open("curve-complexity", cfg, a, out=out, fresh=fresh, workers=workers,
                      progress=progress, dry_run=dry_run, variants=variants, source=source,
                      backend=backend, address=address)
    s.start()
    opts = dict(param=a.param, values=a.values, seeds=seed_list, rounds=a.rounds,
                sampling=a.sampling, fraction=a.fraction, label_noise=a.label_noise)
    s.execute(complexity_jobs(s.cfg, s.data, **opts))
    cc = _cx(s.runner, s.cfg, s.data, **opts)
    return _finish(s.results(complexity_curve=cc), s.run_dir, report=report)


@_dry
def decompose(config: ExperimentConfig | None = None, *, rounds: int | None = None,
              sampling: str | None = None, fraction: float | None = None,
              label_noise: float | None = None, workers: int = 1, out: str | Path | None = None, progress: bool = True,
              analysis: AnalysisConfig | None = None, fresh: bool = False,
              dry_run: bool = False, report: bool = True, source: Any = None,
              backend: str = "local", address: str | None = None) -> Results:
    """Bias, variance and net variance (0-1, squared error, cross-entropy) of ``rounds`` models
    (default 5) trained on resampled data (``sampling``: bootstrap, split, subsample, seed),
    with 95 % intervals over test points and standard errors over models."""
    from .analyses import decomposition, decomposition_jobs

    a = resolve_analysis("decompose", _options(
        analysis, rounds=rounds, sampling=sampling, fraction=fraction, label_noise=label_noise))
    s = _Session.open("decompose", config, a, out=out, fresh=fresh, workers=workers,
                      progress=progress, dry_run=dry_run, source=source, backend=backend,
                      address=address)
    s.start()
    opts = dict(rounds=a.rounds, sampling=a.sampling, fraction=a.fraction,
                label_noise=a.label_noise)
    s.execute(decomposition_jobs(s.cfg, s.data, **opts))
    dec = decomposition(s.runner, s.cfg, s.data, **opts)
    return _finish(s.results(decomposition=dec), s.run_dir, report=report)


def decompose_predictions(log_probs: Any, labels: Any, *, classes: Sequence[str] | None = None,
                          sampling: str = "bootstrap", n_boot: int = 1000, seed: int = 0,
                          out: str | Path | None = None, source: str | None = None,
                          report: bool = True) -> Results:
    """The decomposition of predictions made elsewhere: ``log_probs`` (R × m × K
    log-probabilities of R models on the same m test points) and ``labels`` (m). Nothing is
    trained. With ``out``, writes results.json (and report.html) there."""
    from ._formulas import decompose as _decompose
    from ._results import Decomposition

    lp = np.asarray(log_probs)
    names = list(classes) if classes else None
    dec = Decomposition.from_dict(_decompose(lp, np.asarray(labels), classes=names,
                                             sampling=sampling, n_boot=n_boot, seed=seed))
    k = lp.shape[2]
    results = Results(command="decompose", source=source,
                      classes=names or [str(i) for i in range(k)], decomposition=dec)
    from .verdict import verdict

    results = results.replace(verdict=verdict(results))
    if out is None:
        return results
    Path(out).mkdir(parents=True, exist_ok=True)
    results = save_results(results, out)
    if report:
        from ..report import render_report

        render_report(Path(out))
    return results
