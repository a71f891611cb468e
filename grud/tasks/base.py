"""What every Lightning task of grud shares: building the network from plain hyperparameters,
the optimiser and schedule, the imputation auxiliary loss, MC dropout and the NaN-loss guard.

A task is built from plain containers only (``model`` preset dict, fitted ``stats`` dict,
``optim`` dict), all stored with ``save_hyperparameters``; a checkpoint therefore holds
everything prediction needs and loads with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import math
import numbers
from contextlib import contextmanager
from contextvars import ContextVar

import pytorch_lightning as pl
import torch
from torch import nn

from grud.data.transforms import FittedStats
from grud.errors import ConfigError
from grud.models import preset
from grud.models.heads import NextStepImputer
from grud.tasks.metrics import masked_mse_loss

DEFAULT_OPTIM = {"name": "adam", "lr": 1e-3, "weight_decay": 0.0, "scheduler": "plateau",
                 "scheduler_patience": 3, "scheduler_factor": 0.5, "grad_clip": None}


def _adam_kernel() -> dict:
    """Adam's fused kernel (one pass over all parameters; CPU support since torch 2.4), else its
    multi-tensor form. torch picks the per-parameter loop by itself on a CPU: 0.23-0.32 ms per
    step for GRU-D's ~30 parameter tensors against 0.075 ms fused (same update rule)."""
    major, minor = (int(p) for p in torch.__version__.split(".")[:2])
    return {"fused": True} if (major, minor) >= (2, 4) else {"foreach": True}


#: True while :func:`rebuilding_saved` is active: constructors rebuild what an earlier version saved
_REBUILDING_SAVED: ContextVar[bool] = ContextVar("grud_rebuilding_saved", default=False)


@contextmanager
def rebuilding_saved():
    """Within this block, tasks rebuild combinations that earlier versions of grud trained and
    saved but that today's configuration checks refuse (a stacked bidirectional network with the
    imputation loss), so their checkpoints still load; training never runs inside it."""
    token = _REBUILDING_SAVED.set(True)
    try:
        yield
    finally:
        _REBUILDING_SAVED.reset(token)


OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("plateau", "cosine", "none")


def check_optim(optim: dict) -> None:
    """ConfigError naming the key for an optimiser setting :meth:`TaskModule.configure_optimizers`
    cannot use (learning rate, optimiser or scheduler name)."""
    try:
        lr = float(optim["lr"])
    except (TypeError, ValueError):
        lr = float("nan")
    if not (math.isfinite(lr) and lr > 0):
        raise ConfigError(f"optim.lr: expected a positive learning rate, got {optim['lr']}")
    name = str(optim.get("name", "adam")).lower()
    if name not in OPTIMIZERS:
        raise ConfigError(f"optim.name: expected {', '.join(OPTIMIZERS[:-1])} or {OPTIMIZERS[-1]}, got {name!r}")
    sched = str(optim.get("scheduler") or "none").lower()
    if sched not in SCHEDULERS:
        raise ConfigError(f"optim.scheduler: expected {', '.join(SCHEDULERS[:-1])} or {SCHEDULERS[-1]}, "
                          f"got {sched!r}")


class NonFiniteLossError(RuntimeError):
    """Raised when the training loss becomes NaN or infinite."""


def masked_next_step_mse(pred: torch.Tensor, values: torch.Tensor, mask: torch.Tensor,
                         lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error of ``pred[:, t]`` against ``values[:, t+1]`` over observed entries only.

    Shape:
        pred, values, mask: (B, T, F); lengths (B,) -> scalar. Steps at or after a series' length
        never count, whatever their mask holds (grud's own batches pad with mask 0).
    """
    if values.shape[1] < 2:
        return pred.sum() * 0.0
    target_mask = mask[:, 1:]
    if lengths is not None:
        steps = torch.arange(1, values.shape[1], device=mask.device)
        target_mask = target_mask * (steps[None, :] < lengths.to(mask.device)[:, None])[..., None].to(mask.dtype)
    return masked_mse_loss(pred[:, :-1], values[:, 1:], target_mask)


class TaskModule(pl.LightningModule):
    """Base class: builds ``self.network`` from a preset dict and fitted statistics.

    Args:
        model: plain dict with ``name`` (a preset of :mod:`grud.models`) and its overrides.
        stats: :meth:`grud.data.transforms.FittedStats.to_dict` of the training split.
        optim: optimiser settings (``lr``, ``weight_decay``, ``scheduler``: plateau | cosine | none).
        impute_weight: weight of the next-step imputation auxiliary loss (0 = off).

    Shape:
        a batch of :mod:`grud.data.batching`: values, mask, delta (B, T, F); times (B, T);
        lengths (B,); static (B, S); the network gives outputs (B, T, H_out) and last (B, H_out).
    """

    monitor = "val/loss"
    monitor_mode = "min"
    name = "base"

    def __init__(self, model: dict, stats: dict, optim: dict | None = None, impute_weight: float = 0.0):
        super().__init__()
        self.stats = FittedStats.from_dict(stats)
        unknown = sorted(set(optim or {}) - set(DEFAULT_OPTIM))
        if unknown:
            raise ConfigError(f"unknown optim key(s) {', '.join(map(repr, unknown))}; allowed: "
                              f"{', '.join(DEFAULT_OPTIM)}")
        self.optim = {**DEFAULT_OPTIM, **(optim or {})}
        check_optim(self.optim)  # here, not first in configure_optimizers: before a run replaces anything
        if model.get("name") is None:
            raise ConfigError("model.name: a model preset name is required")
        self.model_spec = dict(model)
        self.network = self.build_network()
        if isinstance(impute_weight, bool) or not isinstance(impute_weight, numbers.Real) \
                or not math.isfinite(impute_weight) or impute_weight < 0:
            raise ConfigError(f"task.impute_weight: expected a number >= 0 (0 = off), got {impute_weight!r}")
        self.impute_weight = float(impute_weight)
        self.imputer = self.build_imputer()
        self._running: dict = {}  # training metrics between two logged steps: name -> [sum, weight]
        #: the training file's hash and test ids (grud.cli.pipeline.held_out_record), kept in checkpoints
        #: so grud-evaluate on that file scores the held-out series only; None outside grud-train
        self.held_out: dict | None = None
        self._eval_losses: dict = {}  # stage -> [sum of loss * batch size, total batch size]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Name the task in the checkpoint (plain strings), so it reloads as the right class, and
        keep the random state (dropout, ``task.augment_missing``) so ``resume=true`` repeats the
        uninterrupted run: a checkpoint is written at the end of an epoch, and nothing draws from
        the generator between that point and the next epoch's first batch."""
        import grud

        checkpoint["grud"] = {"task": self.name, "version": grud.__version__}
        if self.held_out is not None:
            checkpoint["grud"]["held_out"] = self.held_out
        checkpoint["rng_state"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            checkpoint["rng_state"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """A resumed run restores the saved random state when its first epoch starts (after
        Lightning's sanity check), see :meth:`on_save_checkpoint`. Older checkpoints have none."""
        self._resume_rng_state = checkpoint.get("rng_state")
        record = (checkpoint.get("grud") or {}).get("held_out")
        if record is not None:  # (a resumed run keeps the record its own split made)
            self.held_out = record

    # ------------------------------------------------------------------ shared pieces
    def build_network(self) -> nn.Module:
        """A freshly initialised network of the model preset, with the training split's input means."""
        spec = {k: v for k, v in self.model_spec.items() if k not in ("name", "kind", "tasks")}
        net = preset(str(self.model_spec["name"]), n_features=self.stats.n_features, n_static=self.stats.n_static,
                     **spec)
        net.set_input_means(torch.tensor(self.stats.input_means, dtype=torch.float32))
        return net

    def build_imputer(self) -> nn.Module | None:
        """The next-step imputer of the auxiliary loss (None when ``impute_weight`` is 0)."""
        if self.impute_weight <= 0:
            return None
        net = self.network
        if net.bidirectional and net.num_layers > 1 and not _REBUILDING_SAVED.get():
            # (a saved one is let through: the loader then gives it the imputer width its checkpoint holds)
            raise ConfigError(
                f"task.impute_weight = {self.impute_weight} needs states that have not read the next step, and a "
                f"bidirectional network with {net.num_layers} layers has none (every top-layer state has seen the "
                "lower layer's backward pass over the future): set task.impute_weight=0 or model.num_layers=1")
        # a bidirectional network's forward half: the backward state at t has read step t+1 (NextStepImputer)
        return NextStepImputer(net.hidden_size if net.bidirectional else net.output_size, self.stats.n_features)

    def encode(self, batch: dict, network: nn.Module | None = None):
        """Run the recurrent network (``self.network`` unless given) on a batch.

        Shape:
            batch as :mod:`grud.data.batching` -> (outputs (B, T, H_out), last (B, H_out)).
        """
        network = self.network if network is None else network
        return network(batch["values"], batch["mask"], batch["delta"], batch["times"], batch["lengths"],
                       batch.get("static"))

    def auxiliary_loss(self, batch: dict, outputs: torch.Tensor, imputer: nn.Module | None = None,
                       log: bool = True) -> torch.Tensor:
        """``impute_weight`` times the masked next-step MSE of ``imputer`` (``self.imputer`` unless
        given); logged as ``train/impute_mse`` (see :meth:`log_running`) unless ``log`` is False.

        Shape:
            batch values, mask (B, T, F); outputs (B, T, H_out) -> scalar (the error of step t+1 from
            the state at t, over observed entries of steps 1..T-1).
        """
        imputer = self.imputer if imputer is None else imputer
        if imputer is None or self.impute_weight <= 0:
            return outputs.new_zeros(())
        loss = masked_next_step_mse(imputer(outputs), batch["values"], batch["mask"], batch.get("lengths"))
        if log:
            self.log_running("train/impute_mse", loss, outputs.shape[0])
        return self.impute_weight * loss

    # ------------------------------------------------------------------ logging
    # Lightning's ``self.log`` costs about half a millisecond a call (it moves its whole result
    # entry to the value's device every time): a call per batch per metric was a tenth of a fast
    # epoch. Training metrics are therefore averaged here and handed to ``self.log`` on the steps
    # Lightning writes its logs (every ``trainer.log_every_n_steps``);
    # evaluation losses are summed here and logged once per epoch.
    def on_train_epoch_start(self) -> None:
        self._running.clear()  # a window never spans two epochs
        saved = getattr(self, "_resume_rng_state", None)
        self._resume_rng_state = None
        # only a resumed fit (Trainer.fit(ckpt_path=...)): a model loaded with load_from_checkpoint and
        # trained afresh keeps the seed its user set
        if saved is not None and getattr(self.trainer, "ckpt_path", None):
            torch.set_rng_state(saved["torch"])
            cuda = saved.get("cuda")
            if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(cuda)

    def log_running(self, name: str, value: torch.Tensor, batch_size: int, prog_bar: bool = False) -> None:
        """Log the batch-size-weighted mean of ``value`` over the training steps since it was last
        logged (in this epoch), on the steps Lightning writes logs only (every step outside a Trainer)."""
        acc = self._running.get(name)
        v = value.detach() * batch_size
        if acc is None:
            self._running[name] = acc = [v, batch_size]
        else:
            acc[0] = acc[0] + v
            acc[1] += batch_size
        if not self._is_logging_step():
            return
        self._running.pop(name)
        self.log(name, acc[0] / max(acc[1], 1), prog_bar=prog_bar, batch_size=acc[1])

    def _is_logging_step(self) -> bool:
        trainer = getattr(self, "_trainer", None)
        if trainer is None:
            return True
        every = max(1, int(getattr(trainer, "log_every_n_steps", 1) or 1))
        return (trainer.global_step + 1) % every == 0  # Lightning's own rule for writing step logs

    def add_eval_loss(self, stage: str, loss: torch.Tensor, batch_size: float) -> None:
        """Accumulate an evaluation batch's mean loss, weighted by its batch size (a class-weighted
        loss: by the batch's sum of class weights, so the epoch's loss is sum(w l) / sum(w))."""
        acc = self._eval_losses.setdefault(stage, [0.0, 0])
        acc[0] = acc[0] + loss.detach() * batch_size
        acc[1] += batch_size

    def log_eval_loss(self, stage: str) -> None:
        """Log ``<stage>/loss`` (the batch-size-weighted mean over the epoch) and reset it."""
        acc = self._eval_losses.pop(stage, None)
        if acc is not None and acc[1] > 0:
            self.log(f"{stage}/loss", float(acc[0] / acc[1]))

    def check_finite(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"the training loss became {loss.item()} at epoch {self.current_epoch}, step {self.global_step}; "
                "lower optim.lr or set optim.grad_clip (best.ckpt, if an earlier epoch wrote one, is kept)"
            )

    def clip_setting(self, gradient_clip_val=None, gradient_clip_algorithm=None) -> tuple:
        """``(value, algorithm)`` to clip with: the Trainer's ``gradient_clip_val`` if it sets one,
        else ``optim.grad_clip`` (None = off), so the setting holds under any Trainer, not only the
        CLI's; the Trainer's algorithm, by default the norm."""
        if gradient_clip_val is None and self.optim.get("grad_clip"):
            gradient_clip_val = float(self.optim["grad_clip"])
        return gradient_clip_val, gradient_clip_algorithm or "norm"

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Clip at :meth:`clip_setting`."""
        value, algorithm = self.clip_setting(gradient_clip_val, gradient_clip_algorithm)
        self.clip_gradients(optimizer, gradient_clip_val=value, gradient_clip_algorithm=algorithm)

    def configure_optimizers(self):
        o = self.optim
        check_optim(o)
        lr = float(o["lr"])
        name = str(o.get("name", "adam")).lower()
        if name == "adam":
            opt = torch.optim.Adam(self.parameters(), lr=lr, weight_decay=float(o["weight_decay"]), **_adam_kernel())
        elif name == "adamw":
            opt = torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=float(o["weight_decay"]), **_adam_kernel())
        else:  # sgd: check_optim allows no other name
            opt = torch.optim.SGD(self.parameters(), lr=lr, momentum=0.9, weight_decay=float(o["weight_decay"]),
                                  foreach=True)
        sched = str(o.get("scheduler") or "none").lower()
        if sched == "none":
            return opt
        if sched == "plateau":
            s = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode=self.monitor_mode, factor=float(o["scheduler_factor"]),
                patience=int(o["scheduler_patience"]))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": s, "monitor": self.monitor}}
        # cosine: check_optim allows no other scheduler
        epochs = self.trainer.max_epochs if self.trainer and self.trainer.max_epochs else 50
        s = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
        return {"optimizer": opt, "lr_scheduler": s}

    @contextmanager
    def mc_dropout(self, enabled: bool):
        """Keep dropout active (and batch norm in eval mode) for Monte-Carlo dropout sampling."""
        if not enabled:
            yield
            return
        was = self.training
        self.train()
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        try:
            yield
        finally:
            self.train(was)
