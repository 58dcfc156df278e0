"""K models of one architecture trained side by side: one batched forward and backward pass
per step for all of them, each model otherwise its own fit.

:func:`train_side_by_side` trains one epoch of several :class:`~biasvar.train.Trainer` objects
at once. Each keeps its own batches (its seed's order and augmentation), loss, optimizer,
schedule and bookkeeping; only the forward and backward passes are shared:
``torch.func.functional_call`` under ``torch.vmap`` runs the K models' stacked weights on the K
batches, and ``torch.stack`` of each model's own parameters carries the gradients back to
them, so each optimizer steps its model exactly as in a separate fit. Batch norm's running
statistics are stacked too, updated in place under ``vmap`` and copied back after the epoch.
A step of K models is one set of K-times-wider kernels instead of K small ones: faster where
kernel launches or small matrices dominate (expected on CUDA), slower on a CPU whose cores are
already busy (bench figure ``side``). :func:`side_by_side_supported` says when it applies; the
equality with separate fits is checked in tests/train/test_side.py (within 1e-5 in fp32).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch

from ._fit import make_trainer, run_trainers
from ._runtime import autocast

__all__ = ["train_side_by_side", "side_by_side_supported", "fit_side_by_side"]


def side_by_side_supported(trainers: Sequence[Any]) -> str | None:
    """Why these trainers cannot train side by side (None: they can): one architecture, one
    device, precision and memory layout, no dropout, the same number of steps an epoch, no L1
    term (its sum runs per model), in-memory data."""
    first = trainers[0]
    shapes = [tuple((n, tuple(p.shape)) for n, p in t.model.named_parameters())
              for t in trainers]
    if any(s != shapes[0] for s in shapes) or \
            any(repr(t.model) != repr(first.model) for t in trainers):  # dropout's p too
        return "the models differ in architecture"

    def runs(t: Any) -> tuple:  # how it computes (not the timings that chose it)
        return t.device, t.precision["precision"], t.precision["channels_last"]

    if any(runs(t) != runs(first) for t in trainers):
        return "the fits differ in device, precision or memory layout"
    if any(isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0
           for t in trainers for m in t.model.modules()):
        return ("dropout draws each fit's masks from its own seed's random stream, which one "
                "batched step cannot")
    if any(t.steps_per_epoch != first.steps_per_epoch or t.n != first.n for t in trainers):
        return "the fits train on sets of different sizes"
    if any(t.cfg.l1 > 0 for t in trainers):
        return "an L1 penalty is summed per model"
    if any(not isinstance(t.x, torch.Tensor) for t in trainers):
        return "streamed images are decoded per fit"
    return None


def train_side_by_side(trainers: Sequence[Any]) -> list[dict[str, float]]:
    """One epoch of each trainer, their steps taken together; each trainer's epoch logs (what
    its ``train_one_epoch`` returns). Refused (ValueError) when :func:`side_by_side_supported`
    says why not."""
    why = side_by_side_supported(trainers)
    if why is not None:
        raise ValueError(f"side by side: {why}")
    first = trainers[0]
    base = copy.deepcopy(first.model).to("meta")  # the architecture, without weights
    names = [n for n, _ in first.model.named_parameters()]
    buffer_names = [n for n, _ in first.model.named_buffers()]
    own = [dict(t.model.named_parameters()) for t in trainers]
    buffers = {n: torch.stack([dict(t.model.named_buffers())[n] for t in trainers])
               for n in buffer_names}
    tallies = [t._epoch_begin() for t in trainers]
    for t in trainers:
        t.model.train()
    base.train()

    def forward(params: dict, bufs: dict, x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(base, (params, bufs), (x,))

    batched = torch.vmap(forward, in_dims=(0, 0, 0), randomness="different")
    streams = [t._batches(tl.perm) for t, tl in zip(trainers, tallies)]
    for step, pairs in enumerate(zip(*streams), 1):
        xs = torch.stack([t._prepare(xb, tl.gen) for t, tl, (xb, _) in
                          zip(trainers, tallies, pairs)])
        params = {n: torch.stack([o[n] for o in own]) for n in names}
        with autocast(first.device, first.precision["precision"]):
            logits = batched(params, buffers, xs)
        losses = [t.loss_fn(logits[k].float(), y) for k, (t, (_, y)) in
                  enumerate(zip(trainers, pairs))]
        for t in trainers:
            t.optimizer.zero_grad(set_to_none=True)
        if step == 1:
            for t, loss in zip(trainers, losses):
                if t.epoch == 0 and t.start_loss is None:
                    t.start_loss = float(loss.detach())
        torch.stack(losses).sum().backward()  # each model's gradient is its own loss's
        for k, (t, (_, y)) in enumerate(zip(trainers, pairs)):
            lr = t.optimizer.param_groups[0]["lr"]
            t.optimizer.step()
            t.scheduler.step()
            t._tally(tallies[k], step, losses[k], logits[k], y, lr)
    with torch.no_grad():  # batch norm's running statistics, updated in the stacked copy
        for k, t in enumerate(trainers):
            mine = dict(t.model.named_buffers())
            for n in buffer_names:
                mine[n].copy_(buffers[n][k])
    return [tl.logs() for tl in tallies]


def fit_side_by_side(config: Any, data: Any, *, seeds: Sequence[int],
                     train_indices: Sequence[Any] | None = None,
                     validate: bool = True) -> list[Any]:
    """K fits of ``config`` (one per seed; each on its ``train_indices`` rows, or all of
    ``data.train``), trained side by side: what K calls of :func:`~biasvar.train.fit` return,
    up to rounding (no run directory, callbacks or progress)."""
    rows = list(train_indices) if train_indices is not None else [None] * len(seeds)
    if len(rows) != len(seeds):
        raise ValueError(f"fit_side_by_side: {len(seeds)} seeds but {len(rows)} row sets")
    trainers = [make_trainer(config, data, seed=int(s), train_indices=r, progress=False,
                             desc=f"{config.model} on {data.name} (seed {s})",
                             validate=validate)
                for s, r in zip(seeds, rows)]
    return run_trainers(trainers, together=train_side_by_side)
