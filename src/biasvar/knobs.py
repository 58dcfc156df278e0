"""The knob table: every setting a complexity curve can turn, and every remedy the verdict names.

For each knob (an :class:`~biasvar.config.ExperimentConfig` field): which side it moves
(capacity, regularisation, optimisation), which direction of change lowers bias, a default
sweep around the configured value, and the remedies a complexity curve points to when its best
value is above or below the configured one. Curves, remedies and help text read this table;
adding a knob is one entry here.

>>> KNOBS.get("width").sweep(32)
(16, 32, 64)
>>> KNOBS.get("dropout").remedy_for(+1)
'dropout'
>>> REMEDIES.get("wider_model").addresses
'bias'
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .registry import Registry

__all__ = ["Knob", "KNOBS", "RemedyInfo", "REMEDIES", "SIDES"]

#: what a knob moves
SIDES = ("capacity", "regularisation", "optimisation")


@dataclass(frozen=True)
class Knob:
    """One setting a complexity curve turns.

    Attributes:
        name: the config field (``--param`` value; ``--name`` flag with ``-`` for ``_``).
        side: what it moves, one of :data:`SIDES`.
        lowers_bias: the direction of change that lowers bias: ``+1`` (raise it), ``-1`` (lower
            it) or ``0`` (no fixed direction: the learning rate can be too high or too low).
        up, down: the remedy (a :data:`REMEDIES` name) a complexity curve recommends when its
            best value lies above / below the configured one.
        sweep: default values around the configured value (None: unset).
        help: one line for ``--help`` and the report.
    """

    name: str
    side: str
    lowers_bias: int
    up: str
    down: str
    sweep: Callable[[Any], tuple]
    help: str

    def remedy_for(self, direction: int) -> str | None:
        """The remedy a curve whose best value lies in ``direction`` (+1 above, −1 below the
        configured value, 0 at it) recommends."""
        return self.up if direction > 0 else self.down if direction < 0 else None

    def sweep_text(self, value: Any) -> str:
        """The default sweep as ``--values`` text: ``16,32,64``."""
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in self.sweep(value))


def _around(scale: float, default: tuple, *, integer: bool = False, lo: float = 0
            ) -> Callable[[Any], tuple]:
    """value/scale, value, value·scale (rounded for counts); ``default`` when the value is
    unset or zero."""
    def sweep(v: Any) -> tuple:
        if not v:
            return default
        vals = (v / scale, v, v * scale)
        if integer:
            return tuple(sorted({max(int(lo) or 1, int(round(x))) for x in vals}))
        return tuple(float(f"{x:.2g}") for x in vals)
    return sweep


def _steps(default: tuple) -> Callable[[Any], tuple]:
    """A fixed ladder from zero, with the configured value added when it is not on it."""
    def sweep(v: Any) -> tuple:
        return tuple(sorted(set(default) | ({float(v)} if v else set())))
    return sweep


def _depth(v: Any) -> tuple:
    return (1, 2, 3) if v is None else tuple(d for d in (int(v) - 1, int(v), int(v) + 1) if d >= 0)


KNOBS: Registry[Knob] = Registry("param")
for _k in (
    Knob("width", "capacity", +1, "wider_model", "narrower_model",
         _around(2, (16, 32, 64), integer=True), "units/channels per layer"),
    Knob("depth", "capacity", +1, "deeper_model", "shallower_model", _depth,
         "hidden layers / convolution stages"),
    Knob("epochs", "optimisation", +1, "train_longer", "early_stopping",
         _around(2, (5, 10, 20), integer=True), "training epochs"),
    Knob("lr", "optimisation", 0, "tune_lr", "tune_lr",
         _around(3, (3e-4, 1e-3, 3e-3)), "peak learning rate"),
    Knob("weight_decay", "regularisation", -1, "weight_decay", "less_regularization",
         _steps((0.0, 5e-4, 5e-3)), "L2 weight decay"),
    Knob("l1", "regularisation", -1, "l1_penalty", "less_regularization",
         _steps((0.0, 1e-5, 1e-4)), "L1 penalty on weights"),
    Knob("dropout", "regularisation", -1, "dropout", "less_regularization",
         _steps((0.0, 0.2, 0.4)), "dropout probability"),
    Knob("label_smoothing", "regularisation", -1, "label_smoothing", "less_regularization",
         _steps((0.0, 0.05, 0.1)), "label smoothing"),
    Knob("augment_strength", "regularisation", -1, "augmentation", "less_regularization",
         _steps((0.0, 0.5, 1.0, 2.0)), "augmentation strength (multiplies the preset)"),
):
    KNOBS.add(_k.name, _k)


@dataclass(frozen=True)
class RemedyInfo:
    """What a remedy is: the side it addresses, the knob that measures it (a complexity curve
    over it, or None), and why it works (the verdict's wording)."""

    name: str
    addresses: str
    knob: str | None
    why: str

    def measure_command(self, config: dict[str, Any]) -> str | None:
        """The command that measures this remedy's gain, or None."""
        if self.name == "more_data":
            return "`biasvar curve learning`"
        if self.name == "ensemble":
            return "`biasvar decompose`"
        if self.name == "transfer":
            return "`biasvar finetune --weights FILE|RUN_DIR`"
        if self.name == "distribution_shift":
            return "`biasvar shift RUN_DIR --adabn`"
        if self.knob is None:
            return None
        knob = KNOBS.get(self.knob)
        return (f"`biasvar curve complexity --param {knob.name} --values "
                f"{knob.sweep_text(config.get(knob.name))}`")


REMEDIES: Registry[RemedyInfo] = Registry("remedy")
for _r in (
    RemedyInfo("wider_model", "bias", "width", "more units/channels per layer lower the train "
               "error"),
    RemedyInfo("deeper_model", "bias", "depth", "another layer/stage adds capacity"),
    RemedyInfo("train_longer", "bias", "epochs", "more optimisation steps lower the train error "
               "while the training loss is still falling"),
    RemedyInfo("tune_lr", "bias", "lr", "a badly set learning rate leaves the train error high"),
    RemedyInfo("less_regularization", "bias", None, "regularisation holds the train error up"),
    RemedyInfo("narrower_model", "variance", "width", "fewer units per layer leave less room "
               "to fit noise"),
    RemedyInfo("shallower_model", "variance", "depth", "fewer layers leave less room to fit "
               "noise"),
    RemedyInfo("early_stopping", "variance", "epochs", "stop when validation loss stops "
               "improving and restore the best weights"),
    RemedyInfo("weight_decay", "variance", "weight_decay", "weight decay shrinks the weights "
               "and the gap"),
    RemedyInfo("l1_penalty", "variance", "l1", "an L1 penalty drives weights to zero"),
    RemedyInfo("dropout", "variance", "dropout", "dropout regularises the hidden layers"),
    RemedyInfo("label_smoothing", "variance", "label_smoothing", "softer targets discourage "
               "over-confident fits"),
    RemedyInfo("augmentation", "variance", "augment_strength", "augmentation shows the model "
               "more varied images"),
    RemedyInfo("more_data", "variance", None, "more data lowers variance"),
    RemedyInfo("ensemble", "variance", None, "averaging models cancels variance"),
    RemedyInfo("transfer", "variance", None, "features learned on a larger, related dataset "
               "leave fewer weights to fit from a small training set"),
    RemedyInfo("distribution_shift", "shift", None, "a test set drawn unlike the training "
               "images errs more than the validation split, whatever the bias and variance"),
):
    REMEDIES.add(_r.name, _r)
