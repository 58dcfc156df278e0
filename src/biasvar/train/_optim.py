"""Optimizers and learning-rate schedules, by name: the ``OPTIMIZERS`` and ``SCHEDULES`` registries.

An optimizer builder takes ``(param_groups, config)``; a schedule builder takes
``(optimizer, config, total_steps, steps_per_epoch)`` and returns a scheduler stepped once per
training step. ``config.optimizer`` / ``config.schedule`` name them (the configuration's choices
are these registries' names).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..config import ExperimentConfig
from ..errors import ConfigError
from ..registry import Registry

__all__ = ["OPTIMIZERS", "SCHEDULES", "make_optimizer", "make_scheduler", "param_groups",
           "cycle_ends"]

OptimizerBuilder = Callable[[list[dict], ExperimentConfig], torch.optim.Optimizer]
ScheduleBuilder = Callable[[torch.optim.Optimizer, ExperimentConfig, int, int], Any]

OPTIMIZERS: Registry[OptimizerBuilder] = Registry("optimizer")
SCHEDULES: Registry[ScheduleBuilder] = Registry("schedule")


@OPTIMIZERS.register("sgd")
def _sgd(groups: list[dict], cfg: ExperimentConfig) -> torch.optim.Optimizer:
    """SGD with ``cfg.momentum`` (Nesterov when the momentum is positive)."""
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)


@OPTIMIZERS.register("adam")
def _adam(groups: list[dict], cfg: ExperimentConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(groups, lr=cfg.lr)


@OPTIMIZERS.register("adamw")
def _adamw(groups: list[dict], cfg: ExperimentConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=cfg.lr)


def _per_step(optimizer: torch.optim.Optimizer, factor: Callable[[int], float]) -> Any:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@SCHEDULES.register("constant")
def _constant(optimizer: torch.optim.Optimizer, cfg: ExperimentConfig, total: int,
              steps_per_epoch: int) -> Any:
    return _per_step(optimizer, lambda s: 1.0)


@SCHEDULES.register("step")
def _step(optimizer: torch.optim.Optimizer, cfg: ExperimentConfig, total: int,
          steps_per_epoch: int) -> Any:
    """× ``step_gamma`` every ``step_epochs`` epochs."""
    every, gamma = cfg.step_epochs, cfg.step_gamma
    return _per_step(optimizer, lambda s: gamma ** ((s // steps_per_epoch) // every))


def cycle_ends(epochs: int, snapshots: int) -> list[int]:
    """The epochs (1-based) that end each of ``snapshots`` cosine cycles over ``epochs`` epochs:
    ``round(k · epochs / snapshots)``, k = 1 … snapshots (cycles differ by at most one epoch).

    >>> cycle_ends(10, 5), cycle_ends(7, 3)
    ([2, 4, 6, 8, 10], [2, 5, 7])
    """
    return [int(math.floor(k * epochs / snapshots + 0.5)) for k in range(1, snapshots + 1)]


@SCHEDULES.register("cosine")
def _cosine(optimizer: torch.optim.Optimizer, cfg: ExperimentConfig, total: int,
            steps_per_epoch: int) -> Any:
    """Cosine decay from ``lr`` to 0 over the whole fit; with ``cfg.snapshots`` = M, over each of
    M cycles (:func:`cycle_ends`), restarting at ``lr`` (Huang et al. 2017, eq. 2)."""
    if not cfg.snapshots:
        return _per_step(optimizer,
                         lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total)))
    bounds = [0] + [e * steps_per_epoch for e in cycle_ends(int(cfg.epochs), cfg.snapshots)]

    def factor(s: int) -> float:
        c = next((i for i in range(len(bounds) - 1) if s < bounds[i + 1]), len(bounds) - 2)
        start, end = bounds[c], bounds[c + 1]
        return 0.5 * (1.0 + math.cos(math.pi * min(s - start, end - start) / (end - start)))

    return _per_step(optimizer, factor)


@SCHEDULES.register("onecycle")
def _onecycle(optimizer: torch.optim.Optimizer, cfg: ExperimentConfig, total: int,
              steps_per_epoch: int) -> Any:
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total)


def param_groups(model: nn.Module, weight_decay: float, *, lr: float | None = None,
                 backbone_lr: float = 1.0) -> list[dict]:
    """Weight decay on weights only: biases and normalisation parameters (1-D) are exempt.
    With ``backbone_lr`` < 1, every parameter outside the classification head (see
    :func:`~biasvar.models._external.find_head`) trains at ``lr · backbone_lr`` (the head's
    groups come first, so ``param_groups[0]`` carries the configured rate)."""
    head_ids: set[int] = set()
    if backbone_lr != 1.0:
        from ..models._external import find_head

        head = find_head(model)
        if head is None:
            raise ConfigError("backbone_lr: the model has no head (a module named head, fc or "
                              "classifier, or an nn.Linear) to keep at the full rate; leave "
                              "--backbone-lr at 1.")
        head_ids = {id(p) for p in head[1].parameters()}
    groups = []
    for in_head in ((True, False) if head_ids else (True,)):
        decay, no_decay = [], []
        for p in model.parameters():
            if p.requires_grad and (not head_ids or (id(p) in head_ids) == in_head):
                (decay if p.ndim > 1 else no_decay).append(p)
        extra = {} if in_head or lr is None else {"lr": lr * backbone_lr}
        if decay or not groups:
            groups.append({"params": decay, "weight_decay": weight_decay, **extra})
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0, **extra})
    return groups


def make_optimizer(cfg: ExperimentConfig, model: nn.Module) -> torch.optim.Optimizer:
    """``cfg.optimizer`` over the model's trainable parameters (an unknown name is a
    ConfigError with a "did you mean")."""
    build = OPTIMIZERS.get(cfg.optimizer)
    groups = param_groups(model, cfg.weight_decay, lr=cfg.lr, backbone_lr=cfg.backbone_lr)
    if not any(g["params"] for g in groups):
        raise ConfigError("freeze_backbone: nothing is left to train (no parameter requires a "
                          "gradient).")
    return build(groups, cfg)


def make_scheduler(cfg: ExperimentConfig, optimizer: torch.optim.Optimizer, total_steps: int,
                   steps_per_epoch: int) -> Any:
    """``cfg.schedule`` for a fit of ``total_steps`` optimizer steps."""
    return SCHEDULES.get(cfg.schedule)(optimizer, cfg, total_steps, steps_per_epoch)
