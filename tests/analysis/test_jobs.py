"""Unit tests of the fit-job layer (biasvar.analysis.jobs): keys, label noise, the store, the
runner's bookkeeping, and serial vs process execution. Fits are 1-epoch MLPs on digits (well
under a second each)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from biasvar.analysis.jobs import (FitJob, JobResult, JobRunner, JobStore, ProcessExecutor,
                                   SerialExecutor, noisy_labels)
from biasvar.config import ExperimentConfig
from biasvar.data import load_data

FAST = dict(dataset="digits", model="mlp", width=16, epochs=1, precision="fp32",
            channels_last="off", threads=1)


def _cfg(**over) -> ExperimentConfig:
    return ExperimentConfig(**{**FAST, **over})


@pytest.fixture(scope="module")
def digits():
    return load_data(_cfg())


@pytest.fixture
def one_thread():
    """Serial fits at 1 torch thread (what each worker process uses), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class RecordingExecutor(SerialExecutor):
    """The serial executor, recording the keys of the jobs it is asked to run."""

    def __init__(self) -> None:
        super().__init__()
        self.ran: list[str] = []

    def run(self, jobs, store, data, on_done, progress=False):
        self.ran.extend(j.key for j in jobs)
        super().run(jobs, store, data, on_done, progress)


# ------------------------------------------------------------------ FitJob.key

def test_key_is_stable_and_canonical():
    cfg = _cfg()
    a = FitJob(cfg, 0, np.array([5, 1, 3, 3]))
    assert len(a.key) == 16 and int(a.key, 16) >= 0
    assert a.key == a.key
    # the same spec built again, with rows in another order / as a list / another int dtype
    assert FitJob(_cfg(), 0, np.array([5, 1, 3, 3])).key == a.key
    assert FitJob(cfg, 0, [3, 1, 3, 5]).key == a.key
    assert FitJob(cfg, 0, np.array([3, 3, 5, 1], dtype=np.int32)).key == a.key
    assert FitJob(cfg, 0, [5, 1, 3, 3], tag="a label for people").key == a.key
    # noise_seed only matters when labels are actually flipped
    assert FitJob(cfg, 0, [1, 3, 3, 5], noise_seed=7).key == a.key


def test_key_is_the_same_in_another_process():
    # Keys name directories reused across runs: they must not depend on hash randomisation.
    job = FitJob(_cfg(), 3, np.arange(0, 40, 3), label_noise=0.2, noise_seed=4)
    code = ("import numpy as np; from biasvar.config import ExperimentConfig; "
            "from biasvar.analysis.jobs import FitJob; "
            f"print(FitJob(ExperimentConfig(**{FAST!r}), 3, np.arange(0, 40, 3), "
            "label_noise=0.2, noise_seed=4).key)")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == job.key


@pytest.mark.parametrize("other", [
    FitJob(_cfg(), 1, [1, 2, 3]),                                  # seed
    FitJob(_cfg(), 0, [1, 2, 4]),                                  # other rows
    FitJob(_cfg(), 0, [1, 2, 2]),                                  # a repeat (bootstrap)
    FitJob(_cfg(), 0, [1, 2, 3, 3]),                               # one more row
    FitJob(_cfg(), 0, None),                                       # all rows
    FitJob(_cfg(), 0, [1, 2, 3], label_noise=0.1),                 # label noise
    FitJob(_cfg(), 0, [1, 2, 3], label_noise=0.2),
    FitJob(_cfg(width=8), 0, [1, 2, 3]),                           # semantic config fields
    FitJob(_cfg(epochs=2), 0, [1, 2, 3]),
    FitJob(_cfg(lr=1e-2), 0, [1, 2, 3]),
    FitJob(_cfg(model="cnn"), 0, [1, 2, 3]),
    FitJob(_cfg(split_seed=1), 0, [1, 2, 3]),
    FitJob(_cfg(precision="bf16"), 0, [1, 2, 3]),
], ids=["seed", "rows", "repeat", "more_rows", "all_rows", "noise", "noise2", "width", "epochs",
        "lr", "model", "split_seed", "precision"])
def test_key_changes_with_the_spec(other):
    assert FitJob(_cfg(), 0, [1, 2, 3]).key != other.key


def test_key_changes_with_noise_seed_when_labels_are_flipped():
    a = FitJob(_cfg(), 0, [1, 2, 3], label_noise=0.1, noise_seed=0)
    assert a.key != FitJob(_cfg(), 0, [1, 2, 3], label_noise=0.1, noise_seed=1).key


@pytest.mark.parametrize("field, value", [
    ("device", "cpu"), ("threads", 4), ("threads", None), ("data_root", "/elsewhere"),
    ("loader_workers", 0), ("tensorboard", True), ("download", False), ("strict", True),
    ("stream", "never"),
])
def test_key_ignores_where_and_how_fast_it_runs(field, value):
    a = FitJob(_cfg(), 0, [1, 2, 3])
    b = FitJob(_cfg(**{field: value}), 0, [1, 2, 3])
    assert getattr(b.config, field) != getattr(a.config, field)
    assert a.key == b.key


# ------------------------------------------------------------------ noisy_labels

@pytest.mark.parametrize("k", [2, 3, 10])
@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.8])
def test_noisy_labels_flips_the_fraction_to_other_classes(k, fraction):
    n = 20_000
    y = np.random.default_rng(1).integers(0, k, size=n)
    before = y.copy()
    z = noisy_labels(y, fraction, k, seed=5)
    np.testing.assert_array_equal(y, before)  # the input is not modified
    assert z.shape == y.shape and z.dtype == y.dtype
    assert z.min() >= 0 and z.max() < k
    changed = z != y
    # Every selected label changes (a flip to the same class would leave ~fraction·(K−1)/K
    # changed: for K = 2 half as many, for K = 10 a tenth fewer — outside this tolerance).
    sd = np.sqrt(n * fraction * (1 - fraction))
    assert abs(changed.sum() - n * fraction) < 4 * sd, (changed.sum(), n * fraction)
    # the new classes cover every other class about evenly (off by 1..K−1, uniformly)
    offset = (z[changed] - y[changed]) % k
    counts = np.bincount(offset, minlength=k)
    assert counts[0] == 0
    expected = changed.sum() / (k - 1)
    assert np.all(np.abs(counts[1:] - expected) < 5 * np.sqrt(expected))


def test_noisy_labels_is_deterministic_per_seed():
    y = np.random.default_rng(2).integers(0, 10, size=1000)
    np.testing.assert_array_equal(noisy_labels(y, 0.3, 10, 7), noisy_labels(y, 0.3, 10, 7))
    assert (noisy_labels(y, 0.3, 10, 7) != noisy_labels(y, 0.3, 10, 8)).any()
    np.testing.assert_array_equal(noisy_labels(y, 0.0, 10, 7), y)


# ------------------------------------------------------------------ JobStore

def test_store_dir_and_done_need_both_result_files(tmp_path):
    store = JobStore(tmp_path)
    job = FitJob(_cfg(), 0, [1, 2, 3])
    assert store.dir(job) == tmp_path / "fits" / job.key
    assert store.dir(FitJob(_cfg(), 1)) != store.dir(job)
    assert not store.done(job)
    d = store.dir(job)
    d.mkdir(parents=True)
    np.save(d / "test_log_probs.npy", np.zeros((4, 3), np.float32))
    assert not store.done(job)  # result.json is written last: without it the job is not done
    (d / "result.json").write_text(json.dumps({
        "key": job.key, "metrics": {"test_error": 0.25}, "history": [{"epoch": 1.0}],
        "n_train": 3, "seconds": 0.5}))
    assert store.done(job)
    assert not store.done(FitJob(_cfg(), 0, [1, 2]))
    (d / "test_log_probs.npy").unlink()
    assert not store.done(job)


def test_store_load_round_trips_a_real_job(digits, tmp_path, one_thread):
    store = JobStore(tmp_path)
    job = FitJob(_cfg(), 0, np.arange(0, 300, 2), tag="round trip")
    got: list[JobResult] = []
    SerialExecutor().run([job], store, digits, lambda j, r: got.append(r))
    (res,) = got
    assert not res.reused and store.done(job)
    loaded = store.load(job)
    assert loaded.reused
    assert (loaded.key, loaded.n_train) == (job.key, 150) == (res.key, res.n_train)
    assert loaded.metrics == res.metrics
    assert set(loaded.metrics) >= {"train_error", "train_loss", "test_error", "test_loss"}
    assert loaded.history == res.history and len(loaded.history) == 1
    assert loaded.seconds == pytest.approx(res.seconds)
    assert loaded.test_log_probs.dtype == np.float32
    assert loaded.test_log_probs.shape == (len(digits.test), digits.num_classes)
    np.testing.assert_array_equal(loaded.test_log_probs, res.test_log_probs)
    assert store.load(job, log_probs=False).test_log_probs is None


# ------------------------------------------------------------------ JobRunner

def test_runner_deduplicates_and_reuses_stored_jobs(digits, tmp_path, one_thread):
    store = JobStore(tmp_path)
    j1 = FitJob(_cfg(), 0, np.arange(0, 200))
    j2 = FitJob(_cfg(), 1, np.arange(0, 200))
    j1_again = FitJob(_cfg(threads=2), 0, np.arange(199, -1, -1), tag="same spec")
    assert j1_again.key == j1.key

    ex = RecordingExecutor()
    runner = JobRunner(store, digits, ex)
    out = runner.run([j1, j2, j1_again])
    assert ex.ran == [j1.key, j2.key]  # the duplicate is trained once
    assert runner.counts() == {"planned": 2, "trained": 2, "reused": 0}
    assert [r.key for r in out] == [j1.key, j2.key, j1.key]
    assert out[2] is out[0]
    assert not any(r.reused for r in out)

    # the same runner again: j1 comes from the store but was counted as trained already
    j3 = FitJob(_cfg(), 2, np.arange(0, 200))
    out2 = runner.run([j1, j3])
    assert ex.ran == [j1.key, j2.key, j3.key]
    assert runner.counts() == {"planned": 3, "trained": 3, "reused": 0}
    assert out2[0].reused and not out2[1].reused
    np.testing.assert_array_equal(out2[0].test_log_probs, out[0].test_log_probs)

    # a new runner (a new run of the CLI) on the same store trains nothing
    ex2 = RecordingExecutor()
    again = JobRunner(store, digits, ex2)
    out3 = again.run([j3, j1, j2, j1])
    assert ex2.ran == []
    assert again.counts() == {"planned": 3, "trained": 0, "reused": 3}
    assert [r.key for r in out3] == [j3.key, j1.key, j2.key, j1.key]
    assert all(r.reused for r in out3)
    for a, b in ((out3[1], out[0]), (out3[2], out[1]), (out3[0], out2[1])):
        np.testing.assert_array_equal(a.test_log_probs, b.test_log_probs)
        assert a.metrics == b.metrics

    # a job removed from the store (its result.json gone) is trained again
    (store.dir(j2) / "result.json").unlink()
    ex3 = RecordingExecutor()
    third = JobRunner(store, digits, ex3)
    out4 = third.run([j1, j2])
    assert ex3.ran == [j2.key]
    assert third.counts() == {"planned": 2, "trained": 1, "reused": 1}
    assert out4[0].reused and not out4[1].reused
    np.testing.assert_allclose(out4[1].test_log_probs, out[1].test_log_probs, rtol=1e-5,
                               atol=1e-6)  # trained again from scratch: the same result


# ------------------------------------------------------------------ executors

def test_process_executor_matches_serial(digits, tmp_path, one_thread):
    jobs = [FitJob(_cfg(), 0, np.arange(0, 400, 2)), FitJob(_cfg(), 1, np.arange(1, 400, 2))]
    serial: dict[str, JobResult] = {}
    SerialExecutor().run(jobs, JobStore(tmp_path / "serial"), digits,
                         lambda j, r: serial.__setitem__(j.key, r))
    store = JobStore(tmp_path / "procs")
    order: list[str] = []
    procs: dict[str, JobResult] = {}

    def on_done(job: FitJob, r: JobResult) -> None:
        order.append(job.key)
        procs[job.key] = r

    ProcessExecutor(workers=2, threads=1).run(jobs, store, digits, on_done)
    assert order == [j.key for j in jobs]  # bookkeeping in submission order
    assert all(store.done(j) for j in jobs)
    for j in jobs:
        a, b = serial[j.key], procs[j.key]
        assert a.key == b.key == j.key and a.n_train == b.n_train == 200
        assert set(a.metrics) == set(b.metrics)
        for name in a.metrics:
            np.testing.assert_allclose(b.metrics[name], a.metrics[name], rtol=1e-5, atol=1e-6,
                                       err_msg=name)
        np.testing.assert_allclose(b.test_log_probs, a.test_log_probs, rtol=1e-5, atol=1e-6)
        # what the workers stored is what they returned
        np.testing.assert_array_equal(store.load(j).test_log_probs, b.test_log_probs)
    # the two specs differ, so the comparison above can tell results apart
    assert not np.allclose(serial[jobs[0].key].test_log_probs, serial[jobs[1].key].test_log_probs,
                           rtol=1e-5, atol=1e-6)


def test_process_executor_threads_default_divides_the_cores():
    ex = ProcessExecutor(workers=2)
    assert ex.threads == max(1, (os.cpu_count() or 1) // 2)
    assert ProcessExecutor(workers=3, threads=1).threads == 1


def test_a_fit_on_part_of_the_rows_skips_per_epoch_validation(digits, tmp_path, one_thread):
    """A resampled fit's per-epoch validation pass is skipped (nothing reads it) and changes
    nothing else: the same weights and test predictions as a fit that validates every epoch;
    a whole-set fit (a possible reference) and an early-stopping fit keep it."""
    from biasvar import fit
    from biasvar.analysis.jobs import run_job
    from biasvar.train import load_checkpoint

    rows = np.arange(0, 600, 2)
    part = FitJob(_cfg(epochs=2), 0, rows)
    res = run_job(part, digits, tmp_path / "part")
    assert [h["val_loss"] for h in res.history] == [None, None]
    assert (tmp_path / "part" / "history.csv").read_text().splitlines()[1].split(",")[3] == ""
    validated = fit(_cfg(epochs=2), digits, train_indices=rows, progress=False)
    assert all(h["val_loss"] is not None for h in validated.history)
    weights = load_checkpoint(tmp_path / "part" / "last.pt")["model"]
    for k, v in validated.model.state_dict().items():
        assert torch.equal(weights[k], v), k
    whole = run_job(FitJob(_cfg(epochs=2), 0), digits, tmp_path / "whole")
    assert all(h["val_loss"] is not None for h in whole.history)
    early = run_job(FitJob(_cfg(epochs=2, early_stopping=True), 0, rows), digits,
                    tmp_path / "early")
    assert all(h["val_loss"] is not None for h in early.history)
