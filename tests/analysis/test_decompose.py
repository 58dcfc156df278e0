"""Tests of the bias-variance decomposition (biasvar.analysis._formulas).

Identities are checked by computing both sides independently (directly from the predictions in
the test, in loop or textbook form); estimators are checked by Monte Carlo against true values
known analytically or computed with far more samples; 0-1 terms against hand-worked cases.
"""
from __future__ import annotations

import itertools
import json
import time

import numpy as np
import pytest

from biasvar.analysis._formulas import (
    SAMPLING_SCHEMES,
    cross_entropy_pointwise,
    decompose,
    load_predictions,
    mse_pointwise,
    zero_one_pointwise,
)
from biasvar.errors import ConfigError, DataError


def _log_softmax(z: np.ndarray) -> np.ndarray:
    """Textbook log-softmax over the last axis (float64)."""
    z = np.asarray(z, dtype=np.float64)
    zmax = z.max(axis=-1, keepdims=True)
    return z - zmax - np.log(np.exp(z - zmax).sum(axis=-1, keepdims=True))


def _random_models(r: int = 6, m: int = 300, k: int = 4, seed: int = 0, spread: float = 1.0):
    """R models that share a per-point mean logit (some signal towards the label) and differ by
    Gaussian logit noise of scale ``spread``. Returns (log_probs fp32 (R, m, K), labels (m,))."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=m)
    mu = rng.normal(size=(m, k))
    mu[np.arange(m), labels] += 1.0
    z = mu[None] + spread * rng.normal(size=(r, m, k))
    return _log_softmax(z).astype(np.float32), labels


# ------------------------------------------------------------------ identities, both sides direct

def test_zero_one_loss_equals_bias_plus_net_variance():
    rng = np.random.default_rng(1)
    r, m, k = 7, 500, 4
    labels = rng.integers(0, k, size=m)
    # Half the models right on average, the rest uniform: many biased points with V > 0.
    preds = np.where(rng.random((r, m)) < 0.45, labels[None], rng.integers(0, k, size=(r, m)))
    out = zero_one_pointwise(preds, labels)
    loss_direct = np.mean(preds != labels[None], axis=0)
    biased_with_var = (out["bias"] == 1) & (out["variance"] > 0) & (out["c"] > 0)
    assert biased_with_var.sum() > 20, "test data must exercise the -c*V branch"
    assert (out["bias"] == 0).sum() > 20
    np.testing.assert_allclose(out["bias"] + out["net_variance"], loss_direct, atol=1e-12)
    np.testing.assert_allclose(out["loss"], loss_direct, atol=1e-12)
    assert loss_direct.mean() == pytest.approx(out["bias"].mean() + out["net_variance"].mean(),
                                               abs=1e-12)


def test_mse_risk_identity_with_directly_computed_terms():
    lp, labels = _random_models(r=5, m=200, k=5, seed=2)
    p = np.exp(lp.astype(np.float64))
    p /= p.sum(-1, keepdims=True)
    r = p.shape[0]
    e = np.eye(p.shape[-1])[labels]
    risk_direct = np.mean(np.sum((p - e[None]) ** 2, axis=-1), axis=0)
    p_bar = p.mean(axis=0)
    dist2 = np.sum((p_bar - e) ** 2, axis=-1)  # ‖p̄ − e_y‖², computed here
    out = mse_pointwise(p, labels)
    v = out["variance"]
    # risk = ‖p̄−e‖² − V/R + V holds only if V carries exactly the R/(R−1) factor.
    np.testing.assert_allclose(dist2 - v / r + v, risk_direct, rtol=1e-10)
    np.testing.assert_allclose(out["risk"], risk_direct, rtol=1e-10)
    np.testing.assert_allclose(out["bias2"], dist2 - v / r, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out["bias2"] + out["variance"], risk_direct, rtol=1e-10)


def test_cross_entropy_variance_is_mean_kl_and_risk_is_bias_plus_variance():
    lp32, labels = _random_models(r=6, m=250, k=4, seed=3, spread=1.5)
    lp = _log_softmax(lp32)  # same renormalisation the module does, done here independently
    r, m, _ = lp.shape
    # π̄ = normalise(geometric mean of p_r), then mean_r KL(π̄ ‖ p_r), all in loop form.
    kl = np.zeros(m)
    risk_direct = np.zeros(m)
    for j in range(m):
        g = np.exp(lp[:, j, :].mean(axis=0))
        pi_bar = g / g.sum()
        kl[j] = np.mean([np.sum(pi_bar * (np.log(pi_bar) - lp[i, j])) for i in range(r)])
        risk_direct[j] = -np.mean(lp[:, j, labels[j]])
    out = cross_entropy_pointwise(lp32, labels)
    np.testing.assert_allclose(out["variance"], kl, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out["bias"] + out["variance"], risk_direct, rtol=1e-10)
    np.testing.assert_allclose(out["risk"], risk_direct, rtol=1e-10)


def test_decompose_identities_hold_on_the_reported_means():
    lp, labels = _random_models(r=5, m=400, k=3, seed=4)
    d = decompose(lp, labels, n_boot=50)
    z, s, c = d["zero_one"], d["mse"], d["cross_entropy"]
    err_direct = np.mean(np.argmax(lp, axis=-1) != labels[None])
    assert z["loss"]["value"] == pytest.approx(err_direct, abs=1e-12)
    assert z["bias"]["value"] + z["net_variance"]["value"] == pytest.approx(err_direct, abs=1e-12)
    lp64 = _log_softmax(lp)
    nll_direct = -np.mean(np.take_along_axis(lp64, labels[None, :, None], axis=-1))
    assert c["risk"]["value"] == pytest.approx(nll_direct, rel=1e-10)
    assert c["bias"]["value"] + c["variance"]["value"] == pytest.approx(nll_direct, rel=1e-10)
    assert s["bias2"]["value"] + s["variance"]["value"] == pytest.approx(s["risk"]["value"],
                                                                          rel=1e-10)


# ------------------------------------------------------------------ Monte Carlo against the truth

def test_mse_variance_is_unbiased_monte_carlo():
    # p_r = p* + P u, u ~ Uniform(-a, a)^K iid, P the projection onto sum-zero vectors: p_r sums
    # to 1 and stays positive (|P u|_k < 2a(K-1)/K < min p*), so no clipping distorts the truth.
    # True variance E‖P u‖² = (K-1) a²/3; true bias² = ‖p* − e_y‖².
    rng = np.random.default_rng(5)
    k, m0, reps, r = 4, 20, 2000, 5
    p_star = 0.1 + 0.6 * rng.dirichlet(np.ones(k), size=m0)
    a = rng.uniform(0.01, 0.05, size=m0)
    y0 = rng.integers(0, k, size=m0)
    true_var = (k - 1) * a**2 / 3
    true_bias2 = np.sum((p_star - np.eye(k)[y0]) ** 2, axis=-1)
    # All repetitions side by side as extra test points: means over points = means over reps.
    u = rng.uniform(-1, 1, size=(r, reps, m0, k)) * a[None, None, :, None]
    u -= u.mean(axis=-1, keepdims=True)
    p = (p_star[None, None] + u).reshape(r, reps * m0, k)
    assert p.min() > 0
    labels = np.tile(y0, reps)
    out = mse_pointwise(p, labels)
    est_var = out["variance"].reshape(reps, m0).mean(axis=0)
    est_bias2 = out["bias2"].reshape(reps, m0).mean(axis=0)
    assert est_var.mean() == pytest.approx(true_var.mean(), rel=0.02)
    assert est_bias2.mean() == pytest.approx(true_bias2.mean(), rel=0.01)
    # The plug-in variance (no R/(R-1)), computed here, is ~ (R-1)/R = 0.8 of the truth: the test
    # above would catch a missing correction.
    plug_in = np.mean(np.sum((p - p.mean(axis=0)) ** 2, axis=-1), axis=0).mean()
    assert plug_in / true_var.mean() == pytest.approx((r - 1) / r, rel=0.03)


def test_cross_entropy_plug_in_variance_biased_low_jackknife_closer():
    # Logits z_r = μ + σ ε, ε ~ N(0, I). Then E log p_r = μ − const, so π̄ = softmax(μ) and the
    # true variance is E[lse(μ + σε)] − lse(μ); estimated with 40k draws per point and the
    # control variate softmax(μ)·σε (mean 0), which makes it precise to ~0.1 %.
    rng = np.random.default_rng(6)
    k, m0, sigma, r, reps = 4, 20, 0.6, 5, 2000
    mu = rng.normal(size=(m0, k))
    pi = np.exp(_log_softmax(mu))
    eps = sigma * rng.normal(size=(40_000, m0, k))
    lse = lambda x: np.log(np.exp(x).sum(-1))  # noqa: E731  (values are small: no overflow)
    true_v = np.mean(lse(mu[None] + eps) - lse(mu)[None] - np.sum(pi[None] * eps, -1), axis=0)
    z = mu[None, None] + sigma * rng.normal(size=(r, reps, m0, k))
    lp = _log_softmax(z.reshape(r, reps * m0, k))
    labels = np.tile(rng.integers(0, k, size=m0), reps)
    out = cross_entropy_pointwise(lp, labels)
    plug, jack, truth = out["variance"].mean(), out["variance_jackknife"].mean(), true_v.mean()
    assert plug < 0.9 * truth  # biased low, about (R-1)/R
    assert plug / truth == pytest.approx((r - 1) / r, abs=0.05)
    assert jack == pytest.approx(truth, rel=0.03)
    assert abs(jack - truth) < abs(plug - truth) / 3


def _zero_one_by_enumeration(q: np.ndarray, y: int, r: int) -> dict[str, float]:
    """Exact expectation of the R-model 0-1 estimates when each model predicts independently
    from the categorical q, by enumerating all K^R prediction tuples (Domingos' definitions,
    written out: mode with ties to the smallest label; on biased points net = −#[ŷ=y]/R)."""
    k = len(q)
    acc = dict(loss=0.0, bias=0.0, variance=0.0, net_variance=0.0)
    for tup in itertools.product(range(k), repeat=r):
        prob = float(np.prod([q[t] for t in tup]))
        counts = [tup.count(c) for c in range(k)]
        main = counts.index(max(counts))
        loss = sum(t != y for t in tup) / r
        var = sum(t != main for t in tup) / r
        biased = main != y
        net = -sum(t == y for t in tup) / r if biased else var
        for name, v in (("loss", loss), ("bias", float(biased)), ("variance", var),
                        ("net_variance", net)):
            acc[name] += prob * v
    return acc


def _sample_categorical(q: np.ndarray, size: tuple[int, int], rng) -> np.ndarray:
    """Draws of shape (R, m) where column j follows the categorical q[j % len(q)]."""
    r, m = size
    cum = np.cumsum(np.tile(q, (m // len(q), 1)), axis=-1)
    return (rng.random((r, m))[..., None] > cum[None]).sum(-1)


def test_zero_one_monte_carlo_matches_exact_expectation():
    rng = np.random.default_rng(7)
    r, reps = 5, 4000
    q = np.array([[0.5, 0.3, 0.2], [0.2, 0.45, 0.35], [0.34, 0.33, 0.33], [0.7, 0.2, 0.1]])
    y0 = np.array([0, 0, 2, 1])
    preds = _sample_categorical(q, (r, reps * len(q)), rng)
    out = zero_one_pointwise(preds, np.tile(y0, reps))
    for j in range(len(q)):
        exact = _zero_one_by_enumeration(q[j], int(y0[j]), r)
        assert exact["loss"] == pytest.approx(1 - q[j, y0[j]], abs=1e-12)  # loss is unbiased
        for name, value in exact.items():
            est = out[name].reshape(reps, len(q))[:, j].mean()
            assert est == pytest.approx(value, abs=0.02), (j, name)


def test_zero_one_converges_to_population_values_at_large_r():
    # Population (Domingos): ŷm = argmax q, B = [ŷm ≠ y], V = 1 − max q, net = V or −q_y.
    rng = np.random.default_rng(8)
    r, reps = 201, 50
    q = np.array([[0.6, 0.3, 0.1], [0.2, 0.65, 0.15], [0.15, 0.25, 0.6]])
    y0 = np.array([0, 0, 1])
    preds = _sample_categorical(q, (r, reps * len(q)), rng)
    out = zero_one_pointwise(preds, np.tile(y0, reps))
    main = q.argmax(1)
    bias = (main != y0).astype(float)
    var = 1 - q.max(1)
    net = np.where(bias > 0, -q[np.arange(3), y0], var)
    for name, truth in (("bias", bias), ("variance", var), ("net_variance", net)):
        est = out[name].reshape(reps, 3).mean(axis=0)
        np.testing.assert_allclose(est, truth, rtol=0.05, atol=1e-9, err_msg=name)


# ------------------------------------------------------------------ 0-1 by hand

def test_zero_one_hand_worked_cases():
    preds = np.array([
        # p0   p1   p2   p3   p4   p5
        [2,    1,   1,   2,   1,   0],
        [2,    1,   1,   2,   1,   0],
        [2,    1,   1,   2,   1,   0],
        [2,    1,   0,   1,   0,   0],
        [2,    1,   0,   1,   2,   1],
        [2,    1,   0,   1,   2,   2],
    ])
    labels = np.array([2, 0, 0, 0, 0, 0])
    out = zero_one_pointwise(preds, labels)
    # p0 all agree and right; p1 all agree and wrong (V = 0 → c = 0, net 0); p2 3-3 tie between
    # 1 and 0 → main 0 (smallest), unbiased; p3 tie 2/1 → main 1, biased, nobody right → c = 0;
    # p4 counts {0:1, 1:3, 2:2} → main 1, biased, V = 3/6, c = 1/3, net = −1/6, loss = 5/6;
    # p5 counts {0:4, 1:1, 2:1} → main 0, unbiased, V = loss = 2/6.
    np.testing.assert_array_equal(out["main_prediction"], [2, 1, 0, 1, 1, 0])
    np.testing.assert_allclose(out["bias"], [0, 1, 0, 1, 1, 0])
    np.testing.assert_allclose(out["variance"], [0, 0, 1 / 2, 1 / 2, 1 / 2, 1 / 3])
    np.testing.assert_allclose(out["c"], [0, 0, 0, 0, 1 / 3, 0])
    np.testing.assert_allclose(out["net_variance"], [0, 0, 1 / 2, 0, -1 / 6, 1 / 3])
    np.testing.assert_allclose(out["loss"], [0, 1, 1 / 2, 1, 5 / 6, 1 / 3])


def test_unsigned_variance_matches_mlxtend_definition():
    lp, labels = _random_models(r=7, m=300, k=5, seed=9, spread=2.0)
    preds = np.argmax(lp, axis=-1)
    # mlxtend.evaluate.bias_variance_decomp (0-1 loss), written out in its loop form.
    avg_var = avg_bias = 0.0
    for j in range(preds.shape[1]):
        main = np.argmax(np.bincount(preds[:, j]))
        avg_var += np.mean(preds[:, j] != main)
        avg_bias += float(main != labels[j])
    avg_var /= preds.shape[1]
    avg_bias /= preds.shape[1]
    d = decompose(lp, labels, n_boot=20)["zero_one"]
    assert d["variance"]["value"] == pytest.approx(avg_var, abs=1e-12)
    assert d["bias"]["value"] == pytest.approx(avg_bias, abs=1e-12)
    # mlxtend's bias + variance does not add up to the loss; bias + net variance does.
    assert abs(avg_bias + avg_var - d["loss"]["value"]) > 0.01


# ------------------------------------------------------------------ uncertainty

def test_confidence_intervals_contain_value_and_match_normal_width():
    lp, labels = _random_models(r=5, m=2000, k=4, seed=10)
    d = decompose(lp, labels, n_boot=1000, seed=3)
    for loss in ("zero_one", "mse", "cross_entropy"):
        for name, term in d[loss].items():
            lo, hi = term["ci95"]
            assert lo <= term["value"] <= hi, (loss, name)
            assert hi > lo
    # A bootstrap of a mean over m points has width ≈ 2·1.96·sd/√m.
    loss_pts = np.mean(np.argmax(lp, -1) != labels[None], axis=0)
    width = 2 * 1.96 * loss_pts.std(ddof=1) / np.sqrt(len(labels))
    lo, hi = d["zero_one"]["loss"]["ci95"]
    assert hi - lo == pytest.approx(width, rel=0.15)


def test_se_models_is_the_jackknife_over_models():
    lp, labels = _random_models(r=6, m=300, k=4, seed=11, spread=2.0)
    d = decompose(lp, labels, n_boot=20)
    for loss in ("zero_one", "mse", "cross_entropy"):
        for name, term in d[loss].items():
            assert term["se_models"] > 0, (loss, name)
    # For a term that is a mean over models (the risks), the jackknife SE equals the textbook
    # standard error of the mean of the per-model values: sd(ddof=1)/√R.
    r = lp.shape[0]
    err_r = np.mean(np.argmax(lp, -1) != labels[None], axis=1)
    assert d["zero_one"]["loss"]["se_models"] == pytest.approx(err_r.std(ddof=1) / np.sqrt(r),
                                                               rel=1e-9)
    nll_r = -np.mean(np.take_along_axis(_log_softmax(lp), labels[None, :, None], -1)[..., 0], 1)
    assert d["cross_entropy"]["risk"]["se_models"] == pytest.approx(
        nll_r.std(ddof=1) / np.sqrt(r), rel=1e-9)


def test_identical_models_have_zero_variance_and_zero_se():
    lp, labels = _random_models(r=1, m=200, k=3, seed=12)
    d = decompose(np.repeat(lp, 4, axis=0), labels, n_boot=20)
    for loss in ("zero_one", "mse", "cross_entropy"):
        for name, term in d[loss].items():
            assert term["se_models"] == pytest.approx(0.0, abs=1e-12), (loss, name)
    for loss, name in (("zero_one", "variance"), ("mse", "variance"), ("cross_entropy", "variance"),
                       ("cross_entropy", "variance_jackknife")):
        assert d[loss][name]["value"] == pytest.approx(0.0, abs=1e-6), (loss, name)


def _terms_direct(lp: np.ndarray, labels: np.ndarray) -> dict[tuple[str, str], float]:
    """Every term's mean over test points, written out here from the definitions (loops over
    points and models), for any R ≥ 1; terms undefined on one model are left out at R = 1."""
    lp = _log_softmax(lp)
    r, m, k = lp.shape
    p = np.exp(lp)
    acc: dict[tuple[str, str], list[float]] = {}

    def add(loss: str, term: str, v: float) -> None:
        acc.setdefault((loss, term), []).append(v)

    for j in range(m):
        y = int(labels[j])
        preds = [int(np.argmax(lp[i, j])) for i in range(r)]
        counts = [preds.count(c) for c in range(k)]
        main = counts.index(max(counts))  # ties → smallest label
        add("zero_one", "loss", sum(t != y for t in preds) / r)
        add("zero_one", "bias", float(main != y))
        e = np.eye(k)[y]
        add("mse", "risk", float(np.mean([np.sum((p[i, j] - e) ** 2) for i in range(r)])))
        add("cross_entropy", "risk", float(-np.mean([lp[i, j, y] for i in range(r)])))
        g = np.exp(lp[:, j].mean(axis=0))
        pi_bar = g / g.sum()
        add("cross_entropy", "bias", float(-np.log(pi_bar[y])))
        if r < 2:
            continue
        var01 = sum(t != main for t in preds) / r
        add("zero_one", "variance", var01)
        add("zero_one", "net_variance",
            -sum(t == y for t in preds) / r if main != y else var01)
        p_bar = p[:, j].mean(axis=0)
        v = np.mean([np.sum((p[i, j] - p_bar) ** 2) for i in range(r)]) * r / (r - 1)
        add("mse", "variance", float(v))
        add("mse", "bias2", float(np.sum((p_bar - e) ** 2) - v / r))

        def kl_var(rows: np.ndarray) -> float:  # mean_i KL(π̄ ‖ p_i) over the given models
            gg = np.exp(rows.mean(axis=0))
            pb = gg / gg.sum()
            return float(np.mean([np.sum(pb * (np.log(pb) - row)) for row in rows]))

        v_ce = kl_var(lp[:, j])
        loo = [kl_var(np.delete(lp[:, j], i, axis=0)) for i in range(r)]
        add("cross_entropy", "variance", v_ce)
        add("cross_entropy", "variance_jackknife", r * v_ce - (r - 1) * float(np.mean(loo)))
    return {key: float(np.mean(v)) for key, v in acc.items()}


_ALL_TERMS = [("zero_one", t) for t in ("loss", "bias", "variance", "net_variance")] + \
    [("mse", t) for t in ("risk", "bias2", "variance")] + \
    [("cross_entropy", t) for t in ("risk", "bias", "variance", "variance_jackknife")]
_UNDEFINED_AT_R2 = {("zero_one", "variance"), ("zero_one", "net_variance"), ("mse", "variance"),
                    ("mse", "bias2"), ("cross_entropy", "variance"),
                    ("cross_entropy", "variance_jackknife")}


def _jackknife_se_direct(lp: np.ndarray, labels: np.ndarray) -> dict[tuple[str, str], float]:
    """sqrt((R−1)/R · Σ_i (θ₋ᵢ − mean θ₋)²) with θ₋ᵢ from :func:`_terms_direct` on R−1 models."""
    r = lp.shape[0]
    loo = [_terms_direct(np.delete(lp, i, axis=0), labels) for i in range(r)]
    return {key: float(np.sqrt((r - 1) / r * np.sum(
        (np.array([t[key] for t in loo]) - np.mean([t[key] for t in loo])) ** 2)))
        for key in loo[0]}


def test_two_models_leave_undefined_se_as_null():
    # Leaving one of 2 models out leaves one: the terms that measure disagreement between
    # models are 0 by construction there (0-1 variance and net variance, CE variance) or need
    # R−1 ≥ 2 (MSE variance's R/(R−1), bias² = risk − variance, the CE jackknife): undefined.
    lp, labels = _random_models(r=2, m=100, k=3, seed=13, spread=2.0)
    d = decompose(lp, labels, n_boot=20)
    for loss, term in _ALL_TERMS:
        se = d[loss][term]["se_models"]
        if (loss, term) in _UNDEFINED_AT_R2:
            assert se is None, (loss, term)
        else:  # defined on one model: |θ₁ − θ₂| / 2, from single-model terms computed here
            direct = _jackknife_se_direct(lp, labels)[loss, term]
            assert direct > 0, (loss, term)
            assert se == pytest.approx(direct, rel=1e-9), (loss, term)
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text)["zero_one"]["variance"]["se_models"] is None


def test_three_models_se_equals_direct_leave_one_out():
    lp, labels = _random_models(r=3, m=80, k=3, seed=22, spread=2.0)
    d = decompose(lp, labels, n_boot=20)
    direct = _jackknife_se_direct(lp, labels)
    assert set(direct) == set(_ALL_TERMS)
    for loss, term in _ALL_TERMS:
        se = d[loss][term]["se_models"]
        assert se is not None and np.isfinite(se), (loss, term)
        assert direct[loss, term] > 0, (loss, term)  # data that exercises every term
        assert se == pytest.approx(direct[loss, term], rel=1e-8, abs=1e-12), (loss, term)


# ------------------------------------------------------------------ ensemble, output contract

def test_ensemble_cross_entropy_equals_bias_term():
    # Sanity check only: on the SAME models this holds by construction (the log-prob-averaging
    # ensemble predicts π̄, whose CE is the bias term). A real test of the "variance predicts the
    # ensemble gain" claim needs freshly trained models.
    lp, labels = _random_models(r=5, m=300, k=4, seed=14, spread=1.5)
    d = decompose(lp, labels, n_boot=20)
    assert d["ensemble"]["cross_entropy"] == pytest.approx(d["cross_entropy"]["bias"]["value"],
                                                           rel=1e-10)
    gain = d["cross_entropy"]["risk"]["value"] - d["ensemble"]["cross_entropy"]
    assert gain == pytest.approx(d["cross_entropy"]["variance"]["value"], rel=1e-9)
    ens_pred = np.argmax(_log_softmax(lp).mean(axis=0), axis=-1)
    assert d["ensemble"]["error"] == pytest.approx(np.mean(ens_pred != labels), abs=1e-12)


def test_output_matches_schema_and_is_pure_json():
    lp, labels = _random_models(r=3, m=150, k=3, seed=15)
    labels[labels == 2] = 0  # class "c" absent from the test set
    d = decompose(lp, labels, classes=["a", "b", "c"], sampling="split",
                  n_train_per_model=[100, 100, 100], n_boot=30, label_noise=0.1)
    assert set(d) == {"rounds", "sampling", "n_train_per_model", "n_test", "label_noise",
                      "zero_one", "mse", "cross_entropy", "ensemble", "per_class"}
    assert (d["rounds"], d["sampling"], d["n_test"], d["label_noise"]) == (3, "split", 150, 0.1)
    assert d["n_train_per_model"] == [100, 100, 100]
    assert set(d["zero_one"]) == {"loss", "bias", "variance", "net_variance"}
    assert set(d["mse"]) == {"risk", "bias2", "variance"}
    assert set(d["cross_entropy"]) == {"risk", "bias", "variance", "variance_jackknife"}
    for loss in ("zero_one", "mse", "cross_entropy"):
        for term in d[loss].values():
            assert set(term) == {"value", "ci95", "se_models"}
    assert set(d["ensemble"]) == {"error", "cross_entropy"}
    assert set(d["per_class"]) == {"a", "b"}
    assert sum(v["n"] for v in d["per_class"].values()) == 150
    # per-class 0-1 loss = that class's error rate, computed here.
    err = np.argmax(lp, -1) != labels[None]
    for idx, name in enumerate(["a", "b"]):
        block = d["per_class"][name]
        assert set(block) == {"n", "zero_one", "mse", "cross_entropy"}
        assert block["zero_one"]["loss"] == pytest.approx(err[:, labels == idx].mean(), abs=1e-12)
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text) == d  # only JSON types: round-trips unchanged


def test_decompose_renormalises_rows_in_float64():
    # Rows off by 5e-4 (inside the accepted tolerance, e.g. fp32 drift) are renormalised, so
    # the squared error is that of proper distributions: compare with softmax computed here.
    lp, labels = _random_models(r=3, m=100, k=4, seed=21)
    shifted = lp + np.float32(5e-4)
    d = decompose(shifted, labels, n_boot=10)
    p = np.exp(_log_softmax(shifted))
    risk = np.mean(np.sum((p - np.eye(4)[labels][None]) ** 2, axis=-1))
    assert d["mse"]["risk"]["value"] == pytest.approx(risk, rel=1e-9)


def test_large_decomposition_is_fast():
    lp, labels = _random_models(r=10, m=10_000, k=10, seed=16)
    t = time.perf_counter()
    d = decompose(lp, labels, n_boot=1000)
    assert time.perf_counter() - t < 10.0  # ~0.5 s here; a Python loop over resamples is ~100×
    assert d["n_test"] == 10_000


# ------------------------------------------------------------------ validation

def test_decompose_needs_two_models():
    lp, labels = _random_models(r=1, m=20, k=3, seed=17)
    with pytest.raises(ConfigError, match=r"rounds: 1.*at least 2 models"):
        decompose(lp, labels)


@pytest.mark.parametrize("kwargs, pattern", [
    ({"sampling": "bootstrp"}, r"sampling.*bootstrp.*Did you mean 'bootstrap'"),
    ({"classes": ["a", "b"]}, r"classes: 2 names.*3 classes"),
    ({"n_train_per_model": [10, 10]}, r"n_train_per_model"),
    ({"n_boot": 0}, r"n_boot: 0"),
    ({"label_noise": 1.5}, r"label_noise: 1.5"),
])
def test_decompose_rejects_bad_options(kwargs, pattern):
    lp, labels = _random_models(r=3, m=20, k=3, seed=18)
    with pytest.raises(ConfigError, match=pattern):
        decompose(lp, labels, **kwargs)


def test_sampling_schemes_are_the_documented_four():
    assert set(SAMPLING_SCHEMES) == {"bootstrap", "split", "subsample", "seed"}


def test_load_predictions_round_trip(tmp_path):
    lp, labels = _random_models(r=3, m=30, k=3, seed=19)
    path = tmp_path / "preds.npz"
    np.savez(path, log_probs=lp, labels=labels, classes=np.array(["x", "y", "z"]))
    lp2, labels2, classes = load_predictions(path)
    np.testing.assert_array_equal(lp2, lp)
    np.testing.assert_array_equal(labels2, labels)
    assert classes == ["x", "y", "z"]
    np.savez(path, log_probs=lp, labels=labels)
    assert load_predictions(path)[2] is None


def _bad_npz_cases():
    lp, labels = _random_models(r=3, m=30, k=3, seed=20)
    non_finite = lp.copy()
    non_finite[1, 4, 2] = -np.inf
    return [
        ("missing", dict(log_probs=lp), r"lacks the array\(s\) labels"),
        ("ndim", dict(log_probs=lp[0], labels=labels), r"3 dimensions.*\(30, 3\)"),
        ("one_model", dict(log_probs=lp[:1], labels=labels), r"1 model.*at least 2"),
        ("range", dict(log_probs=lp, labels=np.where(labels == 0, 3, labels)),
         r"label 3 is out of range for 3 classes"),
        ("length", dict(log_probs=lp, labels=labels[:-1]), r"labels has 29 entries.*30 test"),
        ("non_finite", dict(log_probs=non_finite, labels=labels),
         r"non-finite.*model 1, point 4, class 2.*log_softmax"),
        ("logits", dict(log_probs=lp + 2.0, labels=labels),
         r"not log-probabilities.*log_softmax"),
        ("probs", dict(log_probs=np.exp(lp), labels=labels), r"look like probabilities"),
        ("float_labels", dict(log_probs=lp, labels=labels.astype(float)), r"integer"),
        ("classes", dict(log_probs=lp, labels=labels, classes=np.array(["a", "b"])),
         r"classes has shape \(2,\).*3 classes"),
        ("pickled", dict(log_probs=lp, labels=labels, classes=np.array(["a", 1, None])),
         r"without pickle"),
    ]


_BAD_NPZ = _bad_npz_cases()


@pytest.mark.parametrize("name, arrays, pattern", _BAD_NPZ, ids=[c[0] for c in _BAD_NPZ])
def test_load_predictions_rejects_bad_files(tmp_path, name, arrays, pattern):
    path = tmp_path / f"{name}.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=pattern):
        load_predictions(path)


def test_load_predictions_object_array_needs_pickle(tmp_path):
    lp, labels = _random_models(r=3, m=30, k=3, seed=23)
    path = tmp_path / "objects.npz"
    np.savez(path, log_probs=lp.astype(object), labels=labels)
    with pytest.raises(DataError, match=r"member 'log_probs'.*without pickle.*object array"
                                        r".*np\.array\(names, dtype=str\)") as info:
        load_predictions(path)
    assert str(path) in str(info.value)
    assert "damaged" not in str(info.value)


def _rewrite_member(src, dst, member: str, edit) -> None:
    """Copy the zip ``src`` to ``dst`` with ``edit(bytes)`` applied to ``member`` (a valid zip
    with a correct CRC: only the .npy inside is damaged)."""
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            zout.writestr(name, edit(data) if name == member else data)


@pytest.mark.parametrize("how, edit", [
    ("data_truncated", lambda b: b[: len(b) - 100]),
    ("header_truncated", lambda b: b[:40]),
    ("header_garbled", lambda b: b[:10] + b"\x00garbage{" + b[21:]),
])
def test_load_predictions_damaged_member_is_not_called_pickle(tmp_path, how, edit):
    lp, labels = _random_models(r=3, m=30, k=3, seed=24)
    good = tmp_path / "good.npz"
    np.savez(good, log_probs=lp, labels=labels)
    bad = tmp_path / f"{how}.npz"
    _rewrite_member(good, bad, "log_probs.npy", edit)
    with pytest.raises(DataError, match=r"member 'log_probs' is damaged \(.+\); re-save it with "
                                        r"numpy\.savez") as info:
        load_predictions(bad)
    assert str(bad) in str(info.value)
    assert "pickle" not in str(info.value)


def test_load_predictions_corrupted_member_bytes_crc(tmp_path):
    # Bytes changed in place inside the archive: zipfile's CRC check fails (BadZipFile).
    lp, labels = _random_models(r=3, m=30, k=3, seed=25)
    path = tmp_path / "crc.npz"
    np.savez(path, labels=labels, log_probs=lp)
    raw = bytearray(path.read_bytes())
    at = raw.rfind(b"\x93NUMPY") + 200  # inside the data of the last member, log_probs
    raw[at:at + 16] = b"\xff" * 16
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"member 'log_probs' is damaged.*re-save it") as info:
        load_predictions(path)
    assert "pickle" not in str(info.value)


def test_load_predictions_rejects_non_npz_and_missing(tmp_path):
    text = tmp_path / "preds.npz"
    text.write_text("not an archive")
    with pytest.raises(DataError, match=r"not an \.npz \(zip\) file"):
        load_predictions(text)
    npy = tmp_path / "preds.npy"
    np.save(npy, np.zeros((2, 3, 3)))
    with pytest.raises(DataError, match=r"not an \.npz"):
        load_predictions(npy)
    with pytest.raises(DataError, match=r"no file at"):
        load_predictions(tmp_path / "absent.npz")


def _kl_variance(lp: np.ndarray) -> np.ndarray:
    """mean_r KL(π̄ ‖ p_r) per point, with π̄ the normalised geometric mean, written out from the
    definition (not through −log Z as the module computes it)."""
    g = np.exp(lp.mean(axis=0))
    pi = g / g.sum(-1, keepdims=True)
    return np.mean(np.sum(pi[None] * (np.log(pi)[None] - lp), axis=-1), axis=0)


@pytest.mark.parametrize("r", [2, 3, 5, 8])
def test_cross_entropy_jackknife_is_the_leave_one_out_correction(r):
    """variance_jackknife = R·v − (R−1)·mean_i v₋ᵢ, each v a mean KL computed here from its
    definition on R and on R−1 models; and from R = 3 on it is not the plug-in scaled by
    R/(R−1) (the two differ by far more than the tolerance)."""
    lp32, labels = _random_models(r=r, m=200, k=5, seed=r, spread=1.5)
    got = cross_entropy_pointwise(lp32, labels)["variance_jackknife"]
    lp = _log_softmax(lp32.astype(np.float64))  # the stored fp32 values, renormalised
    v = _kl_variance(lp)
    loo = np.mean([_kl_variance(np.delete(lp, i, axis=0)) for i in range(r)], axis=0)
    expect = r * v - (r - 1) * loo
    np.testing.assert_allclose(got, expect, rtol=0, atol=1e-10)
    scaled = v * r / (r - 1)
    if r == 2:  # one model left out has no variance: the two coincide, 2v − 0 = v·2/1
        np.testing.assert_allclose(scaled, expect, atol=1e-12)
    else:
        assert np.max(np.abs(scaled - expect)) > 1e-4
