"""``tune`` end to end on tiny digits fits: the outputs agree with Optuna's own study, the best
config reproduces its trial, a killed run continues to exactly N trials, two workers share one
study, and pruning stops a hopeless trial."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from biasvar import ExperimentConfig
from tests.conftest import require_module, run_cli

pytestmark = pytest.mark.timeout(240)

optuna = require_module("optuna", "pip install -e '.[test]'")
from optuna.storages.journal import JournalFileBackend, JournalStorage  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

CFG = ExperimentConfig(dataset="digits", model="mlp", width=16, epochs=2, threads=1,
                       precision="fp32", channels_last="off")
SPACE = {"width": {"type": "int", "low": 8, "high": 32, "log": True},
         "lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}
FLAGS = ["--dataset", "digits", "--model", "mlp", "--width", "16", "--epochs", "2",
         "--threads", "1", "--precision", "fp32", "--channels-last", "off"]
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def load_study(run_dir: Path) -> optuna.Study:
    """The study, read independently of biasvar from the run's journal."""
    name = json.loads((run_dir / "tune.json").read_text())["study"] \
        if (run_dir / "tune.json").is_file() else run_dir.name
    storage = JournalStorage(JournalFileBackend(str(run_dir / "optuna.journal")))
    return optuna.load_study(study_name=name, storage=storage)


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> tuple[Path, object]:
    from biasvar.tune import tune

    out = tmp_path_factory.mktemp("tune") / "run"
    r = tune(CFG, space=SPACE, sampler="random", trials=4, seeds=2, out=out, progress=False,
             report=False)
    return out, r


def test_outputs_agree_with_the_study(searched):
    out, r = searched
    study = load_study(out)
    trials = study.get_trials()
    assert sum(t.state in FINISHED for t in trials) == 4 == r.trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    doc = json.loads((out / "tune.json").read_text())
    with open(out / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["number", "state", "width", "lr", "value_seed0", "value_seed1",
                             "mean", "std", "seconds"]
    assert [int(x["number"]) for x in rows] == [t["number"] for t in doc["trials"]] \
        == [t.number for t in trials]
    assert [x["state"] for x in rows] == [t["state"] for t in doc["trials"]] \
        == [t.state.name for t in trials]
    for t, row, js in zip(trials, rows, doc["trials"]):
        assert js["params"] == t.params
        assert int(row["width"]) == t.params["width"]
        assert float(row["lr"]) == pytest.approx(t.params["lr"], rel=1e-12)
        # per epoch in tune.json; reported to Optuna at the share of the schedule done
        assert js["intermediate"] == t.user_attrs.get("val_by_epoch", {})
        assert sorted(js["intermediate"].values()) == sorted(t.intermediate_values.values())
        if t.state == TrialState.COMPLETE:
            assert js["mean"] == pytest.approx(t.value, abs=1e-12)
            assert float(row["mean"]) == pytest.approx(t.value, abs=1e-12)
            vals = [float(row["value_seed0"]), float(row["value_seed1"])]
            assert vals == pytest.approx(js["values"]) and len(vals) == 2
            assert sum(vals) / 2 == pytest.approx(t.value)
    best = study.best_trial
    assert doc["best"]["number"] == best.number == r.best_number
    assert doc["best"]["mean"] == pytest.approx(best.value) == r.best_mean
    assert doc["best"]["params"] == best.params == r.best_params
    # the default (the config's own values, enqueued first since they lie in the space)
    assert trials[0].params == {"width": 16, "lr": pytest.approx(CFG.lr or 0.003)}
    assert doc["default"]["params"]["width"] == 16
    assert doc["gain"] == pytest.approx(doc["default"]["mean"] - doc["best"]["mean"])
    assert doc["beats_default"] == (doc["gain"] > doc["spread"])
    for k in ("schema_version", "command", "dataset", "model", "sampler", "pruner", "seeds",
              "metric", "space", "trials_requested", "timeout", "storage", "study", "backend",
              "workers", "trials", "best", "default", "gain", "spread", "beats_default",
              "importances", "diagnose", "timing"):
        assert k in doc, k
    text = str(r)
    assert len(text.splitlines()) <= 15 and "best_config.yaml" in text


def test_best_config_reproduces_the_best_trial(searched, tmp_path: Path):
    out, r = searched
    doc = json.loads((out / "tune.json").read_text())
    res = run_cli("train", "--config", str(out / "best_config.yaml"), "--out", "again",
                  "--no-progress", "--no-report", cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    metrics = json.loads((tmp_path / "again" / "metrics.json").read_text())
    # the same config and seed as the best trial's first seed: the same validation error
    assert metrics["val"]["error"] == pytest.approx(doc["best"]["values"][0], abs=1e-9)


def test_rerun_reuses_every_fit(searched):
    from biasvar.tune import tune

    out, r = searched
    fits = sorted(p.name for p in (out / "fits").iterdir())
    stamps = {p: p.stat().st_mtime for p in (out / "fits").glob("*/result.json")}
    t0 = time.perf_counter()
    again = tune(CFG, space=SPACE, sampler="random", trials=4, seeds=2, out=out,
                 progress=False, report=False)
    assert again.trials == 4 and again.best_number == r.best_number
    assert sorted(p.name for p in (out / "fits").iterdir()) == fits
    assert {p: p.stat().st_mtime for p in stamps} == stamps  # nothing retrained
    assert time.perf_counter() - t0 < 30


def test_kill_and_continue(tmp_path: Path):
    (tmp_path / "space.yaml").write_text(json.dumps(SPACE))
    args = ["tune", *FLAGS, "--epochs", "3", "--space", "space.yaml", "--sampler", "random",
            "--trials", "6", "--pruner", "none", "--out", "run", "--no-report", "--no-progress"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.Popen([sys.executable, "-m", "biasvar.cli", *args], cwd=tmp_path, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    run = tmp_path / "run"
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            if (run / "optuna.journal").is_file():
                try:
                    done = [t for t in load_study(run).get_trials() if t.state in FINISHED]
                except KeyError:  # the study is not created yet
                    done = []
                if done:
                    break
            assert p.poll() is None, p.stderr.read().decode()
            time.sleep(0.1)
        else:
            pytest.fail("no trial finished in time")
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    before = load_study(run).get_trials()
    assert sum(t.state in FINISHED for t in before) < 6
    again = subprocess.Popen([sys.executable, "-m", "biasvar.cli", *args[:-1]], cwd=tmp_path,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    try:
        log, _ = again.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        again.kill()
        log, _ = again.communicate()
        pytest.fail(f"the continued run did not finish:\n{log[-3000:]}")
    assert again.returncode == 0, log
    trials = load_study(run).get_trials()
    assert sum(t.state in FINISHED for t in trials) == 6
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    killed = [t.number for t in before if t.state == TrialState.RUNNING]
    for t in trials:
        if t.number in killed:  # the dead process's trial: failed, then retried once
            assert t.state == TrialState.FAIL
            assert any(u.system_attrs.get("failed_trial") == t.number for u in trials)
    assert len(json.loads((run / "tune.json").read_text())["trials"]) == len(trials)


def test_a_trial_left_without_an_owner_is_failed_on_rerun(tmp_path: Path):
    # a process killed between creating a trial and naming itself its owner left it RUNNING
    # with no owner: it counted as running, and the continued study ended one trial short
    from biasvar.tune import tune

    out = tmp_path / "o"
    tune(CFG, space=SPACE, sampler="random", trials=2, out=out, progress=False, report=False,
         pruner="none")
    orphan = load_study(out).ask()  # RUNNING, no "worker" attribute
    r = tune(CFG, space=SPACE, sampler="random", trials=4, out=out, progress=False,
             report=False, pruner="none")
    trials = load_study(out).get_trials()
    assert r.trials == 4 == sum(t.state in FINISHED for t in trials)
    assert trials[orphan.number].state == TrialState.FAIL
    assert not [t for t in trials if t.state == TrialState.RUNNING]


def test_two_workers_share_one_study(tmp_path: Path):
    from biasvar.tune import tune

    r = tune(CFG, space=SPACE, sampler="random", trials=4, seeds=1, workers=2,
             out=tmp_path / "w", progress=False, report=False, pruner="none")
    trials = load_study(tmp_path / "w").get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    assert sum(t.state in FINISHED for t in trials) == 4 == r.trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    owners = {t.user_attrs.get("worker") for t in trials if t.state in FINISHED}
    assert len(owners) >= 1


def test_two_workers_on_a_grid_run_each_point_once(tmp_path: Path):
    # Optuna's grid sampler maps trial k to the k-th point of its seeded shuffle: workers
    # seeded apart shuffled apart, and ran some points twice and others never
    from biasvar.tune import tune

    space = {"width": {"type": "categorical", "choices": [8, 12, 16]},
             "lr": {"type": "categorical", "choices": [0.002, 0.004]}}
    r = tune(ExperimentConfig(**{**CFG.__dict__, "epochs": 1}), space=space, sampler="grid",
             trials=None, workers=2, out=tmp_path / "g2", progress=False, report=False,
             pruner="none")
    trials = load_study(tmp_path / "g2").get_trials()
    points = sorted((t.params["width"], t.params["lr"]) for t in trials if t.state in FINISHED)
    assert r.trials == 6
    assert points == [(w, lr) for w in (8, 12, 16) for lr in (0.002, 0.004)]


def test_grid_runs_every_combination(tmp_path: Path):
    from biasvar.tune import tune

    space = {"width": {"type": "categorical", "choices": [8, 16]},
             "lr": {"type": "float", "low": 0.002, "high": 0.004, "step": 0.002}}
    r = tune(ExperimentConfig(**{**CFG.__dict__, "epochs": 1}), space=space, sampler="grid",
             trials=None, out=tmp_path / "g", progress=False, report=False, pruner="none")
    trials = load_study(tmp_path / "g").get_trials()
    assert r.trials == 4
    assert sorted((t.params["width"], t.params["lr"]) for t in trials) == [
        (8, 0.002), (8, 0.004), (16, 0.002), (16, 0.004)]


def test_pruning(tmp_path: Path):
    from biasvar.analysis.jobs import JobStore
    from biasvar.data import load_data
    from biasvar.tune._objective import evaluate_params, trial_jobs
    from biasvar.tune._space import load_space
    from biasvar.tune._study import _Objective

    data = load_data(CFG)
    store = JobStore(tmp_path)
    # the signal itself: on_epoch may raise, and the unfinished fit is never stored as a result
    seen = []

    def stop(epoch, err):
        seen.append((epoch, err))
        raise optuna.TrialPruned()

    with pytest.raises(optuna.TrialPruned):
        evaluate_params(CFG, {"lr": 1e-6}, seeds=2, data=data, store=store, on_epoch=stop)
    assert seen and seen[0][0] == 1 and 0 <= seen[0][1] <= 1
    assert not store.done(trial_jobs(CFG, {"lr": 1e-6}, seeds=2)[0])
    # in a study: three good trials (the same params: their fits are reused), then a hopeless
    # learning rate falls behind the median at its first epoch and is pruned
    space = load_space({"lr": {"type": "float", "low": 1e-7, "high": 1e-2, "log": True}}, CFG)
    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=3))
    # (this pruner has no warm-up, unlike biasvar's median pruner: the signal is tested here)
    for lr in (1e-2, 1e-2, 1e-2, 1e-7):
        study.enqueue_trial({"lr": lr})
    study.optimize(_Objective(CFG, space, seeds=1, data=data, store=store, prune=True,
                              trials=None), n_trials=4)
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE] * 3 + [TrialState.PRUNED]
    from biasvar.config import resolve
    from biasvar.tune._study import progress_step

    # pruned at its first epoch, reported at the share of its schedule that epoch is
    epochs = resolve(CFG).epochs
    assert list(study.trials[3].user_attrs["val_by_epoch"]) == ["1"]
    assert list(study.trials[3].intermediate_values) == [progress_step(1, epochs)]
    # a trial is never pruned at its last epoch: it has trained in full, its value is final
    one = ExperimentConfig(**{**CFG.__dict__, "epochs": 1})
    study.enqueue_trial({"lr": 1e-7})
    study.optimize(_Objective(one, space, seeds=1, data=data, store=store, prune=True,
                              trials=None), n_trials=1)
    assert study.trials[4].state == TrialState.COMPLETE
    assert store.done(trial_jobs(one, {"lr": 1e-7}, seeds=1)[0])


def test_diagnose_the_start_and_the_best(tmp_path: Path):
    # --diagnose end to end: a quick diagnosis of each config, in the run directory, the pair
    # compared, and the tune report's before/after table read from the two results.json
    from biasvar.tune import tune

    space = {"width": {"type": "categorical", "choices": [16, 4]}}
    cfg = ExperimentConfig(**{**CFG.__dict__, "epochs": 1})
    out = tmp_path / "run"
    r = tune(cfg, space=space, sampler="grid", trials=None, seeds=1, pruner="none", out=out,
             progress=False, report=True, diagnose=True)
    doc = json.loads((out / "tune.json").read_text())
    assert doc["diagnose"] == {"start": "diagnose-start", "best": "diagnose-best",
                               "compare": "compare.html"}
    results = {s: json.loads((out / f"diagnose-{s}" / "results.json").read_text())
               for s in ("start", "best")}
    assert results["start"]["config"]["width"] == 16
    assert results["best"]["config"]["width"] == r.best_params["width"]
    for res in results.values():
        assert res["command"] == "diagnose" and res["profile"] == "quick"
        assert res["config"]["epochs"] == 1 and res["config"]["dataset"] == "digits"
    assert (out / "compare.html").is_file()
    page = (out / "report.html").read_text()
    assert 'class="diagnose-table"' in page and 'href="compare.html"' in page
    start_bias = results["start"]["decomposition"]["zero_one"]["bias"]["value"]
    assert f"{100 * start_bias:.2f}%" in page
