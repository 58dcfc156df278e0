"""``biasvar tune``: search the training options for the lowest validation error (Optuna).

:func:`tune` runs the study (or, with ``dry_run=True``, returns its :class:`TunePlan`: the
cost of each trial here, nothing written); :func:`load_space` checks a search space; :data:`SPACES` holds the
built-in ones (``bias``, ``variance``: built from the knob table). The objective shared by the
local and the Ray backends is :func:`~biasvar.tune._objective.evaluate_params`.

>>> from biasvar import ExperimentConfig, tune                                   # doctest: +SKIP
>>> r = tune(ExperimentConfig(dataset="digits", model="mlp"), space="bias", trials=10)
>>> print(r)                                                                     # doctest: +SKIP

``biasvar.tune`` is both this package and the function: calling the package calls :func:`tune`
(``import biasvar.tune`` would otherwise hide the function exported as ``biasvar.tune``).
"""
from __future__ import annotations

import sys
import types
from typing import Any

from ._plan import TunePlan
from ._space import SPACES, Param, Space, load_space
from ._study import PRUNERS, SAMPLERS, TuneResults, tune
from . import _ray  # registers the Ray Tune backend (imports Ray on use only)

del _ray

__all__ = ["tune", "TuneResults", "TunePlan", "load_space", "SPACES", "Space", "Param", "SAMPLERS",
           "PRUNERS"]


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return tune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
