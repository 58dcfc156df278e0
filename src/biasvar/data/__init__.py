"""Datasets, splits and augmentation.

>>> from biasvar import ExperimentConfig
>>> from biasvar.data import load_data
>>> data = load_data(ExperimentConfig(dataset="digits"))
>>> data.summary()
'digits: 1294 train / 144 val / 359 test images, 1x8x8, 10 classes'
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from typing import Any

import numpy as np
import torch

from ..config import ExperimentConfig
from ..errors import DataError, unknown_name
from ._builtin import BUILTIN, DatasetInfo, check_root, read_idx
from ._files import load_csv, load_imagefolder
from ._pydataset import load_source
from ._split import stratified_split, stratified_subset
from ._stream import BatchLoader, batches, loader_workers, stats_from_sums
from ._types import DataBundle, ImageData

__all__ = ["load_data", "build_bundle", "list_datasets", "ImageData", "DataBundle",
           "DatasetInfo", "register_source", "stratified_split", "stratified_subset", "read_idx",
           "BatchLoader", "batches", "loader_workers"]

#: "prefix:" → loader(spec, cfg) -> (training pool, test or None[, notes]), for user data
#: (imagefolder:, csv:)
_SOURCES: dict[str, Callable[[str, ExperimentConfig], tuple]] = {}


def register_source(prefix: str, loader: Callable[[str, ExperimentConfig], tuple]) -> None:
    """Register a loader for datasets written ``prefix:SPEC`` (e.g. ``imagefolder:PATH``).

    The loader returns ``(training pool, test split or None)``, optionally followed by a list of
    notes for the user (files skipped, sizes chosen), which end up in ``DataBundle.notes``."""
    _SOURCES[prefix] = loader


def list_datasets() -> list[DatasetInfo]:
    return [BUILTIN.get(n) for n in BUILTIN.names()]


def _load_pools(cfg: ExperimentConfig) -> tuple[ImageData, ImageData | None, list[str]]:
    name = cfg.dataset
    if ":" in name:
        prefix, spec = name.split(":", 1)
        if prefix not in _SOURCES:
            raise unknown_name("dataset", name, [f"{p}:PATH" for p in _SOURCES] + BUILTIN.names())
        out = _SOURCES[prefix](spec, cfg)
        return out[0], out[1], list(out[2]) if len(out) > 2 else []
    if name not in BUILTIN:
        raise unknown_name("dataset", name, BUILTIN.names() + [f"{p}:PATH" for p in _SOURCES])
    root = check_root(cfg.data_root)
    pool, test = BUILTIN.get(name).loader(root, cfg.download)
    notes: list[str] = []
    if cfg.image_size is not None or cfg.channels is not None:
        before = tuple(pool.x.shape[1:])
        pool = _reshaped(pool, cfg.image_size, cfg.channels)
        test = _reshaped(test, cfg.image_size, cfg.channels) if test is not None else None
        notes.append(f"{name}: images converted {'x'.join(map(str, before))} → "
                     f"{'x'.join(map(str, pool.x.shape[1:]))} (--image-size / --channels)")
    return pool, test, notes


def evaluation_images(cfg: ExperimentConfig) -> tuple[ImageData, list[str]]:
    """A dataset's images to evaluate on, unsplit: its own test split when it has one (the
    built-ins), else all its images (a folder, a CSV); and the loading notes. At
    ``cfg.image_size`` / ``cfg.channels``."""
    pool, test, notes = _load_pools(cfg)
    return (test if test is not None else pool), notes


def _reshaped(part: ImageData, image_size: int | None, channels: int | None) -> ImageData:
    """A built-in split at ``image_size`` px (bilinear, antialiased when shrinking) and
    ``channels`` channels (grey → RGB repeats; RGB → grey by luma, 0.299/0.587/0.114)."""
    import torch.nn.functional as F

    x = part.x.float()
    if channels is not None and channels != x.shape[1]:
        if channels == 3:
            x = x.repeat(1, 3, 1, 1)
        else:
            w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            x = (x * w).sum(1, keepdim=True)
    if image_size is not None and image_size != x.shape[-1]:
        out = []
        for i in range(0, len(x), 4096):  # bounded memory for the large sets
            out.append(F.interpolate(x[i:i + 4096], size=(image_size, image_size),
                                     mode="bilinear", align_corners=False,
                                     antialias=image_size < x.shape[-1]))
        x = torch.cat(out)
    x = x.round().clamp(0, 255).to(torch.uint8)
    return replace(part, x=x)


def load_data(cfg: ExperimentConfig, *, source: Any = None, test_source: Any = None,
              classes: Sequence[str] | None = None) -> DataBundle:
    """Load ``cfg.dataset`` and split it as the config says (see :func:`build_bundle`).

    Python API for any data: ``source`` is a ``torch.utils.data.Dataset`` (or any sequence or
    iterable) of ``(image, label)`` pairs — PIL images, tensors (C, H, W) / (H, W) or numpy
    arrays; labels class numbers or names — decoded once into uint8 like the built-ins, at
    ``cfg.image_size`` / ``cfg.channels``. ``test_source`` is its test split (else one is
    carved out with ``test_fraction``); ``classes`` names the classes (else the dataset's
    ``.classes``, or the labels). ``cfg.dataset`` is then ignored.

    >>> import torch
    >>> from biasvar import ExperimentConfig
    >>> pairs = [(torch.full((1, 8, 8), 40 * (i % 2), dtype=torch.uint8), i % 2) for i in range(40)]
    >>> load_data(ExperimentConfig(), source=pairs, classes=["dark", "light"]).summary()
    'list: 29 train / 3 val / 8 test images, 1x8x8, 2 classes'
    """
    if source is not None:
        pool, test, notes = load_source(source, cfg, test_source=test_source, classes=classes)
        return build_bundle(type(source).__name__, pool, test, cfg, notes=notes)
    if test_source is not None or classes is not None:
        raise DataError("load_data: test_source and classes go with source=...; for "
                        f"{cfg.dataset!r} leave them out.")
    pool, test, notes = _load_pools(cfg)
    return build_bundle(cfg.dataset, pool, test, cfg, notes=notes)


def build_bundle(name: str, pool: ImageData, test: ImageData | None,
                 cfg: ExperimentConfig, *, notes: Sequence[str] = ()) -> DataBundle:
    """Split a training pool (and test set, or carve one out) into a :class:`DataBundle`.

    Without its own test split, ``test_fraction`` of the pool becomes the test set (stratified,
    ``split_seed``); then ``val_fraction`` of what is left becomes validation data; then
    ``train_subset``/``test_subset`` take stratified subsets.
    """
    y_pool = pool.y.numpy()
    present = np.unique(y_pool)
    if len(present) < 2:
        raise DataError(f"dataset {name}: only {len(present)} class found; a classifier needs at "
                        "least 2 classes.")
    indices: dict[str, np.ndarray] = {}
    if test is None:
        rest, test_idx = stratified_split(y_pool, cfg.test_fraction, cfg.split_seed, what="test")
        test = pool.subset(test_idx)
        indices["test"] = test_idx
    else:
        default = next(f.default for f in fields(cfg) if f.name == "test_fraction")
        if cfg.test_fraction != default:  # an option that would change nothing is refused
            raise DataError(f"test_fraction: {cfg.test_fraction} does not apply to {name}: it "
                            f"has its own test split ({len(test):,} images), which is used "
                            "as it is. Drop --test-fraction (--test-subset N scores on a "
                            "stratified subset of that test split).")
        rest = np.arange(len(pool))
    tr, va = stratified_split(y_pool[rest], cfg.val_fraction, cfg.split_seed, what="validation")
    train_idx, val_idx = rest[tr], rest[va]
    if cfg.train_subset is not None:
        train_idx = train_idx[stratified_subset(y_pool[train_idx], cfg.train_subset,
                                                cfg.split_seed, what="train_subset")]
    if cfg.test_subset is not None:
        keep = stratified_subset(test.y.numpy(), cfg.test_subset, cfg.split_seed,
                                 what="test_subset")
        indices["test"] = indices.get("test", np.arange(len(test)))[keep]
        test = test.subset(keep)
    indices["train"], indices["val"] = train_idx, val_idx
    train, val = pool.subset(train_idx), pool.subset(val_idx)
    notes = list(notes) + _missing_class_notes(name, pool.classes, (
        ("training", train.y), ("validation", val.y), ("test", test.y)))
    if test.x.shape[1:] != train.x.shape[1:]:
        raise DataError(f"dataset {name}: test images are {tuple(test.x.shape[1:])} but training "
                        f"images are {tuple(train.x.shape[1:])}.")
    mean, std = channel_stats(train.x)
    return DataBundle(name=name, train=train, val=val, test=test, classes=list(pool.classes),
                      mean=mean, std=std, indices=indices, notes=list(notes))


def _missing_class_notes(name: str, classes: Sequence[str],
                         splits: Sequence[tuple[str, torch.Tensor]]) -> list[str]:
    """A note per split that has no image of some class (too few images to go round)."""
    out = []
    for split, y in splits:
        counts = np.bincount(y.numpy(), minlength=len(classes))
        missing = [repr(classes[k]) for k in np.flatnonzero(counts == 0)]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5
                                              else "")
            out.append(f"dataset {name}: the {split} split has no image of {len(missing)} "
                       f"class{'es' if len(missing) > 1 else ''} ({shown}): too few images to go "
                       "round. Its metrics for them are undefined; add images to those classes"
                       + (" or use a larger --train-subset" if split == "training" else "")
                       + ".")
    return out


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N, C, H, W), in [0, 1] units."""
    if not isinstance(x, torch.Tensor):  # streamed: from the sums measured when it was opened
        return x.channel_stats()
    c = x.shape[1]
    flat = x.transpose(0, 1).reshape(c, -1)
    s1 = torch.zeros(c, dtype=torch.int64)  # exact integer sums, as for streamed images
    s2 = torch.zeros(c, dtype=torch.int64)
    for chunk in flat.split(1 << 22, dim=1):  # bounded memory for large sets
        v = chunk.long()
        s1 += v.sum(1)
        s2 += (v * v).sum(1)
    return stats_from_sums(s1.numpy(), s2.numpy(), flat.shape[1])


register_source("imagefolder", load_imagefolder)
register_source("csv", load_csv)
