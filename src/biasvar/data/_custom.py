"""The user's own images: ``imagefolder:PATH``, ``csv:PATH`` and any ``torch.utils.data.Dataset``.

Every source is decoded **once** into the same uint8 ``(N, C, H, W)`` tensor the built-in datasets
use, so training, splits and analyses do not know where the images came from — or, when that
tensor would not fit in memory, into a :class:`~biasvar.data._stream.StreamImages` that decodes
the same pixels again every epoch. None of these sources has its own test split:
:func:`biasvar.data.build_bundle` carves a stratified one (``test_fraction``), and the run
directory's ``splits.npz`` records it.

Rules (each one is also said in the bundle's notes when it applied):

* **Layout.** ``imagefolder:PATH`` is a folder per class (``PATH/<class>/<image>``); class names
  are the folder names, sorted by code point like torchvision's ``ImageFolder`` (so class
  indices match it). Images in sub-folders of a class folder belong to that class (searched
  recursively, like torchvision; symbolic links to folders below a class folder are not
  followed). Files directly in ``PATH`` are ignored. ``csv:FILE`` has a header row naming the
  columns ``path`` and ``label`` (any order, any case, extra columns ignored); paths are
  relative to the CSV's folder and may not leave it (no ``..`` above it, no absolute paths;
  the check is on the text — symbolic links placed inside the folder are followed); classes
  are the sorted distinct labels (numerically when every label is an integer). An empty
  label is an error, and so is a label given to fewer than :data:`MIN_IMAGES_PER_CLASS`
  images: it is reported with the nearest other label, since it is usually a typo. The same
  image listed twice is kept once (a note; an error when the labels differ).
* **Files.** Names starting with ``.`` (files and folders: ``.DS_Store``, ``._x.png``,
  ``.ipynb_checkpoints``) are ignored. Image extensions are matched case-insensitively
  (:data:`IMAGE_EXTENSIONS`); other files are ignored and counted. A file that cannot be
  decoded (zero bytes, truncated, not an image despite its name, missing for a CSV row) is
  skipped with a count and the first few names — or stops the run with ``--strict``.
* **Pixels.** Every mode becomes 8-bit grey or RGB: 1-bit → 0/255; palette → its colours;
  16-bit (``I;16``, ``I``) → ``round(v · 255 / 65535)`` (so 8-bit data stored as ``v·257``
  comes back exactly); float (``F``) → [0, 1] scaled by 255 when its maximum is ≤ 1, else
  clipped to [0, 255]; CMYK/YCbCr → RGB. **Transparency is composited onto white**
  (``c·α + 255·(1 − α)``), as the image looks on a white page; fully opaque pixels are
  unchanged. EXIF orientation is applied; an animated GIF contributes its first frame.
* **Channels** (``--channels``): default 1 when every image is grey (a colour image whose
  R, G and B are equal counts as grey), else 3. Colour → grey uses PIL's ITU-R 601-2 luma
  (``L = (299 R + 587 G + 114 B) / 1000``); grey → colour repeats the channel.
* **Size** (``--image-size S``): every image is resized to S×S (bilinear, antialiased; the aspect
  ratio is not kept: a non-square image is stretched, nothing is cropped away). Without it,
  images that all share one size keep it; mixed sizes go to the median of the shorter sides,
  and a note says so.
* **Memory.** The decoded tensor must fit in :data:`MEMORY_FRACTION` of physical memory
  (``BIASVAR_MEMORY_BUDGET`` bytes overrides). A set that does not (or any set, with
  ``--stream always``) is scanned once — every image decoded, unreadable ones handled as above,
  per-image channel sums kept for the mean/std — and then read from disk every epoch by
  DataLoader worker processes (``--loader-workers``), a note saying so and which
  ``--image-size`` would fit. ``--stream never`` fails instead, suggesting that size. An
  iterable dataset without ``len`` and ``[i]`` cannot be streamed.
"""
from __future__ import annotations

import csv
import difflib
import io
import os
import re
import statistics
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from ._types import ImageData

__all__ = ["IMAGE_EXTENSIONS", "MEMORY_FRACTION", "MIN_IMAGES_PER_CLASS", "Decoded",
           "load_imagefolder", "load_csv", "load_source", "list_imagefolder", "read_manifest",
           "decode_files", "decode_dataset", "pil_to_array", "array_to_8bit", "memory_budget"]

#: file name endings read as images (compared case-insensitively)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
#: at most this fraction of physical memory may hold the decoded uint8 images
MEMORY_FRACTION = 0.25
#: every class needs an image in train, validation and test
MIN_IMAGES_PER_CLASS = 3
#: how many file names a note or an error lists before "and N more"
_SHOW = 5
#: folders with more files than this get a progress bar while decoding
_PROGRESS_FROM = 5000


@dataclass
class Decoded:
    """Decoded images: ``x`` uint8 (N, C, H, W), ``y`` int64 (N,), the source of each row in
    ``paths`` (file paths relative to the source, or ``"#i"`` item numbers) and notes."""

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    paths: list[str]
    notes: list[str] = field(default_factory=list)

    def image_data(self) -> ImageData:
        return ImageData(self.x, self.y, list(self.classes), list(self.paths))


# ------------------------------------------------------------------------------------------
# pixels


def _bit16_to_8(a: np.ndarray) -> np.ndarray:
    """16-bit values (0..65535; anything outside is clipped) → uint8, ``round(v·255/65535)``."""
    a = np.clip(a.astype(np.int64), 0, 65535)
    return ((a * 255 + 32767) // 65535).astype(np.uint8)


def _float_to_8(a: np.ndarray) -> np.ndarray:
    """Floats → uint8: [0, 1] data is scaled by 255; larger values are taken as 0..255."""
    a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    if a.size and a.max() <= 1.0:
        a = a * 255.0
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _composite_on_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``c·α + 255·(1 − α)`` in exact integer arithmetic; colour (H, W[, 3]) and alpha (H, W)
    uint8 → uint8 of colour's shape."""
    a = alpha.astype(np.uint32)
    if colour.ndim == 3:
        a = a[..., None]
    return ((colour.astype(np.uint32) * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


def _collapse_grey(a: np.ndarray) -> np.ndarray:
    """An (H, W, 3) array whose three channels are equal → (H, W); anything else unchanged."""
    if a.ndim == 3 and np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2]):
        return np.ascontiguousarray(a[..., 0])
    return a


def pil_to_array(img: Any) -> np.ndarray:
    """8-bit pixels of a PIL image in any mode: (H, W) when grey, (H, W, 3) when colour."""
    from PIL import Image

    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        return _bit16_to_8(np.asarray(img))
    if mode == "F":
        return _float_to_8(np.asarray(img))
    has_key = "transparency" in img.info  # palette or colour-key transparency
    if mode in ("LA", "La", "PA", "RGBA", "RGBa") or has_key:
        rgba = np.asarray(img.convert("RGBA"))
        return _collapse_grey(_composite_on_white(rgba[..., :3], rgba[..., 3]))
    if mode == "L":
        return np.asarray(img)
    if mode == "1":
        return np.asarray(img.convert("L"))
    if mode != "RGB":
        img = img.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV, ...
    assert isinstance(img, Image.Image)
    return _collapse_grey(np.asarray(img))


def array_to_8bit(a: np.ndarray, *, layout: str = "auto") -> np.ndarray:
    """A numpy array or tensor image → (H, W) or (H, W, 3) uint8 (see :func:`decode_dataset`).

    ``layout`` ``"chw"`` (tensors), ``"hwc"`` (numpy/PIL) or ``"auto"``: 3-D arrays are HWC
    when the last axis has 1–4 entries, else CHW."""
    a = np.asarray(a)
    if a.ndim == 3:
        if layout == "auto":
            layout = "hwc" if a.shape[-1] in (1, 2, 3, 4) else "chw"
        if layout == "chw":
            a = np.moveaxis(a, 0, -1)
        if a.shape[-1] not in (1, 2, 3, 4):
            raise ValueError(f"{a.shape[-1]} channels (expected 1, 2, 3 or 4)")
    elif a.ndim != 2:
        raise ValueError(f"shape {tuple(a.shape)} is not an image (expected (H, W), (C, H, W) for "
                         "tensors or (H, W, C) for numpy arrays)")
    if a.dtype == np.uint8:
        out = a
    elif a.dtype == np.bool_:
        out = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16:
        out = _bit16_to_8(a)
    elif np.issubdtype(a.dtype, np.floating):
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"float pixels range over [{lo:.3g}, {hi:.3g}], not [0, 1]. biasvar "
                             "normalises with the training split's mean/std itself: give it "
                             "un-normalised images (remove Normalize from the transform; "
                             "ToTensor's [0, 1] output is fine)")
        out = np.rint(a.astype(np.float64) * 255.0).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.integer):
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        if lo < 0 or hi > 255:
            raise ValueError(f"integer pixels range over [{lo}, {hi}]; expected 0..255 (uint8) "
                             "or a uint16 array")
        out = a.astype(np.uint8)
    else:
        raise ValueError(f"pixel type {a.dtype} is not supported")
    if out.ndim == 3:
        c = out.shape[-1]
        if c == 1:
            out = out[..., 0]
        elif c == 2:  # grey + alpha
            out = _composite_on_white(out[..., 0], out[..., 1])
        elif c == 4:
            out = _composite_on_white(out[..., :3], out[..., 3])
    return _collapse_grey(np.ascontiguousarray(out))


def _resize(a: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W[, 3]) uint8 array to ``hw`` (bilinear, antialiased when shrinking)."""
    if a.shape[:2] == hw:
        return a
    from PIL import Image

    return np.asarray(Image.fromarray(a).resize((hw[1], hw[0]), Image.Resampling.BILINEAR))


def _to_channels(a: np.ndarray, c: int) -> np.ndarray:
    """(H, W[, 3]) uint8 → (C, H, W) uint8 with ``c`` channels (luma for colour → grey)."""
    if c == 1:
        if a.ndim == 3:
            from PIL import Image

            a = np.asarray(Image.fromarray(a, "RGB").convert("L"))
        return a[None]
    if a.ndim == 2:
        return np.repeat(a[None], 3, axis=0)
    return np.ascontiguousarray(a.transpose(2, 0, 1))


# ------------------------------------------------------------------------------------------
# sizes, memory, notes


def _fmt_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def memory_budget() -> tuple[int, str]:
    """(bytes the decoded images may take, how that number was chosen)."""
    env = os.environ.get("BIASVAR_MEMORY_BUDGET")
    if env:
        try:
            value = float(env)
        except ValueError:
            value = float("nan")
        if not value >= 0 or value == float("inf"):
            raise DataError(f"BIASVAR_MEMORY_BUDGET: {env!r} is not a number of bytes (0 or "
                            "more); e.g. BIASVAR_MEMORY_BUDGET=4e9 for 4 GB.") from None
        return int(value), "BIASVAR_MEMORY_BUDGET"
    ram = _physical_memory()
    if ram is None:
        return 8 << 30, "a fixed 8 GiB (physical memory unknown)"
    return int(ram * MEMORY_FRACTION), (f"{MEMORY_FRACTION:.0%} of this machine's "
                                        f"{_fmt_bytes(ram)} of memory")


def _memory_fix(n: int, c: int, hw: tuple[int, int], budget: int) -> str:
    side = int((budget / max(1, n * c)) ** 0.5)
    fix = (f"a smaller --image-size (at most {side}: {n} images × {c}×{side}×{side} = "
           f"{_fmt_bytes(n * c * side * side)})" if side >= 4 else "fewer images")
    grey = n * hw[0] * hw[1]
    return fix + (f", or --channels 1 ({n} images × 1×{hw[0]}×{hw[1]} = {_fmt_bytes(grey)})"
                  if c == 3 and grey <= budget else "")


def _stream_note(cfg: Any, what: str, n: int, c: int, hw: tuple[int, int], *,
                 streamable: bool = True, estimated: bool = False) -> str | None:
    """Whether ``n`` images decoded to ``c``×``hw`` are streamed from disk: ``None`` (decode them
    into memory) or the note that says why they are streamed. Raises DataError when they do not
    fit the memory budget and cannot be streamed (``--stream never``, or an iterable dataset)."""
    mode = getattr(cfg, "stream", "auto")
    if mode == "always":
        if not streamable:
            raise DataError(f"{what}: stream 'always' needs a dataset with __len__ and "
                            "__getitem__, to read its images on demand; this one can only be "
                            "iterated. Use stream 'auto' to hold it in memory.")
        return (f"{what}: the images are decoded again every epoch (--stream always), by "
                "DataLoader worker processes (--loader-workers).")
    need = n * c * hw[0] * hw[1]
    budget, why = memory_budget()
    if need <= budget:
        return None
    counted = (" (files in colour modes counted as colour: their pixels are only known once "
               "decoded)" if estimated else "")
    head = (f"{what}: {n} images decoded to {c}×{hw[0]}×{hw[1]}{counted} need "
            f"{_fmt_bytes(need)} of memory, more than the {_fmt_bytes(budget)} allowed ({why})")
    if not streamable:  # an iterable: n is only how many were read so far
        raise DataError(f"{what}: the images read so far ({n}, decoded to {c}×{hw[0]}×{hw[1]}) "
                        f"already need more than the {_fmt_bytes(budget)} of memory allowed "
                        f"({why}), and a dataset without __len__ and __getitem__ cannot be read "
                        "from disk on demand: give it both so biasvar can stream it, or use a "
                        "smaller --image-size.")
    if mode == "never":
        raise DataError(f"{head}; use {_memory_fix(n, c, hw, budget)} or --stream auto to stream "
                        "them (decode them again every epoch) instead.")
    return (f"{head}, so they are streamed: decoded again every epoch by DataLoader worker "
            f"processes (--loader-workers), which is slower than memory; "
            f"{_memory_fix(n, c, hw, budget)} would fit in memory.")


def _target_size(sizes: Sequence[tuple[int, int]], image_size: int | None, what: str
                 ) -> tuple[tuple[int, int], str | None]:
    """The (H, W) every image is brought to, and a note when it was chosen for mixed sizes."""
    if image_size is not None:
        return (int(image_size), int(image_size)), None
    distinct = Counter(sizes)
    if len(distinct) == 1:
        return next(iter(distinct)), None
    side = max(1, int(round(statistics.median(min(s) for s in sizes))))
    common = ", ".join(f"{h}x{w} ({k})" for (h, w), k in distinct.most_common(3))
    return (side, side), (f"{what}: images come in {len(distinct)} sizes (most common: {common}); "
                          f"all were resized to {side}x{side}, the median shorter side. Set "
                          "--image-size to choose another size.")


def _listing(items: Sequence[str], total: int | None = None) -> str:
    total = len(items) if total is None else total
    shown = ", ".join(items[:_SHOW])
    return shown + (f", and {total - _SHOW} more" if total > _SHOW else "")


def _strict(cfg: Any) -> bool:
    return bool(getattr(cfg, "strict", False))


def _check_classes(what: str, y: np.ndarray, classes: Sequence[str]) -> None:
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
            close = difflib.get_close_matches(name, plenty, n=1, cutoff=0.6)
            hint = f", a typo for {close[0]!r}?" if close else ""
            parts.append(f"{name!r} ({k} image{'s' if k != 1 else ''}{hint})")
        raise DataError(f"{what}: {len(few)} class{'es' if len(few) > 1 else ''} "
                        f"{'have' if len(few) > 1 else 'has'} fewer than {MIN_IMAGES_PER_CLASS} "
                        f"images, too few to appear in the training, validation and test splits: "
                        f"{_listing(parts, len(few))}. Add images, fix the labels, or remove "
                        "the class.")


# ------------------------------------------------------------------------------------------
# files → tensor


def _orientation(img: Any) -> int:
    """The EXIF orientation tag (1 = as stored; 5..8 swap width and height)."""
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a damaged EXIF block is not worth failing on
        return 1


#: PIL modes that hold one grey channel (for the memory estimate before decoding)
_GREY_MODES = ("1", "L", "LA", "La", "I", "F")


def _header(path: Path) -> tuple[int, int, bool]:
    """(H, W, grey mode?) as the image will be shown (EXIF rotation applied); raises on
    unreadable files."""
    from PIL import Image

    if path.stat().st_size == 0:
        raise ValueError("empty file, 0 bytes")
    with Image.open(path) as img:
        w, h = img.size
        grey = img.mode in _GREY_MODES or img.mode.startswith("I;16")
        return (w, h, grey) if _orientation(img) in (5, 6, 7, 8) else (h, w, grey)


def _decode(path: Path, hw: tuple[int, int] | None) -> np.ndarray:
    """Decode one file to (H, W[, 3]) uint8, resized to ``hw`` when given."""
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img.load()  # decode fully now: truncated and damaged files fail here
        if _orientation(img) != 1:
            img = ImageOps.exif_transpose(img)
        a = pil_to_array(img)
    return _resize(a, hw) if hw is not None else a


def _reason(e: BaseException) -> str:
    if isinstance(e, FileNotFoundError):
        return "file not found"
    msg = str(e).splitlines()[0] if str(e) else ""
    msg = re.sub(r"^cannot identify image file .*", "not an image", msg)
    return (msg or type(e).__name__)[:80]


def _parallel(fn: Callable[[int], Any], n: int, desc: str) -> list[Any]:
    """``[fn(0), ..., fn(n-1)]`` on a thread pool (PIL decodes without holding the GIL)."""
    workers = max(1, min(8, os.cpu_count() or 1))
    bar = None
    if n >= _PROGRESS_FROM:
        from tqdm.auto import tqdm

        # disable=None: no bar when stderr is not a terminal (logs, CI)
        bar = tqdm(total=n, desc=desc, unit="img", leave=False, dynamic_ncols=True, disable=None)

    def run(i: int) -> Any:
        try:
            return fn(i)
        finally:
            if bar is not None:
                bar.update(1)

    try:
        if workers == 1 or n < 64:
            return [run(i) for i in range(n)]
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(run, range(n), chunksize=32))
    finally:
        if bar is not None:
            bar.close()


def decode_files(files: Sequence[Path], labels: Sequence[int], classes: Sequence[str], cfg: Any,
                 *, what: str, names: Sequence[str] | None = None,
                 notes: Sequence[str] = ()) -> Decoded:
    """Decode image files into uint8 (N, C, H, W) at ``cfg.image_size``/``cfg.channels``.

    Unreadable files are skipped with a note (or raise DataError when ``cfg.strict``); ``names``
    are the files' display names (default: the paths). Class counts are checked afterwards."""
    names = [str(p) for p in files] if names is None else list(names)
    notes = list(notes)
    if not files:
        raise DataError(f"{what}: no image files found.")
    bad: list[str] = []

    def head(i: int) -> tuple[int, int, bool] | str:
        try:
            return _header(files[i])
        except Exception as e:  # noqa: BLE001 - PIL raises many types for a bad file
            return _reason(e)

    heads = _parallel(head, len(files), "reading image headers")
    ok = [i for i, h in enumerate(heads) if isinstance(h, tuple)]
    bad += [f"{names[i]} ({heads[i]})" for i in range(len(files)) if isinstance(heads[i], str)]
    if not ok:
        raise DataError(f"{what}: none of the {len(files)} image files can be read: "
                        f"{_listing(bad)}.")
    hw, size_note = _target_size([heads[i][:2] for i in ok], cfg.image_size, what)
    # before decoding, a colour mode counts as 3 channels (its pixels may still all be grey)
    channels = cfg.channels or (1 if all(heads[i][2] for i in ok) else None)
    stream_note = _stream_note(cfg, what, len(ok), channels or 3, hw, estimated=channels is None)
    if stream_note is None:
        def body(i: int) -> np.ndarray | str:
            try:
                return _decode(files[i], hw)
            except Exception as e:  # noqa: BLE001
                return _reason(e)

        arrays = _parallel(lambda j: body(ok[j]), len(ok), "decoding images")
        keep = [j for j, a in enumerate(arrays) if isinstance(a, np.ndarray)]
        bad += [f"{names[ok[j]]} ({arrays[j]})" for j in range(len(ok))
                if isinstance(arrays[j], str)]
    else:
        from ._stream import FileReader, StreamImages, loader_workers, scan

        reader = FileReader([files[i] for i in ok], [names[i] for i in ok], hw)
        found = scan(reader, channels, workers=loader_workers(cfg),
                     progress_from=_PROGRESS_FROM)
        keep = found.rows.tolist()
        bad += [f"{reader.name(j)} ({reason})" for j, reason in found.bad]
    if bad:
        if _strict(cfg):
            raise DataError(f"{what}: {len(bad)} of {len(files)} image files cannot be read "
                            f"(--strict): {_listing(bad)}. Fix or remove them, or leave out "
                            "--strict to skip them.")
        notes.append(f"{what}: skipped {len(bad)} of {len(files)} files that are not readable "
                     f"images: {_listing(bad)}. Fix or remove them, or use --strict to stop "
                     "on them.")
    if not keep:
        raise DataError(f"{what}: none of the {len(files)} image files can be read: "
                        f"{_listing(bad)}.")
    if size_note:
        notes.append(size_note)
    if stream_note is None:
        x, channel_note = _stack([arrays[j] for j in keep], cfg.channels, what)
    else:
        x = StreamImages(reader, found.rows, found.channels, found.sums, what)
        channel_note = (_colour_note(what, found.n_colour, len(keep))
                        if channels is None else None)
    if channel_note:
        notes.append(channel_note)
    if stream_note:
        notes.append(stream_note)
    idx = [ok[j] for j in keep]
    y = torch.as_tensor([labels[i] for i in idx], dtype=torch.int64)
    _check_classes(what, y.numpy(), classes)
    return Decoded(x, y, list(classes), [names[i] for i in idx], notes)


def _colour_note(what: str, n_colour: int, n: int) -> str | None:
    if not n_colour:
        return None
    return (f"{what}: {n_colour} of {n} images are in colour, so all are used with 3 channels; "
            "--channels 1 converts them to grey.")


def _stack(arrays: list[np.ndarray], channels: int | None, what: str
           ) -> tuple[torch.Tensor, str | None]:
    """Same-size (H, W[, 3]) uint8 arrays → uint8 (N, C, H, W); frees the list as it goes."""
    n_colour = sum(a.ndim == 3 for a in arrays)
    note = None
    if channels is None:
        channels = 3 if n_colour else 1
        note = _colour_note(what, n_colour, len(arrays))
    h, w = arrays[0].shape[:2]
    x = np.empty((len(arrays), channels, h, w), dtype=np.uint8)
    for i in range(len(arrays)):
        x[i] = _to_channels(arrays[i], channels)
        arrays[i] = None  # type: ignore[call-overload]  # release as we go: bounded peak memory
    return torch.from_numpy(x), note


# ------------------------------------------------------------------------------------------
# imagefolder:PATH


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _existing_dir(spec: str, prefix: str) -> Path:
    if not spec.strip():
        raise DataError(f"dataset: {prefix}: needs a folder, e.g. --dataset {prefix}:path/to/images.")
    root = Path(os.path.expanduser(spec))
    if not root.exists():
        raise DataError(f"dataset {prefix}:{spec}: folder {str(root)!r} does not exist.")
    if not root.is_dir():
        hint = (f" For a CSV manifest use --dataset csv:{spec}." if root.suffix.lower() == ".csv"
                else "")
        raise DataError(f"dataset {prefix}:{spec}: {str(root)!r} is a file, not a folder of "
                        f"class folders.{hint}")
    return root


def list_imagefolder(root: Path, what: str, *, strict: bool = False
                     ) -> tuple[list[str], list[Path], list[int], list[str], list[str]]:
    """(classes, files, labels, display names, notes) of a class-per-folder tree.

    A class folder without images is left out with a note (an error with ``strict``)."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as e:
        raise DataError(f"{what}: cannot list the folder ({e.strerror}).") from None
    class_dirs = [e for e in entries if not _hidden(e.name) and e.is_dir()]
    loose = [e.name for e in entries if not _hidden(e.name) and e.is_file()]
    loose_images = [n for n in loose if _is_image(n)]
    if not class_dirs:
        if loose_images:
            raise DataError(
                f"{what}: no class folders, but {len(loose_images)} images directly in it "
                f"({_listing(loose_images)}). imagefolder: expects a folder per class, "
                f"e.g. {root / 'cat' / loose_images[0]}; for a list of files with labels use "
                "csv:FILE.")
        raise DataError(f"{what}: the folder is empty (no class folders with images). "
                        "imagefolder: expects PATH/<class name>/<image files>.")
    notes: list[str] = []
    per_class: list[tuple[str, list[tuple[str, Path]]]] = []
    other: list[str] = []
    nested = 0
    for d in class_dirs:
        found: list[tuple[str, Path]] = []
        for dirpath, dirnames, filenames in os.walk(d.path):
            dirnames[:] = sorted(n for n in dirnames if not _hidden(n))
            rel_dir = os.path.relpath(dirpath, root)
            for fn in sorted(filenames):
                if _hidden(fn):
                    continue
                rel = os.path.join(rel_dir, fn)
                if _is_image(fn):
                    found.append((rel, Path(dirpath) / fn))
                    nested += dirpath != d.path
                else:
                    other.append(rel)
        per_class.append((d.name, found))
    empty = [name for name, f in per_class if not f]
    if empty:
        msg = (f"{len(empty)} class folder{'s' if len(empty) > 1 else ''} without images: "
               f"{_listing([repr(e) for e in empty])}")
        if strict:
            raise DataError(f"{what}: {msg} (--strict). Add images or remove the folders.")
        notes.append(f"{what}: left out {msg}.")
    per_class = [(n, f) for n, f in per_class if f]
    if len(per_class) < 2:
        if not per_class:
            raise DataError(f"{what}: no images found in its class folders "
                            f"({_listing([repr(d.name) for d in class_dirs])}); image files end "
                            f"in {', '.join(IMAGE_EXTENSIONS)} (any case).")
        only = per_class[0][0]
        raise DataError(f"{what}: found only one class folder with images ({only!r}); a "
                        "classifier needs at least 2 classes, one folder each. If "
                        f"{only!r} holds the class folders, use --dataset "
                        f"imagefolder:{root / only}.")
    classes = [n for n, _ in per_class]
    files, labels, names = [], [], []
    for k, (_, found) in enumerate(per_class):
        for rel, p in found:
            files.append(p)
            labels.append(k)
            names.append(rel)
    if nested:
        notes.append(f"{what}: {nested} images are in sub-folders of class folders; each counts "
                     "for the class of the top-level folder it is in.")
    if other:
        notes.append(f"{what}: ignored {len(other)} files that do not end in an image extension "
                     f"({' '.join(IMAGE_EXTENSIONS)}): {_listing(other)}.")
    if loose:
        notes.append(f"{what}: ignored {len(loose)} files directly in the folder, outside the "
                     f"class folders: {_listing(loose)}.")
    return classes, files, labels, names, notes


def load_imagefolder(spec: str, cfg: Any) -> tuple[ImageData, None, list[str]]:
    """``imagefolder:PATH`` → (training pool, no test split, notes)."""
    what = f"dataset imagefolder:{spec}"
    root = _existing_dir(spec, "imagefolder")
    classes, files, labels, names, notes = list_imagefolder(root, what, strict=_strict(cfg))
    d = decode_files(files, labels, classes, cfg, what=what, names=names, notes=notes)
    return d.image_data(), None, d.notes


# ------------------------------------------------------------------------------------------
# csv:FILE

_DRIVE = re.compile(r"^[A-Za-z]:/")


def _leaves_folder(rel: str) -> bool:
    """True for absolute paths and paths that climb above their folder with ``..``."""
    if rel.startswith(("/", "~")) or _DRIVE.match(rel):
        return True
    norm = os.path.normpath(rel)
    return norm == ".." or norm.startswith("../")


def _sorted_labels(labels: Iterable[str]) -> list[str]:
    """Distinct labels sorted: numerically when all are integers, else by code point."""
    uniq = set(labels)
    try:
        return sorted(uniq, key=lambda s: (int(s), s))
    except ValueError:
        return sorted(uniq)


def read_manifest(path: Path, what: str) -> tuple[list[str], list[Path], list[int], list[str],
                                                  list[str]]:
    """(classes, files, labels, display names, notes) from a ``path,label`` CSV."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{what}: not UTF-8 text (byte {e.start}); save the CSV as UTF-8.") from None
    except OSError as e:
        raise DataError(f"{what}: cannot read the file ({e.strerror}).") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    for row in reader:
        if any(c.strip() for c in row):
            header = [c.strip().lower() for c in row]
            break
    if header is None:
        raise DataError(f"{what}: the file is empty; it needs a header row 'path,label' and one "
                        "row per image.")
    missing = [c for c in ("path", "label") if c not in header]
    if missing:
        hint = (" (the columns must be separated by commas)"
                if len(header) == 1 and any(s in header[0] for s in ";\t|") else "")
        raise DataError(f"{what}: missing column{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(repr(m) for m in missing)}; the header row has "
                        f"{', '.join(repr(h) for h in header)}{hint}. The first row must name "
                        "the columns: path,label.")
    ip, il = header.index("path"), header.index("label")
    base = path.parent
    rows: list[tuple[int, str, str]] = []
    short, no_label, outside = [], [], []
    for row in reader:
        if not any(c.strip() for c in row):
            continue
        line = reader.line_num
        if len(row) <= max(ip, il):
            short.append(f"line {line}")
            continue
        rel, label = row[ip].strip().replace("\\", "/"), row[il].strip()
        if not rel or not label:
            no_label.append(f"line {line}" + (f" ({rel})" if rel else ""))
            continue
        if _leaves_folder(rel):
            outside.append(f"line {line}: {rel}")
            continue
        rows.append((line, os.path.normpath(rel), label))
    if short:
        raise DataError(f"{what}: {len(short)} rows have fewer columns than the header "
                        f"({_listing(short)}).")
    if no_label:
        raise DataError(f"{what}: {len(no_label)} rows have an empty path or label "
                        f"({_listing(no_label)}); every row needs both.")
    if outside:
        raise DataError(f"{what}: {len(outside)} rows name files outside the CSV's folder "
                        f"{str(base)!r} ({_listing(outside)}). Paths must be relative to the "
                        "CSV's folder and stay inside it: move the CSV up or the images in.")
    if not rows:
        raise DataError(f"{what}: the header is there but no rows follow; add one row "
                        "'path,label' per image.")
    first: dict[str, tuple[int, str]] = {}
    dupes, conflicts = [], []
    unique_rows = []
    for line, rel, label in rows:
        if rel in first:
            if first[rel][1] != label:
                conflicts.append(f"{rel} (line {first[rel][0]}: {first[rel][1]!r}, line {line}: "
                                 f"{label!r})")
            else:
                dupes.append(f"line {line}: {rel}")
            continue
        first[rel] = (line, label)
        unique_rows.append((line, rel, label))
    if conflicts:
        raise DataError(f"{what}: {len(conflicts)} images are listed with different labels: "
                        f"{_listing(conflicts)}. Give each image one label.")
    notes = []
    if dupes:
        notes.append(f"{what}: {len(dupes)} rows repeat an image already listed with the same "
                     f"label and were dropped (a repeat could land in both training and test "
                     f"data): {_listing(dupes)}.")
    classes = _sorted_labels(r[2] for r in unique_rows)
    index = {c: i for i, c in enumerate(classes)}
    files = [base / r[1] for r in unique_rows]
    labels = [index[r[2]] for r in unique_rows]
    _check_classes(what, np.asarray(labels), classes)  # before decoding: typos fail fast
    return classes, files, labels, [r[1] for r in unique_rows], notes


def load_csv(spec: str, cfg: Any) -> tuple[ImageData, None, list[str]]:
    """``csv:FILE`` → (training pool, no test split, notes)."""
    what = f"dataset csv:{spec}"
    if not spec.strip():
        raise DataError("dataset: csv: needs a file, e.g. --dataset csv:labels.csv.")
    path = Path(os.path.expanduser(spec))
    if not path.is_file():
        raise DataError(f"{what}: " + (f"{str(path)!r} is a folder; for a folder per class use "
                                       f"--dataset imagefolder:{spec}." if path.is_dir() else
                                       f"file {str(path)!r} does not exist."))
    classes, files, labels, names, notes = read_manifest(path, what)
    d = decode_files(files, labels, classes, cfg, what=what, names=names, notes=notes)
    return d.image_data(), None, d.notes


# ------------------------------------------------------------------------------------------
# any Dataset (Python API)


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


def _image_of(v: Any) -> np.ndarray:
    from PIL import Image

    if isinstance(v, Image.Image):
        return pil_to_array(v)
    if isinstance(v, torch.Tensor):
        return array_to_8bit(v.detach().cpu().numpy(), layout="chw")
    if isinstance(v, np.ndarray):
        return array_to_8bit(v, layout="auto")
    raise ValueError(f"image is a {type(v).__name__}; expected a PIL image, a tensor (C, H, W) or "
                     "(H, W), or a numpy array (H, W[, C])")


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
        _stream_note(cfg, what, 0, 1, (1, 1), streamable=streamable)  # an iterable: refused
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
            a = _image_of(item[0])
            lab = _label_of(item[1])
        except ValueError as e:
            raise DataError(f"{what}[{i}]: {e}.") from None
        if size is not None:
            a = _resize(a, size)
        shapes.append(a.shape[:2])
        n_colour += a.ndim == 3
        raw_labels.append(lab)
        if keep_pixels:
            arrays.append(a)
            nbytes += a.nbytes
            if nbytes > budget:  # estimate the whole set at this image's size
                n = max(len(dataset) if streamable else 0, len(arrays))
                # raises when it will not fit and cannot be streamed (never, an iterable)
                if _stream_note(cfg, what, n, channels or (3 if n_colour else 1), a.shape[:2],
                                streamable=streamable) is not None:
                    keep_pixels, arrays = False, []
    if not raw_labels:
        raise DataError(f"{what}: the dataset is empty.")
    kinds = {type(v) for v in raw_labels}
    if len(kinds) > 1:
        raise DataError(f"{what}: labels mix class numbers and class names; use one kind.")
    notes: list[str] = []
    if kinds == {str}:
        names = list(classes) if classes is not None else _sorted_labels(raw_labels)  # type: ignore[arg-type]
        index = {c: k for k, c in enumerate(names)}
        unknown = sorted({str(v) for v in raw_labels if v not in index})
        if unknown:
            raise DataError(f"{what}: {len(unknown)} labels are not among the classes "
                            f"{names[:10]}{' ...' if len(names) > 10 else ''}: "
                            f"{_listing([repr(u) + _suggest_name(u, names) for u in unknown])}.")
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
        size, note = _target_size(shapes, None, what)
        if note:
            notes.append(note)
    c = channels or (3 if n_colour else 1)
    stream_note = _stream_note(cfg, what, len(raw_labels), c, size, streamable=streamable)
    if stream_note is None and len(arrays) == len(raw_labels):
        arrays = [_resize(a, size) for a in arrays]
        if streamable and _changes_when_read(arrays, size, dataset):
            notes.append(f"{what}: the dataset returns different pixels each time an item is "
                         "read (a random transform?). Its images were decoded once, so that "
                         "transform was applied once and frozen; remove it and use biasvar's "
                         "--augment, which draws new augmentations every epoch.")
        x, note = _stack(arrays, channels, what)
    else:
        from ._stream import DatasetReader, StreamImages, loader_workers, scan

        # pixels dropped while reading (only with stream auto, for a map-style dataset), though
        # at the final size they would fit: stream them rather than read the dataset again
        stream_note = stream_note or (f"{what}: the images passed the memory budget while "
                                      "being read, so they are decoded again every epoch.")
        arrays = []
        reader = DatasetReader(dataset, size)
        _check_repeatable(reader, what)
        found = scan(reader, c, workers=loader_workers(cfg), progress_from=_PROGRESS_FROM)
        if found.bad:
            raise DataError(f"{what}: {len(found.bad)} items could not be read a second time "
                            f"({_listing([f'#{i} ({r})' for i, r in found.bad])}); a streamed "
                            "dataset must return the same items every time it is read.")
        x = StreamImages(reader, found.rows, c, found.sums, what)
        note = _colour_note(what, n_colour, len(raw_labels)) if channels is None else None
    for n_ in (note, stream_note):
        if n_:
            notes.append(n_)
    yt = torch.as_tensor(y, dtype=torch.int64)
    if check:
        _check_classes(what, yt.numpy(), names)
    return Decoded(x, yt, names, [f"#{i}" for i in range(len(y))], notes)


def _changes_when_read(arrays: list[np.ndarray], size: tuple[int, int], dataset: Any,
                       k: int = 4) -> bool:
    """True when reading one of the first ``k`` items again gives other pixels."""
    from ._stream import DatasetReader

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


def _suggest_name(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


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
