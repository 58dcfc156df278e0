"""Callbacks around the training loop: early stopping, checkpoints, logging, progress.

Every hook is optional and receives the trainer plus keyword arguments, so new hooks and
arguments can be added without breaking user callbacks (the skorch pattern).
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ._fit import Trainer

__all__ = ["Callback", "EarlyStopping", "TensorBoardLogger", "Progress", "TqdmProgress"]


class Callback:
    def on_fit_start(self, trainer: "Trainer", **kwargs: Any) -> None: ...
    def on_epoch_end(self, trainer: "Trainer", logs: dict, **kwargs: Any) -> None: ...
    def on_fit_end(self, trainer: "Trainer", **kwargs: Any) -> None: ...
    def state_dict(self) -> dict:
        return {}
    def load_state_dict(self, state: dict) -> None: ...


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
        value = float(logs[self.monitor])
        self.improved = self._better(value)
        if self.improved:
            self.best_value, self.best_epoch, self.wait = value, int(logs["epoch"]), 0
            self.best_state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        else:
            self.wait += 1
            if self.patience is not None and self.wait >= self.patience:
                trainer.stop_reason = (f"early stopping: {self.monitor} did not improve by more "
                                       f"than {self.min_delta} for {self.patience} epochs; best "
                                       f"epoch {self.best_epoch}")

    def on_fit_end(self, trainer: "Trainer", **kwargs: Any) -> None:
        if self.restore_best and self.best_state is not None:
            trainer.model.load_state_dict(self.best_state)

    def state_dict(self) -> dict:
        return {"best_value": self.best_value, "best_epoch": self.best_epoch, "wait": self.wait,
                "best_state": self.best_state}

    def load_state_dict(self, state: dict) -> None:
        self.best_value = state.get("best_value")
        self.best_epoch = state.get("best_epoch")
        self.wait = int(state.get("wait", 0))
        self.best_state = state.get("best_state")


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


class Progress:
    """Progress reporting protocol; the base class reports nothing."""

    def start(self, total_steps: int, desc: str) -> None: ...
    def update(self, steps: int) -> None: ...
    def postfix(self, values: dict[str, float]) -> None: ...
    def close(self) -> None: ...


class TqdmProgress(Progress):
    """One tqdm bar over all training steps of a fit (ETA included)."""

    def __init__(self, **tqdm_kwargs: Any):
        self.kwargs = tqdm_kwargs
        self.bar = None

    def start(self, total_steps: int, desc: str) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total_steps, desc=desc, unit="step", dynamic_ncols=True,
                        **self.kwargs)

    def update(self, steps: int) -> None:
        if self.bar is not None:
            self.bar.update(steps)

    def postfix(self, values: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def clone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
