"""Models shared by biasvar and the peer stack in the benchmarks (``--model
bench/peer_models.py:cnn``), so both train exactly the same network."""
from __future__ import annotations

from torch import nn


def cnn(num_classes: int = 10, in_shape: tuple[int, ...] = (1, 28, 28)) -> nn.Module:
    """The 225k-parameter CNN of the peer comparison: conv32 → conv64 (3×3, no padding, each
    followed by ReLU and 2×2 max-pooling) → fc128 → classes; 225,034 parameters at 28×28."""
    c, h, w = in_shape
    side_h, side_w = ((h - 2) // 2 - 2) // 2, ((w - 2) // 2 - 2) // 2
    return nn.Sequential(
        nn.Conv2d(c, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * side_h * side_w, 128), nn.ReLU(),
        nn.Linear(128, num_classes))
