"""A diverged training is not a model: ``fit`` raises TrainingDiverged, the CLI exits 2.

The rules (``biasvar.train._fit``): with start = the first batch's loss before any update and
m = END_MARGIN · ln K, an epoch whose mean training loss exceeds EXPLODED_FACTOR × max(start,
ln K) stops the fit at once; a finished fit diverged when it ends above start + m, or rose above
start + m and ends no better than a uniform guess (above ln K − m).
"""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from biasvar import ExperimentConfig, cli, fit, load_data
from biasvar.analysis.jobs import noisy_labels
from biasvar.errors import TrainingDiverged
from biasvar.train import Callback, load_checkpoint
from biasvar.train._fit import END_MARGIN, ended_diverged, exploded

FAST = dict(dataset="digits", model="mlp", width=32, depth=1, threads=1, precision="fp32",
            channels_last="off")
EXPLODING = dict(FAST, lr=10.0, optimizer="sgd", momentum=0.99)
FLAGS = ["--dataset", "digits", "--model", "mlp", "--width", "32", "--depth", "1",
         "--threads", "1", "--precision", "fp32", "--channels-last", "off", "--no-progress",
         "--no-report"]
LN10 = math.log(10)


@pytest.fixture(scope="module")
def digits():
    return load_data(ExperimentConfig(dataset="digits"))


def _noisy(data, fraction: float):
    y = noisy_labels(data.train.y.numpy(), fraction, data.num_classes, seed=0)
    return replace(data, train=replace(data.train, y=torch.from_numpy(y)))


# -- the rules ----------------------------------------------------------------------------------

def test_an_epoch_explodes_at_ten_times_the_start_or_chance():
    assert exploded(2.9e8, 2.3, 10) and exploded(24.0, 2.3, 10)
    assert not exploded(6.6, 2.3, 10)  # a spike a run can recover from: left to the end rules
    assert not exploded(0.6, 0.008, 10)  # fine-tuning: 75× a tiny start is still below ln K


@pytest.mark.parametrize("start,losses,final,diverged", [
    (2.30, [0.9, 0.3, 0.1], None, False),          # learned
    (2.30, [1.4, 1.26, 1.24], None, False),        # label smoothing 0.3: a higher floor
    (2.28, [2.33, 2.30, 2.29], None, False),       # random labels: near ln K, not worse
    (2.35, [2.34, 2.31, 2.309], None, False),      # a learning rate too small: not divergence
    (0.008, [0.63, 0.14, 0.06], None, False),      # fine-tuning at a higher learning rate
    (2.30, [1.0, 2.0, 2.9], None, True),           # ended above the start: got worse
    (2.30, [6.6, 2.32, 2.30], None, True),         # exploded, then collapsed at chance
    (2.30, [0.5, 0.3, 4.0], 2, False),             # early stopping restores epoch 2
])
def test_the_end_of_fit_rules(start, losses, final, diverged):
    why = ended_diverged(start, losses, 10, final=final)
    assert (why is not None) == diverged, why


def test_the_margin_is_a_tenth_of_ln_k():
    assert ended_diverged(2.30, [2.30 + 0.99 * END_MARGIN * LN10], 10) is None
    assert ended_diverged(2.30, [2.30 + 1.01 * END_MARGIN * LN10], 10) is not None


# -- fit ------------------------------------------------------------------------------------------

def test_an_exploding_fit_raises_with_the_numbers_and_the_fix(digits, tmp_path):
    with pytest.raises(TrainingDiverged) as e:
        fit(ExperimentConfig(**EXPLODING, epochs=3), digits, run_dir=tmp_path, progress=False)
    msg = str(e.value)
    assert "diverged" in msg and "epoch 1" in msg and "starting loss 2.3" in msg
    assert "nothing was saved" in msg and not (tmp_path / "last.pt").exists()
    assert "try --lr 1)" in msg and "try --momentum 0.9" in msg


class Blowup(Callback):
    """Before epoch 2: the classifier's weights × 1000 and the learning rate 0, so epoch 2's
    loss is huge but finite (confidently wrong), and no step repairs it."""

    def on_epoch_start(self, trainer, epoch, **kwargs):
        if epoch == 2:
            with torch.no_grad():
                trainer.model.head.weight.mul_(1000.0)
            for g in trainer.optimizer.param_groups:
                g["lr"] = 0.0
            trainer.scheduler.base_lrs = [0.0] * len(trainer.scheduler.base_lrs)


def test_an_exploded_epoch_is_not_checkpointed(digits, tmp_path):
    cfg = ExperimentConfig(**FAST, epochs=3, schedule="constant")
    with pytest.raises(TrainingDiverged) as e:
        fit(cfg, digits, run_dir=tmp_path, progress=False, callbacks=[Blowup()])
    assert "epoch 2" in str(e.value) and "(epoch 1) is kept" in str(e.value)
    ck = load_checkpoint(tmp_path / "last.pt")
    assert ck["epoch"] == 1 and len(ck["history"]) == 1


@pytest.mark.parametrize("case", ["plain", "label_smoothing", "noisy_labels", "l1",
                                  "tiny_set"])
def test_legitimate_runs_are_not_flagged(digits, case):
    cfg = ExperimentConfig(**FAST, epochs=3)
    data, rows = digits, None
    if case == "label_smoothing":
        cfg = replace(cfg, label_smoothing=0.3)
    elif case == "noisy_labels":
        data = _noisy(digits, 0.5)
    elif case == "l1":
        cfg = replace(cfg, l1=1e-3)
    elif case == "tiny_set":  # one batch per epoch
        rows = torch.arange(20).numpy()
    res = fit(cfg, data, train_indices=rows, progress=False)
    assert abs(res.start_loss - LN10) < 0.2  # a fresh model starts near ln K
    assert len(res.history) == 3


def test_fine_tuning_from_weights_is_not_flagged(digits, tmp_path):
    first = fit(ExperimentConfig(**FAST, epochs=6), digits, progress=False)
    torch.save(first.model.state_dict(), tmp_path / "w.pt")
    # ten times the learning rate: the loss leaves its low start for an epoch, then returns
    res = fit(ExperimentConfig(**FAST, epochs=3, lr=0.03, weights=str(tmp_path / "w.pt")),
              digits, progress=False)
    assert res.start_loss < 0.5 and max(h["train_loss"] for h in res.history) > res.start_loss


def test_resume_keeps_the_start_loss(digits, tmp_path):
    class Interrupt(Callback):  # a kill after epoch 1 was saved
        def on_epoch_end(self, trainer, logs, **kw):
            if logs["epoch"] == 2:
                raise KeyboardInterrupt

    cfg = ExperimentConfig(**FAST, epochs=3)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, digits, run_dir=tmp_path, progress=False, callbacks=[Interrupt()])
    start = load_checkpoint(tmp_path / "last.pt")["start_loss"]
    res = fit(cfg, digits, run_dir=tmp_path, resume=True, progress=False)
    assert res.resumed_from_epoch == 1 and len(res.history) == 3
    assert res.start_loss == start and load_checkpoint(tmp_path / "last.pt")["start_loss"] == start
    # a checkpoint written before the start was recorded resumes with ln K as the start
    ck = load_checkpoint(tmp_path / "last.pt")
    ck.pop("start_loss")
    ck["epoch"], ck["history"] = 2, ck["history"][:2]
    torch.save(ck, tmp_path / "old.pt")
    again = fit(cfg, digits, resume=tmp_path / "old.pt", progress=False)
    assert again.start_loss is None and len(again.history) == 3


# -- the command line -----------------------------------------------------------------------------

def test_train_stops_with_a_clean_message(capsys, tmp_path):
    rc = cli.main(["train", *FLAGS, "--lr", "10", "--optimizer", "sgd", "--momentum", "0.99",
                   "--epochs", "3", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("biasvar: error: ") and "Traceback" not in err
    assert "training diverged" in err and "--lr 1" in err
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_an_analysis_fit_stops_the_analysis_without_results(capsys, tmp_path):
    rc = cli.main(["decompose", *FLAGS, "--lr", "10", "--optimizer", "sgd", "--momentum",
                   "0.99", "--epochs", "3", "--rounds", "2", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and "training diverged" in err and "decomposition" in err
    assert not (tmp_path / "run" / "results.json").exists()
    assert not list((tmp_path / "run").glob("fits/*/result.json"))
    assert err.strip().splitlines()[-1].startswith("biasvar: error: ") and "Traceback" not in err
