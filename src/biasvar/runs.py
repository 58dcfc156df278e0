"""Opening a run: the one set-up every command that trains goes through, in one order.

resolve the config → load the data (fails before anything is written) → preflight the model
(and every variant a curve will train) → name the run directory → choose the precision (or
reuse the one the run directory chose before) → prepare the folder → check it holds this run →
write the resolved config (with the analysis options) and the split.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .config import AnalysisConfig, ExperimentConfig, load_config, resolve

__all__ = ["RunSetup", "open_run", "train_run", "evaluate_run", "render", "print_metrics"]


@dataclass
class RunSetup:
    """An opened run: its resolved config, data, run directory and (for analyses) the precision
    every fit uses."""

    command: str
    cfg: ExperimentConfig
    data: Any
    run_dir: Path
    analysis: AnalysisConfig | None = None
    precision: dict[str, Any] | None = None

    def prepare(self, *, fresh: bool) -> None:
        """Create (or, with ``fresh``, clear) the run directory and check it holds this run."""
        from .rundir import check_same_run, prepare_run_dir

        prepare_run_dir(self.run_dir, fresh=fresh)
        check_same_run(self.run_dir, self.cfg, self.data.indices, what=self.command)

    def write(self) -> None:
        """The resolved config (with the analysis options) and the split."""
        from .rundir import save_splits, write_config

        write_config(self.run_dir, self.cfg, analysis=self.analysis)
        save_splits(self.run_dir, self.data.indices)


def _stored_precision(run_dir: Path, cfg: ExperimentConfig) -> dict[str, Any] | None:
    """The precision an earlier (perhaps interrupted) run in ``run_dir`` chose for ``auto``, so a
    continued run finds its stored fits: timing again could choose differently (a busy machine)
    and give every job a new key."""
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


def _check_analysis_options(cfg: ExperimentConfig) -> None:
    """Refuse what an analysis would not use: without early stopping, --monitor and
    --min-delta only choose each fit's best.pt, which the analyses never read (they score the
    final weights)."""
    from dataclasses import fields

    from .errors import ConfigError

    if cfg.early_stopping:
        return
    defaults = {f.name: f.default for f in fields(ExperimentConfig)}
    for name in ("monitor", "min_delta"):
        value = getattr(cfg, name)
        if value != defaults[name]:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{name}: {value} would change nothing in an analysis without "
                              f"--early-stopping: it only picks each fit's best.pt, and the "
                              f"analyses score the final weights. Add --early-stopping, or "
                              f"leave {flag} out.")


def open_run(command: str, cfg: ExperimentConfig, *, out: str | Path | None = None,
             fresh: bool = False, analysis: AnalysisConfig | None = None,
             variants: tuple[ExperimentConfig, ...] | list = (), source: Any = None,
             fix_precision: bool = True) -> RunSetup:
    """Resolve, load, preflight, name the run directory and fix the precision; nothing is
    written yet (``prepare`` and ``write`` do that), so a refused run leaves no trace.

    ``fix_precision`` (analyses) makes ``auto`` precision concrete once for every fit, so the
    fits' keys and results do not depend on a timing that could choose differently next time;
    ``train`` leaves it to ``fit``.
    """
    from .data import load_data
    from .rundir import default_run_dir
    from .train import preflight

    cfg = resolve(cfg)
    if command != "train":
        _check_analysis_options(cfg)
    data = load_data(cfg) if source is None else load_data(cfg, source=source)
    preflight(cfg, data)
    for variant in variants:  # e.g. a complexity curve's values: fail before writing
        preflight(resolve(variant), data)
    key = analysis.semantic() if analysis is not None else None
    run_dir = Path(out) if out else default_run_dir(command, cfg, extra=key)
    setup = RunSetup(command, cfg, data, run_dir, analysis)
    if fix_precision:
        from .models import is_conv
        from .train import build_model, choose_precision, resolve_device

        precision = None if fresh else _stored_precision(run_dir, cfg)
        if precision is None:
            precision = choose_precision(cfg, build_model(cfg, data), data.input_shape,
                                         data.num_classes, resolve_device(cfg.device),
                                         conv=is_conv(cfg.model))
        setup.precision = precision
        setup.cfg = replace(cfg, precision=precision["precision"],
                            channels_last="on" if precision["channels_last"] else "off")
    return setup


def print_metrics(metrics: dict[str, dict]) -> None:
    """The train/val/test table ``train`` and ``evaluate`` print."""
    def pct(v: float) -> str:
        return f"{100 * v:6.2f}%"

    print(f"\n{'split':<6} {'n':>6} {'accuracy':>9} {'error':>8} {'F1 macro':>9} "
          f"{'ECE':>7} {'loss':>7}")
    for s in ("train", "val", "test"):
        if s in metrics:
            m = metrics[s]
            print(f"{s:<6} {m['n']:>6} {pct(m['accuracy']):>9} {pct(m['error']):>8} "
                  f"{m['f1_macro']:>9.4f} {m['ece']:>7.4f} {m['loss']:>7.4f}")


def render(run_dir: Path, *, required: bool = False) -> Path | None:
    """Write run_dir/report.html; with ``required`` a failure is an error, else a warning."""
    from .errors import BiasvarError

    try:
        from .report import render_report
    except ImportError:
        if required:
            raise BiasvarError("report: the report module is not available in this build.")
        return None
    if not run_dir.is_dir():
        raise BiasvarError(f"RUN_DIR: {str(run_dir)!r} is not a folder.")
    # the commands with their own page, by the file each writes
    import importlib

    for file, module, fn in (("tune.json", "_tune", "render_tune_report"),
                             ("ensemble.json", "_ensemble", "render_ensemble_report"),
                             ("finetune.json", "_finetune", "render_finetune_report"),
                             ("shift.json", "_shift", "render_shift_report")):
        if (run_dir / file).is_file():
            return getattr(importlib.import_module(f".report.{module}", __package__), fn)(run_dir)
    if not any((run_dir / f).is_file() for f in ("results.json", "metrics.json")):
        raise BiasvarError(f"RUN_DIR: {str(run_dir)!r} holds neither results.json nor "
                           "metrics.json; point at a finished biasvar run directory.")
    return render_report(run_dir)


def train_run(cfg: ExperimentConfig, *, out: str | Path | None = None, fresh: bool = False,
              resume: bool | str = False, progress: bool = True, report: bool = True,
              quiet: bool = False, source: Any = None) -> Path:
    """``biasvar train``: fit, evaluate, write the run directory; returns its path."""
    from ._io import atomic_write_json, read_json
    from .errors import CheckpointError
    from .train import Callback, evaluate, fit, load_checkpoint, most_confidently_wrong

    if resume is not True and resume:
        if not Path(resume).exists():
            raise CheckpointError(f"--resume: {resume!r} does not exist.")
        load_checkpoint(resume)  # a damaged or foreign file is named first
    setup = open_run("train", cfg, out=out, fresh=fresh, fix_precision=False, source=source)
    cfg, data, run_dir = setup.cfg, setup.data, setup.run_dir
    if resume is True and not (run_dir / "last.pt").is_file() and not fresh:
        raise CheckpointError(f"--resume: no last.pt in {run_dir}; nothing to resume. Run "
                              "without --resume to start training.")
    setup.prepare(fresh=fresh)
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
            from .rundir import write_env

            setup.write()
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


def evaluate_run(run_dir: str | Path, *, checkpoint: str = "auto", device: str = "auto"
                 ) -> dict[str, Any]:
    """Re-score a ``biasvar train`` run's best/last weights on train/val/test; writes and
    returns metrics.json."""
    from ._io import atomic_write_json, read_json
    from .data import load_data
    from .errors import BiasvarError
    from .rundir import check_same_run
    from .train import evaluate, most_confidently_wrong

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise BiasvarError(f"RUN_DIR: {str(run_dir)!r} has no config.yaml; point at the run "
                           "directory of a `biasvar train`.")
    if (run_dir / "ensemble.json").is_file():  # a `biasvar ensemble`: its members as one model
        if checkpoint != "auto":
            raise BiasvarError(f"--checkpoint: {checkpoint!r} does not apply to an ensemble, "
                               "whose members' weights are listed in ensemble.json; drop it.")
        cfg = replace(resolve(load_config(run_dir / "config.yaml")), device=device)
        data = load_data(cfg)
        check_same_run(run_dir, cfg, data.indices, what="evaluate")
        model = load_ensemble(run_dir, data)
        metrics, lps = evaluate(model, data, device=device, workers=cfg.loader_workers,
                                return_log_probs=True)
        atomic_write_json(run_dir / "gallery.json", most_confidently_wrong(data, lps["test"]))
        atomic_write_json(run_dir / "metrics.json", metrics)
        members = getattr(model, "members", None)
        print(f"{run_dir}: scored the ensemble of {len(members)} members "
              f"({model.combine} averaged)" if members is not None else
              f"{run_dir}: scored the snapshots' averaged weights (swa.pt)")
        return metrics
    if (run_dir / "results.json").is_file() and not (run_dir / "last.pt").is_file():
        kind = (read_json(run_dir / "results.json") or {}).get("command", "analysis")
        raise BiasvarError(f"RUN_DIR: {str(run_dir)!r} is a `biasvar {kind}` run, not a `biasvar "
                           "train` run: its results are in results.json (`biasvar report "
                           "RUN_DIR` shows them). evaluate re-scores train runs.")
    cfg = replace(resolve(load_config(run_dir / "config.yaml")), device=device)
    which = ("best" if cfg.early_stopping else "last") if checkpoint == "auto" else checkpoint
    data = load_data(cfg)
    check_same_run(run_dir, cfg, data.indices, what="evaluate")
    model, ck = load_trained(cfg, data, run_dir / f"{which}.pt", "the model in config.yaml")
    metrics = evaluate(model, data, device=device, workers=cfg.loader_workers)
    atomic_write_json(run_dir / "metrics.json", metrics)
    print(f"{run_dir}: scored {which}.pt (epoch {ck['epoch']})")
    return metrics


def load_ensemble(run_dir: str | Path, data: Any = None) -> Any:
    """The ensemble of a ``biasvar ensemble`` run as one ``nn.Module`` (eval mode), built from
    ``ensemble.json``: each member's config and weights from its fit directory (for
    ``--combine weights``, the one averaged model in ``swa.pt``)."""
    from ._io import read_json
    from .data import load_data
    from .errors import BiasvarError
    from .models._ensemble import Ensemble

    run_dir = Path(run_dir)
    doc = read_json(run_dir / "ensemble.json") if (run_dir / "ensemble.json").is_file() else None
    if not isinstance(doc, dict) or "member_fits" not in doc:
        raise BiasvarError(f"RUN_DIR: {str(run_dir)!r} has no ensemble.json; point at the run "
                           "directory of a `biasvar ensemble`.")
    cfg = resolve(load_config(run_dir / "config.yaml"))
    data = data if data is not None else load_data(cfg)
    if doc["combine"] == "weights":  # the snapshots' weights averaged (SWA): one model
        return load_trained(cfg, data, run_dir / doc["weights"], "the averaged model")[0]
    models = [load_trained(cfg, data, run_dir / m["weights"], "the ensemble's model")[0]
              for m in doc["member_fits"]]
    return Ensemble(models, doc["combine"]).eval()


def load_trained(cfg: ExperimentConfig, data: Any, path: Path, what: str) -> tuple[Any, dict]:
    """The configured model with the weights of checkpoint ``path`` (eval mode), and the
    checkpoint; weights that do not fit are a CheckpointError naming ``path`` and ``what``."""
    from .errors import CheckpointError
    from .train import build_model, load_checkpoint

    ck = load_checkpoint(path)
    model = build_model(cfg, data)
    try:
        model.load_state_dict(ck["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: does not fit {what} ({str(e).splitlines()[0]}).") \
            from None
    return model.eval(), ck
