"""Gather what a run directory holds (SCHEMA.md) into one mapping; read only, never recompute."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from ..errors import BiasvarError

__all__ = ["load_run", "RUN_FILES"]

#: key in :func:`load_run`'s mapping -> file name in the run directory
RUN_FILES = {"config": "config.yaml", "env": "env.json", "history": "history.csv",
             "metrics": "metrics.json", "gallery": "gallery.json", "results": "results.json"}


def _number(text: str | None) -> float | int | None:
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
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _read_history(path: Path) -> list[dict[str, Any]]:
    """history.csv as a list of per-epoch dicts (one per row; cells as numbers or None)."""
    with open(path, encoding="utf-8", newline="") as f:
        return [{str(k): _number(v) for k, v in row.items() if k is not None}
                for row in csv.DictReader(f)]


def _read_yaml(path: Path) -> Any:
    import yaml

    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


_READERS = {"config": _read_yaml, "env": _read_json, "history": _read_history,
            "metrics": _read_json, "gallery": _read_json, "results": _read_json}

# what each file must parse to; anything else is reported as a problem and ignored
_EXPECTED = {"config": dict, "env": dict, "history": list, "metrics": dict, "gallery": list,
             "results": dict}


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """Read whatever of config.yaml, env.json, history.csv, metrics.json, gallery.json and
    results.json a run directory holds.

    Args:
        run_dir: a biasvar run directory (SCHEMA.md).

    Returns:
        ``{"run_dir": str, "problems": [str], <key>: parsed content, ...}`` with a key of
        :data:`RUN_FILES` for each file present and readable: ``config`` (mapping from YAML),
        ``env`` / ``metrics`` / ``results`` (mappings), ``history`` (list of per-epoch dicts with
        numbers or None), ``gallery`` (list). A file that exists but cannot be parsed, or parses
        to the wrong type, is left out and described in ``problems`` (the report shows them).

    Raises:
        BiasvarError: ``run_dir`` is not a folder.

    >>> run = load_run("runs/diagnose-fashion-mnist-cnn-1a2b3c4d")  # doctest: +SKIP
    >>> run["results"]["verdict"]["label"]  # doctest: +SKIP
    'high_variance'
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise BiasvarError(f"RUN_DIR: {str(root)!r} is not a folder; give the path of a biasvar "
                           "run directory (it holds results.json or metrics.json).")
    out: dict[str, Any] = {"run_dir": str(root), "problems": []}
    for key, name in RUN_FILES.items():
        path = root / name
        if not path.is_file():
            continue
        try:
            value = _READERS[key](path)
        except Exception as err:  # noqa: BLE001 — a damaged file must not sink the whole report
            out["problems"].append(f"{name}: cannot be read ({type(err).__name__}: {err}); "
                                   "its sections are left out.")
            continue
        if not isinstance(value, _EXPECTED[key]):
            out["problems"].append(f"{name}: expected a {_EXPECTED[key].__name__}, found "
                                   f"{type(value).__name__}; its sections are left out.")
            continue
        out[key] = value
    return out
