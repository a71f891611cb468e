"""grud-aggregate: one table of mean ± std per configuration from a Hydra multirun folder.

    grud-train -m model=grud,gru_mean,logreg seed=0,1,2
    grud-aggregate multirun/2024-05-01/12-00-00
    grud-aggregate SWEEP_DIR --metrics test/auroc,test/auprc --out results/
    grud-aggregate SWEEP_DIR --group-by model.name

A sweep folder holds one folder per job (``SWEEP_DIR/<n>/``, or deeper, e.g. with a
sweeper that nests its trials); a job folder is any folder with a ``.hydra/`` sub-folder.
Each job has ``.hydra/overrides.yaml`` (the command-line overrides of that job) and, once
finished, ``metrics.json`` (``"status": "ok"``) or ``failure.json`` (``"status": "failed"``);
a job with neither crashed or is still running and counts as *incomplete*.

Grouping: jobs that share their overrides apart from ``seed`` form one group (a sweep over
model x seed gives one row per model; over lr x hidden size, one per combination). The label
of a group is its overrides without the ones every job shares (``experiment=compare_models``
on every job is stated once, above the table). ``--group-by model.name`` groups by values of
the composed ``.hydra/config.yaml`` instead.

Statistics per group and metric: mean, sample standard deviation (ddof = 1) and n, over the
completed jobs whose value is a finite number. With n = 1 the standard deviation is
undefined and left blank (NaN in the library, an empty cell in ``summary.csv``; the
Markdown cell shows the mean alone), never 0, which would claim a spread of none.

Outputs, each written to a temporary name and renamed: ``summary.csv`` (group, n, failed,
then ``<metric>_mean``, ``<metric>_std``, ``<metric>_n`` per metric), ``summary.md`` (the
table sorted by the first metric, best first, then a "Failed jobs" section) and
``summary.png`` (bars of the first metric with ± std error bars). The Markdown is also
printed on stdout.

Exit codes: 0 when at least one job completed; 1 when the sweep has jobs but none completed
(the outputs are still written, listing the failures); 2 for a missing folder, a folder
without jobs or a metric that no job reports (``error: ...`` on stderr, the traceback too
with ``GRUD_DEBUG=1``). No Hydra is needed: YAML is read with ``yaml.safe_load``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import yaml

from grud.errors import DataError

__all__ = ["aggregate", "find_jobs", "read_job", "Job", "summary_markdown", "write_summary", "main"]

#: overrides that do not make a group: the seed (pooled into mean ± std) and resume (a job resumed
#: after an interruption is the same job as one that ran through)
SEED_KEYS = ("seed", "resume")
# the readable default table, in this order, for whichever of these a sweep reports
PREFERRED_METRICS = ("test/auroc", "test/auprc", "test/brier", "test/mse", "test/mae", "test/mse_vs_locf")
# name parts (after the last "/") where larger is better / smaller is better
_HIGHER = ("auroc", "auprc", "accuracy", "auc", "f1", "precision", "recall", "r2")
_LOWER = ("loss", "mse", "mae", "rmse", "brier", "error", "nll", "ece", "seconds")

STATUS_OK, STATUS_FAILED, STATUS_INCOMPLETE, STATUS_INVALID = "ok", "failed", "incomplete", "invalid"


# ---------------------------------------------------------------------------- jobs
@dataclass
class Job:
    """One job folder of a sweep and what it left behind."""

    path: Path
    name: str  # path relative to the sweep folder, e.g. "3" or "trials/3"
    overrides: list | None = None  # None: .hydra/overrides.yaml could not be read
    config: dict | None = None
    status: str = STATUS_INCOMPLETE
    metrics: dict = field(default_factory=dict)
    reason: str = ""


def _natural_key(text: str):
    return [(0, int(tok), "") if tok.isdigit() else (1, 0, tok) for tok in re.split(r"(\d+)", text) if tok]


def find_jobs(sweep_dir) -> list[Path]:
    """Every folder under ``sweep_dir`` (itself included) that holds a ``.hydra/`` folder.

    Folders inside a job folder are not searched (checkpoints, logs); hidden folders are
    skipped. The list is in natural order (``2`` before ``10``).
    """
    root = Path(sweep_dir)
    jobs = []
    for here, dirs, _files in os.walk(root):
        if ".hydra" in dirs:
            jobs.append(Path(here))
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if not d.startswith(".")]
    return sorted(jobs, key=lambda p: _natural_key(p.relative_to(root).as_posix()))


def _load_yaml(path: Path):
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = None if mark is None else mark.line + 1
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise DataError(f"not valid YAML ({problem})", path=path, line=line) from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot be read ({err})", path=path) from None


def _load_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
    except json.JSONDecodeError as err:
        raise DataError(f"not valid JSON ({err.msg})", path=path, line=err.lineno) from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot be read ({err})", path=path) from None
    if not isinstance(obj, dict):
        raise DataError(f"expected a JSON object, got {type(obj).__name__}", path=path, line=1)
    return obj


def _override_key(override: str) -> str:
    """``"+model.hidden=64"`` -> ``"model.hidden"``."""
    return override.split("=", 1)[0].lstrip("+~").strip()


def read_job(job_dir, sweep_dir=None, need_config: bool = False) -> Job:
    """Read one job folder: its overrides, status, metrics (if ok) or reason (if not).

    A job whose files cannot be read is returned with status ``"invalid"`` and the reason
    (naming the file and line), so that one broken job does not hide the rest of a sweep.
    When a job has both ``metrics.json`` and ``failure.json`` the newer one counts; when both are
    older than the job's ``.hydra/overrides.yaml`` (a later attempt started and left none) the job
    is incomplete.
    """
    job_dir = Path(job_dir)
    name = job_dir.relative_to(sweep_dir).as_posix() if sweep_dir is not None else job_dir.name
    job = Job(path=job_dir, name=name if name != "." else job_dir.name)
    try:
        ov_path = job_dir / ".hydra" / "overrides.yaml"
        if not ov_path.is_file():
            raise DataError("file not found (expected the job's list of overrides)", path=ov_path)
        overrides = _load_yaml(ov_path) or []
        if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
            raise DataError(f"expected a list of strings like 'model=grud', got {overrides!r:.80}", path=ov_path)
        job.overrides = [str(o) for o in overrides]
        if need_config:
            cfg_path = job_dir / ".hydra" / "config.yaml"
            if not cfg_path.is_file():
                cfg_path = job_dir / "config.yaml"
            if not cfg_path.is_file():
                raise DataError("file not found (expected the composed config)", path=job_dir / ".hydra" / "config.yaml")
            cfg = _load_yaml(cfg_path) or {}
            if not isinstance(cfg, dict):
                raise DataError(f"expected a mapping, got {type(cfg).__name__}", path=cfg_path)
            job.config = cfg

        ok_path, fail_path = job_dir / "metrics.json", job_dir / "failure.json"
        candidates = [p for p in (ok_path, fail_path) if p.is_file()]
        if not candidates:
            job.status = STATUS_INCOMPLETE
            job.reason = "neither metrics.json nor failure.json (crashed, killed or still running)"
            return job
        # the newest record counts (a tie goes to the failure); none newer than the overrides Hydra
        # wrote when this attempt started means the attempt has none yet: killed, interrupted or running
        newest = max(candidates, key=lambda p: (p.stat().st_mtime_ns, p == fail_path))
        if newest.stat().st_mtime_ns < ov_path.stat().st_mtime_ns:
            job.status = STATUS_INCOMPLETE
            job.reason = (f"{newest.name} is an earlier attempt's: the latest attempt, started after it, left no "
                          f"record (killed, interrupted or still running)")
            return job
        record = _load_json(newest)
        status = str(record.get("status", STATUS_OK if newest == ok_path else STATUS_FAILED))
        if newest == ok_path and status == STATUS_OK:
            job.status, job.metrics = STATUS_OK, record
        else:
            job.status = STATUS_FAILED
            error = " ".join(str(record.get("error") or record.get("reason") or "no reason recorded").split())
            kind = record.get("type")
            job.reason = f"{kind}: {error}" if kind and not error.startswith(f"{kind}:") else error
    except DataError as err:
        job.status, job.reason = STATUS_INVALID, str(err)
    return job


# ---------------------------------------------------------------------------- grouping and statistics
def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _config_value(config: dict | None, dotted: str):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return "(unset)"
        node = node[part]
    return node


def selection_metrics(jobs: Sequence[Job]) -> list[str]:
    """The validation metrics the completed ``jobs`` chose their checkpoints by (``monitor`` in
    their metrics.json; for a baseline, or a record written before that key, the task's own,
    :func:`grud.cli.config.own_metric`), in order, those the jobs report."""
    from grud.cli.config import own_metric

    chosen = []
    for job in jobs:
        monitor = job.metrics.get("monitor") or own_metric(job.metrics.get("task") or "classification")
        if _is_number(job.metrics.get(monitor)) and monitor not in chosen:
            chosen.append(str(monitor))
    return chosen


def _default_metrics(jobs: Sequence[Job]) -> list[str]:
    numeric = {}
    for job in jobs:
        for key, value in job.metrics.items():
            if _is_number(value):
                numeric.setdefault(key, None)
    chosen = [m for m in PREFERRED_METRICS if m in numeric]
    rest = sorted(k for k in numeric if k.startswith("test/") and k not in chosen)
    chosen += rest
    if "val/auroc" in numeric:
        chosen.append("val/auroc")
    return chosen


def higher_is_better(metric: str) -> bool | None:
    """Whether larger values of ``metric`` are better (auroc, auprc, accuracy, ...).

    Losses and errors (loss, mse, mae, brier, ...) are better when smaller; an interval's
    coverage is best at its nominal level, neither (None: not sorted by); a name that says
    none of these is treated as a score (larger is better).
    """
    base = metric.rsplit("/", 1)[-1].lower()
    tokens = set(re.split(r"[^a-z0-9]+", base))
    if "coverage" in tokens:
        return None
    return not (tokens & set(_LOWER))


def _label(overrides: Sequence[str]) -> str:
    return " ".join(overrides) if overrides else "(defaults)"


def _group_keys(jobs: Sequence[Job], group_by: Sequence[str] | None):
    """Per job: (key, label), key None for a job that cannot be placed; the overrides every job shares."""
    if group_by:
        configs = [j.config for j in jobs if j.config is not None]
        for k in group_by:
            if configs and all(_config_value(c, k) == "(unset)" for c in configs):
                raise DataError(f"--group-by {k}: no job's config.yaml has this key (top-level keys: "
                                f"{', '.join(sorted({t for c in configs for t in c}))}); e.g. model.name, seed")
        keys = []
        for job in jobs:
            if job.config is None:
                keys.append((None, "?"))
                continue
            parts = [f"{k}={_config_value(job.config, k)}" for k in group_by]
            keys.append((tuple(parts), " ".join(parts)))
        return keys, []
    stripped = [None if job.overrides is None else [o for o in job.overrides if _override_key(o) not in SEED_KEYS]
                for job in jobs]
    known = [s for s in stripped if s is not None]
    # one job: all its overrides are shared (the label names its model, not the whole command line)
    common = [o for o in known[0] if all(o in s for s in known[1:])] if known else []
    keys = []
    for s in stripped:
        if s is None:
            keys.append((None, "?"))
        else:
            varying = [o for o in s if o not in common]
            # one group only: its overrides are the "shared by every job" line; the label names the model
            model = [o for o in s if _override_key(o) == "model"]
            keys.append((tuple(sorted(s)), _label(varying) if varying else (model[0] if model else "(all jobs)")))
    return keys, common


def _grid_jobs_of(root: Path) -> int | None:
    """The number of jobs the sweep's ``multirun.yaml`` asked the basic sweeper for (None if unknown)."""
    import yaml

    from grud.cli.config import grid_size

    try:
        hydra_cfg = (yaml.safe_load((root / "multirun.yaml").read_text()) or {}).get("hydra") or {}
    except (OSError, yaml.YAMLError):
        return None
    sweeper = hydra_cfg.get("sweeper") or {}
    if "BasicSweeper" not in str(sweeper.get("_target_", "")):
        return None  # Optuna and others sample their trials
    task = (hydra_cfg.get("overrides") or {}).get("task") or []
    return grid_size([o for o in task if not o.startswith("hydra")], sweeper.get("params"))


def earlier_sweeps_jobs(root: Path, job_dirs: Sequence[Path], expected: int | None) -> list[Path]:
    """Job folders an earlier, larger sweep left in ``root``: Hydra numbers a basic sweep's jobs
    0 .. N-1 and rewrites ``multirun.yaml`` when a sweep starts, so a folder numbered N or more
    whose ``.hydra/overrides.yaml`` is older than that file is not this sweep's."""
    if expected is None:
        return []
    try:
        started = (root / "multirun.yaml").stat().st_mtime
    except OSError:
        return []
    out = []
    for d in job_dirs:
        if d.parent != root or not d.name.isdigit() or int(d.name) < expected:
            continue
        try:
            if (d / ".hydra" / "overrides.yaml").stat().st_mtime < started:
                out.append(d)
        except OSError:
            continue
    return out


def aggregate(sweep_dir, metrics: Sequence[str] | str | None = None,
              group_by: Sequence[str] | str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Summarise a Hydra multirun folder: mean ± std and n of each metric per group.

    Args:
        sweep_dir: the multirun folder (``multirun/<date>/<time>``).
        metrics: metric names (list or comma-separated string), e.g. ``test/auroc``. Default:
            every numeric key starting with ``test/`` that some job reports, plus
            ``val/auroc``; the readable ones (``test/auroc``, ``test/auprc``, ``test/brier``;
            ``test/mse``, ``test/mae``, ``test/mse_vs_locf``) first.
        group_by: config keys to group by (e.g. ``model.name``) instead of the overrides
            minus ``seed``.

    Returns:
        ``(summary, failures)``. ``summary`` has one row per group, sorted by the first
        metric (best first: descending for scores like AUROC, ascending for losses and
        errors; groups without a value last), columns ``group``, ``n`` (completed jobs),
        ``failed`` (failed, incomplete or unreadable jobs), and per metric ``<m>_mean``,
        ``<m>_std`` (sample std, NaN when fewer than 2 values) and ``<m>_n``.
        ``summary.attrs`` holds ``metrics``, ``common_overrides``, ``sweep_dir`` and
        ``expected_jobs`` (the grid's size from ``multirun.yaml``; None if unknown),
        ``earlier_jobs`` (job folders an earlier, larger sweep left, not counted: see
        :func:`earlier_sweeps_jobs`) and ``classes`` (the class counts the completed
        classification jobs report, sorted).
        ``failures`` lists each job that did not complete: ``job``, ``status`` (failed,
        incomplete, invalid), ``group``, ``overrides``, ``reason``.

    Raises:
        DataError: ``sweep_dir`` does not exist or holds no job folder, or a requested
            metric is reported by no completed job (or is not numeric).
    """
    root = Path(sweep_dir)
    if not root.exists():
        raise DataError("sweep folder not found (expected a Hydra multirun folder, e.g. multirun/<date>/<time>)",
                        path=root)
    if not root.is_dir():
        raise DataError("expected a folder (a Hydra multirun folder), got a file", path=root)
    if isinstance(group_by, str):
        group_by = [g.strip() for g in group_by.split(",") if g.strip()]
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    job_dirs = find_jobs(root)
    if not job_dirs:
        raise DataError("no job folder found (expected sub-folders holding a .hydra/ folder, as "
                        "`grud-train -m ...` writes them)", path=root)
    expected = _grid_jobs_of(root)
    earlier = earlier_sweeps_jobs(root, job_dirs, expected)
    job_dirs = [d for d in job_dirs if d not in earlier]
    if not job_dirs:
        raise DataError(f"every job folder ({len(earlier)}) is left from an earlier sweep in this folder "
                        "(numbered beyond this sweep's grid and older than its multirun.yaml)", path=root)
    jobs = [read_job(d, root, need_config=bool(group_by)) for d in job_dirs]
    done = [j for j in jobs if j.status == STATUS_OK]

    selection = selection_metrics(done)
    if metrics is None:
        metrics = _default_metrics(done)
        metrics += [m for m in selection if m not in metrics]
    else:
        metrics = list(dict.fromkeys(metrics))
        if not metrics:
            raise DataError("--metrics: expected at least one metric name, e.g. test/auroc")
        if done:
            available = _default_metrics(done) + sorted(
                {k for j in done for k, v in j.metrics.items() if _is_number(v)} - set(_default_metrics(done)))
            for m in metrics:
                present = [j.metrics[m] for j in done if m in j.metrics]
                if not present:
                    raise DataError(f"metric {m!r} is in no metrics.json of this sweep; numeric keys present: "
                                    f"{', '.join(available[:25])}", path=root)
                if not any(_is_number(v) or v is None for v in present):
                    raise DataError(f"metric {m!r} is not numeric (e.g. {present[0]!r})", path=root)

    keys, common = _group_keys(jobs, group_by)
    groups: dict = {}
    for job, (key, label) in zip(jobs, keys):
        if key is None:  # unreadable overrides/config: listed under failures only
            continue
        groups.setdefault(key, {"label": label, "ok": [], "failed": 0})
        if job.status == STATUS_OK:
            groups[key]["ok"].append(job)
        else:
            groups[key]["failed"] += 1

    rows = []
    for g in groups.values():
        row = {"group": g["label"], "n": len(g["ok"]), "failed": g["failed"]}
        for m in metrics:
            vals = np.array([float(j.metrics[m]) for j in g["ok"] if _is_number(j.metrics.get(m))], dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            row[f"{m}_mean"] = float(vals.mean()) if vals.size else math.nan
            row[f"{m}_std"] = float(vals.std(ddof=1)) if vals.size > 1 else math.nan
            row[f"{m}_n"] = int(vals.size)
        rows.append(row)
    columns = ["group", "n", "failed"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std", "n")]
    summary = pd.DataFrame(rows, columns=columns)
    if metrics and len(summary) and higher_is_better(metrics[0]) is not None:
        first = f"{metrics[0]}_mean"
        summary = summary.sort_values(first, ascending=not higher_is_better(metrics[0]), na_position="last",
                                      kind="stable").reset_index(drop=True)
    summary.attrs.update({"metrics": list(metrics), "common_overrides": list(common), "sweep_dir": str(root),
                          "expected_jobs": expected, "earlier_jobs": [d.name for d in earlier],
                          "selection_metrics": selection,
                          "classes": sorted({int(j.metrics["classes"]) for j in done
                                             if _is_number(j.metrics.get("classes"))})})

    failures = pd.DataFrame(
        [{"job": j.name, "status": j.status, "group": label, "overrides": " ".join(j.overrides or []),
          "reason": j.reason}
         for j, (_key, label) in zip(jobs, keys) if j.status != STATUS_OK],
        columns=["job", "status", "group", "overrides", "reason"])
    return summary, failures


# ---------------------------------------------------------------------------- writing
def _fmt(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "nan"
    if x == 0 or 0.1 <= abs(x) < 1e4:
        return f"{x:.3f}"
    return f"{x:#.3g}"  # three significant digits, trailing zeros kept: 0.00762 and 0.0700, not 0.008 or 0.07


def _md_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _table_metrics(summary: pd.DataFrame, metrics: Sequence[str] | None, explicit: bool) -> list[str]:
    all_metrics = list(metrics if metrics is not None else summary.attrs.get("metrics", []))
    if explicit:
        return all_metrics
    preferred = [m for m in all_metrics if m in PREFERRED_METRICS]
    if not preferred:
        return all_metrics[:4]
    # the validation metric that picked each run's checkpoint (and an Optuna search's trials): a
    # choice between models belongs to it, not to the test columns beside it
    return preferred + [m for m in summary.attrs.get("selection_metrics", []) if m in all_metrics]


#: metrics a multi-class run averages or sums over its classes (noted under the table)
MULTICLASS_AVERAGED = ("auroc", "auprc", "accuracy", "brier")


def summary_markdown(summary: pd.DataFrame, failures: pd.DataFrame, metrics: Sequence[str] | None = None,
                     title: str | None = None) -> str:
    """The Markdown report: a table of ``mean ± std`` per group, then the failed jobs.

    ``metrics`` chooses the table's columns (default: the readable subset of the summary's
    metrics, see :data:`PREFERRED_METRICS`; ``summary.csv`` holds them all).
    """
    shown = _table_metrics(summary, metrics, explicit=metrics is not None)
    n_ok, n_bad = int(summary["n"].sum()) if len(summary) else 0, len(failures)
    counts = failures["status"].value_counts() if n_bad else pd.Series(dtype=int)
    lines = [f"# {title or 'Sweep summary'}", ""]
    total = n_ok + n_bad
    parts = [f"{total} job{'s' if total != 1 else ''}: {n_ok} completed"] + [f"{int(c)} {s}" for s, c in counts.items()]
    expected = summary.attrs.get("expected_jobs")
    if expected and expected > total:
        parts.append(f"{expected - total} never started (the sweep's grid has {expected})")
    lines.append(", ".join(parts) + ".")
    earlier = summary.attrs.get("earlier_jobs") or []
    if earlier:
        lines.append(f"Left out: job folder{'s' if len(earlier) > 1 else ''} {', '.join(earlier)}, from an earlier "
                     f"sweep in this folder (numbered beyond this sweep's grid of {expected} jobs and older than its "
                     "multirun.yaml).")
    common = summary.attrs.get("common_overrides") or []
    if common:
        lines.append(f"Shared by every job: `{' '.join(common)}`.")
    if shown:
        better = higher_is_better(shown[0])
        order = (f"Sorted by {shown[0]} ({'higher' if better else 'lower'} is better)" if better is not None
                 else f"Not sorted ({shown[0]} is best at its nominal level)")
        lines.append(f"{order}; cells are mean ± sample std over the completed jobs of a group (n = 1: mean only).")
    lines.append("")
    header = ["group", "n"] + list(shown)
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for _, row in summary.iterrows():
        cells = [f"`{_md_cell(row['group'])}`", str(int(row["n"]))]
        for m in shown:
            mean, std, n = row.get(f"{m}_mean"), row.get(f"{m}_std"), row.get(f"{m}_n")
            if mean is None or not math.isfinite(float(mean)):
                cells.append("—")
                continue
            cell = _fmt(float(mean))
            if std is not None and math.isfinite(float(std)):
                cell += f" ± {_fmt(float(std))}"
            if n is not None and int(n) != int(row["n"]):
                cell += f" (n={int(n)})"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    if not len(summary):
        lines.append("| (no job) |" + " |" * (len(header) - 1))
    multi = [k for k in summary.attrs.get("classes") or [] if k > 2]
    if multi and any(m.rsplit("/", 1)[-1] in MULTICLASS_AVERAGED for m in shown):
        lines += ["", f"Multi-class jobs ({', '.join(map(str, multi))} classes): AUROC and AUPRC are macro "
                  "averages of one-vs-rest scores, accuracy is of the most probable class, and the Brier "
                  "score sums over classes (0..2)."]
    lines += ["", "## Failed jobs", ""]
    if n_bad:
        for _, f in failures.iterrows():
            ov = f["overrides"] or "(no overrides)"
            lines.append(f"- `{f['job']}` ({f['status']}) `{_md_cell(ov)}`: {_md_cell(f['reason'])}")
    else:
        lines.append("None.")
    return "\n".join(lines) + "\n"


def write_summary(summary: pd.DataFrame, failures: pd.DataFrame, out_dir, metrics: Sequence[str] | None = None,
                  title: str | None = None) -> dict:
    """Write ``summary.csv``, ``summary.md`` and ``summary.png`` into ``out_dir`` (atomically).

    Returns ``{"csv": Path, "md": Path, "png": Path, "markdown": str}``.
    """
    from grud.cli.files import atomic_write_bytes
    from grud.viz.plots import plot_group_bars

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError("--out: expected a folder, got a file", path=out)
    out.mkdir(parents=True, exist_ok=True)
    markdown = summary_markdown(summary, failures, metrics, title)
    csv_path = atomic_write_bytes(out / "summary.csv", summary.to_csv(index=False).encode())
    md_path = atomic_write_bytes(out / "summary.md", markdown.encode())
    all_metrics = summary.attrs.get("metrics", [])
    first = (list(metrics) if metrics else all_metrics)[:1]
    if first and f"{first[0]}_mean" in summary:
        png = plot_group_bars(summary["group"].tolist(), summary[f"{first[0]}_mean"].to_numpy(),
                              summary[f"{first[0]}_std"].to_numpy(), out / "summary.png", metric=first[0])
    else:
        png = plot_group_bars([], [], [], out / "summary.png", metric="(no metric)")
    return {"csv": csv_path, "md": md_path, "png": png, "markdown": markdown}


# ---------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="grud-aggregate",
        description="Summarise a Hydra multirun folder of grud-train jobs: mean ± std per configuration "
                    "(seeds pooled), failed and incomplete jobs listed.")
    p.add_argument("sweep_dir", metavar="SWEEP_DIR", help="the multirun folder, e.g. multirun/2024-05-01/12-00-00")
    p.add_argument("--out", metavar="DIR", default=None, help="where to write summary.{csv,md,png} (default: SWEEP_DIR)")
    p.add_argument("--metrics", default=None,
                   help="comma-separated metrics; the first one sorts the table and is plotted "
                        "(default: test/* keys and val/auroc, e.g. test/auroc,test/auprc,test/brier)")
    p.add_argument("--group-by", default=None, metavar="KEY[,KEY]",
                   help="group by these config keys (e.g. model.name) instead of the overrides minus seed")
    return p


def main(argv=None) -> int:
    """Entry point of ``grud-aggregate``; returns the exit code (0 ok, 1 no job completed, 2 error)."""
    from grud.cli.errors import report

    args = build_parser().parse_args(argv)
    try:
        metrics = None if args.metrics is None else [m.strip() for m in args.metrics.split(",") if m.strip()]
        summary, failures = aggregate(args.sweep_dir, metrics=metrics, group_by=args.group_by)
        out_dir = Path(args.out) if args.out else Path(args.sweep_dir)
        written = write_summary(summary, failures, out_dir, metrics=metrics,
                                title=f"Sweep summary: {args.sweep_dir}")
    except (DataError, OSError) as exc:
        return report(exc, code=2)
    sys.stdout.write(written["markdown"])
    sys.stdout.flush()
    print(f"wrote {written['csv']}, {written['md']}, {written['png']}", file=sys.stderr)
    if int(summary["n"].sum() if len(summary) else 0) == 0:
        print("error: no job of this sweep completed (see 'Failed jobs')", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
