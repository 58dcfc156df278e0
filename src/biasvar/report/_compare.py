"""Runs side by side: one self-contained, offline HTML page comparing two or more run
directories (a run and the run it was derived from, two settings of a knob, a quick and a
thorough diagnosis, ...).

The page puts the runs in columns: their verdicts and top remedies, a "what changed" list
generated from the numbers (the verdict, every key figure that moved by more than its saved
95 % interval — or by more than 0.5 points where it has none — and the options that differ),
the key figures with the change against the first run, and three overlaid plots (learning
curves, training curves, decomposition bars with their saved intervals), each with a table of
the plotted values under it. Everything is read from the run directories' saved files
(:func:`biasvar.report.load_run`); nothing is recomputed or retrained. A run without a block
(a ``train`` run has no decomposition) shows "—" in its cells and is left out of that plot with
a one-line note.

>>> from biasvar.report import compare
>>> compare(["runs/diagnose-digits-mlp-1a2b3c4d", "runs/diagnose-digits-mlp-5e6f7a8b"],
...         labels=["width 16", "width 32"])  # doctest: +SKIP
PosixPath('runs/compare-0c1d2e3f.html')
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._fmt import count, fmt_value, num, pct, pts
from .._io import atomic_write_text
from ..analysis._results import Results, Term, finite
from ..errors import BiasvarError
from ._html import _CSS, _LABEL_COLORS, _PAGE_CSS, LABEL_PHRASES, _e, _img, _Run, _t, _table
from ._load import RUN_FILES, load_run, number

__all__ = ["compare", "derived_section"]

NONE = "—"

#: one colour per run, in the order given (the first three are the report's train / validation
#: / test colours, so two runs read as blue vs orange)
RUN_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#8172b3", "#c44e52", "#937860", "#da8bc3",
              "#8c8c8c", "#ccb974", "#64b5cd")

#: a key figure "moved" when it changed by more than this (a fraction: 0.5 points) — for the
#: figures without a saved interval; those with one must move by more than the interval
MOVE_POINTS = 0.005

_COMPARE_CSS = """
main.bvr.compare{max-width:1200px}
.bvr .sw{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:6px;
 vertical-align:-1px}
.bvr .runs{display:grid;gap:12px;margin:8px 0}
.bvr .runcard{border:1px solid var(--line);border-top:6px solid var(--vc,#888);border-radius:6px;
 padding:10px 14px;background:var(--soft)}
.bvr .runcard h3{margin:0 0 6px}
.bvr .runcard ol{margin:6px 0;padding-left:22px;font-size:13.5px}
.bvr .scroll{overflow-x:auto}
.bvr table.figures td:first-child{min-width:190px}
.bvr table.figures .src{display:inline-block;max-width:230px;white-space:normal;text-align:left;
 font-size:12px;color:var(--muted)}
.bvr ul.runlist{list-style:none;padding:0;margin:10px 0 0}
.bvr ul.runlist li{margin:3px 0;font-size:13.5px}
@media (max-width:760px){.bvr .runs{grid-template-columns:1fr !important}}
"""


# ----------------------------------------------------------------------------------- the runs

@dataclass
class _Side:
    """One run of the comparison: its label, colour, directory and what the report reads."""

    label: str
    color: str
    path: Path
    run: _Run

    @property
    def results(self) -> Results | None:
        return self.run.results

    def swatch(self) -> str:
        """The run's colour chip and its escaped label."""
        return f'<span class="sw" style="background:{self.color}"></span>{_e(self.label)}'


def _run_dirs(run_dirs: Any) -> list[Path]:
    """``run_dirs`` checked: at least two distinct existing run directories."""
    if isinstance(run_dirs, (str, bytes, os.PathLike)):
        raise BiasvarError(f"run_dirs: got the single path {str(run_dirs)!r}; give a list of at "
                        "least 2 run directories, e.g. compare(['runs/a', 'runs/b']).")
    try:
        dirs = [Path(d) for d in run_dirs]
    except TypeError:
        raise BiasvarError(f"run_dirs: expected a list of run directories, got {run_dirs!r}; "
                        "e.g. compare(['runs/a', 'runs/b']).") from None
    if len(dirs) < 2:
        shown = f" ({', '.join(repr(str(d)) for d in dirs)})" if dirs else ""
        raise BiasvarError(f"run_dirs: got {len(dirs)} run director{'y' if len(dirs) == 1 else 'ies'}"
                        f"{shown}; give at least 2 to compare.")
    seen: dict[Path, int] = {}
    for i, d in enumerate(dirs):
        if not d.is_dir():
            what = "is a file, not a folder" if d.exists() else "does not exist"
            raise BiasvarError(f"run_dirs[{i}]: {str(d)!r} {what}; give the path of a biasvar run "
                            "directory (it holds results.json or metrics.json).")
        if not any((d / RUN_FILES[k]).is_file() for k in ("results", "metrics")):
            raise BiasvarError(f"run_dirs[{i}]: {str(d)!r} holds no results.json or metrics.json; "
                            "give the run directory of a finished `biasvar train`, `diagnose`, "
                            "`curve` or `decompose`.")
        key = d.resolve()
        if key in seen:
            raise BiasvarError(f"run_dirs[{i}]: {str(d)!r} is the same run directory as "
                            f"run_dirs[{seen[key]}]; give different runs to compare.")
        seen[key] = i
    return dirs


def _labels(dirs: Sequence[Path], labels: Any) -> list[str]:
    """The given labels (one per run), else the directories' names made unique."""
    if labels is not None:
        if isinstance(labels, (str, bytes)):
            raise BiasvarError(f"labels: got the single text {labels!r}; give a list with one "
                            f"label per run directory ({len(dirs)}), or leave labels out.")
        try:
            given = [str(x) for x in labels]
        except TypeError:
            raise BiasvarError(f"labels: expected a list of texts, got {labels!r}; give one label "
                            "per run directory, or leave labels out.") from None
        if len(given) != len(dirs):
            raise BiasvarError(f"labels: got {len(given)} label{'' if len(given) == 1 else 's'} "
                            f"for {len(dirs)} run directories; give one label per run directory, "
                            "in the same order (or leave labels out to use the directories' "
                            "names).")
        return given
    names = [d.resolve().name or str(d) for d in dirs]
    if len(set(names)) < len(names):  # same names in different folders: add the folder
        names = [f"{d.resolve().parent.name}/{d.resolve().name}" for d in dirs]
    if len(set(names)) < len(names):
        names = [f"{n} ({i + 1})" for i, n in enumerate(names)]
    return names


def _load(i: int, path: Path) -> _Run:
    try:
        return _Run(load_run(path))
    except BiasvarError as err:  # a damaged results.json: the message names the file
        raise type(err)(f"run_dirs[{i}]: {err}") from None


def _out_path(out: str | Path | None, dirs: Sequence[Path]) -> Path:
    if out is None:
        key = "\n".join(str(d.resolve()) for d in dirs)
        root = Path(os.environ.get("BIASVAR_RUNS") or "runs")
        root.mkdir(parents=True, exist_ok=True)
        return root / f"compare-{hashlib.sha256(key.encode()).hexdigest()[:8]}.html"
    p = Path(out)
    if p.is_dir():
        raise BiasvarError(f"out: {str(p)!r} is a folder; give the path of the page to write, "
                        f"e.g. {str(p / 'compare.html')!r}.")
    if not p.parent.is_dir():
        raise BiasvarError(f"out: the folder {str(p.parent)!r} of {str(p)!r} does not exist; "
                        "create it first or choose another path.")
    return p


# ------------------------------------------------------------------------------- key figures

@dataclass(frozen=True)
class _Figure:
    """One row of the key figures: ``get`` gives (value, 95 % interval or None) of a run;
    ``unit`` is error (a fraction, shown in %), points (a difference of errors), nats,
    seconds, fits or text."""

    key: str
    name: str
    unit: str
    get: Callable[[_Side], tuple[Any, tuple[float, float] | None]]


def _term(block: str, name: str) -> Callable[[_Side], tuple[Any, Any]]:
    def get(s: _Side) -> tuple[Any, Any]:
        dec = s.results.decomposition if s.results is not None else None
        if dec is None:
            return None, None
        t: Term = getattr(getattr(dec, block), name)
        return t.value, _pair(t.ci95)
    return get


def _pair(ci: Sequence[Any] | None) -> tuple[float, float] | None:
    if ci is None or len(ci) != 2 or not all(finite(v) for v in ci):
        return None
    return float(ci[0]), float(ci[1])


def _result(fn: Callable[[Results], tuple[Any, Any]]) -> Callable[[_Side], tuple[Any, Any]]:
    """A getter reading the typed results (None, None for a run without results.json)."""
    def get(s: _Side) -> tuple[Any, Any]:
        return fn(s.results) if s.results is not None else (None, None)
    return get


def _power(k: int) -> Callable[[_Side], tuple[Any, Any]]:
    def get(r: Results) -> tuple[Any, Any]:
        lc = r.learning_curve
        pl = lc.power_law if lc is not None else None
        if pl is None or not pl.ok or not pl.extrapolates:
            return None, None
        return (pl.err_2x, _pair(pl.err_2x_ci)) if k == 2 else (pl.err_10x, _pair(pl.err_10x_ci))
    return _result(get)


def _noise(r: Results) -> tuple[Any, Any]:
    nf = r.noise_floor
    return (nf.rate, _pair((nf.lo, nf.hi))) if nf is not None else (None, None)


def _fits(r: Results) -> tuple[Any, Any]:
    return (r.fits, None) if r.fits is not None else (None, None)


def _seconds(r: Results) -> tuple[Any, Any]:
    return number((r.timing or {}).get("seconds")), None


FIGURES: tuple[_Figure, ...] = (
    _Figure("train_error", "train error", "error",
            lambda s: (s.run.reference.error("train"), None)),
    _Figure("val_error", "validation error", "error",
            lambda s: (s.run.reference.error("val"), None)),
    _Figure("test_error", "test error", "error",
            lambda s: (s.run.reference.error("test"), None)),
    _Figure("target_error", "target error", "error",
            _result(lambda r: (r.target_error.value if r.target_error else None, None))),
    _Figure("target_source", "target error: source", "text",
            _result(lambda r: (r.target_error.source or None if r.target_error else None,
                               None))),
    _Figure("avoidable_bias", "avoidable bias (train − target)", "points",
            _result(lambda r: (r.avoidable_bias, None))),
    _Figure("variance_gap", "variance gap (validation − train)", "points",
            _result(lambda r: (r.variance_gap, None))),
    _Figure("zero_one_loss", "0-1 loss", "error", _term("zero_one", "loss")),
    _Figure("zero_one_bias", "0-1 bias", "error", _term("zero_one", "bias")),
    _Figure("zero_one_net_variance", "0-1 net variance", "error",
            _term("zero_one", "net_variance")),
    _Figure("ce_risk", "cross-entropy risk (nats)", "nats", _term("cross_entropy", "risk")),
    _Figure("ce_bias", "cross-entropy bias (nats)", "nats", _term("cross_entropy", "bias")),
    _Figure("ce_variance", "cross-entropy variance (nats)", "nats",
            _term("cross_entropy", "variance")),
    _Figure("noise_rate", "label-noise rate (noise floor)", "error", _result(_noise)),
    _Figure("power_2x", "power law: error with 2× the data", "error", _power(2)),
    _Figure("power_10x", "power law: error with 10× the data", "error", _power(10)),
    _Figure("fits", "fits planned (trained, reused)", "fits", _result(_fits)),
    _Figure("seconds", "wall time", "seconds", _result(_seconds)),
)


def _secs(x: float) -> str:
    return f"{x / 60:.1f} min" if abs(x) >= 120 else f"{x:.0f} s"


def _signed_points(d: float | None) -> str:
    """A difference of error rates in points with an explicit sign: ``+1.23 points``,
    ``−0.50 points``, ``0.00 points`` (a difference that rounds to zero has no sign)."""
    if d is None or not finite(d):
        return NONE
    if round(100 * d, 2) == 0:
        return pts(0.0, 2)
    return ("+" if d > 0 else "") + pts(d, 2)


def _signed_num(d: float, digits: int = 3) -> str:
    if round(d, digits) == 0:
        return num(0.0, digits)
    return f"{d:+.{digits}f}".replace("-", "−")


def _shorten(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def _value_text(fig: _Figure, value: Any) -> str:
    """The figure's value as plain text (not escaped)."""
    if value is None:
        return NONE
    if fig.unit == "error":
        return pct(value, 2)
    if fig.unit == "points":
        return _signed_points(value)
    if fig.unit == "nats":
        return num(value, 3)
    if fig.unit == "seconds":
        return _secs(value) if finite(value) else NONE
    if fig.unit == "fits":
        return f"{count(value.planned)} ({count(value.trained)}, {count(value.reused)})"
    return str(value)


def _ci_text(fig: _Figure, ci: tuple[float, float] | None) -> str:
    if ci is None:
        return ""
    fmt = (lambda v: pct(v, 2)) if fig.unit == "error" else (lambda v: num(v, 3))
    return f" [{fmt(ci[0])}, {fmt(ci[1])}]"


def _cell(fig: _Figure, value: Any, ci: tuple[float, float] | None) -> str:
    """A key-figure cell (escaped HTML): the value, its interval in muted brackets."""
    if fig.unit == "text":
        if not value:
            return NONE
        return f'<span class="src" title="{_e(value)}">{_e(_shorten(str(value)))}</span>'
    text = _e(_value_text(fig, value))
    ci_html = f'<span class="muted">{_e(_ci_text(fig, ci))}</span>' if value is not None and ci \
        else ""
    return text + ci_html


def _scalar(fig: _Figure, value: Any) -> float | None:
    """The number a change is computed from (planned fits for ``fits``)."""
    if fig.unit == "fits":
        return float(value.planned) if value is not None else None
    return float(value) if finite(value) else None


def _change(fig: _Figure, a: Any, b: Any) -> str:
    """``b`` − ``a`` as text in the figure's unit: points for errors, nats, seconds, fits."""
    if fig.unit == "text":
        if not a and not b:
            return NONE
        return "same" if a == b else "differs"
    x, y = _scalar(fig, a), _scalar(fig, b)
    if x is None or y is None:
        return NONE
    d = y - x
    if fig.unit in ("error", "points"):
        return _signed_points(d)
    if fig.unit == "nats":
        return _signed_num(d)
    if fig.unit == "seconds":
        return ("+" if d > 0 else "−" if d < 0 else "") + _secs(abs(d))
    return f"{int(d):+,d}".replace("-", "−") if d else "0"


def _change_head(sides: Sequence[_Side], j: int) -> str:
    if len(sides) == 2:
        return "change"
    return f"change {_e(sides[j].label)} vs {_e(sides[0].label)}"


def _key_figures(sides: Sequence[_Side]) -> str:
    values = {f.key: [f.get(s) for s in sides] for f in FIGURES}
    shown = [f for f in FIGURES if any(v is not None for v, _ in values[f.key])]
    if not shown:
        return ""
    head = [("figure", False)] + [(s.swatch(), True) for s in sides] + \
        [(_change_head(sides, j), True) for j in range(1, len(sides))]
    rows, classes = [], []
    for f in shown:
        vals = values[f.key]
        row = [_e(f.name)] + [_cell(f, v, ci) for v, ci in vals]
        row += [_e(_change(f, vals[0][0], vals[j][0])) for j in range(1, len(sides))]
        rows.append(row)
        classes.append(f"fig-{f.key}")
    table = _table(head, rows, classes).replace("<table>", '<table class="figures">', 1)
    later = "the last run − the first" if len(sides) == 2 else "each later run − the first"
    return (f'<section id="figures" class="figures">\n<h2>Key figures</h2>\n'
            f'<div class="scroll">{table}</div>\n'
            f'<p class="note">Errors in %; changes ({later}) in percentage points, '
            "cross-entropy in nats. Brackets: the saved 95% intervals (bootstrap over test "
            "points for the decomposition; the noise floor's and the power law's own). "
            "Fits: planned (trained here, reused from earlier runs). “—”: not measured in that "
            "run.</p>\n</section>\n")


# ------------------------------------------------------------------------ verdicts, changes

def _verdicts(sides: Sequence[_Side]) -> str:
    cards = []
    for s in sides:
        v = s.results.verdict if s.results is not None else None
        if v is None:
            body = ('<p class="muted">No verdict: this run holds no bias–variance analysis '
                    "(<code>biasvar diagnose</code> adds one).</p>")
            style = ""
        else:
            title, phrase = LABEL_PHRASES[v.label]
            rem = sorted(v.remedies, key=lambda x: x.rank)[:3]
            items = "".join(f"<li>{_t(x.action)}</li>" for x in rem)
            body = (f'<p><span class="label">{_e(v.label)}</span><b>{_e(title)}</b></p>'
                    f'<p class="muted">{_e(phrase[0].upper() + phrase[1:])}</p>'
                    + (f"<p>Top remedies:</p><ol>{items}</ol>" if items else ""))
            style = f' style="--vc:{_LABEL_COLORS[v.label]}"'
        cards.append(f'<div class="runcard"{style}><h3>{s.swatch()}</h3>{body}</div>')
    cols = f"repeat({len(sides)},minmax(0,1fr))"
    return (f'<section id="verdicts" class="verdicts">\n<h2>Verdicts</h2>\n'
            f'<div class="runs" style="grid-template-columns:{cols}">{"".join(cards)}</div>\n'
            "</section>\n")


def _show(value: Any) -> str:
    """An option's value as a user would type it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_show(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    return fmt_value(value)


def _options(s: _Side) -> dict[str, Any] | None:
    """The run's options: its config (results.config or config.yaml), its analysis options
    and its command and profile; None when the run saved no config."""
    config = dict(s.run.config) if s.run.config else None
    if config is None:
        return None
    out: dict[str, Any] = {}
    r = s.results
    out["command"] = r.command if r is not None else "train"
    nested = config.pop("analysis", None)  # config.yaml's analysis section: key by key
    out.update(config)
    if isinstance(nested, dict) and r is not None and not r.analysis:
        r_analysis: dict[str, Any] = nested
    else:
        r_analysis = {}
    analysis = dict(r.analysis or r_analysis) if r is not None else {}
    if r is not None and r.profile is not None:
        analysis.setdefault("profile", r.profile)
    for k, v in analysis.items():
        out[f"analysis.{k}" if k in config else k] = v
    return out


def _option_changes(a: _Side, b: _Side) -> tuple[list[str], str]:
    """``key: old → new`` items (escaped HTML) for the options that differ; or a note when a
    run saved none."""
    oa, ob = _options(a), _options(b)
    missing = [s.label for s, o in ((a, oa), (b, ob)) if o is None]
    if missing:
        return [], (f"Options not compared: {', '.join(_e(m) for m in missing)} saved no "
                    "configuration.")
    unset = object()
    items = []
    for k in list(oa) + [k for k in ob if k not in oa]:
        x, y = oa.get(k, unset), ob.get(k, unset)
        if x is unset or y is unset or _show(x) != _show(y):
            xs = "(not set)" if x is unset else _show(x)
            ys = "(not set)" if y is unset else _show(y)
            items.append(f"<code>{_e(k)}</code>: {_e(xs)} → {_e(ys)}")
    return items, ""


def _moves(a: _Side, b: _Side) -> tuple[list[str], list[str]]:
    """The key figures that moved from ``a`` to ``b`` (sentences, escaped HTML), and the names
    of those that changed by more than 0.5 points but stayed within their intervals."""
    moved, within = [], []
    for f in FIGURES:
        if f.unit not in ("error", "points", "nats"):
            continue
        (x, cx), (y, cy) = f.get(a), f.get(b)
        if not (finite(x) and finite(y)):
            continue
        d = y - x
        halves = [(c[1] - c[0]) / 2 for c in (cx, cy) if c is not None]
        if halves:
            ok, big = abs(d) > max(halves), abs(d) > MOVE_POINTS and f.unit != "nats"
            why = "more than its 95% interval"
        else:
            ok, big = abs(d) > MOVE_POINTS, False
            why = "more than 0.5 points"
        if ok:
            way = "rose" if d > 0 else "fell"
            moved.append(f"<b>{_e(f.name)}</b> {way} from {_e(_value_text(f, x))} to "
                         f"{_e(_value_text(f, y))} ({_e(_change(f, x, y))}; {why})")
        elif big:
            within.append(_e(f.name))
    return moved, within


def _changes_against(a: _Side, b: _Side) -> str:
    items = []
    va = a.results.verdict if a.results is not None else None
    vb = b.results.verdict if b.results is not None else None
    if va is not None and vb is not None:
        if va.label == vb.label:
            items.append(f"Verdict unchanged: <b>{_e(va.label)}</b>.")
        else:
            items.append(f"Verdict changed: <b>{_e(va.label)}</b> → <b>{_e(vb.label)}</b>.")
    elif va is not None or vb is not None:
        has = a if va is not None else b
        items.append(f"Only {_e(has.label)} has a verdict.")
    moved, within = _moves(a, b)
    items += moved
    if not moved:
        items.append("No key figure moved by more than its 95% interval (or by more than 0.5 "
                     "points, for those without one).")
    if within:
        items.append(f"Changed by more than 0.5 points but within their 95% intervals: "
                     f"{', '.join(within)}.")
    opts, note = _option_changes(a, b)
    if note:
        items.append(note)
    elif opts:
        shown = "".join(f"<li>{o}</li>" for o in opts)
        block = (f"<ul>{shown}</ul>" if len(opts) <= 12 else
                 f"<details><summary>{len(opts)} options</summary><ul>{shown}</ul></details>")
        items.append(f"Options that differ:{block}")
    else:
        items.append("Same options (configuration and analysis).")
    return "<ul class=\"changed\">" + "".join(f"<li>{x}</li>" for x in items) + "</ul>"


def _what_changed(sides: Sequence[_Side]) -> str:
    parts = []
    for b in sides[1:]:
        if len(sides) > 2:
            parts.append(f"<h3>{b.swatch()} vs {sides[0].swatch()}</h3>")
        parts.append(_changes_against(sides[0], b))
    intro = (f"From {_e(sides[0].label)} to {_e(sides[1].label)}, read from the numbers."
             if len(sides) == 2 else f"Each later run against {_e(sides[0].label)}.")
    return (f'<section id="changes" class="changes">\n<h2>What changed</h2>\n'
            f'<p class="muted">{intro}</p>\n{"".join(parts)}\n</section>\n')


# ------------------------------------------------------------------------------------ plots

def _plot_text(label: str, n: int = 28) -> str:
    """A run label as matplotlib text: short, ``$`` not read as mathtext, no ``://`` (the page
    stays free of URLs), and never hidden from the legend (a leading ``_``)."""
    s = label if len(label) <= n else label[: n - 1] + "…"
    s = s.replace("$", r"\$").replace("://", ":/\u200b/")
    return "\u200b" + s if s.startswith("_") else s


def _minmax(values: Sequence[Sequence[float]], n: int) -> tuple[Any, Any]:
    """Min and max over the seeds at each of ``n`` points (NaN where fewer than 2 values)."""
    import numpy as np

    lo, hi = np.full(n, np.nan), np.full(n, np.nan)
    if len(values) == n:
        for i, row in enumerate(values):
            xs = [float(v) for v in row or [] if finite(v)]
            if len(xs) >= 2:
                lo[i], hi[i] = min(xs), max(xs)
    return lo, hi


def _usable_curve(s: _Side) -> bool:
    lc = s.results.learning_curve if s.results is not None else None
    if lc is None or not lc.sizes or any(not finite(x) or x <= 0 for x in lc.sizes):
        return False
    return any(len(b.mean) == len(lc.sizes) and any(finite(v) for v in b.mean)
               for b in (lc.train_error, lc.val_error))


def learning_overlay(sides: Sequence[_Side]) -> str | None:
    """Validation (solid) and train (dashed) error against the training-set size, one colour
    per run, with the min–max band over seeds where a size has ≥ 2 fits; log x."""
    import matplotlib
    import numpy as np
    from matplotlib.ticker import FuncFormatter, NullFormatter, PercentFormatter

    from ._plots import _RC, _figure, _floats, _style, _subplots, _svg

    use = [s for s in sides if _usable_curve(s)]
    if not use:
        return None
    with matplotlib.rc_context(_RC):
        fig = _figure(9.4, 3.8)
        ax = _subplots(fig, 1, 1)[0]
        for s in use:
            lc = s.results.learning_curve
            x = _floats(lc.sizes)
            for band, ls, marker, name, alpha in ((lc.val_error, "-", "o", "validation", 0.16),
                                                  (lc.train_error, "--", "s", "train", 0.09)):
                mean = _floats(band.mean)
                if mean.size != x.size or not np.isfinite(mean).any():
                    continue
                ax.plot(x, mean, ls=ls, marker=marker, ms=3.5, lw=1.6, color=s.color,
                        label=f"{_plot_text(s.label)}: {name}")
                lo, hi = _minmax(band.values, x.size)
                has = np.isfinite(lo)
                if has.any():
                    ax.fill_between(x, np.where(has, lo, mean), np.where(has, hi, mean),
                                    where=has, color=s.color, alpha=alpha, lw=0)
                    ax.vlines(x[has], lo[has], hi[has], color=s.color, lw=1.0, alpha=0.7)
        ax.set_xscale("log")
        ax.set_xlabel("training images (log scale)")
        ax.set_ylabel("error")
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
        ticks: list[float] = []  # the measured sizes, those too close to the last left out
        for x in sorted({float(x) for s in use for x in s.results.learning_curve.sizes}):
            if not ticks or x / ticks[-1] >= 1.3:
                ticks.append(x)
        if len(ticks) <= 9:
            ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend(loc="upper right", ncol=2 if len(use) > 2 else 1)
        _style(ax)
        return _svg(fig)


def _history(s: _Side) -> tuple[list[float], list[float | None], list[float | None]] | None:
    """(epochs, train loss, validation loss) of the run's reference fit, or None."""
    rows = s.run.history
    if not rows:
        return None
    epochs = [row.get("epoch") if row.get("epoch") is not None else float(i + 1)
              for i, row in enumerate(rows)]
    tr = [row.get("train_loss") for row in rows]
    va = [row.get("val_loss") for row in rows]
    if not any(finite(v) for v in tr + va):
        return None
    return epochs, tr, va


def training_overlay(sides: Sequence[_Side]) -> str | None:
    """The reference fit's validation (solid) and train (dashed) loss per epoch, one colour
    per run."""
    import matplotlib
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    from ._plots import _RC, _figure, _floats, _style, _subplots, _svg

    use = [(s, h) for s in sides if (h := _history(s)) is not None]
    if not use:
        return None
    with matplotlib.rc_context(_RC):
        fig = _figure(9.4, 3.4)
        ax = _subplots(fig, 1, 1)[0]
        for s, (epochs, tr, va) in use:
            x = _floats(epochs)
            for y, ls, marker, name in ((va, "-", "o", "validation"), (tr, "--", "s", "train")):
                arr = _floats(y)
                if np.isfinite(arr).any():
                    ax.plot(x, arr, ls=ls, marker=marker, ms=3, lw=1.5, color=s.color,
                            label=f"{_plot_text(s.label)}: {name}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("loss (mean NLL)")
        ax.legend(loc="upper right", ncol=2 if len(use) > 2 else 1)
        _style(ax)
        return _svg(fig)


#: the decomposition bars: loss block, panel title, (term, label) per group of bars
_BARS = (("zero_one", "0-1 loss = bias + net variance",
          (("bias", "bias"), ("net_variance", "net variance"), ("loss", "loss"))),
         ("cross_entropy", "cross-entropy = bias + variance (nats)",
          (("bias", "bias"), ("variance", "variance"), ("risk", "risk"))))


def decomposition_overlay(sides: Sequence[_Side]) -> str | None:
    """Grouped bars, one colour per run: the 0-1 bias, net variance and loss, and the
    cross-entropy bias, variance and risk, each with its saved 95 % interval as error bar."""
    import matplotlib
    import numpy as np
    from matplotlib.ticker import PercentFormatter

    from ._plots import _RC, COLORS, _figure, _style, _subplots, _svg

    use = [s for s in sides if s.results is not None and s.results.decomposition is not None]
    if not use:
        return None
    width = 0.8 / len(use)
    with matplotlib.rc_context(_RC):
        fig = _figure(9.4, 3.6)
        axes = _subplots(fig, 1, 2)
        for ax, (block, title, terms) in zip(axes, _BARS):
            x = np.arange(len(terms), dtype=float)
            for i, s in enumerate(use):
                dec = getattr(s.results.decomposition, block)
                ts = [getattr(dec, k) for k, _ in terms]
                v = np.array([t.value if finite(t.value) else np.nan for t in ts])
                pos = x - 0.4 + width * (i + 0.5)
                ax.bar(pos, np.nan_to_num(v), width * 0.92, color=s.color,
                       label=_plot_text(s.label))
                cis = [_pair(t.ci95) for t in ts]
                ok = np.array([c is not None and np.isfinite(vi) for c, vi in zip(cis, v)])
                if ok.any():
                    lo = np.array([vi - c[0] if c else 0 for c, vi in zip(cis, v)])
                    hi = np.array([c[1] - vi if c else 0 for c, vi in zip(cis, v)])
                    ax.errorbar(pos[ok], v[ok], yerr=np.clip(np.vstack([lo[ok], hi[ok]]), 0,
                                                             None),
                                fmt="none", ecolor=COLORS["total"], capsize=3, lw=1.0)
            ax.axhline(0, color="#888888", lw=0.6)
            ax.set_xticks(x)
            ax.set_xticklabels([label for _, label in terms])
            ax.set_title(title)
            if block == "zero_one":
                ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=1))
            ax.legend(fontsize=7)
            _style(ax)
            ax.grid(False, axis="x")
        return _svg(fig)


def _left_out(sides: Sequence[_Side], used: Sequence[_Side], what: str) -> str:
    missing = [s for s in sides if s not in used]
    if not missing:
        return ""
    names = ", ".join(s.swatch() for s in missing)
    return f'<p class="note">Not in this plot: {names} (no {what}).</p>'


def _learning(sides: Sequence[_Side]) -> str:
    svg = learning_overlay(sides)
    if not svg:
        return ('<p class="note" id="learning">Learning curves: none of the runs has one; '
                "left out.</p>\n")
    use = [s for s in sides if _usable_curve(s)]
    rows = []
    for s in use:
        lc = s.results.learning_curve
        n = len(lc.sizes)
        tlo, thi = _minmax(lc.train_error.values, n)
        vlo, vhi = _minmax(lc.val_error.values, n)
        for i, size in enumerate(lc.sizes):
            fits = len(lc.val_error.values[i]) if len(lc.val_error.values) == n else None

            def at(xs: Sequence[Any]) -> Any:
                return xs[i] if len(xs) == n else None

            def rng(lo: Any, hi: Any) -> str:
                return (f"{pct(lo[i], 2)}–{pct(hi[i], 2)}" if finite(lo[i]) else NONE)

            rows.append([s.swatch(), count(size), count(fits), pct(at(lc.train_error.mean), 2),
                         rng(tlo, thi), pct(at(lc.val_error.mean), 2), rng(vlo, vhi)])
    table = _table([("run", False), ("training images", True), ("fits", True),
                    ("train error", True), ("train min–max", True),
                    ("validation error", True), ("validation min–max", True)], rows)
    return (f'<section id="learning" class="learning">\n<h2>Learning curves</h2>\n'
            '<p class="muted">Error against the number of training images: validation solid, '
            "train dashed; the shaded band and the bar at a size: min–max over its seeds "
            "(where it has 2 fits or more).</p>\n"
            f"{_img(svg, 'learning curves of the runs overlaid')}\n"
            f"{_left_out(sides, use, 'learning curve')}\n"
            f'<div class="scroll">{table}</div>\n'
            '<p class="note">Error: the mean over the seeds, as saved.</p>\n</section>\n')


def _training(sides: Sequence[_Side]) -> str:
    svg = training_overlay(sides)
    if not svg:
        return ('<p class="note" id="training">Training curves: no run saved its per-epoch '
                "history; left out.</p>\n")
    use = [(s, h) for s in sides if (h := _history(s)) is not None]
    epochs: list[Any] = sorted({e for _, (ep, _, _) in use for e in ep if finite(e)})
    cols = []
    for _, (ep, tr, va) in use:
        cols.append(({e: t for e, t in zip(ep, tr)}, {e: v for e, v in zip(ep, va)}))
    head = [("epoch", True)]
    for s, _ in use:
        head += [(f"{s.swatch()} train loss", True), (f"{s.swatch()} validation loss", True)]
    rows = []
    for e in epochs:
        row = [_e(fmt_value(e) if not float(e).is_integer() else int(e))]
        for tr, va in cols:
            row += [num(number(tr.get(e)), 4), num(number(va.get(e)), 4)]
        rows.append(row)
    table = _table(head, rows)
    if len(rows) > 30:
        table = f"<details><summary>Every epoch ({len(rows)})</summary>{table}</details>"
    return (f'<section id="training" class="training">\n<h2>Training curves</h2>\n'
            '<p class="muted">The reference fit of each run: loss per epoch, validation solid, '
            "train dashed.</p>\n"
            f"{_img(svg, 'training curves of the runs overlaid')}\n"
            f"{_left_out(sides, [s for s, _ in use], 'per-epoch history')}\n"
            f'<div class="scroll">{table}</div>\n</section>\n')


def _decomposition(sides: Sequence[_Side]) -> str:
    svg = decomposition_overlay(sides)
    if not svg:
        return ('<p class="note" id="decomposition">Decomposition: none of the runs has one; '
                "left out.</p>\n")
    use = [s for s in sides if s.results is not None and s.results.decomposition is not None]
    rows = []
    for block, title, terms in _BARS:
        name = "0-1" if block == "zero_one" else "cross-entropy"
        fmt = (lambda v: pct(v, 2)) if block == "zero_one" else (lambda v: num(v, 3))
        for key, label in terms:
            row = [_e(f"{name}: {label}")]
            for s in use:
                t = getattr(getattr(s.results.decomposition, block), key)
                ci = _pair(t.ci95)
                ci_html = (f'<span class="muted"> [{fmt(ci[0])}, {fmt(ci[1])}]</span>'
                           if ci else "")
                row.append(f"{fmt(t.value)}{ci_html}")
            rows.append(row)
    table = _table([("term", False)] + [(s.swatch(), True) for s in use], rows)
    return (f'<section id="decomposition" class="decomposition">\n'
            "<h2>Bias–variance decomposition</h2>\n"
            '<p class="muted">Before and after: each run\'s terms side by side, error bars '
            "the saved 95% intervals (bootstrap over test points).</p>\n"
            f"{_img(svg, 'decomposition of the runs side by side')}\n"
            f"{_left_out(sides, use, 'decomposition')}\n"
            f'<div class="scroll">{table}</div>\n</section>\n')


# ------------------------------------------------------------------------------------ page

def _header(sides: Sequence[_Side]) -> str:
    items = []
    for s in sides:
        r = s.results
        profile = f" · profile {_e(r.profile)}" if r is not None and r.profile else ""
        derived = (f' · derived from <code>{_e(r.derived_from)}</code>'
                   if r is not None and r.derived_from else "")
        items.append(f"<li><b>{s.swatch()}</b>: {s.run.title()}{profile}{derived} · "
                     f'<code>{_e(s.path)}</code></li>')
    names = " vs ".join(_e(s.label) for s in sides)
    return (f'<header id="runs"><h1>biasvar comparison: {names}</h1>'
            f'<ul class="runlist">{"".join(items)}</ul></header>\n')


def _page(sides: Sequence[_Side]) -> str:
    notices = "".join(f'<div class="notice">{_e(s.label)}: {_e(p)}</div>'
                      for s in sides for p in s.run.problems)
    body = (notices + _verdicts(sides) + _what_changed(sides) + _key_figures(sides)
            + _learning(sides) + _training(sides) + _decomposition(sides))
    title = " vs ".join(_e(s.label) for s in sides)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>biasvar comparison: {title}</title>\n"
            f"<style>{_CSS}{_PAGE_CSS}{_COMPARE_CSS}</style>\n</head>\n<body>\n"
            f'<main class="bvr compare">\n{_header(sides)}{body}'
            "<footer>Written by biasvar from the files of the run directories; open it offline "
            "anywhere. Nothing was recomputed or retrained.</footer>\n</main>\n</body>\n</html>\n")


def compare(run_dirs: Sequence[str | Path], *, out: str | Path | None = None,
            labels: Sequence[str] | None = None) -> Path:
    """Write one offline HTML page comparing run directories side by side; returns its path.

    Args:
        run_dirs: two or more biasvar run directories (``train``, ``diagnose``, ``curve``,
            ``decompose``); the first is the baseline the changes are measured against.
        out: the page to write (its folder must exist); default
            ``runs/compare-<hash of the run directories>.html`` (``runs/`` is created; the
            ``BIASVAR_RUNS`` environment variable moves it). Written atomically.
        labels: one name per run for the page (default: the directories' names).

    Returns:
        The path of the written page.

    Raises:
        BiasvarError: fewer than 2 run directories, one that is not a folder or holds no
            results.json / metrics.json, the same directory twice, ``labels`` of the wrong
            length, or ``out`` in a folder that does not exist.
        ResultsError: a run's results.json is damaged (names the file).

    >>> compare(["runs/diagnose-digits-mlp-1a2b3c4d", "runs/diagnose-digits-mlp-5e6f7a8b"],
    ...         labels=["width 16", "width 32"], out="width.html")  # doctest: +SKIP
    PosixPath('width.html')
    """
    dirs = _run_dirs(run_dirs)
    names = _labels(dirs, labels)
    path = _out_path(out, dirs)
    sides = [_Side(names[i], RUN_COLORS[i % len(RUN_COLORS)], d, _load(i, d))
             for i, d in enumerate(dirs)]
    atomic_write_text(path, _page(sides))
    return path


# ------------------------------------------------------------------------------ derived runs

def _source_dir(derived_from: str, run_dir: Path) -> Path | None:
    """The run directory ``derived_from`` names: as given (relative to the current folder),
    else relative to ``run_dir``, else a sibling of ``run_dir`` of that name; None when none
    of these is a run directory other than ``run_dir``."""
    given = Path(derived_from)
    for p in (given, run_dir / given, run_dir.parent / given.name):
        try:
            if (p.is_dir() and p.resolve() != run_dir.resolve()
                    and any((p / RUN_FILES[k]).is_file() for k in ("results", "metrics"))):
                return p
        except OSError:
            continue
    return None


def derived_section(results: Results, run_dir: str | Path) -> str:
    """For a run derived from another (``results.derived_from``): write (or refresh)
    ``compare.html`` in ``run_dir`` comparing the source run with this one, and return a
    notice linking to it (``<p class="notice">`` with ``href="compare.html"``) for the report's
    header. Returns "" when the run is not derived or its source run directory is not found.
    A source that cannot be compared (a damaged results.json) gives a notice saying why,
    without a link.

    >>> html_snippet = derived_section(load_results(run_dir), run_dir)  # doctest: +SKIP
    """
    src = getattr(results, "derived_from", None)
    if not src:
        return ""
    here = Path(run_dir)
    source = _source_dir(str(src), here)
    if source is None:
        return ""
    name = source.resolve().name
    try:
        compare([source, here], out=here / "compare.html")
    except BiasvarError as err:
        return (f'<p class="notice">Derived from run <code>{_e(name)}</code>; the comparison '
                f"with it could not be written: {_e(err)}</p>")
    return (f'<p class="notice">Derived from run <code>{_e(name)}</code>: '
            '<a href="compare.html">compare the two runs side by side</a>.</p>')
