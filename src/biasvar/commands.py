"""What each CLI command does (argument parsing lives in cli.py)."""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from ._io import atomic_write_json, read_json
from .config import ExperimentConfig, load_config, resolve
from .errors import BiasvarError, CheckpointError

__all__ = ["run", "add_commands", "train_command"]


def add_commands(sub: Any, add_config_flags: Callable, run_opts: Callable) -> None:
    """Commands beyond train/evaluate/datasets/models (the bias–variance analyses, the report)."""
    try:
        from .analysis.cli import add_parsers
    except ImportError:
        add_parsers = None
    if add_parsers is not None:
        add_parsers(sub, add_config_flags, run_opts)
    p = sub.add_parser("report", help="(re)render report.html of a run directory from its saved "
                       "results, without training")
    p.add_argument("run_dir", metavar="RUN_DIR")


def run(args: argparse.Namespace) -> int:
    if args.command == "datasets":
        return _datasets()
    if args.command == "models":
        return _models(args)
    if args.command == "train":
        from .cli import config_from_args

        train_command(config_from_args(args), out=args.out, fresh=args.fresh,
                      resume=args.resume, progress=args.progress, report=args.report)
        return 0
    if args.command == "evaluate":
        return _evaluate(Path(args.run_dir), args.checkpoint, args.device)
    if args.command == "report":
        path = render(Path(args.run_dir), required=True)
        print(f"report: {path}")
        return 0
    from .analysis.cli import run as run_analysis

    return run_analysis(args)


def _datasets() -> int:
    from .data import list_datasets

    print(f"{'name':<15} {'shape':<9} {'classes':>7}  description / where files are looked for")
    for d in list_datasets():
        shape = "x".join(map(str, d.shape))
        print(f"{d.name:<15} {shape:<9} {d.num_classes:>7}  {d.description}\n{'':<34}{d.where}")
    print(f"{'imagefolder:PATH':<15} {'any':<9} {'any':>7}  a folder per class of images")
    print(f"{'csv:PATH':<15} {'any':<9} {'any':>7}  a CSV with columns path,label (paths relative to it)")
    return 0


def _models(args: argparse.Namespace) -> int:
    from .config import MODEL_DEFAULTS
    from .data._builtin import BUILTIN
    from .models import list_models

    info = BUILTIN.get(args.dataset)
    print(f"{'name':<10} {'params':>10}  default width/depth   description "
          f"(parameters for {args.dataset}: {'x'.join(map(str, info.shape))}, "
          f"{info.num_classes} classes)")
    for m, n in list_models(info.shape, info.num_classes):
        d = MODEL_DEFAULTS.get(m.name, {})
        wd = f"{d.get('width') or '-'}/{d.get('depth') if d.get('depth') is not None else '-'}"
        print(f"{m.name:<10} {n:>10,}  {wd:<20} {m.description}")
    print(f"{'pkg.mod:fn':<10} {'':>10}  {'':<20} your own nn.Module factory")
    return 0


def _fmt_pct(v: float) -> str:
    return f"{100 * v:6.2f}%"


def print_metrics(metrics: dict[str, dict]) -> None:
    print(f"\n{'split':<6} {'n':>6} {'accuracy':>9} {'error':>8} {'F1 macro':>9} "
          f"{'ECE':>7} {'loss':>7}")
    for s in ("train", "val", "test"):
        if s in metrics:
            m = metrics[s]
            print(f"{s:<6} {m['n']:>6} {_fmt_pct(m['accuracy']):>9} {_fmt_pct(m['error']):>8} "
                  f"{m['f1_macro']:>9.4f} {m['ece']:>7.4f} {m['loss']:>7.4f}")


def render(run_dir: Path, *, required: bool = False) -> Path | None:
    """Write run_dir/report.html; with ``required`` a failure is an error, else a warning."""
    try:
        from .report import render_report
    except ImportError:
        if required:
            raise BiasvarError("report: the report module is not available in this build.")
        return None
    if not run_dir.is_dir():
        raise BiasvarError(f"RUN_DIR: {str(run_dir)!r} is not a folder.")
    if not any((run_dir / f).is_file() for f in ("results.json", "metrics.json")):
        raise BiasvarError(f"RUN_DIR: {str(run_dir)!r} holds neither results.json nor "
                           "metrics.json; point at a finished biasvar run directory.")
    return render_report(run_dir)


def train_command(cfg: ExperimentConfig, *, out: str | None = None, fresh: bool = False,
                  resume: bool | str = False, progress: bool = True, report: bool = True,
                  quiet: bool = False) -> Path:
    """``biasvar train``: fit, evaluate, write the run directory; returns its path."""
    from .data import load_data
    from .rundir import (check_same_run, default_run_dir, prepare_run_dir, save_splits,
                         write_config, write_env)
    from .train import evaluate, fit, most_confidently_wrong
    from .train._callbacks import Callback
    from .train._fit import preflight

    cfg = resolve(cfg)
    run_dir = Path(out) if out else default_run_dir("train", cfg)
    if resume is not True and resume:
        if not Path(resume).exists():
            raise CheckpointError(f"--resume: {resume!r} does not exist.")
        from .train._fit import load_checkpoint

        load_checkpoint(resume)  # a damaged or foreign file is named first
    if resume is True and not (run_dir / "last.pt").is_file() and not fresh:
        raise CheckpointError(f"--resume: no last.pt in {run_dir}; nothing to resume. Run "
                              "without --resume to start training.")
    data = load_data(cfg)  # fails early, before anything is written
    preflight(cfg, data)
    run_dir = prepare_run_dir(run_dir, fresh=fresh)
    check_same_run(run_dir, cfg, data.indices, what="train")
    if (run_dir / "metrics.json").is_file() and (run_dir / "last.pt").is_file() and not resume:
        print(f"{run_dir}: already trained with this configuration (use --fresh to retrain).")
        print_metrics(read_json(run_dir / "metrics.json"))
        return run_dir
    if not resume and (run_dir / "last.pt").is_file():
        resume = True
        print(f"{run_dir}: continuing the interrupted run from last.pt")
    print(data.summary())
    for note in data.notes:
        print(note)

    class _Env(Callback):
        # written once a resumed checkpoint has been checked and the precision chosen, so a
        # refused --resume leaves the run directory as it was
        def on_fit_start(self, trainer: Any, **kw: Any) -> None:
            write_config(run_dir, cfg)
            save_splits(run_dir, data.indices)
            write_env(run_dir, seed=trainer.seed, device=str(trainer.device),
                      precision=trainer.precision,
                      loader_workers=trainer.workers if data.streamed else None)

    result = fit(cfg, data, run_dir=run_dir, resume=resume, callbacks=[_Env()],
                 progress=progress)
    if result.stop_reason:
        print(result.stop_reason)
    metrics, lps = evaluate(result.model, data, device=cfg.device,
                            channels_last=result.precision["channels_last"], return_log_probs=True,
                            workers=cfg.loader_workers)
    atomic_write_json(run_dir / "gallery.json", most_confidently_wrong(data, lps["test"]))
    atomic_write_json(run_dir / "metrics.json", metrics)
    epoch_s = [h["seconds"] for h in result.history]
    if not quiet:
        print_metrics(metrics)
        if epoch_s:
            print(f"\n{len(epoch_s)} epochs, {sum(epoch_s) / len(epoch_s):.1f} s/epoch "
                  f"({result.precision['precision']}"
                  f"{', channels_last' if result.precision['channels_last'] else ''}); "
                  f"run directory: {run_dir}")
    if report:
        path = render(run_dir)
        if path and not quiet:
            print(f"report: {path}")
    return run_dir


def _evaluate(run_dir: Path, which: str, device: str) -> int:
    from .data import load_data
    from .rundir import check_same_run
    from .train import build_model, evaluate, load_checkpoint

    if not (run_dir / "config.yaml").is_file():
        raise BiasvarError(f"RUN_DIR: {str(run_dir)!r} has no config.yaml; point at the run "
                           "directory of a `biasvar train`.")
    if (run_dir / "results.json").is_file() and not (run_dir / "last.pt").is_file():
        kind = (read_json(run_dir / "results.json") or {}).get("command", "analysis")
        raise BiasvarError(f"RUN_DIR: {str(run_dir)!r} is a `biasvar {kind}` run, not a `biasvar "
                           "train` run: its results are in results.json (`biasvar report "
                           "RUN_DIR` shows them). evaluate re-scores train runs.")
    cfg = resolve(load_config(run_dir / "config.yaml"))
    cfg = replace(cfg, device=device)
    if which == "auto":
        which = "best" if cfg.early_stopping else "last"
    ck = load_checkpoint(run_dir / f"{which}.pt")
    data = load_data(cfg)
    check_same_run(run_dir, cfg, data.indices, what="evaluate")
    model = build_model(cfg, data)
    try:
        model.load_state_dict(ck["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{run_dir / f'{which}.pt'}: does not fit the model in "
                              f"config.yaml ({str(e).splitlines()[0]}).") from None
    metrics = evaluate(model, data, device=device, workers=cfg.loader_workers)
    atomic_write_json(run_dir / "metrics.json", metrics)
    print(f"{run_dir}: scored {which}.pt (epoch {ck['epoch']})")
    print_metrics(metrics)
    return 0
