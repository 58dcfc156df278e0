"""Diagnose profiles (how much a diagnosis spends) and the sampling schemes of a decomposition,
each in the project's one registry type. No torch: the configuration validates against them.

>>> PROFILES.get("quick").rounds, SAMPLINGS.names()
(4, ['bootstrap', 'seed', 'split', 'subsample'])
"""
from __future__ import annotations

from dataclasses import dataclass

from ..registry import Registry

__all__ = ["Profile", "PROFILES", "SAMPLINGS"]


@dataclass(frozen=True)
class Profile:
    """How much a diagnose spends. ``epochs`` caps the training epochs of every fit unless
    ``--epochs`` is given; learning-curve sizes are fractions of the training set;
    ``complexity`` is (knob, multipliers of the configured value) or None."""

    name: str
    epochs: int | None
    lc_fractions: tuple[float, ...]
    lc_seeds: tuple[int, ...]
    rounds: int
    sampling: str
    complexity: tuple[str, tuple[float, ...]] | None
    note: str


PROFILES: Registry[Profile] = Registry("profile")
PROFILES.add("quick", Profile(
    "quick", epochs=3, lc_fractions=(1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0), lc_seeds=(0, 1),
    rounds=4, sampling="bootstrap", complexity=None,
    note="quick budget: {epochs} epochs per fit, 2 seeds per learning-curve point, 4 bootstrap "
    "models. With 4 models the variance terms carry a large model-to-model uncertainty "
    "(se_models), and short training inflates bias; use --profile thorough to separate them "
    "more finely."))
PROFILES.add("thorough", Profile(
    "thorough", epochs=None, lc_fractions=(1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0),
    lc_seeds=(0, 1, 2), rounds=8, sampling="bootstrap",
    complexity=("width", (0.25, 0.5, 1.0, 2.0)),
    note="thorough budget: full training, 3 seeds per learning-curve point, 8 bootstrap "
    "models, and a width complexity curve."))

#: how each model's training set is drawn (name → what it measures)
SAMPLINGS: Registry[str] = Registry("sampling")
SAMPLINGS.add("bootstrap", "n draws with replacement")
SAMPLINGS.add("split", "R disjoint stratified parts (n/R images each)")
SAMPLINGS.add("subsample", "a fraction of the images without replacement")
SAMPLINGS.add("seed", "the same data, new initialisation and order: optimisation variance only")
