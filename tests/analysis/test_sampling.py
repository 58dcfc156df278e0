"""How the analyses draw their fits' data and steps: random stratified split parts for any
rounds and class balance, learning curves that vary the data and not the optimisation, and label
noise that reaches every fit of a curve."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from biasvar import ExperimentConfig, load_data
from biasvar.config import resolve
from biasvar.analysis.analyses import (complexity_jobs, decomposition_jobs, held_steps,
                                       learning_curve, learning_curve_jobs, stratified_parts)
from biasvar.analysis.jobs import JobRunner, JobStore

FAST = dict(dataset="digits", precision="fp32", channels_last="off", threads=1)


@pytest.fixture(scope="module")
def digits():
    return load_data(ExperimentConfig(dataset="digits"))


def _labels(kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "balanced":  # classes repeating with period 10: the stride bug's worst case
        return np.tile(np.arange(10), 200)
    if kind == "sorted":
        return np.repeat(np.arange(10), 200)
    # unbalanced: class c has about 30·(c+1)² rows, one class with only 7
    y = np.concatenate([np.full(30 * (c + 1) ** 2 // 10 + 7, c) for c in range(10)])
    return rng.permutation(y)


@pytest.mark.parametrize("kind", ["balanced", "sorted", "unbalanced"])
@pytest.mark.parametrize("rounds", range(2, 11))
def test_split_parts_are_random_stratified_partitions(kind, rounds):
    rng = np.random.default_rng(rounds)
    y = _labels(kind, rng)
    parts = stratified_parts(y, rounds, seed=3)
    assert len(parts) == rounds
    allrows = np.concatenate(parts)
    assert np.array_equal(np.sort(allrows), np.arange(len(y)))  # disjoint, covering
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    for c in np.unique(y):
        n_c = int((y == c).sum())
        counts = [int((y[p] == c).sum()) for p in parts]
        assert set(counts) <= {n_c // rounds, -(-n_c // rounds)}, (c, counts)
    # random: another seed gives other parts, and a part is not a stride of the row order
    other = stratified_parts(y, rounds, seed=4)
    assert any(not np.array_equal(a, b) for a, b in zip(parts, other))
    assert not np.array_equal(parts[0], np.arange(len(y))[0::rounds])


def test_split_sampling_on_balanced_classes_keeps_every_class_in_every_model(digits):
    """Rows whose classes repeat with period 10 (balanced): the old stride over them left
    classes out of every part."""
    y0 = digits.train.y.numpy()
    per = min(np.bincount(y0))
    rows = np.stack([np.flatnonzero(y0 == c)[:per] for c in range(10)], 1).ravel()
    data = replace(digits, train=digits.train.subset(rows))
    y = data.train.y.numpy()
    assert np.array_equal(y[:20], np.tile(np.arange(10), 2))
    cfg = ExperimentConfig(**FAST, model="mlp")
    for rounds in (2, 5, 10):
        jobs = decomposition_jobs(cfg, data, rounds=rounds, sampling="split")
        for j in jobs:
            assert len(np.unique(y[j.train_indices])) == 10
        # the models' training sets are the parts: disjoint, together every row once
        rows_all = np.concatenate([j.train_indices for j in jobs])
        assert np.array_equal(np.sort(rows_all), np.arange(len(y)))


def test_learning_curve_points_take_the_full_size_fits_steps(digits):
    cfg = resolve(ExperimentConfig(**FAST, model="mlp", width=32, epochs=4, batch_size=32))
    n = len(digits.train)
    full_steps = (n // 32) * 4
    jobs = learning_curve_jobs(cfg, digits, sizes=[64, 200, 500, n], seeds=[0])
    for j in jobs:
        size = j.n_train or n
        steps = max(1, size // 32) * j.config.epochs
        assert full_steps <= steps < full_steps + size // 32 + 1, (size, steps, full_steps)
    assert jobs[-1].config.epochs == 4 and jobs[0].config.epochs > 4
    assert held_steps(cfg, n, n) is cfg


def test_learning_curve_train_error_does_not_fall_with_n_while_validation_error_does(digits,
                                                                                       tmp_path):
    """Held steps: a small set is fitted at least as well as the full one (train error does not
    fall as n grows), while validation error falls with more data."""
    cfg = resolve(ExperimentConfig(**FAST, model="mlp", width=64, epochs=6, lr=3e-3))
    n = len(digits.train)
    lc = learning_curve(JobRunner(JobStore(tmp_path), digits), cfg, digits,
                        sizes=[80, 240, n], seeds=[0, 1])
    tr, va = lc.train_error.mean, lc.val_error.mean
    assert va[0] > va[1] > va[2], va
    assert tr[0] <= tr[-1] + 0.005, tr  # not falling with n (within one image in 200)
    steps = {(p.size, p.seed): p.steps for p in lc.points}
    assert len(lc.points) == 6 and min(steps.values()) >= steps[(n, 0)]
    assert all(p.epochs >= 6 for p in lc.points) and "steps" in lc.policy


def test_label_noise_reaches_every_fit_of_a_complexity_curve(digits):
    cfg = resolve(ExperimentConfig(**FAST, model="mlp", epochs=2))
    jobs = complexity_jobs(cfg, digits, param="width", values=[8, 32], seeds=[0], rounds=2,
                           sampling="split", label_noise=0.2)
    assert len(jobs) == 2 + 2 * 2
    assert all(j.label_noise == 0.2 for j in jobs)


def test_bootstrap_samples_draw_with_replacement(digits):
    """Each bootstrap model trains on n rows drawn with replacement: about 1 − 1/e of the rows
    are distinct (63.2 %; ±3 % at n ≈ 1300), and the models' samples differ."""
    cfg = ExperimentConfig(**FAST, model="mlp")
    jobs = decomposition_jobs(cfg, digits, rounds=4, sampling="bootstrap")
    n = len(digits.train)
    for j in jobs:
        assert len(j.train_indices) == n
        assert abs(len(np.unique(j.train_indices)) / n - (1 - np.exp(-1))) < 0.03
    assert len({tuple(j.train_indices) for j in jobs}) == 4
