"""Run directories never mix with, or delete, the user's files, and never report results of
another configuration or of data that changed; small-data corner cases give clear errors."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from biasvar import ExperimentConfig, load_data
from biasvar.data._memory import memory_budget
from biasvar.errors import DataError

from .conftest import run_cli
from .data.test_custom_data import FAST, cli_error, grey_folder

pytestmark = pytest.mark.timeout(300)

#: the command that trains ``run`` from ``ds`` (relative paths: run with cwd= their folder)
TRAIN_RUN = ("train", "--dataset", "imagefolder:ds", "--epochs", "1", "--out", "run", *FAST)


@pytest.fixture(scope="module")
def grey_run(tmp_path_factory) -> Path:
    """``ds``, 2 classes × 10 grey images, and ``run``, a 1-epoch run that `biasvar train`
    trained on it. Trained once for the module, as each test would train it: a test copies the
    two into its own folder (:func:`copy_in`) and changes its copies only."""
    root = tmp_path_factory.mktemp("grey_run")
    grey_folder(root / "ds", classes=("a", "b"), per=10)
    r = run_cli(*TRAIN_RUN, cwd=root)
    assert r.returncode == 0, r.stderr[-2000:]
    return root


def copy_in(src: Path, dst: Path, *names: str) -> None:
    """Copy the folders ``names`` from ``src`` into ``dst``, file times included (copy2)."""
    for name in names:
        shutil.copytree(src / name, dst / name)


def test_out_refuses_a_folder_that_is_not_a_run_and_fresh_keeps_foreign_files(tmp_path,
                                                                               grey_run):
    copy_in(grey_run, tmp_path, "ds")
    # the dataset folder itself as --out: refused, nothing written, nothing deleted
    cli_error(tmp_path, "train", "--dataset", "imagefolder:ds", "--epochs", "1", "--out", "ds",
              *FAST, words=("--out", "is not empty and is not a biasvar run directory"))
    cli_error(tmp_path, "train", "--dataset", "imagefolder:ds", "--epochs", "1", "--out", "ds",
              "--fresh", *FAST, words=("is not a biasvar run directory",))
    assert len(list((tmp_path / "ds").rglob("*.png"))) == 20
    # a real run directory (TRAIN_RUN's) with a file of the user's in it: --fresh removes only
    # the run's files
    copy_in(grey_run, tmp_path, "run")
    (tmp_path / "run" / "notes.txt").write_text("mine")
    r = run_cli("train", "--dataset", "imagefolder:ds", "--epochs", "1", "--out", "run",
                "--fresh", *FAST, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_train_into_a_run_of_another_configuration_is_refused(tmp_path, grey_run):
    copy_in(grey_run, tmp_path, "ds", "run")  # `base --epochs 1` trained run from ds
    base = ("train", "--dataset", "imagefolder:ds", "--out", "run", *FAST)
    err = cli_error(tmp_path, *base, "--epochs", "2", "--model", "mlp",
                    words=("holds a run with another configuration", "--fresh"))
    assert "differs in: epochs, model" in err
    r = run_cli(*base, "--epochs", "1", cwd=tmp_path)  # the same configuration: reported
    assert r.returncode == 0 and "already trained" in r.stdout


def test_changed_data_is_refused_by_train_and_evaluate(tmp_path):
    grey_folder(tmp_path / "ds", classes=("a", "b"), per=12)
    r = run_cli("train", "--dataset", "imagefolder:ds", "--epochs", "1", "--out", "run", *FAST,
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = (tmp_path / "run" / "metrics.json").read_text()
    for f in sorted((tmp_path / "ds" / "a").glob("*.png"))[:3]:
        f.unlink()
    cli_error(tmp_path, "evaluate", "run", words=("the data changed since", "splits.npz"))
    cli_error(tmp_path, "train", "--dataset", "imagefolder:ds", "--epochs", "1", "--out", "run",
              *FAST, words=("the data changed since", "--fresh"))
    assert (tmp_path / "run" / "metrics.json").read_text() == metrics  # nothing overwritten


def test_test_subset_that_cannot_be_stratified_is_a_clear_error(tmp_path):
    grey_folder(tmp_path / "ds", classes=("a", "b"), per=40)
    grey_folder(tmp_path / "ds", classes=("c",), per=4, seed=50)  # one test image of 'c'
    cli_error(tmp_path, "train", "--dataset", "imagefolder:ds", "--epochs", "1",
              "--test-subset", "5", *FAST, words=("test_subset", "cannot be drawn stratified",
                                                  "single image"))


@pytest.mark.parametrize("value", ["-5", "inf", "lots"])
def test_a_bad_memory_budget_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv("BIASVAR_MEMORY_BUDGET", value)
    with pytest.raises(DataError, match="BIASVAR_MEMORY_BUDGET.*not a number of bytes"):
        memory_budget()


def test_image_size_and_channels_convert_built_in_datasets():
    import torch.nn.functional as F

    plain = load_data(ExperimentConfig(dataset="digits"))
    big = load_data(ExperimentConfig(dataset="digits", image_size=28, channels=3))
    assert tuple(big.train.x.shape[1:]) == (3, 28, 28) and tuple(big.input_shape) == (3, 28, 28)
    assert big.test.x.shape[1:] == big.train.x.shape[1:]
    assert torch.equal(big.train.y, plain.train.y)  # the same split
    # independent: each channel is the grey image, upsampled bilinearly
    want = F.interpolate(plain.train.x[:5].float(), size=(28, 28), mode="bilinear",
                         align_corners=False).round().clamp(0, 255).to(torch.uint8)
    for c in range(3):
        assert torch.equal(big.train.x[:5, c:c + 1], want)
    assert any("8x8" in n and "28x28" in n for n in big.notes)


def test_a_split_without_some_class_gets_a_note(tmp_path):
    grey_folder(tmp_path / "ds", classes=("a", "b"), per=30)
    grey_folder(tmp_path / "ds", classes=("rare",), per=4, seed=50)
    data = load_data(ExperimentConfig(dataset=f"imagefolder:{tmp_path / 'ds'}"))
    counts = {s: np.bincount(getattr(data, s).y.numpy(), minlength=3)
              for s in ("train", "val", "test")}
    empty = [s for s, c in counts.items() if c[2] == 0]
    assert empty, counts  # 4 images of 'rare' cannot reach all three splits at these fractions
    names = {"train": "training", "val": "validation", "test": "test"}
    for s in empty:
        assert any(f"the {names[s]} split has no image of 1 class ('rare')" in n
                   for n in data.notes), data.notes
    full = load_data(ExperimentConfig(dataset="digits"))
    assert not any("has no image of" in n for n in full.notes)


def test_evaluate_on_an_analysis_run_says_what_it_is(tmp_path):
    run = tmp_path / "runs" / "c"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("dataset: digits\n")
    (run / "results.json").write_text(json.dumps({"command": "curve"}))
    cli_error(tmp_path, "evaluate", str(run),
              words=("is a `biasvar curve` run", "biasvar report RUN_DIR"))
