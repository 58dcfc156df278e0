"""Typed results: frozen dataclasses for everything results.json holds, read and validated here.

Every analysis returns a :class:`Results`; the verdict and the report take these objects, never
raw mappings. ``to_dict()`` gives exactly the results.json contract (README), ``from_dict()``
reads one back and validates it — a wrong type or a missing key is a :class:`ResultsError`
naming the key's path (``decomposition.zero_one.bias.ci95``), the value and the fix.

No torch here: ``biasvar report`` reads results without loading it.

>>> t = Term.from_dict({"value": 0.05, "ci95": [0.04, 0.06], "se_models": None})
>>> t.value, t.ci95, t.to_dict()["se_models"] is None
(0.05, (0.04, 0.06), True)
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Union

from ..errors import BiasvarError

__all__ = ["SCHEMA_VERSION", "ResultsError", "Term", "ZeroOne", "SquaredError", "CrossEntropy",
           "Ensemble", "ClassDecomposition", "Decomposition", "Band", "PowerLaw", "CurvePoint", "NoiseFloor", "Suspect",
           "LearningCurve", "ComplexityCurve", "Remedy", "Verdict", "TargetError", "LossTrend",
           "EpochsCapped", "Fits", "Reference", "Results", "load_results", "LABELS"]

#: version of the results.json layout this code writes; files without the key are version 0
#: (written before it was versioned, same layout) and still read
SCHEMA_VERSION = 1

#: the verdict's labels
LABELS = ("high_bias", "high_variance", "both", "balanced")

Scalar = Union[int, float, str]


#: the module that renders results as HTML (``biasvar.report``, which reads this module): set by
#: the ``biasvar.analysis`` package when its public names are first used, so this module never
#: imports the report that imports it
PRESENTER: Any = None


class ResultsError(BiasvarError):
    """results.json (or a mapping handed to ``from_dict``) does not hold what it should."""


def _fail(path: str, value: Any, want: str) -> ResultsError:
    shown = repr(value) if len(repr(value)) < 60 else repr(value)[:57] + "..."
    return ResultsError(f"{path}: expected {want}, got {shown}; the file was not written by "
                        "this biasvar (or was edited): rerun the analysis to rewrite it.")


def _convert(value: Any, tp: Any, path: str) -> Any:
    """``value`` checked against (and converted to) the annotation ``tp``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        rest = [a for a in args if a is not type(None)]
        if set(rest) == {int, float, str}:  # a knob's value: any scalar
            if isinstance(value, (int, float, str)) and not isinstance(value, bool):
                return value
            raise _fail(path, value, "a number or text")
        return _convert(value, rest[0], path) if len(rest) == 1 else value
    if isinstance(tp, type) and issubclass(tp, _Record):
        return tp.from_dict(value, path=path)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _fail(path, value, "a number")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _fail(path, value, "an integer")
    if tp is str:
        if isinstance(value, str):
            return value
        raise _fail(path, value, "text")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _fail(path, value, "true or false")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _fail(path, value, "a list")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise _fail(path, value, f"a list of {len(args)}")
            return tuple(_convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_convert(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise _fail(path, value, "a mapping")
        _, vt = typing.get_args(tp) or (str, Any)
        return {str(k): _convert(v, vt, f"{path}.{k}") for k, v in value.items()}
    return value


def _plain(value: Any) -> Any:
    """JSON-ready: records → dicts, tuples → lists."""
    if isinstance(value, _Record):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class _Record:
    """Base of the result records: ``from_dict``/``to_dict`` driven by the annotations.

    A field whose metadata has ``omit=True`` is left out of ``to_dict`` when it is None (an
    analysis that was not run); other None fields are written as null. ``extra`` (when a record
    has it) keeps keys this version does not know, so reading and writing loses nothing."""

    _hints: ClassVar[dict[str, dict[str, Any]]] = {}

    @classmethod
    def _types(cls) -> dict[str, Any]:
        key = cls.__qualname__
        if key not in _Record._hints:
            _Record._hints[key] = typing.get_type_hints(cls)
        return _Record._hints[key]

    @classmethod
    def from_dict(cls, d: Any, *, path: str = "") -> Any:
        where = path or cls.__name__
        if isinstance(d, cls):
            return d
        if not isinstance(d, dict):
            raise _fail(where, d, "a mapping")
        hints = cls._types()
        values: dict[str, Any] = {}
        names = set()
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            names.add(f.name)
            if not f.init or f.name == "extra":
                continue
            sub = f"{path}.{f.name}" if path else f.name
            if f.name in d:
                values[f.name] = _convert(d[f.name], hints[f.name], sub)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ResultsError(f"{sub}: missing; the file was not written by this biasvar "
                                   "(or was edited): rerun the analysis to rewrite it.")
        if "extra" in names:
            values["extra"] = {k: v for k, v in d.items() if k not in names}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if not f.metadata.get("write", True):
                continue
            v = getattr(self, f.name)
            if f.name == "extra":
                out.update(_plain(v))
                continue
            if v is None and f.metadata.get("omit"):
                continue
            out[f.name] = _plain(v)
        return out


def _omit() -> Any:
    return field(default=None, metadata={"omit": True})


# ----------------------------------------------------------------------------- decomposition

@dataclass(frozen=True)
class Term(_Record):
    """One decomposition term: its value over the test points, a 95 % bootstrap interval over
    test points, and the jackknife standard error over the R models (None where undefined)."""

    value: float
    ci95: tuple[float, float]
    se_models: float | None = None


@dataclass(frozen=True)
class ZeroOne(_Record):
    """0-1 loss (Domingos 2000): loss = bias + net_variance exactly; variance is unsigned."""

    loss: Term
    bias: Term
    variance: Term
    net_variance: Term


@dataclass(frozen=True)
class SquaredError(_Record):
    """Squared error on probabilities (Yang et al. 2020): risk = bias2 + variance."""

    risk: Term
    bias2: Term
    variance: Term


@dataclass(frozen=True)
class CrossEntropy(_Record):
    """Cross-entropy (Yang et al. 2020): risk = bias + variance; plus a jackknife variance."""

    risk: Term
    bias: Term
    variance: Term
    variance_jackknife: Term


@dataclass(frozen=True)
class Ensemble(_Record):
    """The ensemble that averages the R models' log-probabilities: its test error and CE."""

    error: float
    cross_entropy: float


@dataclass(frozen=True)
class ClassDecomposition(_Record):
    """Per-class means of the point-wise terms (plain numbers, no intervals)."""

    n: int
    zero_one: dict[str, float]
    mse: dict[str, float]
    cross_entropy: dict[str, float]


@dataclass(frozen=True)
class Decomposition(_Record):
    """Bias and variance of R models retrained on resampled data, scored on one test set."""

    rounds: int
    sampling: str
    n_test: int
    zero_one: ZeroOne
    mse: SquaredError
    cross_entropy: CrossEntropy
    n_train_per_model: list[int] | None = None
    label_noise: float = 0.0
    ensemble: Ensemble | None = _omit()
    per_class: dict[str, ClassDecomposition] | None = _omit()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def variance_share(self) -> float | None:
        """Share of the 0-1 loss that is net variance."""
        loss = self.zero_one.loss.value
        return self.zero_one.net_variance.value / loss if loss else None


# ----------------------------------------------------------------------------------- curves

@dataclass(frozen=True)
class Band(_Record):
    """Errors at each curve point (L): mean over seeds, a 95 % interval, and every seed's value
    (``values`` is L × S)."""

    mean: list[float]
    lo: list[float]
    hi: list[float]
    values: list[list[float]] = field(default_factory=list)


@dataclass(frozen=True)
class PowerLaw(_Record):
    """err(n) ≈ a·n^(−b) + c fitted to the validation errors; None fields when it failed."""

    ok: bool
    note: str = ""
    a: float | None = None
    b: float | None = None
    c: float | None = None
    n_max: int | None = None
    err_at_n_max: float | None = None
    err_2x: float | None = None
    err_10x: float | None = None
    gain_2x: float | None = None
    rmse: float | None = None
    #: 95 % intervals [lo, hi] of err_2x, err_10x and gain_2x: percentiles of the same fit
    #: repeated on ``resamples`` resamples of the seeds at each size
    err_2x_ci: list[float] | None = None
    err_10x_ci: list[float] | None = None
    gain_2x_ci: list[float] | None = None
    resamples: int = 0
    #: False when the fit is too poor or its asymptote sits at a bound: err_2x/err_10x/gain_2x
    #: are then None and ``note`` says why
    extrapolates: bool = True


@dataclass(frozen=True)
class CurvePoint(_Record):
    """One fit of a learning curve: its size and seed, its errors, and how long it trained
    (optimizer ``steps``, ``epochs`` over its own images, and whether it ``stopped_early``)."""

    size: int
    seed: int
    train_error: float
    val_error: float
    steps: int
    epochs: int
    stopped_early: bool = False
    fit: str = ""


@dataclass(frozen=True)
class LearningCurve(_Record):
    """Train and validation error against the training-set size (nested stratified subsets).

    ``train_error``/``val_error`` summarise the fits at each size (their seeds may differ in
    number from size to size); ``points`` lists every fit with its optimizer steps; ``policy``
    says how the optimisation was held fixed across sizes."""

    sizes: list[int]
    seeds: list[int]
    train_error: Band
    val_error: Band
    power_law: PowerLaw | None = None
    points: list[CurvePoint] = field(default_factory=list)
    policy: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ComplexityCurve(_Record):
    """Train and validation error against one knob's values (the knob table: biasvar.knobs)."""

    param: str
    values: list[Scalar]
    seeds: list[int]
    train_error: Band
    val_error: Band
    best_value: Scalar | None = None
    reference_value: Scalar | None = None
    decomposition: list[Decomposition | None] | None = _omit()
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------- verdict

@dataclass(frozen=True)
class Remedy(_Record):
    """One ranked remedy: what to run, which side it addresses, why, and the predicted error
    reduction where one was measured (a fraction; None when not measured)."""

    rank: int
    name: str
    action: str
    addresses: str
    evidence: str
    predicted_gain: float | None = None


@dataclass(frozen=True)
class Verdict(_Record):
    """Label (high_bias, high_variance, both, balanced), evidence, caveats, ranked remedies."""

    label: str
    evidence: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)
    remedies: list[Remedy] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise _fail("verdict.label", self.label, f"one of {', '.join(LABELS)}")


# ------------------------------------------------------------------------------ the run

@dataclass(frozen=True)
class Suspect(_Record):
    """A training image whose label is likely wrong: its row in the training split, its file
    (custom data) and the given and predicted class; ``quality`` is cleanlab's label quality
    score (lower: more likely mislabelled)."""

    row: int
    given: str
    predicted: str
    quality: float
    file: str | None = None


@dataclass(frozen=True)
class NoiseFloor(_Record):
    """The label-noise rate of the training labels, estimated by confident learning from
    out-of-sample predicted probabilities (each image scored by models that did not train on
    it), with a 95 % interval (``interval`` says over what); ``suspects`` are the images most
    likely mislabelled, best first (all of them in ``csv``, a file next to results.json)."""

    rate: float
    lo: float
    hi: float
    n: int
    method: str = ""
    interval: str = ""
    n_issues: int | None = None
    suspects: list[Suspect] = field(default_factory=list)
    csv: str | None = None


@dataclass(frozen=True)
class TargetError(_Record):
    """The best achievable error the avoidable bias is measured against, and where it is from."""

    value: float
    source: str = ""


@dataclass(frozen=True)
class LossTrend(_Record):
    """Was the training loss still falling at the end of the reference fit?"""

    value: bool
    relative_drop: float = 0.0
    evidence: str = ""


@dataclass(frozen=True)
class EpochsCapped(_Record):
    """A diagnose profile trained ``fits`` epochs of the ``configured`` ones."""

    fits: int
    configured: int


@dataclass(frozen=True)
class Fits(_Record):
    """How many fit jobs the analysis asked for, trained and found already stored."""

    planned: int = 0
    trained: int = 0
    reused: int = 0


@dataclass(frozen=True)
class Reference(_Record):
    """The reference fit: metrics per split (as in metrics.json), its per-epoch history and its
    per-step training loss and learning rate (steps.csv's rows: step, epoch, loss, lr)."""

    train: dict[str, Any] | None = None
    val: dict[str, Any] | None = None
    test: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split in ("train", "val", "test"):
            m = getattr(self, split)
            if m is not None and "error" in m:
                _convert(m["error"], float, f"reference.{split}.error")

    def error(self, split: str) -> float | None:
        """The split's error (1 − accuracy), or None when it was not scored."""
        m = getattr(self, split)
        if not m:
            return None
        if m.get("error") is not None:
            return float(m["error"])
        return 1.0 - float(m["accuracy"]) if m.get("accuracy") is not None else None


@dataclass(frozen=True)
class Results(_Record):
    """What one analysis (diagnose, curve, decompose) measured and concluded: results.json.

    Printing it gives the console summary; in Jupyter it displays as its part of the report;
    ``report()`` writes report.html into its run directory. Blocks that were not run are None.
    """

    command: str = "diagnose"
    schema_version: int = 0
    dataset: str | None = _omit()
    model: str | None = _omit()
    source: str | None = _omit()
    classes: list[str] | None = _omit()
    config: dict[str, Any] | None = _omit()
    analysis: dict[str, Any] | None = _omit()
    profile: str | None = _omit()
    profile_note: str | None = _omit()
    epochs_capped: EpochsCapped | None = _omit()
    reference: Reference | None = _omit()
    target_error: TargetError | None = _omit()
    avoidable_bias: float | None = _omit()
    variance_gap: float | None = _omit()
    train_loss_still_falling: LossTrend | None = _omit()
    learning_curve: LearningCurve | None = _omit()
    complexity_curve: ComplexityCurve | None = _omit()
    decomposition: Decomposition | None = _omit()
    noise_floor: NoiseFloor | None = _omit()
    verdict: Verdict | None = _omit()
    fits: Fits | None = _omit()
    environment: dict[str, Any] | None = _omit()
    timing: dict[str, Any] | None = _omit()
    #: the path of the run directory this run was derived from (a tuning or remedy run made
    #: from another); absent in results.json when None, so older files read unchanged
    derived_from: str | None = _omit()
    extra: dict[str, Any] = field(default_factory=dict)
    #: the run directory it was read from or written to (not part of results.json)
    run_dir: Path | None = field(default=None, compare=False, metadata={"write": False})

    def __post_init__(self) -> None:
        if self.schema_version > SCHEMA_VERSION:
            raise ResultsError(f"schema_version: {self.schema_version} was written by a newer "
                               f"biasvar (this one reads up to {SCHEMA_VERSION}); upgrade "
                               "biasvar to read it.")

    @classmethod
    def from_dict(cls, d: Any, *, path: str = "", run_dir: Path | None = None) -> Results:
        r = super().from_dict(d, path=path)
        return dataclasses.replace(r, run_dir=Path(run_dir)) if run_dir is not None else r

    # --- derived figures ------------------------------------------------------------------
    @property
    def train_error(self) -> float | None:
        return self.reference.error("train") if self.reference else None

    @property
    def val_error(self) -> float | None:
        return self.reference.error("val") if self.reference else None

    @property
    def test_error(self) -> float | None:
        return self.reference.error("test") if self.reference else None

    def replace(self, **changes: Any) -> Results:
        return dataclasses.replace(self, **changes)

    # --- showing itself -------------------------------------------------------------------
    def summary(self, *, verbose: bool = False) -> str:
        """The console summary the CLI prints: the verdict, the figures it rests on and the top
        remedies (``verbose``: every table and sentence too)."""
        from ._console import format_results

        return format_results(self, verbose=verbose)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str | None:
        """Jupyter shows the run's part of the report (the same sections and plots)."""
        return PRESENTER.render_fragment(self) if PRESENTER is not None else None

    def report(self) -> Path:
        """Write (or refresh) report.html in the run directory; returns its path."""
        if self.run_dir is None:
            raise ResultsError("report: these results have no run directory; save them with "
                               "save_results(results, DIR) first.")
        if PRESENTER is None:
            raise ResultsError("report: the report module is not loaded; import biasvar.report "
                               "(or use biasvar.Results, which does).")
        return PRESENTER.render_report(self.run_dir)


def load_results(path: str | Path) -> Results:
    """Read and validate ``results.json`` (a file, or a run directory holding one)."""
    p = Path(path)
    f = p / "results.json" if p.is_dir() else p
    if not f.is_file():
        raise ResultsError(f"RUN_DIR: {str(p)!r} holds no results.json; point at the run "
                           "directory of a finished `biasvar diagnose`, `curve` or `decompose`.")
    try:
        d = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultsError(f"{f}: not readable as JSON ({e}); rerun the analysis to rewrite "
                           "it.") from None
    try:
        return Results.from_dict(d, run_dir=f.parent)
    except ResultsError as e:
        raise ResultsError(f"{f}: {e}") from None


def save_results(results: Results, run_dir: str | Path) -> Results:
    """Write ``results`` atomically as ``run_dir/results.json``; returns them with run_dir set."""
    from .._io import atomic_write_json

    d = Path(run_dir)
    r = dataclasses.replace(results, schema_version=SCHEMA_VERSION, run_dir=d)
    atomic_write_json(d / "results.json", r.to_dict())
    return r


def finite(x: Any) -> bool:
    """True for a real, finite number (not a bool, not None, not NaN)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
