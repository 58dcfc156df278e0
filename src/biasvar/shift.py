"""Error under distribution shift: a trained model (or ensemble) on corrupted copies of its test
set, and test-time batch-norm re-estimation (AdaBN) as a remedy.

``biasvar shift RUN_DIR`` (and :func:`shift`) scores the run's model — a ``biasvar train`` run,
or every member of a ``biasvar ensemble`` run — on the test set corrupted in the style of
CIFAR-10-C (Hendrycks & Dietterich 2019) at five severities: Gaussian noise, Gaussian blur,
contrast, brightness, rotation, translation and occlusion (:data:`CORRUPTIONS`; the magnitudes
below are relative to the image size, so 8-, 28- and 32-pixel images are hit alike). Every
corruption is seeded by (corruption, severity, ``seed``): a rerun is identical.

With an ensemble's K ≥ 2 members the test loss at each severity is also decomposed into bias and
variance (0-1 and cross-entropy, :func:`biasvar.analysis._formulas.decompose`, ``seed``
sampling for deep members), so the report shows which term grows with the shift.

``adabn=True`` (``--adabn``) also scores each model after re-estimating its batch-norm
statistics on the corrupted test images themselves — unlabelled, as at test time (Li et al.
2016, "Revisiting batch normalization for practical domain adaptation"): each batch-norm
layer's running mean and variance become those of its input over those images, layer by layer
(:func:`adapt_batchnorm`); nothing else changes.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._outcome import CommandResults
from .errors import BiasvarError, ConfigError, DataError, unknown_name
from .train._bn import adapt_batchnorm

__all__ = ["shift", "corrupt", "adapt_batchnorm", "adapt_few_shot", "CORRUPTIONS", "ShiftResults"]

SHIFT_FILE = "shift.json"
SCHEMA_VERSION = 1

# severity 1..5 → magnitude
_NOISE = (0.04, 0.08, 0.12, 0.18, 0.26)          # std of added noise (images in [0, 1])
_BLUR = (0.5, 0.75, 1.0, 1.5, 2.0)               # std in pixels at 28 px (scaled with size)
_CONTRAST = (0.6, 0.45, 0.3, 0.2, 0.1)           # factor towards each image's mean
_BRIGHT = (0.1, 0.2, 0.3, 0.4, 0.5)              # added to every pixel (clipped)
_ROTATE = (10.0, 20.0, 30.0, 45.0, 60.0)         # degrees, random sign per image
_SHIFT = (0.05, 0.1, 0.15, 0.2, 0.25)            # fraction of the side, random direction
_OCCLUDE = (0.2, 0.3, 0.4, 0.5, 0.6)             # side of a black square, fraction of the side


def _noise(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    return x + torch.randn(x.shape, generator=g) * _NOISE[s - 1]


def _blur(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    sigma = _BLUR[s - 1] * x.shape[-1] / 28
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def _contrast(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _CONTRAST[s - 1] + mean


def _brightness(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    return x + _BRIGHT[s - 1]


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _rotation(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    sign = torch.randint(0, 2, (n,), generator=g).float() * 2 - 1
    a = sign * math.radians(_ROTATE[s - 1])
    cos, sin = torch.cos(a), torch.sin(a)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    return _affine(x, theta)


def _translation(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    angle = torch.rand(n, generator=g) * 2 * math.pi
    d = 2 * _SHIFT[s - 1]  # affine_grid's coordinates span 2 per side
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2], theta[:, 1, 2] = d * torch.cos(angle), d * torch.sin(angle)
    return _affine(x, theta)


def _occlusion(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    side = max(1, round(_OCCLUDE[s - 1] * min(h, w)))
    top = torch.randint(0, h - side + 1, (n,), generator=g)
    left = torch.randint(0, w - side + 1, (n,), generator=g)
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    mask = ((rows >= top.view(n, 1, 1)) & (rows < (top + side).view(n, 1, 1))
            & (cols >= left.view(n, 1, 1)) & (cols < (left + side).view(n, 1, 1)))
    return x.masked_fill(mask.unsqueeze(1), 0.0)


#: name → f(images in [0, 1] as (N, C, H, W) float, severity 1..5, generator)
CORRUPTIONS: dict[str, Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]] = {
    "gaussian_noise": _noise, "blur": _blur, "contrast": _contrast, "brightness": _brightness,
    "rotation": _rotation, "translation": _translation, "occlusion": _occlusion}
SEVERITIES = (1, 2, 3, 4, 5)


def corrupt(x: torch.Tensor, name: str, severity: int, *, seed: int = 0) -> torch.Tensor:
    """A corrupted copy of uint8 images (N, C, H, W), seeded by (name, severity, seed)."""
    if name not in CORRUPTIONS:
        raise unknown_name("corruption", name, tuple(CORRUPTIONS))
    if severity not in SEVERITIES:
        raise ConfigError(f"severity: {severity!r} is out of range; allowed 1..5.")
    g = torch.Generator().manual_seed(
        int(seed) * 1009 + list(CORRUPTIONS).index(name) * 101 + int(severity))
    out = CORRUPTIONS[name](x.float() / 255.0, int(severity), g)
    return (out.clamp(0, 1) * 255.0).round().to(torch.uint8)


# -- few-shot fine-tuning ----------------------------------------------------------------------

def few_shot_rows(y: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(labelled, held-out) rows: ``k`` per class drawn at random (seeded), the rest held out.
    Every class needs more than ``k`` images."""
    rng = np.random.default_rng(seed)
    labelled = []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        if len(rows) <= k:
            raise ConfigError(f"few_shot: class {int(c)} has {len(rows)} images in the shifted "
                              f"set; {k} labelled per class leave none to score. Use a smaller "
                              "--few-shot.")
        labelled.append(rng.choice(rows, size=k, replace=False))
    lab = np.sort(np.concatenate(labelled))
    rest = np.setdiff1d(np.arange(len(y)), lab)
    return lab, rest


def adapt_few_shot(model: nn.Module, data: Any, rows: np.ndarray, *, epochs: int = 20,
                   lr: float = 1e-4, seed: int = 0, device: str | torch.device = "cpu"
                   ) -> nn.Module:
    """A copy of ``model`` fine-tuned on ``rows`` of ``data``'s test split (their labels), all
    weights, full batch, Adam at ``lr`` for ``epochs`` steps; batch norm and dropout in eval
    mode (a handful of images cannot re-estimate statistics)."""
    from .train._fit import normalizer

    torch.manual_seed(seed)
    device = torch.device(device)
    m = copy.deepcopy(model).to(device).eval()
    scale, shift_ = normalizer(data, device)
    idx = torch.as_tensor(rows, dtype=torch.int64)
    x = data.test.x[idx].to(device).float() * scale - shift_
    y = data.test.y[idx].to(device)
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=lr)
    for _ in range(epochs):
        opt.zero_grad()
        F.cross_entropy(m(x).float(), y).backward()
        opt.step()
    return m.eval()


# -- the command --------------------------------------------------------------------------------

class ShiftResults(CommandResults):
    """What ``shift`` measured (the dict written to ``shift.json``) and where (``run_dir``: the
    output folder, default RUN_DIR/shift)."""


def _load_models(run_dir: Path) -> tuple[Any, Any, list[nn.Module], str]:
    """(config, data, models, kind) of a train run (one model) or an ensemble run (members)."""
    from .config import load_config, resolve
    from .data import load_data
    from .rundir import check_same_run

    if not (run_dir / "config.yaml").is_file():
        raise BiasvarError(f"RUN_DIR: {str(run_dir)!r} has no config.yaml; point at the run "
                           "directory of a `biasvar train` or `biasvar ensemble`.")
    cfg = resolve(load_config(run_dir / "config.yaml"))
    data = load_data(cfg)
    if getattr(data, "streamed", False):
        raise DataError(f"RUN_DIR: {str(run_dir)!r} streams its images from disk; shift "
                        "corrupts an in-memory test set (run with --stream never).")
    check_same_run(run_dir, cfg, data.indices, what="shift")
    if (run_dir / "ensemble.json").is_file():
        from .runs import load_ensemble

        ens = load_ensemble(run_dir, data)
        if not hasattr(ens, "members"):  # the snapshots' weights averaged: one model
            return cfg, data, [ens], "model"
        return cfg, data, list(ens.members), "ensemble"
    if not (run_dir / "last.pt").is_file():
        raise BiasvarError(f"RUN_DIR: {str(run_dir)!r} holds no trained model (last.pt) and no "
                           "ensemble.json; point at a `biasvar train` or `biasvar ensemble` run.")
    from .runs import load_trained

    which = "best" if cfg.early_stopping else "last"
    model, _ = load_trained(cfg, data, run_dir / f"{which}.pt", "the model in config.yaml")
    return cfg, data, [model], "model"


def _score(models: Sequence[nn.Module], data: Any, y: np.ndarray, classes: list[str],
           seed: int, device: str) -> dict[str, Any]:
    from .analysis._formulas import decompose
    from .models._ensemble import combine_log_probs
    from .train import predict

    lp = np.stack([predict(m, data, "test", device=device) for m in models])
    rows = np.arange(len(y))
    errors = (lp.argmax(2) != y[None]).mean(1)
    out: dict[str, Any] = {"error": float(errors.mean()),
                           "cross_entropy": float(-lp[:, rows, y].mean())}
    if len(models) > 1:
        ens = combine_log_probs(lp, "logprob")
        dec = decompose(lp.astype(np.float32), y, classes=classes, sampling="seed", n_boot=200,
                        seed=seed)
        out.update(
            member_errors=[float(e) for e in errors],
            ensemble_error=float((ens.argmax(1) != y).mean()),
            zero_one={k: dec["zero_one"][k]["value"] for k in ("loss", "bias", "net_variance")},
            cross_entropy_terms={k: dec["cross_entropy"][k]["value"]
                                 for k in ("risk", "bias", "variance")})
    return out


def _parse(values: str | Sequence[Any] | None, allowed: Sequence[Any], name: str,
           cast: Callable[[str], Any]) -> list[Any]:
    if values is None:
        return list(allowed)
    items = [v.strip() for v in values.split(",") if v.strip()] if isinstance(values, str) \
        else list(values)
    out = []
    for v in items:
        try:
            v = cast(v)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: {v!r} is not one of {', '.join(map(str, allowed))}.") \
                from None
        if v not in allowed:
            if name == "corruptions":
                raise unknown_name("corruption", v, tuple(allowed))
            raise ConfigError(f"{name}: {v!r} is out of range; allowed "
                              f"{', '.join(map(str, allowed))}.")
        if v not in out:
            out.append(v)
    if not out:
        raise ConfigError(f"{name}: empty; give at least one of {', '.join(map(str, allowed))}.")
    return out


def parse_label_map(spec: str | Path | dict | None) -> dict[str, str]:
    """``a=b,c=d``, a YAML/JSON file of {target class: model class}, or a dict."""
    if spec is None:
        return {}
    if isinstance(spec, dict):
        return {str(k): str(v) for k, v in spec.items()}
    text = str(spec)
    if Path(text).is_file():
        import yaml

        try:
            data = yaml.safe_load(Path(text).read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError(f"label_map: {text!r} is not YAML/JSON ({str(e).splitlines()[0]})"
                              "; write one line 'target_class: model_class' per class.") from None
        if not isinstance(data, dict):
            raise ConfigError(f"label_map: {text!r} holds no mapping; write one line "
                              "'target_class: model_class' per class.")
        return {str(k): str(v) for k, v in data.items()}
    out = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        if "=" not in item:
            raise ConfigError(f"label_map: {item!r} is not target=model; write e.g. "
                              "'cat=3,dog=5', or give a YAML file.")
        a, b = (x.strip() for x in item.split("=", 1))
        out[a] = b
    return out


def _target(data: Any, cfg: Any, target: str, label_map: dict[str, str]) -> tuple[Any, list[str]]:
    """The run's data bundle with its test split replaced by ``target``'s test images (at the
    run's image size and channels, normalised as the run was), labels mapped to the run's
    classes; and notes."""
    from .data import ImageData, evaluation_images

    c, h, w = (int(v) for v in data.input_shape)
    tcfg = replace(cfg, dataset=target, image_size=h, channels=c, stream="never")
    images, tnotes = evaluation_images(tcfg)
    src = {n: i for i, n in enumerate(data.classes)}
    names = list(images.classes)
    missing = [n for n in names if label_map.get(n, n) not in src]
    if missing:
        raise ConfigError(
            f"label_map: the target's class{'es' if len(missing) > 1 else ''} "
            f"{', '.join(repr(m) for m in missing)} map{'' if len(missing) > 1 else 's'} to no "
            f"class of the model (its classes: {', '.join(data.classes)}); add "
            f"{missing[0]}=<model class> to --label-map.")
    unused = [k for k in label_map if k not in names]
    if unused:
        raise ConfigError(f"label_map: {', '.join(repr(u) for u in unused)} is not a class of "
                          f"{target} (its classes: {', '.join(names)}).")
    lut = torch.tensor([src[label_map.get(n, n)] for n in names], dtype=torch.int64)
    x = images.x
    if tuple(x.shape[1:]) != (c, h, w):
        raise DataError(f"target: {target}'s images are {tuple(x.shape[1:])}, the model's "
                        f"{(c, h, w)}; they could not be converted.")
    test = ImageData(x=x, y=lut[images.y], classes=list(data.classes))
    notes = [f"target {target}: {len(test)} test images"
             + (f", labels mapped {', '.join(f'{k}→{v}' for k, v in label_map.items())}"
                if label_map else "")] + list(tnotes)
    return replace(data, test=test), notes


def shift(run_dir: str | Path, *, corruptions: str | Sequence[str] | None = None,
          severities: str | Sequence[int] | None = None, adabn: bool = False,
          target: str | None = None, label_map: str | Path | dict | None = None,
          few_shot: int | None = None, out: str | Path | None = None, seed: int = 0,
          device: str | None = None, report: bool = True, progress: bool = True
          ) -> ShiftResults:
    """Score the run's model(s) on its test set under each corruption and severity (and, with
    ``adabn``, after AdaBN); writes ``shift.json`` (and ``report.html``) into ``out``
    (default ``RUN_DIR/shift``). ``device``: where the models run (default: the run's
    ``device`` setting; auto = CUDA when present). See the module's docstring."""
    from ._io import atomic_write_json
    from .train import resolve_device

    t0 = time.perf_counter()
    if few_shot is not None and (not isinstance(few_shot, int) or isinstance(few_shot, bool)
                                 or few_shot < 1):
        raise ConfigError(f"few_shot: {few_shot!r}; give a number of labelled images per "
                          "class, at least 1 (e.g. 5).")
    if label_map is not None and target is None:
        raise ConfigError("label_map: maps a --target dataset's classes; add --target or drop "
                          "--label-map.")
    # with a --target dataset and no --corruptions, only the target is scored
    # "none": only the test set as it is (with --adabn / --few-shot: a test set that is itself
    # the shifted one, e.g. your own data's test folder)
    names = [] if (target is not None and corruptions is None) or corruptions == "none" else \
        _parse(corruptions, tuple(CORRUPTIONS), "corruptions", str)
    sevs = _parse(severities, SEVERITIES, "severities", int)
    lmap = parse_label_map(label_map)
    run_dir = Path(run_dir)
    cfg, data, models, kind = _load_models(run_dir)
    dev = str(resolve_device(device or cfg.device))
    notes: list[str] = []
    tdata = None
    if target is not None:
        tdata, notes = _target(data, cfg, target, lmap)
    if adabn:  # refuse a model without batch norm before anything is written
        adapt_batchnorm(models[0], replace(data, test=data.test.subset(np.arange(2))),
                        device=dev)
    y = data.test.y.numpy()
    classes = list(data.classes)
    rows: list[dict[str, Any]] = []
    clean_only = not names and tdata is None  # few-shot then adapts to the test set itself

    def add(corruption: str, severity: int, d: Any) -> None:
        yd = d.test.y.numpy()
        row = {"corruption": corruption, "severity": severity, "n": int(len(yd)),
               **_score(models, d, yd, classes, seed, dev)}
        if adabn:
            row["adabn"] = _score([adapt_batchnorm(m, d, device=dev) for m in models], d, yd,
                                  classes, seed, dev)
        if few_shot and (corruption != "none" or clean_only):
            lab, rest = few_shot_rows(yd, few_shot, seed)
            held = replace(d, test=d.test.subset(rest))
            lr = float(cfg.lr or 1e-3) * 0.1
            tuned = [adapt_few_shot(m, d, lab, lr=lr, seed=seed, device=dev) for m in models]
            row["few_shot"] = {"k": few_shot, "labelled": int(len(lab)), "scored": int(len(rest)),
                               "before": _score(models, held, yd[rest], classes, seed, dev),
                               "after": _score(tuned, held, yd[rest], classes, seed, dev)}
        rows.append(row)

    add("none", 0, data)
    if tdata is not None:
        add(f"target:{target}", 0, tdata)
    if progress:
        print(f"{data.summary()}\nshift: {len(models)} model{'s' if len(models) > 1 else ''}, "
              f"{len(names)} corruption{'s' if len(names) != 1 else ''} × {len(sevs)} "
              f"severities" + (", AdaBN" if adabn else "")
              + (f", few-shot {few_shot}/class" if few_shot else ""), flush=True)
    for name in names:
        t1 = time.perf_counter()
        for s in sevs:
            xc = corrupt(data.test.x, name, s, seed=seed)
            add(name, s, replace(data, test=replace(data.test, x=xc)))
        if progress:
            print(f"  {name}: done in {time.perf_counter() - t1:.0f} s", flush=True)
    doc = {"schema_version": SCHEMA_VERSION, "command": "shift", "run_dir": str(run_dir),
           "dataset": cfg.dataset, "model": cfg.model, "kind": kind, "models": len(models),
           "n_test": int(len(y)), "seed": seed, "corruptions": names, "severities": sevs,
           "target": target, "label_map": lmap or None, "notes": notes,
           "few_shot": few_shot,
           "adabn": adabn, "device": dev, "rows": rows,
           "timing": {"seconds": round(time.perf_counter() - t0, 1)}}
    out_dir = Path(out) if out else run_dir / "shift"
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / SHIFT_FILE, doc)
    page = None
    if report:
        from .report._shift import render_shift_report

        page = render_shift_report(out_dir)
    return ShiftResults(doc, out_dir, page, _summary(doc, out_dir, page))


def _summary(doc: dict[str, Any], out: Path, page: Path | None) -> list[str]:
    key = "ensemble_error" if doc["models"] > 1 else "error"
    what = "the ensemble's" if doc["models"] > 1 else "the model's"
    clean = doc["rows"][0]
    lines = [f"shift: {what} test error under each corruption, severity "
             f"{', '.join(map(str, doc['severities']))} (clean: {100 * clean[key]:.2f}%)"
             if doc["corruptions"] else
             f"shift: {what} test error (its own test set: {100 * clean[key]:.2f}%"
             + (f" [{100 * clean['adabn'][key]:.2f}%]" if doc["adabn"] else "") + ")"
             + ("; after AdaBN in brackets" if doc["adabn"] else "")]
    for note in doc.get("notes") or []:
        lines.append(f"  note: {note}")
    for r in doc["rows"]:
        if r["corruption"].startswith("target:"):
            lines.append(f"  {r['corruption']}: {100 * r[key]:.2f}% of {r['n']} images"
                         + (f" [{100 * r['adabn'][key]:.2f}% after AdaBN]" if doc["adabn"]
                            else ""))
    for name in doc["corruptions"]:
        cells = []
        for r in doc["rows"]:
            if r["corruption"] != name:
                continue
            c = f"{100 * r[key]:.1f}"
            if doc["adabn"]:
                c += f" [{100 * r['adabn'][key]:.1f}]"
            cells.append(c)
        lines.append(f"  {name:<15} " + "  ".join(cells))
    if doc.get("few_shot"):
        lines.append(f"  few-shot ({doc['few_shot']} labelled per class; error on the other "
                     "images, before → after):")
        for r in doc["rows"]:
            fs = r.get("few_shot")
            if fs:
                lines.append(f"    {r['corruption']:<15} {r['severity']}  "
                             f"{100 * fs['before'][key]:.1f}% → {100 * fs['after'][key]:.1f}%")
    lines.append(f"  results: {out / SHIFT_FILE}")
    if page is not None:
        lines.append(f"  report: {page}")
    return lines
