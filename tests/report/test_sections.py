"""The report's newer blocks, rendered from results built here: the noise floor (with its gallery of
suspected mislabelled training images and suspects.csv), every fit of the learning curve with
its training budget, ragged seeds per size, and the power law's intervals — or its refusal to
extrapolate. Old results.json files without these keys keep rendering (test_report.py's fixture
has none of them).
"""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from biasvar.analysis._results import LearningCurve, NoiseFloor, Results, Suspect
from biasvar.analysis.noise import noise_target
from biasvar.report import render_fragment, render_report

from ._chromium import dump_dom, require_chromium, screenshot
from .test_report import EVIL_CLASS, FIXTURE, by_id, parse

SUSPECT_FILES = ["cats/img_0001.png", "dogs/<b>odd</b> name.png", None, "#17"]


def _noise_floor(csv: str | None = "suspects.csv") -> dict:
    suspects = [{"row": 12 + i, "given": str(i), "predicted": str((i + 3) % 10),
                 "quality": 0.01 * (i + 1), "file": f} for i, f in enumerate(SUSPECT_FILES)]
    return NoiseFloor(rate=0.0231, lo=0.0182, hi=0.0293, n=1294,
                      method="confident learning: the share of images cleanlab flags as label "
                      "issues on cross-fitted predictions of 2 models",
                      interval="95 % percentile bootstrap over the 1,294 training images, 200 "
                      "resamples (the models are not retrained)", n_issues=30,
                      suspects=[Suspect(**s) for s in suspects], csv=csv).to_dict()


def _suspects_json(run_dir: Path) -> list[dict]:
    """suspects.json from the fixture's real digit thumbnails (as suspect_gallery writes it)."""
    pngs = [g["image_png_b64"] for g in json.loads((run_dir / "gallery.json").read_text())]
    nf = _noise_floor()
    return [dict(s, image_png_b64=pngs[i % len(pngs)]) for i, s in enumerate(nf["suspects"])]


@pytest.fixture(autouse=True)
def _only_the_plots_under_test(request: pytest.FixtureRequest,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The figures these tests do not look at are left out (their sections with them): a page
    renders in a second instead of five. The browser test draws the whole page, and the tests
    of the plots draw them."""
    if "chromium" in request.node.name or "draw" in request.node.name:
        return
    from biasvar.report import _plots

    for name in ("training_curves", "complexity_curve", "decomposition_overall",
                 "decomposition_per_class", "confusion_matrix"):
        monkeypatch.setattr(_plots, name, lambda *a, **k: None)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    dst = tmp_path / "diagnose-custom-cnn-0f1e2d3c"
    shutil.copytree(FIXTURE, dst)
    return dst


@pytest.fixture
def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def _write(run_dir: Path, results: dict) -> None:
    (run_dir / "results.json").write_text(json.dumps(results))


def _with_noise(run_dir: Path, results: dict, *, target: bool = True) -> dict:
    nf = _noise_floor()
    results["noise_floor"] = nf
    if target:
        results["target_error"] = noise_target(NoiseFloor.from_dict(nf)).to_dict()
        results["avoidable_bias"] = results["reference"]["train"]["error"] - nf["rate"]
    _write(run_dir, results)
    (run_dir / "suspects.json").write_text(json.dumps(_suspects_json(run_dir)))
    (run_dir / "suspects.csv").write_text("row,file,given,predicted,quality\n12,,0,3,0.01\n")
    return results


def _text(run_dir: Path) -> str:
    text = render_report(run_dir).read_text(encoding="utf-8")
    assert "could not be drawn" not in text
    assert "http://" not in text and "https://" not in text
    return text


def _section(text: str, sid: str) -> tuple[dict, list[dict]]:
    """The section ``sid`` and the elements inside it."""
    els = parse(text)
    return by_id(els, sid)[0], [e for e in els if sid in e["within"]]


# ----------------------------------------------------------------------------- noise floor

def test_noise_floor_section_shows_rate_interval_method_and_target(run_dir: Path,
                                                                   results: dict) -> None:
    _with_noise(run_dir, results)
    text = _text(run_dir)
    section, inside = _section(text, "noise")
    t = section["text"]
    assert "2.3%" in t and "1.8%" in t and "2.9%" in t  # the rate and its 95 % interval
    assert "1,294 training labels" in t and "bootstrap over the 1,294 training images" in t
    assert "cross-fitted predictions of 2 models" in t  # the method, as saved
    assert "target error" in t and "train error − 2.31%" in t  # used as the target: says so
    # the key figures say where the target came from
    figures = by_id(parse(text), "figures")[0]["text"]
    assert "estimated noise floor" in figures and "best known" not in figures
    assert "estimated label-noise rate of the training labels" in figures
    # the nav links to it, after the key figures
    nav = [e["attrs"]["href"] for e in parse(text) if e["tag"] == "a"
           and e["attrs"].get("href", "").startswith("#")]
    assert nav.index("#noise") == nav.index("#figures") + 1


def test_noise_floor_gallery_names_files_and_links_the_csv(run_dir: Path, results: dict) -> None:
    _with_noise(run_dir, results)
    text = _text(run_dir)
    _, inside = _section(text, "noise")
    caps = [e["text"] for e in inside if e["tag"] == "figcaption"]
    assert len(caps) == len(SUSPECT_FILES)
    for cap, i, f in zip(caps, range(len(caps)), SUSPECT_FILES):
        assert f"given: {i} → {(i + 3) % 10}" in cap and f"row {12 + i}" in cap
        assert (f in cap) if f else ("png" not in cap and "#" not in cap)
    assert "<b>odd</b>" not in text  # file names are escaped, read as text
    imgs = [e for e in inside if e["tag"] == "img"]
    assert len(imgs) == len(SUSPECT_FILES)
    assert all(e["attrs"]["src"].startswith("data:image/png;base64,") for e in imgs)
    links = [e for e in inside if e["tag"] == "a"]
    assert [e["attrs"]["href"] for e in links] == ["suspects.csv"]
    assert "all 30 flagged images" in by_id(parse(text), "noise")[0]["text"]
    # the page's list of files read includes suspects.json
    assert "suspects.json" in by_id(parse(text), "run")[0]["text"]


def test_noise_floor_not_used_as_target_says_so(run_dir: Path, results: dict) -> None:
    _with_noise(run_dir, results, target=False)
    text = _text(run_dir)
    t = by_id(parse(text), "noise")[0]["text"]
    assert "Not used as the target error" in t and "1.00%" in t  # the digits target stays
    assert "best known for this task" in by_id(parse(text), "figures")[0]["text"]


def test_noise_floor_without_suspects_json_lists_them_as_a_table(run_dir: Path,
                                                                  results: dict) -> None:
    _with_noise(run_dir, results)
    (run_dir / "suspects.json").write_text("{damaged")
    text = _text(run_dir)
    _, inside = _section(text, "noise")
    assert not [e for e in inside if e["tag"] == "figcaption"]
    rows = [e["text"] for e in inside if e["tag"] == "tr"]
    assert len(rows) == len(SUSPECT_FILES) + 1
    assert rows[1] == "12cats/img_0001.png030.010"
    assert "suspects.json" in text  # the damaged file is named in a notice


def test_unsafe_csv_name_is_shown_not_linked(run_dir: Path, results: dict) -> None:
    _with_noise(run_dir, results)
    results["noise_floor"]["csv"] = "javascript:alert(1)//x.csv"
    _write(run_dir, results)
    text = _text(run_dir)
    _, inside = _section(text, "noise")
    assert not [e for e in inside if e["tag"] == "a"]
    assert "javascript:alert(1)//x.csv" in " ".join(e["text"] for e in inside)


def test_noise_floor_escapes_class_names(run_dir: Path, results: dict) -> None:
    _with_noise(run_dir, results)
    sj = json.loads((run_dir / "suspects.json").read_text())
    sj[0]["given"] = EVIL_CLASS
    (run_dir / "suspects.json").write_text(json.dumps(sj))
    text = _text(run_dir)
    assert EVIL_CLASS not in text and "<script" not in text
    _, inside = _section(text, "noise")
    assert EVIL_CLASS in [e for e in inside if e["tag"] == "figcaption"][0]["text"]


def test_fragment_without_a_run_directory_shows_the_noise_floor() -> None:
    d = json.loads((FIXTURE / "results.json").read_text())
    d["noise_floor"] = _noise_floor()
    r = Results.from_dict(d)
    text = render_fragment(r)
    els = parse(text)
    sec = [i for i, e in enumerate(els) if e["tag"] == "section"
           and e["attrs"].get("class") == "noise"]
    assert sec and "2.3%" in els[sec[0]]["text"]
    assert "suspects.csv" in els[sec[0]]["text"]
    assert not [e for e in els if e["tag"] == "a"]  # no link: the notebook is elsewhere


def test_old_results_have_no_new_sections(run_dir: Path, results: dict) -> None:
    """The fixture was written before the noise floor, curve points and power-law intervals."""
    assert "noise_floor" not in results and "points" not in results["learning_curve"]
    assert "extrapolates" not in results["learning_curve"]["power_law"]
    text = _text(run_dir)
    assert 'id="noise"' not in text and "Every fit" not in text
    learning = by_id(parse(text), "learning")[0]["text"]
    assert "with 2× the data" in learning and "3 seeds per size" in learning


# ----------------------------------------------------------------------------- learning curve

def _ragged_curve(results: dict) -> dict:
    """The fixture's curve with the largest size fitted by 2 seeds instead of 3, every fit listed
    with its budget, and a policy."""
    lc = copy.deepcopy(results["learning_curve"])
    for band in ("train_error", "val_error"):
        lc[band]["values"][-1] = lc[band]["values"][-1][:2]
        vals = lc[band]["values"][-1]
        lc[band]["mean"][-1] = float(np.mean(vals))
    points = []
    for i, size in enumerate(lc["sizes"]):
        for j, seed in enumerate(lc["seeds"][: len(lc["val_error"]["values"][i])]):
            steps = 600
            points.append({"size": size, "seed": seed,
                           "train_error": lc["train_error"]["values"][i][j],
                           "val_error": lc["val_error"]["values"][i][j], "steps": steps,
                           "epochs": max(1, steps * 128 // size), "stopped_early": size == 80,
                           "fit": f"k{i}{j}abcdef"})
    lc["points"] = points
    lc["policy"] = ("every size trains 600 optimizer steps (the full-size fit's budget); "
                    "a 1/16 subset trains 16× the epochs, its schedule stretched to match")
    return lc


def test_points_table_and_policy_under_the_plot(run_dir: Path, results: dict) -> None:
    results["learning_curve"] = _ragged_curve(results)
    _write(run_dir, results)
    text = _text(run_dir)
    section, inside = _section(text, "learning")
    assert "2–3 seeds per size" in section["text"]
    assert "600 optimizer steps" in section["text"]  # the policy
    tables = [e for e in inside if e["tag"] == "table"]
    assert tables and tables[-1]["attrs"].get("class") == "points"
    rows = [e["text"] for e in inside if e["tag"] == "tr"]
    points = results["learning_curve"]["points"]
    assert len(rows) == len(points) + 1
    assert rows[0] == ("sizeseedoptimizer stepsepochsstopped earlytrain errorvalidation "
                       "errorfit")
    p = points[0]
    assert rows[1] == (f"{p['size']}{p['seed']}600{p['epochs']:,}yes{100 * p['train_error']:.2f}%"
                       f"{100 * p['val_error']:.2f}%{p['fit']}")
    assert sum(r.startswith("1,294") for r in rows) == 2  # the ragged size: 2 fits
    # the plot is after the heading and before the table
    kinds = [e["tag"] for e in inside if e["tag"] in ("svg", "table")]
    assert kinds[0] == "svg"


def test_many_points_fold_into_details(run_dir: Path, results: dict) -> None:
    lc = _ragged_curve(results)
    lc["points"] = lc["points"] * 3
    results["learning_curve"] = lc
    _write(run_dir, results)
    _, inside = _section(_text(run_dir), "learning")
    assert any(e["tag"] == "details" for e in inside)


def test_ragged_values_draw_in_both_curves() -> None:
    """Sizes (and complexity values) with different numbers of seeds: the plots take the saved
    bands and put every seed's value as a dot."""
    from biasvar.analysis._results import ComplexityCurve
    from biasvar.report import _plots

    d = json.loads((FIXTURE / "results.json").read_text())
    lc = LearningCurve.from_dict(_ragged_curve(d))
    assert [len(v) for v in lc.val_error.values] == [3, 3, 3, 3, 2]
    assert _plots.learning_curve(lc)
    xs, ys = _plots._seed_dots(lc.val_error.values, np.asarray(lc.sizes, dtype=float))
    assert xs.size == ys.size == 14 and xs[-1] == 1294
    cc = d["complexity_curve"]
    cc["val_error"]["values"][0] = cc["val_error"]["values"][0][:1]
    assert _plots.complexity_curve(ComplexityCurve.from_dict(cc))


# ----------------------------------------------------------------------------- power law

def test_power_law_predictions_with_intervals(run_dir: Path, results: dict) -> None:
    pl = results["learning_curve"]["power_law"]
    pl.update(err_2x_ci=[pl["err_2x"] - 0.004, pl["err_2x"] + 0.005],
              err_10x_ci=[pl["err_10x"] - 0.009, pl["err_10x"] + 0.011],
              gain_2x_ci=[0.001, 0.012], resamples=200, extrapolates=True)
    _write(run_dir, results)
    t = by_id(parse(_text(run_dir)), "learning")[0]["text"]
    lo, hi = pl["err_2x_ci"]
    assert f"{100 * pl['err_2x']:.2f}% [{100 * lo:.2f}%, {100 * hi:.2f}%]" in t
    lo, hi = pl["err_10x_ci"]
    assert f"{100 * pl['err_10x']:.2f}% [{100 * lo:.2f}%, {100 * hi:.2f}%]" in t
    assert "[0.10, 1.20]" in t  # the gain's interval, in points
    assert "200 resamples of the seeds" in t and "its predictions at more data" in t


def test_power_law_that_does_not_extrapolate_says_why(run_dir: Path, results: dict) -> None:
    from biasvar.report import _plots

    pl = results["learning_curve"]["power_law"]
    pl.update(err_2x=None, err_10x=None, gain_2x=None, err_2x_ci=None, err_10x_ci=None,
              gain_2x_ci=None, resamples=200, extrapolates=False,
              note="the asymptote c sits at its bound 0: the sizes measured do not pin it down")
    _write(run_dir, results)
    t = by_id(parse(_text(run_dir)), "learning")[0]["text"]
    assert "No extrapolation" in t and "the asymptote c sits at its bound 0" in t
    assert "with 2× the data" not in t and "Predicted" not in t
    assert "drawn over the measured sizes only" in t
    # the fit is drawn up to the largest size, not beyond (the figure itself: test_plots_read)
    p = LearningCurve.from_dict(results["learning_curve"]).power_law
    n, _ = _plots._power_law_grid(p, 80.0, float(p.n_max))
    assert n.max() == pytest.approx(p.n_max)


# ----------------------------------------------------------------------------- in a browser

def test_chromium_shows_the_noise_floor_and_every_fit(run_dir: Path, results: dict,
                                                      tmp_path: Path) -> None:
    require_chromium()
    from PIL import Image

    results["learning_curve"] = _ragged_curve(results)
    _with_noise(run_dir, results)
    page = render_report(run_dir)
    els = parse(dump_dom(page))
    noise = by_id(els, "noise")
    assert len(noise) == 1 and "2.3%" in noise[0]["text"]
    caps = [e for e in els if e["tag"] == "figcaption" and "noise" in e["within"]]
    assert len(caps) == len(SUSPECT_FILES)
    assert len([e for e in els if e["tag"] == "tr" and "learning" in e["within"]]) == \
        len(results["learning_curve"]["points"]) + 1
    # the noise section comes right after the key figures: in view of a tall window
    png = screenshot(page, tmp_path / "shot.png", height=1800)
    img = np.asarray(Image.open(png).convert("RGB"))
    band = img[900:1800].reshape(-1, 3)
    colours, counts = np.unique(band, axis=0, return_counts=True)
    assert 1 - counts.max() / len(band) >= 0.02  # not blank below the fold
