"""The tune report (``biasvar.report.render_tune_report``): rendered by a real browser, the answer
and every plotted value matching tune.json (the expected cells computed here, independently of
the module), offline, escaped, and a damaged tune.json rejected with the file and the key named.

The tune.json files are built by hand: a realistic study (8 trials, 3 seeds, a pruned and a
failed trial, three kinds of parameter, one with a hostile value) and a minimal one (1 trial, no
importances). Cheap: no torch, no training.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from statistics import mean, pstdev

import pytest

from biasvar.errors import BiasvarError
from biasvar.report import render_tune_report

from ._chromium import dump_dom
from .test_report import FIXTURE, parse

pytestmark = pytest.mark.timeout(180)

EVIL = "<script>alert('tune')</script> http://evil.example/x"
SEEDS = 3


def _p(x: float | None) -> str:
    """An error as the page shows it (2 decimals), written here independently."""
    return "—" if x is None else f"{100 * x:.2f}%"


def _points(x: float) -> str:
    return f"{100 * x:+.2f}".replace("-", "−").lstrip("+") + " points"


def _trial(number: int, params: dict, values: list[float], state: str = "COMPLETE",
           seconds: float = 3.5, intermediate: dict | None = None) -> dict:
    done = state == "COMPLETE" and values
    return {"number": number, "state": state, "params": params, "values": values,
            "mean": mean(values) if done else None,
            "std": pstdev(values) if done else None,
            "intermediate": intermediate or {}, "seconds": seconds}


def realistic() -> dict:
    """8 trials over 3 seeds: 6 complete, trial 3 pruned after epoch 2, trial 6 failed."""
    space = {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
             "width": {"type": "int", "low": 16, "high": 128, "step": 16, "log": False},
             "optimizer": {"type": "categorical", "choices": ["sgd", "adamw", EVIL]}}
    rows = [  # lr, width, optimizer, per-seed validation errors
        (0.01, 32, "sgd", [0.120, 0.126, 0.117]),
        (0.002, 64, "adamw", [0.092, 0.089, 0.095]),
        (0.05, 16, EVIL, [0.210, 0.204, 0.219]),
        (0.0003, 128, "adamw", None),  # pruned
        (0.004, 96, "adamw", [0.071, 0.074, 0.069]),
        (0.02, 48, "sgd", [0.101, 0.097, 0.108]),
        (0.08, 112, EVIL, None),  # failed
        (0.003, 80, "adamw", [0.078, 0.081, 0.080]),
    ]
    trials = []
    for i, (lr, width, opt, vals) in enumerate(rows):
        params = {"lr": lr, "width": width, "optimizer": opt}
        if i == 3:
            trials.append(_trial(i, params, [0.31], "PRUNED", 1.2,
                                 {"1": 0.41, "2": 0.33}))
        elif i == 6:
            trials.append(_trial(i, params, [], "FAIL", 0.4))
        else:
            trials.append(_trial(i, params, vals, intermediate={"1": vals[0] + 0.05,
                                                               "2": vals[0]}))
    best = trials[4]
    default = {"params": {"lr": 0.01, "width": 64, "optimizer": "sgd"},
               "values": [0.104, 0.099, 0.111]}
    default.update(mean=mean(default["values"]), std=pstdev(default["values"]),
                   test_error=0.101)
    gain = default["mean"] - best["mean"]
    spread = max(best["std"], default["std"])
    return {"schema_version": 1, "command": "tune", "dataset": "digits", "model": "mlp",
            "sampler": "tpe", "pruner": "median", "seeds": SEEDS,
            "metric": "validation error", "space": space, "trials_requested": 8,
            "timeout": None, "storage": "postgresql://tuner:***@db.internal:5432/studies",
            "study": "digits-mlp-bias", "backend": "local", "workers": 2,
            "trials": trials,
            "best": {"number": best["number"], "params": best["params"],
                     "values": best["values"], "mean": best["mean"], "std": best["std"],
                     "test_error": 0.0745, "config": {"dataset": "digits", "model": "mlp",
                                                      "lr": 0.004, "width": 96}},
            "default": default, "gain": gain, "spread": spread,
            "beats_default": gain > spread,
            "importances": {"optimizer": 0.18, "lr": 0.61, "width": 0.21},
            "diagnose": None, "timing": {"seconds": 41.3}}


def minimal() -> dict:
    """1 seed, 1 complete trial, no importances, a default it does not beat."""
    t = _trial(0, {"width": 32}, [0.15])
    return {"schema_version": 1, "command": "tune", "dataset": "digits", "model": "mlp",
            "sampler": "random", "pruner": "none", "seeds": 1, "metric": "validation error",
            "space": {"width": {"type": "int", "low": 16, "high": 64, "log": False,
                                "step": 16}},
            "trials_requested": 1, "timeout": None, "storage": "optuna.journal",
            "study": "s", "backend": "local", "workers": 1, "trials": [t],
            "best": {"number": 0, "params": {"width": 32}, "values": [0.15], "mean": 0.15,
                     "std": 0.0, "test_error": None, "config": {}},
            "default": {"params": {"width": 64}, "values": [0.15], "mean": 0.15, "std": 0.0,
                        "test_error": None},
            "gain": 0.0, "spread": 0.0, "beats_default": False, "importances": {},
            "diagnose": None, "timing": {"seconds": 2.0}}


def _write(run: Path, data: dict) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    (run / "tune.json").write_text(json.dumps(data), encoding="utf-8")
    return run


def _section(els: list[dict], ident: str) -> str:
    return next(e["text"] for e in els if e["tag"] == "section" and e["attrs"].get("id") == ident)


def _table(els: list[dict], cls: str) -> list[list[str]]:
    """The body rows of ``<table class=cls>`` as lists of cell texts."""
    rows, inside, body = [], False, False
    for el in els:
        if el["tag"] == "table":
            inside = el["attrs"].get("class") == cls
            body = False
        elif inside and el["tag"] == "tbody":
            body = True
        elif inside and body and el["tag"] == "tr":
            rows.append([])
        elif inside and body and el["tag"] == "td":
            rows[-1].append(el["text"])
    return rows


def _svgs_in(els: list[dict], ident: str) -> int:
    return sum(1 for e in els if e["tag"] == "svg" and ident in e["within"])


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> tuple[dict, str, list[dict], str]:
    """The realistic study rendered: (tune.json, the written HTML, Chromium's DOM parsed,
    the DOM text)."""
    run = _write(tmp_path_factory.mktemp("tune") / "tune-digits-mlp-0a1b2c3d", realistic())
    (run / "best_config.yaml").write_text("dataset: digits\n", encoding="utf-8")
    path = render_tune_report(run)
    assert path == run / "report.html"
    dom = dump_dom(path)
    return json.loads((run / "tune.json").read_text()), path.read_text(encoding="utf-8"), \
        parse(dom), dom


def test_the_answer_comes_first_and_matches_tune_json(page):
    data, text, els, _ = page
    sections = [e["attrs"]["id"] for e in els if e["tag"] == "section" and "id" in e["attrs"]]
    assert sections[0] == "answer"
    assert sections == ["answer", "history", "importances", "slices", "trials"]
    answer = " ".join(_section(els, "answer").split())
    b, d = data["best"], data["default"]
    assert f"{_p(b['mean'])} ± {_p(b['std'])}" in answer
    assert f"{_p(d['mean'])} ± {_p(d['std'])}" in answer
    assert "trial 4" in answer and "over 3 seeds" in answer
    assert data["beats_default"] is True
    assert _points(data["gain"]) in answer
    assert "more than the seed-to-seed spread" in answer
    assert f"{100 * data['spread']:.2f} points" in answer
    assert "biasvar train --config best_config.yaml" in answer
    links = [e["attrs"]["href"] for e in els if e["tag"] == "a" and "answer" in e["within"]]
    assert links == ["best_config.yaml"]
    rows = {r[0]: r[1:] for r in _table(els, "answer-table")}
    assert rows["lr"] == ["0.004", "0.01"]
    assert rows["width"] == ["96", "64"]
    assert rows["optimizer"] == ["adamw", "sgd"]
    assert rows["per-seed validation error"] == [", ".join(_p(v) for v in b["values"]),
                                                 ", ".join(_p(v) for v in d["values"])]
    assert rows["test error"] == [_p(b["test_error"]), _p(d["test_error"])]


def test_header_names_the_study(page):
    _, _, els, _ = page
    header = " ".join(next(e["text"] for e in els if e["tag"] == "header").split())
    for word in ("digits", "mlp", "tpe", "median", "digits-mlp-bias",
                 "postgresql://tuner:***@db.internal:5432/studies", "2 workers", "local"):
        assert word in header, word
    # 7 finished (6 complete + 1 pruned; the failed one does not count) of 8 requested
    assert "7 finished of 8 requested (6 complete, 1 pruned, 1 failed)" in header


def test_history_plot_and_its_table(page):
    data, _, els, _ = page
    assert _svgs_in(els, "history") == 1
    rows = _table(els, "history-table")
    best, expect = math.inf, []
    for t in data["trials"]:
        if t["state"] == "COMPLETE":
            best = min(best, t["mean"])
            expect.append([str(t["number"]), "complete", _p(t["mean"]), _p(best)]
                          + [_p(v) for v in t["values"]])
        elif t["state"] == "PRUNED":  # drawn at its last reported epoch
            last = t["intermediate"][max(t["intermediate"], key=int)]
            expect.append([str(t["number"]), "pruned", _p(last), "—", _p(t["values"][0]),
                           "—", "—"])
    assert rows == expect
    # the pruned row is marked, the failed trial left out of the plot's table
    assert "6" not in [r[0] for r in rows]
    classes = [e["attrs"].get("class") for e in els if e["tag"] == "tr"
               and "history" in e["within"] and e["attrs"].get("class")]
    assert classes == ["pruned"]


def test_importances_sorted_with_values(page):
    data, _, els, _ = page
    assert _svgs_in(els, "importances") == 1
    order = sorted(data["importances"].items(), key=lambda kv: -kv[1])
    assert _table(els, "importance-table") == [[k, f"{v:.3f}"] for k, v in order]


def test_a_slice_per_parameter(page):
    data, text, els, _ = page
    assert _svgs_in(els, "slices") == 1
    svg = next(e for e in els if e["tag"] == "svg" and "slices" in e["within"])
    for name in ("lr (log scale)", "width", "optimizer"):  # one titled panel each
        assert name in svg["text"], name
    rows = _table(els, "slice-table")
    done = [t for t in data["trials"] if t["state"] == "COMPLETE"]
    assert rows == [[str(t["number"]), f"{t['params']['lr']:.4g}", str(t["params"]["width"]),
                     t["params"]["optimizer"], _p(t["mean"])] for t in done]


def test_every_trial_in_the_table(page):
    data, _, els, _ = page
    rows = _table(els, "trials-table")
    assert len(rows) == 8
    for row, t in zip(rows, data["trials"]):
        state = t["state"].lower()
        if t["state"] == "PRUNED":
            state += " (epoch 2)"
        vals = [_p(t["values"][i]) if i < len(t["values"]) else "—" for i in range(SEEDS)]
        assert row == [str(t["number"]), state, f"{t['params']['lr']:.4g}",
                       str(t["params"]["width"]), t["params"]["optimizer"], *vals,
                       _p(t["mean"]), _p(t["std"]), f"{t['seconds']:.1f}"]
    classes = {e["attrs"].get("class") for e in els if e["tag"] == "tr"
               and "trials" in e["within"]}
    assert {"best", "pruned", "fail"} <= classes


def test_offline_and_escaped(page):
    _, text, els, dom = page
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text and "&lt;script&gt;" in text
    assert not [e for e in els if e["tag"] in ("script", "link", "iframe", "img", "object")]
    for e in els:  # links stay in the folder: no scheme, no absolute path
        for attr in ("href", "src"):
            v = e["attrs"].get(attr)
            if v is not None:
                assert "://" not in v and not v.startswith("/"), v
    # the hostile value reads as text in the tables
    assert EVIL in " ".join(r[4] for r in _table(els, "trials-table"))


def test_minimal_study(tmp_path):
    data = minimal()
    run = _write(tmp_path / "tune-min", data)
    els = parse(dump_dom(render_tune_report(run)))
    answer = " ".join(_section(els, "answer").split())
    # one seed: no spread measured, so neither a ± nor a claim about beating it
    assert "15.00%" in answer and "±" not in answer and "over 1 seed" in answer
    assert "one seed" in answer and "seed-to-seed spread was measured" in answer
    assert "test error" not in answer.lower()
    imp = _section(els, "importances")
    assert "No importances" in imp and _svgs_in(els, "importances") == 0
    assert _svgs_in(els, "history") == 1 and _svgs_in(els, "slices") == 1
    assert _table(els, "trials-table") == [["0", "complete", "32", "15.00%", "15.00%", "0.00%",
                                            "3.5"]]
    assert not (run / "best_config.yaml").exists()
    assert not [e for e in els if e["tag"] == "a" and "answer" in e["within"]]


def test_one_seed_claims_no_spread(tmp_path):
    # one seed measures no seed-to-seed spread: the page says so, it claims no "beats"
    data = realistic()
    for side in ("best", "default"):
        data[side].update(values=data[side]["values"][:1], std=None)
    data.update(seeds=1, spread=None, beats_default=None)
    els = parse(render_tune_report(_write(tmp_path / "t1", data)).read_text())
    text = _section(els, "answer")
    assert "one seed" in text and "--seeds 3" in text
    assert "more than the seed-to-seed spread" not in text and "±" not in text


def test_no_finished_trial_says_so(tmp_path):
    data = minimal()
    data["trials"][0].update(state="FAIL", values=[], mean=None, std=None)
    data.update(best=None, gain=None, spread=None, beats_default=None)
    els = parse((render_tune_report(_write(tmp_path / "t", data))).read_text())
    assert "No trial finished" in _section(els, "answer")


def test_diagnose_before_and_after(tmp_path):
    data = realistic()
    data["diagnose"] = {"start": "diagnose-start", "best": "diagnose-best",
                        "compare": "compare.html"}
    run = _write(tmp_path / "tune-d", data)
    terms = {}
    for side, shift in (("start", 0.0), ("best", -0.02)):
        d = run / f"diagnose-{side}"
        shutil.copytree(FIXTURE, d)
        res = json.loads((d / "results.json").read_text())
        res["decomposition"]["zero_one"]["bias"]["value"] += shift
        (d / "results.json").write_text(json.dumps(res))
        (d / "report.html").write_text("<p>diagnosis</p>")
        ref = res["reference"]
        terms[side] = {"0-1 bias": res["decomposition"]["zero_one"]["bias"]["value"],
                       "0-1 net variance":
                           res["decomposition"]["zero_one"]["net_variance"]["value"],
                       **{f"{n} error": ref[s]["error"] if "error" in ref[s]
                          else 1 - ref[s]["accuracy"]
                          for s, n in (("train", "train"), ("val", "validation"),
                                       ("test", "test"))}}
    (run / "compare.html").write_text("<p>compare</p>")
    els = parse(dump_dom(render_tune_report(run)))
    hrefs = [e["attrs"]["href"] for e in els if e["tag"] == "a" and "diagnose" in e["within"]]
    assert hrefs == ["compare.html", "diagnose-start/report.html", "diagnose-best/report.html"]
    rows = {r[0]: r[1:] for r in _table(els, "diagnose-table")}
    for name, a in terms["start"].items():
        b = terms["best"][name]
        d = b - a
        change = ("0.00 points" if round(100 * d, 2) == 0 else _points(d))
        assert rows[name][:2] == [_p(a), _p(b)], name
        assert rows[name][2].replace("−0.00", "0.00") == change, name
    assert rows["0-1 bias"][2] == "−2.00 points"


@pytest.mark.parametrize("damage, key", [
    (lambda p: p.write_text('{"dataset": "digits", "trials": [', encoding="utf-8"),
     "cannot be read as JSON"),
    (lambda p: _edit(p, lambda d: d["trials"][2].update(mean="0.2")), "trials[2].mean"),
    (lambda p: _edit(p, lambda d: d["trials"][1].update(state="DONE")), "trials[1].state"),
    (lambda p: _edit(p, lambda d: d.pop("trials")), "trials"),
    (lambda p: _edit(p, lambda d: d.update(importances={"lr": "high"})), "importances.lr"),
    (lambda p: _edit(p, lambda d: d["best"].update(values=[0.1, None])), "best.values[1]"),
    (lambda p: _edit(p, lambda d: d.update(beats_default="yes")), "beats_default"),
    (lambda p: _edit(p, lambda d: d.update(diagnose={"start": "../x", "best": "b",
                                                     "compare": "c.html"})),
     "diagnose.start"),
    (lambda p: p.write_text("[1, 2]", encoding="utf-8"), "expected an object"),
])
def test_damaged_tune_json_names_the_file_and_key(tmp_path, damage, key):
    run = _write(tmp_path / "tune-bad", realistic())
    damage(run / "tune.json")
    with pytest.raises(BiasvarError) as info:
        render_tune_report(run)
    assert "tune.json" in str(info.value) and key in str(info.value)
    assert not (run / "report.html").exists()


def _edit(path: Path, fn) -> None:
    d = json.loads(path.read_text())
    fn(d)
    path.write_text(json.dumps(d))


def test_not_a_tune_run(tmp_path):
    with pytest.raises(BiasvarError, match="holds no tune.json"):
        render_tune_report(tmp_path)
    with pytest.raises(BiasvarError, match="does not exist"):
        render_tune_report(tmp_path / "nope")
