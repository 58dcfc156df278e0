"""The ``biasvar`` command line: every parser, and each command as a thin call of the Python API.

Every command that trains takes ``--config FILE.yaml`` plus a flag for every option (flags win),
writes a run directory (``--out`` or a name derived from the options) and never shows a
traceback for a user error: the message names the field, the value and the fix, and the exit
status is 2. Flags are never abbreviated (``--epoch`` is an error, not ``--epochs``).
"""
from __future__ import annotations

import argparse
import functools
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, get_args, get_type_hints

from .config import (DATASET_DEFAULTS, DATASET_MODEL_DEFAULTS, MODEL_DEFAULTS, AnalysisConfig,
                     ExperimentConfig, from_dict, load_analysis, load_config, model_defaults)
from .errors import BiasvarError, suggest

__all__ = ["main", "build_parser", "config_from_args"]


class _Parser(argparse.ArgumentParser):
    """No abbreviations; an unknown flag names the command and the nearest known flag."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        if message.startswith("unrecognized arguments"):
            opts = [s for a in self._actions for s in a.option_strings]
            for bad in message.split(":", 1)[1].split():
                if bad.startswith("-"):
                    hint = suggest(bad.split("=")[0], opts)
                    if hint:
                        message += f".{hint}"
                        break
            message += f" (`{self.prog} --help` lists the options)"
        super().error(message)


# --------------------------------------------------------------------------- option flags

def _metavar(f: Any, tp: Any) -> str:
    if f.metadata.get("metavar"):
        return f.metadata["metavar"]
    if f.metadata.get("choices"):
        return "{" + ",".join(str(c) for c in f.metadata["choices"]) + "}"
    base = [a for a in get_args(tp) if a is not type(None)] or [tp]
    return {int: "INT", float: "FLOAT"}.get(base[0], "TEXT")


def _per(table: dict[str, dict[str, Any]], name: str) -> str:
    parts = [f"{k} {v[name]}" for k, v in table.items()
             if k != "*" and v.get(name) is not None]
    other = table["*"].get(name)
    return ", ".join(parts) + (f", others {other}" if other is not None else "")


def _default_text(f: Any) -> str:
    if f.name in DATASET_DEFAULTS["*"]:
        return f"per dataset: {_per(DATASET_DEFAULTS, f.name)}"
    if f.name in MODEL_DEFAULTS["*"]:
        special = [f"{m} {v[f.name]} on {d}" for (d, m), v in DATASET_MODEL_DEFAULTS.items()
                   if f.name in v]
        return (f"per model: {_per(MODEL_DEFAULTS, f.name)}"
                + (f" ({', '.join(special)})" if special else "") + "; none for linear")
    if f.default is None:
        return "none"
    if isinstance(f.default, bool):
        return "on" if f.default else "off"
    return str(f.default)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)  # the slowest part of building the parsers: once per class


def _add_fields(p: argparse.ArgumentParser, cls: type, command: str | None = None) -> None:
    """One flag per config field (``--width 64``, ``--batchnorm/--no-batchnorm``); for
    :class:`AnalysisConfig`, the fields that ``command`` takes."""
    hints = _hints(cls)
    groups: dict[str, Any] = {}
    for f in fields(cls):
        if command is not None and command not in f.metadata.get("commands", ()):
            continue
        g = f.metadata.get("group", "training")
        if g not in groups:
            groups[g] = p.add_argument_group(f"{g} options")
        flag = "--" + f.name.replace("_", "-")
        help_ = f"{f.metadata['help']} (default: {_default_text(f)})".replace("%", "%%")
        if hints[f.name] is bool:
            groups[g].add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                   default=argparse.SUPPRESS, help=help_)
        else:
            groups[g].add_argument(flag, dest=f.name, default=argparse.SUPPRESS,
                                   metavar=_metavar(f, hints[f.name]), help=help_)


def _add_config(p: argparse.ArgumentParser, analysis: str | None = None) -> None:
    p.add_argument("--config", metavar="FILE.yaml", help="read options from a YAML file (a "
                   "run's saved config.yaml works, its analysis: section too); flags given on "
                   "the command line override it")
    from .recipes import RECIPES

    p.add_argument("--recipe", metavar="NAME", choices=list(RECIPES), help="set the training "
                   "options of a named recipe (after --config; the options given on the command "
                   "line override it): " + "; ".join(
                       f"{r} = {RECIPES.get(r).summary}" for r in RECIPES).replace("%", "%%"))
    if analysis:
        _add_fields(p, AnalysisConfig, analysis)
    _add_fields(p, ExperimentConfig)


def _overrides(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names}


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    """The defaults, then ``--config``, then ``--recipe``, then the flags given."""
    overrides = _overrides(args, ExperimentConfig)
    base = load_config(args.config) if getattr(args, "config", None) else ExperimentConfig()
    name = getattr(args, "recipe", None)
    if name:
        from .recipes import recipe

        opts = recipe(name, overrides.get("dataset", base.dataset))
        base = from_dict(opts, base=base, source=f"--recipe {name}")
        mine = ", ".join(f"{k} {v}" for k, v in opts.items() if k not in overrides)
        print(f"biasvar: recipe {name}: {mine}" + (
            f" (yours: {', '.join(k for k in opts if k in overrides)})"
            if any(k in overrides for k in opts) else ""), file=sys.stderr)
    return from_dict(overrides, base=base, source="flag") if overrides else base


def analysis_from_args(args: argparse.Namespace) -> AnalysisConfig:
    overrides = _overrides(args, AnalysisConfig)
    if getattr(args, "config", None):
        return load_analysis(args.config, **overrides)
    return from_dict(overrides, cls=AnalysisConfig, source="flag")


def _fit_opts(p: argparse.ArgumentParser, dry_run_help: str) -> None:
    """--workers and --dry-run of the commands that train fit jobs outside the analyses."""
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="train fits in N local processes (default: 1)")
    p.add_argument("--dry-run", action="store_true", help=dry_run_help)


def _run_opts(p: argparse.ArgumentParser, *, analysis: bool = False) -> None:
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/<command>-"
                   "<dataset>-<model>-<hash>)")
    p.add_argument("--fresh", action="store_true", help="discard a previous run in the run "
                   "directory and start over")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars")
    p.add_argument("--no-report", dest="report", action="store_false",
                   help="do not write report.html")
    if analysis:
        out = p.add_mutually_exclusive_group()
        out.add_argument("--verbose", action="store_true", help="print every table and "
                         "sentence (the evidence, each remedy's reasoning, the caveats, the "
                         "decomposition's terms, the curves' points), not only the verdict, the "
                         "top remedies and the report's path")
        out.add_argument("--json", action="store_true", help="for scripts: print only the "
                         "path of results.json on stdout (everything else goes to stderr)")
        p.add_argument("--workers", type=int, default=1, metavar="N",
                       help="train fits in N local processes (default: 1, in this process); "
                       "with --backend ray, at most N fits at once (default: as many as the "
                       "cluster's CPUs hold)")
        p.add_argument("--backend", choices=("local", "ray"), default="local",
                       help="where fits train: local (this machine) or ray (Ray tasks; needs "
                       "pip install 'biasvar[ray]'); the same fits and results")
        p.add_argument("--address", metavar="ADDR", default=None,
                       help="with --backend ray: the Ray cluster to use (auto, "
                       "ray://host:10001); default: start a local one")
        p.add_argument("--dry-run", action="store_true",
                       help="print the planned fits and an estimated time, then stop")


# --------------------------------------------------------------------------------- commands

def _datasets(args: argparse.Namespace) -> int:
    from .data import list_datasets

    print(f"{'name':<15} {'shape':<9} {'classes':>7}  description / where files are looked for")
    for d in list_datasets():
        shape = "x".join(map(str, d.shape))
        print(f"{d.name:<15} {shape:<9} {d.num_classes:>7}  {d.description}\n{'':<34}{d.where}")
    print(f"{'imagefolder:PATH':<15} {'any':<9} {'any':>7}  a folder per class of images")
    print(f"{'csv:PATH':<15} {'any':<9} {'any':>7}  a CSV with columns path,label (paths "
          "relative to it)")
    return 0


def _models(args: argparse.Namespace) -> int:
    from .data import list_datasets
    from .errors import unknown_name
    from .models import list_models

    info = {d.name: d for d in list_datasets()}
    if args.dataset not in info:
        raise unknown_name("--dataset", args.dataset, info)
    d = info[args.dataset]
    print(f"{'name':<10} {'params':>10}  default width/depth   description "
          f"(parameters for {args.dataset}: {'x'.join(map(str, d.shape))}, "
          f"{d.num_classes} classes)")
    for m, n in list_models(d.shape, d.num_classes, dataset=args.dataset):
        md = model_defaults(m.name, args.dataset)
        wd = f"{md.get('width') or '-'}/{md.get('depth') if md.get('depth') is not None else '-'}"
        print(f"{m.name:<10} {n:>10,}  {wd:<20} {m.description}")
    print(f"{'pkg.mod:fn':<10} {'':>10}  {'':<20} your own nn.Module factory")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .runs import train_run

    train_run(config_from_args(args), out=args.out, fresh=args.fresh, resume=args.resume,
              progress=args.progress, report=args.report)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .runs import evaluate_run, print_metrics

    print_metrics(evaluate_run(Path(args.run_dir), checkpoint=args.checkpoint,
                               device=args.device))
    return 0


def _report(args: argparse.Namespace) -> int:
    from .runs import render

    print(f"report: {render(Path(args.run_dir), required=True)}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from .report import compare

    labels = args.labels.split(",") if args.labels else None
    print(f"comparison: {compare(args.run_dirs, out=args.out, labels=labels)}")
    return 0


def _show(result: Any, args: argparse.Namespace, stdout: Any = None) -> int:
    """Print a result (the quiet form, or every table with ``--verbose``; with ``--json`` only
    the path of results.json, on ``stdout``) or a dry run's plan, and where its report is."""
    run_dir = getattr(result, "run_dir", None)
    is_plan = hasattr(result, "rows")
    if getattr(args, "json", False) and not is_plan:
        print(Path(run_dir) / "results.json", file=stdout or sys.stdout)
        return 0
    if is_plan or not hasattr(result, "summary"):
        print(result)
    else:
        print(result.summary(verbose=getattr(args, "verbose", False)))
    if getattr(args, "report", False) and run_dir is not None and not is_plan \
            and (Path(run_dir) / "report.html").is_file():
        print(f"report: {Path(run_dir) / 'report.html'}")
    return 0


def _quiet_for_json(args: argparse.Namespace) -> Any:
    """With ``--json``, everything printed while the analysis runs goes to stderr, so stdout
    holds only the path of results.json."""
    import contextlib

    return (contextlib.redirect_stdout(sys.stderr) if getattr(args, "json", False)
            else contextlib.nullcontext())


def _analysis(fn_name: str) -> Any:
    def command(args: argparse.Namespace) -> int:
        from .analysis import _api

        fn = getattr(_api, fn_name)
        for flag in ("json", "verbose"):
            if args.dry_run and getattr(args, flag):
                raise BiasvarError(f"--{flag} with --dry-run: a dry run prints its plan and "
                                   "writes no results; drop one of them.")
        stdout = sys.stdout
        with _quiet_for_json(args):
            result = fn(config_from_args(args), analysis=analysis_from_args(args),
                        workers=args.workers, out=args.out, progress=args.progress,
                        fresh=args.fresh, dry_run=args.dry_run, report=args.report,
                        backend=args.backend, address=args.address)
        return _show(result, args, stdout)
    return command


def _decompose(args: argparse.Namespace) -> int:
    if not args.from_predictions:
        return _analysis("decompose")(args)
    from .analysis import decompose_predictions, load_predictions

    ignored = sorted(("--" + k.replace("_", "-") for k in (
        *_overrides(args, ExperimentConfig), *_overrides(args, AnalysisConfig))
        if k != "sampling"), key=str)
    ignored += [flag for flag, on in (("--config", args.config), ("--dry-run", args.dry_run),
                                      ("--workers", args.workers != 1),
                                      ("--backend", args.backend != "local"),
                                      ("--address", args.address is not None)) if on]
    if ignored:
        raise BiasvarError(f"--from-predictions: {', '.join(ignored)} would change nothing: the "
                           "predictions are analysed as given, nothing is trained. Drop "
                           f"{'it' if len(ignored) == 1 else 'them'} (only --sampling, --out "
                           "and --no-report apply).")
    lp, labels, classes = load_predictions(args.from_predictions)
    src = Path(args.from_predictions)
    out = Path(args.out) if args.out else src.parent / (src.with_suffix("").name
                                                        + "-decomposition")
    a = analysis_from_args(args)
    stdout = sys.stdout
    with _quiet_for_json(args):
        result = decompose_predictions(lp, labels, classes=classes,
                                       sampling=a.sampling or "bootstrap", out=out,
                                       source=str(src), report=args.report)
    return _show(result, args, stdout)


def _tune(args: argparse.Namespace) -> int:
    from .tune import tune

    trials = args.trials
    if trials is None and args.timeout is None and args.sampler != "grid":
        trials = 20
    print(tune(config_from_args(args), space=args.space, sampler=args.sampler,
               trials=trials, timeout=args.timeout, seeds=args.seeds, pruner=args.pruner,
               storage=args.storage, study=args.study, workers=args.workers,
               backend=args.backend, address=args.address, diagnose=args.diagnose,
               out=args.out, fresh=args.fresh, progress=args.progress, report=args.report,
               dry_run=args.dry_run))
    return 0


def _ensemble(args: argparse.Namespace) -> int:
    from .ensemble import ensemble

    print(ensemble(config_from_args(args), members=args.members, kind=args.kind,
                   combine=args.combine, rounds=args.rounds, workers=args.workers,
                   out=args.out, fresh=args.fresh, progress=args.progress,
                   dry_run=args.dry_run, report=args.report))
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from .finetune import finetune

    cfg = config_from_args(args)
    if not cfg.weights:
        raise BiasvarError("--weights: required: the weights to start from (a state dict, or a "
                           "biasvar run directory / checkpoint trained on another dataset).")
    if cfg.freeze_backbone:
        raise BiasvarError("--freeze-backbone: finetune freezes the backbone in its first stage "
                           "(--head-epochs) and unfreezes it in the second; drop the flag.")
    print(finetune(replace(cfg, weights=None), weights=cfg.weights, sizes=args.sizes,
                   seeds=args.seeds, head_epochs=args.head_epochs,
                   backbone_lr=cfg.backbone_lr if cfg.backbone_lr != 1.0 else 0.1,
                   workers=args.workers, out=args.out,
                   fresh=args.fresh, progress=args.progress, dry_run=args.dry_run,
                   report=args.report))
    return 0


def _shift(args: argparse.Namespace) -> int:
    from .shift import shift

    print(shift(Path(args.run_dir), corruptions=args.corruptions, severities=args.severities,
                adabn=args.adabn, target=args.target, label_map=args.label_map,
                few_shot=args.few_shot,
                out=args.out, seed=args.seed, device=args.device, report=args.report,
                progress=args.progress))
    return 0


# ----------------------------------------------------------------------------------- parser

def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser and its subcommands' parsers (by command name, ``curve learning`` too)."""
    from . import __version__

    parser = _Parser(prog="biasvar", description="Is my classifier's error bias or variance, "
                     "how much of each, and what will fix it?")
    parser.add_argument("--version", action="version", version=f"biasvar {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subs: dict[str, argparse.ArgumentParser] = {}

    def add(name: str, func: Any, parent: Any = sub, **kw: Any) -> argparse.ArgumentParser:
        p = parent.add_parser(name, **kw)
        p.set_defaults(func=func)
        subs[f"{'curve ' if parent is not sub else ''}{name}"] = p
        return p

    add("datasets", _datasets, help="list the built-in datasets and where their files are "
        "looked for")
    p = add("models", _models, help="list the models with their parameter counts")
    p.add_argument("--dataset", default="fashion-mnist", metavar="NAME",
                   help="count parameters for this built-in dataset's input shape (default: "
                   "fashion-mnist)")

    p = add("train", _train, help="train one model and evaluate it on train/val/test",
            description="Train one model; writes config.yaml, env.json, history.csv, "
            "metrics.json, last.pt, best.pt and report.html to its run directory. Running the "
            "same command again continues an interrupted run.")
    _run_opts(p)
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                   help="continue from the run directory's last.pt (or this checkpoint file)")
    _add_config(p)

    p = add("evaluate", _evaluate, help="re-score a trained run on train/val/test")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--checkpoint", choices=("auto", "best", "last"), default="auto",
                   help="weights to score: best.pt, last.pt, or auto (best when early stopping "
                   "restored it, else last; default: auto)")
    p.add_argument("--device", default="auto", metavar="DEVICE",
                   help="auto (CUDA when present), cpu, cuda or cuda:N (default: auto)")

    p = add("diagnose", _analysis("diagnose"),
            help="the main job: gap, learning curve and decomposition → a verdict with ranked "
            "remedies",
            description="Is the error bias or variance, how much, and what fixes it? Writes "
            "results.json and report.html; rerunning the same command trains only what is "
            "missing. Every fit trains as configured; the quick profile makes 4 fits "
            "(a reference, 2 split models, one learning-curve point), --profile thorough adds "
            "seeds, sizes and a width complexity curve.")
    _run_opts(p, analysis=True)
    _add_config(p, "diagnose")

    p = sub.add_parser("curve", help="learning curve (error vs training size) or complexity "
                       "curve (error vs a capacity/regularisation knob)")
    subs["curve"] = p
    csub = p.add_subparsers(dest="curve", metavar="KIND", required=True, parser_class=_Parser)
    p = add("learning", _analysis("learning_curve"), csub, help="error vs training-set size")
    _run_opts(p, analysis=True)
    _add_config(p, "learning")
    p = add("complexity", _analysis("complexity_curve"), csub,
            help="error vs width, depth, weight decay, dropout, epochs, augmentation "
            "strength...")
    _run_opts(p, analysis=True)
    _add_config(p, "complexity")

    p = add("decompose", _decompose, help="bias, variance and net variance (0-1, squared "
            "error, cross-entropy) of models retrained on resampled data")
    p.add_argument("--from-predictions", metavar="FILE.npz", default=None,
                   help="analyse predictions made elsewhere: arrays log_probs (R×m×K) and "
                   "labels (m), optional classes; nothing is trained")
    _run_opts(p, analysis=True)
    _add_config(p, "decompose")

    p = add("tune", _tune, help="search training options (Optuna) for the lowest validation "
            "error; the best config, a trials table and a report",
            description="Search the options in a space (--space FILE.yaml, or the built-in "
            "bias / variance spaces built from the knob table) for the lowest validation error, "
            "each trial trained for --seeds seeds. Writes trials.csv, best_config.yaml "
            "(`biasvar train --config best_config.yaml`), tune.json and report.html; a killed "
            "run continues where it stopped when the same command runs again.")
    _run_opts(p)
    p.add_argument("--space", default="bias", metavar="FILE|bias|variance",
                   help="the search space: a YAML file {option: {type: float|int|categorical, "
                   "low, high, log, step, choices}} or a built-in name (default: bias)")
    p.add_argument("--sampler", choices=("grid", "random", "tpe"), default="tpe",
                   help="how trials are chosen (default: tpe; grid: every combination of "
                   "discrete values)")
    p.add_argument("--trials", type=int, default=None, metavar="N",
                   help="finished (complete or pruned) trials to reach (default: 20, or the "
                   "whole grid; with --timeout alone: no limit)")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="start no trial after S seconds")
    p.add_argument("--seeds", type=int, default=1, metavar="K",
                   help="fits per trial, averaged (default: 1; 3 measures the seed spread)")
    p.add_argument("--pruner", choices=("median", "hyperband", "none"), default="median",
                   help="stop trials falling behind, epoch by epoch (default: median)")
    p.add_argument("--storage", metavar="URL", default=None,
                   help="an Optuna storage URL (postgresql://..., sqlite:///...) shared by "
                   "several machines (default: optuna.journal in the run directory)")
    p.add_argument("--study", metavar="NAME", default=None,
                   help="the study's name in the storage (default: the run directory's name)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="run trials in N local processes on the one study (default: 1)")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local (Optuna in local processes) or ray (Ray Tune; needs pip install "
                   "'biasvar[ray]')")
    p.add_argument("--address", metavar="ADDR", default=None,
                   help="with --backend ray: the Ray cluster to use (auto, ray://host:10001)")
    p.add_argument("--diagnose", action="store_true",
                   help="also diagnose (quick profile) the starting and the best config and "
                   "compare them (compare.html)")
    p.add_argument("--dry-run", action="store_true",
                   help="print what the search would cost here (each point's trial timed "
                   "from its real training step: the grid, or the starting config and points "
                   "drawn from the space) and exit; nothing is trained or written")
    _add_config(p)

    p = add("ensemble", _ensemble, help="train K members and combine them into one model; "
            "the measured gain beside the one the decomposition predicts",
            description="Train --members K fresh models (deep: K seeds; bagging: K bootstrap "
            "samples; snapshot: K cycles of one run) and combine them into one "
            "(ensemble.json: `biasvar evaluate RUN_DIR` "
            "scores it like one model). The ensemble's test error and cross-entropy against "
            "its mean member's, beside the gain the bias-variance decomposition of --rounds "
            "models predicts, with 95% intervals over test points.")
    _run_opts(p)
    p.add_argument("--members", type=int, default=5, metavar="K",
                   help="members, trained fresh (default: 5)")
    p.add_argument("--kind", choices=("deep", "bagging", "snapshot"), default="deep",
                   help="deep: K seeds on the whole training set; bagging: K bootstrap "
                   "samples; snapshot: one run of K cosine cycles, the weights at the end of "
                   "each (default: deep)")
    p.add_argument("--combine", choices=("logprob", "prob", "weights"), default="logprob",
                   help="average log-probabilities (renormalised; the ensemble the "
                   "cross-entropy decomposition describes) or probabilities; weights "
                   "(--kind snapshot only): average the snapshots' weights into one model, "
                   "batch norm re-estimated (SWA) (default: logprob)")
    p.add_argument("--rounds", type=int, default=None, metavar="R",
                   help="models of the decomposition that predicts the gain (default: K)")
    _fit_opts(p, "print the planned fits and an estimated time range, train nothing")
    _add_config(p)

    p = add("finetune", _finetune, help="fine-tuned from local weights against from scratch "
            "at each training-set size: error, bias and variance of both",
            description="Start from --weights (a state dict, or a biasvar run / checkpoint "
            "trained on another dataset; nothing is downloaded): a new head trained with the "
            "backbone frozen, then everything at discriminative rates; against the same model "
            "from scratch, at each of --sizes, --seeds seeds each. The second stage trains the "
            "backbone at --backbone-lr x --lr (default here 0.1). Writes finetune.json and "
            "report.html.")
    _run_opts(p)
    p.add_argument("--sizes", default="50,100,500", metavar="N,N",
                   help="training-set sizes: counts or fractions (default: 50,100,500)")
    p.add_argument("--seeds", type=int, default=3, metavar="K",
                   help="seeds per size and arm (default: 3: intervals and the decomposition)")
    p.add_argument("--head-epochs", type=int, default=None, metavar="E",
                   help="epochs of the head alone, backbone frozen (default: a third of "
                   "--epochs, at least 1)")
    _fit_opts(p, "print the planned fits of the first stage and an estimated time range")
    _add_config(p)

    p = add("shift", _shift, help="error (and bias/variance for an ensemble) on corrupted "
            "copies of a run's test set, five severities each; --adabn re-estimates batch norm",
            description="Score a `biasvar train` run's model, or a `biasvar ensemble` run's "
            "members, on its test set corrupted CIFAR-10-C style (seeded: a rerun is "
            "identical). Writes shift.json and report.html (default: RUN_DIR/shift). Trains "
            "nothing.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--corruptions", default=None, metavar="A,B",
                   help="which (default: all): gaussian_noise, blur, contrast, brightness, "
                   "rotation, translation, occlusion; none: only the test set as it is (with "
                   "--adabn / --few-shot: adapt to a test set that is itself shifted)")
    p.add_argument("--severities", default=None, metavar="1,2,3,4,5",
                   help="which severities, 1 (mild) to 5 (severe) (default: all five)")
    p.add_argument("--adabn", action="store_true",
                   help="also score each model after re-estimating its batch-norm statistics on "
                   "the corrupted test images (unlabelled; AdaBN)")
    p.add_argument("--few-shot", type=int, default=None, metavar="K",
                   help="also fine-tune each model on K labelled images per class of each "
                   "shifted set and score the rest, before and after")
    p.add_argument("--target", default=None, metavar="DATASET",
                   help="also score on another dataset's test images (a built-in name, "
                   "imagefolder:PATH or csv:PATH), converted to the model's image size and "
                   "channels; alone, it replaces the corruptions")
    p.add_argument("--label-map", default=None, metavar="A=B,...|FILE",
                   help="--target's classes → the model's (target=model pairs, or a YAML "
                   "file); default: the same names")
    p.add_argument("--seed", type=int, default=0, help="seed of the corruptions (default: 0)")
    p.add_argument("--device", default=None, metavar="DEV",
                   help="where the models run: auto, cpu, cuda or cuda:N (default: the run's "
                   "setting)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output folder (default: RUN_DIR/shift)")
    p.add_argument("--no-report", dest="report", action="store_false",
                   help="do not write report.html")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no line per corruption as it is scored")

    add("report", _report, help="(re)render report.html of a run directory from its saved "
        "results, without training").add_argument("run_dir", metavar="RUN_DIR")
    p = add("compare", _compare, help="runs side by side: one offline page with their key "
            "figures in columns, curves overlaid, decomposition bars, verdicts and what changed",
            description="Compare two or more run directories (e.g. a quick and a thorough "
            "diagnose, or a run before and after a remedy) on one self-contained page; "
            "prints its path. Trains nothing.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories, the first "
                   "is the baseline the changes are measured from")
    p.add_argument("--out", metavar="FILE.html", help="where to write the page (default: "
                   "runs/compare-<hash>.html)")
    p.add_argument("--labels", metavar="A,B,...", help="a name for each run, comma-separated "
                   "(default: the directories' names)")
    return parser, subs


def _format_warnings() -> None:
    """biasvar's own warnings print as one plain line ("biasvar: note: ..."), not with a path."""
    import warnings

    original = warnings.formatwarning

    def fmt(message, category, filename, lineno, line=None):  # type: ignore[no-untyped-def]
        if category.__module__.startswith("biasvar"):
            return f"biasvar: note: {message}\n"
        return original(message, category, filename, lineno, line)

    warnings.formatwarning = fmt  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> int:
    _format_warnings()
    parser, subs = build_parser()
    args, extra = parser.parse_known_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    if extra:  # reported by the subcommand's parser: its usage, its flags
        key = f"curve {args.curve}" if args.command == "curve" else args.command
        subs.get(key, parser).error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except BiasvarError as e:
        print(f"biasvar: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nbiasvar: interrupted; run the same command again to continue where it stopped.",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
