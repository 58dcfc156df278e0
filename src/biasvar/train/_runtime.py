"""Device, threads, seeding and the timed choice of bf16 autocast / channels_last."""
from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator

import torch
from torch import nn

from ..config import ExperimentConfig
from ..errors import ConfigError

__all__ = ["resolve_device", "autocast", "choose_precision", "seed_everything"]


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU; an unavailable CUDA device is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device: {name!r} is not a device; use auto, cpu, cuda or cuda:N.") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {name!r} asked for but no CUDA GPU is available here; "
                              "use --device cpu or auto.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device: {name!r} does not exist; this machine has "
                              f"{torch.cuda.device_count()} GPU(s) (cuda:0..).")
    elif dev.type != "cpu":
        raise ConfigError(f"device: {name!r} is not supported; use auto, cpu, cuda or cuda:N.")
    return dev


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """bf16 autocast when ``precision == "bf16"``, else nothing."""
    if precision == "bf16":
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
    else:
        yield


_PRECISION_CACHE: dict[tuple, dict] = {}

#: bf16 must be at least this much faster than fp32 to be chosen automatically: its rounding
#: costs a little accuracy on some models, so a tie goes to fp32.
BF16_MIN_SPEEDUP = 1.10


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 runs natively: on CUDA, always tried; on the CPU only with AVX-512 BF16 or
    AMX (oneDNN's check). Without them PyTorch emulates bf16 — measured on an AVX2-only EPYC:
    the benchmark CNN's step took 396 ms in bf16 against 41 ms in fp32 + channels_last — so
    ``auto`` does not spend the seconds of timing it."""
    if device.type != "cpu":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # an older or different build: time it
        return True


def _time_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
                precision: str, channels_last: bool, steps: int = 4, warmup: int = 2) -> float:
    m = copy.deepcopy(model).to(device)
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(m.parameters(), lr=0.0)
    m.train()
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        with autocast(device, precision):
            loss = nn.functional.cross_entropy(m(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2] * 1000.0


def choose_precision(cfg: ExperimentConfig, model: nn.Module, in_shape: tuple[int, int, int],
                     num_classes: int, device: torch.device, *, conv: bool) -> dict:
    """Resolve ``precision``/``channels_last`` (``auto`` → the fastest by timing a few steps;
    bf16 only where it is native, :func:`native_bf16`).

    Returns ``{"precision": "fp32"|"bf16", "channels_last": bool, "timings_ms": {...}}``;
    the timings are milliseconds per training step at the configured batch size, recorded in
    env.json so the choice can be checked."""
    want_p, want_cl = cfg.precision, cfg.channels_last
    fixed_cl = None if want_cl == "auto" else want_cl == "on"
    if not conv:
        fixed_cl = False
    emulated = want_p == "auto" and not native_bf16(device)
    note = {"bf16": "not native on this CPU"} if emulated else {}
    if emulated:
        want_p = "fp32"  # emulated bf16: measured 7-10× slower per step here, never chosen
    if want_p != "auto" and fixed_cl is not None:
        return {"precision": want_p, "channels_last": fixed_cl, "timings_ms": {},
                "auto": emulated, **note}
    bs = int(cfg.batch_size or 64)
    key = (type(model).__name__, sum(p.numel() for p in model.parameters()), in_shape, bs,
           str(device), want_p, fixed_cl)
    if key in _PRECISION_CACHE:
        return {**_PRECISION_CACHE[key], **note}
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((bs, *in_shape), generator=gen).to(device)
    y = torch.randint(0, num_classes, (bs,), generator=gen).to(device)
    precisions = ["fp32", "bf16"] if want_p == "auto" else [want_p]
    layouts = [False, True] if fixed_cl is None else [fixed_cl]
    rng_state = torch.get_rng_state()
    timings = {}
    for p in precisions:
        for cl in layouts:
            timings[f"{p}{'+channels_last' if cl else ''}"] = _time_steps(model, x, y, device, p, cl)
    torch.set_rng_state(rng_state)
    best_by_p = {p: min((timings[f"{p}{'+channels_last' if cl else ''}"], cl) for cl in layouts)
                 for p in precisions}
    if len(precisions) == 2 and best_by_p["bf16"][0] * BF16_MIN_SPEEDUP < best_by_p["fp32"][0]:
        chosen = "bf16"
    else:
        chosen = precisions[0] if len(precisions) == 1 else "fp32"
    out = {"precision": chosen, "channels_last": bool(best_by_p[chosen][1]),
           "timings_ms": {k: round(v, 3) for k, v in timings.items()}, "auto": True}
    _PRECISION_CACHE[key] = out
    return {**out, **note}
