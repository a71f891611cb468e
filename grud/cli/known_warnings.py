"""Warnings from grud's dependencies that say nothing to a grud user, filtered by their exact text.

Only messages known to be harmless are listed, each with the reason; anything else still shows.
"""
from __future__ import annotations

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
