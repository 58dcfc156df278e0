"""The one typed, frozen experiment configuration handed to every part of biasvar.

Every option lives here with its default, its unit and its allowed range; the CLI builds its flags
from these fields, ``--config FILE.yaml`` may set any of them, and the resolved configuration is
saved next to the results. Retraining with a change is ``fit(replace(config, width=64), data)``.

``None`` means "the dataset's default" (see :data:`DATASET_DEFAULTS`); :func:`resolve` fills them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_args, get_type_hints  # noqa: F401 (get_type_hints re-exported)

import yaml

from .analysis._profiles import PROFILES, SAMPLINGS
from .errors import ConfigError, suggest
from .knobs import KNOBS

__all__ = [
    "ExperimentConfig",
    "AnalysisConfig",
    "DATASET_DEFAULTS",
    "DATASET_MODEL_DEFAULTS",
    "load_analysis",
    "load_config",
    "resolve",
    "config_hash",
    "config_to_dict",
    "replace",
]


def _opt(default: Any, help: str, *, choices: tuple | None = None, lo: float | None = None,
         hi: float | None = None, lo_open: bool = False, group: str = "training",
         semantic: bool = True, commands: tuple[str, ...] = (), metavar: str | None = None
         ) -> Any:
    """A config field. ``semantic=False`` fields (device, threads...) do not change the result's
    meaning and are left out of the config hash that names run directories and fit jobs.
    ``commands`` (analysis options) names the commands that take the field as a flag."""
    return field(default=default, metadata=dict(help=help, choices=choices, lo=lo, hi=hi,
                                                lo_open=lo_open, group=group, semantic=semantic,
                                                commands=commands, metavar=metavar))


@dataclass(frozen=True)
class ExperimentConfig:
    # --- data -------------------------------------------------------------------------------
    dataset: str = _opt("fashion-mnist", "dataset name (`biasvar datasets` lists them) or "
                        "imagefolder:PATH / csv:PATH", group="data")
    data_root: str = _opt("data", "folder searched first for dataset files", group="data",
                          semantic=False)
    download: bool = _opt(True, "try to download a built-in dataset that is found nowhere locally",
                          group="data", semantic=False)
    val_fraction: float = _opt(0.1, "fraction of the training set held out for validation "
                               "(stratified)", lo=0.0, hi=0.9, lo_open=True, group="data")
    test_fraction: float = _opt(0.2, "fraction held out as test set for data without its own "
                                "test split (digits, custom data)", lo=0.0, hi=0.9, lo_open=True,
                                group="data")
    split_seed: int = _opt(0, "seed of the train/validation/test split", lo=0, group="data")
    train_subset: int | None = _opt(None, "use only this many training images (stratified); "
                                    "None = all", lo=1, group="data")
    test_subset: int | None = _opt(None, "score only this many test images (stratified); "
                                   "None = all", lo=1, group="data")
    augment: str = _opt("none", "augmentation: a preset (none, light, standard, strong), knobs "
                        "(hflip, rotation, translate, scale, brightness, contrast, crop_padding, "
                        "erasing), or both: 'standard,hflip=0'", group="data")
    augment_strength: float = _opt(1.0, "multiplies every strength of the augmentation preset",
                                   lo=0.0, hi=10.0, group="data")
    image_size: int | None = _opt(None, "resize custom images to this many pixels a side",
                                  lo=4, hi=1024, group="data")
    channels: int | None = _opt(None, "convert custom images to 1 (grey) or 3 (RGB) channels",
                                choices=(1, 3), group="data")
    strict: bool = _opt(False, "stop on unreadable image files (and class folders without "
                        "images) instead of skipping them with a note", group="data",
                        semantic=False)
    stream: str = _opt("auto", "custom images: auto (read them from disk every epoch when the "
                       "decoded set would not fit the memory budget), always, or never (fail "
                       "instead)", choices=("auto", "always", "never"), group="data",
                       semantic=False)
    # --- model ------------------------------------------------------------------------------
    model: str = _opt("cnn", "model name (`biasvar models` lists them) or package.module:factory",
                      group="model")
    width: int | None = _opt(None, "hidden units (mlp) / channels of the first convolution (cnn) "
                             "/ base width (resnet)", lo=1, hi=4096, group="model")
    depth: int | None = _opt(None, "hidden layers (mlp) / convolution stages (cnn)", lo=0, hi=16,
                             group="model")
    dropout: float = _opt(0.0, "dropout probability before each hidden linear layer",
                          lo=0.0, hi=0.95, group="model")
    batchnorm: bool = _opt(True, "batch normalisation after convolutions / hidden layers",
                           group="model")
    weights: str | None = _opt(None, "start from this local state dict or biasvar checkpoint",
                               group="model")
    freeze_backbone: bool = _opt(False, "train only the classification head", group="model")
    backbone_lr: float = _opt(1.0, "learning-rate multiplier for every layer but the "
                              "classification head (discriminative fine-tuning, e.g. 0.1; 1 = "
                              "one rate for all)", lo=0.0, hi=1.0, lo_open=True, group="model")
    # --- training ---------------------------------------------------------------------------
    optimizer: str = _opt("adam", "sgd, adam or adamw", choices=("sgd", "adam", "adamw"))
    lr: float | None = _opt(None, "peak learning rate", lo=0.0, hi=10.0, lo_open=True)
    momentum: float = _opt(0.9, "SGD momentum (Nesterov)", lo=0.0, hi=0.999)
    weight_decay: float = _opt(0.0, "L2 weight decay (decoupled for adamw)", lo=0.0, hi=1.0)
    l1: float = _opt(0.0, "L1 penalty coefficient on weights (not biases)", lo=0.0, hi=1.0)
    label_smoothing: float = _opt(0.0, "label smoothing of the cross-entropy", lo=0.0, hi=0.5)
    schedule: str = _opt("cosine", "learning-rate schedule: constant, step, cosine, onecycle",
                         choices=("constant", "step", "cosine", "onecycle"))
    step_epochs: int = _opt(5, "step schedule: epochs between decays", lo=1)
    step_gamma: float = _opt(0.1, "step schedule: decay factor", lo=0.0, hi=1.0, lo_open=True)
    snapshots: int = _opt(0, "snapshot ensemble: split the epochs into this many cosine cycles "
                          "(the rate restarts at --lr) and keep the weights at the end of each "
                          "(snapshot-K.pt; Huang et al. 2017); 0 = one cosine, no snapshots",
                          lo=0, hi=100)
    epochs: int | None = _opt(None, "training epochs", lo=1, hi=10000)
    batch_size: int | None = _opt(None, "images per training step", lo=1, hi=65536)
    early_stopping: bool = _opt(False, "stop when the monitored metric stops improving and "
                                "restore the best weights")
    monitor: str = _opt("val_loss", "metric for early stopping and best.pt",
                        choices=("val_loss", "val_accuracy"))
    patience: int = _opt(5, "early stopping: epochs without improvement before stopping", lo=1)
    min_delta: float = _opt(0.0, "early stopping: smallest change that counts as improvement",
                            lo=0.0)
    seed: int = _opt(0, "seed of initialisation, data order, dropout and augmentation", lo=0)
    # --- runtime (not part of the config hash) ----------------------------------------------
    device: str = _opt("auto", "auto (CUDA when present), cpu, cuda or cuda:N", group="runtime",
                       semantic=False)
    precision: str = _opt("auto", "auto (timed), fp32 or bf16 (autocast)",
                          choices=("auto", "fp32", "bf16"), group="runtime")
    channels_last: str = _opt("auto", "auto (timed), on or off", choices=("auto", "on", "off"),
                              group="runtime")
    threads: int | None = _opt(None, "CPU threads for torch; None = torch's default",
                               lo=1, hi=1024, group="runtime", semantic=False)
    tensorboard: bool = _opt(False, "also write the per-epoch history as TensorBoard events",
                             group="runtime", semantic=False)
    loader_workers: int | None = _opt(None, "DataLoader worker processes decoding streamed "
                                      "images; None = the cores less one (at least 1); 0 = "
                                      "decode in the training process", lo=0, hi=64,
                                      group="runtime", semantic=False)

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class AnalysisConfig:
    """The options of the analyses (diagnose, curve learning|complexity, decompose): saved with
    the run as ``config.yaml``'s ``analysis:`` section and read back by ``--config``.

    ``None`` means "the command's default" (the profile's, for diagnose); see
    :func:`biasvar.analysis.resolve_analysis`.
    """

    profile: str = _opt("quick", "how much a diagnosis spends; every fit trains as configured "
                        "(no epoch cap), the profiles differ in how many fits they make: quick = "
                        "4 fits (a reference, 2 split models that are the decomposition and "
                        "the learning curve at n/2, one fit at n/4; 3 sizes, so no power-law "
                        "extrapolation); thorough = 2 seeds at 5 sizes n/16..n plus a width "
                        "curve (x0.5, x1, x2): about 12 fits",
                        choices=tuple(PROFILES.names()), group="analysis",
                        commands=("diagnose",))
    rounds: int | None = _opt(None, "models trained on resampled data for the decomposition "
                              "(at least 2; 0 = none on a complexity curve); default: diagnose "
                              "the profile's, decompose 5, complexity 0", lo=0, hi=1000,
                              group="analysis", metavar="R",
                              commands=("diagnose", "decompose", "complexity"))
    sampling: str | None = _opt(None, "how each model's training set is drawn: "
                                + ", ".join(f"{k} ({SAMPLINGS.get(k)})" for k in SAMPLINGS)
                                + "; default bootstrap", choices=tuple(SAMPLINGS.names()),
                                group="analysis", commands=("diagnose", "decompose",
                                                            "complexity"))
    fraction: float | None = _opt(None, "--sampling subsample only: fraction of the training "
                                  "set per model (default 0.5)", lo=0.0, hi=1.0, lo_open=True,
                                  group="analysis", metavar="F",
                                  commands=("diagnose", "decompose", "complexity"))
    label_noise: float = _opt(0.0, "flip this fraction of the training labels (to another "
                              "class, at random) in every fit of the analysis: label-noise and "
                              "double-descent studies", lo=0.0,
                              hi=0.99, group="analysis", metavar="F",
                              commands=("diagnose", "decompose", "complexity"))
    sizes: str = _opt("0.0625,0.125,0.25,0.5,1", "learning-curve training-set sizes: counts "
                      "(500,1000) or fractions of the training set (0.1,0.5,1)",
                      group="analysis", metavar="LIST", commands=("learning",))
    seeds: int = _opt(2, "seeds per curve point", lo=1, hi=100, group="analysis", metavar="N",
                      commands=("learning", "complexity"))
    param: str | None = _opt(None, "the knob a complexity curve turns (required): "
                             + ", ".join(f"{k} ({KNOBS.get(k).side})" for k in KNOBS),
                             choices=tuple(KNOBS.names()), group="analysis",
                             commands=("complexity",))
    values: str | None = _opt(None, "the knob's values, comma-separated (required), e.g. "
                              "8,16,32,64", group="analysis", metavar="LIST",
                              commands=("complexity",))
    side_by_side: str = _opt("auto", "train a group of fits of one architecture and set size "
                             "side by side (one batched step for all; the same results up to "
                             "rounding): auto = where a probe measures it at least 1.15x "
                             "faster than one after another on a machine not otherwise busy "
                             "(expected on a GPU, not on a CPU); on; off. With --workers 1 "
                             "and --backend local only",
                             choices=("auto", "on", "off"), group="analysis", semantic=False,
                             commands=("diagnose", "decompose", "learning", "complexity"))
    target_error: float | None = _opt(None, "best achievable error of the task, for the "
                                      "avoidable bias; default: the best-known error of a "
                                      "built-in dataset", lo=0.0, hi=1.0, group="analysis",
                                      metavar="E", semantic=False,
                                      commands=("diagnose",))

    def __post_init__(self) -> None:
        validate(self)

    def semantic(self) -> dict[str, Any]:
        """The options that change which fits an analysis trains (they name its run
        directory); the target error changes only the verdict."""
        return semantic_dict(self)


#: Per-dataset defaults for fields left at None: chosen so that a short run trains well.
#: Fashion-MNIST's are sized for the main job on 2 CPU cores: ``biasvar diagnose`` (quick) makes
#: 4 fits of the default CNN, each as long as 3 epochs over the 54,000 training images
#: (about 80 s; README, "What diagnose trains").
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "fashion-mnist": dict(epochs=3, batch_size=128, lr=2e-3),
    "mnist": dict(epochs=5, batch_size=128, lr=2e-3),
    "cifar10": dict(epochs=20, batch_size=128, lr=2e-3),
    "digits": dict(epochs=20, batch_size=32, lr=3e-3),
    "*": dict(epochs=10, batch_size=64, lr=1e-3),
}

#: Per-model defaults for width/depth.
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "linear": dict(width=None, depth=None),
    "mlp": dict(width=256, depth=2),
    "cnn": dict(width=32, depth=2),
    "resnet18": dict(width=64, depth=4),
    "resnet34": dict(width=64, depth=4),
    "*": dict(width=None, depth=None),
}


#: Per-dataset overrides of MODEL_DEFAULTS: (dataset, model) → fields. The 28×28 grey sets get
#: a CNN of half the default width (4× fewer multiply-adds; see DATASET_DEFAULTS).
DATASET_MODEL_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("fashion-mnist", "cnn"): dict(width=16),
}


_TYPES: dict[type, dict[str, Any]] = {}


def _field_type(name: str, cls: type = None) -> tuple[type, bool]:  # type: ignore[assignment]
    """(base type, optional?) of a config field, from its annotation."""
    cls = cls or ExperimentConfig
    if cls not in _TYPES:
        _TYPES[cls] = get_type_hints(cls)
    t = _TYPES[cls][name]
    args = [a for a in get_args(t) if a is not type(None)]
    if args:
        return args[0], True
    return t, False


def coerce(name: str, value: Any, cls: type | None = None) -> Any:
    """Convert a value from YAML or the command line to the field's type, or raise ConfigError."""
    base, optional = _field_type(name, cls)
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")
                         and optional):
        if optional:
            return None
        raise ConfigError(f"{name}: a value is required (got nothing).")
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1"):
                return True
            if isinstance(value, str) and value.strip().lower() in ("false", "no", "off", "0"):
                return False
            raise ValueError
        if base is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            if isinstance(value, str):
                v = float(value)
                if not v.is_integer():
                    raise ValueError
                return int(v)
            return int(value)
        if base is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if base is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        pass
    else:
        return value
    raise ConfigError(f"{name}: expected {'an integer' if base is int else 'a number' if base is float else 'true or false' if base is bool else 'text'}"
                      f", got {value!r} ({type(value).__name__}).")


def validate(cfg: ExperimentConfig) -> None:
    """Check every field's type and range; raise ConfigError naming field, value and range."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        coerced = coerce(f.name, value, type(cfg))
        if coerced != value or type(coerced) is not type(value):
            object.__setattr__(cfg, f.name, coerced)
            value = coerced
        if value is None:
            continue
        m = f.metadata
        if m.get("choices") and value not in m["choices"]:
            choices = [str(c) for c in m["choices"]]
            raise ConfigError(f"{f.name}: {value!r} is not allowed.{suggest(str(value), choices)} "
                              f"Choose one of: {', '.join(choices)}.")
        lo, hi = m.get("lo"), m.get("hi")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if value != value or value in (float("inf"), float("-inf")):
                raise ConfigError(f"{f.name}: {value!r} is not a finite number.")
            too_low = lo is not None and (value <= lo if m.get("lo_open") else value < lo)
            too_high = hi is not None and value > hi
            if too_low or too_high:
                left = "(" if m.get("lo_open") else "["
                rng = f"{left}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
                raise ConfigError(f"{f.name}: {value!r} is out of range; allowed {rng}. "
                                  f"({m['help']})")
    if isinstance(cfg, ExperimentConfig) and cfg.val_fraction + cfg.test_fraction >= 1.0:
        raise ConfigError(f"val_fraction + test_fraction: {cfg.val_fraction} + {cfg.test_fraction}"
                          " leaves no training data; keep their sum below 1.")


def field_names(cls: type | None = None) -> list[str]:
    return [f.name for f in fields(cls or ExperimentConfig)]


def from_dict(d: dict[str, Any], *, base: Any = None, source: str = "config",
              cls: type | None = None) -> Any:
    """Build a config (an :class:`ExperimentConfig`, or ``cls``) from a mapping (YAML file,
    flags), rejecting unknown keys."""
    cls = cls or (type(base) if base is not None else ExperimentConfig)
    names = field_names(cls)
    d = {k.replace("-", "_"): v for k, v in d.items()}
    for k in d:
        if k not in names:
            raise ConfigError(f"{source}: unknown option {k!r}.{suggest(k, names)} "
                              "Run `biasvar COMMAND --help` for the list.")
    values = {k: coerce(k, v, cls) for k, v in d.items()}
    return replace(base or cls(), **values)


def load_config(path: str | os.PathLike, **overrides: Any) -> ExperimentConfig:
    """Read a YAML config file (any subset of the fields), then apply ``overrides``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--config: file {str(p)!r} does not exist.")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"--config: {str(p)!r} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {str(p)!r} must hold a mapping of option: value, "
                          f"got {type(data).__name__}.")
    # a saved run config may carry extra bookkeeping under "_"-prefixed keys, and the analysis
    # options under "analysis" (read by load_analysis)
    data = {k: v for k, v in data.items() if not str(k).startswith("_") and k != "analysis"}
    cfg = from_dict(data, source=f"--config {p.name}")
    return from_dict(overrides, base=cfg, source="flag") if overrides else cfg


def load_analysis(path: str | os.PathLike | None, **overrides: Any) -> AnalysisConfig:
    """The ``analysis:`` section of a YAML config (absent: the defaults), then ``overrides``."""
    base = AnalysisConfig()
    if path is not None:
        p = Path(path)
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        section = data.get("analysis") if isinstance(data, dict) else None
        if section is not None:
            if not isinstance(section, dict):
                raise ConfigError(f"--config {p.name}: 'analysis' must hold a mapping of "
                                  f"option: value, got {type(section).__name__}.")
            base = from_dict(section, cls=AnalysisConfig, source=f"--config {p.name} analysis")
    return from_dict(overrides, base=base, source="flag") if overrides else base


def dataset_key(dataset: str) -> str:
    return dataset if dataset in DATASET_DEFAULTS else "*"


def model_defaults(model: str, dataset: str | None = None) -> dict[str, Any]:
    """The width and depth a model gets when they are left at None (on ``dataset``)."""
    return {**MODEL_DEFAULTS.get(model, MODEL_DEFAULTS["*"]),
            **DATASET_MODEL_DEFAULTS.get((dataset, model), {})}


def resolve(cfg: ExperimentConfig) -> ExperimentConfig:
    """Fill fields left at None from the dataset's and model's defaults."""
    fill: dict[str, Any] = {}
    for k, v in DATASET_DEFAULTS[dataset_key(cfg.dataset)].items():
        if getattr(cfg, k) is None:
            fill[k] = v
    for k, v in model_defaults(cfg.model, cfg.dataset).items():
        if getattr(cfg, k) is None and v is not None:
            fill[k] = v
    return replace(cfg, **fill) if fill else cfg


def config_to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def semantic_dict(cfg: Any) -> dict[str, Any]:
    """The fields that change what a run computes (not where or how fast it runs)."""
    return {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.metadata.get("semantic", True)}


def config_hash(cfg: ExperimentConfig, *, extra: Any = None, length: int = 8) -> str:
    """Short stable hash of the semantic fields (and ``extra``): names run dirs and fit jobs."""
    blob = json.dumps({"config": semantic_dict(cfg), "extra": extra}, sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def to_yaml(cfg: ExperimentConfig, analysis: AnalysisConfig | None = None, **extra: Any) -> str:
    d = config_to_dict(cfg)
    if analysis is not None:
        d["analysis"] = dataclasses.asdict(analysis)
    d.update({f"_{k}": v for k, v in extra.items()})
    return yaml.safe_dump(d, sort_keys=False)
