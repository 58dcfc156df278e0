"""The figures the diagnosis rules read, their thresholds, and the remedy rules.

:class:`Facts` reads every figure the rules use from typed :class:`~._results.Results` (absent
blocks stay None) and applies the thresholds (:class:`Thresholds`) to say which side is high.
:func:`rank` turns those facts into ranked :class:`~._results.Remedy` objects; :func:`remedies`
does both for one :class:`Results`. What each remedy is — the side it addresses, why it works,
the knob whose complexity curve measures it — comes from the knob table (:mod:`biasvar.knobs`);
this module holds only the rules: when a remedy is offered, its action, and the ranking.

Ranking. Remedies follow the side the verdict flags: under ``high_bias`` (``high_variance``)
the bias (variance) remedies come first, then the other side's remedies that were measured to
help, each saying so ("addresses variance; measured, though the verdict is high bias"). Within
those groups, and over all remedies when the verdict is ``both`` or ``balanced``: first those
with a measured predicted gain >= ``min_gain``, largest first (more data from the learning
curve's power law, ensembling from the decomposition, a better width/depth/... from the
complexity curve); then the unmeasured ones, by how far the side they address exceeds its
threshold, in a fixed order within a side; last those whose measured gain is below ``min_gain``.
More data quotes the power law's gain only when the power law extrapolates (with its 95 %
interval when it has one); otherwise it quotes why the power law does not.

>>> rs = remedies(Results.from_dict({"reference": {"train": {"error": 0.09},
...                                                "val": {"error": 0.10}},
...                                  "target_error": {"value": 0.037}}))
>>> [(r.rank, r.name, r.addresses) for r in rs][:2]
[(1, 'wider_model', 'bias'), (2, 'deeper_model', 'bias')]
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from collections.abc import Callable
from typing import Any

from .._fmt import fmt_value, pct, pts
from ..errors import ConfigError, suggest
from ..knobs import KNOBS, REMEDIES
from ._results import (ComplexityCurve, Decomposition, EpochsCapped, LossTrend, PowerLaw,
                       Remedy, Results, TargetError, finite)
from .curvefit import RELATIVE_DROP, bound_note, loss_still_falling

__all__ = ["Thresholds", "Facts", "CurveReading", "rank", "remedies", "measure_hint",
           "gain_text"]

# Allowed range of each threshold: (low, high, low inclusive?); high is inclusive.
_THRESHOLD_RANGES: dict[str, tuple[float, float, bool]] = {
    "bias_high": (0.0, 1.0, True),
    "variance_high": (0.0, 1.0, True),
    "variance_share_high": (0.0, 1.0, False),
    "min_gain": (0.0, 1.0, True),
    "falling": (0.0, 1.0, True),
    "se_ratio": (0.0, 100.0, False),
}

# Fixed order of the unmeasured remedies within a side (the README's "How the verdict is
# reached"): ranking rules.
_BIAS_ORDER = ("wider_model", "deeper_model", "less_regularization", "tune_lr", "train_longer")
_BIAS_ORDER_FALLING = ("train_longer", "wider_model", "deeper_model", "less_regularization",
                       "tune_lr")
_VAR_ORDER = ("augmentation", "weight_decay", "dropout", "early_stopping", "more_data",
              "transfer", "ensemble", "narrower_model", "shallower_model")

#: Training sets of at most this many images are "small": fine-tuning pretrained weights is
#: offered against high variance. Where transfer pays is a property of the data; measured here
#: (`biasvar finetune`, Fashion-MNIST → digits at 28 px) it won clearly at 50–100 images and
#: within the intervals at 500; published results (Kornblith et al. 2019) show the gain
#: shrinking with the training set and mostly gone in the tens of thousands.
SMALL_DATA = 10_000

#: z above which the test error's excess over the validation error is not sampling noise
#: (two-sided 1 %: the verdict should not cry shift on one test set in twenty)
SHIFT_Z = 2.576


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

def _same(a: Any, b: Any) -> bool:
    """Two knob values are the same (numbers up to rounding)."""
    if finite(a) and finite(b):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _ratio(x: float | None, t: float) -> float:
    """How far x exceeds threshold t (1.0 = at the threshold); 0 when x is unknown."""
    if x is None:
        return 0.0
    if t > 0:
        return x / t
    return math.inf if x > 0 else 0.0


def _finite_or_none(x: float | None) -> float | None:
    return x if finite(x) else None


def gain_text(gain: float, ci: list[float] | tuple[float, float] | None = None) -> str:
    """A predicted gain in points with its 95 % interval when there is one:
    ``1.3 points [0.6, 2.1]``."""
    text = pts(gain, signed=False)
    if ci is not None and len(ci) == 2 and all(finite(v) for v in ci):
        text += f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
    return text


def measure_hint(name: str, config: dict[str, Any]) -> str | None:
    """The command that would measure a remedy's gain (from the knob table), or None."""
    return REMEDIES.get(name).measure_command(config) if name in REMEDIES else None


# ----------------------------------------------------------------------------------- the curve

@dataclass(frozen=True)
class CurveReading:
    """What a complexity curve says: its best value vs the configured one, the measured gain,
    and the remedy the change points to.

    Attributes:
        param: the knob the curve turned.
        values: the values tried.
        val, train: mean validation / train error per value (None: not finite / not measured).
        best_i: index of the best value (the stored ``best_value`` when it is on the curve).
        ref: the configured value (``reference_value``, else the config's), or None.
        ref_i: its index on the curve, or None when it is not on it.
    """

    param: str
    values: list[Any]
    val: list[float | None]
    train: list[float | None]
    best_i: int
    ref: Any
    ref_i: int | None

    @classmethod
    def of(cls, cc: ComplexityCurve | None, config: dict[str, Any]) -> CurveReading | None:
        """The reading of ``cc``; None when there is no curve or no validation error on it."""
        if cc is None or not cc.param:
            return None
        n = len(cc.values)
        val = [_finite_or_none(v) for v in cc.val_error.mean][:n]
        if n == 0 or len(val) != n or all(v is None for v in val):
            return None
        train = [_finite_or_none(v) for v in cc.train_error.mean][:n]
        best_i = min((i for i in range(n) if val[i] is not None), key=lambda i: val[i])
        if cc.best_value is not None:
            idx = [i for i in range(n) if _same(cc.values[i], cc.best_value)]
            if idx and val[idx[0]] is not None:
                best_i = idx[0]
        ref = cc.reference_value if cc.reference_value is not None else config.get(cc.param)
        idx = [i for i in range(n) if ref is not None and _same(cc.values[i], ref)]
        return cls(cc.param, list(cc.values), val, train, best_i, ref, idx[0] if idx else None)

    @property
    def best(self) -> Any:
        return self.values[self.best_i]

    @property
    def gain(self) -> float | None:
        """Validation error at the configured value minus at the best; None when unmeasured."""
        if self.ref_i is None or self.val[self.ref_i] is None:
            return None
        return self.val[self.ref_i] - self.val[self.best_i]

    @property
    def direction(self) -> int:
        """The suggested change: +1 more, −1 less, 0 none / unknown."""
        best, ref = self.best, self.ref
        if finite(best) and finite(ref):
            return (best > ref) - (best < ref)
        if finite(best) and ref is None and all(finite(v) for v in self.values):
            return 1 if best == max(self.values) else -1 if best == min(self.values) else 0
        return 0 if _same(best, ref) else 1

    def remedy(self) -> tuple[str, str] | None:
        """(name, side) of the remedy the curve points to, or None when it points nowhere.

        A knob of the table names its remedy (``KNOBS``) and the remedy its side
        (``REMEDIES``); another knob gives ``set_<param>``, addressing bias when its best value
        lowers the train error (it adds capacity), else variance."""
        if self.direction == 0:
            return None
        if self.param in KNOBS:
            name = KNOBS.get(self.param).remedy_for(self.direction)
            return (name, REMEDIES.get(name).addresses) if name else None
        side = "variance"
        if self.ref_i is not None and len(self.train) == len(self.values):
            t_best, t_ref = self.train[self.best_i], self.train[self.ref_i]
            if t_best is not None and t_ref is not None and t_best < t_ref:
                side = "bias"
        return f"set_{self.param}", side


# ----------------------------------------------------------------------------------- the facts

@dataclass(frozen=True)
class Facts:
    """Every figure the diagnosis rules use, read from typed results (not measured → None).

    Attributes:
        results: the results read.
        thresholds: the rules' thresholds.
        config: the resolved config (``results.config``; empty when absent).
        train_err, val_err, test_err: the reference model's errors.
        train_n: the reference's training-set size.
        target: the target error.
        avoidable: avoidable bias (stored, else train error − target error).
        gap: variance gap (stored, else validation error − train error).
        falling: was the training loss still falling — recomputed from the history (so the
            ``falling`` threshold applies) when it has two losses, else the stored judgement.
        power_law: the learning curve's power-law fit when it may be extrapolated (ok,
            ``extrapolates``, every figure the rules cite, and b and c off the bounds of the
            fit — a check that also catches fits stored before the refusal rules), else None.
        curve: the complexity curve's reading, or None.
    """

    results: Results
    thresholds: Thresholds
    config: dict[str, Any]
    train_err: float | None
    val_err: float | None
    test_err: float | None
    train_n: float | None
    target: TargetError | None
    avoidable: float | None
    gap: float | None
    falling: LossTrend | None
    power_law: PowerLaw | None
    curve: CurveReading | None

    @classmethod
    def of(cls, results: Results, thresholds: Thresholds | None = None) -> Facts:
        th = thresholds or Thresholds()
        r = results
        config = dict(r.config or {})
        train_err, val_err = _finite_or_none(r.train_error), _finite_or_none(r.val_error)
        target = r.target_error if r.target_error and finite(r.target_error.value) else None
        avoidable = _finite_or_none(r.avoidable_bias)
        if avoidable is None and train_err is not None and target is not None:
            avoidable = train_err - target.value
        gap = _finite_or_none(r.variance_gap)
        if gap is None and train_err is not None and val_err is not None:
            gap = val_err - train_err
        ref = r.reference
        n = ref.train.get("n") if ref and ref.train else None
        history = ref.history if ref else []
        falling = r.train_loss_still_falling
        if sum(finite(h.get("train_loss")) for h in history) >= 2:
            falling = LossTrend.from_dict(loss_still_falling(history, threshold=th.falling))
        pl = r.learning_curve.power_law if r.learning_curve else None
        usable = (pl is not None and pl.ok and pl.extrapolates and all(finite(x) for x in (
            pl.gain_2x, pl.err_at_n_max, pl.err_2x, pl.b, pl.c)) and pl.n_max is not None
            and bound_note(pl.b, pl.c) is None)
        return cls(r, th, config, train_err, val_err, _finite_or_none(r.test_error),
                   n if finite(n) else None, target, avoidable, gap, falling,
                   pl if usable else None, CurveReading.of(r.complexity_curve, config))

    # --- the other blocks, as read -------------------------------------------------------
    @property
    def decomposition(self) -> Decomposition | None:
        return self.results.decomposition

    @property
    def capped(self) -> EpochsCapped | None:
        """A diagnose profile that trained fewer epochs than configured."""
        return self.results.epochs_capped

    @property
    def power_law_note(self) -> str | None:
        """Why the learning curve's power law gives no prediction (None: it gives one, or there
        is no learning curve)."""
        lc = self.results.learning_curve
        if lc is None or self.power_law is not None:
            return None
        pl = lc.power_law
        if pl is None:
            return "no power-law fit stored"
        if pl.ok and pl.extrapolates:  # a fit stored before the refusal rules, or incomplete
            why = bound_note(pl.b, pl.c) if finite(pl.b) and finite(pl.c) else None
            return f"not extrapolated: {why or 'its stored figures are incomplete'}"
        return pl.note or ("not extrapolated" if pl.ok else "the power-law fit failed")

    @property
    def still_falling(self) -> bool | None:
        """Was the training loss still falling (None: no history, nothing stored)."""
        return self.falling.value if self.falling is not None else None

    @property
    def share01(self) -> float | None:
        """Share of the decomposition's 0-1 loss that is net variance."""
        return self.decomposition.variance_share if self.decomposition else None

    @property
    def share_ce(self) -> float | None:
        """Share of the decomposition's cross-entropy risk that is variance."""
        if self.decomposition is None:
            return None
        ce = self.decomposition.cross_entropy
        return ce.variance.value / ce.risk.value if ce.risk.value else None

    @property
    def ens_gain(self) -> float | None:
        """A single model's 0-1 loss minus the ensemble's error (measured by the
        decomposition)."""
        d = self.decomposition
        if d is None or d.ensemble is None:
            return None
        return d.zero_one.loss.value - d.ensemble.error

    # --- the rules on the numbers ---------------------------------------------------------
    @property
    def bias_high(self) -> bool:
        return self.avoidable is not None and self.avoidable > self.thresholds.bias_high

    @property
    def gap_high(self) -> bool:
        return self.gap is not None and self.gap > self.thresholds.variance_high

    @property
    def share_high(self) -> bool:
        t = self.thresholds.variance_share_high
        return any(s is not None and s > t for s in (self.share01, self.share_ce))

    @property
    def variance_high(self) -> bool:
        return self.gap_high or self.share_high

    @property
    def label(self) -> str:
        """One of ``LABELS``: high_bias, high_variance, both or balanced."""
        bias, var = self.bias_high, self.variance_high
        return ("both" if bias and var else "high_bias" if bias else "high_variance" if var
                else "balanced")

    @property
    def strength(self) -> dict[str, float]:
        """How far each side exceeds its threshold (1.0 = at it; the larger of the variance
        measures)."""
        th = self.thresholds
        return {"bias": _ratio(self.avoidable, th.bias_high),
                "variance": max(_ratio(self.gap, th.variance_high),
                                _ratio(self.share01, th.variance_share_high),
                                _ratio(self.share_ce, th.variance_share_high))}

    # --- the phrases every bias / variance sentence starts with ---------------------------
    def bias_phrase(self) -> str:
        if self.train_err is not None and self.target is not None:
            return (f"train error {pct(self.train_err)} vs target {pct(self.target.value)}: "
                    f"avoidable bias {pts(self.avoidable, signed=False)}")
        return (f"avoidable bias {pts(self.avoidable, signed=False)}"
                if self.avoidable is not None else "bias")

    def variance_phrase(self) -> str:
        th, parts = self.thresholds, []
        if self.gap is not None and (self.gap > th.variance_high or self.share01 is None):
            if self.val_err is not None and self.train_err is not None:
                parts.append(f"validation error {pct(self.val_err)} vs train error "
                             f"{pct(self.train_err)}: variance gap {pts(self.gap, signed=False)}")
            else:
                parts.append(f"variance gap {pts(self.gap, signed=False)}")
        d = self.decomposition
        if d is not None and self.share01 is not None and (
                not parts or self.share01 > th.variance_share_high):
            parts.append(f"net variance {pct(d.zero_one.net_variance.value)} of a 0-1 loss of "
                         f"{pct(d.zero_one.loss.value)}")
        elif d is not None and self.share_ce is not None and not parts:
            ce = d.cross_entropy
            parts.append(f"cross-entropy variance {ce.variance.value:.3f} of a risk of "
                         f"{ce.risk.value:.3f} nats")
        return "; ".join(parts) if parts else "variance"


# ----------------------------------------------------------------------------------- remedies

@dataclass
class _Candidate:
    name: str
    addresses: str
    action: str
    evidence: str
    gain: float | None = None


#: ``add(name, action, evidence, gain=None, *, side=None)``: propose one remedy
_Add = Callable[..., None]


def _why(name: str) -> str:
    return REMEDIES.get(name).why


def _bias_candidates(f: Facts, add: _Add) -> None:
    """The bias-side remedies: capacity, optimisation, less regularisation."""
    cfg, why = f.config, f.bias_phrase()
    falling = f.still_falling
    width, depth = cfg.get("width"), cfg.get("depth")
    add("wider_model",
        f"--width {int(2 * width)}" if width else "--width 64 (about twice the current width)",
        f"{why}: {_why('wider_model')}"
        + ("; the training loss had flattened, so capacity is the limit" if falling is False
           else ""))
    add("deeper_model",
        f"--depth {int(depth) + 1}" if depth is not None else "--depth 3 (one more stage)",
        f"{why}: {_why('deeper_model')}")
    if falling is not False:
        epochs, lr = cfg.get("epochs"), cfg.get("lr")
        act = f"--epochs {int(2 * epochs)}" if epochs else "--epochs 2x the current number"
        act += f" and --lr {2 * lr:g}" if lr else " and a higher --lr"
        trend = (f.falling.evidence if falling else "with no training history, whether it was "
                 "still falling is unknown")
        ev = f"{why}: {_why('train_longer')}; {trend}"
        if f.capped:  # the profile's cap, not the user's budget, is what fell short
            fits, full = f.capped.fits, f.capped.configured
            act = (f"train the configured {full} epochs (--profile thorough does), not the "
                   f"{fits} of this quick diagnosis")
            ev += (f"; the fits trained {fits} of the configured {full} epochs, so part of this "
                   "bias is that cap")
        add("train_longer", act, ev)
    regs = [(n, cfg.get(n)) for n in ("weight_decay", "dropout", "label_smoothing")
            if cfg.get(n)]
    aug = cfg.get("augment")
    augmented = bool(aug) and aug != "none"
    if regs or augmented:
        flags = [f"--{n.replace('_', '-')} {v / 10 if n == 'weight_decay' else 0:g}"
                 for n, v in regs]
        if augmented:
            flags.append("--augment light" if aug in ("standard", "strong") else "--augment none")
        used = ", ".join([f"{n} {v:g}" for n, v in regs] + ([f"augment {aug}"] if augmented
                                                            else []))
        add("less_regularization", " ".join(flags),
            f"{why}; the reference trains with {used}: {_why('less_regularization')}")
    lr = cfg.get("lr")
    add("tune_lr",
        f"try --lr {lr * 3:.2g} and --lr {lr / 3:.2g} (or {measure_hint('tune_lr', cfg)})" if lr
        else "try --lr 3x higher and 3x lower",
        f"{why}: {_why('tune_lr')}")


def _variance_candidates(f: Facts, add: _Add) -> None:
    """The variance-side remedies: data, ensembling, regularisation, early stopping."""
    cfg, why = f.config, f.variance_phrase()
    n_sub = cfg.get("train_subset")
    more_action = (f"--train-subset {int(2 * n_sub)}" if n_sub
                   else "collect more labelled images (2× the training set)")
    pl, refused = f.power_law, f.power_law_note
    if pl is not None:
        add("more_data", more_action,
            f"{why}: {_why('more_data')}; the learning curve's power law predicts validation "
            f"error {pct(pl.err_at_n_max)} → {pct(pl.err_2x)} at 2× data: predicted gain "
            f"{gain_text(pl.gain_2x, pl.gain_2x_ci)}", pl.gain_2x)
    elif refused is not None:
        add("more_data", more_action,
            f"{why}: {_why('more_data')}; the learning curve predicts no gain: its power law is "
            f"{refused}")
    else:
        add("more_data", more_action,
            f"{why}: {_why('more_data')}; run {measure_hint('more_data', cfg)} to predict the "
            "gain")
    d = f.decomposition
    n_models = d.rounds if d is not None and d.rounds else 5
    ens_action = (f"ensemble: average the log-probabilities of {n_models} models trained with "
                  f"different seeds: `biasvar ensemble --members {n_models}` with this run's "
                  "options trains them fresh and measures the gain beside this prediction")
    if d is not None and d.ensemble is not None:
        add("ensemble", ens_action,
            f"{_why('ensemble')}: the decomposition's ensemble errs {pct(d.ensemble.error)} vs "
            f"{pct(d.zero_one.loss.value)} for one model; cross-entropy should fall by the "
            f"variance term, {d.cross_entropy.variance.value:.3f} nats", f.ens_gain)
    elif d is not None:
        add("ensemble", ens_action,
            f"the cross-entropy variance term {d.cross_entropy.variance.value:.3f} nats predicts "
            "the cross-entropy gain of a log-probability ensemble (no 0-1 ensemble error stored)")
    else:
        add("ensemble", ens_action, f"{why}: {_why('ensemble')}")
    n = f.train_n
    if n is not None and n <= SMALL_DATA:
        add("transfer",
            f"fine-tune weights trained on a larger, related dataset: `biasvar finetune "
            f"--weights FILE|RUN_DIR --sizes {int(n)}` with this run's options (FILE: a "
            "torchvision state dict or a biasvar checkpoint; RUN_DIR: a `biasvar train` run on "
            "the other dataset) measures fine-tuned against from scratch at this size",
            f"{why}: {_why('transfer')}; {int(n)} training images is small (at most "
            f"{SMALL_DATA:,})")
    aug = cfg.get("augment")
    strength = cfg.get("augment_strength") or 1.0
    add("augmentation",
        "--augment strong" if aug == "standard" else
        f"--augment-strength {1.5 * strength:g}" if aug == "strong" else "--augment standard",
        f"{why}: {_why('augmentation')}")
    wd, dp = cfg.get("weight_decay"), cfg.get("dropout")
    add("weight_decay", f"--weight-decay {max(10 * wd, 5e-4) if wd else 5e-4:g}",
        f"{why}: {_why('weight_decay')}")
    if dp is None or dp < 0.5:
        add("dropout", f"--dropout {min((dp or 0.0) + 0.2, 0.5):g}", f"{why}: {_why('dropout')}")
    if cfg.get("early_stopping") is not True:
        add("early_stopping", "--early-stopping --patience 5",
            f"{why}: {_why('early_stopping')}")


def shift_test(f: Facts) -> tuple[float, float] | None:
    """(test − validation error, z) when both splits were scored with their sizes: the
    two-proportion z of the excess (unpooled standard error)."""
    ref = f.results.reference
    if ref is None or f.val_err is None or f.test_err is None:
        return None
    nv, nt = (ref.val or {}).get("n"), (ref.test or {}).get("n")
    if not (finite(nv) and finite(nt) and nv > 0 and nt > 0):
        return None
    pv, pt = f.val_err, f.test_err
    se = math.sqrt(pv * (1 - pv) / nv + pt * (1 - pt) / nt)
    diff = pt - pv
    return diff, (diff / se if se > 0 else (math.inf if diff > 0 else 0.0))


def _shift_candidate(f: Facts, add: _Add) -> None:
    """When the test error exceeds the validation error by more than sampling noise, the test
    images are not drawn as the training and validation images were: a shift, which neither
    side's remedies address."""
    t = shift_test(f)
    if t is None:
        return
    diff, z = t
    if z < SHIFT_Z or diff < f.thresholds.min_gain:
        return
    add("distribution_shift",
        "check how the test images were collected; train this configuration (`biasvar "
        "train`) and measure what adapting recovers: `biasvar shift RUN_DIR --corruptions none "
        "--adabn --few-shot 5` (batch norm re-estimated on the unlabelled test images; 5 "
        "labelled test images per class)",
        f"{_why('distribution_shift')}: test error {pct(f.test_err)} vs validation "
        f"{pct(f.val_err)}, {pts(diff)} higher (z = {z:.1f}; sampling noise alone exceeds "
        f"z = {SHIFT_Z} once in a hundred)")


def _curve_candidate(f: Facts, add: _Add) -> str | None:
    """Sharpen or add the remedy the complexity curve points to, with its measured gain;
    returns its name (None when the curve points nowhere)."""
    c = f.curve
    rem = c.remedy() if c is not None else None
    if c is None or rem is None:
        return None
    name, side = rem
    p, best = c.param, fmt_value(c.best)
    why = f"complexity curve: validation error {pct(c.val[c.best_i])} at {p} = {best}"
    if c.ref_i is not None:
        why += f" vs {pct(c.val[c.ref_i])} at the current {fmt_value(c.ref)}"
    why += f"; {f.bias_phrase() if side == 'bias' else f.variance_phrase()}"
    if name in REMEDIES:
        why += f": {_why(name)}"
    add(name, f"--{p.replace('_', '-')} {best}", why, c.gain, side=side)
    return name


def _label_other_side(chosen: list[_Candidate], flagged: str | None) -> None:
    """Under a one-sided verdict, say on each remedy for the other side that it addresses that
    side, and why it is listed at all (measured, or pointed to by the complexity curve)."""
    if flagged is None:
        return
    for c in chosen:
        if c.addresses != flagged and c.addresses in ("bias", "variance"):
            why = ("measured" if c.gain is not None else "the complexity curve points to it")
            c.evidence = (f"(addresses {c.addresses}; {why}, though the verdict is high "
                          f"{flagged}) {c.evidence}")


def _hint_first(chosen: list[_Candidate], cfg: dict[str, Any]) -> None:
    """The first remedy, when its gain is not measured but a later one's is, names the command
    that would measure it: ranking by the verdict's side put it above a measured gain."""
    if not chosen or chosen[0].gain is not None or all(c.gain is None for c in chosen[1:]):
        return
    first = chosen[0]
    hint = measure_hint(first.name, cfg)
    if hint and hint not in first.evidence:
        first.evidence += f"; its gain is not measured: {hint} measures it"


def rank(f: Facts) -> list[Remedy]:
    """The remedies the facts call for, ranked (see the module docstring)."""
    th, label, strength = f.thresholds, f.label, f.strength
    cands: dict[str, _Candidate] = {}

    def add(name: str, action: str, evidence: str, gain: float | None = None, *,
            side: str | None = None) -> None:
        cands[name] = _Candidate(name, side or REMEDIES.get(name).addresses, action, evidence,
                                 float(gain) if finite(gain) else None)

    _bias_candidates(f, add)
    _variance_candidates(f, add)
    _shift_candidate(f, add)
    curve_name = _curve_candidate(f, add)

    # --- choose
    falling = f.still_falling
    chosen = []
    for name, c in cands.items():
        side_high = (f.bias_high if c.addresses == "bias" else f.variance_high
                     if c.addresses == "variance" else True)  # a shift: shown when detected
        useful = c.gain is not None and c.gain >= th.min_gain
        if name == "train_longer" and falling is None and not f.bias_high and c.gain is None:
            continue  # nothing says more epochs would help
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
            c.evidence += " (the model is near its target: expect a small gain)"

    order = _BIAS_ORDER_FALLING if falling else _BIAS_ORDER
    prio = {n: i for i, n in enumerate(order)} | {n: i for i, n in enumerate(_VAR_ORDER)}
    # the side a one-sided verdict flags goes first; both / balanced rank all by gain
    flagged = {"high_bias": "bias", "high_variance": "variance"}.get(label)

    def key(c: _Candidate) -> tuple:
        p = prio.get(c.name, len(prio))
        side = 0 if flagged is None or c.addresses == flagged else 1
        if c.gain is not None and c.gain >= th.min_gain:
            return (side, 0, -c.gain, 0.0, p)
        if c.gain is None:
            return (side, 1, 0.0, -strength.get(c.addresses, 0.0), p)
        return (side, 2, -c.gain, 0.0, p)

    chosen.sort(key=key)
    _label_other_side(chosen, flagged)
    _hint_first(chosen, {**f.config, "epochs": f.capped.configured} if f.capped else f.config)
    return [Remedy(rank=i + 1, name=c.name, action=c.action, addresses=c.addresses,
                   evidence=c.evidence, predicted_gain=c.gain)
            for i, c in enumerate(chosen)]


def remedies(results: Results, thresholds: Thresholds | None = None) -> list[Remedy]:
    """The ranked remedies for ``results`` under ``thresholds`` (default :class:`Thresholds`)."""
    return rank(Facts.of(results, thresholds))
