"""biasvar.data._memory: the memory budget and whether a set is streamed."""
from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from biasvar.data._memory import MEMORY_FRACTION, memory_budget, stream_note
from biasvar.errors import DataError


@pytest.mark.parametrize("value,expected", [("12345", 12345), ("4e9", 4_000_000_000), ("0", 0)])
def test_budget_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("BIASVAR_MEMORY_BUDGET", value)
    assert memory_budget() == (expected, "BIASVAR_MEMORY_BUDGET")


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "4 GB", "lots"])
def test_a_bad_budget_is_refused(monkeypatch, value):
    monkeypatch.setenv("BIASVAR_MEMORY_BUDGET", value)
    with pytest.raises(DataError, match=f"BIASVAR_MEMORY_BUDGET: {value!r} is not a number"):
        memory_budget()


def test_default_budget_is_a_fraction_of_physical_memory(monkeypatch):
    monkeypatch.delenv("BIASVAR_MEMORY_BUDGET", raising=False)
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    budget, why = memory_budget()
    assert budget == int(ram * MEMORY_FRACTION) and "of this machine's" in why


def cfg(stream="auto"):
    return SimpleNamespace(stream=stream)


def test_stream_or_not(monkeypatch):
    monkeypatch.setenv("BIASVAR_MEMORY_BUDGET", "1000")
    assert stream_note(cfg(), "d", 10, 1, (10, 10)) is None  # exactly the budget: in memory
    note = stream_note(cfg(), "d", 10, 1, (32, 32))  # 10 240 bytes
    side = int((1000 / 10) ** 0.5)
    assert "so they are streamed" in note and f"--image-size (at most {side}" in note
    with pytest.raises(DataError, match=rf"at most {side}.*or --stream auto"):
        stream_note(cfg("never"), "d", 10, 1, (32, 32))
    with pytest.raises(DataError, match="without __len__ and __getitem__"):
        stream_note(cfg(), "d", 10, 1, (32, 32), streamable=False)
    assert "--stream always" in stream_note(cfg("always"), "d", 1, 1, (1, 1))
    with pytest.raises(DataError, match="stream 'always' needs a dataset with __len__"):
        stream_note(cfg("always"), "d", 1, 1, (1, 1), streamable=False)


def test_colour_that_would_fit_as_grey_suggests_one_channel(monkeypatch):
    monkeypatch.setenv("BIASVAR_MEMORY_BUDGET", "2000")
    note = stream_note(cfg(), "d", 10, 3, (10, 10))  # 3000 bytes; grey would be 1000
    assert "--channels 1 (10 images × 1×10×10" in note
    note = stream_note(cfg(), "d", 10, 3, (20, 20), estimated=True)  # grey 4000: too large too
    assert "--channels 1" not in note and "counted as colour" in note
