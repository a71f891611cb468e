"""Sequence classification (e.g. in-hospital mortality) with a recurrent network.

The head sees the network's last state and the static features, with batch norm and
dropout on the top layer, the regulariser of Che et al. (2018). Binary tasks use one logit
and a sigmoid; multi-class tasks one logit per class and a softmax.

Classification-only input options: ``value_transform`` (``log``: heavy-tailed labs through
``log1p`` before z-scoring, see :mod:`grud.data.transforms`) and ``augment_missing`` (hide a
random fraction of the observed entries of every training batch, recomputing delta).
"""
from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from grud.data import masking
from grud.data.batching import EncodedDataset
from grud.data.transforms import FittedStats, check_value_transform
from grud.errors import ConfigError
from grud.models import arguments
from grud.models.heads import ClassificationHead
from grud.tasks import metrics as M
from grud.tasks.base import TaskModule
from grud.tasks.summary_features import STATISTICS, batch_summary

log = logging.getLogger("grud")


class ClassificationTask(TaskModule):
    """Lightning module for whole-series classification.

    Args:
        model, stats, optim, impute_weight: see :class:`grud.tasks.base.TaskModule`.
        head: ``hidden``, ``batch_norm``, ``dropout`` of :class:`grud.models.heads.ClassificationHead`;
            ``pool`` (``last``, ``last_mean``, ``last_max``: what of the states the head sees) and
            ``summary`` (true: the head also sees the last, mean, min, max and log1p(count) of
            every variable's observed inputs, the baselines' summary, as a wide-and-deep input).
            A missing ``pool`` or ``summary`` takes what checkpoints saved before the key imply (``last_mean``, no
            summary); ``conf/task/classification.yaml`` sets today's defaults.
        class_weight: ``null`` (none), ``balanced`` (inverse class frequency of the training split)
            or a list of per-class weights.
        class_counts: training-split count per class (filled by the entry point).
        value_transform: ``affine`` (z-scores) or ``log`` (log1p of the training split's
            heavy-tailed variables, then z-scores); the encoder of every split uses it.
        augment_missing: fraction in [0, 1) of the observed entries hidden at random in every
            training batch (simulated missingness; 0 = off). Validation and test see all.
        ensemble: number of members K (1 = a single model). Each member is a network, head and
            imputer of its own, initialised independently and trained on its own shuffled order of
            the training split (:attr:`train_streams`; the loss is the sum of the members' losses,
            gradient clipping applies per member, so each member trains as it would alone) and the prediction is the mean of the members'
            probabilities (a deep ensemble, Lakshminarayanan et al., NeurIPS 2017). Early stopping,
            the scheduler and the checkpoints follow the ensemble's validation metric. Costs K
            times the training and prediction time.

    Shape:
        batch as :mod:`grud.data.batching`; ``target`` (B,) -> logits (B,) binary or (B, C).
    """

    monitor = "val/auroc"
    monitor_mode = "max"
    name = "classification"

    def __init__(self, model: dict, stats: dict, optim: dict | None = None, head: dict | None = None,
                 class_weight=None, class_counts: list | None = None, impute_weight: float = 0.0,
                 value_transform: str = "affine", augment_missing: float = 0.0, ensemble: int = 1):
        check_value_transform(value_transform)
        if not 0.0 <= float(augment_missing) < 1.0:
            raise ConfigError(f"task.augment_missing: expected a fraction in [0, 1), got {augment_missing!r}")
        active = FittedStats.from_dict(stats).with_value_transform(value_transform).to_dict()
        super().__init__(model, active, optim, impute_weight)
        self.save_hyperparameters()  # the stats as fitted (affine); the transform is re-applied on load
        self.augment_missing = float(augment_missing)
        n_classes = len(self.stats.classes)
        if n_classes < 2:
            raise ConfigError(
                f"classification needs at least two classes in the training labels, found {n_classes} "
                f"({self.stats.classes}); check data.labels / data.label_column"
            )
        self.n_classes = n_classes
        defaults = {"hidden": 64, "batch_norm": True, "dropout": 0.3, "pool": "last_mean", "summary": False,
                    "prior_bias": True}
        unknown = sorted(set(head or {}) - set(defaults))
        if unknown:
            raise ConfigError(f"unknown task.head key(s) {', '.join(map(repr, unknown))}; allowed: "
                              f"{', '.join(defaults)}")
        head = {**defaults, **(head or {})}
        hidden = head["hidden"]
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 0:
            raise ConfigError(f"task.head.hidden: expected a width >= 0 (0 = a linear head), got {hidden!r}")
        head["batch_norm"] = arguments.boolean("task.head.batch_norm", head["batch_norm"])
        head["dropout"] = arguments.probability("task.head.dropout", head["dropout"])
        self.pool = str(head.pop("pool"))
        if self.pool not in ("last", "last_mean", "last_max"):
            raise ConfigError(f"task.head.pool: expected last, last_mean or last_max, got {self.pool!r}")
        self.summary = arguments.boolean("task.head.summary", head.pop("summary"))
        # the class weights first: the head's prior is the weighted class frequencies of the training split
        self.register_buffer("class_weights", class_weights_of(class_weight, class_counts, n_classes))
        self._weighted = not bool((self.class_weights == 1).all())
        if arguments.boolean("task.head.prior_bias", head.pop("prior_bias")):
            head["prior"] = self.prior_logits(class_counts, self.class_weights)
        width = self.network.output_size * (1 if self.pool == "last" else 2)
        if self.summary:  # last, mean, min, max and log1p(count) of every variable's observed values
            width += len(STATISTICS) * self.stats.n_features
        def build_head() -> ClassificationHead:
            return ClassificationHead(width, self.stats.n_static, 1 if n_classes == 2 else n_classes, **head)

        self.head = build_head()
        if isinstance(ensemble, bool) or not isinstance(ensemble, int) or ensemble < 1:
            raise ConfigError(f"task.ensemble: expected a whole number of members >= 1, got {ensemble!r}")
        # member 0 is (network, head, imputer) above, so a single model keeps its checkpoint keys
        self.extra_members = nn.ModuleList(
            EnsembleMember(self.build_network(), build_head(), self.build_imputer()) for _ in range(ensemble - 1))
        self._outputs = {"val": [], "test": []}
        self.last_test = None  # (y, prob) of the last test epoch, for plots

    @staticmethod
    def prior_logits(counts, weights: torch.Tensor) -> list | None:
        """The output bias that predicts the training split's class frequencies (weighted by the
        class weights, the constant that minimises the weighted loss): binary, the log-odds
        log(w1 n1 / (w0 n0)); multi-class, log(w_c n_c) centred. None without counts, or when a
        class has no series (the Linear layer's own initialisation then)."""
        if not counts or len(counts) != len(weights) or min(counts) <= 0:
            return None
        mass = torch.tensor([float(c) for c in counts], dtype=torch.float64) * weights.double()
        if len(counts) == 2:
            return [float(torch.log(mass[1] / mass[0]))]
        logits = torch.log(mass)
        return (logits - logits.mean()).tolist()

    # ------------------------------------------------------------------ data
    def encode_dataset(self, ds, stats=None):
        """Normalise ``ds`` with this task's statistics (its value transform); ``stats`` is ignored.
        With ``head.summary`` the batches carry the per-series summary, computed once here."""
        return EncodedDataset(ds, self.stats, summary=self.summary)

    # ------------------------------------------------------------------ steps
    def pooled(self, outputs: torch.Tensor, last: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The head's view of a series: the last state, optionally with the mean or max over real steps.

        Shape:
            outputs: (B, T, H_out), last: (B, H_out), lengths: (B,) -> (B, H_out) or (B, 2 H_out).
            A series of length 0 pools to zeros.
        """
        if self.pool == "last":
            return last
        valid = torch.arange(outputs.shape[1], device=outputs.device)[None, :] < lengths[:, None]  # (B, T)
        if self.pool == "last_mean":  # the masked sum over steps as one batched product (B, 1, T) @ (B, T, H)
            total = torch.bmm(valid.to(outputs.dtype)[:, None, :], outputs)[:, 0]
            return torch.cat([last, total / lengths.clamp_min(1)[:, None].to(outputs.dtype)], dim=-1)
        agg = outputs.masked_fill(~valid[..., None], float("-inf")).amax(1)
        agg = torch.where(lengths[:, None] > 0, agg, torch.zeros_like(agg))
        return torch.cat([last, agg], dim=-1)

    def head_input(self, outputs: torch.Tensor, last: torch.Tensor, batch: dict) -> torch.Tensor:
        """What the head sees besides the static features: the pooled states, then (``head.summary``)
        the per-variable summary of the observed inputs: the batch's ``summary`` when its dataset
        computed it (:meth:`encode_dataset`), else :func:`grud.tasks.summary_features.batch_summary`
        of its values and mask (the same numbers).

        Shape:
            outputs (B, T, H_out), last (B, H_out) -> (B, P) with P = H_out or 2 H_out, plus 5 F.
        """
        pooled = self.pooled(outputs, last, batch["lengths"])
        if not self.summary:
            return pooled
        summary = batch.get("summary")
        if summary is None:
            summary = batch_summary(batch["values"], batch["mask"], batch["lengths"])
        elif summary.shape != (want := (pooled.shape[0], len(STATISTICS) * self.stats.n_features)):
            raise ValueError(f"batch['summary']: expected shape {want} (B, 5F), got {tuple(summary.shape)}")
        return torch.cat([pooled, summary.to(pooled.dtype)], dim=-1)

    @property
    def members(self) -> list[tuple[nn.Module, nn.Module, nn.Module | None]]:
        """``(network, head, imputer)`` of every ensemble member, member 0 first."""
        return [(self.network, self.head, self.imputer)] + [(m.network, m.head, m.imputer)
                                                           for m in self.extra_members]

    @property
    def train_streams(self) -> int:
        """Training batches per step the data module should serve: one per member, each member its own order."""
        return 1 + len(self.extra_members)

    def member_forward(self, member: tuple, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, outputs)`` of one member ``(network, head, imputer)``: (B,) or (B, C), (B, T, H_out)."""
        network, head, _ = member
        outputs, last = self.encode(batch, network)
        return head(self.head_input(outputs, last, batch), batch["static"]), outputs

    def member_outputs(self, batch: dict) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(logits, outputs)`` of every member on the same batch."""
        return [self.member_forward(m, batch) for m in self.members]

    def forward(self, batch: dict):
        """Logits of the ensemble's mean probability (a single model: its own logits), and member 0's outputs.

        Shape:
            batch as :mod:`grud.data.batching` -> logits (B,) binary or (B, C); outputs (B, T, H_out).
        """
        per_member = self.member_outputs(batch)
        if len(per_member) == 1:
            return per_member[0]
        logits = torch.stack([lg for lg, _ in per_member])
        if self.n_classes == 2:  # log-odds of the mean probability
            log_p = F.logsigmoid(logits).logsumexp(0)
            log_q = F.logsigmoid(-logits).logsumexp(0)
            return log_p - log_q, per_member[0][1]
        # log of the mean probability: softmax of it gives the mean back
        return torch.log_softmax(logits, -1).logsumexp(0) - math.log(len(per_member)), per_member[0][1]

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.n_classes == 2 else torch.softmax(logits, -1)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        """Clip each ensemble member's gradient on its own at :meth:`clip_setting` (a single model:
        Lightning's clipping)."""
        value, algorithm = self.clip_setting(gradient_clip_val, gradient_clip_algorithm)
        if not self.extra_members or not value:
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        for member in self.members:
            params = [p for part in member if part is not None for p in part.parameters()]
            if algorithm == "norm":
                torch.nn.utils.clip_grad_norm_(params, float(value))
            else:
                torch.nn.utils.clip_grad_value_(params, float(value))

    def loss(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy over the labelled series (class-weighted with ``class_weight``).

        ``mask`` (1 = labelled) defaults to ``target >= 0``: unlabelled series carry -1 and no loss.
        With no labelled series the loss is a zero that keeps the graph (a batch of unlabelled
        series is legal), never NaN.

        With class weights w the loss is sum(w l) / sum(w) over the labelled series, binary and
        multi-class alike (torch's ``cross_entropy`` with ``weight``): the weights set how much each
        class counts relative to the others, not the loss's scale.

        Shape:
            logits: (B,) binary or (B, C); target: (B,) (0/1, or class index; -1 = unlabelled);
            mask: (B,) -> scalar (mean over the labelled series).
        """
        keep = (target >= 0) if mask is None else (mask > 0) & (target >= 0)
        if keep.shape != target.shape or logits.shape[0] != target.shape[0]:
            raise ValueError(f"loss: expected logits (B,) or (B, C), target and mask (B,), got "
                             f"{tuple(logits.shape)}, {tuple(target.shape)} and {tuple(keep.shape)}")
        if not bool(keep.all()):
            if not bool(keep.any()):
                return logits.sum() * 0.0
            logits, target = logits[keep], target[keep]
        if self.n_classes == 2:
            if not self._weighted:  # no class weights: two operations fewer each way
                return F.binary_cross_entropy_with_logits(logits, target.float())
            w = self.class_weights
            weight = torch.where(target > 0.5, w[1], w[0])
            per_series = F.binary_cross_entropy_with_logits(logits, target.float(), reduction="none")
            return (weight * per_series).sum() / weight.sum()  # sum(w l) / sum(w), as cross_entropy's weight
        return F.cross_entropy(logits, target.long(), weight=self.class_weights)

    def training_step(self, batch, batch_idx):
        """One step of every member; ``batch`` is one batch for all, or a list with one per member
        (:attr:`train_streams`: each member then trains on its own order of the data)."""
        members = self.members
        if len(members) > 1 and not isinstance(batch, (list, tuple)) and not getattr(self, "_warned_streams", False):
            self._warned_streams = True
            log.warning("task ensemble of %d members, but the training loader serves one batch per step: every "
                        "member trains on the same order; build the datamodule with train_streams=%d "
                        "(GrudDataModule(..., train_streams=task.train_streams)) for one order each",
                        len(members), self.train_streams)
        batches = list(batch) if isinstance(batch, (list, tuple)) else [batch] * len(members)
        if len(batches) != len(members):
            raise ValueError(f"training batch: expected one batch per ensemble member ({len(members)}), "
                             f"got {len(batches)}")
        loss, task_loss = 0.0, 0.0
        for k, (member, b) in enumerate(zip(members, batches)):
            if self.augment_missing > 0:  # simulated missingness, training batches only
                b = hide_observed(b, self.augment_missing)
            logits, outputs = self.member_forward(member, b)
            label_loss = self.loss(logits, b["target"])  # unlabelled series (-1) carry no label loss
            loss = loss + label_loss + self.auxiliary_loss(b, outputs, member[2], log=k == 0)
            task_loss = task_loss + label_loss.detach()
        self.check_finite(loss)
        # train/loss is the label loss alone (the members' mean), comparable with val/loss; the
        # auxiliary imputation term is logged as train/impute_mse; the sum is what trains them
        self.log_running("train/loss", task_loss / len(members), len(batches[0]["target"]), prog_bar=True)
        return loss

    def _eval_step(self, batch, stage):
        logits, _ = self(batch)
        target = batch["target"]
        keep = target >= 0  # unlabelled series (-1) never count
        if bool(keep.any()):
            # validation and test loaders are not sharded under DDP: every rank sees every batch
            # weighted by the batch's sum of class weights: the epoch's loss is sum(w l) / sum(w) exactly
            total = float(self.class_weights[target[keep].long()].sum()) if self._weighted else int(keep.sum())
            self.add_eval_loss(stage, self.loss(logits, target, keep), total)
        if not bool(keep.all()):
            logits, target = logits[keep], target[keep]
        self._outputs[stage].append((self.probabilities(logits).detach().cpu(), target.cpu()))

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def _epoch_metrics(self, stage):
        self.log_eval_loss(stage)
        outs = self._outputs[stage]
        self._outputs[stage] = []
        if not outs:
            return
        prob = torch.cat([p for p, _ in outs])
        y = torch.cat([t for _, t in outs])
        if not torch.isfinite(prob).all():
            from grud.tasks.base import NonFiniteLossError

            raise NonFiniteLossError(
                f"the model's {stage} outputs became NaN/inf at epoch {self.current_epoch}; lower optim.lr or set "
                "optim.grad_clip (best.ckpt, if an earlier epoch wrote one, is kept)")
        # validation and test loaders are not sharded under DDP: every rank scores all series
        values = self.score(y.numpy(), prob.numpy())
        if stage == "test":
            self.last_test = (y.numpy(), prob.numpy())
            if self.n_classes == 2:
                values["auroc_ci_low"], values["auroc_ci_high"] = M.bootstrap_ci(y.numpy(), prob.numpy(), "auroc")
        for k, v in values.items():
            self.log(f"{stage}/{k}", float(v), prog_bar=k == "auroc")

    def score(self, y: np.ndarray, prob: np.ndarray) -> dict:
        if self.n_classes == 2:
            return M.binary_metrics(y, prob)
        return M.multiclass_metrics(y, prob)

    def on_validation_epoch_end(self):
        self._epoch_metrics("val")

    def on_test_epoch_end(self):
        self._epoch_metrics("test")

    def predict_step(self, batch, batch_idx, dataloader_idx=0, mc_samples: int = 0):
        if mc_samples and mc_samples > 0:
            with self.mc_dropout(True):
                draws = torch.stack([self.probabilities(self(batch)[0]) for _ in range(mc_samples)])
            return {"index": batch["index"], "probability": draws.mean(0), "probability_std": draws.std(0)}
        return {"index": batch["index"], "probability": self.probabilities(self(batch)[0])}

    # ------------------------------------------------------------------ output
    def predictions_frame(self, parts: list, ds, id_column: str = "id") -> pd.DataFrame:
        index = torch.cat([p["index"] for p in parts]).numpy()
        order = np.argsort(index)
        out = {id_column: [ds.ids[i] for i in index[order]]}
        prob = torch.cat([p["probability"] for p in parts]).numpy()[order]
        std = torch.cat([p["probability_std"] for p in parts]).numpy()[order] if "probability_std" in parts[0] else None
        if self.n_classes == 2:
            out["probability"] = prob
            if std is not None:
                out["probability_std"] = std
        else:
            for k, c in enumerate(self.stats.classes):
                out[f"probability_{c}"] = prob[:, k]
                if std is not None:
                    out[f"probability_std_{c}"] = std[:, k]
        return pd.DataFrame(out)


def class_weights_of(class_weight, counts, n_classes: int) -> torch.Tensor:
    """The (C,) class weights ``task.class_weight`` asks for (null: ones; balanced: the inverse
    class frequencies of ``counts``, the training split's; a list: as given), or a ConfigError."""
    if class_weight in (None, "none", False):
        return torch.ones(n_classes)
    if class_weight == "balanced":
        if not counts:
            raise ConfigError("task.class_weight=balanced needs the training split's class_counts")
        c = torch.tensor(counts, dtype=torch.float32).clamp_min(1)
        return c.sum() / (n_classes * c)
    expected = f"null, balanced or a list of {n_classes} weights > 0 (one per class)"
    if isinstance(class_weight, (str, bytes)) or not hasattr(class_weight, "__iter__"):
        raise ConfigError(f"task.class_weight: expected {expected}, got {class_weight!r}")
    try:
        w = torch.tensor([float(v) for v in class_weight], dtype=torch.float32)
    except (TypeError, ValueError):
        raise ConfigError(f"task.class_weight: expected {expected}, got {class_weight!r}") from None
    if w.shape != (n_classes,) or not bool(torch.isfinite(w).all()) or not bool((w > 0).all()):
        raise ConfigError(f"task.class_weight: expected {expected}, got {class_weight!r}")
    return w


class EnsembleMember(nn.Module):
    """One extra member of an ensemble: its own network, head and (optional) imputer."""

    def __init__(self, network: nn.Module, head: nn.Module, imputer: nn.Module | None):
        super().__init__()
        self.network, self.head, self.imputer = network, head, imputer


def hide_observed(batch: dict, fraction: float, generator: torch.Generator | None = None) -> dict:
    """A copy of ``batch`` with each observed entry hidden with probability ``fraction``.

    Hidden entries get mask 0 and value 0, and ``delta`` is recomputed from the new mask (time
    since the last entry still observed), as if they had never been measured. A precomputed
    ``summary`` is dropped, so the head summarises what is left.

    Shape:
        values, mask, delta (B, T, F); times (B, T); lengths (B,) -> same shapes.
    """
    mask = batch["mask"]
    keep = (torch.rand(mask.shape, generator=generator, device=mask.device) >= fraction).to(mask.dtype)
    new_mask = mask * keep
    delta = masking.time_deltas(batch["times"], new_mask, lengths=batch["lengths"])
    kept = {k: v for k, v in batch.items() if k != "summary"}
    return {**kept, "mask": new_mask, "values": batch["values"] * new_mask, "delta": delta.to(batch["delta"].dtype)}
