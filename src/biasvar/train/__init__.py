"""Training (``fit``), callbacks, checkpoints and evaluation."""
from __future__ import annotations

from ._callbacks import Callback, EarlyStopping, Progress, TensorBoardLogger, TqdmProgress
from ._evaluate import evaluate, most_confidently_wrong, predict
from ._fit import (CHECKPOINT_FORMAT, HISTORY_COLUMNS, FitResult, build_model, fit,
                   history_csv, load_checkpoint, normalizer, predict_log_probs)
from ._runtime import choose_precision, resolve_device

__all__ = ["fit", "FitResult", "evaluate", "predict", "most_confidently_wrong", "Callback",
           "EarlyStopping", "Progress", "TqdmProgress", "TensorBoardLogger", "load_checkpoint",
           "build_model", "normalizer", "predict_log_probs", "history_csv", "choose_precision",
           "resolve_device", "CHECKPOINT_FORMAT", "HISTORY_COLUMNS"]
