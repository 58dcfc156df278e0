"""``fit(config, data, seed)``: the training loop over in-memory uint8 tensors.

Data never leaves the device between epochs: each batch is gathered from the uint8 tensor,
scaled to [0, 1], augmented on tensors (per-sample randomness), normalised with the training
split's mean/std, and fed to the model under bf16 autocast / channels_last when chosen. Images
streamed from disk (sets too large for memory) arrive as the same uint8 batches, decoded by
DataLoader workers in the same order, and go through the same steps.

Randomness is derived from ``(seed, epoch)`` at the start of every epoch (data order, dropout,
augmentation), so a run resumed from ``last.pt`` continues exactly as an uninterrupted one.

The loop itself only trains and validates; checkpoints, early stopping, history.csv, TensorBoard
and the progress bar are callbacks (``_callbacks``) called through its hooks. It also refuses to
call a diverged training a model (:func:`exploded`, :func:`ended_diverged`): a NaN loss, an
epoch whose loss explodes, or a fit that ends worse than it began raises ``TrainingDiverged``.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ExperimentConfig, config_hash, config_to_dict, resolve
from ..data import DataBundle
from ..data import BatchLoader, batches, loader_workers
from ..data.augment import Augment, parse_augment
from ..errors import CheckpointError, ConfigError, TrainingDiverged
from ..models import create_model, is_conv
from ._callbacks import (Callback, Checkpoint, EarlyStopping, HistoryLogger, Progress,
                         Snapshots, TensorBoardLogger, TqdmProgress, overridden_hooks)
from .._io import atomic_write_text
from ._checkpoint import (CHECKPOINT_FORMAT, CHECKPOINT_VERSION, load_checkpoint, model_spec,
                          steps_csv)
from ._optim import cycle_ends, make_optimizer, make_scheduler
from ._runtime import autocast, choose_precision, resolve_device, seed_everything

__all__ = ["fit", "make_trainer", "run_trainers", "FitResult", "Trainer", "build_model",
           "preflight", "check_options_used",
           "normalizer", "predict_log_probs", "exploded", "ended_diverged"]

# -- divergence ---------------------------------------------------------------------------------
# Losses here are the training (data) loss history.csv shows: cross-entropy with the label
# smoothing, without the l1 penalty. The *start* is that loss on the first batch, before the
# first update: ≈ ln K for a fresh model (a near-uniform guess over K classes, smoothing or not),
# lower when started from --weights. ln K, the loss of a uniform guess, is the yardstick.

#: An epoch whose mean training loss exceeds this many times max(start, ln K) has exploded, and
#: the fit stops at once. No run that is learning averages ten times the loss of a uniform guess
#: over a whole epoch (measured on digits: runs that went on to learn peaked below 3× in their
#: first epoch), and using max(start, ln K) keeps a fine-tuning run, whose start is near 0 and
#: whose loss may rise well above it for an epoch, clear of it.
EXPLODED_FACTOR = 10.0

#: The tolerance of the end-of-fit rules, as a fraction of ln K (0.23 nats for 10 classes).
#: It absorbs the noise of the one-batch start (±0.05 nats on 32 images) and leaves alone the
#: runs whose loss stays near ln K without getting worse: too small a learning rate, heavy
#: label noise (random labels cannot be fitted in a few epochs).
END_MARGIN = 0.1


def exploded(loss: float, start: float, num_classes: int) -> bool:
    """Whether an epoch's mean training ``loss`` has exploded: above EXPLODED_FACTOR × max(start,
    ln K)."""
    return loss > EXPLODED_FACTOR * max(start, math.log(num_classes))


def ended_diverged(start: float, losses: Sequence[float], num_classes: int, *,
                   final: int | None = None) -> str | None:
    """Why a finished fit counts as diverged, or None.

    ``losses`` are the mean training losses of epochs 1..E; ``final`` the epoch whose weights
    the fit returns (default the last). With m = END_MARGIN · ln K, the fit diverged when

    - its final loss is above ``start + m``: it got worse instead of learning, or
    - its loss rose above ``start + m`` in some epoch and ends above ``ln K − m``, no better
      than a uniform guess: the network collapsed (the usual end of a learning rate that is too
      high: the loss explodes, then sits at ln K with chance accuracy).

    >>> ended_diverged(2.30, [0.9, 0.3, 0.1], 10) is None             # it learned
    True
    >>> ended_diverged(2.30, [2.33, 2.30, 2.29], 10) is None          # random labels: near ln K
    True
    >>> ended_diverged(2.30, [6.6, 2.32, 2.31], 10).split(",")[0]     # exploded, then collapsed
    'the loss rose to 6.6 in epoch 1'
    """
    if not losses:
        return None
    chance = math.log(num_classes)
    margin = END_MARGIN * chance
    e = len(losses) if final is None else final
    end = losses[e - 1]
    if end > start + margin:
        return (f"it ended (epoch {e}) at a mean training loss of {end:.4g}, above the starting "
                f"loss {start:.4g}: the model got worse instead of learning")
    peak = max(range(len(losses)), key=lambda i: losses[i])
    if losses[peak] > start + margin and end > chance - margin:
        return (f"the loss rose to {losses[peak]:.4g} in epoch {peak + 1}, above the starting "
                f"loss {start:.4g}, and ended (epoch {e}) at {end:.4g}, no better than a "
                f"uniform guess over {num_classes} classes (ln {num_classes} = {chance:.4g}): "
                "the network collapsed")
    return None


#: Images per inference batch. On the CPU, larger batches cost more than they save: a batch's
#: activations above glibc's 32 MB mmap ceiling are mapped and zeroed afresh on every call
#: (measured here: the 225k-parameter benchmark CNN scores 10,000 images in 2.4 s at 1024 with
#: 2.5 s of system time, in 1.0 s at 256 with 0.06 s); 256 keeps a 32-channel 28×28 layer at
#: 22 MB. GPUs take bigger batches.
EVAL_BATCH = {"cpu": 256, "cuda": 1024}

#: about this many points of the per-step training loss are kept per fit (steps.csv)
STEP_POINTS = 300


class _Tally:
    """One epoch's running figures (device tensors: read once, at the end or a window's)."""

    def __init__(self, *, gen: torch.Generator, perm: torch.Tensor, device: torch.device):
        self.gen, self.perm = gen, perm
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.window = torch.zeros((), device=device)
        self.seen = self.in_window = 0

    def logs(self) -> dict[str, float]:
        return {"train_loss": float(self.loss_sum) / self.seen,
                "train_accuracy": float(self.correct) / self.seen}


@dataclass
class FitResult:
    """What a fit returns. ``model`` holds the final weights (the best epoch's when early
    stopping restored them); ``history`` one dict per epoch (HISTORY_COLUMNS)."""

    model: nn.Module
    history: list[dict[str, float]]
    config: ExperimentConfig
    precision: dict[str, Any]
    best_epoch: int | None = None
    stop_reason: str | None = None
    seconds: float = 0.0
    resumed_from_epoch: int | None = None
    device: str = "cpu"
    notes: list[str] = field(default_factory=list)
    #: the training loss of the first batch before any update (the divergence checks' start)
    start_loss: float | None = None
    #: the per-step training loss and learning rate (STEP_COLUMNS; means over windows of steps)
    steps: list[dict[str, float]] = field(default_factory=list)
    #: with ``config.snapshots``: the weights (CPU state dicts) at the end of each cosine cycle
    snapshots: list[dict[str, torch.Tensor]] = field(default_factory=list)


def build_model(cfg: ExperimentConfig, data: DataBundle) -> nn.Module:
    """The configured model for this data; started from ``cfg.weights`` and with its backbone
    frozen when asked."""
    model = create_model(cfg.model, num_classes=data.num_classes, in_shape=data.input_shape,
                         width=cfg.width, depth=cfg.depth, dropout=cfg.dropout,
                         batchnorm=cfg.batchnorm)
    if cfg.weights or cfg.freeze_backbone:
        from ..models._external import freeze_backbone, load_weights

        if cfg.weights:
            load_weights(model, cfg.weights)
        if cfg.freeze_backbone:
            freeze_backbone(model)
    return model


#: Options that only some setting of another option uses: field → (that option, the settings
#: that use it). Set away from its default otherwise, the field would change nothing.
USED_ONLY_WITH: dict[str, tuple[str, tuple[Any, ...]]] = {
    "momentum": ("optimizer", ("sgd",)),        # Adam/AdamW keep their own moment estimates
    "step_epochs": ("schedule", ("step",)),
    "step_gamma": ("schedule", ("step",)),
    "patience": ("early_stopping", (True,)),   # best.pt tracking has no patience
}


def _flag(name: str, value: Any = None) -> str:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else "--no-" + flag[2:]
    return flag if value is None else f"{flag} {value}"


def check_options_used(cfg: ExperimentConfig) -> None:
    """Refuse an option set away from its default that this configuration would not use (a
    silent no-op: a run that looks tuned but is not, a curve that trains the same model again)."""
    defaults = {f.name: f.default for f in fields(ExperimentConfig)}
    for name, (other, users) in USED_ONLY_WITH.items():
        value, setting = getattr(cfg, name), getattr(cfg, other)
        if value != defaults[name] and setting not in users:
            using = " or ".join(_flag(other, u) for u in users)
            raise ConfigError(f"{name}: {value:g} would change nothing with "
                              f"{_flag(other, setting)}; only {using} uses it. Give {using}, "
                              f"or leave {_flag(name)} out.")
    check_snapshots(cfg)
    strength = cfg.augment_strength
    if strength != defaults["augment_strength"] and parse_augment(cfg.augment).is_identity:
        raise ConfigError(f"augment_strength: {strength:g} would change nothing with "
                          f"--augment {cfg.augment} (no augmentation to scale). Give --augment "
                          "light, standard or strong, or leave --augment-strength out.")


def check_snapshots(cfg: ExperimentConfig) -> None:
    """Refuse ``snapshots`` the schedule cannot give: fewer than 2 cycles, another schedule,
    early stopping (it would cut the cycles short), fewer epochs than cycles."""
    if not cfg.snapshots:
        return
    fix = "give --snapshots 2 or more with --schedule cosine, or leave --snapshots out"
    if cfg.snapshots < 2:
        raise ConfigError(f"snapshots: {cfg.snapshots} cycle is one cosine schedule and no "
                          f"ensemble; {fix}.")
    if cfg.schedule != "cosine":
        raise ConfigError(f"snapshots: {cfg.snapshots} cosine cycles replace the schedule, "
                          f"and --schedule {cfg.schedule} was asked for; {fix}.")
    if cfg.early_stopping:
        raise ConfigError(f"snapshots: early stopping would cut the {cfg.snapshots} cycles "
                          "short (each ends at a learning rate of 0); drop --early-stopping.")
    if cfg.epochs is not None and cfg.epochs < cfg.snapshots:
        raise ConfigError(f"snapshots: {cfg.snapshots} cycles need at least as many epochs "
                          f"(--epochs is {cfg.epochs}); give --epochs {cfg.snapshots} or "
                          "more, or fewer snapshots.")


def preflight(cfg: ExperimentConfig, data: DataBundle) -> None:
    """Fail on a bad model, augmentation or optimizer, or an option the configuration would not
    use, before anything is written."""
    parse_augment(cfg.augment)
    check_options_used(cfg)
    make_optimizer(cfg, build_model(cfg, data))


def normalizer(data: DataBundle, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with ``x_norm = x_uint8 * scale - shift`` == ``(x/255 - mean) / std``."""
    mean = torch.tensor(data.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std = torch.tensor(data.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return 1.0 / (255.0 * std), mean / std


def _epoch_seed(seed: int, epoch: int) -> int:
    # distinct, reproducible streams per (seed, epoch); 2**31-1 is prime
    return (seed * 1_000_003 + epoch * 7919 + 17) % (2**31 - 1)


class Trainer:
    """The state of one fit; callbacks receive it. Use :func:`fit` rather than this class.

    For callbacks: ``model``, ``optimizer``, ``scheduler``, ``cfg``, ``device``, ``history`` (one
    row per epoch done), ``epoch`` (epochs done), ``steps_per_epoch``, ``total_steps``,
    ``early`` (the fit's own EarlyStopping, which tracks the best epoch), ``run_dir``, and
    :meth:`stop` to end the fit after the current epoch."""

    def __init__(self, cfg: ExperimentConfig, data: DataBundle, *, seed: int,
                 train_indices: np.ndarray | None, run_dir: Path | None,
                 callbacks: Sequence[Callback], progress: Progress | None, desc: str,
                 validate: bool = True):
        self.cfg, self.data, self.seed = cfg, data, seed
        if not validate and cfg.early_stopping:
            raise ConfigError("validate: early stopping reads the validation loss of every "
                              "epoch; it cannot be skipped.")
        self.validate = validate
        self.run_dir = run_dir
        self.desc = desc
        self.device = resolve_device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        seed_everything(seed)
        self.model = build_model(cfg, data)
        self.conv = is_conv(cfg.model)
        self.precision = choose_precision(cfg, self.model, data.input_shape, data.num_classes,
                                          self.device, conv=self.conv and len(data.input_shape) == 3)
        self.model.to(self.device)
        if self.precision["channels_last"]:
            self.model.to(memory_format=torch.channels_last)
        part = data.train if train_indices is None else data.train.subset(train_indices)
        # in memory: the uint8 images live on the device; streamed: DataLoader workers decode
        # each batch from disk (same pixels, same order) and it is copied over per step
        self.streamed = part.streamed
        self.workers = loader_workers(cfg)
        self.x = part.x if self.streamed else part.x.to(self.device)
        self.y = part.y.to(self.device)
        # streamed: worker processes started once per fit, for the training and validation passes
        self._loaders: dict[str, BatchLoader] = {}
        self.n = int(self.y.shape[0])
        self.bs = min(int(cfg.batch_size), self.n)
        # the last incomplete batch is dropped (each epoch reshuffles, so no image is lost for
        # good) — except that a set smaller than a batch is one batch
        self.steps_per_epoch = max(1, self.n // self.bs)
        self.total_steps = self.steps_per_epoch * int(cfg.epochs)
        self.scale, self.shift = normalizer(data, self.device)
        aug = parse_augment(cfg.augment)
        self.augment: Augment = aug.scaled(cfg.augment_strength) if cfg.augment_strength != 1.0 else aug
        self.optimizer = make_optimizer(cfg, self.model)
        self.scheduler: Any = make_scheduler(cfg, self.optimizer, self.total_steps,
                                             self.steps_per_epoch)
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        # always there: it also tracks the best epoch for best.pt when stopping is off
        self.early = EarlyStopping(cfg.monitor, cfg.patience if cfg.early_stopping else None,
                                   cfg.min_delta, restore_best=cfg.early_stopping)
        # the user's callbacks see each epoch before it is checkpointed (a stop they ask for,
        # or an exception they raise, is in / keeps out of last.pt)
        self.callbacks: list[Callback] = [self.early, *callbacks]
        check_snapshots(cfg)
        self.snapshots = Snapshots(cycle_ends(int(cfg.epochs), cfg.snapshots), run_dir) \
            if cfg.snapshots else None
        if self.snapshots is not None:
            self.callbacks.append(self.snapshots)
        if cfg.tensorboard and run_dir is not None:
            self.callbacks.append(TensorBoardLogger(run_dir / "tensorboard"))
        if run_dir is not None:
            self.callbacks += [Checkpoint(run_dir, self.early),
                               HistoryLogger(run_dir / "history.csv")]
        if progress is not None:
            self.callbacks.append(progress)
        self._batch_end: list[Any] = []
        self.history: list[dict[str, float]] = []
        self.epoch = 0
        self.stop_reason: str | None = None
        self.resumed_from: int | None = None
        # the first batch's loss before the first update (see `exploded`); saved in last.pt
        self.start_loss: float | None = None
        # the per-step log: the mean training loss over windows of `step_every` steps (about
        # STEP_POINTS per fit) and the learning rate of each window's last step
        self.steps_log: list[dict[str, float]] = []
        self.step_every = max(1, self.total_steps // STEP_POINTS)
        self.key = config_hash(cfg, extra={"seed": seed, "n": self.n})

    # -- batches ------------------------------------------------------------------------------
    def _prepare(self, xb: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        if self.augment.is_identity or gen is None:
            x = xb.float().mul_(self.scale).sub_(self.shift)
        else:
            x = self.augment(xb.float().div_(255.0), gen)
            x = x.mul_(self.scale * 255.0).sub_(self.shift)
        if self.precision["channels_last"]:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _batches(self, perm: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(uint8 images, labels) on the device for each batch of the epoch's order ``perm``
        (the last incomplete batch dropped)."""
        bs, steps = self.bs, self.steps_per_epoch
        if not self.streamed:
            perm = perm.to(self.device)
            for s in range(steps):
                idx = perm[s * bs:(s + 1) * bs]
                yield self.x[idx], self.y[idx]
            return
        order = [perm[s * bs:(s + 1) * bs] for s in range(steps)]
        for idx, xb in zip(order, self._loader("train", self.x)(order)):
            yield xb.to(self.device, non_blocking=True), self.y[idx.to(self.device)]

    def _loader(self, name: str, images: Any) -> BatchLoader:
        if name not in self._loaders:
            self._loaders[name] = BatchLoader(images, workers=self.workers,
                                              pin_memory=self.device.type == "cuda")
        return self._loaders[name]

    def _close_loaders(self) -> None:
        for loader in self._loaders.values():
            loader.close()
        self._loaders.clear()

    def _l1(self) -> torch.Tensor:
        return sum(p.abs().sum() for p in self.model.parameters() if p.ndim > 1 and p.requires_grad)

    def stop(self, reason: str) -> None:
        """End the fit after the current epoch (for callbacks; see :class:`Callback`)."""
        self.stop_reason = reason

    def train_one_epoch(self) -> dict[str, float]:
        cfg, model = self.cfg, self.model
        tally = self._epoch_begin()
        model.train()
        for step, (xb, y) in enumerate(self._batches(tally.perm), 1):
            x = self._prepare(xb, tally.gen)
            with autocast(self.device, self.precision["precision"]):
                logits = model(x)
                loss = self.loss_fn(logits.float(), y)
            total = loss + cfg.l1 * self._l1() if cfg.l1 > 0 else loss
            self.optimizer.zero_grad(set_to_none=True)
            if step == 1 and self.epoch == 0 and self.start_loss is None:
                self.start_loss = float(loss.detach())  # one device sync per fit
            total.backward()
            lr = self.optimizer.param_groups[0]["lr"]
            self.optimizer.step()
            self.scheduler.step()
            self._tally(tally, step, loss, logits, y, lr)
        return tally.logs()

    def _epoch_begin(self) -> _Tally:
        """Seed the epoch (its batch order, augmentation and dropout) and open its tally."""
        es = _epoch_seed(self.seed, self.epoch)
        gen = torch.Generator().manual_seed(es)
        torch.manual_seed(es)  # dropout
        return _Tally(gen=gen, perm=torch.randperm(self.n, generator=gen), device=self.device)

    def _tally(self, t: _Tally, step: int, loss: torch.Tensor, logits: torch.Tensor,
               y: torch.Tensor, lr: float) -> None:
        """After a step: the loss windows of steps.csv, the epoch's loss and accuracy, the
        divergence check, the batch-end hooks."""
        every, spe = self.step_every, self.steps_per_epoch
        done = self.epoch * spe
        t.window += loss.detach()
        t.in_window += 1
        if (done + step) % every == 0 or step == spe:  # one device sync per window
            self.steps_log.append({"step": done + step, "epoch": self.epoch + 1,
                                   "loss": float(t.window) / t.in_window, "lr": float(lr)})
            t.window.zero_()
            t.in_window = 0
        t.loss_sum += loss.detach() * len(y)
        t.correct += (logits.detach().argmax(1) == y).sum()
        t.seen += len(y)
        check_every = 1 if self.device.type == "cpu" else 16
        if step % check_every == 0 or step == spe:
            if not torch.isfinite(t.loss_sum):
                self._diverged(step)
        if self._batch_end:
            batch_loss = loss.detach()
            for hook in self._batch_end:
                hook(self, step=step, loss=batch_loss)

    @property
    def start(self) -> float:
        """The starting loss of the divergence checks: the first batch's loss before any update,
        or ln K (where a fresh model starts) when unknown: a checkpoint written before it was
        recorded, or a first batch whose loss was not finite."""
        s = self.start_loss
        return s if s is not None and math.isfinite(s) else math.log(self.data.num_classes)

    def _kept(self) -> str:
        if self.run_dir is not None and self.epoch > 0:
            return (f"the last good checkpoint {self.run_dir / 'last.pt'} (epoch {self.epoch}) "
                    "is kept")
        return "nothing was saved"

    def _fix(self) -> str:
        cfg = self.cfg
        fix = f"Lower the learning rate (lr is {cfg.lr:g}; try --lr {cfg.lr / 10:g})"
        if cfg.optimizer == "sgd" and cfg.momentum > 0.9:
            fix += (f" and the momentum (--momentum {cfg.momentum:g}: SGD's effective step is "
                    f"lr / (1 − momentum) = {cfg.lr / (1 - cfg.momentum):g}; try --momentum 0.9)")
        return fix + "."

    def _diverged(self, step: int) -> None:
        raise TrainingDiverged(
            f"{self.desc}: training diverged: the training loss became NaN or infinite in epoch "
            f"{self.epoch + 1}, step {step}; {self._kept()}. {self._fix()} Gradient-friendly "
            "settings such as --batchnorm help too.")

    def _check_epoch(self, loss: float) -> None:
        """Stop an exploded epoch before it is checkpointed (last.pt keeps the one before)."""
        if exploded(loss, self.start, self.data.num_classes):
            k = self.data.num_classes
            raise TrainingDiverged(
                f"{self.desc}: training diverged: the mean training loss of epoch "
                f"{self.epoch + 1} was {loss:.4g}, more than {EXPLODED_FACTOR:g}× the starting "
                f"loss {self.start:.4g} (a uniform guess over {k} classes scores ln {k} = "
                f"{math.log(k):.4g}); {self._kept()}. {self._fix()}")

    def _check_end(self) -> None:
        """A finished fit that got worse than it began, or collapsed, is not a model."""
        # judge the weights the fit returns: those of the best epoch when an early stopping
        # (the fit's own or a user's; the last one's restore wins) puts them back at the end
        final = None
        for cb in self.callbacks:
            if isinstance(cb, EarlyStopping) and cb.restore_best and cb.best_state is not None:
                final = cb.best_epoch
        why = ended_diverged(self.start, [h["train_loss"] for h in self.history],
                             self.data.num_classes, final=final)
        if why is not None:
            kept = (f"its checkpoints are kept in {self.run_dir}" if self.run_dir is not None
                    else "nothing was saved")
            raise TrainingDiverged(f"{self.desc}: training diverged: {why}; {kept}. "
                                   f"{self._fix()}")

    @torch.no_grad()
    def evaluate_split(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        loader = None if isinstance(x, torch.Tensor) else self._loader("val", x)
        lp = predict_log_probs(self.model, x, self.scale, self.shift, self.device,
                               channels_last=self.precision["channels_last"],
                               workers=self.workers, loader=loader)
        yt = y.to(lp.device)
        return {"loss": float(F.nll_loss(lp, yt)), "accuracy": float((lp.argmax(1) == yt).float().mean())}

    # -- checkpoints --------------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
            "config": config_to_dict(self.cfg), "config_hash": self.key, "seed": self.seed,
            "epoch": self.epoch, "model": {k: v.detach().cpu() for k, v in
                                            self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "history": self.history, "early_stopping": {k: v for k, v in
                                                        self.early.state_dict().items()
                                                        if k != "best_state"},
            "precision": self.precision, "stop_reason": self.stop_reason,
            "start_loss": self.start_loss, "steps": self.steps_log, **model_spec(self.data),
        }

    def best_checkpoint(self, early: EarlyStopping | None = None) -> dict[str, Any]:
        """``best.pt``'s content: this epoch's weights and the monitored value (of ``early``,
        default the fit's own early stopping)."""
        early = self.early if early is None else early
        return {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "kind": "best",
                "config": config_to_dict(self.cfg), "epoch": self.epoch,
                "monitor": early.monitor, "value": early.best_value,
                "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "precision": self.precision, **model_spec(self.data)}

    def restore(self, path: Path) -> None:
        ck = load_checkpoint(path)
        if ck.get("kind") == "best":
            raise CheckpointError(f"{path}: this is a best.pt (weights only); resume from last.pt.")
        if ck.get("kind") == "final":
            raise CheckpointError(f"{path}: the final weights of a finished analysis fit (its "
                                  "training state was dropped when it finished); it cannot be "
                                  "resumed. Use it with --weights to start a new run from it.")
        if ck["config_hash"] != self.key:
            diff = [k for k, v in config_to_dict(self.cfg).items() if ck["config"].get(k) != v]
            raise CheckpointError(
                f"{path}: written for a different configuration or seed (differs in: "
                f"{', '.join(diff) or 'seed/training subset'}); resume with the same options, "
                "or start over with --fresh.")
        try:
            self.model.load_state_dict(ck["model"])
            self.optimizer.load_state_dict(ck["optimizer"])
            self.scheduler.load_state_dict(ck["scheduler"])
        except (RuntimeError, KeyError, ValueError) as e:
            raise CheckpointError(f"{path}: does not fit this model ({e}).") from None
        self.precision = ck["precision"]
        if self.precision["channels_last"]:
            self.model.to(memory_format=torch.channels_last)
        self.history = list(ck["history"])
        self.epoch = int(ck["epoch"])
        self.stop_reason = ck.get("stop_reason")
        self.start_loss = ck.get("start_loss")  # absent before it was recorded: ln K is used
        self.steps_log = list(ck.get("steps") or [])  # absent before it was recorded
        self.early.load_state_dict(ck["early_stopping"])
        best = path.parent / "best.pt"
        if self.early.best_epoch is not None and best.is_file():
            self.early.best_state = {k: v.to(self.device) for k, v in
                                     load_checkpoint(best)["model"].items()}
        self.resumed_from = self.epoch

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> FitResult:
        """Train until ``cfg.epochs`` epochs are done or a callback stops the fit."""
        return run_trainers([self])[0]

    def _run(self) -> Generator[None, dict[str, float], FitResult]:
        """:meth:`run` as a generator: it yields when an epoch's training steps are due and is
        sent that epoch's logs (``train_one_epoch``'s), so that :func:`run_trainers` can train
        the epochs of several trainers together."""
        t_start = time.perf_counter()
        hooks = {name: overridden_hooks(self.callbacks, name) for name in
                 ("on_fit_start", "on_epoch_start", "on_batch_end", "on_epoch_end", "on_fit_end")}
        self._batch_end = hooks["on_batch_end"]
        error: BaseException | None = None
        try:
            for hook in hooks["on_fit_start"]:
                hook(self)
            while self.epoch < self.cfg.epochs and self.stop_reason is None:
                for hook in hooks["on_epoch_start"]:
                    hook(self, epoch=self.epoch + 1)
                t0 = time.perf_counter()
                logs = yield
                self._check_epoch(logs["train_loss"])
                val = (self.evaluate_split(self.data.val.x, self.data.val.y) if self.validate
                       else {"loss": None, "accuracy": None})
                self.epoch += 1
                logs = {"epoch": self.epoch, **logs, "val_loss": val["loss"],
                        "val_accuracy": val["accuracy"],
                        "lr": float(self.optimizer.param_groups[0]["lr"]),
                        "seconds": time.perf_counter() - t0}
                self.history.append(logs)
                for hook in hooks["on_epoch_end"]:
                    hook(self, logs=logs)
                if self.run_dir is not None:
                    atomic_write_text(self.run_dir / "steps.csv", steps_csv(self.steps_log))
            self._check_end()
        except BaseException as e:
            error = e
            raise
        finally:
            self._close_loaders()
            self._batch_end = []
            for hook in hooks["on_fit_end"]:
                hook(self, error=error)
        return FitResult(model=self.model, history=self.history, config=self.cfg,
                         precision=self.precision, best_epoch=self.early.best_epoch,
                         stop_reason=self.stop_reason, seconds=time.perf_counter() - t_start,
                         resumed_from_epoch=self.resumed_from, device=str(self.device),
                         start_loss=self.start_loss, steps=self.steps_log,
                         snapshots=[] if self.snapshots is None else
                         [self.snapshots.states[e] for e in self.snapshots.epochs
                          if e in self.snapshots.states])


def run_trainers(trainers: Sequence[Trainer], *,
                 together: Callable[[list[Trainer]], list[dict[str, float]]] | None = None
                 ) -> list[FitResult]:
    """Run each trainer's fit (:meth:`Trainer.run` is this for one). The epochs due at the same
    time are trained by ``together`` when there are several (``_side.train_side_by_side``),
    by the trainer's own ``train_one_epoch`` when one. An error in the training steps is raised
    inside each fit it ends (so their ``on_fit_end`` hooks see it), then here."""
    if together is None and len(trainers) > 1:
        raise ValueError("run_trainers: several trainers need `together` (their joint epoch)")
    gens = [t._run() for t in trainers]
    results: list[FitResult | None] = [None] * len(trainers)
    due: list[int] = []
    for i, g in enumerate(gens):
        try:
            next(g)
            due.append(i)
        except StopIteration as done:
            results[i] = done.value
    while due:
        try:
            if len(due) == 1:
                logs = [trainers[due[0]].train_one_epoch()]
            else:
                logs = together([trainers[i] for i in due])  # type: ignore[misc]
        except BaseException as e:
            for i in due:
                try:
                    gens[i].throw(e)
                except BaseException:  # each fit re-raises it after its clean-up
                    pass
            raise
        still = []
        try:
            for i, lg in zip(due, logs):
                try:
                    gens[i].send(lg)
                    still.append(i)
                except StopIteration as done:
                    results[i] = done.value
        except BaseException:  # one fit failed after its epoch: the others end too
            for g in gens:
                g.close()
            raise
        due = still
    return results  # type: ignore[return-value]


@torch.no_grad()
def predict_log_probs(model: nn.Module, x: torch.Tensor, scale: torch.Tensor,
                      shift: torch.Tensor, device: torch.device, *, batch_size: int | None = None,
                      channels_last: bool = False, workers: int | None = None,
                      loader: BatchLoader | None = None) -> torch.Tensor:
    """fp32 log-probabilities (N, K) of uint8 images (N, C, H, W), in eval mode, on ``device``.

    ``x`` is a tensor or streamed images (decoded by ``loader``, else by ``workers`` DataLoader
    processes started for this call; default :func:`~biasvar.data._stream.loader_workers`).
    Inference runs in fp32 (never bf16): the decomposition's variance terms are sensitive to
    rounding of the log-probabilities. ``batch_size`` defaults to :data:`EVAL_BATCH` for the
    device."""
    if batch_size is None:
        batch_size = EVAL_BATCH["cuda" if device.type == "cuda" else "cpu"]
    was_training = model.training
    model.eval()
    out = []
    streamed = not isinstance(x, torch.Tensor)
    if streamed:  # smaller batches bound the decoded images in flight between processes
        batch_size = min(batch_size, 256)
    starts = range(0, x.shape[0], batch_size)
    if not streamed:
        chunks: Iterable[torch.Tensor] = (x[i:i + batch_size] for i in starts)
    else:
        lists = [range(i, min(i + batch_size, len(x))) for i in starts]
        chunks = (loader(lists) if loader is not None else
                  batches(x, lists, workers=loader_workers() if workers is None else workers,
                          pin_memory=device.type == "cuda"))
    for chunk in chunks:
        xb = chunk.to(device, non_blocking=True).float().mul_(scale).sub_(shift)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        out.append(F.log_softmax(model(xb).float(), dim=1))
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, device=device)


def fit(config: ExperimentConfig, data: DataBundle, *, seed: int | None = None,
        train_indices: np.ndarray | None = None, run_dir: str | Path | None = None,
        resume: bool | str | Path = False, callbacks: Sequence[Callback] = (),
        progress: Progress | bool = True, desc: str | None = None,
        validate: bool = True) -> FitResult:
    """Train ``config.model`` on ``data.train`` (or the rows ``train_indices`` of it).

    ``seed`` overrides ``config.seed``. With ``run_dir``, ``last.pt`` (every epoch), ``best.pt``
    (when the monitored metric improves) and ``history.csv`` are written there atomically (the
    :class:`Checkpoint` and :class:`HistoryLogger` callbacks); ``resume=True`` continues from
    ``run_dir/last.pt`` (or give a path). ``callbacks``: :class:`Callback` objects called through
    the loop's hooks (one can stop the fit: see :class:`Callback`). ``progress``: True for a tqdm
    bar, False for none, a :class:`Progress` callback, or any object with its
    ``start``/``update``/``postfix``/``close`` methods. ``validate=False`` skips the validation
    pass after each epoch (the history's ``val_loss``/``val_accuracy`` are None; the weights
    are the same): for fits whose per-epoch validation nothing reads. Not with early stopping.

    >>> from biasvar import ExperimentConfig, load_data, fit
    >>> cfg = ExperimentConfig(dataset="digits", epochs=2)
    >>> result = fit(cfg, load_data(cfg), progress=False)
    >>> len(result.history)
    2
    """
    return make_trainer(config, data, seed=seed, train_indices=train_indices, run_dir=run_dir,
                        resume=resume, callbacks=callbacks, progress=progress, desc=desc,
                        validate=validate).run()


def make_trainer(config: ExperimentConfig, data: DataBundle, *, seed: int | None = None,
                 train_indices: np.ndarray | None = None, run_dir: str | Path | None = None,
                 resume: bool | str | Path = False, callbacks: Sequence[Callback] = (),
                 progress: Progress | bool = True, desc: str | None = None,
                 validate: bool = True) -> Trainer:
    """The :class:`Trainer` that :func:`fit` runs (same arguments), ready to start or resumed
    from its checkpoint: for :func:`run_trainers`, which runs several at once."""
    cfg = resolve(config)
    if seed is not None:
        cfg = replace(cfg, seed=seed)
    run_dir = Path(run_dir) if run_dir is not None else None
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
    if progress is True:
        progress = TqdmProgress()
    elif progress is False:
        progress = None
    elif not isinstance(progress, Progress):  # any object with start/update/postfix/close
        progress = Progress(reporter=progress)
    trainer = Trainer(cfg, data, seed=cfg.seed, train_indices=train_indices, run_dir=run_dir,
                      callbacks=callbacks, progress=progress,
                      desc=desc or f"{cfg.model} on {data.name}", validate=validate)
    if resume:
        path = Path(resume) if not isinstance(resume, bool) else (run_dir or Path(".")) / "last.pt"
        trainer.restore(path)
    return trainer
