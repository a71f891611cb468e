"""Only the listed harmless dependency warnings are filtered."""
from __future__ import annotations

import warnings

from grud.cli.known_warnings import silence_known_warnings


def test_the_lightning_leafspec_warning_is_silenced_and_others_still_show():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_known_warnings()
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec) "
                      "and treespec.is_leaf()` instead.", FutureWarning)
        warnings.warn("The number of training batches (2) is smaller than the logging interval "
                      "Trainer(log_every_n_steps=10). Set a lower value for log_every_n_steps if you want to see "
                      "logs for the training epoch.", UserWarning)
        warnings.warn("something a user must see", UserWarning)
    assert [str(w.message) for w in caught] == ["something a user must see"]


def test_lightnings_cloud_logger_tip_is_dropped_and_its_other_lines_kept(caplog):
    import logging

    silence_known_warnings()
    silence_known_warnings()  # twice: one filter
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    assert len(logger.filters) == 1
    with caplog.at_level(logging.INFO, logger="pytorch_lightning.utilities.rank_zero"):
        logger.info("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]")
        logger.info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]


def test_an_undefined_metric_is_a_grud_log_line_and_other_warnings_keep_pythons_form(caplog):
    """grud-evaluate printed '.../metrics.py:86: UndefinedMetricWarning: ...' with a source path."""
    import logging

    import numpy as np

    from grud.cli.known_warnings import log_metric_warnings
    from grud.tasks.metrics import binary_metrics

    shown = []
    saved = warnings.showwarning
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = lambda message, category, *args, **kw: shown.append((category, str(message)))
            log_metric_warnings()
            log_metric_warnings()  # twice: still one handler
            with caplog.at_level(logging.WARNING, logger="grud"):
                scores = binary_metrics(np.array([1, 1, 1]), np.array([0.2, 0.6, 0.9]))
                warnings.warn("something a user must see", UserWarning)
    finally:
        warnings.showwarning = saved
    assert np.isnan(scores["auroc"])
    assert [r.getMessage() for r in caplog.records] == ["binary_metrics: only class 1 present; AUROC and AUPRC are NaN"]
    assert shown == [(UserWarning, "something a user must see")]  # Python's own display, once
