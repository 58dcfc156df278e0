"""Training throughput: biasvar's fit against two baselines run in the same process.

Baselines (same model: cnn width 32 depth 2, Adam, batch 128, same images):
  textbook  — torchvision's per-sample PIL pipeline (ToTensor + Normalize) through a DataLoader,
              fp32, as in the PyTorch tutorials;
  hand loop — a hand-written loop over in-memory float tensors, fp32.
biasvar's fit keeps uint8 data in memory, normalises per batch and picks bf16 autocast /
channels_last by timing. Prints images/s and ratios (no absolute-seconds assertions).

    python bench/bench_train.py [--images 54000] [--epochs 1]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from biasvar import ExperimentConfig, fit, load_data
from biasvar.models import create_model


def _textbook(x_u8: np.ndarray, y: np.ndarray, mean: float, std: float, epochs: int) -> float:
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])

    class DS(Dataset):
        def __len__(self) -> int:
            return len(y)

        def __getitem__(self, i: int):
            return tf(Image.fromarray(x_u8[i], mode="L")), int(y[i])

    return textbook_loop(DataLoader(DS(), batch_size=128, shuffle=True, drop_last=True), epochs)


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


def _hand_loop(x: torch.Tensor, y: torch.Tensor, epochs: int) -> float:
    torch.manual_seed(0)
    model = create_model("cnn", num_classes=10, in_shape=(1, 28, 28), width=32, depth=2)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    n = len(y)
    t0 = time.perf_counter()
    seen = 0
    for _ in range(epochs):
        perm = torch.randperm(n)
        for i in range(0, n - 127, 128):
            idx = perm[i:i + 128]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(idx)
    return seen / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=54000)
    ap.add_argument("--epochs", type=int, default=1)
    args = ap.parse_args()
    cfg = ExperimentConfig(dataset="fashion-mnist", model="cnn", width=32, depth=2, batch_size=128,
                           train_subset=args.images, epochs=args.epochs, download=False,
                           schedule="constant")
    data = load_data(cfg)
    x_u8, y = data.train.x[:, 0].numpy(), data.train.y.numpy()
    mean, std = data.mean[0], data.std[0]
    xf = (data.train.x.float() / 255 - mean) / std

    rates = {}
    rates["textbook torchvision pipeline"] = _textbook(x_u8, y, mean, std, args.epochs)
    rates["hand-written loop (fp32, in memory)"] = _hand_loop(xf, data.train.y, args.epochs)
    res = fit(cfg, data, progress=False)
    # fit's epoch seconds include a validation pass: time one alone and take it out
    from biasvar.train import predict

    t0 = time.perf_counter()
    predict(res.model, data, "val", channels_last=res.precision["channels_last"])
    val_s = time.perf_counter() - t0
    train_s = sum(h["seconds"] for h in res.history) - args.epochs * val_s
    rates["biasvar fit"] = len(data.train) // 128 * 128 * args.epochs / train_s
    base_t = rates["textbook torchvision pipeline"]
    base_h = rates["hand-written loop (fp32, in memory)"]
    print(f"{args.images} Fashion-MNIST images x {args.epochs} epoch(s), cnn width 32 depth 2, "
          f"batch 128, {torch.get_num_threads()} threads; biasvar chose "
          f"{res.precision['precision']}{' + channels_last' if res.precision['channels_last'] else ''}"
          f" (timings ms/step: {res.precision['timings_ms']})")
    print(f"{'pipeline':<38} {'images/s':>9} {'vs textbook':>12} {'vs hand loop':>13}")
    for name, r in rates.items():
        print(f"{name:<38} {r:>9.0f} {r / base_t:>11.2f}x {r / base_h:>12.2f}x")
    print(f"(biasvar's per-epoch validation pass over {len(data.val)} images, {val_s:.2f} s, is "
          "taken out of its figure)")


if __name__ == "__main__":
    main()
