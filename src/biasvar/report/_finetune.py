"""The finetune report: one offline HTML page for a ``biasvar finetune`` run directory.

:func:`render_finetune_report` reads ``finetune.json`` and writes ``report.html``: the learning
curve of both arms (fine-tuned and from scratch; test error, mean over seeds with its 95 %
t-interval as a band, every seed a dot), the 0-1 bias and net variance of each arm at each size,
and every value in a table.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._html import _e, _img, _table, render_json_page, standalone_page

__all__ = ["render_finetune_report"]

FINETUNE_FILE = "finetune.json"
ARMS = (("finetuned", "fine-tuned"), ("scratch", "from scratch"), ("head_only", "head only"))


def curve_plot(doc: Mapping[str, Any]) -> str | None:
    import matplotlib
    from matplotlib.ticker import PercentFormatter

    from ._plots import _RC, COLORS, _figure, _style, _subplots, _svg

    pts = doc["points"]
    if not pts:
        return None
    xs = [p["n_train"] for p in pts]
    colors = {"finetuned": COLORS["val"], "scratch": COLORS["total"], "head_only": COLORS["extra"]}
    with matplotlib.rc_context(_RC):
        fig = _figure(9.0, 3.2)
        axes = _subplots(fig, 1, 2)
        ax = axes[0]
        for arm, label in ARMS:
            m = [p[arm]["error"]["value"] for p in pts]
            lo = [p[arm]["error"]["ci95"][0] for p in pts]
            hi = [p[arm]["error"]["ci95"][1] for p in pts]
            ax.plot(xs, m, marker="o", ms=4, lw=1.6, color=colors[arm], label=label)
            ax.fill_between(xs, lo, hi, color=colors[arm], alpha=0.15, lw=0)
            for x, p in zip(xs, pts):
                ax.scatter([x] * len(p[arm]["test_errors"]), p[arm]["test_errors"], s=9,
                           color=colors[arm], alpha=0.6, lw=0)
        ax.set_xscale("log")
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.minorticks_off()
        ax.set_xlabel("training images")
        ax.set_ylabel("test error")
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=None))
        ax.legend(fontsize=7)
        ax.set_title("test error (band: 95% over seeds)", fontsize=9)
        _style(ax)
        ax = axes[1]
        if all("zero_one" in p["finetuned"] for p in pts):
            for arm, label in ARMS[:2]:
                ax.plot(xs, [p[arm]["zero_one"]["bias"]["value"] for p in pts], marker="o",
                        ms=4, lw=1.6, color=colors[arm], label=f"{label}: bias")
                ax.plot(xs, [p[arm]["zero_one"]["net_variance"]["value"] for p in pts],
                        marker="s", ms=4, lw=1.2, ls="--", color=colors[arm],
                        label=f"{label}: net variance")
            ax.set_xscale("log")
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.minorticks_off()
            ax.set_xlabel("training images")
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=None))
            ax.legend(fontsize=7)
            ax.set_title("0-1 bias and net variance over seeds", fontsize=9)
            _style(ax)
        else:
            ax.set_visible(False)
        return _svg(fig)


def _ci(t: Mapping[str, Any]) -> str:
    lo, hi = t["ci95"]
    return f"{100 * t['value']:.2f}% [{100 * lo:.2f}, {100 * hi:.2f}]"


def _page(doc: Mapping[str, Any]) -> str:
    rows = []
    for p in doc["points"]:
        for arm, label in ARMS:
            a = p[arm]
            z = a.get("zero_one")
            rows.append([str(p["n_train"]), _e(label), _ci(a["error"]),
                         _ci(z["bias"]) if z else "–", _ci(z["net_variance"]) if z else "–",
                         f"{a['cross_entropy']['variance']['value']:.4f}" if z else "–"])
    table = _table([("n_train", True), ("arm", False), ("test error [95% over seeds]", True),
                    ("0-1 bias", True), ("0-1 net variance", True), ("CE variance", True)],
                   rows)
    notes = "".join(f"<li>{_e(n)}</li>" for n in doc["notes"])
    body = (f"<section id=\"curve\"><h2>Fine-tuned against from scratch</h2><p class=\"muted\">"
            f"From <code>{_e(doc['weights'])}</code>: the head trained alone for "
            f"{doc['head_epochs']} epochs with the backbone frozen (head only), then everything "
            f"for {doc['epochs']} epochs with the backbone at {doc['backbone_lr']:g}× the "
            f"learning rate (fine-tuned); from scratch: the same model and epochs. "
            f"{doc['seeds']} seeds per point; test set of {doc['n_test']} images.</p>"
            f"<ul>{notes}</ul>{_img(curve_plot(doc), 'fine-tuned vs from scratch')}"
            f"<div style=\"overflow-x:auto\">{table}</div></section>")
    title = f"biasvar finetune: {_e(doc['dataset'])} · {_e(doc['model'])}"
    return standalone_page(title, "finetune", body, FINETUNE_FILE)


def render_finetune_report(run_dir: str | Path) -> Path:
    """Write ``report.html`` for a ``biasvar finetune`` run directory; returns its path."""
    return render_json_page(run_dir, FINETUNE_FILE, "finetune", _page)
