"""The ``biasvar`` command line.

Every command that trains takes ``--config FILE.yaml`` plus flags for every config field (flags
win), writes a run directory (``--out`` or a name derived from the config) and never shows a
traceback for a user error: the message names the field, the value and the fix.
"""
from __future__ import annotations

import argparse
import difflib
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from .config import ExperimentConfig, from_dict, get_type_hints, load_config, resolve
from .errors import BiasvarError

__all__ = ["main", "build_parser", "config_from_args"]

_GROUP_TITLES = {"data": "data", "model": "model", "training": "training",
                 "runtime": "runtime"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        if message.startswith("unrecognized arguments"):
            opts = [s for a in self._actions for s in a.option_strings]
            for bad in message.split(":", 1)[1].split():
                if bad.startswith("-"):
                    close = difflib.get_close_matches(bad.split("=")[0], opts, n=1, cutoff=0.6)
                    if close:
                        message += f" (did you mean {close[0]}?)"
                        break
        super().error(message)


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per config field (``--width 64``, ``--batchnorm/--no-batchnorm``)."""
    p.add_argument("--config", metavar="FILE.yaml", help="read options from a YAML file; flags "
                   "given on the command line override it")
    hints = get_type_hints(ExperimentConfig)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in fields(ExperimentConfig):
        g = f.metadata.get("group", "training")
        if g not in groups:
            groups[g] = p.add_argument_group(f"{_GROUP_TITLES.get(g, g)} options")
        flag = "--" + f.name.replace("_", "-")
        default = "dataset default" if f.default is None and f.name in (
            "epochs", "batch_size", "lr", "width", "depth") else f.default
        help_ = f"{f.metadata['help']} (default: {default})"
        if hints[f.name] is bool:
            groups[g].add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                   default=argparse.SUPPRESS, help=help_)
        else:
            groups[g].add_argument(flag, dest=f.name, default=argparse.SUPPRESS, metavar="V",
                                   help=help_)


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    names = {f.name for f in fields(ExperimentConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in names}
    if getattr(args, "config", None):
        return load_config(args.config, **overrides)
    return from_dict(overrides, source="flag")


def _run_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/<command>-"
                   "<dataset>-<model>-<hash>)")
    p.add_argument("--fresh", action="store_true", help="discard a previous run in the run "
                   "directory and start over")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars")
    p.add_argument("--no-report", dest="report", action="store_false",
                   help="do not write report.html")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="biasvar", description="Is my classifier's error bias or variance, "
                     "how much of each, and what will fix it?")
    parser.add_argument("--version", action="version", version=f"biasvar {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    sub.add_parser("datasets", help="list the built-in datasets and where their files are looked for")
    p = sub.add_parser("models", help="list the models with their parameter counts")
    p.add_argument("--dataset", default="fashion-mnist", help="count parameters for this "
                   "dataset's input shape (built-ins only)")

    p = sub.add_parser("train", help="train one model and evaluate it on train/val/test",
                       description="Train one model; writes config.yaml, env.json, history.csv, "
                       "metrics.json, last.pt, best.pt and report.html to its run directory. "
                       "Running the same command again continues an interrupted run.")
    _run_opts(p)
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                   help="continue from the run directory's last.pt (or this checkpoint file)")
    add_config_flags(p)

    p = sub.add_parser("evaluate", help="re-score a trained run on train/val/test")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--checkpoint", choices=("auto", "best", "last"), default="auto",
                   help="weights to score: best.pt, last.pt, or auto (best when early stopping "
                   "restored it, else last)")
    p.add_argument("--device", default="auto")

    from .commands import add_commands

    add_commands(sub, add_config_flags, _run_opts)
    return parser


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
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    from . import commands

    try:
        return int(commands.run(args) or 0)
    except BiasvarError as e:
        print(f"biasvar: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nbiasvar: interrupted; run the same command again to continue where it stopped.",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
