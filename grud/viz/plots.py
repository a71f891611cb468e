"""PNG plots for runs and sweeps: training history, ROC/PR/calibration, forecasts, input decay.

Each function takes plain arrays, DataFrames or paths, writes one PNG (``plot_roc_pr_calibration``
writes three) and returns the written path(s). A PNG is first written to a hidden temporary
name in the destination folder and then renamed over the target (:func:`os.replace`), so a
reader never sees half a file; the figure is closed afterwards. matplotlib is switched to the
non-interactive Agg backend when this module is imported (before pyplot is), so the plots
work on machines without a display.

Vocabulary as in :mod:`grud.data`: ``delta`` is the time since a variable was last observed,
in hours; ``mask`` is 1 where an entry counts.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from grud.atomic_files import atomic_write  # noqa: E402
from grud.errors import DataError  # noqa: E402

__all__ = [
    "plot_history",
    "plot_roc_pr_calibration",
    "plot_forecasts",
    "plot_input_decay",
    "plot_group_bars",
]

DPI = 110


# ---------------------------------------------------------------------------- writing
def _save(fig, out_png) -> Path:
    """Write ``fig`` as PNG to a temporary name next to ``out_png``, rename it, close ``fig``."""
    try:
        return atomic_write(out_png, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    finally:
        plt.close(fig)


def _note(ax, text: str) -> None:
    """Write ``text`` in the middle of an empty panel."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.4")


def _as_numpy(x, name: str) -> np.ndarray:
    """A float64 numpy copy of an array-like or (detached) torch tensor."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: expected numbers, got {type(x).__name__} ({err})") from None


def _grid(n: int, max_cols: int | None = None) -> tuple[int, int]:
    """(rows, cols) of a near-square grid holding ``n`` panels (37 -> 6 x 7)."""
    cols = max(1, math.ceil(math.sqrt(n)))
    if max_cols is not None:
        cols = min(cols, max_cols)
    return max(1, math.ceil(n / cols)), cols


# ---------------------------------------------------------------------------- training history
_X_COLUMNS = ("epoch", "step")


def _split_metric(name: str) -> tuple[str, str]:
    """``"val/auroc"`` -> ``("val", "auroc")``; ``"train/loss_epoch"`` -> ``("train", "loss")``."""
    stage, _, base = name.rpartition("/")
    for suffix in ("_epoch", "_step"):
        if base.endswith(suffix) and len(base) > len(suffix):
            base = base[: -len(suffix)]
    return stage, base


_STAGE_COLOURS = {"val": "C0", "test": "C1", "train": "C2"}
#: logged beside the metrics (``val/n``, ``test/prevalence``): sizes of the scored data, not a history
_COUNT_COLUMNS = ("n", "prevalence")


def _history_families(columns: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Group metric columns into panels: all losses first, then one per val metric, then the rest."""
    loss, val, other = [], {}, {}
    for col in columns:
        stage, base = _split_metric(col)
        if base in _COUNT_COLUMNS:
            continue  # how many series or queries were scored: a count, not a metric
        if "loss" in base:
            loss.append(col)
        elif stage == "val" or base in val:
            val.setdefault(base, []).append(col)
        else:
            other.setdefault(base, []).append(col)
    # a train/test column logged before its val twin belongs in the val panel too
    for base in list(other):
        if base in val:
            val[base].extend(other.pop(base))
    # test-only columns (one value after training: CI bounds, LOCF ratios, coverage, counts) are no history
    for base in list(other):
        if all(_split_metric(c)[0] == "test" for c in other[base]):
            other.pop(base)
    families = [("loss", loss)] if loss else []
    families += list(val.items()) + list(other.items())
    return families


def plot_history(metrics_csv, out_png) -> Path:
    """Plot the training history in a Lightning ``CSVLogger`` ``metrics.csv`` against epoch.

    One panel per metric family: every ``*loss*`` column (``train/loss``, ``val/loss``,
    ``train/loss_epoch``, ...) shares the first panel; then one panel per validation metric
    (``val/auroc``, with ``train/auroc`` / ``test/auroc`` alongside when logged), then one per
    remaining column (e.g. a learning-rate monitor); test-only columns (one value after training)
    are left out. Colours: validation C0, test C1, training C2. The logger writes sparse rows (NaN where a
    metric was not logged at that step); values are averaged per epoch. A column that is
    never logged, or a file with no rows, gives a panel saying so rather than an error.

    Args:
        metrics_csv: path of ``metrics.csv`` (columns ``epoch``, ``step`` and one per metric).
        out_png: the PNG to write.

    Returns:
        ``Path(out_png)``.

    Raises:
        DataError: the file is missing, is not CSV, or has neither an ``epoch`` nor a
            ``step`` column.
    """
    path = Path(metrics_csv)
    if not path.is_file():
        raise DataError("file not found (expected a Lightning CSVLogger metrics.csv)", path=path)
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        df = pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataError(f"cannot be read as CSV ({err})", path=path) from None
    if len(df.columns) == 0:
        fig, ax = plt.subplots(figsize=(5, 3))
        _note(ax, "no metrics logged")
        ax.set_axis_off()
        fig.suptitle(path.parent.name or "history", fontsize=10)
        return _save(fig, out_png)

    xcol = next((c for c in _X_COLUMNS if c in df.columns), None)
    if xcol is None:
        raise DataError(f"expected an 'epoch' (or 'step') column, found {list(df.columns)}",
                        path=path, line=1, column="epoch")
    x_all = pd.to_numeric(df[xcol], errors="coerce")
    metric_cols = [c for c in df.columns if c not in _X_COLUMNS]
    families = _history_families(metric_cols)
    if not families:
        families = [("(no metric columns)", [])]

    rows, cols = _grid(len(families), max_cols=3)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, (family, members) in zip(axes.flat, families):
        drawn = 0
        for col in members:
            y = pd.to_numeric(df[col], errors="coerce")
            ok = y.notna() & x_all.notna()
            if not ok.any():
                continue
            per_epoch = y[ok].groupby(x_all[ok]).mean().sort_index()
            stage = _split_metric(col)[0]  # one colour per stage in every panel: val, test, train
            ax.plot(per_epoch.index.to_numpy(), per_epoch.to_numpy(), marker="o", markersize=3, label=col,
                    color=_STAGE_COLOURS.get(stage))
            drawn += 1
        ax.set_title(family, fontsize=10)
        ax.set_xlabel(xcol)
        if drawn:
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
        else:
            _note(ax, "not logged" if members else "no metric columns")
    for ax in list(axes.flat)[len(families):]:
        ax.set_axis_off()
    fig.tight_layout()
    return _save(fig, out_png)


# ---------------------------------------------------------------------------- classifier curves
def _classes_for_curves(y_true, prob, mask, class_names):
    """Check inputs; return [(name, y (m,) 0/1, score (m,)), ...] one-vs-rest, after masking."""
    p = _as_numpy(prob, "prob")
    y = _as_numpy(y_true, "y_true")
    if y.ndim != 1:
        raise ValueError(f"y_true: expected shape (n,), got {y.shape}")
    if p.ndim == 2 and p.shape[1] == 1:
        p = p[:, 0]
    if p.ndim not in (1, 2) or p.shape[0] != y.shape[0]:
        raise ValueError(f"prob: expected shape (n,) or (n, C) with n = {y.shape[0]} (like y_true), got {p.shape}")
    if mask is None:
        keep = np.isfinite(y)
    else:
        m = _as_numpy(mask, "mask")
        if m.shape != y.shape:
            raise ValueError(f"mask: expected shape {y.shape} (like y_true), got {m.shape}")
        if not np.isin(m, (0, 1)).all():
            raise ValueError("mask: expected only 0/1 (or False/True) values")
        keep = m.astype(bool)
        if not np.isfinite(y[keep]).all():
            raise ValueError("y_true: mask selects labels that are NaN/inf; mask them out")
    y, p = y[keep], p[keep]
    if not np.isfinite(p).all():
        raise ValueError("prob: expected finite probabilities where the mask is 1, found NaN/inf")
    if p.size and (p.min() < -1e-6 or p.max() > 1 + 1e-6):
        raise ValueError(f"prob: expected probabilities in [0, 1], got range [{p.min():g}, {p.max():g}]")

    if p.ndim == 2 and p.shape[1] == 2 and class_names is None:
        p = p[:, 1]  # two columns: the usual binary layout, class 1 is the positive class
    if p.ndim == 1:
        bad = ~np.isin(y, (0.0, 1.0))
        if bad.any():
            raise ValueError(f"y_true: expected binary labels 0/1 for prob of shape (n,), "
                             f"got {np.unique(y[bad])[:5].tolist()}")
        name = "positive" if class_names is None else str(class_names[-1])
        return [(name, y, p)], True
    C = p.shape[1]
    if not np.isin(y, np.arange(C)).all():
        raise ValueError(f"y_true: expected integer classes 0..{C - 1} (prob has {C} columns), "
                         f"got {np.unique(y[~np.isin(y, np.arange(C))])[:5].tolist()}")
    names = [f"class {c}" for c in range(C)] if class_names is None else [str(c) for c in class_names]
    if len(names) != C:
        raise ValueError(f"class_names: expected {C} names (one per column of prob), got {len(names)}")
    return [(names[c], (y == c).astype(np.float64), p[:, c]) for c in range(C)], False


def _quantile_bins(y: np.ndarray, p: np.ndarray, n_bins: int):
    """Mean predicted probability and observed frequency in ``n_bins`` equal-count bins of ``p``."""
    if p.shape[0] == 0:
        return np.empty(0), np.empty(0)
    order = np.argsort(p, kind="stable")
    chunks = [c for c in np.array_split(order, min(n_bins, p.shape[0])) if c.size]
    return np.array([p[c].mean() for c in chunks]), np.array([y[c].mean() for c in chunks])


def plot_roc_pr_calibration(y_true, prob, out_dir, mask=None, class_names=None, n_bins: int = 10) -> list[Path]:
    """Write ``roc.png``, ``pr.png`` and ``calibration.png`` of a classifier into ``out_dir``.

    Binary (``prob`` of shape (n,), (n, 1) or (n, 2)): one ROC curve (AUROC in the legend),
    one precision-recall curve (AUPRC = average precision, drawn as the step function it
    integrates, with the prevalence as the no-skill line) and a reliability diagram: the
    samples sorted by ``prob`` and cut into ``n_bins`` equal-count (quantile) bins, observed
    frequency against mean predicted probability, with the diagonal of perfect calibration.
    Multi-class (``prob`` (n, C), C > 2, or C = 2 with ``class_names``): one-vs-rest curves
    per class. A class without both positives and negatives gets no curve and says so in
    the legend (its AUROC is undefined).

    Args:
        y_true: (n,) labels, 0/1 or 0..C-1 (NaN allowed where ``mask`` is 0).
        prob: (n,) probability of class 1, or (n, C) class probabilities.
        out_dir: folder to write into (created if missing).
        mask: (n,) 1 = the sample counts; default: every finite label.
        class_names: optional C names for the legends.
        n_bins: number of quantile bins of the calibration plot.

    Returns:
        ``[out_dir/roc.png, out_dir/pr.png, out_dir/calibration.png]``.

    Shape:
        y_true, mask: (n,); prob: (n,) or (n, C)
    """
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    if int(n_bins) < 1:
        raise ValueError(f"n_bins: expected a positive integer, got {n_bins!r}")
    curves, binary = _classes_for_curves(y_true, prob, mask, class_names)
    out_dir = Path(out_dir)
    written = []

    def defined(y):
        return 0 < y.sum() < y.shape[0]

    # ROC
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="chance")
    for name, y, p in curves:
        if defined(y):
            fpr, tpr, _ = roc_curve(y, p)
            auc = roc_auc_score(y, p)
            ax.plot(fpr, tpr, lw=1.5, label=f"AUROC = {auc:.3f}" if binary else f"{name} (AUROC = {auc:.3f})")
        else:
            ax.plot([], [], " ", label=f"{name}: AUROC undefined (one class only)")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="false positive rate", ylabel="true positive rate",
           title=f"ROC (n = {curves[0][1].shape[0]})")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    written.append(_save(fig, out_dir / "roc.png"))

    # precision-recall
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    for i, (name, y, p) in enumerate(curves):
        if defined(y):
            precision, recall, _ = precision_recall_curve(y, p)
            ap = average_precision_score(y, p)
            line, = ax.step(recall, precision, where="post", lw=1.5,
                            label=f"AUPRC = {ap:.3f}" if binary else f"{name} (AUPRC = {ap:.3f})")
            ax.axhline(y.mean(), ls="--", lw=1, color=line.get_color(), alpha=0.6,
                       label=f"prevalence = {y.mean():.3f}" if binary else None)
        else:
            ax.plot([], [], " ", label=f"{name}: AUPRC undefined (one class only)")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title="precision-recall")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    written.append(_save(fig, out_dir / "pr.png"))

    # calibration (reliability diagram)
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="perfectly calibrated")
    for name, y, p in curves:
        mean_pred, frac_pos = _quantile_bins(y, p, int(n_bins))
        if mean_pred.size:
            brier = float(((p - y) ** 2).mean())
            ax.plot(mean_pred, frac_pos, marker="o", markersize=4, lw=1.5,
                    label=f"Brier = {brier:.3f}" if binary else f"{name} (Brier = {brier:.3f})")
    if curves[0][1].shape[0] == 0:
        _note(ax, "no labelled sample")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="mean predicted probability", ylabel="observed frequency",
           title=f"calibration ({int(n_bins)} quantile bins)")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    written.append(_save(fig, out_dir / "calibration.png"))
    return written


# ---------------------------------------------------------------------------- forecasts
def _require_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    for col in columns:
        if col not in df.columns:
            raise DataError(f"{what}: expected a column {col!r}, found {list(map(str, df.columns))}", column=col)


def _numeric_column(df: pd.DataFrame, col: str, what: str) -> pd.Series:
    out = pd.to_numeric(df[col], errors="coerce")
    bad = out.isna() & df[col].notna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{what}: expected numbers, got {df[col].iloc[i]!r} in row {i}", column=col)
    return out.astype(np.float64)


def _tidy(df: pd.DataFrame, id_column: str, numeric: Sequence[str], what: str) -> pd.DataFrame:
    out = pd.DataFrame({"id": df[id_column].astype(str).to_numpy(), "variable": df["variable"].astype(str).to_numpy()})
    for col in numeric:
        out[col] = _numeric_column(df, col, what).to_numpy()
    return out


def plot_forecasts(frame, out_png, id_column: str = "id", n_series: int = 4, variables=None, history=None,
                   *, n_variables: int = 3, origin: float | None = None) -> Path:
    """Plot forecasts of a few series: a grid of series (rows) x variables (columns).

    Each panel shows the observed history (grey dots, from ``history``), the true future
    values (black crosses, ``value`` where observed), the forecast (blue line) and, when
    ``frame`` has ``lower`` and ``upper`` columns, the prediction interval as a band. A dashed
    line marks the forecast origin ``origin`` (hours; default: the first forecast time). The series are the first ``n_series`` ids in order of
    appearance in ``frame``; unless ``variables`` names them, the ``n_variables`` variables
    observed most often in those series (history and truth together) are shown.

    Args:
        frame: ``grud-predict`` forecast output, long format: columns ``id_column``, ``time``
            (hours), ``variable``, ``prediction``, and optionally ``value`` (the truth, NaN
            where unobserved), ``lower``, ``upper``.
        out_png: the PNG to write.
        id_column: name of the series id column (in ``frame`` and ``history``).
        n_series: at most this many series (rows of the grid).
        variables: the variables to show (columns of the grid), default: the most observed.
        history: optional observed history, columns ``id_column``, ``time``, ``variable``,
            ``value``; may be empty.
        n_variables: number of variables picked when ``variables`` is None.

    Returns:
        ``Path(out_png)``.

    Raises:
        DataError: a required column is missing, a numeric column holds text, ``frame`` has no
            rows, or a requested variable is not in ``frame``.
    """
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"frame: expected a pandas DataFrame, got {type(frame).__name__}")
    if int(n_series) < 1 or int(n_variables) < 1:
        raise ValueError(f"n_series, n_variables: expected positive integers, got {n_series!r}, {n_variables!r}")
    _require_columns(frame, (id_column, "time", "variable", "prediction"), "forecast frame")
    if len(frame) == 0:
        raise DataError("forecast frame: expected at least one row, got none")
    numeric = ["time", "prediction"] + [c for c in ("value", "lower", "upper") if c in frame.columns]
    fc = _tidy(frame, id_column, numeric, "forecast frame")
    if "value" not in fc:
        fc["value"] = np.nan
    has_band = "lower" in fc and "upper" in fc

    if history is not None and len(history) > 0:
        if not isinstance(history, pd.DataFrame):
            raise ValueError(f"history: expected a pandas DataFrame, got {type(history).__name__}")
        _require_columns(history, (id_column, "time", "variable", "value"), "history")
        hist = _tidy(history, id_column, ("time", "value"), "history")
        hist = hist[np.isfinite(hist["value"].to_numpy())]
    else:
        hist = pd.DataFrame({"id": pd.Series([], dtype=str), "variable": pd.Series([], dtype=str),
                             "time": pd.Series([], dtype=float), "value": pd.Series([], dtype=float)})

    ids = list(dict.fromkeys(fc["id"]))[: int(n_series)]
    fc = fc[fc["id"].isin(ids)]
    hist = hist[hist["id"].isin(ids)]
    known = list(dict.fromkeys(fc["variable"]))
    if variables is None:
        observed = pd.concat([hist["variable"], fc.loc[np.isfinite(fc["value"].to_numpy()), "variable"]])
        counts = observed.value_counts()
        ranked = sorted(known, key=lambda v: (-int(counts.get(v, 0)), known.index(v)))
        shown = ranked[: int(n_variables)]
    else:
        shown = [str(v) for v in ([variables] if isinstance(variables, str) else variables)]
        missing = [v for v in shown if v not in known]
        if missing:
            raise DataError(f"variables {missing} are not in the forecast frame (it has {known[:20]})",
                            column="variable")
        if not shown:
            raise ValueError("variables: expected at least one variable name, got an empty list")

    nrows, ncols = len(ids), len(shown)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.4 * nrows), squeeze=False)
    for r, sid in enumerate(ids):
        f_s, h_s = fc[fc["id"] == sid], hist[hist["id"] == sid]
        for c, var in enumerate(shown):
            ax = axes[r, c]
            f = f_s[f_s["variable"] == var].sort_values("time")
            h = h_s[h_s["variable"] == var]
            if len(h):
                ax.scatter(h["time"], h["value"], s=9, color="0.55", label="history", zorder=2)
            if len(f):
                t = f["time"].to_numpy()
                if has_band:
                    lo, hi = f["lower"].to_numpy(), f["upper"].to_numpy()
                    ok = np.isfinite(lo) & np.isfinite(hi)
                    if ok.any():
                        ax.fill_between(t[ok], lo[ok], hi[ok], color="C0", alpha=0.25, lw=0, label="interval")
                ax.plot(t, f["prediction"].to_numpy(), color="C0", lw=1.5, marker=".", markersize=4,
                        label="forecast", zorder=3)
                truth = f[np.isfinite(f["value"].to_numpy())]
                if len(truth):
                    ax.scatter(truth["time"], truth["value"], marker="x", s=18, color="k", label="truth", zorder=4)
                ax.axvline(t.min() if origin is None else origin, ls="--", lw=0.8, color="0.5",
                           label="forecast origin" if origin is not None else "first forecast time")
            if not len(f) and not len(h):
                _note(ax, "no data")
            ax.set_title(f"{sid} · {var}", fontsize=8)
            ax.tick_params(labelsize=7)
            if r == nrows - 1:
                ax.set_xlabel("hours", fontsize=8)
    handles = {}
    for ax in axes.flat:
        for hnd, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, hnd)
    if handles:
        fig.legend(list(handles.values()), list(handles.keys()), loc="upper right", fontsize=8, ncol=len(handles))
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return _save(fig, out_png)


# ---------------------------------------------------------------------------- GRU-D input decay
def plot_input_decay(weights, biases, variables, out_png, max_delta: float = 48.0) -> Path:
    """Plot GRU-D's learned input decay ``gamma_x = exp(-max(0, w * delta + b))`` per variable.

    GRU-D (Che et al., Scientific Reports 2018, eq. 3 and Fig. 4) decays a missing input from
    its last observation towards the empirical mean with a per-variable rate (the input decay
    is diagonal, so each variable has one weight and one bias). Small multiples, one panel per
    variable (e.g. 6 x 7 for PhysioNet's 37 variables), gamma_x in [0, 1] against delta from 0
    to ``max_delta`` hours. A value near 1 keeps the last observation; near 0 falls back to the
    mean.

    Args:
        weights: (F,) decay weights ``w`` (numpy array, list or torch tensor).
        biases: (F,) decay biases ``b``.
        variables: F variable names.
        out_png: the PNG to write.
        max_delta: right end of the delta axis, in hours (> 0).

    Returns:
        ``Path(out_png)``.

    Shape:
        weights, biases: (F,)
    """
    w = _as_numpy(weights, "weights")
    b = _as_numpy(biases, "biases")
    names = [str(v) for v in ([variables] if isinstance(variables, str) else variables)]
    if w.ndim != 1 or w.shape[0] == 0:
        raise ValueError(f"weights: expected shape (F,) with F >= 1, got {w.shape}")
    if b.shape != w.shape:
        raise ValueError(f"biases: expected shape {w.shape} (like weights), got {b.shape}")
    if len(names) != w.shape[0]:
        raise ValueError(f"variables: expected {w.shape[0]} names (one per weight), got {len(names)}")
    if not (np.isfinite(w).all() and np.isfinite(b).all()):
        raise ValueError("weights, biases: expected finite values, found NaN/inf")
    if not (np.isfinite(max_delta) and max_delta > 0):
        raise ValueError(f"max_delta: expected a positive number of hours, got {max_delta!r}")

    delta = np.linspace(0.0, float(max_delta), 200)
    gamma = np.exp(-np.maximum(0.0, w[:, None] * delta[None, :] + b[:, None]))  # (F, 200)
    F = w.shape[0]
    rows, cols = _grid(F)
    width, height = 1.9 * cols + 0.5, 1.55 * rows + 0.9
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), sharex=True, sharey=True, squeeze=False)
    # fixed margins (in inches) and fixed ticks: tight_layout over ~40 panels costs seconds
    fig.subplots_adjust(left=0.55 / width, right=1 - 0.1 / width, bottom=0.5 / height, top=1 - 0.6 / height,
                        wspace=0.12, hspace=0.5)
    # the axes are shared: limits and ticks set once apply to every panel (per panel it is O(F^2))
    first = axes[0, 0]
    xticks = [0.0, float(max_delta) / 2, float(max_delta)]
    first.set_xlim(0, float(max_delta))
    first.set_ylim(0, 1.05)
    first.set_xticks(xticks, [f"{t:g}" for t in xticks])
    first.set_yticks([0.0, 0.5, 1.0], ["0", "0.5", "1"])
    for i, ax in enumerate(axes.flat):
        if i >= F:
            ax.set_axis_off()
            continue
        ax.plot(delta, gamma[i], color="C0", lw=1.5, scalex=False, scaley=False)
        ax.set_title(names[i], fontsize=8, pad=3)
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3)
    for ax in axes[-1, :]:
        ax.set_xlabel("δ (hours)", fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("γ_x", fontsize=7)
    # panels whose bottom neighbour is switched off still need their x labels
    for i in range(F):
        r, c = divmod(i, cols)
        if r < rows - 1 and (r + 1) * cols + c >= F:
            axes[r, c].xaxis.set_tick_params(labelbottom=True, labelsize=6)
            axes[r, c].set_xlabel("δ (hours)", fontsize=7)
    fig.suptitle("GRU-D input decay  γ_x = exp(−max(0, w·δ + b))", fontsize=10, y=1 - 0.15 / height)
    return _save(fig, out_png)


# ---------------------------------------------------------------------------- sweep summary
def plot_group_bars(labels, means, stds, out_png, metric: str = "metric") -> Path:
    """Horizontal bar chart of one metric per group with ± std error bars (a sweep summary).

    Groups are drawn top to bottom in the given order. A NaN mean leaves its bar out (and
    says so); a NaN std (a single run) draws no error bar.

    Args:
        labels: G group labels.
        means: (G,) mean of ``metric`` per group.
        stds: (G,) standard deviation per group (NaN allowed).
        out_png: the PNG to write.
        metric: the metric's name, for the axis label.

    Returns:
        ``Path(out_png)``.

    Shape:
        means, stds: (G,)
    """
    labels = [str(x) for x in labels]
    m = _as_numpy(means, "means").reshape(-1)
    s = _as_numpy(stds, "stds").reshape(-1)
    if m.shape[0] != len(labels) or s.shape[0] != len(labels):
        raise ValueError(f"means, stds: expected {len(labels)} values each (one per label), "
                         f"got {m.shape[0]} and {s.shape[0]}")
    G = len(labels)
    fig, ax = plt.subplots(figsize=(6.4, 1.2 + 0.42 * max(G, 1)))
    if G == 0 or not np.isfinite(m).any():
        _note(ax, "no completed job to show")
        ax.set_yticks([])
    else:
        pos = np.arange(G)[::-1]
        ok = np.isfinite(m)
        err = np.where(np.isfinite(s), s, 0.0)
        ax.barh(pos[ok], m[ok], xerr=err[ok], color="C0", alpha=0.8, capsize=3, ecolor="k")
        for p_ in pos[~ok]:
            ax.text(0, p_, "  no value", va="center", fontsize=8, color="0.4")
        ax.set_yticks(pos)
        ax.set_yticklabels(labels, fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel(f"{metric} (mean ± std)")
    fig.tight_layout()
    return _save(fig, out_png)
