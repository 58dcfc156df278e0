"""The peer stack's run of the benchmark's analysis, as its users write it: skorch's
NeuralNetClassifier inside mlxtend's ``bias_variance_decomp`` (R bootstrap rounds, 0-1 loss),
on a stratified subset of Fashion-MNIST read from the local idx files. Run as its own process
(``python bench/peer_decompose.py``) so its wall time covers imports and data loading."""
from __future__ import annotations

import argparse
import gzip
import sys
import time
from pathlib import Path

import numpy as np

T0 = time.perf_counter()

FILES = ("/usr/share/datasets/fashion-mnist", "data/fashion-mnist", "data/FashionMNIST/raw")


def read_idx(name: str) -> np.ndarray:
    for root in FILES:
        p = Path(root) / name
        if p.is_file():
            with gzip.open(p) as f:
                raw = f.read()
            ndim = raw[3]
            shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
            return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)
    sys.exit(f"peer_decompose: {name} not found in {', '.join(FILES)} "
             "(install Debian's dataset-fashion-mnist)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    import torch
    from mlxtend.evaluate import bias_variance_decomp
    from skorch import NeuralNetClassifier
    from sklearn.model_selection import train_test_split

    sys.path.insert(0, str(Path(__file__).parent))
    from peer_models import cnn

    if a.threads:
        torch.set_num_threads(a.threads)
    x = read_idx("train-images-idx3-ubyte.gz")
    y = read_idx("train-labels-idx1-ubyte.gz").astype(np.int64)
    xt = read_idx("t10k-images-idx3-ubyte.gz")
    yt = read_idx("t10k-labels-idx1-ubyte.gz").astype(np.int64)
    x, _, y, _ = train_test_split(x, y, train_size=a.train, stratify=y, random_state=0)

    def prep(images: np.ndarray) -> np.ndarray:
        return ((images.astype(np.float32) / 255.0 - 0.2860) / 0.3530)[:, None]

    torch.manual_seed(0)
    net = NeuralNetClassifier(cnn, criterion=torch.nn.CrossEntropyLoss, max_epochs=a.epochs,
                              lr=1e-3, optimizer=torch.optim.Adam,
                              batch_size=128, iterator_train__shuffle=True, train_split=None,
                              verbose=0, device="cpu")
    t_fit = time.perf_counter()
    loss, bias, var = bias_variance_decomp(net, prep(x), y, prep(xt), yt, loss="0-1_loss",
                                           num_rounds=a.rounds, random_seed=0)
    print(f"peer: 0-1 loss {loss:.4f} bias {bias:.4f} variance {var:.4f}; "
          f"analysis {time.perf_counter() - t_fit:.1f} s; process {time.perf_counter() - T0:.1f} s",
          flush=True)


if __name__ == "__main__":
    main()
