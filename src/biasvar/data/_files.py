"""The user's image files: ``imagefolder:PATH`` and ``csv:PATH`` listed, then decoded.

Every source is decoded **once** into the same uint8 ``(N, C, H, W)`` tensor the built-in datasets
use, so training, splits and analyses do not know where the images came from — or, when that
tensor would not fit in memory, into a :class:`~biasvar.data._stream.StreamImages` that decodes
the same pixels again every epoch (:mod:`biasvar.data._memory`). None of these sources has its
own test split: :func:`biasvar.data.build_bundle` carves a stratified one (``test_fraction``),
and the run directory's ``splits.npz`` records it. How pixels are converted is in
:mod:`biasvar.data._pixels`; a Python ``Dataset`` is decoded by :mod:`biasvar.data._pydataset`.

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
  label is an error, and so is a label given to fewer than
  :data:`~biasvar.data._labels.MIN_IMAGES_PER_CLASS` images: it is reported with the nearest
  other label, since it is usually a typo. The same image listed twice is kept once (a note;
  an error when the labels differ).
* **Files.** Names starting with ``.`` (files and folders: ``.DS_Store``, ``._x.png``,
  ``.ipynb_checkpoints``) are ignored. Image extensions are matched case-insensitively
  (:data:`IMAGE_EXTENSIONS`); other files are ignored and counted. A file that cannot be
  decoded (zero bytes, truncated, not an image despite its name, missing for a CSV row) is
  skipped with a count and the first few names — or stops the run with ``--strict``.
"""
from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from ._labels import check_classes, listing, sorted_labels
from ._memory import stream_note
from ._pixels import colour_note, decode, header, reason, stack, target_size
from ._stream import PROGRESS_FROM, FileReader, StreamImages, loader_workers, scan
from ._types import Decoded, ImageData

__all__ = ["IMAGE_EXTENSIONS", "list_imagefolder", "load_imagefolder", "read_manifest",
           "load_csv", "decode_files"]

#: file name endings read as images (compared case-insensitively)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _strict(cfg: Any) -> bool:
    return bool(getattr(cfg, "strict", False))


def _parallel(fn: Callable[[int], Any], n: int, desc: str) -> list[Any]:
    """``[fn(0), ..., fn(n-1)]`` on a thread pool (PIL decodes without holding the GIL)."""
    workers = max(1, min(8, os.cpu_count() or 1))
    bar = None
    if n >= PROGRESS_FROM:
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
            return header(files[i])
        except Exception as e:  # noqa: BLE001 - PIL raises many types for a bad file
            return reason(e)

    heads = _parallel(head, len(files), "reading image headers")
    ok = [i for i, h in enumerate(heads) if isinstance(h, tuple)]
    bad += [f"{names[i]} ({heads[i]})" for i in range(len(files)) if isinstance(heads[i], str)]
    if not ok:
        raise DataError(f"{what}: none of the {len(files)} image files can be read: "
                        f"{listing(bad)}.")
    hw, size_note = target_size([heads[i][:2] for i in ok], cfg.image_size, what)
    # before decoding, a colour mode counts as 3 channels (its pixels may still all be grey)
    channels = cfg.channels or (1 if all(heads[i][2] for i in ok) else None)
    streamed = stream_note(cfg, what, len(ok), channels or 3, hw, estimated=channels is None)
    if streamed is None:
        def body(i: int) -> np.ndarray | str:
            try:
                return decode(files[i], hw)
            except Exception as e:  # noqa: BLE001
                return reason(e)

        arrays = _parallel(lambda j: body(ok[j]), len(ok), "decoding images")
        keep = [j for j, a in enumerate(arrays) if isinstance(a, np.ndarray)]
        bad += [f"{names[ok[j]]} ({arrays[j]})" for j in range(len(ok))
                if isinstance(arrays[j], str)]
    else:
        reader = FileReader([files[i] for i in ok], [names[i] for i in ok], hw)
        found = scan(reader, channels, workers=loader_workers(cfg), progress_from=PROGRESS_FROM)
        keep = found.rows.tolist()
        bad += [f"{reader.name(j)} ({why})" for j, why in found.bad]
    if bad:
        if _strict(cfg):
            raise DataError(f"{what}: {len(bad)} of {len(files)} image files cannot be read "
                            f"(--strict): {listing(bad)}. Fix or remove them, or leave out "
                            "--strict to skip them.")
        notes.append(f"{what}: skipped {len(bad)} of {len(files)} files that are not readable "
                     f"images: {listing(bad)}. Fix or remove them, or use --strict to stop "
                     "on them.")
    if not keep:
        raise DataError(f"{what}: none of the {len(files)} image files can be read: "
                        f"{listing(bad)}.")
    if size_note:
        notes.append(size_note)
    if streamed is None:
        x, channel_note = stack([arrays[j] for j in keep], cfg.channels, what)
    else:
        x = StreamImages(reader, found.rows, found.channels, found.sums, what)
        channel_note = (colour_note(what, found.n_colour, len(keep))
                        if channels is None else None)
    if channel_note:
        notes.append(channel_note)
    if streamed:
        notes.append(streamed)
    idx = [ok[j] for j in keep]
    y = torch.as_tensor([labels[i] for i in idx], dtype=torch.int64)
    check_classes(what, y.numpy(), classes)
    return Decoded(x, y, list(classes), [names[i] for i in idx], notes)


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
                f"({listing(loose_images)}). imagefolder: expects a folder per class, "
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
               f"{listing([repr(e) for e in empty])}")
        if strict:
            raise DataError(f"{what}: {msg} (--strict). Add images or remove the folders.")
        notes.append(f"{what}: left out {msg}.")
    per_class = [(n, f) for n, f in per_class if f]
    if len(per_class) < 2:
        if not per_class:
            raise DataError(f"{what}: no images found in its class folders "
                            f"({listing([repr(d.name) for d in class_dirs])}); image files end "
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
                     f"({' '.join(IMAGE_EXTENSIONS)}): {listing(other)}.")
    if loose:
        notes.append(f"{what}: ignored {len(loose)} files directly in the folder, outside the "
                     f"class folders: {listing(loose)}.")
    return classes, files, labels, names, notes


def load_imagefolder(spec: str, cfg: Any) -> tuple[ImageData, None, list[str]]:
    """``imagefolder:PATH`` → (training pool, no test split, notes)."""
    what = f"dataset imagefolder:{spec}"
    root = _existing_dir(spec, "imagefolder")
    classes, files, labels, names, notes = list_imagefolder(root, what, strict=_strict(cfg))
    d = decode_files(files, labels, classes, cfg, what=what, names=names, notes=notes)
    return d.image_data(), None, d.notes


_DRIVE = re.compile(r"^[A-Za-z]:/")


def _leaves_folder(rel: str) -> bool:
    """True for absolute paths and paths that climb above their folder with ``..``."""
    if rel.startswith(("/", "~")) or _DRIVE.match(rel):
        return True
    norm = os.path.normpath(rel)
    return norm == ".." or norm.startswith("../")


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
                        f"({listing(short)}).")
    if no_label:
        raise DataError(f"{what}: {len(no_label)} rows have an empty path or label "
                        f"({listing(no_label)}); every row needs both.")
    if outside:
        raise DataError(f"{what}: {len(outside)} rows name files outside the CSV's folder "
                        f"{str(base)!r} ({listing(outside)}). Paths must be relative to the "
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
                        f"{listing(conflicts)}. Give each image one label.")
    notes = []
    if dupes:
        notes.append(f"{what}: {len(dupes)} rows repeat an image already listed with the same "
                     f"label and were dropped (a repeat could land in both training and test "
                     f"data): {listing(dupes)}.")
    classes = sorted_labels(r[2] for r in unique_rows)
    index = {c: i for i, c in enumerate(classes)}
    files = [base / r[1] for r in unique_rows]
    labels = [index[r[2]] for r in unique_rows]
    check_classes(what, np.asarray(labels), classes)  # before decoding: typos fail fast
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
