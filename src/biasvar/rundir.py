"""Run directories: naming, the resolved config, the environment record.

A run directory is named from the command, dataset, model and a short hash of the resolved
config (``runs/train-fashion-mnist-cnn-1a2b3c4d``), so running the same command again finds it
and continues. Every file in it is written atomically.
"""
from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json
from .config import ExperimentConfig, config_hash, to_yaml
from .errors import BiasvarError

__all__ = ["default_run_dir", "prepare_run_dir", "check_same_run", "environment",
           "write_config", "write_env", "save_splits", "RUNS_ROOT"]

#: where run directories go unless ``--out`` says otherwise (override with BIASVAR_RUNS)
RUNS_ROOT = Path(os.environ.get("BIASVAR_RUNS", "runs"))

_MARKERS = ("config.yaml", "last.pt", "results.json", "metrics.json")


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", text.split(":")[-1] if ":" in text else text)
    s = s.strip("._-")[-40:]
    prefix = text.split(":")[0] + "_" if ":" in text else ""
    return (prefix + s) or "data"


def default_run_dir(command: str, cfg: ExperimentConfig, *, extra: Any = None) -> Path:
    return RUNS_ROOT / f"{command}-{_slug(cfg.dataset)}-{_slug(cfg.model)}-" \
                       f"{config_hash(cfg, extra={'command': command, 'extra': extra})}"


#: everything biasvar writes in a run directory (``--fresh`` removes these and nothing else)
_RUN_FILES = ("config.yaml", "env.json", "history.csv", "metrics.json", "last.pt", "best.pt",
              "splits.npz", "gallery.json", "results.json", "report.html", "fits", "tensorboard")


def prepare_run_dir(path: str | Path, *, fresh: bool) -> Path:
    """Create ``path``. A non-empty folder must be a biasvar run directory (a run written into
    any other folder would mix with its files); with ``fresh``, the previous run's files are
    removed first — only the files biasvar writes, never anything else there."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise BiasvarError(f"--out: {str(p)!r} is a file, not a folder; choose another path.")
    if p.is_dir() and any(p.iterdir()):
        if not any((p / m).exists() for m in _MARKERS):
            raise BiasvarError(
                f"--out: {str(p)!r} is not empty and is not a biasvar run directory (it has no "
                f"{', '.join(_MARKERS)}); a run written there would mix with its files. Choose "
                "a new or empty folder.")
        if fresh:
            for entry in os.scandir(p):
                ours = entry.name in _RUN_FILES or (entry.name.startswith(".")
                                                    and entry.name.endswith(".tmp"))
                if not ours:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
    p.mkdir(parents=True, exist_ok=True)
    return p


def check_same_run(run_dir: Path, cfg: ExperimentConfig, indices: dict[str, np.ndarray], *,
                   what: str) -> None:
    """Raise when ``run_dir`` holds a run of another configuration, or of data whose split no
    longer matches its ``splits.npz`` (images added, removed or changed since)."""
    from .config import load_config, semantic_dict

    saved = run_dir / "config.yaml"
    if saved.is_file():
        try:
            old = load_config(saved)
        except BiasvarError:
            old = None
        if old is not None and config_hash(old) != config_hash(cfg):
            a, b = semantic_dict(old), semantic_dict(cfg)
            diff = sorted(k for k in a if a[k] != b[k])
            raise BiasvarError(
                f"{what}: {str(run_dir)!r} holds a run with another configuration (differs in: "
                f"{', '.join(diff)}). Use --fresh to replace it, or another --out.")
    splits = run_dir / "splits.npz"
    if splits.is_file():
        with np.load(splits) as z:
            changed = sorted(k for k in indices
                             if k in z.files and not np.array_equal(z[k], indices[k]))
        if changed:
            raise BiasvarError(
                f"{what}: the data changed since {str(run_dir)!r} was trained: its "
                f"{'/'.join(changed)} split no longer matches splits.npz (images were added, "
                "removed or became unreadable), so its results would describe other images. "
                "Restore the data, or train again with --fresh.")


def _git_revision() -> str | None:
    for where in (Path.cwd(), Path(__file__).resolve().parent):
        try:
            out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                                 text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return None
        if out.returncode == 0:
            return out.stdout.strip()
    return None


def environment(*, seed: int | None = None, device: str | None = None,
                precision: dict | None = None,
                loader_workers: int | None = None) -> dict[str, Any]:
    """Versions, machine and run facts for env.json; ``loader_workers`` is given when the
    images were streamed (the DataLoader processes that decoded them)."""
    import torch
    import torchvision

    from . import __version__

    env = {
        "biasvar": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "torchvision": torchvision.__version__, "numpy": np.__version__,
        "platform": platform.platform(), "processor": platform.machine(),
        "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "device": device, "seed": seed, "git_revision": _git_revision(),
        "argv": sys.argv,
    }
    if loader_workers is not None:
        env["streamed"] = {"loader_workers": loader_workers}
    if precision is not None:
        env["precision"] = {"chosen": {"autocast": precision.get("precision"),
                                       "channels_last": precision.get("channels_last")},
                            "auto": precision.get("auto", False),
                            "timings_ms": precision.get("timings_ms", {})}
    return env


def write_config(run_dir: Path, cfg: ExperimentConfig, **extra: Any) -> None:
    atomic_write_text(run_dir / "config.yaml", to_yaml(cfg, **extra))


def write_env(run_dir: Path, **kwargs: Any) -> dict[str, Any]:
    env = environment(**kwargs)
    atomic_write_json(run_dir / "env.json", env)
    return env


def save_splits(run_dir: Path, indices: dict[str, np.ndarray]) -> None:
    """The split's row numbers (splits.npz), so every later command can check it sees the same."""
    import io

    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v, dtype=np.int64) for k, v in indices.items()})
    atomic_write_bytes(run_dir / "splits.npz", buf.getvalue())


def load_json_if(path: Path) -> Any:
    return read_json(path) if path.is_file() else None
