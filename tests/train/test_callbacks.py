"""The training loop's callbacks (every class, skorch style), its hooks, stopping from a user
callback, the public surface of ``biasvar.train`` and the optimizer/schedule registries."""
from __future__ import annotations

import doctest
import inspect
import io
from dataclasses import fields

import numpy as np
import pytest
import torch

import biasvar.train as train
from biasvar import ExperimentConfig, fit, load_data
from biasvar.errors import ConfigError, TrainingDiverged
from tests.conftest import require_module
from biasvar.train import (HISTORY_COLUMNS, HOOKS, OPTIMIZERS, SCHEDULES, Callback, Checkpoint,
                           EarlyStopping, HistoryLogger, Progress, Snapshots, TensorBoardLogger,
                           TqdmProgress, load_checkpoint, predict)

# tiny and fast: a narrow CNN on 8x8 digits, one thread, no precision timing
TINY = dict(dataset="digits", model="cnn", width=8, threads=1, precision="fp32",
            channels_last="off")


@pytest.fixture(scope="module")
def digits():
    return load_data(ExperimentConfig(dataset="digits"))


def _val_loss(model: torch.nn.Module, data) -> float:
    lp = torch.from_numpy(predict(model, data, "val"))
    return float(torch.nn.functional.nll_loss(lp, data.val.y))


class Worsen(Callback):
    """Before epoch ``epoch``: scramble the weights and freeze the learning rate at 0, so that
    epoch is certainly worse than the one before (the best epoch is then not the last)."""

    def __init__(self, epoch: int = 2):
        self.epoch = epoch

    def on_epoch_start(self, trainer, epoch, **kwargs):
        if epoch == self.epoch:
            gen = torch.Generator().manual_seed(0)
            with torch.no_grad():
                for p in trainer.model.parameters():
                    p.add_(torch.randn(p.shape, generator=gen) * 0.3)
            for g in trainer.optimizer.param_groups:
                g["lr"] = 0.0
            trainer.scheduler.base_lrs = [0.0] * len(trainer.scheduler.base_lrs)


class Recorder:
    """A progress reporter (not a Callback): records what the progress callback tells it."""

    def __init__(self):
        self.calls: list[tuple] = []

    def start(self, total_steps, desc):
        self.calls.append(("start", total_steps, desc))

    def update(self, steps):
        self.calls.append(("update", steps))

    def postfix(self, values):
        self.calls.append(("postfix", sorted(values)))

    def close(self):
        self.calls.append(("close",))


# -- one case per callback class: (construct in tmp_path, check after a 2-epoch fit) ------------

def _check_base(cb, res, data, tmp_path):
    # the no-op base class changes nothing: the same fit without it gives the same history
    again = fit(res.config, data, progress=False)
    assert [h["val_loss"] for h in again.history] == [h["val_loss"] for h in res.history]


def _check_early_stopping(cb, res, data, tmp_path):
    losses = [h["val_loss"] for h in res.history]
    assert losses[1] > losses[0]  # Worsen made epoch 2 worse...
    assert len(res.history) == 2 and cb.best_epoch == 1  # ...so patience 1 stopped after it
    assert res.stop_reason is not None and "early stopping" in res.stop_reason
    # the weights put back are epoch 1's: their validation loss is epoch 1's, not epoch 2's
    assert _val_loss(res.model, data) == pytest.approx(losses[0], rel=1e-6)
    assert _val_loss(res.model, data) != pytest.approx(losses[1], rel=1e-3)


def _check_checkpoint(cb, res, data, tmp_path):
    last = load_checkpoint(tmp_path / "ck" / "last.pt")
    assert last["epoch"] == 2 and last["history"] == res.history
    for k, v in res.model.state_dict().items():  # no restore: the final model is epoch 2's
        torch.testing.assert_close(v, last["model"][k])
    best = load_checkpoint(tmp_path / "ck" / "best.pt")
    assert best["kind"] == "best"
    assert best["epoch"] == 1 + int(np.argmin([h["val_loss"] for h in res.history]))
    assert best["value"] == min(h["val_loss"] for h in res.history)
    # last.pt resumes: a finished fit resumed trains nothing and returns the same history
    resumed = fit(res.config, data, resume=tmp_path / "ck" / "last.pt", progress=False)
    assert resumed.resumed_from_epoch == 2 and resumed.history == res.history


def _check_history(cb, res, data, tmp_path):
    lines = (tmp_path / "h.csv").read_text().splitlines()
    assert lines[0].split(",") == HISTORY_COLUMNS and len(lines) == 3
    for line, row in zip(lines[1:], res.history):
        values = dict(zip(HISTORY_COLUMNS, map(float, line.split(","))))
        for c in HISTORY_COLUMNS:
            assert values[c] == pytest.approx(row[c], rel=1e-7)


def _check_tensorboard(cb, res, data, tmp_path):
    ea = require_module("tensorboard.backend.event_processing.event_accumulator",
                        "pip install tensorboard")
    acc = ea.EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    events = acc.Scalars("val/loss")
    assert [e.step for e in events] == [1, 2]
    assert [e.value for e in events] == pytest.approx([h["val_loss"] for h in res.history])
    assert cb._writer is None  # closed at the end of the fit


def _check_progress(cb, res, data, tmp_path):
    calls = cb.reporter.calls
    steps = res.config.epochs * (len(data.train) // res.config.batch_size)
    assert calls[0][:2] == ("start", steps) and calls[-1] == ("close",)
    assert sum(c[1] for c in calls if c[0] == "update") == steps  # CPU: every step reported
    assert [c for c in calls if c[0] == "postfix"] == [("postfix", ["loss", "val_acc"])] * 2


def _check_tqdm(cb, res, data, tmp_path):
    steps = res.config.epochs * (len(data.train) // res.config.batch_size)
    assert cb.bar is None  # closed
    assert f"{steps}/{steps}" in cb.kwargs["file"].getvalue()


def _check_snapshots(cb, res, data, tmp_path):
    # the weights after epochs 1 and 2, in memory and on disk; epoch 2's are the final model
    s1 = load_checkpoint(tmp_path / "snap" / "snapshot-1.pt")
    s2 = load_checkpoint(tmp_path / "snap" / "snapshot-2.pt")
    assert (s1["kind"], s1["snapshot"], s1["epoch"]) == ("snapshot", 1, 1)
    for k, v in res.model.state_dict().items():
        assert torch.equal(s2["model"][k], v) and torch.equal(cb.states[2][k], v), k
        assert torch.equal(cb.states[1][k], s1["model"][k]), k
    assert any(not torch.equal(s1["model"][k], s2["model"][k]) for k in s1["model"])


CASES = {
    Callback: (lambda tmp: Callback(), _check_base),
    Snapshots: (lambda tmp: Snapshots([1, 2], tmp / "snap"), _check_snapshots),
    EarlyStopping: (lambda tmp: EarlyStopping("val_loss", patience=1), _check_early_stopping),
    Checkpoint: (lambda tmp: Checkpoint(tmp / "ck"), _check_checkpoint),
    HistoryLogger: (lambda tmp: HistoryLogger(tmp / "h.csv"), _check_history),
    TensorBoardLogger: (lambda tmp: TensorBoardLogger(tmp / "tb"), _check_tensorboard),
    Progress: (lambda tmp: Progress(reporter=Recorder()), _check_progress),
    TqdmProgress: (lambda tmp: TqdmProgress(file=io.StringIO()), _check_tqdm),
}


def test_every_callback_class_has_a_case():
    classes = {obj for obj in vars(train).values()
               if isinstance(obj, type) and issubclass(obj, Callback)}
    assert classes == set(CASES)


@pytest.mark.parametrize("cls", list(CASES), ids=lambda c: c.__name__)
def test_callback(cls, digits, tmp_path):
    make, check = CASES[cls]
    cb = make(tmp_path)
    assert isinstance(cb, cls)
    for name, kwargs in HOOKS.items():  # every hook takes the trainer and its documented kwargs
        inspect.signature(getattr(cb, name)).bind(object(), **{k: None for k in kwargs})
    extra = [Worsen(2)] if cls is EarlyStopping else []
    cfg = ExperimentConfig(**TINY, epochs=2, schedule="constant", optimizer="sgd", lr=0.05)
    if cls in (Progress, TqdmProgress):
        res = fit(cfg, digits, progress=cb)
    else:
        res = fit(cfg, digits, callbacks=[*extra, cb], progress=False)
    check(cb, res, digits, tmp_path)


# -- the hooks ---------------------------------------------------------------------------------

def test_hooks_are_called_in_order_with_their_kwargs(digits):
    seen: list[tuple] = []

    class Spy(Callback):
        def on_fit_start(self, trainer, **kw):
            seen.append(("on_fit_start", kw))

        def on_epoch_start(self, trainer, **kw):
            seen.append(("on_epoch_start", kw))

        def on_batch_end(self, trainer, **kw):
            assert kw["loss"].ndim == 0 and not kw["loss"].requires_grad
            seen.append(("on_batch_end", {"step": kw["step"]}))

        def on_epoch_end(self, trainer, **kw):
            seen.append(("on_epoch_end", {"epoch": kw["logs"]["epoch"]}))

        def on_fit_end(self, trainer, **kw):
            seen.append(("on_fit_end", kw))

    cfg = ExperimentConfig(**TINY, epochs=2)
    res = fit(cfg, digits, callbacks=[Spy()], progress=False)
    steps = len(digits.train) // res.config.batch_size
    epoch = lambda k: [("on_epoch_start", {"epoch": k}),  # noqa: E731
                       *[("on_batch_end", {"step": s}) for s in range(1, steps + 1)],
                       ("on_epoch_end", {"epoch": k})]
    assert seen == [("on_fit_start", {}), *epoch(1), *epoch(2), ("on_fit_end", {"error": None})]


def test_a_hook_nobody_overrides_is_not_called_per_batch(digits):
    batch_hooks = []

    class EpochOnly(Callback):
        def on_epoch_end(self, trainer, logs, **kw):
            batch_hooks.append(list(trainer._batch_end))

    fit(ExperimentConfig(**TINY, epochs=1), digits, callbacks=[EpochOnly()], progress=False)
    assert batch_hooks == [[]]


def test_on_fit_end_sees_the_error_and_the_progress_bar_is_closed(digits):
    ends = []

    class Explode(Callback):
        def on_epoch_end(self, trainer, logs, **kw):
            for g in trainer.optimizer.param_groups:
                g["lr"] = 1e12
            trainer.scheduler.base_lrs = [1e12] * len(trainer.scheduler.base_lrs)

        def on_fit_end(self, trainer, error=None, **kw):
            ends.append(error)

    rec = Recorder()
    cfg = ExperimentConfig(**TINY, epochs=3, optimizer="sgd", schedule="constant",
                           batchnorm=False, lr=0.01)
    with pytest.raises(TrainingDiverged) as e:
        fit(cfg, digits, callbacks=[Explode()], progress=rec)
    assert ends == [e.value] and rec.calls[-1] == ("close",)


# -- stopping from a user callback (what pruning needs) ----------------------------------------

class StopAfter(Callback):
    def __init__(self, k: int):
        self.k, self.seen = k, []

    def on_epoch_end(self, trainer, logs, **kwargs):
        self.seen.append(logs["val_loss"])
        if logs["epoch"] == self.k:
            trainer.stop(f"pruned after epoch {self.k}")


@pytest.mark.parametrize("k", [1, 2])
def test_a_user_callback_stops_training_after_epoch_k(digits, tmp_path, k):
    cfg = ExperimentConfig(**TINY, epochs=4)
    stop = StopAfter(k)
    res = fit(cfg, digits, run_dir=tmp_path, callbacks=[stop], progress=False)
    assert [h["epoch"] for h in res.history] == list(range(1, k + 1))
    assert stop.seen == [h["val_loss"] for h in res.history]
    assert res.stop_reason == f"pruned after epoch {k}"
    ck = load_checkpoint(tmp_path / "last.pt")
    assert ck["epoch"] == k and ck["stop_reason"] == res.stop_reason
    # the stop is part of the run: resuming it does not train on
    resumed = fit(cfg, digits, run_dir=tmp_path, resume=True, progress=False)
    assert len(resumed.history) == k and resumed.stop_reason == res.stop_reason


def test_the_callback_docstring_example_runs():
    test = doctest.DocTestFinder().find(Callback, "Callback", globs={})[0]
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert test.examples and runner.summarize(verbose=False).failed == 0


# -- the public surface ------------------------------------------------------------------------

def test_public_names():
    for name in ("load_checkpoint", "build_model", "preflight", "checkpoint_bytes",
                 "choose_precision", "resolve_device", "Callback", "Progress",
                 "most_confidently_wrong", "OPTIMIZERS", "SCHEDULES"):
        assert name in train.__all__ and hasattr(train, name), name
    assert all(hasattr(train, n) for n in train.__all__)


def test_checkpoint_bytes_round_trip(tmp_path):
    ck = {"format": train.CHECKPOINT_FORMAT, "version": train.CHECKPOINT_VERSION,
          "model": {"w": torch.arange(3.0)}}
    (tmp_path / "x.pt").write_bytes(train.checkpoint_bytes(ck))
    back = load_checkpoint(tmp_path / "x.pt")
    assert back["format"] == train.CHECKPOINT_FORMAT and back["model"]["w"].tolist() == [0, 1, 2]


# -- optimizers and schedules ------------------------------------------------------------------

def test_config_choices_are_the_registry_names():
    choices = {f.name: f.metadata.get("choices") for f in fields(ExperimentConfig)}
    assert sorted(choices["optimizer"]) == OPTIMIZERS.names()
    assert sorted(choices["schedule"]) == SCHEDULES.names()


def test_unknown_optimizer_or_schedule_is_a_did_you_mean_error():
    with pytest.raises(ConfigError, match="optimizer: unknown value 'adamm'. Did you mean 'adam'"):
        OPTIMIZERS.get("adamm")
    with pytest.raises(ConfigError, match="schedule: unknown value 'cosin'. Did you mean 'cosine'"):
        SCHEDULES.get("cosin")


@pytest.mark.parametrize("name,kind", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                       ("adamw", torch.optim.AdamW)])
def test_optimizers_are_built_from_the_registry(name, kind):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    cfg = ExperimentConfig(optimizer=name, lr=0.02, weight_decay=1e-3, momentum=0.9)
    opt = train.make_optimizer(cfg, model)
    assert type(opt) is kind and opt.param_groups[0]["lr"] == 0.02
    # decay on weights only: the bias and the batch-norm parameters are exempt
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-3, 0.0]
    assert [len(g["params"]) for g in opt.param_groups] == [1, 3]


def _lrs(schedule: str, steps: int = 12, steps_per_epoch: int = 3, **kw) -> list[float]:
    cfg = ExperimentConfig(schedule=schedule, optimizer="sgd", lr=1.0, momentum=0.0, **kw)
    opt = train.make_optimizer(cfg, torch.nn.Linear(2, 2))
    sched = train.make_scheduler(cfg, opt, steps, steps_per_epoch)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_schedules_are_built_from_the_registry():
    assert _lrs("constant") == [1.0] * 12
    assert _lrs("step", step_epochs=2, step_gamma=0.5) == [1.0] * 6 + [0.5] * 6
    cos = _lrs("cosine")
    assert cos[0] == 1.0 and cos[6] == pytest.approx(0.5) and all(np.diff(cos) < 0)
    one = _lrs("onecycle")
    assert 0.95 < max(one) <= 1.0 and one[0] < 0.1 and one[-1] < 0.01  # warm up, anneal



@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_times_bf16_only_where_it_is_native(monkeypatch, native):
    """Emulated bf16 is never timed (it cost seconds of probing for a choice it never wins);
    with native bf16 both precisions are timed, each with and without channels_last."""
    from biasvar.config import resolve
    from biasvar.data import load_data
    from biasvar.train import _runtime

    monkeypatch.setattr(_runtime, "native_bf16", lambda device: native)
    monkeypatch.setattr(_runtime, "_PRECISION_CACHE", {})
    timed = []
    monkeypatch.setattr(_runtime, "_time_steps",
                        lambda m, x, y, d, p, cl, **k: timed.append((p, cl)) or 1.0)
    cfg = resolve(ExperimentConfig(dataset="digits", model="cnn", batch_size=32))
    data = load_data(cfg)
    out = train.choose_precision(cfg, train.build_model(cfg, data), data.input_shape,
                                 data.num_classes, torch.device("cpu"), conv=True)
    assert sorted(timed) == sorted([("fp32", False), ("fp32", True)]
                                   + ([("bf16", False), ("bf16", True)] if native else []))
    assert out["precision"] == "fp32" and ("bf16" in out) is (not native)
    # an explicit --precision bf16 is honoured either way
    timed.clear()
    cfg16 = resolve(ExperimentConfig(dataset="digits", model="cnn", precision="bf16",
                                     channels_last="off"))
    assert train.choose_precision(cfg16, train.build_model(cfg16, data), data.input_shape,
                                  data.num_classes, torch.device("cpu"),
                                  conv=True)["precision"] == "bf16"
