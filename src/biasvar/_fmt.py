"""Number formatting shared by the console, the verdict's sentences and the report.

Errors are fractions; a "point" is a percentage point. ``None`` (not measured) prints as "—".

>>> pct(0.0812), pts(-0.012), gain(0.0123), fmt_value(0.5), fmt_value(64)
('8.1%', '−1.2 points', '1.23 points', '0.5', '64')
"""
from __future__ import annotations

import math
from typing import Any

__all__ = ["pct", "pts", "gain", "num", "fmt_value", "count"]

NONE = "—"


def _bad(x: Any) -> bool:
    return x is None or (isinstance(x, float) and not math.isfinite(x))


def pct(x: float | None, digits: int = 1) -> str:
    """An error rate as a percentage: ``8.1%``."""
    return NONE if _bad(x) else f"{100 * x:.{digits}f}%"


def pts(x: float | None, digits: int = 1, *, signed: bool = True) -> str:
    """A difference of error rates in points, signed with a true minus: ``−1.2 points``."""
    if _bad(x):
        return NONE
    return (f"{100 * x:+.{digits}f}".replace("-", "−").lstrip("+") if signed
            else f"{100 * x:.{digits}f}") + " points"


def gain(x: float | None) -> str:
    """A predicted error reduction, unsigned: ``1.23 points``."""
    return NONE if _bad(x) else f"{100 * x:.2f} points"


def num(x: float | None, digits: int = 3) -> str:
    """A plain number with fixed decimals."""
    return NONE if _bad(x) else f"{x:.{digits}f}"


def count(x: int | None) -> str:
    """A count with thousands separators."""
    return NONE if x is None else f"{int(x):,}"


def fmt_value(v: Any) -> str:
    """A knob's value as a user would type it: ``0.5``, ``64``, ``standard``."""
    return f"{v:g}" if isinstance(v, float) else str(v)
