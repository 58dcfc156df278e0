"""The user's own images: imagefolder:, csv:, any Dataset; bad input; TensorBoard logging."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from biasvar import ExperimentConfig, load_config, load_data, resolve
from biasvar.data import read_idx
from biasvar.data._files import load_csv, load_imagefolder
from biasvar.data._labels import MIN_IMAGES_PER_CLASS
from biasvar.data._pydataset import decode_dataset
from biasvar.errors import DataError

from ..conftest import FASHION_SYSTEM, run_cli, run_cli_here

FAST = ["--precision", "fp32", "--channels-last", "off", "--no-progress", "--no-report"]


# -- helpers ------------------------------------------------------------------------------------


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder``: relative path → (size, mtime in ns)."""
    out = {}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            p = Path(dirpath) / f
            st = p.stat()
            out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return out


def cli_error(tmp_path: Path, *args: str, words: tuple[str, ...]) -> str:
    """Run ``biasvar ARGS`` expecting a user error: status 2, no traceback, every word in the
    message, and no file written or changed anywhere under ``tmp_path``."""
    before = snapshot(tmp_path)
    r = run_cli_here(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-3000:])
    assert "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in r.stderr, (w, r.stderr)
    assert snapshot(tmp_path) == before
    return r.stderr


def strict(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` with strict=True (the config field, once it exists; else an attribute)."""
    if "strict" in {f.name for f in dataclasses.fields(cfg)}:
        return dataclasses.replace(cfg, strict=True)
    cfg = dataclasses.replace(cfg)
    object.__setattr__(cfg, "strict", True)
    return cfg


def rng_images(n: int, size=(8, 8), seed=0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=size, dtype=np.uint8) for _ in range(n)]


def grey_folder(root: Path, classes=("a", "b", "c"), per=6, size=(8, 8), seed=0,
                ext=".png") -> dict[str, list[np.ndarray]]:
    """``root/<class>/<i>.png`` of random grey images; returns the arrays per class."""
    out = {}
    for k, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        arrs = rng_images(per, size, seed + 100 * k)
        for i, a in enumerate(arrs):
            Image.fromarray(a, "L").save(root / c / f"{i:03d}{ext}")
        out[c] = arrs
    return out


def png_bytes(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


# -- real images end to end -----------------------------------------------------------------------

FASHION_PER_CLASS = 40
MODES = ("L", "RGB", "RGBA", "P", "I;16")
SIZES = (28, 32, 40)


def write_fashion(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST test images as PNG and JPEG files of mixed modes and sizes, in a folder per
    class, plus ``labels.csv`` (path,label) beside them. Returns the 28×28 originals and labels
    in the loader's order (class folders sorted, files sorted within)."""
    x = read_idx(FASHION_SYSTEM / "t10k-images-idx3-ubyte.gz")
    y = read_idx(FASHION_SYSTEM / "t10k-labels-idx1-ubyte.gz")
    rows, orig, labels = ["path,label"], [], []
    for c in range(10):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True)
        for j, i in enumerate(np.flatnonzero(y == c)[:FASHION_PER_CLASS]):
            mode, side = MODES[j % len(MODES)], SIZES[j % len(SIZES)]
            im = Image.fromarray(x[i], "L")
            if side != 28:
                im = im.resize((side, side), Image.Resampling.BILINEAR)
            a = np.asarray(im)
            if mode == "RGB":
                im = im.convert("RGB")
            elif mode == "RGBA":
                rgba = np.dstack([a, a, a, np.full_like(a, 255)])  # opaque: pixels unchanged
                im = Image.fromarray(rgba, "RGBA")
            elif mode == "P":
                im = Image.fromarray(a, "P")
                im.putpalette([v for k in range(256) for v in (k, k, k)])
            elif mode == "I;16":
                im = Image.fromarray(a.astype(np.uint16) * 257)
            ext = ".jpg" if mode in ("L", "RGB") and j % 2 == 0 else ".png"
            name = f"{j:03d}{ext}"
            im.save(folder / name)
            assert Image.open(folder / name).mode.startswith(mode[0])
            rows.append(f"class_{c}/{name},class_{c}")
            orig.append(x[i])
            labels.append(c)
    (root / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return np.stack(orig), np.asarray(labels)


@pytest.fixture(scope="module")
def fashion_folder(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray] | None:
    if not (FASHION_SYSTEM / "t10k-images-idx3-ubyte.gz").is_file():
        return None  # the test asks fashion_available, which skips or fails
    root = tmp_path_factory.mktemp("fashion") / "images"
    x, y = write_fashion(root)
    return root, x, y


def test_fashion_images_decode_close_to_the_originals(fashion_available, fashion_folder):
    root, x, y = fashion_folder
    cfg = ExperimentConfig(image_size=28, channels=1)
    pool, test, notes = load_imagefolder(str(root), cfg)
    assert test is None
    assert pool.x.shape == (10 * FASHION_PER_CLASS, 1, 28, 28) and pool.x.dtype == torch.uint8
    assert torch.equal(pool.y, torch.from_numpy(y))
    assert pool.classes == [f"class_{c}" for c in range(10)]
    got = pool.x[:, 0].numpy().astype(int)
    # each file decoded independently: PIL's grey conversion (16-bit: v / 257), then PIL's
    # bilinear resize to 28 px when the file is larger
    files = sorted(p for p in root.rglob("*") if p.suffix in (".png", ".jpg"))
    assert len(files) == len(got)
    for k, f in enumerate(files):
        im = Image.open(f)
        if im.mode.startswith("I;16"):
            ref = np.round(np.asarray(im) / 257.0).astype(np.uint8)
        else:
            ref = np.asarray(im.convert("RGB").convert("L"))
        if ref.shape != (28, 28):
            ref = np.asarray(Image.fromarray(ref).resize((28, 28), Image.Resampling.BILINEAR))
        d = np.abs(got[k] - ref.astype(int)).max()
        # JPEGs decode to slightly unequal R, G, B: resized in colour, then made grey
        assert d == 0 or (f.suffix == ".jpg" and d <= 1), (f, d)
    # and every image is close to its Fashion-MNIST original (JPEG and resizing blur a little)
    diff = np.abs(got - x.astype(int)).reshape(len(x), -1).mean(1)
    assert diff.max() < 25 and np.median(diff) < 10
    assert int((diff == 0).sum()) >= 10 * 5  # the 28-pixel PNGs come back exactly
    assert any("labels.csv" in n and "directly in the folder" in n for n in notes)


def test_fashion_imagefolder_trains_and_evaluates_end_to_end(fashion_available, fashion_folder,
                                                             tmp_path):
    root, x, y = fashion_folder
    before = snapshot(root)
    out = tmp_path / "run"
    r = run_cli("train", "--dataset", f"imagefolder:{root}", "--image-size", "28",
                "--channels", "1", "--epochs", "3", "--lr", "3e-3", "--out", str(out), *FAST)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["n"] == 80 and metrics["train"]["n"] + metrics["val"]["n"] == 320
    assert metrics["test"]["accuracy"] > 0.3, metrics["test"]  # chance is 0.1
    splits = np.load(out / "splits.npz")
    tr, va, te = (set(splits[k].tolist()) for k in ("train", "val", "test"))
    assert not (tr & va or tr & te or va & te) and tr | va | te == set(range(400))
    assert np.bincount(y[sorted(te)]).tolist() == [8] * 10  # stratified: 20 % of each class
    assert snapshot(root) == before  # nothing written into the data folder
    # the gallery names each wrong image's file, which holds the true label's class folder
    gallery = json.loads((out / "gallery.json").read_text())
    assert gallery and all((root / g["source"]).is_file() for g in gallery)
    assert all(g["source"].startswith(g["true"] + "/") for g in gallery)
    # a later command reading the saved config decodes the folder again into the same split
    again = load_data(resolve(load_config(out / "config.yaml")))
    for k in ("train", "val", "test"):
        assert np.array_equal(again.indices[k], splits[k]), k


def test_fashion_csv_trains_end_to_end(fashion_available, fashion_folder, tmp_path):
    root, x, y = fashion_folder
    before = snapshot(root)
    out = tmp_path / "run"
    r = run_cli("train", "--dataset", f"csv:{root / 'labels.csv'}", "--image-size", "28",
                "--channels", "1", "--epochs", "3", "--lr", "3e-3", "--out", str(out), *FAST)
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["n"] == 80 and metrics["test"]["accuracy"] > 0.3
    assert (out / "splits.npz").is_file()
    # streamed from disk instead of decoded into memory: the very same run
    r = run_cli("train", "--dataset", f"csv:{root / 'labels.csv'}", "--image-size", "28",
                "--channels", "1", "--epochs", "3", "--lr", "3e-3", "--out", str(tmp_path / "st"),
                "--stream", "always", *FAST)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((tmp_path / "st" / "metrics.json").read_text()) == metrics
    assert snapshot(root) == before
    # the CSV lists the same files in the same order as the folder: same pool
    cfg = ExperimentConfig(image_size=28, channels=1)
    a, _, _ = load_csv(str(root / "labels.csv"), cfg)
    b, _, _ = load_imagefolder(str(root), cfg)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and a.classes == b.classes


# -- pixel modes, channels, sizes -----------------------------------------------------------------


def test_every_mode_decodes_to_the_expected_pixels(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, size=(8, 8), dtype=np.uint8)
    alpha = rng.integers(0, 256, size=(8, 8), dtype=np.uint8)
    # expected by the float formula c·α/255 + 255·(1 − α/255), rounded
    on_white = np.round(a * (alpha / 255.0) + 255.0 * (1 - alpha / 255.0)).astype(np.uint8)
    cases = []  # (file name, writer, expected)

    def palette(arr):
        im = Image.fromarray(arr, "P")
        im.putpalette([v for k in range(256) for v in (k, k, k)])
        return im

    cases.append(("00_L.png", Image.fromarray(a, "L"), a))
    cases.append(("01_RGB.PNG", Image.fromarray(np.dstack([a] * 3), "RGB"), a))
    cases.append(("02_P.Png", palette(a), a))
    cases.append(("03_I16.png", Image.fromarray(a.astype(np.uint16) * 257), a))
    bits = a > 127
    cases.append(("04_1bit.png", Image.fromarray(bits), np.where(bits, 255, 0).astype(np.uint8)))
    cases.append(("05_LA.png", Image.fromarray(np.dstack([a, alpha]), "LA"), on_white))
    cases.append(("06_RGBA.png", Image.fromarray(np.dstack([a, a, a, alpha]), "RGBA"), on_white))
    cases.append(("07_bmp.BMP", Image.fromarray(a, "L"), a))
    cases.append(("08_tif.TIFF", Image.fromarray(a, "L"), a))
    cases.append(("09_gif.GIF", palette(a), a))
    cases.append(("10_webp.WebP", Image.fromarray(np.dstack([a] * 3), "RGB"), a))
    d = tmp_path / "data" / "modes"
    d.mkdir(parents=True)
    for name, im, _ in cases:
        kw = {"lossless": True} if name.lower().endswith(".webp") else {}
        im.save(d / name, **kw)
    # a 16-bit value that is not a multiple of 257 rounds to the nearest 8-bit value
    v16 = np.array([[0, 128, 129, 385, 65535, 32896, 32767, 1000]] * 8, dtype=np.uint16)
    Image.fromarray(v16).save(d / "11_I16_round.png")
    exp16 = np.floor(v16 / 65535.0 * 255.0 + 0.5).astype(np.uint8)
    grey_folder(tmp_path / "data", classes=("other",), per=4)
    pool, _, notes = load_imagefolder(str(tmp_path / "data"), ExperimentConfig())
    assert pool.classes == ["modes", "other"]
    assert pool.x.shape == (len(cases) + 1 + 4, 1, 8, 8)  # all grey → 1 channel
    for i, (name, _, expected) in enumerate(cases):
        assert np.array_equal(pool.x[i, 0].numpy(), expected), name
    assert np.array_equal(pool.x[len(cases), 0].numpy(), exp16)
    assert not any("skipped" in n for n in notes)


def test_upper_case_extensions_are_images(tmp_path):
    arrs = grey_folder(tmp_path / "d", classes=("x", "y"), per=3)
    for ext in (".PNG", ".Jpg", ".JPEG"):
        Image.fromarray(arrs["x"][0]).save(tmp_path / "d" / "x" / f"up{ext}")
    pool, _, _ = load_imagefolder(str(tmp_path / "d"), ExperimentConfig())
    assert len(pool) == 9 and int((pool.y == 0).sum()) == 6


def test_exif_orientation_is_applied(tmp_path):
    a = np.arange(6 * 10, dtype=np.uint8).reshape(6, 10) * 4
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    grey_folder(tmp_path / "d", classes=("b", "c"), per=3, size=(10, 6))
    (tmp_path / "d" / "a").mkdir()
    for i in range(3):
        Image.fromarray(a, "L").save(tmp_path / "d" / "a" / f"{i}.png", exif=exif)
    pool, _, _ = load_imagefolder(str(tmp_path / "d"), ExperimentConfig())
    assert pool.x.shape[2:] == (10, 6)
    assert np.array_equal(pool.x[0, 0].numpy(), np.rot90(a, k=-1))


def test_colour_images_give_three_channels_unless_told(tmp_path):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    grey_folder(tmp_path / "d", classes=("g1", "g2"), per=3)
    (tmp_path / "d" / "colour").mkdir()
    for i in range(3):
        Image.fromarray(rgb).save(tmp_path / "d" / "colour" / f"{i}.png")
    pool, _, notes = load_imagefolder(str(tmp_path / "d"), ExperimentConfig())
    assert pool.x.shape[1] == 3
    assert np.array_equal(pool.x[0].numpy().transpose(1, 2, 0), rgb)
    g = pool.x[3].numpy()  # a grey image repeated into 3 equal channels
    assert np.array_equal(g[0], g[1]) and np.array_equal(g[0], g[2])
    assert any("3 of 9 images are in colour" in n for n in notes)
    pool1, _, _ = load_imagefolder(str(tmp_path / "d"), ExperimentConfig(channels=1))
    rgb = rgb.astype(np.int64)
    luma = (rgb[..., 0] * 299 + rgb[..., 1] * 587 + rgb[..., 2] * 114) / 1000.0  # ITU-R 601-2
    assert np.abs(pool1.x[0, 0].numpy() - luma).max() <= 1.0


def test_mixed_sizes_use_the_median_or_image_size(tmp_path):
    for k, side in enumerate((8, 12, 10)):
        grey_folder(tmp_path / "d", classes=(f"s{side}",), per=3, size=(side, side), seed=k)
    pool, _, notes = load_imagefolder(str(tmp_path / "d"), ExperimentConfig())
    assert pool.x.shape[1:] == (1, 10, 10)
    assert any("3 sizes" in n and "10x10" in n and "--image-size" in n for n in notes)
    pool, _, notes = load_imagefolder(str(tmp_path / "d"), ExperimentConfig(image_size=6))
    assert pool.x.shape[1:] == (1, 6, 6) and not any("sizes" in n for n in notes)
    src = np.asarray(Image.open(tmp_path / "d" / "s12" / "000.png"))
    ref = np.asarray(Image.fromarray(src).resize((6, 6), Image.Resampling.BILINEAR))
    assert np.array_equal(pool.x[3, 0].numpy(), ref)  # class s12 comes after s10


def test_one_shared_non_square_size_is_kept(tmp_path):
    grey_folder(tmp_path / "d", classes=("a", "b"), per=3, size=(6, 10))
    pool, _, notes = load_imagefolder(str(tmp_path / "d"), ExperimentConfig())
    assert pool.x.shape[1:] == (1, 6, 10) and not any("sizes" in n for n in notes)


# -- folder layout rules --------------------------------------------------------------------------


def test_hidden_files_and_folders_are_ignored(tmp_path):
    arrs = grey_folder(tmp_path / "d", classes=("a", "b"), per=3)
    (tmp_path / "d" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tmp_path / "d" / "a" / "._000.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (tmp_path / "d" / "a" / ".ipynb_checkpoints").mkdir()
    Image.fromarray(arrs["a"][0]).save(tmp_path / "d" / "a" / ".ipynb_checkpoints" / "x.png")
    (tmp_path / "d" / ".trash").mkdir()
    Image.fromarray(arrs["a"][0]).save(tmp_path / "d" / ".trash" / "y.png")
    pool, _, notes = load_imagefolder(str(tmp_path / "d"), strict(ExperimentConfig()))
    assert pool.classes == ["a", "b"] and len(pool) == 6
    assert not any("._000" in n or "ipynb" in n or ".DS_Store" in n for n in notes), notes


def test_nested_folders_count_for_their_top_level_class(tmp_path):
    grey_folder(tmp_path / "d", classes=("a", "b"), per=3)
    deep = tmp_path / "d" / "a" / "indoor" / "night"
    deep.mkdir(parents=True)
    for i, arr in enumerate(rng_images(2, seed=9)):
        Image.fromarray(arr).save(deep / f"n{i}.png")
    pool, _, notes = load_imagefolder(str(tmp_path / "d"), ExperimentConfig())
    assert pool.classes == ["a", "b"]  # "indoor" is not a class
    assert np.bincount(pool.y.numpy()).tolist() == [5, 3]
    assert any("2 images are in sub-folders" in n and "top-level" in n for n in notes)


def test_corrupt_zero_byte_and_non_image_files_are_skipped_and_named(tmp_path):
    arrs = grey_folder(tmp_path / "d", classes=("a", "b"), per=4)
    a = tmp_path / "d" / "a"
    (a / "empty.png").write_bytes(b"")
    (a / "truncated.png").write_bytes(png_bytes(arrs["a"][0])[:60])
    (a / "text.jpg").write_text("this is not a picture")
    (a / "readme.txt").write_text("notes")
    pool, _, notes = load_imagefolder(str(tmp_path / "d"), ExperimentConfig())
    assert len(pool) == 8
    skipped = [n for n in notes if "skipped" in n]
    assert len(skipped) == 1
    note = skipped[0]
    assert "skipped 3 of 11 files" in note
    for name in ("a/empty.png (empty file", "a/truncated.png", "a/text.jpg (not an image"):
        assert name in note, note
    assert "--strict" in note
    assert any("ignored 1 files that do not end in an image extension" in n
               and "a/readme.txt" in n for n in notes)
    with pytest.raises(DataError, match=r"3 of 11 image files cannot be read \(--strict\)"):
        load_imagefolder(str(tmp_path / "d"), strict(ExperimentConfig()))


def test_many_bad_files_list_the_first_few(tmp_path):
    grey_folder(tmp_path / "d", classes=("a", "b"), per=3)
    for i in range(9):
        (tmp_path / "d" / "a" / f"bad{i}.png").write_bytes(b"x" * (i + 1))
    _, _, notes = load_imagefolder(str(tmp_path / "d"), ExperimentConfig())
    note = next(n for n in notes if "skipped" in n)
    assert "skipped 9 of 15" in note and "and 4 more" in note and "bad0.png" in note
    assert "bad8.png" not in note


def test_non_ascii_and_html_class_names_work(tmp_path):
    names = ["<img src=x onerror=alert(1)>", "café 猫", 'a&b "q"']
    grey_folder(tmp_path / "d", classes=names, per=20)
    pool, _, _ = load_imagefolder(str(tmp_path / "d"), ExperimentConfig())
    assert pool.classes == sorted(names)
    out = tmp_path / "run"
    r = run_cli("train", "--dataset", f"imagefolder:{tmp_path / 'd'}", "--epochs", "1",
                "--out", str(out), "--precision", "fp32", "--channels-last", "off",
                "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    ck = torch.load(out / "last.pt", weights_only=True)
    assert ck["classes"] == sorted(names)
    report = out / "report.html"
    if report.is_file():  # the report escapes class names
        html = report.read_text(encoding="utf-8")
        assert "<img src=x onerror=alert(1)>" not in html


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "data").mkdir()
    cli_error(tmp_path, "train", "--dataset", "imagefolder:data",
              words=("imagefolder:data", "empty", "<class name>"))


def test_missing_folder_is_an_error(tmp_path):
    cli_error(tmp_path, "train", "--dataset", "imagefolder:nowhere",
              words=("'nowhere' does not exist",))


def test_a_file_instead_of_a_folder_is_an_error(tmp_path):
    (tmp_path / "list.csv").write_text("path,label\n")
    cli_error(tmp_path, "train", "--dataset", "imagefolder:list.csv",
              words=("is a file", "csv:list.csv"))


def test_one_class_folder_is_an_error(tmp_path):
    grey_folder(tmp_path / "data", classes=("train",), per=4)
    (tmp_path / "data" / "train").rename(tmp_path / "data" / "only")
    cli_error(tmp_path, "train", "--dataset", "imagefolder:data",
              words=("only one class folder", "'only'", "at least 2 classes"))


def test_images_without_class_folders_is_an_error(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    for i, a in enumerate(rng_images(3)):
        Image.fromarray(a).save(d / f"{i}.png")
    cli_error(tmp_path, "train", "--dataset", "imagefolder:data",
              words=("no class folders", "3 images directly", "csv:"))


def test_empty_class_folder_is_left_out_with_a_note(tmp_path):
    grey_folder(tmp_path / "d", classes=("a", "b"), per=3)
    (tmp_path / "d" / "empty").mkdir()
    (tmp_path / "d" / "empty" / "notes.txt").write_text("x")
    pool, _, notes = load_imagefolder(str(tmp_path / "d"), ExperimentConfig())
    assert pool.classes == ["a", "b"]
    assert any("left out 1 class folder without images: 'empty'" in n for n in notes)
    with pytest.raises(DataError, match="without images.*--strict"):
        load_imagefolder(str(tmp_path / "d"), strict(ExperimentConfig()))


def test_class_with_too_few_readable_images_is_an_error(tmp_path):
    grey_folder(tmp_path / "d", classes=("a", "b"), per=3)
    (tmp_path / "d" / "b" / "000.png").write_bytes(b"")
    with pytest.raises(DataError, match=rf"fewer than {MIN_IMAGES_PER_CLASS} images.*'b' \(2 images\)"):
        load_imagefolder(str(tmp_path / "d"), ExperimentConfig())


def test_corrupt_files_via_cli_skip_with_a_note(tmp_path):
    grey_folder(tmp_path / "data", classes=("a", "b"), per=20)
    (tmp_path / "data" / "a" / "zero.png").write_bytes(b"")
    before = snapshot(tmp_path / "data")
    out = tmp_path / "run"
    r = run_cli("train", "--dataset", "imagefolder:data", "--epochs", "1", "--out", str(out),
                *FAST, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "skipped 1 of 41 files" in r.stdout and "a/zero.png (empty file" in r.stdout
    assert snapshot(tmp_path / "data") == before
    new = set(snapshot(tmp_path)) - set(before) - {f"data/{k}" for k in before}
    assert all(p.startswith("run/") for p in new), new


def test_strict_flag_fails_on_corrupt_files(tmp_path):
    if "strict" not in {f.name for f in dataclasses.fields(ExperimentConfig)}:
        pytest.skip("the --strict config field is not there yet")
    grey_folder(tmp_path / "data", classes=("a", "b"), per=4)
    (tmp_path / "data" / "a" / "zero.png").write_bytes(b"")
    cli_error(tmp_path, "train", "--dataset", "imagefolder:data", "--strict",
              words=("--strict", "a/zero.png (empty file"))


def test_memory_budget_with_stream_never_refuses_and_suggests_a_size(tmp_path, monkeypatch):
    grey_folder(tmp_path / "data", classes=("a", "b"), per=15)  # 30 grey images of 8×8
    before = snapshot(tmp_path)
    r = run_cli("train", "--dataset", "imagefolder:data", "--stream", "never", cwd=tmp_path,
                env={"BIASVAR_MEMORY_BUDGET": "1500"})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    err = r.stderr
    assert "30 images decoded to 1×8×8 need 1.9 KiB" in err, err
    assert "the 1.5 KiB allowed (BIASVAR_MEMORY_BUDGET)" in err and "--stream auto" in err
    # the suggested size is the largest that fits: 30·s² ≤ 1500 < 30·(s+1)²
    s = int(err.split("--image-size (at most ")[1].split(":")[0])
    assert 30 * s * s <= 1500 < 30 * (s + 1) ** 2
    assert snapshot(tmp_path) == before
    monkeypatch.setenv("BIASVAR_MEMORY_BUDGET", "1500")
    never = ExperimentConfig(stream="never")
    pool, _, _ = load_imagefolder(str(tmp_path / "data"), dataclasses.replace(never, image_size=s))
    assert not pool.streamed and pool.x.numel() <= 1500  # the suggestion works
    with pytest.raises(DataError, match="decoded to 3×8×8 need 5.6 KiB") as e:
        load_imagefolder(str(tmp_path / "data"), dataclasses.replace(never, channels=3))
    assert "--channels 1" not in str(e.value)  # grey would need 1.9 KiB: no better
    monkeypatch.setenv("BIASVAR_MEMORY_BUDGET", "2000")  # grey fits, colour does not
    with pytest.raises(DataError, match=r"or --channels 1 \(30 images × 1×8×8 = 1.9 KiB\)"):
        load_imagefolder(str(tmp_path / "data"), dataclasses.replace(never, channels=3))
    monkeypatch.setenv("BIASVAR_MEMORY_BUDGET", "1500")
    # by default (--stream auto) the same set is streamed from disk, with a note saying so
    pool, _, notes = load_imagefolder(str(tmp_path / "data"), ExperimentConfig())
    assert pool.streamed and tuple(pool.x.shape) == (30, 1, 8, 8)
    assert any("decoded again every epoch" in n and f"at most {s}" in n for n in notes), notes


# -- CSV manifests --------------------------------------------------------------------------------


def csv_folder(root: Path, rows: list[str], header: str = "path,label") -> Path:
    grey_folder(root, classes=("cat", "dog"), per=4)
    p = root / "labels.csv"
    p.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return p


GOOD_ROWS = [f"{c}/{i:03d}.png,{c}" for c in ("cat", "dog") for i in range(4)]


def test_csv_header_any_case_bom_extra_columns_and_numeric_labels(tmp_path):
    grey_folder(tmp_path / "d", classes=("x",), per=9)
    rows = [f"note{i},x/{i:03d}.png,{lab}" for i, lab in enumerate([2, 10, 1] * 3)]
    (tmp_path / "d" / "m.csv").write_bytes(("\ufeffComment,Path, LABEL\n" + "\n".join(rows)
                                            + "\n\n").encode("utf-8"))
    pool, _, _ = load_csv(str(tmp_path / "d" / "m.csv"), ExperimentConfig())
    assert pool.classes == ["1", "2", "10"]  # integers sort as numbers
    assert pool.y.tolist() == [1, 2, 0] * 3


def test_csv_missing_columns(tmp_path):
    csv_folder(tmp_path / "d", GOOD_ROWS, header="file,class")
    cli_error(tmp_path, "train", "--dataset", "csv:d/labels.csv",
              words=("missing columns 'path', 'label'", "'file', 'class'", "path,label"))
    p = csv_folder(tmp_path / "e", [r.replace(",", ";") for r in GOOD_ROWS], header="path;label")
    with pytest.raises(DataError, match="missing columns.*separated by commas"):
        load_csv(str(p), ExperimentConfig())


def test_csv_unknown_labels(tmp_path):
    # a label seen once is a typo far more often than a class: it names the near one
    rows = GOOD_ROWS + ["cat/000.png,cta"]
    rows = [r for r in rows if r != "cat/000.png,cat"]
    csv_folder(tmp_path / "d", rows)
    cli_error(tmp_path, "train", "--dataset", "csv:d/labels.csv",
              words=("'cta' (1 image. Did you mean 'cat'?)", "fix the labels"))
    p = csv_folder(tmp_path / "e", GOOD_ROWS[1:] + ["cat/000.png,  "])
    with pytest.raises(DataError, match=r"1 rows have an empty path or label \(line 9 "
                                        r"\(cat/000.png\)\)"):
        load_csv(str(p), ExperimentConfig())


def test_csv_paths_that_leave_its_folder_are_refused(tmp_path):
    secret = tmp_path / "outside.png"
    secret.write_bytes(png_bytes(rng_images(1)[0]))
    rows = GOOD_ROWS + ["../outside.png,cat", f"{secret},dog", "cat/../../outside.png,cat"]
    csv_folder(tmp_path / "d", rows)
    err = cli_error(tmp_path, "train", "--dataset", "csv:d/labels.csv",
                    words=("3 rows name files outside the CSV's folder", "line 10: ../outside.png",
                           f"line 11: {secret}", "line 12: cat/../../outside.png"))
    assert "relative to the CSV's folder" in err


def test_csv_paths_inside_its_folder_with_dots_are_fine(tmp_path):
    rows = [f"{c}/../{c}/./{i:03d}.png,{c}" for c in ("cat", "dog") for i in range(4)]
    p = csv_folder(tmp_path / "d", rows)
    pool, _, _ = load_csv(str(p), ExperimentConfig())
    assert len(pool) == 8


def test_csv_missing_images_are_skipped_and_named(tmp_path):
    p = csv_folder(tmp_path / "d", GOOD_ROWS + ["cat/gone.png,cat", "dog/empty.png,dog"])
    (tmp_path / "d" / "dog" / "empty.png").write_bytes(b"")
    pool, _, notes = load_csv(str(p), ExperimentConfig())
    assert len(pool) == 8
    note = next(n for n in notes if "skipped" in n)
    assert "skipped 2 of 10" in note and "cat/gone.png (file not found)" in note
    assert "dog/empty.png (empty file" in note
    with pytest.raises(DataError, match="cat/gone.png"):
        load_csv(str(p), strict(ExperimentConfig()))


def test_csv_repeated_and_conflicting_rows(tmp_path):
    p = csv_folder(tmp_path / "d", GOOD_ROWS + ["cat/000.png,cat"])
    pool, _, notes = load_csv(str(p), ExperimentConfig())
    assert len(pool) == 8 and any("1 rows repeat an image" in n for n in notes)
    csv_folder(tmp_path / "e", GOOD_ROWS + ["cat/000.png,dog"])
    cli_error(tmp_path, "train", "--dataset", "csv:e/labels.csv",
              words=("listed with different labels", "cat/000.png (line 2: 'cat', line 10: 'dog')"))


def test_csv_empty_missing_or_a_folder(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    cli_error(tmp_path, "train", "--dataset", "csv:empty.csv", words=("the file is empty",))
    (tmp_path / "head.csv").write_text("path,label\n")
    cfg = ExperimentConfig()
    with pytest.raises(DataError, match="no rows follow"):
        load_csv("head.csv", cfg)
    with pytest.raises(DataError, match="'none.csv' does not exist"):
        load_csv("none.csv", cfg)
    (tmp_path / "dir").mkdir()
    with pytest.raises(DataError, match="is a folder.*imagefolder:dir"):
        load_csv("dir", cfg)


def test_csv_not_utf8(tmp_path):
    (tmp_path / "l.csv").write_bytes(b"path,label\nx.png,caf\xe9\n")
    with pytest.raises(DataError, match="not UTF-8"):
        load_csv(str(tmp_path / "l.csv"), ExperimentConfig())


# -- any Dataset (Python API) ---------------------------------------------------------------------


class Pairs(torch.utils.data.Dataset):
    def __init__(self, items, classes=None):
        self.items = items
        if classes is not None:
            self.classes = classes

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_dataset_of_mixed_image_types_decodes_exactly():
    arrs = rng_images(6, seed=5)
    items = [
        (Image.fromarray(arrs[0]), 0),
        (torch.from_numpy(arrs[1])[None], 1),                       # uint8 (1, H, W)
        (torch.from_numpy(arrs[2]), torch.tensor(0)),               # uint8 (H, W), tensor label
        (torch.from_numpy(arrs[3]).float()[None] / 255.0, np.int64(1)),  # float [0, 1]
        (np.dstack([arrs[4]] * 3), 0),                              # numpy (H, W, 3)
        (arrs[5].astype(np.uint16) * 257, 1),                       # 16-bit numpy
    ]
    d = decode_dataset(Pairs(items, classes=["zero", "one"]), ExperimentConfig(), check=False)
    assert d.classes == ["zero", "one"] and d.x.shape == (6, 1, 8, 8)
    assert d.y.tolist() == [0, 1, 0, 1, 0, 1]
    for i in range(6):
        assert np.array_equal(d.x[i, 0].numpy(), arrs[i]), i


def test_load_data_takes_a_dataset_and_its_test_split():
    import torchvision

    fake = torchvision.datasets.FakeData(size=90, image_size=(3, 10, 10), num_classes=3,
                                         random_offset=0)
    test = torchvision.datasets.FakeData(size=12, image_size=(3, 12, 12), num_classes=3,
                                         random_offset=1000)
    b = load_data(ExperimentConfig(), source=fake, test_source=test,
                  classes=["r", "g", "b"])
    assert b.classes == ["r", "g", "b"] and b.input_shape == (3, 10, 10)
    assert len(b.test) == 12 and len(b.train) + len(b.val) == 90
    assert "test" not in b.indices  # a given test split is used as it is
    # ToTensor's float [0, 1] output and an --image-size work the same way
    tt = torchvision.datasets.FakeData(size=90, image_size=(3, 10, 10), num_classes=3,
                                       transform=torchvision.transforms.ToTensor())
    b2 = load_data(ExperimentConfig(image_size=6, channels=1), source=tt)
    assert b2.input_shape == (1, 6, 6) and b2.classes == ["0", "1", "2"]


def test_dataset_string_labels_and_unknown_labels():
    arrs = rng_images(9)
    items = [(a, ["ant", "bee", "cow"][i % 3]) for i, a in enumerate(arrs)]
    d = decode_dataset(items, ExperimentConfig())
    assert d.classes == ["ant", "bee", "cow"] and d.y.tolist() == [0, 1, 2] * 3
    with pytest.raises(DataError, match=r"'cow' \(Did you mean 'cows'\?\)"):
        decode_dataset(items, ExperimentConfig(), classes=["ant", "bee", "cows"])
    with pytest.raises(DataError, match="label 2 is outside the 2 classes"):
        decode_dataset([(a, i % 3) for i, a in enumerate(arrs)], ExperimentConfig(),
                       classes=["a", "b"])


def test_dataset_bad_items_are_clear_errors():
    a = rng_images(1)[0]
    with pytest.raises(DataError, match=r"\[0\]: expected an \(image, label\) pair"):
        decode_dataset([a], ExperimentConfig())
    normalised = (torch.from_numpy(a).float()[None] - 128.0) / 64.0
    with pytest.raises(DataError, match="remove Normalize"):
        decode_dataset([(normalised, 0)], ExperimentConfig())
    with pytest.raises(DataError, match=r"source\[0\]: image is a str"):
        decode_dataset([("img.png", 0)], ExperimentConfig())

    class Broken(Pairs):
        def __getitem__(self, i):
            raise KeyError("no such sample")

    with pytest.raises(DataError, match=r"dataset\[0\] raised KeyError"):
        decode_dataset(Broken([None]), ExperimentConfig())
    with pytest.raises(DataError, match="empty"):
        decode_dataset([], ExperimentConfig())


# -- TensorBoard ----------------------------------------------------------------------------------


def test_tensorboard_writes_the_history_as_events(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    r = run_cli("train", "--dataset", "digits", "--epochs", "2", "--tensorboard",
                "--out", str(out), *FAST)
    assert r.returncode == 0, r.stderr[-2000:]
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    lines = (out / "history.csv").read_text().splitlines()
    cols = lines[0].split(",")
    history = [dict(zip(cols, map(float, ln.split(",")))) for ln in lines[1:]]
    assert len(history) == 2
    for col, tag in (("train_loss", "train/loss"), ("val_accuracy", "val/accuracy"),
                     ("lr", "lr")):
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [1, 2]
        assert [e.value for e in events] == pytest.approx([h[col] for h in history], rel=1e-5)


def test_iterable_dataset_is_read_by_iteration():
    arrs = rng_images(9)

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter([(torch.from_numpy(a), i % 3) for i, a in enumerate(arrs)])

    d = decode_dataset(Stream(), ExperimentConfig())
    assert d.y.tolist() == [0, 1, 2] * 3
    assert all(np.array_equal(d.x[i, 0].numpy(), arrs[i]) for i in range(9))
