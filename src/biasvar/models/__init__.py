"""Model registry and factory.

>>> from biasvar.models import create_model, list_models
>>> m = create_model("cnn", num_classes=10, in_shape=(1, 28, 28), width=32, depth=2)
>>> sum(p.numel() for p in m.parameters())
421738
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ModelError, unknown_name
from ..registry import Registry
from ._resnet import resnet18, resnet34
from ._simple import CNN, MLP, Linear

__all__ = ["create_model", "list_models", "register_model", "MODELS", "ModelInfo", "count_params"]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Callable[..., nn.Module]
    description: str
    uses_width: bool = True
    uses_depth: bool = True
    #: a convolutional model benefits from channels_last memory format
    conv: bool = False


MODELS: Registry[ModelInfo] = Registry("model")

#: factories for ``package.module:factory`` model names (filled by models._external)
_EXTERNAL_RESOLVER: list[Callable[[str], Callable[..., nn.Module]]] = []


def register_model(name: str, builder: Callable[..., nn.Module], description: str, *,
                   uses_width: bool = True, uses_depth: bool = True, conv: bool = False) -> None:
    MODELS.add(name, ModelInfo(name, builder, description, uses_width, uses_depth, conv))


register_model("linear", Linear, "multinomial logistic regression on pixels",
               uses_width=False, uses_depth=False)
register_model("mlp", MLP, "fully connected: depth hidden layers of width units")
register_model("cnn", CNN, "depth conv stages (width, 2·width, ...) + fc(4·width)", conv=True)
register_model("resnet18", resnet18, "torchvision ResNet-18 for this input: depth stages of 2 "
               "blocks, width·2^i channels; 3x3 stem without max-pool up to 64 px", conv=True)
register_model("resnet34", resnet34, "torchvision ResNet-34 for this input: stages of 3, 4, 6, 3 "
               "blocks, width·2^i channels; 3x3 stem without max-pool up to 64 px", conv=True)


def _install_external_resolver() -> None:
    from ._external import resolve_factory

    if resolve_factory not in _EXTERNAL_RESOLVER:
        _EXTERNAL_RESOLVER.append(resolve_factory)


_install_external_resolver()


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def is_conv(name: str) -> bool:
    return MODELS.get(name).conv if name in MODELS else True


def create_model(name: str, *, num_classes: int, in_shape: tuple[int, int, int],
                 width: int | None = None, depth: int | None = None, dropout: float = 0.0,
                 batchnorm: bool = True) -> nn.Module:
    """Build a registered model (or a ``package.module:factory``) for this input and classes.

    ``width``/``depth``/``dropout``/``batchnorm`` are passed when the builder accepts them."""
    if ":" in name:
        if not _EXTERNAL_RESOLVER:
            raise ModelError(f"model: {name!r} looks like package.module:factory but user "
                             "factories are not available in this build.")
        builder = _EXTERNAL_RESOLVER[0](name)
    elif name in MODELS:
        builder = MODELS.get(name).builder
    else:
        raise unknown_name("model", name, MODELS.names() + ["package.module:factory"])
    kwargs = dict(width=width, depth=depth, dropout=dropout, batchnorm=batchnorm)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    try:
        params = inspect.signature(builder).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    except (TypeError, ValueError):
        params, takes_any = {}, True
    if not takes_any:
        # a knob set away from its default that the builder cannot take would silently change
        # nothing (and a complexity sweep over it would train the same model again and again)
        unset = dict(width=None, depth=None, dropout=0.0, batchnorm=True)
        ignored = {k: v for k, v in kwargs.items() if k not in params and v != unset[k]}
        if ignored:
            flags = ", ".join(f"{k} {v}" for k, v in ignored.items())
            raise ModelError(f"model {name!r}: its builder has no parameter for {flags}, so that "
                             "setting would change nothing. Leave it out, or (for your own "
                             "factory) add the parameter to it.")
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    try:
        model = builder(num_classes=num_classes, in_shape=in_shape, **kwargs)
    except TypeError as e:
        raise ModelError(f"model {name!r}: could not be built with num_classes={num_classes}, "
                         f"in_shape={in_shape}, {kwargs}: {e}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"model {name!r}: the factory returned {type(model).__name__}, not a "
                         "torch.nn.Module.")
    return model


def list_models(in_shape: tuple[int, int, int] = (1, 28, 28), num_classes: int = 10, *,
                dataset: str | None = None) -> list[tuple[ModelInfo, int]]:
    """Every registered model with its parameter count at its default size for ``in_shape``
    (on ``dataset``, whose defaults may differ: Fashion-MNIST's CNN is half as wide). The
    models are built on the meta device: counted, never initialised."""
    from ..config import model_defaults

    out = []
    for n in MODELS.names():
        d = model_defaults(n, dataset)
        with torch.device("meta"):
            m = create_model(n, num_classes=num_classes, in_shape=in_shape,
                             width=d.get("width"), depth=d.get("depth"))
        out.append((MODELS.get(n), count_params(m)))
    return out
