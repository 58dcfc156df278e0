"""The verdict: is the error bias, variance, both or neither — with evidence, caveats, remedies.

:func:`verdict` reads a results.json mapping (SCHEMA.md) and applies named, documented rules
(:class:`Thresholds`) to whatever measurements it holds: the reference model's train/val/test
errors and the target error (always), the training history, the learning and complexity curves,
and the bias-variance decomposition (when they were run). Every evidence sentence cites the
numbers it rests on; every remedy says what to run, which side it addresses and, when one was
measured, the error reduction it predicts.

Rules (fractions of error, "points" = percentage points):

* **high bias** when avoidable bias = train error − target error > ``bias_high``.
* **high variance** when variance gap = validation error − train error > ``variance_high``, or
  when the decomposition puts more than ``variance_share_high`` of the 0-1 loss in net variance
  or of the cross-entropy risk in variance.
* **both** / **balanced** accordingly; balanced still lists remedies with a measured gain.

Remedies are ranked: first those with a measured predicted gain >= ``min_gain`` (largest gain
first: more data from the learning curve's power law, ensembling from the decomposition, a
better width/depth/... from the complexity curve); then the unmeasured ones, by how far the
side they address exceeds its threshold, in a fixed order within a side; last those whose
measured gain is below ``min_gain``.

Example::

    >>> v = verdict({"reference": {"train": {"error": 0.081}, "val": {"error": 0.09}},
    ...              "target_error": {"value": 0.037, "source": "benchmark"}})
    >>> v["label"]
    'high_bias'
    >>> v["evidence"][0]
    'train error 8.1% vs target 3.7%: avoidable bias 4.4 points (above the 2.0-point threshold)'
    >>> [r["name"] for r in v["remedies"]][:2]
    ['wider_model', 'deeper_model']
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import ConfigError, suggest
from .curvefit import RELATIVE_DROP, loss_still_falling

__all__ = ["Thresholds", "verdict", "LABELS"]

LABELS = ("high_bias", "high_variance", "both", "balanced")

# Allowed range of each threshold: (low, high, low inclusive?); high is inclusive.
_THRESHOLD_RANGES: dict[str, tuple[float, float, bool]] = {
    "bias_high": (0.0, 1.0, True),
    "variance_high": (0.0, 1.0, True),
    "variance_share_high": (0.0, 1.0, False),
    "min_gain": (0.0, 1.0, True),
    "falling": (0.0, 1.0, True),
    "se_ratio": (0.0, 100.0, False),
}

#: Fewer learning-curve sizes than this make the power-law extrapolation fragile (a caveat).
_MIN_CURVE_SIZES = 4


@dataclass(frozen=True)
class Thresholds:
    """Named thresholds of the diagnosis rules; all are fractions (0.02 = 2 points of error).

    Attributes:
        bias_high: avoidable bias (train error − target error) above which bias is high.
            2 points: below that, gains need recipe-level effort (see the target sources).
        variance_high: variance gap (validation error − train error) above which variance is high.
        variance_share_high: share of the 0-1 loss due to net variance, or of the cross-entropy
            risk due to variance, above which variance is high (0.3 = 30 %).
        min_gain: smallest predicted error reduction (learning-curve gain at 2× data, ensemble
            gain, complexity-curve gain) counted as worth acting on; 0.2 points is about the
            sampling noise of an error measured on 10,000 test images at 90 % accuracy (0.3).
        falling: relative drop of the mean training loss between the last two 3-epoch windows
            above which the loss is "still falling" (see :func:`curvefit.loss_still_falling`).
        se_ratio: a decomposition term whose between-model standard error (``se_models``)
            exceeds this fraction of its value is flagged as not pinned down by the rounds run.
    """

    bias_high: float = 0.02
    variance_high: float = 0.02
    variance_share_high: float = 0.3
    min_gain: float = 0.002
    falling: float = RELATIVE_DROP
    se_ratio: float = 0.5

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            lo, hi, lo_incl = _THRESHOLD_RANGES[f.name]
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                  and math.isfinite(value)
                  and (value >= lo if lo_incl else value > lo) and value <= hi)
            if not ok:
                rng = f"{'[' if lo_incl else '('}{lo:g}, {hi:g}]"
                raise ConfigError(f"thresholds.{f.name}: {value!r} is out of range; use a number "
                                  f"in {rng} (a fraction: 0.02 means 2 points).")
            object.__setattr__(self, f.name, float(value))

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Thresholds:
        """Defaults overridden by ``d`` (keys as the attribute names, ``-`` read as ``_``).

        Raises:
            ConfigError: an unknown key (with the nearest known name) or a bad value.
        """
        if not d:
            return cls()
        if not isinstance(d, dict):
            raise ConfigError(f"thresholds: expected a mapping of name: number, got {d!r}.")
        names = [f.name for f in fields(cls)]
        values: dict[str, float] = {}
        for key, value in d.items():
            k = str(key).replace("-", "_")
            if k not in names:
                raise ConfigError(f"thresholds: unknown threshold {key!r}.{suggest(k, names)} "
                                  f"Known: {', '.join(names)}.")
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    raise ConfigError(f"thresholds.{k}: {value!r} is not a number; give a "
                                      "fraction such as 0.02.") from None
            values[k] = value
        return cls(**values)

    def to_dict(self) -> dict[str, float]:
        """``{name: value}`` as results.json's ``verdict.thresholds``."""
        return {k: float(v) for k, v in asdict(self).items()}


# ----------------------------------------------------------------------------------- helpers

def _num(x: Any) -> float | None:
    """A finite real number as float, else None (missing keys, null, NaN, text)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _pts(x: float) -> str:
    return f"{100 * x:.1f} points"


def _ratio(x: float | None, t: float) -> float:
    """How far x exceeds threshold t (1.0 = at the threshold); 0 when x is unknown."""
    if x is None:
        return 0.0
    if t > 0:
        return x / t
    return math.inf if x > 0 else 0.0


def _split_error(m: Any) -> float | None:
    """Error of one split's metrics dict: ``error``, or 1 − ``accuracy``."""
    e = _num(_get(m, "error"))
    if e is None and _num(_get(m, "accuracy")) is not None:
        e = 1.0 - float(m["accuracy"])
    return e


def _fmt_value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _same(a: Any, b: Any) -> bool:
    na, nb = _num(a), _num(b)
    if na is not None and nb is not None:
        return math.isclose(na, nb, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


# Complexity-curve parameters: (name, side) of the remedy when the best value is above / below
# the reference's. Parameters not listed take their side from the train error (lower → bias).
_CURVE_PARAMS: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "width": (("wider_model", "bias"), ("narrower_model", "variance")),
    "depth": (("deeper_model", "bias"), ("shallower_model", "variance")),
    "epochs": (("train_longer", "bias"), ("early_stopping", "variance")),
    "dropout": (("dropout", "variance"), ("less_regularization", "bias")),
    "weight_decay": (("weight_decay", "variance"), ("less_regularization", "bias")),
    "augment_strength": (("augmentation", "variance"), ("less_regularization", "bias")),
    "l1": (("l1_penalty", "variance"), ("less_regularization", "bias")),
    "label_smoothing": (("label_smoothing", "variance"), ("less_regularization", "bias")),
}

# Fixed order of the unmeasured remedies within a side (DESIGN.md's lists).
_BIAS_ORDER = ("wider_model", "deeper_model", "less_regularization", "tune_lr", "train_longer")
_BIAS_ORDER_FALLING = ("train_longer", "wider_model", "deeper_model", "less_regularization",
                       "tune_lr")
_VAR_ORDER = ("augmentation", "weight_decay", "dropout", "early_stopping", "more_data",
              "ensemble", "narrower_model", "shallower_model")


def _measure_hint(name: str, cfg: dict[str, Any]) -> str | None:
    """The command that would measure an unmeasured remedy's gain, or None."""
    if name == "more_data":
        return "`biasvar curve learning`"
    if name == "ensemble":
        return "`biasvar decompose`"
    param = {"wider_model": "width", "deeper_model": "depth", "train_longer": "epochs",
             "tune_lr": "lr", "augmentation": "augment_strength", "weight_decay": "weight_decay",
             "dropout": "dropout"}.get(name)
    if param is None:
        return None
    v = _num(cfg.get(param))
    if param in ("width", "epochs") and v:
        values = f"{int(v // 2)},{int(v)},{int(2 * v)}"
    elif param == "depth" and v is not None:
        values = ",".join(str(d) for d in (int(v) - 1, int(v), int(v) + 1) if d >= 0)
    elif param == "lr" and v:
        values = f"{v / 3:.2g},{v:.2g},{v * 3:.2g}"
    else:
        values = {"augment_strength": "0,0.5,1,2", "weight_decay": "0,0.0005,0.005",
                  "dropout": "0,0.2,0.4", "depth": "1,2,3", "width": "16,32,64",
                  "epochs": "5,10,20", "lr": "0.0003,0.001,0.003"}[param]
    return f"`biasvar curve complexity --param {param} --values {values}`"


def _explain_measured_first(chosen: list[dict[str, Any]], flagged: set[str],
                            cfg: dict[str, Any]) -> None:
    """A measured remedy for a side the verdict did not flag, ranked above the flagged side's
    unmeasured remedies, says why — and how to measure the first of those."""
    for i, c in enumerate(chosen):
        if not c["_measured"] or c["addresses"] in flagged:
            continue
        later = [d for d in chosen[i + 1:] if d["addresses"] in flagged and not d["_measured"]]
        if not later:
            return
        first = later[0]
        hint = _measure_hint(first["name"], cfg)
        c["evidence"] += (f"; ranked above the {first['addresses']} remedies because its gain is "
                          "measured and theirs are not"
                          + (f" ({hint} measures the first, {first['name'].replace('_', ' ')})"
                             if hint else ""))
        return


class _Facts:
    """Every number the rules use, read defensively from a results mapping (missing → None)."""

    def __init__(self, results: dict[str, Any], th: Thresholds):
        r = results if isinstance(results, dict) else {}
        self.config: dict[str, Any] = r.get("config") if isinstance(r.get("config"), dict) else {}
        ref = r.get("reference") if isinstance(r.get("reference"), dict) else {}
        self.train_err = _split_error(ref.get("train"))
        self.val_err = _split_error(ref.get("val"))
        self.test_err = _split_error(ref.get("test"))
        self.train_n = _num(_get(ref, "train", "n"))

        t = r.get("target_error")
        self.target = _num(t.get("value")) if isinstance(t, dict) else _num(t)
        self.target_source = t.get("source") if isinstance(t, dict) else None

        self.avoidable = _num(r.get("avoidable_bias"))
        if self.avoidable is None and self.train_err is not None and self.target is not None:
            self.avoidable = self.train_err - self.target
        self.gap = _num(r.get("variance_gap"))
        if self.gap is None and self.train_err is not None and self.val_err is not None:
            self.gap = self.val_err - self.train_err

        # a diagnose profile that trained fewer epochs than configured: {fits, configured}
        cap = r.get("epochs_capped")
        self.capped = (cap if isinstance(cap, dict) and _num(cap.get("fits")) is not None
                       and _num(cap.get("configured")) is not None else None)

        # Training loss: recomputed from the history (so the `falling` threshold applies), else
        # the stored judgement.
        history = ref.get("history")
        self.falling: dict[str, Any] | None = None
        if isinstance(history, list) and sum(isinstance(h, dict) and _num(h.get("train_loss"))
                                             is not None for h in history) >= 2:
            self.falling = loss_still_falling(history, threshold=th.falling)
        elif isinstance(r.get("train_loss_still_falling"), dict) and isinstance(
                r["train_loss_still_falling"].get("value"), bool):
            self.falling = r["train_loss_still_falling"]

        lc = r.get("learning_curve") if isinstance(r.get("learning_curve"), dict) else {}
        self.lc_present = bool(lc)
        sizes = lc.get("sizes") if isinstance(lc.get("sizes"), list) else []
        self.lc_sizes = [s for s in sizes if _num(s) is not None]
        self.lc_seeds = len(lc["seeds"]) if isinstance(lc.get("seeds"), list) else None
        means = _get(lc, "val_error", "mean")
        self.lc_val = [_num(x) for x in means] if isinstance(means, list) else []
        pl = lc.get("power_law") if isinstance(lc.get("power_law"), dict) else {}
        self.pl_ok = bool(pl.get("ok")) and _num(pl.get("gain_2x")) is not None
        self.pl = pl
        self.gain_2x = _num(pl.get("gain_2x")) if self.pl_ok else None

        self.cc = r.get("complexity_curve") if isinstance(r.get("complexity_curve"), dict) else {}

        dec = r.get("decomposition") if isinstance(r.get("decomposition"), dict) else {}
        self.dec_present = bool(dec)
        self.rounds = _num(dec.get("rounds"))
        self.sampling = dec.get("sampling") if isinstance(dec.get("sampling"), str) else None
        per_model = dec.get("n_train_per_model")
        per_model = [_num(n) for n in per_model] if isinstance(per_model, list) else []
        per_model = [n for n in per_model if n is not None]
        self.n_per_model = sum(per_model) / len(per_model) if per_model else None
        self.zo = {k: _get(dec, "zero_one", k) for k in ("loss", "bias", "variance",
                                                         "net_variance")}
        self.zo_loss = _num(_get(self.zo["loss"], "value"))
        self.zo_bias = _num(_get(self.zo["bias"], "value"))
        self.zo_netvar = _num(_get(self.zo["net_variance"], "value"))
        self.ce = {k: _get(dec, "cross_entropy", k) for k in ("risk", "bias", "variance")}
        self.ce_risk = _num(_get(self.ce["risk"], "value"))
        self.ce_bias = _num(_get(self.ce["bias"], "value"))
        self.ce_var = _num(_get(self.ce["variance"], "value"))
        self.ens_err = _num(_get(dec, "ensemble", "error"))
        self.ens_ce = _num(_get(dec, "ensemble", "cross_entropy"))
        self.share01 = (self.zo_netvar / self.zo_loss if self.zo_netvar is not None
                        and self.zo_loss else None)
        self.share_ce = (self.ce_var / self.ce_risk if self.ce_var is not None
                         and self.ce_risk else None)
        self.ens_gain = (self.zo_loss - self.ens_err if self.zo_loss is not None
                         and self.ens_err is not None else None)


class _Curve:
    """What the complexity curve says: best vs the reference's value, and the measured gain."""

    def __init__(self, cc: dict[str, Any], config: dict[str, Any]):
        self.param = cc.get("param") if isinstance(cc.get("param"), str) else None
        values = cc.get("values") if isinstance(cc.get("values"), list) else []
        val = _get(cc, "val_error", "mean")
        train = _get(cc, "train_error", "mean")
        n = len(values)
        self.values = values
        self.val = [_num(x) for x in val][:n] if isinstance(val, list) else []
        self.train = [_num(x) for x in train][:n] if isinstance(train, list) else []
        self.ok = bool(self.param) and n > 0 and len(self.val) == n and any(
            v is not None for v in self.val)
        if not self.ok:
            return
        self.best_i = min((i for i in range(n) if self.val[i] is not None),
                          key=lambda i: self.val[i])
        if "best_value" in cc:
            idx = [i for i in range(n) if _same(values[i], cc["best_value"])]
            if idx and self.val[idx[0]] is not None:
                self.best_i = idx[0]
        self.best = values[self.best_i]
        ref = cc.get("reference_value", config.get(self.param))
        idx = [i for i in range(n) if ref is not None and _same(values[i], ref)]
        self.ref = ref
        self.ref_i = idx[0] if idx else None
        self.gain = (self.val[self.ref_i] - self.val[self.best_i]
                     if self.ref_i is not None and self.val[self.ref_i] is not None else None)
        # direction of the suggested change: +1 more, -1 less, 0 none / unknown
        nb, nr = _num(self.best), _num(ref)
        nums = [_num(v) for v in values]
        if nb is not None and nr is not None:
            self.direction = (nb > nr) - (nb < nr)
        elif nb is not None and all(x is not None for x in nums) and ref is None:
            self.direction = 1 if nb == max(nums) else -1 if nb == min(nums) else 0
        else:
            self.direction = 0 if _same(self.best, ref) else 1

    def remedy(self) -> tuple[str, str] | None:
        """(name, side) of the remedy the curve points to, or None when it points nowhere."""
        if not self.ok or self.direction == 0:
            return None
        known = _CURVE_PARAMS.get(self.param)
        if known:
            return known[0] if self.direction > 0 else known[1]
        # unknown knob: a value that lowers the train error adds capacity (addresses bias)
        side = "variance"
        if self.ref_i is not None and len(self.train) == len(self.values):
            t_best, t_ref = self.train[self.best_i], self.train[self.ref_i]
            if t_best is not None and t_ref is not None and t_best < t_ref:
                side = "bias"
        return f"set_{self.param}", side


# ----------------------------------------------------------------------------------- verdict

def verdict(results: dict[str, Any], thresholds: Thresholds | None = None) -> dict[str, Any]:
    """Label, evidence, caveats and ranked remedies for one results.json mapping.

    Args:
        results: a results.json mapping (SCHEMA.md); every key is optional. ``config`` (the
            resolved config as a flat mapping) sharpens the remedies' CLI hints when present.
        thresholds: the rules' thresholds (default :class:`Thresholds()`).

    Returns:
        SCHEMA.md's ``verdict``: ``{"label", "evidence": [str], "caveats": [str],
        "remedies": [{"rank", "name", "action", "addresses", "evidence", "predicted_gain"}],
        "thresholds": {name: float}}``; ``predicted_gain`` is an absolute error reduction or None.
    """
    th = thresholds or Thresholds()
    f = _Facts(results, th)
    curve = _Curve(f.cc, f.config)

    bias_high = f.avoidable is not None and f.avoidable > th.bias_high
    gap_high = f.gap is not None and f.gap > th.variance_high
    share_high = any(s is not None and s > th.variance_share_high
                     for s in (f.share01, f.share_ce))
    variance_high = gap_high or share_high
    label = ("both" if bias_high and variance_high else "high_bias" if bias_high
             else "high_variance" if variance_high else "balanced")
    strength = {
        "bias": _ratio(f.avoidable, th.bias_high),
        "variance": max(_ratio(f.gap, th.variance_high),
                        _ratio(f.share01, th.variance_share_high),
                        _ratio(f.share_ce, th.variance_share_high)),
    }

    evidence = _evidence(f, curve, th, bias_high, gap_high, label)
    caveats = _caveats(f, curve, th, gap_high, share_high)
    remedies = _remedies(f, curve, th, label, bias_high, variance_high, strength)
    return {"label": label, "evidence": evidence, "caveats": caveats, "remedies": remedies,
            "thresholds": th.to_dict()}


def _bias_phrase(f: _Facts) -> str:
    if f.train_err is not None and f.target is not None:
        return (f"train error {_pct(f.train_err)} vs target {_pct(f.target)}: avoidable bias "
                f"{_pts(f.avoidable)}")
    return f"avoidable bias {_pts(f.avoidable)}" if f.avoidable is not None else "bias"


def _variance_phrase(f: _Facts, th: Thresholds) -> str:
    parts = []
    if f.gap is not None and (f.gap > th.variance_high or f.share01 is None):
        if f.val_err is not None and f.train_err is not None:
            parts.append(f"validation error {_pct(f.val_err)} vs train error "
                         f"{_pct(f.train_err)}: variance gap {_pts(f.gap)}")
        else:
            parts.append(f"variance gap {_pts(f.gap)}")
    if f.share01 is not None and f.zo_loss is not None and (not parts or f.share01 >
                                                           th.variance_share_high):
        parts.append(f"net variance {_pct(f.zo_netvar)} of a 0-1 loss of {_pct(f.zo_loss)}")
    elif f.share_ce is not None and f.ce_risk is not None and not parts:
        parts.append(f"cross-entropy variance {f.ce_var:.3f} of a risk of {f.ce_risk:.3f} nats")
    return "; ".join(parts) if parts else "variance"


def _evidence(f: _Facts, curve: _Curve, th: Thresholds, bias_high: bool, gap_high: bool,
              label: str) -> list[str]:
    ev: list[str] = []

    def side(high: bool, t: float) -> str:
        return ("above" if high else "within") + f" the {100 * t:.1f}-point threshold"

    if f.avoidable is not None:
        ev.append(f"{_bias_phrase(f)} ({side(bias_high, th.bias_high)})")
    elif f.train_err is not None:
        ev.append(f"train error {_pct(f.train_err)}; with no target error the avoidable bias "
                  "is not measured")
    if f.gap is not None:
        if f.val_err is not None and f.train_err is not None:
            ev.append(f"validation error {_pct(f.val_err)} vs train error {_pct(f.train_err)}: "
                      f"variance gap {_pts(f.gap)} ({side(gap_high, th.variance_high)})")
        else:
            ev.append(f"variance gap {_pts(f.gap)} ({side(gap_high, th.variance_high)})")
    if label == "balanced" and f.avoidable is not None and f.gap is not None:
        ev.append(f"the model is near its target: avoidable bias {_pts(f.avoidable)} and "
                  f"variance gap {_pts(f.gap)} are both within their thresholds, so the "
                  "remaining gains are small")
    if f.falling is not None:
        what = f.falling.get("evidence") or ""
        if f.falling.get("value") and bias_high:
            ev.append(f"training loss still falling at the end ({what}): part of the bias is "
                      "optimisation-limited; training longer or with a higher learning rate "
                      "should lower the train error")
        elif f.falling.get("value"):
            ev.append(f"training loss still falling at the end ({what}); the bias is already "
                      "small, and more epochs mainly fit the training set more closely")
        elif bias_high:
            ev.append(f"training loss had flattened ({what}): the bias is capacity-limited, "
                      "not a matter of more epochs")
        else:
            ev.append(f"training loss had flattened ({what})")
    ev += _curve_evidence(f, curve, th)
    ev += _decomposition_evidence(f, th)
    return [e for e in ev if e]


def _curve_evidence(f: _Facts, curve: _Curve, th: Thresholds) -> list[str]:
    ev = []
    if f.pl_ok:
        pl = f.pl
        trend = ("still falling: more data should help" if f.gain_2x >= th.min_gain
                 else "flat: more data alone will not help much")
        ev.append(f"learning curve: validation error {_pct(pl['err_at_n_max'])} at "
                  f"{int(pl['n_max']):,} images; the power law a·n^(−b) + c (b = {pl['b']:.2f}, "
                  f"asymptote c = {_pct(pl['c'])}) predicts {_pct(pl['err_2x'])} at 2× data, a "
                  f"gain of {_pts(f.gain_2x)} — {trend}")
    elif f.lc_sizes and len(f.lc_val) == len(f.lc_sizes) and None not in f.lc_val:
        ev.append(f"learning curve: validation error {_pct(f.lc_val[0])} at "
                  f"{int(f.lc_sizes[0]):,} images, {_pct(f.lc_val[-1])} at "
                  f"{int(f.lc_sizes[-1]):,} (no power-law fit)")
    if curve.ok:
        p, best = curve.param, _fmt_value(curve.best)
        s = (f"complexity curve over {p}: validation error is lowest "
             f"({_pct(curve.val[curve.best_i])}) at {p} = {best}")
        if curve.ref_i is not None and curve.ref_i != curve.best_i:
            s += (f" vs {_pct(curve.val[curve.ref_i])} at the current {p} = "
                  f"{_fmt_value(curve.ref)}")
            rem = curve.remedy()
            if rem:
                s += f" (suggests {rem[0].replace('_', ' ')}, addressing {rem[1]})"
        elif curve.ref_i is not None:
            s += ", the current value: the curve gives no reason to change it"
        elif curve.ref is not None:
            s += f" (the current {p} = {_fmt_value(curve.ref)} is not on the curve)"
        elif curve.direction > 0:
            s += ", the largest value tried"
        elif curve.direction < 0:
            s += ", the smallest value tried"
        ev.append(s)
    return ev


def _decomposition_evidence(f: _Facts, th: Thresholds) -> list[str]:
    ev = []
    rounds = f"{int(f.rounds)} " if f.rounds is not None else ""
    how = f" over {rounds}'{f.sampling}' rounds" if f.sampling else (
        f" over {rounds}rounds" if rounds else "")
    if f.zo_loss is not None and f.zo_bias is not None and f.zo_netvar is not None:
        s = (f"0-1 decomposition{how}: loss {_pct(f.zo_loss)} = bias {_pct(f.zo_bias)} + net "
             f"variance {_pct(f.zo_netvar)}")
        if f.share01 is not None:
            s += (f" ({100 * f.share01:.1f}% of the loss is variance; threshold "
                  f"{100 * th.variance_share_high:.0f}%)")
        ev.append(s)
    if f.ce_risk is not None and f.ce_bias is not None and f.ce_var is not None:
        s = (f"cross-entropy decomposition: risk {f.ce_risk:.3f} = bias {f.ce_bias:.3f} + "
             f"variance {f.ce_var:.3f} nats")
        if f.share_ce is not None:
            s += f" ({100 * f.share_ce:.1f}% of the risk is variance)"
        ev.append(s)
    if f.ens_gain is not None:
        n = f"{int(f.rounds)} " if f.rounds is not None else ""
        ev.append(f"an ensemble of the {n}models errs {_pct(f.ens_err)} vs {_pct(f.zo_loss)} "
                  f"for one model on average: ensembling gains {_pts(f.ens_gain)}")
    return ev


def _caveats(f: _Facts, curve: _Curve, th: Thresholds, gap_high: bool,
             share_high: bool) -> list[str]:
    cv = []
    if f.target is not None:
        src = f" ({f.target_source})" if f.target_source else ""
        cv.append(f"'Bias' includes label noise and the Bayes (irreducible) error: the target "
                  f"{_pct(f.target)}{src} is the best error known, not the irreducible one, and "
                  "nothing measured here separates mislabelled or ambiguous images from model "
                  "bias.")
    else:
        cv.append("'Bias' includes label noise and the Bayes (irreducible) error. No target error "
                  "was given, so avoidable bias is not measured; pass --target-error.")
    es = " (early stopping is on)" if f.config.get("early_stopping") is True else ""
    test = (f"; the test error ({_pct(f.test_err)}) is the honest estimate"
            if f.test_err is not None else "")
    cv.append("Validation error is optimistic when early stopping, checkpoint selection or "
              f"hyperparameter choices used the validation split{es}{test}.")
    if (f.test_err is not None and f.val_err is not None
            and f.test_err - f.val_err > th.variance_high):
        cv.append(f"Test error {_pct(f.test_err)} exceeds validation error {_pct(f.val_err)} by "
                  f"{_pts(f.test_err - f.val_err)}: the validation split is optimistic or "
                  "differs from the test split.")
    if f.train_err is None and f.val_err is None:
        cv.append("No reference train/validation errors: the verdict rests on the other "
                  "measurements only.")
    if f.lc_present:
        k = len(set(f.lc_sizes))
        if not f.pl_ok:
            note = f.pl.get("note") if isinstance(f.pl.get("note"), str) else "no fit stored"
            cv.append(f"The learning curve has no usable power-law fit ({note}): the gain from "
                      "more data is not predicted.")
        elif k < _MIN_CURVE_SIZES:
            cv.append(f"The learning curve has only {k} sizes for a 3-parameter power law: its "
                      "extrapolation to 2× data is fragile.")
        if f.lc_seeds == 1:
            cv.append("The learning curve used one seed per size: its points carry no error "
                      "bars, and seed noise can look like a trend.")
    if curve.ok and curve.gain is not None and curve.gain > 0:
        cv.append("The complexity curve's best value was chosen on validation data, so its "
                  "measured gain is optimistic.")
    if f.dec_present:
        cv += _decomposition_caveats(f, th)
    if share_high and not gap_high and f.gap is not None:
        cv.append("High variance rests on the decomposition's variance share while the "
                  f"reference's train-validation gap ({_pts(f.gap)}) is small; the "
                  "decomposition's models may differ from the reference (sampling, size).")
    return cv


def _decomposition_caveats(f: _Facts, th: Thresholds) -> list[str]:
    cv = []
    r = int(f.rounds) if f.rounds is not None else None
    for label, term, value in (("0-1 net variance", f.zo["net_variance"], f.zo_netvar),
                               ("cross-entropy variance", f.ce["variance"], f.ce_var)):
        se = _num(_get(term, "se_models"))
        if se is not None and value is not None and se > th.se_ratio * abs(value):
            rounds = f"{r} rounds" if r is not None else "the rounds run"
            cv.append(f"With {rounds} the {label} ({value:.4f}) has a between-model standard "
                      f"error of {se:.4f}: the rounds cannot separate it from noise; run more "
                      "rounds.")
    if r is not None and r < 5:
        cv.append(f"Only {r} models were trained for the decomposition: the cross-entropy "
                  "variance is biased low by about (R−1)/R (see its jackknife value) and every "
                  "term rests on few models.")
    if f.sampling == "seed":
        cv.append("Sampling 'seed' retrains on the same data: the variance measured is "
                  "optimisation variance only, not the variance from the training data.")
    if (f.n_per_model is not None and f.train_n is not None
            and f.n_per_model < 0.9 * f.train_n):
        cv.append(f"The decomposition's models train on {int(f.n_per_model):,} images each vs "
                  f"{int(f.train_n):,} for the reference: their variance overstates the "
                  "reference model's.")
    if f.ens_gain is not None:
        cv.append("The ensemble gain is measured on the decomposition's own models; a fresh "
                  "ensemble of reference models may gain a different amount.")
    return cv


# ----------------------------------------------------------------------------------- remedies

def _remedies(f: _Facts, curve: _Curve, th: Thresholds, label: str, bias_high: bool,
              variance_high: bool, strength: dict[str, float]) -> list[dict[str, Any]]:
    cfg = f.config
    bias_why = _bias_phrase(f)
    var_why = _variance_phrase(f, th)
    cands: dict[str, dict[str, Any]] = {}

    def add(name: str, addresses: str, action: str, evidence: str,
            gain: float | None = None, *, measured: bool = False) -> None:
        cands[name] = {"name": name, "action": action, "addresses": addresses,
                       "evidence": evidence, "predicted_gain": gain, "_measured": measured}

    # --- bias side
    width, depth = _num(cfg.get("width")), _num(cfg.get("depth"))
    add("wider_model", "bias",
        f"--width {int(2 * width)}" if width else "--width 64 (about twice the current width)",
        f"{bias_why}: more units/channels per layer lower the train error"
        + ("; the training loss had flattened, so capacity is the limit"
           if f.falling is not None and not f.falling.get("value") else ""))
    add("deeper_model", "bias",
        f"--depth {int(depth) + 1}" if depth is not None else "--depth 3 (one more stage)",
        f"{bias_why}: another layer/stage adds capacity")
    falling = f.falling.get("value") if f.falling is not None else None
    if falling is not False:
        epochs, lr = _num(cfg.get("epochs")), _num(cfg.get("lr"))
        act = f"--epochs {int(2 * epochs)}" if epochs else "--epochs 2x the current number"
        act += f" and --lr {2 * lr:g}" if lr else " and a higher --lr"
        why = (f"{bias_why}; {f.falling.get('evidence')}" if falling
               else f"{bias_why}; no training history, so whether the loss was still falling is "
               "unknown")
        if f.capped:  # the profile's cap, not the user's budget, is what fell short
            fits, full = int(f.capped["fits"]), int(f.capped["configured"])
            act = (f"train the configured {full} epochs (--profile thorough does), not the "
                   f"{fits} of this quick diagnosis")
            why += (f"; the fits trained {fits} of the configured {full} epochs, so part of this "
                    "bias is that cap")
        add("train_longer", "bias", act, why)
    wd, dp = _num(cfg.get("weight_decay")), _num(cfg.get("dropout"))
    ls = _num(cfg.get("label_smoothing"))
    regs = [(n, v) for n, v in (("weight_decay", wd), ("dropout", dp), ("label_smoothing", ls))
            if v]
    aug = cfg.get("augment")
    if regs or (isinstance(aug, str) and aug not in ("none", "")):
        flags = [f"--{n.replace('_', '-')} {v / 10 if n == 'weight_decay' else 0:g}"
                 for n, v in regs]
        if isinstance(aug, str) and aug not in ("none", ""):
            flags.append("--augment light" if aug in ("standard", "strong") else "--augment none")
        used = ", ".join([f"{n} {v:g}" for n, v in regs]
                         + ([f"augment {aug}"] if isinstance(aug, str) and aug not in ("none", "")
                            else []))
        add("less_regularization", "bias", " ".join(flags),
            f"{bias_why}; the reference trains with {used}, which holds the train error up")
    lr = _num(cfg.get("lr"))
    add("tune_lr", "bias",
        f"try --lr {lr * 3:.2g} and --lr {lr / 3:.2g} (or `biasvar curve complexity --param lr "
        f"--values {lr / 3:.2g},{lr:.2g},{lr * 3:.2g}`)" if lr
        else "try --lr 3x higher and 3x lower",
        f"{bias_why}: a badly set learning rate leaves the train error high")

    # --- variance side
    n_sub = _num(cfg.get("train_subset"))
    more_action = (f"--train-subset {int(2 * n_sub)}" if n_sub
                   else "collect more labelled images (2× the training set)")
    if f.pl_ok:
        add("more_data", "variance", more_action,
            f"{var_why}; the learning curve's power law predicts validation error "
            f"{_pct(f.pl['err_at_n_max'])} → {_pct(f.pl['err_2x'])} at 2× data",
            f.gain_2x, measured=True)
    else:
        add("more_data", "variance", more_action,
            f"{var_why}: more data lowers variance; run `biasvar curve learning` to predict "
            "the gain")
    n_models = int(f.rounds) if f.rounds else 5
    ens_action = (f"ensemble: average the log-probabilities of {n_models} models trained with "
                  f"different seeds (e.g. `--seed 0..{n_models - 1}` runs of `biasvar train`)")
    if f.ens_gain is not None:
        ce = (f"; cross-entropy should fall by the variance term, {f.ce_var:.3f} nats"
              if f.ce_var is not None else "")
        add("ensemble", "variance", ens_action,
            f"the decomposition's ensemble errs {_pct(f.ens_err)} vs {_pct(f.zo_loss)} for one "
            f"model{ce}", f.ens_gain, measured=True)
    elif f.ce_var is not None:
        add("ensemble", "variance", ens_action,
            f"the cross-entropy variance term {f.ce_var:.3f} nats predicts the cross-entropy "
            "gain of a log-probability ensemble (no 0-1 ensemble error stored)")
    else:
        add("ensemble", "variance", ens_action, f"{var_why}: averaging models cancels variance")
    aug_strength = _num(cfg.get("augment_strength")) or 1.0
    aug_action = ("--augment strong" if aug == "standard" else
                  f"--augment-strength {1.5 * aug_strength:g}" if aug == "strong"
                  else "--augment standard")
    add("augmentation", "variance", aug_action,
        f"{var_why}: augmentation shows the model more varied images")
    add("weight_decay", "variance",
        f"--weight-decay {max(10 * wd, 5e-4) if wd else 5e-4:g}",
        f"{var_why}: weight decay shrinks the weights and the gap")
    if dp is None or dp < 0.5:
        add("dropout", "variance", f"--dropout {min((dp or 0.0) + 0.2, 0.5):g}",
            f"{var_why}: dropout regularises the hidden layers")
    if cfg.get("early_stopping") is not True:
        add("early_stopping", "variance", "--early-stopping --patience 5",
            f"{var_why}: stop when validation loss stops improving and restore the best weights")

    # --- complexity curve: sharpen or add the remedy it points to, with its measured gain
    rem = curve.remedy()
    curve_name = None
    if rem:
        curve_name, side = rem
        p = curve.param
        action = f"--{p.replace('_', '-')} {_fmt_value(curve.best)}"
        why = (f"complexity curve: validation error {_pct(curve.val[curve.best_i])} at {p} = "
               f"{_fmt_value(curve.best)}")
        if curve.ref_i is not None:
            why += (f" vs {_pct(curve.val[curve.ref_i])} at the current "
                    f"{_fmt_value(curve.ref)}")
        old = cands.get(curve_name)
        if old is not None:
            side = old["addresses"]
        why += f"; {bias_why if side == 'bias' else var_why}"
        add(curve_name, side, action, why, curve.gain if curve.gain is not None else None,
            measured=curve.gain is not None)

    # --- choose
    chosen = []
    for name, c in cands.items():
        side_high = bias_high if c["addresses"] == "bias" else variance_high
        g = c["predicted_gain"]
        useful = g is not None and g >= th.min_gain
        if name == "train_longer" and falling is None and not bias_high:
            continue
        if side_high or useful or name == curve_name:
            chosen.append(c)
        elif label == "balanced" and name == "train_longer" and falling:
            chosen.append(c)
    if label == "balanced" and not chosen and max(strength.values()) > 0:
        # near target: offer the two standard remedies of the larger side, marked as small
        side = "bias" if strength["bias"] >= strength["variance"] else "variance"
        order = _BIAS_ORDER if side == "bias" else _VAR_ORDER
        chosen = [cands[n] for n in order if n in cands][:2]
        for c in chosen:
            c["evidence"] += " (the model is near its target: expect a small gain)"

    order = _BIAS_ORDER_FALLING if falling else _BIAS_ORDER
    prio = {n: i for i, n in enumerate(order)} | {n: i for i, n in enumerate(_VAR_ORDER)}

    def key(c: dict[str, Any]) -> tuple:
        g = c["predicted_gain"]
        p = prio.get(c["name"], len(prio))
        if g is not None and g >= th.min_gain:
            return (0, -g, 0.0, p)
        if g is None:
            return (1, 0.0, -strength[c["addresses"]], p)
        return (2, -g, 0.0, p)

    chosen.sort(key=key)
    hint_cfg = {**cfg, "epochs": f.capped["configured"]} if f.capped else cfg
    _explain_measured_first(chosen, {s for s, h in (("bias", bias_high),
                                                    ("variance", variance_high)) if h}, hint_cfg)
    return [{"rank": i + 1, "name": c["name"], "action": c["action"],
             "addresses": c["addresses"], "evidence": c["evidence"],
             "predicted_gain": (float(c["predicted_gain"])
                                if c["predicted_gain"] is not None else None)}
            for i, c in enumerate(chosen)]
