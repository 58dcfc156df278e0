"""Evaluate a trained model on the train (eval mode, un-augmented), validation and test splits."""
from __future__ import annotations

import base64
import io

import numpy as np
import torch
from torch import nn

from ..data import DataBundle
from ..metrics import classification_metrics
from ._fit import normalizer, predict_log_probs
from ._runtime import resolve_device

__all__ = ["evaluate", "predict", "most_confidently_wrong"]


def predict(model: nn.Module, data: DataBundle, split: str = "test", *, device: str = "auto",
            channels_last: bool = False, workers: int | None = None) -> np.ndarray:
    """fp32 log-probabilities (N, K) of one split, as numpy. ``workers``: DataLoader processes
    for streamed images (default: :func:`~biasvar.data._stream.loader_workers`)."""
    dev = resolve_device(device) if isinstance(device, str) else device
    scale, shift = normalizer(data, dev)
    part = getattr(data, split)
    model.to(dev)
    return predict_log_probs(model, part.x, scale, shift, dev, channels_last=channels_last,
                             workers=workers).cpu().numpy()


def evaluate(model: nn.Module, data: DataBundle, *, device: str = "auto",
             splits: tuple[str, ...] = ("train", "val", "test"), channels_last: bool = False,
             return_log_probs: bool = False, workers: int | None = None) -> dict:
    """Metrics (see metrics.classification_metrics) for each split; train is scored in eval mode
    without augmentation, so the train–validation gap is not inflated."""
    out, lps = {}, {}
    for s in splits:
        lp = predict(model, data, s, device=device, channels_last=channels_last, workers=workers)
        out[s] = classification_metrics(getattr(data, s).y.numpy(), log_probs=lp,
                                        classes=data.classes)
        lps[s] = lp
    return (out, lps) if return_log_probs else out


def most_confidently_wrong(data: DataBundle, log_probs: np.ndarray, k: int = 16) -> list[dict]:
    """The ``k`` test images the model got wrong with the highest confidence (gallery.json)."""
    from PIL import Image

    y = data.test.y.numpy()
    pred = log_probs.argmax(1)
    conf = np.exp(log_probs.max(1))
    wrong = np.flatnonzero(pred != y)
    order = wrong[np.argsort(-conf[wrong], kind="stable")][:k]
    out = []
    for i in order:
        img = data.test.x[int(i)].numpy()  # (C, H, W) uint8
        arr = img[0] if img.shape[0] == 1 else np.transpose(img[:3], (1, 2, 0))
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
        entry = {"index": int(i), "true": data.classes[int(y[i])],
                 "pred": data.classes[int(pred[i])], "confidence": float(conf[i]),
                 "image_png_b64": base64.b64encode(buf.getvalue()).decode("ascii")}
        if data.test.names is not None:  # the user's own data: which file (or item) it is
            entry["source"] = data.test.names[int(i)]
        out.append(entry)
    return out
