"""Fit jobs as Ray tasks (``backend="ray"``, ``--backend ray``): the same numbers as the serial
executor, the data through the object store once, a failing fit retried once then reported by
its key, and the refusals (Ray missing, ``--address`` without ``--backend ray``).

One local cluster (2 CPUs) serves the module and is shut down at its end; the fits are 2-epoch
MLPs on digits (about a second each)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from biasvar import cli
from biasvar.analysis import decompose
from biasvar.analysis.jobs import FitJob, JobStore, RayExecutor
from biasvar.config import AnalysisConfig, ExperimentConfig
from biasvar.data import load_data
from biasvar.errors import BiasvarError

from ..conftest import require_component

try:
    import ray

    HAVE_RAY = True
except ImportError:  # the tests that need it skip (fail under CI=true)
    ray = None
    HAVE_RAY = False

FAST = dict(dataset="digits", model="mlp", width=16, epochs=2, precision="fp32",
            channels_last="off", threads=1)
CLI_FAST = ["--dataset", "digits", "--model", "mlp", "--width", "16", "--epochs", "2",
            "--threads", "1", "--precision", "fp32", "--channels-last", "off", "--rounds", "2",
            "--no-progress", "--no-report"]


# -- refusals: no cluster needed ------------------------------------------------------------------

def test_backend_ray_without_ray_is_one_line_exit_2_nothing_written(tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    out = tmp_path / "run"
    code = cli.main(["decompose", *CLI_FAST, "--backend", "ray", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "pip install 'biasvar[ray]'" in err and "backend" in err
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_address_without_backend_ray_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["decompose", *CLI_FAST, "--address", "auto", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--backend ray" in err and "address" in err
    assert not out.exists()


def test_unknown_backend_is_refused_in_python(tmp_path):
    with pytest.raises(BiasvarError, match="backend: unknown value 'rey'.*'ray'"):
        decompose(ExperimentConfig(**FAST), rounds=2, backend="rey", out=tmp_path / "run",
                  progress=False)
    assert not (tmp_path / "run").exists()


def test_fits_at_once_counts_the_cluster_slots(monkeypatch):
    # the time estimate divides the fits among these slots (Ray need not be installed)
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    assert RayExecutor().fits_at_once() == 6                      # 1 thread per task
    assert RayExecutor(threads=4).fits_at_once() == 1
    assert RayExecutor(num_cpus=8, threads=2).fits_at_once() == 4
    assert RayExecutor(num_cpus=8, workers=3).fits_at_once() == 3
    assert RayExecutor("ray://head:10001").fits_at_once() is None  # unknown until connected
    assert RayExecutor("ray://head:10001", workers=5).fits_at_once() == 5


def test_dry_run_estimate_counts_ray_fits_side_by_side(tmp_path, monkeypatch):
    # a dry run with --backend ray estimates for the cluster's slots, 1 thread per fit
    require_component(HAVE_RAY, "Ray", "pip install 'biasvar[ray]'")
    from biasvar.analysis import jobs as jobs_mod

    calls = []
    real = jobs_mod.estimate_seconds

    def spy(todo, data, *, workers=1, threads=None, **kw):
        calls.append((workers, threads))
        return real(todo, data, workers=workers, threads=threads, **kw)

    monkeypatch.setattr(jobs_mod, "estimate_seconds", spy)
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    for b in ("local", "ray"):
        decompose(ExperimentConfig(**FAST), rounds=4, backend=b, out=tmp_path / b,
                  progress=False, dry_run=True)
    assert calls == [(1, None), (4, 1)]  # how 4 slots share the fits: test_estimate.py


# -- on a local cluster -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    """A local 2-CPU cluster started by the executor itself, shut down after the module."""
    require_component(HAVE_RAY, "Ray", "pip install 'biasvar[ray]'")
    RayExecutor(num_cpus=2).connect()
    assert ray.is_initialized()
    assert ray.cluster_resources().get("CPU") == 2
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def digits():
    return load_data(ExperimentConfig(**FAST))


def _close(a, b, path=""):
    """Nested results equal, floats to a tolerance."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert b == pytest.approx(a, rel=1e-5, abs=1e-6), path
    else:
        assert a == b, path


def test_decompose_on_ray_equals_serial_and_ships_the_data_once(cluster, tmp_path, monkeypatch):
    # the reference: the fits one after another, as Ray's tasks train them (side by side
    # they are the same only up to rounding)
    serial = decompose(ExperimentConfig(**FAST), rounds=2, out=tmp_path / "serial",
                       progress=False, report=False,
                       analysis=AnalysisConfig(side_by_side="off"))

    puts: list[type] = []
    real_put = ray.put
    monkeypatch.setattr(ray, "put", lambda v, **kw: (puts.append(type(v)), real_put(v, **kw))[1])
    refs: list = []
    real_submit = RayExecutor._submit

    def submit(self, ray_, job, data_ref, store):
        refs.append(data_ref)
        return real_submit(self, ray_, job, data_ref, store)

    monkeypatch.setattr(RayExecutor, "_submit", submit)
    out = tmp_path / "ray"
    on_ray = decompose(ExperimentConfig(**FAST), rounds=2, out=out, progress=False,
                       report=False, backend="ray")

    # the data: one ray.put, the same ObjectRef handed to each of the 2 tasks
    assert [t.__name__ for t in puts] == ["DataBundle"]
    assert len(refs) == 2 and all(isinstance(r, ray.ObjectRef) for r in refs)
    assert refs[0] == refs[1]
    # the numbers
    assert on_ray.fits.trained == 2 and on_ray.fits.reused == 0
    a = json.loads((tmp_path / "serial" / "results.json").read_text())["decomposition"]
    b = json.loads((out / "results.json").read_text())["decomposition"]
    _close(a, b)
    assert on_ray.decomposition.zero_one.loss.value == pytest.approx(
        serial.decomposition.zero_one.loss.value, abs=1e-9)
    # the fits, stored in the run directory as the serial executor stores them
    keys = sorted(p.name for p in (tmp_path / "serial" / "fits").iterdir())
    assert sorted(p.name for p in (out / "fits").iterdir()) == keys
    for k in keys:
        s_dir, r_dir = tmp_path / "serial" / "fits" / k, out / "fits" / k
        assert {p.name for p in r_dir.iterdir()} == {p.name for p in s_dir.iterdir()}
        np.testing.assert_allclose(np.load(r_dir / "test_log_probs.npy"),
                                   np.load(s_dir / "test_log_probs.npy"), rtol=1e-5, atol=1e-6)
        assert json.loads((r_dir / "spec.json").read_text()) == \
            json.loads((s_dir / "spec.json").read_text())
    assert not list(out.rglob("*.tmp"))
    # a rerun on Ray finds every fit stored: nothing is sent to the cluster
    refs.clear()
    again = decompose(ExperimentConfig(**FAST), rounds=2, out=out, progress=False,
                      report=False, backend="ray")
    assert again.fits.trained == 0 and again.fits.reused == 2 and refs == []


def _factory_file(folder: Path, name: str, fail_times: int) -> Path:
    """A model factory that fails its first ``fail_times`` calls (counting them in a file)."""
    count = folder / f"{name}.count"
    path = folder / f"{name}.py"
    path.write_text(
        "import torch.nn as nn\n"
        "from pathlib import Path\n"
        "def build(num_classes, in_shape):\n"
        f"    count = Path({str(count)!r})\n"
        "    with count.open('a') as f:\n"
        "        f.write('x')\n"
        f"    if len(count.read_text()) <= {fail_times}:\n"
        "        raise RuntimeError('injected failure')\n"
        "    c, h, w = in_shape\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, num_classes))\n")
    return path


def _attempts(folder: Path, name: str) -> int:
    f = folder / f"{name}.count"
    return len(f.read_text()) if f.is_file() else 0


def test_a_failing_fit_is_retried_once_then_reported_by_its_key(cluster, digits, tmp_path):
    boom = _factory_file(tmp_path, "boom", fail_times=99)
    cfg = ExperimentConfig(**{**FAST, "model": f"{boom}:build", "width": None})
    job = FitJob(cfg, seed=0, tag="decomposition bootstrap 1/2")
    store = JobStore(tmp_path / "run")
    done: list = []
    with pytest.raises(BiasvarError) as e:
        RayExecutor().run([job], store, digits, lambda j, r: done.append(j))
    msg = str(e.value)
    assert job.key in msg and "2 times" in msg and "injected failure" in msg
    assert "decomposition bootstrap 1/2" in msg and "Traceback" not in msg
    assert _attempts(tmp_path, "boom") == 2  # the first try and one retry
    assert done == [] and not store.done(job) and not store.dir(job).exists()


def test_a_fit_that_fails_once_succeeds_on_its_retry(cluster, digits, tmp_path):
    flaky = _factory_file(tmp_path, "flaky", fail_times=1)
    cfg = ExperimentConfig(**{**FAST, "model": f"{flaky}:build", "width": None})
    job = FitJob(cfg, seed=0)
    store = JobStore(tmp_path / "run")
    done: list = []
    RayExecutor().run([job], store, digits, lambda j, r: done.append((j, r)))
    assert _attempts(tmp_path, "flaky") == 2
    assert [j.key for j, _ in done] == [job.key] and store.done(job)
    assert done[0][1].test_log_probs.shape == (len(digits.test), digits.num_classes)
    np.testing.assert_allclose(store.load(job).test_log_probs, done[0][1].test_log_probs)
