"""Best-known test errors of the built-in datasets: the yardstick for "avoidable bias".

Avoidable bias is the reference model's train error minus a *target* error. No dataset states its
Bayes error, so the target is the best published test error we know of, with its source; it is an
upper bound on the irreducible error, and a user may pass ``--target-error`` instead. Custom
data has no published figure: its default target is the label-noise rate estimated from the data
(:mod:`biasvar.analysis.noise`).

Example::

    >>> target_error("fashion-mnist")["value"]
    0.037
    >>> target_error("my-photos", override=0.05)["value"]
    0.05
"""
from __future__ import annotations

import math
from typing import Any

from ..errors import ConfigError, suggest

__all__ = ["KNOWN_TARGETS", "target_error", "has_known_target"]

#: dataset name → (best-known test error as a fraction, where it comes from).
KNOWN_TARGETS: dict[str, tuple[float, str]] = {
    "fashion-mnist": (
        0.037,
        "best known Fashion-MNIST test error: WRN-28-10 + random erasing, 96.3% accuracy "
        "(Zhong et al. 2017, 'Random Erasing Data Augmentation'; the Fashion-MNIST benchmark "
        "table lists 0.963, i.e. 3.7% error; ResNet18 there reaches 0.949)",
    ),
    "mnist": (
        0.0021,
        "best known MNIST test error: 0.21% by an ensemble of 5 DropConnect networks "
        "(Wan et al. 2013, 'Regularization of Neural Networks using DropConnect', ICML)",
    ),
    "cifar10": (
        0.015,
        "best known CIFAR-10 test error without extra training data: 1.5% by PyramidNet + "
        "ShakeDrop with AutoAugment (Cubuk et al. 2019, 'AutoAugment', CVPR); models pretrained "
        "on extra data do better (ViT-H/14: 0.5%, Dosovitskiy et al. 2021), and fast small-model "
        "recipes reach about 6% (airbench94, Jordan 2024)",
    ),
    "digits": (
        0.01,
        "an estimate, not a published benchmark: scikit-learn's 8x8 digits has no standard "
        "test split or leaderboard; strong SVM/CNN results on random splits are around 1% "
        "error. Pass --target-error for a figure you trust",
    ),
}

# Other spellings users type for the same datasets.
_ALIASES = {"fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist", "cifar-10": "cifar10",
            "sklearn-digits": "digits"}


def _canonical(dataset: str) -> str:
    name = str(dataset).strip().lower().replace("_", "-")
    return _ALIASES.get(name, name)


def _check_override(value: Any) -> float:
    bad = isinstance(value, bool) or not isinstance(value, (int, float))
    if not bad:
        value = float(value)
        bad = not math.isfinite(value) or not 0.0 <= value < 1.0
    if bad:
        raise ConfigError(f"target_error: {value!r} is not a valid target error; pass "
                          "--target-error as a fraction in [0, 1), e.g. 0.05 for 5% error.")
    return value


def has_known_target(dataset: str) -> bool:
    """Whether ``dataset`` has a best-known error in :data:`KNOWN_TARGETS`."""
    return _canonical(dataset) in KNOWN_TARGETS


def target_error(dataset: str, override: float | None = None) -> dict[str, Any]:
    """The target (best achievable) test error for ``dataset``, as results.json stores it.

    Args:
        dataset: dataset name (built-in names are matched case-insensitively, ``_`` as ``-``).
        override: a user-given target error (fraction in [0, 1)); wins over the table.

    Returns:
        ``{"value": float (fraction), "source": str}``.

    Raises:
        ConfigError: ``override`` is not a number in [0, 1), or the dataset has no known target
            and no override was given.
    """
    name = _canonical(dataset)
    if override is not None:
        value = _check_override(override)
        source = "given by the user (--target-error)"
        if name in KNOWN_TARGETS:
            known = KNOWN_TARGETS[name][0]
            source += f"; the best known error for {name} is {100 * known:.2f}%"
        return {"value": value, "source": source}
    if name in KNOWN_TARGETS:
        value, source = KNOWN_TARGETS[name]
        return {"value": float(value), "source": source}
    known = sorted(KNOWN_TARGETS)
    raise ConfigError(
        f"target_error: no best-known test error for dataset {dataset!r}.{suggest(name, known)} "
        f"Known: {', '.join(known)}. Pass --target-error E with E the best error you believe "
        "achievable, as a fraction (e.g. --target-error 0.05 for 5%), or 0 to measure the "
        "whole train error as bias (`biasvar diagnose` estimates it from the data's label "
        "noise when not given).")
