"""Runs side by side (``biasvar.report.compare``): the page shows each run's saved numbers and
their differences, names what changed, overlays the plots with their tables, stays offline and
escaped, tolerates runs missing a block, and rejects bad input with a clear message. Also the
``derived_from`` link from a derived run to its source.

Two cheap digits diagnoses (width 16 and 32, ~10 s each) are built once for the module; the
report fixture run and a train run made from it add runs "from another machine".
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from biasvar import ExperimentConfig, diagnose
from biasvar._fmt import count, num, pct, pts
from biasvar.analysis._results import Results, ResultsError, load_results, save_results
from biasvar.errors import BiasvarError
from biasvar.report import compare
from biasvar.report._compare import derived_section

from ._chromium import dump_dom
from .test_report import FIXTURE, parse

pytestmark = pytest.mark.timeout(300)

FAST = dict(dataset="digits", model="mlp", epochs=3, precision="fp32", channels_last="off",
            threads=1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two diagnoses differing in width only, and the report fixture run."""
    root = tmp_path_factory.mktemp("compare")
    out = {}
    for name, width in (("narrow", 16), ("wide", 32)):
        out[name] = root / name
        diagnose(ExperimentConfig(**FAST, width=width), out=out[name], progress=False,
                 report=False)
    out["fixture"] = root / "diagnose-digits-cnn-0f1e2d3c"
    shutil.copytree(FIXTURE, out["fixture"])
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("fits"))
    return dst


def _json(run: Path) -> dict:
    return json.loads((run / "results.json").read_text(encoding="utf-8"))


def _rows(text: str, table_class: str) -> dict[str, list[str]]:
    """The rows of ``<table class=table_class>`` as {row class: [cell texts]}."""
    els = parse(text)
    out, inside = {}, False
    for el in els:
        if el["tag"] == "table":
            inside = el["attrs"].get("class") == table_class
        elif inside and el["tag"] == "tr" and el["attrs"].get("class"):
            out[el["attrs"]["class"]] = []
            current = out[el["attrs"]["class"]]
        elif inside and el["tag"] == "td" and out:
            current.append(el["text"])
    return out


def _section(text: str, ident: str) -> str:
    return next(e["text"] for e in parse(text) if e["attrs"].get("id") == ident)


# independent of the module's formatting: the expected cells from results.json

def _changed(d: float) -> str:
    """A change in points: explicit sign, no sign when it rounds to zero."""
    if round(100 * d, 2) == 0:
        return pts(0.0, 2)
    return ("+" if d > 0 else "") + pts(d, 2)


def _with_ci(value: float, ci: list[float], fmt) -> str:
    return f"{fmt(value)} [{fmt(ci[0])}, {fmt(ci[1])}]"


def _expected(res: dict) -> dict[str, tuple[str, float | None]]:
    """{figure key: (cell text, the number the change is computed from)}."""
    p2 = lambda v: pct(v, 2)  # noqa: E731
    n3 = lambda v: num(v, 3)  # noqa: E731
    ref, dec, nf = res["reference"], res["decomposition"], res["noise_floor"]
    out = {f"{s}_error": (p2(ref[k]["error"]), ref[k]["error"])
           for s, k in (("train", "train"), ("val", "val"), ("test", "test"))}
    out["target_error"] = (p2(res["target_error"]["value"]), res["target_error"]["value"])
    for key in ("avoidable_bias", "variance_gap"):
        out[key] = (_changed(res[key]), res[key])
    for key in ("loss", "bias", "net_variance"):
        t = dec["zero_one"][key]
        out[f"zero_one_{key}"] = (_with_ci(t["value"], t["ci95"], p2), t["value"])
    for key in ("risk", "bias", "variance"):
        t = dec["cross_entropy"][key]
        out[f"ce_{key}"] = (_with_ci(t["value"], t["ci95"], n3), t["value"])
    out["noise_rate"] = (_with_ci(nf["rate"], [nf["lo"], nf["hi"]], p2), nf["rate"])
    f = res["fits"]
    out["fits"] = (f"{count(f['planned'])} ({count(f['trained'])}, {count(f['reused'])})", None)
    return out


# ------------------------------------------------------------------------------- the page

def test_key_figures_and_changes_are_the_saved_numbers(runs, tmp_path):
    a, b = runs["narrow"], runs["wide"]
    path = compare([a, b], out=tmp_path / "c.html", labels=["narrow", "wide"])
    assert path == tmp_path / "c.html"
    text = path.read_text(encoding="utf-8")
    rows = _rows(text, "figures")
    ra, rb = _json(a), _json(b)
    ea, eb = _expected(ra), _expected(rb)
    for key, (cell_a, xa) in ea.items():
        cell_b, xb = eb[key]
        name, va, vb, change = rows[f"fig-{key}"]
        assert (va, vb) == (cell_a, cell_b), key
        if key.startswith("ce_"):  # nats
            d = xb - xa
            want = num(0.0) if round(d, 3) == 0 else f"{d:+.3f}".replace("-", "−")
            assert change == want, key
        elif xa is not None:
            assert change == _changed(xb - xa), key
    fits_change = rb["fits"]["planned"] - ra["fits"]["planned"]
    assert rows["fig-fits"][3] == (f"{fits_change:+,d}".replace("-", "−") if fits_change
                                   else "0")
    # a figure no run measured (here the power law's prediction: 3 sizes do not extrapolate)
    # is left out
    if all(r["learning_curve"]["power_law"].get("err_2x") is None for r in (ra, rb)):
        assert "fig-power_2x" not in rows
    # both verdicts, with their top remedies
    verdicts = _section(text, "verdicts")
    for r in (ra, rb):
        assert r["verdict"]["label"] in verdicts
        for rem in sorted(r["verdict"]["remedies"], key=lambda x: x["rank"])[:3]:
            assert rem["action"].replace("`", "") in verdicts
    assert "http://" not in text and "https://" not in text


def test_what_changed_names_the_option_and_the_verdict(runs, tmp_path):
    a, b = runs["narrow"], runs["wide"]
    text = compare([a, b], out=tmp_path / "c.html").read_text(encoding="utf-8")
    changes = _section(text, "changes")
    assert "width: 16 → 32" in changes
    ra, rb = _json(a), _json(b)
    la, lb = ra["verdict"]["label"], rb["verdict"]["label"]
    assert (f"Verdict unchanged: {la}" if la == lb else f"Verdict changed: {la} → {lb}") \
        in changes
    # a figure that moved by far more than 0.5 points is named with its direction
    d = rb["reference"]["train"]["error"] - ra["reference"]["train"]["error"]
    if abs(d) > 0.005:
        way = "rose" if d > 0 else "fell"
        assert f"train error {way} from {pct(ra['reference']['train']['error'], 2)}" in changes
    # options both runs share are not listed
    assert "epochs:" not in changes and "dataset:" not in changes


def test_chromium_shows_the_three_overlaid_plots_with_their_tables(runs, tmp_path):
    path = compare([runs["narrow"], runs["wide"], runs["fixture"]], out=tmp_path / "c.html")
    els = parse(dump_dom(path))
    for ident in ("learning", "training", "decomposition"):
        inside = [e for e in els if ident in e["within"]]
        assert [e for e in inside if e["tag"] == "svg"], ident
        assert [e for e in inside if e["tag"] == "table"], ident
    # three runs: a change column for each later run against the first
    heads = [e["text"] for e in els if e["tag"] == "th" and "figures" in e["within"]]
    assert sum(h.startswith("change ") for h in heads) == 2


def test_learning_table_lists_every_plotted_value(runs, tmp_path):
    text = compare([runs["narrow"], runs["fixture"]], out=tmp_path / "c.html",
                   labels=["A", "B"]).read_text(encoding="utf-8")
    learning = _section(text, "learning")
    lc = _json(runs["fixture"])["learning_curve"]
    for i, size in enumerate(lc["sizes"]):
        vals = lc["val_error"]["values"][i]
        row = (f"B{size:,}{len(vals)}{pct(lc['train_error']['mean'][i], 2)}")
        assert row in learning
        assert f"{pct(min(vals), 2)}–{pct(max(vals), 2)}" in learning


def test_runs_missing_blocks_still_render_escaped(runs, tmp_path):
    # a train run (metrics.json and history.csv, no results.json) ...
    train = _copy(FIXTURE, tmp_path / "train-run")
    (train / "results.json").unlink()
    # ... and a learning-curve-only run
    curve = _copy(runs["narrow"], tmp_path / "curve-run")
    res = _json(curve)
    for key in ("decomposition", "verdict", "noise_floor", "reference", "avoidable_bias",
                "variance_gap", "target_error"):
        res.pop(key, None)
    res["command"] = "curve"
    (curve / "metrics.json").unlink()
    (curve / "results.json").write_text(json.dumps(res), encoding="utf-8")
    evil = "<script>alert('x')</script>"
    path = compare([runs["wide"], train, curve], out=tmp_path / "c.html",
                   labels=["wide", evil, "curve"])
    text = path.read_text(encoding="utf-8")
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "http://" not in text and "https://" not in text
    rows = _rows(text, "figures")
    assert rows["fig-zero_one_loss"][2:4] == ["—", "—"]  # the train and the curve run
    assert rows["fig-train_error"][2] != "—"  # the train run's own metrics.json
    assert rows["fig-train_error"][3] == "—"
    decomposition = _section(text, "decomposition")
    assert "Not in this plot" in decomposition and "alert" in decomposition
    assert "curve" in decomposition
    assert "No verdict" in _section(text, "verdicts")


def test_default_out_is_a_hashed_page_under_runs(runs, tmp_path):
    dirs = [runs["narrow"], runs["wide"]]
    path = compare(dirs)
    key = "\n".join(str(d.resolve()) for d in dirs)
    want = f"compare-{hashlib.sha256(key.encode()).hexdigest()[:8]}.html"
    assert path.name == want and path.parent.resolve() == (tmp_path / "runs").resolve()
    assert path.is_file() and not [p for p in path.parent.iterdir() if p.suffix == ".tmp"]
    assert compare(dirs) == path  # the same runs: the same page, rewritten


# ------------------------------------------------------------------------------- bad input

def test_bad_input_is_a_clear_error(runs, tmp_path):
    a, b = runs["narrow"], runs["wide"]
    empty = tmp_path / "empty"
    empty.mkdir()
    damaged = _copy(a, tmp_path / "damaged")
    (damaged / "results.json").write_text("{not json", encoding="utf-8")
    cases = [
        (dict(run_dirs=[a]), ["run_dirs", "1 run directory", "at least 2"]),
        (dict(run_dirs=str(a)), ["run_dirs", "single path", str(a)]),
        (dict(run_dirs=[a, tmp_path / "nope"]), ["run_dirs[1]", "nope", "does not exist"]),
        (dict(run_dirs=[a, empty]), ["run_dirs[1]", "empty", "no results.json or metrics.json"]),
        (dict(run_dirs=[a, a]), ["run_dirs[1]", "same run directory"]),
        (dict(run_dirs=[a, b], out=tmp_path / "missing" / "c.html"),
         ["out", "missing", "does not exist"]),
        (dict(run_dirs=[a, b], out=tmp_path), ["out", "is a folder"]),
        (dict(run_dirs=[a, b], labels=["only one"]),
         ["labels", "1 label", "2 run directories"]),
        (dict(run_dirs=[a, damaged]), ["run_dirs[1]", str(damaged / "results.json"),
                                       "not readable as JSON"]),
    ]
    for kwargs, words in cases:
        with pytest.raises(BiasvarError) as info:
            compare(kwargs.pop("run_dirs"), **kwargs)
        for w in words:
            assert w in str(info.value), (w, str(info.value))
    with pytest.raises(ResultsError):
        compare([a, damaged])
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


# ---------------------------------------------------------------------------- derived runs

def test_derived_section_writes_compare_html_and_links_it(runs, tmp_path):
    source = _copy(runs["narrow"], tmp_path / "src<i>run")
    derived = _copy(runs["wide"], tmp_path / "derived")
    r = save_results(load_results(derived).replace(derived_from=str(source)), derived)
    assert _json(derived)["derived_from"] == str(source)
    assert load_results(derived).derived_from == str(source)
    snippet = derived_section(r, derived)
    assert snippet.startswith('<p class="notice">') and 'href="compare.html"' in snippet
    assert "src&lt;i&gt;run" in snippet and "<i>" not in snippet
    page = (derived / "compare.html").read_text(encoding="utf-8")
    assert "src&lt;i&gt;run" in page and "width: 16 → 32" in _section(page, "changes")
    # not derived, or the source is gone: nothing
    assert derived_section(r.replace(derived_from=None), derived) == ""
    assert derived_section(r.replace(derived_from=str(tmp_path / "gone")), derived) == ""


def test_old_results_without_derived_from_still_load(tmp_path):
    old = json.loads((FIXTURE / "results.json").read_text(encoding="utf-8"))
    assert "derived_from" not in old
    r = Results.from_dict(old)
    assert r.derived_from is None and "derived_from" not in r.to_dict()
    assert "derived_from" not in r.extra
    with pytest.raises(ResultsError, match="derived_from"):
        Results.from_dict({**old, "derived_from": 5})
