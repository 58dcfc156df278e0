"""The memory budget of decoded images, and whether a set is held in memory or streamed.

The decoded tensor must fit in :data:`MEMORY_FRACTION` of physical memory
(``BIASVAR_MEMORY_BUDGET`` bytes overrides). A set that does not (or any set, with
``--stream always``) is scanned once — every image decoded, unreadable ones handled as on the
in-memory path, per-image channel sums kept for the mean/std — and then read from disk every
epoch by DataLoader worker processes (``--loader-workers``), a note saying so and which
``--image-size`` would fit. ``--stream never`` fails instead, suggesting that size. An
iterable dataset without ``len`` and ``[i]`` cannot be streamed.
"""
from __future__ import annotations

import os
from typing import Any

from ..errors import DataError

__all__ = ["MEMORY_FRACTION", "memory_budget", "stream_note"]

#: at most this fraction of physical memory may hold the decoded uint8 images
MEMORY_FRACTION = 0.25


def _fmt_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def memory_budget() -> tuple[int, str]:
    """(bytes the decoded images may take, how that number was chosen)."""
    env = os.environ.get("BIASVAR_MEMORY_BUDGET")
    if env:
        try:
            value = float(env)
        except ValueError:
            value = float("nan")
        if not value >= 0 or value == float("inf"):
            raise DataError(f"BIASVAR_MEMORY_BUDGET: {env!r} is not a number of bytes (0 or "
                            "more); e.g. BIASVAR_MEMORY_BUDGET=4e9 for 4 GB.") from None
        return int(value), "BIASVAR_MEMORY_BUDGET"
    ram = _physical_memory()
    if ram is None:
        return 8 << 30, "a fixed 8 GiB (physical memory unknown)"
    return int(ram * MEMORY_FRACTION), (f"{MEMORY_FRACTION:.0%} of this machine's "
                                        f"{_fmt_bytes(ram)} of memory")


def _memory_fix(n: int, c: int, hw: tuple[int, int], budget: int) -> str:
    side = int((budget / max(1, n * c)) ** 0.5)
    fix = (f"a smaller --image-size (at most {side}: {n} images × {c}×{side}×{side} = "
           f"{_fmt_bytes(n * c * side * side)})" if side >= 4 else "fewer images")
    grey = n * hw[0] * hw[1]
    return fix + (f", or --channels 1 ({n} images × 1×{hw[0]}×{hw[1]} = {_fmt_bytes(grey)})"
                  if c == 3 and grey <= budget else "")


def stream_note(cfg: Any, what: str, n: int, c: int, hw: tuple[int, int], *,
                 streamable: bool = True, estimated: bool = False) -> str | None:
    """Whether ``n`` images decoded to ``c``×``hw`` are streamed from disk: ``None`` (decode them
    into memory) or the note that says why they are streamed. Raises DataError when they do not
    fit the memory budget and cannot be streamed (``--stream never``, or an iterable dataset)."""
    mode = getattr(cfg, "stream", "auto")
    if mode == "always":
        if not streamable:
            raise DataError(f"{what}: stream 'always' needs a dataset with __len__ and "
                            "__getitem__, to read its images on demand; this one can only be "
                            "iterated. Use stream 'auto' to hold it in memory.")
        return (f"{what}: the images are decoded again every epoch (--stream always), by "
                "DataLoader worker processes (--loader-workers).")
    need = n * c * hw[0] * hw[1]
    budget, why = memory_budget()
    if need <= budget:
        return None
    counted = (" (files in colour modes counted as colour: their pixels are only known once "
               "decoded)" if estimated else "")
    head = (f"{what}: {n} images decoded to {c}×{hw[0]}×{hw[1]}{counted} need "
            f"{_fmt_bytes(need)} of memory, more than the {_fmt_bytes(budget)} allowed ({why})")
    if not streamable:  # an iterable: n is only how many were read so far
        raise DataError(f"{what}: the images read so far ({n}, decoded to {c}×{hw[0]}×{hw[1]}) "
                        f"already need more than the {_fmt_bytes(budget)} of memory allowed "
                        f"({why}), and a dataset without __len__ and __getitem__ cannot be read "
                        "from disk on demand: give it both so biasvar can stream it, or use a "
                        "smaller --image-size.")
    if mode == "never":
        raise DataError(f"{head}; use {_memory_fix(n, c, hw, budget)} or --stream auto to stream "
                        "them (decode them again every epoch) instead.")
    return (f"{head}, so they are streamed: decoded again every epoch by DataLoader worker "
            f"processes (--loader-workers), which is slower than memory; "
            f"{_memory_fix(n, c, hw, budget)} would fit in memory.")
