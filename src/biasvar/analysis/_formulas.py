"""Bias-variance decomposition of R models' test predictions (pure numpy).

Models f_1..f_R, trained on resampled training sets D_1..D_R, are scored on one fixed test set of
m points with K classes. Their predictions arrive as fp32 log-probabilities ``(R, m, K)``
(``log_softmax`` outputs); everything here works in float64 from them. Three losses are
decomposed, each term a mean over the m test points of a per-point quantity:

* **0-1 loss** (Domingos 2000, additive): main prediction ŷm = mode over models (ties → the
  smallest label); loss = bias + net variance exactly, where the net variance subtracts the
  variance of biased points (there, disagreeing with a wrong majority can only help).
* **squared error on probabilities** (Yang et al. 2020): risk = bias² + variance, the variance
  estimated without bias (factor R/(R-1)).
* **cross-entropy** (Yang et al. 2020): with π̄ the normalised geometric mean of the models'
  distributions, risk = bias + variance exactly; the variance is the mean KL(π̄ ‖ p_r). Its
  plug-in estimate is biased low at small R, so a jackknife-corrected value is reported too.

Each term of :func:`decompose` carries ``ci95`` (percentile bootstrap over test points: how much
the number would move with another test set) and ``se_models`` (jackknife over the R models: how
much it would move with other models; with small R this one usually dominates; null at
R = 2 for the terms that measure disagreement between models, undefined on one model).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> logits = rng.normal(size=(5, 100, 3))
>>> log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
>>> labels = rng.integers(0, 3, size=100)
>>> d = decompose(log_probs.astype(np.float32), labels, n_boot=200)
>>> z = d["zero_one"]
>>> abs(z["loss"]["value"] - (z["bias"]["value"] + z["net_variance"]["value"])) < 1e-12
True
"""
from __future__ import annotations

import os
import zipfile
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError, unknown_name

__all__ = [
    "SAMPLING_SCHEMES",
    "zero_one_pointwise",
    "mse_pointwise",
    "cross_entropy_pointwise",
    "decompose",
    "load_predictions",
]

#: How the R training sets were drawn; always reported next to the numbers.
#: bootstrap: n draws with replacement; split: R disjoint parts; subsample: a fraction without
#: replacement; seed: the same data, new initialisation and order (optimisation variance only).
SAMPLING_SCHEMES = ("bootstrap", "split", "subsample", "seed")

#: Largest |logsumexp(row)| accepted for a row of log-probabilities. fp32 ``log_softmax``
#: rows are off by ~1e-6; logits or log(softmax) of bf16 are off by far more.
_LOGSUMEXP_ATOL = 1e-3

#: Entries of the bootstrap weight matrix materialised at once (float64: 8 bytes each).
_BOOT_CHUNK = 2_000_000

# (loss, term) pairs in output order; the per-class block omits the jackknife variance.
_TERMS: tuple[tuple[str, str], ...] = (
    ("zero_one", "loss"), ("zero_one", "bias"), ("zero_one", "variance"),
    ("zero_one", "net_variance"),
    ("mse", "risk"), ("mse", "bias2"), ("mse", "variance"),
    ("cross_entropy", "risk"), ("cross_entropy", "bias"), ("cross_entropy", "variance"),
    ("cross_entropy", "variance_jackknife"),
)


# --------------------------------------------------------------------------- numerics

def _logsumexp(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """Stable ``log(sum(exp(a), axis))`` (float64; -inf where every entry is -inf)."""
    a_max = np.max(a, axis=axis, keepdims=True)
    a_max = np.where(np.isfinite(a_max), a_max, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(a - a_max), axis=axis, keepdims=True)) + a_max
    return np.squeeze(out, axis=axis)


def _normalise(log_probs: np.ndarray) -> np.ndarray:
    """float64 copy of ``log_probs`` with every row's logsumexp exactly 0 (removes fp32 drift,
    so that risk = bias + variance holds to float64 rounding)."""
    lp = np.asarray(log_probs, dtype=np.float64)
    return lp - _logsumexp(lp)[..., None]


def _pick(a: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``a[..., j, labels[j]]`` for every point j: (..., m, K) → (..., m)."""
    idx = np.broadcast_to(labels[:, None], a.shape[:-1] + (1,))
    return np.take_along_axis(a, idx, axis=-1)[..., 0]


# --------------------------------------------------------------------------- pointwise terms

def zero_one_pointwise(preds: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Domingos' additive 0-1 decomposition at every test point.

    Args:
        preds: (R, m) int, the predicted label of model r at point j (R ≥ 1).
        labels: (m,) int, the true labels.

    Returns:
        dict of (m,) arrays:
        ``main_prediction`` ŷm (int): the mode of ŷr over models; **ties go to the smallest label**
        (deterministic, and what ``np.argmax(np.bincount(...))`` does, as in mlxtend).
        ``loss`` = mean_r [ŷr ≠ y];  ``bias`` B = [ŷm ≠ y] (0./1.);
        ``variance`` V = mean_r [ŷr ≠ ŷm] (unsigned, mlxtend's "variance");
        ``c`` = P_r(ŷr = y | ŷr ≠ ŷm), 0 where V = 0 (and so 0 on unbiased points, where
        ŷr ≠ ŷm = y implies ŷr ≠ y);
        ``net_variance`` = s·V with s = 1 on unbiased points and s = -c on biased ones, so that
        ``loss == bias + net_variance`` at every point (up to float rounding).
    """
    preds = np.asarray(preds)
    labels = np.asarray(labels)
    if preds.ndim != 2 or labels.ndim != 1 or preds.shape[1] != labels.shape[0]:
        raise DataError(f"zero_one_pointwise: preds must be (R, m) and labels (m,); got "
                        f"{preds.shape} and {labels.shape}.")
    if preds.size == 0:
        raise DataError("zero_one_pointwise: empty predictions; need at least one model and "
                        "one test point.")
    if preds.min() < 0 or labels.min() < 0:
        raise DataError("zero_one_pointwise: labels and predictions must be non-negative "
                        "class indices.")
    r, m = preds.shape
    k = int(max(preds.max(), labels.max())) + 1
    # counts[j, c] = number of models predicting class c at point j (one bincount, no loops).
    flat = (preds.astype(np.int64) + k * np.arange(m, dtype=np.int64)[None, :]).ravel()
    counts = np.bincount(flat, minlength=m * k).reshape(m, k)
    main = np.argmax(counts, axis=1)  # first maximum = smallest label on ties
    n_main = counts[np.arange(m), main]
    n_true = counts[np.arange(m), labels]
    loss = 1.0 - n_true / r
    bias = (main != labels).astype(np.float64)
    n_off = r - n_main  # models that disagree with the main prediction
    variance = n_off / r
    c = np.divide(n_true, n_off, out=np.zeros(m), where=n_off > 0) * bias
    net_variance = np.where(bias > 0, -c * variance, variance)
    return {"loss": loss, "bias": bias, "variance": variance, "net_variance": net_variance,
            "c": c, "main_prediction": main}


def mse_pointwise(probs: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Squared error of probability vectors against one-hot labels, decomposed per point.

    Args:
        probs: (R, m, K) probabilities (rows summing to 1), R ≥ 2.
        labels: (m,) int.

    Returns:
        dict of (m,) float64 arrays: ``risk`` = mean_r ‖p_r − e_y‖²;
        ``variance`` = mean_r ‖p_r − p̄‖² · R/(R−1), unbiased for E‖p − E p‖²;
        ``bias2`` = risk − variance (= ‖p̄ − e_y‖² − variance/R, unbiased for ‖E p − e_y‖²).
        A point's bias² can be negative by chance; it is never clipped, so means stay unbiased.
    """
    p = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if p.ndim != 3 or labels.ndim != 1 or p.shape[1] != labels.shape[0]:
        raise DataError(f"mse_pointwise: probs must be (R, m, K) and labels (m,); got "
                        f"{p.shape} and {labels.shape}.")
    r = p.shape[0]
    if r < 2:
        raise ConfigError(f"rounds: {r}; the unbiased variance needs at least 2 models.")
    sq = np.sum(p * p, axis=-1)  # ‖p_r‖², (R, m)
    risk = np.mean(sq - 2.0 * _pick(p, labels) + 1.0, axis=0)
    p_bar = p.mean(axis=0)
    variance = np.mean(np.sum((p - p_bar) ** 2, axis=-1), axis=0) * (r / (r - 1))
    return {"risk": risk, "bias2": risk - variance, "variance": variance}


def cross_entropy_pointwise(log_probs: np.ndarray, labels: np.ndarray, *,
                            jackknife: bool = True) -> dict[str, np.ndarray]:
    """Yang et al.'s cross-entropy decomposition per point.

    With π̄ = normalise(exp(mean_r log p_r)) (the normalised geometric mean) and Z its normaliser:
    ``bias`` = −log π̄_y; ``variance`` = mean_r KL(π̄ ‖ p_r) = −log Z ≥ 0;
    ``risk`` = mean_r −log p_{r,y} = bias + variance exactly.

    The plug-in variance uses π̄ estimated from the same R models and is biased low, roughly
    by the factor (R−1)/R. ``variance_jackknife`` (when ``jackknife`` and R ≥ 2) applies the
    standard jackknife bias correction over models: with v the estimate from all R models and
    v₋ᵢ the estimate leaving model i out, ``R·v − (R−1)·mean_i v₋ᵢ``. If E v_R = v∞ + a/R + O(1/R²),
    this removes the a/R term. It is not clipped (a point's value can be negative by chance).

    Args:
        log_probs: (R, m, K) log-probabilities (renormalised here in float64).
        labels: (m,) int.
        jackknife: also compute ``variance_jackknife`` (costs R extra logsumexps of (m, K)).

    Returns:
        dict of (m,) float64 arrays ``risk``, ``bias``, ``variance`` (+ ``variance_jackknife``).
    """
    lp = _normalise(log_probs)
    labels = np.asarray(labels)
    if lp.ndim != 3 or labels.ndim != 1 or lp.shape[1] != labels.shape[0]:
        raise DataError(f"cross_entropy_pointwise: log_probs must be (R, m, K) and labels (m,); "
                        f"got {lp.shape} and {labels.shape}.")
    r = lp.shape[0]
    mean_lp = lp.mean(axis=0)  # log of the unnormalised geometric mean, (m, K)
    log_z = _logsumexp(mean_lp)  # ≤ 0 by Jensen
    variance = -log_z
    bias = -(_pick(mean_lp, labels) - log_z)  # −log π̄_y
    risk = -np.mean(_pick(lp, labels), axis=0)
    out = {"risk": risk, "bias": bias, "variance": variance}
    if jackknife:
        if r < 2:
            raise ConfigError(f"rounds: {r}; the jackknife needs at least 2 models.")
        loo_sum = np.zeros_like(variance)
        total = mean_lp * r
        for i in range(r):  # one model left out at a time: memory stays (m, K)
            loo_sum += -_logsumexp((total - lp[i]) / (r - 1))
        out["variance_jackknife"] = r * variance - (r - 1) * (loo_sum / r)
    return out


#: Terms that measure disagreement between models, and so are undefined on a single model
#: (term by term, with R = 1, i.e. what a jackknife over R = 2 models leaves):
#:
#: * 0-1 ``loss`` = mean_r [ŷr ≠ y]: that model's error — defined.
#: * 0-1 ``bias`` = [ŷm ≠ y]: the mode of one prediction is that prediction, so B = the loss —
#:   defined (a plug-in estimate, like the bias at any R).
#: * 0-1 ``variance`` = mean_r [ŷr ≠ ŷm]: ŷ1 = ŷm always, so it is 0 by construction, not an
#:   estimate of anything — undefined.
#: * 0-1 ``net_variance`` = ±c·V with V as above: 0 by construction — undefined.
#: * MSE ``risk`` = mean_r ‖p_r − e_y‖²: defined.
#: * MSE ``variance`` carries R/(R−1) = 1/0 — undefined; ``bias2`` = risk − variance with it.
#: * CE ``risk`` = mean_r −log p_{r,y}: defined.
#: * CE ``bias`` = −log π̄_y with π̄ = p_1 (the geometric mean of one distribution): equals the
#:   risk — defined, as the 0-1 bias is.
#: * CE ``variance`` = mean_r KL(π̄ ‖ p_r) = KL(p_1 ‖ p_1) = 0 by construction — undefined;
#:   ``variance_jackknife`` needs models left out of R − 1 = 0 — undefined.
#:
#: :func:`_all_pointwise` omits these on one model, so their ``se_models`` at R = 2 is None.
_UNDEFINED_ON_ONE_MODEL: frozenset[tuple[str, str]] = frozenset({
    ("zero_one", "variance"), ("zero_one", "net_variance"),
    ("mse", "variance"), ("mse", "bias2"),
    ("cross_entropy", "variance"), ("cross_entropy", "variance_jackknife"),
})


def _all_pointwise(lp: np.ndarray, labels: np.ndarray) -> dict[tuple[str, str], np.ndarray]:
    """Every pointwise term defined for the R models in ``lp`` (normalised float64); with
    R = 1 the terms of :data:`_UNDEFINED_ON_ONE_MODEL` are left out."""
    r = lp.shape[0]
    out: dict[tuple[str, str], np.ndarray] = {}
    z = zero_one_pointwise(np.argmax(lp, axis=-1), labels)
    for t in ("loss", "bias", "variance", "net_variance"):
        out["zero_one", t] = z[t]
    if r >= 2:
        for t, v in mse_pointwise(np.exp(lp), labels).items():
            out["mse", t] = v
    else:  # one model: the risk is defined, the unbiased variance is not
        e = np.exp(lp[0])
        out["mse", "risk"] = np.sum(e * e, axis=-1) - 2.0 * _pick(e, labels) + 1.0
    for t, v in cross_entropy_pointwise(lp, labels, jackknife=r >= 2).items():
        out["cross_entropy", t] = v
    if r < 2:
        for key in _UNDEFINED_ON_ONE_MODEL:
            out.pop(key, None)
    return out


# --------------------------------------------------------------------------- uncertainty

def _bootstrap_ci(points: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """95 % percentile intervals of the means of the rows of ``points`` (T, m), resampling the
    m test points with replacement ``n_boot`` times (all rows with the same resamples).

    Vectorised: each resample is a row of counts (how often each point was drawn), so all T
    means of a chunk of resamples are one matrix product. Returns (T, 2) [lo, hi]."""
    t, m = points.shape
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, _BOOT_CHUNK // m))
    means = []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, m, size=(b, m))
        flat = (idx + m * np.arange(b)[:, None]).ravel()
        counts = np.bincount(flat, minlength=b * m).reshape(b, m).astype(np.float64)
        means.append(counts @ points.T / m)  # (b, T)
    boot = np.concatenate(means, axis=0)
    return np.percentile(boot, [2.5, 97.5], axis=0).T


def _jackknife_se(lp: np.ndarray, labels: np.ndarray) -> dict[tuple[str, str], float | None]:
    """Jackknife standard error over models of every term's mean:
    sqrt((R−1)/R · Σ_i (θ₋ᵢ − mean θ₋)²), θ₋ᵢ the term recomputed without model i.
    None for terms undefined with R−1 models: at R = 2 those of :data:`_UNDEFINED_ON_ONE_MODEL`
    (0-1 variance and net variance, MSE variance and bias², CE variance and its jackknife)."""
    r = lp.shape[0]
    loo: dict[tuple[str, str], list[float]] = {}
    for i in range(r):
        for key, v in _all_pointwise(np.delete(lp, i, axis=0), labels).items():
            loo.setdefault(key, []).append(float(v.mean()))
    out: dict[tuple[str, str], float | None] = {}
    for key in _TERMS:
        if key not in loo:
            out[key] = None
            continue
        theta = np.asarray(loo[key])
        out[key] = float(np.sqrt((r - 1) / r * np.sum((theta - theta.mean()) ** 2)))
    return out


# --------------------------------------------------------------------------- validation

def _check_arrays(log_probs: Any, labels: Any, *, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Shapes, dtypes, ranges and normalisation of predictions; DataError naming ``source``."""
    lp = np.asarray(log_probs)
    y = np.asarray(labels)
    if lp.ndim != 3:
        raise DataError(f"{source}: log_probs must have 3 dimensions (R models, m test points, "
                        f"K classes); got shape {lp.shape}.")
    if y.ndim != 1:
        raise DataError(f"{source}: labels must have 1 dimension (m test points); got shape "
                        f"{y.shape}.")
    if not np.issubdtype(lp.dtype, np.floating):
        raise DataError(f"{source}: log_probs must be floating point; got dtype {lp.dtype}.")
    if not (np.issubdtype(y.dtype, np.integer) and y.dtype != np.bool_):
        raise DataError(f"{source}: labels must be integer class indices; got dtype {y.dtype}.")
    r, m, k = lp.shape
    if y.shape[0] != m:
        raise DataError(f"{source}: labels has {y.shape[0]} entries but log_probs has {m} test "
                        f"points (shape {lp.shape}); they must describe the same test set.")
    if m == 0:
        raise DataError(f"{source}: no test points (log_probs shape {lp.shape}).")
    if k < 2:
        raise DataError(f"{source}: {k} class(es) in log_probs (shape {lp.shape}); need at "
                        "least 2.")
    if y.min() < 0 or y.max() >= k:
        bad = int(y[(y < 0) | (y >= k)][0])
        raise DataError(f"{source}: label {bad} is out of range for {k} classes; labels must "
                        f"be in 0..{k - 1}.")
    finite = np.isfinite(lp)
    if not finite.all():
        rr, jj, cc = (int(v[0]) for v in np.nonzero(~finite))
        raise DataError(
            f"{source}: log_probs holds non-finite values (first: {lp[rr, jj, cc]} at model "
            f"{rr}, point {jj}, class {cc}). -inf means a probability of exactly 0, which "
            "log(softmax(x)) produces on underflow; save torch.log_softmax(logits, dim=-1) "
            "in float32 instead.")
    lse = _logsumexp(lp.astype(np.float64))
    off = np.abs(lse) > _LOGSUMEXP_ATOL
    if off.any():
        rr, jj = (int(v[0]) for v in np.nonzero(off))
        hint = ""
        if lp.min() >= 0 and np.allclose(lp.astype(np.float64).sum(-1), 1.0, atol=1e-3):
            hint = " The rows sum to 1: these look like probabilities; pass their log."
        raise DataError(
            f"{source}: log_probs rows are not log-probabilities: logsumexp over classes is "
            f"{lse[rr, jj]:.4g} at model {rr}, point {jj} (must be 0 within "
            f"{_LOGSUMEXP_ATOL}); {int(off.sum())} of {off.size} rows are off.{hint} Save "
            "torch.log_softmax(logits, dim=-1) (float32), not logits.")
    return lp, y


def _check_options(r: int, k: int, classes: list[str] | None, sampling: str,
                   n_train_per_model: list[int] | None, n_boot: int, seed: int,
                   label_noise: float) -> list[str]:
    """Validate the keyword options of :func:`decompose`; return the class names."""
    if sampling not in SAMPLING_SCHEMES:
        raise unknown_name("sampling", sampling, SAMPLING_SCHEMES)
    if n_train_per_model is not None:
        n_train_per_model = list(n_train_per_model)
        if len(n_train_per_model) != r or not all(
                isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 0
                for n in n_train_per_model):
            raise ConfigError(f"n_train_per_model: {n_train_per_model!r}; give one non-negative "
                              f"int per model ({r} models).")
    if not isinstance(n_boot, (int, np.integer)) or isinstance(n_boot, bool) or n_boot < 1:
        raise ConfigError(f"n_boot: {n_boot!r}; use a positive number of bootstrap resamples "
                          "(1000 is typical).")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ConfigError(f"seed: {seed!r}; use an int.")
    if not (isinstance(label_noise, (int, float)) and 0.0 <= float(label_noise) < 1.0):
        raise ConfigError(f"label_noise: {label_noise!r}; use a fraction in [0, 1).")
    if classes is None:
        return [str(c) for c in range(k)]
    names = [str(c) for c in classes]
    if len(names) != k:
        raise ConfigError(f"classes: {len(names)} names given but the predictions have {k} "
                          f"classes; give exactly {k}.")
    if len(set(names)) != k:
        dup = next(n for n in names if names.count(n) > 1)
        raise ConfigError(f"classes: the name {dup!r} appears more than once; names must be "
                          "unique.")
    return names


# --------------------------------------------------------------------------- public entry

def decompose(log_probs: np.ndarray, labels: np.ndarray, *, classes: list[str] | None = None,
              sampling: str = "bootstrap", n_train_per_model: list[int] | None = None,
              n_boot: int = 1000, seed: int = 0, label_noise: float = 0.0) -> dict[str, Any]:
    """Decompose the test loss of R models into bias and variance for three losses.

    Args:
        log_probs: (R, m, K) fp32 (or fp64) log-probabilities, ``log_softmax`` of each model's
            logits on the same m test points; R ≥ 2.
        labels: (m,) int true labels in 0..K-1.
        classes: K class names (default "0".."K-1"); keys of ``per_class``.
        sampling: how the training sets were drawn, one of :data:`SAMPLING_SCHEMES`.
        n_train_per_model: training-set size of each model (R ints), recorded as is (None when
            unknown: written as null).
        n_boot: bootstrap resamples of the test points for ``ci95``.
        seed: seed of the bootstrap.
        label_noise: fraction of training labels flipped on purpose, recorded as is.

    Returns:
        The ``"decomposition"`` block of results.json (pure JSON types): ``rounds``, ``sampling``,
        ``n_train_per_model``, ``n_test``, ``label_noise``; ``zero_one`` {loss, bias, variance
        (unsigned), net_variance}, ``mse`` {risk, bias2, variance}, ``cross_entropy`` {risk,
        bias, variance (plug-in), variance_jackknife}, each a term ``{"value", "ci95": [lo, hi],
        "se_models"}`` (``se_models`` is null where the term is undefined on R−1 models, i.e. at
        R = 2 for the terms that measure disagreement between models: the 0-1 variance and net
        variance, the MSE variance and bias², the CE variance and its jackknife); ``ensemble``
        {error, cross_entropy} of the ensemble that averages log-probabilities (renormalised) —
        its cross-entropy equals the CE bias term by construction; ``per_class`` {name: {n,
        zero_one, mse, cross_entropy}} with plain floats, for the classes present in the test
        set (sorted by class index).

    Raises:
        ConfigError: fewer than 2 models ("rounds"), or a bad option.
        DataError: arrays of the wrong shape, out-of-range labels, non-finite values, or rows
            that are not log-probabilities.
    """
    lp_in = np.asarray(log_probs)
    if lp_in.ndim == 3 and lp_in.shape[0] < 2:
        raise ConfigError(f"rounds: {lp_in.shape[0]}; a bias-variance decomposition compares "
                          "models trained on different data, so at least 2 models are needed "
                          "(5-10 is typical).")
    lp_in, y = _check_arrays(lp_in, labels, source="decompose")
    r, m, k = lp_in.shape
    names = _check_options(r, k, classes, sampling, n_train_per_model, n_boot, seed,
                           label_noise)
    lp = _normalise(lp_in)
    y = y.astype(np.int64)

    points = _all_pointwise(lp, y)
    ci = _bootstrap_ci(np.stack([points[key] for key in _TERMS]), int(n_boot), int(seed))
    se = _jackknife_se(lp, y)

    out: dict[str, Any] = {
        "rounds": int(r),
        "sampling": sampling,
        "n_train_per_model": (None if n_train_per_model is None
                              else [int(n) for n in n_train_per_model]),
        "n_test": int(m),
        "label_noise": float(label_noise),
        "zero_one": {}, "mse": {}, "cross_entropy": {},
    }
    for t, key in enumerate(_TERMS):
        out[key[0]][key[1]] = {"value": float(points[key].mean()),
                               "ci95": [float(ci[t, 0]), float(ci[t, 1])],
                               "se_models": se[key]}

    # The ensemble that averages log-probabilities predicts π̄; its CE is the CE bias term.
    mean_lp = lp.mean(axis=0)
    log_pi = mean_lp - _logsumexp(mean_lp)[:, None]
    out["ensemble"] = {"error": float(np.mean(np.argmax(log_pi, axis=1) != y)),
                       "cross_entropy": float(-np.mean(_pick(log_pi, y)))}

    per_class: dict[str, Any] = {}
    for c in range(k):
        mask = y == c
        n = int(mask.sum())
        if n == 0:
            continue
        block: dict[str, Any] = {"n": n}
        for loss, term in _TERMS:
            if term == "variance_jackknife":
                continue
            block.setdefault(loss, {})[term] = float(points[loss, term][mask].mean())
        per_class[names[c]] = block
    out["per_class"] = per_class
    return out


def _member_is_object_array(path: str, member: str) -> bool:
    """Whether the ``.npy`` header of ``member`` in the archive declares an object dtype (such an
    array is stored pickled). False when the header itself cannot be read: then it is damaged."""
    fmt = np.lib.format
    try:
        with zipfile.ZipFile(path) as zf:
            entry = f"{member}.npy" if f"{member}.npy" in zf.namelist() else member
            with zf.open(entry) as fh:
                version = fmt.read_magic(fh)
                read = fmt.read_array_header_1_0 if version == (1, 0) else \
                    fmt.read_array_header_2_0
                _, _, dtype = read(fh)
    except Exception:  # noqa: BLE001 - an unreadable header is a damaged member
        return False
    return bool(np.dtype(dtype).hasobject)


def _member_error(path: str, member: str, err: BaseException) -> DataError:
    """The error for a member of a predictions .npz that cannot be loaded: an object array needs
    pickle (which is refused); anything else (truncated or corrupted bytes) is damage."""
    reason = f"{type(err).__name__}: {err}"
    if _member_is_object_array(path, member):
        return DataError(f"predictions: cannot read member {member!r} of {path!r} without pickle "
                         f"(it is an object array; {reason}); store numeric arrays, and classes "
                         "as a unicode array (np.array(names, dtype=str)).")
    return DataError(f"predictions: {path!r}: member {member!r} is damaged ({reason}); re-save it "
                     "with numpy.savez(path, log_probs=..., labels=...).")


def load_predictions(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """Read saved predictions: an ``.npz`` with ``log_probs`` (R, m, K) float log-probabilities,
    ``labels`` (m,) int and optionally ``classes`` (K,) strings.

    Returns ``(log_probs, labels, classes or None)``. Validates strictly and raises
    :class:`~biasvar.errors.DataError` for a missing file, a file that is not an ``.npz`` (zip)
    archive, missing arrays, a damaged (truncated or corrupted) array, an object array (it would
    need pickle, which is refused), wrong dimensions, fewer than 2 models, labels out of range or
    of another length, non-finite values, or rows that are not log-probabilities.

    >>> # np.savez(path, log_probs=torch.log_softmax(logits, -1).numpy(), labels=y)
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"predictions: no file at {path!r}; give the path of an .npz written "
                        "with np.savez(path, log_probs=..., labels=...).")
    if not zipfile.is_zipfile(path):
        raise DataError(f"predictions: {path!r} is not an .npz (zip) file; write it with "
                        "np.savez(path, log_probs=..., labels=[, classes=...]).")
    arrays: dict[str, Any] = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = set(npz.files)
            missing = [n for n in ("log_probs", "labels") if n not in names]
            if missing:
                raise DataError(f"predictions: {path!r} lacks the array(s) "
                                f"{', '.join(missing)}; it holds {sorted(names) or 'nothing'}. "
                                "Save log_probs (R, m, K) and labels (m,).")
            for member in ("log_probs", "labels", "classes"):
                if member not in names:
                    continue
                try:  # members are read lazily, here: errors name the member
                    arrays[member] = npz[member]
                except Exception as err:  # noqa: BLE001 - whatever a damaged member raises
                    raise _member_error(path, member, err) from err
    except DataError:
        raise
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as err:
        raise DataError(f"predictions: {path!r} is not a readable .npz file ({err}); re-save "
                        "it with numpy.savez(path, log_probs=..., labels=...).") from err
    log_probs, labels = arrays["log_probs"], arrays["labels"]
    classes_arr = arrays.get("classes")
    if log_probs.ndim == 3 and log_probs.shape[0] < 2:
        raise DataError(f"predictions: {path!r} holds {log_probs.shape[0]} model(s) "
                        f"(log_probs shape {log_probs.shape}); a decomposition needs at least "
                        "2 (rounds ≥ 2).")
    log_probs, labels = _check_arrays(log_probs, labels, source=f"predictions {path!r}")
    classes: list[str] | None = None
    if classes_arr is not None:
        if classes_arr.ndim != 1 or classes_arr.shape[0] != log_probs.shape[2]:
            raise DataError(f"predictions: classes has shape {classes_arr.shape} but log_probs "
                            f"has {log_probs.shape[2]} classes; save one name per class.")
        classes = [str(c) for c in classes_arr.tolist()]
    return log_probs, labels, classes
