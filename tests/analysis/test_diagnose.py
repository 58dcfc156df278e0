"""The bias–variance engine end to end on digits: fit jobs, curves, decomposition, diagnose."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from biasvar import ExperimentConfig, load_data
from biasvar.analysis.analyses import (decomposition, decomposition_jobs, learning_curve,
                                       nested_order)
from biasvar.analysis.jobs import FitJob, JobRunner, JobStore, ProcessExecutor

from ..conftest import run_cli, run_cli_here

FAST = dict(dataset="digits", precision="fp32", channels_last="off", threads=1)
CLI_FAST = ["--dataset", "digits", "--precision", "fp32", "--channels-last", "off",
            "--threads", "1", "--no-progress", "--no-report"]


@pytest.fixture(scope="module")
def digits():
    return load_data(ExperimentConfig(dataset="digits"))


def test_nested_order_prefixes_are_nested_and_stratified():
    y = np.repeat(np.arange(5), [100, 200, 300, 50, 350])
    order = nested_order(y, 0)
    assert sorted(order.tolist()) == list(range(len(y)))
    for k in (50, 100, 400):
        counts = np.bincount(y[order[:k]], minlength=5)
        np.testing.assert_allclose(counts / k, np.bincount(y) / len(y), atol=1.5 / k + 0.01)


def test_job_keys_are_deterministic_and_reflect_the_spec():
    cfg = ExperimentConfig(**FAST)
    a = FitJob(cfg, 0, np.array([3, 1, 2]))
    assert a.key == FitJob(cfg, 0, np.array([1, 2, 3])).key  # row order is canonical
    assert a.key == FitJob(ExperimentConfig(**{**FAST, "threads": 2}), 0, [1, 2, 3]).key
    assert a.key != FitJob(cfg, 1, [1, 2, 3]).key
    assert a.key != FitJob(cfg, 0, [1, 2, 2]).key
    assert a.key != FitJob(ExperimentConfig(**{**FAST, "width": 8}), 0, [1, 2, 3]).key


def test_runner_reuses_stored_jobs(digits, tmp_path):
    cfg = ExperimentConfig(**FAST, model="mlp", width=16, epochs=2)
    store = JobStore(tmp_path)
    jobs = decomposition_jobs(cfg, digits, rounds=3, sampling="bootstrap")
    first = JobRunner(store, digits)
    r1 = first.run(jobs)
    assert first.counts() == {"planned": 3, "trained": 3, "reused": 0}
    again = JobRunner(store, digits)
    r2 = again.run(jobs + jobs[:1])  # a duplicate is planned once
    assert again.counts() == {"planned": 3, "trained": 0, "reused": 3}
    for a, b in zip(r1, r2):
        np.testing.assert_array_equal(a.test_log_probs, b.test_log_probs)


def test_process_executor_matches_serial(digits, tmp_path):
    cfg = ExperimentConfig(**FAST, model="mlp", width=16, epochs=2)
    jobs = decomposition_jobs(cfg, digits, rounds=2, sampling="subsample")
    serial = JobRunner(JobStore(tmp_path / "a"), digits).run(jobs)
    procs = JobRunner(JobStore(tmp_path / "b"), digits, ProcessExecutor(2, threads=1)).run(jobs)
    for a, b in zip(serial, procs):
        np.testing.assert_allclose(a.test_log_probs, b.test_log_probs, rtol=1e-5, atol=1e-6)


def test_bias_falls_with_width_by_more_than_its_interval(digits, tmp_path):
    runner = JobRunner(JobStore(tmp_path), digits)
    terms = {}
    for w in (2, 8, 64):
        cfg = ExperimentConfig(**FAST, model="mlp", width=w, depth=1, epochs=8, lr=3e-3)
        terms[w] = decomposition(runner, cfg, digits, rounds=3, sampling="bootstrap",
                                 n_boot=300).zero_one.bias
    lo2, _ = terms[2].ci95
    _, hi64 = terms[64].ci95
    assert terms[2].value > terms[8].value > terms[64].value
    assert lo2 > hi64, terms  # the drop is larger than both intervals


def test_learning_curve_error_falls_with_size(digits, tmp_path):
    cfg = ExperimentConfig(**FAST, model="mlp", width=32, epochs=5)
    lc = learning_curve(JobRunner(JobStore(tmp_path), digits), cfg, digits,
                        sizes=[100, 300, 1294], seeds=[0, 1])
    val = lc.val_error.mean
    assert val[0] > val[-1] and len(lc.val_error.values[0]) == 2
    assert lc.power_law.n_max == 1294


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def _comparable(obj):
    """results.json without what legitimately differs between runs: fit counts, environment,
    and wall-clock seconds."""
    if isinstance(obj, dict):
        return {k: _comparable(v) for k, v in obj.items()
                if k not in ("fits", "environment", "timing", "seconds")}
    if isinstance(obj, list):
        return [_comparable(v) for v in obj]
    return obj


def test_diagnose_sigkill_then_rerun_trains_only_the_missing_fits(tmp_path):
    args = ["diagnose", *CLI_FAST, "--model", "mlp", "--width", "32", "--epochs", "3"]
    full = tmp_path / "full"
    r = run_cli(*args, "--out", str(full))
    assert r.returncode == 0, r.stderr
    whole = _read(full / "results.json")
    planned = whole["fits"]["planned"]
    assert whole["fits"] == {"planned": planned, "trained": planned, "reused": 0}

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "biasvar.cli", *args, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline and len(list(killed.glob("fits/*/result.json"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_at_kill = len(list(killed.glob("fits/*/result.json")))
    assert 2 <= done_at_kill < planned and not (killed / "results.json").exists()

    r = run_cli(*args, "--out", str(killed))
    assert r.returncode == 0, r.stderr
    rerun = _read(killed / "results.json")
    assert rerun["fits"] == {"planned": planned, "trained": planned - done_at_kill,
                             "reused": done_at_kill}
    assert _comparable(rerun) == _comparable(whole)


def test_diagnose_results_contract(tmp_path):
    r = run_cli("diagnose", *CLI_FAST, "--model", "mlp", "--width", "32", "--epochs", "2",
                "--rounds", "3", "--out", str(tmp_path / "d"))
    assert r.returncode == 0, r.stderr
    res = _read(tmp_path / "d" / "results.json")
    for k in ("reference", "target_error", "avoidable_bias", "variance_gap", "learning_curve",
              "decomposition", "verdict", "fits"):
        assert k in res
    dec = res["decomposition"]
    assert dec["rounds"] == 3 and dec["sampling"] == "split"  # the profile's sampling
    assert len(dec["n_train_per_model"]) == 3
    assert set(dec["zero_one"]) == {"loss", "bias", "variance", "net_variance"}
    assert set(dec["mse"]) == {"risk", "bias2", "variance"}
    assert set(dec["cross_entropy"]) == {"risk", "bias", "variance", "variance_jackknife"}
    z = dec["zero_one"]
    assert z["loss"]["value"] == pytest.approx(z["bias"]["value"] + z["net_variance"]["value"])
    ref = res["reference"]
    assert res["avoidable_bias"] == pytest.approx(ref["train"]["error"]
                                                  - res["target_error"]["value"])
    # the label, re-derived here from the figures it rests on by the README's rules (2 points
    # of avoidable bias / of train-validation gap; 30 % of the 0-1 loss in net variance or of
    # the CE risk in variance)
    ce = dec["cross_entropy"]
    gap = ref["val"]["error"] - ref["train"]["error"]
    bias_high = res["avoidable_bias"] > 0.02
    var_high = (gap > 0.02 or z["net_variance"]["value"] > 0.3 * z["loss"]["value"]
                or ce["variance"]["value"] > 0.3 * ce["risk"]["value"])
    expect = {(True, True): "both", (True, False): "high_bias", (False, True): "high_variance",
              (False, False): "balanced"}[(bias_high, var_high)]
    assert res["verdict"]["label"] == expect, (res["avoidable_bias"], gap)
    assert "Verdict:" in r.stdout and "Top remedies" in r.stdout
    assert "epochs_capped" not in res  # --epochs given: the profile does not cap it


def test_dry_run_plans_without_training(tmp_path):
    r = run_cli_here("diagnose", *CLI_FAST, "--model", "mlp", "--dry-run", "--out", str(tmp_path / "d"))
    assert r.returncode == 0, r.stderr
    assert "fits planned" in r.stdout and "estimated" in r.stdout
    assert "decomposition split 2/2" in r.stdout
    assert not (tmp_path / "d").exists()


def test_from_predictions(tmp_path):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 40, 4))
    lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.savez(tmp_path / "p.npz", log_probs=lp.astype(np.float32), labels=rng.integers(0, 4, 40))
    r = run_cli_here("decompose", "--from-predictions", str(tmp_path / "p.npz"), "--no-report",
                     "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    assert _read(tmp_path / "o" / "results.json")["decomposition"]["rounds"] == 3


@pytest.mark.parametrize("args,words", [
    (["decompose", "--rounds", "1"], ["rounds", "1", "at least 2"]),
    (["curve", "learning", "--sizes", "5000"], ["sizes", "5000", "larger than the training set"]),
    (["curve", "learning", "--sizes", "8,100"], ["without any example"]),
    (["curve", "complexity", "--param", "widht", "--values", "2,4"], ["param", "'width'"]),
    (["curve", "complexity", "--param", "width", "--values", "2,abc"], ["width", "abc"]),
])
def test_bad_input_clear_messages(tmp_path, args, words):
    r = run_cli_here(*args, *CLI_FAST, "--model", "mlp", "--out", str(tmp_path / "o"))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


def test_malformed_predictions_file(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    r = run_cli_here("decompose", "--from-predictions", str(tmp_path / "bad.npz"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "bad.npz" in r.stderr


def test_label_noise_raises_the_loss_and_the_bias(digits, tmp_path):
    runner = JobRunner(JobStore(tmp_path), digits)
    cfg = ExperimentConfig(**FAST, model="mlp", width=32, epochs=4)
    clean = decomposition(runner, cfg, digits, rounds=2, sampling="bootstrap", n_boot=100)
    noisy = decomposition(runner, cfg, digits, rounds=2, sampling="bootstrap", n_boot=100,
                          label_noise=0.4)
    assert noisy.label_noise == 0.4
    assert noisy.cross_entropy.risk.value > clean.cross_entropy.risk.value
    assert noisy.zero_one.loss.value > clean.zero_one.loss.value


def test_a_continued_analysis_keeps_the_precision_it_chose(tmp_path, monkeypatch):
    """A rerun times the precision again; a busier machine could choose otherwise and give every
    job a new key. The run directory's stored choice wins unless --fresh."""
    import biasvar.train as train_pkg
    from biasvar.cli import main
    from biasvar.config import load_config

    def timed_as(precision: str, channels_last: bool):
        def choose(*args, **kwargs):
            return {"precision": precision, "channels_last": channels_last, "auto": True,
                    "timings_ms": {k: 1.0 for k in ("fp32", "fp32+channels_last", "bf16",
                                                     "bf16+channels_last")}}
        return choose

    out = tmp_path / "run"
    argv = ["curve", "learning", "--dataset", "digits", "--sizes", "150,300", "--seeds", "1",
            "--epochs", "1", "--no-progress", "--no-report",
            "--out", str(out)]
    monkeypatch.setattr(train_pkg, "choose_precision", timed_as("fp32", False))
    assert main(argv) == 0
    first = sorted(p.name for p in (out / "fits").iterdir())
    assert load_config(out / "config.yaml").precision == "fp32"
    monkeypatch.setattr(train_pkg, "choose_precision", timed_as("bf16", True))
    assert main(argv) == 0
    assert sorted(p.name for p in (out / "fits").iterdir()) == first  # all reused
    cfg = load_config(out / "config.yaml")
    assert (cfg.precision, cfg.channels_last) == ("fp32", "off")
    assert main(argv + ["--fresh"]) == 0  # starting over times again
    cfg = load_config(out / "config.yaml")
    assert (cfg.precision, cfg.channels_last) == ("bf16", "on")
    assert not set(first) & {p.name for p in (out / "fits").iterdir()}


def test_a_finished_job_keeps_its_final_weights_without_training_state(digits, tmp_path):
    from biasvar import resolve
    from biasvar.errors import CheckpointError
    from biasvar.train import build_model, fit, predict
    from biasvar.train import load_checkpoint

    cfg = resolve(ExperimentConfig(**FAST, model="mlp", width=16, epochs=2))
    job = FitJob(cfg, 0)
    store = JobStore(tmp_path)
    (res,) = JobRunner(store, digits).run([job])
    ck = load_checkpoint(store.dir(job) / "last.pt")
    assert ck["kind"] == "final" and "optimizer" not in ck and "scheduler" not in ck
    # the kept weights are the ones that made the stored test predictions
    model = build_model(cfg, digits)
    model.load_state_dict(ck["model"])
    np.testing.assert_allclose(predict(model, digits, "test", device="cpu"),
                               res.test_log_probs, rtol=0, atol=1e-6)
    with pytest.raises(CheckpointError, match="finished analysis fit.*--weights"):
        fit(cfg, digits, run_dir=store.dir(job), resume=True, progress=False)


def test_thorough_plan_for_a_model_without_width_skips_the_width_curve(tmp_path):
    r = run_cli_here("diagnose", "--dataset", "digits", "--model", "linear", "--profile", "thorough",
                     "--dry-run", "--out", str(tmp_path / "d"))
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "complexity" not in r.stdout  # no width values to sweep for a linear model


def test_diagnose_with_a_rare_class_starts_its_curve_where_every_class_fits(tmp_path):
    from ..data.test_custom_data import grey_folder

    grey_folder(tmp_path / "ds", classes=("a", "b"), per=40)
    grey_folder(tmp_path / "ds", classes=("rare",), per=6, seed=50)
    r = run_cli("diagnose", "--dataset", "imagefolder:ds", "--epochs", "1", "--target-error",
                "0", "--precision", "fp32", "--channels-last", "off", "--no-progress",
                "--no-report", "--out", "d", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    res = _read(tmp_path / "d" / "results.json")
    sizes = res["learning_curve"]["sizes"]
    from biasvar.analysis.analyses import smallest_curve_size
    from biasvar.config import load_config

    cfg = load_config(tmp_path / "d" / "config.yaml")
    data = load_data(replace(cfg, data_root=str(tmp_path), dataset=f"imagefolder:{tmp_path / 'ds'}"))
    smallest = smallest_curve_size(cfg, data)
    quarter = round(len(data.train) / 4)
    assert sizes[0] == max(quarter, smallest)
    if smallest > quarter:  # the rare class pushed the curve's start up, and the note says so
        assert "were replaced by" in res["profile_note"] and f"{sizes[0]}," in res["profile_note"]
    full = [p for p in res["learning_curve"]["points"] if p["size"] == max(sizes)]
    assert full and all(p["epochs"] == 1 for p in full)  # the --epochs given
    assert sizes == sorted(sizes) and len(sizes) >= 2
