"""Metrics checked against scikit-learn and torchmetrics, plus a hand-worked ECE case."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from biasvar.metrics import (
    PROB_FLOOR,
    classification_metrics,
    confusion_matrix,
    expected_calibration_error,
    precision_recall_f1,
    top_k_accuracy,
)
from tests.conftest import require_module

M_KEYS = {"n", "accuracy", "error", "loss", "precision_macro", "recall_macro", "f1_macro",
          "precision_weighted", "recall_weighted", "f1_weighted", "ece", "confusion_matrix",
          "per_class"}


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def random_case(seed: int = 0, n: int = 600, k: int = 8, never_predicted: int = 3,
                absent_true: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities where class ``never_predicted`` is never the arg-max and class
    ``absent_true`` never a true label (but sometimes predicted)."""
    rng = np.random.default_rng(seed)
    y = rng.choice([c for c in range(k) if c != absent_true], size=n)
    logits = rng.normal(0.0, 2.0, size=(n, k))
    logits[np.arange(n), y] += rng.normal(1.5, 1.0, size=n)  # better than chance
    logits[:, never_predicted] -= 12.0  # never the arg-max here, yet p >> 1e-12
    return y, _softmax(logits)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_random_case_has_the_intended_gaps(seed):
    y, p = random_case(seed)
    pred = p.argmax(1)
    assert 3 not in pred and 3 in y
    assert 7 in pred and 7 not in y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_matrix_matches_sklearn(seed):
    y, p = random_case(seed)
    pred = p.argmax(1)
    cm = confusion_matrix(y, pred, 8)
    assert cm.dtype == np.int64 and cm.shape == (8, 8)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, pred, labels=list(range(8))))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_precision_recall_f1_match_sklearn(seed):
    y, p = random_case(seed)
    pred = p.argmax(1)
    prf = precision_recall_f1(confusion_matrix(y, pred, 8))
    P, R, F, S = skm.precision_recall_fscore_support(y, pred, labels=list(range(8)),
                                                     average=None, zero_division=0)
    np.testing.assert_allclose(prf["precision"], P, rtol=0, atol=1e-12)
    np.testing.assert_allclose(prf["recall"], R, rtol=0, atol=1e-12)
    np.testing.assert_allclose(prf["f1"], F, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(prf["support"], S)
    for avg in ("macro", "weighted"):
        P, R, F, _ = skm.precision_recall_fscore_support(y, pred, average=avg, zero_division=0)
        assert prf[f"precision_{avg}"] == pytest.approx(P, abs=1e-12)
        assert prf[f"recall_{avg}"] == pytest.approx(R, abs=1e-12)
        assert prf[f"f1_{avg}"] == pytest.approx(F, abs=1e-12)
    # the class never predicted and the class never true both score 0, as with zero_division=0
    assert prf["precision"][3] == 0.0 and prf["recall"][7] == 0.0 and prf["f1"][7] == 0.0


def test_macro_average_skips_a_class_absent_from_both_like_sklearn():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 4, size=200)          # class 4 of 5 appears nowhere
    pred = np.where(rng.random(200) < 0.7, y, rng.integers(0, 4, size=200))
    prf = precision_recall_f1(confusion_matrix(y, pred, 5))
    for avg in ("macro", "weighted"):
        P, R, F, _ = skm.precision_recall_fscore_support(y, pred, average=avg, zero_division=0)
        assert prf[f"precision_{avg}"] == pytest.approx(P, abs=1e-12)
        assert prf[f"recall_{avg}"] == pytest.approx(R, abs=1e-12)
        assert prf[f"f1_{avg}"] == pytest.approx(F, abs=1e-12)
    assert prf["support"][4] == 0 and prf["f1"][4] == 0.0


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8, 9])
def test_top_k_accuracy_matches_sklearn(k):
    y, p = random_case(1)
    expected = skm.top_k_accuracy_score(y, p, k=k, labels=list(range(8))) if k < 8 else 1.0
    assert top_k_accuracy(p, y, k) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_top_k_accuracy_breaks_ties_like_sklearn(k):
    rng = np.random.default_rng(3)
    y = rng.integers(0, 6, size=400)
    scores = rng.integers(0, 3, size=(400, 6)).astype(float)  # many ties
    assert top_k_accuracy(scores, y, k) == pytest.approx(
        skm.top_k_accuracy_score(y, scores, k=k, labels=list(range(6))), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 4])
def test_classification_metrics_match_sklearn(seed):
    y, p = random_case(seed)
    classes = [f"c{i}" for i in range(8)]
    m = classification_metrics(y, p, classes)
    pred = p.argmax(1)
    assert set(m) == M_KEYS | {"top5_accuracy"}
    assert m["n"] == len(y)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert m["error"] == pytest.approx(1 - skm.accuracy_score(y, pred), abs=1e-12)
    assert m["loss"] == pytest.approx(skm.log_loss(y, p, labels=list(range(8))), rel=1e-9)
    assert m["top5_accuracy"] == pytest.approx(
        skm.top_k_accuracy_score(y, p, k=5, labels=list(range(8))), abs=1e-12)
    for avg in ("macro", "weighted"):
        P, R, F, _ = skm.precision_recall_fscore_support(y, pred, average=avg, zero_division=0)
        assert (m[f"precision_{avg}"], m[f"recall_{avg}"], m[f"f1_{avg}"]) == pytest.approx(
            (P, R, F), abs=1e-12)
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=list(range(8))).tolist()
    P, R, F, S = skm.precision_recall_fscore_support(y, pred, labels=list(range(8)),
                                                     average=None, zero_division=0)
    assert list(m["per_class"]) == classes
    for i, c in enumerate(classes):
        pc = m["per_class"][c]
        assert (pc["precision"], pc["recall"], pc["f1"]) == pytest.approx((P[i], R[i], F[i]),
                                                                          abs=1e-12)
        assert pc["support"] == S[i]


def _py_types_only(obj) -> bool:
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _py_types_only(v) for k, v in obj.items())
    if isinstance(obj, list):
        return all(_py_types_only(v) for v in obj)
    return type(obj) in (int, float)


def test_classification_metrics_is_json_with_python_types():
    y, p = random_case(2)
    m = classification_metrics(y, p, [str(i) for i in range(8)])
    assert _py_types_only(m)
    assert json.loads(json.dumps(m, allow_nan=False)) == m


def test_log_probs_give_the_same_metrics_and_are_preferred():
    y, p = random_case(3)
    lp = np.log(p)
    a = classification_metrics(y, p, list("abcdefgh"))
    b = classification_metrics(y, log_probs=lp, classes=list("abcdefgh"))
    for key in M_KEYS - {"confusion_matrix", "per_class"}:
        assert b[key] == pytest.approx(a[key], rel=1e-9, abs=1e-12), key
    assert b["confusion_matrix"] == a["confusion_matrix"]
    # with both given, log_probs win: pass uniform probs that would give a different loss
    c = classification_metrics(y, np.full_like(p, 1 / 8), list("abcdefgh"), log_probs=lp)
    assert c["loss"] == pytest.approx(a["loss"], rel=1e-9)
    assert c["loss"] != pytest.approx(math.log(8), rel=1e-3)


def test_loss_from_log_probs_is_exact_above_the_floor_and_floored_below():
    # -20 > log(1e-12) ~ -27.6 is taken as is; -200 and -inf are floored at log(1e-12)
    lp = np.array([[-20.0, 0.0], [0.0, -20.0]])
    assert classification_metrics([0, 0], log_probs=lp)["loss"] == pytest.approx(10.0, rel=1e-12)
    lp = np.array([[0.0, -200.0], [0.0, -np.inf]])
    assert classification_metrics([1, 1], log_probs=lp)["loss"] == pytest.approx(
        -math.log(PROB_FLOOR), rel=1e-12)


def test_loss_is_finite_when_the_true_class_has_probability_zero():
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    m = classification_metrics([1, 0], p)
    assert m["loss"] == pytest.approx((-math.log(PROB_FLOOR) + math.log(2)) / 2, rel=1e-12)
    m2 = classification_metrics([1, 0], log_probs=np.array([[0.0, -np.inf],
                                                            [math.log(.5), math.log(.5)]]))
    assert math.isfinite(m2["loss"]) and m2["loss"] == pytest.approx(m["loss"], rel=1e-12)


def test_top5_only_when_more_than_five_classes():
    rng = np.random.default_rng(0)
    p5 = _softmax(rng.normal(size=(50, 5)))
    p6 = _softmax(rng.normal(size=(50, 6)))
    y = rng.integers(0, 5, size=50)
    assert "top5_accuracy" not in classification_metrics(y, p5)
    assert set(classification_metrics(y, p5)) == M_KEYS
    assert "top5_accuracy" in classification_metrics(y, p6)


def test_torch_tensors_are_accepted():
    y, p = random_case(4)
    a = classification_metrics(y, p)
    b = classification_metrics(torch.from_numpy(y), torch.from_numpy(p))
    c = classification_metrics(torch.from_numpy(y).float(),
                               log_probs=torch.log(torch.from_numpy(p)).to(torch.float32))
    assert b == a
    assert c["accuracy"] == a["accuracy"] and c["loss"] == pytest.approx(a["loss"], rel=1e-5)
    assert confusion_matrix(torch.tensor([0, 1]), torch.tensor([1, 1]), 2).tolist() == [[0, 1],
                                                                                         [0, 1]]


# --- expected calibration error ------------------------------------------------------------

def test_ece_hand_worked_four_samples():
    # 4 bins (0,.25] (.25,.5] (.5,.75] (.75,1]
    p = np.array([[0.90, 0.05, 0.05],   # conf .90, correct -> bin 3
                  [0.20, 0.70, 0.10],   # conf .70, wrong   -> bin 2
                  [0.25, 0.75, 0.00],   # conf .75, correct -> bin 2 (upper edge is inside)
                  [0.60, 0.30, 0.10]])  # conf .60, correct -> bin 2
    y = np.array([0, 0, 1, 0])
    # bin 3: 1/4 * |1 - .9| = .025 ; bin 2: 3/4 * |2/3 - (.7+.75+.6)/3| = .0125
    assert expected_calibration_error(p, y, n_bins=4) == pytest.approx(0.0375, abs=1e-12)
    # one bin: |accuracy - mean confidence| = |3/4 - 2.95/4|
    assert expected_calibration_error(p, y, n_bins=1) == pytest.approx(0.05 / 4, abs=1e-12)


def test_ece_perfectly_calibrated_and_fully_wrong():
    p = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(p, [0, 1]) == 0.0
    assert expected_calibration_error(p, [1, 0]) == pytest.approx(1.0)


@pytest.mark.parametrize("seed,k,temp", [(0, 10, 1.0), (1, 3, 3.0), (2, 7, 0.3)])
def test_ece_matches_torchmetrics(seed, k, temp):
    tm = require_module("torchmetrics.classification", "pip install -e '.[test]'")
    rng = np.random.default_rng(seed)
    n = 1000
    y = rng.integers(0, k, size=n)
    logits = rng.normal(size=(n, k)) * 2.0
    logits[np.arange(n), y] += 1.0
    p = _softmax(logits / temp).astype(np.float32)
    metric = tm.MulticlassCalibrationError(num_classes=k, n_bins=15, norm="l1")
    expected = float(metric(torch.from_numpy(p), torch.from_numpy(y)))
    assert expected > 0.0
    assert expected_calibration_error(p, y, n_bins=15) == pytest.approx(expected, abs=2e-6)
    m = classification_metrics(y, p)
    assert m["ece"] == pytest.approx(expected, abs=2e-6)


# --- input errors ---------------------------------------------------------------------------

def test_errors_name_the_problem():
    p = np.full((3, 2), 0.5)
    with pytest.raises(ValueError, match="outside"):
        classification_metrics([0, 1, 2], p)
    with pytest.raises(ValueError, match="shape"):
        classification_metrics([0, 1], p)
    with pytest.raises(ValueError, match="classes"):
        classification_metrics([0, 1, 1], p, classes=["a"])
    with pytest.raises(ValueError, match="NaN"):
        classification_metrics([0, 1, 1], np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="probs or log_probs"):
        classification_metrics([0, 1, 1])
    with pytest.raises(ValueError, match="no samples"):
        classification_metrics([], np.zeros((0, 2)))
    with pytest.raises(ValueError, match="whole numbers"):
        confusion_matrix([0.5], [0], 2)
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="k"):
        top_k_accuracy(p, [0, 1, 1], 0)
