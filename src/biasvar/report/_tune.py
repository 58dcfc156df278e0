"""The tune report: one self-contained, offline HTML page for a ``biasvar tune`` run directory.

:func:`render_tune_report` reads ``tune.json`` (validated: a damaged file, a missing key or a
value of the wrong type is a :class:`~biasvar.errors.BiasvarError` naming the file and the key)
and writes ``report.html`` beside it. The answer comes first — the best trial's parameters and
its mean ± std validation error over its seeds against the default config's, the gain, and
whether it beats the default by more than the seed-to-seed spread — then the optimisation
history, Optuna's parameter importances, a slice per parameter and a table of every trial; with
``--diagnose``, the bias and variance terms before and after (read from the two diagnoses'
results.json) and links to their reports and to compare.html. Every figure is inline SVG with a
table of its values under it; every string from the files is HTML-escaped; nothing is
recomputed but what is drawn (the running best is the minimum of the saved means so far).

>>> from biasvar.report import render_tune_report
>>> render_tune_report("runs/tune-digits-mlp-1a2b3c4d")  # doctest: +SKIP
PosixPath('runs/tune-digits-mlp-1a2b3c4d/report.html')
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._fmt import NONE, count, fmt_value, num, pct, pts
from .._io import atomic_write_text
from ..errors import BiasvarError
from ._html import _CSS, _PAGE_CSS, _card, _e, _img, _table

__all__ = ["render_tune_report", "load_tune", "TUNE_FILE"]

TUNE_FILE = "tune.json"
REPORT_FILE = "report.html"
BEST_CONFIG = "best_config.yaml"

#: the trial states Optuna knows; COMPLETE trials carry a mean over their seeds
STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
_FINISHED = ("COMPLETE", "PRUNED", "FAIL")

# a folder or file the page may link to: a plain relative name inside the run directory
_LINKABLE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")

_TUNE_CSS = """
.bvr section.answer{border-left:7px solid var(--vc);background:var(--soft);
 padding:14px 20px 12px;border-radius:6px;margin-top:18px}
.bvr section.answer h2{border:0;margin:0 0 4px;padding:0;font-size:21px}
.bvr .yes{--vc:#55a868}.bvr .no{--vc:#dd8452}.bvr .none{--vc:#888}
.bvr tr.best td{background:#e8f4ea}
.bvr tr.pruned td{color:var(--muted)}
.bvr tr.fail td{color:#b42318}
.bvr .scroll{overflow-x:auto}
.bvr dl.head{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:10px 0 0;
 font-size:13.5px}
.bvr dl.head dt{color:var(--muted)}.bvr dl.head dd{margin:0;word-break:break-all}
"""


# ----------------------------------------------------------------------------------- reading

class _Reader:
    """Typed access to one JSON file's keys; every error names the file and the key."""

    def __init__(self, file: str):
        self.file = file

    def fail(self, key: str, value: Any, want: str) -> BiasvarError:
        shown = repr(value) if len(repr(value)) < 60 else repr(value)[:57] + "..."
        return BiasvarError(f"{self.file}: {key}: expected {want}, got {shown}; the file is "
                            "damaged or was not written by `biasvar tune` (rerun it to rewrite "
                            "the file).")

    def get(self, d: Mapping[str, Any], key: str, path: str, want: str, *,
            required: bool = False, nullable: bool = True) -> Any:
        if key not in d:
            if required:
                raise BiasvarError(f"{self.file}: {path}: missing; the file is damaged or was not "
                                   "written by `biasvar tune` (rerun it to rewrite the file).")
            return None
        v = d[key]
        if v is None:
            if not nullable:
                raise self.fail(path, v, want)
            return None
        ok = {"text": lambda x: isinstance(x, str),
              "integer": lambda x: isinstance(x, int) and not isinstance(x, bool),
              "number": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)
              and math.isfinite(x),
              "true or false": lambda x: isinstance(x, bool),
              "an object": lambda x: isinstance(x, dict),
              "a list": lambda x: isinstance(x, list)}[want]
        if not ok(v):
            raise self.fail(path, v, want)
        return float(v) if want == "number" else v

    def numbers(self, d: Mapping[str, Any], key: str, path: str) -> list[float]:
        xs = self.get(d, key, path, "a list") or []
        for i, x in enumerate(xs):
            if not (isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)):
                raise self.fail(f"{path}[{i}]", x, "a number")
        return [float(x) for x in xs]

    def params(self, d: Mapping[str, Any], key: str, path: str) -> dict[str, Any]:
        ps = self.get(d, key, path, "an object") or {}
        for k, v in ps.items():
            if not (v is None or isinstance(v, (str, int, float, bool))) or (
                    isinstance(v, float) and not math.isfinite(v)):
                raise self.fail(f"{path}.{k}", v, "a number, text, true/false or null")
        return dict(ps)


@dataclass(frozen=True)
class Trial:
    """One trial of the study as tune.json saved it (errors are fractions)."""

    number: int
    state: str
    params: dict[str, Any]
    values: list[float]
    mean: float | None
    std: float | None
    intermediate: dict[int, float]
    seconds: float | None

    @property
    def last_intermediate(self) -> tuple[int, float] | None:
        """(epoch, validation error) of the last reported epoch, or None."""
        if not self.intermediate:
            return None
        e = max(self.intermediate)
        return e, self.intermediate[e]


@dataclass(frozen=True)
class Side:
    """The best trial or the default config: parameters, per-seed values, mean, std, test."""

    params: dict[str, Any]
    values: list[float]
    mean: float | None
    std: float | None
    test_error: float | None
    number: int | None = None


@dataclass(frozen=True)
class Param:
    """One dimension of the search space."""

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class Tune:
    """tune.json, typed."""

    dataset: str
    model: str
    sampler: str | None
    pruner: str | None
    seeds: int | None
    metric: str
    space: list[Param]
    trials_requested: int | None
    timeout: float | None
    storage: str | None
    study: str | None
    backend: str | None
    workers: int | None
    trials: list[Trial]
    best: Side | None
    default: Side | None
    gain: float | None
    spread: float | None
    beats_default: bool | None
    importances: dict[str, float]
    diagnose: dict[str, str] | None
    seconds: float | None

    def count(self, *states: str) -> int:
        return sum(t.state in states for t in self.trials)

    @property
    def param_names(self) -> list[str]:
        """The space's parameters in its order, then any other parameter a trial carries."""
        names = [p.name for p in self.space]
        for t in self.trials:
            names += [k for k in t.params if k not in names]
        return names


def _side(r: _Reader, d: Mapping[str, Any] | None, key: str) -> Side | None:
    if d is None:
        return None
    number = r.get(d, "number", f"{key}.number", "integer")
    return Side(params=r.params(d, "params", f"{key}.params"),
                values=r.numbers(d, "values", f"{key}.values"),
                mean=r.get(d, "mean", f"{key}.mean", "number"),
                std=r.get(d, "std", f"{key}.std", "number"),
                test_error=r.get(d, "test_error", f"{key}.test_error", "number"),
                number=number)


def _trial(r: _Reader, d: Any, i: int) -> Trial:
    key = f"trials[{i}]"
    if not isinstance(d, dict):
        raise r.fail(key, d, "an object")
    state = r.get(d, "state", f"{key}.state", "text", required=True, nullable=False)
    if state not in STATES:
        raise r.fail(f"{key}.state", state, f"one of {', '.join(STATES)}")
    inter: dict[int, float] = {}
    for e, v in (r.get(d, "intermediate", f"{key}.intermediate", "an object") or {}).items():
        try:
            epoch = int(e)
        except ValueError:
            raise r.fail(f"{key}.intermediate", e, "epoch numbers as keys") from None
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)):
            raise r.fail(f"{key}.intermediate.{e}", v, "a number")
        inter[epoch] = float(v)
    return Trial(number=r.get(d, "number", f"{key}.number", "integer", required=True,
                              nullable=False),
                 state=state, params=r.params(d, "params", f"{key}.params"),
                 values=r.numbers(d, "values", f"{key}.values"),
                 mean=r.get(d, "mean", f"{key}.mean", "number"),
                 std=r.get(d, "std", f"{key}.std", "number"),
                 intermediate=inter,
                 seconds=r.get(d, "seconds", f"{key}.seconds", "number"))


def _space(r: _Reader, d: Mapping[str, Any]) -> list[Param]:
    out = []
    for name, spec in (r.get(d, "space", "space", "an object") or {}).items():
        key = f"space.{name}"
        if not isinstance(spec, dict):
            raise r.fail(key, spec, "an object")
        kind = r.get(spec, "type", f"{key}.type", "text", required=True, nullable=False)
        if kind not in ("float", "int", "categorical"):
            raise r.fail(f"{key}.type", kind, "float, int or categorical")
        choices = r.get(spec, "choices", f"{key}.choices", "a list") or []
        if kind == "categorical" and not choices:
            raise r.fail(f"{key}.choices", spec.get("choices"), "a non-empty list")
        out.append(Param(name=str(name), type=kind,
                         low=r.get(spec, "low", f"{key}.low", "number"),
                         high=r.get(spec, "high", f"{key}.high", "number"),
                         log=bool(r.get(spec, "log", f"{key}.log", "true or false")),
                         step=r.get(spec, "step", f"{key}.step", "number"),
                         choices=list(choices)))
    return out


def load_tune(run_dir: str | Path) -> Tune:
    """Read and validate ``tune.json`` (a file, or the run directory holding it).

    Raises:
        BiasvarError: the file is missing, is not JSON, or a key is missing or of the wrong
            type (the message names the file and the key).
    """
    p = Path(run_dir)
    f = p / TUNE_FILE if p.is_dir() else p
    if not f.is_file():
        raise BiasvarError(f"RUN_DIR: {str(p)!r} holds no {TUNE_FILE}; point at the run "
                           "directory of a finished `biasvar tune`.")
    r = _Reader(str(f))
    try:
        d = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BiasvarError(f"{f}: cannot be read as JSON ({err}); the file is damaged: rerun "
                           "`biasvar tune` to rewrite it.") from None
    if not isinstance(d, dict):
        raise r.fail("(top level)", d, "an object")
    version = r.get(d, "schema_version", "schema_version", "integer")
    if version is not None and version > 1:
        raise BiasvarError(f"{f}: schema_version: {version} is newer than this biasvar reads "
                           "(1); upgrade biasvar to render it.")
    command = r.get(d, "command", "command", "text")
    if command is not None and command != "tune":
        raise r.fail("command", command, "'tune'")
    trials = r.get(d, "trials", "trials", "a list", required=True, nullable=False)
    diag = r.get(d, "diagnose", "diagnose", "an object")
    if diag is not None:
        for k in ("start", "best", "compare"):
            v = r.get(diag, k, f"diagnose.{k}", "text", required=True, nullable=False)
            if not _LINKABLE.match(v) or ".." in v:
                raise r.fail(f"diagnose.{k}", v, "a plain name inside the run directory")
    imps = r.get(d, "importances", "importances", "an object") or {}
    for k, v in imps.items():
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)):
            raise r.fail(f"importances.{k}", v, "a number")
    timing = r.get(d, "timing", "timing", "an object") or {}
    return Tune(
        dataset=r.get(d, "dataset", "dataset", "text", required=True, nullable=False),
        model=r.get(d, "model", "model", "text", required=True, nullable=False),
        sampler=r.get(d, "sampler", "sampler", "text"),
        pruner=r.get(d, "pruner", "pruner", "text"),
        seeds=r.get(d, "seeds", "seeds", "integer"),
        metric=r.get(d, "metric", "metric", "text") or "validation error",
        space=_space(r, d),
        trials_requested=r.get(d, "trials_requested", "trials_requested", "integer"),
        timeout=r.get(d, "timeout", "timeout", "number"),
        storage=r.get(d, "storage", "storage", "text"),
        study=r.get(d, "study", "study", "text"),
        backend=r.get(d, "backend", "backend", "text"),
        workers=r.get(d, "workers", "workers", "integer"),
        trials=sorted((_trial(r, t, i) for i, t in enumerate(trials)), key=lambda t: t.number),
        best=_side(r, r.get(d, "best", "best", "an object"), "best"),
        default=_side(r, r.get(d, "default", "default", "an object"), "default"),
        gain=r.get(d, "gain", "gain", "number"),
        spread=r.get(d, "spread", "spread", "number"),
        beats_default=r.get(d, "beats_default", "beats_default", "true or false"),
        importances={str(k): float(v) for k, v in imps.items()},
        diagnose=dict(diag) if diag is not None else None,
        seconds=r.get(timing, "seconds", "timing.seconds", "number"),
    )


# ----------------------------------------------------------------------------------- pieces

def _value(v: Any) -> str:
    """A parameter's value as plain text, as a user would type it."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.4g}"
    return fmt_value(v)


def _pm(mean: float | None, std: float | None) -> str:
    """``8.12% ± 0.45%`` (the std left out when absent)."""
    if mean is None:
        return NONE
    return pct(mean, 2) + (f" ± {pct(std, 2)}" if std is not None else "")


def _secs(x: float | None) -> str:
    if x is None:
        return NONE
    return f"{x / 60:.1f} min" if x >= 120 else f"{x:.1f} s"


def _label(text: Any, n: int = 28) -> str:
    """Text from the file as matplotlib text: short, ``$`` not mathtext, no ``://``."""
    s = str(text)
    s = s if len(s) <= n else s[: n - 1] + "…"
    s = s.replace("$", r"\$").replace("://", ":/\u200b/")
    return "\u200b" + s if s.startswith("_") else s


def _section(sid: str, title: str, body: str, intro: str = "") -> str:
    intro_html = f'<p class="muted">{intro}</p>\n' if intro else ""
    return (f'<section id="{sid}" class="{sid}">\n<h2>{title}</h2>\n{intro_html}{body}\n'
            "</section>\n")


def _running_best(trials: Sequence[Trial]) -> list[tuple[int, float]]:
    """(trial number, lowest mean of the complete trials up to it) at each complete trial."""
    out, best = [], math.inf
    for t in trials:
        if t.state == "COMPLETE" and t.mean is not None:
            best = min(best, t.mean)
            out.append((t.number, best))
    return out


def _pruned_at(t: Trial) -> float | None:
    """Where a pruned trial is drawn: its mean when saved, else its last reported epoch."""
    if t.mean is not None:
        return t.mean
    last = t.last_intermediate
    return last[1] if last else None


# ----------------------------------------------------------------------------------- figures

def history_plot(tune: Tune) -> str | None:
    """Mean validation error by trial number (complete: dots; pruned: crosses at their last
    reported value), every seed's value as a small dot, the running best as a step line and
    the default config's mean as a dashed line."""
    import matplotlib
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    from ._plots import _RC, COLORS, _figure, _style, _subplots, _svg

    done = [t for t in tune.trials if t.state == "COMPLETE" and t.mean is not None]
    pruned = [(t.number, y) for t in tune.trials if t.state == "PRUNED"
              and (y := _pruned_at(t)) is not None]
    if not done and not pruned:
        return None
    with matplotlib.rc_context(_RC):
        fig = _figure(9.4, 3.4)
        ax = _subplots(fig, 1, 1)[0]
        sx = [t.number for t in tune.trials if t.state in ("COMPLETE", "PRUNED")
              for _ in t.values]
        sy = [v for t in tune.trials if t.state in ("COMPLETE", "PRUNED") for v in t.values]
        if sx and (tune.seeds or 1) > 1:
            ax.scatter(sx, sy, s=14, color=COLORS["extra"], alpha=0.55, lw=0, zorder=2,
                       label="one seed")
        if done:
            ax.scatter([t.number for t in done], [t.mean for t in done], s=28,
                       color=COLORS["val"], zorder=3, label="trial: mean over its seeds")
        if pruned:
            ax.scatter([n for n, _ in pruned], [y for _, y in pruned], s=34, marker="x",
                       color="#888888", zorder=3, label="pruned (last reported epoch)")
        rb = _running_best(tune.trials)
        if rb:
            xs = [n for n, _ in rb]
            last = max(t.number for t in tune.trials)
            ax.step(xs + [last], [b for _, b in rb] + [rb[-1][1]], where="post", lw=1.6,
                    color=COLORS["train"], zorder=4, label="running best")
        if tune.best is not None and tune.best.number is not None and tune.best.mean is not None:
            ax.scatter([tune.best.number], [tune.best.mean], s=120, marker="*",
                       color=COLORS["test"], zorder=5, label=f"best: trial {tune.best.number}")
        if tune.default is not None and tune.default.mean is not None:
            ax.axhline(tune.default.mean, color=COLORS["total"], lw=1.0, ls="--",
                       label=f"default config: {pct(tune.default.mean, 2)}")
        ax.set_xlabel("trial number")
        ax.set_ylabel(tune.metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=1))
        ax.legend(loc="upper right", fontsize=7)
        _style(ax)
        return _svg(fig)


def importance_plot(importances: Mapping[str, float]) -> str | None:
    """Horizontal bars, the most important parameter on top."""
    import matplotlib
    import numpy as np

    from ._plots import _RC, COLORS, _figure, _style, _subplots, _svg

    if not importances:
        return None
    items = sorted(importances.items(), key=lambda kv: kv[1], reverse=True)
    with matplotlib.rc_context(_RC):
        fig = _figure(9.4, 0.45 * len(items) + 1.0)
        ax = _subplots(fig, 1, 1)[0]
        y = np.arange(len(items))[::-1]
        ax.barh(y, [v for _, v in items], 0.6, color=COLORS["bias"])
        for yi, (_, v) in zip(y, items):
            ax.annotate(f"{v:.3f}", (v, yi), textcoords="offset points", xytext=(3, 0),
                        va="center", fontsize=8)
        ax.set_yticks(y)
        ax.set_yticklabels([_label(k) for k, _ in items])
        ax.set_xlim(0, max(max(v for _, v in items) * 1.15, 1e-9))
        ax.set_xlabel("importance (share of the variation in the objective)")
        _style(ax)
        ax.grid(False, axis="y")
        return _svg(fig)


def _categories(p: Param | None, values: Sequence[Any]) -> list[Any]:
    """The categories in the space's order, then any other value seen."""
    cats = list(p.choices) if p is not None else []
    for v in values:
        if not any(_value(v) == _value(c) for c in cats):
            cats.append(v)
    return cats


def _is_numeric(p: Param | None, values: Sequence[Any]) -> bool:
    if p is not None:
        return p.type != "categorical"
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def slice_plot(tune: Tune) -> str | None:
    """One small panel per parameter: each complete trial's mean validation error against
    its value (log x for log-scaled parameters, categories in the space's order), the best
    trial as a star."""
    import matplotlib
    import numpy as np
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, PercentFormatter

    from ._plots import _RC, COLORS, _figure, _style, _subplots, _svg

    done = [t for t in tune.trials if t.state == "COMPLETE" and t.mean is not None]
    names = [n for n in tune.param_names if any(n in t.params for t in done)]
    if not done or not names:
        return None
    space = {p.name: p for p in tune.space}
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    with matplotlib.rc_context(_RC):
        fig = _figure(9.4, 2.6 * nrows + 0.2)
        axes = _subplots(fig, nrows, ncols)
        for ax, name in zip(axes, names):
            p = space.get(name)
            rows = [(t.params[name], t.mean, t.number) for t in done if name in t.params]
            vals = [v for v, _, _ in rows]
            best = tune.best.number if tune.best is not None else None
            if _is_numeric(p, vals) and all(isinstance(v, (int, float)) for v in vals):
                x = np.array([float(v) for v in vals])
                log = bool(p.log) if p is not None else False
                log = log and bool((x > 0).all())
                cats = None
            else:
                cats = _categories(p, vals)
                index = {_value(c): i for i, c in enumerate(cats)}
                x = np.array([float(index[_value(v)]) for v in vals])
                log = False
            y = np.array([m for _, m, _ in rows])
            ax.scatter(x, y, s=22, color=COLORS["val"], zorder=3)
            is_best = np.array([n == best for _, _, n in rows])
            if is_best.any():
                ax.scatter(x[is_best], y[is_best], s=110, marker="*", color=COLORS["test"],
                           zorder=4)
            if log:
                ax.set_xscale("log")
                ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 3.0)))
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.xaxis.set_minor_formatter(NullFormatter())
            if cats is not None:
                ax.set_xticks(range(len(cats)))
                ax.set_xticklabels([_label(_value(c), 12) for c in cats],
                                   rotation=30 if len(cats) > 4 else 0,
                                   ha="right" if len(cats) > 4 else "center")
                ax.set_xlim(-0.5, len(cats) - 0.5)
            ax.set_title(_label(name) + (" (log scale)" if log else ""))
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=1))
            _style(ax)
        for ax in axes[len(names):]:
            ax.set_visible(False)
        for i in range(0, len(names), ncols):
            axes[i].set_ylabel(tune.metric)
        return _svg(fig)


# ----------------------------------------------------------------------------------- sections

def _header(tune: Tune, nav: Sequence[tuple[str, str]]) -> str:
    finished = tune.count("COMPLETE", "PRUNED")  # what --trials counts (failed ones do not)
    of = f" of {count(tune.trials_requested)} requested" if tune.trials_requested else ""
    states = ", ".join(f"{tune.count(s)} {w}" for s, w in
                       (("COMPLETE", "complete"), ("PRUNED", "pruned"), ("FAIL", "failed"),
                        ("RUNNING", "running"), ("WAITING", "waiting")) if tune.count(s))
    timeout = f" · timeout {_secs(tune.timeout)}" if tune.timeout is not None else ""
    rows = [("dataset", _e(tune.dataset)), ("model", _e(tune.model)),
            ("sampler", _e(tune.sampler or NONE)), ("pruner", _e(tune.pruner or NONE)),
            ("seeds per trial", count(tune.seeds)),
            ("trials", f"{count(finished)} finished{of}" + (f" ({states})" if states else "")
             + timeout),
            ("storage", f"<code>{_e(tune.storage)}</code>" if tune.storage else NONE),
            ("study", f"<code>{_e(tune.study)}</code>" if tune.study else NONE),
            ("backend", f"{_e(tune.backend or 'local')} · {count(tune.workers or 1)} "
                        f"worker{'' if (tune.workers or 1) == 1 else 's'}"),
            ("wall time", _secs(tune.seconds))]
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    links = "".join(f'<a href="#{sid}">{_e(t)}</a>' for sid, t in nav)
    return (f"<header><h1>biasvar tune: {_e(tune.dataset)} · {_e(tune.model)}</h1>"
            f'<dl class="head">{dl}</dl><nav>{links}</nav></header>\n')


def _answer(tune: Tune, run_dir: Path) -> str:
    b, d = tune.best, tune.default
    if b is None or b.mean is None:
        return ('<section id="answer" class="answer none">\n<h2>No answer yet</h2>\n'
                "<p>No trial finished with a validation error: there is no best configuration "
                "to compare with the default. Rerun <code>biasvar tune</code> (it resumes the "
                "study) with more trials or time.</p>\n</section>\n")
    seeds = len(b.values) or tune.seeds
    many = seeds > 1
    who = f"trial {b.number}" if b.number is not None else "the best trial"
    parts = [f"<p>The best configuration ({_e(who)}) reaches "
             f"<b>{_pm(b.mean, b.std if many else None)}</b> "
             f"{_e(tune.metric)} over {count(seeds)} seed{'' if seeds == 1 else 's'}"]
    if d is not None and d.mean is not None:
        parts[0] += (f", against <b>{_pm(d.mean, d.std if many else None)}</b> for the "
                     "default configuration.</p>")
        g = tune.gain if tune.gain is not None else d.mean - b.mean
        spread = f" ({pts(tune.spread, 2, signed=False)})" if tune.spread is not None else ""
        if not many:
            cls = "none"
            verdict = (f"<p class=\"phrase\">The best is <b>{pts(g, 2)}</b> better than the "
                       "default on <b>one seed</b>: no seed-to-seed spread was measured, so "
                       "this cannot tell a real gain from the luck of the seed (rerun with "
                       "<code>--seeds 3</code>).</p>")
        elif tune.beats_default:
            cls = "yes"
            verdict = (f"<p class=\"phrase\">It beats the default by <b>{pts(g, 2)}</b>: "
                       f"<b>more than the seed-to-seed spread</b>{spread}, so the gain is "
                       "unlikely to be the luck of the seeds.</p>")
        elif tune.beats_default is False:
            cls = "no"
            verdict = (f"<p class=\"phrase\">The difference from the default is "
                       f"<b>{pts(g, 2)}</b>: <b>not more than the seed-to-seed spread</b>"
                       f"{spread}, so it may be the luck of the seeds; keep the default, or "
                       "tune with more seeds or trials.</p>")
        else:
            cls = "none"
            verdict = f"<p class=\"phrase\">The difference from the default is {pts(g, 2)}.</p>"
        parts.append(verdict)
    else:
        cls = "none"
        parts[0] += ". The default configuration was not evaluated.</p>"
    cards = [_card("best: " + _e(tune.metric), _e(pct(b.mean, 2)),
                   f"± {pct(b.std, 2)} (std over seeds)" if b.std is not None and many
                   else "one seed")]
    if d is not None and d.mean is not None:
        cards.append(_card("default: " + _e(tune.metric), _e(pct(d.mean, 2)),
                           f"± {pct(d.std, 2)} (std over seeds)" if d.std is not None and many
                           else "one seed"))
    if tune.gain is not None:
        cards.append(_card("gain", _e(pts(tune.gain, 2)), "default − best"))
    if tune.spread is not None and many:
        cards.append(_card("seed-to-seed spread", _e(pts(tune.spread, 2, signed=False)),
                           "the larger of the two stds"))
    parts.append(f'<div class="cards">{"".join(cards)}</div>')
    names = [n for n in tune.param_names if n in b.params or (d is not None and n in d.params)]
    rows = []
    for n in names:
        bv = _e(_value(b.params[n])) if n in b.params else NONE
        dv = _e(_value(d.params[n])) if d is not None and n in d.params else NONE
        rows.append([f"<code>{_e(n)}</code>", bv, dv])
    head = [("parameter", False), ("best", False), ("default", False)]
    rows.append([_e("per-seed " + tune.metric),
                 _e(", ".join(pct(v, 2) for v in b.values) or NONE),
                 _e(", ".join(pct(v, 2) for v in d.values) or NONE) if d is not None else NONE])
    if many:
        rows.append([_e("mean ± std"), _e(_pm(b.mean, b.std)),
                     _e(_pm(d.mean, d.std)) if d is not None else NONE])
    if b.test_error is not None or (d is not None and d.test_error is not None):
        rows.append(["test error", pct(b.test_error, 2),
                     pct(d.test_error, 2) if d is not None else NONE])
    parts.append(_table(head, rows).replace("<table>", '<table class="answer-table">', 1))
    if b.test_error is not None or (d is not None and d.test_error is not None):
        parts.append('<p class="note">Test error: scored once on the test split, after the '
                     "choice was made on the validation error; the search never saw it.</p>")
    link = (f'<a href="{BEST_CONFIG}"><code>{BEST_CONFIG}</code></a>'
            if (run_dir / BEST_CONFIG).is_file() else f"<code>{BEST_CONFIG}</code>")
    parts.append(f"<p>The best configuration in full: {link} in this folder. Reproduce it with "
                 f"<code>biasvar train --config {BEST_CONFIG}</code>.</p>")
    return (f'<section id="answer" class="answer {cls}">\n<h2>The answer</h2>\n'
            + "\n".join(parts) + "\n</section>\n")


def _history(tune: Tune) -> str:
    svg = history_plot(tune)
    if not svg:
        return _section("history", "Optimisation history",
                        '<p class="note">No trial finished with a value: nothing to draw.</p>')
    rb = dict(_running_best(tune.trials))
    nseeds = max([len(t.values) for t in tune.trials] + [0])
    head = ([("trial", True), ("state", False), (_e("mean " + tune.metric), True),
             ("running best", True)] + [(f"seed {i}", True) for i in range(nseeds)])
    rows, classes = [], []
    for t in tune.trials:
        if t.state not in ("COMPLETE", "PRUNED"):
            continue
        mean = t.mean if t.state == "COMPLETE" else _pruned_at(t)
        row = [str(t.number), _e(t.state.lower()), pct(mean, 2),
               pct(rb[t.number], 2) if t.number in rb else NONE]
        row += [pct(t.values[i], 2) if i < len(t.values) else NONE for i in range(nseeds)]
        rows.append(row)
        classes.append("pruned" if t.state == "PRUNED" else "")
    table = _table(head, rows, classes).replace("<table>", '<table class="history-table">', 1)
    return _section("history", "Optimisation history",
                    f"{_img(svg, 'optimisation history')}\n<div class=\"scroll\">{table}</div>",
                    "Each finished trial's mean validation error over its seeds by trial number "
                    "(dots; pruned trials as crosses at their last reported epoch, failed "
                    "trials left out), each seed as a small dot, and the lowest mean so far "
                    "as a line.")


def _importances(tune: Tune) -> str:
    if not tune.importances:
        return _section("importances", "Parameter importances",
                        '<p class="note">No importances: too few complete trials (or a single '
                        "parameter) for Optuna to estimate them.</p>")
    svg = importance_plot(tune.importances)
    items = sorted(tune.importances.items(), key=lambda kv: kv[1], reverse=True)
    rows = [[f"<code>{_e(k)}</code>", num(v, 3)] for k, v in items]
    table = _table([("parameter", False), ("importance", True)], rows).replace(
        "<table>", '<table class="importance-table">', 1)
    return _section("importances", "Parameter importances",
                    f"{_img(svg, 'parameter importances')}\n{table}",
                    "Optuna's estimate of how much of the variation in the validation error "
                    "each parameter explains (its <code>get_param_importances</code> over the "
                    "complete trials; they sum to 1).")


def _slices(tune: Tune) -> str:
    svg = slice_plot(tune)
    if not svg:
        return _section("slices", "Slices",
                        '<p class="note">No complete trial with parameters: nothing to draw.'
                        "</p>")
    done = [t for t in tune.trials if t.state == "COMPLETE" and t.mean is not None]
    names = [n for n in tune.param_names if any(n in t.params for t in done)]
    head = ([("trial", True)] + [(f"<code>{_e(n)}</code>", False) for n in names]
            + [(_e("mean " + tune.metric), True)])
    rows = [[str(t.number)] + [_e(_value(t.params[n])) if n in t.params else NONE
                               for n in names] + [pct(t.mean, 2)] for t in done]
    table = _table(head, rows).replace("<table>", '<table class="slice-table">', 1)
    space = {p.name: p for p in tune.space}
    logs = [n for n in names if n in space and space[n].log]
    note = (f" Log-scaled: {', '.join(f'<code>{_e(n)}</code>' for n in logs)}." if logs
            else "")
    return _section("slices", "Slices",
                    f"{_img(svg, 'validation error against each parameter')}\n"
                    f'<div class="scroll">{table}</div>',
                    "Each complete trial's mean validation error against the value of one "
                    f"parameter, one panel per parameter; the star is the best trial.{note}")


def _trials(tune: Tune) -> str:
    names = tune.param_names
    nseeds = max([len(t.values) for t in tune.trials] + [tune.seeds or 0])
    head = ([("trial", True), ("state", False)] + [(f"<code>{_e(n)}</code>", False)
                                                   for n in names]
            + [(f"seed {i}", True) for i in range(nseeds)]
            + [("mean", True), ("std", True), ("seconds", True)])
    best = tune.best.number if tune.best is not None else None
    rows, classes = [], []
    for t in tune.trials:
        state = t.state.lower()
        if t.state == "PRUNED" and t.last_intermediate is not None:
            state += f" (epoch {t.last_intermediate[0]})"
        row = [str(t.number), _e(state)]
        row += [_e(_value(t.params[n])) if n in t.params else NONE for n in names]
        row += [pct(t.values[i], 2) if i < len(t.values) else NONE for i in range(nseeds)]
        row += [pct(t.mean, 2), pct(t.std, 2), num(t.seconds, 1)]
        rows.append(row)
        classes.append("best" if t.number == best else
                       {"PRUNED": "pruned", "FAIL": "fail"}.get(t.state, ""))
    table = _table(head, rows, classes).replace("<table>", '<table class="trials-table">', 1)
    return _section("trials", "Every trial", f'<div class="scroll">{table}</div>',
                    "Validation error per seed, their mean and standard deviation, and the "
                    "trial's wall time; the best trial highlighted. Also in "
                    "<code>trials.csv</code>.")


# the before/after figures of --diagnose: (label, getter on a typed Results)
def _terms() -> list[tuple[str, Any]]:
    def dec(name: str) -> Any:
        def get(r: Any) -> float | None:
            d = r.decomposition
            return getattr(d.zero_one, name).value if d is not None else None
        return get

    def err(split: str) -> Any:
        def get(r: Any) -> float | None:
            return r.reference.error(split) if r.reference is not None else None
        return get

    return [("0-1 bias", dec("bias")), ("0-1 net variance", dec("net_variance")),
            ("0-1 loss", dec("loss")), ("train error", err("train")),
            ("validation error", err("val")), ("test error", err("test"))]


def _diagnose(tune: Tune, run_dir: Path) -> str:
    if tune.diagnose is None:
        return ""
    from ..analysis._results import load_results

    dg = tune.diagnose
    body, loaded = [], {}
    for side in ("start", "best"):
        d = run_dir / dg[side]
        try:
            loaded[side] = load_results(d)
        except BiasvarError as err:
            body.append(f'<div class="notice">{_e(dg[side])}: {_e(err)}</div>')
    links = []
    if (run_dir / dg["compare"]).is_file():
        links.append(f'<a href="{_e(dg["compare"])}">the two diagnoses side by side</a> '
                     f'(<code>{_e(dg["compare"])}</code>)')
    for side, what in (("start", "the default configuration"), ("best", "the best one")):
        page = run_dir / dg[side] / REPORT_FILE
        if page.is_file():
            links.append(f'<a href="{_e(dg[side])}/{REPORT_FILE}">the diagnosis of {what}</a>')
    if links:
        body.insert(0, "<p>Open " + "; ".join(links) + ".</p>")
    if loaded:
        rows = []
        for label, get in _terms():
            a = get(loaded["start"]) if "start" in loaded else None
            b = get(loaded["best"]) if "best" in loaded else None
            if a is None and b is None:
                continue
            change = NONE if a is None or b is None else pts(b - a, 2)
            rows.append([_e(label), pct(a, 2), pct(b, 2), _e(change)])
        if rows:
            body.append(_table([("term", False), ("default config", True),
                                ("best config", True), ("change", True)], rows).replace(
                "<table>", '<table class="diagnose-table">', 1))
    return _section("diagnose", "Before and after: bias and variance", "\n".join(body),
                    "The default configuration and the best one, each diagnosed in full: "
                    "where the gain came from (bias or variance). Errors in %, changes in "
                    "points (best − default).")


# ----------------------------------------------------------------------------------- page

def _page(tune: Tune, run_dir: Path) -> str:
    parts = [("answer", "Answer", _answer(tune, run_dir)),
             ("diagnose", "Before and after", _diagnose(tune, run_dir)),
             ("history", "History", _history(tune)),
             ("importances", "Importances", _importances(tune)),
             ("slices", "Slices", _slices(tune)),
             ("trials", "Trials", _trials(tune))]
    nav = [(sid, title) for sid, title, html_text in parts if html_text]
    body = "".join(html_text for _, _, html_text in parts)
    title = f"biasvar tune: {_e(tune.dataset)} · {_e(tune.model)}"
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{title}</title>\n<style>{_CSS}{_PAGE_CSS}{_TUNE_CSS}</style>\n"
            f'</head>\n<body>\n<main class="bvr tune">\n{_header(tune, nav)}{body}'
            "<footer>Written by biasvar from the files of the tune run directory "
            f"(<code>{TUNE_FILE}</code>); open it offline anywhere. Nothing was recomputed or "
            "retrained.</footer>\n</main>\n</body>\n</html>\n")


def render_tune_report(run_dir: str | Path) -> Path:
    """Write ``report.html`` for a ``biasvar tune`` run directory (atomically); returns its
    path.

    Raises:
        BiasvarError: the folder holds no tune.json, or it is damaged or of the wrong types
            (the message names the file and the key).

    >>> render_tune_report("runs/tune-digits-mlp-1a2b3c4d")  # doctest: +SKIP
    PosixPath('runs/tune-digits-mlp-1a2b3c4d/report.html')
    """
    d = Path(run_dir)
    if not d.is_dir():
        what = "is a file, not a folder" if d.exists() else "does not exist"
        raise BiasvarError(f"RUN_DIR: {str(d)!r} {what}; give the run directory of a finished "
                           "`biasvar tune`.")
    tune = load_tune(d)
    path = d / REPORT_FILE
    atomic_write_text(path, _page(tune, d))
    return path
