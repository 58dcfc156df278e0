"""biasvar.data._labels: class names, the per-class minimum and the short listings."""
from __future__ import annotations

import numpy as np
import pytest

from biasvar.data._labels import MIN_IMAGES_PER_CLASS, check_classes, listing, sorted_labels
from biasvar.errors import DataError


def test_listing_shows_five_then_counts_the_rest():
    items = [f"f{i}" for i in range(8)]
    assert listing(items[:3]) == "f0, f1, f2"
    assert listing(items) == "f0, f1, f2, f3, f4, and 3 more"
    assert listing(items[:2], total=10) == "f0, f1, and 5 more"


def test_labels_sort_numerically_only_when_all_are_integers():
    assert sorted_labels(["10", "9", "2", "9"]) == ["2", "9", "10"]
    assert sorted_labels(["b", "10", "a", "9"]) == ["10", "9", "a", "b"]


def test_class_checks():
    k = MIN_IMAGES_PER_CLASS
    check_classes("d", np.array([0] * k + [1] * k), ["a", "b"])  # enough of each: no error
    with pytest.raises(DataError, match=r"found only 1 class \('a'\)"):
        check_classes("d", np.zeros(k, int), ["a"])
    y = np.array([0] * k + [1] * k + [2] * (k - 1))
    with pytest.raises(DataError, match=rf"1 class has fewer than {k} images.*'cta' "
                                        rf"\({k - 1} images?. Did you mean 'cat'\?\)"):
        check_classes("d", y, ["cat", "dog", "cta"])
    with pytest.raises(DataError, match=rf"'zebra' \({k - 1} images?\)"):
        check_classes("d", y, ["cat", "dog", "zebra"])
