"""Writing a run directory's report.html: the page (:mod:`._html`) with, for a run derived
from another, the comparison with it (:mod:`._compare`, which draws with the page's parts)."""
from __future__ import annotations

from pathlib import Path

from .._io import atomic_write_text
from ._compare import derived_section
from ._html import render_html
from ._load import load_run

__all__ = ["render_report"]


def render_report(run_dir: str | Path, *, out: Path | None = None) -> Path:
    """Render ``report.html`` for a run directory from its saved files, without training.

    Args:
        run_dir: a biasvar run directory (the README's results.json contract): any of
            config.yaml, env.json, history.csv, metrics.json, gallery.json, suspects.json,
            results.json.
        out: where to write the page (default ``run_dir/report.html``); written atomically.

    Returns:
        The path of the written page.

    Raises:
        BiasvarError: ``run_dir`` is not a folder.
        ResultsError: results.json is not valid (names the key path, e.g.
            ``decomposition.zero_one.bias.value``).

    >>> render_report("runs/diagnose-fashion-mnist-cnn-1a2b3c4d")  # doctest: +SKIP
    PosixPath('runs/diagnose-fashion-mnist-cnn-1a2b3c4d/report.html')
    """
    run = load_run(run_dir)
    if run.get("results") is not None:  # derived from another run: compare.html and a link
        run["derived_html"] = derived_section(run["results"], run_dir)
    page = render_html(run)
    path = Path(out) if out is not None else Path(run_dir) / "report.html"
    atomic_write_text(path, page)
    return path
