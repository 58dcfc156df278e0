"""Ensembles, with the decomposition's prediction of their gain checked on fresh members.

``biasvar ensemble`` (and :func:`ensemble`) trains K members and combines them into one model,
and holds the measured gain against the one the bias-variance decomposition predicts:

- ``kind="deep"``: K seeds on the full training set (deep ensembles, Lakshminarayanan et al.
  2017); predicted by a decomposition with ``sampling="seed"``.
- ``kind="bagging"``: K bootstrap samples of the training set (Breiman 1996); predicted by a
  decomposition with ``sampling="bootstrap"``.
- ``kind="snapshot"``: one run whose epochs are split into K cosine cycles, the weights kept at
  the end of each (snapshot ensembles, Huang et al. 2017: K models for the price of one). The
  prediction comes from the K snapshots of another run (seed ``seed``), decomposed like K
  models; the measured gain from the snapshots of a fresh run (seed ``seed + 1000``).
  ``combine="weights"`` averages the snapshots' *weights* into one model instead and
  re-estimates its batch-norm statistics on the training images (stochastic weight averaging
  over the cycles' ends, Izmailov et al. 2018): one model's inference cost; what the
  decomposition predicts for it is the gain of the snapshots' ensemble, which SWA approximates.

The prediction comes from the decomposition's own R models (default R = K): the mean model's
test loss minus that of the ensemble of those R models, which for the cross-entropy of an
ensemble averaging log-probabilities *is* the CE variance term (exactly, by construction). On
those same models the match is no test; so the K members are trained fresh (seeds
``seed + 1000 …``, other bootstrap samples) and their ensemble's gain is measured on the same
test points. Both gains get a 95 % interval from one bootstrap over test points (paired: the
same resampled points for the members' mean and the ensemble), which says how much the numbers
would move with another test set of this size, not with other models.

``combine``: ``"logprob"`` averages log-probabilities and renormalises (the ensemble the CE
decomposition describes), ``"prob"`` averages probabilities. The ensemble is one artifact,
``ensemble.json`` in the run directory (its members' fits and how they combine):
:func:`load_ensemble` gives an ``nn.Module`` that :func:`biasvar.predict`,
:func:`biasvar.evaluate` and ``biasvar evaluate RUN_DIR`` take like a single model.
"""
from __future__ import annotations

import sys
import time
import types
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_write_bytes
from ._outcome import CommandResults
from .config import ExperimentConfig
from .errors import ConfigError, unknown_name
from .models._ensemble import COMBINES, Ensemble, combine_log_probs
from .runs import load_ensemble

__all__ = ["ensemble", "EnsembleResults", "Ensemble", "load_ensemble", "combine_log_probs",
           "member_jobs", "KINDS", "COMBINES"]

#: kind → the decomposition's sampling (a snapshot run's models differ by where along one
#: training run they were taken: the data and the seed are the same, as with "seed")
KINDS = {"deep": "seed", "bagging": "bootstrap", "snapshot": "seed"}
#: ways to combine members: the probability averages of every kind, and for snapshots their
#: weights (SWA)
WEIGHTS = "weights"
SWA_FILE = "swa.pt"

#: members are trained with seeds seed + MEMBER_SEED … : never the decomposition's (seed + r)
MEMBER_SEED = 1000
ENSEMBLE_FILE = "ensemble.json"
SCHEMA_VERSION = 1


def _pointwise(lp: np.ndarray, y: np.ndarray, how: str) -> dict[str, np.ndarray]:
    """Per test point: the members' mean error and CE, the ensemble's error and CE."""
    rows = np.arange(len(y))
    ens = combine_log_probs(lp, how)
    return {"member_error": (np.argmax(lp, axis=2) != y[None]).mean(axis=0).astype(np.float64),
            "member_ce": -lp[:, rows, y].astype(np.float64).mean(axis=0),
            "ensemble_error": (np.argmax(ens, axis=1) != y).astype(np.float64),
            "ensemble_ce": -ens[rows, y]}


def gain(log_probs: np.ndarray, labels: np.ndarray, *, how: str = "logprob",
         n_boot: int = 1000, seed: int = 0,
         combined: np.ndarray | None = None) -> dict[str, Any]:
    """The mean member's and the ensemble's test error and cross-entropy, and the gain (mean
    member − ensemble), each ``{"value", "ci95"}`` from one paired bootstrap over test points.
    ``combined``: the ensemble's own (m, C) log-probabilities (an averaged-weights model),
    instead of combining the members' by ``how``."""
    y = np.asarray(labels, dtype=np.int64)
    pts = _pointwise(log_probs, y, how if combined is None else "logprob")
    if combined is not None:
        rows = np.arange(len(y))
        c = np.asarray(combined, dtype=np.float64)
        pts["ensemble_error"] = (np.argmax(c, axis=1) != y).astype(np.float64)
        pts["ensemble_ce"] = -c[rows, y]
    series = {"member_error": pts["member_error"], "ensemble_error": pts["ensemble_error"],
              "gain_error": pts["member_error"] - pts["ensemble_error"],
              "member_ce": pts["member_ce"], "ensemble_ce": pts["ensemble_ce"],
              "gain_ce": pts["member_ce"] - pts["ensemble_ce"]}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), size=(int(n_boot), len(y)))
    out: dict[str, Any] = {}
    for k, v in series.items():
        means = v[idx].mean(axis=1)
        lo, hi = np.quantile(means, [0.025, 0.975])
        out[k] = {"value": float(v.mean()), "ci95": [float(lo), float(hi)]}
    per_member = (np.argmax(log_probs, axis=2) != y[None]).mean(axis=1)
    out["member_errors"] = [float(e) for e in per_member]
    return out


def member_jobs(cfg: ExperimentConfig, data: Any, *, members: int, kind: str) -> list:
    """K fresh fit jobs: seeds ``seed + MEMBER_SEED + k``; for bagging, bootstrap samples drawn
    with their own generator (never the decomposition's samples); for snapshots, one job of K
    cycles with seed ``seed + MEMBER_SEED``."""
    from .analysis.jobs import FitJob

    if kind not in KINDS:
        raise unknown_name("kind", kind, tuple(KINDS))
    if kind == "snapshot":
        return [FitJob(replace(cfg, snapshots=members), int(cfg.seed) + MEMBER_SEED,
                       tag=f"ensemble: {members} snapshots")]
    n = len(data.train)
    rng = np.random.default_rng([int(cfg.split_seed), MEMBER_SEED])
    jobs = []
    for k in range(members):
        idx = rng.integers(0, n, size=n) if kind == "bagging" else None
        jobs.append(FitJob(cfg, int(cfg.seed) + MEMBER_SEED + k, idx,
                           tag=f"ensemble {kind} member {k + 1}/{members}"))
    return jobs


# -- the command --------------------------------------------------------------------------------

class EnsembleResults(CommandResults):
    """What ``ensemble`` measured (the dict written to ``ensemble.json``) and where."""

    @property
    def measured(self) -> dict[str, Any]:
        return self.doc["measured"]

    @property
    def predicted(self) -> dict[str, Any]:
        return self.doc["predicted"]


def _fmt_term(t: dict[str, Any], scale: float = 100.0, unit: str = "%", digits: int = 2) -> str:
    lo, hi = t["ci95"]
    return (f"{scale * t['value']:.{digits}f}{unit} [{scale * lo:.{digits}f}, "
            f"{scale * hi:.{digits}f}]")


def _summary(doc: dict[str, Any], run_dir: Path, report: Path | None) -> list[str]:
    from .report._ensemble import SWA_NOTE, sources

    m, p = doc["measured"], doc["predicted"]
    k = doc["members"]
    meas, pred = sources(doc)
    how = ("weights averaged (SWA: one model)" if doc["combine"] == WEIGHTS
           else f"{doc['combine']} averaged")
    lines = [f"ensemble: {k} {doc['kind']} members ({how}), test set of "
             f"{doc['n_test']} images; 95% intervals over test points",
             f"  mean member  error {_fmt_term(m['member_error'])}   "
             f"CE {_fmt_term(m['member_ce'], 1, '', 4)}",
             f"  ensemble     error {_fmt_term(m['ensemble_error'])}   "
             f"CE {_fmt_term(m['ensemble_ce'], 1, '', 4)}",
             *([f"  last snapshot (the run's own final model) error "
                f"{100 * m['member_errors'][-1]:.2f}%"] if doc["kind"] == "snapshot" else []),
             f"  gain, measured on {meas}: error {_fmt_term(m['gain_error'], 100, ' pts')}"
             f"   CE {_fmt_term(m['gain_ce'], 1, '', 4)}",
             f"  gain, predicted by {pred}: error "
             f"{_fmt_term(p['gain_error'], 100, ' pts')}   CE {_fmt_term(p['gain_ce'], 1, '', 4)}",
             f"  {doc['agreement']}",
             *[f"  note: {n}" for n in doc.get("notes") or []],
             *([f"  note: {SWA_NOTE}"] if doc["combine"] == WEIGHTS else []),
             f"  ensemble: {run_dir / ENSEMBLE_FILE}  (`biasvar evaluate {run_dir}`)"]
    if report is not None:
        lines.append(f"  report: {report}")
    return lines


def _agreement(pred: dict[str, Any], meas: dict[str, Any]) -> str:
    """Whether the measured gain lies in the predicted one's interval, and the other way."""
    parts = []
    for key, name in (("gain_error", "error"), ("gain_ce", "cross-entropy")):
        p, m = pred[key], meas[key]
        inside = p["ci95"][0] <= m["value"] <= p["ci95"][1]
        overlap = not (m["ci95"][1] < p["ci95"][0] or p["ci95"][1] < m["ci95"][0])
        parts.append(f"{name}: the measured gain is {'inside' if inside else 'outside'} the "
                     f"predicted interval" + ("" if inside else
                                              f" (the intervals {'overlap' if overlap else 'do not overlap'})"))
    return "prediction check — " + "; ".join(parts)


def _check(cfg: ExperimentConfig, members: int, kind: str, combine: str,
           rounds: int | None) -> None:
    """Refuse what the ensemble cannot mean, before anything is written."""
    from .train._fit import check_snapshots

    if kind not in KINDS:
        raise unknown_name("kind", kind, tuple(KINDS))
    if combine not in (*COMBINES, WEIGHTS):
        raise unknown_name("combine", combine, (*COMBINES, WEIGHTS))
    for name, v, lo in (("members", members, 2), ("rounds", rounds, 2)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < lo):
            raise ConfigError(f"{name}: {v!r}; an ensemble needs at least {lo} models "
                              "(5 is typical).")
    if combine == WEIGHTS and kind != "snapshot":
        raise ConfigError(f"combine: {WEIGHTS!r} averages weights, which only models taken "
                          "from one training run share a basin for (--kind snapshot); "
                          f"{kind} members are independent. Use --combine logprob or prob, or "
                          "--kind snapshot.")
    if kind != "snapshot" and cfg.snapshots:
        raise ConfigError(f"snapshots: {cfg.snapshots} would make each {kind} member a run of "
                          "cycles; for a snapshot ensemble give --kind snapshot --members "
                          f"{cfg.snapshots}, else leave --snapshots out.")
    if kind == "snapshot":
        if cfg.snapshots and cfg.snapshots != members:
            raise ConfigError(f"snapshots: {cfg.snapshots} differs from --members {members}; "
                              "a snapshot ensemble's members are its cycles: leave "
                              "--snapshots out.")
        if rounds is not None and rounds != members:
            raise ConfigError(f"rounds: {rounds}; a snapshot ensemble's prediction comes "
                              f"from the {members} snapshots of another run: leave --rounds "
                              "out.")
        check_snapshots(replace(cfg, snapshots=members))


def _averaged(cfg: ExperimentConfig, data: Any, paths: list[Path],
              device: str) -> tuple[Any, np.ndarray]:
    """The model whose weights are the mean of the checkpoints ``paths`` (SWA), its batch-norm
    statistics re-estimated on the training images; and its (m, C) test log-probabilities."""
    import torch

    from .runs import load_trained
    from .train import predict, resolve_device
    from .train._bn import adapt_batchnorm, has_batchnorm

    models = [load_trained(cfg, data, p, "the snapshot ensemble's model")[0] for p in paths]
    avg = models[0]
    states = [m.state_dict() for m in models]
    avg.load_state_dict({k: (torch.stack([st[k].float() for st in states]).mean(0)
                             .to(v.dtype) if v.is_floating_point() else v)
                         for k, v in states[0].items()})
    dev = str(resolve_device(device))
    if has_batchnorm(avg):
        avg = adapt_batchnorm(avg, data, "train", device=dev)
    return avg.cpu().eval(), predict(avg, data, "test", device=dev)


def ensemble(config: ExperimentConfig | None = None, *, members: int = 5, kind: str = "deep",
             combine: str = "logprob", rounds: int | None = None, workers: int = 1,
             out: str | Path | None = None, fresh: bool = False, progress: bool = True,
             dry_run: bool = False, report: bool = True, n_boot: int = 1000) -> Any:
    """Train ``members`` fresh models of ``config`` and combine them into one; measure the
    ensemble's test error and cross-entropy against its mean member's, beside the gain the
    bias-variance decomposition of ``rounds`` models (default: as many as ``members``)
    predicts. ``kind="snapshot"``: the members are the cycles of one run; ``combine="weights"``
    then averages their weights (SWA). See the module's docstring.

    Returns:
        :class:`EnsembleResults` (a :class:`~biasvar.analysis.Plan` with ``dry_run``); the run
        directory holds ``ensemble.json`` (the artifact and the figures), the fits and, with
        ``report``, ``report.html``.
    """
    from ._io import atomic_write_json
    from .analysis._api import _DryRun, _Session
    from .analysis.analyses import decomposition_jobs
    from .config import config_to_dict, resolve
    from .rundir import default_run_dir
    from .train import checkpoint_bytes

    t0 = time.perf_counter()
    cfg0 = resolve(config if config is not None else ExperimentConfig())
    _check(cfg0, members, kind, combine, rounds)
    rounds = members if rounds is None else rounds
    key = {"members": members, "kind": kind, "combine": combine, "rounds": rounds}
    run_dir = Path(out) if out else default_run_dir("ensemble", cfg0, extra=key)
    s = _Session.open("ensemble", cfg0, None, out=run_dir, fresh=fresh,
                      workers=workers, progress=progress, dry_run=dry_run)
    s.start()
    cfg, data = s.cfg, s.data
    sampling = KINDS[kind]
    snap = kind == "snapshot"
    if snap:  # the prediction: the snapshots of a run with the decomposition's seed
        from .analysis.jobs import FitJob

        predictors = [FitJob(replace(cfg, snapshots=members), int(cfg.seed),
                             tag=f"decomposition: {members} snapshots")]
    else:
        predictors = decomposition_jobs(cfg, data, rounds=rounds, sampling=sampling)
    fresh_members = member_jobs(cfg, data, members=members, kind=kind)
    try:
        s.execute([*predictors, *fresh_members])
    except _DryRun as stop:
        return stop.plan
    y = data.test.y.numpy()
    if snap:
        lp_pred = s.store.snapshot_log_probs(predictors[0])
        lp_mem = s.store.snapshot_log_probs(fresh_members[0])
    else:
        lp_pred = np.stack([r.test_log_probs for r in s.runner.run(predictors)])
        lp_mem = np.stack([r.test_log_probs for r in s.runner.run(fresh_members)])
    which = "best.pt" if cfg.early_stopping else "last.pt"
    if snap:
        key0 = fresh_members[0].key
        fits = [{"key": key0, "seed": fresh_members[0].seed, "snapshot": k + 1,
                 "n_train": len(data.train), "weights": f"fits/{key0}/snapshot-{k + 1}.pt"}
                for k in range(members)]
    else:
        fits = [{"key": j.key, "seed": j.seed, "n_train": len(data.train)
                 if j.train_indices is None else int(len(j.train_indices)),
                 "weights": f"fits/{j.key}/{which}"} for j in fresh_members]
    combined = None
    if combine == WEIGHTS:
        swa, combined = _averaged(cfg, data, [run_dir / f["weights"] for f in fits], cfg.device)
        from .train import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, model_spec

        atomic_write_bytes(run_dir / SWA_FILE, checkpoint_bytes({
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "kind": "final",
            "config": config_to_dict(cfg),
            "model": swa.state_dict(), "averaged": [f["weights"] for f in fits],
            **model_spec(data)}))
    how = "logprob" if combine == WEIGHTS else combine
    predicted = gain(lp_pred, y, how=how, n_boot=n_boot, seed=cfg.seed)
    measured = gain(lp_mem, y, how=how, n_boot=n_boot, seed=cfg.seed, combined=combined)
    for f, e in zip(fits, measured["member_errors"]):
        f["test_error"] = e
    from .analysis._formulas import decompose

    dec = decompose(lp_pred.astype(np.float32), y, classes=list(data.classes),
                    sampling=sampling, n_boot=n_boot, seed=cfg.seed)
    doc = {
        "schema_version": SCHEMA_VERSION, "command": "ensemble", "dataset": cfg.dataset,
        "model": cfg.model, "kind": kind, "combine": combine, "members": members,
        "rounds": rounds, "sampling": "snapshots of one run" if snap else sampling,
        "n_test": int(len(y)), "classes": list(data.classes), "config": config_to_dict(cfg),
        "member_fits": fits, **({"weights": SWA_FILE} if combine == WEIGHTS else {}),
        "measured": measured, "predicted": predicted,
        "agreement": _agreement(predicted, measured),
        "decomposition": {k: dec[k] for k in ("zero_one", "cross_entropy", "ensemble",
                                               "rounds", "sampling")},
        "timing": {"seconds": round(time.perf_counter() - t0, 1),
                   **({"estimate": s.estimate} if s.estimate else {})},
    }
    if snap:
        doc["decomposition"]["sampling"] = doc["sampling"]
        last, ens_err = measured["member_errors"][-1], measured["ensemble_error"]["value"]
        if ens_err > last:
            doc["notes"] = [
                f"The ensemble errs more than the run's own final model ({100 * ens_err:.2f}% "
                f"vs {100 * last:.2f}% for the last snapshot): the early cycles' snapshots are "
                f"weaker. Lengthen the cycles (more --epochs per snapshot: {cfg.epochs} epochs "
                f"over {members} cycles here) or take fewer snapshots."]
    from .train import most_confidently_wrong

    ens_lp = combined if combined is not None else combine_log_probs(lp_mem, combine)
    atomic_write_json(run_dir / "gallery.json", most_confidently_wrong(data, ens_lp))
    atomic_write_json(run_dir / ENSEMBLE_FILE, doc)
    page = None
    if report:
        from .report._ensemble import render_ensemble_report

        page = render_ensemble_report(run_dir)
    return EnsembleResults(doc, run_dir, page, _summary(doc, run_dir, page))


class _CallableModule(types.ModuleType):
    """``biasvar.ensemble`` is both this module and the function (as ``biasvar.tune`` is):
    ``import biasvar.ensemble`` would otherwise hide the function exported under that name."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return ensemble(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
