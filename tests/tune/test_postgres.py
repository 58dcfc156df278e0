"""Tuning against a real PostgreSQL server (the ``postgres_url`` fixture: a throw-away cluster).

First the server itself, independent of biasvar: two processes sharing one Optuna study through
it hand out unique trial numbers and stop at the trial budget. Then ``biasvar tune
--storage URL`` with two workers — two ``biasvar tune`` processes started at once on the same
study, as on two machines — finish exactly the trials asked for, and a server that cannot be
reached or a malformed URL is one line of error, exit status 2, and nothing written.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from ..conftest import ROOT

pytestmark = pytest.mark.timeout(600)

_FINISHED = ("COMPLETE", "PRUNED", "FAIL")

# one process of the raw Optuna check: join the study (creating it if first) and optimise until
# 10 trials of the study, counted over every process, are complete
_OPTUNA_WORKER = textwrap.dedent("""
    import sys
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=sys.argv[1], study_name=sys.argv[2],
                                load_if_exists=True)
    study.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2,
                   callbacks=[MaxTrialsCallback(10, states=(TrialState.COMPLETE,))])
""")

TINY = ["--dataset", "digits", "--model", "mlp", "--width", "16", "--epochs", "1",
        "--threads", "1", "--precision", "fp32", "--channels-last", "off", "--seeds", "1",
        "--sampler", "random", "--no-progress", "--no-report"]

SPACE = """\
lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}
weight_decay: {type: float, low: 0.0, high: 1.0e-3}
"""


def _tune_available() -> bool:
    """The tune command is there (it is being built alongside these tests)."""
    return (ROOT / "src" / "biasvar" / "tune" / "__init__.py").is_file() and \
        '"tune"' in (ROOT / "src" / "biasvar" / "cli.py").read_text(encoding="utf-8")


needs_tune = pytest.mark.skipif(not _tune_available(),
                                reason="biasvar tune is not built yet (src/biasvar/tune)")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "biasvar.cli", *args]


def _trials(url: str, study: str) -> list:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=study, storage=url).get_trials(deepcopy=False)


def _unique_numbers(trials: list) -> None:
    numbers = [t.number for t in trials]
    assert len(set(numbers)) == len(numbers), sorted(numbers)
    assert sorted(numbers) == list(range(len(numbers)))  # handed out without gaps


def test_two_processes_share_one_study_on_the_server(postgres_url):
    from optuna.trial import TrialState

    import optuna

    study = f"raw-{uuid.uuid4().hex[:8]}"
    # Optuna's tables are made first, as its docs do before starting workers: two processes
    # creating them at once on an empty database collide (CREATE TYPE ... already exists);
    # what is checked here is the server handing out trials to two processes at once
    optuna.storages.RDBStorage(postgres_url).engine.dispose()
    procs = [subprocess.Popen([sys.executable, "-c", _OPTUNA_WORKER, postgres_url, study],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
    trials = _trials(postgres_url, study)
    _unique_numbers(trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    # the callback runs after each trial: a process that saw 9 complete starts one more, so
    # two processes may finish one trial past the budget (Optuna does not promise more)
    assert 10 <= len(complete) <= 11, len(complete)
    assert len(complete) == len(trials)  # nothing left running, nothing failed
    assert all(0 <= t.params["x"] <= 1 and t.value == pytest.approx(t.params["x"] ** 2)
               for t in complete)


@needs_tune
def test_tune_with_two_workers_on_postgres(fresh_postgres_url, tmp_path):
    postgres_url = fresh_postgres_url  # empty: the two processes meet it at once
    space = tmp_path / "space.yaml"
    space.write_text(SPACE, encoding="utf-8")
    study = f"tune-{uuid.uuid4().hex[:8]}"
    common = [*TINY, "--space", str(space), "--trials", "6", "--storage", postgres_url,
              "--study", study]
    # two "machines": each its own run directory, one study on the server
    procs = [subprocess.Popen(_cli("tune", *common, "--out", str(tmp_path / f"host-{i}")),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=tmp_path)
             for i in range(2)]
    outs = [p.communicate(timeout=540) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, f"{out[-2000:]}\n{err[-3000:]}"
    trials = _trials(postgres_url, study)
    _unique_numbers(trials)
    # a trial a worker started after the other took the last of the 6 is closed at once as
    # FAIL with the user attribute "surplus" (nothing trained): it is not one of the study's
    surplus = [t for t in trials if t.user_attrs.get("surplus")]
    finished = [t for t in trials if t.state.name in _FINISHED and t not in surplus]
    assert len(finished) == 6, [(t.number, t.state.name, t.user_attrs) for t in trials]
    assert all(t.state.name == "FAIL" and not t.params for t in surplus), surplus
    assert len(finished) + len(surplus) == len(trials)  # none left running or waiting
    assert any(t.state.name == "COMPLETE" for t in finished)
    # each host wrote its results; the one that ended last lists all 6, by their numbers
    listed = []
    for i in range(2):
        data = json.loads((tmp_path / f"host-{i}" / "tune.json").read_text(encoding="utf-8"))
        assert data["storage"] == postgres_url  # no password to redact here
        listed.append(sorted(t["number"] for t in data["trials"]))
    assert sorted(t.number for t in finished) in listed
    # the host that ended first may list the other's trials still running then (not surplus)
    kept = {t.number for t in trials if not t.user_attrs.get("surplus")}
    assert all(set(x) <= kept for x in listed), (
        listed, [(t.number, t.state.name, t.user_attrs) for t in trials])
    # the report reads what the tune wrote (--no-report left it out)
    from biasvar.report import render_tune_report

    page = render_tune_report(tmp_path / "host-0").read_text(encoding="utf-8")
    assert "<svg" in page and "biasvar train --config best_config.yaml" in page


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_tune
@pytest.mark.parametrize("kind", ["unreachable", "malformed"])
def test_bad_storage_is_one_line_exit_2_nothing_written(postgres_url, tmp_path, kind):
    scheme = postgres_url.split("://", 1)[0]  # with its driver: the URL, not the driver, is bad
    port = _closed_port() if kind == "unreachable" else "notaport"
    url = f"{scheme}://postgres@127.0.0.1:{port}/biasvar_test"
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(_cli("tune", *TINY, "--trials", "2", "--storage", url),
                          capture_output=True, text=True, timeout=180, cwd=work)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("biasvar: error:") and "storage" in lines[0].lower(), lines
    assert "Traceback" not in proc.stderr
    assert list(work.iterdir()) == []  # no run directory, no journal, nothing
    assert not (Path(tmp_path) / "runs").exists() or not any((tmp_path / "runs").iterdir())


@needs_tune
def test_a_plain_postgresql_url_works_with_psycopg2(postgres_url, tmp_path):
    """``postgresql://`` as users write it (and as biasvar's messages suggest) with the driver
    biasvar's ``postgres`` extra installs, psycopg2 — SQLAlchemy 2.1 alone would look for
    psycopg 3 there."""
    import importlib.util

    if importlib.util.find_spec("psycopg") is not None:
        pytest.skip("psycopg 3 is installed: a plain postgresql:// uses it anyway")
    plain = postgres_url.replace("postgresql+psycopg2://", "postgresql://", 1)
    study = f"plain-{uuid.uuid4().hex[:8]}"
    proc = subprocess.run(_cli("tune", *TINY, "--trials", "1", "--pruner", "none",
                               "--storage", plain, "--study", study,
                               "--out", str(tmp_path / "run")),
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [t.state.name for t in _trials(postgres_url, study)] == ["COMPLETE"]
