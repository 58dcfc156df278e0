"""Streaming throughput, figure 8 (``stream``) of bench.py: its helpers.

Writes Fashion-MNIST training images as PNG files in a folder per class (a temporary folder),
then trains the same model (cnn width 32 depth 2, Adam, batch 128) for one epoch three ways, all
in this process and with the same number of DataLoader worker processes:
  textbook  — torchvision's ``ImageFolder`` (PIL decode, Grayscale, ToTensor, Normalize) through a
              shuffled DataLoader, fp32, as in the PyTorch tutorials;
  streamed  — ``biasvar`` with ``--stream always``: workers decode uint8 batches, the training
              process augments/normalises per batch and picks bf16 / channels_last by timing;
  in memory — ``biasvar`` on the same folder decoded once into memory (the default when it fits).
Images/s of each, and their ratios against the textbook pipeline:

    python bench/bench.py --only stream [--images N]   (N training images; 2 N PNG files)
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from biasvar import ExperimentConfig, fit, load_data
from biasvar.models import create_model


def textbook_loop(loader, epochs: int) -> float:
    """Images/s of the tutorials' fp32 loop (the benchmark's cnn, Adam) over ``loader``."""
    torch.manual_seed(0)
    model = create_model("cnn", num_classes=10, in_shape=(1, 28, 28), width=32, depth=2)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    t0 = time.perf_counter()
    seen = 0
    for _ in range(epochs):
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(yb)
    return seen / (time.perf_counter() - t0)


def _write_folder(root: Path, n: int) -> None:
    from PIL import Image

    data = load_data(ExperimentConfig(dataset="fashion-mnist", train_subset=n, download=False))
    x, y = data.train.x[:, 0].numpy(), data.train.y.numpy()
    for k, name in enumerate(data.classes):
        (root / name.replace("/", "-")).mkdir(parents=True, exist_ok=True)
    names = [c.replace("/", "-") for c in data.classes]
    for i in range(len(y)):
        Image.fromarray(x[i], "L").save(root / names[int(y[i])] / f"{i:06d}.png")


def _textbook(root: Path, mean: float, std: float, workers: int) -> tuple[float, int]:
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.Grayscale(1), transforms.ToTensor(),
                             transforms.Normalize((mean,), (std,))])
    ds = datasets.ImageFolder(str(root), transform=tf)
    loader = DataLoader(ds, batch_size=128, shuffle=True, drop_last=True, num_workers=workers)
    return textbook_loop(loader, epochs=1), len(ds)


def _biasvar(root: Path, stream: str, workers: int) -> tuple[float, dict, int]:
    cfg = ExperimentConfig(dataset=f"imagefolder:{root}", model="cnn", width=32, depth=2,
                           batch_size=128, epochs=1, schedule="constant", lr=2e-3,
                           stream=stream, loader_workers=workers, val_fraction=0.02,
                           test_fraction=0.02)
    data = load_data(cfg)
    res = fit(cfg, data, progress=False)
    # the epoch's seconds include a validation pass: time one alone and take it out
    from biasvar.train import predict

    t0 = time.perf_counter()
    predict(res.model, data, "val", channels_last=res.precision["channels_last"])
    val_s = time.perf_counter() - t0
    train_s = res.history[0]["seconds"] - val_s
    return len(data.train) // 128 * 128 / train_s, res.precision, len(data.train)
