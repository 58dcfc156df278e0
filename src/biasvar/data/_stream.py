"""Images read from disk every epoch, for sets too large to hold decoded in memory.

:class:`StreamImages` stands in for the uint8 ``(N, C, H, W)`` tensor ``ImageData.x``. It has that
tensor's ``shape``, ``dtype`` and ``ndim``; ``x[i]`` decodes image ``i`` to a ``(C, H, W)`` uint8
tensor; ``x.take(rows)`` selects rows (repeats allowed, for bootstrap samples); and
:class:`BatchLoader` yields uint8 batches decoded by ``torch.utils.data.DataLoader`` worker
processes (started once per fit) while the training process runs the model. An image is
decoded by the same functions as on the in-memory path (PIL, the mode rules, the bilinear resize,
the channel conversion), so a streamed set gives the same pixels, and the same training run batch
for batch, as if it had fitted in memory (the tests check both).

Opening a streamed set scans it once (:func:`scan`, with the same workers): every image is decoded,
those that cannot be are reported like on the in-memory path, and per-image channel sums are kept,
so the mean/std of any split (the training split's normalisation) come without another pass.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from ._labels import listing
from ._pixels import decode, image_of, reason, resize, to_channels

__all__ = ["StreamImages", "FileReader", "DatasetReader", "ScanResult", "scan", "batches",
           "BatchLoader", "loader_workers", "stats_from_sums", "PROGRESS_FROM"]

#: sets with more images than this get a progress bar while decoding
PROGRESS_FROM = 5000


def loader_workers(cfg: Any = None) -> int:
    """DataLoader worker processes for streamed images: ``cfg.loader_workers`` when set, else the
    cores less one (the training process keeps one), at least 1 and at most 8."""
    given = getattr(cfg, "loader_workers", None)
    if given is not None:
        return int(given)
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may use
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores - 1))


def stats_from_sums(s1: np.ndarray, s2: np.ndarray, n: int
                    ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) in [0, 1] units from Σv and Σv² of ``n`` uint8 values per channel
    (std floored at 1e-3 so a constant channel does not divide by zero)."""
    s1 = np.asarray(s1, dtype=np.float64) / 255.0
    s2 = np.asarray(s2, dtype=np.float64) / (255.0 * 255.0)
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean * mean, 1e-12))
    return tuple(float(v) for v in mean), tuple(max(float(v), 1e-3) for v in std)


# ------------------------------------------------------------------------------------------
# readers: item number → (H, W) or (H, W, 3) uint8 pixels at the set's size


class FileReader:
    """Image files, decoded like :func:`biasvar.data._files.decode_files` decodes them."""

    def __init__(self, files: Sequence[Path | str], names: Sequence[str], hw: tuple[int, int]):
        # absolute: a later chdir (or a worker process) must find the same files
        self.files = [os.path.abspath(f) for f in files]
        self.names = list(names)
        self.hw = (int(hw[0]), int(hw[1]))

    def __len__(self) -> int:
        return len(self.files)

    def read(self, i: int) -> np.ndarray:
        return decode(Path(self.files[i]), self.hw)

    def name(self, i: int) -> str:
        return self.names[i]


class DatasetReader:
    """The images of a map-style ``Dataset`` of ``(image, label)`` pairs (its labels are read
    once, when the set is opened)."""

    def __init__(self, dataset: Any, hw: tuple[int, int]):
        self.dataset = dataset
        self.hw = (int(hw[0]), int(hw[1]))

    def __len__(self) -> int:
        return len(self.dataset)

    def read(self, i: int) -> np.ndarray:
        return resize(image_of(self.dataset[i][0]), self.hw)

    def name(self, i: int) -> str:
        return f"#{i}"


# ------------------------------------------------------------------------------------------
# the stand-in for the uint8 tensor


class StreamImages:
    """uint8 ``(N, C, H, W)`` images decoded on demand: rows ``rows`` of ``reader``, converted to
    ``channels``; ``sums`` (N, C, 2) int64 holds each image's Σv and Σv² per channel."""

    dtype = torch.uint8
    ndim = 4

    def __init__(self, reader: Any, rows: np.ndarray, channels: int, sums: np.ndarray,
                 what: str = "dataset"):
        self.reader = reader
        self.rows = np.asarray(rows, dtype=np.int64)
        self.channels = int(channels)
        self.sums = np.asarray(sums, dtype=np.int64)
        self.what = what
        assert self.sums.shape == (len(self.rows), self.channels, 2), self.sums.shape

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), self.channels, *self.reader.hw))

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        n, c, h, w = self.shape
        return f"StreamImages({n}×{c}×{h}×{w} uint8 from {self.what})"

    def name(self, i: int) -> str:
        return self.reader.name(int(self.rows[i]))

    def load(self, i: int) -> np.ndarray:
        """Image ``i`` as a (C, H, W) uint8 array."""
        a = to_channels(self.reader.read(int(self.rows[i])), self.channels)
        return a if a.flags.writeable else a.copy()  # PIL's buffers are read-only

    def __getitem__(self, i: Any) -> torch.Tensor:
        """``x[i]``: image ``i`` as a (C, H, W) tensor; ``x[rows]`` (integers, a boolean mask of
        length N, or a slice): a (len(rows), C, H, W) batch. Decoded here, in this process;
        training uses :func:`batches`. Index the decoded tensor for anything finer."""
        if isinstance(i, torch.Tensor):
            i = i.cpu().numpy()
        if isinstance(i, (int, np.integer)) or (isinstance(i, np.ndarray) and i.ndim == 0
                                                and i.dtype.kind in "iu"):
            k = int(i)
            if not -len(self) <= k < len(self):
                raise IndexError(f"image {k} is out of range for {len(self)} images")
            return torch.from_numpy(self.load(k % len(self)))
        if isinstance(i, tuple):
            raise TypeError("streamed images take one index (x[i], x[rows], x[mask], x[a:b]); "
                            "decode first, then index the tensor: x[rows][:, 0]")
        if isinstance(i, slice):
            rows = np.arange(len(self))[i]
        else:
            rows = np.asarray(i)
            if rows.dtype == np.bool_:
                if rows.shape != (len(self),):
                    raise IndexError(f"a boolean mask of shape {rows.shape} for {len(self)} "
                                     "images")
                rows = np.flatnonzero(rows)
            elif rows.ndim != 1 or rows.dtype.kind not in "iu":
                raise TypeError(f"streamed images are indexed by integers, a boolean mask or a "
                                f"slice, not {rows.dtype} of shape {rows.shape}")
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.uint8)
        for k, r in enumerate(rows):
            out[k] = self.load(int(r))
        return torch.from_numpy(out)

    def take(self, idx: Any) -> "StreamImages":
        """The images at ``idx`` (repeats allowed), still streamed."""
        idx = np.asarray(idx.cpu() if isinstance(idx, torch.Tensor) else idx, dtype=np.int64)
        return StreamImages(self.reader, self.rows[idx], self.channels, self.sums[idx], self.what)

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel (mean, std) in [0, 1] units, from the sums measured when opened."""
        n = len(self) * self.shape[2] * self.shape[3]
        tot = self.sums.sum(axis=0)  # (C, 2), exact integers
        return stats_from_sums(tot[:, 0], tot[:, 1], n)


# ------------------------------------------------------------------------------------------
# DataLoader plumbing


class _Failure:
    """An image that could not be decoded in a worker (raised cleanly in the main process)."""

    def __init__(self, name: str, reason: str):
        self.name, self.reason = name, reason


class _Items(torch.utils.data.Dataset):
    def __init__(self, images: StreamImages):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> np.ndarray | _Failure:
        try:
            return self.images.load(i)
        except Exception as e:  # noqa: BLE001 - PIL and user datasets raise many types
            return _Failure(self.images.name(i), reason(e))


def _collate(items: list) -> torch.Tensor | list[_Failure]:
    bad = [it for it in items if isinstance(it, _Failure)]
    return bad if bad else torch.from_numpy(np.stack(items))


def _worker_context() -> Any:
    """Fork on Linux: a worker starts in milliseconds instead of importing torch again (seconds),
    and processes started by spawn (the analyses' fit workers) would otherwise start their
    DataLoader workers by spawn too. Elsewhere (macOS, Windows) the platform's default."""
    import multiprocessing as mp
    import sys

    return mp.get_context("fork") if sys.platform.startswith("linux") else None


def _loader(dataset: torch.utils.data.Dataset, workers: int, **kw: Any) -> Any:
    # its own generator: seeding the workers must not draw from the global torch RNG, which
    # drives dropout (a streamed run stays identical to an in-memory one)
    kw.setdefault("persistent_workers", False)
    return torch.utils.data.DataLoader(
        dataset, num_workers=workers, prefetch_factor=2 if workers else None,
        generator=torch.Generator().manual_seed(0),
        multiprocessing_context=_worker_context() if workers else None, **kw)


class _Order:
    """A batch sampler whose batches are set before each pass (read in the main process when a
    pass starts, so persistent workers serve every epoch's new order)."""

    def __init__(self) -> None:
        self.lists: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.lists)

    def __len__(self) -> int:
        return len(self.lists)


class BatchLoader:
    """uint8 ``(B, C, H, W)`` batches of ``images``, decoded by ``workers`` DataLoader processes
    (0: in this process) a few batches ahead. The workers are started once and serve every pass
    (``loader(index_lists)``: the batches at the rows of each list, in order) until
    :meth:`close` — one start per fit instead of one per epoch (seconds where workers spawn)."""

    def __init__(self, images: StreamImages, *, workers: int, pin_memory: bool = False):
        self.images = images
        self._order = _Order()
        self._loader: Any = _loader(_Items(images), workers, batch_sampler=self._order,
                                    collate_fn=_collate, pin_memory=pin_memory,
                                    persistent_workers=workers > 0)

    def __call__(self, index_lists: Sequence[Sequence[int]]) -> Iterator[torch.Tensor]:
        if self._loader is None:
            raise RuntimeError("BatchLoader used after close()")
        self._order.lists = [list(map(int, b)) for b in index_lists]
        return _checked(iter(self._loader), self.images)

    def close(self) -> None:
        """Stop the worker processes."""
        loader, self._loader = self._loader, None
        it = getattr(loader, "_iterator", None)
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()

    def __enter__(self) -> "BatchLoader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def batches(images: StreamImages, index_lists: Sequence[Sequence[int]], *, workers: int,
            pin_memory: bool = False) -> Iterator[torch.Tensor]:
    """One pass of :class:`BatchLoader` (its workers stop when the pass ends)."""
    with BatchLoader(images, workers=workers, pin_memory=pin_memory) as loader:
        yield from loader(index_lists)


def _checked(it: Iterator, images: StreamImages) -> Iterator[torch.Tensor]:
    """The batches of a DataLoader iterator, with its failures as clear DataErrors."""
    while True:
        try:
            b = next(it)
        except StopIteration:
            return
        except RuntimeError as e:  # a worker killed (out of memory, a too small /dev/shm)
            if "DataLoader worker" not in str(e):
                raise
            raise DataError(
                f"{images.what}: a DataLoader worker decoding streamed images died "
                f"({str(e).splitlines()[0][:160]}). It ran out of memory or of shared memory "
                "(/dev/shm, small in containers): use --loader-workers 0 to decode in the "
                "training process, a smaller --batch-size, or a larger /dev/shm.") from None
        if isinstance(b, list):
            raise DataError(
                f"{images.what}: {len(b)} images could not be read "
                f"({listing([f'{f.name} ({f.reason})' for f in b])}); they were readable when "
                "the dataset was opened, so they were changed or removed since. Restore them, "
                "or load the dataset again.")
        yield b


class _ScanItems(torch.utils.data.Dataset):
    """Item i → (i, colour?, sums (C, 2)) or (i, reason) when it cannot be decoded."""

    def __init__(self, reader: Any, channels: int):
        self.reader, self.channels = reader, channels

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, i: int) -> tuple:
        try:
            a = self.reader.read(i)
        except Exception as e:  # noqa: BLE001
            return i, reason(e)
        c = to_channels(a, self.channels).reshape(self.channels, -1)
        s1 = c.sum(axis=1, dtype=np.int64)
        c64 = c.astype(np.int64)
        s2 = np.einsum("ij,ij->i", c64, c64)
        return i, a.ndim == 3, np.stack([s1, s2], axis=1)


def _as_list(items: list) -> list:
    return items


class ScanResult:
    """What :func:`scan` found: the readable rows with their sums, the unreadable ones with
    reasons, the channel count, and how many images are in colour."""

    def __init__(self, rows: np.ndarray, sums: np.ndarray, bad: list[tuple[int, str]],
                 channels: int, n_colour: int):
        self.rows, self.sums, self.bad = rows, sums, bad
        self.channels, self.n_colour = channels, n_colour


def scan(reader: Any, channels: int | None, *, workers: int, desc: str = "scanning images",
         progress_from: int = PROGRESS_FROM) -> ScanResult:
    """Decode every item of ``reader`` once (``workers`` DataLoader processes) and measure it.

    ``channels=None`` decides the count like the in-memory path does: 3 when any image is in
    colour (R, G, B not all equal), else 1."""
    n = len(reader)
    work = channels or 3  # undecided: measure as RGB; grey images give 3 equal channels
    loader = _loader(_ScanItems(reader, work), workers, batch_size=64, collate_fn=_as_list)
    bar = None
    if n >= progress_from:
        from tqdm.auto import tqdm

        # disable=None: no bar when stderr is not a terminal (logs, CI)
        bar = tqdm(total=n, desc=desc, unit="img", leave=False, dynamic_ncols=True, disable=None)
    rows, sums, bad, n_colour = [], [], [], 0
    try:
        for chunk in loader:
            for item in chunk:
                if len(item) == 2:
                    bad.append(item)
                    continue
                i, colour, s = item
                rows.append(i)
                sums.append(s)
                n_colour += bool(colour)
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    if channels is None:
        channels = 3 if n_colour else 1
    out = (np.stack(sums) if sums else np.zeros((0, work, 2), np.int64))[:, :channels]
    return ScanResult(np.asarray(rows, dtype=np.int64), np.ascontiguousarray(out), bad,
                      channels, n_colour)
