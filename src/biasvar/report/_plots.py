"""The report's figures: matplotlib (Agg, no pyplot state) to inline SVG.

Every function draws saved results as they are — the typed records of
:mod:`biasvar.analysis._results` (``LearningCurve``, ``ComplexityCurve``, ``Decomposition``, ...)
or plain arrays — and returns the SVG markup, or None when there is nothing to draw.
Nothing here recomputes a statistic: curve bands span the saved seed ``values`` (lowest to
highest), error bars are the saved ``ci95``, the extrapolation the saved power-law parameters
evaluated on a grid up to the predictions they were trusted for.
"""
from __future__ import annotations

import io
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

from .._fmt import num, pct
from ..analysis._results import finite

if TYPE_CHECKING:
    from ..analysis._results import (Band, ClassDecomposition, ComplexityCurve, Decomposition,
                                     LearningCurve, PowerLaw, Term)

__all__ = ["training_curves", "learning_curve", "complexity_curve", "decomposition_overall",
           "decomposition_per_class", "confusion_matrix", "COLORS"]

#: one colour per role, shared by all figures (and the HTML legend chips)
COLORS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c", "bias": "#4c72b0",
          "variance": "#dd8452", "total": "#222222", "ensemble": "#55a868", "extra": "#8172b3"}

_RC = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
       "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False,
       "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.6,
       "legend.frameon": True, "legend.framealpha": 0.85, "legend.edgecolor": "none",
       "svg.fonttype": "none"}
_WIDE = 9.4  # inches: the report's content width at 100 dpi


def _floats(xs: Sequence[float | None]) -> np.ndarray:
    """Numbers as a float array, None as NaN."""
    return np.array([np.nan if x is None else x for x in xs], dtype=float)


def _short(name: Any, n: int = 18) -> str:
    s = str(name)
    return s if len(s) <= n else s[: n - 1] + "…"


_SVG_COUNT = itertools.count()


def _svg(fig: Figure) -> str:
    """The figure as inline SVG markup for an HTML page: vector (crisp at any zoom), text kept as
    text (``svg.fonttype: none``), ids salted per figure so several plots share a page, and no
    XML prolog, metadata or namespace URL (the page stays free of any URL)."""
    buf = io.StringIO()
    n = next(_SVG_COUNT)
    with matplotlib.rc_context({**_RC, "svg.hashsalt": f"bvr{n}", "svg.id": f"bvr-fig{n}"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", pad_inches=0.08,
                    metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.S)
    text = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", text)
    text = text.replace("xlink:href=", "href=")
    # scale with the page: the viewBox keeps the aspect, CSS sets the width
    text = re.sub(r'<svg width="([\d.]+)pt" height="([\d.]+)pt"',
                  lambda m: f'<svg width="100%" style="max-width:{m.group(1)}pt"', text,
                  count=1)
    return re.sub(r"<!--.*?-->", "", text).strip()


def _figure(width: float, height: float) -> Figure:
    # the Agg canvas directly, without pyplot: no global figure state, and the user's chosen
    # backend (a notebook's, say) is left alone
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _subplots(fig: Figure, nrows: int, ncols: int) -> list:
    with matplotlib.rc_context(_RC):
        axes = fig.subplots(nrows, ncols, squeeze=False)
    return [ax for row in axes for ax in row]


def _style(ax: Any) -> None:
    """Apply the report's rc settings to an axes created in an rc_context (fonts, grid, spines)."""
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.grid(True, alpha=0.3, linewidth=0.6)
    ax.set_axisbelow(True)


def _seed_dots(values: Sequence[Sequence[float]], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every seed's value at its point as (x, y) arrays: ``values`` holds one list per point,
    of any length (sizes may differ in their number of seeds); non-finite values are dropped."""
    if len(values) != x.size:
        return np.array([]), np.array([])
    xs, ys = [], []
    for xi, row in zip(x, values):
        for v in row or []:
            if finite(v):
                xs.append(xi)
                ys.append(float(v))
    return np.array(xs, dtype=float), np.array(ys, dtype=float)


def _spread(values: Sequence[Sequence[float]], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per point: (lowest, highest, number of finite seed values); NaN where a point has fewer
    than two."""
    lo, hi, k = np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, dtype=int)
    if len(values) != n:
        return lo, hi, k
    for i, row in enumerate(values):
        vals = [float(v) for v in row or [] if finite(v)]
        k[i] = len(vals)
        if len(vals) >= 2:
            lo[i], hi[i] = min(vals), max(vals)
    return lo, hi, k


def _band(ax: Any, x: np.ndarray, band: Band, color: str, label: str, marker: str = "o",
          dots: bool = False) -> bool:
    """Mean line, the band from the lowest to the highest seed at each point (not an interval:
    with 2–3 seeds a t-interval is mostly the t quantile) and, with ``dots``, each seed's value
    as a dot; False when the band holds no finite mean."""
    mean = _floats(band.mean)
    if mean.size != x.size or not np.isfinite(mean).any():
        return False
    lo, hi, k = _spread(band.values, x.size)
    shaded = bool(np.isfinite(lo).any())
    seeds = f"{k.min()}–{k.max()}" if k.size and k.min() != k.max() else f"{k.max() if k.size else 0}"
    ax.plot(x, mean, marker=marker, ms=4, lw=1.6, color=color,
            label=f"{label}: mean of {seeds} seeds, band min–max" if shaded else label)
    if shaded:
        ax.fill_between(x, lo, hi, color=color, alpha=0.18, lw=0)
    if dots:
        dx, dy = _seed_dots(band.values, x)
        if dx.size:
            ax.scatter(dx, dy, s=12, color=color, alpha=0.6, lw=0, zorder=3)
    return True


def training_curves(epochs: np.ndarray, columns: Mapping[str, np.ndarray],
                    steps: Mapping[str, np.ndarray] | None = None) -> str | None:
    """Loss and accuracy per epoch and, from ``steps`` (steps.csv's columns ``step``,
    ``epoch``, ``loss``, ``lr``), the per-step training loss and the learning-rate schedule.

    ``columns`` maps history.csv's column names (``train_loss``, ``val_accuracy``, ...) to
    arrays as long as ``epochs`` (NaN: none). The x axis is in epochs throughout: a step window
    ending at step s sits at s / (steps per epoch), an epoch's values at its end. The epoch's
    train values are the running means over the epoch in train mode (dropout and augmentation
    on, weights changing); validation is scored after the epoch in eval mode — the legend
    says so."""
    epochs = np.asarray(epochs, dtype=float)
    if epochs.size == 0:
        return None

    def col(name: str) -> np.ndarray:
        y = np.asarray(columns.get(name, []), dtype=float)
        return y if y.size == epochs.size else np.full(epochs.size, np.nan)

    st = {k: np.asarray((steps or {}).get(k, []), dtype=float)
          for k in ("step", "epoch", "loss", "lr")}
    n = st["step"].size
    if n == 0 or any(v.size != n for v in st.values()) or not np.isfinite(st["loss"]).any():
        st = {}
    x_steps = None
    if st:
        e0 = float(st["epoch"].min())  # an epoch's last window ends at its last step
        per_epoch = float(st["step"][st["epoch"] == e0].max()) / e0 if e0 >= 1 else math.nan
        if finite(per_epoch) and per_epoch > 0:
            x_steps = st["step"] / per_epoch
    panels = [("loss", "loss (mean NLL)", False), ("accuracy", "accuracy", True)]
    present = [(k, t, as_pct) for k, t, as_pct in panels
               if any(np.isfinite(col(f"{s}_{k}")).any() for s in ("train", "val"))
               or (k == "loss" and x_steps is not None)]
    lr_panel = x_steps is not None and np.isfinite(st["lr"]).any()
    if not present and not lr_panel:
        return None
    labels = {"train": "train: running mean over the epoch (train mode)",
              "val": "validation: after the epoch (eval mode)"}
    with matplotlib.rc_context(_RC):
        fig = _figure(_WIDE, 3.2)
        axes = _subplots(fig, 1, len(present) + int(lr_panel))
        for ax, (key, title, as_pct) in zip(axes, present):
            if key == "loss" and x_steps is not None:
                ax.plot(x_steps, st["loss"], lw=0.8, color=COLORS["train"], alpha=0.45,
                        label="train: per step (window means)")
            for split in ("train", "val"):
                y = col(f"{split}_{key}")
                if np.isfinite(y).any():
                    ax.plot(epochs, y, marker="o", ms=3.5, lw=1.6, color=COLORS[split],
                            label=labels[split])
            ax.set_title(title)
            ax.set_xlabel("epoch")
            if as_pct:
                ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
            if epochs.size <= 20:
                ax.set_xticks(epochs)
            ax.legend(fontsize=6.5, loc="best")
            _style(ax)
        if lr_panel:
            ax = axes[-1]
            ax.plot(x_steps, st["lr"], lw=1.4, color=COLORS["extra"])
            ax.set_title("learning rate (per step)")
            ax.set_xlabel("epoch")
            if epochs.size <= 20:
                ax.set_xticks(epochs)
            ax.set_ylim(bottom=0, top=float(np.nanmax(st["lr"])) * 1.12 or 1.0)
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))
            _style(ax)
        return _svg(fig)


def _supported(pl: PowerLaw | None) -> list[tuple[int, float, tuple[float, float] | None]]:
    """The saved predictions the fit supports: (k, error at k·n_max, its interval) for 2× and
    10×, only when the fit extrapolates; 10× only when 2× is there too."""
    if pl is None or not pl.ok or not pl.extrapolates:
        return []
    out = []
    for k, e, ci in ((2, pl.err_2x, pl.err_2x_ci), (10, pl.err_10x, pl.err_10x_ci)):
        if not finite(e):
            break
        out.append((k, float(e), _ci_pair(ci)))
    return out


def _power_law_grid(pl: PowerLaw | None, n_min: float, n_to: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The saved fit err(n) = a·n^(−b) + c evaluated from n_min to n_to (for drawing)."""
    if pl is None or not pl.ok:
        return None
    a, b, c = pl.a, pl.b, pl.c
    if not all(finite(v) for v in (a, b, c, n_to)) or n_to <= 0 or n_min <= 0:
        return None
    n = np.geomspace(n_min, n_to, 120)
    with np.errstate(over="ignore", invalid="ignore"):
        err = a * n ** (-b) + c
    if not np.isfinite(err).all():
        return None
    return n, err


def _ci_pair(ci: Sequence[float] | None) -> tuple[float, float] | None:
    """A saved [lo, hi] interval as two floats, or None when absent or not finite."""
    if ci is None or len(ci) != 2 or not all(finite(v) for v in ci):
        return None
    return float(ci[0]), float(ci[1])


def learning_curve(lc: LearningCurve, target: float | None = None) -> str | None:
    """Train/validation error vs training-set size (log x, ticked at the measured sizes): the
    mean over seeds, each seed's fit as a dot and the band from the lowest to the highest seed;
    the ``target`` error as a line; the power-law fit drawn only where it is supported — over
    the measured sizes when it was fitted to at least 4 of them, and on to the predictions it
    makes (2×, 10×, with their saved 95 % intervals) only when it extrapolates."""
    sizes = _floats(lc.sizes)
    if sizes.size == 0 or not np.isfinite(sizes).all() or (sizes <= 0).any():
        return None
    with matplotlib.rc_context(_RC):
        fig = _figure(_WIDE, 3.6)
        ax = _subplots(fig, 1, 1)[0]
        drew = _band(ax, sizes, lc.train_error, COLORS["train"], "train", dots=True)
        drew |= _band(ax, sizes, lc.val_error, COLORS["val"], "validation", dots=True)
        if not drew:
            return None
        pl = lc.power_law
        preds = _supported(pl)
        n_max = float(pl.n_max) if pl is not None and finite(pl.n_max) else float(sizes.max())
        fitted = len(set(lc.sizes)) >= 4
        n_to = max(k for k, _, _ in preds) * n_max if preds else n_max
        grid = _power_law_grid(pl, float(sizes.min()), n_to) if (fitted or preds) else None
        if grid is not None:
            n, err = grid
            ax.plot(n, err, ls="--", lw=1.4, color=COLORS["val"], alpha=0.9,
                    label="power-law fit a·n$^{-b}$ + c" + (" and its predictions" if preds
                                                          else " (measured sizes only)"))
            for k, e, pair in preds:
                if pair is not None:
                    ax.errorbar([k * n_max], [e], yerr=[[max(e - pair[0], 0.0)],
                                                        [max(pair[1] - e, 0.0)]],
                                fmt="none", ecolor=COLORS["val"], capsize=3, lw=1.1, zorder=4)
                ax.plot([k * n_max], [e], marker="D", ms=5, color=COLORS["val"],
                        mfc="white", zorder=5)
                text = f"{k}× data: {pct(e)}"
                if pair is not None:
                    text += f" [{pct(pair[0])}, {pct(pair[1])}]"
                ax.annotate(text, (k * n_max, e), textcoords="offset points",
                            xytext=(0, 8), ha="center", fontsize=8, color="#444444")
            if preds:
                ax.axvline(n_max, color="#888888", lw=0.8, ls=":")
        if target is not None and finite(target):
            ax.axhline(target, color="#2ca02c", lw=1.1, ls="-.",
                       label=f"target error {pct(target)}")
        ax.set_xscale("log")
        ticks = sorted(set(float(v) for v in sizes) | {k * n_max for k, _, _ in preds})
        ax.set_xticks(ticks)
        ax.set_xticks([], minor=True)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        lo_x, hi_x = min(ticks), max(ticks)
        ax.set_xlim(lo_x / 1.25, hi_x * 1.25)
        ax.set_xlabel("training images (log scale; ticks at the measured sizes"
                      + (" and the predictions)" if preds else ")"))
        ax.set_ylabel("error")
        ax.set_ylim(bottom=0, top=ax.get_ylim()[1] * 1.05)
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
        ax.legend(loc="upper right")
        _style(ax)
        return _svg(fig)


def _terms(decs: Sequence[Decomposition | None], loss: str, names: Sequence[str]
           ) -> dict[str, tuple]:
    """Per curve value: (value, lo, hi) arrays of each term of one loss (NaN where absent)."""
    out = {}
    for name in names:
        terms = [getattr(getattr(d, loss), name) if d is not None else None for d in decs]
        out[name] = (_floats([t.value if t else None for t in terms]),
                     _floats([t.ci95[0] if t else None for t in terms]),
                     _floats([t.ci95[1] if t else None for t in terms]))
    return out


def _errorbar_line(ax: Any, x: np.ndarray, triple: tuple, color: str, label: str,
                   ls: str = "-") -> None:
    v, lo, hi = triple
    if not np.isfinite(v).any():
        return
    yerr = np.vstack([np.where(np.isfinite(lo), v - lo, 0), np.where(np.isfinite(hi), hi - v, 0)])
    ax.errorbar(x, v, yerr=np.clip(yerr, 0, None), marker="o", ms=4, lw=1.5, ls=ls,
                color=color, capsize=3, label=label)


def complexity_curve(cc: ComplexityCurve) -> str | None:
    """Train/validation error vs the swept parameter; with a decomposition per value, also the
    0-1 bias / net variance / loss and the cross-entropy bias / variance / risk with their CIs."""
    values = list(cc.values)
    if not values:
        return None
    is_num = all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
    numeric = _floats(values) if is_num else np.array([], dtype=float)
    x = numeric if is_num else np.arange(len(values), dtype=float)
    log_x = is_num and (numeric > 0).all() and numeric.max() / numeric.min() >= 8
    decs = cc.decomposition
    decs = decs if decs and len(decs) == len(values) and any(decs) else None
    param = cc.param
    with matplotlib.rc_context(_RC):
        fig = _figure(_WIDE, 3.4)
        axes = _subplots(fig, 1, 3 if decs else 1)
        ax = axes[0]
        drew = _band(ax, x, cc.train_error, COLORS["train"], "train", dots=True)
        drew |= _band(ax, x, cc.val_error, COLORS["val"], "validation", dots=True)
        if not drew and not decs:
            return None
        ax.set_title("train / validation error")
        for v, style, label in ((cc.best_value, "--", "best"), (cc.reference_value, ":",
                                                               "reference")):
            if v is None:
                continue
            try:
                i = values.index(v)
            except ValueError:
                continue
            ax.axvline(x[i], color="#666666", lw=1, ls=style, label=f"{label}: {_short(v)}")
        ax.set_ylabel("error")
        panels = [ax]
        if decs:
            zo = _terms(decs, "zero_one", ("bias", "net_variance", "loss"))
            ce = _terms(decs, "cross_entropy", ("bias", "variance", "risk"))
            _errorbar_line(axes[1], x, zo["bias"], COLORS["bias"], "bias")
            _errorbar_line(axes[1], x, zo["net_variance"], COLORS["variance"], "net variance")
            _errorbar_line(axes[1], x, zo["loss"], COLORS["total"], "0-1 loss", ls="--")
            axes[1].set_title("0-1 loss = bias + net variance")
            _errorbar_line(axes[2], x, ce["bias"], COLORS["bias"], "bias")
            _errorbar_line(axes[2], x, ce["variance"], COLORS["variance"], "variance")
            _errorbar_line(axes[2], x, ce["risk"], COLORS["total"], "risk", ls="--")
            axes[2].set_title("cross-entropy = bias + variance")
            panels += [axes[1], axes[2]]
        for i, a in enumerate(panels):
            a.set_xlabel(param)
            if i < 2:  # error and 0-1 terms: a band of a 2-seed mean can dip below 0; cut there
                lo_y, hi_y = a.get_ylim()
                a.set_ylim(bottom=max(lo_y, 0.0) if i == 0 else lo_y, top=hi_y)
            if log_x:
                a.set_xscale("log")
                a.set_xticks(numeric)
                a.set_xticks([], minor=True)
                a.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            elif not is_num:
                a.set_xticks(x)
                a.set_xticklabels([_short(v, 10) for v in values])
            elif len(values) <= 12:  # ticks at the measured values
                a.set_xticks(numeric)
                a.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            if i < 2:
                a.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=1))
            a.legend(fontsize=7)
            _style(a)
        return _svg(fig)


def _stack(ax: Any, xpos: float, bottom_term: Term, top_term: Term, total_term: Term,
           labels: tuple[str, str, str], width: float = 0.55) -> None:
    """One stacked bar: bottom + top (top may be negative: drawn hatched, downwards) with the
    95% CI of the bottom term at its top and of the total at the stack's top."""
    b, t, tot = bottom_term.value, top_term.value, total_term.value
    if not finite(b):
        return
    ax.bar(xpos, b, width, color=COLORS["bias"], label=labels[0])
    if finite(t):
        ax.bar(xpos, t, width, bottom=b, color=COLORS["variance"], label=labels[1],
               hatch="//" if t < 0 else None, edgecolor="white" if t < 0 else None, lw=0)
    for term, dx, label in ((bottom_term, -width / 4, None), (total_term, width / 4, "95% CI")):
        val, (lo, hi) = term.value, term.ci95
        if not (finite(val) and finite(lo) and finite(hi)):
            continue
        yerr = [[max(val - lo, 0.0)], [max(hi - val, 0.0)]]
        ax.errorbar([xpos + dx], [val], yerr=yerr, fmt="none", ecolor=COLORS["total"],
                    capsize=4, lw=1.1, label=label)
    if finite(tot):
        ax.plot([xpos - width / 2, xpos + width / 2], [tot, tot], color=COLORS["total"], lw=1.6,
                label=labels[2])


def decomposition_overall(dec: Decomposition) -> str | None:
    """Stacked bars with 95% CIs: bias + net variance = 0-1 loss, bias² + variance = squared
    error, bias + variance = cross-entropy; beside them the ensemble's error / cross-entropy."""
    specs = [("zero_one", ("bias", "net_variance", "loss"),
              ("bias", "net variance", "0-1 loss"), "0-1 loss", "error"),
             ("mse", ("bias2", "variance", "risk"),
              ("bias²", "variance", "squared error"), "squared error of probabilities", None),
             ("cross_entropy", ("bias", "variance", "risk"),
              ("bias", "variance", "cross-entropy"), "cross-entropy (nats)", "cross_entropy")]
    ens = dec.ensemble
    with matplotlib.rc_context(_RC):
        fig = _figure(_WIDE, 3.9)
        axes = _subplots(fig, 1, len(specs))
        for ax, (loss, keys, labels, title, ens_key) in zip(axes, specs):
            block = getattr(dec, loss)
            terms = [getattr(block, k) for k in keys]
            _stack(ax, 0.0, *terms, labels)
            ticks, names = [0.0], ["one model\n(average of R)"]
            fmt = pct if loss == "zero_one" else num
            e = getattr(ens, ens_key) if ens is not None and ens_key else None
            if finite(e):
                ax.bar(1.0, e, 0.55, color=COLORS["ensemble"], label="ensemble of the R models")
                ax.annotate(fmt(e), (1.0, e),
                            textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
                ticks.append(1.0)
                names.append("ensemble")
            tot = terms[2].value
            if finite(tot):
                ax.annotate(fmt(tot), (-0.3, tot), textcoords="offset points", xytext=(-3, 0),
                            va="center", ha="right", fontsize=8)
            ax.set_xticks(ticks)
            ax.set_xticklabels(names)
            ax.set_xlim(-0.75, 1.6 if len(ticks) > 1 else 0.75)
            ax.set_title(title)
            ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]), top=ax.get_ylim()[1] * 1.08)
            if loss == "zero_one":
                ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=1))
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
            _style(ax)
            ax.grid(False, axis="x")
        return _svg(fig)


def decomposition_per_class(per_class: Mapping[str, ClassDecomposition],
                            order: Sequence[str] | None = None) -> str | None:
    """Per class stacked bars: bias + net variance (0-1) and bias + variance (cross-entropy)."""
    if not per_class:
        return None
    names = [c for c in (order or []) if c in per_class] + \
        [c for c in per_class if c not in set(order or [])]
    specs = [("zero_one", "bias", "net_variance", "loss", "0-1 loss = bias + net variance"),
             ("cross_entropy", "bias", "variance", "risk", "cross-entropy = bias + variance")]
    k = len(names)
    rotate = 0 if k <= 10 and max(len(_short(n, 12)) for n in names) <= 6 else 45
    with matplotlib.rc_context(_RC):
        fig = _figure(_WIDE, 3.4 if rotate == 0 else 3.9)
        axes = _subplots(fig, 1, 2)
        x = np.arange(k, dtype=float)
        drew = False
        for ax, (loss, lo_key, hi_key, tot_key, title) in zip(axes, specs):
            def col(key: str) -> np.ndarray:
                return _floats([getattr(per_class[n], loss).get(key) for n in names])
            low, high, tot = col(lo_key), col(hi_key), col(tot_key)
            if not np.isfinite(low).any():
                continue
            drew = True
            ax.bar(x, np.nan_to_num(low), 0.7, color=COLORS["bias"], label="bias")
            high0, low0 = np.nan_to_num(high), np.nan_to_num(low)
            vlabel = "net variance" if loss == "zero_one" else "variance"
            ax.bar(x, np.where(high0 > 0, high0, 0), 0.7, bottom=low0,
                   color=COLORS["variance"], label=vlabel)
            if (high0 < 0).any():  # negative net variance: hatched, downwards from the bias
                ax.bar(x, np.where(high0 < 0, high0, 0), 0.7, bottom=low0, lw=0,
                       color=COLORS["variance"], hatch="//", edgecolor="white",
                       label=f"{vlabel} < 0")
            if np.isfinite(tot).any():
                ax.scatter(x, tot, marker="_", s=160, color=COLORS["total"], zorder=5,
                           label="loss" if loss == "zero_one" else "risk")
            # the axis holds the tallest stack, bias or loss (a negative net variance is drawn
            # downwards from the bias, so the bias itself can be the top)
            top = np.nanmax(np.concatenate([low0, low0 + np.maximum(high0, 0), tot[np.isfinite(tot)]]))
            bottom = min(0.0, float(np.nanmin(low0 + np.minimum(high0, 0))))
            ax.set_ylim(bottom, max(float(top), 1e-9) * 1.08)
            ax.set_xticks(x)
            ax.set_xticklabels([_short(n, 12) for n in names], rotation=rotate,
                               ha="right" if rotate else "center")
            ax.set_title(title)
            if loss == "zero_one":
                ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
            ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.08), ncol=4)
            _style(ax)
            ax.grid(False, axis="x")
        return _svg(fig) if drew else None


def confusion_matrix(cm: Any, classes: Sequence[str]) -> str | None:
    """Heatmap of a K×K confusion matrix (rows = true, columns = predicted): colour = share of
    the row (so small classes show), text = counts (when K ≤ 25)."""
    try:
        m = np.asarray(cm, dtype=float)
    except (TypeError, ValueError):
        return None
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0 or not np.isfinite(m).all():
        return None
    k = m.shape[0]
    names = list(classes) if len(classes) == k else [str(i) for i in range(k)]
    rows = m.sum(1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    side = float(np.clip(0.42 * k + 1.6, 4.0, 9.0))
    with matplotlib.rc_context(_RC):
        fig = _figure(side + 0.9, side)
        ax = _subplots(fig, 1, 1)[0]
        # vector cells (an image would be embedded as a bitmap in the SVG)
        im = ax.pcolormesh(np.arange(k + 1) - 0.5, np.arange(k + 1) - 0.5, share, cmap="Blues",
                           vmin=0, vmax=1, edgecolors="white", linewidth=0.5)
        ax.set_xlim(-0.5, k - 0.5)
        ax.set_ylim(k - 0.5, -0.5)
        ax.set_aspect("equal")
        ax.grid(False)
        if k <= 25:
            fs = 8 if k <= 12 else 6
            for i in range(k):
                for j in range(k):
                    if m[i, j] == 0 and i != j:
                        continue
                    ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=fs,
                            color="white" if share[i, j] > 0.55 else "#222222")
        labels = [_short(n, 14) for n in names]
        step = 1 if k <= 40 else int(math.ceil(k / 40))
        ax.set_xticks(range(0, k, step))
        ax.set_yticks(range(0, k, step))
        ax.set_xticklabels(labels[::step], rotation=45, ha="right")
        ax.set_yticklabels(labels[::step])
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        cb = fig.colorbar(im, ax=ax, shrink=0.8)
        if cb.solids is not None:  # matplotlib rasterises a smooth colour bar: keep it vector
            cb.solids.set_rasterized(False)
            cb.solids.set_edgecolor("face")  # no hairline gaps between its cells
        cb.set_label("share of the true class's images")
        cb.ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
        return _svg(fig)
