"""Batch-norm statistics re-estimated on other images: AdaBN (Li et al. 2016) at test time on
shifted images, and the statistics of an averaged model (stochastic weight averaging,
Izmailov et al. 2018), whose running means belong to none of the models it averages."""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ._fit import normalizer

__all__ = ["adapt_batchnorm", "has_batchnorm"]


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(b, nn.modules.batchnorm._BatchNorm) for b in model.modules())


class _Stop(Exception):
    """Ends a forward pass once the batch-norm layer being measured has seen its input."""


def adapt_batchnorm(model: nn.Module, data: Any, split: str = "test", *, batch_size: int = 256,
                    device: str = "cpu") -> nn.Module:
    """A copy of ``model`` whose batch-norm running mean and variance are those of each layer's
    input over ``data``'s ``split`` images (labels unused); weights untouched.

    Exact, layer by layer in the order they run: a layer's input depends only on the layers
    before it, which are already adapted, so each layer takes one pass (in eval mode, stopped at
    that layer) that sums its input per channel. The variance is stored unbiased, as PyTorch
    keeps ``running_var``."""
    m = copy.deepcopy(model).to(device).eval()
    bns = [b for b in m.modules() if isinstance(b, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        raise ConfigError("adabn: the model has no batch-norm layers, so re-estimating their "
                          "statistics changes nothing; drop --adabn (or train with "
                          "--batchnorm).")
    scale, shift_ = normalizer(data, torch.device(device))
    x = getattr(data, split).x

    def batches() -> Any:
        for i in range(0, len(x), batch_size):
            yield x[i:i + batch_size].to(device).float() * scale - shift_

    order: list[nn.Module] = []
    hooks = [b.register_forward_pre_hook(lambda mod, inp: order.append(mod)
                                         if all(mod is not o for o in order) else None)
             for b in bns]
    with torch.no_grad():
        m(next(iter(batches())))
    for h in hooks:
        h.remove()
    for b in order:
        acc: dict[str, Any] = {"s": 0.0, "ss": 0.0, "n": 0}

        def grab(mod: nn.Module, inp: tuple, acc: dict = acc) -> None:
            z = inp[0].detach().double().transpose(0, 1).reshape(inp[0].shape[1], -1)
            acc["s"] = acc["s"] + z.sum(1)
            acc["ss"] = acc["ss"] + (z * z).sum(1)
            acc["n"] += z.shape[1]
            raise _Stop

        h = b.register_forward_pre_hook(grab)
        with torch.no_grad():
            for xb in batches():
                try:
                    m(xb)
                except _Stop:
                    pass
        h.remove()
        n = acc["n"]
        mean = acc["s"] / n
        var = (acc["ss"] / n - mean * mean) * n / max(n - 1, 1)
        b.running_mean.copy_(mean.to(b.running_mean.dtype))
        b.running_var.copy_(var.clamp_min(0).to(b.running_var.dtype))
    return m
