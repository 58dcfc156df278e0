"""CLI commands of the bias–variance engine: diagnose, curve learning|complexity, decompose."""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._io import atomic_write_json
from ..config import ExperimentConfig, resolve
from ..errors import ConfigError

__all__ = ["add_parsers", "run", "PROFILES", "Profile", "run_diagnose"]


@dataclass(frozen=True)
class Profile:
    """How much a diagnose spends. ``epochs`` caps training epochs of every fit unless
    ``--epochs`` is given; sizes are fractions of the training set."""

    epochs: int | None
    lc_fractions: tuple[float, ...]
    lc_seeds: tuple[int, ...]
    rounds: int
    sampling: str
    complexity: tuple[str, tuple[float, ...]] | None  # (param, multipliers of the reference)
    note: str


PROFILES = {
    "quick": Profile(epochs=3, lc_fractions=(1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0), lc_seeds=(0, 1),
                     rounds=4, sampling="bootstrap", complexity=None,
                     note="quick budget: {epochs} epochs per fit, 2 seeds per learning-curve "
                     "point, 4 bootstrap models. With 4 models the variance terms carry a large "
                     "model-to-model uncertainty (se_models), and short training inflates "
                     "bias; use --profile thorough to separate them more finely."),
    "thorough": Profile(epochs=None, lc_fractions=(1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0),
                        lc_seeds=(0, 1, 2), rounds=8, sampling="bootstrap",
                        complexity=("width", (0.25, 0.5, 1.0, 2.0)),
                        note="thorough budget: full training, 3 seeds per learning-curve point, "
                        "8 bootstrap models, and a width complexity curve."),
}


def _common(p: argparse.ArgumentParser, add_config_flags: Callable, run_opts: Callable) -> None:
    run_opts(p)
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="train fits in N local processes (default 1: in this process)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the planned fits and an estimated time, then stop")
    p.add_argument("--target-error", type=float, default=None, metavar="E",
                   help="best achievable error for this task (default: the best-known error of a "
                   "built-in dataset)")
    add_config_flags(p)


def _decomp_opts(p: argparse.ArgumentParser, default_rounds: int | None) -> None:
    p.add_argument("--rounds", type=int, default=default_rounds, metavar="R",
                   help="models trained on resampled data (at least 2)")
    p.add_argument("--sampling", default=None, choices=("bootstrap", "split", "subsample", "seed"),
                   help="how each model's training set is drawn (default bootstrap)")
    p.add_argument("--fraction", type=float, default=0.5,
                   help="subsample: fraction of the training set per model")
    p.add_argument("--label-noise", type=float, default=0.0, metavar="F",
                   help="flip this fraction of training labels (double-descent studies)")


def add_parsers(sub: Any, add_config_flags: Callable, run_opts: Callable) -> None:
    p = sub.add_parser("diagnose", help="the main job: gap, learning curve and decomposition → "
                       "a verdict with ranked remedies",
                       description="Is the error bias or variance, how much, and what fixes it? "
                       "Writes results.json and report.html; rerunning the same command trains "
                       "only what is missing.")
    p.add_argument("--profile", choices=tuple(PROFILES), default="quick",
                   help="quick (default, minutes) or thorough (adds a complexity curve, more "
                   "models and seeds)")
    _decomp_opts(p, None)
    _common(p, add_config_flags, run_opts)

    p = sub.add_parser("curve", help="learning curve (error vs training size) or complexity "
                       "curve (error vs a capacity/regularisation knob)")
    csub = p.add_subparsers(dest="curve", metavar="KIND", required=True)
    lp = csub.add_parser("learning", help="error vs training-set size")
    lp.add_argument("--sizes", default="0.0625,0.125,0.25,0.5,1",
                    help="training-set sizes: counts (500,1000) or fractions (0.1,0.5,1)")
    lp.add_argument("--seeds", type=int, default=2, help="seeds per size")
    _common(lp, add_config_flags, run_opts)
    cp = csub.add_parser("complexity", help="error vs width, depth, weight decay, dropout, "
                         "epochs, augmentation strength...")
    cp.add_argument("--param", required=True, help="width, depth, epochs, weight_decay, dropout, "
                    "augment_strength, l1, label_smoothing, lr")
    cp.add_argument("--values", required=True, help="comma-separated values, e.g. 8,16,32,64")
    cp.add_argument("--seeds", type=int, default=2, help="seeds per value")
    _decomp_opts(cp, 0)
    _common(cp, add_config_flags, run_opts)

    p = sub.add_parser("decompose", help="bias, variance and net variance (0-1, squared error, "
                       "cross-entropy) of models retrained on resampled data")
    _decomp_opts(p, 5)
    p.add_argument("--from-predictions", metavar="FILE.npz", default=None,
                   help="analyse predictions made elsewhere: arrays log_probs (R×m×K) and labels "
                   "(m), optional classes; nothing is trained")
    _common(p, add_config_flags, run_opts)


def _given(args: argparse.Namespace, name: str) -> bool:
    return name in vars(args)


def run(args: argparse.Namespace) -> int:
    from ..cli import config_from_args

    if args.command == "decompose" and args.from_predictions:
        return _decompose_file(args)
    cfg = config_from_args(args)
    if args.command == "diagnose":
        run_diagnose(cfg, args)
    elif args.command == "curve":
        run_curve(cfg, args)
    elif args.command == "decompose":
        run_decompose(cfg, args)
    return 0


def _decompose_file(args: argparse.Namespace) -> int:
    from .decompose import decompose, load_predictions
    from .verdict import verdict

    lp, labels, classes = load_predictions(args.from_predictions)
    out = Path(args.out) if args.out else Path(args.from_predictions).with_suffix("")
    out = out if args.out else out.parent / (out.name + "-decomposition")
    out.mkdir(parents=True, exist_ok=True)
    dec = decompose(lp, labels, classes=classes, sampling=args.sampling or "bootstrap")
    results = {"command": "decompose", "source": str(args.from_predictions),
               "classes": classes or [str(i) for i in range(lp.shape[2])], "decomposition": dec}
    results["verdict"] = verdict(results)
    atomic_write_json(out / "results.json", results)
    _print_decomposition(dec)
    _finish(out, args)
    return 0


# --------------------------------------------------------------------------------------------


def _stored_precision(run_dir: Path, cfg: ExperimentConfig) -> dict[str, Any] | None:
    """The precision an earlier (perhaps interrupted) run in ``run_dir`` chose for ``auto``, so a
    continued run finds its stored fits: timing again could choose differently (a busy machine)
    and give every job a new key."""
    from ..config import load_config

    path = run_dir / "config.yaml"
    if (cfg.precision != "auto" and cfg.channels_last != "auto") or not path.is_file():
        return None
    try:
        prev = load_config(path)
    except Exception:  # noqa: BLE001 - an unreadable old config: time again
        return None
    p = prev.precision if cfg.precision == "auto" else cfg.precision
    cl = prev.channels_last if cfg.channels_last == "auto" else cfg.channels_last
    if p == "auto" or cl == "auto":
        return None
    return {"precision": p, "channels_last": cl == "on", "timings_ms": {}, "auto": True}


class _Session:
    """Loads data, plans jobs, runs them with one overall progress bar, writes results.json."""

    def __init__(self, command: str, cfg: ExperimentConfig, args: argparse.Namespace,
                 extra_key: Any = None,
                 variants: Callable[[ExperimentConfig], list] | None = None):
        from ..data import load_data
        from ..rundir import default_run_dir, prepare_run_dir, save_splits, write_config
        from ..train import choose_precision, resolve_device
        from ..train._fit import build_model
        from ..models import is_conv
        from .jobs import JobRunner, JobStore, ProcessExecutor, SerialExecutor

        self.command, self.args = command, args
        cfg = resolve(cfg)
        self.data = load_data(cfg)
        from ..train._fit import preflight

        preflight(cfg, self.data)
        for variant in variants(cfg) if variants else ():  # e.g. a complexity curve's values:
            preflight(variant, self.data)                    # fail before anything is written
        self.run_dir = Path(args.out) if args.out else default_run_dir(command, cfg, extra=extra_key)
        # concrete precision for every job, so the jobs' keys and results do not depend on a
        # timing that could choose differently next time
        dev = resolve_device(cfg.device)
        self.precision = None if args.fresh else _stored_precision(self.run_dir, cfg)
        if self.precision is None:
            self.precision = choose_precision(cfg, build_model(cfg, self.data),
                                              self.data.input_shape, self.data.num_classes, dev,
                                              conv=is_conv(cfg.model))
        self.cfg = replace(cfg, precision=self.precision["precision"],
                           channels_last="on" if self.precision["channels_last"] else "off")
        if not args.dry_run:
            prepare_run_dir(self.run_dir, fresh=args.fresh)
            write_config(self.run_dir, self.cfg)
            save_splits(self.run_dir, self.data.indices)
        self.store = JobStore(self.run_dir)
        if args.workers < 1:
            raise ConfigError(f"workers: {args.workers} must be at least 1.")
        executor = SerialExecutor() if args.workers == 1 else ProcessExecutor(args.workers)
        self.runner = JobRunner(self.store, self.data, executor)
        self.t0 = time.perf_counter()

    def seconds_per_image(self) -> float:
        """Seconds per training image at the chosen precision (from the timing probe)."""
        t = self.precision["timings_ms"]
        if not t:  # precision fixed by the user, so nothing was timed yet: time it now
            from ..models import is_conv
            from ..train import choose_precision, resolve_device
            from ..train._fit import build_model

            t = choose_precision(replace(self.cfg, precision="auto"),
                                 build_model(self.cfg, self.data), self.data.input_shape,
                                 self.data.num_classes, resolve_device(self.cfg.device),
                                 conv=is_conv(self.cfg.model))["timings_ms"]
        key = self.precision["precision"] + ("+channels_last" if self.precision["channels_last"]
                                             else "")
        ms = t.get(key, min(t.values()))
        return ms / 1000.0 / int(self.cfg.batch_size)

    def execute(self, jobs: list) -> None:
        """Run every job (deduplicated), or with --dry-run print the plan and exit."""
        from ..train._callbacks import Progress
        from .jobs import estimate_seconds, plan_summary, result_steps

        unique = _dedupe(jobs)
        todo = [j for j in unique if not self.store.done(j)]
        est = estimate_seconds(todo, self.data, self.seconds_per_image())
        for note in self.data.notes:
            print(f"note: {note}")
        print(f"{self.data.summary()}\nrun directory: {self.run_dir}\n"
              f"{len(unique)} fits planned, {len(unique) - len(todo)} already stored, "
              f"{len(todo)} to train; estimated {est / 60:.1f} min")
        if self.args.dry_run:
            print(f"\n{'key':<17} {'n_train':>8} {'seed':>4} {'epochs':>6}  {'stored':<6} what")
            for row in plan_summary(unique, self.store):
                n = row["n_train"] if row["n_train"] is not None else len(self.data.train)
                print(f"{row['key']:<17} {n:>8} {row['seed']:>4} {row['epochs']:>6}  "
                      f"{'yes' if row['stored'] else 'no':<6} {row['tag']}")
            sys.exit(0)
        total = sum(result_steps(j, self.data) for j in unique)
        bar = _OverallBar(total, enabled=self.args.progress)
        self.runner.progress = bar
        try:
            self.runner.run(unique)
        finally:
            bar.finish()

    def results(self, **blocks: Any) -> dict[str, Any]:
        from ..rundir import environment

        out = {"command": self.command, "dataset": self.cfg.dataset, "model": self.cfg.model,
               "classes": list(self.data.classes), "config": _plain_config(self.cfg)}
        out.update({k: v for k, v in blocks.items() if v is not None})
        out["fits"] = self.runner.counts()
        out["environment"] = environment(seed=self.cfg.seed, device=str(self.cfg.device),
                                         precision=self.precision)
        out["timing"] = {"seconds": round(time.perf_counter() - self.t0, 1)}
        return out


def _dedupe(jobs: list) -> list:
    """One job per key, in first-asked order; a job shared by analyses lists every use."""
    from dataclasses import replace as _replace

    out: dict[str, Any] = {}
    for j in jobs:
        if j.key in out:
            if j.tag and j.tag not in out[j.key].tag:
                out[j.key] = _replace(out[j.key], tag=f"{out[j.key].tag}; {j.tag}")
        else:
            out[j.key] = j
    return list(out.values())


def _plain_config(cfg: ExperimentConfig) -> dict[str, Any]:
    from ..config import config_to_dict

    return config_to_dict(cfg)


class _OverallBar:
    """One progress bar across all fits; fits report steps into it (start/close are no-ops)."""

    def __init__(self, total: int, enabled: bool = True):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="step", desc="fits", dynamic_ncols=True,
                        disable=not enabled)

    def start(self, total_steps: int, desc: str) -> None:
        self.bar.set_description_str(desc[:40])

    def update(self, steps: int) -> None:
        self.bar.update(steps)

    def postfix(self, values: dict[str, float]) -> None:
        self.bar.set_postfix({k: f"{v:.3g}" for k, v in values.items()}, refresh=False)

    def close(self) -> None:
        pass

    def __bool__(self) -> bool:
        return True

    def finish(self) -> None:
        self.bar.close()


def _apply_profile(cfg: ExperimentConfig, args: argparse.Namespace, profile: Profile
                   ) -> ExperimentConfig:
    cfg = resolve(cfg)
    if profile.epochs is not None and not _given(args, "epochs") and cfg.epochs > profile.epochs:
        cfg = replace(cfg, epochs=profile.epochs)
    return cfg


def _reference_metrics(session: _Session, ref_job: Any) -> dict[str, Any]:
    """Full metrics of the reference fit (train/val/test) from its stored best/last weights."""
    from ..train import build_model, evaluate
    from ..train._fit import load_checkpoint

    d = session.store.dir(ref_job)
    which = "best.pt" if session.cfg.early_stopping else "last.pt"
    ck = load_checkpoint(d / which)
    model = build_model(session.cfg, session.data)
    model.load_state_dict(ck["model"])
    metrics, lps = evaluate(model, session.data, device=session.cfg.device, return_log_probs=True,
                            workers=session.cfg.loader_workers)
    return metrics, lps["test"]


def run_diagnose(cfg: ExperimentConfig, args: argparse.Namespace) -> Path:
    from ..train import most_confidently_wrong
    from .analyses import (decomposition_jobs, complexity_jobs, gap_diagnosis,
                           learning_curve_jobs, reference_job, smallest_curve_size,
                           summarize_learning_curve)
    from .analyses import complexity_curve, decomposition
    from .targets import target_error
    from .verdict import verdict

    profile = PROFILES[args.profile]
    profile_note = profile.note
    configured_epochs = resolve(cfg).epochs
    cfg = _apply_profile(cfg, args, profile)
    profile_note = profile_note.replace("{epochs}", str(cfg.epochs))
    target = target_error(cfg.dataset, args.target_error)
    rounds = args.rounds if args.rounds is not None else profile.rounds
    sampling = args.sampling or profile.sampling
    s = _Session("diagnose", cfg, args, extra_key={"profile": args.profile, "rounds": rounds,
                                                   "sampling": sampling,
                                                   "label_noise": args.label_noise})
    cfg = s.cfg
    n = len(s.data.train)
    sizes = sorted({max(1, int(round(f * n))) for f in profile.lc_fractions})
    smallest = smallest_curve_size(cfg, s.data)
    if sizes[0] < smallest:  # a rare class: the smallest subsets would leave it out
        dropped = [z for z in sizes if z < smallest]
        sizes = sorted({z for z in sizes if z >= smallest} | {smallest})
        profile_note += (f" Learning-curve sizes {', '.join(map(str, dropped))} were replaced by "
                         f"{smallest}, the smallest subset that holds every class.")
    seeds = list(profile.lc_seeds)
    ref = reference_job(cfg)
    lc_jobs = learning_curve_jobs(cfg, s.data, sizes=sizes, seeds=seeds)
    dec_jobs = decomposition_jobs(cfg, s.data, rounds=rounds, sampling=sampling,
                                  fraction=args.fraction, label_noise=args.label_noise)
    cx_jobs, cx_values = [], None
    complexity = profile.complexity
    if complexity and getattr(cfg, complexity[0]) is None:  # e.g. linear, or a user factory
        profile_note += (f" The {complexity[0]} complexity curve was skipped: model "
                         f"{cfg.model!r} has no {complexity[0]} (give --{complexity[0]} when "
                         "its builder takes one).")
        complexity = None
    if complexity:
        param, mults = complexity
        base = getattr(cfg, param)
        cx_values = sorted({max(1, int(round(base * m))) for m in mults})
        cx_jobs = complexity_jobs(cfg, s.data, param=param, values=cx_values, seeds=seeds[:2])
    s.execute([ref, *lc_jobs, *dec_jobs, *cx_jobs])

    ref_res = s.runner.run([ref])[0]
    metrics, test_lp = _reference_metrics(s, ref)
    gap = gap_diagnosis(ref_res, target)
    lc = summarize_learning_curve(s.runner.run(lc_jobs), sizes=sizes, seeds=seeds)
    dec = decomposition(s.runner, cfg, s.data, rounds=rounds, sampling=sampling,
                        fraction=args.fraction, label_noise=args.label_noise)
    cx = None
    if complexity:
        cx = complexity_curve(s.runner, cfg, s.data, param=complexity[0],
                              values=cx_values, seeds=seeds[:2])
    capped = ({"fits": int(cfg.epochs), "configured": int(configured_epochs)}
              if cfg.epochs < configured_epochs else None)
    results = s.results(profile=args.profile, profile_note=profile_note, epochs_capped=capped,
                        reference={**metrics, "history": ref_res.history}, **gap,
                        learning_curve=lc, complexity_curve=cx, decomposition=dec)
    results["verdict"] = verdict(results)
    atomic_write_json(s.run_dir / "metrics.json", metrics)
    atomic_write_json(s.run_dir / "gallery.json", most_confidently_wrong(s.data, test_lp))
    atomic_write_json(s.run_dir / "results.json", results)
    _print_verdict(results)
    _finish(s.run_dir, args)
    return s.run_dir


def run_curve(cfg: ExperimentConfig, args: argparse.Namespace) -> Path:
    from .analyses import (complexity_configs, complexity_curve, complexity_jobs,
                           learning_curve_jobs, parse_sizes, summarize_learning_curve)
    from .verdict import verdict

    if args.seeds < 1:
        raise ConfigError(f"seeds: {args.seeds} must be at least 1.")
    seeds = list(range(resolve(cfg).seed, resolve(cfg).seed + args.seeds))
    if args.curve == "learning":
        s = _Session("curve-learning", cfg, args, extra_key={"sizes": args.sizes,
                                                              "seeds": seeds})
        sizes = parse_sizes(args.sizes, len(s.data.train))
        jobs = learning_curve_jobs(s.cfg, s.data, sizes=sizes, seeds=seeds)
        s.execute(jobs)
        block = {"learning_curve": summarize_learning_curve(s.runner.run(jobs), sizes=sizes,
                                                            seeds=seeds)}
    else:
        s = _Session("curve-complexity", cfg, args,
                     extra_key={"param": args.param, "values": args.values, "seeds": seeds,
                                "rounds": args.rounds, "sampling": args.sampling},
                     variants=lambda c: complexity_configs(c, args.param, args.values)[1])
        if args.rounds == 1:
            raise ConfigError("rounds: 1 is too few for a decomposition; use 0 (none) or ≥ 2.")
        jobs = complexity_jobs(s.cfg, s.data, param=args.param, values=args.values, seeds=seeds,
                               rounds=args.rounds, sampling=args.sampling or "bootstrap")
        s.execute(jobs)
        block = {"complexity_curve": complexity_curve(
            s.runner, s.cfg, s.data, param=args.param, values=args.values, seeds=seeds,
            rounds=args.rounds, sampling=args.sampling or "bootstrap")}
    results = s.results(**block)
    results["verdict"] = verdict(results)
    atomic_write_json(s.run_dir / "results.json", results)
    _print_curve(results)
    _finish(s.run_dir, args)
    return s.run_dir


def run_decompose(cfg: ExperimentConfig, args: argparse.Namespace) -> Path:
    from .analyses import decomposition, decomposition_jobs
    from .verdict import verdict

    rounds, sampling = args.rounds, args.sampling or "bootstrap"
    s = _Session("decompose", cfg, args, extra_key={"rounds": rounds, "sampling": sampling,
                                                   "fraction": args.fraction,
                                                   "label_noise": args.label_noise})
    jobs = decomposition_jobs(s.cfg, s.data, rounds=rounds, sampling=sampling,
                              fraction=args.fraction, label_noise=args.label_noise)
    s.execute(jobs)
    dec = decomposition(s.runner, s.cfg, s.data, rounds=rounds, sampling=sampling,
                        fraction=args.fraction, label_noise=args.label_noise)
    results = s.results(decomposition=dec)
    results["verdict"] = verdict(results)
    atomic_write_json(s.run_dir / "results.json", results)
    _print_decomposition(dec)
    _finish(s.run_dir, args)
    return s.run_dir


# -- printing --------------------------------------------------------------------------------

def _pct(v: float | None) -> str:
    return "   n/a" if v is None else f"{100 * v:5.1f}%"


def _term(t: dict) -> str:
    lo, hi = t["ci95"]
    se = t.get("se_models")
    return (f"{t['value']:.4f}  [{lo:.4f}, {hi:.4f}]" +
            (f"  ±{se:.4f} (models)" if se is not None else ""))


def _print_decomposition(dec: dict) -> None:
    print(f"\nDecomposition: {dec['rounds']} models, sampling {dec['sampling']}, "
          f"{dec['n_test']} test points (value [95% CI over test points] ± s.e. over models)")
    z, m, c = dec["zero_one"], dec["mse"], dec["cross_entropy"]
    rows = [("0-1 loss", z["loss"]), ("  bias", z["bias"]), ("  net variance", z["net_variance"]),
            ("  variance (unsigned)", z["variance"]), ("squared-error risk", m["risk"]),
            ("  bias²", m["bias2"]), ("  variance", m["variance"]),
            ("cross-entropy risk", c["risk"]), ("  bias", c["bias"]),
            ("  variance", c["variance"]), ("  variance (jackknife)", c["variance_jackknife"])]
    for name, t in rows:
        print(f"  {name:<24} {_term(t)}")
    if "ensemble" in dec:
        print(f"  ensemble of the {dec['rounds']} models: error {_pct(dec['ensemble']['error'])}, "
              f"cross-entropy {dec['ensemble']['cross_entropy']:.4f}")


def _print_curve(results: dict) -> None:
    if "learning_curve" in results:
        lc = results["learning_curve"]
        print(f"\n{'n_train':>8} {'train err':>10} {'val err':>10}")
        for i, n in enumerate(lc["sizes"]):
            print(f"{n:>8} {_pct(lc['train_error']['mean'][i]):>10} "
                  f"{_pct(lc['val_error']['mean'][i]):>10}")
        pl = lc["power_law"]
        if pl.get("ok"):
            print(f"power law: err(n) ≈ {pl['a']:.3g}·n^-{pl['b']:.3g} + {pl['c']:.3g}; "
                  f"at 2× data {_pct(pl['err_2x'])}, at 10× {_pct(pl['err_10x'])}")
    if "complexity_curve" in results:
        cc = results["complexity_curve"]
        print(f"\n{cc['param']:>14} {'train err':>10} {'val err':>10}")
        for i, v in enumerate(cc["values"]):
            print(f"{v!s:>14} {_pct(cc['train_error']['mean'][i]):>10} "
                  f"{_pct(cc['val_error']['mean'][i]):>10}")
        print(f"lowest validation error at {cc['param']} = {cc['best_value']}")
    _print_verdict_only(results)


def _print_verdict_only(results: dict) -> None:
    v = results.get("verdict")
    if not v:
        return
    print(f"\nVerdict: {v['label'].upper().replace('_', ' ')}")
    for e in v.get("evidence", []):
        print(f"  - {e}")
    if v.get("remedies"):
        print("Remedies, best first:")
        for r in v["remedies"]:
            gain = (f" (predicted gain {100 * r['predicted_gain']:.1f} points)"
                    if r.get("predicted_gain") is not None else "")
            print(f"  {r['rank']}. {r['action']}{gain}\n     {r['evidence']}")
    for c in v.get("caveats", []):
        print(f"  note: {c}")


def _print_verdict(results: dict) -> None:
    ref = results["reference"]
    t = results["target_error"]
    print(f"\nReference fit: train {_pct(ref['train']['error'])}, val {_pct(ref['val']['error'])}, "
          f"test {_pct(ref['test']['error'])} error; target {_pct(t['value'])} ({t['source']})")
    print(f"avoidable bias {100 * results['avoidable_bias']:.1f} points, variance gap "
          f"{100 * results['variance_gap']:.1f} points")
    if "decomposition" in results:
        _print_decomposition(results["decomposition"])
    _print_curve({k: v for k, v in results.items() if k != "verdict"})
    _print_verdict_only(results)
    if results.get("profile_note"):
        print(f"  note: {results['profile_note']}")
    f = results["fits"]
    print(f"\nfits: {f['planned']} planned, {f['trained']} trained, {f['reused']} reused; "
          f"{results['timing']['seconds']:.0f} s")


def _finish(run_dir: Path, args: argparse.Namespace) -> None:
    from ..commands import render

    print(f"results: {run_dir / 'results.json'}")
    if getattr(args, "report", True):
        path = render(run_dir)
        if path:
            print(f"report: {path}")
