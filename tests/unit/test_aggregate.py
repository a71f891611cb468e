"""grud-aggregate: grouping a fake Hydra multirun tree, statistics, failures, outputs, errors."""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from grud.cli.aggregate import aggregate, find_jobs, higher_is_better, main

MODELS = ("grud", "gru_mean", "lstm")
SEEDS = (0, 1)


def make_job(root: Path, name: str, overrides: list, config: dict, metrics=None, failure=None) -> Path:
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))
    if failure is not None:
        (job / "failure.json").write_text(json.dumps(failure))
    return job


@pytest.fixture
def sweep(tmp_path):
    """3 models x 2 seeds; job 3 (gru_mean, seed 1) failed, job 5 (lstm, seed 1) never finished."""
    rng = np.random.default_rng(7)
    root = tmp_path / "multirun" / "2024-05-01" / "12-00-00"
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    values = {}
    n = 0
    for model in MODELS:
        for seed in SEEDS:
            overrides = ["experiment=compare_models", f"model={model}", f"seed={seed}"]
            config = {"model": {"name": model}, "seed": seed, "task": {"name": "classification"}}
            if n == 3:
                make_job(root, str(n), overrides, config,
                         failure={"status": "failed", "error": "out of memory (lower data.batch_size)",
                                  "type": "MemoryError"})
            elif n == 5:
                make_job(root, str(n), overrides, config)
            else:
                m = {"status": "ok", "test/auroc": float(rng.uniform(0.7, 0.9)),
                     "test/auprc": float(rng.uniform(0.3, 0.5)), "test/brier": float(rng.uniform(0.08, 0.12)),
                     "val/auroc": float(rng.uniform(0.7, 0.9)), "test/accuracy": float(rng.uniform(0.8, 0.9)),
                     "epochs": int(rng.integers(3, 9)), "seconds": 12.5, "model": model, "seed": seed,
                     "version/torch": "2.13.0", "resumed_from_epoch": None}
                make_job(root, str(n), overrides, config, metrics=m)
                values.setdefault(model, []).append(m)
            n += 1
    return root, values


def read_summary(path: Path) -> pd.DataFrame:
    return pd.read_csv(path).set_index("group")


def test_summary_csv_holds_mean_sample_std_and_n_per_model(sweep, capsys):
    root, values = sweep
    assert main([str(root)]) == 0
    table = read_summary(root / "summary.csv")
    assert sorted(table.index) == sorted(f"model={m}" for m in MODELS)  # seed pooled, shared override dropped
    for model, runs in values.items():
        row = table.loc[f"model={model}"]
        assert row["n"] == len(runs)
        for metric in ("test/auroc", "test/auprc", "test/brier", "val/auroc"):
            xs = [r[metric] for r in runs]
            assert row[f"{metric}_mean"] == pytest.approx(statistics.fmean(xs), abs=1e-12)
            if len(xs) > 1:
                assert row[f"{metric}_std"] == pytest.approx(statistics.stdev(xs), abs=1e-12)
            else:  # one run: the spread is unknown, the cell is blank rather than 0
                assert math.isnan(row[f"{metric}_std"])
            assert row[f"{metric}_n"] == len(xs)
    assert table.loc["model=gru_mean", "failed"] == 1 and table.loc["model=lstm", "failed"] == 1
    # non-numeric keys (versions, model name) and None values are no metrics
    assert not any(c.startswith(("version/", "model_", "resumed")) for c in table.columns)


def test_rows_are_sorted_by_first_metric_best_first(sweep):
    root, values = sweep
    summary, _ = aggregate(root)
    assert summary.attrs["metrics"][:3] == ["test/auroc", "test/auprc", "test/brier"]
    expected = sorted(values, key=lambda m: -statistics.fmean(r["test/auroc"] for r in values[m]))
    assert summary["group"].tolist() == [f"model={m}" for m in expected]
    by_brier, _ = aggregate(root, metrics=["test/brier", "test/auroc"])
    expected = sorted(values, key=lambda m: statistics.fmean(r["test/brier"] for r in values[m]))
    assert by_brier["group"].tolist() == [f"model={m}" for m in expected]  # lower is better


def test_markdown_lists_failed_and_incomplete_jobs_with_reason(sweep, capsys):
    root, _ = sweep
    assert main([str(root)]) == 0
    md = (root / "summary.md").read_text()
    assert md == capsys.readouterr().out  # the same report is printed
    table, failed = md.split("## Failed jobs")
    assert "| `model=grud` | 2 |" in table
    assert " ± " in table and "test/auroc" in table
    # the test columns, then the validation metric the checkpoints (and an Optuna search) chose by
    assert "| group | n | test/auroc | test/auprc | test/brier | val/auroc |" in table
    lines = [ln for ln in failed.splitlines() if ln.startswith("- ")]
    assert len(lines) == 2
    assert lines[0].startswith("- `3` (failed)") and "model=gru_mean seed=1" in lines[0]
    assert "MemoryError: out of memory" in lines[0]
    assert lines[1].startswith("- `5` (incomplete)") and "model=lstm seed=1" in lines[1]
    assert "neither metrics.json nor failure.json" in lines[1]


def test_outputs_are_written_atomically_to_out_dir(sweep, tmp_path):
    root, _ = sweep
    out = tmp_path / "results"
    assert main([str(root), "--out", str(out), "--metrics", "test/auprc,test/auroc"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["summary.csv", "summary.md", "summary.png"]  # no temp left
    png = (out / "summary.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    table = read_summary(out / "summary.csv")
    assert [c for c in table.columns if c.endswith("_mean")] == ["test/auprc_mean", "test/auroc_mean"]
    assert not (root / "summary.csv").exists()


def test_group_by_config_key(sweep):
    root, values = sweep
    summary, failures = aggregate(root, group_by="model.name")
    assert sorted(summary["group"]) == sorted(f"model.name={m}" for m in MODELS)
    assert set(failures["group"]) == {"model.name=gru_mean", "model.name=lstm"}


def test_hyperparameter_grid_gives_one_row_per_combination(tmp_path):
    root = tmp_path / "sweep"
    expected = {}
    n = 0
    for lr in ("0.001", "0.01"):
        for hidden in (32, 64):
            for seed in (0, 1, 2):
                auroc = 0.5 + 0.01 * n
                make_job(root, str(n), [f"optim.lr={lr}", f"model.hidden_size={hidden}", f"seed={seed}"],
                         {"seed": seed}, metrics={"status": "ok", "test/mse": 1.0 - auroc, "test/auroc": auroc})
                expected.setdefault(f"optim.lr={lr} model.hidden_size={hidden}", []).append(auroc)
                n += 1
    summary, failures = aggregate(root, metrics="test/auroc")
    assert len(failures) == 0
    assert dict(zip(summary["group"], summary["n"])) == {k: 3 for k in expected}
    for group, xs in expected.items():
        row = summary.set_index("group").loc[group]
        assert row["test/auroc_mean"] == pytest.approx(statistics.fmean(xs))
        assert row["test/auroc_std"] == pytest.approx(statistics.stdev(xs))


def test_a_sweep_over_seeds_only_names_its_one_group_by_the_model_not_every_shared_override(tmp_path):
    """The full shared override string (data paths and all) was the group's label, cut off in summary.png."""
    root = tmp_path / "sweep"
    shared = ["data=csv_long", "data.path=/a/very/long/path/to/events.csv", "model=gru_mean", "plots=false"]
    for seed in (0, 1):
        make_job(root, str(seed), [*shared, f"seed={seed}"], {"seed": seed},
                 metrics={"status": "ok", "test/auroc": 0.7 + 0.1 * seed})
    summary, _ = aggregate(root, metrics="test/auroc")
    assert list(summary["group"]) == ["model=gru_mean"] and summary.attrs["common_overrides"] == shared
    root2 = tmp_path / "sweep2"
    for seed in (0, 1):
        make_job(root2, str(seed), ["plots=false", f"seed={seed}"], {"seed": seed},
                 metrics={"status": "ok", "test/auroc": 0.7})
    assert list(aggregate(root2, metrics="test/auroc")[0]["group"]) == ["(all jobs)"]


def test_nested_job_folders_are_found_in_natural_order(tmp_path):
    root = tmp_path / "optuna"
    for n in (10, 2, 1):
        make_job(root, f"trials/{n}", [f"optim.lr={n}e-4"], {}, metrics={"status": "ok", "test/auroc": 0.6})
        (root / f"trials/{n}" / "lightning_logs" / ".hydra").mkdir(parents=True)  # inside a job: not a job
    assert [p.relative_to(root).as_posix() for p in find_jobs(root)] == ["trials/1", "trials/2", "trials/10"]


def test_unreadable_job_files_are_reported_not_fatal(sweep):
    root, _ = sweep
    (root / "0" / "metrics.json").write_text('{"status": "ok",\n "test/auroc": }')
    (root / "1" / ".hydra" / "overrides.yaml").write_text("- model=grud\n- [unclosed\n")
    summary, failures = aggregate(root)
    bad = failures.set_index("job")
    assert bad.loc["0", "status"] == "invalid" and "metrics.json" in bad.loc["0", "reason"]
    assert "line 2" in bad.loc["0", "reason"]
    assert bad.loc["1", "status"] == "invalid" and "overrides.yaml" in bad.loc["1", "reason"]
    grud = summary.set_index("group").loc["model=grud"]  # job 0 still belongs to its group, job 1 cannot
    assert grud["n"] == 0 and grud["failed"] == 1 and math.isnan(grud["test/auroc_mean"])


def test_sweep_where_no_job_completed_exits_1_and_still_writes(tmp_path, capsys):
    root = tmp_path / "sweep"
    make_job(root, "0", ["model=grud", "seed=0"], {}, failure={"status": "failed", "error": "boom", "type": "RuntimeError"})
    make_job(root, "1", ["model=grud", "seed=1"], {})
    assert main([str(root)]) == 1
    assert "RuntimeError: boom" in (root / "summary.md").read_text()
    assert (root / "summary.png").stat().st_size > 0
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("make", ["missing", "empty", "file"])
def test_bad_sweep_dir_exits_2_with_error_line(tmp_path, capsys, monkeypatch, make):
    monkeypatch.delenv("GRUD_DEBUG", raising=False)
    target = tmp_path / "sweep"
    if make == "empty":
        (target / "0").mkdir(parents=True)  # a folder, but no job (.hydra/) in it
    elif make == "file":
        target.write_text("x")
    assert main([str(target)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(target) in err[0]
    assert "Traceback" not in captured.err


def test_debug_env_shows_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GRUD_DEBUG", "1")
    assert main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "error: " in err


def test_unknown_metric_is_an_error_naming_what_exists(sweep, capsys):
    root, _ = sweep
    assert main([str(root), "--metrics", "test/aucroc"]) == 2
    err = capsys.readouterr().err
    assert "test/aucroc" in err and "test/auroc" in err


def test_metric_direction():
    assert higher_is_better("test/auroc") and higher_is_better("val/accuracy")
    assert not any(higher_is_better(m) for m in ("val/loss", "test/mse", "test/mae", "test/brier", "test/mse_vs_locf"))


def test_seed_only_sweep_gives_one_group_named_by_its_overrides(tmp_path):
    root = tmp_path / "sweep"
    for seed in (0, 1, 2):
        make_job(root, str(seed), ["model=logreg", f"seed={seed}"], {},
                 metrics={"status": "ok", "test/auroc": 0.8 + 0.01 * seed})
    summary, _ = aggregate(root)
    assert summary["group"].tolist() == ["model=logreg"] and summary["n"].tolist() == [3]
    assert summary.loc[0, "test/auroc_std"] == pytest.approx(statistics.stdev([0.80, 0.81, 0.82]))


def test_a_misspelled_group_by_key_is_an_error(sweep, capsys):
    root, _ = sweep
    assert main([str(root), "--group-by", "model.nme"]) == 2
    assert "--group-by model.nme: no job's config.yaml has this key" in capsys.readouterr().err


def test_small_metrics_keep_three_significant_digits_and_coverage_is_not_ranked():
    from grud.cli.aggregate import _fmt

    assert _fmt(0.007617) == "0.00762" and _fmt(0.007643) == "0.00764" and _fmt(0.854) == "0.854"
    assert _fmt(4.54e-05) == "4.54e-05" and _fmt(123.4567) == "123.457"
    assert _fmt(0.07004) == "0.0700" and _fmt(0.05) == "0.0500"  # a std of 0.07004 is not "0.07"
    assert higher_is_better("test/interval_coverage") is None


def test_jobs_of_the_grid_that_never_started_are_counted(tmp_path):
    root = tmp_path / "sweep"
    root.mkdir()
    (root / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {
        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "params": None},
        "overrides": {"task": ["model=grud,gru_mean", "seed=0,1,2", "plots=false"]}}}))
    make_job(root, "0", ["model=grud", "seed=0"], {"model": {"name": "grud"}, "seed": 0},
             metrics={"status": "ok", "test/auroc": 0.8})
    summary, _ = aggregate(root)
    assert summary.attrs["expected_jobs"] == 6
    from grud.cli.aggregate import summary_markdown

    assert "5 never started (the sweep's grid has 6)" in summary_markdown(summary, _)


def test_jobs_an_earlier_larger_sweep_left_in_the_folder_are_left_out_and_named(tmp_path):
    """A sweep of 2 jobs rerun in the folder of an earlier sweep of 4 showed jobs 2 and 3 of the old grid."""
    import os

    from grud.cli.aggregate import summary_markdown

    root = tmp_path / "sweep"
    root.mkdir()
    old = [make_job(root, str(n), [f"model={m}", "seed=0"], {"model": {"name": m}, "seed": 0},
                    metrics={"status": "ok", "test/auroc": 0.5}) for n, m in enumerate(["a", "b", "c", "d"])]
    for job in old:  # written before this sweep started
        os.utime(job / ".hydra" / "overrides.yaml", (1_000_000, 1_000_000))
    (root / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {
        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "params": None},
        "overrides": {"task": ["model=grud,logreg", "seed=0"]}}}))
    for n, m in enumerate(["grud", "logreg"]):  # this sweep rewrote jobs 0 and 1
        (root / str(n) / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"model={m}", "seed=0"]))
        (root / str(n) / "metrics.json").write_text(json.dumps({"status": "ok", "test/auroc": 0.8}))
    summary, failures = aggregate(root)
    assert sorted(summary["group"]) == ["model=grud", "model=logreg"] and len(failures) == 0
    assert summary.attrs["earlier_jobs"] == ["2", "3"]
    assert "Left out: job folders 2, 3, from an earlier sweep" in summary_markdown(summary, failures)
    # a job of the grid's size or beyond that this sweep wrote is counted (another sweeper's numbering)
    os.utime(root / "3" / ".hydra" / "overrides.yaml")
    summary, _ = aggregate(root)
    assert summary.attrs["earlier_jobs"] == ["2"] and "model=d" in set(summary["group"])


def test_a_single_run_is_named_by_its_model_and_its_overrides_are_shared(tmp_path):
    """One job's group label was its whole command line (every data.* key of a CSV run)."""
    overrides = ["data=csv_long", "data.path=events.csv", "data.time_unit=min", "model=gru_mean",
                 "trainer.max_epochs=2"]
    make_job(tmp_path, "run", overrides, {"model": {"name": "gru_mean"}},
             metrics={"status": "ok", "test/auroc": 0.7, "test/auprc": 0.4, "test/brier": 0.2})
    assert main([str(tmp_path / "run")]) == 0
    assert list(read_summary(tmp_path / "run" / "summary.csv").index) == ["model=gru_mean"]
    text = (tmp_path / "run" / "summary.md").read_text()
    assert f"Shared by every job: `{' '.join(overrides)}`." in text


def test_a_later_attempt_without_a_record_is_incomplete_not_the_earlier_result(tmp_path):
    """A rerun killed (or interrupted) before it wrote a record left the earlier metrics.json, read as
    the new attempt's result under its new overrides."""
    import os

    from grud.cli.aggregate import read_job

    job = make_job(tmp_path, "0", ["model=grud"], {"model": {"name": "grud"}},
                   metrics={"status": "ok", "test/auroc": 0.8})
    ov, rec = job / ".hydra" / "overrides.yaml", job / "metrics.json"
    t = rec.stat().st_mtime_ns
    os.utime(ov, ns=(t - 10**9, t - 10**9))
    assert read_job(job).status == "ok"
    os.utime(ov, ns=(t + 10**9, t + 10**9))  # Hydra rewrote the overrides: a new attempt started
    got = read_job(job)
    assert got.status == "incomplete" and "metrics.json is an earlier attempt's" in got.reason
    (job / "failure.json").write_text(json.dumps({"status": "failed", "error": "boom"}))
    t = rec.stat().st_mtime_ns
    for p in (ov, rec, job / "failure.json"):  # one timestamp for all (a coarse file system): the failure counts
        os.utime(p, ns=(t, t))
    assert read_job(job).status == "failed"


def test_a_resumed_job_groups_with_the_jobs_that_ran_through(tmp_path):
    """`model=grud resume=True` made its own row beside `model=grud`."""
    for n, (seed, extra) in enumerate([(0, []), (1, ["resume=True"])]):
        make_job(tmp_path, str(n), ["model=grud", f"seed={seed}", *extra], {"model": {"name": "grud"}},
                 metrics={"status": "ok", "test/auroc": 0.8 + 0.01 * n, "test/auprc": 0.4, "test/brier": 0.1})
    assert main([str(tmp_path)]) == 0
    table = read_summary(tmp_path / "summary.csv")
    assert list(table.index) == ["model=grud"] and table.loc["model=grud", "n"] == 2


def test_the_summary_says_how_a_multi_class_sweeps_auroc_is_averaged(tmp_path):
    from grud.cli.aggregate import summary_markdown

    root = tmp_path / "sweep"
    for seed, classes in ((0, 3), (1, 3)):
        make_job(root, str(seed), ["model=grud", f"seed={seed}"], {"seed": seed},
                 metrics={"status": "ok", "test/auroc": 0.7, "test/brier": 0.5, "classes": classes})
    summary, failures = aggregate(root)
    assert summary.attrs["classes"] == [3]
    md = summary_markdown(summary, failures)
    assert "Multi-class jobs (3 classes): AUROC and AUPRC are macro averages of one-vs-rest scores" in md
    binary = tmp_path / "binary"
    make_job(binary, "0", ["seed=0"], {"seed": 0}, metrics={"status": "ok", "test/auroc": 0.7, "classes": 2})
    assert "Multi-class" not in summary_markdown(*aggregate(binary))


def test_the_table_shows_the_validation_metric_each_run_chose_its_checkpoint_by(tmp_path):
    """summary.md appended val/auroc whatever early_stopping.monitor the runs used (val/auprc here)."""
    from grud.cli.aggregate import aggregate, summary_markdown

    root = tmp_path / "sweep"
    root.mkdir()
    for n, (model, monitor) in enumerate([("grud", "val/auprc"), ("gru_mean", "val/auprc"), ("logreg", None)]):
        config = {"model": {"name": model}, "seed": 0, "task": {"name": "classification"}}
        make_job(root, str(n), [f"model={model}"], config,
                 metrics={"status": "ok", "task": "classification", "monitor": monitor, "test/auroc": 0.8,
                          "test/auprc": 0.4, "val/auroc": 0.81, "val/auprc": 0.45})
    summary, failures = aggregate(root)
    assert summary.attrs["selection_metrics"] == ["val/auprc", "val/auroc"]  # logreg: the task's own
    assert "| group | n | test/auroc | test/auprc | val/auprc | val/auroc |" in summary_markdown(summary, failures)


def test_the_tasks_own_metric_is_the_one_their_modules_rank_epochs_by():
    """grud.cli.config.own_metric (aggregate's column, the monitor error) and the task modules'
    ``monitor`` (what a run ranks epochs by) are two statements of one default: they must agree."""
    from grud.cli.config import own_metric
    from grud.tasks.classification import ClassificationTask
    from grud.tasks.forecasting import ForecastTask

    assert own_metric("classification") == ClassificationTask.monitor
    assert own_metric("forecast") == ForecastTask.monitor
