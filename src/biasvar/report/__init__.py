"""The report: one self-contained, offline HTML page per run directory.

:func:`render_report` reads whatever a run directory holds (config.yaml, env.json, history.csv,
metrics.json, gallery.json, suspects.json, results.json; see the README's results.json contract)
and writes ``report.html`` next to them: the verdict and ranked remedies on top, key figures, the
noise floor of the training labels (with a gallery of suspected mislabelled training images),
training / learning (with every fit's budget) / complexity curves, the bias–variance
decomposition, the confusion matrix, per-class metrics, a gallery of the most confidently wrong
test images, and the run's fits, config and environment. Sections
whose data is absent are left out. Figures are inline SVG drawn with matplotlib (Agg) from the
saved numbers, each with its values in a table; nothing is recomputed or retrained, and this
package never imports torch. A run derived from another (``derived_from``) gets
``compare.html`` beside it and a link; :func:`compare` puts any runs side by side.

:func:`render_fragment` gives the same sections for one :class:`~biasvar.analysis.Results` as an
offline HTML fragment (a ``<div>`` with its own scoped style): what the results show in Jupyter.

>>> from biasvar.report import render_report
>>> render_report("runs/diagnose-fashion-mnist-cnn-1a2b3c4d")  # doctest: +SKIP
PosixPath('runs/diagnose-fashion-mnist-cnn-1a2b3c4d/report.html')
"""
from __future__ import annotations

from ._compare import compare
from ._html import render_fragment, render_html
from ._page import render_report
from ._load import load_run
from ._tune import render_tune_report

__all__ = ["render_report", "render_fragment", "load_run", "render_html", "compare",
           "render_tune_report"]



def _register() -> None:
    """Results read without ``biasvar.analysis``'s public names (``load_results`` imported from
    its ``_results`` module) display through this package too, once it is loaded. (The module
    is reached through a name this package already imports from it: no new dependency.)"""
    import sys

    from ..analysis._results import Results

    results_module = sys.modules[Results.__module__]
    if results_module.PRESENTER is None:
        results_module.PRESENTER = sys.modules[__name__]


_register()
