"""Checkpoints written by earlier versions of grud load and behave as they were trained."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from grud.cli.inference import _imputers_as_saved
from grud.models.heads import NextStepImputer
from grud.tasks.classification import ClassificationTask
from tests.unit.tiny_classification_inputs import tiny_batch, tiny_stats


def test_a_bidirectional_checkpoint_with_an_imputer_over_both_directions_loads_as_saved():
    spec = {"name": "bilstm", "hidden_size": 4}
    old = ClassificationTask(spec, tiny_stats(), impute_weight=1.0, ensemble=2)
    # before the fix, every imputer of a bidirectional network read both directions (2 H = 8)
    old.imputer = NextStepImputer(8, 2)
    old.extra_members[0].imputer = NextStepImputer(8, 2)
    state = old.state_dict()
    new = ClassificationTask(spec, tiny_stats(), impute_weight=1.0, ensemble=2)
    assert new.imputer.reads == 4
    _imputers_as_saved(new, state)
    new.load_state_dict(state)  # strict: every key and shape matches
    assert new.imputer.reads == 8 and new.extra_members[0].imputer.reads == 8
    new.eval(), old.eval()
    with torch.no_grad():
        outputs = old.encode(tiny_batch())[0]
        torch.testing.assert_close(new.imputer(outputs), old.imputer(outputs))
    # a current checkpoint is left as it is
    fresh = ClassificationTask(spec, tiny_stats(), impute_weight=1.0)
    _imputers_as_saved(fresh, ClassificationTask(spec, tiny_stats(), impute_weight=1.0).state_dict())
    assert fresh.imputer.reads == 4


def test_a_stacked_bidirectional_checkpoint_with_the_imputation_loss_still_loads(tmp_path):
    """Such networks were trained (their imputer over both directions) before the config check
    refused them; prediction from their checkpoints must keep working."""
    from grud.cli.inference import load_model
    from grud.errors import ConfigError

    spec = {"name": "bilstm", "hidden_size": 4, "num_layers": 2, "static_state": True,
            "mixed_delta": "log1p"}  # as every config since writes them
    old = ClassificationTask(spec, tiny_stats(), impute_weight=0.0)
    old.imputer = NextStepImputer(8, 2)  # what the earlier version built: both directions of the top layer
    hparams = {**dict(old.hparams), "impute_weight": 1.0}
    path = tmp_path / "old.ckpt"
    torch.save({"hyper_parameters": hparams, "state_dict": old.state_dict(),
                "grud": {"task": "classification", "version": "0.6.0"}}, path)
    loaded = load_model(path).module
    assert loaded.impute_weight == 1.0 and loaded.imputer.reads == 8
    old.eval()
    with torch.no_grad():
        batch = tiny_batch()
        torch.testing.assert_close(loaded(batch)[0], old(batch)[0])
        outputs = old.encode(batch)[0]
        torch.testing.assert_close(loaded.imputer(outputs), old.imputer(outputs))
    # training such a network is still refused outside the loader
    with pytest.raises(ConfigError, match="model.num_layers=1"):
        ClassificationTask(spec, tiny_stats(), impute_weight=1.0)


def test_a_data_group_chosen_at_prediction_does_not_bring_its_training_labels():
    """grud-predict data=physionet2012 data.path=set-b: set-a's Outcomes file must not be read with set-b."""
    from grud.cli.inference import prediction_data_options

    trained = {"kind": "physionet2012", "max_hours": 48, "value_ranges": "physionet2012"}
    group = {"kind": "physionet2012", "path": "set-b.tar.gz", "labels": "Outcomes-a.txt", "test_path": "set-b.tar.gz",
             "test_labels": "Outcomes-b.txt", "max_hours": 48, "value_ranges": "physionet2012"}
    opts = prediction_data_options(trained, group, {"path", "__group__"}, group_chosen=True)
    assert opts["path"] == "set-b.tar.gz" and opts["kind"] == "physionet2012"
    assert not {"labels", "test_path", "test_labels"} & set(opts)
    named = prediction_data_options(trained, {**group, "labels": "Outcomes-b.txt"}, {"path", "labels", "__group__"},
                                    group_chosen=True)
    assert named["labels"] == "Outcomes-b.txt"  # what the user names is read
    csv = {"kind": "csv_long", "path": "b.csv", "labels": None, "id_column": "id", "time_column": "time"}
    other = prediction_data_options(trained, csv, {"path", "__group__"}, group_chosen=True)
    assert other["kind"] == "csv_long" and other["id_column"] == "id" and "labels" not in other
    own = {**group, "path": "set-a.tar.gz", "labels": "Outcomes-a.txt"}  # grud-evaluate data=physionet2012
    kept = prediction_data_options(trained, own, {"__group__"}, group_chosen=True)
    assert kept["path"] == "set-a.tar.gz" and kept["labels"] == "Outcomes-a.txt"  # the group's own pair


def test_switching_the_file_type_at_prediction_keeps_trainings_options():
    """Trained on a long CSV in minutes with Age static; data=csv_wide must not reset those to its defaults."""
    from grud.cli.inference import prediction_data_options

    trained = {"kind": "csv_long", "id_column": "subject_id", "time_column": "t", "time_unit": "min",
               "static_variables": ["Age"], "variable_column": "variable", "value_column": "value"}
    wide = {"kind": "csv_wide", "path": "w.csv", "id_column": "id", "time_column": "time", "time_unit": "h",
            "static_variables": [], "variables": None, "labels": None}
    opts = prediction_data_options(trained, wide, {"path", "__group__"}, group_chosen=True)
    assert opts["kind"] == "csv_wide" and opts["time_unit"] == "min" and opts["static_variables"] == ["Age"]
    assert opts["id_column"] == "subject_id" and opts["allow_missing_variables"] is True
    named = prediction_data_options(trained, {**wide, "time_unit": "h"}, {"path", "time_unit", "__group__"}, True)
    assert named["time_unit"] == "h"  # what the user names wins
    physionet = prediction_data_options({"kind": "physionet2012", "max_hours": 48}, {**wide, "kind": "csv_long"},
                                        {"path", "__group__"}, group_chosen=True)
    assert physionet["static_variables"] == ["Age", "Gender", "Height", "ICUType"]  # not csv_long's []
    listed = prediction_data_options({**trained, "kind": "csv_wide"}, {**wide, "variables": ["HR"]},
                                     {"path", "variables"}, False)
    assert "allow_missing_variables" not in listed  # variables named at prediction: each must be there
    long = prediction_data_options(trained, {**wide, "kind": "csv_long"}, {"path"}, False)
    assert long["allow_missing_variables"] is True  # training's static list: a test file may lack one
    named_static = prediction_data_options(trained, {**wide, "kind": "csv_long", "static_variables": ["Age"]},
                                           {"path", "static_variables"}, False)
    assert "allow_missing_variables" not in named_static
    from grud.errors import ConfigError

    for other in (["Age", "Height"], []):  # a static the model never had, or one left out
        with pytest.raises(ConfigError, match=r"data.static_variables=.*trained with static variables \['Age'\]"):
            prediction_data_options(trained, {**wide, "kind": "csv_long", "static_variables": other},
                                    {"path", "static_variables"}, False)
    with pytest.raises(ConfigError, match=r"static variables \['Age', 'Gender', 'Height', 'ICUType'\]"):
        prediction_data_options({"kind": "physionet2012"}, {**wide, "kind": "csv_long", "static_variables": ["Age"]},
                                {"path", "static_variables", "__group__"}, True)


def test_an_output_that_is_a_folder_is_refused_before_any_work(tmp_path):
    from grud.cli.files import output_file
    from grud.errors import ConfigError

    with pytest.raises(ConfigError, match=r"output=.*: is a directory; expected a file name such as .*predictions.csv"):
        output_file(str(tmp_path), "predictions.csv")
    assert output_file(None, "predictions.csv") == Path("predictions.csv")
    assert output_file(str(tmp_path / "new" / "p.csv"), "predictions.csv").name == "p.csv"  # created at the write
    assert not (tmp_path / "new").exists()  # the check creates nothing
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        output_file(str(tmp_path / "f" / "p.csv"), "predictions.csv")
    (tmp_path / "link.csv").symlink_to(tmp_path / "f")
    with pytest.raises(ConfigError, match="is not a regular file"):
        output_file(str(tmp_path / "link.csv"), "predictions.csv")  # the rename would replace the link
    assert not list(tmp_path.glob(".*.tmp"))


def test_labels_coded_1_and_2_score_as_0_and_1():
    """grud-evaluate of a binary model whose labels are 1/2: probability is of 2, the metrics see 0/1."""
    import numpy as np
    import pandas as pd

    from grud.cli.inference import classification_metrics
    from grud.data.dataset import IrregularDataset
    from grud.tasks.metrics import binary_metrics

    labels = np.array([1.0, 2.0, 2.0, 1.0, np.nan, 2.0])
    n = len(labels)
    ds = IrregularDataset([str(i) for i in range(n)], ["HR"], [], np.zeros(0), np.zeros((0, 1), np.float32),
                          np.zeros(n + 1, np.int64), np.zeros((n, 0), np.float32), labels, {})
    prob = np.array([0.2, 0.9, 0.6, 0.7, 0.5, 0.8])
    m = classification_metrics(pd.DataFrame({"id": ds.ids, "probability": prob}), ds, [1, 2])
    want = binary_metrics(np.array([0, 1, 1, 0, 1]), prob[[0, 1, 2, 3, 5]])
    assert m["test/auroc"] == pytest.approx(want["auroc"]) and m["test/brier"] == pytest.approx(want["brier"])
    assert m["test/auroc"] == pytest.approx(5 / 6)


@pytest.mark.parametrize("config, argv, line", [
    ("train", ["model.hiden_size=8"], r"^model\.hiden_size: not a key of model=grud \(did you mean model\.hidden_size\?\)"),
    ("train", ["data.time_zero=zero"], r"^data\.time_zero: not a key of data=physionet2012 \(a key of data=csv_long "
                                       r"and data=csv_wide\)"),
    ("train", ["data=csv_long", "data.path=x.csv", "data.tme_unit=min"],
     r"^data\.tme_unit: not a key of data=csv_long \(did you mean data\.time_unit\?\)"),
    ("train", ["task.head.hiden=3"], r"^task\.head\.hiden: not a key of task\.head \(did you mean task\.head\.hidden"),
    ("predict", ["checkpoint=x.ckpt", "data.path=y.csv", "data.tme_unit=min"],
     r"^data\.tme_unit: not a key of data \(did you mean data\.time_unit\?\)"),
])
def test_a_misspelt_or_foreign_key_is_named_not_sent_to_plus(config, argv, line):
    """Hydra's "Could not override 'model.hiden_size'. To append to your config use +model.hiden_size=8"
    sends a user with a typo (or a key of another data type) to a '+' that fails later or is ignored."""
    from grud.cli.config import precheck
    from grud.errors import ConfigError

    with pytest.raises(ConfigError, match=line):
        precheck(config, argv)


@pytest.mark.parametrize("config, argv, line", [
    ("train", ["model.hiden_size=8", "optim.lrr=1"], r"^model\.hiden_size: not a key of model=grud"),  # two at once
    ("train", ["hydra/sweeper=optuna", "hydra.sweeper.n_trails=2"],
     r"^hydra\.sweeper\.n_trails: not a key of hydra\.sweeper \(did you mean hydra\.sweeper\.n_trials\?\)"),
    ("predict", ["checkpoint=x.ckpt", "data.path=y.csv", "model.hidden_size=3"],
     r"^model\.hidden_size: grud-predict does not read model\.\* \(the checkpoint holds the model"),
    ("evaluate", ["checkpoint=x.ckpt", "data.path=y.csv", "trainer.max_epochs=3"],
     r"^trainer\.max_epochs: grud-evaluate does not read trainer\.\*"),
    ("predict", ["checkpoint=x.ckpt", "data.path=y.csv", "+model.hidden_size=3"],  # was accepted and ignored
     r"^model: grud-predict does not read it"),
])
def test_keys_a_command_does_not_read_are_named(config, argv, line):
    from grud.cli.config import precheck
    from grud.errors import ConfigError

    with pytest.raises(ConfigError, match=line):
        precheck(config, argv)


def test_a_key_of_an_open_group_keeps_hydras_plus_hint():
    """Any Lightning Trainer argument may be added with +trainer.KEY=VALUE: that hint stays."""
    from hydra.errors import ConfigCompositionException

    from grud.cli.config import precheck

    with pytest.raises(ConfigCompositionException, match=r"use \+trainer\.limit_val_batchez=2"):
        precheck("train", ["trainer.limit_val_batchez=2"])
    with pytest.raises(ConfigCompositionException, match=r"use \+foo\.bar=1"):
        precheck("train", ["foo.bar=1"])  # no such node: Hydra's own message
    with pytest.raises(ConfigCompositionException, match=r"use \+data\.split_seed=3"):
        precheck("train", ["data.split_seed=3"])  # a key the reader takes, undeclared: '+' is right
    precheck("train", ["+data.split_seed=3"])


def test_a_multirun_grid_is_composed_before_its_first_job():
    """model=grud,logreg model.hidden_size=8: the logreg job's bad override is one error up front."""
    from grud.cli.config import _grid_jobs, precheck
    from grud.errors import ConfigError

    with pytest.raises(ConfigError, match=r"the sweep's job model=logreg: model\.hidden_size: not a key of "
                                          r"model=logreg; its keys: name, kind"):
        precheck("train", ["-m", "model=grud,logreg", "model.hidden_size=8"])
    precheck("train", ["-m", "model=grud,gru_mean", "seed=range(0,2)", "model.hidden_size=8"])  # every job composes
    precheck("train", ["-m", "optim.lr=interval(0.001,0.01)"])  # sampled by the sweeper: left to it
    # a data key one job's group lacks (only the first job's keys were checked)
    with pytest.raises(ConfigError, match=r"the sweep's job data=physionet2012: data\.time_unit: not a key of "
                                          r"data=physionet2012"):
        precheck("train", ["-m", "data=csv_long,physionet2012", "data.path=x.csv", "++data.time_unit=min"])
    with pytest.raises(ConfigError, match=r"^data\.val_fractoin: not a key of data=physionet2012"):
        precheck("train", ["+data.val_fractoin=0.3"])
    big = _grid_jobs([f"seed={','.join(map(str, range(100)))}", "model=grud,logreg"])
    assert len(big) == 100 and {j[1][1] for j in big} == {"model=grud", "model=logreg"}  # each value once


def test_an_experiments_own_sweep_and_an_optuna_metric_are_checked_up_front():
    from grud.cli.config import precheck
    from grud.errors import ConfigError

    # compare_models sweeps model= in hydra.sweeper.params (and sets MULTIRUN itself): logreg has no hidden size
    for argv in (["-m", "experiment=compare_models", "model.hidden_size=8"], ["experiment=compare_models", "model.hidden_size=8"]):
        with pytest.raises(ConfigError, match=r"the sweep's job .*model=logreg"):
            precheck("train", argv)
    precheck("train", ["-m", "experiment=compare_models", "model=grud,gru_mean", "model.hidden_size=8"])  # command line wins
    with pytest.raises(ConfigError, match=r"optimized_metric=val/auroc: task=forecast reports val/mse"):
        precheck("train", ["-m", "hparams_search=optuna", "task=forecast"])
    with pytest.raises(ConfigError, match=r"set hydra.sweeper.direction=minimize \(got maximize\)"):
        precheck("train", ["-m", "hparams_search=optuna", "task=forecast", "optimized_metric=val/mse"])
    precheck("train", ["-m", "hparams_search=optuna", "task=forecast", "optimized_metric=val/mse",
                       "hydra.sweeper.direction=minimize"])
    # the bare hydra/sweeper=optuna: no objective, so every trial would return nothing and
    # Optuna would end with "No trials are completed yet" after training them all
    with pytest.raises(ConfigError, match=r"an Optuna search needs optimized_metric.*use hparams_search=optuna "
                                          r"\(optimized_metric=val/auroc, maximize"):
        precheck("train", ["-m", "hydra/sweeper=optuna"])
    with pytest.raises(ConfigError, match=r"optimized_metric=val/mse hydra.sweeper.direction=minimize"):
        precheck("train", ["-m", "hydra/sweeper=optuna", "task=forecast"])


@pytest.mark.parametrize("override, message", [("optim.lr=abc", "optim.lr: expected a number > 0, got 'abc'"),
                                               ("trainer.max_epochs=abc", "trainer.max_epochs: expected an integer"),
                                               ("data.batch_size=0", "data.batch_size: expected an integer >= 1"),
                                               ("early_stopping.patience=null", "early_stopping.patience: expected an integer >= 0, got None"),
                                               ("data.grid=abc", "data.grid: expected a number > 0")])
def test_a_number_given_as_text_names_its_key(override, message):
    from grud.cli.pipeline import check_numbers
    from grud.errors import ConfigError

    key, value = override.split("=")
    section, name = key.split(".")
    cfg = {"seed": 0, "optim": {"lr": 0.001}, "trainer": {"max_epochs": 3}, "data": {"batch_size": 64},
           "early_stopping": {"patience": 8}}
    check_numbers(cfg)
    cfg[section][name] = value if value == "abc" else None if value == "null" else int(value)
    with pytest.raises(ConfigError, match=message):
        check_numbers(cfg)


def test_a_grids_size_counts_one_axis_per_key_with_the_command_line_first():
    """experiment=compare_models seed=0 runs 8 jobs, not 8 x 3: the command line's seed replaces the experiment's."""
    from grud.cli.config import grid_size, precheck

    params = {"model": "grud,gru_mean,gru_forward,gru_simple,lstm_mean,clockwork,bilstm,logreg", "seed": "0,1,2"}
    assert grid_size(["experiment=compare_models", "seed=0"], params) == 8
    assert grid_size(["experiment=compare_models", "seed=0,1"], params) == 16
    assert grid_size(["experiment=compare_models"], params) == 24
    precheck("train", ["experiment=compare_models", "seed=0,1"])  # MULTIRUN by the experiment: a sweep without -m


@pytest.mark.parametrize("task, seed, message", [
    ({"name": "imputation"}, 0, "task.name: expected null .* or impute, got 'imputation'"),
    ({"name": "impute", "impute_rate": 0}, 0, r"task.impute_rate: expected a share .* in \(0, 1\), got 0"),
    ({"name": "impute", "impute_rate": "abc"}, 0, "task.impute_rate: expected a share"),
    ({"name": "impute", "impute_rate": 0.1}, 1.5, "seed: expected a whole number"),
    ({"name": None, "impute_rate": 0.3}, 0, "task.impute_rate=0.3: used only with task.name=impute")])
def test_grud_evaluate_refuses_task_keys_it_would_ignore(task, seed, message):
    from grud.cli.evaluate import check_scoring_options
    from grud.errors import ConfigError

    check_scoring_options({"task": {"name": "impute", "impute_rate": 0.1}, "seed": 3})
    with pytest.raises(ConfigError, match=message):
        check_scoring_options({"task": task, "seed": seed})


def test_the_data_hash_of_a_folder_of_stays_covers_its_files():
    """A PhysioNet folder made every training run fail at its end (open() on a folder)."""
    from grud.cli.pipeline import data_hash

    def folder(tmp, texts):
        tmp.mkdir()
        for name, text in texts.items():
            (tmp / name).write_text(text)
        return tmp

    import tempfile

    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        a = folder(root / "a", {"1.txt": "Time,Parameter,Value\n", "2.txt": "x"})
        b = folder(root / "b", {"1.txt": "Time,Parameter,Value\n", "2.txt": "x"})
        c = folder(root / "c", {"1.txt": "Time,Parameter,Value\n", "2.txt": "y"})
        assert data_hash([a]) == data_hash([b]) != data_hash([c])
        assert len(data_hash([a, None])) == 16


def test_one_pass_gives_the_training_files_hash_and_all_inputs_hash(tmp_path):
    """A run reads its training file's hash (the held-out record) and all inputs' (metrics.json) in one pass;
    both must stay what data_hash gives, or checkpoints written before would no longer match their file."""
    from grud.cli.pipeline import data_hash, data_hashes

    a, b = tmp_path / "events.csv", tmp_path / "labels.csv"
    a.write_bytes(b"id,time\n1,0\n" * 1000)
    b.write_text("id,label\n1,0\n")
    assert data_hashes([a, b, None, None]) == (data_hash([a]), data_hash([a, b]))
    assert data_hashes([a]) == (data_hash([a]), data_hash([a]))
    assert data_hash([a]) != data_hash([a, b])


def test_value_ranges_null_switches_the_physionet_table_off():
    """The reader options dropped None, so the PhysioNet reader fell back to its own table."""
    from grud.data.loading import reader_options

    assert reader_options("physionet2012", {"value_ranges": None, "max_hours": 48}) == {"value_ranges": None,
                                                                                       "max_hours": 48}
    assert "value_ranges" not in reader_options("physionet2012", {"max_hours": 48})


def test_a_checkpoint_whose_weights_hold_nan_is_refused_not_predicted_as_nan(tmp_path):
    """A damaged checkpoint with NaN weights made grud-predict exit 0 with every probability NaN."""
    from grud.cli.inference import load_model
    from grud.errors import CheckpointError

    task = ClassificationTask({"name": "grud", "hidden_size": 4, "static_state": True}, tiny_stats())
    state = task.state_dict()
    path = tmp_path / "ok.ckpt"
    torch.save({"hyper_parameters": dict(task.hparams), "state_dict": state, "grud": {"task": "classification"}}, path)
    load_model(path)  # finite: loads
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state = {**state, name: state[name].clone().fill_(float("nan"))}
    bad = tmp_path / "nan.ckpt"
    torch.save({"hyper_parameters": dict(task.hparams), "state_dict": state, "grud": {"task": "classification"}}, bad)
    with pytest.raises(CheckpointError, match=rf"nan\.ckpt.*damaged: 1 weight tensor\(s\) hold NaN or inf \(e\.g\. {name}\)"):
        load_model(bad)


def test_a_checkpoint_with_unusable_statistics_is_refused(tmp_path):
    """A negative log-space scale or a variable named twice loaded silently (hand-edited or damaged files)."""
    from grud.cli.inference import load_model
    from grud.data.transforms import FittedStats
    from grud.errors import CheckpointError

    stats = tiny_stats()
    assert FittedStats.from_dict(stats).problems() == []
    task = ClassificationTask({"name": "grud", "hidden_size": 4, "static_state": True}, stats)
    hp = dict(task.hparams)
    for edit, message in ((lambda d: d["log_value_std"].__setitem__(0, -1.0) if d["log_value_std"] else
                           d["value_std"].__setitem__(0, -1.0), r"std holds a scale <= 0"),
                          (lambda d: d["value_mean"].append(0.0), r"value_mean has \d+ values for \d+ variables")):
        bad = {k: (list(v) if isinstance(v, list) else v) for k, v in stats.items()}
        edit(bad)
        assert FittedStats.from_dict(bad).problems()
        path = tmp_path / "bad.ckpt"
        torch.save({"hyper_parameters": {**hp, "stats": bad}, "state_dict": task.state_dict(),
                    "grud": {"task": "classification"}}, path)
        with pytest.raises(CheckpointError, match=rf"damaged: its statistics are unusable \(.*{message}"):
            load_model(path)
    twice = {**stats, "variables": [stats["variables"][0]] * len(stats["variables"])}
    assert any("twice" in p for p in FittedStats.from_dict(twice).problems())


def test_a_checkpoint_saved_before_the_reader_took_the_categorical_list_reads_codes_as_codes():
    """Such a checkpoint's reader options lack categorical_static: its variables' codes were
    averaged at prediction (1 and 3 at time 0 read as the code 2) and text codes refused."""
    from grud.cli.inference import prediction_data_options
    from grud.data.transforms import FittedStats

    saved = dict(tiny_stats())
    saved["reader"] = {"kind": "csv_long", "static_variables": ["Age", "Unit"]}
    saved["static_categories"] = {"Unit": [1.0, 3.0]}
    stats = FittedStats.from_dict(saved)
    assert stats.reader["categorical_static"] == ["Unit"]
    opts = prediction_data_options(stats.reader, {"path": "x.csv"}, {"path"}, False)
    assert opts["categorical_static"] == ["Unit"]
    # a current checkpoint's own list is kept; none without categories
    saved["reader"]["categorical_static"] = ["Unit"]
    assert FittedStats.from_dict(saved).reader["categorical_static"] == ["Unit"]
    assert "categorical_static" not in FittedStats.from_dict({**saved, "static_categories": {},
                                                              "reader": {"kind": "csv_long"}}).reader
