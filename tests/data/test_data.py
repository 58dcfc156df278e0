from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from biasvar.config import ExperimentConfig
from biasvar.data import load_data, read_idx, stratified_split
from biasvar.errors import ConfigError, DataError


def write_idx(path: Path, arr: np.ndarray, *, gz: bool) -> None:
    """Write ``arr`` (uint8) in LeCun's IDX format, as the real MNIST files are."""
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + b"".join(
        struct.pack(">I", d) for d in arr.shape)
    blob = header + arr.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(blob)
    else:
        path.write_bytes(blob)


def make_mnist(root: Path, n_train=200, n_test=50, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    xs = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = np.arange(n) % 10
        write_idx(raw / f"{split}-images-idx3-ubyte", x, gz=gz)
        write_idx(raw / f"{split}-labels-idx1-ubyte", y, gz=gz)
        xs[split] = (x, y)
    return xs


def test_digits_split_is_stratified_and_disjoint():
    d = load_data(ExperimentConfig(dataset="digits"))
    assert d.input_shape == (1, 8, 8) and d.num_classes == 10
    assert d.train.x.dtype == torch.uint8 and int(d.train.x.max()) == 255
    idx = d.indices
    assert not set(idx["train"]) & set(idx["val"]) and not set(idx["train"]) & set(idx["test"])
    assert len(idx["train"]) + len(idx["val"]) + len(idx["test"]) == 1797
    # class proportions within 1.5 points of the whole set's in every split
    from sklearn.datasets import load_digits

    whole = np.bincount(load_digits().target) / 1797
    for part in (d.train, d.val, d.test):
        frac = np.bincount(part.y.numpy(), minlength=10) / len(part)
        assert np.abs(frac - whole).max() < 0.015
    # mean/std are the training split's, measured independently here
    x = d.train.x.double() / 255
    assert d.mean[0] == pytest.approx(float(x.mean()), abs=1e-9)
    assert d.std[0] == pytest.approx(float(x.std(unbiased=False)), abs=1e-9)


def test_train_subset_and_seed_change_split():
    a = load_data(ExperimentConfig(dataset="digits", train_subset=300))
    assert len(a.train) == 300 and np.bincount(a.train.y.numpy()).min() >= 28
    b = load_data(ExperimentConfig(dataset="digits", split_seed=1))
    c = load_data(ExperimentConfig(dataset="digits"))
    assert not np.array_equal(b.indices["val"], c.indices["val"])
    with pytest.raises(DataError, match="train_subset: 5000 is larger"):
        load_data(ExperimentConfig(dataset="digits", train_subset=5000))


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_from_torchvision_layout(tmp_path, gz):
    xs = make_mnist(tmp_path, gz=gz)
    d = load_data(ExperimentConfig(dataset="mnist", data_root=str(tmp_path), download=False))
    assert len(d.test) == 50 and d.input_shape == (1, 28, 28)
    np.testing.assert_array_equal(d.test.x[:, 0].numpy(), xs["t10k"][0])
    rows = d.indices["train"]
    np.testing.assert_array_equal(d.train.x[:, 0].numpy(), xs["train"][0][rows])


def test_read_idx_rejects_truncated_and_foreign_files(tmp_path):
    write_idx(tmp_path / "a", np.zeros((10, 4, 4), np.uint8), gz=False)
    p = tmp_path / "a"
    p.write_bytes(p.read_bytes()[:-20])
    with pytest.raises(DataError, match="truncated"):
        read_idx(p)
    (tmp_path / "b").write_bytes(b"PK\x03\x04 not an idx file")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "b")


def test_cifar10_from_python_batches(tmp_path):
    rng = np.random.default_rng(0)
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck"]
    first = None
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(20, 3072), dtype=np.uint8)
        first = data if name == "test_batch" else first
        with open(base / name, "wb") as f:
            pickle.dump({"data": data, "labels": list(np.arange(20) % 10)}, f)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names}, f)
    d = load_data(ExperimentConfig(dataset="cifar10", data_root=str(tmp_path), download=False))
    assert d.input_shape == (3, 32, 32) and d.classes == names and len(d.test) == 20
    # channel-first view of the same bytes: R plane first, as in the CIFAR format
    np.testing.assert_array_equal(d.test.x.reshape(20, -1).numpy(), first)


def test_missing_files_say_where_to_put_them(tmp_path):
    with pytest.raises(DataError) as e:
        load_data(ExperimentConfig(dataset="mnist", data_root=str(tmp_path), download=False))
    assert "train-images-idx3-ubyte" in str(e.value) and str(tmp_path / "MNIST" / "raw") in str(e.value)
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        load_data(ExperimentConfig(dataset="cifar10", data_root=str(tmp_path), download=False))


def test_missing_data_root_and_unknown_name(tmp_path):
    with pytest.raises(DataError, match="data_root: folder .* does not exist"):
        load_data(ExperimentConfig(dataset="mnist", data_root=str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match="Did you mean 'fashion-mnist'") as e:
        load_data(ExperimentConfig(dataset="fashion-mnst"))
    assert "digits" in str(e.value)


def test_stratified_split_refuses_impossible_fractions():
    y = np.array([0] * 10 + [1] * 10 + [2] * 2)
    with pytest.raises(DataError, match="fraction"):
        stratified_split(y, 0.05, 0)
    with pytest.raises(DataError, match="single image"):
        stratified_split(np.array([0] * 10 + [1]), 0.3, 0)


def test_fashion_mnist_from_debian_package(fashion_available):
    d = load_data(ExperimentConfig(dataset="fashion-mnist", download=False, test_subset=1000))
    assert len(d.train) == 54000 and len(d.val) == 6000 and len(d.test) == 1000
    assert d.classes[0] == "T-shirt/top" and d.input_shape == (1, 28, 28)
    assert np.bincount(d.test.y.numpy()).tolist() == [100] * 10


def test_test_fraction_is_refused_where_the_data_has_its_own_test_split(tmp_path):
    """MNIST (like Fashion-MNIST and CIFAR-10) has a test split of its own: --test-fraction
    would change nothing, so it is refused; on data without one it carves the test set."""
    make_mnist(tmp_path)
    with pytest.raises(DataError, match=r"test_fraction: 0.3 does not apply to mnist: it has "
                                        r"its own test split \(50 images\)"):
        load_data(ExperimentConfig(dataset="mnist", data_root=str(tmp_path), download=False,
                                   test_fraction=0.3))
    d = load_data(ExperimentConfig(dataset="digits", test_fraction=0.3))
    assert len(d.test) == pytest.approx(0.3 * 1797, abs=2)
