"""The Python API of the analyses: typed results, the same numbers as the CLI, options saved with
the run, no process exits, and a diagnosis displayed inline in a notebook."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from biasvar import AnalysisConfig, ExperimentConfig, Results, diagnose, load_results
from biasvar.analysis import (Decomposition, LearningCurve, Plan, complexity_curve, decompose,
                              decompose_predictions, learning_curve)
from biasvar.config import load_analysis
from biasvar.errors import BiasvarError, ConfigError

from ..conftest import run_cli, run_cli_here

FAST = dict(dataset="digits", model="mlp", width=32, precision="fp32", channels_last="off",
            threads=1)
CLI_FAST = ["--dataset", "digits", "--model", "mlp", "--width", "32", "--precision", "fp32",
            "--channels-last", "off", "--threads", "1", "--no-progress"]


def _numbers(d: dict) -> dict:
    """results.json without what differs between two runs of the same fits (counts, timing,
    environment)."""
    return {k: v for k, v in d.items() if k not in ("fits", "timing", "environment")}


@pytest.fixture(scope="module")
def diagnosed(tmp_path_factory) -> Results:
    out = tmp_path_factory.mktemp("api") / "run"
    return diagnose(ExperimentConfig(**FAST), out=out, progress=False)


def test_diagnose_returns_typed_results(diagnosed):
    d = diagnosed
    assert isinstance(d, Results) and d.command == "diagnose"
    assert d.verdict.label in ("high_bias", "high_variance", "both", "balanced")
    z = d.decomposition.zero_one
    # the identity checked on the typed object: loss = bias + net variance
    assert z.loss.value == pytest.approx(z.bias.value + z.net_variance.value, abs=1e-12)
    assert isinstance(d.learning_curve, LearningCurve)
    assert d.learning_curve.sizes[-1] == d.reference.train["n"]
    assert d.avoidable_bias == pytest.approx(d.train_error - d.target_error.value)
    assert d.verdict.remedies and d.verdict.remedies[0].rank == 1
    assert d.schema_version >= 1 and d.run_dir is not None


def test_cli_on_the_same_run_directory_gives_the_same_numbers(diagnosed, tmp_path):
    run_dir = diagnosed.run_dir
    r = run_cli("diagnose", *CLI_FAST, "--out", str(run_dir))
    assert r.returncode == 0, r.stderr[-2000:]
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["fits"]["trained"] == 0 and saved["fits"]["reused"] == saved["fits"]["planned"]
    assert _numbers(saved) == _numbers(diagnosed.to_dict())
    # and the CLI printed the same summary as printing the result
    assert diagnosed.verdict.remedies[0].action in r.stdout
    assert f"Verdict: {diagnosed.verdict.label.upper().replace('_', ' ')}" in r.stdout


def test_printing_a_result_is_the_console_summary(diagnosed):
    """print(result) is the CLI's quiet form; summary(verbose=True) adds every table."""
    text = str(diagnosed)
    label = diagnosed.verdict.label.upper().replace("_", " ")
    assert text.startswith(f"Verdict: {label}") and "Top remedies" in text
    assert "Decomposition: 2 models" not in text
    assert str(diagnosed.run_dir / "results.json") in text
    full = diagnosed.summary(verbose=True)
    assert full.startswith(f"Verdict: {label}")
    assert "Decomposition: 2 models" in full and "Remedies, best first:" in full
    assert str(diagnosed.run_dir / "results.json") in full


def test_results_display_as_html_and_write_their_report(diagnosed):
    html = diagnosed._repr_html_()
    assert "<html" not in html.lower() and "http://" not in html and "https://" not in html
    assert diagnosed.verdict.label.replace("_", " ") in html.lower().replace("_", " ")
    path = diagnosed.report()
    assert path == diagnosed.run_dir / "report.html" and path.stat().st_size > 10_000


def test_analysis_options_are_saved_and_read_back_by_config(tmp_path):
    out = tmp_path / "run"
    r = decompose(ExperimentConfig(**FAST, epochs=2), rounds=3, sampling="subsample",
                  fraction=0.4, out=out, progress=False, report=False)
    assert r.decomposition.rounds == 3 and r.decomposition.sampling == "subsample"
    a = load_analysis(out / "config.yaml")
    assert (a.rounds, a.sampling, a.fraction) == (3, "subsample", 0.4)
    assert r.analysis["fraction"] == 0.4
    # the saved config alone reproduces the run: every fit is found again
    cli = run_cli("decompose", "--config", str(out / "config.yaml"), "--out", str(out),
                  "--no-progress", "--no-report")
    assert cli.returncode == 0, cli.stderr[-2000:]
    again = load_results(out)
    assert again.fits.trained == 0 and again.fits.reused == 3
    assert again.decomposition == r.decomposition


def test_the_api_raises_instead_of_exiting(tmp_path):
    with pytest.raises(ConfigError, match="rounds"):
        decompose(ExperimentConfig(**FAST), rounds=1, out=tmp_path / "x", progress=False)
    with pytest.raises(ConfigError, match="did you mean|Did you mean"):
        complexity_curve(ExperimentConfig(**FAST), param="widht", values=[8, 16],
                         out=tmp_path / "y", progress=False)
    with pytest.raises(BiasvarError, match="dataset"):
        diagnose(ExperimentConfig(dataset="cifar100"), out=tmp_path / "z", progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "z").exists()


def test_dry_run_returns_the_plan_without_training(tmp_path):
    plan = diagnose(ExperimentConfig(**FAST), dry_run=True, out=tmp_path / "p",
                    progress=False)
    assert isinstance(plan, Plan) and not (tmp_path / "p").exists()
    # quick profile: the reference, 2 split models (also the learning curve at n/2) and one
    # learning-curve fit at n/4
    assert len(plan.rows) == 1 + 2 + 1
    assert sum("decomposition split" in r["tag"] for r in plan.rows) == 2
    assert "fits planned" in str(plan)


def test_each_curve_on_a_tiny_model(tmp_path):
    cfg = ExperimentConfig(**{**FAST, "width": 16}, epochs=2)
    lc = learning_curve(cfg, sizes=[200, 600], seeds=1, out=tmp_path / "lc", progress=False,
                        report=False)
    assert lc.learning_curve.sizes == [200, 600] and lc.learning_curve.seeds == [0]
    cc = complexity_curve(cfg, param="width", values=[4, 16], seeds=1, out=tmp_path / "cc",
                          progress=False, report=False)
    assert cc.complexity_curve.values == [4, 16]
    assert cc.complexity_curve.best_value in (4, 16)
    assert cc.complexity_curve.reference_value == 16
    assert load_results(tmp_path / "cc").complexity_curve == cc.complexity_curve


def test_decompose_predictions_matches_an_independent_zero_one_computation():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 200, 4))
    lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    y = rng.integers(0, 4, size=200)
    r = decompose_predictions(lp, y, classes=["a", "b", "c", "d"])
    assert isinstance(r.decomposition, Decomposition) and r.run_dir is None
    preds = lp.argmax(-1)                                              # (R, m)
    loss = (preds != y).mean()
    main = np.array([np.bincount(p, minlength=4).argmax() for p in preds.T])  # mode, ties low
    assert r.decomposition.zero_one.loss.value == pytest.approx(loss)
    assert r.decomposition.zero_one.bias.value == pytest.approx((main != y).mean())
    assert r.decomposition.zero_one.variance.value == pytest.approx((preds != main).mean())
    assert r.verdict is not None and r.classes == ["a", "b", "c", "d"]


def test_results_round_trip_and_validation(diagnosed, tmp_path):
    d = diagnosed.to_dict()
    assert Results.from_dict(d).to_dict() == d
    bad = json.loads(json.dumps(d))
    bad["decomposition"]["zero_one"]["bias"]["value"] = "abc"
    with pytest.raises(BiasvarError, match=r"decomposition\.zero_one\.bias\.value"):
        Results.from_dict(bad)
    newer = {**d, "schema_version": 999}
    with pytest.raises(BiasvarError, match="newer biasvar"):
        Results.from_dict(newer)
    legacy = {k: v for k, v in d.items() if k != "schema_version"}  # written before versions
    assert Results.from_dict(legacy).verdict == diagnosed.verdict


def test_a_notebook_displays_a_diagnosis_inline(tmp_path):
    import html

    import nbformat
    from nbclient import NotebookClient

    cells = [
        "from biasvar import ExperimentConfig, diagnose",
        f"d = diagnose(ExperimentConfig(**{FAST!r}, epochs=2), out={str(tmp_path / 'nb')!r}, "
        "progress=False)",
        "d",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, timeout=240, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    shown = nb.cells[-1].outputs[0]["data"]
    assert "text/html" in shown and "text/plain" in shown
    saved = load_results(tmp_path / "nb")
    assert html.escape(saved.verdict.remedies[0].action, quote=False) in shown["text/html"]
    assert not math.isnan(saved.decomposition.zero_one.bias.value)


# --------------------------------------------------------------------------- the console

def test_console_default_is_the_verdict_on_one_screen(diagnosed):
    """The default output (on the stored fits: nothing trains) fits one screen: the verdict
    first, the top remedies and the report's path; no tables, the target's citation not at
    all (the report and --verbose give it)."""
    r = run_cli_here("diagnose", *CLI_FAST, "--out", str(diagnosed.run_dir))
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert len(lines) <= 25, r.stdout
    label = diagnosed.verdict.label.upper().replace("_", " ")
    first = next(i for i, line in enumerate(lines) if line.startswith("Verdict:"))
    assert lines[first].startswith(f"Verdict: {label}") and first <= 6
    top = [x for x in sorted(diagnosed.verdict.remedies, key=lambda x: x.rank)][:3]
    body = "\n".join(lines[first:])
    pos = [body.index(f"{x.rank}. {x.action}") for x in top]
    assert pos == sorted(pos)
    assert f"report: {diagnosed.run_dir / 'report.html'}" in lines
    assert "Decomposition:" not in r.stdout and "Remedies, best first" not in r.stdout
    source = diagnosed.target_error.source
    assert source.split(":", 1)[1].strip() not in r.stdout  # the citation is in the report


def test_console_verbose_has_every_table_and_the_citation_once(diagnosed):
    r = run_cli_here("diagnose", *CLI_FAST, "--out", str(diagnosed.run_dir), "--verbose")
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    assert "Decomposition: 2 models" in out and "Remedies, best first:" in out
    assert "n_train" in out  # the learning curve's table
    # the verdict still comes before the tables
    assert out.index("Verdict:") < out.index("Decomposition:")
    citation = diagnosed.target_error.source.split(":", 1)[1].strip()
    assert out.count(citation) == 1


def test_console_json_prints_only_the_results_path(diagnosed):
    r = run_cli("diagnose", *CLI_FAST, "--out", str(diagnosed.run_dir), "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == f"{diagnosed.run_dir / 'results.json'}\n"
    assert json.loads(Path(r.stdout.strip()).read_text())["command"] == "diagnose"
    # what would have been printed went to stderr, not away
    assert "run directory" in r.stderr
    r = run_cli_here("diagnose", *CLI_FAST, "--out", str(diagnosed.run_dir), "--json", "--dry-run")
    assert r.returncode == 2 and "--json with --dry-run" in r.stderr and r.stdout == ""
    r = run_cli_here("diagnose", *CLI_FAST, "--json", "--verbose")
    assert r.returncode == 2 and "not allowed with argument" in r.stderr
