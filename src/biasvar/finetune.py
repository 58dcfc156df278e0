"""Transfer learning, measured: fine-tuned against from-scratch at each training-set size.

``biasvar finetune --weights FILE|RUN_DIR`` (and :func:`finetune`) starts from local weights —
a torchvision-style state dict or a biasvar checkpoint / run directory trained on another
dataset (nothing is downloaded) — and at each size of ``sizes`` (nested, stratified subsets of
the training set) trains, for each of ``seeds`` seeds:

- **from scratch**: the configured model on the subset;
- **fine-tuned**, in two stages: (1) the pretrained backbone frozen, a new head trained for
  ``head_epochs`` epochs; (2) everything unfrozen from there, the backbone at
  ``backbone_lr`` × the learning rate (discriminative rates), for the configured epochs.

The head is always replaced (its weights re-initialised) even when the class count matches:
the source's classes are not the target's. Where the weights come from a biasvar run the model's
architecture (model, width, depth, batch norm) is taken from that run, and an image size or
channel count that differs from the source's is adapted (``--image-size``, ``--channels``: the
images are resized / converted) and said; a state dict that does not fit names the layers.

At each size the seeds' test errors give a mean and a 95 % t-interval over seeds, and the seeds'
models are decomposed (``seed`` sampling: same subset, new initialisation and order) into bias
and variance, for both arms: the learning curve of both.
"""
from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ._outcome import CommandResults
from .config import ExperimentConfig
from .errors import ConfigError

__all__ = ["finetune", "FinetuneResults", "hub_weights"]

FINETUNE_FILE = "finetune.json"
BACKBONE_FILE = "backbone.pt"
SCHEMA_VERSION = 1
ARCH = ("model", "width", "depth", "batchnorm")


class FinetuneResults(CommandResults):
    """What ``finetune`` measured (the dict written to ``finetune.json``) and where."""


def hub_weights(name: str) -> Path:
    """The local file of a torchvision model's pretrained weights (``resnet18`` …): the file
    torchvision would download, looked for in the torch hub cache (``$TORCH_HOME/hub/
    checkpoints``). Nothing is downloaded; a missing file is a ConfigError saying which file to
    put where."""
    import torch

    hub = Path(torch.hub.get_dir()) / "checkpoints"
    try:
        import torchvision

        url = torchvision.models.get_model_weights(name).DEFAULT.url
    except (ValueError, KeyError, AttributeError):
        raise ConfigError(f"weights: {name!r} is neither a file nor a torchvision model name "
                          "(resnet18, resnet34, …); give a local state dict or a biasvar run "
                          "directory / checkpoint (best.pt, last.pt).") from None
    file = hub / url.rsplit("/", 1)[-1]
    if not file.is_file():
        raise ConfigError(f"weights: {name!r} has no local weights: {file} does not exist, and "
                          "nothing is downloaded here. On a machine with network, download "
                          f"{url} and copy it to {file} (or pass its path to --weights).")
    return file


def _source(weights: str | Path, cfg: ExperimentConfig) -> tuple[Path, ExperimentConfig,
                                                                  list[str]]:
    """The weights file and the target config adapted to the source run's architecture and
    input (when ``weights`` is a biasvar run directory or a checkpoint inside one)."""
    from .config import load_config, resolve

    p = Path(weights)
    if not p.exists():
        p = hub_weights(str(weights))
    run = p if p.is_dir() else p.parent
    file = p / "last.pt" if p.is_dir() else p
    notes: list[str] = []
    if (run / "config.yaml").is_file():
        from .data import load_data

        src = resolve(load_config(run / "config.yaml"))
        changed = {k: getattr(src, k) for k in ARCH if getattr(cfg, k) != getattr(src, k)}
        if changed:
            notes.append("architecture from the weights' run: " + ", ".join(
                f"{k} {getattr(cfg, k)} → {v}" for k, v in changed.items()))
            cfg = replace(cfg, **changed)
        shape = tuple(load_data(src).input_shape)
        tgt = tuple(load_data(cfg).input_shape)
        if tgt[1:] != shape[1:] and cfg.image_size is None:
            cfg = replace(cfg, image_size=int(shape[-1]))
            notes.append(f"images resized {tgt[-1]} → {shape[-1]} px to match the weights "
                         f"({src.dataset})")
        if tgt[0] != shape[0] and cfg.channels is None:
            cfg = replace(cfg, channels=int(shape[0]))
            notes.append(f"images converted to {shape[0]} channel(s) to match the weights")
    if not file.is_file():
        raise ConfigError(f"weights: {str(p)!r} holds no last.pt; point at a trained run or a "
                          "weights file.")
    return file, resolve(cfg), notes


def _backbone(cfg: ExperimentConfig, data: Any, file: Path, out: Path) -> list[str]:
    """Write the source weights, loaded into the target model (matching layers; channel
    adaptation) with a freshly initialised head, to ``out``; returns load_weights' notes."""
    import torch

    from .models._external import find_head, load_weights
    from .train import build_model

    torch.manual_seed(int(cfg.seed))
    fresh = build_model(replace(cfg, weights=None, freeze_backbone=False), data)
    model = build_model(replace(cfg, weights=None, freeze_backbone=False), data)
    notes = load_weights(model, file)
    head = find_head(model)
    if head is None:
        raise ConfigError("weights: the model has no classification head (a module named head, "
                          "fc or classifier, or an nn.Linear) to replace.")
    state = model.state_dict()
    prefix = head[0] + "."
    for k, v in fresh.state_dict().items():
        if k.startswith(prefix):
            state[k] = v
    notes.append(f"head {head[0]!r} replaced (re-initialised): the source's classes are not "
                 "the target's")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(out)
    return notes


def _t95(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and a 95 % t-interval over the values (seeds: errors), clipped to [0, 1]."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    m = float(v.mean())
    if len(v) < 2:
        return m, m, m
    h = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return m, max(0.0, m - h), min(1.0, m + h)


def _arm(results: Sequence[Any], y: np.ndarray, classes: list[str]) -> dict[str, Any]:
    from .analysis._formulas import decompose

    errs = [float(r.metrics["test_error"]) for r in results]
    m, lo, hi = _t95(errs)
    out: dict[str, Any] = {"test_errors": errs, "error": {"value": m, "ci95": [lo, hi]}}
    if len(results) > 1:
        lp = np.stack([r.test_log_probs for r in results]).astype(np.float32)
        d = decompose(lp, y, classes=classes, sampling="seed", n_boot=500)
        out["zero_one"] = {k: d["zero_one"][k] for k in ("loss", "bias", "net_variance")}
        out["cross_entropy"] = {k: d["cross_entropy"][k] for k in ("risk", "bias", "variance")}
    return out


def finetune(config: ExperimentConfig | None = None, *, weights: str | Path,
             sizes: str | Sequence[float] = "50,100,500", seeds: int = 3,
             head_epochs: int | None = None, backbone_lr: float = 0.1, workers: int = 1,
             out: str | Path | None = None, fresh: bool = False, progress: bool = True,
             dry_run: bool = False, report: bool = True) -> Any:
    """Fine-tuned against from-scratch at each size; see the module's docstring.

    Returns:
        :class:`FinetuneResults` (a :class:`~biasvar.analysis.Plan` of the first stage's fits
        with ``dry_run``); the run directory holds ``finetune.json``, ``backbone.pt`` (the
        source weights with a new head), the fits and ``report.html``.
    """
    from ._io import atomic_write_json
    from .analysis._api import _DryRun, _Session
    from .analysis.analyses import nested_order, parse_sizes
    from .analysis.jobs import FitJob
    from .config import resolve
    from .rundir import default_run_dir

    t0 = time.perf_counter()
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise ConfigError(f"seeds: {seeds!r}; give at least 1 (3 gives intervals).")
    if not 0 < backbone_lr <= 1:
        raise ConfigError(f"backbone_lr: {backbone_lr!r} is out of range; allowed (0, 1].")
    cfg0 = resolve(config if config is not None else ExperimentConfig())
    file, cfg0, notes = _source(weights, cfg0)
    cfg0 = replace(cfg0, weights=None, freeze_backbone=False, backbone_lr=1.0)
    head_epochs = head_epochs if head_epochs is not None else max(1, int(cfg0.epochs) // 3)
    if not isinstance(head_epochs, int) or head_epochs < 1:
        raise ConfigError(f"head_epochs: {head_epochs!r}; give at least 1.")
    key = {"weights": str(file.resolve()), "sizes": str(sizes), "seeds": seeds,
           "head_epochs": head_epochs, "backbone_lr": backbone_lr}
    run_dir = Path(out) if out else default_run_dir("finetune", cfg0, extra=key)
    s = _Session.open("finetune", cfg0, None, out=run_dir, fresh=fresh, workers=workers,
                      progress=progress, dry_run=dry_run)
    cfg, data = s.cfg, s.data
    n = len(data.train)
    size_list = parse_sizes(sizes, n)
    order = nested_order(data.train.y.numpy(), cfg.split_seed + 11)
    s.start()
    backbone = run_dir / BACKBONE_FILE
    if not dry_run:
        notes += _backbone(cfg, data, file, backbone)
    # (a dry run writes no backbone.pt: its plan times the same model without the weights)
    stage1_cfg = replace(cfg, weights=None if dry_run else str(backbone.resolve()),
                         freeze_backbone=True, epochs=head_epochs)
    arms: dict[int, dict[str, list]] = {}
    for size in size_list:
        idx = np.sort(order[:size])
        arms[size] = {
            "scratch": [FitJob(cfg, cfg.seed + r, idx, tag=f"scratch n={size} seed={r}")
                        for r in range(seeds)],
            "stage1": [FitJob(stage1_cfg, cfg.seed + r, idx,
                              tag=f"finetune head n={size} seed={r}") for r in range(seeds)]}
    first = [j for a in arms.values() for j in (*a["scratch"], *a["stage1"])]
    try:
        s.execute(first)
    except _DryRun as stop:
        return stop.plan
    for size, a in arms.items():
        a["stage2"] = [FitJob(replace(cfg, weights=str((s.store.dir(j) / "last.pt").resolve()),
                                      backbone_lr=backbone_lr),
                              j.seed, j.train_indices, tag=f"finetune all n={size} seed={r}")
                       for r, j in enumerate(a["stage1"])]
    s.execute([j for a in arms.values() for j in a["stage2"]])
    y = data.test.y.numpy()
    classes = list(data.classes)
    points = []
    for size, a in arms.items():
        points.append({"n_train": size,
                       "scratch": _arm(s.runner.run(a["scratch"]), y, classes),
                       "finetuned": _arm(s.runner.run(a["stage2"]), y, classes),
                       "head_only": _arm(s.runner.run(a["stage1"]), y, classes)})
    doc = {"schema_version": SCHEMA_VERSION, "command": "finetune", "dataset": cfg.dataset,
           "model": cfg.model, "weights": str(file), "seeds": seeds, "head_epochs": head_epochs,
           "epochs": int(cfg.epochs), "backbone_lr": backbone_lr, "n_test": int(len(y)),
           "notes": notes, "points": points,
           "timing": {"seconds": round(time.perf_counter() - t0, 1)}}
    atomic_write_json(run_dir / FINETUNE_FILE, doc)
    page = None
    if report:
        from .report._finetune import render_finetune_report

        page = render_finetune_report(run_dir)
    return FinetuneResults(doc, run_dir, page, _summary(doc, run_dir, page))


def _cell(a: dict[str, Any]) -> str:
    e = a["error"]
    return f"{100 * e['value']:5.1f}% [{100 * e['ci95'][0]:.1f}, {100 * e['ci95'][1]:.1f}]"


def _summary(doc: dict[str, Any], run_dir: Path, page: Path | None) -> list[str]:
    lines = [f"finetune: from {doc['weights']}, test error (mean of {doc['seeds']} seeds, 95% "
             "interval over seeds)"]
    lines += [f"  note: {n}" for n in doc["notes"]]
    lines.append(f"  {'n_train':>7}  {'from scratch':<24}{'fine-tuned':<24}head only")
    for p in doc["points"]:
        lines.append(f"  {p['n_train']:>7}  {_cell(p['scratch']):<24}{_cell(p['finetuned']):<24}"
                     f"{_cell(p['head_only'])}")
    lines.append(f"  results: {run_dir / FINETUNE_FILE}")
    if page is not None:
        lines.append(f"  report: {page}")
    return lines
