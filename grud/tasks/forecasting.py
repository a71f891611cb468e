"""Forecasting: observe a series before a horizon, predict every variable at later query times.

The recurrent network (GRU-D or another preset) encodes the history only (rows before
``history_hours``, see :mod:`grud.data.forecast_batching`). A :class:`QueryDecoder` then
predicts each variable at each query from the network's last state, the static features, the
query's time since the horizon, the variable's time since its last observation and simple
history summaries, as a correction to the last observation (so an untrained decoder is the
LOCF forecast).

Scoring follows the protocol of t-PatchGNN (Zhang et al., ICML 2024): squared and absolute
errors on values min-max scaled per variable with the training split's min and max, averaged
over the queries of each variable, then over variables (accumulated over a whole epoch).
``test/mse_vs_locf`` divides the model's MSE by that of last-observation-carried-forward on
the same test queries.

Each validation epoch also stores split-conformal interval half-widths in the module (a buffer,
so the checkpoint carries them; :mod:`grud.tasks.forecast_intervals`): ``interval="conformal"``
at prediction gives ``lower`` / ``upper`` from them, and ``test/interval_coverage`` reports the
share of test truths inside the 90 % interval.

A variable that holds one value throughout the training split (PhysioNet's ``MechVent``, a flag
recorded only when on) is forecast by its last observation (that value when there is none), as
LOCF does, in validation, test and prediction: a correction learned from a variable that never
varies could only add error (:meth:`ForecastTask.forward`).
"""
from __future__ import annotations

import logging


import numpy as np
import pandas as pd
import torch
from torch import nn

from grud.data.forecast_batching import ForecastDataset, check_window
from grud.data.transforms import FittedStats
from grud.errors import ConfigError, DataError
from grud.float32_text import float32_decimals
from grud.models import arguments
from grud.tasks import forecast_intervals as CI
from grud.tasks import metrics as M
from grud.tasks.base import TaskModule

log = logging.getLogger(__name__)

BASELINES = ("locf", "mean_forecast")
DEFAULT_DECODER = {"hidden": 64, "layers": 2, "context": 16, "dropout": 0.1}
MC_QUANTILES = (0.05, 0.95)
#: the ``interval`` choices of :meth:`ForecastTask.predict_step`
INTERVALS = ("mc", "conformal")


# ============================================================================ decoder
def locf_base(last_values: torch.Tensor, last_mask: torch.Tensor) -> torch.Tensor:
    """The LOCF forecast in normalised units: each variable's last history value, 0 (the training
    mean) where it has none. Shape: last_values, last_mask (B, F) -> (B, 1, F)."""
    return (last_values * last_mask)[:, None, :]


class QueryDecoder(nn.Module):
    """Predicts every variable at every query as a correction to its last history observation.

    For series b, query q and variable f the input is a per-variable context
    ``c[b, f] = W_f [h_b, s_b] + e_f`` (the network's last state ``h`` and static features ``s``;
    the bias ``e_f`` acts as a variable embedding) and six query features: log(1 + lead time),
    log(1 + time since the variable's last observation), the last value, whether there is one,
    the history mean and log(1 + number of history observations). An MLP maps them to ``r``
    and the forecast is ``last_value + r`` (0, the training mean, where never observed).

    Args:
        state_size: H_out of the encoder.
        n_static: S.
        n_features: F.
        hidden: width of the MLP.
        layers: hidden layers of the MLP (>= 1).
        context: size of the per-variable context.
        dropout: dropout before every hidden layer (also the source of MC dropout).

    Shape:
        last_state: (B, H_out); static: (B, S); lead_times: (B, Q); since_last: (B, Q, F);
        last_values, last_mask, history_means, history_counts: (B, F) -> forecast (B, Q, F) normalised.
    """

    N_QUERY_FEATURES = 6

    def __init__(self, state_size: int, n_static: int, n_features: int, hidden: int = 64, layers: int = 2,
                 context: int = 16, dropout: float = 0.1):
        super().__init__()
        for name, v in (("hidden", hidden), ("layers", layers), ("context", context)):
            arguments.integer(f"task.decoder.{name}", v, 1)
        arguments.probability("task.decoder.dropout", dropout)
        self.n_features, self.n_static, self.context_size = int(n_features), int(n_static), int(context)
        self.context = nn.Linear(state_size + n_static, n_features * context)
        self.in_context = nn.Linear(context, hidden)
        self.in_query = nn.Linear(self.N_QUERY_FEATURES, hidden, bias=False)
        self.hidden = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(int(layers) - 1))
        self.out = nn.Linear(hidden, 1)
        self.dropout = nn.Dropout(float(dropout))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default (Kaiming-uniform) for every layer except ``out``, whose weight and bias
        start at zero so that the untrained forecast is exactly the last observation (LOCF)."""
        for m in [self.context, self.in_context, self.in_query, *self.hidden]:
            m.reset_parameters()
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, last_state, static, lead_times, since_last, last_values, last_mask, history_means,
                history_counts, only=None) -> torch.Tensor:
        """Forecast (B, Q, F); with ``only`` (B, Q, F) given, the MLP runs on its nonzero entries alone
        (training and scoring need observed queries only) and the other entries hold the LOCF base."""
        B, Q, F = since_last.shape
        if F != self.n_features or lead_times.shape != (B, Q):
            raise ValueError(f"since_last, lead_times: expected (B, Q, {self.n_features}) and (B, Q), got "
                             f"{tuple(since_last.shape)} and {tuple(lead_times.shape)}")
        x = last_state if not self.n_static else torch.cat([last_state, static], -1)
        ctx = self.in_context(self.dropout(self.context(x).view(B, F, self.context_size)))  # (B, F, hidden)
        base = locf_base(last_values, last_mask).expand(B, Q, F).to(ctx.dtype)
        if only is None:
            b, q, f = (i.reshape(-1) for i in torch.meshgrid(
                torch.arange(B, device=x.device), torch.arange(Q, device=x.device),
                torch.arange(F, device=x.device), indexing="ij"))
        else:
            if only.shape != since_last.shape:
                raise ValueError(f"only: expected {tuple(since_last.shape)}, got {tuple(only.shape)}")
            b, q, f = torch.nonzero(only, as_tuple=True)
        feats = torch.stack([
            torch.log1p(lead_times[b, q].clamp_min(0)),
            torch.log1p(since_last[b, q, f].clamp_min(0)),
            last_values[b, f],
            last_mask[b, f],
            history_means[b, f],
            torch.log1p(history_counts[b, f]),
        ], -1).to(ctx.dtype)  # (N, 6); batches arrive in float32, the decoder may run in float64
        h = torch.relu(ctx[b, f] + self.in_query(feats))
        for layer in self.hidden:
            h = torch.relu(layer(self.dropout(h)))
        r = self.out(self.dropout(h)).squeeze(-1)
        return base.index_put((b, q, f), base[b, q, f] + r)


# ============================================================================ scoring
class VariableErrors:
    """Per-variable sums of squared and absolute errors on the min-max scale, over an epoch.

    :meth:`mse` / :meth:`mae` average each variable over its observed queries, then over the
    variables observed at least once (``reduce="variable"`` of :func:`grud.tasks.metrics.masked_mse`).

    Shape:
        :meth:`add` takes pred_mm, target_mm, mask (..., F) (1 = observed query); the sums are (F,).
    """

    def __init__(self, n_features: int):
        self.sq = np.zeros(n_features)
        self.abs = np.zeros(n_features)
        self.count = np.zeros(n_features)

    def add(self, pred_mm, target_mm, mask) -> None:
        """pred_mm, target_mm, mask: (..., F) tensors or arrays."""
        p, t, m = (np.asarray(a.detach().cpu().double() if torch.is_tensor(a) else a, np.float64)
                   for a in (pred_mm, target_mm, mask))
        F = p.shape[-1]
        m = m.reshape(-1, F) > 0
        d = np.where(m, p.reshape(-1, F) - t.reshape(-1, F), 0.0)
        self.sq += (d * d).sum(0)
        self.abs += np.abs(d).sum(0)
        self.count += m.sum(0)

    def add_rows(self, variable, pred_mm, target_mm) -> None:
        """Long-format entries: ``variable`` (N,) the index of each entry's variable, ``pred_mm`` and
        ``target_mm`` (N,) on the min-max scale (every entry is scored)."""
        j = np.asarray(variable, np.int64)
        d = np.asarray(pred_mm, np.float64) - np.asarray(target_mm, np.float64)
        F = len(self.count)
        self.sq += np.bincount(j, d * d, F)
        self.abs += np.bincount(j, np.abs(d), F)
        self.count += np.bincount(j, None, F)

    def _reduce(self, total) -> float:
        has = self.count > 0
        return float((total[has] / self.count[has]).mean()) if has.any() else float("nan")

    def mse(self) -> float:
        return self._reduce(self.sq)

    def mae(self) -> float:
        return self._reduce(self.abs)

    def per_variable_mse(self) -> np.ndarray:
        return np.divide(self.sq, self.count, out=np.full_like(self.sq, np.nan), where=self.count > 0)


def forecast_test_metrics(model: VariableErrors, locf: VariableErrors) -> dict:
    """The forecasting ``test/`` keys of metrics.json from the errors of a model and of LOCF on the same queries."""
    return {
        "test/mse": model.mse(),
        "test/mae": model.mae(),
        "test/mse_vs_locf": model.mse() / locf.mse(),
        "test/mae_vs_locf": model.mae() / locf.mae(),
        "test/locf_mse": locf.mse(),
        "test/locf_mae": locf.mae(),
    }


def _as_stats(stats) -> FittedStats:
    return stats if isinstance(stats, FittedStats) else FittedStats.from_dict(dict(stats))


def fit_loss_weights(train_ds, stats, history_hours: float = 24.0, horizon_hours: float | None = 24.0,
                     power: float = 0.5) -> list:
    """Per-variable training-loss weights that make the pooled loss track the forecast metric.

    The metric averages each variable's min-max-scaled squared error over its own queries, so
    variable f counts ``(std_f / span_f)**2 / n_f`` per normalised squared error, where
    ``n_f`` is its number of observed queries in ``train_ds`` and ``std_f``, ``span_f`` are the
    training normaliser scale and max - min. The weight is that quantity to the power ``power``
    (1 = match the metric exactly; the default 0.5 tempers the weight of rare variables, whose
    few training queries would otherwise make the loss noisy). Variables without a training
    query get 0. The weights are scaled to average 1 over the others.

    Returns:
        a plain list of F floats (for ``ForecastTask(loss_weights=...)``).

    Raises:
        ConfigError: ``power`` is not a number >= 0.
    """
    try:
        p = float(power)
    except (TypeError, ValueError):
        p = float("nan")
    if not (np.isfinite(p) and p >= 0):
        raise ConfigError(f"task.loss_weight_power: expected a number >= 0 (0 = every variable weighs 1), "
                          f"got {power!r}")
    stats = _as_stats(stats)
    fd = ForecastDataset(train_ds, stats, history_hours, horizon_hours)
    n = fd.query_mask.sum(0).astype(np.float64)
    std = np.asarray(stats.value_std, np.float64)
    _, span = stats.minmax_bounds()
    w = np.zeros_like(n)
    has = n > 0
    if not has.any():
        window = "until the end" if horizon_hours is None else f"within task.horizon_hours={horizon_hours:g} after it"
        raise DataError(f"no training series has an observation after task.history_hours={history_hours:g} ({window}): "
                        f"nothing to forecast; the longest training series spans "
                        f"{float(np.max(train_ds.times, initial=0.0)):g} hours: lower task.history_hours")
    w[has] = ((std[has] / span[has]) ** 2 / n[has]) ** p
    if has.any():
        w[has] /= w[has].mean()
    return [float(x) for x in w]


# ============================================================================ task
class ForecastTask(TaskModule):
    """Lightning module for forecasting after a horizon.

    Args:
        model, stats, optim, impute_weight: see :class:`grud.tasks.base.TaskModule`
            (``impute_weight`` adds next-step imputation on the history as an auxiliary loss).
        decoder: ``hidden``, ``layers``, ``context``, ``dropout`` of :class:`QueryDecoder`.
        history_hours: the horizon; settable on a loaded module before :meth:`encode_dataset`.
        horizon_hours: how far after the horizon queries reach (None = to the end of each series).
        forecast_grid_hours: query a regular grid ``history_hours + k * g`` (k >= 1) instead of the
            observed rows; settable at prediction.
        loss_weights: (F,) per-variable weights of the training loss (:func:`fit_loss_weights`),
            None = pooled mean squared error.

    Shape:
        batch as :mod:`grud.data.forecast_batching` -> forecast (B, Q, F) normalised.
    """

    monitor = "val/mse"
    monitor_mode = "min"
    name = "forecast"

    def __init__(self, model: dict, stats: dict, optim: dict | None = None, decoder: dict | None = None,
                 history_hours: float = 24.0, horizon_hours: float | None = 24.0,
                 forecast_grid_hours: float | None = None, loss_weights: list | None = None,
                 impute_weight: float = 0.0):
        super().__init__(model, stats, optim, impute_weight)
        self.save_hyperparameters()
        self.history_hours, self.horizon_hours, self.forecast_grid_hours = check_window(
            history_hours, horizon_hours, forecast_grid_hours)
        unknown = set(decoder or {}) - set(DEFAULT_DECODER)
        if unknown:
            raise ConfigError(f"task.decoder: unknown key(s) {sorted(unknown)}; expected {sorted(DEFAULT_DECODER)}")
        F = self.stats.n_features
        self.decoder = QueryDecoder(self.network.output_size, self.stats.n_static, F,
                                    **{**DEFAULT_DECODER, **(decoder or {})})
        if loss_weights is None:
            w = torch.ones(F)
        else:
            if isinstance(loss_weights, str):
                raise ConfigError(f"task.loss_weights: expected a list of {F} numbers or null, got {loss_weights!r}")
            w = torch.tensor([float(x) for x in loss_weights], dtype=torch.float32)
            if w.shape != (F,) or not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
                raise ConfigError(f"task.loss_weights: expected {F} finite non-negative numbers (one per variable, "
                                  f"not all 0), got {len(w)} values")
        self.register_buffer("loss_weights", w)
        lo, span = self.stats.minmax_bounds()
        std, mean = np.asarray(self.stats.value_std, np.float64), np.asarray(self.stats.value_mean, np.float64)
        # normalised -> min-max scale is affine: mm = z * std / span + (mean - min) / span
        self.register_buffer("mm_scale", torch.tensor(std / span, dtype=torch.float32), persistent=False)
        self.register_buffer("mm_shift", torch.tensor((mean - lo) / span, dtype=torch.float32), persistent=False)
        # (F,) variables with one value in the training split (min = max): forecast as that value
        constant = np.asarray(self.stats.value_min) == np.asarray(self.stats.value_max)
        self.register_buffer("constant_variables", torch.tensor(constant), persistent=False)
        self._any_constant = bool(constant.any())  # a Python bool: no device sync per forward
        # conformal half-widths (L, F, K), normalised units; NaN until a validation epoch sets them. A
        # plain tensor, not a buffer: weight averaging (ema_decay) swaps and averages buffers, and these
        # come from the weights validation ran with; the checkpoint carries them under "grud"
        self.interval_halfwidth = torch.full((len(CI.INTERVAL_LEVELS), F, CI.N_GROUPS), float("nan"))
        self.interval_window: dict | None = None  # the forecast window the half-widths were measured on
        self._warned_window: dict | None = None  # the other window last warned about (once, not per batch)
        self._errors: dict = {}

    # ------------------------------------------------------------------ data
    def encode_dataset(self, ds, stats=None) -> ForecastDataset:
        """Cut ``ds`` at ``self.history_hours`` and normalise it with ``stats`` (default: the module's)."""
        return ForecastDataset(ds, self.stats if stats is None else stats, self.history_hours,
                               self.horizon_hours, self.forecast_grid_hours)

    # ------------------------------------------------------------------ model
    def forward(self, batch: dict, only: torch.Tensor | None = None, hold_constant: bool = True):
        """-> (forecast (B, Q, F) normalised, encoder outputs (B, T, H_out)).

        ``only`` (B, Q, F): decode just these entries (the others hold LOCF); None = every entry.
        ``hold_constant``: a variable constant in the training split (``constant_variables``) holds
        LOCF everywhere; training passes False (it is left as it was: the decoder's own forecast).
        """
        outputs, last = self.encode(batch)
        pred = self.decoder(last, batch["static"], batch["lead_times"], batch["since_last"], batch["last_values"],
                            batch["last_mask"], batch["history_means"], batch["history_counts"], only=only)
        if hold_constant and self._any_constant:  # one value in training: the LOCF base
            base = locf_base(batch["last_values"], batch["last_mask"]).to(pred.dtype)
            pred = torch.where(self.constant_variables, base, pred)
        return pred, outputs

    def to_minmax(self, z: torch.Tensor) -> torch.Tensor:
        """(..., F) normalised -> the metric's min-max scale."""
        return z * self.mm_scale + self.mm_shift

    def training_step(self, batch, batch_idx):
        pred, outputs = self(batch, only=batch["query_mask"], hold_constant=False)
        task_loss = M.masked_mse_loss(pred, batch["query_values"], batch["query_mask"], weight=self.loss_weights)
        loss = task_loss + self.auxiliary_loss(batch, outputs)
        self.check_finite(loss)
        # the forecast loss alone, comparable with val/loss (which holds constant variables at LOCF: their
        # error there is 0); the imputation term is train/impute_mse
        self.log_running("train/loss", task_loss, pred.shape[0], prog_bar=True)
        return loss

    def window(self) -> dict:
        """The forecast window now in use (prediction may override the trained one)."""
        return {"history_hours": float(self.history_hours),
                "horizon_hours": None if self.horizon_hours is None else float(self.horizon_hours)}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["grud"]["interval_halfwidth"] = self.interval_halfwidth.detach().cpu().clone()
        # the table's layout and window travel with it, so another version or window is recognised
        checkpoint["grud"]["interval_layout"] = {"levels": list(CI.INTERVAL_LEVELS),
                                                 "since_last_edges_hours": list(CI.SINCE_LAST_EDGES_HOURS),
                                                 "min_group_count": CI.MIN_GROUP_COUNT,
                                                 "window": self.interval_window}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Half-widths of another layout (levels, groups: an older grud) or none at all (written before
        conformal intervals) leave the module uncalibrated: point forecasts still load."""
        super().on_load_checkpoint(checkpoint)
        meta = checkpoint.get("grud") or {}
        hw, layout = meta.get("interval_halfwidth"), meta.get("interval_layout") or {}
        if hw is None:
            return
        hw = torch.as_tensor(hw, dtype=torch.float32)
        expected = (list(CI.INTERVAL_LEVELS), list(CI.SINCE_LAST_EDGES_HOURS))
        if (layout.get("levels"), layout.get("since_last_edges_hours")) != expected \
                or hw.shape != self.interval_halfwidth.shape:
            log.warning("the checkpoint's conformal half-widths have another layout (levels %s, groups %s, shape %s; "
                        "this grud: %s, %s, %s): they are ignored, interval=conformal is unavailable",
                        layout.get("levels"), layout.get("since_last_edges_hours"), tuple(hw.shape),
                        expected[0], expected[1], tuple(self.interval_halfwidth.shape))
            return
        self.interval_halfwidth = hw
        self.interval_window = layout.get("window")

    @property
    def calibrated(self) -> bool:
        """Whether a validation epoch has set the conformal half-widths."""
        return bool(torch.isfinite(self.interval_halfwidth).any())

    def _eval_step(self, batch, stage):
        pred, _ = self(batch, only=batch["query_mask"])
        F = pred.shape[-1]
        target, mask = self.to_minmax(batch["query_values"]), batch["query_mask"]
        errs = self._errors.get(stage)
        if errs is None:  # the stage's first batch
            errs = self._errors[stage] = {
                "model": VariableErrors(F), "locf": VariableErrors(F), "coverage": CI.CoverageCounts(F),
                # constant variables' zero residuals stay out of the other variables' pooled half-widths
                "residuals": CI.ResidualPool(F, held=self.constant_variables.cpu().numpy())}
        errs["model"].add(self.to_minmax(pred), target, mask)
        group = CI.interval_group(batch["since_last"], batch["last_mask"])
        if stage == "val":
            errs["residuals"].add(pred, batch["query_values"], mask, group)
        elif self.calibrated:
            hw = CI.halfwidth_at(self.interval_halfwidth, CI.COVERAGE_LEVEL, group)
            errs["coverage"].add(pred, hw, batch["query_values"], mask)
        locf = locf_base(batch["last_values"], batch["last_mask"]).expand_as(pred)
        errs["locf"].add(self.to_minmax(locf), target, mask)
        self.add_eval_loss(stage, M.masked_mse_loss(pred, batch["query_values"], mask, weight=self.loss_weights),
                           pred.shape[0])

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def _epoch_metrics(self, stage):
        self.log_eval_loss(stage)
        errs = self._errors.pop(stage, None)
        if errs is None:
            return
        model, locf = errs["model"], errs["locf"]
        if stage == "test":
            out = forecast_test_metrics(model, locf)
            if self.calibrated:
                out["test/interval_coverage"] = errs["coverage"].coverage()
        else:
            out = {f"{stage}/mse": model.mse(), f"{stage}/mae": model.mae()}
            if stage == "val" and len(errs["residuals"]):
                self.interval_halfwidth = errs["residuals"].halfwidths()
                self.interval_window = self.window()
        for k, v in out.items():
            self.log(k, float(v), prog_bar=k == f"{stage}/mse", rank_zero_only=False)

    def on_validation_epoch_end(self):
        self._epoch_metrics("val")

    def on_test_epoch_start(self):
        self.warn_if_other_window()  # test/interval_coverage is of those half-widths

    def on_test_epoch_end(self):
        self._epoch_metrics("test")

    def predict_step(self, batch, batch_idx, dataloader_idx=0, mc_samples: int = 0, keep_draws: bool = False,
                     interval: str = "mc", interval_level: float = CI.COVERAGE_LEVEL):
        """Forecasts in raw units; with ``mc_samples`` > 0 the MC-dropout mean and 5th/95th percentiles
        (and with ``keep_draws`` the draws themselves, ``draws`` (N, B, Q, F) raw, for pooling an ensemble).
        With ``interval="conformal"`` (and ``mc_samples`` 0) ``lower`` / ``upper`` are the forecast
        -+ the conformal half-width of ``interval_level`` stored by the last validation epoch
        (:mod:`grud.tasks.forecast_intervals`).

        Returns CPU tensors: ``index`` (B,), ``query_times`` (B, Q), ``query_lengths`` (B,),
        ``query_mask`` (B, Q, F), ``query_on_grid`` (B, Q), ``value`` (B, Q, F) raw truth,
        ``prediction`` (B, Q, F) raw, and ``lower``/``upper`` (B, Q, F) with MC dropout. Only the
        entries :meth:`predictions_frame` keeps are decoded (``query_mask`` or ``query_on_grid``); the
        others hold the last observation (LOCF).
        """
        self.check_interval(interval, interval_level, mc_samples)
        out = {k: batch[k].detach().cpu() for k in ("index", "query_times", "query_lengths", "query_mask",
                                                    "query_on_grid")}
        out["value"] = batch["query_raw_values"].detach().cpu()
        # decode only the entries the frame keeps (observed queries, every variable on a grid); the
        # others hold the LOCF base and never reach the output
        only = (batch["query_mask"] > 0) | (batch["query_on_grid"] > 0)[..., None]
        with torch.no_grad():
            if mc_samples and mc_samples > 0:
                with self.mc_dropout(True):
                    draws = torch.stack([self(batch, only=only)[0] for _ in range(int(mc_samples))])
                draws = self.stats.denormalise_values(draws)
                out["prediction"] = draws.mean(0).cpu()
                q = torch.quantile(draws, torch.tensor(MC_QUANTILES, dtype=draws.dtype, device=draws.device), dim=0)
                out["lower"], out["upper"] = q[0].cpu(), q[1].cpu()
                if keep_draws:
                    out["draws"] = draws.cpu()
            else:
                z = self(batch, only=only)[0]
                out["prediction"] = self.stats.denormalise_values(z).cpu()
                if interval == "conformal":
                    hw = CI.halfwidth_at(self.interval_halfwidth, interval_level,
                                         CI.interval_group(batch["since_last"], batch["last_mask"]))
                    out["lower"] = self.stats.denormalise_values(z - hw).cpu()
                    out["upper"] = self.stats.denormalise_values(z + hw).cpu()
        return out

    def check_interval(self, interval: str, interval_level: float, mc_samples: int = 0) -> None:
        """ConfigError unless ``interval`` / ``interval_level`` can be served by this checkpoint."""
        if interval not in INTERVALS:
            raise ConfigError(f"interval: expected one of {list(INTERVALS)}, got {interval!r}")
        if interval != "conformal":
            if abs(float(interval_level) - CI.COVERAGE_LEVEL) > 1e-9:
                raise ConfigError(f"interval_level={interval_level}: interval=mc gives the 5th / 95th percentiles "
                                  f"of the draws ({CI.COVERAGE_LEVEL}); other levels need interval=conformal")
            return
        if mc_samples and int(mc_samples) > 0:
            raise ConfigError("interval=conformal bounds the deterministic forecast: set mc_samples=0 "
                              f"(got mc_samples={mc_samples})")
        try:
            CI.level_index(interval_level)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if not self.calibrated:
            raise ConfigError("interval=conformal: this checkpoint holds no conformal half-widths (it was "
                              "trained without a validation split, or by a grud before they existed)")
        table = self.interval_halfwidth[CI.level_index(interval_level)]
        if not torch.isfinite(table).all():
            raise ConfigError(f"interval_level={interval_level}: the validation split left too few residuals for "
                              f"this level (n residuals give at most n / (n + 1)); choose a lower interval_level")
        self.warn_if_other_window()

    def warn_if_other_window(self) -> None:
        """A warning when the conformal half-widths were measured on another forecast window."""
        now = self.window()
        if self.calibrated and self.interval_window is not None and self.interval_window != now \
                and self._warned_window != now:
            self._warned_window = now
            log.warning("conformal intervals: the half-widths were measured on the window %s, this run uses %s; "
                        "their coverage holds for the measured window only", self.interval_window, now)

    # ------------------------------------------------------------------ output
    def predictions_frame(self, parts: list, ds, id_column: str = "id") -> pd.DataFrame:
        """One row per (query, variable): observed truths for observed queries, every variable on a grid.

        Columns: ``id_column``, ``time`` (hours since the series' time 0), ``variable``,
        ``prediction``, ``value`` (observed truth, empty where none) and, with MC dropout,
        ``lower``/``upper``; raw units. Rows are sorted by series (dataset order), time, variable.
        """
        flat = {}
        for p in parts:
            B, Q = p["query_times"].shape
            keep = (torch.arange(Q)[None, :] < p["query_lengths"][:, None]).numpy()
            flat.setdefault("series", []).append(np.repeat(p["index"].numpy(), Q).reshape(B, Q)[keep])
            for k in ("query_times", "query_on_grid", "query_mask", "value", "prediction", "lower", "upper"):
                if k in p:
                    flat.setdefault(k, []).append(p[k].numpy()[keep])
            if "draws" in p:  # (N, B, Q, F) -> (N_q, F, N)
                flat.setdefault("draws", []).append(np.moveaxis(p["draws"].numpy()[:, keep], 0, -1))
        F = self.stats.n_features
        if not flat:
            return forecast_frame(ds, self.stats.variables, np.zeros(0, np.int64), np.zeros(0), np.zeros(0),
                                  np.zeros((0, F)), np.zeros((0, F)), np.zeros((0, F)), id_column=id_column)
        cat = {k: np.concatenate(v) for k, v in flat.items()}
        return forecast_frame(ds, self.stats.variables, cat["series"], cat["query_times"], cat["query_on_grid"],
                              cat["query_mask"], cat["value"], cat["prediction"], cat.get("lower"),
                              cat.get("upper"), id_column=id_column, draws=cat.get("draws"))


# ============================================================================ shared output / baselines
#: column prefix of the Monte-Carlo draws a forecast frame carries for pooling an ensemble
DRAW_PREFIX = "draw_"
#: the columns that name a row of a forecast frame, after its id column
FORECAST_KEYS = ("time", "variable")


def same_forecast_rows(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Whether two forecast frames hold the same rows in the same order: id column, ``time``, ``variable``."""
    keys = [a.columns[0], *FORECAST_KEYS]
    return b.columns[0] == keys[0] and len(a) == len(b) and all(
        np.array_equal(a[k].to_numpy(), b[k].to_numpy()) for k in keys)


def forecast_frame(ds, variables, series, times, on_grid, mask, value, prediction, lower=None, upper=None,
                   id_column: str = "id", draws=None) -> pd.DataFrame:
    """Long table of forecasts from flat queries.

    With ``draws`` the frame also carries one column ``draw_<k>`` per Monte-Carlo draw
    (:func:`grud.cli.checkpoint_ensemble.average_forecast_frames` pools and drops them).

    Shape:
        series, times, on_grid: (N_q,); mask, value, prediction, lower, upper: (N_q, F) raw units;
        draws: (N_q, F, N).
    """
    series = np.asarray(series, np.int64)
    F = len(variables)
    mask = np.asarray(mask).reshape(-1, F) > 0
    order = np.lexsort((np.asarray(times), series))
    q, f = np.nonzero((mask | (np.asarray(on_grid).reshape(-1, 1) > 0))[order])
    rows = order[q]  # each output row's query in the callers' layout, and flat entry below
    flat = rows * F + f
    sel = lambda a: np.asarray(a).reshape(-1)[flat].astype(np.float64)  # noqa: E731  (no full copy)
    ids = np.asarray(ds.ids, dtype=object)
    out = {
        id_column: ids[series[rows]] if len(q) else np.zeros(0, dtype=object),
        "time": np.asarray(times, np.float64)[rows],
        "variable": np.asarray(variables, dtype=object)[f] if len(q) else np.zeros(0, dtype=object),
        "prediction": sel(prediction),
        "value": float32_decimals(np.where(mask.reshape(-1)[flat], sel(value), np.nan)),
    }
    if lower is not None and upper is not None:
        out["lower"], out["upper"] = sel(lower), sel(upper)
    if draws is not None:
        d = np.asarray(draws)
        for k in range(d.shape[-1]):
            out[f"{DRAW_PREFIX}{k}"] = sel(d[..., k])
    return pd.DataFrame(out)


def _baseline(name, ds, stats, history_hours, horizon_hours, grid_hours=None):
    if name not in BASELINES:
        raise ConfigError(f"model.name: expected a forecasting baseline ({', '.join(BASELINES)}), got {name!r}")
    fd = ForecastDataset(ds, _as_stats(stats), history_hours, horizon_hours, grid_hours)
    series = fd.query_series()
    return fd, series, fd.baseline_raw(name)[series]


def forecast_baseline_metrics(name: str, train_ds, test_ds, stats, history_hours: float = 24.0,
                              horizon_hours: float | None = 24.0) -> dict:
    """Score ``locf`` or ``mean_forecast`` on ``test_ds`` with the forecasting protocol.

    ``train_ds`` is not needed by these two baselines beyond ``stats`` (the training means
    used where a series never observed a variable); it is accepted for a uniform interface.

    Returns:
        ``{"test/mse", "test/mae", "test/mse_vs_locf", "test/mae_vs_locf", "test/locf_mse", "test/locf_mae"}``.
    """
    stats = _as_stats(stats)
    fd, series, pred = _baseline(name, test_ds, stats, history_hours, horizon_hours)
    _, _, locf = _baseline("locf", test_ds, stats, history_hours, horizon_hours)
    truth = np.where(fd.query_mask > 0, fd.query_raw, np.nan)
    mm = lambda a: stats.minmax_scale(np.asarray(a, np.float64))  # noqa: E731
    F = stats.n_features
    model, base = VariableErrors(F), VariableErrors(F)
    model.add(mm(pred), np.nan_to_num(mm(truth)), fd.query_mask)
    base.add(mm(locf), np.nan_to_num(mm(truth)), fd.query_mask)
    return forecast_test_metrics(model, base)


def forecast_frame_metrics(frame: pd.DataFrame, ds, stats, history_hours: float = 24.0,
                           horizon_hours: float | None = 24.0) -> dict:
    """The forecasting ``test/`` keys of metrics.json scored from a prediction frame.

    ``frame`` has the columns of :meth:`ForecastTask.predictions_frame` (the id column first; an
    ensemble's averaged frame, say) for ``ds`` with the window ``history_hours`` /
    ``horizon_hours``; its rows with an observed ``value`` are scored on the min-max scale of
    ``stats``, against LOCF on the same rows, exactly as :class:`ForecastTask` scores a test epoch.
    With ``lower`` / ``upper`` columns, ``test/interval_coverage`` is the share of observed values
    inside them, averaged over variables (as :class:`grud.tasks.forecast_intervals.CoverageCounts`).

    Raises:
        DataError: the frame's observed rows are not the rows of the window on ``ds``.
    """
    from grud.errors import DataError

    stats = _as_stats(stats)
    id_column = frame.columns[0]
    locf = forecast_baseline_frame("locf", ds, stats, history_hours, horizon_hours, id_column=id_column)
    scored = frame[np.isfinite(frame["value"].to_numpy(dtype=np.float64))]
    if not same_forecast_rows(scored, locf):
        raise DataError(f"the forecasts hold {len(scored)} observed rows, but the window "
                        f"(history_hours={history_hours}, horizon_hours={horizon_hours}) has {len(locf)} on this data: "
                        f"score a frame predicted on the same data with the same window")
    index = {v: j for j, v in enumerate(stats.variables)}
    j = np.array([index[v] for v in scored["variable"]], np.int64)
    lo, span = stats.minmax_bounds()
    mm = lambda a: (np.asarray(a, np.float64) - lo[j]) / span[j]  # noqa: E731
    truth = mm(scored["value"])
    model, base = VariableErrors(stats.n_features), VariableErrors(stats.n_features)
    model.add_rows(j, mm(scored["prediction"]), truth)
    base.add_rows(j, mm(locf["prediction"]), truth)
    out = forecast_test_metrics(model, base)
    if "lower" in scored.columns and "upper" in scored.columns:
        value = scored["value"].to_numpy(np.float64)
        inside = (scored["lower"].to_numpy(np.float64) <= value) & (value <= scored["upper"].to_numpy(np.float64))
        per_var = np.bincount(j, inside, stats.n_features) / np.maximum(np.bincount(j, None, stats.n_features), 1)
        out["test/interval_coverage"] = float(per_var[np.bincount(j, None, stats.n_features) > 0].mean())
    return out


def forecast_baseline_frame(name: str, ds, stats, history_hours: float = 24.0, horizon_hours: float | None = 24.0,
                            grid_hours: float | None = None, id_column: str = "id") -> pd.DataFrame:
    """The forecasts of ``locf`` / ``mean_forecast`` as the table of :meth:`ForecastTask.predictions_frame`."""
    stats = _as_stats(stats)
    fd, series, pred = _baseline(name, ds, stats, history_hours, horizon_hours, grid_hours)
    return forecast_frame(fd.ds, stats.variables, series, fd.query_times, fd.query_on_grid, fd.query_mask,
                          fd.query_raw, pred, id_column=id_column)
