"""Exceptions raised for user errors.

Every error a user can cause is a :class:`BiasvarError`; the CLI prints its message and exits
with status 2 instead of showing a traceback. Messages name the field, the bad value and the fix.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "BiasvarError",
    "ConfigError",
    "DataError",
    "ModelError",
    "CheckpointError",
    "TrainingDiverged",
    "suggest",
]


class BiasvarError(Exception):
    """Base class of every error caused by user input or the environment (not by a bug)."""


class ConfigError(BiasvarError, ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""


class DataError(BiasvarError):
    """A dataset cannot be found, read or split as asked."""


class ModelError(BiasvarError):
    """A model cannot be built or its weights cannot be loaded."""


class CheckpointError(BiasvarError):
    """A checkpoint is missing, truncated or was written by something else."""


class TrainingDiverged(BiasvarError):
    """Training diverged: the loss became NaN or infinite, an epoch's loss exploded, or the fit
    ended worse than it began (see ``biasvar.train._fit.exploded`` / ``ended_diverged``)."""


def suggest(name: str, known: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest known name, or ``""``."""
    close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def unknown_name(field: str, value: str, known: Iterable[str]) -> ConfigError:
    """The error for a name that is not registered: lists the known ones and the nearest."""
    known = sorted(known)
    return ConfigError(
        f"{field}: unknown value {value!r}.{suggest(value, known)} Known: {', '.join(known)}."
    )
