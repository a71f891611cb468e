"""The classification task: pooling over real steps, class weights, probabilities."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from grud.data.dataset import IrregularDataset, Series
from grud.data.transforms import fit_stats
from grud.errors import ConfigError
from grud.tasks.classification import ClassificationTask
from tests.unit.tiny_classification_inputs import tiny_batch, tiny_stats


@pytest.mark.parametrize("pool", ["last_mean", "last_max"])
def test_pooling_uses_only_real_steps(pool):
    task = ClassificationTask({"name": "gru_mean", "hidden_size": 4}, tiny_stats(), head={"pool": pool})
    outputs = torch.randn(3, 5, 4)
    last = torch.randn(3, 4)
    lengths = torch.tensor([5, 2, 0])
    pooled = task.pooled(outputs, last, lengths)
    assert pooled.shape == (3, 8)
    torch.testing.assert_close(pooled[:, :4], last)
    agg = outputs[1, :2].mean(0) if pool == "last_mean" else outputs[1, :2].amax(0)
    torch.testing.assert_close(pooled[1, 4:], agg)
    assert torch.equal(pooled[2, 4:], torch.zeros(4))  # a series with no step pools to zeros
    changed = outputs.clone()
    changed[1, 2:] = 100.0  # padding never reaches the head
    torch.testing.assert_close(task.pooled(changed, last, lengths)[1], pooled[1])


def test_bad_pool_and_single_class_are_config_errors():
    with pytest.raises(ConfigError, match="pool"):
        ClassificationTask({"name": "gru_mean"}, tiny_stats(), head={"pool": "attention"})
    with pytest.raises(ConfigError, match="two classes"):
        ClassificationTask({"name": "gru_mean"}, tiny_stats(n_classes=1))


def test_balanced_class_weights_and_multiclass_probabilities():
    task = ClassificationTask({"name": "gru_mean", "hidden_size": 4}, tiny_stats(3), class_weight="balanced",
                              class_counts=[6, 3, 3])
    torch.testing.assert_close(task.class_weights, torch.tensor([12 / 18, 12 / 9, 12 / 9]))
    p = task.probabilities(torch.randn(5, 3))
    torch.testing.assert_close(p.sum(-1), torch.ones(5))


def test_the_heads_output_bias_starts_at_the_training_splits_class_log_odds():
    """A head starting at p = 1/2 on 3 % positives still predicted 0.34 on average after 15 small epochs."""
    import math

    spec = {"name": "gru_mean", "hidden_size": 4}
    binary = ClassificationTask(spec, tiny_stats(), class_counts=[97, 3], ensemble=2)
    for head in (binary.head, binary.extra_members[0].head):
        assert head.net[-1].bias.item() == pytest.approx(math.log(3 / 97))
        head.net[-1].bias.data.zero_()
        head.reset_parameters()  # reset keeps the prior
        assert head.net[-1].bias.item() == pytest.approx(math.log(3 / 97))
    weighted = ClassificationTask(spec, tiny_stats(), class_counts=[97, 3], class_weight=[1.0, 10.0])
    assert weighted.head.net[-1].bias.item() == pytest.approx(math.log(30 / 97))  # what the weighted loss favours
    multi = ClassificationTask(spec, tiny_stats(3), class_counts=[6, 3, 1])
    torch.testing.assert_close(torch.softmax(multi.head.net[-1].bias, 0), torch.tensor([0.6, 0.3, 0.1]))
    # off, or no counts (a library user's task), or a class without series: the Linear layer's own rule
    torch.manual_seed(0)
    off = ClassificationTask(spec, tiny_stats(), class_counts=[97, 3], head={"prior_bias": False})
    torch.manual_seed(0)
    none = ClassificationTask(spec, tiny_stats(), class_counts=[97, 0])
    assert off.head.net[-1].bias.item() == none.head.net[-1].bias.item() != pytest.approx(math.log(3 / 97))
    # the prior is only where training starts: a reloaded task has its checkpoint's bias
    binary.head.net[-1].bias.data.fill_(0.25)
    again = ClassificationTask(spec, tiny_stats(), class_counts=[97, 3], ensemble=2)
    again.load_state_dict(binary.state_dict())
    assert again.head.net[-1].bias.item() == 0.25


def _skewed_dataset(n=24):
    rng = np.random.default_rng(1)
    series = [Series(str(i), np.arange(4.0), np.stack([rng.lognormal(0, 1.5, 4), rng.normal(size=4)], 1)
                     .astype(np.float32), np.zeros(1, np.float32), i % 2) for i in range(n)]
    return IrregularDataset.from_series(series, ["heavy", "b"], ["s"])


def test_log_value_transform_is_what_the_encoder_and_a_reloaded_task_use():
    ds = _skewed_dataset()
    stats = fit_stats(ds)
    assert stats.log_variables == ["heavy"]
    task = ClassificationTask({"name": "gru_mean", "hidden_size": 4}, stats.to_dict(), value_transform="log")
    enc = task.encode_dataset(ds, stats)  # the pipeline's (affine) stats do not override the task's transform
    z = stats.with_value_transform("log").normalise_values(ds.values)
    np.testing.assert_allclose(enc.values, np.nan_to_num(z), rtol=1e-6)
    assert not np.allclose(enc.values[:, 0], np.nan_to_num(stats.normalise_values(ds.values))[:, 0])
    again = ClassificationTask(**task.hparams)  # what loading a checkpoint does
    assert again.stats.value_transform == "log"
    np.testing.assert_array_equal(again.encode_dataset(ds).values, enc.values)
    with pytest.raises(ConfigError, match="value_transform"):
        ClassificationTask({"name": "gru_mean"}, stats.to_dict(), value_transform="sqrt")
    with pytest.raises(ConfigError, match="augment_missing"):
        ClassificationTask({"name": "gru_mean"}, stats.to_dict(), augment_missing=1.0)


def test_hide_observed_hides_entries_and_recomputes_delta():
    from grud.data import masking
    from grud.tasks.classification import hide_observed

    g = torch.Generator().manual_seed(0)
    B, T, F = 4, 7, 3
    mask = (torch.rand(B, T, F, generator=g) > 0.3).float()
    lengths = torch.tensor([7, 5, 1, 0])
    mask = mask * (torch.arange(T)[None, :, None] < lengths[:, None, None])
    times = torch.cumsum(torch.rand(B, T, generator=g), 1) * (torch.arange(T)[None] < lengths[:, None])
    values = torch.randn(B, T, F, generator=g) * mask
    batch = {"values": values, "mask": mask, "delta": masking.time_deltas(times, mask, lengths=lengths),
             "times": times, "lengths": lengths, "static": torch.zeros(B, 1)}
    out = hide_observed(batch, 0.5, generator=torch.Generator().manual_seed(1))
    new = out["mask"]
    assert torch.all(new <= mask) and 0 < new.sum() < mask.sum()  # only observed entries are hidden
    torch.testing.assert_close(out["values"], values * new)
    torch.testing.assert_close(out["delta"], masking.time_deltas(times, new, lengths=lengths))
    assert out["static"] is batch["static"] and batch["mask"] is mask  # the input batch is left alone


@pytest.mark.parametrize("n_classes", [2, 3])
def test_an_ensemble_predicts_the_mean_of_its_members_probabilities(n_classes):
    torch.manual_seed(0)
    task = ClassificationTask({"name": "grud", "hidden_size": 4}, tiny_stats(n_classes), ensemble=3).eval()
    batch = tiny_batch(n_classes=n_classes)
    with torch.no_grad():
        member_probs = torch.stack([task.probabilities(lg) for lg, _ in task.member_outputs(batch)])
        ens = task.probabilities(task(batch)[0])
    assert member_probs.shape[0] == 3
    assert not torch.allclose(member_probs[0], member_probs[1])  # members are initialised independently
    torch.testing.assert_close(ens, member_probs.mean(0))


def test_one_member_keeps_the_single_model_checkpoint_keys_and_bad_sizes_are_config_errors():
    single = ClassificationTask({"name": "grud", "hidden_size": 4}, tiny_stats())
    assert not any(k.startswith("extra_members") for k in single.state_dict())
    assert any(k.startswith("network.") for k in single.state_dict())
    three = ClassificationTask({"name": "grud", "hidden_size": 4}, tiny_stats(), ensemble=3, impute_weight=1.0)
    assert sum(p.numel() for p in three.parameters()) == 3 * sum(
        p.numel() for p in ClassificationTask({"name": "grud", "hidden_size": 4}, tiny_stats(),
                                              impute_weight=1.0).parameters())
    for bad in (0, -1, 1.5, True, "3"):
        with pytest.raises(ConfigError, match="task.ensemble"):
            ClassificationTask({"name": "grud"}, tiny_stats(), ensemble=bad)


def test_each_member_trains_as_it_would_alone():
    """The summed loss gives every member the gradient of its own loss, clipped on its own."""
    torch.manual_seed(0)
    task = ClassificationTask({"name": "grud", "hidden_size": 4}, tiny_stats(), ensemble=2, impute_weight=1.0,
                              head={"dropout": 0.0})
    net = task.network
    net.eval()  # no dropout: member gradients are deterministic
    for m in task.extra_members:
        m.eval()
    task.head.eval()
    batch = tiny_batch()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a Trainer
        loss = task.training_step(batch, 0)
    loss.backward()
    got = [p.grad.clone() for p in task.extra_members[0].parameters()]
    task.zero_grad()
    logits, outputs = task.member_outputs(batch)[1]
    alone = task.loss(logits, batch["target"]) + task.auxiliary_loss(batch, outputs, task.extra_members[0].imputer,
                                                                       log=False)
    alone.backward()
    for a, b in zip(got, task.extra_members[0].parameters()):
        torch.testing.assert_close(a, b.grad)
    # one batch per member (train_streams): member 1 learns from its own batch only
    assert task.train_streams == 2
    other = tiny_batch(seed=1)
    task.zero_grad()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        task.training_step([batch, other], 0).backward()
    got = [p.grad.clone() for p in task.extra_members[0].parameters()]
    task.zero_grad()
    logits, outputs = task.member_forward(task.members[1], other)
    (task.loss(logits, other["target"]) + task.auxiliary_loss(other, outputs, task.extra_members[0].imputer,
                                                              log=False)).backward()
    for a, b in zip(got, task.extra_members[0].parameters()):
        torch.testing.assert_close(a, b.grad)
    with pytest.raises(ValueError, match="one batch per ensemble member"):
        task.training_step([batch, other, other], 0)
    # clipping: a member with a huge gradient does not shrink the other member's gradient
    for p in task.parameters():
        p.grad = torch.ones_like(p) * 1e-4
    for p in task.extra_members[0].parameters():
        p.grad = torch.ones_like(p) * 100.0
    before = [p.grad.clone() for p in task.network.parameters()]
    task.configure_gradient_clipping(None, gradient_clip_val=1.0, gradient_clip_algorithm="norm")
    for a, p in zip(before, task.network.parameters()):
        torch.testing.assert_close(a, p.grad)
    norm = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in task.extra_members[0].parameters()]))
    assert abs(float(norm) - 1.0) < 1e-4
    # the same with optim.grad_clip under a Trainer that sets no clipping of its own (grud-train's)
    task.optim["grad_clip"] = 1.0
    for p in task.parameters():
        p.grad = torch.ones_like(p) * 1e-4
    for p in task.extra_members[0].parameters():
        p.grad = torch.ones_like(p) * 100.0
    task.configure_gradient_clipping(None, gradient_clip_val=None, gradient_clip_algorithm=None)
    for a, p in zip(before, task.network.parameters()):
        torch.testing.assert_close(a, p.grad)
    norm = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in task.extra_members[0].parameters()]))
    assert abs(float(norm) - 1.0) < 1e-4
    # by value when the Trainer says so (+trainer.gradient_clip_algorithm=value)
    for p in task.extra_members[0].parameters():
        p.grad = torch.full_like(p, -100.0)
    task.configure_gradient_clipping(None, gradient_clip_val=None, gradient_clip_algorithm="value")
    assert all(bool((p.grad == -1.0).all()) for p in task.extra_members[0].parameters())


@pytest.mark.parametrize("name", ["grud", "bilstm", "gru_mean"])
def test_the_next_step_imputer_never_reads_the_step_it_predicts(name):
    # the backward state of a bidirectional network at step t has read step t+1: an imputer on it
    # would learn to copy its target. Predictions for steps <= t+1 must not move when steps > t change.
    spec = {"name": name, "hidden_size": 4}
    if name == "grud":
        spec["bidirectional"] = True
    task = ClassificationTask(spec, tiny_stats(), impute_weight=1.0).eval()
    batch = tiny_batch()
    t = 2
    changed = {**batch, "values": batch["values"].clone(), "mask": batch["mask"].clone()}
    changed["values"][:, t + 1:] += 5.0
    changed["mask"][:, t + 1:] = 1.0
    with torch.no_grad():
        before = task.imputer(task.encode(batch)[0])
        after = task.imputer(task.encode(changed)[0])
        full_before, full_after = task.encode(batch)[0], task.encode(changed)[0]
    torch.testing.assert_close(after[:, : t + 1], before[:, : t + 1])
    if task.network.bidirectional:  # the backward half does see the change: the imputer must skip it
        assert not torch.allclose(full_after[:, : t + 1], full_before[:, : t + 1])


def test_a_stacked_bidirectional_network_with_the_imputation_loss_is_a_config_error():
    with pytest.raises(ConfigError, match="task.impute_weight=0 or model.num_layers=1"):
        ClassificationTask({"name": "bilstm", "hidden_size": 4, "num_layers": 2}, tiny_stats(), impute_weight=1.0)
    ClassificationTask({"name": "bilstm", "hidden_size": 4, "num_layers": 2}, tiny_stats(), impute_weight=0.0)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_loss_takes_a_mask_and_unlabelled_series_carry_none(n_classes):
    task = ClassificationTask({"name": "gru_mean", "hidden_size": 4}, tiny_stats(n_classes))
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, generator=g) if n_classes == 2 else torch.randn(5, n_classes, generator=g)
    logits.requires_grad_(True)
    target = torch.tensor([1, -1, 0, 1, -1]) if n_classes == 2 else torch.tensor([2, -1, 0, 1, -1])
    labelled = torch.tensor([0, 2, 3])
    torch.testing.assert_close(task.loss(logits, target), task.loss(logits[labelled], target[labelled]))
    mask = torch.tensor([1, 1, 0, 1, 1])
    torch.testing.assert_close(task.loss(logits, target, mask), task.loss(logits[[0, 3]], target[[0, 3]]))
    none = task.loss(logits, torch.full((5,), -1))
    none.backward()
    assert float(none) == 0.0 and logits.grad is not None and not torch.isnan(logits.grad).any()
    with pytest.raises(ValueError, match=r"loss: expected logits \(B,\) or \(B, C\), target and mask \(B,\)"):
        task.loss(logits, target[:4])


def test_binary_class_weights_weigh_each_series_by_its_own_class():
    """class_weight=[w0, w1] weighs the loss of a positive series by w1, of a negative one by w0:
    sum(w l) / sum(w), as torch's cross_entropy does for several classes (the binary loss was
    mean(w l), so its scale changed with the weights and differed from the multi-class one).

    Guards against the weights being swapped (the minority class down- instead of up-weighted).
    """
    task = ClassificationTask({"name": "gru_mean", "hidden_size": 4}, tiny_stats(), class_weight=[1.0, 3.0])
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, generator=g)
    target = torch.tensor([1, 0, -1, 0, 1, 1])
    labelled = target >= 0
    x, y = logits[labelled].double(), target[labelled].double()
    per_series = -(y * torch.log(torch.sigmoid(x)) + (1 - y) * torch.log(1 - torch.sigmoid(x)))
    weight = torch.where(y == 1, 3.0, 1.0).double()
    expected = (weight * per_series).sum() / weight.sum()
    torch.testing.assert_close(task.loss(logits, target).double(), expected, rtol=1e-5, atol=1e-6)
    swapped = ClassificationTask({"name": "gru_mean", "hidden_size": 4}, tiny_stats(), class_weight=[3.0, 1.0])
    assert not torch.allclose(swapped.loss(logits, target), task.loss(logits, target))
    # one class alone: the weights cancel (they weigh classes against each other), binary as multi-class
    unweighted = ClassificationTask({"name": "gru_mean", "hidden_size": 4}, tiny_stats())
    positives = torch.tensor([1, 1, 1])
    torch.testing.assert_close(task.loss(logits[:3], positives), unweighted.loss(logits[:3], positives))
    two = torch.stack([torch.zeros_like(logits), logits], dim=1)  # softmax over (0, x) = sigmoid(x)
    multi = torch.nn.functional.cross_entropy(two[labelled], target[labelled], weight=torch.tensor([1.0, 3.0]))
    torch.testing.assert_close(task.loss(logits, target), multi, rtol=1e-5, atol=1e-6)


def test_a_class_weighted_evaluation_loss_is_the_epochs_weighted_mean():
    """val/loss and test/loss are sum(w l) / sum(w) over the whole epoch, not a mean of batch means."""
    task = ClassificationTask({"name": "gru_mean", "hidden_size": 4}, tiny_stats(), class_weight=[1.0, 3.0])
    g = torch.Generator().manual_seed(2)
    batches = [(torch.randn(n, generator=g), torch.tensor(t)) for n, t in ((4, [1, 0, 0, 0]), (3, [1, 1, 0]))]
    logged = {}
    task.log = lambda name, value, **kw: logged.__setitem__(name, value)
    task.forward = lambda batch: (batch["logits"], None)  # the network's logits, given
    task._outputs["val"] = []
    for logits, target in batches:
        task._eval_step({"logits": logits, "target": target}, "val")
    task.log_eval_loss("val")
    logits, target = (torch.cat(x) for x in zip(*batches))
    torch.testing.assert_close(torch.tensor(logged["val/loss"]), task.loss(logits, target), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"impute_weight": float("nan")}, r"task.impute_weight: expected a number >= 0 \(0 = off\), got nan"),
    ({"impute_weight": "0.1"}, r"task.impute_weight: expected a number >= 0"),
    ({"head": {"hiden": 3}}, r"unknown task.head key\(s\) 'hiden'; allowed: hidden, batch_norm"),
    ({"head": {"hidden": -3}}, r"task.head.hidden: expected a width >= 0"),
    ({"head": {"dropout": 1.0}}, r"task.head.dropout: expected a probability in \[0, 1\)"),
    ({"class_weight": "balance"}, r"task.class_weight: expected null, balanced or a list of 2 weights > 0"),
    ({"class_weight": [1.0, -2.0]}, r"task.class_weight: expected null, balanced or a list of 2 weights > 0"),
    ({"class_weight": "balanced"}, r"task.class_weight=balanced needs the training split's class_counts"),
    ({"optim": {"learning_rate": 0.1}}, r"unknown optim key\(s\) 'learning_rate'; allowed: name, lr"),
])
def test_task_arguments_are_config_errors_naming_the_key(kwargs, message):
    from grud.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        ClassificationTask({"name": "gru_mean", "hidden_size": 4}, tiny_stats(), **kwargs)


@pytest.mark.parametrize("trainer_clip, expected", [(None, 1e-6), (1e-3, 1e-3)])
def test_optim_grad_clip_holds_under_any_trainer_and_the_trainers_own_value_wins(trainer_clip, expected):
    """optim.grad_clip was applied only by the CLI's Trainer: a library user's Trainer ignored it."""
    import pytorch_lightning as pl

    from grud.data.batching import EncodedDataset
    from grud.data.datamodule import GrudDataModule

    rng = np.random.default_rng(0)
    series = [Series(str(i), np.arange(4.0), rng.normal(size=(4, 2)).astype(np.float32),
                     np.zeros(0, np.float32), i % 2) for i in range(32)]
    ds = IrregularDataset.from_series(series, ["a", "b"], [])
    stats = fit_stats(ds)
    pl.seed_everything(0, verbose=False)
    task = ClassificationTask({"name": "gru_mean", "hidden_size": 4}, stats.to_dict(), head={"batch_norm": False},
                              optim={"name": "sgd", "lr": 1.0, "weight_decay": 0.0, "scheduler": "none",
                                     "grad_clip": 1e-6})
    before = torch.cat([p.detach().flatten().clone() for p in task.parameters()])
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                         gradient_clip_val=trainer_clip)
    trainer.fit(task, datamodule=GrudDataModule(ds, None, None, stats, EncodedDataset, batch_size=32))
    after = torch.cat([p.detach().flatten() for p in task.parameters()])
    # SGD's first step moves the weights by lr x the (clipped) gradient: its norm is the clip value
    assert float((after - before).norm()) == pytest.approx(expected, rel=1e-2)  # unclipped: about 0.4


def test_the_imputation_loss_ignores_padded_steps_whatever_their_mask():
    """A library batch padded with mask 1 raised the auxiliary loss from 1.6 to 14.8."""
    from grud.tasks.base import masked_next_step_mse

    g = torch.Generator().manual_seed(0)
    pred, values = torch.randn(2, 5, 3, generator=g), torch.randn(2, 5, 3, generator=g)
    lengths = torch.tensor([5, 3])
    clean = torch.ones(2, 5, 3)
    clean[1, 3:] = 0  # grud's own padding
    dirty_values, dirty_mask = values.clone(), torch.ones(2, 5, 3)
    dirty_values[1, 3:] = 100.0
    loss = masked_next_step_mse(pred, values, clean)
    assert masked_next_step_mse(pred, dirty_values, dirty_mask, lengths) == loss
    expected = torch.cat([((pred[0, :4] - values[0, 1:]) ** 2).reshape(-1), ((pred[1, :2] - values[1, 1:3]) ** 2).reshape(-1)])
    torch.testing.assert_close(loss, expected.mean())


def test_an_ensemble_fed_one_batch_per_step_warns_once_that_members_share_an_order(caplog):
    """ensemble=K with a datamodule of one training stream trained every member on the same order, silently."""
    import logging

    stats = tiny_stats()
    task = ClassificationTask({"name": "gru_mean", "hidden_size": 4}, stats, ensemble=3)
    task.log_running = lambda *a, **k: None  # no trainer attached
    batch = tiny_batch()
    with caplog.at_level(logging.WARNING, logger="grud"):
        task.training_step(batch, 0)
        task.training_step(batch, 1)
    said = [r.getMessage() for r in caplog.records if "train_streams=3" in r.getMessage()]
    assert len(said) == 1 and "every member trains on the same order" in said[0]
    caplog.clear()
    streams = ClassificationTask({"name": "gru_mean", "hidden_size": 4}, stats, ensemble=3)
    streams.log_running = lambda *a, **k: None
    with caplog.at_level(logging.WARNING, logger="grud"):
        streams.training_step([batch] * 3, 0)  # one batch per member: nothing to say
    assert not caplog.records


def test_a_loaded_model_trained_afresh_keeps_its_users_seed(tmp_path):
    """The checkpoint's random state (for resume=true) was also restored after load_from_checkpoint:
    fine-tuning with seed 1 or 2 drew the same dropout masks."""
    import pytorch_lightning as pl

    from grud.data.batching import EncodedDataset
    from grud.data.datamodule import GrudDataModule

    class Probe(ClassificationTask):
        def on_train_epoch_start(self):
            super().on_train_epoch_start()
            states.append(torch.get_rng_state().clone())

    rng = np.random.default_rng(0)
    ds = IrregularDataset.from_series([Series(str(i), np.arange(3.0), rng.normal(size=(3, 2)).astype(np.float32),
                                              np.zeros(0, np.float32), i % 2) for i in range(16)], ["a", "b"], [])
    stats = fit_stats(ds)

    def fit(task, ckpt_path=None):
        trainer = pl.Trainer(max_epochs=1 if ckpt_path is None else 2, logger=False, enable_progress_bar=False,
                             enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                             enable_checkpointing=False)
        trainer.fit(task, datamodule=GrudDataModule(ds, None, None, stats, EncodedDataset, batch_size=8),
                    ckpt_path=ckpt_path)
        return trainer

    states: list = []
    fit(Probe({"name": "gru_mean", "hidden_size": 4}, stats.to_dict(), optim={"scheduler": "none"})) \
        .save_checkpoint(tmp_path / "m.ckpt")
    saved = torch.load(tmp_path / "m.ckpt", weights_only=True)["rng_state"]["torch"]
    states.clear()
    for seed in (1, 2):
        pl.seed_everything(seed, verbose=False)
        fit(Probe.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=True))
    assert not torch.equal(states[0], states[1]) and not torch.equal(states[0], saved)
    states.clear()  # a resumed fit (ckpt_path) starts its next epoch from the saved state, whatever the seed
    pl.seed_everything(3, verbose=False)
    fit(Probe({"name": "gru_mean", "hidden_size": 4}, stats.to_dict(), optim={"scheduler": "none"}),
        ckpt_path=tmp_path / "m.ckpt")
    assert torch.equal(states[0], saved)
