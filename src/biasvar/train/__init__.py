"""Training (``fit``), callbacks, checkpoints, optimizers/schedules and evaluation.

Everything other packages need is exported here; the ``_``-modules are internals.
"""
from __future__ import annotations

from ._callbacks import (HOOKS, Callback, Checkpoint, EarlyStopping, HistoryLogger, Progress,
                         Snapshots, TensorBoardLogger, TqdmProgress)
from ._checkpoint import (CHECKPOINT_FORMAT, CHECKPOINT_VERSION, HISTORY_COLUMNS,
                          checkpoint_bytes, history_csv, load_checkpoint, model_spec)
from ._evaluate import evaluate, most_confidently_wrong, predict
from ._fit import (FitResult, Trainer, build_model, fit, make_trainer, normalizer,
                   predict_log_probs, preflight, run_trainers)
from ._optim import OPTIMIZERS, SCHEDULES, cycle_ends, make_optimizer, make_scheduler
from ._runtime import choose_precision, resolve_device
from ._side import fit_side_by_side, side_by_side_supported, train_side_by_side

__all__ = [
    # training
    "fit", "FitResult", "Trainer", "build_model", "preflight", "normalizer",
    # several fits at once (side by side: one batched step for all)
    "make_trainer", "run_trainers", "train_side_by_side", "side_by_side_supported",
    "fit_side_by_side",
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
