"""The classification head and the next-step imputer: initialisation and argument checks."""
from __future__ import annotations

import pytest
import torch

from grud.models.heads import ClassificationHead, NextStepImputer


@pytest.mark.parametrize("build", [lambda: ClassificationHead(6, 2, 3, hidden=5),
                                   lambda: ClassificationHead(6, 0, 1, hidden=0, batch_norm=False),
                                   lambda: NextStepImputer(4, 3)])
def test_reset_parameters_is_the_constructors_initialisation(build):
    torch.manual_seed(0)
    module = build()
    built = {k: v.clone() for k, v in module.state_dict().items()}
    with torch.no_grad():
        for p in module.parameters():
            p.fill_(7.0)
    for b in module.buffers():
        b.fill_(3)
    torch.manual_seed(0)
    module.reset_parameters()
    for k, v in module.state_dict().items():
        if k.endswith("num_batches_tracked"):
            assert int(v) == 0
        else:
            torch.testing.assert_close(v, built[k], msg=k)


def test_the_head_checks_widths_with_expected_and_actual():
    head = ClassificationHead(6, 2, 1)
    with pytest.raises(ValueError, match=r"last: expected \(B, 6\), got \(4, 7\)"):
        head(torch.zeros(4, 7), torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"static: expected \(B, S\) = \(4, 2\), got \(3, 2\)"):
        head(torch.zeros(4, 6), torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"static: expected \(B, S\) = \(4, 2\), got None"):
        head(torch.zeros(4, 6))
    with pytest.raises(ValueError, match=r"head hidden: expected a width >= 0"):
        ClassificationHead(6, 2, 1, hidden=-3)
    assert head(torch.zeros(4, 6), torch.zeros(4, 2)).shape == (4,)


def test_a_training_batch_of_one_is_a_config_error_naming_the_keys():
    """data.batch_size=1 passed the checks and then failed inside torch's BatchNorm1d mid-epoch."""
    import pytest
    import torch

    from grud.cli.pipeline import check_numbers
    from grud.errors import ConfigError

    head = ClassificationHead(4, 1, 1)
    with pytest.raises(ConfigError, match=r"task\.head\.batch_norm: a training batch of one series .*"
                                          r"data\.batch_size >= 2, or task\.head\.batch_norm=false"):
        head(torch.zeros(1, 4), torch.zeros(1, 1))
    assert head.eval()(torch.zeros(1, 4), torch.zeros(1, 1)).shape == (1,)  # predicting one series is fine
    head.train()
    head.net[0].eval()  # MC dropout at prediction: dropout on, batch norm in eval mode
    assert head(torch.zeros(1, 4), torch.zeros(1, 1)).shape == (1,)
    assert ClassificationHead(4, 1, 1, batch_norm=False)(torch.zeros(1, 4), torch.zeros(1, 1)).shape == (1,)
    with pytest.raises(ConfigError, match=r"data\.batch_size=1: the classification head's batch norm"):
        check_numbers({"data": {"batch_size": 1}, "model": {"name": "grud"}, "task": {"name": "classification"}})
    check_numbers({"data": {"batch_size": 1}, "model": {"name": "grud"},  # legal without batch norm,
                   "task": {"name": "classification", "head": {"batch_norm": False}}})
    check_numbers({"data": {"batch_size": 1}, "model": {"name": "grud"}, "task": {"name": "forecast"}})  # or no head
