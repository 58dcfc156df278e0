"""biasvar.data._pixels: 8-bit conversion, channels, sizes, one file decoded; each result is
compared with a computation written here from the rule (not with the module's own helpers)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from biasvar.data._pixels import (array_to_8bit, colour_note, decode, header, image_of,
                                  pil_to_array, reason, resize, stack, target_size, to_channels)

RNG = np.random.default_rng(0)


def colour(h=5, w=7) -> np.ndarray:
    """An (H, W, 3) uint8 image whose channels differ (so it stays colour)."""
    a = RNG.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    a[0, 0] = (0, 128, 255)
    return a


def test_float_pixels_scale_by_255_and_round():
    a = RNG.random((6, 4))
    expected = np.floor(a * 255 + 0.5).astype(np.uint8)  # no exact .5 ties in random floats
    assert np.array_equal(array_to_8bit(a), expected)
    assert np.array_equal(array_to_8bit(a.astype(np.float32)), np.floor(
        a.astype(np.float32).astype(np.float64) * 255 + 0.5).astype(np.uint8))


def test_normalised_floats_and_out_of_range_integers_are_refused():
    with pytest.raises(ValueError, match=r"not \[0, 1\].*remove Normalize"):
        array_to_8bit(np.array([[-0.5, 0.2]]))
    with pytest.raises(ValueError, match=r"\[0, 300\]"):
        array_to_8bit(np.array([[0, 300]], dtype=np.int32))
    with pytest.raises(ValueError, match="5 channels"):
        array_to_8bit(np.zeros((4, 4, 5), np.uint8), layout="hwc")
    with pytest.raises(ValueError, match="is not an image"):
        array_to_8bit(np.zeros((2, 2, 2, 2), np.uint8))


def test_16_bit_pixels_round_v_times_255_over_65535():
    v = RNG.integers(0, 65536, size=(8, 9)).astype(np.uint16)
    v[0, :4] = [0, 257 * 7, 257 * 200, 65535]  # 8-bit data stored as v·257 comes back exactly
    expected = np.floor(v.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
    out = array_to_8bit(v)
    assert out.dtype == np.uint8 and np.array_equal(out, expected)
    assert out[0, :4].tolist() == [0, 7, 200, 255]
    # a PIL 16-bit image follows the same rule
    assert np.array_equal(pil_to_array(Image.fromarray(v)), expected)


def test_chw_and_hwc_layouts_give_the_same_image():
    hwc = colour()
    chw = np.ascontiguousarray(hwc.transpose(2, 0, 1))
    assert np.array_equal(array_to_8bit(hwc), hwc)  # auto: last axis of 3 is channels
    assert np.array_equal(array_to_8bit(chw, layout="chw"), hwc)
    assert np.array_equal(image_of(torch.from_numpy(chw)), hwc)  # tensors are (C, H, W)
    wide = RNG.integers(0, 256, size=(3, 5, 9), dtype=np.uint8)  # last axis > 4: auto → CHW
    assert array_to_8bit(wide).shape == (5, 9, 3)


def test_grey_colour_collapses_bool_scales_and_alpha_composites_on_white():
    g = RNG.integers(0, 256, size=(4, 6), dtype=np.uint8)
    assert np.array_equal(array_to_8bit(np.stack([g, g, g], -1)), g)
    assert np.array_equal(array_to_8bit(np.stack([g, g, g]), layout="chw"), g)
    b = RNG.random((4, 6)) > 0.5
    assert np.array_equal(array_to_8bit(b), np.where(b, 255, 0))
    c, alpha = colour(4, 6), RNG.integers(0, 256, size=(4, 6), dtype=np.uint8)
    expected = np.floor((c * (alpha[..., None] / 255.0) + 255 * (1 - alpha[..., None] / 255.0))
                        + 0.5).astype(np.uint8)
    out = array_to_8bit(np.concatenate([c, alpha[..., None]], -1))
    assert np.abs(out.astype(int) - expected).max() == 0
    # grey + alpha from PIL: the same rule on one channel
    la = Image.fromarray(np.stack([g, alpha], -1), "LA")
    expected_g = np.floor(g * (alpha / 255.0) + 255 * (1 - alpha / 255.0) + 0.5).astype(np.uint8)
    assert np.array_equal(pil_to_array(la), expected_g)


def test_channel_conversion_and_stacking():
    c = colour(4, 6)
    r, g_, b = (c[..., i].astype(np.int64) for i in range(3))
    luma = (299 * r + 587 * g_ + 114 * b) / 1000
    grey = to_channels(c, 1)
    assert grey.shape == (1, 4, 6) and np.abs(grey[0] - luma).max() <= 1
    assert np.array_equal(to_channels(c, 3), c.transpose(2, 0, 1))
    g = c[..., 0].copy()
    assert np.array_equal(to_channels(g, 3), np.stack([g, g, g]))
    x, note = stack([g.copy(), c.copy()], None, "d")
    assert x.dtype == torch.uint8 and x.shape == (2, 3, 4, 6)
    assert np.array_equal(x[0].numpy(), np.stack([g, g, g])) and "1 of 2 images" in note
    x, note = stack([g.copy(), g.copy()], None, "d")
    assert x.shape == (2, 1, 4, 6) and note is None and colour_note("d", 0, 2) is None


def test_sizes_resize_and_the_mixed_size_note():
    assert target_size([(8, 8), (8, 8)], None, "d") == ((8, 8), None)
    assert target_size([(8, 8), (5, 9)], 6, "d") == ((6, 6), None)
    sizes = [(10, 20), (30, 12), (16, 16), (16, 16)]
    hw, note = target_size(sizes, None, "d")
    side = int(round(float(np.median([min(s) for s in sizes]))))
    assert hw == (side, side) and "3 sizes" in note and f"{side}x{side}" in note
    a = colour(5, 7)
    assert resize(a, (5, 7)) is a
    assert resize(a, (3, 4)).shape == (3, 4, 3)
    flat = np.full((6, 8), 77, np.uint8)  # a constant image stays constant when resized
    assert np.array_equal(resize(flat, (3, 5)), np.full((3, 5), 77, np.uint8))


def test_one_file_header_exif_rotation_and_reasons(tmp_path):
    a = RNG.integers(0, 256, size=(4, 6), dtype=np.uint8)
    img = Image.fromarray(a, "L")
    exif = img.getexif()
    exif[0x0112] = 6  # shown rotated 90° clockwise
    img.save(tmp_path / "r.png", exif=exif)
    assert header(tmp_path / "r.png") == (6, 4, True)
    assert np.array_equal(decode(tmp_path / "r.png", None), np.rot90(a, -1))
    assert decode(tmp_path / "r.png", (3, 2)).shape == (3, 2)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty file"):
        header(tmp_path / "empty.png")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(Exception) as e:
        decode(tmp_path / "text.png", None)
    assert reason(e.value) == "not an image"
    with pytest.raises(FileNotFoundError) as e:
        decode(tmp_path / "missing.png", None)
    assert reason(e.value) == "file not found"
