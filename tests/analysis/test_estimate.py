"""The time estimate: its accounting of every pass a fit makes (checked against a count made
here from the jobs' sizes, with the timing probe replaced by known times), one probe per
distinct configuration, the range shown in the header and in the dry-run plan, and the real
probe (cheap, leaves torch's state alone, counts steps as run_job does)."""
from __future__ import annotations

import re
import time

import pytest
import torch

from biasvar import ExperimentConfig, load_data
from biasvar.analysis import _api, jobs as jobs_mod
from biasvar.analysis.analyses import (complexity_jobs, decomposition_jobs, learning_curve_jobs,
                                       reference_job)
from biasvar.analysis.jobs import (CHECKPOINTS_AT_END, CHECKPOINTS_PER_EPOCH, FIT_OVERHEAD_S,
                                   RANGE_FACTORS, JobStore, estimate_seconds, format_range,
                                   run_job)
from biasvar.config import resolve
from biasvar.train import _speed
from biasvar.train._speed import FitSpeed, measure_fit_speed

FAST = dict(dataset="digits", model="mlp", width=16, epochs=2, precision="fp32",
            channels_last="off", threads=1)
RANGE = re.compile(r"estimated (\d+(?:\.\d)?)–(\d+(?:\.\d)?) (s|min|h)\b")

# known times: 5 steps (median 20 ms, quartiles 15 / 25 ms), 5 inference chunks (per image)
STEPS = (0.030, 0.010, 0.020, 0.015, 0.025)
EVAL = (1e-4, 1.5e-4, 2e-4, 2.5e-4, 3e-4)
METRICS, SETUP, CKPT = 5e-6, 0.3, 0.02


@pytest.fixture(scope="module")
def digits():
    return load_data(ExperimentConfig(dataset="digits"))


@pytest.fixture
def probed(monkeypatch):
    """Replace the probe by known times (each width's steps scale with the width); record the
    configurations it was asked to time."""
    calls = []

    def fake(cfg, data, **kw):
        calls.append(cfg)
        k = (cfg.width or 16) / 16
        return FitSpeed(tuple(s * k for s in STEPS), EVAL, METRICS, SETUP, CKPT,
                        min(int(cfg.batch_size), len(data.train)))

    monkeypatch.setattr(_speed, "measure_fit_speed", fake)
    monkeypatch.setattr(jobs_mod, "_SPEEDS", {})
    return calls


def _expected(jobs, data, step, image):
    """Each fit's seconds, counted here from what run_job does: every epoch's steps over its
    training rows (incomplete last batch dropped) and a validation pass, a checkpoint per
    epoch; at the end the train rows it trained on (all rows when it scores them all), the
    validation and the test split are scored, and the last.pt is slimmed."""
    total = 0.0
    for j in jobs:
        n = len(data.train) if j.train_indices is None else len(j.train_indices)
        bs = min(j.config.batch_size, n)
        e = j.config.epochs
        k = (j.config.width or 16) / 16
        rows = (len(data.train) if j.train_indices is None or j.score_train
                else len(set(j.train_indices.tolist())))
        final = rows + len(data.val) + len(data.test)
        total += (e * (n // bs) * step * k + (e * len(data.val) + final) * image
                  + final * METRICS + SETUP + (e * CHECKPOINTS_PER_EPOCH + CHECKPOINTS_AT_END)
                  * CKPT + FIT_OVERHEAD_S)
    return total


def _diagnose_jobs(cfg, data):
    cfg = resolve(cfg)
    n = len(data.train)
    return [reference_job(cfg),
            *decomposition_jobs(cfg, data, rounds=2, sampling="split", hold_steps=True),
            *learning_curve_jobs(cfg, data, sizes=[n // 4], seeds=[cfg.seed]),
            # a bootstrap sample: repeated rows train twice but are scored once
            *decomposition_jobs(cfg, data, rounds=1 + 1, sampling="bootstrap")[:1]]


def test_estimate_counts_every_pass_of_every_fit(digits, probed):
    jobs = _diagnose_jobs(ExperimentConfig(**FAST), digits)
    est = estimate_seconds(jobs, digits)
    assert est.seconds == pytest.approx(_expected(jobs, digits, 0.020, 2e-4))
    assert est.lo == pytest.approx(_expected(jobs, digits, 0.015, 1.5e-4) * RANGE_FACTORS[0])
    assert est.hi == pytest.approx(_expected(jobs, digits, 0.025, 2.5e-4) * RANGE_FACTORS[1])
    assert est.lo < est.seconds < est.hi
    assert sum(est.per_job.values()) == pytest.approx(est.seconds)
    assert len(probed) == 1  # one configuration: timed once


def test_each_width_is_timed_once_and_costed_at_its_own_speed(digits, probed):
    cfg = resolve(ExperimentConfig(**FAST))
    jobs = complexity_jobs(cfg, digits, param="width", values=[8, 16, 32], seeds=[0, 1])
    est = estimate_seconds(jobs, digits)
    assert sorted(c.width for c in probed) == [8, 16, 32]
    assert est.seconds == pytest.approx(_expected(jobs, digits, 0.020, 2e-4))
    estimate_seconds(jobs, digits)
    assert len(probed) == 3  # cached within the process


def test_workers_share_the_fits(digits, probed):
    jobs = _diagnose_jobs(ExperimentConfig(**FAST), digits)
    one = estimate_seconds(jobs, digits)
    two = estimate_seconds(jobs, digits, workers=2, threads=1)
    assert two.seconds == pytest.approx(max(one.seconds / 2, max(one.per_job.values())))
    assert estimate_seconds([], digits).seconds == 0


def test_format_range():
    assert format_range(40, 55) == "40–55 s"
    assert format_range(270, 360) == "4.5–6.0 min"
    assert format_range(4300, 5800) == "1.2–1.6 h"


def test_dry_run_plan_shows_the_range(digits, probed, tmp_path):
    plan = _api.diagnose(ExperimentConfig(**FAST), dry_run=True, out=tmp_path / "p",
                         progress=False)
    assert plan.lo < plan.seconds < plan.hi
    text = str(plan)
    m = RANGE.search(text)
    assert m, text
    assert m.group(0) == f"estimated {format_range(plan.lo, plan.hi)}"
    assert "ms/step" in text  # what was timed
    assert sum(r["seconds"] for r in plan.rows) == pytest.approx(plan.seconds)


def test_header_before_training_shows_the_range(probed, tmp_path, capsys):
    _api.diagnose(ExperimentConfig(**FAST), out=tmp_path / "r", progress=False, report=False)
    out = capsys.readouterr().out
    m = RANGE.search(out)
    assert m and "4 fits planned, 0 already stored, 4 to train" in out, out
    # again: everything stored, nothing to estimate
    _api.diagnose(ExperimentConfig(**FAST), out=tmp_path / "r", progress=False, report=False)
    assert "4 to train" not in capsys.readouterr().out


# -- the real probe ----------------------------------------------------------------------------

def test_probe_is_cheap_and_leaves_torch_as_it_was(digits):
    cfg = resolve(ExperimentConfig(**{**FAST, "threads": 1, "augment": "light"}))
    torch.set_num_threads(2)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    t0 = time.perf_counter()
    sp = measure_fit_speed(cfg, digits)
    assert time.perf_counter() - t0 < 5
    assert torch.get_num_threads() == 2 and torch.equal(torch.get_rng_state(), state)
    assert 3 <= len(sp.step_s) <= 16 and all(s > 0 for s in sp.step_s)
    assert sp.eval_s and all(s > 0 for s in sp.eval_s)
    assert sp.batch_size == cfg.batch_size and sp.setup_s > 0 and sp.checkpoint_s > 0


def test_probe_stops_at_its_budget(digits):
    cfg = resolve(ExperimentConfig(**FAST))
    sp = measure_fit_speed(cfg, digits, budget_s=0.0)
    assert len(sp.step_s) == 3  # the minimum


def test_probe_of_a_one_cycle_fit_longer_than_its_schedule(digits):
    """On a small set the probe runs past the fit's epochs (digits at batch 256: 6 steps an
    epoch, 2 epochs, the probe's 19 steps): a one-cycle schedule must not be stepped past its
    end (torch raises)."""
    cfg = resolve(ExperimentConfig(**{**FAST, "schedule": "onecycle", "batch_size": 256,
                                      "epochs": 2}))
    sp = measure_fit_speed(cfg, digits)
    assert len(sp.step_s) >= 3


def test_work_counts_the_steps_run_job_takes(digits, tmp_path):
    cfg = resolve(ExperimentConfig(**FAST))
    job = decomposition_jobs(cfg, digits, rounds=2, sampling="split", hold_steps=True)[0]
    res = run_job(job, digits, JobStore(tmp_path).dir(job))
    w = jobs_mod.fit_work(job, digits)
    assert w.steps == res.steps and w.epochs == len(res.history)
    assert w.scored == len(digits.train) + len(digits.val) + len(digits.test)  # score_train
