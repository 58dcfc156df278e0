"""Stratified splits and subsets (scikit-learn's StratifiedShuffleSplit underneath)."""
from __future__ import annotations

import numpy as np

from ..errors import DataError

__all__ = ["stratified_split", "stratified_subset"]


def train_test_split(*arrays, **options):
    """scikit-learn's, imported on first use: it costs 2 s at startup (scipy.stats, pandas),
    which a command that stops on bad input, or lists datasets, should not pay."""
    from sklearn.model_selection import train_test_split as split

    return split(*arrays, **options)


def stratified_split(y: np.ndarray, fraction: float, seed: int, *, what: str = "validation"
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Split row numbers ``0..len(y)-1`` into (kept, held_out) with ``fraction`` held out,
    preserving class proportions. Both arrays sorted."""
    y = np.asarray(y)
    idx = np.arange(len(y))
    counts = np.bincount(y)
    n_out = int(round(fraction * len(y)))
    present = int((counts > 0).sum())
    if n_out < present or len(y) - n_out < present:
        raise DataError(
            f"{what} split: {len(y)} images in {present} classes cannot be split with fraction "
            f"{fraction} so that every class is on both sides; use a fraction between "
            f"{present / len(y):.3f} and {1 - present / len(y):.3f} or more data.")
    if counts[counts > 0].min() < 2:
        cls = int(np.flatnonzero(counts == 1)[0])
        raise DataError(f"{what} split: class {cls} has a single image; every class needs at "
                        "least 2 to be stratified. Add images or remove the class.")
    keep, out = train_test_split(idx, test_size=n_out, stratify=y, random_state=seed)
    return np.sort(keep), np.sort(out)


def stratified_subset(y: np.ndarray, n: int, seed: int, *, what: str = "train_subset"
                      ) -> np.ndarray:
    """``n`` row numbers of ``y`` with class proportions preserved (sorted)."""
    y = np.asarray(y)
    if n > len(y):
        raise DataError(f"{what}: {n} is larger than the {len(y)} images available; "
                        f"use at most {len(y)}.")
    if n == len(y):
        return np.arange(len(y))
    present = int((np.bincount(y) > 0).sum())
    if n < present:
        raise DataError(f"{what}: {n} images cannot hold all {present} classes; use at least "
                        f"{present}.")
    try:
        keep, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y,
                                   random_state=seed)
    except ValueError as e:  # e.g. a class with a single image cannot be stratified
        counts = np.bincount(y)
        rare = [int(c) for c in np.flatnonzero((counts > 0) & (counts < 2))]
        why = (f"class{'es' if len(rare) > 1 else ''} {', '.join(map(str, rare))} "
               f"{'have' if len(rare) > 1 else 'has'} a single image there" if rare
               else str(e).splitlines()[0])
        raise DataError(f"{what}: {n} of {len(y)} images cannot be drawn stratified ({why}); use "
                        "all of them (leave it out) or add images to the small classes.") from None
    return np.sort(keep)
