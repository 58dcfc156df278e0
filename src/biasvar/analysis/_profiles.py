"""Diagnose profiles (how much a diagnosis spends) and the sampling schemes of a decomposition,
each in the project's one registry type. No torch: the configuration validates against them.

>>> PROFILES.get("quick").rounds, SAMPLINGS.names()
(2, ['bootstrap', 'seed', 'split', 'subsample'])
"""
from __future__ import annotations

from dataclasses import dataclass

from ..registry import Registry

__all__ = ["Profile", "PROFILES", "SAMPLINGS"]


@dataclass(frozen=True)
class Profile:
    """How much a diagnose spends. Both profiles train every fit the same, configured way (no
    epoch cap: a diagnosis rests on finished fits); they differ in how many fits they make.

    The decomposition's models (``rounds`` × ``sampling``) also serve as learning-curve points
    (split models at n/R) and, scoring the rows they did not train on, give out-of-sample
    predictions for the noise floor. ``lc_fractions`` are the learning-curve sizes (fractions of
    the training set); sizes no shared fit covers get fits of their own, ``lc_seeds`` each
    (offsets added to the configured seed); ``ref_seeds`` are the full-size reference fits;
    ``complexity`` is (knob, multipliers of the configured value) or None."""

    name: str
    lc_fractions: tuple[float, ...]
    lc_seeds: tuple[int, ...]
    ref_seeds: tuple[int, ...]
    rounds: int
    sampling: str
    complexity: tuple[str, tuple[float, ...]] | None
    note: str


PROFILES: Registry[Profile] = Registry("profile")
PROFILES.add("quick", Profile(
    "quick", lc_fractions=(1 / 4, 1 / 2, 1.0), lc_seeds=(0,), ref_seeds=(0,),
    rounds=2, sampling="split", complexity=None,
    note="quick budget: one reference fit, 2 models on the halves of a random stratified split "
         "(the decomposition, the learning curve at n/2 and the noise floor's out-of-sample "
         "predictions), and one fit at n/4; every fit trains as configured. With 2 models the "
         "variance terms have no model-to-model interval, and 3 learning-curve sizes do not "
         "test a power law (no extrapolation); use --profile thorough for 5 sizes with 2 seeds "
         "each and a width complexity curve."))
PROFILES.add("thorough", Profile(
    "thorough", lc_fractions=(1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0), lc_seeds=(0, 1),
    ref_seeds=(0, 1), rounds=2, sampling="split", complexity=("width", (0.5, 1.0, 2.0)),
    note="thorough budget: the quick profile's fits, plus a second seed at every learning-curve "
         "size, a size n/16, and a width complexity curve (half and twice the configured "
         "width); every fit trains as configured."))

#: how each model's training set is drawn (name → what it measures)
SAMPLINGS: Registry[str] = Registry("sampling")
SAMPLINGS.add("bootstrap", "n draws with replacement")
SAMPLINGS.add("split", "R disjoint stratified parts (n/R images each)")
SAMPLINGS.add("subsample", "a fraction of the images without replacement")
SAMPLINGS.add("seed", "the same data, new initialisation and order: optimisation variance only")
