"""Warnings from grud's dependencies that say nothing to a grud user, filtered by their exact text.

Only messages known to be harmless are listed, each with the reason; anything else still shows.
"""
from __future__ import annotations

import logging
import re
import warnings

#: (message regex, why it is harmless)
KNOWN = (
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated",
     "pytorch_lightning's _pytree helper under torch >= 2.13: Lightning's own call, printed on every fit"),
    (r"The number of training batches \(\d+\) is smaller than the logging interval",
     "grud's trainers cap trainer.log_every_n_steps at an epoch's steps themselves and say so "
     "(grud.cli.run_logger.LogIntervalWithinEpoch); Lightning's advice to lower it is already followed"),
)

#: (log message regex, why it is harmless) of Lightning's own log lines
KNOWN_LOG_LINES = (
    (r"💡 Tip: ", "Lightning's advertisement for its cloud logger, printed on every fit"),
)

#: the loggers Lightning writes :data:`KNOWN_LOG_LINES` to
_LIGHTNING_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero")


class _KnownLogLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(re.match(pattern, message) for pattern, _why in KNOWN_LOG_LINES)


def silence_known_warnings() -> None:
    """Ignore the :data:`KNOWN` messages and :data:`KNOWN_LOG_LINES` in this process (Lightning
    trainers built by grud call it)."""
    for pattern, _why in KNOWN:
        warnings.filterwarnings("ignore", message=pattern)
    for name in _LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _KnownLogLines) for f in logger.filters):
            logger.addFilter(_KnownLogLines())


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
