"""Tests of the verdict rules (biasvar.analysis.verdict) and the target table (targets).

Mock results.json mappings of known shape stand in for real runs, as scikit-learn tests its
curve code with mock estimators: the rules must give the label the numbers imply.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from biasvar.analysis.curvefit import fit_power_law, power_law, summarize
from biasvar.analysis.targets import KNOWN_TARGETS, target_error
from biasvar.analysis._results import Verdict
from biasvar.analysis.verdict import LABELS, Thresholds, verdict
from biasvar.errors import ConfigError


def _split(error: float, n: int | None = None) -> dict:
    m = {"error": error, "accuracy": 1 - error}
    if n is not None:
        m["n"] = n
    return m


def _results(train: float, val: float, test: float | None = None, target: float = 0.037,
             **extra) -> dict:
    ref = {"train": _split(train, 54000), "val": _split(val, 6000)}
    if test is not None:
        ref["test"] = _split(test, 10000)
    return {"reference": ref, "target_error": {"value": target, "source": "benchmark"}, **extra}


def _term(value: float, se: float = 0.001) -> dict:
    return {"value": value, "ci95": [value - 2 * se, value + 2 * se], "se_models": se}


def _decomposition(loss: float, bias: float, ens_error: float, *, ce_risk: float = 0.30,
                   ce_var: float = 0.03, rounds: int = 8, se: float = 0.001) -> dict:
    net = loss - bias
    return {
        "rounds": rounds, "sampling": "bootstrap", "n_train_per_model": [54000] * rounds,
        "n_test": 10000, "label_noise": 0.0,
        "zero_one": {"loss": _term(loss, se), "bias": _term(bias, se),
                     "variance": _term(net * 1.5, se), "net_variance": _term(net, se)},
        "mse": {"risk": _term(loss, se), "bias2": _term(bias, se), "variance": _term(net, se)},
        "cross_entropy": {"risk": _term(ce_risk, se), "bias": _term(ce_risk - ce_var, se),
                          "variance": _term(ce_var, se), "variance_jackknife": _term(ce_var, se)},
        "ensemble": {"error": ens_error, "cross_entropy": ce_risk - ce_var},
    }


def _learning_curve(a: float, b: float, c: float) -> dict:
    sizes = np.array([3000, 6000, 12000, 24000, 54000])
    err = a * sizes ** -b + c
    return {"sizes": sizes.tolist(), "seeds": [0, 1],
            "train_error": summarize(np.zeros((len(sizes), 2))),
            "val_error": summarize(np.c_[err, err + 0.001]),
            "power_law": fit_power_law(sizes, err + 0.0005)}


def _numbers_in(obj) -> list[float]:
    if isinstance(obj, bool):
        return []
    if isinstance(obj, (int, float)):
        return [float(obj)]
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _numbers_in(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in _numbers_in(v)]
    return []


def _renderings(results: dict) -> set[str]:
    """Every way the verdict may print a number of the input: percent with one decimal, 2-4
    decimals, %g, thousands separators."""
    out = set()
    for x in _numbers_in(results):
        out |= {f"{100 * x:.1f}", f"{x:.2f}", f"{x:.3f}", f"{x:.4f}", f"{x:g}"}
        if float(x).is_integer():
            out |= {f"{int(x):,}", str(int(x))}
    return out


# ----------------------------------------------------------------------------- one per label

def test_high_bias():
    v = verdict(_results(train=0.081, val=0.090))
    assert v.label == "high_bias"
    assert ("train error 8.1% vs target 3.7%: avoidable bias 4.4 points (above the 2.0-point "
            "threshold)") in v.evidence
    assert {r.addresses for r in v.remedies} == {"bias"}
    assert v.remedies[0].name in ("wider_model", "train_longer")


def test_high_variance():
    v = verdict(_results(train=0.040, val=0.090, test=0.093))
    assert v.label == "high_variance"
    assert any("variance gap 5.0 points (above" in e for e in v.evidence)
    names = [r.name for r in v.remedies]
    assert {"augmentation", "weight_decay", "dropout", "early_stopping", "more_data",
            "ensemble"} <= set(names)
    assert {r.addresses for r in v.remedies} == {"variance"}


def test_both():
    v = verdict(_results(train=0.080, val=0.130))
    assert v.label == "both"
    sides = {r.addresses for r in v.remedies}
    assert sides == {"bias", "variance"}
    # variance exceeds its threshold by more (5.0/2.0 vs 4.3/2.0): its remedies come first
    assert v.remedies[0].addresses == "variance"


def test_balanced_says_near_target():
    v = verdict(_results(train=0.045, val=0.055))
    assert v.label == "balanced"
    assert any("near its target" in e for e in v.evidence)
    assert v.remedies, "balanced still offers remedies"
    assert all("near its target" in r.evidence for r in v.remedies)


def test_balanced_offers_more_data_when_curve_still_falling():
    res = _results(train=0.045, val=0.055, learning_curve=_learning_curve(2.0, 0.5, 0.04))
    v = verdict(res)
    assert v.label == "balanced"
    top = v.remedies[0]
    pl = res["learning_curve"]["power_law"]
    assert top.name == "more_data"
    assert top.predicted_gain == pytest.approx(pl["gain_2x"])
    assert top.predicted_gain > Thresholds().min_gain


def test_variance_share_alone_makes_high_variance():
    # tiny train-validation gap, but 40 % of the 0-1 loss is net variance
    res = _results(train=0.050, val=0.055, decomposition=_decomposition(0.10, 0.06, 0.09))
    v = verdict(res)
    assert v.label == "high_variance"
    assert any("40.0% of the loss is variance" in e for e in v.evidence)
    assert any("variance share" in c for c in v.caveats)


def test_cross_entropy_share_alone_makes_high_variance():
    res = _results(train=0.050, val=0.055,
                   decomposition=_decomposition(0.10, 0.09, 0.099, ce_risk=0.30, ce_var=0.12))
    assert verdict(res).label == "high_variance"
    res["decomposition"] = _decomposition(0.10, 0.09, 0.099, ce_risk=0.30, ce_var=0.06)
    assert verdict(res).label == "balanced"


# ----------------------------------------------------------------------------- thresholds

def test_threshold_override_changes_label_at_the_boundary():
    res = _results(train=0.067, val=0.070)  # avoidable bias 3.0 points
    assert verdict(res).label == "high_bias"
    assert verdict(res, Thresholds(bias_high=0.031)).label == "balanced"
    assert verdict(res, Thresholds(bias_high=0.029)).label == "high_bias"
    # variance gap 0.3 points: high only under a stricter threshold
    assert verdict(res, Thresholds(variance_high=0.002)).label == "both"
    out = verdict(res, Thresholds.from_dict({"bias_high": 0.05}))
    assert out.thresholds["bias_high"] == 0.05 and out.label == "balanced"


def test_thresholds_from_dict_unknown_key_suggests():
    with pytest.raises(ConfigError, match=r"unknown threshold 'bias_hihg'.*Did you mean "
                                          r"'bias_high'"):
        Thresholds.from_dict({"bias_hihg": 0.1})


@pytest.mark.parametrize("bad", [{"bias_high": -0.1}, {"variance_share_high": 0.0},
                                 {"min_gain": float("nan")}, {"falling": "lots"},
                                 {"variance_high": True}, {"bias_high": 2.0}])
def test_thresholds_from_dict_bad_values(bad):
    with pytest.raises(ConfigError, match=list(bad)[0]):
        Thresholds.from_dict(bad)


def test_thresholds_from_dict_accepts_dashes_and_strings():
    th = Thresholds.from_dict({"variance-high": "0.05", "min_gain": 0})
    assert th.variance_high == 0.05 and th.min_gain == 0.0
    assert th.bias_high == Thresholds().bias_high
    assert Thresholds.from_dict(None) == Thresholds()
    assert set(th.to_dict()) == set(Thresholds().to_dict())


# ----------------------------------------------------------------------------- remedies

def test_measured_gain_ranks_first_and_in_order_of_gain():
    # high bias (unmeasured remedies) + variance with a measured ensemble gain and data gain
    res = _results(train=0.10, val=0.14, learning_curve=_learning_curve(2.0, 0.5, 0.05),
                   decomposition=_decomposition(0.14, 0.11, 0.125))
    v = verdict(res)
    rem = v.remedies
    assert [r.rank for r in rem] == list(range(1, len(rem) + 1))
    ens_gain = 0.14 - 0.125  # 0-1 loss of a single model minus ensemble error
    assert rem[0].name == "ensemble"
    assert rem[0].predicted_gain == pytest.approx(ens_gain)
    assert rem[1].name == "more_data"
    assert rem[1].predicted_gain == pytest.approx(res["learning_curve"]["power_law"]["gain_2x"])
    assert rem[1].predicted_gain < ens_gain
    assert all(r.predicted_gain is None for r in rem[2:])
    assert "0.030 nats" in rem[0].evidence  # the CE variance term, the predicted CE gain


def test_negligible_measured_gain_ranks_last():
    # learning curve flat: more data predicted to gain ~0 → after the unmeasured remedies
    res = _results(train=0.04, val=0.09, learning_curve=_learning_curve(0.001, 0.5, 0.088))
    rem = verdict(res).remedies
    assert rem[-1].name == "more_data"
    assert rem[-1].predicted_gain < Thresholds().min_gain
    assert any("flat" in e for e in verdict(res).evidence)


def test_train_longer_first_when_loss_still_falling():
    falling = [{"epoch": i + 1, "train_loss": 0.8 * 0.85 ** i} for i in range(10)]
    flat = [{"epoch": i + 1, "train_loss": 0.3} for i in range(10)]
    res = _results(train=0.09, val=0.10, config={"epochs": 10, "lr": 0.002, "width": 32})
    res["reference"]["history"] = falling
    rem = verdict(res).remedies
    assert rem[0].name == "train_longer"
    assert rem[0].action == "--epochs 20 and --lr 0.004"
    res["reference"]["history"] = flat
    v = verdict(res)
    assert "train_longer" not in [r.name for r in v.remedies]
    assert (v.remedies[0].name, v.remedies[0].action) == ("wider_model", "--width 64")
    assert any("capacity-limited" in e for e in v.evidence)


def test_falling_threshold_is_applied_to_the_history():
    hist = [{"epoch": i + 1, "train_loss": v} for i, v in enumerate([1, 1, 1, .95, .95, .95])]
    res = _results(train=0.09, val=0.10)
    res["reference"]["history"] = hist
    names = lambda th: [r.name for r in verdict(res, th).remedies]  # noqa: E731
    assert "train_longer" in names(Thresholds(falling=0.04))
    assert "train_longer" not in names(Thresholds(falling=0.06))


def test_less_regularization_only_when_config_regularises():
    res = _results(train=0.09, val=0.10)
    assert "less_regularization" not in [r.name for r in verdict(res).remedies]
    res["config"] = {"weight_decay": 0.005, "dropout": 0.3}
    rem = {r.name: r for r in verdict(res).remedies}
    assert rem["less_regularization"].action == "--weight-decay 0.0005 --dropout 0"
    assert "weight_decay 0.005" in rem["less_regularization"].evidence


@pytest.mark.parametrize("val_errors,ref,expect_name,expect_side", [
    ([0.12, 0.10, 0.09], 32, "wider_model", "bias"),       # best at 64 > 32: more capacity
    ([0.08, 0.10, 0.12], 32, "narrower_model", "variance"),  # best at 16 < 32: less
])
def test_complexity_curve_direction(val_errors, ref, expect_name, expect_side):
    values = [16, 32, 64]
    best = values[int(np.argmin(val_errors))]
    res = _results(train=0.04, val=0.10, config={"width": ref},
                   complexity_curve={"param": "width", "values": values, "seeds": [0],
                                     "train_error": summarize(np.array([[.06], [.04], [.02]])),
                                     "val_error": summarize(np.array(val_errors)[:, None]),
                                     "best_value": best})
    v = verdict(res)
    rem = {r.name: r for r in v.remedies}
    assert rem[expect_name].addresses == expect_side
    assert rem[expect_name].action == f"--width {best}"
    assert rem[expect_name].predicted_gain == pytest.approx(0.10 - min(val_errors))
    assert v.label == "high_variance"
    if expect_side == "variance":
        assert v.remedies[0].name == expect_name  # the only measured gain on the flagged side
    else:  # the other side's measured gain follows the variance remedies, labelled
        assert v.remedies[-1].name == expect_name
        assert rem[expect_name].evidence.startswith("(addresses bias; measured, though the "
                                                    "verdict is high variance)")
    assert any("chosen on validation" in c for c in v.caveats)


def test_complexity_curve_reference_value_and_regularisation_direction():
    # weight decay lower than the reference's is best: less regularisation, addressing bias
    cc = {"param": "weight_decay", "values": [0.0, 0.0005, 0.005], "reference_value": 0.005,
          "seeds": [0],
          "train_error": summarize(np.array([[.02], [.03], [.06]])),
          "val_error": summarize(np.array([[.09], [.085], [.10]])), "best_value": 0.0005}
    v = verdict(_results(train=0.06, val=0.10, complexity_curve=cc))
    rem = {r.name: r for r in v.remedies}
    assert rem["less_regularization"].addresses == "bias"
    assert rem["less_regularization"].action == "--weight-decay 0.0005"
    assert rem["less_regularization"].predicted_gain == pytest.approx(0.015)


def test_complexity_curve_unknown_param_takes_side_from_train_error():
    cc = {"param": "batch_size", "values": [32, 128], "reference_value": 128, "seeds": [0],
          "train_error": summarize(np.array([[.03], [.05]])),
          "val_error": summarize(np.array([[.08], [.09]])), "best_value": 32}
    rem = {r.name: r for r in verdict(_results(train=0.05, val=0.09,
                                                  complexity_curve=cc)).remedies}
    assert rem["set_batch_size"].addresses == "bias"  # lower train error: more capacity
    assert rem["set_batch_size"].action == "--batch-size 32"


def test_complexity_curve_without_reference_value_uses_the_edge():
    res = _results(train=0.09, val=0.10,
                   complexity_curve={"param": "depth", "values": [1, 2, 3], "seeds": [0],
                                     "train_error": summarize(np.zeros((3, 1))),
                                     "val_error": summarize(np.array([[.12], [.11], [.10]])),
                                     "best_value": 3})
    rem = {r.name: r for r in verdict(res).remedies}
    assert rem["deeper_model"].action == "--depth 3"
    assert rem["deeper_model"].predicted_gain is None


# ----------------------------------------------------------------------------- evidence

def _full_results() -> dict:
    res = _results(train=0.081, val=0.121, test=0.125,
                   learning_curve=_learning_curve(2.0, 0.5, 0.06),
                   decomposition=_decomposition(0.125, 0.09, 0.105, se=0.02, rounds=3),
                   config={"width": 32, "depth": 2, "epochs": 10, "lr": 0.002,
                           "weight_decay": 0.0005, "dropout": 0.1, "augment": "none"})
    res["reference"]["history"] = [{"epoch": i + 1, "train_loss": 0.9 * 0.9 ** i}
                                   for i in range(10)]
    res["complexity_curve"] = {"param": "width", "values": [16, 32, 64], "seeds": [0],
                               "train_error": summarize(np.array([[.1], [.081], [.06]])),
                               "val_error": summarize(np.array([[.13], [.121], [.11]])),
                               "best_value": 64}
    return res


def test_every_evidence_string_cites_a_number_of_the_input():
    res = _full_results()
    v = verdict(res)
    known = _renderings(res)
    strings = v.evidence + [r.evidence for r in v.remedies]
    assert len(v.evidence) >= 7
    for s in strings:
        cited = re.findall(r"\d[\d,]*(?:\.\d+)?", s)
        assert any(c in known for c in cited), f"no input number cited in: {s!r}"


def test_caveats_name_what_cannot_be_separated():
    v = verdict(_full_results())
    text = " ".join(v.caveats)
    assert "label noise" in text and "Bayes" in text
    assert "optimistic" in text and "12.5%" in text          # test error as the honest number
    assert "3 rounds" in text and "standard error" in text   # se_models large vs the term
    few = _results(train=0.05, val=0.09,
                   learning_curve={"sizes": [1000, 2000, 4000], "seeds": [0],
                                   "train_error": summarize(np.zeros((3, 1))),
                                   "val_error": summarize(np.array([[.2], [.15], [.12]])),
                                   "power_law": fit_power_law([1000, 2000, 4000],
                                                              [.2, .15, .12])})
    v = verdict(few)
    text = " ".join(v.caveats)
    assert "power law is not extrapolated: only 3 distinct training-set sizes" in text
    assert "one seed" in text
    assert any("its power law is not extrapolated" in e for e in v.evidence)
    assert all(r.predicted_gain is None for r in v.remedies)
    bad = _results(train=0.05, val=0.09, learning_curve={
        "sizes": [1000, 2000], "seeds": [0], "train_error": summarize(np.zeros((2, 1))),
        "val_error": summarize(np.array([[.2], [.15]])),
        "power_law": fit_power_law([1000, 2000], [.2, .15])})
    assert any("no usable power-law fit" in c for c in verdict(bad).caveats)


def test_verdict_is_json_serialisable_and_has_schema_keys():
    v = verdict(_full_results())
    assert isinstance(v, Verdict)
    json.dumps(v.to_dict(), allow_nan=False)
    assert set(v.to_dict()) == {"label", "evidence", "caveats", "remedies", "thresholds"}
    assert v.label in LABELS
    for r in v.remedies:
        assert set(r.to_dict()) == {"rank", "name", "action", "addresses", "evidence",
                                    "predicted_gain"}
        assert r.addresses in ("bias", "variance") and r.action
        assert r.predicted_gain is None or isinstance(r.predicted_gain, float)


# ----------------------------------------------------------------------------- robustness

def test_minimal_results_do_not_crash():
    res = {"reference": {"train": {"error": 0.081}, "val": {"error": 0.09},
                         "test": {"error": 0.095}},
           "target_error": {"value": 0.037, "source": "x"}}
    v = verdict(res)
    assert v.label == "high_bias"
    json.dumps(v.to_dict(), allow_nan=False)


@pytest.mark.parametrize("res", [
    {},
    {"reference": {}},
    {"reference": {"train": {"accuracy": 0.9}}, "target_error": 0.05},
    {"reference": None, "target_error": None, "learning_curve": None, "decomposition": None},
    {"reference": {"train": {"error": None}, "val": {"error": "n/a"}, "history": "bad"},
     "learning_curve": {"sizes": [1, None], "power_law": {"ok": True, "gain_2x": None}},
     "complexity_curve": {"param": "width", "values": [1, 2], "val_error": {"mean": [None, 0.1]}},
     "decomposition": {"rounds": 2, "zero_one": {"loss": {"value": 0.0}}}},
    {"avoidable_bias": 0.05, "variance_gap": 0.01},
])
def test_missing_or_odd_keys_never_crash(res):
    v = verdict(res)
    assert v.label in LABELS
    json.dumps(v.to_dict(), allow_nan=False)


def test_stored_keys_are_used_when_reference_is_missing():
    v = verdict({"avoidable_bias": 0.05, "variance_gap": 0.03,
                 "train_loss_still_falling": {"value": True, "relative_drop": 0.1,
                                              "evidence": "loss fell 10.0%"}})
    assert v.label == "both"
    assert "train_longer" in [r.name for r in v.remedies]


# ----------------------------------------------------------------------------- targets

def test_targets_table():
    assert target_error("fashion-mnist")["value"] == pytest.approx(1 - 0.963)
    assert target_error("Fashion_MNIST")["value"] == 0.037
    assert target_error("mnist")["value"] == pytest.approx(0.0021)
    assert 0 < target_error("cifar10")["value"] < 0.07
    assert "estimate" in target_error("digits")["source"]
    for name, (value, source) in KNOWN_TARGETS.items():
        assert 0 <= value < 1 and len(source) > 20, name


def test_target_override_and_errors():
    out = target_error("imagefolder:/data/cats", override=0.05)
    assert out["value"] == 0.05 and "--target-error" in out["source"]
    assert "3.70%" in target_error("fashion-mnist", override=0.02)["source"]
    with pytest.raises(ConfigError, match="--target-error"):
        target_error("imagefolder:/data/cats")
    with pytest.raises(ConfigError, match="Did you mean 'cifar10'"):
        target_error("cifar100")
    for bad in (1.0, -0.1, float("nan"), "0.1", True):
        with pytest.raises(ConfigError, match="target_error"):
            target_error("mnist", override=bad)


def test_remedies_follow_the_side_the_verdict_flags():
    # high bias only (gap 1 point), but the learning curve measures a gain from more data
    res = _results(train=0.09, val=0.10, learning_curve=_learning_curve(2.0, 0.5, 0.05),
                   config={"width": 32, "epochs": 10, "lr": 0.002})
    v = verdict(res)
    assert v.label == "high_bias"
    first, *rest = v.remedies
    assert first.addresses == "bias" and first.predicted_gain is None
    param = {"wider_model": "width", "train_longer": "epochs"}[first.name]
    assert f"--param {param}" in first.evidence  # how to measure it
    more = v.remedies[-1]
    assert more.name == "more_data" and more.addresses == "variance"
    assert more.predicted_gain == pytest.approx(res["learning_curve"]["power_law"]["gain_2x"])
    assert "(addresses variance; measured, though the verdict is high bias)" in more.evidence
    # when both sides are flagged, measured gains lead and nothing is labelled
    both = verdict(_results(train=0.10, val=0.14, learning_curve=_learning_curve(2.0, 0.5, 0.05)))
    assert both.remedies[0].name == "more_data"
    assert not any("though the verdict" in r.evidence for r in both.remedies)


def test_train_longer_points_at_the_configured_epochs_when_the_profile_capped_them():
    falling = [{"epoch": i + 1, "train_loss": 0.8 * 0.7 ** i} for i in range(3)]
    res = _results(train=0.09, val=0.10, config={"epochs": 3, "lr": 0.002, "width": 32})
    res["reference"]["history"] = falling
    plain = {r.name: r for r in verdict(res).remedies}["train_longer"]
    assert plain.action == "--epochs 6 and --lr 0.004"
    res["epochs_capped"] = {"fits": 3, "configured": 10}
    capped = {r.name: r for r in verdict(res).remedies}["train_longer"]
    assert capped.action.startswith("train the configured 10 epochs")
    assert "trained 3 of the configured 10 epochs" in capped.evidence
    # the command that would measure it sweeps around the configured budget
    res["learning_curve"] = _learning_curve(2.0, 0.5, 0.05)
    first = verdict(res).remedies[0]
    assert first.name == "train_longer" and "--param epochs --values 5,10,20" in first.evidence


def _curve_from_runs(sizes: list[int], runs: list[list[float]]) -> dict:
    """A learning curve block with ragged seeds and the power law of ``power_law``."""
    means = [float(np.mean(r)) for r in runs]
    band = {"mean": means, "lo": means, "hi": means, "values": runs}
    return {"sizes": sizes, "seeds": [0, 1, 2], "train_error": band, "val_error": band,
            "power_law": power_law(sizes, runs, n_max=max(sizes))}


def test_learning_curve_evidence_quotes_the_interval_or_the_refusal():
    sizes = [3000, 6000, 12000, 24000, 54000]
    rng = np.random.default_rng(0)
    runs = [list(2.0 * n ** -0.5 + 0.05 + rng.normal(0, 0.001, k))
            for n, k in zip(sizes, [3, 2, 3, 2, 3])]
    res = _results(train=0.04, val=0.09, learning_curve=_curve_from_runs(sizes, runs))
    pl = res["learning_curve"]["power_law"]
    assert pl["extrapolates"] and pl["gain_2x_ci"] is not None
    v = verdict(res)
    lo, hi = pl["gain_2x_ci"]
    quoted = f"{100 * pl['gain_2x']:.1f} points [{100 * lo:.1f}, {100 * hi:.1f}]"
    assert any(e.startswith("learning curve") and quoted in e for e in v.evidence)
    more = {r.name: r for r in v.remedies}["more_data"]
    assert f"predicted gain {quoted}" in more.evidence
    # the curve: a floor pinned at 0 — no gain anywhere, the reason in the notes
    pinned = [[e - 0.001, e + 0.001] for e in 1.41 * np.array(sizes, float) ** -0.266 + 2.24e-7]
    v = verdict(_results(train=0.04, val=0.09, learning_curve=_curve_from_runs(sizes, pinned)))
    assert any("its power law is not extrapolated" in e for e in v.evidence)
    assert any("power law is not extrapolated: the fitted floor c" in c and "pinned at 0" in c
               for c in v.caveats)
    more = {r.name: r for r in v.remedies}["more_data"]
    assert more.predicted_gain is None and "pinned at 0" in more.evidence


# ----------------------------------------------------------------------------- console summary

def test_console_shows_intervals_refusals_noise_floor_and_steps():
    from biasvar.analysis._console import format_results
    from biasvar.analysis._results import Results

    sizes = [3000, 6000, 12000, 24000, 54000]
    rng = np.random.default_rng(0)
    runs = [list(2.0 * n ** -0.5 + 0.05 + rng.normal(0, 0.001, 3)) for n in sizes]
    lc = _curve_from_runs(sizes, runs)
    lc["points"] = [{"size": n, "seed": s, "train_error": 0.01, "val_error": v,
                     "steps": 4000 + 10 * s * (n < 54000), "epochs": 3}
                    for n, r in zip(sizes, runs) for s, v in enumerate(r)]
    lc["policy"] = "the full-size fit's budget in steps"
    res = _results(train=0.04, val=0.09, learning_curve=lc,
                   noise_floor={"rate": 0.023, "lo": 0.019, "hi": 0.028, "n": 54000,
                                "method": "confident learning", "n_issues": 1242})
    r = Results.from_dict(res)
    text = format_results(r.replace(verdict=verdict(r)))
    pl = lc["power_law"]
    lo, hi = pl["gain_2x_ci"]
    ci = f"[{100 * lo:.1f}, {100 * hi:.1f}]"
    assert f"gain at 2× {100 * pl['gain_2x']:.1f} points {ci}" in text
    assert "(95% intervals over 200 resamples of the seeds)" in text
    assert f"(predicted gain {100 * pl['gain_2x']:.1f} points {ci})" in text  # more data
    assert ("label noise (estimated by confident learning): 2.3% of 54,000 training labels, "
            "95% interval [1.9%, 2.8%]; 1,242 images flagged") in text
    rows = {line.split()[0]: line.split() for line in text.splitlines()
            if line.split() and line.split()[0].isdigit() and len(line.split()) == 5}
    assert rows["3000"][1:3] == ["3", "4,000–4,020"] and rows["54000"][1:3] == ["3", "4,000"]
    assert "optimizer steps per point: the full-size fit's budget in steps" in text
    # a refused power law: the reason, no 2× figure, no predicted gain for more data
    pinned = [[e - 0.001, e + 0.001] for e in 1.41 * np.array(sizes, float) ** -0.266 + 2.24e-7]
    r = Results.from_dict(_results(train=0.04, val=0.09,
                                   learning_curve=_curve_from_runs(sizes, pinned)))
    text = format_results(r.replace(verdict=verdict(r)))
    line = next(x for x in text.splitlines() if x.startswith("power law:"))
    assert "not extrapolated: the fitted floor c" in line and "at 2× data" not in line
    assert "predicted gain" not in text


# ----------------------------------------------------------------------- confused classes

#: the Fashion-MNIST test confusion matrix of the default CNN (a quick diagnose's reference)
FM_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
              "Sneaker", "Bag", "Ankle boot"]
FM_CM = [[881, 0, 16, 19, 5, 1, 72, 0, 6, 0], [2, 974, 0, 18, 1, 0, 3, 0, 2, 0],
         [17, 2, 851, 7, 58, 0, 63, 0, 2, 0], [16, 4, 9, 913, 26, 0, 31, 0, 1, 0],
         [2, 0, 58, 24, 866, 0, 49, 0, 1, 0], [0, 0, 0, 0, 0, 975, 0, 21, 0, 4],
         [134, 3, 59, 25, 77, 0, 689, 0, 13, 0], [0, 0, 0, 0, 0, 7, 0, 971, 0, 22],
         [1, 1, 0, 4, 3, 1, 3, 4, 983, 0], [0, 0, 0, 0, 0, 4, 1, 37, 0, 958]]


def _errors_by_pair(y_true: list[int], y_pred: list[int]) -> dict[frozenset, int]:
    """Independently of the matrix: count each wrong prediction under its unordered pair."""
    out: dict[frozenset, int] = {}
    for t, p in zip(y_true, y_pred):
        if t != p:
            out[frozenset((t, p))] = out.get(frozenset((t, p)), 0) + 1
    return out


def test_confusions_found_from_the_labels_themselves():
    from sklearn.metrics import confusion_matrix

    from biasvar.metrics import confusions

    # the predictions behind FM_CM, expanded to one label pair per image
    y_true = [i for i, row in enumerate(FM_CM) for j, n in enumerate(row) for _ in range(n)]
    y_pred = [j for i, row in enumerate(FM_CM) for j, n in enumerate(row) for _ in range(n)]
    cm = confusion_matrix(y_true, y_pred)
    c = confusions(cm, FM_CLASSES)
    pairs = _errors_by_pair(y_true, y_pred)
    errors = sum(pairs.values())
    assert c["errors"] == errors
    top = sorted(pairs.items(), key=lambda kv: -kv[1])[:3]
    assert [(frozenset((FM_CLASSES.index(a), FM_CLASSES.index(b))), n)
            for a, b, n in c["pairs"]] == top
    group = {FM_CLASSES.index(x) for x in c["group"]}
    assert {FM_CLASSES[i] for i in group} == {"T-shirt/top", "Pullover", "Coat", "Shirt"}
    within = sum(n for pair, n in pairs.items() if pair <= group)
    assert c["group_errors"] == within and within / errors > 0.6  # "two thirds"


def test_verdict_names_the_confused_classes_as_evidence():
    r = _results(0.073, 0.085, 0.094, classes=FM_CLASSES)
    r["reference"]["test"]["confusion_matrix"] = FM_CM
    v = verdict(r)
    assert v.label == "high_bias"
    ev = [e for e in v.evidence if "confused" in e]
    assert len(ev) == 1
    assert "T-shirt/top ↔ Shirt 206 (21.9%)" in ev[0]
    assert "65.0% of the errors are confusions among T-shirt/top, Pullover, Coat and Shirt" in ev[0]
    assert "part of the bias" in ev[0]
    # few errors say nothing: no confusion evidence
    few = [[30, 1, 0], [0, 30, 2], [1, 0, 30]]
    r = _results(0.073, 0.085, 0.094, classes=["a", "b", "c"])
    r["reference"]["test"]["confusion_matrix"] = few
    assert not [e for e in verdict(r).evidence if "confused" in e]
