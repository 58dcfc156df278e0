"""ResNet-18/34 (He et al. 2016) from torchvision's blocks, adapted to the input.

* **Channels**: the first convolution takes the input's channel count (1 for grey images).
* **Size**: images of at most :data:`SMALL_IMAGE` pixels a side get the CIFAR stem — one 3×3
  stride-1 convolution and no max-pool — so a 28×28 image is not shrunk to 7×7 before the
  first block; larger images get ImageNet's 7×7 stride-2 convolution and 3×3 max-pool.
* **Width** is the base width, a count like everywhere in biasvar: stage i has
  ``width · 2^i`` channels (64 → 64, 128, 256, 512 is torchvision's resnet18).
* **Depth** is the number of stages, 1..4 (4 = the full network); resnet18 has 2 blocks in every
  stage, resnet34 3, 4, 6, 3.

Parameter names and shapes equal torchvision's ``resnet18``/``resnet34`` at width 64, depth 4
and 3-channel input with the ImageNet stem, so a local torchvision state dict loads with
``--weights`` (the classifier ``fc`` is skipped when the class count differs; with the CIFAR
stem or a grey input ``conv1`` adapts or is skipped, see :func:`biasvar.models._external.load_weights`).

>>> m = ResNet("resnet18", num_classes=10, in_shape=(1, 28, 28), width=16, depth=4)
>>> [m.layer1[0].conv1.out_channels, m.layer4[0].conv1.out_channels, m.fc.in_features]
[16, 128, 128]
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["ResNet", "resnet18", "resnet34", "SMALL_IMAGE", "BLOCKS"]

#: images at most this many pixels a side use the 3×3 stride-1 stem without max-pool
SMALL_IMAGE = 64
#: residual blocks per stage
BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}


class ResNet(nn.Module):
    """A torchvision-compatible ResNet with BasicBlocks; see the module docstring."""

    def __init__(self, arch: str, num_classes: int, in_shape: tuple[int, int, int], *,
                 width: int = 64, depth: int = 4, dropout: float = 0.0, batchnorm: bool = True):
        super().__init__()
        # imported here: torchvision takes seconds to import, and most runs use no ResNet
        from torchvision.models.resnet import BasicBlock, conv1x1

        blocks = BLOCKS[arch]
        if not 1 <= depth <= len(blocks):
            raise ConfigError(f"depth: {depth} is out of range for {arch}; it is the number of "
                              f"stages, 1..{len(blocks)} ({len(blocks)} = the full network).")
        c, h, w = in_shape
        norm: type[nn.Module] = nn.BatchNorm2d if batchnorm else nn.Identity
        self.small_input = min(h, w) <= SMALL_IMAGE
        if self.small_input:
            self.conv1 = nn.Conv2d(c, width, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(c, width, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = norm(width)
        self.relu = nn.ReLU(inplace=True)
        inplanes = width
        for i in range(depth):
            planes = width * 2 ** i
            stride = 1 if i == 0 else 2
            layers: list[nn.Module] = []
            for j in range(blocks[i]):
                down = None
                if j == 0 and (stride != 1 or inplanes != planes):
                    down = nn.Sequential(conv1x1(inplanes, planes, stride), norm(planes))
                layers.append(BasicBlock(inplanes, planes, stride if j == 0 else 1, down,
                                         norm_layer=norm))
                inplanes = planes
            self.add_module(f"layer{i + 1}", nn.Sequential(*layers))
        self.depth = depth
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(inplanes, num_classes)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if not batchnorm:
            # without normalisation, start each residual branch at zero (every block is the
            # identity at first) so the signal does not grow with depth
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.conv2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) → logits (B, K)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.depth):
            x = getattr(self, f"layer{i + 1}")(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(self.dropout(x))


def resnet18(num_classes: int, in_shape: tuple[int, int, int], *, width: int = 64,
             depth: int = 4, dropout: float = 0.0, batchnorm: bool = True) -> ResNet:
    """ResNet-18: 2 BasicBlocks per stage (11.2M parameters at width 64 for 10 classes)."""
    return ResNet("resnet18", num_classes, in_shape, width=width, depth=depth, dropout=dropout,
                  batchnorm=batchnorm)


def resnet34(num_classes: int, in_shape: tuple[int, int, int], *, width: int = 64,
             depth: int = 4, dropout: float = 0.0, batchnorm: bool = True) -> ResNet:
    """ResNet-34: 3, 4, 6, 3 BasicBlocks per stage (21.3M parameters at width 64)."""
    return ResNet("resnet34", num_classes, in_shape, width=width, depth=depth, dropout=dropout,
                  batchnorm=batchnorm)
