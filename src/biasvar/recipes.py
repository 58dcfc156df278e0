"""Recipes: named sets of training options, chosen for a purpose and measured.

``--recipe fast`` (every command that trains) sets the options below on top of the defaults
and a ``--config`` file; options given on the command line override it. In Python::

    from biasvar import ExperimentConfig, recipe
    cfg = ExperimentConfig(**{**recipe("fast"), "epochs": 12})

``fast`` is chosen for time to accuracy on Fashion-MNIST on 2 CPU cores, on the validation
split only (never the test split): ``bench/recipe_search.py`` trains the candidates and prints
their validation accuracy against training time, and ``make bench`` (figure ``recipe``) measures
the time the chosen one takes to reach 92 % and 93 % test accuracy.

>>> recipe("fast")["schedule"]
'onecycle'
>>> recipe("fsat")
Traceback (most recent call last):
...
biasvar.errors.ConfigError: recipe: unknown value 'fsat'. Known: fast. Did you mean 'fast'?
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .registry import Registry

__all__ = ["Recipe", "RECIPES", "recipe"]


@dataclass(frozen=True)
class Recipe:
    """A named set of :class:`~biasvar.config.ExperimentConfig` options.

    Attributes:
        summary: one line for ``--help``.
        options: the options it sets on every dataset.
        per_dataset: more options for one dataset (e.g. the epochs its measurements chose).
    """

    summary: str
    options: dict[str, Any]
    per_dataset: dict[str, dict[str, Any]] = field(default_factory=dict)

    def for_dataset(self, dataset: str | None) -> dict[str, Any]:
        return {**self.options, **self.per_dataset.get(dataset or "", {})}


RECIPES: Registry[Recipe] = Registry("recipe")

#: fast: chosen by bench/recipe_search.py on Fashion-MNIST's validation split (2 CPU cores);
#: the candidates and the measurements are in bench/README.md, "The fast recipe"
RECIPES.add("fast", Recipe(
    summary="time to accuracy: a CNN of width 24, one-cycle Adam at batch 256, no "
            "augmentation, 6 epochs on Fashion-MNIST",
    options=dict(model="cnn", width=24, depth=2, batchnorm=True, dropout=0.0,
                 optimizer="adam", lr=4e-3, schedule="onecycle", batch_size=256,
                 weight_decay=0.0, label_smoothing=0.0, augment="none", early_stopping=False,
                 precision="auto", channels_last="auto"),
    per_dataset={"fashion-mnist": dict(epochs=6), "mnist": dict(epochs=3)},
))


def recipe(name: str, dataset: str | None = None) -> dict[str, Any]:
    """The options recipe ``name`` sets (on ``dataset``: with its per-dataset options)."""
    return RECIPES.get(name).for_dataset(dataset)
