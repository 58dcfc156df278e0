"""An analysis's fit jobs trained side by side: which jobs group, the executor's choice (only
where the probe measures it faster, or when asked), and that a group writes what separate
jobs write, with the same results up to rounding."""
from __future__ import annotations

import json
import os
from dataclasses import replace

import numpy as np
import pytest
import torch

import biasvar.train as train_pkg
from biasvar import ExperimentConfig, load_data
from biasvar.analysis import jobs as jobs_mod
from biasvar.analysis.jobs import FitJob, JobStore, SerialExecutor, side_by_side_groups
from biasvar.train._speed import SideBySideSpeed, measure_side_by_side
from tests.conftest import run_cli_here

pytestmark = pytest.mark.timeout(300)

# fp32, one thread: the conditions in which side by side equals separate fits within 1e-5
CFG = ExperimentConfig(dataset="digits", model="mlp", width=32, depth=2, batchnorm=False,
                       optimizer="sgd", lr=0.05, schedule="onecycle", epochs=2, batch_size=64,
                       precision="fp32", channels_last="off", threads=1)


@pytest.fixture(scope="module")
def digits():
    return load_data(CFG)


def _boot(data, seed, n=None):
    n = n or len(data.train)
    return np.random.default_rng(seed).integers(0, len(data.train), n)


def test_groups_are_one_configuration_and_set_size(digits):
    boot = [FitJob(CFG, s, _boot(digits, s)) for s in range(3)]
    half = [FitJob(CFG, s, _boot(digits, 10 + s, 300)) for s in range(2)]
    other_lr = FitJob(replace(CFG, lr=0.01), 7, _boot(digits, 7))  # lr may differ
    wider = FitJob(replace(CFG, width=64), 8, _boot(digits, 8))    # architecture may not
    l1 = FitJob(replace(CFG, l1=1e-4), 9, _boot(digits, 9))         # summed per model
    noisy = FitJob(CFG, 11, _boot(digits, 11), label_noise=0.2)     # its own labels: fine
    # dropout's masks come from each fit's own seed: never in a shared step
    drop = [FitJob(replace(CFG, dropout=0.3), s, _boot(digits, s)) for s in (12, 13)]
    jobs = [boot[0], half[0], wider, drop[0], boot[1], l1, other_lr, half[1], boot[2], noisy,
            drop[1]]
    groups = side_by_side_groups(jobs, digits)
    keys = [[j.key for j in g] for g in groups]
    assert keys == [[boot[0].key, boot[1].key, other_lr.key, boot[2].key, noisy.key],
                    [half[0].key, half[1].key], [wider.key], [drop[0].key], [l1.key],
                    [drop[1].key]]
    # at most `most` a group, the rest in the next group of the same key
    capped = side_by_side_groups(boot, digits, most=2)
    assert [[j.key for j in g] for g in capped] == [[boot[0].key, boot[1].key], [boot[2].key]]


def _run(executor, jobs, store, data):
    out = {}
    executor.run(jobs, store, data, lambda j, r: out.__setitem__(j.key, r), False)
    return out


def test_a_group_writes_what_separate_jobs_write(digits, tmp_path, monkeypatch):
    jobs = [FitJob(CFG, s, _boot(digits, s), score_train=(s == 1)) for s in range(3)]
    jobs.append(FitJob(replace(CFG, lr=0.02), 5, _boot(digits, 5), label_noise=0.1,
                       noise_seed=3))
    calls = []
    real = train_pkg.train_side_by_side

    def spy(trainers):
        calls.append(len(trainers))
        return real(trainers)

    monkeypatch.setattr(train_pkg, "train_side_by_side", spy)
    apart = _run(SerialExecutor("off"), jobs, JobStore(tmp_path / "apart"), digits)
    assert calls == []
    together = _run(SerialExecutor("on"), jobs, JobStore(tmp_path / "together"), digits)
    assert calls == [4] * CFG.epochs  # one joint epoch of the 4 fits at a time
    for j in jobs:
        a_dir, b_dir = JobStore(tmp_path / "apart").dir(j), JobStore(tmp_path / "together").dir(j)
        assert sorted(p.name for p in a_dir.iterdir()) == sorted(p.name for p in b_dir.iterdir())
        a, b = apart[j.key], together[j.key]
        assert a.n_train == b.n_train and a.steps == b.steps
        for k in a.metrics:
            assert b.metrics[k] == pytest.approx(a.metrics[k], abs=1e-4), k
        np.testing.assert_allclose(b.test_log_probs, a.test_log_probs, atol=1e-4)
        ra, rb = (json.loads((d / "result.json").read_text()) for d in (a_dir, b_dir))
        assert ra["epochs"] == rb["epochs"] == CFG.epochs
        wa = torch.load(a_dir / "last.pt", weights_only=False)
        wb = torch.load(b_dir / "last.pt", weights_only=False)
        assert wa["kind"] == wb["kind"] == "final" and "optimizer" not in wb
        for name in wa["model"]:
            assert torch.allclose(wa["model"][name], wb["model"][name], atol=1e-5), name
    # the labels' noise reached the noisy job inside the group: its train error differs from a
    # clean fit's with the same seed and rows
    clean = FitJob(replace(CFG, lr=0.02), 5, _boot(digits, 5))
    plain = _run(SerialExecutor("off"), [clean], JobStore(tmp_path / "clean"), digits)
    assert plain[clean.key].metrics["train_error"] != pytest.approx(
        together[jobs[3].key].metrics["train_error"], abs=1e-3)


@pytest.mark.parametrize("gain,busy,together", [(2.0, 0.0, True), (1.1, 0.0, False),
                                                (0.4, None, False), (2.0, 0.8, False)],
                         ids=["faster", "not-enough", "slower", "faster-on-a-busy-machine"])
def test_auto_trains_together_only_where_measured_faster(digits, tmp_path, monkeypatch, capsys,
                                                         gain, busy, together):
    jobs = [FitJob(replace(CFG, epochs=1), s, _boot(digits, s)) for s in range(3)]
    measured = []
    monkeypatch.setattr("os.cpu_count", lambda: 2)  # busy: more than a quarter of 2 cores

    def probe(cfg, data, k):
        measured.append(k)
        return SideBySideSpeed(k, apart_s=0.01 * gain, together_s=0.01, rounds=3,
                               others_cores=busy)

    ran = []
    real = jobs_mod.run_jobs_together

    def spy(group, *a, **kw):
        ran.append(len(group))
        return real(group, *a, **kw)

    monkeypatch.setattr(jobs_mod, "side_by_side_speed", probe)
    monkeypatch.setattr(jobs_mod, "run_jobs_together", spy)
    ex = SerialExecutor("auto")
    # decided before training (for the time estimate), kept for the run: measured once
    factors = ex.plan(jobs, digits)
    assert factors == ({j.key: pytest.approx(1 / gain) for j in jobs} if together else {})
    done = _run(ex, jobs, JobStore(tmp_path), digits)
    assert sorted(done) == sorted(j.key for j in jobs)
    assert measured == [3]
    # run_job is run_jobs_together of one job: a group of 3 means side by side
    assert ran == ([3] if together else [1, 1, 1])
    expect = {"fits": 3, "model": "mlp", "mode": "auto", "apart_s": round(0.01 * gain, 5),
              "together_s": 0.01, "gain": gain, "together": together}
    if busy is not None:
        expect["others_cores"] = busy
    if busy:
        expect["why"] = "other processes kept 0.8 of the 2 cores busy while timing"
    assert ex.choices == [expect]
    said = capsys.readouterr().out
    assert (f"measured {gain:.2f}x faster together" in said) == together


def test_off_never_measures_and_a_single_fit_is_never_grouped(digits, tmp_path, monkeypatch):
    def probe(*a, **kw):
        raise AssertionError("probed")

    monkeypatch.setattr(jobs_mod, "side_by_side_speed", probe)
    jobs = [FitJob(replace(CFG, epochs=1), s, _boot(digits, s)) for s in range(2)]
    _run(SerialExecutor("off"), jobs, JobStore(tmp_path / "off"), digits)
    lone = [FitJob(replace(CFG, epochs=1), 0, _boot(digits, 0, 200))]
    ex = SerialExecutor("auto")
    _run(ex, lone, JobStore(tmp_path / "auto"), digits)
    assert ex.choices == []


def test_the_probe_times_both_ways_and_leaves_torch_as_it_was(digits):
    torch.manual_seed(123)
    state, threads = torch.get_rng_state(), torch.get_num_threads()
    cfg = replace(CFG, threads=None)
    sp = measure_side_by_side(cfg, digits, 3, rounds=2, max_rounds=2)
    assert sp.k == 3 and sp.rounds == 2
    assert sp.apart_s > 0 and sp.together_s > 0
    assert sp.gain == pytest.approx(sp.apart_s / sp.together_s)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.get_num_threads() == threads
    with pytest.raises(ValueError, match="L1"):
        measure_side_by_side(replace(CFG, l1=1e-4), digits, 2)


@pytest.mark.parametrize("apart_s,need,rounds", [(1e-9, 1.15, 1), (1e3, 1.15, 4),
                                                 (1e-9, None, 4), (None, None, 4)],
                         ids=["plainly-slower", "a-borrowed-gain-is-never-trusted",
                              "no-decision-asked", "measured-both-ways"])
def test_the_probe_stops_once_the_decision_is_plain(digits, apart_s, need, rounds):
    # given one after another's time (timed earlier, elsewhere), one side-by-side step after
    # the warm-up settles a plain "slower" (1e-9 s apart: any batched step is 1.5x too slow);
    # a gain in favour of side by side is never read from it (1000 s apart): both ways are
    # then timed in the same rounds; without `need`, every round asked
    sp = measure_side_by_side(CFG, digits, 2, apart_s=apart_s, need=need, rounds=4,
                              max_rounds=4, budget_s=0.0)
    assert sp.rounds == rounds
    if rounds == 1:
        assert sp.apart_s == apart_s and sp.gain < 1.15
    else:  # timed here, both ways
        assert 0 < sp.apart_s < 1 and sp.gain == pytest.approx(sp.apart_s / sp.together_s)


def test_side_by_side_on_is_refused_with_other_processes(tmp_path):
    r = run_cli_here("decompose", "--dataset", "digits", "--side-by-side", "on",
                     "--workers", "2", "--out", str(tmp_path / "run"), "--no-progress")
    assert r.returncode != 0
    assert "side_by_side: 'on'" in r.stderr and "--workers 2" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()  # refused before the run directory is made
    r = run_cli_here("decompose", "--dataset", "digits", "--side-by-side", "sometimes")
    assert r.returncode == 2
    assert "side_by_side: 'sometimes'" in r.stderr and "auto, on, off" in r.stderr


def test_the_choice_is_recorded_in_results_json(tmp_path):
    from biasvar import AnalysisConfig, decompose

    cfg = replace(CFG, epochs=1)
    res = decompose(cfg, analysis=AnalysisConfig(rounds=2, side_by_side="auto"),
                    out=tmp_path / "run",
                    progress=False, report=False)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    (choice,) = saved["timing"]["side_by_side"]
    assert choice["fits"] == 2 and choice["mode"] == "auto"
    busy = choice.get("others_cores", 0) > jobs_mod.SIDE_BY_SIDE_BUSY * os.cpu_count()
    assert choice["together"] == (choice["gain"] >= jobs_mod.SIDE_BY_SIDE_GAIN and not busy)
    assert ("why" in choice) == busy
    assert choice["gain"] == pytest.approx(choice["apart_s"] / choice["together_s"], rel=1e-2)
    assert res.timing["side_by_side"] == saved["timing"]["side_by_side"]


def test_the_estimate_counts_the_measured_gain_of_fits_trained_together(digits):
    from biasvar.analysis.jobs import estimate_seconds, fit_speed, fit_work

    jobs = [FitJob(CFG, s, _boot(digits, s)) for s in range(3)]
    apart = estimate_seconds(jobs, digits)
    half = estimate_seconds(jobs, digits, step_factors={j.key: 0.5 for j in jobs})
    # only the training steps' time changes: by half of the steps' share of each fit
    sp = fit_speed(CFG, digits)
    steps_s = sum(fit_work(j, digits).steps * sp.quantile(sp.step_s, 0.5) for j in jobs)
    assert apart.seconds - half.seconds == pytest.approx(steps_s / 2, rel=1e-6)


def test_a_group_killed_mid_run_resumes_each_fit_from_its_own_checkpoint(digits, tmp_path,
                                                                          monkeypatch):
    jobs = [FitJob(CFG, s, _boot(digits, s)) for s in range(2)]
    real = train_pkg.train_side_by_side
    epochs = []

    def killed_at_second_epoch(trainers):
        epochs.append([t.epoch for t in trainers])
        if len(epochs) == 2:
            raise KeyboardInterrupt
        return real(trainers)

    store = JobStore(tmp_path / "killed")
    monkeypatch.setattr(train_pkg, "train_side_by_side", killed_at_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        _run(SerialExecutor("on"), jobs, store, digits)
    assert not any(store.done(j) for j in jobs)
    for j in jobs:  # each fit's first epoch is in its own last.pt
        ck = torch.load(store.dir(j) / "last.pt", weights_only=False)
        assert ck["epoch"] == 1 and "optimizer" in ck
    epochs.clear()
    monkeypatch.setattr(train_pkg, "train_side_by_side", real)
    resumed = _run(SerialExecutor("on"), jobs, store, digits)
    whole = _run(SerialExecutor("off"), jobs, JobStore(tmp_path / "whole"), digits)
    for j in jobs:
        assert json.loads((store.dir(j) / "result.json").read_text())["resumed_from_epoch"] == 1
        np.testing.assert_allclose(resumed[j.key].test_log_probs, whole[j.key].test_log_probs,
                                   atol=1e-4)


def test_fits_that_cannot_share_their_steps_train_one_after_another(digits, tmp_path,
                                                                    monkeypatch):
    # e.g. one resumed with another precision: found once the trainers exist, not by grouping
    jobs = [FitJob(CFG, s, _boot(digits, s)) for s in range(2)]
    monkeypatch.setattr(train_pkg, "side_by_side_supported", lambda trainers: "a reason")
    ex = SerialExecutor("on")
    got = _run(ex, jobs, JobStore(tmp_path / "refused"), digits)
    assert ex.choices == [{"fits": 2, "model": "mlp", "mode": "on", "together": False,
                           "why": "a reason"}]
    monkeypatch.undo()
    alone = _run(SerialExecutor("off"), jobs, JobStore(tmp_path / "alone"), digits)
    for j in jobs:  # one after another: the very same fits
        np.testing.assert_array_equal(got[j.key].test_log_probs, alone[j.key].test_log_probs)


def test_a_fit_resumed_from_a_run_alone_joins_fresh_ones(digits, tmp_path):
    # channels_last "auto" is timed in each process: a fit resumed from another process's
    # last.pt carries that process's timings, and still trains beside fresh fits
    cnn = replace(CFG, model="cnn", width=8, batchnorm=True, channels_last="auto")
    jobs = [FitJob(cnn, s, _boot(digits, s)) for s in range(2)]
    store = JobStore(tmp_path / "mixed")

    class KillAtSecondEpoch(train_pkg.Callback):
        def on_epoch_start(self, trainer, epoch, **kw):
            if epoch == 2:
                raise KeyboardInterrupt

    from biasvar.analysis.jobs import run_job

    with pytest.raises(KeyboardInterrupt):
        run_job(jobs[0], digits, store.dir(jobs[0]), callbacks=[KillAtSecondEpoch()])
    ck = torch.load(store.dir(jobs[0]) / "last.pt", weights_only=False)
    assert ck["epoch"] == 1
    # as another process writes it: its own timings of the layouts (the choice is the same)
    ck["precision"] = {**ck["precision"], "timings_ms": {"fp32": 1.23, "fp32+cl": 0.98}}
    (store.dir(jobs[0]) / "last.pt").write_bytes(train_pkg.checkpoint_bytes(ck))
    ex = SerialExecutor("on")
    got = _run(ex, jobs, store, digits)
    assert ex.choices[0]["together"] is True
    assert json.loads((store.dir(jobs[0]) / "result.json").read_text())["resumed_from_epoch"] == 1
    whole = _run(SerialExecutor("off"), jobs, JobStore(tmp_path / "whole"), digits)
    for j in jobs:
        np.testing.assert_allclose(got[j.key].test_log_probs, whole[j.key].test_log_probs,
                                   atol=1e-3)


def test_auto_probes_configurations_that_are_not_resolved(digits, tmp_path):
    raw = ExperimentConfig(dataset="digits", model="mlp", width=16, epochs=1, threads=1)
    jobs = [FitJob(raw, s, _boot(digits, s)) for s in range(2)]
    ex = SerialExecutor("auto")
    assert sorted(_run(ex, jobs, JobStore(tmp_path), digits)) == sorted(j.key for j in jobs)
    assert ex.choices[0]["fits"] == 2 and "gain" in ex.choices[0]


def test_fits_trained_one_after_another_keep_the_order_asked(digits, tmp_path, monkeypatch):
    a = [FitJob(replace(CFG, epochs=1), s, _boot(digits, s)) for s in (0, 1)]
    b = [FitJob(replace(CFG, epochs=1, width=16), s, _boot(digits, s)) for s in (2, 3)]
    monkeypatch.setattr(jobs_mod, "side_by_side_speed",
                        lambda cfg, data, k: SideBySideSpeed(k, 0.01, 0.02, 3))
    order = []
    real = jobs_mod.run_jobs_together

    def spy(group, *args, **kw):
        order.append([j.key for j in group])
        return real(group, *args, **kw)

    monkeypatch.setattr(jobs_mod, "run_jobs_together", spy)
    asked = [a[0], b[0], a[1], b[1]]
    _run(SerialExecutor("auto"), asked, JobStore(tmp_path), digits)
    assert order == [[j.key] for j in asked]
