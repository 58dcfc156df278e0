"""Search spaces: which training options a tune varies, and over what values.

A space is a mapping (a YAML file, a dict, or a built-in name) of option → distribution::

    width:   {type: int, low: 16, high: 128, log: true}
    lr:      {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    dropout: {type: float, low: 0.0, high: 0.5, step: 0.1}
    augment: {type: categorical, choices: [none, light, standard]}

Any training option (an :class:`~biasvar.config.ExperimentConfig` field) may be searched, except
those that would change what is measured (the dataset, its split, the seed) or only where and how
fast a fit runs (device, threads, ...). Everything is checked before anything trains: every
error names the parameter, the bad value and the fix.

>>> from biasvar import ExperimentConfig
>>> s = load_space({"width": {"type": "int", "low": 16, "high": 64, "log": True}},
...                ExperimentConfig(dataset="digits", model="mlp"))
>>> s["width"].type, s["width"].low, s["width"].high
('int', 16, 64)
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from ..config import ExperimentConfig, _field_type, field_names, resolve
from ..errors import ConfigError, suggest

__all__ = ["Param", "Space", "load_space", "SPACES", "TYPES"]

TYPES = ("float", "int", "categorical")
_KEYS = ("type", "low", "high", "log", "step", "choices")

#: options a tune may not vary, and why
_FIXED = {
    "dataset": "the tune compares configurations on one dataset",
    "val_fraction": "it changes the validation set the trials are compared on",
    "test_fraction": "it changes the held-out sets the trials are compared on",
    "split_seed": "it changes the validation set the trials are compared on",
    "seed": "a seed that wins is luck, not a better configuration (use --seeds K to average)",
    "data_root": "it does not change the result", "download": "it does not change the result",
}


@dataclass(frozen=True)
class Param:
    """One searched option: ``type`` float/int (``low``–``high``, ``log`` scale, ``step``)
    or categorical (``choices``)."""

    name: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "low": self.low, "high": self.high, "log": self.log,
                "step": self.step, "choices": list(self.choices) if self.choices else None}

    def distribution(self) -> Any:
        """The Optuna distribution."""
        import optuna.distributions as d

        if self.type == "categorical":
            return d.CategoricalDistribution(list(self.choices or ()))
        if self.type == "int":
            return d.IntDistribution(int(self.low), int(self.high), log=self.log,
                                     step=int(self.step or 1))
        return d.FloatDistribution(float(self.low), float(self.high), log=self.log,
                                   step=None if self.step is None else float(self.step))

    def suggest(self, trial: Any) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices or ()))
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log,
                                     step=int(self.step or 1))
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log,
                                   step=None if self.step is None else float(self.step))

    def grid(self) -> list:
        """Every value of a discrete parameter (categorical, int, or float with a step)."""
        if self.type == "categorical":
            return list(self.choices or ())
        if self.type == "int" and not self.log or self.step is not None:
            step = self.step or 1
            n = int(round((self.high - self.low) / step))
            vals = [self.low + i * step for i in range(n + 1)]
            return [int(v) for v in vals] if self.type == "int" else \
                [float(f"{v:.12g}") for v in vals]
        raise ConfigError(
            f"space: {self.name}: the grid sampler needs a finite list of values, but "
            f"{self.name} is a continuous {self.type} range [{self.low}, {self.high}]"
            f"{' on a log scale' if self.log else ''}; give it a step (e.g. step: "
            f"{_nice_step(self)}), or use type: categorical with choices, or --sampler tpe.")

    def contains(self, value: Any) -> bool:
        if self.type == "categorical":
            return value in (self.choices or ())
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if not self.low <= value <= self.high:
            return False
        if self.step is not None or (self.type == "int" and not self.log):
            step = self.step or 1
            k = (value - self.low) / step
            return abs(k - round(k)) < 1e-9
        return True


def _nice_step(p: Param) -> str:
    return f"{(float(p.high) - float(p.low)) / 4:g}"


class Space(Mapping):
    """The resolved search space: name → :class:`Param`, in the given order."""

    def __init__(self, params: Mapping[str, Param], name: str | None = None):
        self._params = dict(params)
        self.name = name

    def __getitem__(self, key: str) -> Param:
        return self._params[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {k: p.to_dict() for k, p in self._params.items()}

    def to_yaml(self) -> str:
        return yaml.safe_dump({k: {kk: vv for kk, vv in p.to_dict().items() if vv not in
                                   (None, False)} for k, p in self._params.items()},
                              sort_keys=False)

    def distributions(self) -> dict[str, Any]:
        return {k: p.distribution() for k, p in self._params.items()}

    def suggest(self, trial: Any) -> dict[str, Any]:
        return {k: p.suggest(trial) for k, p in self._params.items()}

    def grid(self) -> dict[str, list]:
        """The grid sampler's search space (every combination of these is a trial)."""
        return {k: p.grid() for k, p in self._params.items()}

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid().values())

    def defaults(self, cfg: ExperimentConfig) -> dict[str, Any]:
        """The resolved config's value of every searched option."""
        r = resolve(cfg)
        return {k: getattr(r, k) for k in self._params}

    def contains(self, params: Mapping[str, Any]) -> bool:
        return all(p.contains(params.get(k)) for k, p in self._params.items())


# -- built-in spaces ----------------------------------------------------------------------------

def _cap(name: str, value: float) -> float:
    hi = {f.name: f.metadata.get("hi") for f in fields(ExperimentConfig)}[name]
    return value if hi is None else min(value, hi)


def bias_space(cfg: ExperimentConfig) -> dict[str, dict[str, Any]]:
    """The knobs that lower bias (biasvar.knobs: capacity and optimisation raised, regularisation
    lowered), in ranges around the resolved config's values ``v``:

    - width: int, log, v/2 … 4·v      (capacity up; lowers_bias = +1)
    - depth: int, max(1, v−1) … v+2     (capacity up)
    - lr: float, log, v/10 … 10·v      (optimisation; either direction)
    - epochs: int, max(1, v/2) … 3·v     (optimisation up)
    - weight_decay, dropout: float, 0 … v, only where v > 0 (regularisation down)
    """
    r = resolve(cfg)
    s: dict[str, dict[str, Any]] = {}
    if r.width is not None:
        s["width"] = {"type": "int", "low": max(2, r.width // 2),
                      "high": int(_cap("width", r.width * 4)), "log": True}
    if r.depth is not None:
        s["depth"] = {"type": "int", "low": max(1, r.depth - 1),
                      "high": int(_cap("depth", r.depth + 2))}
    if r.lr is not None:
        s["lr"] = {"type": "float", "low": float(f"{r.lr / 10:.3g}"),
                   "high": float(f"{_cap('lr', r.lr * 10):.3g}"), "log": True}
    if r.epochs is not None:
        s["epochs"] = {"type": "int", "low": max(1, r.epochs // 2),
                       "high": int(_cap("epochs", max(2, r.epochs * 3)))}
    for name in ("weight_decay", "dropout"):
        v = getattr(r, name)
        if v:
            s[name] = {"type": "float", "low": 0.0, "high": float(v)}
    return s


def variance_space(cfg: ExperimentConfig) -> dict[str, dict[str, Any]]:
    """The knobs that lower variance (biasvar.knobs: regularisation raised, capacity lowered),
    in ranges around the resolved config's values ``v``:

    - weight_decay: float, log, 1e-6 … max(1e-2, 10·v)
    - dropout: float, 0 … max(0.5, v)
    - label_smoothing: float, 0 … max(0.2, v)
    - augment: categorical none/light/standard when the config has no augmentation, else
      augment_strength: float, 0 … max(2, v)
    - width: int, log, v/4 … v  (capacity down)
    """
    r = resolve(cfg)
    s: dict[str, dict[str, Any]] = {
        "weight_decay": {"type": "float", "low": 1e-6,
                         "high": float(f"{max(1e-2, 10 * r.weight_decay):.3g}"), "log": True},
        "dropout": {"type": "float", "low": 0.0, "high": max(0.5, r.dropout)},
        "label_smoothing": {"type": "float", "low": 0.0, "high": max(0.2, r.label_smoothing)},
    }
    if r.augment == "none":
        s["augment"] = {"type": "categorical", "choices": ["none", "light", "standard"]}
    else:
        s["augment_strength"] = {"type": "float", "low": 0.0,
                                 "high": max(2.0, r.augment_strength)}
    if r.width is not None and r.width >= 4:
        s["width"] = {"type": "int", "low": max(2, r.width // 4), "high": int(r.width),
                      "log": True}
    return s


#: built-in spaces by name: a function of the (starting) config → a space mapping
SPACES: dict[str, Callable[[ExperimentConfig], dict[str, dict[str, Any]]]] = {
    "bias": bias_space, "variance": variance_space}


# -- loading and checking -----------------------------------------------------------------------

def load_space(space: str | Path | Mapping, cfg: ExperimentConfig | None = None) -> Space:
    """A checked :class:`Space` from a built-in name (``"bias"``, ``"variance"``: see
    :data:`SPACES`), a YAML file, or a mapping; ``cfg`` is the starting config (the built-in
    spaces centre their ranges on its values, and every range end is checked against it)."""
    cfg = cfg if cfg is not None else ExperimentConfig()
    name = None
    if isinstance(space, Mapping):
        raw: Any = dict(space)
        source = "space"
    elif isinstance(space, str) and space in SPACES:
        name, raw, source = space, SPACES[space](cfg), f"space {space}"
    else:
        p = Path(space)
        if not p.is_file():
            hint = suggest(str(space), SPACES) if not str(space).endswith((".yaml", ".yml")) \
                else ""
            raise ConfigError(f"--space: {str(space)!r} is neither a built-in space "
                              f"({', '.join(SPACES)}) nor an existing YAML file.{hint} Give "
                              "a file path or a built-in name.")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            msg = str(e).replace("\n", " ")
            raise ConfigError(f"--space: {str(p)!r} is not valid YAML: {msg}") from None
        source = f"--space {p.name}"
    if not isinstance(raw, Mapping) or not raw:
        what = "empty" if not raw else f"a {type(raw).__name__}"
        raise ConfigError(f"{source}: the space is {what}; it must map each option to search "
                          "to its distribution, e.g. `lr: {type: float, low: 1.0e-4, "
                          "high: 1.0e-2, log: true}`.")
    params = {str(k): _param(str(k), v, cfg, source) for k, v in raw.items()}
    return Space(params, name=name)


def _num(source: str, name: str, key: str, value: Any, integer: bool) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not math.isfinite(value)):
        raise ConfigError(f"{source}: {name}.{key}: {value!r} is not a finite number; give "
                          f"{'an integer' if integer else 'a number'}.")
    if integer:
        if isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{source}: {name}.{key}: {value!r} is not a whole number; {name} "
                              "is an integer option (use a whole number).")
        return int(value)
    return float(value)


def _param(name: str, spec: Any, cfg: ExperimentConfig, source: str) -> Param:
    names = field_names()
    if name not in names:
        raise ConfigError(f"{source}: unknown parameter {name!r}.{suggest(name, names)} Any "
                          "training option (a field of ExperimentConfig, as in `biasvar train "
                          "--help` with '_' for '-') can be searched.")
    f = {x.name: x for x in fields(ExperimentConfig)}[name]
    if name in _FIXED or not f.metadata.get("semantic", True):
        why = _FIXED.get(name, "it changes where or how fast a fit runs, not its result")
        raise ConfigError(f"{source}: {name} cannot be searched: {why}. Set it as a training "
                          f"option (--{name.replace('_', '-')}) and leave it out of the space.")
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{source}: {name}: {spec!r} is not a distribution; write e.g. "
                          f"`{name}: {{type: float, low: ..., high: ...}}` or `{name}: "
                          "{type: categorical, choices: [...]}`.")
    for k in spec:
        if k not in _KEYS:
            raise ConfigError(f"{source}: {name}: unknown key {k!r}.{suggest(str(k), _KEYS)} "
                              f"Allowed keys: {', '.join(_KEYS)}.")
    base, _ = _field_type(name)
    kind = spec.get("type")
    if kind is None:
        kind = "categorical" if "choices" in spec else (
            "int" if base is int else "float" if base is float else None)
    if kind not in TYPES:
        raise ConfigError(f"{source}: {name}.type: {kind!r} is not a type.{suggest(str(kind), TYPES)}"
                          f" Use one of: {', '.join(TYPES)}.")
    if kind == "categorical":
        for k in ("low", "high", "log", "step"):
            if spec.get(k) not in (None, False):
                raise ConfigError(f"{source}: {name}: {k} applies to float and int ranges, not "
                                  "to a categorical; drop it, or use type: float/int.")
        choices = spec.get("choices")
        if not isinstance(choices, (list, tuple)) or not choices:
            raise ConfigError(f"{source}: {name}: a categorical needs a non-empty list of "
                              f"choices (got {choices!r}); add e.g. `choices: "
                              f"[{getattr(resolve(cfg), name)!r}, ...]`.")
        if len(set(map(repr, choices))) != len(choices):
            raise ConfigError(f"{source}: {name}.choices: {list(choices)!r} repeats a value; "
                              "list each choice once.")
        from ..config import coerce

        values = []
        for c in choices:
            if c is not None and not isinstance(c, (str, int, float, bool)):
                raise ConfigError(f"{source}: {name}.choices: {c!r} is not a plain value "
                                  "(text, number, true/false or null); list plain values.")
            try:
                values.append(coerce(name, c))
            except ConfigError as e:
                raise ConfigError(f"{source}: {name}.choices: {e}") from None
        p = Param(name, "categorical", choices=tuple(values))
        _check_values(p, values, cfg, source)
        return p
    # float / int ranges
    if spec.get("choices") is not None:
        raise ConfigError(f"{source}: {name}: choices apply to type: categorical; drop them, or "
                          "set type: categorical (and drop low/high).")
    if base not in (int, float):
        raise ConfigError(f"{source}: {name}.type: {kind} does not match the option: {name} "
                          f"takes {base.__name__} values; use type: categorical with choices.")
    if kind == "float" and base is int:
        raise ConfigError(f"{source}: {name}.type: float does not match the option: {name} is an "
                          "integer option; use type: int.")
    integer = kind == "int"
    for k in ("low", "high"):
        if spec.get(k) is None:
            raise ConfigError(f"{source}: {name}: a {kind} range needs low and high (missing "
                              f"{k}); add e.g. `{k}: ...`.")
    low = _num(source, name, "low", spec["low"], integer)
    high = _num(source, name, "high", spec["high"], integer)
    if low >= high:
        what = "empty" if low == high else "inverted"
        raise ConfigError(f"{source}: {name}: the range [{low}, {high}] is {what} (low must be "
                          f"below high); swap them{' or widen it' if low == high else ''}, or "
                          f"fix {name} as a training option instead of searching it.")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{source}: {name}.log: {log!r} must be true or false.")
    if log and low <= 0:
        raise ConfigError(f"{source}: {name}: a log scale needs low > 0 (got low={low}); raise "
                          f"low (e.g. {high / 1000:g}) or drop `log: true`.")
    step = spec.get("step")
    if step is not None:
        step = _num(source, name, "step", step, integer)
        if step <= 0:
            raise ConfigError(f"{source}: {name}.step: {step} must be positive; e.g. step: "
                              f"{(high - low) / 4:g}.")
        if log:
            raise ConfigError(f"{source}: {name}: step and log cannot be combined (Optuna "
                              "samples a log range continuously); drop one of them.")
        k = (high - low) / step
        if abs(k - round(k)) > 1e-9 * max(1.0, abs(k)) or round(k) < 1:
            fit = low + math.floor(k) * step
            raise ConfigError(f"{source}: {name}.step: {step} does not fit the range [{low}, "
                              f"{high}]: (high - low) must be a whole number of steps; set "
                              f"high: {float(f'{fit:.12g}') if not integer else int(fit)} "
                              "or choose another step.")
    p = Param(name, kind, low=low, high=high, log=log, step=step)
    _check_values(p, [low, high], cfg, source)
    return p


def _check_values(p: Param, values: list, cfg: ExperimentConfig, source: str) -> None:
    """Every range end (and every choice) must be a value the config itself accepts."""
    from ._objective import apply_params

    for v in values:
        try:
            apply_params(cfg, {p.name: v})
        except ConfigError as e:
            raise ConfigError(f"{source}: {p.name}: {v!r} is refused by the configuration: {e} "
                              f"Keep the space inside the option's allowed values.") from None
