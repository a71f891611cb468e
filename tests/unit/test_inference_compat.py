"""Checkpoints written by earlier versions of grud load and behave as they were trained."""
from __future__ import annotations

import torch

from grud.cli.inference import _imputers_as_saved
from grud.models.heads import NextStepImputer
from grud.tasks.classification import ClassificationTask
from tests.unit.test_classification_task import _batch, _stats


def test_a_bidirectional_checkpoint_with_an_imputer_over_both_directions_loads_as_saved():
    spec = {"name": "bilstm", "hidden_size": 4}
    old = ClassificationTask(spec, _stats(), impute_weight=1.0, ensemble=2)
    # before the fix, every imputer of a bidirectional network read both directions (2 H = 8)
    old.imputer = NextStepImputer(8, 2)
    old.extra_members[0].imputer = NextStepImputer(8, 2)
    state = old.state_dict()
    new = ClassificationTask(spec, _stats(), impute_weight=1.0, ensemble=2)
    assert new.imputer.reads == 4
    _imputers_as_saved(new, state)
    new.load_state_dict(state)  # strict: every key and shape matches
    assert new.imputer.reads == 8 and new.extra_members[0].imputer.reads == 8
    new.eval(), old.eval()
    with torch.no_grad():
        outputs = old.encode(_batch())[0]
        torch.testing.assert_close(new.imputer(outputs), old.imputer(outputs))
    # a current checkpoint is left as it is
    fresh = ClassificationTask(spec, _stats(), impute_weight=1.0)
    _imputers_as_saved(fresh, ClassificationTask(spec, _stats(), impute_weight=1.0).state_dict())
    assert fresh.imputer.reads == 4
