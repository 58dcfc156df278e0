"""The shift report: one offline HTML page for a ``biasvar shift`` output folder.

:func:`render_shift_report` reads ``shift.json`` and writes ``report.html`` beside it: the test
error against severity, one panel per corruption (after AdaBN as a dashed line when measured);
for an ensemble also the 0-1 bias and net variance against severity, to show which term grows
with the shift; every value in a table under its figure.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._html import _e, _img, _table, render_json_page, standalone_page

__all__ = ["render_shift_report"]

SHIFT_FILE = "shift.json"


def _series(doc: Mapping[str, Any], name: str, get: Any) -> tuple[list[int], list[float]]:
    """Severity 0 (clean) and each measured severity of ``name``: x, y."""
    rows = [doc["rows"][0]] + [r for r in doc["rows"] if r["corruption"] == name]
    return [r["severity"] for r in rows], [get(r) for r in rows]


def severity_plot(doc: Mapping[str, Any], terms: bool = False) -> str | None:
    """Small multiples, one per corruption: error (or, with ``terms``, the 0-1 bias and net
    variance) against severity, 0 = clean."""
    import matplotlib
    from matplotlib.ticker import PercentFormatter

    from ._plots import _RC, COLORS, _figure, _style, _subplots, _svg

    names = doc["corruptions"]
    if not names:
        return None
    ens = doc["models"] > 1
    key = "ensemble_error" if ens else "error"
    cols = min(4, len(names))
    nrows = -(-len(names) // cols)
    with matplotlib.rc_context(_RC):
        fig = _figure(9.6, 2.3 * nrows + 0.4)
        axes = _subplots(fig, nrows, cols)
        for ax, name in zip(axes, names):
            if terms:
                for label, get, color in (
                        ("0-1 bias", lambda r: r["zero_one"]["bias"], COLORS["total"]),
                        ("0-1 net variance", lambda r: r["zero_one"]["net_variance"],
                         COLORS["val"])):
                    xs, ys = _series(doc, name, get)
                    ax.plot(xs, ys, marker="o", ms=3.5, lw=1.5, color=color, label=label)
            else:
                xs, ys = _series(doc, name, lambda r: r[key])
                ax.plot(xs, ys, marker="o", ms=3.5, lw=1.6, color=COLORS["test"],
                        label="ensemble" if ens else "model")
                if ens:
                    xs, ys = _series(doc, name, lambda r: r["error"])
                    ax.plot(xs, ys, marker=".", lw=1.0, color=COLORS["extra"],
                            label="mean member")
                if doc.get("few_shot"):
                    pts = [(r["severity"], r["few_shot"]["after"][key]) for r in doc["rows"]
                           if r["corruption"] == name and r.get("few_shot")]
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="^", ms=3.5,
                            lw=1.2, ls=":", color=COLORS["total"],
                            label=f"after few-shot ({doc['few_shot']}/class; other images)")
                if doc["adabn"]:
                    xs, ys = _series(doc, name, lambda r: r["adabn"][key])
                    ax.plot(xs, ys, marker="o", ms=3, lw=1.4, ls="--", color=COLORS["train"],
                            label="after AdaBN")
            ax.set_title(name.replace("_", " "), fontsize=9)
            ax.set_xticks(xs)
            ax.set_xlabel("severity (0 = clean)", fontsize=8)
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=None))
            _style(ax)
        for ax in axes[len(names):]:
            ax.set_visible(False)
        axes[0].legend(loc="upper left", fontsize=7)
        return _svg(fig)


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def _page(doc: Mapping[str, Any]) -> str:
    ens = doc["models"] > 1
    key = "ensemble_error" if ens else "error"
    head = [("corruption", False), ("severity", True), ("error", True)]
    if ens:
        head += [("mean member error", True), ("0-1 bias", True), ("0-1 net variance", True),
                 ("CE variance", True)]
    if doc["adabn"]:
        head += [("error after AdaBN", True), ("change", True)]
    few = bool(doc.get("few_shot"))
    if few:
        head += [(f"few-shot ({doc['few_shot']}/class): before", True), ("after", True)]
    rows = []
    for r in doc["rows"]:
        row = [_e(r["corruption"]), str(r["severity"]), _pct(r[key])]
        if ens:
            row += [_pct(r["error"]), _pct(r["zero_one"]["bias"]),
                    _pct(r["zero_one"]["net_variance"]),
                    f"{r['cross_entropy_terms']['variance']:.4f}"]
        if doc["adabn"]:
            a = r["adabn"][key]
            row += [_pct(a), f"{100 * (a - r[key]):+.2f} points"]
        if few:
            fs = r.get("few_shot")
            row += [_pct(fs["before"][key]), _pct(fs["after"][key])] if fs else ["–", "–"]
        rows.append(row)
    what = (f"the ensemble of {doc['models']} members" if ens else "the model")
    body: list[str] = [] if not doc["corruptions"] else [
            "<section id=\"errors\"><h2>Error against severity</h2><p class=\"muted\">The test "
            f"error of {_e(what)} on {doc['n_test']} test images, each corrupted at severities "
            f"1–5 (seed {doc['seed']}; a rerun is identical)"
            + ("; dashed: after AdaBN (batch-norm statistics re-estimated on the corrupted "
               "test images, unlabelled)" if doc["adabn"] else "") + ".</p>",
            _img(severity_plot(doc), "error against severity"), "</section>"]
    if ens and doc["corruptions"]:
        body += ["<section id=\"terms\"><h2>Which term grows</h2><p class=\"muted\">The 0-1 "
                 "bias and net variance of the members' decomposition at each severity.</p>",
                 _img(severity_plot(doc, terms=True), "bias and variance against severity"),
                 "</section>"]
    targets = [r for r in doc["rows"] if r["corruption"].startswith("target:")]
    if targets:
        items = "".join(
            f"<li>{_e(r['corruption'][7:])}: {_pct(r[key])} error on {r.get('n', '?')} images "
            f"(the run's own test set: {_pct(doc['rows'][0][key])})"
            + (f"; after AdaBN {_pct(r['adabn'][key])}" if doc["adabn"] else "") + "</li>"
            for r in targets)
        notes = "".join(f"<li>{_e(n)}</li>" for n in doc.get("notes") or [])
        body += [f"<section id=\"target\"><h2>Another dataset</h2><ul>{items}{notes}</ul>"
                 "</section>"]
    body += ["<section id=\"values\"><h2>Values</h2><div style=\"overflow-x:auto\">",
             _table(head, rows), "</div></section>"]
    title = f"biasvar shift: {_e(doc['dataset'])} · {_e(doc['model'])}"
    return standalone_page(title, "shift", "\n".join(body), SHIFT_FILE)


def render_shift_report(out_dir: str | Path) -> Path:
    """Write ``report.html`` for a ``biasvar shift`` output folder; returns its path."""
    return render_json_page(out_dir, SHIFT_FILE, "shift", _page)
