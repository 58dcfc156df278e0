"""Class labels of the user's own images, and the short listings its notes and errors use.

Classes are the sorted distinct labels (numerically when every label is an integer). Every class
needs at least :data:`MIN_IMAGES_PER_CLASS` images and there must be at least 2 classes; a label
given to too few images is reported with the nearest other label, since it is usually a typo.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from ..errors import DataError, suggest

__all__ = ["MIN_IMAGES_PER_CLASS", "listing", "sorted_labels", "check_classes"]

#: every class needs an image in train, validation and test
MIN_IMAGES_PER_CLASS = 3
#: how many file names a note or an error lists before "and N more"
_SHOW = 5


def listing(items: Sequence[str], total: int | None = None) -> str:
    """The first few ``items`` joined by commas, then ", and N more" of ``total`` (all items)."""
    total = len(items) if total is None else total
    shown = ", ".join(items[:_SHOW])
    return shown + (f", and {total - _SHOW} more" if total > _SHOW else "")


def sorted_labels(labels: Iterable[str]) -> list[str]:
    """Distinct labels sorted: numerically when all are integers, else by code point."""
    uniq = set(labels)
    try:
        return sorted(uniq, key=lambda s: (int(s), s))
    except ValueError:
        return sorted(uniq)


def check_classes(what: str, y: np.ndarray, classes: Sequence[str]) -> None:
    """Every class has at least MIN_IMAGES_PER_CLASS images and there are at least 2 classes."""
    counts = np.bincount(y, minlength=len(classes)) if len(y) else np.zeros(len(classes), int)
    if len(classes) < 2:
        raise DataError(f"{what}: found only {len(classes)} class"
                        f"{' (' + repr(classes[0]) + ')' if classes else 'es'}; a classifier "
                        "needs at least 2 classes.")
    few = [(classes[i], int(counts[i])) for i in range(len(classes))
           if counts[i] < MIN_IMAGES_PER_CLASS]
    if few:
        plenty = [c for i, c in enumerate(classes) if counts[i] >= MIN_IMAGES_PER_CLASS]
        parts = []
        for name, k in few[:_SHOW]:
            hint = suggest(name, plenty)  # a label given to so few images is usually a typo
            hint = "." + hint if hint else ""
            parts.append(f"{name!r} ({k} image{'s' if k != 1 else ''}{hint})")
        raise DataError(f"{what}: {len(few)} class{'es' if len(few) > 1 else ''} "
                        f"{'have' if len(few) > 1 else 'has'} fewer than {MIN_IMAGES_PER_CLASS} "
                        f"images, too few to appear in the training, validation and test splits: "
                        f"{listing(parts, len(few))}. Add images, fix the labels, or remove "
                        "the class.")
