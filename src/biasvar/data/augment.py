"""Batched data augmentation on tensors, with per-sample randomness and no per-sample loop.

Training keeps the whole dataset on the device as uint8 tensors; each batch is scaled to [0, 1],
augmented here, then normalised. Every random number is drawn from a CPU ``torch.Generator``
(in float64, so the draws do not depend on the device) and the per-sample parameters are moved
to the batch's device in one transfer: the same seed gives the same augmentation on the CPU and
on a GPU (up to the kernels' rounding).

The operations, in the order they are applied to each image:

===============  =============================================================================
``crop_padding``  pad by p pixels of zeros, take a random H×W crop (a shift of up to ±p pixels)
``hflip``         mirror left–right with this probability
``rotation``      rotate by an angle uniform in ±rotation degrees (positive = counter-clockwise)
``translate``     shift by up to ±translate × width / height, uniform, independently in x and y
``scale``         zoom by a factor uniform in [1 − scale, 1 + scale]
``brightness``    multiply by a factor uniform in [max(0, 1 − b), 1 + b], clip to [0, 1]
                  (torchvision ``ColorJitter(brightness=b)``)
``contrast``      blend with the image's mean grey level: c·x + (1 − c)·mean, c uniform in
                  [max(0, 1 − c), 1 + c], clip to [0, 1] (``ColorJitter(contrast=c)``; the mean
                  is per image, of the luma for 3 channels, of all values otherwise)
``erasing``       with this probability set a random rectangle to 0 (torchvision
                  ``RandomErasing`` with its defaults scale=(0.02, 0.33), ratio=(0.3, 3.3),
                  value=0; here 0 is black, since erasing happens before normalisation)
===============  =============================================================================

Rotation, translation and zoom are one affine warp (bilinear, zeros outside the image), done
only when one of them is non-zero. Unlike ``ColorJitter``, brightness always comes before
contrast (a fixed order).

The presets are starting points, not tuned recipes. In particular horizontal flips are harmful
for digits and text (a mirrored 2 is not a 2): use ``get_augment("standard", hflip=0.0)``.

>>> import torch
>>> aug = get_augment("standard")
>>> x = torch.rand(8, 1, 28, 28)
>>> y = aug(x, torch.Generator().manual_seed(0))
>>> y.shape, bool(y.min() >= 0) and bool(y.max() <= 1)
(torch.Size([8, 1, 28, 28]), True)
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F

from ..errors import ConfigError, suggest
from ..registry import Registry

__all__ = ["parse_augment", "Augment", "PRESETS", "get_augment"]

#: allowed range of every field, and its unit / meaning (used in error messages)
_RANGES: dict[str, tuple[float, float, str]] = {
    "hflip": (0.0, 1.0, "a probability"),
    "rotation": (0.0, 180.0, "the largest rotation in degrees"),
    "translate": (0.0, 0.5, "the largest shift as a fraction of the image size"),
    "scale": (0.0, 0.9, "the largest relative zoom (factor in [1 - scale, 1 + scale])"),
    "brightness": (0.0, 1.0, "the ColorJitter brightness (factor in [1 - b, 1 + b])"),
    "contrast": (0.0, 1.0, "the ColorJitter contrast (factor in [1 - c, 1 + c])"),
    "crop_padding": (0, 64, "the padding in pixels of the random crop (an integer)"),
    "erasing": (0.0, 1.0, "a probability"),
}
_PROBABILITIES = ("hflip", "erasing")
# torchvision RandomErasing defaults
_ERASE_SCALE = (0.02, 0.33)
_ERASE_RATIO = (0.3, 3.3)
_ERASE_ATTEMPTS = 10
# ITU-R 601 luma, as torchvision's rgb_to_grayscale
_LUMA = (0.2989, 0.587, 0.114)


@dataclass(frozen=True)
class Augment:
    """Strengths of each augmentation; all zero (the default) is the identity.

    Call it on a float batch ``x`` (B, C, H, W) with values in [0, 1] and a CPU generator:
    ``aug(x, generator)`` returns a new tensor of the same shape, dtype and device.
    """

    hflip: float = 0.0          # probability of a left-right mirror
    rotation: float = 0.0       # degrees, uniform in ±rotation
    translate: float = 0.0      # fraction of width/height, uniform in ±translate
    scale: float = 0.0          # relative zoom, factor uniform in [1 - scale, 1 + scale]
    brightness: float = 0.0     # ColorJitter meaning: factor uniform in [1 - b, 1 + b]
    contrast: float = 0.0       # ColorJitter meaning: factor uniform in [1 - c, 1 + c]
    crop_padding: int = 0       # pixels of zero padding before a random crop of the original size
    erasing: float = 0.0        # probability of erasing one random rectangle

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            lo, hi, meaning = _RANGES[f.name]
            integer = f.name == "crop_padding"
            kind = numbers.Integral if integer else numbers.Real
            if isinstance(value, bool) or not isinstance(value, kind):
                raise ConfigError(
                    f"augment.{f.name}: {value!r} is not {'an integer' if integer else 'a number'}"
                    f"; give {meaning} in [{lo}, {hi}].")
            if not (lo <= value <= hi):  # also rejects NaN
                raise ConfigError(f"augment.{f.name}: {value!r} is outside the allowed range "
                                  f"[{lo}, {hi}] ({meaning}).")
            object.__setattr__(self, f.name, int(value) if integer else float(value))

    # -- properties -------------------------------------------------------------------------
    @property
    def is_identity(self) -> bool:
        """True when every strength is zero: calling it returns an unchanged copy."""
        return all(getattr(self, f.name) == 0 for f in fields(self))

    @property
    def _affine_on(self) -> bool:
        return self.rotation > 0 or self.translate > 0 or self.scale > 0

    def scaled(self, s: float) -> Augment:
        """Every strength multiplied by ``s`` (the "augmentation strength" of complexity sweeps).

        Results are clamped to each field's allowed maximum (probabilities to 1, rotation to
        180°, ...) so any ``s >= 0`` gives a valid augmentation; ``crop_padding`` is rounded to
        the nearest integer (halves up). ``s = 0`` gives the identity, ``s = 1`` this one.
        """
        if isinstance(s, bool) or not isinstance(s, numbers.Real) or not (0 <= s < math.inf):
            raise ConfigError(f"augmentation strength: {s!r} must be a finite number >= 0 "
                              "(1 keeps the preset, 0 turns augmentation off).")
        out = {}
        for f in fields(self):
            hi = _RANGES[f.name][1]
            v = getattr(self, f.name) * float(s)
            out[f.name] = min(int(math.floor(v + 0.5)), int(hi)) if f.name == "crop_padding" \
                else min(v, hi)
        return replace(self, **out)

    # -- application ------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a batch ``x`` (B, C, H, W), float in [0, 1]; returns a new tensor.

        ``generator`` must live on the CPU; all randomness comes from it, so a fixed seed gives
        the same result on every device. The input is never modified.
        """
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise ValueError(f"augment: expected a (B, C, H, W) tensor, got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x)}.")
        if not x.is_floating_point():
            raise ValueError(f"augment: expected a float tensor scaled to [0, 1], got {x.dtype} "
                             "(divide uint8 images by 255 first).")
        if generator.device.type != "cpu":
            raise ValueError(f"augment: the generator must be on the CPU, not {generator.device}.")
        if self.is_identity:
            return x.clone()
        with torch.no_grad():
            work = x if x.dtype in (torch.float32, torch.float64) else x.float()
            params = _to_device(self._sample(work.shape, generator), work.device)
            out = self._apply(work, params)
            return out.to(x.dtype)

    def _sample(self, shape: torch.Size, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Per-sample parameters drawn on the CPU, in a fixed order, for enabled operations."""
        B, _, H, W = shape
        p: dict[str, torch.Tensor] = {}

        def u(*size: int) -> torch.Tensor:  # uniform [0, 1), float64, CPU
            return torch.rand(*size, generator=gen, dtype=torch.float64)

        if self.crop_padding > 0:
            p["crop"] = torch.randint(0, 2 * self.crop_padding + 1, (B, 2), generator=gen)
        if self.hflip > 0:
            p["flip"] = u(B) < self.hflip
        if self._affine_on:
            angle = (2 * u(B) - 1) * self.rotation
            tx = (2 * u(B) - 1) * self.translate
            ty = (2 * u(B) - 1) * self.translate
            zoom = 1 + (2 * u(B) - 1) * self.scale
            p["theta"] = _affine_theta(angle, tx, ty, zoom, H, W).reshape(B, 6)
        if self.brightness > 0:
            b = self.brightness
            p["brightness"] = max(0.0, 1 - b) + u(B) * (1 + b - max(0.0, 1 - b))
        if self.contrast > 0:
            c = self.contrast
            p["contrast"] = max(0.0, 1 - c) + u(B) * (1 + c - max(0.0, 1 - c))
        if self.erasing > 0:
            p["erase"] = _erase_boxes(B, H, W, self.erasing, u)
        return p

    def _apply(self, x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        B, C, H, W = x.shape
        if "crop" in p:
            x = _shift_crop(x, p["crop"].long(), self.crop_padding)
        if "flip" in p:
            x = torch.where(p["flip"].bool().view(B, 1, 1, 1), x.flip(-1), x)
        if "theta" in p:
            x = _warp(x, p["theta"].view(B, 2, 3).to(x.dtype))
        if "brightness" in p:
            x = (x * p["brightness"].to(x.dtype).view(B, 1, 1, 1)).clamp_(0.0, 1.0)
        if "contrast" in p:
            x = _adjust_contrast(x, p["contrast"].to(x.dtype))
        if "erase" in p:
            box = p["erase"].long()  # (B, 4): top, left, height, width; height 0 = no erasing
            rows = torch.arange(H, device=x.device).view(1, H, 1)
            cols = torch.arange(W, device=x.device).view(1, 1, W)
            top, left, h, w = (box[:, i].view(B, 1, 1) for i in range(4))
            mask = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
            x = x.masked_fill(mask.unsqueeze(1), 0.0)
        return x


def _to_device(params: dict[str, torch.Tensor], device: torch.device,
               force: bool = False) -> dict[str, torch.Tensor]:
    """Move all parameters in one transfer (packed as float32, exact for the integers here);
    on the CPU they stay as drawn unless ``force`` (which tests use to check the packing)."""
    if not params or (device.type == "cpu" and not force):
        return params
    cols = [t.reshape(t.shape[0], -1).to(torch.float32) for t in params.values()]
    packed = torch.cat(cols, 1).to(device)
    out, i = {}, 0
    for (k, t), c in zip(params.items(), cols):
        out[k] = packed[:, i:i + c.shape[1]].reshape(t.shape)
        i += c.shape[1]
    return out


def _affine_theta(angle_deg: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor,
                  zoom: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """``F.affine_grid`` matrices (B, 2, 3) that rotate the content counter-clockwise by
    ``angle_deg``, zoom it by ``zoom`` about the centre, then shift it right by ``tx``·W and down
    by ``ty``·H pixels. All arguments (B,); computed in float64.

    affine_grid maps output to input coordinates, normalised to [-1, 1] (align_corners=False).
    With D = diag(W/2, H/2) turning them into pixel offsets from the centre, and the visual
    counter-clockwise rotation R = [[cos, sin], [-sin, cos]] in (x right, y down) pixels:
    in = D⁻¹ Rᵀ D (out − t) / zoom, t = (2·tx, 2·ty) — the exact inverse, also for H ≠ W.
    """
    a = torch.deg2rad(angle_deg.to(torch.float64))
    cos, sin = torch.cos(a), torch.sin(a)
    z = zoom.to(torch.float64)
    m00, m01 = cos / z, -sin * (H / W) / z
    m10, m11 = sin * (W / H) / z, cos / z
    t0, t1 = 2 * tx.to(torch.float64), 2 * ty.to(torch.float64)
    b0 = -(m00 * t0 + m01 * t1)
    b1 = -(m10 * t0 + m11 * t1)
    return torch.stack([torch.stack([m00, m01, b0], -1), torch.stack([m10, m11, b1], -1)], 1)


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Bilinear resampling of ``x`` (B, C, H, W) by ``theta`` (B, 2, 3), zeros outside."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _affine(x: torch.Tensor, angle_deg: float | torch.Tensor = 0.0,
            tx: float | torch.Tensor = 0.0, ty: float | torch.Tensor = 0.0,
            scale: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Apply one fixed affine transform (see :func:`_affine_theta`; ``scale`` is the zoom
    factor) to every image of ``x`` (B, C, H, W); arguments are scalars or (B,) tensors."""
    B, _, H, W = x.shape

    def vec(v: float | torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(v, dtype=torch.float64).expand(B)

    theta = _affine_theta(vec(angle_deg), vec(tx), vec(ty), vec(scale), H, W)
    return _warp(x, theta.to(x.device, x.dtype))


def _shift_crop(x: torch.Tensor, offsets: torch.Tensor, pad: int) -> torch.Tensor:
    """Random crop after zero padding: out[b, :, i, j] = padded[b, :, i + dy_b, j + dx_b].

    ``offsets`` (B, 2) long in [0, 2·pad] as (dy, dx); offset ``pad`` leaves the image in
    place. Two batched gathers, no loop over samples.
    """
    B, C, H, W = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))                       # (B, C, H+2p, W+2p)
    rows = torch.arange(H, device=x.device).view(1, H) + offsets[:, :1]   # (B, H)
    cols = torch.arange(W, device=x.device).view(1, W) + offsets[:, 1:]   # (B, W)
    xp = xp.gather(2, rows.view(B, 1, H, 1).expand(B, C, H, W + 2 * pad))
    return xp.gather(3, cols.view(B, 1, 1, W).expand(B, C, H, W))


def _adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Per-image ``(factor·x + (1 − factor)·mean).clamp(0, 1)``; ``factor`` (B,). The mean is
    of the luma for RGB, of all values otherwise (as torchvision's adjust_contrast)."""
    B, C = x.shape[:2]
    if C == 3:
        w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        mean = (x * w).sum(1).mean((1, 2))
    else:
        mean = x.mean((1, 2, 3))
    f = factor.view(B, 1, 1, 1)
    return (f * x + (1 - f) * mean.view(B, 1, 1, 1)).clamp_(0.0, 1.0)


def _erase_boxes(B: int, H: int, W: int, prob: float, u) -> torch.Tensor:
    """torchvision RandomErasing's rectangles, vectorised: (B, 4) float64 (top, left, h, w);
    h = w = 0 where a sample is not erased (probability ``1 - prob``, or none of the 10 tries
    fits inside the image). ``u(*size)`` draws uniforms in [0, 1)."""
    apply = u(B) < prob
    area = H * W * (_ERASE_SCALE[0] + u(B, _ERASE_ATTEMPTS) * (_ERASE_SCALE[1] - _ERASE_SCALE[0]))
    lr = (math.log(_ERASE_RATIO[0])
          + u(B, _ERASE_ATTEMPTS) * (math.log(_ERASE_RATIO[1]) - math.log(_ERASE_RATIO[0])))
    ratio = torch.exp(lr)
    h = torch.round(torch.sqrt(area * ratio))
    w = torch.round(torch.sqrt(area / ratio))
    fits = (h < H) & (w < W)
    first = fits.to(torch.int8).argmax(1)                      # the first try that fits
    ok = apply & fits.any(1)
    h = h.gather(1, first.view(B, 1)).squeeze(1) * ok
    w = w.gather(1, first.view(B, 1)).squeeze(1) * ok
    top = torch.floor(u(B) * (H - h + 1))
    left = torch.floor(u(B) * (W - w + 1))
    return torch.stack([top, left, h, w], 1)


#: named starting points; see the module notes (no flips for digits)
PRESETS: Registry[Augment] = Registry("augment")
PRESETS.add("none", Augment())
PRESETS.add("light", Augment(hflip=0.5, crop_padding=2))
PRESETS.add("standard", Augment(hflip=0.5, rotation=10.0, translate=0.1, brightness=0.2,
                                contrast=0.2))
PRESETS.add("strong", Augment(hflip=0.5, rotation=20.0, translate=0.15, scale=0.15,
                              brightness=0.4, contrast=0.4, erasing=0.5))


def parse_augment(spec: str) -> Augment:
    """An augmentation from the ``--augment`` text: a preset name, knobs, or both, e.g.
    ``standard``, ``standard,hflip=0`` (a preset with one knob changed) or
    ``rotation=15,translate=0.1`` (knobs on top of ``none``)."""
    parts = [p.strip() for p in str(spec).split(",") if p.strip()]
    preset = "none"
    if parts and "=" not in parts[0]:
        preset, parts = parts[0], parts[1:]
    overrides: dict[str, float] = {}
    for p in parts:
        key, eq, value = p.partition("=")
        if not eq:
            raise ConfigError(f"augment: {p!r} in {spec!r} is neither a preset (first) nor a "
                              "knob=value; e.g. 'standard,hflip=0' or 'rotation=15'.")
        try:
            num = float(value)
        except ValueError:
            raise ConfigError(f"augment: {key.strip()}={value!r} is not a number.") from None
        overrides[key.strip()] = int(num) if key.strip() == "crop_padding" and num.is_integer() \
            else num
    return get_augment(preset, **overrides)


def get_augment(preset: str | Augment, **overrides: float) -> Augment:
    """The preset named ``preset`` (or an :class:`Augment` itself) with fields replaced by
    ``overrides``, e.g. ``get_augment("standard", hflip=0.0)`` for digits.

    Raises ConfigError for an unknown preset (listing the known ones) or an unknown field.
    """
    base = preset if isinstance(preset, Augment) else PRESETS.get(str(preset))
    valid = [f.name for f in fields(Augment)]
    for key in overrides:
        if key not in valid:
            raise ConfigError(f"augment override {key!r}: not a field of Augment."
                              f"{suggest(key, valid)} Valid fields: {', '.join(valid)}.")
    return replace(base, **overrides) if overrides else base
