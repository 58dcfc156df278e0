"""Numbers behind the curves: seed summaries, the learning-curve power law, "still falling?".

Pure numpy/scipy, no torch: the analyses (``analyses.py``) hand arrays in, the verdict and the
report read the dicts that come out (shapes and keys as in the README's results.json contract).

The power law err(n) ≈ a·n^(−b) + c is fitted by :func:`power_law` (per-size fits in, 95 %
intervals of the extrapolation out, or a refusal to extrapolate with the reason) and by
:func:`fit_power_law` (points in, no intervals, the same refusal rules).

Example::

    >>> import numpy as np
    >>> sizes = np.array([1000, 2000, 4000, 8000, 16000])
    >>> fit = fit_power_law(sizes, 0.5 * sizes ** -0.5 + 0.05)
    >>> round(fit["b"], 3), round(fit["c"], 3), fit["extrapolates"]
    (0.5, 0.05, True)
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["RELATIVE_DROP", "MIN_SIZES", "POOR_FIT_NOISE", "POOR_FIT_RANGE", "summarize",
           "power_law", "fit_power_law", "bound_note", "loss_still_falling"]

#: Default threshold of :func:`loss_still_falling`: the loss counts as still falling when its mean
#: over the last ``window`` epochs is more than 2 % below its mean over the ``window`` epochs
#: before.
#: Epoch-to-epoch noise of a converged run's mean training loss is well under 1 %.
RELATIVE_DROP = 0.02

# Power-law fit bounds (the README's results.json contract): a >= 0, 0 <= b <= 3, 0 <= c <= 1.
_B_MAX = 3.0
_C_MAX = 1.0
# A fitted b or c this close to a bound sits at it (see bound_note). For c, error units:
# 1e-4 = 0.01 points, one image in 10,000, below what any validation split resolves.
_B_TOL = 1e-3
_C_TOL = 1e-4

#: The power law is not extrapolated from fewer distinct sizes: 3 parameters pass exactly
#: through 3 points, so nothing would test the fit.
MIN_SIZES = 4
#: The fit is poor (not extrapolated) when its rmse exceeds POOR_FIT_NOISE × the seed noise of a
#: size's mean (its standard error) *and* POOR_FIT_RANGE × the range of the size means. A correct
#: law leaves residuals of about one standard error; a tenth of the curve's fall is a misfit small
#: enough to extrapolate from even when the seeds agree more closely than that.
POOR_FIT_NOISE = 3.0
POOR_FIT_RANGE = 0.10


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


#: the exponents tried first; the best is refined twice (to ±0.01 in steps of 0.0005, then to
#: ±0.0005 in steps of 0.00005)
_B_GRID = np.linspace(0.0, _B_MAX, 301)
_B_REFINE = ((0.01, 41), (0.0005, 21))


def _solve(bs: np.ndarray, lx: np.ndarray, y: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each row r of ``y`` (R, L) and each exponent bs[r, g] (R, G): the least-squares amp >= 0
    and 0 <= c <= c_max of amp·x^(−b) + c, and its sum of squared errors; each (R, G).

    A convex problem in (amp, c): the optimum is the unconstrained one when it is feasible, else
    the best of the optima on the edges amp = 0, c = 0 and c = c_max."""
    u = np.exp(-bs[..., None] * lx)                     # (R, G, L): x^(−b)
    yy = y[:, None, :]                                  # (R, 1, L)
    n = y.shape[1]
    suu, su = (u * u).sum(-1), u.sum(-1)
    suy, sy, syy = (u * yy).sum(-1), yy.sum(-1), (yy * yy).sum(-1)

    def sse(amp: np.ndarray, c: np.ndarray) -> np.ndarray:
        return (syy - 2 * amp * suy - 2 * c * sy + amp * amp * suu + 2 * amp * c * su
                + n * c * c)

    det = n * suu - su * su
    ok = det > 1e-12 * n * suu                          # b = 0: amp and c are the same column
    with np.errstate(divide="ignore", invalid="ignore"):
        amp_free = np.where(ok, (n * suy - su * sy) / det, 0.0)
    c_free = (sy - amp_free * su) / n
    feasible = ok & (amp_free >= 0) & (c_free >= 0) & (c_free <= _C_MAX)
    zero, amp_c0 = np.zeros_like(suu), np.maximum(suy / suu, 0.0)
    amp_c1, c_amp0 = np.maximum((suy - _C_MAX * su) / suu, 0.0), np.clip(sy / n, 0.0, _C_MAX)
    amps = np.stack([amp_free, zero, amp_c0, amp_c1])   # (4, R, G): free, amp = 0, c = 0, c = 1
    cs = np.stack([c_free, c_amp0 + zero, zero, zero + _C_MAX])
    sses = sse(amps, cs)
    sses[0] = np.where(feasible, sses[0], np.inf)
    k = np.argmin(sses, axis=0)[None]
    pick = lambda z: np.take_along_axis(z, k, axis=0)[0]  # noqa: E731
    return pick(amps), pick(cs), np.maximum(pick(sses), 0.0)


def _fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares of amp·x^(−b) + c (amp >= 0, 0 <= b <= 3, 0 <= c <= 1) for each row of
    ``y`` (R, L) — the data, or R resamples of it, fitted at once: (R, 3) of (amp, b, c).

    For a fixed b the model is linear in amp and c and :func:`_solve` gives them exactly; b is
    the best of a grid over [0, 3] (steps of 0.01), refined twice around it (to 0.00005). A
    global search: no starting point to choose and no iteration that can fail to converge."""
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    rows = np.arange(y.shape[0])
    lx = np.log(x)
    bs = np.broadcast_to(_B_GRID, (y.shape[0], _B_GRID.size))
    amp, c, sse = _solve(bs, lx, y)
    best = np.argmin(sse, axis=1)
    for half, k in _B_REFINE:
        b0 = bs[rows, best]
        bs = np.clip(b0[:, None] + np.linspace(-half, half, k), 0.0, _B_MAX)
        amp, c, sse = _solve(bs, lx, y)
        best = np.argmin(sse, axis=1)
    return np.stack([amp[rows, best], bs[rows, best], c[rows, best]], axis=1)


def _failed(note: str, n_max: int | None) -> dict[str, Any]:
    return {"a": None, "b": None, "c": None, "n_max": n_max, "err_at_n_max": None,
            "err_2x": None, "err_10x": None, "gain_2x": None, "rmse": None, "ok": False,
            "note": note, "err_2x_ci": None, "err_10x_ci": None, "gain_2x_ci": None,
            "resamples": 0, "extrapolates": False}


def bound_note(b: float, c: float) -> str | None:
    """Why a power law whose exponent ``b`` or floor ``c`` sits at a bound of the fit
    (0 <= b <= 3, 0 <= c <= 1) must not be extrapolated, in words; None when neither does.

    At a bound the least-squares optimum lies outside what the fit allows: the bound, not the
    data, then sets the extrapolation (c pinned at 0 predicts the error falls for ever).

    >>> bound_note(0.5, 0.05) is None, bound_note(0.266, 2.24e-07)[:22]
    (True, 'the fitted floor c (th')
    """
    if b <= _B_TOL:  # flat: a·n^0 merges with c, so c means nothing either
        return ("the fitted exponent b sits at 0: over the sizes measured the validation error "
                "does not fall as the training set grows, so the power law has no trend to "
                "extrapolate")
    if b >= _B_MAX - _B_TOL:
        return (f"the fitted exponent b sits at its maximum {_B_MAX:g}: the validation error "
                "drops and then stops falling within the sizes measured, more abruptly than a "
                "power law can follow")
    if c <= _C_TOL:
        return (f"the fitted floor c (the error with unlimited data) is {c:.2g}, pinned at 0, "
                "the lowest value the fit allows: the measured sizes do not show where the "
                "curve levels off, so a prediction for more data would follow that bound, not "
                "the data")
    if c >= _C_MAX - _C_TOL:
        return (f"the fitted floor c sits at {_C_MAX:g}, the highest value the fit allows: the "
                "curve is not a falling power law")
    return None


def _poor_fit_note(rmse: float, means: np.ndarray, noise: float | None) -> str | None:
    """The poor-fit rule (:data:`POOR_FIT_NOISE`, :data:`POOR_FIT_RANGE`), or None."""
    spread = float(means.max() - means.min())
    if rmse <= POOR_FIT_RANGE * spread or (noise is not None and rmse <= POOR_FIT_NOISE * noise):
        return None
    vs_noise = (f" and more than {POOR_FIT_NOISE:g}× the seed noise of a size's mean "
                f"({100 * noise:.2f} points)" if noise is not None else
                " (one fit per size: no seed noise to compare it with)")
    return (f"the power law misses the measured errors by {100 * rmse:.2f} points (rmse), more "
            f"than {100 * POOR_FIT_RANGE:.0f}% of the curve's range ({100 * spread:.2f} "
            f"points){vs_noise}: the curve does not follow a·n^(−b) + c")


def _group(sizes: Sequence[float], values: Sequence[Sequence[float]]
           ) -> tuple[np.ndarray, list[np.ndarray]]:
    """The distinct positive sizes, ascending, and the finite values at each (a size that
    repeats pools its values; a size without a finite value is dropped)."""
    by: dict[float, list[float]] = {}
    for n, vs in zip(sizes, values):
        n = float(n)
        if not (math.isfinite(n) and n > 0):
            continue
        fin = [float(v) for v in vs
               if isinstance(v, (int, float, np.number)) and math.isfinite(float(v))]
        if fin:
            by.setdefault(n, []).extend(fin)
    keys = sorted(by)
    return np.array(keys, dtype=np.float64), [np.array(by[k]) for k in keys]


def _power_law(sizes: np.ndarray, groups: list[np.ndarray], n_ref: int, resamples: int,
               seed: int) -> dict[str, Any]:
    """:func:`power_law` on grouped values (``sizes`` distinct, ascending)."""
    n_sizes = sizes.size
    if n_sizes == 0:
        return _failed("no learning-curve points with a finite error: nothing to fit", n_ref)
    if n_sizes < 3:
        return _failed(f"only {n_sizes} distinct training-set size(s); a power law "
                       "a·n^(−b) + c needs at least 3", n_ref)
    means = np.array([g.mean() for g in groups])
    counts = np.array([g.size for g in groups])
    x = sizes / n_ref  # scaled by the reference size, for conditioning
    amp, b, c = (float(v) for v in _fit(x, means)[0])
    rmse = float(np.sqrt(np.mean((_model(x, amp, b, c) - means) ** 2)))
    a = amp * float(n_ref) ** b  # unscaled: amp·(n/n_ref)^(−b) = (amp·n_ref^b)·n^(−b)
    multi = counts >= 2
    # seed noise of a size's mean: the pooled standard error s²/k over the sizes with >= 2 fits
    se2 = [g.var(ddof=1) / g.size for g, m in zip(groups, multi) if m]
    noise = float(np.sqrt(np.mean(se2))) if se2 else None
    fit = (f"least squares on the means of {n_sizes} sizes ({int(sizes.min()):,}–"
           f"{int(sizes.max()):,} images, {int(counts.sum())} fits), rmse {rmse:.4f}")
    out = _failed("", n_ref) | {"a": float(a), "b": float(b), "c": float(c), "rmse": rmse,
                                "err_at_n_max": float(amp + c), "ok": bool(math.isfinite(a))}
    if n_sizes < MIN_SIZES:
        reasons = [f"only {n_sizes} distinct training-set sizes for the 3 parameters of "
                   "a·n^(−b) + c: the curve passes through them exactly and nothing tests it "
                   f"(measure at least {MIN_SIZES} sizes)"]
    else:
        reasons = [r for r in (bound_note(b, c), _poor_fit_note(rmse, means, noise)) if r]
    if reasons:
        out["note"] = f"not extrapolated: {'; '.join(reasons)}. Fit: {fit}"
        return out
    err_1, err_2, err_10 = (float(v) for v in _model(np.array([1.0, 2.0, 10.0]), amp, b, c))
    out |= {"err_2x": err_2, "err_10x": err_10, "gain_2x": err_1 - err_2, "extrapolates": True}
    notes = [fit]
    if n_ref > sizes.max() * 1.0001:
        notes.append(f"extrapolated beyond the largest measured size to n_max={n_ref:,}")
    if resamples > 0 and not multi.all():
        # a size with one fit has an unknown spread: resampling the others alone would give an
        # interval narrower than the curve's real uncertainty
        single = int((~multi).sum())
        notes.append("one fit per size: no seed spread to resample, so no interval"
                     if not multi.any() else
                     f"no interval: {single} of the {n_sizes} sizes have one fit, whose seed "
                     "spread is unknown (measure 2 or more seeds at every size)")
    elif resamples > 0:
        lo, hi = np.percentile(_refits(x, means, groups, multi, resamples, seed), [2.5, 97.5],
                               axis=0)
        out |= {"err_2x_ci": [float(lo[0]), float(hi[0])],
                "err_10x_ci": [float(lo[1]), float(hi[1])],
                "gain_2x_ci": [float(lo[2]), float(hi[2])], "resamples": resamples}
        notes.append(f"95% intervals from {resamples} refits on the fits resampled with "
                     "replacement within each size")
    out["note"] = "; ".join(notes)
    return out


def _refits(x: np.ndarray, means: np.ndarray, groups: list[np.ndarray], multi: np.ndarray,
            resamples: int, seed: int) -> np.ndarray:
    """(resamples, 3): err_2x, err_10x and gain_2x of the fit repeated on resamples of the fits.

    Each size with k >= 2 fits gets the mean of k of its fits drawn with replacement, spread by
    sqrt(k/(k−1)) around the observed mean: a plain resample of k values gives their mean a
    variance of (k−1)/k · s²/k (half the standard error's square at k = 2), which would make the
    interval too narrow. A size with one fit keeps its value."""
    rng = np.random.default_rng(seed)
    m = np.tile(means, (resamples, 1))                  # (R, L)
    for i in np.flatnonzero(multi):
        g = groups[i]
        boot = g[rng.integers(0, g.size, size=(resamples, g.size))].mean(axis=1)
        m[:, i] = means[i] + math.sqrt(g.size / (g.size - 1)) * (boot - means[i])
    amp, b, c = _fit(x, m).T
    e1, e2, e10 = (amp * k ** -b + c for k in (1.0, 2.0, 10.0))
    return np.stack([e2, e10, e1 - e2], axis=1)


def power_law(sizes: Sequence[int], values: Sequence[Sequence[float]], *, n_max: int,
              resamples: int = 200, seed: int = 0) -> dict[str, Any]:
    """Fit the learning curve err(n) ≈ a·n^(−b) + c, extrapolate to 2× and 10× the data with
    95 % intervals — or refuse to extrapolate, saying why.

    Args:
        sizes: shape (L,), training-set sizes (images).
        values: L lists: ``values[i]`` are the validation errors (fractions) of the fits at
            ``sizes[i]``; their number may differ from size to size, 1 included (ragged seeds).
            NaN values are dropped; a size that repeats pools its values.
        n_max: the size to extrapolate from, e.g. the full training set.
        resamples: refits for the intervals (0: none).
        seed: seed of the resampling.

    Returns:
        results.json's ``power_law``: ``a``, ``b``, ``c`` (the floor: error with unlimited
        data), ``n_max``, ``err_at_n_max``, ``err_2x``, ``err_10x``, ``gain_2x`` =
        err_at_n_max − err_2x, ``rmse`` (against the size means), ``err_2x_ci``,
        ``err_10x_ci``, ``gain_2x_ci`` ([lo, hi] or None), ``resamples`` (refits used),
        ``ok`` (a fit was made), ``extrapolates`` and ``note``.

    The fit is made on the mean of each size (scipy's ``curve_fit`` with bounds a >= 0,
    0 <= b <= 3, 0 <= c <= 1, started from a grid search over c). The intervals are the 2.5th
    and 97.5th percentiles of the same fit on ``resamples`` resamples of the fits: within each
    size, its fits drawn with replacement (spread so the variance of their mean is s²/k); a
    size with one fit enters unchanged, so the interval then reflects only the sizes with >= 2.
    With few seeds any such interval is optimistic: on curves of 6 sizes with Gaussian seed
    noise it held the true err_2x in about 84 % of curves with 3 seeds, 90 % with 4 and 93 %
    with 5. It covers seed noise only, not the error of the power-law form itself.

    It refuses to extrapolate (``extrapolates`` False; err_2x, err_10x, gain_2x and their
    intervals None; a, b, c, rmse still reported; ``note`` says why) when

    * fewer than :data:`MIN_SIZES` (4) distinct sizes: 3 parameters pass exactly through 3
      points, so nothing tests the fit;
    * b or c sits at a bound of the fit (:func:`bound_note`): b <= 0.001 (the error does not
      fall), b >= 2.999, c <= 1e-4 (0.01 points: the floor pinned at 0, the curve shows no
      levelling off) or c >= 0.9999;
    * the fit is poor: rmse > :data:`POOR_FIT_NOISE` (3) × the seed noise of a size's mean
      (pooled s/√k over the sizes with >= 2 fits) *and* rmse > :data:`POOR_FIT_RANGE` (10 %) of
      the range of the size means. Residuals within 3 standard errors are seed noise; residuals
      within a tenth of the curve's fall are a shape the extrapolation can live with even when
      seeds agree so closely that a small misfit exceeds their noise. With one fit per size only
      the range test applies.

    ``ok`` is False (every figure None) with fewer than 3 distinct sizes or a failed fit.

    >>> sizes = [1000, 2000, 4000, 8000, 16000]
    >>> runs = [[0.5 * n ** -0.5 + 0.05 + d for d in (-1e-4, 1e-4)] for n in sizes]
    >>> fit = power_law(sizes, runs, n_max=16000, resamples=50)
    >>> lo, hi = fit["err_2x_ci"]
    >>> fit["extrapolates"], round(fit["c"], 3), lo < fit["err_2x"] < hi
    (True, 0.05, True)
    """
    if len(sizes) != len(values):
        raise ValueError(f"power_law: {len(sizes)} sizes but {len(values)} lists of values; "
                         "give one list of validation errors per size")
    if (isinstance(n_max, bool) or not isinstance(n_max, (int, float, np.integer, np.floating))
            or not float(n_max).is_integer() or n_max <= 0):
        raise ValueError(f"power_law: n_max must be a positive size (images), got {n_max!r}")
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) \
            or resamples < 0:
        raise ValueError(f"power_law: resamples must be a count >= 0, got {resamples!r}")
    s, groups = _group(sizes, values)
    return _power_law(s, groups, int(n_max), int(resamples), seed)


def fit_power_law(sizes: Sequence[float] | np.ndarray, errors: Sequence[float] | np.ndarray, *,
                  n_max: int | None = None) -> dict[str, Any]:
    """The power law of :func:`power_law` on points, without intervals.

    Args:
        sizes: shape (L,), training-set sizes (images); sizes may repeat (one point per fit).
        errors: shape (L,), validation error (fraction) of each point, e.g. the seed means.
        n_max: size to extrapolate from (default: the largest size).

    Returns:
        the dict of :func:`power_law` with ``resamples`` 0 and no intervals: the fit on the mean
        of each size, under the same refusal rules (``extrapolates``, ``note``).
    """
    s = np.asarray(sizes, dtype=np.float64).ravel()
    e = np.asarray(errors, dtype=np.float64).ravel()
    if s.shape != e.shape:
        raise ValueError(f"fit_power_law: sizes {s.shape} and errors {e.shape} differ in shape")
    if n_max is not None and (isinstance(n_max, bool) or not n_max > 0):
        raise ValueError(f"fit_power_law: n_max must be a positive size, got {n_max!r}")
    uniq, groups = _group(s, e[:, None])
    if uniq.size == 0:
        return _failed("no learning-curve points with a finite error: nothing to fit",
                       int(n_max) if n_max is not None else None)
    n_ref = int(n_max) if n_max is not None else int(round(float(uniq.max())))
    return _power_law(uniq, groups, n_ref, 0, 0)


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
