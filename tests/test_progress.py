"""Progress output: bars only on a terminal; in a log (stderr not a terminal) one short line per
fit and no carriage returns."""
from __future__ import annotations

import io
import re
import sys

import pytest

from biasvar import ExperimentConfig, fit, load_data
from biasvar.analysis import _api
from biasvar.analysis.jobs import FitJob, JobResult
from biasvar.train import TqdmProgress

FAST = dict(dataset="digits", model="mlp", width=16, epochs=2, precision="fp32",
            channels_last="off", threads=1)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def digits():
    return load_data(ExperimentConfig(dataset="digits"))


def test_diagnose_in_a_log_prints_a_line_per_fit_and_no_bar(tmp_path, capfd):
    _api.diagnose(ExperimentConfig(**FAST), out=tmp_path / "r", progress=True, report=False)
    out, err = capfd.readouterr()
    assert "\r" not in out + err
    lines = out.splitlines()
    done = [ln for ln in lines if re.fullmatch(r"fit \d/4 \(.+\) done in \d+(\.\d)? s", ln)]
    assert [ln.split()[1] for ln in done] == ["1/4", "2/4", "3/4", "4/4"], out
    assert any("(decomposition split 1/2)" in ln for ln in done)
    assert len(lines) <= 3 + 4 + 2, out   # the header, a line per fit, perhaps a note
    assert not err.strip(), err


def test_no_progress_prints_no_fit_lines(tmp_path, capfd):
    _api.diagnose(ExperimentConfig(**FAST), out=tmp_path / "r", progress=False, report=False)
    out, err = capfd.readouterr()
    assert "\r" not in out + err and " done in " not in out


def test_fit_bar_in_a_log_is_one_line(digits, capfd):
    res = fit(ExperimentConfig(**FAST), digits, progress=True)
    out, err = capfd.readouterr()
    assert "\r" not in out + err
    steps = len(res.history) * (len(digits.train) // res.config.batch_size)
    assert re.fullmatch(rf"mlp on digits: {steps}/{steps} steps in \d+ s\n", out), out


def test_bars_show_on_a_terminal(monkeypatch, capsys):
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    bar = _api._OverallBar(10, enabled=True, fits=1)
    bar.update(5)
    bar.fit_done(FitJob(ExperimentConfig(**FAST), 0, tag="reference"),
                 JobResult("k", {}, [], 10, 1.0))
    bar.finish()
    p = TqdmProgress()
    p.start(4, "reference")
    p.update(4)
    p.close()
    assert not bar.lines and "\r" in term.getvalue() and "4/4" in term.getvalue()
    assert capsys.readouterr().out == ""  # no per-fit line where the bar shows


def test_disabled_bar_shows_nothing_even_on_a_terminal(monkeypatch, capsys):
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    bar = _api._OverallBar(10, enabled=False, fits=1)
    bar.update(5)
    bar.finish()
    assert term.getvalue() == "" and capsys.readouterr().out == ""
