"""The HTML: one self-contained, offline page (inline CSS, inline SVG figures, the gallery's
images as base64 PNG), or the same sections as a fragment for Jupyter.

Every section is built from the run's saved data only — the typed
:class:`~biasvar.analysis._results.Results` of results.json and the other run files (see
:func:`biasvar.report.load_run`) — and is left out when its data is absent. The page
(:func:`render_html`) and the fragment (:func:`render_fragment`) draw the same section functions.
Every string that comes from the run (class names, config values, paths, evidence text) goes
through :func:`_e`, which HTML-escapes it and breaks ``://`` so that no ``http://`` /
``https://`` reference can appear in the output.
"""
from __future__ import annotations

import html
import json
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._fmt import count, fmt_value, gain, num, pct, pts
from ..analysis._results import LearningCurve, NoiseFloor, Reference, Results, ResultsError, Term
from ..analysis.noise import NOISE_TARGET_PREFIX
from ._load import RUN_FILES, number, run_of

__all__ = ["render_html", "render_fragment", "LABEL_PHRASES"]

#: the human reading of each verdict label (the README's results.json verdict.label)
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
_SPLITS = ("train", "val", "test")

# the sections' style, every rule scoped to the .bvr element (the page's <main>, the fragment's
# <div>) so that the fragment leaves a notebook's own styles alone
_CSS = """
.bvr{--fg:#1d2430;--muted:#5b6472;--line:#e2e6eb;--soft:#f5f7fa;--bias:#4c72b0;--var:#dd8452;
 color:var(--fg);background:#fff;text-align:left;
 font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
.bvr *{box-sizing:border-box}
.bvr h2{font-size:19px;margin:30px 0 8px;padding-top:14px;border-top:1px solid var(--line)}
.bvr h3{font-size:15px;margin:18px 0 6px}
.bvr p{margin:6px 0}
.bvr .muted,.bvr .note{color:var(--muted);font-size:13.5px}
.bvr code{font:12.5px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
 background:var(--soft);padding:1px 4px;border-radius:3px;word-break:break-word}
.bvr figure.plot{margin:6px 0}
.bvr figure.plot svg{display:block;height:auto;margin:0 auto}
.bvr figure.plot.square svg{max-width:640px !important}
.bvr table{border-collapse:collapse;width:100%;font-size:13.5px;margin:6px 0}
.bvr th,.bvr td{padding:5px 8px;border-bottom:1px solid var(--line);text-align:left;
 vertical-align:top}
.bvr th{font-weight:600;background:var(--soft)}
.bvr .num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.bvr section.verdict{border-left:7px solid var(--vc);background:var(--soft);
 padding:14px 20px 12px;border-radius:6px;margin-top:18px}
.bvr section.verdict h2{border:0;margin:0;padding:0;font-size:21px}
.bvr .label{display:inline-block;background:var(--vc);color:#fff;font:600 13px/1.2 ui-monospace,
 SFMono-Regular,Menlo,Consolas,monospace;padding:4px 8px;border-radius:4px;margin-right:8px;
 vertical-align:3px}
.bvr .phrase{font-size:16px}
.bvr ul{margin:6px 0;padding-left:22px}
.bvr li{margin:2px 0}
.bvr ul.caveats li{color:#6b4f00}
.bvr .chip{display:inline-block;padding:1px 7px;border-radius:10px;color:#fff;font-size:12px}
.bvr .chip.bias{background:var(--bias)}.bvr .chip.variance{background:var(--var)}
.bvr .chip.other{background:#888}
.bvr .gain{font-weight:600}
.bvr .cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:10px;
 margin:8px 0}
.bvr .card{border:1px solid var(--line);border-radius:6px;padding:8px 12px}
.bvr .card .k{font-size:11.5px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.bvr .card .v{font-size:22px;font-weight:600;font-variant-numeric:tabular-nums}
.bvr .card .d{font-size:12px;color:var(--muted)}
.bvr .bar{display:inline-block;height:9px;background:var(--bias);border-radius:2px;
 vertical-align:middle;margin-left:6px}
.bvr tr.low td{background:#fff4e5}
.bvr .gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(124px,1fr));gap:10px}
.bvr .gallery figure{margin:0;border:1px solid var(--line);border-radius:6px;padding:6px;
 font-size:12px;line-height:1.35}
.bvr .gallery img{display:block;width:100%;height:auto;image-rendering:pixelated;
 background:#000;border-radius:3px}
.bvr .gallery .t{color:#1a7f37}.bvr .gallery .p{color:#b42318}
.bvr .gallery .src{display:block;overflow-wrap:anywhere;font-size:11px}
.bvr .two{display:grid;grid-template-columns:1fr 1fr;gap:18px;align-items:start}
.bvr table.kv{font-size:12.5px}.bvr table.kv td{padding:3px 6px}
.bvr table.kv td:first-child{white-space:nowrap;width:1%}
.bvr table.kv td:last-child{word-break:break-word}
.bvr .notice{background:#fff4e5;border:1px solid #f5c26b;border-radius:6px;padding:8px 12px;
 font-size:13.5px;margin:10px 0}
.bvr details summary{cursor:pointer;color:var(--muted);font-size:13.5px;margin:6px 0}
@media (max-width:760px){.bvr .two{grid-template-columns:1fr}}
"""

# the page around the sections
_PAGE_CSS = """
body{margin:0;background:#e9edf1}
main.bvr{max-width:1000px;margin:0 auto;padding:22px 30px 40px}
.bvr header h1{font-size:23px;margin:0 0 2px}
.bvr header .sub{color:var(--muted);font-size:13.5px;word-break:break-all}
.bvr nav{margin:10px 0 0;font-size:13px;display:flex;flex-wrap:wrap;gap:4px 14px}
.bvr nav a{color:var(--muted);text-decoration:none;border-bottom:1px dotted #9aa3ad}
.bvr footer{margin-top:30px;color:var(--muted);font-size:12.5px}
@media (max-width:760px){main.bvr{padding:14px}}
"""

# the fragment's frame in a notebook's output cell
_FRAGMENT_CSS = """
.bvr.bvr-fragment{max-width:1000px;padding:6px 14px 10px;border:1px solid var(--line);
 border-radius:6px}
.bvr .bvr-head{font-size:13.5px;color:var(--muted)}
.bvr .bvr-head b{color:var(--fg);font-size:16px}
.bvr .bvr-foot{margin-top:14px;color:var(--muted);font-size:12.5px}
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


def _signed(x: float | None) -> str:
    """A difference in points without the unit, with an explicit sign: ``+4.2``, ``−1.0``."""
    text = pts(x).removesuffix(" points")
    return "+" + text if x is not None and x > 0 else text


def _img(svg: str | None, alt: str, cls: str = "plot") -> str:
    """A figure's inline SVG (from :mod:`._plots`) with ``alt`` as its accessible title."""
    if not svg or not svg.startswith("<svg"):
        return ""
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{_e(alt)}" ', 1)
    return f'<figure class="{cls}">{svg}</figure>'


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


def _flatten(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and len(v) <= 12:
            out += _flatten(v, key + ".")
        else:
            out.append((key, v))
    return out


def _kv_table(d: Mapping[str, Any]) -> str:
    rows = [[f"<code>{_e(k)}</code>", _e(_plain(v))] for k, v in _flatten(d)]
    return _table([("key", False), ("value", False)], rows).replace("<table>",
                                                                    '<table class="kv">', 1)


def _quality(q: float | None) -> str:
    """A label quality (a probability, often tiny for the worst suspects: 0.000 would hide the
    ranking): two significant digits."""
    return num(q) if q is None or q >= 0.01 or q == 0 else f"{q:.2g}"


def _card(key: str, value: str, detail: str = "") -> str:
    d = f'<div class="d">{detail}</div>' if detail else ""
    return f'<div class="card"><div class="k">{key}</div><div class="v">{value}</div>{d}</div>'


def standalone_page(title: str, cls: str, body: str, source: str) -> str:
    """A whole offline page for a command's own report (tune's siblings: ensemble, finetune,
    shift): ``title`` and ``body`` already escaped, ``source`` the JSON file it was read from."""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{title}</title>\n<style>{_CSS}{_PAGE_CSS}</style>\n</head>\n<body>\n"
            f'<main class="bvr {cls}">\n<h1>{title}</h1>\n{body}'
            f"<footer>Written by biasvar from <code>{_e(source)}</code>; nothing was "
            "recomputed or retrained.</footer>\n</main>\n</body>\n</html>\n")


def render_json_page(run_dir: str | Path, source: str, command: str,
                     page: Callable[[Mapping[str, Any]], str]) -> Path:
    """Read ``run_dir/source`` (written by ``biasvar command``), render it with ``page`` and
    write ``report.html`` beside it (atomically); a missing, foreign or damaged file is a
    BiasvarError naming the file."""
    from .._io import atomic_write_text, read_json
    from ..errors import BiasvarError

    d = Path(run_dir)
    try:
        doc = read_json(d / source)
    except (OSError, ValueError):
        doc = None
    if not isinstance(doc, dict) or doc.get("command") != command:
        raise BiasvarError(f"RUN_DIR: {str(d)!r} holds no {source} of a `biasvar {command}` "
                           "run.")
    try:
        text = page(doc)
    except (KeyError, TypeError, IndexError) as e:
        raise BiasvarError(f"{d / source}: damaged or of another version ({type(e).__name__}: "
                           f"{e}); run `biasvar {command}` again.") from None
    path = d / "report.html"
    atomic_write_text(path, text)
    return path


def _split_name(split: str) -> str:
    return {"val": "validation"}.get(split, split)


class _Run:
    """What the sections draw from: the typed results and the run's other files, with the
    fallbacks between them resolved (results.json first). ``page``: sections carry ids (the
    page's navigation links to them); the fragment's do not, so that several fragments can
    share a notebook."""

    def __init__(self, run: Mapping[str, Any], *, page: bool = True):
        self.raw = run
        self.page = page
        self.problems: list[str] = list(run.get("problems") or [])
        self.results: Results | None = run.get("results")
        r = self.results
        ref = r.reference if r is not None else None
        self.from_results = ref is not None and any(getattr(ref, s) for s in _SPLITS)
        if not self.from_results:
            metrics = run.get("metrics") or {}
            try:  # metrics.json is the train command's file: its splits as a reference fit
                ref = Reference(**{s: metrics[s] for s in _SPLITS
                                   if isinstance(metrics.get(s), dict)})
            except ResultsError as err:
                self.problems.append(f"metrics.json: {err}")
                ref = Reference()
        self.reference: Reference = ref
        self.metrics: dict[str, dict[str, Any]] = {s: getattr(ref, s) for s in _SPLITS
                                                   if getattr(ref, s)}
        self.metrics_source = ("results.json (reference model)" if self.from_results
                               else "metrics.json")
        rows = run.get("history") or (r.reference.history if r and r.reference else [])
        self.history: list[dict[str, float | None]] = [
            {str(k): number(v) for k, v in row.items()} for row in rows]
        ref_steps = getattr(r.reference, "steps", None) if r and r.reference else None
        self.steps: list[dict[str, float | None]] = [
            {str(k): number(v) for k, v in row.items()} for row in
            (run.get("steps") if run.get("history") else None) or ref_steps or []]
        self.config: Mapping[str, Any] = run.get("config") or (r.config if r else None) or {}
        self.env: Mapping[str, Any] = run.get("env") or (r.environment if r else None) or {}
        self.gallery: list[dict] = [g for g in run.get("gallery") or [] if isinstance(g, dict)]
        self.suspects: list[dict] = [g for g in run.get("suspects") or [] if isinstance(g, dict)]
        if r is not None and r.classes is not None:
            classes: Sequence[Any] = r.classes
        else:
            found = self.split_for_classes()
            pc = found[1].get("per_class") if found else None
            classes = list(pc) if isinstance(pc, dict) else []
        self.classes: list[str] = [str(c) for c in classes]
        self.files = [name for key, name in RUN_FILES.items()
                      if key in run and (key != "results" or run.get("run_dir"))]

    def first(self, key: str) -> Any:
        """``key`` of the results (dataset, model), else of the config."""
        v = getattr(self.results, key, None)
        return v if v is not None else self.config.get(key)

    def title(self) -> str:
        """command · dataset · model, escaped."""
        r = self.results
        command = r.command if r is not None else ("train" if self.raw.get("metrics") else None)
        parts = [p for p in (command, self.first("dataset"), self.first("model")) if p]
        return " · ".join(_e(p) for p in parts) or "run"

    def split_for_classes(self) -> tuple[str, dict[str, Any]] | None:
        """The split the per-class views show: test, else validation."""
        for s in ("test", "val"):
            if s in self.metrics:
                return s, self.metrics[s]
        return None

    def section(self, sid: str, title: str, body: str, intro: str = "", *,
                style: str = "") -> str:
        """A section of the output (its heading escaped here; ``body``/``intro`` are HTML)."""
        ident = f' id="{sid}"' if self.page else ""
        style_attr = f' style="{style}"' if style else ""
        intro_html = f'<p class="muted">{intro}</p>\n' if intro else ""
        return (f'<section{ident} class="{sid}"{style_attr}>\n<h2>{title}</h2>\n'
                f"{intro_html}{body}\n</section>\n")


# ----------------------------------------------------------------------------------- sections

def _header(run: _Run, nav: list[tuple[str, str]]) -> str:
    links = "".join(f'<a href="#{sid}">{_e(t)}</a>' for sid, t in nav)
    r = run.results
    profile = f" · profile {_e(r.profile)}" if r is not None and r.profile else ""
    # the link to the comparison with the run this one was derived from (render_report's)
    derived = run.raw.get("derived_html") or "" if run.page else ""
    return (f"<header><h1>biasvar report: {run.title()}</h1>"
            f'<div class="sub">run directory <code>{_e(run.raw.get("run_dir") or "")}</code>'
            f"{profile}</div><nav>{links}</nav>{derived}</header>")


def _verdict(run: _Run) -> str:
    v = run.results.verdict if run.results is not None else None
    if v is None:
        return ""
    title, phrase = LABEL_PHRASES[v.label]
    parts = [f'<p class="phrase">{_e(phrase[0].upper() + phrase[1:])}</p>']
    if v.evidence:
        parts.append("<h3>Evidence</h3><ul>" + "".join(f"<li>{_t(x)}</li>" for x in v.evidence)
                     + "</ul>")
    if v.remedies:
        rows = []
        for x in sorted(v.remedies, key=lambda x: x.rank):
            side = x.addresses
            chip = f'<span class="chip {side if side in ("bias", "variance") else "other"}">' \
                   f"{_e(side or '—')}</span>"
            gain_html = (f'<span class="gain">{gain(x.predicted_gain)}</span>'
                         if x.predicted_gain is not None
                         else '<span class="muted">not measured</span>')
            name = f"<br><code>{_e(x.name)}</code>" if x.name else ""
            rows.append([_e(x.rank), f"{_t(x.action)}{name}", chip, gain_html, _t(x.evidence)])
        parts.append("<h3>Remedies, ranked</h3>")
        parts.append(_table([("#", True), ("action", False), ("addresses", False),
                             ("predicted gain", True), ("evidence", False)], rows))
        parts.append('<p class="note">Predicted gain: the absolute error reduction the '
                     "measurements predict (from the learning curve's power law, the "
                     "decomposition's ensemble gain or the complexity curve); "
                     "“not measured” remedies are ranked by how far their side exceeds its "
                     "threshold.</p>")
    caveats = list(v.caveats)
    if run.results.profile_note:  # what the profile trained and what it cannot show
        caveats.append(f"Profile {run.results.profile or ''}: {run.results.profile_note}")
    if caveats:
        parts.append('<h3>Caveats</h3><ul class="caveats">'
                     + "".join(f"<li>{_t(x)}</li>" for x in caveats) + "</ul>")
    if v.thresholds:
        cells = ", ".join(f"<code>{_e(k)}</code> = {_e(fmt_value(val))}"
                          for k, val in v.thresholds.items())
        parts.append(f'<p class="note">Thresholds: {cells}.</p>')
    return run.section("verdict", f'<span class="label">{_e(v.label)}</span>{_e(title)}',
                       "\n".join(parts), style=f"--vc:{_LABEL_COLORS[v.label]}")


def _key_figures(run: _Run) -> str:
    r, m = run.results, run.metrics
    cards = []
    for split, name in (("train", "train error"), ("val", "validation error"),
                        ("test", "test error")):
        err = run.reference.error(split)
        if err is not None:
            cards.append(_card(name, pct(err, 2),
                               f"n = {count(number(m[split].get('n')))}"))
    t = r.target_error if r is not None else None
    if t is not None:
        cards.append(_card("target error", pct(t.value, 2),
                           "estimated noise floor" if _noise_is_target(r)
                           else "best known for this task"))
    if r is not None and r.avoidable_bias is not None:
        cards.append(_card("avoidable bias", _signed(r.avoidable_bias), "points: train − target"))
    if r is not None and r.variance_gap is not None:
        cards.append(_card("variance gap", _signed(r.variance_gap), "points: validation − train"))
    if not cards and not m:
        return ""
    body = [f'<div class="cards">{"".join(cards)}</div>']
    if t is not None and t.source:
        body.append(f'<p class="note">Target error source: {_e(t.source)}</p>')
    if m:
        head = [("split", False), ("n", True), ("accuracy", True), ("error", True),
                ("loss", True), ("F1 macro", True), ("F1 weighted", True), ("ECE", True)]
        top5 = any(number(x.get("top5_accuracy")) is not None for x in m.values())
        if top5:
            head.append(("top-5 accuracy", True))
        rows = []
        for s, x in m.items():
            v = {k: number(x.get(k)) for k in ("n", "accuracy", "error", "loss", "f1_macro",
                                                "f1_weighted", "ece", "top5_accuracy")}
            row = [_split_name(s), count(v["n"]), pct(v["accuracy"], 2), pct(v["error"], 2),
                   num(v["loss"]), num(v["f1_macro"]), num(v["f1_weighted"]), num(v["ece"])]
            if top5:
                row.append(pct(v["top5_accuracy"], 2))
            rows.append(row)
        body.append(_table(head, rows))
        body.append(f'<p class="note">From {_e(run.metrics_source)}. Validation error is '
                    "optimistic after early stopping and tuning on it; the test split is "
                    "never used to choose anything.</p>")
    return run.section("figures", "Key figures", "\n".join(body))


def _history_table(rows: Sequence[Mapping[str, float | None]]) -> str:
    """The plotted per-epoch values, as a collapsed table under the plot."""
    head = [("epoch", True), ("train loss", True), ("train accuracy", True),
            ("validation loss", True), ("validation accuracy", True), ("learning rate", True),
            ("seconds", True)]
    body = [[count(row.get("epoch")), num(row.get("train_loss")),
             pct(row.get("train_accuracy"), 2), num(row.get("val_loss")),
             pct(row.get("val_accuracy"), 2), _e(fmt_value(row.get("lr"))),
             num(row.get("seconds"), 1)] for row in rows]
    return (f'<details class="values"><summary>Values per epoch ({len(body)})</summary>'
            f"{_table(head, body)}</details>")


def _training(run: _Run, plots: Any) -> str:
    if not run.history:
        return ""
    rows = run.history
    epochs = [row.get("epoch") if row.get("epoch") is not None else i + 1
              for i, row in enumerate(rows)]
    columns = {f"{s}_{k}": [row.get(f"{s}_{k}") for row in rows]
               for s in ("train", "val") for k in ("loss", "accuracy")}
    steps = {k: [row.get(k) for row in run.steps] for k in ("step", "epoch", "loss", "lr")}
    svg = plots.training_curves(epochs, columns, steps if run.steps else None)
    if not svg:
        return ""
    body = [_img(svg, "training loss per step and per epoch, accuracy per epoch, and the "
                 "learning rate per step")]
    fall = run.results.train_loss_still_falling if run.results is not None else None
    if fall is not None and fall.evidence:
        state = "still falling" if fall.value else "flat"
        body.append(f"<p>Training loss at the end: <b>{state}</b>. "
                    f'<span class="muted">{_e(fall.evidence)}</span></p>')
    body.append('<p class="note">The epoch\'s <b>train</b> values are running means over its '
                "batches in train mode (dropout and augmentation on, the weights still "
                "changing), so early epochs read worse than the model at their end; "
                "<b>validation</b> is scored after each epoch in eval mode. The train error "
                "of the key figures is scored after training, in eval mode, like validation."
                + (" The faint line is the training loss per step (means over windows of "
                   "steps); the last panel the learning rate at each step." if run.steps
                   else "") + "</p>")
    body.append(_history_table(rows))
    return run.section("training", "Training curves", "\n".join(body),
                       "Train vs validation per epoch. A widening gap is variance; a training "
                       "loss still falling at the end means training longer may cut bias.")


def _ci(ci: Sequence[float] | None, fmt: Callable[[float | None], str] = pct) -> str:
    """`` [lo, hi]`` of a saved interval, or nothing when there is none."""
    if not ci or len(ci) != 2 or not all(number(v) is not None for v in ci):
        return ""
    return f' <span class="muted">[{fmt(ci[0])}, {fmt(ci[1])}]</span>'


def _power_law_text(pl: Any) -> list[str]:
    """The fit, its predictions at 2× / 10× the data with their intervals — or why it does not
    extrapolate."""
    out = []
    if pl.ok:
        out.append(f"<p>Fit err(n) ≈ a·n<sup>−b</sup> + c with a = {num(pl.a)}, "
                   f"b = {num(pl.b)}, c = {pct(pl.c, 2)}; at n = {count(pl.n_max)}: "
                   f"{pct(pl.err_at_n_max, 2)}.</p>")
        if pl.extrapolates and any(v is not None for v in (pl.err_2x, pl.err_10x, pl.gain_2x)):
            gain_ci = _ci(pl.gain_2x_ci, lambda v: gain(v).removesuffix(" points"))
            out.append(
                f"<p>Predicted with 2× the data: <b>{pct(pl.err_2x, 2)}</b>"
                f"{_ci(pl.err_2x_ci, lambda v: pct(v, 2))} (gain {gain(pl.gain_2x)}{gain_ci}); "
                f"with 10×: <b>{pct(pl.err_10x, 2)}</b>"
                f"{_ci(pl.err_10x_ci, lambda v: pct(v, 2))}.</p>")
            if pl.resamples and any((pl.err_2x_ci, pl.err_10x_ci, pl.gain_2x_ci)):
                out.append(f'<p class="note">Brackets: 95% intervals of the predictions, the '
                           f"same fit repeated on {count(pl.resamples)} resamples of the seeds "
                           "at each size.</p>")
        elif not pl.extrapolates:
            out.append("<p><b>No extrapolation</b>: the fit is not trusted beyond the measured "
                       "sizes, so no error is predicted for more data.</p>")
    if pl.note:
        out.append(f'<p class="note">Fit: {_t(pl.note)}</p>')
    return out


def _seeds_per_size(lc: LearningCurve) -> str:
    """"3 seeds per size", or "2–3 seeds per size" when sizes differ in their number of fits."""
    counts = [len(v) for v in lc.val_error.values] if lc.val_error.values else []
    if not counts and lc.points:
        by_size: dict[int, int] = {}
        for p in lc.points:
            by_size[p.size] = by_size.get(p.size, 0) + 1
        counts = list(by_size.values())
    lo, hi = (min(counts), max(counts)) if counts else (len(lc.seeds), len(lc.seeds))
    text = f"{lo}" if lo == hi else f"{lo}–{hi}"
    return f"{text} seed{'' if hi == 1 else 's'} per size"


def _points_table(lc: LearningCurve) -> str:
    """Every fit of the curve: its size and seed, how long it trained, its errors."""
    pts_ = sorted(lc.points, key=lambda p: (p.size, p.seed))
    with_key = any(p.fit for p in pts_)
    head = [("size", True), ("seed", True), ("optimizer steps", True), ("epochs", True),
            ("stopped early", False), ("train error", True), ("validation error", True)]
    if with_key:
        head.append(("fit", False))
    rows = []
    for p in pts_:
        row = [count(p.size), _e(p.seed), count(p.steps), count(p.epochs),
               "yes" if p.stopped_early else "no", pct(p.train_error, 2), pct(p.val_error, 2)]
        if with_key:
            row.append(f"<code>{_e(p.fit)}</code>" if p.fit else "")
        rows.append(row)
    table = _table(head, rows).replace("<table>", '<table class="points">', 1)
    if len(rows) > 24:
        return f"<details><summary>Every fit ({len(rows)})</summary>{table}</details>"
    return "<h3>Every fit</h3>" + table


def _learning(run: _Run, plots: Any) -> str:
    lc = run.results.learning_curve if run.results is not None else None
    if lc is None:
        return ""
    t = run.results.target_error
    png = plots.learning_curve(lc, t.value if t is not None else None)
    if not png:
        return ""
    body = [_img(png, "learning curve: error against training-set size")]
    pl = lc.power_law
    if pl is not None:
        body += _power_law_text(pl)
    sizes = len(set(lc.sizes))
    dashed = ("The dashed line is the power law fitted to the validation error and its "
              "predictions at more data (diamonds, with their 95% intervals)."
              if pl is not None and pl.ok and pl.extrapolates else
              "The dashed line is the power law fitted to the validation error, drawn over the "
              "measured sizes only: it is not trusted beyond them."
              if pl is not None and pl.ok and sizes >= 4 else
              f"No power law is drawn: with {sizes} sizes its 3 parameters pass through the "
              "points exactly, so it is untested." if pl is not None and pl.ok else "")
    target = (f" The dash-dotted line is the target error ({pct(t.value)})."
              if t is not None else "")
    body.append(f'<p class="note">{_seeds_per_size(lc)}; each dot is one fit, the line joins '
                "the means, and the band spans the lowest to the highest seed at each size "
                f"(not a confidence interval). The x axis is ticked at the measured sizes. "
                f"{dashed}{target}</p>")
    if lc.policy:
        end = "" if lc.policy.rstrip().endswith((".", "!", "?")) else "."
        body.append(f"<p><b>Training budget across sizes</b>: {_t(lc.policy)}{end}</p>")
    if lc.points:
        body.append(_points_table(lc))
    return run.section("learning", "Learning curve", "\n".join(body),
                       "Error against the number of training images. Validation error still "
                       "falling at the right edge: more data helps (variance). Both curves flat "
                       "and high: more data will not help (bias).")


def _seed_range(values: Sequence[float] | None) -> str:
    """``min–max`` of a point's seed values (two or more), else nothing."""
    vals = [number(v) for v in values or []]
    vals = [v for v in vals if v is not None]
    return f" ({pct(min(vals), 2)}–{pct(max(vals), 2)})" if len(vals) >= 2 else ""


def _complexity_table(cc: Any) -> str:
    """The plotted values: mean train / validation error (min–max over seeds) and, where
    measured, the 0-1 decomposition's terms at each value."""
    decs = cc.decomposition if cc.decomposition and len(cc.decomposition) == len(cc.values) \
        else [None] * len(cc.values)
    with_dec = any(decs)
    head = [(_e(cc.param), False), ("train error", True), ("validation error", True)]
    if with_dec:
        head += [("0-1 bias", True), ("net variance", True), ("0-1 loss", True)]
    rows = []
    for i, v in enumerate(cc.values):
        def at(band: Any) -> str:
            mean = band.mean[i] if i < len(band.mean) else None
            vals = band.values[i] if i < len(band.values) else None
            return pct(mean, 2) + _seed_range(vals)
        row = [_e(fmt_value(v)), at(cc.train_error), at(cc.val_error)]
        if with_dec:
            d = decs[i]
            row += ([pct(d.zero_one.bias.value, 2), pct(d.zero_one.net_variance.value, 2),
                     pct(d.zero_one.loss.value, 2)] if d is not None else ["—"] * 3)
        rows.append(row)
    return (f'<details class="values" open><summary>Values at each {_e(cc.param)} (mean, '
            f"min–max over seeds)</summary>{_table(head, rows)}</details>")


def _complexity(run: _Run, plots: Any) -> str:
    cc = run.results.complexity_curve if run.results is not None else None
    if cc is None:
        return ""
    png = plots.complexity_curve(cc)
    if not png:
        return ""
    body = [_img(png, f"complexity curve over {cc.param}")]
    if cc.best_value is not None:
        ref = cc.reference_value
        ref_html = (f" (the reference model uses {_e(fmt_value(ref))})" if ref is not None
                    else "")
        body.append(f"<p>Lowest mean validation error at <code>{_e(cc.param)}</code> = "
                    f"<b>{_e(fmt_value(cc.best_value))}</b>{ref_html}.</p>")
    if cc.decomposition and any(cc.decomposition):
        body.append('<p class="note">Middle and right: the bias–variance decomposition at each '
                    "value (error bars: 95% CI over test points).</p>")
    body.append(_complexity_table(cc))
    return run.section("complexity", f"Complexity curve: {_e(cc.param)}", "\n".join(body),
                       "Error as capacity or regularisation changes. Train error falling while "
                       "validation error rises: the larger setting overfits (variance); both "
                       "falling: the smaller setting underfits (bias).")


def _term_row(name: str, term: Term) -> list[str]:
    lo, hi = term.ci95
    return [_e(name), num(term.value, 4), f"[{num(lo, 4)}, {num(hi, 4)}]",
            num(term.se_models, 4)]


# the decomposition table: loss block, its title, and (term, label) per row
_TERMS = (("zero_one", "0-1", (("loss", "loss"), ("bias", "bias"),
                               ("net_variance", "net variance"),
                               ("variance", "variance (unsigned)"))),
          ("mse", "squared error", (("risk", "risk"), ("bias2", "bias²"),
                                    ("variance", "variance"))),
          ("cross_entropy", "cross-entropy", (("risk", "risk"), ("bias", "bias"),
                                              ("variance", "variance (plug-in)"),
                                              ("variance_jackknife", "variance (jackknife)"))))


def _decomposition(run: _Run, plots: Any) -> str:
    dec = run.results.decomposition if run.results is not None else None
    if dec is None:
        return ""
    body = []
    png = plots.decomposition_overall(dec)
    if png:
        body.append(_img(png, "bias-variance decomposition, overall"))
    ntr_txt = ""
    if dec.n_train_per_model:
        lo, hi = min(dec.n_train_per_model), max(dec.n_train_per_model)
        ntr_txt = (count(lo) if lo == hi else f"{count(lo)}–{count(hi)}") + \
            " training images each"
    desc = (f"{_e(dec.rounds)} models, sampling <code>{_e(dec.sampling)}</code>"
            f"{', ' + ntr_txt if ntr_txt else ''}; scored on {count(dec.n_test)} test images")
    if dec.label_noise:
        desc += f"; {pct(dec.label_noise)} of training labels flipped on purpose"
    body.append(f"<p>{desc}.</p>")
    rows = [_term_row(f"{title}: {label}", getattr(getattr(dec, loss), key))
            for loss, title, terms in _TERMS for key, label in terms]
    if dec.ensemble is not None:
        rows.append([_e("ensemble of the models: error"), num(dec.ensemble.error, 4), "", ""])
        rows.append([_e("ensemble of the models: cross-entropy"),
                     num(dec.ensemble.cross_entropy, 4), "", ""])
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
    pc = dec.per_class
    if pc:
        png = plots.decomposition_per_class(pc, run.classes)
        if png:
            body.append("<h3>Per class</h3>")
            body.append(_img(png, "bias-variance decomposition per class"))
        prow = []
        order = [c for c in run.classes if c in pc] + [c for c in pc if c not in run.classes]
        for c in order:
            b = pc[c]
            prow.append([_e(c), count(b.n), pct(b.zero_one.get("loss")),
                         pct(b.zero_one.get("bias")), pct(b.zero_one.get("net_variance")),
                         num(b.cross_entropy.get("risk")), num(b.cross_entropy.get("bias")),
                         num(b.cross_entropy.get("variance"))])
        body.append("<details><summary>Per-class numbers</summary>"
                    + _table([("class", False), ("n", True), ("0-1 loss", True), ("bias", True),
                              ("net variance", True), ("CE risk", True), ("CE bias", True),
                              ("CE variance", True)], prow) + "</details>")
    return run.section("decomposition", "Bias–variance decomposition", "\n".join(body),
                       "Models retrained on resampled training data, all scored on the same "
                       "test images: how much of the loss is bias and how much is variance.")


def _confusion(run: _Run, plots: Any) -> str:
    found = run.split_for_classes()
    if not found or not isinstance(found[1].get("confusion_matrix"), list):
        return ""
    split, m = found
    png = plots.confusion_matrix(m["confusion_matrix"], run.classes)
    if not png:
        return ""
    name = _split_name(split)
    return run.section("confusion", "Confusion matrix",
                       _img(png, f"confusion matrix on the {name} split", "plot square"),
                       f"On the {_e(name)} split: rows are true classes, columns predicted ones; "
                       "numbers are counts, colour the share of each true class.")


def _per_class(run: _Run) -> str:
    found = run.split_for_classes()
    if not found or not isinstance(found[1].get("per_class"), dict) or not found[1]["per_class"]:
        return ""
    split, m = found
    pc = {c: (x if isinstance(x, dict) else {}) for c, x in m["per_class"].items()}
    order = [c for c in run.classes if c in pc] + [c for c in pc if c not in run.classes]
    f1s = sorted(f for f in (number(pc[c].get("f1")) for c in order) if f is not None)
    worst = set(f1s[: min(3, max(len(f1s) // 4, 1))]) if len(f1s) >= 4 else set()
    rows, classes = [], []
    for c in order:
        x = pc[c]
        f1 = number(x.get("f1"))
        bar = f'<span class="bar" style="width:{max(0.0, min(f1, 1.0)) * 60:.0f}px"></span>' \
            if f1 is not None else ""
        rows.append([_e(c), num(number(x.get("precision"))), num(number(x.get("recall"))),
                     f"{num(f1)}{bar}", count(number(x.get("support")))])
        classes.append("low" if f1 is not None and f1 in worst else "")
    return run.section("classes", "Per-class precision, recall and F1",
                       _table([("class", False), ("precision", True), ("recall", True),
                               ("F1", True), ("support", True)], rows, classes),
                       f"On the {_e(_split_name(split))} split; the classes with the lowest F1 "
                       "are highlighted.")


def gallery_cards(entries: Any) -> list[str]:
    """gallery.json's entries (the most confidently wrong test images) as figures; entries
    without a valid PNG are skipped, every text escaped."""
    cards = []
    for g in entries or []:
        if not isinstance(g, dict):
            continue
        b64 = g.get("image_png_b64")
        if not isinstance(b64, str) or not _B64.match(b64.replace("\n", "")):
            continue
        src = g.get("source")
        src_html = (f'<br><span class="muted src" title="{_e(src)}">{_e(src)}</span>'
                    if isinstance(src, str) and src else "")
        cards.append(
            f'<figure><img alt="test image {_e(g.get("index", ""))}" '
            f'src="data:image/png;base64,{b64.replace(chr(10), "")}">'
            f'<figcaption>true: <b class="t">{_e(g.get("true", "?"))}</b><br>'
            f'predicted: <b class="p">{_e(g.get("pred", "?"))}</b><br>'
            f'<span class="muted">{pct(number(g.get("confidence")))} · '
            f'#{_e(g.get("index", "?"))}</span>{src_html}</figcaption></figure>')
    return cards


GALLERY_INTRO = ("The test images the model got wrong with the highest confidence, most "
                 "confident first (percent: the model's confidence in its wrong prediction; #: "
                 "index in the test split; below it, the image's file for your own data). Look "
                 "for label noise, ambiguous images and confusable classes.")


def _gallery(run: _Run) -> str:
    cards = gallery_cards(run.gallery)
    if not cards:
        return ""
    return run.section("gallery", "Most confidently wrong test images",
                       f'<div class="gallery">{"".join(cards)}</div>', GALLERY_INTRO)


def _noise_is_target(r: Results | None) -> bool:
    """True when the target error of the run is its estimated noise floor (its source says so:
    :func:`biasvar.analysis.noise.noise_target` wrote it)."""
    t = r.target_error if r is not None else None
    return t is not None and t.source.startswith(NOISE_TARGET_PREFIX)


# a file name the page may link to: plain, relative, in the run directory
_LINKABLE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\- ]*\.csv$")


def _suspect_cards(run: _Run) -> list[str]:
    """suspects.json as gallery figures (entries without a valid PNG are skipped)."""
    cards = []
    for g in run.suspects:
        b64 = g.get("image_png_b64")
        if not isinstance(b64, str) or not _B64.match(b64.replace("\n", "")):
            continue
        f = g.get("file")
        f_html = (f'<br><span class="muted src" title="{_e(f)}">{_e(f)}</span>'
                  if isinstance(f, str) and f else "")
        cards.append(
            f'<figure><img alt="training image {_e(g.get("row", ""))}" '
            f'src="data:image/png;base64,{b64.replace(chr(10), "")}">'
            f'<figcaption>given: <b class="p">{_e(g.get("given", "?"))}</b> → '
            f'<b class="t">{_e(g.get("predicted", "?"))}</b><br>'
            f'<span class="muted">quality {_quality(number(g.get("quality")))} · '
            f'row {_e(g.get("row", "?"))}</span>{f_html}</figcaption></figure>')
    return cards


def _noise(run: _Run) -> str:
    r = run.results
    nf: NoiseFloor | None = r.noise_floor if r is not None else None
    if nf is None:
        return ""
    cards = [_card("label-noise rate", pct(nf.rate, 1),
                   f"95% interval {pct(nf.lo, 1)} – {pct(nf.hi, 1)}"),
             _card("training images checked", count(nf.n))]
    if nf.n_issues is not None:
        cards.append(_card("flagged as mislabelled", count(nf.n_issues),
                               f"{pct(nf.n_issues / nf.n, 1)} of the images" if nf.n else ""))
    body = [f'<div class="cards">{"".join(cards)}</div>']
    over = f'<br><span class="muted">Interval: {_e(nf.interval)}.</span>' if nf.interval else ""
    body.append(f"<p>An estimated <b>{pct(nf.rate, 1)}</b> of the {count(nf.n)} training labels "
                f"are wrong: 95% interval {pct(nf.lo, 1)} to {pct(nf.hi, 1)}.{over}</p>")
    if nf.method:
        body.append(f'<p class="note">Method: {_t(nf.method)}.</p>')
    t = r.target_error
    if _noise_is_target(r):
        body.append(f"<p>This rate is the <b>target error</b> of the diagnosis: avoidable bias = "
                    f"train error − {pct(nf.rate, 2)}.</p>")
    elif t is not None:
        body.append(f'<p class="note">Not used as the target error: the target is '
                    f"{pct(t.value, 2)} ({_e(t.source) if t.source else 'given'}).</p>")
    cards = _suspect_cards(run)
    if cards:
        body.append("<h3>Suspected mislabelled training images</h3>")
        body.append('<p class="muted">Most likely mislabelled first: the given label → what '
                    "models that never saw the image predict; quality is the predicted "
                    "probability of the given label (lower: more suspect).</p>")
        body.append(f'<div class="gallery">{"".join(cards)}</div>')
    elif nf.suspects:
        rows = [[_e(x.row), f"<code>{_e(x.file)}</code>" if x.file else "—", _e(x.given),
                 _e(x.predicted), _quality(x.quality)] for x in nf.suspects]
        body.append("<h3>Suspected mislabelled training images</h3>")
        body.append(_table([("row", True), ("file", False), ("given", False),
                            ("predicted", False), ("quality", True)], rows))
    if nf.csv:
        shown = f"<code>{_e(nf.csv)}</code>"
        if run.page and _LINKABLE.match(nf.csv):
            shown = f'<a href="{_e(nf.csv)}">{shown}</a>'
        elif not run.page and run.raw.get("run_dir"):
            shown = f"<code>{_e(Path(run.raw['run_dir']) / nf.csv)}</code>"
        n_all = f"all {count(nf.n_issues)}" if nf.n_issues is not None else "all"
        body.append(f"<p>The list of {n_all} flagged images (row, file, given, predicted, "
                    f"quality): {shown}.</p>")
    body.append('<p class="note">Each image is scored by models that did not train on it; '
                "confident learning counts the labels those models confidently contradict, "
                "class by class. It also counts truly ambiguous images, which no model can get "
                "right either: the rate is a floor for the error on labels like these. Weak "
                "models blur it (it tends to read high when they err often).</p>")
    return run.section("noise", "Noise floor", "\n".join(body),
                       "How many training labels are wrong: the error no model can remove on "
                       "these labels.")


def _details(run: _Run) -> str:
    r = run.results
    body = []
    cards = []
    if r is not None and r.fits is not None:
        cards += [_card(f"fits {k}", count(getattr(r.fits, k)))
                  for k in ("planned", "trained", "reused")]
    secs = number((r.timing or {}).get("seconds")) if r is not None else None
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
    if run.files:
        files = ", ".join(f"<code>{_e(p)}</code>" for p in run.files)
        body.append(f'<p class="note">Read from: {files}. Plots show the saved results; nothing '
                    "was recomputed or retrained.</p>")
    if not body:
        return ""
    return run.section("run", "Run: fits, configuration, environment", "\n".join(body))


# ----------------------------------------------------------------------------------- output

_SECTIONS: list[tuple[str, str, Callable[..., str], bool]] = [
    ("verdict", "Verdict", _verdict, False),
    ("figures", "Key figures", _key_figures, False),
    ("noise", "Noise floor", _noise, False),
    ("training", "Training curves", _training, True),
    ("learning", "Learning curve", _learning, True),
    ("complexity", "Complexity curve", _complexity, True),
    ("decomposition", "Decomposition", _decomposition, True),
    ("confusion", "Confusion matrix", _confusion, True),
    ("classes", "Per class", _per_class, False),
    ("gallery", "Gallery", _gallery, False),
    ("run", "Run", _details, False),
]


def _sections(run: _Run) -> tuple[str, list[tuple[str, str]]]:
    """The notices and every section with data, as HTML; and (id, title) of each section drawn.
    A section that fails to draw is replaced by a notice and a warning."""
    from . import _plots

    parts: list[str] = [f'<div class="notice">{_e(p)}</div>' for p in run.problems]
    if run.results is None or run.results.verdict is None:
        parts.append('<p class="note">This run holds no bias–variance analysis; '
                     "<code>biasvar diagnose</code> adds the verdict, the curves and the "
                     "decomposition.</p>")
    drawn: list[tuple[str, str]] = []
    for sid, title, fn, needs_plots in _SECTIONS:
        try:
            part = fn(run, _plots) if needs_plots else fn(run)
        except Exception as err:  # noqa: BLE001 — one damaged block must not sink the page
            warnings.warn(f"report: the {title} section could not be drawn: {err!r}",
                          RuntimeWarning, stacklevel=3)
            part = run.section(sid, _e(title), f'<div class="notice">This section could not be '
                               f"drawn from the saved data ({_e(type(err).__name__)}: "
                               f"{_e(err)}).</div>")
        if part:
            parts.append(part)
            drawn.append((sid, title))
    return "\n".join(parts), drawn


def render_html(run: Mapping[str, Any]) -> str:
    """The page for a :func:`load_run` mapping, as a string (sections with absent data are
    left out; a section that fails to draw is replaced by a notice and a warning)."""
    r = _Run(run)
    body, nav = _sections(r)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>biasvar report: {r.title()}</title>\n<style>{_CSS}{_PAGE_CSS}</style>\n"
            f'</head>\n<body>\n<main class="bvr">\n{_header(r, nav)}\n{body}'
            '<footer>Written by biasvar from the files of the run directory; open it offline '
            "anywhere. Re-render with <code>biasvar report RUN_DIR</code>.</footer>\n"
            "</main>\n</body>\n</html>\n")


def render_fragment(results: Results) -> str:
    """The report's sections for ``results`` as an offline HTML fragment (Jupyter's
    ``_repr_html_``): a ``<div>`` with its own scoped ``<style>`` and the figures inline.

    Works for results held in memory: sections that need the run's other files (history.csv,
    gallery.json, config.yaml, ...) read them from ``results.run_dir`` when it is set, and are
    left out otherwise. Nothing is recomputed.

    >>> from biasvar.analysis._results import load_results
    >>> html_text = render_fragment(load_results("runs/diagnose-digits-cnn-1a2b3c4d"))  # doctest: +SKIP
    """
    r = _Run(run_of(results), page=False)
    body, _ = _sections(r)
    profile = f" · profile {_e(results.profile)}" if results.profile else ""
    where = (f' · <code>{_e(results.run_dir)}</code>' if results.run_dir is not None else "")
    foot = ("The full page: <code>results.report()</code> or <code>biasvar report "
            "RUN_DIR</code>." if results.run_dir is not None else
            "Save the results (they have no run directory) to write the full page.")
    return (f'<div class="bvr bvr-fragment">\n<style>{_CSS}{_FRAGMENT_CSS}</style>\n'
            f'<div class="bvr-head"><b>biasvar</b> {r.title()}{profile}{where}</div>\n'
            f'{body}<div class="bvr-foot">{foot}</div>\n</div>\n')
