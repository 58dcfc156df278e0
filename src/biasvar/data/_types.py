"""In-memory image data: uint8 tensors plus labels and class names."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["ImageData", "DataBundle", "Decoded"]


@dataclass
class ImageData:
    """Images ``x`` uint8 (N, C, H, W) and labels ``y`` int64 (N,).

    ``x`` is a tensor, or for sets too large for memory a
    :class:`~biasvar.data._stream.StreamImages` that decodes from disk on demand."""

    x: Any  # torch.Tensor | StreamImages
    y: torch.Tensor
    classes: list[str]
    #: where each image came from, for the user's own data: its file (relative to the dataset)
    #: or ``#i``, its item number in a Python Dataset; None for the built-in datasets
    names: list[str] | None = None

    def __post_init__(self) -> None:
        assert self.x.dtype == torch.uint8 and self.x.ndim == 4, (self.x.dtype, self.x.shape)
        assert self.y.dtype == torch.int64 and self.y.shape == (self.x.shape[0],)
        assert self.names is None or len(self.names) == len(self.y)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def streamed(self) -> bool:
        """True when the images are read from disk on demand rather than held in memory."""
        return not isinstance(self.x, torch.Tensor)

    def subset(self, idx: np.ndarray | torch.Tensor) -> "ImageData":
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        x = self.x.take(idx) if self.streamed else self.x[idx]
        names = None if self.names is None else [self.names[int(i)] for i in idx]
        return ImageData(x, self.y[idx], self.classes, names)


@dataclass
class DataBundle:
    """The splits of one dataset, ready for training.

    ``train``/``val``/``test`` hold uint8 images; ``mean``/``std`` (per channel, in [0, 1] units)
    are measured on the training split and applied per batch. ``indices`` records where each
    split came from (arrays of row numbers into the source's training pool / test pool) so a run
    directory can save and reuse the exact split.
    """

    name: str
    train: ImageData
    val: ImageData
    test: ImageData
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    indices: dict[str, np.ndarray] = field(default_factory=dict)
    #: notes for the user, e.g. where the files were found or how many were skipped
    notes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.x.shape[1:])  # type: ignore[return-value]

    def summary(self) -> str:
        c, h, w = self.input_shape
        streamed = " (streamed: decoded again every epoch)" if self.streamed else ""
        return (f"{self.name}: {len(self.train)} train / {len(self.val)} val / {len(self.test)} "
                f"test images, {c}x{h}x{w}, {self.num_classes} classes{streamed}")

    @property
    def streamed(self) -> bool:
        return self.train.streamed or self.val.streamed or self.test.streamed


@dataclass
class Decoded:
    """Decoded images: ``x`` uint8 (N, C, H, W), ``y`` int64 (N,), the source of each row in
    ``paths`` (file paths relative to the source, or ``"#i"`` item numbers) and notes."""

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    paths: list[str]
    notes: list[str] = field(default_factory=list)

    def image_data(self) -> ImageData:
        return ImageData(self.x, self.y, list(self.classes), list(self.paths))
