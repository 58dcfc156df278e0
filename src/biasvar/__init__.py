"""biasvar: how much of an image classifier's error is bias, how much is variance, and what
will fix it.

>>> from biasvar import ExperimentConfig, load_data, fit, evaluate
>>> cfg = ExperimentConfig(dataset="digits", model="cnn", epochs=5)
>>> data = load_data(cfg)
>>> result = fit(cfg, data, progress=False)
>>> metrics = evaluate(result.model, data)
>>> metrics["test"]["accuracy"] > 0.9
True
"""
from __future__ import annotations

from .config import ExperimentConfig, load_config, resolve
from .data import DataBundle, ImageData, load_data
from .errors import BiasvarError, CheckpointError, ConfigError, DataError, ModelError, TrainingDiverged
from .models import create_model, list_models
from .train import FitResult, evaluate, fit, predict

__version__ = "0.1.0"

__all__ = ["ExperimentConfig", "load_config", "resolve", "load_data", "DataBundle", "ImageData",
           "create_model", "list_models", "fit", "FitResult", "evaluate", "predict",
           "BiasvarError", "ConfigError", "DataError", "ModelError", "CheckpointError",
           "TrainingDiverged", "__version__"]
