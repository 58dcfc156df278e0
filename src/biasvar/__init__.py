"""biasvar: how much of an image classifier's error is bias, how much is variance, and what
will fix it.

The main job, in a script or a notebook (a result prints as the console summary and displays
as its part of the report in Jupyter)::

    from biasvar import ExperimentConfig, diagnose
    d = diagnose(ExperimentConfig(dataset="digits"))
    d.verdict.label, d.decomposition.zero_one.bias.value, d.report()

One model:

>>> from biasvar import ExperimentConfig, load_data, fit, evaluate
>>> cfg = ExperimentConfig(dataset="digits", model="cnn", epochs=5)
>>> data = load_data(cfg)
>>> result = fit(cfg, data, progress=False)
>>> metrics = evaluate(result.model, data)
>>> metrics["test"]["accuracy"] > 0.9
True

Names are imported on first use, so light commands (``biasvar report``) never load torch.
"""
from __future__ import annotations

from ._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "ExperimentConfig": "config", "AnalysisConfig": "config", "load_config": "config",
    "load_analysis": "config", "resolve": "config",
    "load_data": "data", "DataBundle": "data", "ImageData": "data",
    "create_model": "models", "list_models": "models",
    "fit": "train", "FitResult": "train", "evaluate": "train", "predict": "train",
    "BiasvarError": "errors", "ConfigError": "errors", "DataError": "errors",
    "ModelError": "errors", "CheckpointError": "errors", "TrainingDiverged": "errors",
    "train_run": "runs", "evaluate_run": "runs",
    **{name: "analysis" for name in (
        "diagnose", "learning_curve", "complexity_curve", "decompose", "decompose_predictions",
        "Results", "load_results", "verdict", "Thresholds", "Plan", "ResultsError")},
    "KNOBS": "knobs", "REMEDIES": "knobs", "compare": "report",
    "tune": "tune", "ensemble": "ensemble", "recipe": "recipes", "RECIPES": "recipes",
}

__all__ = [*_EXPORTS, "__version__"]


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
