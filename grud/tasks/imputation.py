"""Imputation evaluation: hide observed values on purpose and score how well they come back.

Used by ``grud-evaluate ... task.name=impute``. A share ``rate`` of the observed test values is
hidden with :func:`grud.data.masking.simulate_missing` (MCAR); the model's next-step imputer
(trained with ``task.impute_weight > 0``) predicts each hidden value from the state of the step
before, and is compared with mean imputation (the training mean) and forward filling (last
observation carried forward, the training mean before the first). Errors are in the normalised
(z-score) space of the training split, so variables weigh alike.
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from grud.data import masking
from grud.data.batching import BucketBatchSampler
from grud.errors import ConfigError
from grud.tasks import metrics as M


def check_imputer(model):
    """The loaded model's module, or a ConfigError when it has no imputation head."""
    module = getattr(model, "module", None)
    if module is None or getattr(module, "imputer", None) is None:
        raise ConfigError("task.name=impute needs a neural model trained with task.impute_weight > 0 "
                          "(it has no imputation head)")
    return module


def imputation_report(model, ds, rate: float = 0.1, seed: int = 0, batch_size: int = 256) -> dict:
    """Hide observed values of ``ds`` at random and score the model's imputation against baselines.

    ``ds`` is encoded with the model's training statistics; a share ``rate`` of its observed
    entries is hidden (MCAR, :func:`grud.data.masking.simulate_missing` seeded by ``seed``). The
    model's imputation head predicts each step from the encoder state of the step before (a zero
    state before step 0), run on the thinned data; the training mean and forward filling of the
    thinned data (the training mean before the first observation) are the baselines. Errors are
    pooled over the hidden entries only, in the normalised (z-score) space.

    Args:
        model: a loaded model (:func:`grud.cli.inference.load_model`) whose ``module`` was trained
            with ``task.impute_weight > 0`` (has an ``imputer``).
        ds: the :class:`~grud.data.dataset.IrregularDataset` to evaluate on.
        rate: fraction of the observed entries to hide, in [0, 1).
        seed: seed of the hidden entries.
        batch_size: series per batch.

    Returns:
        ``{"impute/rate", "impute/n_hidden", "impute/mse_<m>", "impute/mae_<m>"}`` with ``<m>`` in
        ``model``, ``mean``, ``locf``: python floats (``n_hidden`` an int).

    Raises:
        ConfigError: the model has no imputation head.

    Shape:
        ds: values (N, F), n series -> scalars; hidden entries are drawn from the (N, F) mask
    """
    module = check_imputer(model)
    from grud.data.batching import EncodedDataset

    enc = EncodedDataset(ds, module.stats)
    kept, hidden = masking.simulate_missing(enc.values, rate, mechanism="mcar", seed=seed, mask=enc.mask)
    probe = copy.copy(enc)
    probe.mask = kept.astype(np.float32)
    probe.values = np.where(kept > 0, enc.values, 0.0).astype(np.float32)
    x_mean = np.asarray(module.stats.input_means, np.float32)
    preds = {"model": [], "mean": [], "locf": []}
    truth, where = [], []
    module.eval()
    with torch.no_grad():
        for b in BucketBatchSampler(probe.lengths, batch_size, shuffle=False):
            batch = probe.collate(b)
            outputs, _ = module.encode(batch)
            h0 = outputs.new_zeros(outputs.shape[0], 1, outputs.shape[2])
            prev = torch.cat([h0, outputs[:, :-1]], dim=1)
            pred = module.imputer(prev).numpy()
            full = enc.collate(b)
            valid = (np.arange(batch["values"].shape[1])[None, :] < batch["lengths"].numpy()[:, None])[..., None]
            rows = np.where(valid[..., 0], enc.ds.offsets[np.asarray(b)][:, None] + np.arange(pred.shape[1]), 0)
            hid = np.where(valid, hidden[rows], 0.0)
            vals, m = batch["values"].numpy(), batch["mask"].numpy()
            preds["model"].append(pred.reshape(-1, pred.shape[-1]))
            preds["mean"].append(np.broadcast_to(x_mean, pred.shape).reshape(-1, pred.shape[-1]))
            preds["locf"].append(masking.forward_fill(vals, m, fill=x_mean).reshape(-1, pred.shape[-1]))
            truth.append(full["values"].numpy().reshape(-1, pred.shape[-1]))
            where.append(hid.reshape(-1, pred.shape[-1]))
    t, w = np.concatenate(truth), np.concatenate(where)
    out = {"impute/rate": float(rate), "impute/n_hidden": int(w.sum())}
    for name, p in preds.items():
        p = np.concatenate(p)
        out[f"impute/mse_{name}"] = float(M.masked_mse(p, t, w, reduce="all"))
        out[f"impute/mae_{name}"] = float(M.masked_mae(p, t, w, reduce="all"))
    return out
