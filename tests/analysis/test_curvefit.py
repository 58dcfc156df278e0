"""Tests of biasvar.analysis.curvefit: seed summaries, the power-law fit, loss_still_falling."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, stats

from biasvar.analysis import curvefit
from biasvar.analysis.curvefit import fit_power_law, loss_still_falling, summarize

SIZES = np.array([500, 1000, 2000, 4000, 8000, 16000, 32000, 54000])


def _law(n, a, b, c):
    return a * np.asarray(n, dtype=float) ** (-b) + c


# ----------------------------------------------------------------------------- summarize

def test_summarize_matches_scipy_t_interval():
    rng = np.random.default_rng(0)
    values = rng.uniform(0.05, 0.2, size=(4, 5))
    out = summarize(values)
    for i, row in enumerate(values):
        lo, hi = stats.t.interval(0.95, df=len(row) - 1, loc=row.mean(), scale=stats.sem(row))
        assert out["mean"][i] == pytest.approx(float(np.mean(row)), rel=1e-12)
        assert out["lo"][i] == pytest.approx(lo, rel=1e-12)
        assert out["hi"][i] == pytest.approx(hi, rel=1e-12)
    assert out["values"] == values.tolist()
    assert all(type(x) is float for key in ("mean", "lo", "hi") for x in out[key])


def test_summarize_two_seeds_uses_one_degree_of_freedom():
    out = summarize(np.array([[0.10, 0.12]]))
    half = stats.t.ppf(0.975, 1) * np.std([0.10, 0.12], ddof=1) / math.sqrt(2)
    assert out["hi"][0] - out["mean"][0] == pytest.approx(half)
    assert half > 0.1  # t with 1 dof is wide (12.7 standard errors)


def test_summarize_single_seed_has_no_interval():
    out = summarize(np.array([[0.1], [0.2]]))
    assert out["mean"] == out["lo"] == out["hi"] == [0.1, 0.2]
    assert out["values"] == [[0.1], [0.2]]


def test_summarize_rejects_1d():
    with pytest.raises(ValueError, match="shape"):
        summarize(np.array([0.1, 0.2]))


# ----------------------------------------------------------------------------- power law

@pytest.mark.parametrize("a,b,c", [(2.0, 0.5, 0.05), (5.0, 0.8, 0.1), (0.4, 0.25, 0.02),
                                   (30.0, 1.2, 0.08)])
def test_power_law_recovers_exact_parameters(a, b, c):
    fit = fit_power_law(SIZES, _law(SIZES, a, b, c))
    assert fit["ok"] is True
    assert fit["a"] == pytest.approx(a, rel=0.01)
    assert fit["b"] == pytest.approx(b, rel=0.01)
    assert fit["c"] == pytest.approx(c, rel=0.01)
    n = int(SIZES.max())
    assert fit["n_max"] == n
    assert fit["err_at_n_max"] == pytest.approx(_law(n, a, b, c), rel=1e-4)
    assert fit["err_2x"] == pytest.approx(_law(2 * n, a, b, c), rel=1e-4)
    assert fit["err_10x"] == pytest.approx(_law(10 * n, a, b, c), rel=1e-4)


def test_power_law_outputs_are_consistent_with_its_parameters():
    fit = fit_power_law(SIZES, _law(SIZES, 3.0, 0.6, 0.07), n_max=60000)
    a, b, c = fit["a"], fit["b"], fit["c"]
    assert fit["n_max"] == 60000
    assert fit["err_at_n_max"] == pytest.approx(a * 60000 ** -b + c)
    assert fit["err_2x"] == pytest.approx(a * 120000 ** -b + c)
    assert fit["err_10x"] == pytest.approx(a * 600000 ** -b + c)
    assert fit["gain_2x"] == pytest.approx(fit["err_at_n_max"] - fit["err_2x"])
    assert "extrapolated" in fit["note"]
    assert all(type(fit[k]) is float for k in ("a", "b", "c", "err_2x", "gain_2x"))


def test_power_law_noisy_data_within_tolerance():
    a, b, c = 2.0, 0.5, 0.05
    rng = np.random.default_rng(1)
    sizes = np.repeat(SIZES, 3)  # three seeds per size
    errors = _law(sizes, a, b, c) + rng.normal(0, 0.001, sizes.size)
    fit = fit_power_law(sizes, errors)
    assert fit["ok"]
    n = int(SIZES.max())
    true_gain = _law(n, a, b, c) - _law(2 * n, a, b, c)
    assert fit["err_at_n_max"] == pytest.approx(_law(n, a, b, c), abs=0.002)
    assert fit["gain_2x"] == pytest.approx(true_gain, abs=0.0015)
    assert fit["b"] == pytest.approx(b, abs=0.15)
    assert fit["c"] == pytest.approx(c, abs=0.01)
    assert fit["rmse"] == pytest.approx(0.001, rel=0.5)


def test_power_law_flat_curve_predicts_no_gain():
    fit = fit_power_law(SIZES, np.full(SIZES.size, 0.1))
    assert fit["ok"]
    assert fit["gain_2x"] == pytest.approx(0.0, abs=1e-6)
    assert fit["err_2x"] == pytest.approx(0.1, abs=1e-6)


def test_power_law_falls_back_to_grid_when_curve_fit_fails(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("Optimal parameters not found")

    monkeypatch.setattr(curvefit.optimize, "curve_fit", broken)
    a, b, c = 2.0, 0.5, 0.05
    fit = fit_power_law(SIZES, _law(SIZES, a, b, c))
    assert fit["ok"] and "grid" in fit["note"]
    n = int(SIZES.max())
    assert fit["err_at_n_max"] == pytest.approx(_law(n, a, b, c), abs=0.002)
    assert fit["c"] == pytest.approx(c, abs=0.01)


@pytest.mark.parametrize("sizes,errors", [
    ([1000, 2000], [0.2, 0.15]),                       # two sizes
    ([1000, 1000, 2000, 2000], [0.2, 0.21, 0.15, 0.16]),  # repeated, still two distinct
    ([1000, 2000, 4000], [0.2, float("nan"), 0.1]),    # NaN leaves two
    ([], []),
])
def test_power_law_too_few_points(sizes, errors):
    fit = fit_power_law(sizes, errors)
    assert fit["ok"] is False
    assert fit["note"]
    for k in ("a", "b", "c", "err_at_n_max", "err_2x", "err_10x", "gain_2x"):
        assert fit[k] is None


def test_power_law_three_sizes_is_flagged_exact():
    fit = fit_power_law([1000, 4000, 16000], _law([1000, 4000, 16000], 2.0, 0.5, 0.05))
    assert fit["ok"] and "3 sizes for 3 parameters" in fit["note"]


def test_power_law_respects_bounds():
    # a curve rising with n cannot be fitted by a decreasing law: a (or b) ends at its bound
    sizes = np.array([1000, 2000, 4000, 8000])
    fit = fit_power_law(sizes, np.array([0.1, 0.12, 0.14, 0.16]))
    assert fit["a"] >= 0 and 0 <= fit["b"] <= 3 and 0 <= fit["c"] <= 1
    assert fit["gain_2x"] >= -1e-12


def test_power_law_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        fit_power_law([1, 2, 3], [0.1, 0.2])


# ----------------------------------------------------------------------------- loss falling

def _history(losses):
    return [{"epoch": i + 1, "train_loss": v} for i, v in enumerate(losses)]


def test_loss_still_falling_on_decreasing_history():
    losses = [1.0 * 0.8 ** i for i in range(10)]
    out = loss_still_falling(_history(losses))
    prev, last = np.mean(losses[4:7]), np.mean(losses[7:10])
    assert out["value"] is True
    assert out["relative_drop"] == pytest.approx((prev - last) / prev)
    assert "epochs 8–10" in out["evidence"] and "still falling" in out["evidence"]


def test_loss_flat_history_is_not_falling():
    rng = np.random.default_rng(0)
    losses = list(0.3 + rng.normal(0, 0.001, 10))
    out = loss_still_falling(_history(losses))
    assert out["value"] is False
    assert abs(out["relative_drop"]) < 0.02
    assert "flat" in out["evidence"]


def test_loss_threshold_decides():
    losses = [1.0, 1.0, 1.0, 0.95, 0.95, 0.95]  # a 5 % drop
    assert loss_still_falling(_history(losses), threshold=0.04)["value"] is True
    assert loss_still_falling(_history(losses), threshold=0.06)["value"] is False


def test_loss_short_history_uses_the_last_epoch():
    losses = [0.9, 0.4, 0.3]  # fewer than 2 windows of 3: the first epoch's fall must not count
    out = loss_still_falling(_history(losses))
    assert out["relative_drop"] == pytest.approx((0.4 - 0.3) / 0.4)
    assert out["value"] is True
    flat = loss_still_falling(_history([0.9, 0.300, 0.299]))
    assert flat["value"] is False and flat["relative_drop"] == pytest.approx(0.001 / 0.3)


@pytest.mark.parametrize("history", [[], [{"epoch": 1, "train_loss": 0.5}],
                                     [{"epoch": 1}, {"epoch": 2, "train_loss": None}]])
def test_loss_cannot_tell_with_fewer_than_two_epochs(history):
    out = loss_still_falling(history)
    assert out["value"] is False and out["relative_drop"] == 0.0
    assert "cannot tell" in out["evidence"]


def test_loss_other_key_and_window():
    hist = [{"val_loss": v} for v in [1.0, 0.9, 0.8, 0.7]]
    out = loss_still_falling(hist, key="val_loss", window=2)
    assert out["relative_drop"] == pytest.approx((0.95 - 0.75) / 0.95)
    assert out["value"] is True
