"""The per-step log (steps.csv): the training loss over windows of optimizer steps and the
learning rate at each, written beside history.csv, kept across a resume, and carried into a
diagnosis's reference for the report's training curves.

Checked against what is computed independently: each epoch's train_loss in history.csv is the
mean over all its batches, so the windows' means weighted by their lengths must give it back;
the step schedule's learning rate is lr · gamma^(epoch − 1) with step_epochs 1.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from biasvar import ExperimentConfig, fit, load_data
from biasvar.train import Callback
from biasvar.train._checkpoint import STEP_COLUMNS, read_steps_csv
from biasvar.train._fit import STEP_POINTS

pytestmark = pytest.mark.timeout(240)

FAST = dict(dataset="digits", model="mlp", width=32, depth=1, threads=1, precision="fp32",
            channels_last="off", batch_size=32)


@pytest.fixture(scope="module")
def digits():
    return load_data(ExperimentConfig(dataset="digits"))


def _history(path) -> list[dict[str, float]]:  # noqa: ANN001
    lines = path.read_text().splitlines()
    head = lines[0].split(",")
    return [dict(zip(head, map(float, line.split(",")))) for line in lines[1:]]


def test_steps_give_back_each_epochs_loss_and_the_schedule(digits, tmp_path) -> None:
    cfg = ExperimentConfig(**FAST, epochs=3, optimizer="sgd", schedule="step", step_epochs=1,
                           step_gamma=0.5, lr=0.05)
    fit(cfg, digits, run_dir=tmp_path, progress=False)
    steps = read_steps_csv(tmp_path / "steps.csv")
    assert (tmp_path / "steps.csv").read_text().splitlines()[0] == ",".join(STEP_COLUMNS)
    per_epoch = len(digits.train) // 32
    total = 3 * per_epoch
    every = max(1, total // STEP_POINTS)
    assert [s["step"] for s in steps][-1] == total
    # windows of `every` steps, each epoch's last window ending at the epoch's last step
    ends = sorted({s for s in range(every, total + 1, every)}
                  | {e * per_epoch for e in range(1, 4)})
    assert [s["step"] for s in steps] == ends
    history = _history(tmp_path / "history.csv")
    for e, row in enumerate(history, 1):
        rows = [s for s in steps if s["epoch"] == e]
        starts = [max(prev, (e - 1) * per_epoch) for prev in
                  [(e - 1) * per_epoch] + [s["step"] for s in rows[:-1]]]
        lengths = [s["step"] - a for s, a in zip(rows, starts)]
        assert sum(lengths) == per_epoch
        mean = sum(s["loss"] * n for s, n in zip(rows, lengths)) / per_epoch
        assert mean == pytest.approx(row["train_loss"], rel=1e-4)
        for s in rows:
            assert s["lr"] == pytest.approx(0.05 * 0.5 ** (e - 1))


def test_a_resumed_fit_keeps_its_steps(digits, tmp_path) -> None:
    """Killed after epoch 1 and resumed: the same steps.csv as an uninterrupted fit."""
    cfg = ExperimentConfig(**FAST, epochs=2)

    class Killed(Exception):
        pass

    class KillAtEpochTwo(Callback):
        def on_epoch_start(self, trainer, epoch, **kwargs):  # noqa: ANN001, ANN003, ANN201
            if epoch == 2:
                raise Killed

    whole, parts = tmp_path / "whole", tmp_path / "parts"
    fit(cfg, digits, run_dir=whole, progress=False)
    with pytest.raises(Killed):
        fit(cfg, digits, run_dir=parts, progress=False, callbacks=[KillAtEpochTwo()])
    assert max(s["epoch"] for s in read_steps_csv(parts / "steps.csv")) == 1
    fit(cfg, digits, run_dir=parts, progress=False, resume=True)
    a, b = read_steps_csv(whole / "steps.csv"), read_steps_csv(parts / "steps.csv")
    assert [s["step"] for s in a] == [s["step"] for s in b]
    assert np.allclose([s["loss"] for s in a], [s["loss"] for s in b], rtol=1e-5)


def test_the_fit_result_carries_them_and_they_are_finite(digits) -> None:
    res = fit(ExperimentConfig(**FAST, epochs=1), digits, progress=False)
    assert res.steps and all(math.isfinite(s["loss"]) and s["lr"] > 0 for s in res.steps)
    assert len(res.steps) <= STEP_POINTS + 1
