"""Batched tensor augmentation: exact identities, known transforms, per-sample randomness."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from biasvar.data.augment import PRESETS, Augment, _adjust_contrast, _affine, get_augment
from biasvar.errors import ConfigError
from biasvar.registry import Registry
from tests.conftest import require_module


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(b: int = 16, c: int = 1, h: int = 28, w: int = 28, seed: int = 0) -> torch.Tensor:
    """Random images in [0, 1] with no symmetry, so a flip or shift always changes them."""
    return torch.rand(b, c, h, w, generator=gen(seed + 1000))


def shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Content moved down by dy and right by dx pixels, zeros coming in (written by slicing)."""
    out = torch.zeros_like(x)
    H, W = x.shape[-2:]
    out[..., max(dy, 0):H + min(dy, 0), max(dx, 0):W + min(dx, 0)] = \
        x[..., max(-dy, 0):H + min(-dy, 0), max(-dx, 0):W + min(-dx, 0)]
    return out


# --- identity and flips ---------------------------------------------------------------------

def test_all_zero_is_the_exact_identity_and_a_new_tensor():
    x = images()
    aug = Augment()
    assert aug.is_identity
    y = aug(x, gen())
    assert torch.equal(y, x) and y is not x
    assert PRESETS.get("strong").scaled(0.0).is_identity


def test_hflip_probability_one_is_flip():
    x = images()
    assert torch.equal(Augment(hflip=1.0)(x, gen()), x.flip(-1))


def test_hflip_half_flips_about_half_and_nothing_else():
    x = images(b=2000, h=6, w=6)
    y = Augment(hflip=0.5)(x, gen(3))
    same = (y == x).flatten(1).all(1)
    flipped = (y == x.flip(-1)).flatten(1).all(1)
    assert bool((same ^ flipped).all())          # every image is one or the other, exactly
    frac = flipped.double().mean().item()
    assert abs(frac - 0.5) < 4 * math.sqrt(0.25 / 2000)


def test_input_is_not_modified():
    x = images(c=3)
    before = x.clone()
    PRESETS.get("strong")(x, gen())
    assert torch.equal(x, before)


# --- determinism ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["light", "standard", "strong"])
def test_same_seed_same_result_different_seed_different(name):
    x = images(b=32, c=3)
    aug = PRESETS.get(name)
    a, b, c = aug(x, gen(7)), aug(x, gen(7)), aug(x, gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    g = gen(7)
    first, second = aug(x, g), aug(x, g)   # the generator advances between batches
    assert torch.equal(first, a) and not torch.equal(first, second)


# --- the affine warp ------------------------------------------------------------------------

def test_rotation_by_90_degrees_matches_rot90():
    x = images(b=4, c=2, h=9, w=9)
    y = _affine(x, 90.0)
    r = torch.rot90(x, 1, dims=(-2, -1))     # counter-clockwise
    torch.testing.assert_close(y[..., 1:-1, 1:-1], r[..., 1:-1, 1:-1], atol=1e-5, rtol=0)
    torch.testing.assert_close(y, r, atol=1e-4, rtol=0)
    assert not torch.allclose(_affine(x, -90.0), r, atol=1e-2)   # the sign means something


def test_rotation_by_90_degrees_on_a_non_square_image():
    # visually counter-clockwise about the centre (ch, cw): out[i, j] = in[ch + (j - cw),
    # cw - (i - ch)], zero where that falls outside; whole pixels here since H, W are even
    H, W = 6, 10
    x = images(b=2, h=H, w=W)
    ch, cw = (H - 1) / 2, (W - 1) / 2
    expected = torch.zeros_like(x)
    for i in range(H):
        for j in range(W):
            r, c = int(ch + (j - cw)), int(cw - (i - ch))
            if 0 <= r < H and 0 <= c < W:
                expected[..., i, j] = x[..., r, c]
    torch.testing.assert_close(_affine(x, 90.0), expected, atol=1e-5, rtol=0)


def test_rotation_by_180_degrees_on_a_non_square_image():
    x = images(b=2, h=6, w=10)
    torch.testing.assert_close(_affine(x, 180.0), x.flip(-1).flip(-2), atol=1e-5, rtol=0)


@pytest.mark.parametrize("dy,dx", [(0, 3), (2, 0), (-1, -4), (3, 2)])
def test_translation_by_whole_pixels_matches_a_shift(dy, dx):
    x = images(b=3, h=10, w=12)
    y = _affine(x, 0.0, tx=dx / 12, ty=dy / 10)
    torch.testing.assert_close(y, shifted(x, dy, dx), atol=1e-5, rtol=0)


def test_zoom_scales_distances_from_the_centre():
    # a ramp x[..., j] = j; zooming by z about the centre c samples c + (j - c) / z
    W = 11
    ramp = torch.arange(W, dtype=torch.float32).expand(1, 1, 7, W).contiguous()
    z = 2.0
    c = (W - 1) / 2
    expected = c + (torch.arange(W, dtype=torch.float32) - c) / z
    y = _affine(ramp, 0.0, scale=z)
    torch.testing.assert_close(y[0, 0, 3], expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(_affine(ramp, 0.0, scale=1.0), ramp, atol=1e-5, rtol=0)


def test_random_rotation_uses_the_drawn_angle_per_sample():
    x = images(b=8, h=15, w=15)
    y = Augment(rotation=40.0)(x, gen(5))
    # the only draws are B uniforms for the angle, then tx, ty, zoom (all zero strength)
    u = torch.rand(8, generator=gen(5), dtype=torch.float64)
    angles = (2 * u - 1) * 40.0
    assert len(set(angles.round(decimals=3).tolist())) == 8
    torch.testing.assert_close(y, _affine(x, angles), atol=1e-5, rtol=0)
    for i in range(8):  # each image on its own: the batch really is per-sample
        torch.testing.assert_close(y[i:i + 1], _affine(x[i:i + 1], float(angles[i])),
                                   atol=1e-5, rtol=0)


# --- crop with padding ----------------------------------------------------------------------

def test_crop_padding_gives_shifted_zero_padded_copies():
    p = 2
    x = images(b=64, c=2, h=12, w=12)
    y = Augment(crop_padding=p)(x, gen(1))
    seen = set()
    for i in range(64):
        matches = [(dy, dx) for dy in range(-p, p + 1) for dx in range(-p, p + 1)
                   if torch.equal(y[i], shifted(x[i], dy, dx))]
        assert len(matches) == 1, (i, matches)
        seen.add(matches[0])
    assert len(seen) >= 15   # of 25 possible shifts, most occur in 64 draws


# --- erasing --------------------------------------------------------------------------------

def test_erasing_zeroes_one_rectangle_of_the_allowed_size():
    H = W = 40
    x = images(b=300, h=H, w=W) * 0.9 + 0.1     # strictly positive
    y = Augment(erasing=1.0)(x, gen(2))
    erased = 0
    for i in range(300):
        zero = y[i, 0] == 0
        keep = ~zero
        assert torch.equal(y[i, 0][keep], x[i, 0][keep])   # the rest is untouched
        if not zero.any():
            continue   # RandomErasing gives up when none of its 10 tries fits
        erased += 1
        rows = zero.any(1).nonzero().flatten()
        cols = zero.any(0).nonzero().flatten()
        h, w = int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
        assert int(zero.sum()) == h * w                      # a filled rectangle
        # area = round(sqrt(A r)) * round(sqrt(A / r)) with A in [.02, .33]·HW, r in [.3, 3.3]
        lo_a, hi_a = 0.02 * H * W, 0.33 * H * W
        slack = 0.5 * (math.sqrt(hi_a * 3.3) + math.sqrt(hi_a / 0.3)) + 0.25
        assert lo_a - slack <= h * w <= hi_a + slack
        assert 0.3 / 2 <= h / w <= 3.3 * 2
    assert erased >= 285


def _box(zero: torch.Tensor) -> tuple[int, int] | None:
    """(height, width) of the bounding box of the True pixels of a (H, W) mask, or None."""
    if not zero.any():
        return None
    rows = zero.any(1).nonzero().flatten()
    cols = zero.any(0).nonzero().flatten()
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def test_erasing_rectangles_are_distributed_like_torchvision_random_erasing():
    transforms = require_module("torchvision.transforms", "pip install torchvision==0.29.1")
    n, H, W = 4000, 16, 16
    x = images(b=n, h=H, w=W) * 0.9 + 0.1
    ours = [_box(m) for m in (Augment(erasing=1.0)(x, gen(13))[:, 0] == 0)]
    tv = transforms.RandomErasing(p=1.0, value=0)
    with torch.random.fork_rng():
        torch.manual_seed(13)
        theirs = [_box(tv(x[i])[0] == 0) for i in range(n)]

    def summary(boxes):
        hw = torch.tensor([b for b in boxes if b is not None], dtype=torch.float64)
        return (len(hw) / n, hw[:, 0].mean().item(), hw[:, 1].mean().item(),
                hw.prod(1).mean().item(), hw.prod(1).std().item())

    f1, h1, w1, a1, sd = summary(ours)
    f2, h2, w2, a2, _ = summary(theirs)
    se = sd * math.sqrt(2 / n)     # standard error of the difference of the two mean areas
    assert abs(f1 - f2) < 0.03
    assert abs(a1 - a2) < 5 * se, (a1, a2, se)
    assert abs(h1 - h2) < 0.4 and abs(w1 - w2) < 0.4


def test_erasing_probability_zero_and_half():
    x = images(b=1000, h=16, w=16) * 0.9 + 0.1
    n_erased = int(((Augment(erasing=0.5)(x, gen(4)) == 0).flatten(1).any(1)).sum())
    assert abs(n_erased / 1000 - 0.5) < 0.07
    assert torch.equal(Augment(hflip=1.0, erasing=0.0)(x, gen(4)), x.flip(-1))


# --- brightness and contrast ----------------------------------------------------------------

def test_brightness_is_one_factor_per_image_within_range():
    x = images(b=200, c=3, h=8, w=8) * 0.5 + 0.01   # no clipping for factors up to 1.5
    y = Augment(brightness=0.5)(x, gen(6))
    ratio = y / x
    per_image = ratio.flatten(1)
    torch.testing.assert_close(per_image.min(1).values, per_image.max(1).values,
                               atol=1e-5, rtol=1e-5)
    f = per_image[:, 0]
    assert f.min() >= 0.5 - 1e-6 and f.max() <= 1.5 + 1e-6
    assert f.max() - f.min() > 0.8                          # spread over the range


@pytest.mark.parametrize("c", [1, 3])
def test_contrast_matches_torchvision(c):
    tvf = require_module("torchvision.transforms.v2.functional",
                         "pip install torchvision==0.29.1")
    x = images(b=5, c=c, h=10, w=10)
    factors = torch.tensor([0.0, 0.5, 1.0, 1.3, 2.0])
    y = _adjust_contrast(x, factors)
    for i in range(5):
        torch.testing.assert_close(y[i], tvf.adjust_contrast(x[i], float(factors[i])),
                                   atol=1e-5, rtol=0)


def test_brightness_and_contrast_stay_in_unit_range():
    x = images(b=64, c=3)
    y = Augment(brightness=1.0, contrast=1.0)(x, gen(9))
    assert y.min() >= 0 and y.max() <= 1
    assert not torch.equal(y, x)


# --- every preset on real-looking data ------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_presets_keep_shape_dtype_and_range_on_uint8_images(name, dtype):
    raw = torch.randint(0, 256, (32, 1, 28, 28), generator=gen(0), dtype=torch.uint8)
    x = (raw.float() / 255.0).to(dtype)
    y = PRESETS.get(name)(x, gen(1))
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    assert torch.isfinite(y.float()).all()
    assert y.min() >= 0 and y.max() <= 1


def test_packed_transfer_of_parameters_gives_the_same_result(monkeypatch):
    # on a GPU the per-sample parameters travel packed in one float32 tensor; check that path
    import biasvar.data.augment as augment_module

    x = images(b=32, c=3)
    direct = PRESETS.get("strong").scaled(1.5)(x, gen(21))
    real = augment_module._to_device
    monkeypatch.setattr(augment_module, "_to_device",
                        lambda p, device: real(p, device, force=True))
    packed = PRESETS.get("strong").scaled(1.5)(x, gen(21))
    torch.testing.assert_close(packed, direct, atol=1e-5, rtol=0)
    assert not torch.equal(packed, x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_same_result_on_cuda_as_on_cpu():
    x = images(b=32, c=3)
    cpu = PRESETS.get("strong")(x, gen(11))
    gpu = PRESETS.get("strong")(x.cuda(), gen(11))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)


def test_bad_inputs_are_refused():
    aug = PRESETS.get("standard")
    with pytest.raises(ValueError, match="255"):
        aug(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), gen())
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        aug(torch.zeros(1, 4, 4), gen())


# --- validation, scaling, presets -----------------------------------------------------------

@pytest.mark.parametrize("field,value", [
    ("hflip", 1.5), ("hflip", -0.1), ("rotation", 181.0), ("translate", 0.8), ("scale", 1.0),
    ("brightness", -1.0), ("contrast", 2.0), ("crop_padding", -1), ("crop_padding", 65),
    ("erasing", float("nan")),
])
def test_out_of_range_values_name_field_value_and_range(field, value):
    with pytest.raises(ConfigError) as e:
        Augment(**{field: value})
    msg = str(e.value)
    assert f"augment.{field}" in msg and repr(value) in msg and "[" in msg and "]" in msg


@pytest.mark.parametrize("field,value", [("hflip", "0.5"), ("rotation", True),
                                         ("crop_padding", 2.5)])
def test_wrong_types_are_refused(field, value):
    with pytest.raises(ConfigError, match=f"augment.{field}"):
        Augment(**{field: value})


def test_scaled_multiplies_and_clamps():
    base = PRESETS.get("strong")
    half = base.scaled(0.5)
    for f in dataclasses.fields(Augment):
        if f.name != "crop_padding":
            assert getattr(half, f.name) == pytest.approx(getattr(base, f.name) * 0.5)
    big = base.scaled(10.0)
    assert big.hflip == 1.0 and big.erasing == 1.0 and big.rotation == 180.0
    assert big.translate == 0.5 and big.scale == 0.9 and big.brightness == 1.0
    assert Augment(crop_padding=3).scaled(0.5).crop_padding == 2      # 1.5 rounds up
    assert Augment(crop_padding=3).scaled(0.1).crop_padding == 0
    assert Augment(crop_padding=40).scaled(10).crop_padding == 64
    assert base.scaled(1.0) == base
    for bad in (-0.5, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="strength"):
            base.scaled(bad)


def test_presets_identity_flags():
    assert PRESETS.get("none").is_identity
    assert not any(PRESETS.get(n).is_identity for n in ("light", "standard", "strong"))


def test_get_augment_presets_and_overrides():
    assert get_augment("standard") == PRESETS.get("standard")
    no_flip = get_augment("standard", hflip=0.0)
    assert no_flip.hflip == 0.0 and no_flip.rotation == PRESETS.get("standard").rotation
    with pytest.raises(ConfigError) as e:
        get_augment("standart")
    assert "Did you mean 'standard'" in str(e.value) and "strong" in str(e.value)
    with pytest.raises(ConfigError) as e:
        get_augment("light", hflipp=0.1)
    assert "'hflip'" in str(e.value) and "crop_padding" in str(e.value)
    with pytest.raises(ConfigError, match="augment.rotation"):
        get_augment("light", rotation=500)



def test_presets_are_a_registry_and_share_its_unknown_name_error():
    assert isinstance(PRESETS, Registry)
    assert PRESETS.names() == ["light", "none", "standard", "strong"]
    with pytest.raises(ConfigError) as direct:
        PRESETS.get("strnog")
    with pytest.raises(ConfigError) as via:
        get_augment("strnog")
    assert str(via.value) == str(direct.value)
    assert str(via.value).startswith("augment: unknown value 'strnog'. Did you mean 'strong'?")

def test_all_ops_together_match_a_manual_composition_where_checkable():
    # crop then flip, both exact: with p=1 flips, every output is a flipped shifted copy
    x = images(b=16, h=10, w=10)
    y = Augment(crop_padding=1, hflip=1.0)(x, gen(12))
    for i in range(16):
        assert any(torch.equal(y[i], shifted(x[i], dy, dx).flip(-1))
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def test_warp_has_zero_padding():
    x = torch.ones(1, 1, 8, 8)
    y = _affine(x, 0.0, tx=0.5)     # half the image moves out, zeros come in on the left
    assert torch.equal(y[..., :4], torch.zeros(1, 1, 8, 4))
    torch.testing.assert_close(y[..., 4:], torch.ones(1, 1, 8, 4), atol=1e-5, rtol=0)


def test_parse_augment_presets_and_knobs():
    from biasvar.data.augment import PRESETS, parse_augment

    assert parse_augment("standard") == PRESETS.get("standard")
    a = parse_augment("standard,hflip=0")
    assert a.hflip == 0.0 and a.rotation == PRESETS.get("standard").rotation
    b = parse_augment("rotation=15, crop_padding=2")
    assert b.rotation == 15.0 and b.crop_padding == 2 and b.hflip == 0.0
    for bad, words in (("standrd", "Did you mean 'standard'"), ("standard,hflp=0", "hflip"),
                       ("rotation=abc", "not a number"), ("light,strong", "neither a preset")):
        with pytest.raises(ConfigError, match=words):
            parse_augment(bad)
    with pytest.raises(ConfigError, match="rotation"):
        parse_augment("rotation=500")
