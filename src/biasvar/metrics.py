"""Classification metrics as small pure functions on arrays.

Every function takes numpy arrays (torch tensors are accepted and converted) and returns numpy
arrays or Python numbers; :func:`classification_metrics` returns the JSON-able "M" block of
``metrics.json`` (see the run-directory contract). The definitions follow scikit-learn, against
which the tests check them:

* precision, recall and F1 use ``zero_division=0``: a ratio whose denominator is 0 counts as 0;
* macro averages run over the classes that occur in the true *or* the predicted labels
  (scikit-learn's default ``labels=None``); a class absent from both is reported per class with
  zeros and support 0 but does not drag the macro average down; weighted averages weight by
  support, so such a class has weight 0 anyway;
* top-k accuracy breaks ties like ``sklearn.metrics.top_k_accuracy_score``.

Expected calibration error uses the top-label confidence and ``n_bins`` equal-width bins
``(lo, hi]`` (Guo et al. 2017). torchmetrics 1.9's ``MulticlassCalibrationError(norm="l1")``
uses ``[lo, hi)`` bins plus a bin of its own for a confidence of exactly 1.0; the two agree
except for confidences lying exactly on a bin edge (a saturated softmax, for instance).

>>> import numpy as np
>>> y = np.array([0, 1, 1, 2])
>>> p = np.array([[.8, .1, .1], [.2, .7, .1], [.5, .4, .1], [.1, .1, .8]])
>>> m = classification_metrics(y, p, classes=["a", "b", "c"])
>>> m["accuracy"], m["confusion_matrix"]
(0.75, [[1, 0, 0], [1, 1, 0], [0, 0, 1]])
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "confusion_matrix",
    "precision_recall_f1",
    "expected_calibration_error",
    "top_k_accuracy",
    "classification_metrics",
    "confusions",
    "PROB_FLOOR",
]

#: probabilities are floored here before taking the log (and log-probabilities at its log), so
#: one confidently wrong image costs at most -log(1e-12) = 27.6 nats and the loss stays finite.
PROB_FLOOR = 1e-12


def _as_numpy(a: Any) -> np.ndarray:
    """An array from a numpy array, a sequence or a torch tensor (any device, any dtype)."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):  # a torch tensor, without importing torch
        a = a.detach().cpu()
        if a.is_floating_point():  # bf16/fp16 have no numpy dtype
            a = a.double()
        a = a.numpy()
    return np.asarray(a)


def _labels(y: Any, name: str, num_classes: int | None = None) -> np.ndarray:
    """Integer labels (n,) as int64; floats are accepted when they hold whole numbers."""
    y = _as_numpy(y)
    if y.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of class indices, got shape {y.shape}.")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError(f"{name}: class indices must be whole numbers.")
    elif y.dtype.kind not in "iub":
        raise ValueError(f"{name}: class indices must be integers, got dtype {y.dtype}.")
    y = y.astype(np.int64)
    if num_classes is not None and y.size and (y.min() < 0 or y.max() >= num_classes):
        bad = y[(y < 0) | (y >= num_classes)][0]
        raise ValueError(f"{name}: class index {int(bad)} is outside [0, {num_classes - 1}] "
                         f"for {num_classes} classes.")
    return y


def _check_range(y: np.ndarray, k: int) -> np.ndarray:
    """``y`` itself, after checking its indices address one of ``k`` columns."""
    if y.min() < 0 or y.max() >= k:
        bad = y[(y < 0) | (y >= k)][0]
        raise ValueError(f"y_true: class index {int(bad)} is outside [0, {k - 1}] for the {k} "
                         "columns of probabilities.")
    return y


def _probs(p: Any, name: str, n: int) -> np.ndarray:
    """A float64 (n, K) matrix with no NaN."""
    p = np.asarray(_as_numpy(p), dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != n or p.shape[1] < 1:
        raise ValueError(f"{name}: expected shape ({n}, K) to match {n} labels, got {p.shape}.")
    if np.isnan(p).any():
        raise ValueError(f"{name}: contains NaN (did the model diverge?).")
    return p


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """Counts (K, K) int64: entry [i, j] = images of true class i predicted as j.

    ``y_true``, ``y_pred``: (n,) class indices in [0, K).
    """
    if int(num_classes) < 1:
        raise ValueError(f"num_classes: must be at least 1, got {num_classes}.")
    k = int(num_classes)
    t = _labels(y_true, "y_true", k)
    p = _labels(y_pred, "y_pred", k)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}.")
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.int64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, 0 where den == 0 (scikit-learn's zero_division=0)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def precision_recall_f1(cm: Any) -> dict[str, Any]:
    """Per-class and averaged precision, recall and F1 from a confusion matrix (rows = true).

    Returns ``{"precision", "recall", "f1": (K,) float64, "support": (K,) int64,
    "precision_macro", "recall_macro", "f1_macro", "precision_weighted", "recall_weighted",
    "f1_weighted": float}``. F1 per class is 2·tp / (2·tp + fp + fn) (the harmonic mean of
    precision and recall where both are defined), the macro F1 the mean of per-class F1s.
    Ratios with a zero denominator are 0; see the module notes for which classes enter the
    macro average.
    """
    cm = np.asarray(_as_numpy(cm), dtype=np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm: expected a square (K, K) matrix, got shape {cm.shape}.")
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(1)           # true count per class
    predicted = cm.sum(0)         # predicted count per class
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, support)
    f1 = _ratio(2 * tp, support + predicted)   # 2tp + fp + fn = support + predicted
    present = (support > 0) | (predicted > 0)  # scikit-learn's unique_labels(y_true, y_pred)
    total = support.sum()
    out: dict[str, Any] = {"precision": precision, "recall": recall, "f1": f1,
                           "support": support.astype(np.int64)}
    for name, v in (("precision", precision), ("recall", recall), ("f1", f1)):
        out[f"{name}_macro"] = float(v[present].mean()) if present.any() else 0.0
        out[f"{name}_weighted"] = float((v * support).sum() / total) if total else 0.0
    return out


def expected_calibration_error(probs: Any, y_true: Any, n_bins: int = 15) -> float:
    """Top-label expected calibration error (L1), in [0, 1].

    ``probs``: (n, K) class probabilities; ``y_true``: (n,) class indices. The confidence of an
    image is its largest probability, correct when that class (first on ties) is the true one.
    Confidences fall into ``n_bins`` equal-width bins ``(b/n_bins, (b+1)/n_bins]``;
    ECE = Σ_bins (n_bin / n) · |accuracy_bin − mean confidence_bin|
        = (1/n) · Σ_bins |Σ_{i in bin} (correct_i − confidence_i)|.
    """
    if int(n_bins) < 1:
        raise ValueError(f"n_bins: must be at least 1, got {n_bins}.")
    y = _labels(y_true, "y_true")
    p = _probs(probs, "probs", y.size)
    if y.size == 0:
        raise ValueError("expected_calibration_error: no samples.")
    conf = p.max(1)
    correct = (p.argmax(1) == y).astype(np.float64)
    # ceil(conf·B) − 1 puts conf in (b/B, (b+1)/B] into bin b; conf = 0 would give −1 → bin 0
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    gap = np.bincount(idx, weights=correct - conf, minlength=n_bins)
    return float(np.abs(gap).sum() / y.size)


def top_k_accuracy(probs: Any, y_true: Any, k: int) -> float:
    """Fraction of images whose true class is among the ``k`` highest scores (ties broken like
    ``sklearn.metrics.top_k_accuracy_score``: among equal scores the higher class index ranks
    first). ``probs``: (n, K) scores; ``k >= K`` gives 1.0."""
    if int(k) < 1:
        raise ValueError(f"k: must be at least 1, got {k}.")
    y = _labels(y_true, "y_true")
    p = _probs(probs, "probs", y.size)
    if y.size == 0:
        raise ValueError("top_k_accuracy: no samples.")
    n, K = p.shape
    _check_range(y, K)
    s_true = p[np.arange(n), y][:, None]
    cls = np.arange(K)[None, :]
    # rank of the true class in a stable descending sort that puts higher indices first on ties
    rank = (p > s_true).sum(1) + ((p == s_true) & (cls > y[:, None])).sum(1)
    return float((rank < k).mean())


def classification_metrics(y_true: Any, probs: Any = None, classes: Sequence[str] | None = None,
                           *, log_probs: Any = None, n_bins: int = 15) -> dict[str, Any]:
    """The metrics block "M" of one split, JSON-able (Python ints and floats only).

    ``y_true``: (n,) class indices; ``probs``: (n, K) probabilities, or ``log_probs``: (n, K)
    log-probabilities (preferred when given: the loss is then computed without an exp/log round
    trip); ``classes``: K class names (default "0".."K-1").

    Returns ``{"n", "accuracy", "error", "loss", "precision_macro", "recall_macro", "f1_macro",
    "precision_weighted", "recall_weighted", "f1_weighted", "ece", "top5_accuracy" (only when
    K > 5), "confusion_matrix": K×K list (rows = true), "per_class": {name: {"precision",
    "recall", "f1", "support"}}}``. ``loss`` is the mean negative log-likelihood in nats of the
    true class, its probability floored at :data:`PROB_FLOOR`. Predictions are the arg-max
    (first class on ties).
    """
    y = _labels(y_true, "y_true")
    n = int(y.size)
    if n == 0:
        raise ValueError("classification_metrics: no samples (y_true is empty).")
    if log_probs is not None:
        lp = _probs(log_probs, "log_probs", n)
        p = np.exp(lp)
        log_true = lp[np.arange(n), _check_range(y, lp.shape[1])]
    elif probs is not None:
        p = _probs(probs, "probs", n)
        log_true = np.log(np.maximum(p[np.arange(n), _check_range(y, p.shape[1])], PROB_FLOOR))
    else:
        raise ValueError("classification_metrics: pass probs or log_probs.")
    K = p.shape[1]
    names = [str(i) for i in range(K)] if classes is None else [str(c) for c in classes]
    if len(names) != K:
        raise ValueError(f"classes: {len(names)} names for {K} columns of probabilities.")
    if len(set(names)) != K:
        raise ValueError("classes: names must be distinct.")
    loss = float(-np.maximum(log_true, math.log(PROB_FLOOR)).mean())
    pred = p.argmax(1)
    cm = confusion_matrix(y, pred, K)
    prf = precision_recall_f1(cm)
    acc = float(np.trace(cm) / n)
    out: dict[str, Any] = {"n": n, "accuracy": acc, "error": 1.0 - acc, "loss": loss}
    for key in ("precision_macro", "recall_macro", "f1_macro",
                "precision_weighted", "recall_weighted", "f1_weighted"):
        out[key] = float(prf[key])
    out["ece"] = expected_calibration_error(p, y, n_bins)
    if K > 5:
        out["top5_accuracy"] = top_k_accuracy(p, y, 5)
    out["confusion_matrix"] = cm.tolist()
    out["per_class"] = {
        name: {"precision": float(prf["precision"][i]), "recall": float(prf["recall"][i]),
               "f1": float(prf["f1"][i]), "support": int(prf["support"][i])}
        for i, name in enumerate(names)}
    return out


#: the confusion evidence names at most this many classes as the group most errors fall in, and
#: adds a class to it only when the errors it brings are at least this share of all errors
_GROUP_MAX, _GROUP_MIN_SHARE = 4, 0.05


def confusions(cm: Any, classes: Sequence[str]) -> dict[str, Any] | None:
    """The errors by class pair, from a K×K confusion matrix (rows true, columns
    predicted): ``errors`` (all off-diagonal counts), ``pairs`` (the 3 pairs with the most
    confusions either way: (class a, class b, count)), and ``group`` / ``group_errors``: the
    classes most errors fall among — grown greedily from the top pair, adding the class that
    brings the most confusions with the group, while it brings at least ``_GROUP_MIN_SHARE`` of
    all errors, up to ``_GROUP_MAX`` classes (never more than half the classes). None when the
    matrix is missing, malformed or has no errors."""
    try:
        m = np.asarray(cm, dtype=float)
    except (TypeError, ValueError):
        return None
    classes = [str(c) for c in classes]
    k = len(classes)
    if m.shape != (k, k) or k < 3 or not np.isfinite(m).all():
        return None
    both = m + m.T
    np.fill_diagonal(both, 0)
    errors = float(m.sum() - np.trace(m))
    if errors <= 0:
        return None
    iu = [(int(i), int(j)) for i, j in zip(*np.triu_indices(k, 1))]
    iu.sort(key=lambda ij: (-both[ij], ij))
    pairs = [(classes[i], classes[j], int(both[i, j])) for i, j in iu[:3] if both[i, j] > 0]
    group = list(iu[0])
    limit = min(_GROUP_MAX, k // 2)
    while len(group) < limit:
        rest = [c for c in range(k) if c not in group]
        adds = {c: float(both[c, group].sum()) for c in rest}
        best = max(rest, key=lambda c: (adds[c], -c))
        if adds[best] < _GROUP_MIN_SHARE * errors:
            break
        group.append(best)
    within = float(both[np.ix_(group, group)].sum() / 2)
    return {"errors": int(errors), "pairs": pairs, "group": [classes[c] for c in sorted(group)],
            "group_errors": int(within)}
