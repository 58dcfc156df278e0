"""Tests of biasvar.analysis.curvefit: seed summaries, the power-law fit, its intervals and its
refusal rules, loss_still_falling. Learning curves are mocks of known shape."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, stats

from biasvar.analysis import curvefit
from biasvar.analysis.curvefit import fit_power_law, loss_still_falling, power_law, summarize

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
    # rmse against the means of the 3 seeds: about 0.001/sqrt(3), less the 3 fitted parameters
    means = errors.reshape(-1, 3).mean(axis=1)
    resid = _law(SIZES, fit["a"], fit["b"], fit["c"]) - means
    assert fit["rmse"] == pytest.approx(float(np.sqrt(np.mean(resid ** 2))), rel=1e-6)
    assert fit["rmse"] == pytest.approx(0.001 / math.sqrt(3), rel=0.6)


def test_power_law_flat_curve_is_not_extrapolated():
    fit = fit_power_law(SIZES, np.full(SIZES.size, 0.1))
    assert fit["ok"] and fit["extrapolates"] is False
    assert fit["b"] == pytest.approx(0.0, abs=1e-3)
    assert fit["err_at_n_max"] == pytest.approx(0.1, abs=1e-9)
    assert fit["gain_2x"] is None and "does not fall" in fit["note"]


def test_power_law_is_the_global_least_squares_optimum():
    # a noisy curve: no local optimiser, started near the truth or far from it, does better
    rng = np.random.default_rng(3)
    errors = _law(SIZES, 3.0, 0.6, 0.07) + rng.normal(0, 0.003, SIZES.size)
    fit = fit_power_law(SIZES, errors)
    x = SIZES / SIZES.max()
    amp = fit["a"] * float(SIZES.max()) ** -fit["b"]
    ours = float(np.sum((curvefit._model(x, amp, fit["b"], fit["c"]) - errors) ** 2))
    for start in [(0.05, 0.6, 0.07), (0.5, 0.2, 0.0), (0.01, 1.5, 0.09)]:
        popt, _ = optimize.curve_fit(curvefit._model, x, errors, p0=start, maxfev=20000,
                                     bounds=([0, 0, 0], [np.inf, 3, 1]))
        theirs = float(np.sum((curvefit._model(x, *popt) - errors) ** 2))
        assert ours <= theirs * (1 + 1e-6) + 1e-15


@pytest.mark.parametrize("sizes,errors", [
    ([1000, 2000], [0.2, 0.15]),                       # two sizes
    ([1000, 1000, 2000, 2000], [0.2, 0.21, 0.15, 0.16]),  # repeated, still two distinct
    ([1000, 2000, 4000], [0.2, float("nan"), 0.1]),    # NaN leaves two
    ([], []),
])
def test_power_law_too_few_points(sizes, errors):
    fit = fit_power_law(sizes, errors)
    assert fit["ok"] is False and fit["extrapolates"] is False
    assert fit["note"]
    for k in ("a", "b", "c", "err_at_n_max", "err_2x", "err_10x", "gain_2x", "err_2x_ci"):
        assert fit[k] is None


def test_power_law_three_sizes_is_not_extrapolated():
    sizes = [1000, 4000, 16000]
    fit = fit_power_law(sizes, _law(sizes, 2.0, 0.5, 0.05))
    assert fit["ok"] is True and fit["extrapolates"] is False
    assert "only 3 distinct training-set sizes" in fit["note"]
    assert "nothing tests it" in fit["note"]
    assert fit["a"] == pytest.approx(2.0, rel=0.01) and fit["c"] == pytest.approx(0.05, rel=0.01)
    assert fit["err_2x"] is fit["err_10x"] is fit["gain_2x"] is None
    # the same with seeds, through power_law: no interval either
    runs = [[e - 0.001, e + 0.001] for e in _law(sizes, 2.0, 0.5, 0.05)]
    pl = power_law(sizes, runs, n_max=16000)
    assert pl["extrapolates"] is False and pl["err_2x_ci"] is pl["gain_2x_ci"] is None


def test_power_law_rising_curve_is_not_extrapolated():
    # a curve rising with n cannot be fitted by a decreasing law: b ends at its bound 0
    sizes = np.array([1000, 2000, 4000, 8000])
    fit = fit_power_law(sizes, np.array([0.1, 0.12, 0.14, 0.16]))
    assert fit["a"] >= 0 and 0 <= fit["b"] <= 3 and 0 <= fit["c"] <= 1
    assert fit["extrapolates"] is False and fit["gain_2x"] is None
    assert "b sits at 0" in fit["note"]


def test_power_law_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        fit_power_law([1, 2, 3], [0.1, 0.2])


# ----------------------------------------------------------------------------- power_law: intervals

CURVE = [1000, 2000, 4000, 8000, 16000, 32000]


def _runs(sizes, k, sd, rng, a=2.0, b=0.5, c=0.05):
    """k fits per size (k an int or one per size) of a known law plus seed noise."""
    ks = [k] * len(sizes) if isinstance(k, int) else k
    return [list(_law(n, a, b, c) + rng.normal(0, sd, kk)) for n, kk in zip(sizes, ks)]


def test_power_law_intervals_cover_the_truth():
    # 100 synthetic curves of 6 sizes × 4 seeds: a 95 % interval should hold the true err_2x
    # and gain_2x in most of them (with few seeds a bootstrap is optimistic: ~90 % measured)
    n = max(CURVE)
    true_2x = _law(2 * n, 2.0, 0.5, 0.05)
    true_gain = _law(n, 2.0, 0.5, 0.05) - true_2x
    hits_2x = hits_gain = made = 0
    for i in range(100):
        fit = power_law(CURVE, _runs(CURVE, 4, 0.002, np.random.default_rng(i)), n_max=n,
                        resamples=100, seed=i)
        if not fit["extrapolates"]:
            continue
        made += 1
        lo, hi = fit["err_2x_ci"]
        hits_2x += lo <= true_2x <= hi
        lo, hi = fit["gain_2x_ci"]
        hits_gain += lo <= true_gain <= hi
    assert made >= 95
    assert hits_2x / made >= 0.8 and hits_gain / made >= 0.8


def test_power_law_interval_brackets_its_estimate_and_is_reproducible():
    runs = _runs(CURVE, 3, 0.002, np.random.default_rng(0))
    fit = power_law(CURVE, runs, n_max=32000)
    assert fit["ok"] and fit["extrapolates"] and fit["resamples"] == 200
    for key in ("err_2x", "err_10x", "gain_2x"):
        lo, hi = fit[f"{key}_ci"]
        assert lo < fit[key] < hi and all(type(v) is float for v in (lo, hi))
    assert fit["err_10x_ci"][1] < fit["err_2x_ci"][1]  # more data, lower error
    assert "95% intervals from 200 refits" in fit["note"]
    assert power_law(CURVE, runs, n_max=32000) == fit                    # same seed, same numbers
    assert power_law(CURVE, runs, n_max=32000, seed=1)["err_2x_ci"] != fit["err_2x_ci"]
    # the point estimate is the fit on the size means
    means = fit_power_law(CURVE, [float(np.mean(r)) for r in runs], n_max=32000)
    assert fit["err_2x"] == pytest.approx(means["err_2x"], rel=1e-12)
    assert power_law(CURVE, runs, n_max=32000, resamples=0)["err_2x_ci"] is None


def test_power_law_ragged_seeds():
    runs = _runs(CURVE, [1, 3, 2, 1, 2, 3], 0.002, np.random.default_rng(3))
    fit = power_law(CURVE, runs, n_max=32000)
    # some sizes with one fit: their spread is unknown, so no interval (resampling the others
    # alone would understate the uncertainty)
    assert fit["extrapolates"] and fit["err_2x"] is not None and fit["err_2x_ci"] is None
    assert "2 of the 6 sizes have one fit" in fit["note"]
    ragged = power_law(CURVE, _runs(CURVE, [2, 3, 2, 2, 2, 3], 0.002, np.random.default_rng(3)),
                       n_max=32000)
    assert ragged["err_2x_ci"][0] < ragged["err_2x"] < ragged["err_2x_ci"][1]
    # one fit everywhere: an estimate without an interval, and the note says why
    single = power_law(CURVE, _runs(CURVE, 1, 0.002, np.random.default_rng(3)), n_max=32000)
    assert single["extrapolates"] and single["err_2x"] is not None
    assert single["err_2x_ci"] is None and single["resamples"] == 0
    assert "no seed spread to resample" in single["note"]


def test_power_law_pools_repeated_sizes_and_drops_nan():
    runs = _runs(CURVE, 2, 0.002, np.random.default_rng(4))
    split = [[r[0]] for r in runs] + [[r[1], float("nan")] for r in runs]
    fit = power_law(CURVE + CURVE, split, n_max=32000, resamples=50)
    assert fit == power_law(CURVE, runs, n_max=32000, resamples=50)


@pytest.mark.parametrize("kwargs,match", [
    ({"sizes": [1000, 2000], "values": [[0.1]]}, "2 sizes but 1 lists"),
    ({"n_max": 0}, "n_max"), ({"n_max": 1.5}, "n_max"), ({"resamples": -1}, "resamples"),
])
def test_power_law_bad_arguments(kwargs, match):
    args = {"sizes": CURVE, "values": [[0.1]] * len(CURVE), "n_max": 32000} | kwargs
    with pytest.raises(ValueError, match=match):
        power_law(**args)


# ----------------------------------------------------------------------------- power_law: refusals

def test_power_law_refuses_an_asymptote_pinned_at_zero():
    # the curve: err(n) ≈ 1.41·n^-0.266 + 2.24e-07, a floor the data never showed
    runs = [[e - 0.001, e + 0.001] for e in _law(CURVE, 1.41, 0.266, 2.24e-7)]
    fit = power_law(CURVE, runs, n_max=32000)
    assert fit["ok"] is True and fit["extrapolates"] is False
    assert fit["c"] < 1e-4 and fit["b"] == pytest.approx(0.266, abs=0.01)  # still reported
    assert fit["a"] == pytest.approx(1.41, rel=0.05) and fit["rmse"] is not None
    for key in ("err_2x", "err_10x", "gain_2x", "err_2x_ci", "err_10x_ci", "gain_2x_ci"):
        assert fit[key] is None, key
    assert fit["note"].startswith("not extrapolated: the fitted floor c")
    assert "pinned at 0" in fit["note"] and "levels off" in fit["note"]
    assert fit_power_law(CURVE, _law(CURVE, 1.41, 0.266, 2.24e-7))["extrapolates"] is False


def test_power_law_refuses_an_exponent_at_its_maximum():
    fit = fit_power_law([1000, 2000, 4000, 8000, 16000], [0.3, 0.1, 0.1, 0.1, 0.1])
    assert fit["b"] == pytest.approx(3.0) and fit["extrapolates"] is False
    assert "b sits at its maximum 3" in fit["note"] and "stops falling" in fit["note"]


def test_power_law_refuses_a_poor_fit_unless_seed_noise_explains_it():
    # the law plus a zigzag of ±1 point: rmse about 1 point, over 10 % of the curve's range
    means = _law(CURVE, 2.0, 0.5, 0.05) + 0.01 * np.array([1, -1, 1, -1, 1, -1])
    one = power_law(CURVE, [[m] for m in means], n_max=32000)
    assert one["extrapolates"] is False and one["gain_2x"] is None
    assert "misses the measured errors by" in one["note"]
    assert "more than 10% of the curve's range" in one["note"]
    assert one["rmse"] > curvefit.POOR_FIT_RANGE * (means.max() - means.min())
    # the same means, with seeds ±0.5 points apart: standard error 0.5 points, and a misfit
    # within 3 of them is seed noise, not a wrong shape
    noisy = power_law(CURVE, [[m - 0.005, m + 0.005] for m in means], n_max=32000)
    assert noisy["rmse"] == pytest.approx(one["rmse"])
    assert noisy["rmse"] < curvefit.POOR_FIT_NOISE * 0.005
    assert noisy["extrapolates"] is True and noisy["gain_2x_ci"] is not None
    # seeds that agree closely do not rescue it
    tight = power_law(CURVE, [[m - 0.0005, m + 0.0005] for m in means], n_max=32000)
    assert tight["extrapolates"] is False and "3× the seed noise" in tight["note"]


def test_power_law_three_sizes_with_seeds_are_refused():
    sizes = CURVE[:3]
    fit = power_law(sizes, _runs(sizes, 3, 0.002, np.random.default_rng(0)), n_max=4000)
    assert fit["ok"] and fit["extrapolates"] is False
    assert "only 3 distinct training-set sizes" in fit["note"] and fit["err_2x"] is None


def test_bound_note():
    assert curvefit.bound_note(0.5, 0.05) is None
    assert "pinned at 0" in curvefit.bound_note(0.266, 2.24e-7)
    assert "b sits at 0" in curvefit.bound_note(0.0, 0.05)
    assert "maximum" in curvefit.bound_note(3.0, 0.05)
    assert "highest value" in curvefit.bound_note(0.5, 1.0)


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
