"""The Ray Tune backend of ``tune`` (``backend="ray"``): the space converted exactly, trials run
by Tuner + OptunaSearch + ASHA through the shared objective, and tune.json's trial records.

One local cluster (2 CPUs) for the module, shut down at its end; the trials are 2-epoch MLPs on
digits."""
from __future__ import annotations

import json

import pytest

from biasvar.config import ExperimentConfig
from biasvar.tune._space import load_space

from ..conftest import require_component

try:
    import ray

    HAVE_RAY = True
except ImportError:
    ray = None
    HAVE_RAY = False

FAST = dict(dataset="digits", model="mlp", width=16, depth=1, epochs=2, precision="fp32",
            channels_last="off", threads=1)
SPACE = {"width": {"type": "int", "low": 8, "high": 32, "log": True},
         "lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}
STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


def test_the_space_converts_to_optuna_distributions_exactly():
    import optuna.distributions as d

    from biasvar.tune._ray import ray_search_space

    sp = load_space({"width": {"type": "int", "low": 8, "high": 64, "log": True},
                     "depth": {"type": "int", "low": 1, "high": 3},
                     "epochs": {"type": "int", "low": 2, "high": 10, "step": 2},
                     "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
                     "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                     "augment": {"type": "categorical", "choices": ["none", "light"]}},
                    ExperimentConfig(**FAST))
    got = ray_search_space(sp)
    assert got == {
        "width": d.IntDistribution(8, 64, log=True), "depth": d.IntDistribution(1, 3),
        "epochs": d.IntDistribution(2, 10, step=2),
        "dropout": d.FloatDistribution(0.0, 0.5, step=0.1),
        "lr": d.FloatDistribution(1e-4, 1e-2, log=True),
        "augment": d.CategoricalDistribution(["none", "light"])}
    # the same distributions the local backend samples from
    assert got == sp.distributions()


def test_trials_are_ordered_by_creation_not_by_their_random_ids():
    """Ray gives a searcher's trials random 8-hex-digit ids ("12345678" is one), so the records
    follow the creation counter in the experiment tag, or in the folder name of a trial that
    failed before reporting."""
    from types import SimpleNamespace

    from biasvar.tune._ray import trial_records

    sp = load_space(SPACE, ExperimentConfig(**FAST))

    def res(tid, n, width, *, metrics=True):
        tag = f"{n}_lr=0.0010,width={width}"
        m = {"trial_id": tid, "experiment_tag": tag, "final": True, "val_error": 0.1,
             "values": [0.1], "std": 0.0, "seconds": 1.0} if metrics else {}
        return SimpleNamespace(metrics=m, config={"width": width, "lr": 1e-3}, error=None,
                               metrics_dataframe=None,
                               path=f"/r/tune/_trainable_{tid}_{tag}_2026-11-30_08-00-00")

    got = trial_records([res("0000abcd", 3, 30), res("99999999", 1, 16),
                         res("12345678", 2, 20, metrics=False)], sp)
    assert [r["params"]["width"] for r in got] == [16, 20, 30]
    assert [r["state"] for r in got] == ["COMPLETE", "PRUNED", "COMPLETE"]


@pytest.fixture(scope="module")
def cluster():
    require_component(HAVE_RAY, "Ray", "pip install 'biasvar[ray]'")
    from biasvar.analysis.jobs import RayExecutor

    RayExecutor(num_cpus=2).connect()
    yield
    ray.shutdown()


def test_tune_on_ray_writes_the_contract_trials(cluster, tmp_path):
    from biasvar.tune import tune

    out = tmp_path / "t"
    r = tune(ExperimentConfig(**FAST), space=SPACE, trials=4, seeds=2, pruner="median",
             backend="ray", out=out, progress=False, report=False)
    doc = json.loads((out / "tune.json").read_text())
    assert doc["backend"] == "ray" and doc["seeds"] == 2
    trials = doc["trials"]
    assert len(trials) == 4 and r.trials == 4
    assert [t["number"] for t in trials] == [0, 1, 2, 3]
    for t in trials:
        assert set(t) >= {"number", "state", "params", "values", "mean", "std",
                          "intermediate", "seconds"}
        assert t["state"] in ("COMPLETE", "PRUNED")
        assert set(t["params"]) == {"width", "lr"}
        assert 8 <= t["params"]["width"] <= 32 and isinstance(t["params"]["width"], int)
        assert 1e-3 <= t["params"]["lr"] <= 1e-2
        assert set(t["intermediate"]) <= {"1", "2"} and t["intermediate"]
        if t["state"] == "COMPLETE":
            assert len(t["values"]) == 2 and t["mean"] == pytest.approx(sum(t["values"]) / 2)
            assert t["intermediate"].keys() == {"1", "2"}
            assert t["std"] is not None and t["seconds"] > 0
        else:
            assert t["values"] == [] and t["mean"] is None
    # the first trial is the starting config (as the local backend enqueues it)
    assert trials[0]["params"] == {"width": 16, "lr": pytest.approx(doc["default"]["params"]["lr"])}
    assert trials[0]["state"] == "COMPLETE"
    assert doc["best"]["mean"] == min(t["mean"] for t in trials if t["state"] == "COMPLETE")
    # every seed of every complete trial is a stored fit job; Ray's own folder is gone
    assert len(list((out / "fits").glob("*/result.json"))) >= 2 * sum(
        t["state"] == "COMPLETE" for t in trials) - 2  # trials may share values
    assert not (out / ".ray-tune").exists()
    assert (out / "trials.csv").is_file() and (out / "best_config.yaml").is_file()

    # a rerun asking for 5 runs one more trial; the first 4 stay as they were
    r2 = tune(ExperimentConfig(**FAST), space=SPACE, trials=5, seeds=2, pruner="median",
              backend="ray", out=out, progress=False, report=False)
    doc2 = json.loads((out / "tune.json").read_text())
    assert r2.trials == 5 and len(doc2["trials"]) == 5
    assert [t["params"] for t in doc2["trials"][:4]] == [t["params"] for t in trials]
