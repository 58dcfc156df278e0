"""The noise floor of any data: the label-noise rate of the training labels, by confident learning.

"Avoidable bias" needs a target error. Built-in datasets have a published one; the user's own
data has none. Its labels, though, can be checked against models that never saw them: train on
one half of a stratified split, predict the other half, and swap (cross-fitting), so every
training image gets out-of-sample predicted probabilities. Confident learning (Northcutt et al.
2021, JAIR; the cleanlab library) turns those probabilities and the given labels into an estimate
of the joint distribution of given and true labels; its off-diagonal mass is the share of labels
that are wrong — the part of the error no model can remove on these labels.

The estimator is ``1 − trace(cleanlab.count.estimate_joint(labels, pred_probs))``: the
off-diagonal mass of the *calibrated* confident joint, the paper's estimate of the noise rate.
It was chosen by measurement against two other cleanlab estimates, the share of images
``filter.find_label_issues`` flags and ``count.num_label_issues`` (the figures are in
tests/analysis/test_noise.py's docstring): it is the most accurate over scikit-learn models,
synthetic data and biasvar's own cross-fitted MLP on digits taken together (mean error 0.4
points against 1.0 and 2.3 with scikit-learn models); the other two read low, by up to 6 points
at 20 % noise. It reads 1.5–2.5 points high when the models themselves err on a quarter of the
images. The flagged images are what ``suspects`` lists (``n_issues`` of them, ranked by label
quality), so ``n_issues / n`` can differ a little from ``rate``.
The 95 % interval is a percentile bootstrap over the images (rows resampled, the estimate
recomputed) for the rate of the labelling process the images were drawn from; the models are
not retrained, so it leaves out their training noise.

The module is numpy only at import (cleanlab is imported on first use, torch never):

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> y = rng.integers(0, 3, 600)
>>> p = np.full((600, 3), 0.02); p[np.arange(600), y] = 0.96
>>> given = y.copy(); given[:60] = (y[:60] + 1) % 3          # 10 % of the labels wrong
>>> floor, issues = estimate_noise_floor(p, given, classes=["a", "b", "c"], n_boot=50)
>>> round(floor.rate, 3), len(issues)
(0.1, 60)
>>> noise_target(floor).value == floor.rate
True
"""
from __future__ import annotations

import base64
import csv
import io
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .._fmt import count, pct
from .._io import atomic_write_json, atomic_write_text
from ..errors import ConfigError, DataError
from ._results import NoiseFloor, Suspect, TargetError

__all__ = ["estimate_noise_floor", "noise_target", "cross_fitted_probs", "suspect_gallery",
           "write_suspects_csv", "save_suspects", "SUSPECT_COLUMNS", "METHOD", "SUSPECTS_CSV",
           "SUSPECTS_JSON", "NOISE_TARGET_PREFIX"]

#: the columns of suspects.csv, in order
SUSPECT_COLUMNS = ("row", "file", "given", "predicted", "quality")
#: file names in the run directory (the README's run-directory contract)
SUSPECTS_CSV = "suspects.csv"
SUSPECTS_JSON = "suspects.json"

#: how the rate is computed (``NoiseFloor.method`` starts with it)
METHOD = ("confident learning: 1 − trace of cleanlab's calibrated confident joint "
          "(cleanlab.count.estimate_joint)")

#: how ``TargetError.source`` begins when the target is the estimated noise floor (the report
#: reads it to say so)
NOISE_TARGET_PREFIX = "estimated label-noise rate of the training labels"

#: a row of predicted probabilities may miss summing to 1 by this much (float32 softmax)
_SUM_TOL = 1e-3


# ----------------------------------------------------------------------------- validation

def _check_inputs(pred_probs: Any, labels: Any, classes: Sequence[str], files: Any, rows: Any,
                  n_boot: Any, seed: Any, top: Any) -> tuple[np.ndarray, np.ndarray,
                                                             np.ndarray]:
    """The inputs as (pred_probs float64 (n, K) rows summing to 1, labels int64 (n,),
    rows int64 (n,)); a :class:`DataError` / :class:`ConfigError` naming the argument else."""
    p = np.asarray(pred_probs)
    if p.ndim != 2:
        raise DataError(f"pred_probs: expected a 2-D array (n images, K classes); got shape "
                        f"{p.shape}.")
    if p.dtype.kind not in "fiu":
        raise DataError(f"pred_probs: expected numbers; got dtype {p.dtype}.")
    n, k = p.shape
    if n == 0:
        raise DataError("pred_probs: no images (shape (0, K)); the noise floor needs the "
                        "out-of-sample predictions of every training image.")
    if k < 2:
        raise DataError(f"pred_probs: {k} class column(s) (shape {p.shape}); need at least 2.")
    p = p.astype(np.float64)
    if not np.isfinite(p).all():
        bad = int((~np.isfinite(p)).any(1).sum())
        raise DataError(f"pred_probs: {bad} row(s) hold NaN or infinite values (first: row "
                        f"{int(np.flatnonzero(~np.isfinite(p).all(1))[0])}); every image needs "
                        "finite probabilities — did a model diverge?")
    if (p < 0).any():
        hint = " (these look like log-probabilities: pass np.exp(log_probs))" \
            if (p <= 0).all() else ""
        raise DataError(f"pred_probs: negative values (min {p.min():.4g}){hint}; give "
                        "probabilities in [0, 1].")
    sums = p.sum(1)
    off = np.abs(sums - 1)
    if (off > _SUM_TOL).any():
        i = int(off.argmax())
        raise DataError(f"pred_probs: row {i} sums to {sums[i]:.4g}, not 1; give softmax "
                        "probabilities (each row sums to 1), e.g. np.exp(log_probs).")
    p = p / sums[:, None]

    y = np.asarray(labels)
    if y.ndim != 1:
        raise DataError(f"labels: expected a 1-D array of class indices; got shape {y.shape}.")
    if y.dtype.kind not in "iu":
        if y.dtype.kind == "f" and y.size and np.isfinite(y).all() and (y == np.round(y)).all():
            y = y.astype(np.int64)
        else:
            raise DataError(f"labels: expected integer class indices; got dtype {y.dtype}"
                            + (" with NaN" if y.dtype.kind == "f" and np.isnan(y).any() else "")
                            + ".")
    if y.shape[0] != n:
        raise DataError(f"labels: {y.shape[0]} labels for {n} rows of pred_probs; give one "
                        "label per image, in the same order.")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= k:
        bad = int(y[(y < 0) | (y >= k)][0])
        raise DataError(f"labels: class index {bad} is out of range for the {k} columns of "
                        f"pred_probs; labels must be in 0..{k - 1}.")
    present = np.unique(y)
    if present.size < 2:
        raise DataError(f"labels: only {present.size} class present (class {int(present[0])}); "
                        "a label-noise rate needs labels of at least 2 classes.")

    if len(classes) != k:
        raise ConfigError(f"classes: {len(classes)} names for the {k} columns of pred_probs; "
                          "give one name per class, in column order.")
    if files is not None and len(files) != n:
        raise DataError(f"files: {len(files)} names for {n} images; give one per row of "
                        "pred_probs (or None for data without files).")
    if rows is None:
        r = np.arange(n, dtype=np.int64)
    else:
        r = np.asarray(rows)
        if r.shape != (n,) or r.dtype.kind not in "iu":
            raise DataError(f"rows: expected {n} integer row numbers (one per row of "
                            f"pred_probs); got {r.dtype} of shape {r.shape}.")
        r = r.astype(np.int64)
    for name, value, lo in (("n_boot", n_boot, 1), ("top", top, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
            raise ConfigError(f"{name}: {value!r}; use an integer >= {lo}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"seed: {seed!r}; use an int.")
    return p, y, r


# ----------------------------------------------------------------------------- the estimate

def _rate(labels: np.ndarray, pred_probs: np.ndarray) -> float:
    """Share of wrong labels: the off-diagonal mass of the calibrated confident joint."""
    from cleanlab.count import estimate_joint

    joint = estimate_joint(labels, pred_probs)
    # the joint sums to 1; rounding can leave the trace a hair above it
    return float(min(max(1.0 - float(np.trace(joint)), 0.0), 1.0))


def _issues(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """(n,) bool: the images whose given label confident learning finds wrong."""
    from cleanlab.filter import find_label_issues

    # n_jobs=1: no worker processes (the fits may be running beside this; small n is faster)
    return find_label_issues(labels, pred_probs, filter_by="prune_by_noise_rate", n_jobs=1)


def estimate_noise_floor(pred_probs: Any, labels: Any, *, classes: Sequence[str],
                         files: Sequence[str | None] | None = None, rows: Any = None,
                         n_boot: int = 200, seed: int = 0, top: int = 24,
                         predictions: str = "out-of-sample predicted probabilities"
                         ) -> tuple[NoiseFloor, list[dict[str, Any]]]:
    """The label-noise rate of ``labels`` with a 95 % bootstrap interval, and the images whose
    labels are most likely wrong.

    Args:
        pred_probs: (n, K) out-of-sample predicted probabilities: each image scored by models
            that did not train on it (cross-fitting). Rows must sum to 1 (give
            ``np.exp(log_probs)``).
        labels: (n,) the training labels as given (possibly noisy), class indices 0..K−1.
        classes: the K class names (for the suspects).
        files: each image's file (the user's own data), or None (built-in data).
        rows: each image's row number in the training split (default 0..n−1).
        n_boot: bootstrap resamples of the images for the interval.
        seed: seed of the bootstrap.
        top: how many suspects ``NoiseFloor.suspects`` keeps (the second value has all).
        predictions: where ``pred_probs`` came from, for ``method`` (e.g. "cross-fitted
            predictions of 2 models").

    Returns:
        ``(floor, issues)``: the :class:`NoiseFloor` (``rate``, ``lo``, ``hi`` as fractions,
        ``n``, ``method``, ``interval``, ``n_issues``, the ``top`` best suspects; ``csv`` is None
        until :func:`save_suspects` writes the file), and every flagged issue as a dict with
        :data:`SUSPECT_COLUMNS`, most likely mislabelled first (cleanlab's
        ``find_label_issues``, ranked by ``rank.get_label_quality_scores``, self-confidence:
        the probability of the given label).

    Raises:
        DataError: shapes disagree, NaN / negative values, rows not summing to 1, labels out of
            range, fewer than 2 classes present.
        ConfigError: ``classes`` of the wrong length, a bad ``n_boot``/``top``/``seed``.
    """
    from cleanlab.rank import get_label_quality_scores

    p, y, r = _check_inputs(pred_probs, labels, classes, files, rows, n_boot, seed, top)
    n, k = p.shape
    counts = np.bincount(y, minlength=k)
    small = [str(classes[c]) for c in range(k) if 0 < counts[c] < 5]
    # cleanlab warns about small classes on every call (and every resample): one warning of
    # our own below instead
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"cleanlab(\.|$)")
        warnings.filterwarnings("ignore", message=r".*too few examples.*")
        rate = _rate(y, p)
        rng = np.random.default_rng(seed)
        boot = np.empty(n_boot)
        for b in range(n_boot):
            i = rng.integers(0, n, n)
            boot[b] = _rate(y[i], p[i]) if np.unique(y[i]).size >= 2 else np.nan
        flagged = np.flatnonzero(_issues(y, p))
        quality = get_label_quality_scores(y, p, method="self_confidence")
    if small:
        warnings.warn(f"noise floor: class(es) {', '.join(small)} have fewer than 5 labelled "
                      "images; their label errors can hardly be told from rare-class "
                      "confusions, so the estimate is rough there.", RuntimeWarning,
                      stacklevel=2)
    boot = boot[np.isfinite(boot)]
    lo, hi = (float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))) \
        if boot.size else (rate, rate)
    order = flagged[np.argsort(quality[flagged], kind="stable")]
    pred = p.argmax(1)
    issues = [{"row": int(r[i]), "file": None if files is None else files[i],
               "given": str(classes[y[i]]), "predicted": str(classes[pred[i]]),
               "quality": float(quality[i])} for i in order]
    floor = NoiseFloor(
        rate=rate, lo=lo, hi=hi, n=n, method=f"{METHOD} on {predictions}",
        interval=(f"95 % percentile bootstrap over the {count(n)} training images, "
                  f"{n_boot} resamples (the models are not retrained)"),
        n_issues=len(issues),
        suspects=[Suspect(row=d["row"], given=d["given"], predicted=d["predicted"],
                          quality=d["quality"], file=d["file"]) for d in issues[:top]])
    return floor, issues


def noise_target(floor: NoiseFloor) -> TargetError:
    """The estimated noise floor as the target error of "avoidable bias", saying where it came
    from.

    >>> t = noise_target(NoiseFloor(rate=0.023, lo=0.018, hi=0.029, n=1000,
    ...                             method="confident learning on cross-fitted predictions"))
    >>> t.value, t.source[:49]
    (0.023, 'estimated label-noise rate of the training labels')
    """
    how = f" ({floor.method})" if floor.method else ""
    return TargetError(value=float(floor.rate),
                       source=(f"{NOISE_TARGET_PREFIX}, {pct(floor.rate)} [{pct(floor.lo)}, "
                               f"{pct(floor.hi)}] over {count(floor.n)} images{how}: no model "
                               "can beat the label noise, so it stands in for the best "
                               "achievable error"))


def cross_fitted_probs(n: int, parts: Iterable[tuple[Any, Any]]) -> np.ndarray:
    """Out-of-sample probabilities of ``n`` training images from models' predictions of the
    rows they did not train on.

    Args:
        n: the number of training images.
        parts: ``(rows, log_probs)`` per model: the held-out row numbers (m,) and that model's
            fp32 log-probabilities of them (m, K). Rows predicted by several models (several
            splits) get the mean of their probabilities.

    Returns:
        (n, K) probabilities, rows summing to 1.

    Raises:
        DataError: shapes disagree, a row is out of range, or some row has no prediction.
    """
    total: np.ndarray | None = None
    seen = np.zeros(n, dtype=np.int64)
    for j, (rows, lp) in enumerate(parts):
        idx = np.asarray(rows, dtype=np.int64)
        a = np.asarray(lp, dtype=np.float64)
        if a.ndim != 2 or a.shape[0] != idx.shape[0] or idx.ndim != 1:
            raise DataError(f"cross_fitted_probs: part {j}: {idx.shape[0]} rows but log_probs "
                            f"of shape {a.shape}; give (m,) rows and (m, K) log-probabilities.")
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise DataError(f"cross_fitted_probs: part {j}: row numbers must be in 0..{n - 1}.")
        if total is None:
            total = np.zeros((n, a.shape[1]))
        elif a.shape[1] != total.shape[1]:
            raise DataError(f"cross_fitted_probs: part {j} has {a.shape[1]} classes, the first "
                            f"had {total.shape[1]}.")
        prob = np.exp(a - a.max(1, keepdims=True))
        np.add.at(total, idx, prob / prob.sum(1, keepdims=True))
        np.add.at(seen, idx, 1)
    if total is None or (seen == 0).any():
        missing = n if total is None else int((seen == 0).sum())
        raise DataError(f"cross_fitted_probs: {missing} of {n} rows have no out-of-sample "
                        "prediction; every row must be held out by at least one model.")
    return total / seen[:, None]


# ----------------------------------------------------------------------------- the files

def write_suspects_csv(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write the flagged issues (the second value of :func:`estimate_noise_floor`) as a CSV with
    the columns :data:`SUSPECT_COLUMNS` (``file`` empty for data without files), atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SUSPECT_COLUMNS)
    for d in rows:
        q = d.get("quality")
        w.writerow([d.get("row"), d.get("file") or "", d.get("given"), d.get("predicted"),
                    "" if q is None or not math.isfinite(q) else f"{q:.6g}"])
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def _png_b64(img: np.ndarray) -> str:
    """A (C, H, W) uint8 image as base64 PNG (grey for 1 channel, else its first 3)."""
    from PIL import Image

    arr = img[0] if img.shape[0] == 1 else np.transpose(img[:3], (1, 2, 0))
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def suspect_gallery(data: Any, suspects: Iterable[Suspect | dict[str, Any]], *,
                    k: int | None = None) -> list[dict[str, Any]]:
    """suspects.json: a thumbnail of each suspected mislabelled training image.

    Args:
        data: the :class:`~biasvar.data.DataBundle` the noise floor was estimated on;
            ``Suspect.row`` indexes ``data.train``.
        suspects: :class:`Suspect` records (``NoiseFloor.suspects``) or the issue dicts.
        k: keep at most this many (default: all given).

    Returns:
        One dict per suspect, best first: ``row``, ``given``, ``predicted``, ``quality``,
        ``file`` (the image's file — or ``#i`` item of a Python Dataset — for the user's own
        data, else None) and ``image_png_b64``, like gallery.json's entries for test images.
    """
    part = data.train
    out = []
    for s in suspects:
        d = s.to_dict() if isinstance(s, Suspect) else dict(s)
        row = int(d["row"])
        if not 0 <= row < len(part):
            raise DataError(f"suspect_gallery: row {row} is not a row of the training split "
                            f"({len(part)} images); pass the data the noise floor was "
                            "estimated on.")
        x = part.x[row]  # (C, H, W) uint8: a tensor slice, or decoded from disk when streamed
        img = np.asarray(x.numpy() if hasattr(x, "numpy") else x)
        f = d.get("file") or (part.names[row] if part.names is not None else None)
        out.append({"row": row, "given": d["given"], "predicted": d["predicted"],
                    "quality": float(d["quality"]), "file": f, "image_png_b64": _png_b64(img)})
        if k is not None and len(out) >= k:
            break
    return out


def save_suspects(run_dir: str | Path, floor: NoiseFloor, issues: Iterable[dict[str, Any]],
                  gallery: list[dict[str, Any]] | None = None) -> NoiseFloor:
    """Write ``suspects.csv`` (every issue) and, given one, ``suspects.json`` (the gallery of
    :func:`suspect_gallery`) into ``run_dir``, atomically; returns ``floor`` with ``csv`` set."""
    d = Path(run_dir)
    write_suspects_csv(d / SUSPECTS_CSV, issues)
    if gallery is not None:
        atomic_write_json(d / SUSPECTS_JSON, gallery)
    return replace(floor, csv=SUSPECTS_CSV)
