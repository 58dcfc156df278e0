"""The HTML report: rendered by a real browser, offline, escaped, tolerant of absent data, and
cheap (no torch, no training).

The fixture ``fixtures/report_run`` is a diagnose run directory "from another machine" (its
numbers were produced by biasvar's own functions; gallery images are real scikit-learn digits).
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from biasvar.report import load_run, render_report

from ..conftest import run_cli
from ._chromium import dump_dom, find_chromium, require_chromium, screenshot

FIXTURE = Path(__file__).parent / "fixtures" / "report_run"
SRC = Path(__file__).resolve().parents[2] / "src"
EVIL_CLASS = "<img src=x onerror=alert(1)>"
EVIL_CONFIG = "</td><script>alert('cfg')</script>"


class _Dom(HTMLParser):
    """Elements as (tag, attrs, text inside) — text of nested elements included."""

    _VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
             "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[dict] = []
        self._open: list[dict] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        el = {"tag": tag, "attrs": dict(attrs), "text": [],
              "within": [o["attrs"].get("id") for o in self._open if o["attrs"].get("id")]}
        self.elements.append(el)
        if tag not in self._VOID:
            self._open.append(el)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self.elements.append({"tag": tag, "attrs": dict(attrs), "text": [],
                              "within": [o["attrs"].get("id") for o in self._open
                                         if o["attrs"].get("id")]})

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i]["tag"] == tag:
                del self._open[i:]
                break

    def handle_data(self, data: str) -> None:
        for el in self._open:
            el["text"].append(data)


def parse(html_text: str) -> list[dict]:
    p = _Dom()
    p.feed(html_text)
    p.close()
    for el in p.elements:
        el["text"] = "".join(el["text"])
    return p.elements


def by_id(elements: list[dict], ident: str) -> list[dict]:
    return [e for e in elements if e["attrs"].get("id") == ident]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A fresh copy of the fixture run directory."""
    dst = tmp_path / "diagnose-digits-cnn-0f1e2d3c"
    shutil.copytree(FIXTURE, dst)
    return dst


@pytest.fixture
def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def _section_ids(html_text: str) -> set[str]:
    return {e["attrs"]["id"] for e in parse(html_text) if e["tag"] == "section"
            and "id" in e["attrs"]}


ALL_SECTIONS = {"verdict", "figures", "training", "learning", "complexity", "decomposition",
                "confusion", "classes", "gallery", "run"}


# ----------------------------------------------------------------------------- the fixture

def test_fixture_renders_every_section_fast_and_offline(run_dir: Path, results: dict) -> None:
    t0 = time.perf_counter()
    path = render_report(run_dir)
    took = time.perf_counter() - t0
    assert path == run_dir / "report.html" and path.is_file()
    assert took < 10, f"rendering took {took:.1f} s"
    text = path.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    assert _section_ids(text) == ALL_SECTIONS
    assert "could not be drawn" not in text  # no section fell over
    els = parse(text)
    # plots are inline SVG, the gallery's images inline PNGs; nothing refers to a file or the
    # network
    srcs = [e["attrs"].get("src", "") for e in els if e["tag"] == "img"]
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert len([e for e in els if e["tag"] == "svg"]) == len(PLOT_SECTIONS) + 1
    assert not [e for e in els if e["tag"] in ("script", "link", "iframe", "object", "embed")]
    # one gallery image per gallery.json entry, captions from the file
    gallery = json.loads((run_dir / "gallery.json").read_text())
    figs = [e for e in els if e["tag"] == "figcaption"]
    assert len(figs) == len(gallery)
    for fig, g in zip(figs, gallery):
        assert f"true: {g['true']}" in fig["text"] and f"predicted: {g['pred']}" in fig["text"]
        assert f"{100 * g['confidence']:.1f}%" in fig["text"]
    # ranked remedies in rank order, each action shown
    verdict_text = by_id(els, "verdict")[0]["text"]
    pos = [verdict_text.index(r["action"].replace("`", "")) for r in
           sorted(results["verdict"]["remedies"], key=lambda r: r["rank"])]
    assert pos == sorted(pos)
    # fits as saved
    run_text = by_id(els, "run")[0]["text"]
    for k, v in results["fits"].items():
        assert f"fits {k}{v:,}" in run_text


def test_key_figures_show_the_saved_numbers(run_dir: Path, results: dict) -> None:
    text = render_report(run_dir).read_text(encoding="utf-8")
    figures = by_id(parse(text), "figures")[0]["text"]
    ref = results["reference"]
    for split in ("train", "val", "test"):
        assert f"{100 * ref[split]['error']:.2f}%" in figures
    assert f"{100 * results['target_error']['value']:.2f}%" in figures
    gap = f"{100 * results['variance_gap']:+.1f}".replace("-", "−")
    assert gap in figures


def test_per_class_table_matches_metrics(run_dir: Path, results: dict) -> None:
    els = parse(render_report(run_dir).read_text(encoding="utf-8"))
    rows = [e["text"] for e in els if e["tag"] == "tr" and "classes" in e["within"]]
    pc = results["reference"]["test"]["per_class"]
    assert len(rows) == len(pc) + 1  # + the header
    for name, m in pc.items():
        want = f"{name}{m['precision']:.3f}{m['recall']:.3f}{m['f1']:.3f}{m['support']:,}"
        assert any(r == want for r in rows), want


def test_load_run_reads_what_is_there(run_dir: Path) -> None:
    run = load_run(run_dir)
    assert {"config", "env", "history", "metrics", "gallery", "results"} <= set(run)
    assert run["problems"] == []
    assert run["history"][0]["epoch"] == 1 and isinstance(run["history"][0]["val_loss"], float)
    (run_dir / "env.json").write_text("{not json")
    (run_dir / "gallery.json").unlink()
    run = load_run(run_dir)
    assert "env" not in run and "gallery" not in run
    assert len(run["problems"]) == 1 and "env.json" in run["problems"][0]
    # a damaged file is reported in the page, the rest still renders
    text = render_report(run_dir).read_text(encoding="utf-8")
    assert "env.json" in text and "verdict" in _section_ids(text)


def test_load_run_rejects_a_missing_folder(tmp_path: Path) -> None:
    from biasvar.errors import BiasvarError

    with pytest.raises(BiasvarError, match="RUN_DIR"):
        load_run(tmp_path / "nope")


def test_out_writes_elsewhere_atomically(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere" / "page.html"
    assert render_report(run_dir, out=out) == out
    assert out.is_file() and not (run_dir / "report.html").exists()
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------- absent data

def test_train_run_without_results_omits_the_analysis_sections(run_dir: Path) -> None:
    (run_dir / "results.json").unlink()
    text = render_report(run_dir).read_text(encoding="utf-8")
    ids = _section_ids(text)
    assert ids == {"figures", "training", "confusion", "classes", "gallery", "run"}
    assert 'id="verdict"' not in text and "Learning curve" not in text
    assert "http://" not in text and "https://" not in text


def test_metrics_and_history_only(run_dir: Path) -> None:
    for name in ("results.json", "gallery.json", "config.yaml", "env.json"):
        (run_dir / name).unlink()
    ids = _section_ids(render_report(run_dir).read_text(encoding="utf-8"))
    assert ids == {"figures", "training", "confusion", "classes", "run"}


def test_results_without_optional_blocks(run_dir: Path, results: dict) -> None:
    """A `decompose` from saved predictions: no reference, no curves — only what is there."""
    for k in ("reference", "learning_curve", "complexity_curve", "train_loss_still_falling",
              "avoidable_bias", "variance_gap"):
        results.pop(k)
    results["complexity_curve"] = None
    (run_dir / "results.json").write_text(json.dumps(results))
    for name in ("metrics.json", "history.csv", "gallery.json"):
        (run_dir / name).unlink()
    text = render_report(run_dir).read_text(encoding="utf-8")
    assert _section_ids(text) == {"verdict", "figures", "decomposition", "run"}
    assert "could not be drawn" not in text


def test_damaged_block_becomes_a_notice_not_a_crash(run_dir: Path, results: dict,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of the right types but unusable shapes (results.json validates types: a wrong
    type is a ResultsError, see test_wrong_type_in_results_fails_naming_its_path)."""
    results["learning_curve"]["val_error"]["mean"] = [0.1]  # not one per size
    results["learning_curve"]["power_law"] = {"ok": False, "note": "garbage"}
    results["complexity_curve"]["values"] = []
    results["decomposition"]["zero_one"]["bias"]["ci95"] = [float("nan"), float("nan")]
    results["decomposition"]["per_class"] = {"0": {"n": 3, "zero_one": {}, "mse": {},
                                                   "cross_entropy": {}}}
    (run_dir / "results.json").write_text(json.dumps(results))
    text = render_report(run_dir).read_text(encoding="utf-8")
    assert {"verdict", "learning", "decomposition"} <= _section_ids(text)
    # a section whose drawing fails becomes a notice (and a warning); the others still render
    from biasvar.report import _plots

    def broken(*args: object) -> None:
        raise ValueError("drawing broke")

    monkeypatch.setattr(_plots, "decomposition_overall", broken)
    with pytest.warns(RuntimeWarning, match="Decomposition section"):
        text = render_report(run_dir).read_text(encoding="utf-8")
    assert {"verdict", "learning", "decomposition"} <= _section_ids(text)
    section = by_id(parse(text), "decomposition")[0]["text"]
    assert "could not be drawn" in section and "drawing broke" in section


def test_wrong_type_in_results_fails_naming_its_path(run_dir: Path, results: dict) -> None:
    """results.json is read typed: a wrong type is a ResultsError naming the key's path — from
    the API, and from `biasvar report` as exit status 2 without a traceback."""
    from biasvar.analysis._results import ResultsError

    results["decomposition"]["zero_one"]["bias"]["value"] = "abc"
    (run_dir / "results.json").write_text(json.dumps(results))
    with pytest.raises(ResultsError, match=r"decomposition\.zero_one\.bias\.value"):
        render_report(run_dir)
    proc = run_cli("report", str(run_dir))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "decomposition.zero_one.bias.value" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    assert not (run_dir / "report.html").exists()


def test_run_written_before_schema_version_renders(run_dir: Path, results: dict) -> None:
    """The fixture carries no schema_version (version 0): it is read as it is."""
    from biasvar.analysis._results import load_results

    assert "schema_version" not in results
    assert load_results(run_dir).schema_version == 0
    run = load_run(run_dir)
    assert run["results"].verdict.label == results["verdict"]["label"]
    assert "could not be drawn" not in render_report(run_dir).read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- escaping

def test_user_strings_are_escaped(run_dir: Path, results: dict) -> None:
    old = results["classes"][3]
    results["classes"][3] = EVIL_CLASS
    for m in results["reference"].values():
        if isinstance(m, dict) and "per_class" in m:
            m["per_class"] = {EVIL_CLASS if k == old else k: v for k, v in m["per_class"].items()}
    pc = results["decomposition"]["per_class"]
    results["decomposition"]["per_class"] = {EVIL_CLASS if k == old else k: v
                                             for k, v in pc.items()}
    results["verdict"]["evidence"].append(f"class {EVIL_CLASS} is hard")
    results["config"]["data_root"] = EVIL_CONFIG
    (run_dir / "results.json").write_text(json.dumps(results))
    (run_dir / "config.yaml").write_text(
        (run_dir / "config.yaml").read_text() + f"note: \"{EVIL_CONFIG}\"\n")
    gallery = json.loads((run_dir / "gallery.json").read_text())
    gallery[0]["true"] = EVIL_CLASS
    gallery[1]["image_png_b64"] = '"><script>alert(2)</script>'  # not base64: dropped
    (run_dir / "gallery.json").write_text(json.dumps(gallery))
    (run_dir / "metrics.json").unlink()

    text = render_report(run_dir).read_text(encoding="utf-8")
    assert EVIL_CLASS not in text and "<script" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    els = parse(text)
    assert not [e for e in els if e["tag"] == "script"]
    assert not [e for e in els if e["tag"] == "img" and "onerror" in e["attrs"]]
    # the escaped name reads as the original text (class table, decomposition, gallery)
    assert sum(EVIL_CLASS in e["text"] for e in els if e["tag"] == "td") >= 2
    assert any(EVIL_CLASS in e["text"] for e in els if e["tag"] == "figcaption")
    assert len([e for e in els if e["tag"] == "figcaption"]) == len(gallery) - 1


def test_urls_in_user_text_never_become_references(run_dir: Path, results: dict) -> None:
    results["config"]["data_root"] = "https://example.invalid/data"
    results["verdict"]["caveats"].append("see http://example.invalid/why")
    (run_dir / "results.json").write_text(json.dumps(results))
    (run_dir / "config.yaml").unlink()
    text = render_report(run_dir).read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    texts = " ".join(e["text"] for e in parse(text))
    assert "https://example.invalid/data" in texts  # still readable as text


# ----------------------------------------------------------------------------- in a browser

def test_chromium_dom_has_the_verdict(run_dir: Path, results: dict) -> None:
    require_chromium()
    dom = dump_dom(render_report(run_dir))
    found = by_id(parse(dom), "verdict")
    assert len(found) == 1
    label = results["verdict"]["label"]
    assert label in found[0]["text"]
    assert "overfitting" in found[0]["text"]  # the human phrase for high_variance


def test_chromium_screenshot_is_not_blank(run_dir: Path, tmp_path: Path) -> None:
    require_chromium()
    from PIL import Image

    png = screenshot(render_report(run_dir), tmp_path / "shot.png")
    img = Image.open(png).convert("RGB")
    assert img.size == (1000, 1000)
    pixels = np.asarray(img).reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    background = tuple(colours[counts.argmax()])
    share = 1 - counts.max() / len(pixels)
    assert share >= 0.02, f"only {share:.1%} of pixels differ from the background {background}"


def test_chromium_helper_skips_or_fails_without_a_browser(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert find_chromium() is None
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_chromium()
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        require_chromium()


# ----------------------------------------------------------------------------- no torch

def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=env)


def test_report_package_never_imports_torch(run_dir: Path) -> None:
    """biasvar.report and what it imports stay torch-free (biasvar imports its training API
    lazily, so `biasvar report` never loads torch)."""
    code = (
        "import sys\n"
        "from biasvar.report import render_report\n"
        f"p = render_report({str(run_dir)!r})\n"
        "assert p.is_file(), p\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'torchvision', 'sklearn', 'scipy'))\n"
        "print('HEAVY', heavy)\n"
        "assert not heavy, heavy\n"
    )
    proc = _python(code, run_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "HEAVY []" in proc.stdout


def test_report_from_another_machine_trains_nothing(run_dir: Path) -> None:
    """The public path (`from biasvar.report import render_report`) in a fresh interpreter:
    renders the fixture and writes nothing but report.html (no checkpoint, no fit)."""
    before = {p.name for p in run_dir.iterdir()}
    code = ("import sys\nimport biasvar\nbase = 'torch' in sys.modules\n"
            "from biasvar.report import render_report\n"
            f"render_report({str(run_dir)!r})\n"
            "print('TORCH', base, 'torch' in sys.modules)\n")
    proc = _python(code, run_dir.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {p.name for p in run_dir.iterdir()} - before == {"report.html"}
    assert "TORCH False False" in proc.stdout, proc.stdout


def test_gallery_names_the_source_file_escaped(run_dir: Path) -> None:
    gallery = json.loads((run_dir / "gallery.json").read_text())
    gallery[0]["source"] = "cats/<b>odd</b> name.png"
    gallery[1]["source"] = "#17"
    (run_dir / "gallery.json").write_text(json.dumps(gallery))
    text = render_report(run_dir).read_text(encoding="utf-8")
    assert "<b>odd</b>" not in text
    caps = [e["text"] for e in parse(text) if e["tag"] == "figcaption"]
    assert "cats/<b>odd</b> name.png" in caps[0] and "#17" in caps[1]
    assert all("name.png" not in c for c in caps[1:])  # the built-ins' entries have none


# ----------------------------------------------------------------------------- the fragment

PLOT_SECTIONS = {"training", "learning", "complexity", "decomposition", "confusion"}


@pytest.fixture(scope="module")
def memory_results():  # -> Results
    """The fixture's results built in memory: no run directory behind them."""
    from biasvar.analysis._results import Results

    return Results.from_dict(json.loads((FIXTURE / "results.json").read_text()))


@pytest.fixture(scope="module")
def fragment(memory_results) -> str:
    from biasvar.report import render_fragment

    return render_fragment(memory_results)


def _in_section(els: list[dict], el: dict, sid: str) -> bool:
    return el in els and any(e["tag"] == "section" and e["attrs"].get("class") == sid
                             for e in els[:els.index(el)])


def _section_classes(els: list[dict]) -> set[str]:
    return {e["attrs"]["class"] for e in els if e["tag"] == "section"}


def test_fragment_shows_the_verdict_remedies_and_plots(memory_results, fragment: str) -> None:
    assert memory_results.run_dir is None
    text = fragment
    assert text.lstrip().startswith("<div") and text.rstrip().endswith("</div>")
    for tag in ("<html", "<body", "<head", "<script", "<link", "<iframe", "<!DOCTYPE"):
        assert tag.lower() not in text.lower(), tag
    assert "http://" not in text and "https://" not in text
    # url() only to the plots' own clip paths (#id in the same SVG), never to a resource
    assert re.search(r"url\((?!#[A-Za-z0-9_-]+\))", text) is None
    assert "could not be drawn" not in text
    els = parse(text)
    # the same sections as the page, but those that need the run's files (gallery.json)
    assert _section_classes(els) == ALL_SECTIONS - {"gallery"}
    assert not [e for e in els if e["tag"] == "section" and "id" in e["attrs"]]  # no clashes
    verdict = [e for e in els if e["tag"] == "section" and e["attrs"]["class"] == "verdict"][0]
    v = memory_results.verdict
    assert v.label in verdict["text"] and "overfitting" in verdict["text"]
    pos = [verdict["text"].index(r.action.replace("`", "")) for r in
           sorted(v.remedies, key=lambda r: r.rank)]
    assert pos == sorted(pos) and len(pos) == len(v.remedies) >= 3
    # every plot inline: an <svg> in each section that draws one, no bitmap
    svgs = [e for e in els if e["tag"] == "svg"]
    assert not [e for e in els if e["tag"] == "img"]  # no gallery in a fragment
    sections = [e for e in els if e["tag"] in ("section", "svg")]
    for sid in PLOT_SECTIONS:
        start = next(i for i, e in enumerate(sections) if e["tag"] == "section"
                     and e["attrs"]["class"] == sid)
        assert start + 1 < len(sections) and sections[start + 1]["tag"] == "svg", sid
    assert len(svgs) == len(PLOT_SECTIONS) + 1  # + the decomposition per class
    # the key figures as saved
    figures = [e for e in els if e["tag"] == "section" and e["attrs"]["class"] == "figures"][0]
    assert f"{100 * memory_results.test_error:.2f}%" in figures["text"]


def test_fragment_style_is_scoped(fragment: str) -> None:
    """One <style>, inside the <div>, whose every rule applies only inside the fragment."""
    styles = re.findall(r"<style>(.*?)</style>", fragment, flags=re.S)
    assert len(styles) == 1 and fragment.index("<style>") > fragment.index("<div")
    css = re.sub(r"@media[^{]*\{", "", styles[0])
    selectors = [s.strip() for block in re.findall(r"([^{}]+)\{[^{}]*\}", css)
                 for s in block.split(",")]
    assert selectors and all(s.startswith(".bvr") for s in selectors), \
        [s for s in selectors if not s.startswith(".bvr")]
    assert re.match(r'\s*<div class="bvr bvr-fragment">', fragment)


def test_fragment_escapes_remedies_and_reads_run_files(run_dir: Path) -> None:
    from biasvar.analysis._results import Remedy, load_results
    from biasvar.report import render_fragment

    results = load_results(run_dir)
    assert results.run_dir == run_dir
    evil = Remedy(rank=99, name="x", action=f"try {EVIL_CLASS} & see", addresses="variance",
                  evidence="see https://example.invalid")
    v = results.verdict
    results = results.replace(verdict=type(v)(label=v.label, evidence=v.evidence,
                                              caveats=v.caveats, remedies=[*v.remedies, evil],
                                              thresholds=v.thresholds))
    text = render_fragment(results)
    for r in results.verdict.remedies:
        escaped = html.escape(r.action.replace("`", ""), quote=True)
        assert escaped in re.sub(r"</?code>", "", text), r.action
    assert EVIL_CLASS not in text and "<script" not in text
    assert "http://" not in text and "https://" not in text
    # with a run directory the files beside results.json are read: the gallery is there
    els = parse(text)
    assert "gallery" in _section_classes(els)
    gallery = json.loads((run_dir / "gallery.json").read_text())
    assert len([e for e in els if e["tag"] == "figcaption"]) == len(gallery)
    assert not (run_dir / "report.html").exists()  # a fragment writes nothing
    assert results._repr_html_().startswith('<div class="bvr bvr-fragment">')


def test_chromium_renders_the_fragment(fragment: str, memory_results, tmp_path: Path) -> None:
    """The fragment as a notebook would show it: inside a bare page, in a real browser."""
    require_chromium()
    page = tmp_path / "notebook.html"
    page.write_text(f'<!DOCTYPE html><meta charset="utf-8"><div class="cell">{fragment}</div>',
                    encoding="utf-8")
    els = parse(dump_dom(page))
    verdict = [e for e in els if e["tag"] == "section" and e["attrs"].get("class") == "verdict"]
    assert len(verdict) == 1 and memory_results.verdict.label in verdict[0]["text"]
    assert len([e for e in els if e["tag"] == "svg"]) == len(PLOT_SECTIONS) + 1
