"""What a search will cost before it runs (``tune --dry-run``): nothing is written.

A trial's time depends on where it lands in the space (a width-64, depth-4 CNN trains far slower
than a width-8 one), so the plan draws the points a search would try (the whole grid; else the
starting config, then points drawn at random from the space, seeded) and costs each trial's
``--seeds`` fits with the analyses' fit-time model
(:func:`~biasvar.analysis.jobs.estimate_seconds`: each distinct configuration's training step and
inference timed here). With ``--diagnose`` it adds the quick diagnosis of the starting config and
the range the best one's may take (from the cheapest to the dearest point drawn).

It is an upper bound for a pruned search (a pruned trial stops after half its schedule or
later) and, for TPE, a guess: after its first random trials TPE concentrates where errors are
low, which may be cheaper or dearer than the average point.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from typing import Any

from ..config import ExperimentConfig
from ._space import Space


@dataclass
class TunePlan:
    """The cost of a search: each point's trial seconds (central, lo, hi), the search's total
    range over ``workers``, and with ``--diagnose`` the diagnoses' ranges. ``seconds``/``lo``/
    ``hi`` include the diagnoses."""

    header: str
    trials: int | None
    seeds: int
    workers: int
    points: list[tuple[dict[str, Any], float, float, float]] = field(default_factory=list)
    search: tuple[float, float, float] = (0.0, 0.0, 0.0)
    diagnose_start: tuple[float, float] | None = None
    diagnose_best: tuple[float, float] | None = None
    basis: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.search[0] + sum(0.5 * (a + b) for a, b in self._diagnoses())

    @property
    def lo(self) -> float:
        return self.search[1] + sum(a for a, _ in self._diagnoses())

    @property
    def hi(self) -> float:
        return self.search[2] + sum(b for _, b in self._diagnoses())

    def _diagnoses(self) -> list[tuple[float, float]]:
        return [d for d in (self.diagnose_start, self.diagnose_best) if d is not None]

    def __str__(self) -> str:
        from ..analysis.jobs import format_range

        per = sorted(p[1] for p in self.points)
        lines = [self.header]
        if per:
            med = format_range(per[len(per) // 2], per[len(per) // 2]).split("–")[1]
            lines.append(f"a trial ({self.seeds} fit{'s' if self.seeds > 1 else ''}): "
                         f"{format_range(per[0], per[-1])} over the {len(per)} points below, "
                         f"median {med}")
        what = (f"{self.trials} trials" if self.trials is not None
                else "the trials started within --timeout")
        if self.trials is not None:
            lines.append(f"{what}"
                         + (f" on {self.workers} workers" if self.workers > 1 else "")
                         + f": {format_range(self.search[1], self.search[2])}")
        if self.diagnose_start is not None:
            lines.append(f"--diagnose: the starting config {format_range(*self.diagnose_start)}"
                         + ("" if self.diagnose_best is None else
                            f", the best one {format_range(*self.diagnose_best)} (cheapest to "
                            "dearest point)"))
        if self.trials is not None:
            lines.append(f"in all: {format_range(self.lo, self.hi)}")
        lines += [f"note: {n}" for n in self.notes]
        if self.basis:
            lines.append(self.basis)
        if self.points:
            names = list(self.points[0][0])
            lines += ["", "  ".join([*(f"{n:>10}" for n in names), f"{'est. s':>8}"])]
            for params, mid, _, _ in self.points:
                lines.append("  ".join([*(f"{_short(params[n]):>10}" for n in names),
                                        f"{mid:>8.0f}"]))
        return "\n".join(lines)


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _points(sp: Space, cfg: ExperimentConfig, sampler: str, n: int) -> list[dict[str, Any]]:
    """The points a search would try: the grid in order; else the starting config (when it lies
    in the space) and points drawn at random, seeded from the config's seed."""
    if sampler == "grid":
        grid = sp.grid()
        names = list(grid)
        return [dict(zip(names, combo))
                for combo in itertools.islice(itertools.product(*grid.values()), n)]
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=int(cfg.seed)))
    defaults = sp.defaults(cfg)
    out = [defaults] if sp.contains(defaults) else []
    dists = sp.distributions()
    while len(out) < n:
        t = study.ask(dists)
        out.append(dict(t.params))
        study.tell(t, 0.0)
    return out


#: points drawn when the number of trials is not known (--timeout alone)
SAMPLE_POINTS = 12


def plan_tune(cfg: ExperimentConfig, sp: Space, *, sampler: str, trials: int | None,
              seeds: int, workers: int, diagnose: bool, pruner: str) -> TunePlan:
    """The plan of ``tune(..., dry_run=True)``; see the module's docstring."""
    from ..analysis.jobs import BUSY_CORES, estimate_seconds
    from ..data import load_data
    from ._objective import apply_params, trial_jobs

    data = load_data(cfg)
    n = trials if trials is not None else SAMPLE_POINTS
    points = _points(sp, cfg, sampler, n)
    threads = cfg.threads or (None if workers == 1 else
                              max(1, (os.cpu_count() or 1) // workers))
    costed, basis, busy = [], [], []
    for p in points:
        est = estimate_seconds(trial_jobs(cfg, p, seeds=seeds), data, workers=1,
                               threads=threads)
        costed.append((p, est.seconds, est.lo, est.hi))
        basis.append(est.basis)
        busy.append(est.others_cores or 0.0)
    totals = [sum(c[i] for c in costed) for i in (1, 2, 3)]
    longest = [max((c[i] for c in costed), default=0.0) for i in (1, 2, 3)]
    search = tuple(max(t / workers, m) for t, m in zip(totals, longest))
    header = (f"{data.summary()}\ntune plan (dry run: nothing trained or written): space "
              f"{sp.name or 'given'} ({', '.join(sp)}), {sampler}, "
              f"{trials if trials is not None else 'a --timeout of'} trials × {seeds} "
              f"seed{'s' if seeds > 1 else ''}, pruner {pruner}")
    plan = TunePlan(header, trials, seeds, workers, costed, search)  # type: ignore[arg-type]
    notes = []
    if pruner != "none":
        notes.append("an upper bound: a pruned trial stops after half its schedule or later")
    if sampler == "tpe" and trials is not None and trials > 10:
        notes.append("TPE draws its first 10 trials at random, then concentrates where errors "
                     "are low: the later trials may cost more or less than these points")
    if diagnose:
        from ..analysis import diagnose as run_diagnose

        def diag(c: ExperimentConfig) -> tuple[float, float]:
            pl = run_diagnose(c, profile="quick", dry_run=True, progress=False)
            return float(pl.lo), float(pl.hi)

        plan.diagnose_start = diag(cfg)
        if costed:
            cheap = min(costed, key=lambda c: c[1])[0]
            dear = max(costed, key=lambda c: c[1])[0]
            plan.diagnose_best = (diag(apply_params(cfg, cheap))[0],
                                  diag(apply_params(cfg, dear))[1])
    if max(busy, default=0.0) >= BUSY_CORES:
        notes.append(f"timed while other processes kept {max(busy):.1f} of "
                     f"{os.cpu_count() or 1} cores busy: the trials speed up or slow down as "
                     "that load changes")
    plan.notes = notes
    plan.basis = next((b for b in basis if b), "")
    return plan
