from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FASHION_SYSTEM = Path("/usr/share/datasets/fashion-mnist")


def require_component(available: bool, what: str, install: str) -> None:
    """Skip when a component is missing — but under CI=true, fail: CI must have it."""
    if available:
        return
    msg = f"{what} is not available ({install})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{msg}; CI=true requires it")
    pytest.skip(msg)


@pytest.fixture
def fashion_available() -> None:
    require_component((FASHION_SYSTEM / "train-images-idx3-ubyte.gz").is_file(),
                      "Fashion-MNIST", "apt-get install dataset-fashion-mnist")


@pytest.fixture(autouse=True)
def _runs_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test works in its own folder: run directories never land in the checkout."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BIASVAR_RUNS", str(tmp_path / "runs"))
    import biasvar.rundir as rd

    monkeypatch.setattr(rd, "RUNS_ROOT", tmp_path / "runs")


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 240,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """``biasvar ARGS`` in a subprocess (so a traceback would show in stderr)."""
    e = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "biasvar.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=e)
