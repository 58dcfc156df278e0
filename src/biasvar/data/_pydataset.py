"""Any ``torch.utils.data.Dataset`` (Python API): its ``(image, label)`` pairs decoded once.

The images become the same uint8 ``(N, C, H, W)`` tensor as the built-in datasets (pixels
converted by :mod:`biasvar.data._pixels`), or, past the memory budget
(:mod:`biasvar.data._memory`), a :class:`~biasvar.data._stream.StreamImages` that reads the
dataset again every epoch — which needs a map-style dataset (``len`` and ``[i]``) that returns
the same pixels every time. See :func:`decode_dataset` for what an item may be.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import DataError, suggest
from ._labels import check_classes, listing, sorted_labels
from ._memory import memory_budget, stream_note
from ._pixels import colour_note, image_of, resize, stack, target_size
from ._stream import PROGRESS_FROM, DatasetReader, StreamImages, loader_workers, scan
from ._types import Decoded, ImageData

__all__ = ["decode_dataset", "load_source"]


def _label_of(v: Any) -> int | str:
    if isinstance(v, str):
        return v.strip()
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            raise ValueError(f"label is a tensor of shape {tuple(v.shape)}, not one number")
        v = v.item()
    if isinstance(v, np.ndarray):
        if v.size != 1:
            raise ValueError(f"label is an array of shape {v.shape}, not one number")
        v = v.item()
    if isinstance(v, (bool, np.bool_)):
        raise ValueError("label is a bool; use class numbers 0..K-1 or class names")
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return int(v)
    raise ValueError(f"label {v!r} ({type(v).__name__}) is not a class number or name")


def _map_style(dataset: Any) -> bool:
    """True for datasets read by index (``len`` and ``[i]``), which can be streamed."""
    return (not isinstance(dataset, torch.utils.data.IterableDataset)
            and hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"))


def _items(dataset: Any) -> Iterable[tuple[int, Any]]:
    """(i, item) pairs: by index for map-style datasets and sequences, else by iteration."""
    if _map_style(dataset):
        for i in range(len(dataset)):
            try:
                yield i, dataset[i]
            except Exception as e:  # noqa: BLE001 - the user's dataset code
                raise DataError(f"dataset[{i}] raised {type(e).__name__}: {e}") from None
    else:
        try:
            it = iter(dataset)
        except TypeError:
            raise DataError(f"source: a {type(dataset).__name__} is neither a map-style Dataset "
                            "(len and [i]) nor iterable.") from None
        i = 0
        while True:
            try:
                item = next(it)
            except StopIteration:
                return
            except Exception as e:  # noqa: BLE001
                raise DataError(f"dataset item {i} raised {type(e).__name__}: {e}") from None
            yield i, item
            i += 1


def decode_dataset(dataset: Any, cfg: Any, *, classes: Sequence[str] | None = None,
                   what: str = "source", hw: tuple[int, int] | None = None,
                   channels: int | None = None, check: bool = True) -> Decoded:
    """Decode a Dataset yielding ``(image, label)`` into uint8 (N, C, H, W).

    ``image``: a PIL image (any mode), a tensor (C, H, W) or (H, W), or a numpy array
    (H, W, C) / (H, W) (also (C, H, W) when the last axis is longer than 4). Pixel types:
    uint8; uint16 (16-bit); bool; float in [0, 1] (ToTensor's output — normalised values are
    refused, since biasvar normalises with the training split's statistics itself).
    ``label``: a class number (int, 0-d tensor) or a class name (str). Class names come from
    ``classes``, else the dataset's ``.classes``, else ``"0".."K-1"`` (numbers) or the sorted
    distinct names (strings). ``hw``/``channels`` force a size and channel count (used to
    decode a test source like its training source)."""
    size = (int(cfg.image_size),) * 2 if cfg.image_size is not None else hw
    channels = cfg.channels if channels is None else channels
    streamable = _map_style(dataset)
    # pixels are kept until they pass the memory budget; past it (or with --stream always) only
    # the labels, sizes and colour flags are, and the images are streamed from the dataset
    keep_pixels = getattr(cfg, "stream", "auto") != "always"
    if not keep_pixels:
        stream_note(cfg, what, 0, 1, (1, 1), streamable=streamable)  # an iterable: refused
    arrays: list[np.ndarray] = []
    shapes: list[tuple[int, int]] = []
    n_colour = 0
    raw_labels: list[int | str] = []
    nbytes = 0
    budget, _ = memory_budget()
    for i, item in _items(dataset):
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise DataError(f"{what}[{i}]: expected an (image, label) pair, got "
                            f"{type(item).__name__}.")
        try:
            a = image_of(item[0])
            lab = _label_of(item[1])
        except ValueError as e:
            raise DataError(f"{what}[{i}]: {e}.") from None
        if size is not None:
            a = resize(a, size)
        shapes.append(a.shape[:2])
        n_colour += a.ndim == 3
        raw_labels.append(lab)
        if keep_pixels:
            arrays.append(a)
            nbytes += a.nbytes
            if nbytes > budget:  # estimate the whole set at this image's size
                n = max(len(dataset) if streamable else 0, len(arrays))
                # raises when it will not fit and cannot be streamed (never, an iterable)
                if stream_note(cfg, what, n, channels or (3 if n_colour else 1), a.shape[:2],
                                streamable=streamable) is not None:
                    keep_pixels, arrays = False, []
    if not raw_labels:
        raise DataError(f"{what}: the dataset is empty.")
    kinds = {type(v) for v in raw_labels}
    if len(kinds) > 1:
        raise DataError(f"{what}: labels mix class numbers and class names; use one kind.")
    notes: list[str] = []
    if kinds == {str}:
        names = list(classes) if classes is not None else sorted_labels(raw_labels)  # type: ignore[arg-type]
        index = {c: k for k, c in enumerate(names)}
        unknown = sorted({str(v) for v in raw_labels if v not in index})
        if unknown:
            raise DataError(f"{what}: {len(unknown)} labels are not among the classes "
                            f"{names[:10]}{' ...' if len(names) > 10 else ''}: "
                            f"{listing([_with_suggestion(u, names) for u in unknown])}.")
        y = [index[str(v)] for v in raw_labels]
    else:
        y = [int(v) for v in raw_labels]
        k = max(y) + 1
        given = list(classes) if classes is not None else getattr(dataset, "classes", None)
        if given is not None and isinstance(given, (list, tuple)) and len(given) >= k:
            names = [str(c) for c in given]
        elif classes is not None:
            raise DataError(f"{what}: label {max(y)} is outside the {len(classes)} classes "
                            f"given (0..{len(classes) - 1}).")
        else:
            names = [str(c) for c in range(k)]
        if min(y) < 0:
            raise DataError(f"{what}: label {min(y)} is negative; class numbers are 0..K-1.")
    if size is None:
        size, note = target_size(shapes, None, what)
        if note:
            notes.append(note)
    c = channels or (3 if n_colour else 1)
    streamed = stream_note(cfg, what, len(raw_labels), c, size, streamable=streamable)
    if streamed is None and len(arrays) == len(raw_labels):
        arrays = [resize(a, size) for a in arrays]
        if streamable and _changes_when_read(arrays, size, dataset):
            notes.append(f"{what}: the dataset returns different pixels each time an item is "
                         "read (a random transform?). Its images were decoded once, so that "
                         "transform was applied once and frozen; remove it and use biasvar's "
                         "--augment, which draws new augmentations every epoch.")
        x, note = stack(arrays, channels, what)
    else:
        # pixels dropped while reading (only with stream auto, for a map-style dataset), though
        # at the final size they would fit: stream them rather than read the dataset again
        streamed = streamed or (f"{what}: the images passed the memory budget while "
                                "being read, so they are decoded again every epoch.")
        arrays = []
        reader = DatasetReader(dataset, size)
        _check_repeatable(reader, what)
        found = scan(reader, c, workers=loader_workers(cfg), progress_from=PROGRESS_FROM)
        if found.bad:
            raise DataError(f"{what}: {len(found.bad)} items could not be read a second time "
                            f"({listing([f'#{i} ({r})' for i, r in found.bad])}); a streamed "
                            "dataset must return the same items every time it is read.")
        x = StreamImages(reader, found.rows, c, found.sums, what)
        note = colour_note(what, n_colour, len(raw_labels)) if channels is None else None
    for n_ in (note, streamed):
        if n_:
            notes.append(n_)
    yt = torch.as_tensor(y, dtype=torch.int64)
    if check:
        check_classes(what, yt.numpy(), names)
    return Decoded(x, yt, names, [f"#{i}" for i in range(len(y))], notes)


def _changes_when_read(arrays: list[np.ndarray], size: tuple[int, int], dataset: Any,
                       k: int = 4) -> bool:
    """True when reading one of the first ``k`` items again gives other pixels."""
    reader = DatasetReader(dataset, size)
    try:
        return any(not np.array_equal(reader.read(i), arrays[i])
                   for i in range(min(k, len(arrays))))
    except Exception:  # noqa: BLE001 - a dataset that cannot be read twice: nothing to say
        return False


def _check_repeatable(reader: Any, what: str, k: int = 4) -> None:
    """A streamed dataset is read every epoch: its first items must come back the same (a random
    transform in the dataset would change the pixels, and the mean/std measured once)."""
    for i in range(min(k, len(reader))):
        try:
            same = np.array_equal(reader.read(i), reader.read(i))
        except Exception as e:  # noqa: BLE001 - the user's dataset code
            raise DataError(f"{what}[{i}] raised {type(e).__name__} when read again: {e}") from None
        if not same:
            raise DataError(f"{what}[{i}] returns different pixels each time it is read (a random "
                            "transform?). Streamed images are read every epoch and must not "
                            "change: remove random transforms from the dataset and use biasvar's "
                            "--augment, or make the set fit in memory (--image-size).")


def _with_suggestion(name: str, known: Sequence[str]) -> str:
    """``'name'``, followed by the nearest known name when there is one."""
    hint = suggest(name, known)
    return f"{name!r} ({hint.strip()})" if hint else repr(name)


def load_source(source: Any, cfg: Any, *, test_source: Any = None,
                classes: Sequence[str] | None = None
                ) -> tuple[ImageData, ImageData | None, list[str]]:
    """Python API: a Dataset of (image, label) (and optionally its test split) → pools + notes.

    The test source is decoded at the training source's size and channel count, with its class
    names."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        train = decode_dataset(source, cfg, classes=classes, what="source")
        test = None
        if test_source is not None:
            c, h, w = train.x.shape[1:]
            td = decode_dataset(test_source, cfg, classes=train.classes, what="test_source",
                                hw=(h, w), channels=c, check=False)
            test = td.image_data()
            train.notes += td.notes
    return train.image_data(), test, train.notes
