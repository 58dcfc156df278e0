"""The checkpoint file format (``last.pt``, ``best.pt``) and ``history.csv``: writing and safe reading."""
from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import CheckpointError

if TYPE_CHECKING:
    from ..data import DataBundle

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "HISTORY_COLUMNS", "checkpoint_bytes",
           "load_checkpoint", "history_csv", "steps_csv", "read_steps_csv", "STEP_COLUMNS", "model_spec"]

CHECKPOINT_FORMAT = "biasvar-checkpoint"
CHECKPOINT_VERSION = 1
HISTORY_COLUMNS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
                   "seconds"]
#: steps.csv: the optimizer step ending a window, its epoch, the window's mean training loss and
#: the learning rate of its last step
STEP_COLUMNS = ["step", "epoch", "loss", "lr"]


def model_spec(data: "DataBundle") -> dict[str, Any]:
    """What a checkpoint records about the data its model was built for."""
    return {"num_classes": data.num_classes, "in_shape": list(data.input_shape),
            "classes": list(data.classes), "mean": list(data.mean), "std": list(data.std)}


def checkpoint_bytes(obj: Any) -> bytes:
    """``obj`` (a checkpoint dict) serialised the way biasvar writes checkpoint files
    (``torch.save``); write the bytes with an atomic write."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a biasvar checkpoint safely (``weights_only=True``: no code runs from the file).
    A directory means its ``last.pt``."""
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist.")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated zip, pickle payload, random bytes...
        msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read safely ({msg}). It is "
                              "truncated, damaged, or not a file biasvar wrote; start over with "
                              "--fresh or point --resume at a good last.pt.") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {str(path)!r} was not written by biasvar (no "
                              f"'format: {CHECKPOINT_FORMAT}' entry). To start a model from "
                              "plain weights use --weights instead.")
    if int(ck.get("version", 0)) > CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {str(path)!r} is from a newer biasvar "
                              f"(version {ck.get('version')}); upgrade biasvar.")
    return ck


def history_csv(history: list[dict[str, float]]) -> str:
    """``history.csv``'s text: one row per epoch, the columns HISTORY_COLUMNS."""
    lines = [",".join(HISTORY_COLUMNS)]
    for row in history:
        lines.append(",".join(repr(int(row[c])) if c == "epoch" else
                              "" if row[c] is None else f"{row[c]:.8g}"   # not validated
                              for c in HISTORY_COLUMNS))
    return "\n".join(lines) + "\n"


def steps_csv(steps: list[dict[str, float]]) -> str:
    """``steps.csv``'s text: one row per window of steps, the columns STEP_COLUMNS."""
    lines = [",".join(STEP_COLUMNS)]
    for row in steps:
        lines.append(",".join(repr(int(row[c])) if c in ("step", "epoch") else f"{row[c]:.6g}"
                              for c in STEP_COLUMNS))
    return "\n".join(lines) + "\n"


def read_steps_csv(path: str | Path) -> list[dict[str, float]]:
    """The rows :func:`steps_csv` wrote (none when the file is absent)."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].split(",") != STEP_COLUMNS:
        raise ValueError(f"{path}: not a steps.csv (its header is not {','.join(STEP_COLUMNS)})")
    return [{c: (int(v) if c in ("step", "epoch") else float(v))
             for c, v in zip(STEP_COLUMNS, line.split(","))} for line in lines[1:] if line]
