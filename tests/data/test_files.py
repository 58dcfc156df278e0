"""biasvar.data._files: listing class folders and CSV manifests, then decoding the files."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from biasvar import ExperimentConfig
from biasvar.data._files import (IMAGE_EXTENSIONS, decode_files, list_imagefolder, load_csv,
                                 read_manifest)
from biasvar.errors import DataError


def touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_imagefolder_listing_skips_hidden_and_counts_the_rest(tmp_path):
    for rel in ("b/1.png", "b/2.JPG", "a/x.png", "a/sub/y.TiFF", "a/.hidden.png", "a/._x.png",
                "a/.ipynb_checkpoints/z.png", "a/notes.txt", ".git/k.png", "loose.png"):
        touch(tmp_path / rel)
    (tmp_path / "empty").mkdir()
    classes, files, labels, names, notes = list_imagefolder(tmp_path, "d")
    assert classes == ["a", "b"]
    assert names == ["a/x.png", "a/sub/y.TiFF", "b/1.png", "b/2.JPG"]  # files, then sub-folders
    assert labels == [0, 0, 1, 1] and files == [tmp_path / n for n in names]
    text = " | ".join(notes)
    assert "left out 1 class folder without images: 'empty'" in text
    assert "1 images are in sub-folders" in text
    assert "ignored 1 files that do not end in an image extension" in text and "a/notes.txt" in text
    assert "1 files directly in the folder" in text and "loose.png" in text
    assert ".hidden" not in text and ".git" not in text and "._x" not in text
    with pytest.raises(DataError, match="'empty' \\(--strict\\)"):
        list_imagefolder(tmp_path, "d", strict=True)
    assert all(e == e.lower() for e in IMAGE_EXTENSIONS)


def test_imagefolder_listing_errors(tmp_path):
    touch(tmp_path / "one" / "cat" / "1.png")
    with pytest.raises(DataError, match="only one class folder with images \\('cat'\\)"):
        list_imagefolder(tmp_path / "one", "d")
    touch(tmp_path / "flat" / "1.png")
    with pytest.raises(DataError, match="no class folders, but 1 images directly in it"):
        list_imagefolder(tmp_path / "flat", "d")


def test_manifest_columns_duplicates_and_paths(tmp_path):
    p = tmp_path / "m.csv"
    rows = [f"{c},{i},{d}{i}.png" for c, d in (("cat", "x/"), ("dog", "y\\"), ("10", "./"))
            for i in range(3)]
    rows.insert(1, "cat,9,x/0.png")  # the same image again, same label: dropped with a note
    p.write_text("Label,extra,PATH\n" + "\n".join(rows) + "\n\n", encoding="utf-8")
    classes, files, labels, names, notes = read_manifest(p, "d")
    assert classes == ["10", "cat", "dog"]  # not all integers: sorted by code point
    assert names == ["x/0.png", "x/1.png", "x/2.png", "y/0.png", "y/1.png", "y/2.png", "0.png",
                     "1.png", "2.png"]
    assert files == [tmp_path / n for n in names] and labels == [1] * 3 + [2] * 3 + [0] * 3
    assert len(notes) == 1 and "1 rows repeat an image" in notes[0]
    assert "line 3: x/0.png" in notes[0]
    for body, words in (("cat,../up.png\n", "outside the CSV's folder"),
                        ("cat,/abs.png\n", "line 2: /abs.png"),
                        ("cat,\n", "empty path or label (line 2"),
                        ("cat,a.png\ndog,a.png\n", "different labels: a.png")):
        p.write_text("label,path\n" + body, encoding="utf-8")
        with pytest.raises(DataError) as e:
            read_manifest(p, "d")
        assert words in str(e.value)


def test_csv_skips_a_missing_file_and_names_it(tmp_path):
    rows = []
    for k, c in enumerate(("cat", "dog")):
        for i in range(3):
            a = np.full((4, 5), 40 * k + i, np.uint8)
            (tmp_path / c).mkdir(exist_ok=True)
            Image.fromarray(a, "L").save(tmp_path / c / f"{i}.png")
            rows.append(f"{c}/{i}.png,{c}")
    rows.append("dog/gone.png,dog")
    p = tmp_path / "labels.csv"
    p.write_text("path,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    pool, test, notes = load_csv(str(p), ExperimentConfig())
    assert test is None and len(pool) == 6 and pool.classes == ["cat", "dog"]
    assert pool.x.shape == (6, 1, 4, 5)
    assert pool.x[4, 0].unique().tolist() == [41] and pool.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert any("skipped 1 of 7 files" in n and "dog/gone.png (file not found)" in n
               for n in notes)
    strict = dataclasses.replace(ExperimentConfig(), strict=True)
    with pytest.raises(DataError, match=r"dog/gone.png \(file not found\).*--strict"):
        load_csv(str(p), strict)


def test_decode_files_with_nothing_readable(tmp_path):
    touch(tmp_path / "a.png", b"")
    with pytest.raises(DataError, match=r"none of the 1 image files can be read: a.png "
                                        r"\(empty file, 0 bytes\)"):
        decode_files([tmp_path / "a.png"], [0], ["a", "b"], ExperimentConfig(), what="d",
                     names=["a.png"])
    with pytest.raises(DataError, match="no image files found"):
        decode_files([], [], ["a", "b"], ExperimentConfig(), what="d")
