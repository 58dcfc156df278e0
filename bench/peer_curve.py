"""The peer stack's learning curve, as its users write it: scikit-learn's ``learning_curve``
over skorch's NeuralNetClassifier (one validation split, five training-set sizes, a fixed
number of epochs at every size), on a stratified subset of Fashion-MNIST. Run as its own
process (``python bench/peer_curve.py``) so its wall time covers imports and data loading."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

T0 = time.perf_counter()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--sizes", default="0.1,0.325,0.55,0.775,1")
    a = ap.parse_args()
    import torch
    from sklearn.model_selection import ShuffleSplit, learning_curve, train_test_split
    from skorch import NeuralNetClassifier

    sys.path.insert(0, str(Path(__file__).parent))
    from peer_decompose import read_idx
    from peer_models import cnn

    x = read_idx("train-images-idx3-ubyte.gz")
    y = read_idx("train-labels-idx1-ubyte.gz").astype(np.int64)
    x, _, y, _ = train_test_split(x, y, train_size=a.train, stratify=y, random_state=0)
    x = ((x.astype(np.float32) / 255.0 - 0.2860) / 0.3530)[:, None]
    torch.manual_seed(0)
    net = NeuralNetClassifier(cnn, criterion=torch.nn.CrossEntropyLoss, max_epochs=a.epochs,
                              lr=1e-3, optimizer=torch.optim.Adam, batch_size=128,
                              iterator_train__shuffle=True, train_split=None, verbose=0,
                              device="cpu")
    sizes = [float(s) for s in a.sizes.split(",")]
    t_fit = time.perf_counter()
    n, train_scores, val_scores = learning_curve(
        net, x, y, train_sizes=sizes, cv=ShuffleSplit(n_splits=1, test_size=0.1, random_state=0),
        scoring="accuracy", shuffle=True, random_state=0)
    print("peer: sizes " + ",".join(map(str, n)) + "; val error "
          + ",".join(f"{1 - v:.4f}" for v in val_scores[:, 0])
          + f"; analysis {time.perf_counter() - t_fit:.1f} s; process "
          f"{time.perf_counter() - T0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
