"""``tune --dry-run``: the plan costs each point a search would try with the analyses' fit-time
model (the probe replaced here by known times that scale with the width), sums them over the
workers, adds the diagnoses, and writes nothing."""
from __future__ import annotations

import itertools

import pytest

from biasvar import ExperimentConfig, cli
from biasvar.analysis import jobs as jobs_mod
from biasvar.analysis.jobs import estimate_seconds
from biasvar.config import resolve
from biasvar.data import load_data
from biasvar.train import _speed
from biasvar.train._speed import FitSpeed
from biasvar.tune import TunePlan, tune
from biasvar.tune._objective import apply_params, trial_jobs

pytestmark = pytest.mark.timeout(120)

CFG = ExperimentConfig(dataset="digits", model="mlp", width=16, epochs=2, threads=1,
                       precision="fp32", channels_last="off")
GRID = {"width": {"type": "categorical", "choices": [8, 32]},
        "epochs": {"type": "categorical", "choices": [1, 3, 5]}}


@pytest.fixture
def probed(monkeypatch, tmp_path):
    """Known step times (20 ms at width 16, in proportion to the width); nothing else runs."""
    calls = []

    def fake(cfg, data, **kw):
        calls.append(cfg.width)
        k = (cfg.width or 16) / 16
        return FitSpeed(tuple(s * k for s in (0.03, 0.01, 0.02, 0.015, 0.025)),
                        (1e-4, 2e-4, 3e-4), 5e-6, 0.3, 0.02, min(int(cfg.batch_size), 1000))

    monkeypatch.setattr(_speed, "measure_fit_speed", fake)
    monkeypatch.setattr(jobs_mod, "_SPEEDS", {})
    monkeypatch.chdir(tmp_path)
    return calls


def _trial_seconds(params, seeds, data):
    return estimate_seconds(trial_jobs(resolve(CFG), params, seeds=seeds), data)


def test_grid_plan_costs_every_point_and_writes_nothing(probed, tmp_path):
    data = load_data(CFG)
    plan = tune(CFG, space=GRID, sampler="grid", trials=None, seeds=2, dry_run=True,
                out=tmp_path / "run", pruner="none")
    assert isinstance(plan, TunePlan)
    want = [{"width": w, "epochs": e} for w, e in itertools.product((8, 32), (1, 3, 5))]
    assert [p for p, *_ in plan.points] == want
    each = [_trial_seconds(p, 2, data) for p in want]
    for (_, mid, lo, hi), est in zip(plan.points, each):
        assert (mid, lo, hi) == pytest.approx((est.seconds, est.lo, est.hi))
    assert plan.search[0] == pytest.approx(sum(e.seconds for e in each))
    # the dearest point is the widest, longest one: 4× the steps of width 8 per epoch
    assert max(plan.points, key=lambda p: p[1])[0] == {"width": 32, "epochs": 5}
    assert plan.seconds == pytest.approx(plan.search[0]) and plan.diagnose_start is None
    assert not list(tmp_path.iterdir())  # no run directory, no runs/
    text = str(plan)
    assert "6 trials × 2 seeds" in text and "nothing trained or written" in text
    assert len([ln for ln in text.splitlines() if ln.strip().startswith(("8 ", "32 "))]) == 6


def test_workers_share_the_trials(probed):
    one = tune(CFG, space=GRID, sampler="grid", trials=None, dry_run=True, pruner="none")
    two = tune(CFG, space=GRID, sampler="grid", trials=None, dry_run=True, pruner="none",
               workers=2)
    # CFG fixes threads=1, so both plans time the same configurations
    longest = max(p[1] for p in two.points)
    assert [p[1] for p in two.points] == pytest.approx([p[1] for p in one.points])
    assert two.search[0] == pytest.approx(max(one.search[0] / 2, longest))


def test_random_plan_starts_at_the_default_and_is_seeded(probed):
    space = {"width": {"type": "int", "low": 8, "high": 64, "log": True},
             "lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}
    a = tune(CFG, space=space, sampler="tpe", trials=5, dry_run=True)
    b = tune(CFG, space=space, sampler="tpe", trials=5, dry_run=True)
    assert len(a.points) == 5
    assert a.points[0][0] == {"width": 16, "lr": pytest.approx(resolve(CFG).lr)}
    assert [p for p, *_ in a.points] == [p for p, *_ in b.points]
    assert all(8 <= p["width"] <= 64 and 1e-3 <= p["lr"] <= 1e-2 for p, *_ in a.points)
    assert "upper bound" in str(a)  # the median pruner stops some trials early


def test_diagnose_adds_the_two_diagnoses(probed):
    from biasvar.analysis import diagnose

    plan = tune(CFG, space=GRID, sampler="grid", trials=None, dry_run=True, diagnose=True,
                pruner="none")
    start = diagnose(resolve(CFG), profile="quick", dry_run=True, progress=False)
    assert plan.diagnose_start == pytest.approx((start.lo, start.hi))
    cheap = diagnose(apply_params(resolve(CFG), {"width": 8, "epochs": 1}), profile="quick",
                     dry_run=True, progress=False)
    dear = diagnose(apply_params(resolve(CFG), {"width": 32, "epochs": 5}), profile="quick",
                    dry_run=True, progress=False)
    assert plan.diagnose_best == pytest.approx((cheap.lo, dear.hi))
    assert plan.hi == pytest.approx(plan.search[2] + start.hi + dear.hi)
    assert "--diagnose: the starting config" in str(plan)


def test_cli_dry_run(probed, tmp_path, capsys):
    code = cli.main(["tune", "--dataset", "digits", "--model", "mlp", "--width", "16",
                     "--epochs", "2", "--threads", "1", "--space", "bias", "--trials", "3",
                     "--dry-run", "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 0 and "tune plan" in out and "3 trials" in out
    assert not (tmp_path / "run").exists()
