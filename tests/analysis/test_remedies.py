"""Tests of the remedy rules (biasvar.analysis._remedies), one rule at a time.

Inputs are typed :class:`Results` built from small results.json mappings; expected actions and
commands are computed here from the inputs, not read from the knob table.
"""
from __future__ import annotations

import pytest

from biasvar.analysis._remedies import Facts, Thresholds, rank, remedies
from biasvar.analysis._results import EpochsCapped, Reference, Remedy, Results
from biasvar.knobs import REMEDIES

TARGET = 0.037


def _band(values: list[float]) -> dict:
    return {"mean": values, "lo": values, "hi": values}


def _term(value: float, se: float = 0.001) -> dict:
    return {"value": value, "ci95": [value - 2 * se, value + 2 * se], "se_models": se}


def _results(train: float, val: float, **blocks) -> Results:
    """A run with the reference's errors, the target error and any other blocks."""
    return Results.from_dict({"reference": {"train": {"error": train}, "val": {"error": val}},
                              "target_error": {"value": TARGET, "source": "test"}, **blocks})


def _history(losses: list[float]) -> list[dict]:
    return [{"epoch": i + 1, "train_loss": v} for i, v in enumerate(losses)]


def _with_history(r: Results, losses: list[float]) -> Results:
    return r.replace(reference=Reference.from_dict({**r.reference.to_dict(),
                                                    "history": _history(losses)}))


FALLING = [0.8 * 0.8 ** i for i in range(10)]
FLAT = [0.3] * 10


def _learning_curve(gain_2x: float, err: float = 0.08, **power_law) -> dict:
    return {"sizes": [6000, 12000, 24000, 54000], "seeds": [0, 1],
            "train_error": _band([0.01, 0.01, 0.01, 0.01]),
            "val_error": _band([0.12, 0.10, 0.09, err]),
            "power_law": {"ok": True, "a": 2.0, "b": 0.5, "c": 0.05, "n_max": 54000,
                          "err_at_n_max": err, "err_2x": err - gain_2x, "gain_2x": gain_2x,
                          **power_law}}


def _decomposition(loss: float, bias: float, ens_error: float | None, *, ce_risk: float = 0.3,
                   ce_var: float = 0.03, rounds: int = 8) -> dict:
    net = loss - bias
    d = {"rounds": rounds, "sampling": "bootstrap", "n_test": 10000,
         "zero_one": {"loss": _term(loss), "bias": _term(bias), "variance": _term(1.5 * net),
                      "net_variance": _term(net)},
         "mse": {"risk": _term(0.1), "bias2": _term(0.08), "variance": _term(0.02)},
         "cross_entropy": {"risk": _term(ce_risk), "bias": _term(ce_risk - ce_var),
                           "variance": _term(ce_var), "variance_jackknife": _term(ce_var)}}
    if ens_error is not None:
        d["ensemble"] = {"error": ens_error, "cross_entropy": ce_risk - ce_var}
    return d


def _curve(param: str, values: list, train: list[float], val: list[float], **more) -> dict:
    return {"param": param, "values": values, "seeds": [0], "train_error": _band(train),
            "val_error": _band(val), **more}


def _by_name(rs: list[Remedy]) -> dict[str, Remedy]:
    return {r.name: r for r in rs}


def _names(rs: list[Remedy]) -> list[str]:
    return [r.name for r in rs]


# ----------------------------------------------------------------------------- bias side

def test_loss_still_falling_puts_train_longer_first():
    r = _with_history(_results(0.09, 0.10, config={"epochs": 10, "lr": 0.002}), FALLING)
    rs = remedies(r)
    assert rs[0].name == "train_longer" and rs[0].addresses == "bias"
    assert rs[0].action == f"--epochs {2 * 10} and --lr {2 * 0.002:g}"
    assert rs[0].predicted_gain is None
    assert "still falling" in rs[0].evidence


def test_flat_loss_puts_wider_model_first_and_drops_train_longer():
    r = _with_history(_results(0.09, 0.10, config={"width": 48}), FLAT)
    rs = remedies(r)
    assert rs[0].name == "wider_model" and rs[0].action == f"--width {2 * 48}"
    assert "flattened" in rs[0].evidence
    assert "train_longer" not in _names(rs)
    assert {r.addresses for r in rs} == {"bias"}


def test_capped_quick_profile_changes_the_train_longer_action():
    r = _with_history(_results(0.09, 0.10, config={"epochs": 3, "lr": 0.002}), FALLING[:3])
    assert _by_name(remedies(r))["train_longer"].action == "--epochs 6 and --lr 0.004"
    capped = _by_name(remedies(r.replace(epochs_capped=EpochsCapped(fits=3, configured=12))))
    capped = capped["train_longer"]
    assert capped.action.startswith("train the configured 12 epochs")
    assert "not the 3 of this quick diagnosis" in capped.action
    assert "trained 3 of the configured 12 epochs" in capped.evidence


def test_less_regularization_only_when_the_config_regularises():
    assert "less_regularization" not in _names(remedies(_results(0.09, 0.10)))
    assert "less_regularization" not in _names(remedies(_results(
        0.09, 0.10, config={"weight_decay": 0.0, "dropout": 0.0, "augment": "none"})))
    reg = _by_name(remedies(_results(0.09, 0.10, config={"weight_decay": 0.002,
                                                          "augment": "standard"})))
    less = reg["less_regularization"]
    assert less.addresses == "bias"
    assert less.action == f"--weight-decay {0.002 / 10:g} --augment light"
    assert "weight_decay 0.002" in less.evidence and "augment standard" in less.evidence


# ----------------------------------------------------------------------------- variance side

def test_measured_learning_curve_gain_adds_more_data_with_that_gain():
    r = _results(0.04, 0.09, learning_curve=_learning_curve(0.012), config={"train_subset": 5000})
    more = _by_name(remedies(r))["more_data"]
    assert more.predicted_gain == pytest.approx(0.012)
    assert more.action == "--train-subset 10000"
    assert "8.0% → 6.8% at 2× data" in more.evidence
    assert remedies(r)[0].name == "more_data"  # the only measured gain


def test_unmeasured_more_data_says_how_to_measure_it():
    more = _by_name(remedies(_results(0.04, 0.09)))["more_data"]
    assert more.predicted_gain is None
    assert "`biasvar curve learning`" in more.evidence


def test_ensemble_gain_comes_from_the_decomposition():
    r = _results(0.04, 0.09, decomposition=_decomposition(0.10, 0.07, 0.085, rounds=6))
    ens = _by_name(remedies(r))["ensemble"]
    assert ens.predicted_gain == pytest.approx(0.10 - 0.085)
    assert "6 models" in ens.action and "`biasvar ensemble --members 6`" in ens.action
    assert "8.5% vs 10.0%" in ens.evidence and "0.030 nats" in ens.evidence
    # no ensemble error stored: the CE variance term is cited, no 0-1 gain predicted
    ce_only = _by_name(remedies(_results(0.04, 0.09, decomposition=_decomposition(
        0.10, 0.07, None, ce_var=0.045))))["ensemble"]
    assert ce_only.predicted_gain is None and "0.045 nats" in ce_only.evidence


# ----------------------------------------------------------------------------- complexity curve

@pytest.mark.parametrize("configured", [16, 32])
def test_curve_best_width_above_the_configured_one_yields_wider_model(configured):
    values, val = [16, 32, 64], [0.12, 0.11, 0.095]
    r = _results(0.05, 0.10, config={"width": configured},
                 complexity_curve=_curve("width", values, [0.06, 0.05, 0.03], val,
                                         best_value=64))
    wider = _by_name(remedies(r))["wider_model"]  # the verdict is high variance: listed after
    assert wider.addresses == "bias"
    assert wider.action == "--width 64"
    assert wider.predicted_gain == pytest.approx(val[values.index(configured)] - 0.095)
    assert f"at the current {configured}" in wider.evidence


def test_curve_best_width_below_the_configured_one_yields_narrower_model():
    r = _results(0.04, 0.10, config={"width": 64},
                 complexity_curve=_curve("width", [16, 32, 64], [0.06, 0.05, 0.04],
                                         [0.10, 0.09, 0.10]))
    narrower = remedies(r)[0]
    assert (narrower.name, narrower.addresses, narrower.action) == (
        "narrower_model", "variance", "--width 32")
    assert narrower.predicted_gain == pytest.approx(0.01)


@pytest.mark.parametrize("param,values,ref,best,name,side", [
    ("depth", [1, 2, 3], 2, 3, "deeper_model", "bias"),
    ("depth", [1, 2, 3], 2, 1, "shallower_model", "variance"),
    ("epochs", [5, 10, 20], 10, 20, "train_longer", "bias"),
    ("epochs", [5, 10, 20], 10, 5, "early_stopping", "variance"),
    ("dropout", [0.0, 0.2, 0.4], 0.2, 0.4, "dropout", "variance"),
    ("dropout", [0.0, 0.2, 0.4], 0.2, 0.0, "less_regularization", "bias"),
    ("weight_decay", [0.0, 0.0005, 0.005], 0.0005, 0.005, "weight_decay", "variance"),
    ("label_smoothing", [0.0, 0.05, 0.1], 0.05, 0.1, "label_smoothing", "variance"),
    ("l1", [0.0, 1e-5, 1e-4], 1e-5, 1e-4, "l1_penalty", "variance"),
    ("augment_strength", [0.0, 1.0, 2.0], 1.0, 2.0, "augmentation", "variance"),
    ("lr", [0.0003, 0.001, 0.003], 0.001, 0.003, "tune_lr", "bias"),
])
def test_curve_over_a_table_knob_names_its_remedy_and_side(param, values, ref, best, name,
                                                           side):
    val = [0.10 if v == best else 0.12 for v in values]
    r = _results(0.05, 0.10, complexity_curve=_curve(param, values, [0.05] * len(values), val,
                                                     reference_value=ref))
    rem = _by_name(remedies(r))[name]
    assert rem.addresses == side
    assert rem.action == f"--{param.replace('_', '-')} {best:g}"
    assert rem.predicted_gain == pytest.approx(0.02)


@pytest.mark.parametrize("train,side", [([0.03, 0.05], "bias"), ([0.07, 0.05], "variance")])
def test_curve_on_an_unknown_param_yields_set_param(train, side):
    r = _results(0.05, 0.09, complexity_curve=_curve("batch_size", [32, 128], train,
                                                     [0.08, 0.09], reference_value=128))
    rem = _by_name(remedies(r))["set_batch_size"]
    assert rem.addresses == side  # a value that lowers the train error adds capacity
    assert rem.action == "--batch-size 32"
    assert rem.predicted_gain == pytest.approx(0.01)


# ----------------------------------------------------------------------------- ranking

def test_a_gain_below_min_gain_ranks_after_the_unmeasured_remedies():
    r = _results(0.04, 0.09, learning_curve=_learning_curve(0.001))
    rs = remedies(r)
    assert rs[-1].name == "more_data" and rs[-1].predicted_gain == pytest.approx(0.001)
    assert all(x.predicted_gain is None for x in rs[:-1]) and len(rs) > 1
    # the same gain counts once the threshold is below it: first
    assert remedies(r, Thresholds(min_gain=0.0005))[0].name == "more_data"


def test_measured_gains_rank_first_largest_first():
    r = _results(0.10, 0.14, learning_curve=_learning_curve(0.004),
                 decomposition=_decomposition(0.14, 0.11, 0.13))
    rs = remedies(r)
    assert _names(rs)[:2] == ["ensemble", "more_data"]  # 1.0 points, then 0.4
    assert [x.rank for x in rs] == list(range(1, len(rs) + 1))


def test_balanced_near_target_offers_two_small_remedies_of_the_larger_side():
    rs = remedies(_results(TARGET + 0.015, TARGET + 0.020))  # bias 1.5, gap 0.5 points
    assert _names(rs) == ["wider_model", "deeper_model"]
    assert all("expect a small gain" in x.evidence for x in rs)


def test_measure_hint_names_the_width_sweep_around_the_configured_width():
    # an unmeasured first remedy ranked above a measured one says how to measure it
    width = 32
    r = _results(0.09, 0.10, learning_curve=_learning_curve(0.01), config={"width": width})
    first = remedies(r)[0]
    assert first.name == "wider_model" and first.predicted_gain is None
    sweep = f"{width // 2},{width},{2 * width}"
    assert (f"its gain is not measured: `biasvar curve complexity --param width --values "
            f"{sweep}` measures it") in first.evidence
    # with nothing measured after it, nothing needs saying
    assert "not measured" not in remedies(_results(0.09, 0.10, config={"width": width}))[0].evidence


# ----------------------------------------------------------------------------- the verdict's side

def test_high_bias_puts_bias_remedies_first_and_labels_measured_variance_gains():
    # the Fashion-MNIST run: high bias, and the learning curve predicts 1.3 points from 2× data
    r = _results(0.09, 0.10, learning_curve=_learning_curve(0.013))
    rs = remedies(r)
    assert Facts.of(r, Thresholds()).label == "high_bias"
    assert rs[0].addresses == "bias" and rs[0].predicted_gain is None
    sides = [x.addresses for x in rs]
    assert sides == sorted(sides)  # every bias remedy, then the variance ones
    more = rs[-1]
    assert more.name == "more_data" and more.predicted_gain == pytest.approx(0.013)
    assert more.evidence.startswith("(addresses variance; measured, though the verdict is high "
                                    "bias)")
    assert not any("though the verdict" in x.evidence for x in rs if x.addresses == "bias")
    # unmeasured variance remedies are not offered under a high-bias verdict
    assert {x.name for x in rs if x.addresses == "variance"} == {"more_data"}


def test_high_variance_puts_variance_remedies_first_and_labels_measured_bias_gains():
    # a complexity curve measures 3 points from a wider model, the largest gain here
    r = _results(0.05, 0.10, config={"width": 32}, learning_curve=_learning_curve(0.005),
                 complexity_curve=_curve("width", [16, 32, 64], [0.06, 0.05, 0.03],
                                         [0.13, 0.12, 0.09]))
    rs = remedies(r)
    assert Facts.of(r, Thresholds()).label == "high_variance"
    assert (rs[0].name, rs[0].addresses) == ("more_data", "variance")  # the measured one first
    assert [x.addresses for x in rs[:-1]] == ["variance"] * (len(rs) - 1)
    wider = rs[-1]
    assert wider.name == "wider_model" and wider.predicted_gain == pytest.approx(0.03)
    assert wider.evidence.startswith("(addresses bias; measured, though the verdict is high "
                                     "variance)")


def test_both_and_balanced_rank_by_predicted_gain():
    blocks = {"learning_curve": _learning_curve(0.004),
              "decomposition": _decomposition(0.14, 0.11, 0.13),
              "config": {"width": 32},
              "complexity_curve": _curve("width", [16, 32, 64], [0.1, 0.09, 0.07],
                                         [0.15, 0.14, 0.12])}
    both = remedies(_results(0.10, 0.14, **blocks))  # bias 6.3 points, gap 4 points
    assert [(x.name, x.predicted_gain) for x in both[:3]] == [
        ("wider_model", pytest.approx(0.02)), ("ensemble", pytest.approx(0.01)),
        ("more_data", pytest.approx(0.004))]
    rest = both[3:]
    assert all(x.predicted_gain is None for x in rest) and {x.addresses for x in rest} == {
        "bias", "variance"}
    # unmeasured: the existing order, bias first here (6.3/2 exceeds 4/2), a fixed order within
    assert [x.addresses for x in rest] == sorted(x.addresses for x in rest)
    assert not any("though the verdict" in x.evidence for x in both)
    near = _results(TARGET + 0.01, TARGET + 0.015, learning_curve=_learning_curve(0.004),
                    decomposition=_decomposition(0.06, 0.05, 0.054))
    assert Facts.of(near, Thresholds()).label == "balanced"
    assert [x.name for x in remedies(near)] == ["ensemble", "more_data"]  # 0.6, then 0.4 points


# ----------------------------------------------------------------------------- more data's gain

def test_more_data_quotes_no_gain_from_a_power_law_that_does_not_extrapolate():
    note = ("not extrapolated: the fitted floor c (the error with unlimited data) is 2.2e-07, "
            "pinned at 0, the lowest value the fit allows")
    lc = _learning_curve(0.013)
    lc["power_law"] |= {"extrapolates": False, "err_2x": None, "gain_2x": None, "note": note}
    more = _by_name(remedies(_results(0.04, 0.09, learning_curve=lc)))["more_data"]
    assert more.predicted_gain is None
    assert f"the learning curve predicts no gain: its power law is {note}" in more.evidence
    assert "predicts validation error" not in more.evidence
    # a fit stored before the refusal rules, its floor at 0: no gain quoted either
    old = _learning_curve(0.013, c=2.24e-07)
    more = _by_name(remedies(_results(0.04, 0.09, learning_curve=old)))["more_data"]
    assert more.predicted_gain is None and "pinned at 0" in more.evidence


def test_more_data_quotes_the_power_laws_interval():
    lc = _learning_curve(0.013, gain_2x_ci=[0.006, 0.021], resamples=200)
    more = _by_name(remedies(_results(0.04, 0.09, learning_curve=lc)))["more_data"]
    assert more.predicted_gain == pytest.approx(0.013)
    assert "predicted gain 1.3 points [0.6, 2.1]" in more.evidence
    plain = _by_name(remedies(_results(0.04, 0.09, learning_curve=_learning_curve(0.013))))
    assert plain["more_data"].evidence.endswith("predicted gain 1.3 points")


def test_every_remedy_cites_the_knob_tables_reason():
    r = _results(0.08, 0.13, config={"weight_decay": 0.0005, "lr": 0.001})
    rs = remedies(r)
    assert {x.addresses for x in rs} == {"bias", "variance"}
    for x in rs:
        assert REMEDIES.get(x.name).why in x.evidence, x.name
        assert x.addresses == REMEDIES.get(x.name).addresses


def test_rank_reads_the_facts_and_remedies_wraps_it():
    r = _results(0.09, 0.10)
    f = Facts.of(r, Thresholds())
    assert f.label == "high_bias" and f.avoidable == pytest.approx(0.09 - TARGET)
    assert rank(f) == remedies(r)


# -- transfer learning and distribution shift --------------------------------------------------

def _sized(train: float, val_error: float, n_train: int, **splits) -> Results:
    return Results.from_dict({"reference": {"train": {"error": train, "n": n_train},
                                            "val": {"error": val_error,
                                                    **splits.get("val", {})},
                                            **({"test": splits["test"]} if "test" in splits
                                               else {})},
                              "target_error": {"value": TARGET, "source": "test"}})


@pytest.mark.parametrize("n, offered", [(500, True), (10_000, True), (10_001, False)])
def test_transfer_is_offered_against_variance_on_small_data(n, offered):
    rs = remedies(_sized(0.01, 0.12, n))          # gap 11 points: high variance
    names = [r.name for r in rs]
    assert ("transfer" in names) is offered
    if offered:
        t = rs[names.index("transfer")]
        assert t.addresses == "variance" and f"--sizes {n}" in t.action
        assert "biasvar finetune --weights" in t.action
        assert names.index("more_data") < names.index("transfer") < names.index("ensemble")


def test_transfer_is_not_offered_without_high_variance():
    rs = remedies(_sized(0.10, 0.105, 500))      # high bias, no gap
    assert "transfer" not in [r.name for r in rs]


def _z(pv: float, nv: int, pt: float, nt: int) -> float:
    """The two-proportion z, written out independently of the module."""
    return (pt - pv) / ((pv * (1 - pv) / nv + pt * (1 - pt) / nt) ** 0.5)


@pytest.mark.parametrize("val, n_val, test, n_test", [
    (0.10, 6000, 0.13, 10000),    # z ≈ 5.9: a shift
    (0.10, 6000, 0.108, 10000),   # z ≈ 1.6: noise
    (0.10, 300, 0.13, 300),       # z ≈ 1.1: a small validation split cannot tell
    (0.13, 6000, 0.10, 10000),    # test better than validation: no shift flagged
])
def test_distribution_shift_is_flagged_when_test_exceeds_validation_beyond_noise(
        val, n_val, test, n_test):
    r = _sized(0.01, val, 50_000, val={"n": n_val}, test={"error": test, "n": n_test})
    rs = remedies(r)
    names = [x.name for x in rs]
    z = _z(val, n_val, test, n_test)
    assert ("distribution_shift" in names) is (z > 2.576)
    if z > 2.576:
        s = rs[names.index("distribution_shift")]
        assert s.addresses == "shift" and "biasvar shift RUN_DIR" in s.action
        assert f"z = {z:.1f}" in s.evidence and "(addresses" not in s.evidence
        assert s.rank == len(rs)  # after the flagged side's remedies


def test_no_shift_without_split_sizes():
    r = _sized(0.01, 0.10, 50_000, test={"error": 0.2})
    assert "distribution_shift" not in [x.name for x in remedies(r)]
