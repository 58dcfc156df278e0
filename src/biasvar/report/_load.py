"""Gather what a run directory holds (the README's results.json contract) into one mapping; read
only, never recompute.

results.json is read and validated by :func:`biasvar.analysis._results.load_results` (a typed
:class:`~biasvar.analysis._results.Results`); the other files (metrics.json, history.csv,
config.yaml, env.json, gallery.json, suspects.json) are read as they are and tolerated when
damaged.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..analysis._results import finite, load_results
from ..errors import BiasvarError

if TYPE_CHECKING:
    from ..analysis._results import Results

__all__ = ["load_run", "run_of", "number", "RUN_FILES"]

#: key in :func:`load_run`'s mapping -> file name in the run directory
RUN_FILES = {"config": "config.yaml", "env": "env.json", "history": "history.csv",
             "steps": "steps.csv", "metrics": "metrics.json", "gallery": "gallery.json", "suspects": "suspects.json",
             "results": "results.json"}


def number(x: Any) -> float | None:
    """A value of an untyped run file (metrics.json, history, gallery.json) as a finite float,
    else None (text, booleans, NaN and missing values alike)."""
    return float(x) if finite(x) else None


def _cell(text: str | None) -> float | int | None:
    """A CSV cell as int / float; empty, unparseable or non-finite cells become None."""
    if text is None:
        return None
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return number(float(text))
    except ValueError:
        return None


def _read_history(path: Path) -> list[dict[str, Any]]:
    """history.csv (or steps.csv) as a list of dicts, one per row (cells as numbers or None)."""
    with open(path, encoding="utf-8", newline="") as f:
        return [{str(k): _cell(v) for k, v in row.items() if k is not None}
                for row in csv.DictReader(f)]


def _read_yaml(path: Path) -> Any:
    import yaml

    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# the files besides results.json: reader, and what each must parse to (anything else is
# reported as a problem and ignored)
_READERS = {"config": (_read_yaml, dict), "env": (_read_json, dict),
            "history": (_read_history, list), "steps": (_read_history, list), "metrics": (_read_json, dict),
            "gallery": (_read_json, list), "suspects": (_read_json, list)}


def _read_files(root: Path, out: dict[str, Any]) -> None:
    """Add to ``out`` each readable file of ``root`` but results.json; problems to its list."""
    for key, (reader, expected) in _READERS.items():
        name = RUN_FILES[key]
        path = root / name
        if not path.is_file():
            continue
        try:
            value = reader(path)
        except Exception as err:  # noqa: BLE001 — a damaged file must not sink the whole report
            out["problems"].append(f"{name}: cannot be read ({type(err).__name__}: {err}); "
                                   "its sections are left out.")
            continue
        if not isinstance(value, expected):
            out["problems"].append(f"{name}: expected a {expected.__name__}, found "
                                   f"{type(value).__name__}; its sections are left out.")
            continue
        out[key] = value


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """Read whatever of config.yaml, env.json, history.csv, steps.csv, metrics.json, gallery.json,
    suspects.json and results.json a run directory holds.

    Args:
        run_dir: a biasvar run directory (the README's results.json contract).

    Returns:
        ``{"run_dir": str, "problems": [str], <key>: content, ...}`` with a key of
        :data:`RUN_FILES` for each file present and readable: ``results`` (a typed
        :class:`~biasvar.analysis._results.Results`), ``config`` (mapping from YAML), ``env`` /
        ``metrics`` (mappings), ``history`` (list of per-epoch dicts with numbers or None),
        ``steps`` (the same per window of optimizer steps: step, epoch, loss, lr),
        ``gallery`` / ``suspects`` (lists: the most confidently wrong test images, the
        training images suspected of wrong labels). One of the other files that exists but
        cannot be parsed, or parses to the wrong type, is left out and described in
        ``problems`` (the report shows them).

    Raises:
        BiasvarError: ``run_dir`` is not a folder.
        ResultsError: results.json is there but is not valid (names the key path).

    >>> run = load_run("runs/diagnose-fashion-mnist-cnn-1a2b3c4d")  # doctest: +SKIP
    >>> run["results"].verdict.label  # doctest: +SKIP
    'high_variance'
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise BiasvarError(f"RUN_DIR: {str(root)!r} is not a folder; give the path of a biasvar "
                           "run directory (it holds results.json or metrics.json).")
    out: dict[str, Any] = {"run_dir": str(root), "problems": []}
    _read_files(root, out)
    if (root / RUN_FILES["results"]).is_file():
        out["results"] = load_results(root)
    return out


def run_of(results: Results) -> dict[str, Any]:
    """The :func:`load_run` mapping for results held in memory: ``results`` itself, plus the
    other files of ``results.run_dir`` when it is set and is a folder (results.json there is
    not read again). ``run_dir`` is None when the results have none."""
    root = results.run_dir
    out: dict[str, Any] = {"run_dir": str(root) if root is not None else None, "problems": []}
    if root is not None and Path(root).is_dir():
        _read_files(Path(root), out)
    out["results"] = results
    return out
