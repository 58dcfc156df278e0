"""Numbers behind the curves: seed summaries, the learning-curve power law, "still falling?".

Pure numpy/scipy, no torch: the curve runners (``diagnose/curves``) hand arrays in, the verdict
and the report read the dicts that come out (shapes and keys as in the README's results.json contract).

Example::

    >>> import numpy as np
    >>> sizes = np.array([1000, 2000, 4000, 8000, 16000])
    >>> fit = fit_power_law(sizes, 0.5 * sizes ** -0.5 + 0.05)
    >>> round(fit["b"], 3), round(fit["c"], 3)
    (0.5, 0.05)
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import optimize, stats

__all__ = ["RELATIVE_DROP", "summarize", "fit_power_law", "loss_still_falling"]

#: Default threshold of :func:`loss_still_falling`: the loss counts as still falling when its mean
#: over the last ``window`` epochs is more than 2 % below its mean over the ``window`` epochs
#: before.
#: Epoch-to-epoch noise of a converged run's mean training loss is well under 1 %.
RELATIVE_DROP = 0.02

# Power-law fit bounds (the README's results.json contract): a >= 0, 0 <= b <= 3, 0 <= c <= 1.
_B_MAX = 3.0
_C_MAX = 1.0


def summarize(values: np.ndarray) -> dict[str, list]:
    """Mean over seeds with a 95 % confidence interval of that mean, per curve point.

    Args:
        values: shape (L, S): L curve points (sizes, widths...), S seeds; errors as fractions.

    Returns:
        ``{"mean": [L], "lo": [L], "hi": [L], "values": [[S]*L]}`` of Python floats.
        With S >= 2 the interval is Student's t interval of the mean,
        ``mean ± t_{0.975, S-1} · std(ddof=1) / sqrt(S)``; with S == 1 there is no spread to
        measure and ``lo == hi == mean`` (the report then shows no band, not a zero-width claim).
        The interval is not clipped to [0, 1].
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"summarize: values must have shape (L, S), got shape {v.shape}")
    n_points, n_seeds = v.shape
    mean = v.mean(axis=1) if n_seeds else np.full(n_points, np.nan)
    if n_seeds >= 2:
        se = v.std(axis=1, ddof=1) / math.sqrt(n_seeds)
        half = stats.t.ppf(0.975, n_seeds - 1) * se
        lo, hi = mean - half, mean + half
    else:
        lo, hi = mean.copy(), mean.copy()
    return {
        "mean": [float(x) for x in mean],
        "lo": [float(x) for x in lo],
        "hi": [float(x) for x in hi],
        "values": [[float(x) for x in row] for row in v],
    }


def _model(x: np.ndarray, amp: float, b: float, c: float) -> np.ndarray:
    """err = amp · x^(−b) + c on sizes x scaled by the reference size (x = n / n_ref)."""
    return amp * np.power(x, -b) + c


def _grid_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float] | None:
    """Fallback and initial guess: for each c on a grid below min(y), a straight-line fit of
    log(y − c) against log(x) gives b and log(amp); keep the c with the smallest squared error
    in error units. Returns (amp, b, c) or None when nothing fits."""
    best: tuple[float, float, float, float] | None = None
    y_min = float(y.min())
    lx = np.log(x)
    for c in np.linspace(0.0, max(min(y_min, _C_MAX), 0.0), 64, endpoint=False):
        r = y - c
        if np.any(r <= 0):
            continue
        slope, intercept = np.polyfit(lx, np.log(r), 1)
        b = float(np.clip(-slope, 0.0, _B_MAX))
        # best amp for the clipped b by linear least squares (amp >= 0)
        basis = np.power(x, -b)
        amp = max(float(np.dot(basis, r) / np.dot(basis, basis)), 0.0)
        sse = float(np.sum((_model(x, amp, b, c) - y) ** 2))
        if math.isfinite(sse) and (best is None or sse < best[0]):
            best = (sse, amp, b, float(c))
    return None if best is None else best[1:]


def _failed(note: str, n_max: int | None) -> dict[str, Any]:
    return {"a": None, "b": None, "c": None, "n_max": n_max, "err_at_n_max": None,
            "err_2x": None, "err_10x": None, "gain_2x": None, "rmse": None, "ok": False,
            "note": note}


def fit_power_law(sizes: Sequence[float] | np.ndarray, errors: Sequence[float] | np.ndarray, *,
                  n_max: int | None = None) -> dict[str, Any]:
    """Fit the learning curve err(n) ≈ a·n^(−b) + c and extrapolate to more data.

    Args:
        sizes: shape (L,), training-set sizes (images); sizes may repeat.
        errors: shape (L,), validation error (fraction) at each size, usually the seed mean.
        n_max: size to extrapolate from (default: the largest size), e.g. the full training set.

    Returns:
        the README's results.json ``power_law`` dict: ``a``, ``b``, ``c`` (c is the asymptotic error, a fraction),
        ``n_max``, ``err_at_n_max`` = err(n_max), ``err_2x`` = err(2·n_max),
        ``err_10x`` = err(10·n_max), ``gain_2x`` = err_at_n_max − err_2x (absolute error
        reduction from doubling the data), ``rmse`` of the fit (error units), ``ok``, ``note``.
        ``ok`` is False, with the numbers None and the reason in ``note``, when there are fewer than
        3 distinct sizes with finite errors (3 parameters need 3 points) or the fit fails.

    The fit is scipy's ``curve_fit`` with bounds a >= 0, 0 <= b <= 3, 0 <= c <= 1, on sizes
    scaled by n_max (for conditioning), started from a grid search over c (for each c, a
    log-log line fit of err − c); when ``curve_fit`` fails the grid result is used.
    """
    s = np.asarray(sizes, dtype=np.float64).ravel()
    e = np.asarray(errors, dtype=np.float64).ravel()
    if s.shape != e.shape:
        raise ValueError(f"fit_power_law: sizes {s.shape} and errors {e.shape} differ in shape")
    if n_max is not None and (isinstance(n_max, bool) or not n_max > 0):
        raise ValueError(f"fit_power_law: n_max must be a positive size, got {n_max!r}")
    keep = np.isfinite(s) & np.isfinite(e) & (s > 0)
    s, e = s[keep], e[keep]
    if s.size == 0:
        return _failed("no learning-curve points with a finite error: nothing to fit",
                       int(n_max) if n_max is not None else None)
    n_ref = int(n_max) if n_max is not None else int(round(float(s.max())))
    distinct = np.unique(s).size
    if distinct < 3:
        return _failed(f"only {distinct} distinct training-set size(s); a power law "
                       "a·n^(−b) + c needs at least 3", n_ref)
    x = s / n_ref
    guess = _grid_fit(x, e)
    p0 = guess if guess is not None else (max(float(e.max() - e.min()), 1e-6), 0.5,
                                          float(max(e.min(), 0.0) / 2))
    p0 = (max(p0[0], 1e-9), float(np.clip(p0[1], 1e-6, _B_MAX - 1e-6)),
          float(np.clip(p0[2], 0.0, _C_MAX)))
    params: tuple[float, float, float] | None = None
    how = "curve_fit"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # OptimizeWarning when the covariance is undefined
            popt, _ = optimize.curve_fit(_model, x, e, p0=p0, bounds=([0.0, 0.0, 0.0],
                                                                      [np.inf, _B_MAX, _C_MAX]),
                                         maxfev=20000)
        if np.all(np.isfinite(popt)):
            params = (float(popt[0]), float(popt[1]), float(popt[2]))
    except (RuntimeError, ValueError, optimize.OptimizeWarning):
        params = None
    if guess is not None:
        sse = lambda p: float(np.sum((_model(x, *p) - e) ** 2))  # noqa: E731
        if params is None or sse(guess) < sse(params):
            params, how = guess, "grid search over c"
    if params is None:
        return _failed("the power-law fit failed (curve_fit did not converge and no grid point "
                       "fitted)", n_ref)
    amp, b, c = params
    rmse = float(np.sqrt(np.mean((_model(x, amp, b, c) - e) ** 2)))
    err_1, err_2, err_10 = (float(_model(np.array([k]), amp, b, c)[0]) for k in (1.0, 2.0, 10.0))
    # undo the scaling: amp·(n/n_ref)^(−b) = (amp·n_ref^b)·n^(−b)
    a = amp * float(n_ref) ** b
    note = (f"{how} on {s.size} points ({distinct} sizes, {int(s.min()):,}–{int(s.max()):,} "
            f"images), rmse {rmse:.4f}")
    if distinct == 3:
        note += "; 3 sizes for 3 parameters: the fit is exact and its extrapolation untested"
    if n_ref > s.max() * 1.0001:
        note += f"; extrapolated beyond the largest measured size to n_max={n_ref:,}"
    return {"a": float(a), "b": float(b), "c": float(c), "n_max": n_ref,
            "err_at_n_max": err_1, "err_2x": err_2, "err_10x": err_10,
            "gain_2x": err_1 - err_2, "rmse": rmse, "ok": bool(math.isfinite(a)), "note": note}


def loss_still_falling(history: list[dict], *, key: str = "train_loss", window: int = 3,
                       threshold: float = RELATIVE_DROP) -> dict[str, Any]:
    """Is the training loss still falling at the end of training (optimisation-limited)?

    Rule: with at least ``2·window`` epochs, ``relative_drop = (m_prev − m_last) / m_prev`` where
    m_last is the mean of ``key`` over the last ``window`` epochs and m_prev over the ``window``
    epochs before them. With 2 to ``2·window − 1`` epochs, the last epoch's change relative to
    the epoch before: ``(loss[-2] − loss[-1]) / loss[-2]`` (the first epochs' steep fall would
    dominate any line through all of them).
    ``value = relative_drop > threshold``. Fewer than 2 epochs (with a finite ``key``) cannot tell:
    value False, relative_drop 0.0.

    Args:
        history: per-epoch dicts as in results.json's ``reference.history`` (``epoch`` optional).
        key: the loss column.
        window: epochs per window (>= 1).
        threshold: relative drop (fraction) above which the loss counts as falling.

    Returns:
        ``{"value": bool, "relative_drop": float, "evidence": str}``.
    """
    if window < 1:
        raise ValueError(f"loss_still_falling: window must be >= 1, got {window}")
    rows = [(r.get("epoch", i + 1), r.get(key)) for i, r in enumerate(history or [])
            if isinstance(r, dict)]
    pts = [(ep, float(v)) for ep, v in rows
           if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    if len(pts) < 2:
        return {"value": False, "relative_drop": 0.0,
                "evidence": f"cannot tell whether {key} is still falling: only {len(pts)} "
                            f"epoch(s) recorded"}
    epochs = [p[0] for p in pts]
    loss = np.array([p[1] for p in pts])
    if loss.size >= 2 * window:
        prev, last = loss[-2 * window:-window].mean(), loss[-window:].mean()
        drop = float((prev - last) / max(abs(prev), 1e-12))
        how = (f"{key} mean {last:.4f} over epochs {epochs[-window]}–{epochs[-1]} vs {prev:.4f} "
               f"over epochs {epochs[-2 * window]}–{epochs[-window - 1]}")
    else:
        # too few epochs for two windows: the last epoch's change, relative to the one before
        prev, last = loss[-2], loss[-1]
        drop = float((prev - last) / max(abs(prev), 1e-12))
        how = (f"{key} went from {prev:.4f} to {last:.4f} in the last epoch "
               f"({loss.size} epochs in all)")
    falling = drop > threshold
    verdict = "still falling" if falling else "flat"
    return {"value": bool(falling), "relative_drop": drop,
            "evidence": f"{how}: relative drop {100 * drop:.1f}% vs threshold "
                        f"{100 * threshold:.1f}%: {verdict}"}
