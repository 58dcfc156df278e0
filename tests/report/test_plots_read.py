"""The report's plots read well at any size and say what they show: inline SVG, not bitmaps; the
learning curve's band spans the seeds (min–max), the target error is a line, the x axis is ticked
at the measured sizes and the power law is drawn only as far as it is supported; no bar is cut
off at the top of its axes; the training curves say what their "train" line is and show the
per-step loss and the learning rate; every plotted value is in a table under its plot.

Geometry is checked on the matplotlib figure each plot function draws (captured in place of its
SVG), against values computed here from the inputs; the page is checked in Chromium's DOM.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from biasvar.analysis._results import (Band, ClassDecomposition, LearningCurve, PowerLaw,
                                       Results)
from biasvar.report import _plots as plots
from biasvar.report import render_report

from ._chromium import dump_dom
from .test_report import FIXTURE

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(FIXTURE, dst)
    return dst


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list:
    """Each figure a plot function finishes, instead of its SVG text."""
    seen: list = []

    def capture(fig):  # noqa: ANN001, ANN202
        seen.append(fig)
        return "<svg></svg>"

    monkeypatch.setattr(plots, "_svg", capture)
    return seen


def _lc(values: list[list[float]], sizes: list[int], pl: PowerLaw | None = None) -> LearningCurve:
    """A learning curve whose Band.lo/hi (a 95 % t-interval, as the analysis saves it) differ
    from the seeds' range, so a band drawn from lo/hi cannot pass for min–max."""
    mean = [float(np.mean(v)) for v in values]
    lo = [m - 0.05 for m in mean]
    hi = [m + 0.05 for m in mean]
    band = Band(mean=mean, lo=lo, hi=hi, values=values)
    train = Band(mean=[m / 2 for m in mean], lo=[m / 2 - 0.01 for m in mean],
                 hi=[m / 2 + 0.01 for m in mean], values=[[x / 2 for x in v] for v in values])
    return LearningCurve(sizes=sizes, seeds=[0, 1, 2], train_error=train, val_error=band,
                         power_law=pl)


SIZES = [100, 200, 400, 800]
VALUES = [[0.30, 0.22, 0.26], [0.20, 0.17, 0.18], [0.14, 0.13, 0.12], [0.10, 0.11, 0.09]]


def _fill_range(collection, x: float) -> tuple[float, float]:  # noqa: ANN001
    """The y extent of a fill_between polygon at x (its vertices at that x)."""
    v = collection.get_paths()[0].vertices
    ys = v[np.isclose(v[:, 0], x), 1]
    return float(ys.min()), float(ys.max())


def test_learning_curve_band_spans_the_seeds_and_target_is_a_line(figures: list) -> None:
    plots.learning_curve(_lc(VALUES, SIZES), target=0.05)
    ax = figures[-1].axes[0]
    fills = ax.collections
    val_fill = [c for c in fills if type(c).__name__ in ("PolyCollection", "FillBetweenPolyCollection")]
    assert len(val_fill) == 2, "a band for train and one for validation"
    # the validation band (drawn second) spans each size's lowest to highest seed
    for x, vals in zip(SIZES, VALUES):
        lo, hi = _fill_range(val_fill[1], x)
        assert lo == pytest.approx(min(vals)) and hi == pytest.approx(max(vals))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("min–max" in t for t in labels), labels
    assert not any("95% CI" in t for t in labels)
    assert "target error 5.0%" in labels
    target = [ln for ln in ax.get_lines() if np.allclose(ln.get_ydata(), 0.05)]
    assert target, "the target error is drawn as a horizontal line"
    # every seed is a dot
    dots = np.concatenate([c.get_offsets() for c in fills if type(c).__name__ == "PathCollection"])
    assert len(dots) == 2 * sum(len(v) for v in VALUES)


def test_learning_curve_ticks_the_measured_sizes(figures: list) -> None:
    plots.learning_curve(_lc(VALUES, SIZES))
    ax = figures[-1].axes[0]
    assert sorted(ax.get_xticks()) == SIZES
    assert [t.get_text() for t in ax.get_xticklabels()] == ["100", "200", "400", "800"]


def _power_law(**kw: object) -> PowerLaw:
    base = dict(ok=True, a=3.0, b=0.5, c=0.05, n_max=800, err_at_n_max=0.156, err_2x=0.125,
                err_10x=0.083, gain_2x=0.03, err_2x_ci=[0.11, 0.14], err_10x_ci=[0.06, 0.1],
                extrapolates=True)
    base.update(kw)
    return PowerLaw(**base)


def _max_line_x(ax) -> float:  # noqa: ANN001
    return max(float(np.max(ln.get_xdata())) for ln in ax.get_lines()
               if len(ln.get_xdata()) and ln.get_linestyle() == "--")


def test_extrapolation_is_drawn_only_as_far_as_the_fit_supports(figures: list) -> None:
    # extrapolates: the fit reaches its 10x prediction, with the predictions ticked
    plots.learning_curve(_lc(VALUES, SIZES, _power_law()))
    ax = figures[-1].axes[0]
    assert _max_line_x(ax) == pytest.approx(8000)
    assert {1600, 8000} <= set(ax.get_xticks())
    # refused extrapolation (poor fit): the fitted line stops at the largest measured size and
    # no prediction is drawn
    plots.learning_curve(_lc(VALUES, SIZES, _power_law(extrapolates=False, err_2x=None,
                                                       err_10x=None, gain_2x=None)))
    ax = figures[-1].axes[0]
    assert _max_line_x(ax) == pytest.approx(800)
    assert not [t for t in ax.texts if "data:" in t.get_text()]
    # 3 sizes for 3 parameters: the fit passes through the points; no line is drawn at all
    plots.learning_curve(_lc(VALUES[1:], SIZES[1:], _power_law(extrapolates=False, err_2x=None,
                                                               err_10x=None, gain_2x=None)))
    ax = figures[-1].axes[0]
    assert not [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]


MSE = {"bias2": 0.1, "variance": 0.01, "risk": 0.11}


def test_no_per_class_bar_is_cut_off_at_the_top(figures: list) -> None:
    """The tallest class has a negative net variance (drawn downwards from its bias), the case
    whose bias bar touched the frame."""
    per_class = {
        "T-shirt": ClassDecomposition(n=100, zero_one={"bias": 0.10, "net_variance": 0.03,
                                                       "loss": 0.13},
                                      cross_entropy={"bias": 0.36, "variance": 0.03,
                                                     "risk": 0.39}, mse=MSE),
        "Shirt": ClassDecomposition(n=100, zero_one={"bias": 0.35, "net_variance": -0.04,
                                                     "loss": 0.31},
                                    cross_entropy={"bias": 0.70, "variance": 0.04, "risk": 0.74},
                                    mse=MSE),
        "Bag": ClassDecomposition(n=100, zero_one={"bias": 0.02, "net_variance": 0.01,
                                                   "loss": 0.03},
                                  cross_entropy={"bias": 0.07, "variance": 0.01, "risk": 0.08},
                                  mse=MSE),
    }
    plots.decomposition_per_class(per_class)
    fig = figures[-1]
    for ax, loss in zip(fig.axes, ("zero_one", "cross_entropy")):
        tops = []
        for c in per_class.values():
            terms = getattr(c, loss)
            low = terms["bias"]
            high = terms.get("net_variance", terms.get("variance"))
            tops += [low, low + max(high, 0), terms.get("loss", terms.get("risk"))]
        top = max(tops)
        assert ax.get_ylim()[1] >= top * 1.03, (loss, ax.get_ylim(), top)
        for patch in ax.patches:  # and every bar lies inside the axes
            y0, y1 = sorted((patch.get_y(), patch.get_y() + patch.get_height()))
            assert ax.get_ylim()[0] <= y0 and y1 < ax.get_ylim()[1]


def test_training_curves_say_what_train_is_and_show_steps_and_lr(figures: list) -> None:
    epochs = np.array([1, 2, 3])
    columns = {"train_loss": np.array([0.9, 0.5, 0.4]), "val_loss": np.array([0.6, 0.5, 0.45]),
               "train_accuracy": np.array([0.7, 0.8, 0.85]),
               "val_accuracy": np.array([0.78, 0.82, 0.84])}
    # 10 steps per epoch, one window per 2 steps; a step schedule halving every epoch
    step = np.arange(2, 31, 2)
    epoch = (step - 1) // 10 + 1
    lr = 0.1 * 0.5 ** (epoch - 1)
    loss = 1.0 / step
    plots.training_curves(epochs, columns, {"step": step, "epoch": epoch, "loss": loss, "lr": lr})
    fig = figures[-1]
    loss_ax, acc_ax, lr_ax = fig.axes
    labels = [t.get_text() for t in loss_ax.get_legend().get_texts()]
    assert any("running mean" in t and "train mode" in t for t in labels), labels
    assert any("after the epoch" in t and "eval mode" in t for t in labels), labels
    per_step = [ln for ln in loss_ax.get_lines() if len(ln.get_xdata()) == len(step)]
    assert per_step, "the per-step loss is drawn"
    # steps sit at step / steps-per-epoch on the epoch axis
    assert np.allclose(per_step[0].get_xdata(), step / 10)
    assert np.allclose(per_step[0].get_ydata(), loss)
    assert "learning rate" in lr_ax.get_title()
    assert np.allclose(lr_ax.get_lines()[0].get_ydata(), lr)


def _svgs(html: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", html, flags=re.S)


def test_every_plot_is_inline_vector_svg(run_dir: Path) -> None:
    html = render_report(run_dir).read_text(encoding="utf-8")
    # no figure is a bitmap: the only <img> left are the gallery's images
    for tag in re.findall(r"<img\b[^>]*>", html):
        assert 'class="plot' not in tag
    svgs = _svgs(html)
    sections = re.findall(r'<section id="([a-z]+)"[^>]*>(.*?)</section>', html, flags=re.S)
    with_plots = {sid for sid, body in sections if "<svg" in body}
    assert {"training", "learning", "complexity", "decomposition", "confusion"} <= with_plots
    for svg in svgs:
        assert "<image" not in svg, "an embedded bitmap inside a plot"
        assert "viewBox" in svg and "<text" in svg  # scalable, and its text is text
    assert "http:" not in html and "https:" not in html


def test_chromium_reads_the_plots_values(run_dir: Path) -> None:
    """In Chromium's DOM: the learning curve's tick labels are the measured sizes, and the
    tables under the training and complexity plots hold the saved values."""
    results = json.loads((run_dir / "results.json").read_text())
    dom = dump_dom(render_report(run_dir))
    learning = re.search(r'<section id="learning".*?</section>', dom, flags=re.S).group(0)
    svg_text = re.findall(r"<text\b[^>]*>([^<]*)</text>", learning)
    for n in results["learning_curve"]["sizes"]:
        assert f"{n:,}" in svg_text, (n, svg_text)
    assert any(t.startswith("target error") for t in svg_text)

    training = re.search(r'<section id="training".*?</section>', dom, flags=re.S).group(0)
    rows = re.findall(r"<tr><td class=\"num\">(\d+)</td><td class=\"num\">([\d.]+)</td>",
                      training)
    history = (run_dir / "history.csv").read_text().splitlines()[1:]
    expect = [(str(int(float(line.split(",")[0]))), f"{float(line.split(',')[1]):.3f}")
              for line in history]
    assert rows == expect

    cc = results["complexity_curve"]
    complexity = re.search(r'<section id="complexity".*?</section>', dom, flags=re.S).group(0)
    table = re.search(r"<table>.*?</table>", complexity, flags=re.S).group(0)
    for i, v in enumerate(cc["values"]):
        mean = cc["val_error"]["mean"][i]
        assert f"{100 * mean:.2f}%" in table, (v, mean)


def test_profile_note_is_among_the_report_caveats(run_dir: Path) -> None:
    results = json.loads((run_dir / "results.json").read_text())
    results["profile"], results["profile_note"] = "quick", "quick budget: 4 fits <b>only</b>"
    (run_dir / "results.json").write_text(json.dumps(results))
    html = render_report(run_dir).read_text(encoding="utf-8")
    caveats = re.search(r'<ul class="caveats">(.*?)</ul>', html, flags=re.S).group(1)
    assert "Profile quick: quick budget: 4 fits &lt;b&gt;only&lt;/b&gt;" in caveats


def test_chromium_shows_the_confused_classes_in_the_verdict(run_dir: Path) -> None:
    """The verdict's evidence names the classes the test errors are confusions between (here
    the Fashion-MNIST matrix of the default CNN on the fixture's ten classes)."""
    from biasvar.analysis.verdict import verdict

    from ..analysis.test_verdict import FM_CLASSES, FM_CM

    results = json.loads((run_dir / "results.json").read_text())
    results["classes"] = FM_CLASSES
    results["reference"]["test"]["confusion_matrix"] = FM_CM
    results["verdict"] = verdict(Results.from_dict(results)).to_dict()
    (run_dir / "results.json").write_text(json.dumps(results))
    dom = dump_dom(render_report(run_dir))
    section = re.search(r'<section id="verdict".*?</section>', dom, flags=re.S).group(0)
    evidence = re.search(r"<h3>Evidence</h3><ul>(.*?)</ul>", section, flags=re.S).group(1)
    assert "T-shirt/top ↔ Shirt 206 (21.9%)" in evidence
    assert "confusions among T-shirt/top, Pullover, Coat and Shirt" in evidence
