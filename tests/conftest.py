from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _threads_per_xdist_worker() -> int | None:
    """Torch threads for each pytest-xdist worker: the usable cores divided among the workers
    (at least 1), or None when not running under xdist."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if not os.environ.get("PYTEST_XDIST_WORKER") or workers < 1:
        return None
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may use
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // workers)


# Under `pytest -n N` the N workers share the cores: without this each worker (and each
# `biasvar` subprocess it starts) would run one torch/OpenMP thread per core, and N workers on
# the CI's 2 cores would fight over them. The environment is set before torch is imported here,
# and is inherited by every subprocess (run_cli, Popen, ProcessExecutor workers).
_XDIST_THREADS = _threads_per_xdist_worker()
if _XDIST_THREADS is not None:
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[_var] = str(_XDIST_THREADS)
    import torch

    torch.set_num_threads(_XDIST_THREADS)

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


def require_module(name: str, install: str) -> object:
    """``pytest.importorskip`` that fails under CI=true: the external checks these modules
    give (torchmetrics' ECE, torchvision's transforms, TensorBoard's reader, Optuna) must not
    vanish from CI silently when a package is missing."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as e:
        require_component(False, f"the Python module {name} ({e})", install)
        raise  # not reached: require_component skips or fails


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


def run_cli_here(*args: str, cwd: Path | None = None,
                 env: dict | None = None) -> subprocess.CompletedProcess:
    """``biasvar ARGS`` in this process: ``biasvar.cli.main`` with stdout and stderr captured,
    its status (or argparse's SystemExit) as ``returncode``. For commands that stop on bad
    input before training: each saves a process start (torch and its compiler stack, about
    5 s on 2 busy cores). An exception that escapes ``main`` — what a user would see as a
    traceback — propagates and fails the test. Process-wide state the CLI may touch (the
    working folder, the environment, torch's threads, the warnings' format) is restored."""
    import contextlib
    import io
    import warnings

    import torch

    from biasvar.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    saved_threads, saved_fmt = torch.get_num_threads(), warnings.formatwarning
    os.environ.update(env or {})
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as e:  # argparse's errors
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        torch.set_num_threads(saved_threads)
        warnings.formatwarning = saved_fmt
    return subprocess.CompletedProcess(["biasvar", *args], code, out.getvalue(), err.getvalue())
