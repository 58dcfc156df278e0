"""Training (``fit``), callbacks, checkpoints, optimizers/schedules and evaluation.

Everything other packages need is exported here; the ``_``-modules are internals.
"""
from __future__ import annotations

from ._callbacks import (HOOKS, Callback, Checkpoint, EarlyStopping, HistoryLogger, Progress,
                         Snapshots, TensorBoardLogger, TqdmProgress)
from ._checkpoint import (CHECKPOINT_FORMAT, CHECKPOINT_VERSION, HISTORY_COLUMNS,
                          checkpoint_bytes, history_csv, load_checkpoint, model_spec)
from ._evaluate import evaluate, most_confidently_wrong, predict
from ._fit import (FitResult, Trainer, build_model, fit, normalizer, predict_log_probs,
                   preflight)
from ._optim import OPTIMIZERS, SCHEDULES, cycle_ends, make_optimizer, make_scheduler
from ._runtime import choose_precision, resolve_device

__all__ = [
    # training
    "fit", "FitResult", "Trainer", "build_model", "preflight", "normalizer",
    # callbacks
    "Callback", "HOOKS", "EarlyStopping", "Checkpoint", "HistoryLogger", "TensorBoardLogger",
    "Progress", "TqdmProgress", "Snapshots",
    # checkpoints and history
    "load_checkpoint", "checkpoint_bytes", "model_spec", "history_csv", "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION", "HISTORY_COLUMNS",
    # optimizers and schedules
    "OPTIMIZERS", "SCHEDULES", "make_optimizer", "make_scheduler", "cycle_ends",
    # evaluation
    "evaluate", "predict", "predict_log_probs", "most_confidently_wrong",
    # runtime
    "choose_precision", "resolve_device",
]
