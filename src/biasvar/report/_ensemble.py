"""The ensemble report: one offline HTML page for a ``biasvar ensemble`` run directory.

:func:`render_ensemble_report` reads ``ensemble.json`` and writes ``report.html`` beside it: the
answer first (the ensemble's test error against its mean member's, the measured gain beside the
gain the decomposition predicted, each with its 95 % interval over test points), then a figure
of the two gains side by side (error and cross-entropy), each member's test error against the
ensemble's, the test images the ensemble got most confidently wrong (gallery.json) and the
decomposition's terms the prediction rests on. Every figure is inline SVG
with its values in a table; every string from the file is HTML-escaped.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._fmt import pct
from ._html import (GALLERY_INTRO, _card, _e, _img, _table, gallery_cards, render_json_page,
                    standalone_page)

__all__ = ["render_ensemble_report", "sources"]

SWA_NOTE = ("The averaged weights are one model; what the decomposition predicts is the gain of "
            "averaging the snapshots' probabilities, which weight averaging approximates "
            "(Izmailov et al. 2018)")

ENSEMBLE_FILE = "ensemble.json"


def sources(doc: Mapping[str, Any]) -> tuple[str, str]:
    """What measured and what predicted the gain, in words (the summary's and the page's)."""
    k, r = doc["members"], doc["rounds"]
    if doc["kind"] == "snapshot":
        return f"{k} snapshots of a fresh run", f"{r} snapshots of another run"
    return f"{k} fresh members", f"{r} decomposition models"


def _pts(t: Mapping[str, Any]) -> str:
    lo, hi = t["ci95"]
    return f"{100 * t['value']:.2f} points [{100 * lo:.2f}, {100 * hi:.2f}]"


def _term(t: Mapping[str, Any], scale: float = 100.0, digits: int = 2) -> str:
    lo, hi = t["ci95"]
    unit = "%" if scale == 100.0 else ""
    return (f"{scale * t['value']:.{digits}f}{unit} "
            f"[{scale * lo:.{digits}f}, {scale * hi:.{digits}f}]")


def gain_plot(doc: Mapping[str, Any]) -> str | None:
    """Predicted and measured gain with their 95 % intervals: error (points) on the left,
    cross-entropy (nats) on the right."""
    import matplotlib

    from ._plots import _RC, COLORS, _figure, _style, _subplots, _svg

    with matplotlib.rc_context(_RC):
        fig = _figure(9.0, 2.9)
        axes = _subplots(fig, 1, 2)
        for ax, key, scale, label in ((axes[0], "gain_error", 100.0, "test error gain (points)"),
                                      (axes[1], "gain_ce", 1.0, "cross-entropy gain (nats)")):
            snap = doc["kind"] == "snapshot"
            rows = [("predicted\n(" + ("another run" if snap else "decomposition") + ")",
                     doc["predicted"][key], COLORS["total"]),
                    ("measured\n(" + ("fresh run" if snap else "fresh members") + ")",
                     doc["measured"][key], COLORS["val"])]
            for i, (name, t, color) in enumerate(rows):
                v, (lo, hi) = scale * t["value"], t["ci95"]
                ax.errorbar([v], [i], xerr=[[v - scale * lo], [scale * hi - v]], fmt="o",
                            color=color, capsize=4, ms=6, lw=1.6)
            ax.axvline(0, color="#999999", lw=0.8, ls=":")
            ax.set_yticks([0, 1], [r[0] for r in rows])
            ax.set_ylim(-0.6, 1.6)
            ax.set_xlabel(label)
            _style(ax)
        return _svg(fig)


def members_plot(doc: Mapping[str, Any]) -> str | None:
    """Each fresh member's test error (dots), their mean and the ensemble's (lines)."""
    import matplotlib
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    from ._plots import _RC, COLORS, _figure, _style, _subplots, _svg

    errs = [m["test_error"] for m in doc["member_fits"]]
    if not errs:
        return None
    with matplotlib.rc_context(_RC):
        fig = _figure(9.0, 2.8)
        ax = _subplots(fig, 1, 1)[0]
        ax.scatter(range(1, len(errs) + 1), errs, s=30, color=COLORS["val"], zorder=3,
                   label="member")
        ax.axhline(doc["measured"]["member_error"]["value"], color=COLORS["total"], ls="--",
                   lw=1.2, label="mean member")
        ax.axhline(doc["measured"]["ensemble_error"]["value"], color=COLORS["test"], lw=1.6,
                   label="ensemble")
        ax.set_xlabel("member")
        ax.set_ylabel("test error")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=1))
        lo = min(errs + [doc["measured"]["ensemble_error"]["value"]])
        hi = max(errs + [doc["measured"]["member_error"]["value"]])
        pad = max(hi - lo, 0.002) * 0.25
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlim(0.5, len(errs) + 0.5)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
        _style(ax)
        return _svg(fig)


def _section(sid: str, title: str, body: str, intro: str = "") -> str:
    intro_html = f'<p class="muted">{intro}</p>\n' if intro else ""
    return (f'<section id="{sid}" class="{sid}">\n<h2>{title}</h2>\n{intro_html}{body}\n'
            "</section>\n")


def _page(doc: Mapping[str, Any], gallery: Any = None) -> str:
    m, p = doc["measured"], doc["predicted"]
    k, r = doc["members"], doc["rounds"]
    meas, pred = sources(doc)
    swa = doc["combine"] == "weights"
    how = "weights averaged (SWA)" if swa else f"{doc['combine']} averaged"
    cards = "".join([
        _card("mean member", _e(pct(m["member_error"]["value"], 2)), "test error"),
        _card("ensemble", _e(pct(m["ensemble_error"]["value"], 2)),
              f"{k} {_e(doc['kind'])} members, {_e(how)}"),
        *([_card("last snapshot", _e(pct(m["member_errors"][-1], 2)),
                 "the run's own final model")] if doc["kind"] == "snapshot" else []),
        _card("measured gain", _e(_pts(m["gain_error"])), _e(meas)),
        _card("predicted gain", _e(_pts(p["gain_error"])), f"from {_e(pred)}"),
    ])
    answer = (f'<div class="cards">{cards}</div>\n<p>{_e(doc["agreement"])}.</p>'
              + "".join(f"\n<p>{_e(n)}</p>" for n in doc.get("notes") or [])
              + (f'\n<p class="muted">{_e(SWA_NOTE)}.</p>' if swa else ""))
    rows = []
    for name, key, scale in (("test error (%)", "error", 100.0),
                             ("cross-entropy (nats)", "ce", 1.0)):
        digits = 2 if scale == 100.0 else 4
        for what, label in (("member", "mean model"), ("ensemble", "ensemble"),
                            ("gain", "gain (mean − ensemble)")):
            rows.append([_e(name if what == "member" else ""), _e(label),
                         _e(_term(p[f"{what}_{key}"], scale, digits)),
                         _e(_term(m[f"{what}_{key}"], scale, digits))])
    table = _table([("loss", False), ("", False),
                    (f"predicted: {pred}", True),
                    (f"measured: {meas}", True)], rows)
    gains = (_img(gain_plot(doc), "predicted vs measured gain") + table)
    member_rows = [[str(i + 1), _e(f["key"] + (f" · snapshot {f['snapshot']}"
                                               if "snapshot" in f else "")),
                    str(f["seed"]), str(f["n_train"]),
                    _e(pct(f["test_error"], 2))] for i, f in enumerate(doc["member_fits"])]
    members = (_img(members_plot(doc), "member and ensemble test errors")
               + _table([("member", True), ("fit", False), ("seed", True), ("n_train", True),
                         ("test error", True)], member_rows))
    dec = doc["decomposition"]
    names = {"zero_one": "0-1", "cross_entropy": "cross-entropy"}
    drows = [[_e(f"{names[loss]} {term.replace('_', ' ')}"), _e(_term(dec[loss][term], 100.0 if loss == "zero_one"
                                             else 1.0, 3))]
             for loss, terms in (("zero_one", ("loss", "bias", "net_variance")),
                                 ("cross_entropy", ("risk", "bias", "variance",
                                                    "variance_jackknife")))
             for term in terms if term in dec[loss]]
    decomp = _table([("term", False), ("value [95% CI]", True)], drows)
    cards = gallery_cards(gallery)
    body = "".join([
        _section("answer", "Answer", answer),
        _section("gains", "Predicted vs measured gain", gains,
                 (f"Predicted: the mean snapshot's loss minus their ensemble's, on the {r} "
                  "snapshots (the ends of the cosine cycles) of a run with the decomposition's "
                  "seed; for cross-entropy with log-probabilities averaged this is their "
                  "decomposition's variance term. Measured: the same on the snapshots of a "
                  "fresh run (another seed)"
                  + (", its ensemble being the snapshots' averaged weights" if swa else "")
                  if doc["kind"] == "snapshot" else
                  f"Predicted: the mean model's loss minus the ensemble's, on the {r} models the "
                  f"decomposition trained ({_e(doc['sampling'])} sampling); for cross-entropy "
                  "with log-probabilities averaged this is the decomposition's variance term. "
                  f"Measured: the same on {k} members trained fresh (other seeds"
                  + (", other bootstrap samples" if doc["kind"] == "bagging" else "") + ")")
                 + f". Intervals: 95 % over the {doc['n_test']} test points (a paired "
                 "bootstrap); they do not cover other draws of the models."),
        *([_section("mistakes", "Most confidently wrong test images",
                    f'<div class="gallery">{"".join(cards)}</div>',
                    "The ensemble's: " + GALLERY_INTRO)] if cards else []),
        _section("members", "Members", members,
                 "Each member's test error; the ensemble's and the mean member's as lines."),
        _section("decomposition", "The decomposition behind the prediction", decomp,
                 "Terms of the predictors' decomposition (0-1 in %, cross-entropy in nats), "
                 "95 % intervals over test points. The cross-entropy variance is the predicted "
                 "cross-entropy gain; the 0-1 net variance is measured against the models' "
                 "majority vote, not against the averaged ensemble, so it need not equal the "
                 "predicted error gain."),
    ])
    title = f"biasvar ensemble: {_e(doc['dataset'])} · {_e(doc['model'])}"
    return standalone_page(title, "ensemble", body, ENSEMBLE_FILE)


def render_ensemble_report(run_dir: str | Path) -> Path:
    """Write ``report.html`` for a ``biasvar ensemble`` run directory (with the ensemble's
    gallery.json when there is one); returns its path."""
    from .._io import read_json

    try:
        gallery = read_json(Path(run_dir) / "gallery.json")
    except (OSError, ValueError):
        gallery = None
    return render_json_page(run_dir, ENSEMBLE_FILE, "ensemble",
                            lambda doc: _page(doc, gallery if isinstance(gallery, list) else None))
