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
        warnings.warn("something a user must see", UserWarning)
    assert [str(w.message) for w in caught] == ["something a user must see"]
