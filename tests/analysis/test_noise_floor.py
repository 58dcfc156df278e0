"""The noise floor through the main job: diagnose on the user's own images needs no
--target-error (the estimated label-noise rate is the target, and says so), and injected label
noise moves the estimate by the amount injected."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from biasvar import ExperimentConfig, diagnose
from biasvar.analysis.noise import NOISE_TARGET_PREFIX

FAST = dict(precision="fp32", channels_last="off", threads=1)


def _digits_folder(root: Path) -> None:
    """scikit-learn's digits as an ImageFolder tree of 8×8 grey PNGs: real, learnable images."""
    from sklearn.datasets import load_digits

    d = load_digits()
    for i, (img, label) in enumerate(zip(d.images, d.target)):
        folder = root / f"digit{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * 255 / 16).astype(np.uint8), "L").save(folder / f"{i:04d}.png")


@pytest.mark.timeout(600)
def test_diagnose_on_an_image_folder_takes_its_target_from_the_noise_floor(tmp_path):
    _digits_folder(tmp_path / "digits")
    cfg = ExperimentConfig(dataset=f"imagefolder:{tmp_path / 'digits'}", model="mlp", width=64,
                           epochs=10, **FAST)
    r = diagnose(cfg, out=tmp_path / "run", progress=False, report=False)
    floor = r.noise_floor
    assert floor is not None
    assert 0 <= floor.lo <= floor.rate <= floor.hi < 0.1  # clean digits: a small rate
    assert r.target_error.value == pytest.approx(floor.rate)
    assert r.target_error.source.startswith(NOISE_TARGET_PREFIX)
    assert "noise" in str(r) and NOISE_TARGET_PREFIX in str(r)
    # every training image had an out-of-sample prediction (2-way split: one model each)
    assert floor.n == max(r.learning_curve.sizes)
    rows = list(csv.DictReader((tmp_path / "run" / "suspects.csv").open()))
    assert rows and all(row["file"].endswith(".png") for row in rows)
    assert (tmp_path / "run" / "suspects.json").is_file()


@pytest.mark.timeout(600)
def test_injected_label_noise_moves_the_estimate_by_the_amount_injected(tmp_path):
    cfg = ExperimentConfig(dataset="digits", model="mlp", width=128, epochs=10, **FAST)
    clean = diagnose(cfg, out=tmp_path / "clean", progress=False, report=False)
    noisy = diagnose(cfg, label_noise=0.1, out=tmp_path / "noisy", progress=False,
                     report=False)
    rise = noisy.noise_floor.rate - clean.noise_floor.rate
    assert 0.07 <= rise <= 0.13, (clean.noise_floor, noisy.noise_floor)
    # the published digits figure stays the target; the floor is reported beside it
    assert not clean.target_error.source.startswith(NOISE_TARGET_PREFIX)
