"""The analyses: gap diagnosis, learning and complexity curves, the bias–variance decomposition
and the verdict, each a Python function returning typed :class:`Results`.

Names are imported on first use: reading results (``biasvar report``) never loads torch.
"""
from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "diagnose": "_api", "learning_curve": "_api", "complexity_curve": "_api",
    "decompose": "_api", "decompose_predictions": "_api", "resolve_analysis": "_api",
    "Plan": "_api", "load_predictions": "_formulas", "verdict": "verdict",
    "Thresholds": "verdict", "PROFILES": "_profiles", "SAMPLINGS": "_profiles",
    "Profile": "_profiles",
    **{name: "_results" for name in (
        "Results", "Term", "ZeroOne", "SquaredError", "CrossEntropy", "Ensemble",
        "ClassDecomposition", "Decomposition", "Band", "PowerLaw", "LearningCurve",
        "ComplexityCurve", "Remedy", "Verdict", "TargetError", "LossTrend", "EpochsCapped",
        "Fits", "Reference", "ResultsError", "load_results", "save_results", "SCHEMA_VERSION",
        "LABELS")},
}

__all__ = sorted(_EXPORTS)


def _present() -> None:
    """Results render as HTML through the report package (which reads ``_results``)."""
    from .. import report
    from . import _results

    _results.PRESENTER = report


def _present_first(module: str) -> None:
    if module in ("_results", "_api"):
        _present()


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS, before=_present_first)
