"""Warnings from grud's dependencies that say nothing to a grud user, filtered by their exact text.

Only messages known to be harmless are listed, each with the reason; anything else still shows.
"""
from __future__ import annotations

import logging
import warnings

#: (message regex, why it is harmless)
KNOWN = (
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated",
     "pytorch_lightning's _pytree helper under torch >= 2.13: Lightning's own call, printed on every fit"),
)


def silence_known_warnings() -> None:
    """Ignore the :data:`KNOWN` messages in this process (Lightning trainers built by grud call it)."""
    for pattern, _why in KNOWN:
        warnings.filterwarnings("ignore", message=pattern)


def log_metric_warnings() -> None:
    """Show grud's :class:`~grud.tasks.metrics.UndefinedMetricWarning` (an AUROC of one class, a
    class absent from the labels) as a ``grud`` log line instead of Python's
    ``path:line: UndefinedMetricWarning: ...`` with a source path; other warnings are unchanged."""
    from grud.tasks.metrics import UndefinedMetricWarning

    original = warnings.showwarning
    if getattr(original, "grud_metrics", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, UndefinedMetricWarning):
            logging.getLogger("grud").warning("%s", message)
        else:
            original(message, category, filename, lineno, file, line)

    show.grud_metrics = True
    warnings.showwarning = show
