"""The HTML page: one self-contained, offline file (inline CSS, inline base64 PNG figures).

Every section is built from the saved run files only (see :func:`biasvar.report.load_run`) and
is left out when its data is absent. Every string that comes from the run (class names, config
values, paths, evidence text) goes through :func:`_e`, which HTML-escapes it and breaks ``://``
so that no ``http://`` / ``https://`` reference can appear in the page.
"""
from __future__ import annotations

import html
import json
import math
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from ._load import RUN_FILES, load_run

__all__ = ["render_report", "render_html", "LABEL_PHRASES"]

#: the human reading of each verdict label (SCHEMA.md's verdict.label)
LABEL_PHRASES = {
    "high_bias": ("High bias (underfitting)",
                  "the model does not fit even its training data as well as this task allows."),
    "high_variance": ("High variance (overfitting)",
                      "the model does clearly worse on new images than on its training images."),
    "both": ("High bias and high variance",
             "the model underfits the training data and still does worse on new images."),
    "balanced": ("Balanced",
                 "neither bias nor variance stands out against the thresholds."),
}
_LABEL_COLORS = {"high_bias": "#4c72b0", "high_variance": "#dd8452", "both": "#c44e52",
                 "balanced": "#55a868"}

_B64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")

_CSS = """
:root{--fg:#1d2430;--muted:#5b6472;--line:#e2e6eb;--soft:#f5f7fa;--bias:#4c72b0;--var:#dd8452}
*{box-sizing:border-box}
body{margin:0;background:#e9edf1;color:var(--fg);
 font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1000px;margin:0 auto;background:#fff;padding:22px 30px 40px}
header h1{font-size:23px;margin:0 0 2px}
header .sub{color:var(--muted);font-size:13.5px;word-break:break-all}
nav{margin:10px 0 0;font-size:13px;display:flex;flex-wrap:wrap;gap:4px 14px}
nav a{color:var(--muted);text-decoration:none;border-bottom:1px dotted #9aa3ad}
h2{font-size:19px;margin:30px 0 8px;padding-top:14px;border-top:1px solid var(--line)}
h3{font-size:15px;margin:18px 0 6px}
p{margin:6px 0}
.muted,.note{color:var(--muted);font-size:13.5px}
code{font:12.5px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--soft);
 padding:1px 4px;border-radius:3px;word-break:break-word}
img.plot{display:block;width:100%;height:auto;margin:6px 0}
img.plot.square{max-width:640px;margin:6px auto}
table{border-collapse:collapse;width:100%;font-size:13.5px;margin:6px 0}
th,td{padding:5px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{font-weight:600;background:var(--soft)}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
#verdict{border-left:7px solid var(--vc);background:var(--soft);padding:14px 20px 12px;
 border-radius:6px;margin-top:18px}
#verdict h2{border:0;margin:0;padding:0;font-size:21px}
.label{display:inline-block;background:var(--vc);color:#fff;font:600 13px/1.2 ui-monospace,
 SFMono-Regular,Menlo,Consolas,monospace;padding:4px 8px;border-radius:4px;margin-right:8px;
 vertical-align:3px}
.phrase{font-size:16px}
ul{margin:6px 0;padding-left:22px}
li{margin:2px 0}
ul.caveats li{color:#6b4f00}
.chip{display:inline-block;padding:1px 7px;border-radius:10px;color:#fff;font-size:12px}
.chip.bias{background:var(--bias)}.chip.variance{background:var(--var)}
.chip.other{background:#888}
.gain{font-weight:600}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:10px;margin:8px 0}
.card{border:1px solid var(--line);border-radius:6px;padding:8px 12px}
.card .k{font-size:11.5px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:22px;font-weight:600;font-variant-numeric:tabular-nums}
.card .d{font-size:12px;color:var(--muted)}
.bar{display:inline-block;height:9px;background:var(--bias);border-radius:2px;
 vertical-align:middle;margin-left:6px}
tr.low td{background:#fff4e5}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(124px,1fr));gap:10px}
.gallery figure{margin:0;border:1px solid var(--line);border-radius:6px;padding:6px;
 font-size:12px;line-height:1.35}
.gallery img{display:block;width:100%;height:auto;image-rendering:pixelated;background:#000;
 border-radius:3px}
.gallery .t{color:#1a7f37}.gallery .p{color:#b42318}
.gallery .src{display:block;overflow-wrap:anywhere;font-size:11px}
.two{display:grid;grid-template-columns:1fr 1fr;gap:18px;align-items:start}
table.kv{font-size:12.5px}table.kv td{padding:3px 6px}
table.kv td:first-child{white-space:nowrap;width:1%}
table.kv td:last-child{word-break:break-word}
.notice{background:#fff4e5;border:1px solid #f5c26b;border-radius:6px;padding:8px 12px;
 font-size:13.5px;margin:10px 0}
details summary{cursor:pointer;color:var(--muted);font-size:13.5px;margin:6px 0}
footer{margin-top:30px;color:var(--muted);font-size:12.5px}
@media (max-width:760px){.two{grid-template-columns:1fr}main{padding:14px}}
"""


# ----------------------------------------------------------------------------------- helpers

def _e(value: Any) -> str:
    """HTML-escape any value (quotes included) and break ``://`` with an entity, so text from
    the run can neither inject markup nor put a URL reference in the page."""
    return html.escape(str(value), quote=True).replace("://", ":&#47;&#47;")


def _t(value: Any) -> str:
    """Escaped prose from the run in which `backticked` spans become <code> (after escaping, so
    the spans cannot carry markup)."""
    return re.sub(r"`([^`<>]+)`", r"<code>\1</code>", _e(value))


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _get(d: Any, *path: Any) -> Any:
    for key in path:
        if isinstance(d, dict):
            d = d.get(key)
        elif isinstance(d, list) and isinstance(key, int) and -len(d) <= key < len(d):
            d = d[key]
        else:
            return None
    return d


def _pct(x: Any, digits: int = 1) -> str:
    v = _num(x)
    return "—" if v is None else f"{100 * v:.{digits}f}%"


def _pts(x: Any, digits: int = 1) -> str:
    v = _num(x)
    return "—" if v is None else f"{100 * v:+.{digits}f} points".replace("-", "−")


def _f(x: Any, digits: int = 3) -> str:
    v = _num(x)
    return "—" if v is None else f"{v:.{digits}f}"


def _gain(x: Any) -> str:
    """An absolute error reduction in points, unsigned (e.g. ``1.20 points``)."""
    v = _num(x)
    return "—" if v is None else f"{100 * v:.2f} points"


def _int(x: Any) -> str:
    v = _num(x)
    return "—" if v is None else f"{int(v):,}"


def _img(b64: str | None, alt: str, cls: str = "plot") -> str:
    if not b64:
        return ""
    return f'<img class="{cls}" alt="{_e(alt)}" src="data:image/png;base64,{b64}">'


def _section(sid: str, title: str, body: str, intro: str = "") -> str:
    intro_html = f'<p class="muted">{intro}</p>' if intro else ""
    return f'<section id="{sid}">\n<h2>{_e(title)}</h2>\n{intro_html}\n{body}\n</section>\n'


def _table(head: Sequence[tuple[str, bool]], rows: Sequence[Sequence[str]],
           row_classes: Sequence[str] | None = None) -> str:
    """A table from pre-escaped cells; ``head`` is (escaped title, numeric?) per column."""
    th = "".join(f'<th class="num">{h}</th>' if n else f"<th>{h}</th>" for h, n in head)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        tds = "".join(f'<td class="num">{c}</td>' if head[j][1] else f"<td>{c}</td>"
                      for j, c in enumerate(row))
        body.append(f"<tr{cls}>{tds}</tr>")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _plain(value: Any) -> str:
    """A config / environment value as short text (lists and mappings as compact JSON)."""
    if isinstance(value, (dict, list, tuple)):
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return " ".join(value)
        try:
            return json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            return str(value)
    if value is None:
        return "null"
    return str(value)


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and len(v) <= 12:
            out += _flatten(v, key + ".")
        else:
            out.append((key, v))
    return out


def _kv_table(d: dict[str, Any]) -> str:
    rows = [[f"<code>{_e(k)}</code>", _e(_plain(v))] for k, v in _flatten(d)]
    return _table([("key", False), ("value", False)], rows).replace("<table>",
                                                                    '<table class="kv">', 1)


class _Run:
    """The run's files with the fallbacks between them resolved (results.json first)."""

    def __init__(self, run: dict[str, Any]):
        self.raw = run
        self.results: dict[str, Any] = run.get("results") or {}
        r = self.results
        ref = r.get("reference") if isinstance(r.get("reference"), dict) else {}
        splits = {s: ref[s] for s in ("train", "val", "test") if isinstance(ref.get(s), dict)}
        metrics = run.get("metrics") if isinstance(run.get("metrics"), dict) else {}
        self.metrics: dict[str, dict] = splits or {s: metrics[s] for s in ("train", "val", "test")
                                                   if isinstance(metrics.get(s), dict)}
        self.metrics_source = "results.json (reference model)" if splits else "metrics.json"
        hist = run.get("history")
        if not hist and isinstance(ref.get("history"), list):
            hist = ref["history"]
        self.history: list[dict] = [h for h in hist or [] if isinstance(h, dict)]
        cfg = run.get("config")
        self.config: dict[str, Any] = cfg if isinstance(cfg, dict) else (
            r["config"] if isinstance(r.get("config"), dict) else {})
        env = run.get("env")
        self.env: dict[str, Any] = env if isinstance(env, dict) else (
            r["environment"] if isinstance(r.get("environment"), dict) else {})
        gal = run.get("gallery")
        self.gallery: list[dict] = [g for g in gal or [] if isinstance(g, dict)]
        classes = r.get("classes")
        if not isinstance(classes, list):
            pc = _get(self.metrics, "test", "per_class") or _get(self.metrics, "val", "per_class")
            classes = list(pc) if isinstance(pc, dict) else []
        self.classes: list[str] = [str(c) for c in classes]

    def first(self, key: str) -> Any:
        """``key`` from results.json, else from the config (dataset, model, command)."""
        v = self.results.get(key)
        return v if v is not None else self.config.get(key)


# ----------------------------------------------------------------------------------- sections

def _header(run: _Run, nav: list[tuple[str, str]]) -> str:
    r = run.results
    command = r.get("command") or ("train" if run.raw.get("metrics") else None)
    parts = [p for p in (command, run.first("dataset"), run.first("model")) if p]
    title = " · ".join(_e(p) for p in parts) or "run"
    links = "".join(f'<a href="#{sid}">{_e(t)}</a>' for sid, t in nav)
    profile = f" · profile {_e(r['profile'])}" if r.get("profile") else ""
    return (f"<header><h1>biasvar report: {title}</h1>"
            f'<div class="sub">run directory <code>{_e(run.raw.get("run_dir", ""))}</code>'
            f"{profile}</div><nav>{links}</nav></header>")


def _verdict(run: _Run) -> str:
    v = run.results.get("verdict")
    if not isinstance(v, dict) or not v.get("label"):
        return ""
    label = str(v["label"])
    title, phrase = LABEL_PHRASES.get(label, ("Verdict", "an unrecognised verdict label."))
    color = _LABEL_COLORS.get(label, "#666666")
    parts = [f'<section id="verdict" style="--vc:{color}">',
             f'<h2><span class="label">{_e(label)}</span>{_e(title)}</h2>',
             f'<p class="phrase">{_e(phrase[0].upper() + phrase[1:])}</p>']
    ev = [x for x in v.get("evidence") or [] if x is not None]
    if ev:
        parts.append("<h3>Evidence</h3><ul>" + "".join(f"<li>{_t(x)}</li>" for x in ev) + "</ul>")
    rem = [x for x in v.get("remedies") or [] if isinstance(x, dict)]
    if rem:
        rows = []
        for x in sorted(rem, key=lambda x: (_num(x.get("rank")) or math.inf)):
            side = str(x.get("addresses", ""))
            chip = f'<span class="chip {side if side in ("bias", "variance") else "other"}">' \
                   f"{_e(side or '—')}</span>"
            gain = _num(x.get("predicted_gain"))
            gain_html = (f'<span class="gain">{100 * gain:.1f} points</span>' if gain is not None
                         else '<span class="muted">not measured</span>')
            name = f'<br><code>{_e(x["name"])}</code>' if x.get("name") else ""
            rows.append([_e(x.get("rank", "")), f"{_t(x.get('action', ''))}{name}", chip,
                         gain_html, _t(x.get("evidence", ""))])
        parts.append("<h3>Remedies, ranked</h3>")
        parts.append(_table([("#", True), ("action", False), ("addresses", False),
                             ("predicted gain", True), ("evidence", False)], rows))
        parts.append('<p class="note">Predicted gain: the absolute error reduction the '
                     "measurements predict (from the learning curve's power law, the "
                     "decomposition's ensemble gain or the complexity curve); "
                     "“not measured” remedies are ranked by how far their side exceeds its "
                     "threshold.</p>")
    cav = [x for x in v.get("caveats") or [] if x is not None]
    if cav:
        parts.append('<h3>Caveats</h3><ul class="caveats">'
                     + "".join(f"<li>{_t(x)}</li>" for x in cav) + "</ul>")
    th = v.get("thresholds")
    if isinstance(th, dict) and th:
        cells = ", ".join(f"<code>{_e(k)}</code> = {_e(_plain(val))}" for k, val in th.items())
        parts.append(f'<p class="note">Thresholds: {cells}.</p>')
    parts.append("</section>")
    return "\n".join(parts)


def _card(key: str, value: str, detail: str = "") -> str:
    d = f'<div class="d">{detail}</div>' if detail else ""
    return f'<div class="card"><div class="k">{key}</div><div class="v">{value}</div>{d}</div>'


def _key_figures(run: _Run) -> str:
    r, m = run.results, run.metrics
    cards = []
    for split, name in (("train", "train error"), ("val", "validation error"),
                        ("test", "test error")):
        err = _get(m, split, "error")
        if _num(err) is None and _num(_get(m, split, "accuracy")) is not None:
            err = 1 - m[split]["accuracy"]
        if _num(err) is not None:
            cards.append(_card(name, _pct(err, 2), f"n = {_int(_get(m, split, 'n'))}"))
    t = r.get("target_error")
    if isinstance(t, dict) and _num(t.get("value")) is not None:
        cards.append(_card("target error", _pct(t["value"], 2), "best known for this task"))
    if _num(r.get("avoidable_bias")) is not None:
        cards.append(_card("avoidable bias", _pts(r["avoidable_bias"]).replace(" points", ""),
                           "points: train − target"))
    if _num(r.get("variance_gap")) is not None:
        cards.append(_card("variance gap", _pts(r["variance_gap"]).replace(" points", ""),
                           "points: validation − train"))
    if not cards and not m:
        return ""
    body = [f'<div class="cards">{"".join(cards)}</div>']
    if isinstance(t, dict) and t.get("source"):
        body.append(f'<p class="note">Target error source: {_e(t["source"])}</p>')
    if m:
        head = [("split", False), ("n", True), ("accuracy", True), ("error", True),
                ("loss", True), ("F1 macro", True), ("F1 weighted", True), ("ECE", True)]
        top5 = any(_num(_get(m, s, "top5_accuracy")) is not None for s in m)
        if top5:
            head.append(("top-5 accuracy", True))
        rows = []
        for s in ("train", "val", "test"):
            if s not in m:
                continue
            x = m[s]
            row = [{"val": "validation"}.get(s, s), _int(x.get("n")), _pct(x.get("accuracy"), 2),
                   _pct(x.get("error"), 2), _f(x.get("loss")), _f(x.get("f1_macro")),
                   _f(x.get("f1_weighted")), _f(x.get("ece"))]
            if top5:
                row.append(_pct(x.get("top5_accuracy"), 2))
            rows.append(row)
        body.append(_table(head, rows))
        body.append(f'<p class="note">From {_e(run.metrics_source)}. Validation error is '
                    "optimistic after early stopping and tuning on it; the test split is "
                    "never used to choose anything.</p>")
    return _section("figures", "Key figures", "\n".join(body))


def _training(run: _Run, plots: Any) -> str:
    if not run.history:
        return ""
    png = plots.training_curves(run.history)
    if not png:
        return ""
    body = [_img(png, "training and validation loss and accuracy per epoch")]
    fall = run.results.get("train_loss_still_falling")
    if isinstance(fall, dict) and fall.get("evidence"):
        state = "still falling" if fall.get("value") else "flat"
        body.append(f"<p>Training loss at the end: <b>{state}</b>. "
                    f'<span class="muted">{_e(fall["evidence"])}</span></p>')
    return _section("training", "Training curves", "\n".join(body),
                    "Train vs validation per epoch. A widening gap is variance; a training loss "
                    "still falling at the end means training longer may cut bias.")


def _learning(run: _Run, plots: Any) -> str:
    lc = run.results.get("learning_curve")
    if not isinstance(lc, dict):
        return ""
    png = plots.learning_curve(lc)
    if not png:
        return ""
    body = [_img(png, "learning curve: error against training-set size")]
    pl = lc.get("power_law")
    if isinstance(pl, dict):
        if pl.get("ok"):
            body.append(
                f"<p>Fit err(n) ≈ a·n<sup>−b</sup> + c with a = {_f(pl.get('a'), 3)}, "
                f"b = {_f(pl.get('b'), 3)}, c = {_pct(pl.get('c'), 2)}. "
                f"At n = {_int(pl.get('n_max'))}: {_pct(pl.get('err_at_n_max'), 2)}; "
                f"with 2× the data: {_pct(pl.get('err_2x'), 2)} "
                f"(gain {_gain(pl.get('gain_2x'))}); "
                f"with 10×: {_pct(pl.get('err_10x'), 2)}.</p>")
        if pl.get("note"):
            body.append(f'<p class="note">Fit: {_e(pl["note"])}</p>')
    seeds = lc.get("seeds")
    if isinstance(seeds, list):
        body.append(f'<p class="note">{len(seeds)} seed(s) per size; bands are the saved 95% '
                    "intervals of the mean over seeds. The dashed line is the power law fitted "
                    "to the validation error, extrapolated to 10× the largest size.</p>")
    return _section("learning", "Learning curve", "\n".join(body),
                    "Error against the number of training images. Validation error still "
                    "falling at the right edge: more data helps (variance). Both curves flat "
                    "and high: more data will not help (bias).")


def _complexity(run: _Run, plots: Any) -> str:
    cc = run.results.get("complexity_curve")
    if not isinstance(cc, dict):
        return ""
    png = plots.complexity_curve(cc)
    if not png:
        return ""
    param = cc.get("param", "value")
    body = [_img(png, f"complexity curve over {param}")]
    best = cc.get("best_value")
    if best is not None:
        ref = cc.get("reference_value")
        ref_html = f" (the reference model uses {_e(ref)})" if ref is not None else ""
        body.append(f"<p>Lowest mean validation error at <code>{_e(param)}</code> = "
                    f"<b>{_e(best)}</b>{ref_html}.</p>")
    decs = cc.get("decomposition")
    if isinstance(decs, list) and any(isinstance(d, dict) for d in decs):
        body.append('<p class="note">Middle and right: the bias–variance decomposition at each '
                    "value (error bars: 95% CI over test points).</p>")
    return _section("complexity", f"Complexity curve: {param}", "\n".join(body),
                    "Error as capacity or regularisation changes. Train error falling while "
                    "validation error rises: the larger setting overfits (variance); both "
                    "falling: the smaller setting underfits (bias).")


def _term_row(name: str, term: Any) -> list[str]:
    if not isinstance(term, dict):
        return [_e(name), "—", "—", "—"]
    ci = term.get("ci95") if isinstance(term.get("ci95"), (list, tuple)) else [None, None]
    ci = list(ci) + [None, None]
    return [_e(name), _f(term.get("value"), 4), f"[{_f(ci[0], 4)}, {_f(ci[1], 4)}]",
            _f(term.get("se_models"), 4)]


def _decomposition(run: _Run, plots: Any) -> str:
    dec = run.results.get("decomposition")
    if not isinstance(dec, dict):
        return ""
    body = []
    png = plots.decomposition_overall(dec)
    if png:
        body.append(_img(png, "bias-variance decomposition, overall"))
    ntr = dec.get("n_train_per_model")
    ntr_txt = ""
    if isinstance(ntr, list) and ntr:
        nums = [int(x) for x in ntr if _num(x) is not None]
        if nums:
            ntr_txt = (f"{min(nums):,}" if min(nums) == max(nums)
                       else f"{min(nums):,}–{max(nums):,}") + " training images each"
    desc = (f"{_e(dec.get('rounds', '?'))} models, sampling <code>{_e(dec.get('sampling', '?'))}"
            f"</code>{', ' + ntr_txt if ntr_txt else ''}; scored on {_int(dec.get('n_test'))} "
            "test images")
    if _num(dec.get("label_noise")):
        desc += f"; {_pct(dec['label_noise'])} of training labels flipped on purpose"
    body.append(f"<p>{desc}.</p>")
    rows, names = [], []
    for loss, title, terms in (
            ("zero_one", "0-1", (("loss", "loss"), ("bias", "bias"),
                                 ("net_variance", "net variance"),
                                 ("variance", "variance (unsigned)"))),
            ("mse", "squared error", (("risk", "risk"), ("bias2", "bias²"),
                                      ("variance", "variance"))),
            ("cross_entropy", "cross-entropy", (("risk", "risk"), ("bias", "bias"),
                                                ("variance", "variance (plug-in)"),
                                                ("variance_jackknife", "variance (jackknife)")))):
        block = dec.get(loss)
        if not isinstance(block, dict):
            continue
        for key, label in terms:
            if key in block:
                rows.append(_term_row(f"{title}: {label}", block[key]))
                names.append("")
    ens = dec.get("ensemble")
    if isinstance(ens, dict):
        rows.append([_e("ensemble of the models: error"), _f(ens.get("error"), 4), "", ""])
        rows.append([_e("ensemble of the models: cross-entropy"), _f(ens.get("cross_entropy"), 4),
                     "", ""])
    if rows:
        body.append(_table([("term", False), ("value", True), ("95% CI (test points)", True),
                            ("se (models)", True)], rows))
    body.append('<p class="note">Bias is the error of the models\' main (majority) prediction and '
                "includes label noise (the Bayes error): it cannot be separated from it. Net "
                "variance is what disagreement between the models adds on unbiased points and "
                "removes on biased ones, so bias + net variance = 0-1 loss exactly. Error bars "
                "and CIs come from a bootstrap over test points; <i>se (models)</i> from a "
                "jackknife over the models: with few models it is usually the larger "
                "uncertainty. The ensemble averages the models' log-probabilities; its "
                "cross-entropy equals the CE bias term, so the CE variance predicts what "
                "ensembling gains.</p>")
    pc = dec.get("per_class")
    if isinstance(pc, dict) and pc:
        png = plots.decomposition_per_class(pc, run.classes)
        if png:
            body.append("<h3>Per class</h3>")
            body.append(_img(png, "bias-variance decomposition per class"))
        prow = []
        order = [c for c in run.classes if c in pc] + [c for c in pc if c not in run.classes]
        for c in order:
            b = pc[c] if isinstance(pc[c], dict) else {}
            prow.append([_e(c), _int(b.get("n")), _pct(_get(b, "zero_one", "loss")),
                         _pct(_get(b, "zero_one", "bias")),
                         _pct(_get(b, "zero_one", "net_variance")),
                         _f(_get(b, "cross_entropy", "risk")), _f(_get(b, "cross_entropy", "bias")),
                         _f(_get(b, "cross_entropy", "variance"))])
        body.append("<details><summary>Per-class numbers</summary>"
                    + _table([("class", False), ("n", True), ("0-1 loss", True), ("bias", True),
                              ("net variance", True), ("CE risk", True), ("CE bias", True),
                              ("CE variance", True)], prow) + "</details>")
    return _section("decomposition", "Bias–variance decomposition", "\n".join(body),
                    "Models retrained on resampled training data, all scored on the same test "
                    "images: how much of the loss is bias and how much is variance.")


def _split_for_classes(run: _Run) -> tuple[str, dict] | None:
    for s in ("test", "val"):
        if isinstance(run.metrics.get(s), dict):
            return s, run.metrics[s]
    return None


def _confusion(run: _Run, plots: Any) -> str:
    found = _split_for_classes(run)
    if not found or not isinstance(found[1].get("confusion_matrix"), list):
        return ""
    split, m = found
    png = plots.confusion_matrix(m["confusion_matrix"], run.classes)
    if not png:
        return ""
    name = {"val": "validation"}.get(split, split)
    return _section("confusion", "Confusion matrix",
                    _img(png, f"confusion matrix on the {name} split", "plot square"),
                    f"On the {_e(name)} split: rows are true classes, columns predicted ones; "
                    "numbers are counts, colour the share of each true class.")


def _per_class(run: _Run) -> str:
    found = _split_for_classes(run)
    if not found or not isinstance(found[1].get("per_class"), dict) or not found[1]["per_class"]:
        return ""
    split, m = found
    pc = m["per_class"]
    order = [c for c in run.classes if c in pc] + [c for c in pc if c not in run.classes]
    f1s = sorted((_num(_get(pc, c, "f1")) for c in order if _num(_get(pc, c, "f1")) is not None))
    worst = set(f1s[: min(3, max(len(f1s) // 4, 1))]) if len(f1s) >= 4 else set()
    rows, classes = [], []
    for c in order:
        x = pc[c] if isinstance(pc[c], dict) else {}
        f1 = _num(x.get("f1"))
        bar = f'<span class="bar" style="width:{max(0.0, min(f1, 1.0)) * 60:.0f}px"></span>' \
            if f1 is not None else ""
        rows.append([_e(c), _f(x.get("precision")), _f(x.get("recall")), f"{_f(f1)}{bar}",
                     _int(x.get("support"))])
        classes.append("low" if f1 is not None and f1 in worst else "")
    name = {"val": "validation"}.get(split, split)
    return _section("classes", "Per-class precision, recall and F1",
                    _table([("class", False), ("precision", True), ("recall", True),
                            ("F1", True), ("support", True)], rows, classes),
                    f"On the {_e(name)} split; the classes with the lowest F1 are highlighted.")


def _gallery(run: _Run) -> str:
    cards = []
    for g in run.gallery:
        b64 = g.get("image_png_b64")
        if not isinstance(b64, str) or not _B64.match(b64.replace("\n", "")):
            continue
        conf = _num(g.get("confidence"))
        src = g.get("source")
        src_html = (f'<br><span class="muted src" title="{_e(src)}">{_e(src)}</span>'
                    if isinstance(src, str) and src else "")
        cards.append(
            f'<figure><img alt="test image {_e(g.get("index", ""))}" '
            f'src="data:image/png;base64,{b64.replace(chr(10), "")}">'
            f'<figcaption>true: <b class="t">{_e(g.get("true", "?"))}</b><br>'
            f'predicted: <b class="p">{_e(g.get("pred", "?"))}</b><br>'
            f'<span class="muted">{_pct(conf)} · #{_e(g.get("index", "?"))}</span>{src_html}'
            "</figcaption></figure>")
    if not cards:
        return ""
    return _section("gallery", "Most confidently wrong test images",
                    f'<div class="gallery">{"".join(cards)}</div>',
                    "The test images the model got wrong with the highest confidence, most "
                    "confident first (percent: the model's confidence in its wrong prediction; "
                    "#: index in the test split; below it, the image's file for your own "
                    "data). Look for label noise, ambiguous images and confusable classes.")


def _details(run: _Run) -> str:
    r = run.results
    body = []
    fits = r.get("fits")
    cards = []
    if isinstance(fits, dict):
        for k in ("planned", "trained", "reused"):
            if k in fits:
                cards.append(_card(f"fits {k}", _int(fits.get(k))))
    secs = _num(_get(r, "timing", "seconds"))
    if secs is not None:
        cards.append(_card("wall time", f"{secs / 60:.1f} min" if secs >= 120 else f"{secs:.0f} s"))
    if cards:
        body.append(f'<div class="cards">{"".join(cards)}</div>')
    cols = []
    if run.config:
        cols.append(f"<div><h3>Configuration</h3>{_kv_table(run.config)}</div>")
    if run.env:
        cols.append(f"<div><h3>Environment</h3>{_kv_table(run.env)}</div>")
    if cols:
        body.append(f'<div class="two">{"".join(cols)}</div>')
    present = [name for key, name in RUN_FILES.items() if key in run.raw]
    if present:
        files = ", ".join(f"<code>{_e(p)}</code>" for p in present)
        body.append(f'<p class="note">Read from: {files}. Plots show the saved results; nothing '
                    "was recomputed or retrained.</p>")
    if not body:
        return ""
    return _section("run", "Run: fits, configuration, environment", "\n".join(body))


# ----------------------------------------------------------------------------------- page

_SECTIONS: list[tuple[str, str, Callable[..., str], bool]] = [
    ("verdict", "Verdict", _verdict, False),
    ("figures", "Key figures", _key_figures, False),
    ("training", "Training curves", _training, True),
    ("learning", "Learning curve", _learning, True),
    ("complexity", "Complexity curve", _complexity, True),
    ("decomposition", "Decomposition", _decomposition, True),
    ("confusion", "Confusion matrix", _confusion, True),
    ("classes", "Per class", _per_class, False),
    ("gallery", "Gallery", _gallery, False),
    ("run", "Run", _details, False),
]


def render_html(run: dict[str, Any]) -> str:
    """The page for a :func:`load_run` mapping, as a string (sections with absent data are
    left out; a section that fails to draw is replaced by a notice and a warning)."""
    from . import _plots

    r = _Run(run)
    parts: list[str] = []
    nav: list[tuple[str, str]] = []
    for sid, title, fn, needs_plots in _SECTIONS:
        try:
            html_part = fn(r, _plots) if needs_plots else fn(r)
        except Exception as err:  # noqa: BLE001 — one damaged block must not sink the page
            warnings.warn(f"report: the {title} section could not be drawn: {err!r}",
                          RuntimeWarning, stacklevel=2)
            html_part = _section(sid, title, f'<div class="notice">This section could not be '
                                 f"drawn from the saved data ({_e(type(err).__name__)}: "
                                 f"{_e(err)}).</div>")
        if html_part:
            parts.append(html_part)
            nav.append((sid, title))
    notices = [f'<div class="notice">{_e(p)}</div>' for p in run.get("problems") or []]
    if "verdict" not in r.results:
        notices.append('<p class="note">This run holds no bias–variance analysis; '
                       "<code>biasvar diagnose</code> adds the verdict, the curves and the "
                       "decomposition.</p>")
    title = " · ".join(_e(p) for p in (r.results.get("command"), r.first("dataset"),
                                       r.first("model")) if p) or "run"
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>biasvar report: {title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            f"<main>\n{_header(r, nav)}\n{''.join(notices)}\n{''.join(parts)}"
            '<footer>Written by biasvar from the files of the run directory; open it offline '
            "anywhere. Re-render with <code>biasvar report RUN_DIR</code>.</footer>\n"
            "</main>\n</body>\n</html>\n")


def render_report(run_dir: str | Path, *, out: Path | None = None) -> Path:
    """Render ``report.html`` for a run directory from its saved files, without training.

    Args:
        run_dir: a biasvar run directory (SCHEMA.md): any of config.yaml, env.json,
            history.csv, metrics.json, gallery.json, results.json.
        out: where to write the page (default ``run_dir/report.html``); written atomically.

    Returns:
        The path of the written page.

    Raises:
        BiasvarError: ``run_dir`` is not a folder.

    >>> render_report("runs/diagnose-fashion-mnist-cnn-1a2b3c4d")  # doctest: +SKIP
    PosixPath('runs/diagnose-fashion-mnist-cnn-1a2b3c4d/report.html')
    """
    run = load_run(run_dir)
    page = render_html(run)
    path = Path(out) if out is not None else Path(run_dir) / "report.html"
    atomic_write_text(path, page)
    return path
