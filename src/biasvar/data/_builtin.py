"""Built-in datasets: Fashion-MNIST, MNIST, CIFAR-10 (torchvision formats) and scikit-learn's digits.

Lookup order for the torchvision datasets: ``--data-root`` (torchvision's layout
``<root>/FashionMNIST/raw/`` or the files directly in ``<root>``), then known system locations
(Debian's ``dataset-fashion-mnist`` puts the ``.gz`` IDX files in
``/usr/share/datasets/fashion-mnist/``), then a download through torchvision when ``download`` is
on and the network allows. IDX files are read directly, compressed or not, so nothing needs
decompressing.
"""
from __future__ import annotations

import gzip
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..registry import Registry
from ._types import ImageData

__all__ = ["BUILTIN", "DatasetInfo", "read_idx"]

# A loader returns (training pool, test split or None when the dataset has none).
Loader = Callable[[Path, bool], tuple[ImageData, ImageData | None]]


class DatasetInfo:
    def __init__(self, name: str, loader: Loader, description: str, shape: tuple[int, int, int],
                 num_classes: int, where: str):
        self.name, self.loader, self.description = name, loader, description
        self.shape, self.num_classes, self.where = shape, num_classes, where


BUILTIN: Registry[DatasetInfo] = Registry("dataset")

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
MNIST_CLASSES = [str(i) for i in range(10)]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format), gzip-compressed or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read IDX file ({e}); the file is damaged — delete it "
                        "and put a fresh copy there.") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number); expected the MNIST-format "
                        "files named like train-images-idx3-ubyte[.gz].")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    offset = 4 + 4 * ndim
    need = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - offset < need:
        raise DataError(f"{path}: truncated IDX file ({len(raw) - offset} of {need} data bytes); "
                        "delete it and put a complete copy there.")
    return np.frombuffer(raw, dtype=dtype, count=int(np.prod(dims)), offset=offset).reshape(dims)


def _find_idx(stem: str, dirs: list[Path]) -> Path | None:
    for d in dirs:
        for name in (stem, stem + ".gz"):
            if (d / name).is_file():
                return d / name
    return None


def _idx_dataset(folder: str, system_dirs: tuple[str, ...], classes: list[str],
                 tv_class: str) -> Loader:
    stems = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

    def load(root: Path, download: bool) -> tuple[ImageData, ImageData | None]:
        dirs = [root / folder / "raw", root / folder, root] + [Path(s) for s in system_dirs]
        found = {k: [_find_idx(s, dirs) for s in v] for k, v in stems.items()}
        if not all(p for ps in found.values() for p in ps) and download:
            _try_download(tv_class, root)
            found = {k: [_find_idx(s, dirs) for s in v] for k, v in stems.items()}
        missing = [s for k, v in stems.items() for s, p in zip(v, found[k]) if p is None]
        if missing:
            raise DataError(
                f"dataset {tv_class}: files not found: {', '.join(missing)} (with or without .gz)."
                f" Put them in {root / folder / 'raw'}/"
                + (f" or install them in {system_dirs[0]}/" if system_dirs else "")
                + (" (Debian: apt-get install dataset-fashion-mnist)" if "fashion" in folder.lower()
                   else "")
                + ("" if download else "; or allow a download with --download."))
        out = []
        for k in ("train", "test"):
            img_p, lab_p = found[k]
            x, y = read_idx(img_p), read_idx(lab_p)
            if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
                raise DataError(f"{img_p} / {lab_p}: shapes {x.shape} and {y.shape} do not match "
                                "(expected N×H×W images and N labels).")
            if y.size and int(y.max()) >= len(classes):
                raise DataError(f"{lab_p}: label {int(y.max())} outside 0..{len(classes) - 1}.")
            out.append(ImageData(torch.from_numpy(np.array(x, dtype=np.uint8))[:, None],
                                 torch.from_numpy(y.astype(np.int64)), classes))
        return out[0], out[1]

    return load


def _try_download(tv_class: str, root: Path) -> None:
    """Best effort: torchvision's own download; any failure is left to the caller's message."""
    import torchvision.datasets as tvd

    try:
        root.mkdir(parents=True, exist_ok=True)
        for train in (True, False):
            getattr(tvd, tv_class)(root=str(root), train=train, download=True)
    except Exception:  # noqa: BLE001 - no network, a proxy, a partial file: all mean "not here"
        pass


def _cifar10(root: Path, download: bool) -> tuple[ImageData, ImageData | None]:
    import torchvision.datasets as tvd

    class _LocalCIFAR10(tvd.CIFAR10):
        # torchvision checks MD5 sums of the official archive; files present are enough here,
        # so that re-packed or test-made batches in the same format load too.
        def _check_integrity(self) -> bool:  # type: ignore[override]
            base = Path(self.root) / self.base_folder
            return all((base / name).is_file() for name, _ in self.train_list + self.test_list)

        def _load_meta(self) -> None:  # same as torchvision's, without the MD5 check
            with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
                self.classes = [str(c) for c in pickle.load(f, encoding="latin1")[self.meta["key"]]]

    base = root / "cifar-10-batches-py"
    if not base.is_dir() and download:
        try:
            tvd.CIFAR10(root=str(root), train=True, download=True)
        except Exception:  # noqa: BLE001
            pass
    out = []
    for train in (True, False):
        try:
            ds = _LocalCIFAR10(root=str(root), train=train, download=False)
        except RuntimeError:
            raise DataError(
                f"dataset cifar10: batches not found in {base}/ (data_batch_1..5, test_batch, "
                "batches.meta from cifar-10-python.tar.gz). Extract the archive into "
                f"{root}/" + ("" if download else " or allow a download with --download.")) from None
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as e:
            raise DataError(f"dataset cifar10: a batch in {base}/ is damaged ({e}); extract "
                            "cifar-10-python.tar.gz again.") from None
        x = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
        classes = list(getattr(ds, "classes", CIFAR10_CLASSES)) or CIFAR10_CLASSES
        out.append(ImageData(x, torch.as_tensor(ds.targets, dtype=torch.int64), classes))
    return out[0], out[1]


def _digits(root: Path, download: bool) -> tuple[ImageData, ImageData | None]:
    from sklearn.datasets import load_digits

    d = load_digits()
    # pixel values are 0..16; scale to 0..255 so every dataset is uint8 with the same meaning
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return ImageData(torch.from_numpy(x), torch.from_numpy(d.target.astype(np.int64)),
                     [str(i) for i in range(10)]), None


FASHION_SYSTEM_DIRS = ("/usr/share/datasets/fashion-mnist",)
MNIST_SYSTEM_DIRS = ("/usr/share/datasets/mnist",)

BUILTIN.add("fashion-mnist", DatasetInfo(
    "fashion-mnist", _idx_dataset("FashionMNIST", FASHION_SYSTEM_DIRS, FASHION_CLASSES,
                                  "FashionMNIST"),
    "Zalando article images (Xiao et al. 2017)", (1, 28, 28), 10,
    "data_root/FashionMNIST/raw/, then /usr/share/datasets/fashion-mnist/ (Debian)"))
BUILTIN.add("mnist", DatasetInfo(
    "mnist", _idx_dataset("MNIST", MNIST_SYSTEM_DIRS, MNIST_CLASSES, "MNIST"),
    "handwritten digits (LeCun et al. 1998)", (1, 28, 28), 10,
    "data_root/MNIST/raw/, then /usr/share/datasets/mnist/"))
BUILTIN.add("cifar10", DatasetInfo(
    "cifar10", _cifar10, "32x32 colour images of 10 classes (Krizhevsky 2009)", (3, 32, 32), 10,
    "data_root/cifar-10-batches-py/"))
BUILTIN.add("digits", DatasetInfo(
    "digits", _digits, "scikit-learn's 1,797 8x8 handwritten digits (shipped, no download)",
    (1, 8, 8), 10, "inside scikit-learn"))


def data_root_given(root: str) -> bool:
    return root != "data"


def check_root(root: str) -> Path:
    p = Path(os.path.expanduser(root))
    if data_root_given(root) and not p.is_dir():
        raise DataError(f"data_root: folder {root!r} does not exist. Create it and put the dataset "
                        "files there, or leave --data-root out to use ./data and the system "
                        "locations.")
    return p
