"""The time estimate's probe: how fast one configuration trains and scores here, timed on the
fit's own Trainer (its model, optimizer, schedule, augmentation, precision and data)."""
from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch

from ..config import ExperimentConfig
from ._fit import Trainer, predict_log_probs

__all__ = ["FitSpeed", "measure_fit_speed", "SideBySideSpeed", "measure_side_by_side"]

# -- the timing probe of the time estimate ------------------------------------------------------

@dataclass(frozen=True)
class FitSpeed:
    """How fast one configuration trains and scores on this machine, measured by
    :func:`measure_fit_speed` (all in seconds).

    ``step_s``: each timed training step (``batch_size`` images: batch preparation with the
    augmentation, forward, backward, optimizer and schedule step, the loop's own checks);
    ``eval_s``: each timed inference chunk, per image (fp32, eval mode: a validation or scoring
    pass); ``metrics_s``: the metrics of one scored split, per image; ``setup_s``: building the
    fit (model, optimizer, data on the device); ``checkpoint_s``: serialising one ``last.pt``;
    ``others_cores``: the cores other processes kept busy meanwhile, on average (None where
    /proc/stat is not there): a probe on a busy machine times what that load leaves over.
    """

    step_s: tuple[float, ...]
    eval_s: tuple[float, ...]
    metrics_s: float
    setup_s: float
    checkpoint_s: float
    batch_size: int
    others_cores: float | None = None

    @staticmethod
    def quantile(values: tuple[float, ...], q: float) -> float:
        """The ``q`` quantile of ``values`` (linear interpolation; 0.5 is the median)."""
        v = sorted(values)
        pos = q * (len(v) - 1)
        i = int(pos)
        return v[i] if i + 1 >= len(v) else v[i] + (v[i + 1] - v[i]) * (pos - i)


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy ticks of the whole machine, ticks of this process) from /proc, or None."""
    try:
        with open("/proc/stat") as f:
            cpu = [int(v) for v in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            own = f.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    # user nice system idle iowait irq softirq steal …; this process: utime stime (fields 14, 15)
    return sum(cpu[:8]) - cpu[3] - cpu[4], int(own[11]) + int(own[12])


def _others_cores(ticks0: tuple[int, int] | None, ticks1: tuple[int, int] | None,
                  wall: float) -> float | None:
    """The cores other processes kept busy between two :func:`_cpu_ticks`, on average."""
    if ticks0 is None or ticks1 is None or wall <= 0:
        return None
    hz = os.sysconf("SC_CLK_TCK")
    return max(0.0, ((ticks1[0] - ticks0[0]) - (ticks1[1] - ticks0[1])) / hz / wall)


@contextmanager
def _untouched() -> Iterator[None]:
    """A probe's block: torch's RNG states and thread count are as before it afterwards."""
    threads = torch.get_num_threads()
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


class _Enough(Exception):
    """Ends the probe's training loop once enough steps are timed."""


def measure_fit_speed(cfg: ExperimentConfig, data: object, *, warmup: int = 3,
                      max_steps: int = 16, min_steps: int = 3, budget_s: float = 1.5) -> FitSpeed:
    """Time the real training loop of ``cfg`` on ``data``'s first rows: the fit's own
    :class:`~biasvar.train.Trainer` (its model, optimizer, schedule, augmentation, precision,
    thread count and data pipeline) runs ``Trainer.train_one_epoch`` with a hook that stamps
    each step's end. ``warmup`` steps are dropped (on Fashion-MNIST's CNN the first 3–4 are
    10–25 % slower than the rest), then up to ``max_steps`` are timed (fewer,
    but at least ``min_steps``, once they take ``budget_s``), so the probe costs about a second
    for a model whose fits take minutes, and milliseconds for a tiny one. Then inference on up
    to 1024 validation images (one warm-up, up to 3 timed), the metrics of that chunk, and one
    ``last.pt`` serialisation. Nothing is written; torch's RNG and thread count are restored.

    The probe trains a throw-away copy, so it changes no result; measure with ``cfg`` resolved
    and its precision fixed (an analysis's job configs are), else the precision is timed first.
    """
    import numpy as np

    from ..metrics import classification_metrics
    from ._checkpoint import checkpoint_bytes

    with _untouched():
        n = len(data.train)  # type: ignore[attr-defined]
        bs = min(int(cfg.batch_size or 64), n)
        rows = np.arange(min(n, bs * (warmup + max_steps)))
        # a set smaller than the probe's steps takes more epochs than the fit has: the
        # schedule is built for enough of them (one-cycle refuses to step past its end)
        cfg = replace(cfg, epochs=max(int(cfg.epochs or 1), warmup + max_steps))
        for _ in range(2):  # a slow first build may be one-off work (imports): build again
            t0 = time.perf_counter()
            trainer = Trainer(cfg, data, seed=cfg.seed, train_indices=rows,  # type: ignore[arg-type]
                              run_dir=None, callbacks=(), progress=None, desc="timing probe")
            setup_s = time.perf_counter() - t0
            if setup_s < 0.2:
                break
        sync = (lambda: torch.cuda.synchronize(trainer.device)) \
            if trainer.device.type == "cuda" else (lambda: None)
        marks: list[float] = []   # marks[k]: when step k+1 ended

        def stamp(tr: object, **kwargs: object) -> None:
            sync()
            marks.append(time.perf_counter())
            timed = len(marks) - warmup
            if timed >= max_steps or (timed >= min_steps
                                      and marks[-1] - marks[warmup - 1] >= budget_s):
                raise _Enough

        trainer._batch_end = [stamp]
        ticks0, wall0 = _cpu_ticks(), time.perf_counter()
        try:
            while True:  # a set smaller than the probe's steps: more epochs
                trainer.train_one_epoch()
                trainer.epoch += 1
        except _Enough:
            pass
        finally:
            trainer._batch_end = []
            trainer._close_loaders()
        step_s = tuple(b - a for a, b in zip(marks[warmup - 1:], marks[warmup:]))
        others = _others_cores(ticks0, _cpu_ticks(), time.perf_counter() - wall0)

        val = data.val if len(data.val) else data.train  # type: ignore[attr-defined]
        part = val.subset(np.arange(min(len(val), 1024)))  # one inference batch
        eval_s: list[float] = []
        for i in range(4):
            t0 = time.perf_counter()
            lp = predict_log_probs(trainer.model, part.x, trainer.scale, trainer.shift,
                                   trainer.device, channels_last=trainer.precision["channels_last"],
                                   workers=trainer.workers)
            sync()
            if i:  # the first is the warm-up
                eval_s.append((time.perf_counter() - t0) / len(part))
            if i and sum(eval_s) * len(part) >= budget_s / 2:
                break
        t0 = time.perf_counter()
        classification_metrics(part.y.numpy(), log_probs=lp.cpu().numpy(),
                               classes=data.classes)  # type: ignore[attr-defined]
        metrics_s = (time.perf_counter() - t0) / len(part)
        t0 = time.perf_counter()
        checkpoint_bytes(trainer.checkpoint())
        checkpoint_s = time.perf_counter() - t0
    return FitSpeed(step_s, tuple(eval_s), metrics_s, setup_s, checkpoint_s, bs, others)


# -- the side-by-side probe ---------------------------------------------------------------------

@dataclass(frozen=True)
class SideBySideSpeed:
    """How fast ``k`` fits of one configuration take their steps here, measured by
    :func:`measure_side_by_side`: ``apart_s`` seconds for one step of each fit, one fit after
    another (K separate steps); ``together_s`` for the same K steps side by side (one batched
    step). ``gain`` above 1: side by side is faster. ``others_cores``: as in
    :class:`FitSpeed` (on 2 cores shared with another training process, many small steps
    lose more to the contention than one batched step: the gain read then is the contention's)."""

    k: int
    apart_s: float
    together_s: float
    #: rounds timed (after the warm-up)
    rounds: int
    #: the cores other processes kept busy while timing, on average (None without /proc)
    others_cores: float | None = None

    @property
    def gain(self) -> float:
        return self.apart_s / self.together_s


def measure_side_by_side(cfg: ExperimentConfig, data: object, k: int, *,
                         apart_s: float | None = None, need: float | None = None,
                         rounds: int = 2, max_rounds: int = 10,
                         budget_s: float = 1.0) -> SideBySideSpeed:
    """Time ``k`` throw-away fits of ``cfg`` (seeds ``cfg.seed`` …) on ``data``'s first batch,
    on their own :class:`~biasvar.train.Trainer` objects, in rounds of one step: a step of
    each fit one after another (``Trainer.train_one_epoch``), then one step of all of them
    side by side (``train_side_by_side``). The first round is the warm-up (``vmap``'s first
    call traces the model); the faster of the timed rounds is kept for each way: ``rounds`` of
    them, and more (up to ``max_rounds``) while they take less than ``budget_s`` — a small
    model's steps take milliseconds, and single rounds of those moved the gain by ±20 % on a
    busy machine.

    ``apart_s`` (seconds for one step of each fit, one after another: ``k`` × the fit's step
    that :func:`measure_fit_speed` timed) and ``need`` (the gain the caller decides at) make
    the usual answer cheap: one side-by-side step after the warm-up, and if it is slower than
    1.5 × ``apart_s / need``, the probe stops there (on a CPU, where a batched step of
    Fashion-MNIST's CNN takes 2.4× the separate ones, that is all it times). A gain in favour
    of side by side is never read from ``apart_s``, which was timed at another moment (in CI,
    one after another timed while another process was busy read 40 ms against 12 ms for the
    batched step, a 3.3× "gain" that the same probe timing both ways puts below 1×): both
    ways are then timed in the same rounds, and with ``need`` the rounds stop once the gain is
    plainly above it or below it. Nothing is written; torch's RNG and thread count are
    restored. ValueError where the fits cannot train side by side
    (``side_by_side_supported``)."""
    import numpy as np

    from ._side import side_by_side_supported, train_side_by_side

    with _untouched():
        n = len(data.train)  # type: ignore[attr-defined]
        bs = min(int(cfg.batch_size or 64), n)
        rows = np.arange(bs)  # an epoch is one step
        # the schedule is built for every epoch (step) the probe takes, one-cycle refusing
        # more: two warm-ups, the hint, and two a round
        cfg = replace(cfg, epochs=max(int(cfg.epochs or 1), 2 * max(rounds, max_rounds) + 3))
        trainers = [Trainer(replace(cfg, seed=cfg.seed + i), data, seed=cfg.seed + i,
                            train_indices=rows, run_dir=None, callbacks=(), progress=None,
                            desc="side-by-side probe") for i in range(k)]
        why = side_by_side_supported(trainers)
        if why is not None:
            raise ValueError(f"side by side: {why}")
        device = trainers[0].device
        sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" \
            else (lambda: None)

        def timed(step: Any) -> float:
            sync()
            t0 = time.perf_counter()
            step()
            sync()
            return time.perf_counter() - t0

        def apart() -> None:
            for t in trainers:
                t.train_one_epoch()
                t.epoch += 1

        def together() -> None:
            train_side_by_side(trainers)
            for t in trainers:
                t.epoch += 1

        a: list[float] = []
        b: list[float] = []
        ticks0, wall0 = _cpu_ticks(), time.perf_counter()
        timed(together)  # the warm-up (vmap traces the model)
        hint = None
        if apart_s is not None and need is not None:
            hint = timed(together)
        if hint is not None and hint * need > 1.5 * apart_s:  # plainly slower: done
            b.append(hint)
        else:
            timed(apart)  # its warm-up
            while len(b) < max_rounds:
                a.append(timed(apart))
                b.append(timed(together))
                if need is not None and len(b) >= rounds and (
                        min(b) * need > 1.5 * min(a) or min(b) * need <= min(a)):
                    break
                if len(b) >= rounds and sum(a) + sum(b) >= budget_s:
                    break
        others = _others_cores(ticks0, _cpu_ticks(), time.perf_counter() - wall0)
        for t in trainers:
            t._close_loaders()
    return SideBySideSpeed(k, min(a) if a else apart_s, min(b), len(b), others)
