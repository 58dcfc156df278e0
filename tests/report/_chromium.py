"""Headless Chromium for the report tests: find it, dump a page's DOM, take a screenshot.

Chromium is an optional component here: tests skip without it — except under ``CI=true``, where
a missing browser fails the test (CI must have it: Debian's ``chromium`` package).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

__all__ = ["find_chromium", "require_chromium", "dump_dom", "screenshot", "TIMEOUT_S"]

#: seconds one Chromium run may take before the test fails
TIMEOUT_S = 60

_NAMES = ("chromium", "chromium-browser", "google-chrome")

# offline, no profile state, no background traffic: the page must render from itself alone
_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic")


def find_chromium() -> str | None:
    """The path of chromium / chromium-browser / google-chrome on PATH, or None."""
    for name in _NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def require_chromium() -> str:
    """The Chromium path; without one, skip the test — or fail it under ``CI=true``."""
    path = find_chromium()
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is required under CI=true (install Debian's `chromium` package: "
                    f"none of {', '.join(_NAMES)} is on PATH)")
    pytest.skip(f"chromium is not installed (none of {', '.join(_NAMES)} on PATH; "
                "apt-get install chromium)")


def _run(html_path: str | os.PathLike, extra: list[str], *, width: int = 1000,
         height: int = 1000) -> subprocess.CompletedProcess:
    exe = require_chromium()
    url = Path(html_path).resolve().as_uri()  # file:///...
    with tempfile.TemporaryDirectory(prefix="biasvar-chromium-") as profile:
        cmd = [exe, *_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
               *extra, url]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"chromium did not finish within {TIMEOUT_S} s: {' '.join(cmd)}")
    if proc.returncode != 0:
        pytest.fail(f"chromium exited with {proc.returncode}: {' '.join(cmd)}\n"
                    f"{proc.stderr[-2000:]}")
    return proc


def dump_dom(html_path: str | os.PathLike) -> str:
    """The DOM Chromium builds for a local HTML file (``--dump-dom``), serialised as HTML."""
    return _run(html_path, ["--dump-dom"]).stdout


def screenshot(html_path: str | os.PathLike, png_path: str | os.PathLike, *, width: int = 1000,
               height: int = 1000) -> Path:
    """A ``width``×``height`` PNG screenshot of a local HTML file; returns its path."""
    png = Path(png_path).resolve()
    _run(html_path, [f"--screenshot={png}"], width=width, height=height)
    if not png.is_file() or png.stat().st_size == 0:
        pytest.fail(f"chromium wrote no screenshot at {png}")
    return png
