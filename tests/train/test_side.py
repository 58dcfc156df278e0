"""K fits trained side by side (one batched forward and backward pass per step) equal K separate
fits: the same weights within 1e-5 in fp32 after every step of two epochs, the same logs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from biasvar import ExperimentConfig, fit, load_data
from biasvar.train._side import fit_side_by_side

pytestmark = pytest.mark.timeout(300)

BASE = dict(dataset="digits", epochs=2, batch_size=64, precision="fp32", channels_last="off",
            threads=1)


@pytest.fixture(scope="module")
def digits():
    return load_data(ExperimentConfig(dataset="digits"))


def _rows(data, seeds):
    """A different bootstrap-free part of the training set for each fit, all of one size."""
    n = len(data.train)
    return [np.sort(np.random.default_rng(s).permutation(n)[: n // 2]) for s in seeds]


@pytest.mark.parametrize("opts", [
    dict(model="cnn", width=8, depth=2, optimizer="adam", schedule="cosine", augment="light"),
    dict(model="mlp", width=32, depth=2, batchnorm=False, optimizer="sgd", lr=0.05,
         schedule="onecycle", weight_decay=1e-4, label_smoothing=0.1),
], ids=["cnn-batchnorm-adam-augment", "mlp-sgd-onecycle"])
def test_side_by_side_equals_separate_fits(digits, opts):
    cfg = ExperimentConfig(**BASE, **opts)
    seeds = [3, 4, 5]
    rows = _rows(digits, seeds)
    together = fit_side_by_side(cfg, digits, seeds=seeds, train_indices=rows, validate=False)
    for s, r, got in zip(seeds, rows, together):
        alone = fit(cfg, digits, seed=s, train_indices=r, progress=False, validate=False)
        a, b = alone.model.state_dict(), got.model.state_dict()
        assert a.keys() == b.keys()
        for k in a:
            if a[k].is_floating_point():
                assert torch.allclose(a[k], b[k], atol=1e-5, rtol=0), (s, k,
                                                                        (a[k] - b[k]).abs().max())
            else:  # batch norm's step counters
                assert torch.equal(a[k], b[k]), (s, k)
        assert len(got.history) == len(alone.history) == cfg.epochs
        for h1, h2 in zip(alone.history, got.history):
            assert h2["train_loss"] == pytest.approx(h1["train_loss"], abs=1e-5)
            assert h2["train_accuracy"] == pytest.approx(h1["train_accuracy"], abs=1e-6)
        assert [x["step"] for x in got.steps] == [x["step"] for x in alone.steps]
        assert got.start_loss == pytest.approx(alone.start_loss, abs=1e-5)
    # the fits differ from each other (their seeds and rows reach them)
    w = [t.model.state_dict() for t in together]
    key = next(k for k in w[0] if w[0][k].is_floating_point())
    assert not torch.allclose(w[0][key], w[1][key])


def test_what_cannot_train_side_by_side_is_refused(digits):
    from biasvar.train._side import side_by_side_supported
    from biasvar.train import Trainer

    def trainer(**kw):
        cfg = ExperimentConfig(**{**BASE, "model": "mlp", "width": 8, "depth": 1, **kw})
        from biasvar.config import resolve

        cfg = resolve(cfg)
        return Trainer(cfg, digits, seed=0, train_indices=None, run_dir=None, callbacks=(),
                       progress=None, desc="t")

    assert side_by_side_supported([trainer(), trainer()]) is None
    assert "architecture" in side_by_side_supported([trainer(), trainer(width=16)])
    assert "L1" in side_by_side_supported([trainer(l1=1e-4), trainer(l1=1e-4)])
    # the same dropout in both still draws each fit's masks from its own stream
    assert "dropout" in side_by_side_supported([trainer(dropout=0.3), trainer(dropout=0.3)])
    assert side_by_side_supported([trainer(dropout=0.0), trainer(dropout=0.0)]) is None
    assert "precision" in side_by_side_supported([trainer(), trainer(precision="bf16")])
    with pytest.raises(ValueError, match="side by side: the models differ in architecture"):
        from biasvar.train._side import train_side_by_side

        train_side_by_side([trainer(), trainer(depth=2)])
