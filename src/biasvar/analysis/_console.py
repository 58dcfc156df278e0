"""The console summary of a :class:`~biasvar.analysis.Results`: what ``print(results)`` and the
CLI show. Reads the typed results only; computes nothing."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .._fmt import pct

if TYPE_CHECKING:
    from ._results import CurvePoint, Decomposition, NoiseFloor, PowerLaw, Remedy, Results, Term

__all__ = ["format_results", "format_decomposition", "format_verdict", "format_power_law",
           "format_noise_floor"]


def _pct(v: float | None) -> str:
    return "   n/a" if v is None else f"{100 * v:5.1f}%"


def _term(t: Term) -> str:
    lo, hi = t.ci95
    return (f"{t.value:.4f}  [{lo:.4f}, {hi:.4f}]" +
            (f"  ±{t.se_models:.4f} (models)" if t.se_models is not None else ""))


def format_decomposition(dec: Decomposition) -> list[str]:
    lines = [f"Decomposition: {dec.rounds} models, sampling {dec.sampling}, {dec.n_test} test "
             "points (value [95% CI over test points] ± s.e. over models)"]
    z, m, c = dec.zero_one, dec.mse, dec.cross_entropy
    rows = [("0-1 loss", z.loss), ("  bias", z.bias), ("  net variance", z.net_variance),
            ("  variance (unsigned)", z.variance), ("squared-error risk", m.risk),
            ("  bias²", m.bias2), ("  variance", m.variance),
            ("cross-entropy risk", c.risk), ("  bias", c.bias),
            ("  variance", c.variance), ("  variance (jackknife)", c.variance_jackknife)]
    lines += [f"  {name:<24} {_term(t)}" for name, t in rows]
    if dec.ensemble is not None:
        lines.append(f"  ensemble of the {dec.rounds} models: error "
                     f"{_pct(dec.ensemble.error)}, cross-entropy "
                     f"{dec.ensemble.cross_entropy:.4f}")
    return lines


def _ci(ci: list[float] | None) -> str:
    """`` [6.5, 7.6]``: a 95 % interval of an error or a gain, in percent / points."""
    return f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci and len(ci) == 2 else ""


def _steps(points: list[CurvePoint], size: int) -> tuple[str, str]:
    """(fits, optimizer steps) of the learning-curve points at ``size``; steps as a range when
    the fits differ."""
    steps = [p.steps for p in points if p.size == size]
    if not steps:
        return "", ""
    lo, hi = min(steps), max(steps)
    return str(len(steps)), f"{lo:,}" if lo == hi else f"{lo:,}–{hi:,}"


def format_power_law(pl: PowerLaw) -> str:
    """One line: the fit, and its extrapolation with 95 % intervals — or why there is none."""
    if not pl.ok:
        return f"power law: no fit ({pl.note})" if pl.note else "power law: no fit"
    from .curvefit import bound_note

    line = f"power law: err(n) ≈ {pl.a:.3g}·n^-{pl.b:.3g} + {pl.c:.3g}"
    refused = bound_note(pl.b, pl.c)  # also catches a fit stored before the refusal rules
    if pl.extrapolates and pl.err_2x is not None and refused is None:
        line += (f"; at 2× data {_pct(pl.err_2x).strip()}{_ci(pl.err_2x_ci)}, at 10× "
                 f"{_pct(pl.err_10x).strip()}{_ci(pl.err_10x_ci)}")
        if pl.gain_2x is not None:
            line += f"; gain at 2× {100 * pl.gain_2x:.1f} points{_ci(pl.gain_2x_ci)}"
        if pl.gain_2x_ci:
            line += f" (95% intervals over {pl.resamples} resamples of the seeds)"
        return line
    why = pl.note.split(". Fit: ")[0] if pl.note and not refused else f"not extrapolated: {refused}"
    return f"{line}; {why or 'not extrapolated'}"


def _curves(r: Results) -> list[str]:
    lines: list[str] = []
    lc = r.learning_curve
    if lc is not None:
        if lc.points:
            lines += ["", f"{'n_train':>8} {'fits':>5} {'steps':>13} {'train err':>10} "
                      f"{'val err':>10}"]
            for i, n in enumerate(lc.sizes):
                fits, steps = _steps(lc.points, n)
                lines.append(f"{n:>8} {fits:>5} {steps:>13} {_pct(lc.train_error.mean[i]):>10} "
                             f"{_pct(lc.val_error.mean[i]):>10}")
            if lc.policy:
                lines.append(f"optimizer steps per point: {lc.policy}")
        else:
            lines += ["", f"{'n_train':>8} {'train err':>10} {'val err':>10}"]
            lines += [f"{n:>8} {_pct(lc.train_error.mean[i]):>10} "
                      f"{_pct(lc.val_error.mean[i]):>10}" for i, n in enumerate(lc.sizes)]
        if lc.power_law is not None:
            lines.append(format_power_law(lc.power_law))
    cc = r.complexity_curve
    if cc is not None:
        lines += ["", f"{cc.param:>14} {'train err':>10} {'val err':>10}"]
        lines += [f"{v!s:>14} {_pct(cc.train_error.mean[i]):>10} "
                  f"{_pct(cc.val_error.mean[i]):>10}" for i, v in enumerate(cc.values)]
        lines.append(f"lowest validation error at {cc.param} = {cc.best_value}")
    return lines


def _gain_ci(r: Results, rem: Remedy) -> list[float] | None:
    """The 95 % interval of a remedy's predicted gain: more data's, from the power law."""
    pl = r.learning_curve.power_law if r.learning_curve is not None else None
    if (rem.name == "more_data" and pl is not None and pl.gain_2x_ci
            and pl.gain_2x is not None and rem.predicted_gain == pl.gain_2x):
        return pl.gain_2x_ci
    return None


def format_noise_floor(nf: NoiseFloor) -> str:
    """One line: the estimated label-noise rate of the training labels and its interval."""
    how = f" by {nf.method}" if nf.method else ""
    over = f" ({nf.interval})" if nf.interval else ""
    flagged = f"; {nf.n_issues:,} images flagged" if nf.n_issues is not None else ""
    return (f"label noise (estimated{how}): {pct(nf.rate)} of {nf.n:,} training labels, 95% "
            f"interval [{pct(nf.lo)}, {pct(nf.hi)}]{over}{flagged}")


def format_verdict(r: Results) -> list[str]:
    v = r.verdict
    if v is None:
        return []
    lines = ["", f"Verdict: {v.label.upper().replace('_', ' ')}"]
    lines += [f"  - {e}" for e in v.evidence]
    if v.remedies:
        lines.append("Remedies, best first:")
        for rem in v.remedies:
            gain = (f" (predicted gain {100 * rem.predicted_gain:.1f} points"
                    f"{_ci(_gain_ci(r, rem))})" if rem.predicted_gain is not None else "")
            lines += [f"  {rem.rank}. {rem.action}{gain}", f"     {rem.evidence}"]
    lines += [f"  note: {c}" for c in v.caveats]
    return lines


def short_source(source: str) -> str:
    """A target's source without its citation: the text before the first ':' or '(' —
    "best known Fashion-MNIST test error" — which the verbose form and the report give in
    full."""
    for sep in (":", " ("):
        if sep in source:
            source = source.split(sep, 1)[0]
    return source.strip()


_LABEL_TEXT = {"high_bias": "HIGH BIAS (underfitting)", "high_variance": "HIGH VARIANCE "
               "(overfitting)", "both": "BOTH (high bias and high variance)",
               "balanced": "BALANCED (neither stands out)"}


def _confusion_line(r: Results) -> str:
    """One line: the share of the test errors among the classes most confused with each other."""
    from ..metrics import confusions

    test = r.reference.test if r.reference is not None else None
    if not test or not r.classes:
        return ""
    c = confusions(test.get("confusion_matrix"), [str(x) for x in r.classes])
    if c is None or c["errors"] < 20:
        return ""
    return (f"  confusions: {pct(c['group_errors'] / c['errors'])} of the {c['errors']:,} test "
            f"errors are among {', '.join(c['group'])}")


def _quiet(r: Results, top: int) -> list[str]:
    """The quiet form: the verdict and the figures it rests on, the top remedies, the caveats'
    count (each line short; the tables and sentences are in the report and ``--verbose``)."""
    lines: list[str] = []
    v, ref, t = r.verdict, r.reference, r.target_error
    if v is not None:
        lines.append(f"Verdict: {_LABEL_TEXT.get(v.label, v.label.upper())}")
    if ref is not None:
        errs = [f"{name} {pct(ref.error(s))}" for s, name in
                (("train", "train"), ("val", "validation"), ("test", "test"))
                if ref.error(s) is not None]
        if errs:
            tail = f"; target {pct(t.value)}" if t is not None else ""
            src = short_source(t.source) if t is not None and t.source else ""
            lines.append(f"  error: {', '.join(errs)}{tail}" + (f" ({src})" if src else ""))
    if r.avoidable_bias is not None or r.variance_gap is not None:
        th = v.thresholds if v is not None else {}
        parts = []
        for name, value, key in (("avoidable bias", r.avoidable_bias, "bias_high"),
                                 ("variance gap", r.variance_gap, "variance_high")):
            if value is not None:
                limit = th.get(key)
                parts.append(f"{name} {100 * value:.1f} points"
                             + (f" (threshold {100 * limit:.1f})" if limit is not None else ""))
        lines.append("  " + ", ".join(parts))
    d = r.decomposition
    if d is not None:
        z = d.zero_one
        lines.append(f"  0-1 loss {pct(z.loss.value)} = bias {pct(z.bias.value)} + net variance "
                     f"{pct(z.net_variance.value)} ({d.rounds} models, {d.sampling})")
    if r.noise_floor is not None:
        nf = r.noise_floor
        lines.append(f"  label noise: {pct(nf.rate)} [{pct(nf.lo)}, {pct(nf.hi)}] of the "
                     "training labels (estimated)")
    conf = _confusion_line(r)
    if conf:
        lines.append(conf)
    lc = r.learning_curve
    if lc is not None and lc.power_law is not None and lc.power_law.ok \
            and lc.power_law.extrapolates and lc.power_law.err_2x is not None:
        pl = lc.power_law
        lines.append(f"  learning curve: validation error {pct(pl.err_2x)}{_ci(pl.err_2x_ci)} "
                     "predicted with 2× the data")
    if v is not None and v.remedies:
        lines.append(f"Top remedies ({min(top, len(v.remedies))} of {len(v.remedies)}):")
        for rem in sorted(v.remedies, key=lambda x: x.rank)[:top]:
            gain = (f"; predicted gain {100 * rem.predicted_gain:.1f} points"
                    f"{_ci(_gain_ci(r, rem))}" if rem.predicted_gain is not None else "")
            lines.append(f"  {rem.rank}. {rem.action} ({rem.addresses or 'other'}{gain})")
    if v is not None and (v.caveats or r.profile_note):
        n = len(v.caveats) + bool(r.profile_note)
        lines.append(f"{n} caveat{'s' if n != 1 else ''} and the evidence in the report "
                     "(or --verbose)")
    return lines


def format_results(r: Results, *, verbose: bool = True, top: int = 3) -> str:
    """The summary the CLI prints after an analysis: the quiet form (the verdict, the figures
    it rests on and the ``top`` remedies, a screen at most) or, ``verbose``, every table and
    sentence as well."""
    if not verbose and r.verdict is not None:
        lines = _quiet(r, top)
        if r.fits is not None and r.timing is not None:
            lines.append(f"fits: {r.fits.planned} planned, {r.fits.trained} trained, "
                         f"{r.fits.reused} reused; {float(r.timing.get('seconds', 0)):.0f} s")
        if r.run_dir is not None:
            lines.append(f"results: {r.run_dir / 'results.json'}")
        return "\n".join(lines)
    lines: list[str] = format_verdict(r)  # the verdict first, then what it rests on
    ref, t = r.reference, r.target_error
    if ref is not None and t is not None:
        lines += ["", f"Reference fit: train {_pct(ref.error('train'))}, val "
                  f"{_pct(ref.error('val'))}, test {_pct(ref.error('test'))} error; target "
                  f"{_pct(t.value)} ({short_source(t.source) if t.source else 'given'})"]
        if r.avoidable_bias is not None and r.variance_gap is not None:
            lines.append(f"avoidable bias {100 * r.avoidable_bias:.1f} points, variance gap "
                         f"{100 * r.variance_gap:.1f} points")
    if r.noise_floor is not None:
        lines.append(format_noise_floor(r.noise_floor))
    if verbose and r.decomposition is not None:
        lines += [""] + format_decomposition(r.decomposition)
    if verbose:
        lines += _curves(r)
    if r.profile_note:
        lines += ["", f"note: {r.profile_note}"]
    if r.fits is not None and r.timing is not None:
        lines += ["", f"fits: {r.fits.planned} planned, {r.fits.trained} trained, "
                  f"{r.fits.reused} reused; {float(r.timing.get('seconds', 0)):.0f} s"]
    if r.run_dir is not None:
        lines.append(f"results: {r.run_dir / 'results.json'}")
    if not lines and r.test_error is not None:
        lines.append(f"test error {pct(r.test_error)}")
    return "\n".join(lines).lstrip("\n")
