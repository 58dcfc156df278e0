"""The verdict: is the error bias, variance, both or neither — with evidence, caveats, remedies.

:func:`verdict` reads typed results (:class:`~._results.Results`; a results.json mapping is read
with ``Results.from_dict``) and applies named, documented rules (:class:`Thresholds`) to
whatever measurements they hold: the reference model's train/val/test errors and the target
error (always), the training history, the learning and complexity curves, and the bias-variance
decomposition (when they were run). Every evidence sentence cites the numbers it rests on; every
remedy says what to run, which side it addresses and, when one was measured, the error reduction
it predicts.

Rules (fractions of error, "points" = percentage points):

* **high bias** when avoidable bias = train error − target error > ``bias_high``.
* **high variance** when variance gap = validation error − train error > ``variance_high``, or
  when the decomposition puts more than ``variance_share_high`` of the 0-1 loss in net variance
  or of the cross-entropy risk in variance.
* **both** / **balanced** accordingly; balanced still lists remedies with a measured gain.

Remedies are ranked (the rules: :mod:`._remedies`; what each remedy is: :mod:`biasvar.knobs`).
They follow the side the verdict flags: under high bias the bias remedies come first, under high
variance the variance remedies; the other side's remedies that were measured to help follow,
each labelled as addressing the other side. Within each side — and over all remedies when the
verdict is both or balanced — first those with a measured predicted gain >= ``min_gain``
(largest gain first: more data from the learning curve's power law, ensembling from the
decomposition, a better width/depth/... from the complexity curve); then the unmeasured ones,
by how far the side they address exceeds its threshold, in a fixed order within a side; last
those whose measured gain is below ``min_gain``. A power law that refuses to extrapolate
(:func:`~.curvefit.power_law`) predicts no gain; the verdict says why.

Example::

    >>> v = verdict({"reference": {"train": {"error": 0.081}, "val": {"error": 0.09}},
    ...              "target_error": {"value": 0.037, "source": "benchmark"}})
    >>> v.label
    'high_bias'
    >>> v.evidence[0]
    'train error 8.1% vs target 3.7%: avoidable bias 4.4 points (above the 2.0-point threshold)'
    >>> [r.name for r in v.remedies][:2]
    ['wider_model', 'deeper_model']
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._fmt import fmt_value, pct, pts
from ..metrics import confusions
from ._remedies import Facts, Thresholds, gain_text, rank
from ._results import LABELS, Results, ResultsError, Verdict

__all__ = ["Thresholds", "verdict", "LABELS"]

#: Fewer learning-curve sizes than this make the power-law extrapolation fragile (a caveat).
_MIN_CURVE_SIZES = 4


def _read(results: Results | Mapping[str, Any]) -> tuple[Results, list[str]]:
    """``results`` as :class:`Results`, and what of a mapping did not read.

    A mapping is read with ``Results.from_dict``; when a top-level block of it does not
    validate, that block is left out (and named, for a caveat) so that the verdict still rests
    on the rest, as it did on the partial mappings of old callers."""
    if isinstance(results, Results):
        return results, []
    d = dict(results)
    try:
        return Results.from_dict(d), []
    except ResultsError:
        pass
    kept, bad = {}, []
    for key, value in d.items():
        try:
            Results.from_dict({key: value})
        except ResultsError as e:
            bad.append(str(e).split(";")[0])
        else:
            kept[key] = value
    return Results.from_dict(kept), bad


def verdict(results: Results | Mapping[str, Any],
            thresholds: Thresholds | None = None) -> Verdict:
    """Label, evidence, caveats and ranked remedies for one run's results.

    Args:
        results: typed results, or a results.json mapping (the README's results.json
            contract; every block optional).
            ``config`` (the resolved config as a flat mapping) sharpens the remedies' CLI hints
            when present.
        thresholds: the rules' thresholds (default :class:`Thresholds()`).

    Returns:
        the README's results.json ``verdict``: label, evidence and caveats (sentences), remedies
        (:class:`~._results.Remedy`: rank, name, action, addresses, evidence, predicted_gain —
        an absolute error reduction or None) and the thresholds applied.
    """
    th = thresholds or Thresholds()
    r, unread = _read(results)
    f = Facts.of(r, th)
    caveats = _caveats(f)
    if unread:
        caveats.append(f"Parts of these results do not read and were left out "
                       f"({'; '.join(unread)}): the verdict rests on the rest.")
    return Verdict(label=f.label, evidence=_evidence(f), caveats=caveats, remedies=rank(f),
                   thresholds=th.to_dict())


# ----------------------------------------------------------------------------------- evidence

def _evidence(f: Facts) -> list[str]:
    th, ev = f.thresholds, []

    def side(high: bool, t: float) -> str:
        return ("above" if high else "within") + f" the {100 * t:.1f}-point threshold"

    if f.avoidable is not None:
        ev.append(f"{f.bias_phrase()} ({side(f.bias_high, th.bias_high)})")
    elif f.train_err is not None:
        ev.append(f"train error {pct(f.train_err)}; with no target error the avoidable bias "
                  "is not measured")
    if f.gap is not None:
        gap = f"variance gap {pts(f.gap, signed=False)} ({side(f.gap_high, th.variance_high)})"
        if f.val_err is not None and f.train_err is not None:
            ev.append(f"validation error {pct(f.val_err)} vs train error {pct(f.train_err)}: "
                      + gap)
        else:
            ev.append(gap)
    if f.label == "balanced" and f.avoidable is not None and f.gap is not None:
        ev.append(f"the model is near its target: avoidable bias "
                  f"{pts(f.avoidable, signed=False)} and variance gap {pts(f.gap, signed=False)} "
                  "are both within their thresholds, so the remaining gains are small")
    if f.falling is not None:
        what = f.falling.evidence
        if f.falling.value and f.bias_high:
            ev.append(f"training loss still falling at the end ({what}): part of the bias is "
                      "optimisation-limited; training longer or with a higher learning rate "
                      "should lower the train error")
        elif f.falling.value:
            ev.append(f"training loss still falling at the end ({what}); the bias is already "
                      "small, and more epochs mainly fit the training set more closely")
        elif f.bias_high:
            ev.append(f"training loss had flattened ({what}): the bias is capacity-limited, "
                      "not a matter of more epochs")
        else:
            ev.append(f"training loss had flattened ({what})")
    ev += _curve_evidence(f)
    ev += _decomposition_evidence(f)
    ev += _confusion_evidence(f)
    return [e for e in ev if e]


#: fewer test errors than this say nothing about which classes are confused
_MIN_ERRORS = 20


def _confusion_evidence(f: Facts) -> list[str]:
    """Which classes the test errors are confusions between: confusions of similar classes are
    part of what 'bias' holds (capacity, resolution, or labels no model can tell apart)."""
    r = f.results
    test = r.reference.test if r.reference is not None else None
    if not test or not r.classes:
        return []
    c = confusions(test.get("confusion_matrix"), [str(x) for x in r.classes])
    if c is None or not c["pairs"]:
        return []
    e = c["errors"]
    if e < _MIN_ERRORS:
        return []
    top = ", ".join(f"{a} ↔ {b} {n:,} ({pct(n / e)})" for a, b, n in c["pairs"])
    text = f"where the {e:,} test errors fall, the most confused pairs (either way): {top}"
    share = c["group_errors"] / e
    if len(c["group"]) > 2:
        text += (f"; {pct(share)} of the errors are confusions among "
                 f"{', '.join(c['group'][:-1])} and {c['group'][-1]}")
    return [text + (": ambiguous classes like these are part of the bias (more capacity or "
                    "training separates some of them; mislabelled or truly ambiguous images "
                    "none)" if f.bias_high and share >= 0.5 else "")]


def _curve_evidence(f: Facts) -> list[str]:
    ev = []
    pl, lc = f.power_law, f.results.learning_curve
    if pl is not None:
        trend = ("still falling: more data should help" if pl.gain_2x >= f.thresholds.min_gain
                 else "flat: more data alone will not help much")
        ev.append(f"learning curve: validation error {pct(pl.err_at_n_max)} at "
                  f"{pl.n_max:,} images; the power law a·n^(−b) + c (b = {pl.b:.2f}, "
                  f"asymptote c = {pct(pl.c)}) predicts {pct(pl.err_2x)} at 2× data, a "
                  f"gain of {gain_text(pl.gain_2x, pl.gain_2x_ci)} — {trend}")
    elif lc is not None and lc.sizes and len(lc.val_error.mean) == len(lc.sizes):
        sizes, val = lc.sizes, lc.val_error.mean
        fitted = lc.power_law is not None and lc.power_law.ok
        ev.append(f"learning curve: validation error {pct(val[0])} at {sizes[0]:,} images, "
                  f"{pct(val[-1])} at {sizes[-1]:,} "
                  + ("(its power law is not extrapolated: see the notes)" if fitted
                     else "(no power-law fit)"))
    c = f.curve
    if c is not None:
        p, best = c.param, fmt_value(c.best)
        s = (f"complexity curve over {p}: validation error is lowest "
             f"({pct(c.val[c.best_i])}) at {p} = {best}")
        if c.ref_i is not None and c.ref_i != c.best_i:
            s += f" vs {pct(c.val[c.ref_i])} at the current {p} = {fmt_value(c.ref)}"
            rem = c.remedy()
            if rem:
                s += f" (suggests {rem[0].replace('_', ' ')}, addressing {rem[1]})"
        elif c.ref_i is not None:
            s += ", the current value: the curve gives no reason to change it"
        elif c.ref is not None:
            s += f" (the current {p} = {fmt_value(c.ref)} is not on the curve)"
        elif c.direction > 0:
            s += ", the largest value tried"
        elif c.direction < 0:
            s += ", the smallest value tried"
        ev.append(s)
    return ev


def _decomposition_evidence(f: Facts) -> list[str]:
    d = f.decomposition
    if d is None:
        return []
    how = f" over {d.rounds} '{d.sampling}' rounds" if d.sampling else f" over {d.rounds} rounds"
    zo, ce = d.zero_one, d.cross_entropy
    s = (f"0-1 decomposition{how}: loss {pct(zo.loss.value)} = bias {pct(zo.bias.value)} + net "
         f"variance {pct(zo.net_variance.value)}")
    if f.share01 is not None:
        s += (f" ({100 * f.share01:.1f}% of the loss is variance; threshold "
              f"{100 * f.thresholds.variance_share_high:.0f}%)")
    ev = [s]
    s = (f"cross-entropy decomposition: risk {ce.risk.value:.3f} = bias {ce.bias.value:.3f} + "
         f"variance {ce.variance.value:.3f} nats")
    if f.share_ce is not None:
        s += f" ({100 * f.share_ce:.1f}% of the risk is variance)"
    ev.append(s)
    if d.ensemble is not None:
        ev.append(f"an ensemble of the {d.rounds} models errs {pct(d.ensemble.error)} vs "
                  f"{pct(zo.loss.value)} for one model on average: ensembling gains "
                  f"{pts(f.ens_gain, signed=False)}")
    return ev


# ----------------------------------------------------------------------------------- caveats

def _caveats(f: Facts) -> list[str]:
    th, cv = f.thresholds, []
    nf = f.results.noise_floor
    if f.target is not None and nf is not None:
        src = f" ({f.target.source})" if f.target.source else ""
        cv.append(f"'Bias' includes label noise and the Bayes (irreducible) error: the target "
                  f"{pct(f.target.value)}{src} is the best error known, not the irreducible "
                  f"one. The training labels' noise is estimated at {pct(nf.rate)} "
                  f"[{pct(nf.lo)}, {pct(nf.hi)}]: where validation labels are as noisy, that "
                  "much error is no model's to remove.")
    elif f.target is not None:
        src = f" ({f.target.source})" if f.target.source else ""
        cv.append(f"'Bias' includes label noise and the Bayes (irreducible) error: the target "
                  f"{pct(f.target.value)}{src} is the best error known, not the irreducible "
                  "one, and nothing measured here separates mislabelled or ambiguous images "
                  "from model bias.")
    else:
        cv.append("'Bias' includes label noise and the Bayes (irreducible) error. No target error "
                  "was given, so avoidable bias is not measured; pass --target-error.")
    es = " (early stopping is on)" if f.config.get("early_stopping") is True else ""
    test = (f"; the test error ({pct(f.test_err)}) is the honest estimate"
            if f.test_err is not None else "")
    cv.append("Validation error is optimistic when early stopping, checkpoint selection or "
              f"hyperparameter choices used the validation split{es}{test}.")
    if (f.test_err is not None and f.val_err is not None
            and f.test_err - f.val_err > th.variance_high):
        cv.append(f"Test error {pct(f.test_err)} exceeds validation error {pct(f.val_err)} by "
                  f"{pts(f.test_err - f.val_err, signed=False)}: the validation split is "
                  "optimistic or differs from the test split.")
    if f.train_err is None and f.val_err is None:
        cv.append("No reference train/validation errors: the verdict rests on the other "
                  "measurements only.")
    lc = f.results.learning_curve
    if lc is not None:
        k = len(set(lc.sizes))
        pl = lc.power_law
        if f.power_law is None and pl is not None and pl.ok:
            cv.append(f"The learning curve's power law is {f.power_law_note}. The gain from "
                      "more data is not predicted.")
        elif f.power_law is None:
            cv.append(f"The learning curve has no usable power-law fit ({f.power_law_note}): "
                      "the gain from more data is not predicted.")
        elif k < _MIN_CURVE_SIZES:
            cv.append(f"The learning curve has only {k} sizes for a 3-parameter power law: its "
                      "extrapolation to 2× data is fragile.")
        if len(lc.seeds) == 1:
            cv.append("The learning curve used one seed per size: its points carry no error "
                      "bars, and seed noise can look like a trend.")
    if f.curve is not None and f.curve.gain is not None and f.curve.gain > 0:
        cv.append("The complexity curve's best value was chosen on validation data, so its "
                  "measured gain is optimistic.")
    cv += _decomposition_caveats(f)
    if f.share_high and not f.gap_high and f.gap is not None:
        cv.append("High variance rests on the decomposition's variance share while the "
                  f"reference's train-validation gap ({pts(f.gap, signed=False)}) is small; the "
                  "decomposition's models may differ from the reference (sampling, size).")
    return cv


def _decomposition_caveats(f: Facts) -> list[str]:
    d = f.decomposition
    if d is None:
        return []
    cv, r = [], d.rounds
    for label, term in (("0-1 net variance", d.zero_one.net_variance),
                        ("cross-entropy variance", d.cross_entropy.variance)):
        se, value = term.se_models, term.value
        if se is not None and se > f.thresholds.se_ratio * abs(value):
            cv.append(f"With {r} rounds the {label} ({value:.4f}) has a between-model standard "
                      f"error of {se:.4f}: the rounds cannot separate it from noise; run more "
                      "rounds.")
    if r < 5:
        cv.append(f"Only {r} models were trained for the decomposition: the cross-entropy "
                  "variance is biased low by about (R−1)/R (see its jackknife value) and every "
                  "term rests on few models.")
    if d.sampling == "seed":
        cv.append("Sampling 'seed' retrains on the same data: the variance measured is "
                  "optimisation variance only, not the variance from the training data.")
    per_model = d.n_train_per_model or []
    n_per_model = sum(per_model) / len(per_model) if per_model else None
    if n_per_model is not None and f.train_n is not None and n_per_model < 0.9 * f.train_n:
        cv.append(f"The decomposition's models train on {int(n_per_model):,} images each vs "
                  f"{int(f.train_n):,} for the reference: their variance overstates the "
                  "reference model's.")
    if d.ensemble is not None:
        cv.append("The ensemble gain is measured on the decomposition's own models; a fresh "
                  "ensemble of reference models may gain a different amount.")
    return cv
