"""The command-line contract: run directory, predictions, errors, sweeps, safe checkpoints."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import TINY_TRAIN, make_long_csv

pytestmark = pytest.mark.slow

CSV_COLUMNS = ["data=csv_long", "data.id_column=subject_id", "data.time_column=charttime",
               "data.variable_column=label", "data.value_column=valuenum",
               "data.label_column=hospital_expire_flag", "data.static_variables=[Age]"]


def run(cmd: list[str], cwd: Path, env_extra: dict | None = None, check: bool = True):
    env = dict(os.environ, **(env_extra or {}))
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def clinical_export(tmp_path_factory):
    """An export with other column names, date-time strings and shuffled rows."""
    d = tmp_path_factory.mktemp("export")
    make_long_csv(d / "events.csv", n_series=60, id_column="subject_id", time_column="charttime",
                  variable_column="label", value_column="valuenum", datetimes=True,
                  label_column="hospital_expire_flag", labels_path=d / "labels.csv")
    return d


@pytest.fixture(scope="module")
def rewritten_export(clinical_export):
    """The export's rows in reverse order: the same series in a file training never read (grud-evaluate
    on the training file itself scores only the series training held out)."""
    frame = pd.read_csv(clinical_export / "events.csv", dtype=str)
    path = clinical_export / "events_rewritten.csv"
    frame.iloc[::-1].to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def trained_run(clinical_export):
    out = clinical_export / "run"
    run(["grud-train", *CSV_COLUMNS, f"data.path={clinical_export / 'events.csv'}",
         f"data.labels={clinical_export / 'labels.csv'}", "model=grud", "task=classification",
         f"hydra.run.dir={out}", *TINY_TRAIN], cwd=clinical_export)
    return out


def test_train_writes_the_run_directory(trained_run):
    for name in ("config.yaml", "checkpoints/best.ckpt", "checkpoints/last.ckpt", "metrics.json", "metrics.csv",
                 "plots/history.png", "plots/roc.png", "plots/pr.png", "plots/calibration.png",
                 "plots/input_decay.png"):
        assert (trained_run / name).exists(), name
    m = json.loads((trained_run / "metrics.json").read_text())
    for key in ("val/auroc", "test/auroc", "test/auprc", "test/brier", "test/auroc_ci_low", "test/auroc_ci_high",
                "epochs", "resumed_from_epoch", "seconds", "data_hash", "version/torch"):
        assert key in m, key
    assert m["epochs"] == 2 and m["resumed_from_epoch"] is None and m["monitor"] == "val/auroc"
    assert m["classes"] == 2 and isinstance(m["test/n"], int) and m["n_test"] == m["test/n"]
    assert m["test/auroc_ci_low"] <= m["test/auroc"] <= m["test/auroc_ci_high"]
    # 3 training batches an epoch, fewer than trainer.log_every_n_steps=10: the training loss is still logged
    history = pd.read_csv(trained_run / "metrics.csv")
    assert history["train/loss"].notna().sum() >= 2
    assert not list(trained_run.rglob("*.tmp")), "temporary files left behind"


def test_checkpoint_loads_weights_only_and_reproduces_predictions(trained_run, clinical_export):
    ckpt = torch.load(trained_run / "checkpoints/best.ckpt", weights_only=True, map_location="cpu")
    stats = ckpt["hyper_parameters"]["stats"]
    assert stats["variables"] == ["HR", "Lactate", "MAP"] and stats["static_names"] == ["Age"]
    assert stats["reader"]["id_column"] == "subject_id" and stats["reader"]["kind"] == "csv_long"
    import grud.api

    a = grud.api.predict(trained_run / "checkpoints/best.ckpt", [f"data.path={clinical_export / 'events.csv'}"])
    b = grud.api.predict(trained_run / "checkpoints/best.ckpt", [f"data.path={clinical_export / 'events.csv'}"])
    assert list(a.columns) == ["subject_id", "probability"] and len(a) == 60
    np.testing.assert_array_equal(a["probability"].to_numpy(), b["probability"].to_numpy())
    assert a["probability"].between(0, 1).all()
    # each probability belongs to its series: on the run's own test split, the reloaded model's
    # predictions joined to the labels by id give the test epoch's AUROC and Brier score
    import yaml
    from sklearn.metrics import roc_auc_score

    from grud.cli.pipeline import read_for_run

    cfg = yaml.safe_load((trained_run / "config.yaml").read_text())
    test_ids = read_for_run({**cfg["data"], "split_seed": cfg["seed"]})[2].ids
    labels = pd.read_csv(clinical_export / "labels.csv", dtype={"subject_id": str}).set_index("subject_id")
    on_test = a.assign(subject_id=a["subject_id"].astype(str)).set_index("subject_id").loc[test_ids]
    y, p = labels.loc[test_ids, "hospital_expire_flag"].to_numpy(), on_test["probability"].to_numpy()
    m = json.loads((trained_run / "metrics.json").read_text())
    assert len(set(y)) == 2 and roc_auc_score(y, p) == pytest.approx(m["test/auroc"], abs=1e-6)
    assert np.mean((p - y) ** 2) == pytest.approx(m["test/brier"], abs=1e-6)
    # another export names its id column otherwise: the predictions carry the input's name
    renamed = pd.read_csv(clinical_export / "events.csv").rename(columns={"subject_id": "HADM"})
    renamed.to_csv(clinical_export / "renamed.csv", index=False)
    c = grud.api.predict(trained_run / "checkpoints/best.ckpt",
                         [f"data.path={clinical_export / 'renamed.csv'}", "data.id_column=HADM"])
    assert list(c.columns) == ["HADM", "probability"]
    np.testing.assert_array_equal(c.sort_values("HADM")["probability"].to_numpy(),
                                  a.sort_values("subject_id")["probability"].to_numpy())


def test_predict_cli_defaults_to_training_columns(trained_run, clinical_export, tmp_path):
    # a new export with the same columns, rows shuffled differently, one unknown variable
    new = make_long_csv(tmp_path / "new.csv", n_series=7, seed=5, id_column="subject_id", time_column="charttime",
                        variable_column="label", value_column="valuenum", datetimes=True,
                        label_column="hospital_expire_flag")
    frame = pd.read_csv(new)
    extra = frame.iloc[:3].copy()
    extra["label"] = "NeverSeen"
    pd.concat([frame, extra]).to_csv(new, index=False)
    out = tmp_path / "pred.csv"
    proc = run(["grud-predict", f"checkpoint={trained_run / 'checkpoints/best.ckpt'}", f"data.path={new}",
                f"output={out}"], cwd=tmp_path)
    pred = pd.read_csv(out, dtype={"subject_id": str})
    assert list(pred.columns) == ["subject_id", "probability"]
    assert sorted(pred["subject_id"]) == sorted(frame["subject_id"].astype(str).unique())
    assert "NeverSeen" in proc.stderr  # unknown variables are reported, then dropped
    ckpt = f"checkpoint={trained_run / 'checkpoints/best.ckpt'}"
    for cmd, extra, line in [
            ("grud-predict", ["batch_size=0"], "error: batch_size: expected a whole number >= 1"),
            ("grud-predict", ["batch_size=-5"], "error: batch_size: expected a whole number >= 1"),
            ("grud-predict", ["task.history_hours=12"], "error: task.history_hours: forecast window keys apply to "
                                                        "forecasting checkpoints"),
            ("grud-evaluate", ["task.history_hours=12", f"data.labels={clinical_export / 'labels.csv'}"],
             "error: task.history_hours: forecast window keys apply")]:
        bad = run([cmd, ckpt, f"data.path={new}", *extra, f"output={tmp_path / 'bad.out'}"], cwd=tmp_path,
                  check=False)
        assert bad.returncode != 0 and bad.stderr.strip().splitlines()[-1].startswith(line), bad.stderr[-500:]
        assert not (tmp_path / "bad.out").exists()


def test_evaluate_writes_test_keys(trained_run, clinical_export, rewritten_export, tmp_path):
    out = tmp_path / "eval.json"
    run(["grud-evaluate", f"checkpoint={trained_run / 'checkpoints/best.ckpt'}",
         f"data.path={rewritten_export}", f"data.labels={clinical_export / 'labels.csv'}",
         f"output={out}"], cwd=tmp_path)
    m = json.loads(out.read_text())
    assert {"test/auroc", "test/auprc", "test/brier", "test/accuracy"} <= set(m)
    # the scores of the checkpoint's predictions on every labelled series of the file
    from sklearn.metrics import average_precision_score, roc_auc_score

    import grud.api

    pred = grud.api.predict(trained_run / "checkpoints/best.ckpt", [f"data.path={rewritten_export}"])
    labels = pd.read_csv(clinical_export / "labels.csv", dtype={"subject_id": str}).set_index("subject_id")
    y = labels.loc[pred["subject_id"].astype(str), "hospital_expire_flag"].to_numpy()
    p = pred["probability"].to_numpy()
    assert m["test/n"] == len(y) == 60
    assert m["test/auroc"] == pytest.approx(roc_auc_score(y, p), abs=1e-6)
    assert m["test/auprc"] == pytest.approx(average_precision_score(y, p), abs=1e-3)
    assert m["test/brier"] == pytest.approx(np.mean((p - y) ** 2), abs=1e-6)
    assert m["test/accuracy"] == pytest.approx(np.mean((p >= 0.5) == y), abs=1e-9)


def test_evaluate_on_the_training_file_scores_the_series_training_held_out(trained_run, clinical_export, tmp_path):
    """A fraction split's test ids travel in the checkpoint: grud-evaluate on the training file
    reproduces the run's test metrics instead of scoring the series the model learnt from."""
    out = tmp_path / "eval.json"
    proc = run(["grud-evaluate", f"checkpoint={trained_run / 'checkpoints/best.ckpt'}",
                f"data.path={clinical_export / 'events.csv'}", f"data.labels={clinical_export / 'labels.csv'}",
                f"output={out}"], cwd=tmp_path)
    assert "is the file the model was trained on: scoring the 12 series training held out" in proc.stderr
    m = json.loads(out.read_text())
    run_metrics = json.loads((trained_run / "metrics.json").read_text())
    assert m["test/n"] == run_metrics["n_test"] == 12
    for key in ("test/auroc", "test/auprc", "test/brier", "test/loss"):
        assert m[key] == pytest.approx(run_metrics[key], abs=1e-5), key
    assert sorted(k for k in run_metrics if k.startswith("test/")) == sorted(m)  # every test key of metrics.json
    # a baseline's checkpoint keeps the record too
    import grud.api

    data = [f"data.path={clinical_export / 'events.csv'}", f"data.labels={clinical_export / 'labels.csv'}"]
    logreg = grud.api.train([*CSV_COLUMNS, *data, "model=logreg", "plots=false"], run_dir=tmp_path / "logreg")
    run(["grud-evaluate", f"checkpoint={logreg / 'checkpoints/best.ckpt'}", *data, f"output={out}"], cwd=tmp_path)
    m, run_metrics = (json.loads(f.read_text()) for f in (out, logreg / "metrics.json"))
    assert m["test/n"] == 12 and m["test/auroc"] == pytest.approx(run_metrics["test/auroc"], abs=1e-6)
    assert "test/loss" not in m and "test/loss" not in run_metrics  # a baseline reports no loss
    # a run whose test set was another file held nothing of its training file out: said, scored whole
    from grud.cli.inference import held_out_part, load_model
    from grud.data.loading import read_dataset
    from grud.errors import ConfigError

    ds = read_dataset("csv_long", clinical_export / "events.csv", id_column="subject_id", time_column="charttime",
                      variable_column="label", value_column="valuenum", static_variables=["Age"])
    model = load_model(trained_run / "checkpoints/best.ckpt")
    assert len(held_out_part(ds, [model], clinical_export / "events.csv")) == 12
    model.module.held_out = {**model.held_out, "test_ids": []}
    import logging

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("grud").addHandler(handler)
    try:
        assert len(held_out_part(ds, [model], clinical_export / "events.csv")) == 60
    finally:
        logging.getLogger("grud").removeHandler(handler)
    assert any("these metrics score series the model learnt from" in r.getMessage() for r in records)
    # members that held out different series (two seeds, two splits) have no common test split
    from types import SimpleNamespace

    from grud.cli.pipeline import held_out_record

    ids = list(ds.ids)
    members = [SimpleNamespace(held_out=held_out_record(clinical_export / "events.csv", ds.subset(rows)))
               for rows in ([0, 1, 2], [2, 3, 4])]
    with pytest.raises(ConfigError, match=r"the 2 members were trained on, and they held out different series .* "
                                          r"only 1 series are held out from all of them"):
        held_out_part(ds, members, clinical_export / "events.csv")
    other = tmp_path / "other.csv"  # another file: no record applies (its size differs, so it is not even hashed)
    other.write_text((clinical_export / "events.csv").read_text() + "\n")
    assert len(held_out_part(ds, members, other)) == len(ids)


def test_missing_file_is_one_error_line(tmp_path):
    proc = run(["grud-train", "data=csv_long", f"data.path={tmp_path / 'nope.csv'}", f"hydra.run.dir={tmp_path}/r",
                *TINY_TRAIN], cwd=tmp_path, check=False)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "nope.csv" in last and "not found" in last
    assert "Traceback" not in proc.stderr
    assert "run failed:" not in proc.stderr  # said once on stderr, by the error: line ...
    assert "run failed: " in (tmp_path / "r" / "train.log").read_text()  # ... and kept in the run's log


def test_a_data_key_no_reader_takes_is_one_error_line_at_training_and_prediction(trained_run, clinical_export,
                                                                                   tmp_path):
    """`+data.val_fractoin=0.3` (training) and `+data.tme_unit=min` (prediction) were ignored."""
    run_dir = tmp_path / "r"
    proc = run(["grud-train", *CSV_COLUMNS, f"data.path={clinical_export / 'events.csv'}",
                f"data.labels={clinical_export / 'labels.csv'}", "+data.val_fractoin=0.3",
                f"hydra.run.dir={run_dir}", *TINY_TRAIN], cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "error: data.val_fractoin: not a key of data=csv_long (did you mean data.val_fraction?)"), proc.stderr
    assert not (run_dir / "checkpoints").exists()
    out = tmp_path / "p.csv"
    proc = run(["grud-predict", f"checkpoint={trained_run / 'checkpoints' / 'best.ckpt'}",
                f"data.path={clinical_export / 'events.csv'}", "+data.tme_unit=min", f"output={out}"],
               cwd=tmp_path, check=False)
    assert proc.returncode != 0 and not out.exists()
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "error: data.tme_unit: not a key of data=csv_long (did you mean data.time_unit?)"), proc.stderr


def test_malicious_checkpoint_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "evil.ckpt"
    with open(bad, "wb") as f:
        pickle.dump({"state_dict": Evil()}, f)
    proc = run(["grud-predict", f"checkpoint={bad}", f"data.path={tmp_path / 'x.csv'}"], cwd=tmp_path, check=False)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(bad) in last and "refused" in last
    assert not marker.exists()


def test_multirun_records_a_failed_job_and_aggregate_lists_it(clinical_export, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run(["grud-train", "-m", *CSV_COLUMNS, f"data.path={clinical_export / 'events.csv'}",
                f"data.labels={clinical_export / 'labels.csv'}", "model=gru_mean", "optim.lr=0.01,-1",
                f"hydra.sweep.dir={sweep}", *TINY_TRAIN, "trainer.max_epochs=1", "plots=false"], cwd=tmp_path,
               check=False)
    # the sweep went on past the failure, then exits 1 naming it
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert last.startswith("error: 1 of 2 job(s) of the sweep failed, e.g. job 1 (") and "optim.lr=-1" in last
    failures = list(sweep.rglob("failure.json"))
    assert len(failures) == 1 and "optim.lr" in json.loads(failures[0].read_text())["error"]
    assert len(list(sweep.rglob("metrics.json"))) == 1
    run(["grud-aggregate", str(sweep)], cwd=tmp_path)
    md = (sweep / "summary.md").read_text()
    assert "optim.lr=-1" in md and "optim.lr" in md.split("ailed")[-1]
    assert (sweep / "summary.csv").exists()


def test_an_optuna_search_whose_every_trial_failed_ends_with_one_error_line(clinical_export, tmp_path):
    sweep = tmp_path / "search"
    proc = run(["grud-train", "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", *CSV_COLUMNS,
                f"data.path={clinical_export / 'events.csv'}", f"data.labels={clinical_export / 'labels.csv'}",
                "optim.weight_decay=-1", f"hydra.sweep.dir={sweep}", *TINY_TRAIN, "plots=false"],
               cwd=tmp_path, check=False, env_extra={"GRUD_DEBUG": "0"})
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the sweep stopped: ValueError: No trials are completed yet."), last
    assert "2 of 2 job(s) did not complete" in last and "weight_decay" in last and f"grud-aggregate {sweep}" in last
    assert len(list(sweep.rglob("failure.json"))) == 2


def test_classification_input_options_reach_the_checkpoint_and_prediction(clinical_export, tmp_path):
    import grud.api

    out = grud.api.train([*CSV_COLUMNS, f"data.path={clinical_export / 'events.csv'}",
                          f"data.labels={clinical_export / 'labels.csv'}", "model=gru_simple",
                          "task.value_transform=log", "task.augment_missing=0.2", "task.ensemble=2", "plots=false",
                          f"hydra.run.dir={tmp_path / 'run'}", *TINY_TRAIN])
    ckpt = torch.load(out / "checkpoints/best.ckpt", weights_only=True, map_location="cpu")
    hp = ckpt["hyper_parameters"]
    assert hp["value_transform"] == "log" and hp["augment_missing"] == 0.2 and hp["ensemble"] == 2
    assert any(k.startswith("extra_members.0.network.") for k in ckpt["state_dict"])
    assert hp["model"]["mixed_delta"] == "log1p"
    a = grud.api.predict(out / "checkpoints/best.ckpt", [f"data.path={clinical_export / 'events.csv'}"])
    b = grud.api.predict(out / "checkpoints/best.ckpt", [f"data.path={clinical_export / 'events.csv'}"])
    np.testing.assert_array_equal(a["probability"].to_numpy(), b["probability"].to_numpy())


def test_time_zero_travels_in_the_checkpoint_and_drops_the_same_rows_at_prediction(tmp_path):
    """Offsets from admission (eICU's): ``data.time_zero=zero`` at training holds at prediction."""
    import grud.api

    cols = dict(id_column="stay", time_column="offset", variable_column="name", value_column="val",
                label_column="died")
    events = make_long_csv(tmp_path / "events.csv", n_series=40, labels_path=tmp_path / "labels.csv", **cols)
    frame = pd.read_csv(events)
    frame["offset"] = frame["offset"] - 6.0  # pre-admission rows at negative offsets; Age at -6 h
    frame.to_csv(events, index=False)
    kept = frame[(frame["offset"] >= 0) | (frame["name"] == "Age")]
    kept.to_csv(tmp_path / "kept.csv", index=False)
    keys = ["data=csv_long", *(f"data.{k}={v}" for k, v in cols.items()), "data.static_variables=[Age]"]
    out = grud.api.train([*keys, f"data.path={events}", f"data.labels={tmp_path / 'labels.csv'}",
                          "data.time_zero=zero", "plots=false", f"hydra.run.dir={tmp_path / 'run'}", *TINY_TRAIN])
    ckpt = torch.load(out / "checkpoints/best.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["hyper_parameters"]["stats"]["reader"]["time_zero"] == "zero"
    best = out / "checkpoints/best.ckpt"
    full = grud.api.predict(best, [f"data.path={events}"])
    np.testing.assert_array_equal(full["probability"].to_numpy(),
                                  grud.api.predict(best, [f"data.path={tmp_path / 'kept.csv'}"])["probability"])
    other = grud.api.predict(best, [f"data.path={events}", "data.time_zero=earliest"])  # the rows read back in
    assert not np.allclose(full["probability"].to_numpy(), other["probability"].to_numpy())


def test_early_stopping_monitor_picks_the_best_checkpoint_by_that_metric(clinical_export, tmp_path):
    """``early_stopping.monitor=val/loss``: best.ckpt is the epoch of the lowest validation loss."""
    import grud.api

    out = grud.api.train([*CSV_COLUMNS, f"data.path={clinical_export / 'events.csv'}",
                          f"data.labels={clinical_export / 'labels.csv'}", "plots=false", "early_stopping.monitor=val/loss",
                          f"hydra.run.dir={tmp_path / 'run'}", *TINY_TRAIN, "trainer.max_epochs=6", "optim.lr=0.02"])
    log = pd.read_csv(out / "metrics.csv")
    val = log.dropna(subset=["val/loss"]).set_index("epoch")["val/loss"]
    ckpt = torch.load(out / "checkpoints/best.ckpt", weights_only=True, map_location="cpu")
    assert len(val) == 6 and ckpt["epoch"] == int(val.idxmin())
    kept = [c for c in ckpt["callbacks"] if c.startswith("ModelCheckpoint") and "val/loss" in c]
    assert kept and ckpt["callbacks"][kept[0]]["best_model_score"] == pytest.approx(val.min(), rel=1e-6)
    assert json.loads((out / "metrics.json").read_text())["monitor"] == "val/loss"  # grud-aggregate shows it


def test_a_checkpoint_saved_before_mixed_delta_existed_keeps_delta_in_hours(trained_run, tmp_path):
    from grud.cli.inference import load_model
    from grud.tasks.classification import ClassificationTask

    ckpt = torch.load(trained_run / "checkpoints/best.ckpt", weights_only=True, map_location="cpu")
    hp = ckpt["hyper_parameters"]
    model = {**hp["model"], "name": "gru_simple", "input": "mixed", "cell": "gru", "mixed_delta": "hours"}
    old = ClassificationTask(**{**hp, "model": model})  # a GRU-Simple as an older grud trained it
    model.pop("mixed_delta")  # ... whose checkpoint did not name the key
    ckpt["hyper_parameters"] = {**hp, "model": model}
    ckpt["state_dict"] = old.state_dict()
    torch.save(ckpt, tmp_path / "old.ckpt")
    assert load_model(tmp_path / "old.ckpt").module.network.input_layer.delta == "hours"


def _with_unit(src: Path, dst: Path, unit_of) -> Path:
    """The export plus a per-series static code ``Unit`` (one row per series at its first time)."""
    frame = pd.read_csv(src)
    first = frame.groupby("subject_id", as_index=False).first()
    units = first.assign(label="Unit", valuenum=[unit_of(i) for i in range(len(first))])
    pd.concat([frame, units]).sample(frac=1.0, random_state=1).to_csv(dst, index=False)
    return dst


def test_a_fresh_run_replaces_an_earlier_runs_results_and_api_runs_never_share_a_folder(clinical_export, tmp_path,
                                                                                        monkeypatch):
    import grud.api

    common = [*CSV_COLUMNS, f"data.path={clinical_export / 'events.csv'}", f"data.labels={clinical_export / 'labels.csv'}"]
    out = tmp_path / "run"
    grud.api.train([*common, "model=gru_mean", *TINY_TRAIN, "trainer.max_epochs=1"], run_dir=out)
    assert (out / "plots" / "history.png").exists() and (out / "metrics.csv").exists()
    assert "[grud][INFO] data: " in (out / "train.log").read_text()  # the API's runs log as the CLI's
    from grud.errors import ConfigError, DataError

    from grud.cli.aggregate import read_job

    (out / ".hydra").mkdir()
    (out / ".hydra" / "overrides.yaml").write_text("- model=gru_mean\n")  # for read_job, as a sweep job has
    kept = {n: (out / n).read_bytes() for n in ("metrics.json", "config.yaml", "checkpoints/best.ckpt")}
    with pytest.raises(ConfigError, match=r"resume=true: .*last.ckpt holds other weights than this run's config "
                                          r"builds: imputer.proj.bias \(only in the checkpoint\)"):
        grud.api.train([*common, "model=gru_mean", *TINY_TRAIN, "trainer.max_epochs=2", "resume=true",
                        "task.impute_weight=0"], run_dir=out)
    assert {n: (out / n).read_bytes() for n in kept} == kept  # a refused resume touches nothing ...
    assert read_job(out).status == "failed"  # ... but records its failure (newer than metrics.json)
    (out / "failure.json").unlink()
    for model, bad, said in (("logreg", "data.path=/no/such/events.csv", "file not found"),
                             ("logreg", "data.static_variables=[Agee]", "Agee"),
                             ("gru_mean", "optim.name=adamm", "optim.name"),  # checked by the task,
                             ("gru_mean", "ema_decay=1.5", "ema_decay"),  # and by the Trainer's build
                             ("gru_mean", "+trainer.precision=bf16-mixed", "full precision"),
                             ("logreg", "task.class_weight=[1,2,3]", "task.class_weight")):
        with pytest.raises((DataError, ConfigError)):  # a fresh rerun refused by its checks
            grud.api.train([*common, f"model={model}", *(TINY_TRAIN if model != "logreg" else []), bad], run_dir=out)
        # the earlier run stays whole: config.yaml still describes the checkpoints beside it
        assert {n: (out / n).read_bytes() for n in kept} == kept and (out / "plots" / "history.png").exists()
        job = read_job(out)
        assert job.status == "failed" and said in job.reason
    grud.api.train([*common, "model=gru_mean", *TINY_TRAIN, "trainer.max_epochs=2", "resume=true"], run_dir=out)
    assert (out / "plots" / "history.png").exists()  # resumed: the run's own results stay
    grud.api.train([*common, "model=logreg", "plots=false", "hydra/launcher=joblib"], run_dir=out)  # another model
    assert "grud.api.train runs one job: hydra/launcher=joblib not read" in (out / "train.log").read_text()
    assert not (out / "plots" / "history.png").exists() and not (out / "metrics.csv").exists()
    assert not (out / "hparams.yaml").exists()
    assert json.loads((out / "metrics.json").read_text())["status"] == "ok"
    # runs started within one second get their own folders (a loop over seeds)
    monkeypatch.chdir(tmp_path)
    dirs = [grud.api.train([*common, "model=logreg", "plots=false", f"seed={s}"]) for s in range(3)]
    assert len({d.resolve() for d in dirs}) == 3
    for s, d in enumerate(dirs):
        assert f"seed: {s}" in (d / "config.yaml").read_text() and "validation AUROC" in (d / "train.log").read_text()


def test_a_label_that_is_not_a_class_code_is_an_error_naming_the_file_and_series(clinical_export, tmp_path):
    """A 2.7 among 0/1 labels made a third class; a 1.5 was silently dropped."""
    import grud.api
    from grud.errors import DataError

    labels = pd.read_csv(clinical_export / "labels.csv", dtype={"hospital_expire_flag": float})
    labels.loc[3, "hospital_expire_flag"] = 2.7
    labels.to_csv(tmp_path / "labels.csv", index=False)
    sid = labels.loc[3, "subject_id"]
    with pytest.raises(DataError, match=rf"labels.csv: classification needs whole-number class codes in "
                                        rf"'hospital_expire_flag', got 2.7 for series '{sid}'"):
        grud.api.train([*CSV_COLUMNS, f"data.path={clinical_export / 'events.csv'}",
                        f"data.labels={tmp_path / 'labels.csv'}", "model=logreg"], run_dir=tmp_path / "run")


def test_an_empty_validation_split_is_named_before_training(clinical_export, tmp_path):
    import grud.api
    from grud.errors import DataError

    common = [*CSV_COLUMNS, f"data.path={clinical_export / 'events.csv'}", f"data.labels={clinical_export / 'labels.csv'}"]
    with pytest.raises(DataError, match="the validation split is empty: .*data.val_fraction > 0"):
        grud.api.train([*common, "model=logreg", "data.val_fraction=0"], run_dir=tmp_path / "run")
    # a forecast baseline chooses nothing on validation: it runs without one
    out = grud.api.train([*common, "model=locf", "task=forecast", "task.history_hours=15", "data.val_fraction=0",
                          "plots=false"], run_dir=tmp_path / "locf")
    assert json.loads((out / "metrics.json").read_text())["status"] == "ok"


def test_categorical_static_is_one_hot_with_training_codes_in_models_baselines_and_prediction(clinical_export,
                                                                                              tmp_path):
    import grud.api

    events = _with_unit(clinical_export / "events.csv", tmp_path / "events.csv", lambda i: float(i % 3 + 1))
    columns = [c for c in CSV_COLUMNS if not c.startswith("data.static_variables")]
    common = [*columns, f"data.path={events}", f"data.labels={clinical_export / 'labels.csv'}",
              "data.static_variables=[Age,Unit]", "data.categorical_static=[Unit]", "plots=false",
              *[o for o in TINY_TRAIN if not o.startswith("model.")]]
    out = grud.api.train([*common, "model=grud", "model.hidden_size=8", f"hydra.run.dir={tmp_path / 'run'}"])
    stats = torch.load(out / "checkpoints/best.ckpt", weights_only=True, map_location="cpu")["hyper_parameters"]["stats"]
    assert stats["static_categories"] == {"Unit": [1.0, 2.0, 3.0]}
    assert stats["static_names"] == ["Age", "Unit=1", "Unit=2", "Unit=3"]
    # the baseline gets the same columns
    base = grud.api.train([*common, "model=logreg", f"hydra.run.dir={tmp_path / 'logreg'}"])
    state = torch.load(base / "checkpoints/best.ckpt", weights_only=True, map_location="cpu")["grud"]["state"]
    assert {"Unit=1", "Unit=2", "Unit=3"} <= set(state["feature_names"])
    # prediction encodes new data with the training codes; a code never seen in training is reported
    new = _with_unit(clinical_export / "events.csv", tmp_path / "new.csv", lambda i: 7.0 if i == 0 else float(i % 3 + 1))
    pred_out = tmp_path / "pred.csv"
    proc = run(["grud-predict", f"checkpoint={out / 'checkpoints/best.ckpt'}", f"data.path={new}",
                f"output={pred_out}"], cwd=tmp_path)
    pred = pd.read_csv(pred_out)
    assert len(pred) == 60 and pred["probability"].between(0, 1).all()
    assert "the training split never had (7)" in proc.stderr


def test_a_static_code_held_as_text_is_one_hot_by_its_text_in_training_and_prediction(clinical_export, tmp_path):
    """An export's unit names (MICU, SICU, CCU) are static codes as text: one 0/1 column per name of
    the training split; grud-predict matches a new file's texts by name (its own sorted list
    differs); without categorical_static the text is an error naming its line, the variable and the key."""
    import grud.api
    from grud.errors import DataError

    names = ["MICU", "SICU", "CCU"]
    events = _with_unit(clinical_export / "events.csv", tmp_path / "events.csv", lambda i: names[i % 3])
    columns = [c for c in CSV_COLUMNS if not c.startswith("data.static_variables")]
    common = [*columns, f"data.path={events}", f"data.labels={clinical_export / 'labels.csv'}",
              "data.static_variables=[Age,Unit]", "plots=false", *[o for o in TINY_TRAIN if not o.startswith("model.")]]
    with pytest.raises(DataError, match=r"events.csv, line \d+, column 'valuenum': expected a number, got '(CCU|MICU|SICU)' "
                                        r"\(static variable 'Unit': a number, unless it is a code; codes held as text "
                                        r"such as 'F' / 'M' are read for the variables listed in categorical_static"):
        grud.api.train([*common, "model=logreg"], run_dir=tmp_path / "refused")
    out = grud.api.train([*common, "data.categorical_static=[Unit]", "model=grud", "model.hidden_size=8"],
                         run_dir=tmp_path / "run")
    stats = torch.load(out / "checkpoints/best.ckpt", weights_only=True, map_location="cpu")["hyper_parameters"]["stats"]
    assert stats["static_categories"] == {"Unit": ["CCU", "MICU", "SICU"]}
    assert stats["static_names"] == ["Age", "Unit=CCU", "Unit=MICU", "Unit=SICU"]
    # a new file without any CCU and with a name training never had: codes 0, 1 there are MICU and SICU
    new = _with_unit(clinical_export / "events.csv", tmp_path / "new.csv",
                     lambda i: "Neuro ICU" if i == 0 else ["MICU", "SICU"][i % 2])
    pred_out = tmp_path / "pred.csv"
    proc = run(["grud-predict", f"checkpoint={out / 'checkpoints/best.ckpt'}", f"data.path={new}",
                f"output={pred_out}"], cwd=tmp_path)
    assert "1 series have a value the training split never had (Neuro ICU)" in proc.stderr
    from grud.cli.inference import load_model, prepare_for_model
    from grud.data.readers import read_long_csv

    model = load_model(out / "checkpoints/best.ckpt")
    ds = read_long_csv(new, id_column="subject_id", time_column="charttime", variable_column="label",
                       value_column="valuenum", static_variables=["Age", "Unit"], categorical_static=["Unit"], cache=False)
    enc = prepare_for_model(ds, {}, model.stats)
    units = enc.static[:, 1:]
    assert np.isnan(units).sum() == 0 and units[0].sum() == 0 and (units[1:].sum(axis=1) == 1).all()
    np.testing.assert_array_equal(units[1:, 1], [float(i % 2 == 0) for i in range(1, len(ds))])  # MICU column
    pred = pd.read_csv(pred_out)
    assert len(pred) == 60 and pred["probability"].between(0, 1).all()
    # a checkpoint that read Unit as a number refuses text there
    numeric = _with_unit(clinical_export / "events.csv", tmp_path / "numeric.csv", lambda i: float(i % 3 + 1))
    num_out = grud.api.train([*common, f"data.path={numeric}", "model=logreg"], run_dir=tmp_path / "num")
    proc = run(["grud-predict", f"checkpoint={num_out / 'checkpoints/best.ckpt'}", f"data.path={new}",
                f"output={tmp_path / 'p2.csv'}"], cwd=tmp_path, check=False)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0 and last.startswith("error: ") and "new.csv, line" in last \
        and "(static variable 'Unit': a number, unless it is a code; codes held as text such as 'F' / 'M' are " \
            "read for the variables listed in categorical_static (data.categorical_static; at prediction the " \
            "checkpoint's))" in last


def test_a_checkpoint_saved_before_static_state_existed_starts_from_the_zero_state(trained_run, tmp_path,
                                                                                   clinical_export):
    from grud.cli.inference import load_model
    from grud.tasks.classification import ClassificationTask

    ckpt = torch.load(trained_run / "checkpoints/best.ckpt", weights_only=True, map_location="cpu")
    hp = ckpt["hyper_parameters"]
    model = {**hp["model"], "static_state": False}
    old = ClassificationTask(**{**hp, "model": model})  # a GRU-D as grud trained it before the key
    model.pop("static_state")
    ckpt["hyper_parameters"] = {**hp, "model": model}
    ckpt["state_dict"] = old.state_dict()
    torch.save(ckpt, tmp_path / "old.ckpt")
    assert load_model(tmp_path / "old.ckpt").module.network.initial_state is None
    out = tmp_path / "pred.csv"
    run(["grud-predict", f"checkpoint={tmp_path / 'old.ckpt'}", f"data.path={clinical_export / 'events.csv'}",
         f"output={out}"], cwd=tmp_path)
    assert pd.read_csv(out)["probability"].between(0, 1).all()


def _chunks_give_the_whole_frame(ckpts, data_path):
    """grud-predict predicts a thousand series at a time: the chunks' frames, one after another, are
    the whole file's frame (up to float32 rounding: other batches), for one checkpoint and for the
    mean of several."""
    import grud.cli.checkpoint_ensemble as ensemble
    from grud.cli.checkpoint_ensemble import load_members, predict_members

    def options(stats):
        from grud.cli.inference import prediction_data_options

        return prediction_data_options(stats.reader, {"path": data_path.split("=", 1)[1]}, {"path"}, False,
                                       trained_variables=stats.variables)

    for members in ([ckpts[0]], ckpts):
        whole, ds = predict_members(load_members(members), options, progress=False)
        _, frames = ensemble.predict_members_in_chunks(load_members(members), options, progress=False, chunk_series=7)
        frames = list(frames)
        assert len(frames) == -(-len(ds) // 7) > 1
        pd.testing.assert_frame_equal(pd.concat(frames, ignore_index=True), whole)


def test_a_fold_sweep_predicts_and_evaluates_as_one_averaged_model(clinical_export, tmp_path):
    sweep = tmp_path / "cv"
    data = [f"data.path={clinical_export / 'events.csv'}", f"data.labels={clinical_export / 'labels.csv'}"]
    run(["grud-train", "-m", *CSV_COLUMNS, *data, "data.folds=2", "data.fold=0,1", "model=grud",
         f"hydra.sweep.dir={sweep}", *TINY_TRAIN, "plots=false"], cwd=tmp_path)
    ckpts = sorted(sweep.glob("*/checkpoints/best.ckpt"))
    assert len(ckpts) == 2
    import grud.api
    from grud.tasks.metrics import binary_metrics

    singles = [grud.api.predict(c, [data[0]]) for c in ckpts]
    assert not np.allclose(singles[0]["probability"], singles[1]["probability"])  # two different models
    _chunks_give_the_whole_frame(ckpts, data[0])
    out = tmp_path / "pred.csv"
    run(["grud-predict", f"checkpoint='{sweep}/*/checkpoints/best.ckpt'", data[0], f"output={out}"], cwd=tmp_path)
    pred = pd.read_csv(out, dtype={"subject_id": str})
    assert list(pred.columns) == ["subject_id", "probability"]
    assert list(pred["subject_id"]) == list(singles[0]["subject_id"])
    mean = (singles[0]["probability"] + singles[1]["probability"]) / 2
    np.testing.assert_allclose(pred["probability"], mean, atol=2e-6)  # the CSV keeps 6 decimals
    ev = tmp_path / "eval.json"
    run(["grud-evaluate", f"checkpoint=[{ckpts[0]},{ckpts[1]}]", *data, f"output={ev}"], cwd=tmp_path)
    m = json.loads(ev.read_text())
    labels = pd.read_csv(clinical_export / "labels.csv", dtype={"subject_id": str}).set_index("subject_id")
    # on their training file the folds are scored on the test share both held out (one split seed)
    from grud.cli.inference import load_model

    held = [set(map(str, load_model(c).held_out["test_ids"])) for c in ckpts]
    assert held[0] == held[1] and len(held[0]) == 12
    test = singles[0]["subject_id"].isin(held[0]).to_numpy()
    y = labels.loc[singles[0]["subject_id"][test], "hospital_expire_flag"].to_numpy()
    assert m["members"] == 2 and m["test/n"] == 12
    assert m["test/auroc"] == pytest.approx(binary_metrics(y, mean.to_numpy()[test])["auroc"])
    # a pattern that matches nothing is one error line
    proc = run(["grud-predict", f"checkpoint='{tmp_path}/nothing/*.ckpt'", data[0]], cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith("error: checkpoint: no file matches the pattern")


def test_forecast_checkpoints_predict_and_evaluate_as_their_mean_forecast(clinical_export, rewritten_export,
                                                                          tmp_path):
    import grud.api
    from grud.cli.inference import load_model

    data = [f"data.path={clinical_export / 'events.csv'}", f"data.labels={clinical_export / 'labels.csv'}"]
    forecast = ["task=forecast", "task.history_hours=15", "task.horizon_hours=15", "task.decoder.hidden=8",
                "plots=false"]
    ckpts = [grud.api.train([*CSV_COLUMNS, *data, "model=grud", *TINY_TRAIN, *forecast, f"seed={s}"],
                            run_dir=tmp_path / f"s{s}") / "checkpoints/best.ckpt" for s in (0, 1)]
    singles = [grud.api.predict(c, [data[0]]) for c in ckpts]
    assert not np.allclose(singles[0]["prediction"], singles[1]["prediction"])  # two different models
    _chunks_give_the_whole_frame(ckpts, data[0])
    out = tmp_path / "pred.csv"
    run(["grud-predict", f"checkpoint='{tmp_path}/s*/checkpoints/best.ckpt'", data[0], f"output={out}"],
        cwd=tmp_path)
    pred = pd.read_csv(out, dtype={"subject_id": str})
    assert list(pred.columns) == ["subject_id", "time", "variable", "prediction", "value"]
    assert list(pred["subject_id"]) == list(singles[0]["subject_id"])
    mean = (singles[0]["prediction"] + singles[1]["prediction"]) / 2
    np.testing.assert_allclose(pred["prediction"], mean, rtol=1e-6, atol=2e-6)  # the CSV keeps 6 decimals
    # the ensemble is scored like one checkpoint: the first member's min-max scale, its LOCF
    ev, ev0 = tmp_path / "eval.json", tmp_path / "eval0.json"
    other = f"data.path={rewritten_export}"  # every series (on the training file: the held-out ones)
    run(["grud-evaluate", f"checkpoint=[{ckpts[0]},{ckpts[1]}]", other, data[1], f"output={ev}"], cwd=tmp_path)
    # labels mean nothing to a forecaster: named, they are not read (a file without the training's
    # label column failed on it)
    (tmp_path / "other_labels.csv").write_text("subject_id,outcome\n1,0\n")
    proc = run(["grud-evaluate", f"checkpoint={ckpts[0]}", other, f"data.labels={tmp_path / 'other_labels.csv'}",
                f"output={ev0}"], cwd=tmp_path)
    assert "other_labels.csv is not read: a forecaster scores the observed values, not labels" in proc.stderr
    m, m0 = json.loads(ev.read_text()), json.loads(ev0.read_text())
    stats = load_model(ckpts[0]).stats
    lo, hi = (pd.Series(np.asarray(v, np.float64), index=stats.variables) for v in (stats.value_min, stats.value_max))
    seen = singles[0]["value"].notna()
    v = singles[0]["variable"][seen]
    sq = ((mean[seen] - singles[0]["value"][seen]) / (hi[v] - lo[v]).to_numpy()) ** 2
    assert m["members"] == 2
    assert m["test/mse"] == pytest.approx(sq.groupby(v.to_numpy()).mean().mean(), rel=1e-4)
    assert m["test/locf_mse"] == pytest.approx(m0["test/locf_mse"], rel=1e-5)
    assert m["test/mse_vs_locf"] == pytest.approx(m["test/mse"] / m0["test/locf_mse"], rel=1e-4)
    assert 0.0 <= m["test/interval_coverage"] <= 1.0
    # one checkpoint's coverage is the share of truths inside grud-predict's conformal 90 % bounds
    conf0 = grud.api.predict(ckpts[0], [data[0]], interval="conformal", interval_level=0.9).dropna(subset=["value"])
    inside = conf0["value"].between(conf0["lower"], conf0["upper"])
    assert m0["test/interval_coverage"] == pytest.approx(inside.groupby(conf0["variable"]).mean().mean(), abs=1e-3)
    # with MC dropout the interval pools both members' draws; no draw column reaches the CSV
    mc = tmp_path / "mc.csv"
    run(["grud-predict", f"checkpoint=[{ckpts[0]},{ckpts[1]}]", data[0], "mc_samples=4", f"output={mc}"],
        cwd=tmp_path)
    pred = pd.read_csv(mc, dtype={"subject_id": str})
    assert list(pred.columns) == ["subject_id", "time", "variable", "prediction", "value", "lower", "upper"]
    assert len(pred) == len(singles[0]) and (pred["lower"] <= pred["upper"]).all()
    assert (pred["upper"] > pred["lower"]).any()
    # conformal intervals: each checkpoint carries its validation half-widths; the ensemble averages the bounds
    runs = [c.parents[1] for c in ckpts]
    cover = [json.loads((r / "metrics.json").read_text())["test/interval_coverage"] for r in runs]
    assert all(0.0 <= c <= 1.0 for c in cover)
    cf = tmp_path / "conformal.csv"
    run(["grud-predict", f"checkpoint=[{ckpts[0]},{ckpts[1]}]", data[0], "interval=conformal",
         "interval_level=0.8", f"output={cf}"], cwd=tmp_path)
    pred = pd.read_csv(cf, dtype={"subject_id": str})
    conformal = [grud.api.predict(c, [data[0]], interval="conformal", interval_level=0.8) for c in ckpts]
    for k in ("lower", "upper"):
        np.testing.assert_allclose(pred[k], (conformal[0][k] + conformal[1][k]) / 2, rtol=1e-5, atol=2e-6)
    assert (pred["lower"] < pred["prediction"]).all() and (pred["prediction"] < pred["upper"]).all()
    bad = run(["grud-predict", f"checkpoint={ckpts[0]}", data[0], "interval=conformal", "mc_samples=3",
               f"output={tmp_path / 'bad.csv'}"], cwd=tmp_path, check=False)
    assert bad.returncode != 0 and bad.stderr.strip().splitlines()[-1].startswith("error: interval=conformal")
    assert not (tmp_path / "bad.csv").exists()


@pytest.mark.parametrize("command", ["grud-train", "grud-predict", "grud-evaluate"])
def test_help_names_the_command_and_its_keys(command, tmp_path):
    proc = run([command, "--help"], cwd=tmp_path)
    if command == "grud-train":
        assert proc.stdout.startswith(f"{command} is powered by Hydra.")
        assert "model: bilstm, clockwork" in proc.stdout  # the config groups a user can switch
    else:  # only the data group applies to prediction and evaluation
        assert proc.stdout.startswith(f"{command}: ") and f"\n  {command} checkpoint=" in proc.stdout
        assert "data: csv_long, csv_wide, physionet2012" in proc.stdout and "model:" not in proc.stdout
    key = {"grud-train": "early_stopping:", "grud-predict": "interval_level: 0.9", "grud-evaluate": "impute_rate: 0.1"}
    assert key[command] in proc.stdout


def test_hydras_own_argument_errors_are_one_error_line(tmp_path):
    proc = run(["grud-train", "-m", "model=grud,logreg", "--cfg", "job"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ValueError: Only one of --run, --multirun")


def test_forecast_keys_that_cannot_apply_are_errors_and_a_baseline_is_scored(clinical_export, tmp_path):
    """A grid at training, prediction-only keys at evaluation, MC draws of a baseline and a window
    without truth are one error line each; a lone forecast baseline is scored (locf: 1.0x itself)."""
    import grud.api
    from grud.errors import ConfigError

    data = [f"data.path={clinical_export / 'events.csv'}", f"data.labels={clinical_export / 'labels.csv'}"]
    forecast = ["task=forecast", "task.history_hours=15", "task.horizon_hours=15", "plots=false"]
    for model in ("grud", "locf"):
        with pytest.raises(ConfigError, match="task.forecast_grid_hours=1: a future grid has no truth"):
            tiny = TINY_TRAIN if model == "grud" else []  # a baseline has no hidden size
            grud.api.train([*CSV_COLUMNS, *data, f"model={model}", *tiny, *forecast, "task.forecast_grid_hours=1"],
                           run_dir=tmp_path / f"grid_{model}")
        assert not (tmp_path / f"grid_{model}" / "metrics.json").exists()
    locf = grud.api.train([*CSV_COLUMNS, *data, "model=locf", *forecast], run_dir=tmp_path / "locf")
    ckpt = locf / "checkpoints" / "best.ckpt"
    out = tmp_path / "e.json"
    run(["grud-evaluate", f"checkpoint={ckpt}", data[0], f"output={out}"], cwd=tmp_path)
    m = json.loads(out.read_text())
    assert m["test/mse_vs_locf"] == pytest.approx(1.0) and "members" not in m
    # task.horizon_hours=inf at prediction: to the end of each series (null keeps training's 15 h)
    rows = {h: len(grud.api.predict(ckpt, [data[0]], task_overrides=[f"task.horizon_hours={h}"]))
            for h in ("5", "inf", "1000", "null")}
    assert rows["5"] < rows["inf"] == rows["1000"] and rows["null"] <= rows["inf"]
    cli = tmp_path / "inf.csv"
    run(["grud-predict", f"checkpoint={ckpt}", data[0], "task.horizon_hours=inf", f"output={cli}"], cwd=tmp_path)
    assert len(pd.read_csv(cli)) == rows["inf"]
    for args, line in [(["interval=conformal"], "error: grud-evaluate does not use interval / interval_level"),
                       (["task.history_hours=500"], "nothing to score"),
                       (["mc_samples=3"], "error: grud-evaluate does not use mc_samples"),
                       (["mc_samples=abc"], "error: mc_samples: expected a whole number")]:
        bad = run(["grud-evaluate", f"checkpoint={ckpt}", data[0], *args, f"output={tmp_path / 'bad.json'}"],
                  cwd=tmp_path, check=False)
        assert bad.returncode != 0 and line in bad.stderr.strip().splitlines()[-1], bad.stderr
        assert not (tmp_path / "bad.json").exists()
    for args, line in [(["mc_samples=3"], "the locf baseline has no dropout"), (["mc_samples=-1"], "mc_samples: expected 0"),
                       (["mc_samples=1"], "draws >= 2 (a spread needs two), got 1"),
                       (["mc_samples=abc"], "mc_samples: expected a whole number")]:
        bad = run(["grud-predict", f"checkpoint={ckpt}", data[0], *args, f"output={tmp_path / 'bad.csv'}"],
                  cwd=tmp_path, check=False)
        assert bad.returncode != 0 and line in bad.stderr.strip().splitlines()[-1], bad.stderr
