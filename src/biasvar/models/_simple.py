"""linear, mlp and cnn: small models whose capacity is set by plain arguments.

``width`` is a count, not a multiplier: hidden units of the MLP, channels of the CNN's first
convolution (stage i has ``width * 2**i`` channels). ``depth`` is the number of hidden layers
(MLP) or convolution stages (CNN).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["Linear", "MLP", "CNN"]


class Linear(nn.Module):
    """Multinomial logistic regression on the flattened pixels."""

    def __init__(self, num_classes: int, in_shape: tuple[int, int, int], **_: object):
        super().__init__()
        c, h, w = in_shape
        self.fc = nn.Linear(c * h * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, H, W) → logits (B, K)
        return self.fc(x.flatten(1))


class MLP(nn.Module):
    """``depth`` hidden layers of ``width`` units: [Linear → (BN) → ReLU → Dropout] × depth."""

    def __init__(self, num_classes: int, in_shape: tuple[int, int, int], *, width: int = 256,
                 depth: int = 2, dropout: float = 0.0, batchnorm: bool = True):
        super().__init__()
        c, h, w = in_shape
        layers: list[nn.Module] = [nn.Flatten()]
        d_in = c * h * w
        for _ in range(depth):
            layers.append(nn.Linear(d_in, width, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.ReLU(inplace=True))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            d_in = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(d_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class CNN(nn.Module):
    """``depth`` stages of [conv3x3 → (BN) → ReLU → maxpool2], channels ``width·2^i``, then a
    hidden layer of ``4·width`` units with dropout and the classifier.

    The default (width 32, depth 2) on 28×28 input is conv32-pool-conv64-pool-fc128-fc10.
    Pooling stops once the feature map is 2×2 or smaller, so any depth fits any image size.
    """

    def __init__(self, num_classes: int, in_shape: tuple[int, int, int], *, width: int = 32,
                 depth: int = 2, dropout: float = 0.0, batchnorm: bool = True):
        super().__init__()
        c, h, w = in_shape
        layers: list[nn.Module] = []
        for i in range(depth):
            out = width * 2 ** min(i, 3)  # channels double per stage, capped at 8× the first
            layers.append(nn.Conv2d(c, out, 3, padding=1, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU(inplace=True))
            if min(h, w) > 2:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            c = out
        self.features = nn.Sequential(*layers)
        hidden = 4 * width
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.Linear(c * h * w, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) → (B, K)
        return self.head(self.features(x))
