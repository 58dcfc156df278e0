"""Callbacks around the training loop: early stopping, checkpoints, history, TensorBoard, progress.

``fit`` does its bookkeeping through these; user callbacks (``fit(callbacks=[...])``) get the
same hooks. Every hook is optional and receives the trainer plus keyword arguments, so new
hooks and arguments can be added without breaking user callbacks (the skorch pattern).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .._io import atomic_write_bytes, atomic_write_text
from ._checkpoint import checkpoint_bytes, history_csv

if TYPE_CHECKING:
    from ._fit import Trainer

__all__ = ["Callback", "EarlyStopping", "Checkpoint", "Snapshots", "HistoryLogger", "TensorBoardLogger",
           "Progress", "TqdmProgress", "HOOKS"]

#: The hooks, in the order a fit calls them, and the keyword arguments each receives.
HOOKS = {
    "on_fit_start": (),
    "on_epoch_start": ("epoch",),
    "on_batch_end": ("step", "loss"),
    "on_epoch_end": ("logs",),
    "on_fit_end": ("error",),
}


class Callback:
    """Base class of the training loop's callbacks; every hook does nothing here.

    ``trainer`` is the :class:`~biasvar.train.Trainer` of the fit: ``trainer.model``,
    ``trainer.optimizer``, ``trainer.history``, ``trainer.epoch`` (epochs done), ``trainer.cfg``…

    - ``on_fit_start(trainer)``: once, after a resumed checkpoint is loaded, before training.
    - ``on_epoch_start(trainer, epoch=)``: before each epoch (``epoch`` counts from 1).
    - ``on_batch_end(trainer, step=, loss=)``: after each optimizer step; ``step`` counts the
      epoch's batches from 1, ``loss`` is the batch's mean training loss, a 0-d tensor on the
      device (reading it, ``float(loss)``, waits for the device: keep this hook cheap).
    - ``on_epoch_end(trainer, logs=)``: after each epoch's validation pass; ``logs`` is the epoch's
      history row (epoch, train_loss, train_accuracy, val_loss, val_accuracy, lr, seconds).
      ``trainer.stop(reason)`` ends the fit after this epoch (the reason is kept in the checkpoint
      and in ``FitResult.stop_reason``, and a resumed run does not continue past it).
    - ``on_fit_end(trainer, error=)``: once at the end, also when the fit fails (``error`` is the
      exception then, else None).

    Callbacks run in this order: early stopping, the user's, TensorBoard, checkpoint, history,
    progress — so ``last.pt`` records what the user's callbacks did in the epoch.

    A callback that stops training (the pattern of pruning a hopeless trial):

    >>> from biasvar import ExperimentConfig, fit, load_data
    >>> from biasvar.train import Callback
    >>> class StopWhenAccurate(Callback):
    ...     def __init__(self, target):
    ...         self.target = target
    ...     def on_epoch_end(self, trainer, logs, **kwargs):
    ...         if logs["val_accuracy"] >= self.target:
    ...             trainer.stop(f"val_accuracy reached {self.target}")
    >>> cfg = ExperimentConfig(dataset="digits", epochs=20)
    >>> result = fit(cfg, load_data(cfg), callbacks=[StopWhenAccurate(0.5)], progress=False)
    >>> len(result.history) < 20, result.stop_reason
    (True, 'val_accuracy reached 0.5')
    """

    def on_fit_start(self, trainer: "Trainer", **kwargs: Any) -> None: ...
    def on_epoch_start(self, trainer: "Trainer", **kwargs: Any) -> None: ...
    def on_batch_end(self, trainer: "Trainer", **kwargs: Any) -> None: ...
    def on_epoch_end(self, trainer: "Trainer", **kwargs: Any) -> None: ...
    def on_fit_end(self, trainer: "Trainer", **kwargs: Any) -> None: ...

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None: ...


def overridden_hooks(callbacks: list[Any], name: str) -> list[Any]:
    """The bound ``name`` hooks of the callbacks that define it other than as Callback's no-op
    (so a hook nobody uses costs the loop nothing)."""
    base = getattr(Callback, name)
    out = []
    for cb in callbacks:
        hook = getattr(cb, name, None)
        if hook is not None and getattr(hook, "__func__", None) is not base:
            out.append(hook)
    return out


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs; keep a copy
    of the best weights and put them back at the end (``restore_best``).

    Also tracks the best epoch when stopping is off (``patience=None``), for ``best.pt``."""

    def __init__(self, monitor: str = "val_loss", patience: int | None = 5,
                 min_delta: float = 0.0, restore_best: bool = True):
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.restore_best = restore_best
        self.mode = "max" if "accuracy" in monitor else "min"
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.improved = False

    def _better(self, value: float) -> bool:
        if self.best_value is None:
            return math.isfinite(value)
        if self.mode == "min":
            return value < self.best_value - self.min_delta
        return value > self.best_value + self.min_delta

    def on_epoch_end(self, trainer: "Trainer", logs: dict, **kwargs: Any) -> None:
        if logs[self.monitor] is None:  # a fit without per-epoch validation: nothing to judge
            self.improved = False
            return
        value = float(logs[self.monitor])
        self.improved = self._better(value)
        if self.improved:
            self.best_value, self.best_epoch, self.wait = value, int(logs["epoch"]), 0
            self.best_state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        else:
            self.wait += 1
            if self.patience is not None and self.wait >= self.patience:
                trainer.stop(f"early stopping: {self.monitor} did not improve by more than "
                             f"{self.min_delta} for {self.patience} epochs; best epoch "
                             f"{self.best_epoch}")

    def on_fit_end(self, trainer: "Trainer", error: BaseException | None = None,
                   **kwargs: Any) -> None:
        if error is None and self.restore_best and self.best_state is not None:
            trainer.model.load_state_dict(self.best_state)

    def state_dict(self) -> dict:
        return {"best_value": self.best_value, "best_epoch": self.best_epoch, "wait": self.wait,
                "best_state": self.best_state}

    def load_state_dict(self, state: dict) -> None:
        self.best_value = state.get("best_value")
        self.best_epoch = state.get("best_epoch")
        self.wait = int(state.get("wait", 0))
        self.best_state = state.get("best_state")


class Checkpoint(Callback):
    """After every epoch, writes ``last.pt`` (the whole training state, for ``resume``) into
    ``run_dir``, and ``best.pt`` (the weights) when the epoch improved the monitored metric.

    ``best_of`` is the EarlyStopping that judges improvement (default: the fit's own,
    ``trainer.early``). Both files are written atomically; read them with ``load_checkpoint``."""

    def __init__(self, run_dir: str | Path, best_of: EarlyStopping | None = None):
        self.run_dir = Path(run_dir)
        self.best_of = best_of

    def on_epoch_end(self, trainer: "Trainer", **kwargs: Any) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.run_dir / "last.pt", checkpoint_bytes(trainer.checkpoint()))
        early = self.best_of if self.best_of is not None else trainer.early
        if early.improved:
            atomic_write_bytes(self.run_dir / "best.pt",
                               checkpoint_bytes(trainer.best_checkpoint(early)))


class Snapshots(Callback):
    """Keeps the weights at the end of each cosine cycle (``epochs``: the cycles' last epochs,
    :func:`~biasvar.train.cycle_ends`): in ``states`` (epoch → CPU state dict) and, with
    ``run_dir``, as ``snapshot-K.pt`` (K counts from 1; weights only, like ``best.pt``). A
    resumed fit reads the snapshots of the cycles it had finished back from ``run_dir``."""

    def __init__(self, epochs: list[int], run_dir: str | Path | None = None):
        self.epochs = list(epochs)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.states: dict[int, dict[str, torch.Tensor]] = {}

    def path(self, k: int) -> Path:
        assert self.run_dir is not None
        return self.run_dir / f"snapshot-{k}.pt"

    def on_fit_start(self, trainer: "Trainer", **kwargs: Any) -> None:
        from ._checkpoint import load_checkpoint

        for k, e in enumerate(self.epochs, 1):
            if e <= trainer.epoch and self.run_dir is not None and self.path(k).is_file():
                self.states[e] = load_checkpoint(self.path(k))["model"]

    def on_epoch_end(self, trainer: "Trainer", **kwargs: Any) -> None:
        if trainer.epoch not in self.epochs:
            return
        k = self.epochs.index(trainer.epoch) + 1
        ck = trainer.best_checkpoint()
        # a copy: on the CPU .detach().cpu() shares storage with the weights still training
        ck.update(kind="snapshot", snapshot=k, monitor=None, value=None,
                  model={n: v.clone() for n, v in ck["model"].items()})
        self.states[trainer.epoch] = ck["model"]
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.path(k), checkpoint_bytes(ck))


class HistoryLogger(Callback):
    """Rewrites ``path`` (``history.csv``: HISTORY_COLUMNS, one row per epoch so far, resumed
    epochs included) after every epoch."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_epoch_end(self, trainer: "Trainer", **kwargs: Any) -> None:
        atomic_write_text(self.path, history_csv(trainer.history))


class TensorBoardLogger(Callback):
    """Writes each epoch's history row as TensorBoard scalars under ``log_dir``."""

    def __init__(self, log_dir: str | Path):
        self.log_dir = Path(log_dir)
        self._writer = None

    def on_epoch_end(self, trainer: "Trainer", logs: dict, **kwargs: Any) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.log_dir))
        for k, v in logs.items():
            if k != "epoch" and isinstance(v, (int, float)):
                self._writer.add_scalar(k.replace("_", "/", 1), v, int(logs["epoch"]))
        self._writer.flush()

    def on_fit_end(self, trainer: "Trainer", **kwargs: Any) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class Progress(Callback):
    """The progress callback: reports a fit's training steps to ``start(total_steps, desc)``,
    ``update(steps)``, ``postfix(values)`` and ``close()``.

    Those four report nothing here: override them (:class:`TqdmProgress`), or pass any object
    that has them as ``reporter`` (e.g. one bar shared by many fits). Steps are reported every
    batch on the CPU and every 16 batches on a GPU (and at the end of each epoch)."""

    reporter: Any = None
    #: batches between updates on a GPU (on the CPU: every batch)
    gpu_every = 16

    def __init__(self, reporter: Any = None):
        self.reporter = reporter
        self._pending = 0
        self._every = 1

    def _target(self) -> Any:
        return self if self.reporter is None else self.reporter

    def start(self, total_steps: int, desc: str) -> None: ...
    def update(self, steps: int) -> None: ...
    def postfix(self, values: dict[str, float]) -> None: ...
    def close(self) -> None: ...

    def on_fit_start(self, trainer: "Trainer", **kwargs: Any) -> None:
        self._every = 1 if trainer.device.type == "cpu" else self.gpu_every
        self._pending = 0
        target = self._target()
        target.start(trainer.total_steps, trainer.desc)
        done = trainer.epoch * trainer.steps_per_epoch
        if done:  # resumed: the epochs already trained
            target.update(done)

    def on_batch_end(self, trainer: "Trainer", step: int, **kwargs: Any) -> None:
        self._pending += 1
        if self._pending >= self._every or step == trainer.steps_per_epoch:
            self._target().update(self._pending)
            self._pending = 0

    def on_epoch_end(self, trainer: "Trainer", logs: dict, **kwargs: Any) -> None:
        shown = {"loss": logs["train_loss"], "val_acc": logs["val_accuracy"]}
        self._target().postfix({k: v for k, v in shown.items() if v is not None})

    def on_fit_end(self, trainer: "Trainer", **kwargs: Any) -> None:
        self._target().close()


def bars_visible() -> bool:
    """Whether progress bars show: stderr is a terminal, or tqdm draws notebook widgets. In a
    log file (``make run > log 2>&1``) a bar is a flood of carriage returns."""
    import sys

    from tqdm.auto import tqdm

    if any(c.__module__ == "tqdm.notebook" for c in tqdm.__mro__):
        return True
    stream = sys.stderr
    return stream is not None and hasattr(stream, "isatty") and stream.isatty()


class TqdmProgress(Progress):
    """One tqdm bar over all training steps of a fit (ETA included).

    The bar shows where stderr is a terminal (or a notebook), or where ``file=`` is given; else
    the fit prints one line to stdout when it ends (``reference: 5568/5568 steps in 71 s``).
    ``tqdm_kwargs`` go to tqdm (``disable=True``: no bar and no line)."""

    def __init__(self, **tqdm_kwargs: Any):
        super().__init__()
        self.kwargs = tqdm_kwargs
        self.bar = None
        self._line: list[Any] | None = None  # [desc, total, done, started] without a bar

    def start(self, total_steps: int, desc: str) -> None:
        import time

        from tqdm.auto import tqdm

        kwargs = dict(self.kwargs)
        if "file" not in kwargs and "disable" not in kwargs and not bars_visible():
            self._line = [desc, total_steps, 0, time.perf_counter()]
            return
        self.bar = tqdm(total=total_steps, desc=desc, unit="step", dynamic_ncols=True, **kwargs)

    def update(self, steps: int) -> None:
        if self.bar is not None:
            self.bar.update(steps)
        elif self._line is not None:
            self._line[2] += steps

    def postfix(self, values: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self._line is not None:
            import time

            desc, total, done, started = self._line
            print(f"{desc}: {done}/{total} steps in {time.perf_counter() - started:.0f} s",
                  flush=True)
            self._line = None
