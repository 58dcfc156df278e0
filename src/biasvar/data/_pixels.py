"""Pixels of the user's own images: any image file, PIL image, tensor or array → 8-bit pixels.

Decoding one file (its header, EXIF orientation, the pixels), converting PIL modes and numpy
arrays to 8-bit grey or RGB, resizing, converting channels and stacking same-size images into
the uint8 ``(N, C, H, W)`` tensor the built-in datasets use. The same functions serve the
in-memory path and streamed images (:mod:`biasvar.data._stream`), so both give the same pixels.

Rules (each one is also said in the bundle's notes when it applied):

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
"""
from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["pil_to_array", "array_to_8bit", "image_of", "resize", "to_channels", "target_size",
           "header", "decode", "reason", "colour_note", "stack"]


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
    """A numpy array or tensor image → (H, W) or (H, W, 3) uint8 (see
    :func:`~biasvar.data._pydataset.decode_dataset`).

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


def image_of(v: Any) -> np.ndarray:
    """A Dataset's image (PIL image, tensor or numpy array) → (H, W) or (H, W, 3) uint8."""
    from PIL import Image

    if isinstance(v, Image.Image):
        return pil_to_array(v)
    if isinstance(v, torch.Tensor):
        return array_to_8bit(v.detach().cpu().numpy(), layout="chw")
    if isinstance(v, np.ndarray):
        return array_to_8bit(v, layout="auto")
    raise ValueError(f"image is a {type(v).__name__}; expected a PIL image, a tensor (C, H, W) or "
                     "(H, W), or a numpy array (H, W[, C])")


def resize(a: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W[, 3]) uint8 array to ``hw`` (bilinear, antialiased when shrinking)."""
    if a.shape[:2] == hw:
        return a
    from PIL import Image

    return np.asarray(Image.fromarray(a).resize((hw[1], hw[0]), Image.Resampling.BILINEAR))


def to_channels(a: np.ndarray, c: int) -> np.ndarray:
    """(H, W[, 3]) uint8 → (C, H, W) uint8 with ``c`` channels (luma for colour → grey)."""
    if c == 1:
        if a.ndim == 3:
            from PIL import Image

            a = np.asarray(Image.fromarray(a, "RGB").convert("L"))
        return a[None]
    if a.ndim == 2:
        return np.repeat(a[None], 3, axis=0)
    return np.ascontiguousarray(a.transpose(2, 0, 1))


def target_size(sizes: Sequence[tuple[int, int]], image_size: int | None, what: str
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


def _orientation(img: Any) -> int:
    """The EXIF orientation tag (1 = as stored; 5..8 swap width and height)."""
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a damaged EXIF block is not worth failing on
        return 1


#: PIL modes that hold one grey channel (for the memory estimate before decoding)
_GREY_MODES = ("1", "L", "LA", "La", "I", "F")


def header(path: Path) -> tuple[int, int, bool]:
    """(H, W, grey mode?) as the image will be shown (EXIF rotation applied); raises on
    unreadable files."""
    from PIL import Image

    if path.stat().st_size == 0:
        raise ValueError("empty file, 0 bytes")
    with Image.open(path) as img:
        w, h = img.size
        grey = img.mode in _GREY_MODES or img.mode.startswith("I;16")
        return (w, h, grey) if _orientation(img) in (5, 6, 7, 8) else (h, w, grey)


def decode(path: Path, hw: tuple[int, int] | None) -> np.ndarray:
    """Decode one file to (H, W[, 3]) uint8, resized to ``hw`` when given."""
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img.load()  # decode fully now: truncated and damaged files fail here
        if _orientation(img) != 1:
            img = ImageOps.exif_transpose(img)
        a = pil_to_array(img)
    return resize(a, hw) if hw is not None else a


def reason(e: BaseException) -> str:
    """Why an image could not be decoded, in a few words (for notes and errors)."""
    if isinstance(e, FileNotFoundError):
        return "file not found"
    msg = str(e).splitlines()[0] if str(e) else ""
    msg = re.sub(r"^cannot identify image file .*", "not an image", msg)
    return (msg or type(e).__name__)[:80]


def colour_note(what: str, n_colour: int, n: int) -> str | None:
    """The note that colour images made every image 3-channel (None without colour images)."""
    if not n_colour:
        return None
    return (f"{what}: {n_colour} of {n} images are in colour, so all are used with 3 channels; "
            "--channels 1 converts them to grey.")


def stack(arrays: list[np.ndarray], channels: int | None, what: str
           ) -> tuple[torch.Tensor, str | None]:
    """Same-size (H, W[, 3]) uint8 arrays → uint8 (N, C, H, W); frees the list as it goes."""
    n_colour = sum(a.ndim == 3 for a in arrays)
    note = None
    if channels is None:
        channels = 3 if n_colour else 1
        note = colour_note(what, n_colour, len(arrays))
    h, w = arrays[0].shape[:2]
    x = np.empty((len(arrays), channels, h, w), dtype=np.uint8)
    for i in range(len(arrays)):
        x[i] = to_channels(arrays[i], channels)
        arrays[i] = None  # type: ignore[call-overload]  # release as we go: bounded peak memory
    return torch.from_numpy(x), note
