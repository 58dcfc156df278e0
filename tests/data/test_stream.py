"""Images streamed from disk: the same pixels, statistics, splits and training runs as in memory.

Every comparison loads the same files twice, once decoded into memory (``stream="never"``) and
once streamed (``stream="always"``, or past a small ``BIASVAR_MEMORY_BUDGET``), and checks the two
agree exactly; nothing is compared with numbers written into the test.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from biasvar import ExperimentConfig, load_data, resolve
from biasvar.data._files import load_imagefolder
from biasvar.data._pydataset import decode_dataset
from biasvar.errors import DataError
from biasvar.train import Callback, evaluate, fit

from ..conftest import run_cli
from ..data.test_custom_data import FAST, Pairs, grey_folder, rng_images, snapshot

pytestmark = pytest.mark.timeout(300)

#: fp32 without channels_last: no timed choice, so two fits run the very same arithmetic
EXACT = dict(precision="fp32", channels_last="off")


def mixed_folder(root: Path, per: int = 12) -> Path:
    """Three classes of 10×10 images in mixed modes (L, RGB, RGBA, palette, 16-bit) and sizes,
    some colour: every rule of the decoder is exercised."""
    rng = np.random.default_rng(7)
    for k, cls in enumerate(("ant", "bee", "cow")):
        (root / cls).mkdir(parents=True)
        for i in range(per):
            side = (10, 12, 9)[i % 3]
            base = rng.integers(0, 256, size=(side, side), dtype=np.uint8)
            kind = (i + k) % 5
            if kind == 0:
                im = Image.fromarray(base, "L")
            elif kind == 1:
                im = Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
            elif kind == 2:
                im = Image.fromarray(np.dstack([base, base, base, base]), "RGBA")
            elif kind == 3:
                im = Image.fromarray(base, "P")
                im.putpalette([v for j in range(256) for v in (j, 255 - j, j // 2)])
            else:
                im = Image.fromarray(base.astype(np.uint16) * 257)
            im.save(root / cls / f"{i:03d}.png")
    return root


def both(spec: str, **kw) -> tuple:
    """(in-memory bundle, streamed bundle) of the same data and config."""
    cfg = ExperimentConfig(dataset=spec, **kw)
    mem = load_data(dataclasses.replace(cfg, stream="never"))
    st = load_data(dataclasses.replace(cfg, stream="always"))
    return mem, st


def test_streamed_set_has_the_same_pixels_splits_and_statistics(tmp_path):
    root = mixed_folder(tmp_path / "d")
    mem, st = both(f"imagefolder:{root}", image_size=10, loader_workers=2)
    assert not mem.streamed and st.streamed and st.train.streamed
    assert st.input_shape == mem.input_shape == (3, 10, 10)
    assert st.classes == mem.classes and st.mean == mem.mean and st.std == mem.std
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(st.indices[split], mem.indices[split])
        a, b = getattr(mem, split), getattr(st, split)
        assert torch.equal(a.y, b.y)
        assert tuple(b.x.shape) == tuple(a.x.shape)
        assert torch.equal(b.x[np.arange(len(b))], a.x), split  # decoded in this process
        assert all(torch.equal(b.x[i], a.x[i]) for i in range(len(b)))
    assert "decoded again every epoch" in st.summary()


def test_channel_rule_and_grey_colour_files_match_memory(tmp_path):
    # RGB files whose channels are equal count as grey, streamed as in memory
    rng = np.random.default_rng(0)
    for cls in ("x", "y"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        for i in range(10):
            g = rng.integers(0, 256, (8, 8), dtype=np.uint8)
            Image.fromarray(np.dstack([g] * 3)).save(tmp_path / "d" / cls / f"{i}.png")
    mem, st = both(f"imagefolder:{tmp_path / 'd'}", val_fraction=0.2)
    assert st.input_shape == mem.input_shape == (1, 8, 8)
    assert st.mean == mem.mean and st.std == mem.std
    assert torch.equal(st.test.x[np.arange(len(st.test))], mem.test.x)


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_training_is_identical_to_in_memory(tmp_path, workers):
    grey_folder(tmp_path / "d", classes=("a", "b", "c"), per=40, size=(12, 12))
    mem, st = both(f"imagefolder:{tmp_path / 'd'}", loader_workers=workers)
    cfg = ExperimentConfig(epochs=3, batch_size=16, augment="standard", dropout=0.3, **EXACT,
                           loader_workers=workers)
    rows = np.random.default_rng(1).integers(0, len(mem.train), len(mem.train))  # a bootstrap
    runs = [fit(cfg, d, train_indices=rows, progress=False) for d in (mem, st)]
    keys = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr")
    assert [[h[k] for k in keys] for h in runs[0].history] == \
           [[h[k] for k in keys] for h in runs[1].history]
    for p, q in zip(runs[0].model.parameters(), runs[1].model.parameters()):
        assert torch.equal(p, q)
    m0 = evaluate(runs[0].model, mem, device="cpu")
    m1 = evaluate(runs[1].model, st, device="cpu")
    assert m0 == m1


class Interrupt(Exception):
    pass


class StopAfter(Callback):
    """Raises once ``epoch`` epochs are done, before that epoch's checkpoint is written."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, trainer, logs):
        if logs["epoch"] == self.epoch:
            raise Interrupt


def test_resume_of_a_streamed_run_equals_an_uninterrupted_one(tmp_path):
    grey_folder(tmp_path / "d", classes=("a", "b"), per=30)
    cfg = ExperimentConfig(dataset=f"imagefolder:{tmp_path / 'd'}", stream="always", epochs=3,
                           batch_size=16, augment="light", dropout=0.2, **EXACT,
                           loader_workers=1)
    data = load_data(cfg)
    whole = fit(cfg, data, run_dir=tmp_path / "whole", progress=False)
    with pytest.raises(Interrupt):
        fit(cfg, data, run_dir=tmp_path / "part", progress=False, callbacks=[StopAfter(3)])
    resumed = fit(cfg, data, run_dir=tmp_path / "part", progress=False, resume=True)
    assert resumed.resumed_from_epoch == 2
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in whole.history]


def test_budget_streams_with_a_note_and_bad_files_are_handled(tmp_path, monkeypatch):
    grey_folder(tmp_path / "d", classes=("a", "b"), per=6)
    (tmp_path / "d" / "a" / "zero.png").write_bytes(b"")
    (tmp_path / "d" / "b" / "cut.png").write_bytes(
        (tmp_path / "d" / "b" / "000.png").read_bytes()[:40])  # header fine, pixels missing
    monkeypatch.setenv("BIASVAR_MEMORY_BUDGET", "200")
    pool, _, notes = load_imagefolder(str(tmp_path / "d"), ExperimentConfig())
    assert pool.streamed and len(pool) == 12
    text = " ".join(notes)
    assert "skipped 2 of 14 files" in text and "zero.png" in text and "cut.png" in text
    assert "decoded again every epoch" in text and "--image-size (at most 4" in text
    with pytest.raises(DataError, match=r"2 of 14 image files cannot be read \(--strict\)"):
        load_imagefolder(str(tmp_path / "d"), ExperimentConfig(strict=True))


def test_a_file_removed_after_opening_stops_training_with_a_clear_error(tmp_path):
    grey_folder(tmp_path / "d", classes=("a", "b"), per=20)
    cfg = ExperimentConfig(dataset=f"imagefolder:{tmp_path / 'd'}", stream="always", epochs=1,
                           batch_size=8, **EXACT, loader_workers=1)
    data = load_data(cfg)
    gone = data.train.x.name(0)
    (tmp_path / "d" / gone).unlink()
    with pytest.raises(DataError, match=rf"could not be read \({gone} "
                                        r"\(file not found\)\).*changed or removed"):
        fit(cfg, data, progress=False)


def test_python_dataset_streams_past_the_budget(monkeypatch):
    arrs = rng_images(60, size=(9, 9), seed=3)
    items = Pairs([(Image.fromarray(a), i % 3) for i, a in enumerate(arrs)], ["p", "q", "r"])
    mem = decode_dataset(items, ExperimentConfig(stream="never"))
    monkeypatch.setenv("BIASVAR_MEMORY_BUDGET", "1000")
    st = decode_dataset(items, ExperimentConfig())
    assert isinstance(mem.x, torch.Tensor) and not isinstance(st.x, torch.Tensor)
    assert st.classes == mem.classes and torch.equal(st.y, mem.y)
    assert torch.equal(st.x[np.arange(60)], mem.x)
    assert any("decoded again every epoch" in n for n in st.notes)
    b = load_data(ExperimentConfig(), source=items)
    monkeypatch.delenv("BIASVAR_MEMORY_BUDGET")
    ref = load_data(ExperimentConfig(), source=items)
    assert b.streamed and not ref.streamed and (b.mean, b.std) == (ref.mean, ref.std)


def test_an_iterable_dataset_past_the_budget_is_a_clear_error(monkeypatch):
    arrs = rng_images(30)

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter([(torch.from_numpy(a), i % 2) for i, a in enumerate(arrs)])

    monkeypatch.setenv("BIASVAR_MEMORY_BUDGET", "500")
    with pytest.raises(DataError, match="without __len__ and __getitem__ cannot be read from "
                                        "disk on demand.*--image-size"):
        decode_dataset(Stream(), ExperimentConfig())


def test_cli_trains_evaluates_and_diagnoses_a_folder_past_the_budget(tmp_path):
    grey_folder(tmp_path / "data", classes=("a", "b", "c"), per=30, size=(10, 10))
    env = {"BIASVAR_MEMORY_BUDGET": "2000"}
    before = snapshot(tmp_path / "data")
    out = tmp_path / "run"
    r = run_cli("train", "--dataset", "imagefolder:data", "--epochs", "2", "--out", str(out),
                *FAST, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "decoded again every epoch" in r.stdout + r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert json.loads((out / "env.json").read_text())["streamed"]["loader_workers"] >= 1
    r2 = run_cli("evaluate", str(out), cwd=tmp_path, env=env)
    assert r2.returncode == 0, r2.stderr[-3000:]
    again = json.loads((out / "metrics.json").read_text())
    assert again["test"]["accuracy"] == metrics["test"]["accuracy"]
    # the analyses run fit jobs in worker processes, which stream the images too
    r3 = run_cli("curve", "learning", "--dataset", "imagefolder:data", "--sizes", "30,60", "--seeds", "1",
                 "--epochs", "1", "--workers", "2", *FAST,
                 cwd=tmp_path, env=env)
    assert r3.returncode == 0, r3.stderr[-3000:]
    assert snapshot(tmp_path / "data") == before  # the images are only read


def test_streamed_images_index_like_a_tensor_or_refuse(tmp_path):
    grey_folder(tmp_path / "d", classes=("a", "b"), per=5)
    mem, _, _ = load_imagefolder(str(tmp_path / "d"), ExperimentConfig(stream="never"))
    st, _, _ = load_imagefolder(str(tmp_path / "d"), ExperimentConfig(stream="always"))
    mask = (mem.y == 1).numpy()
    assert torch.equal(st.x[mask], mem.x[mask])
    assert torch.equal(st.x[torch.tensor([4, 0, 4])], mem.x[torch.tensor([4, 0, 4])])
    assert torch.equal(st.x[2:7:2], mem.x[2:7:2]) and torch.equal(st.x[-1], mem.x[-1])
    with pytest.raises(TypeError, match="decode first"):
        st.x[3, 0]
    with pytest.raises(IndexError):
        st.x[10]
    with pytest.raises(IndexError, match="boolean mask"):
        st.x[mask[:4]]


def test_streamed_files_are_found_after_a_change_of_directory(tmp_path, monkeypatch):
    grey_folder(tmp_path / "d", classes=("a", "b"), per=12)
    monkeypatch.chdir(tmp_path)
    cfg = ExperimentConfig(dataset="imagefolder:d", stream="always", epochs=1, **EXACT,
                           loader_workers=0)
    data = load_data(cfg)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert len(fit(cfg, data, progress=False).history) == 1


class _Noisy(Pairs):
    """A dataset with a random transform: each read returns other pixels."""

    def __getitem__(self, i):
        img, label = self.items[i]
        return np.clip(img.astype(np.int64) + np.random.randint(0, 2, img.shape), 0, 255
                       ).astype(np.uint8), label


def test_a_dataset_with_random_transforms_cannot_be_streamed():
    items = [(a, i % 2) for i, a in enumerate(rng_images(20))]
    with pytest.raises(DataError, match=r"source\[0\] returns different pixels each time.*"
                                        "--augment"):
        decode_dataset(_Noisy(items), ExperimentConfig(stream="always"))
    mem = decode_dataset(_Noisy(items), ExperimentConfig())  # in memory: decoded once, a note
    assert len(mem.y) == 20 and any("applied once and frozen" in n for n in mem.notes)
    plain = decode_dataset(Pairs(items), ExperimentConfig())
    assert not any("frozen" in n for n in plain.notes)


def test_stream_always_refuses_an_iterable_and_unpicklable_datasets_refuse_workers():
    from biasvar.analysis.jobs import FitJob, JobStore, ProcessExecutor

    arrs = rng_images(30)
    with pytest.raises(DataError, match="stream 'always' needs a dataset with __len__"):
        decode_dataset((p for p in [(a, i % 2) for i, a in enumerate(arrs)]),
                       ExperimentConfig(stream="always"))

    class Local(Pairs):  # defined in a function: cannot be pickled for spawn workers
        pass

    cfg = ExperimentConfig(stream="always", epochs=1)
    data = load_data(cfg, source=Local([(a, i % 2) for i, a in enumerate(arrs)]))
    job = FitJob(resolve(cfg), seed=0)
    with pytest.raises(DataError, match="cannot be sent to worker processes.*--workers 1"):
        ProcessExecutor(2).run([job], JobStore(Path(".")), data, lambda j, r: None)




def test_a_streamed_fit_starts_its_workers_once_not_every_epoch(tmp_path, monkeypatch):
    import biasvar.data._stream as stream

    grey_folder(tmp_path / "d", classes=("a", "b"), per=20)
    cfg = ExperimentConfig(dataset=f"imagefolder:{tmp_path / 'd'}", stream="always", epochs=3,
                           batch_size=8, **EXACT, loader_workers=1)
    data = load_data(cfg)
    made = []
    original = stream._loader

    def spy(dataset, workers, **kw):
        made.append(kw.get("persistent_workers"))
        return original(dataset, workers, **kw)

    monkeypatch.setattr(stream, "_loader", spy)
    assert len(fit(cfg, data, progress=False).history) == 3
    assert made == [True, True]  # one loader for training, one for validation, all 3 epochs
