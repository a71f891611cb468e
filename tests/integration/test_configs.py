"""Every config in conf/ composes, and every group option is one a user can select."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

CONF = Path(__file__).resolve().parents[2] / "conf"
GROUPS = ["data", "model", "task", "trainer", "experiment", "hparams_search"]


def _options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.fixture(autouse=True)
def _clear():
    GlobalHydra.instance().clear()
    yield
    GlobalHydra.instance().clear()


def _compose(name, overrides, hydra_cfg=False):
    with initialize_config_module(config_module="grud.conf", version_base="1.3"):
        return compose(config_name=name, overrides=overrides, return_hydra_config=hydra_cfg)


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)])
def test_every_group_option_composes(group, option):
    overrides = [f"{group}={option}"]
    if group == "data" and option.startswith("csv"):
        overrides.append("data.path=events.csv")
    if group == "model" and option in ("locf", "mean_forecast"):
        overrides.append("task=forecast")
    cfg = _compose("train", overrides, hydra_cfg=group in ("experiment", "hparams_search"))
    assert cfg.data.kind in ("physionet2012", "csv_long", "csv_wide")
    assert cfg.model.name
    assert cfg.task.name in ("classification", "forecast")
    if group == "model":
        assert cfg.model.name == option


def test_defaults_are_grud_mortality_embedded_exact_timestamps():
    cfg = _compose("train", [])
    assert cfg.model.name == "grud"
    assert cfg.task.name == "classification"
    assert cfg.data.kind == "physionet2012" and cfg.data.grid is None
    assert cfg.data.path.endswith("set-a.tar.gz") and cfg.data.test_path.endswith("set-b.tar.gz")


@pytest.mark.parametrize("name", ["predict", "evaluate"])
def test_predict_and_evaluate_configs_compose(name):
    cfg = _compose(name, ["checkpoint=x.ckpt", "data.path=y.csv", "data=csv_wide"])
    assert cfg.data.path == "y.csv" and cfg.data.kind == "csv_wide"


@pytest.mark.parametrize("name", ["predict", "evaluate"])
def test_every_reader_key_a_user_may_set_at_prediction_is_declared(name):
    """``data.time_zero=...`` and ``data.label_map=...`` at grud-predict / grud-evaluate were Hydra's
    "Could not override" (use +data...): the README says any reader key overrides training's."""
    from grud.data.loading import KINDS, prediction_reader_keys

    cfg = _compose(name, ["checkpoint=x.ckpt", "data.path=y.csv"])
    missing = {k for kind in KINDS for k in prediction_reader_keys(kind)} - set(cfg.data)
    assert not missing


@pytest.mark.parametrize("override, node, cls", [
    ("hydra/launcher=joblib", "launcher", "JoblibLauncher"),
    ("hydra/launcher=submitit_local", "launcher", "LocalLauncher"),
    ("hydra/launcher=slurm", "launcher", "SlurmLauncher"),
    ("hparams_search=optuna", "sweeper", "OptunaSweeper"),
])
def test_launcher_and_sweeper_configs_compose(override, node, cls):
    """Each option selects its plugin: a launcher or sweeper that composed but still named Hydra's
    basic one would run a "cluster" sweep locally, one job after another, without a word."""
    from hydra.plugins.launcher import Launcher
    from hydra.plugins.sweeper import Sweeper
    from hydra.types import RunMode
    from hydra.utils import get_class

    cfg = _compose("train", [override], hydra_cfg=True)
    target = cfg.hydra[node]._target_
    assert target.rsplit(".", 1)[-1] == cls
    assert issubclass(get_class(target), Launcher if node == "launcher" else Sweeper)
    if override == "hydra/launcher=slurm":  # conf/hydra/launcher/slurm.yaml's resources reach the launcher
        assert cfg.hydra.launcher.timeout_min == 120 and cfg.hydra.launcher.mem_gb == 16
    if override == "hparams_search=optuna":
        assert cfg.hydra.sweeper.direction == "maximize" and cfg.hydra.mode == RunMode.MULTIRUN


def test_console_job_logging_writes_no_log_file():
    """hydra/job_logging=grud_console (the default of grud-predict / grud-evaluate) logs to stderr only."""
    cfg = _compose("train", ["hydra/job_logging=grud_console"], hydra_cfg=True)
    logging_cfg = cfg.hydra.job_logging
    assert list(logging_cfg.handlers) == ["console"]
    assert list(logging_cfg.root.handlers) == ["console"]
    assert logging_cfg.handlers.console.stream == "ext://sys.stderr"
    assert "file" in _compose("train", [], hydra_cfg=True).hydra.job_logging.handlers  # training's default does


@pytest.mark.parametrize("entry", ["grud-predict", "grud-evaluate", "grud-train"])
def test_a_misspelt_data_group_is_one_error_line_naming_the_options(entry, tmp_path):
    """grud-predict / grud-evaluate declare the data group optional, and Hydra skips an optional
    group that does not exist: the file would be read as training's type without a word."""
    import subprocess

    proc = subprocess.run([entry, "checkpoint=x.ckpt", "data=csv_wdie", "data.path=x.csv"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == ("error: data=csv_wdie: no such data config (did you mean "
                                                    "csv_wide?); expected one of csv_long, csv_wide, physionet2012")


def test_sweep_functions_and_search_paths_are_left_to_hydra():
    from grud.cli.config import check_group_choices
    from grud.errors import ConfigError

    check_group_choices(["data=choice(csv_long,csv_wide)", "data=glob(csv_*)", "data=csv_long,csv_wide"])
    check_group_choices(["data=my_export", "hydra.searchpath=[file:///somewhere]"])  # a config of the user's
    with pytest.raises(ConfigError, match="data=csv_lng: no such data config"):
        check_group_choices(["data=csv_long,csv_lng"])


@pytest.mark.parametrize("entry", ["grud-predict", "grud-evaluate"])
def test_a_checkpoint_left_out_is_named_not_read_as_the_pattern_of_three_question_marks(entry, tmp_path):
    """Hydra's "???" matched a three-letter folder as a glob (error: mc0: expected a checkpoint file ...)."""
    import subprocess

    (tmp_path / "mc0").mkdir()
    proc = subprocess.run([entry, "data.path=x.csv"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == "error: checkpoint: required, e.g. checkpoint=OUT/checkpoints/best.ckpt"


def test_a_data_path_left_out_is_named():
    from grud.cli.inference import read_raw
    from grud.errors import ConfigError

    for given in ("???", "", None):
        with pytest.raises(ConfigError, match=r"data.path: the file to predict on is required"):
            read_raw({"kind": "csv_long", "path": given})


def test_an_override_hydra_cannot_parse_is_named_with_the_quoting_that_fixes_it():
    from grud.cli.config import check_parsable
    from grud.errors import ConfigError

    check_parsable(["checkpoint='mc[12]/checkpoints/best.ckpt'", "data.static_variables=[Age,Gender]", "seed=0,1"])
    with pytest.raises(ConfigError, match=r"^checkpoint=mc\[12\]/x.ckpt: Hydra cannot parse this override "
                                          r"\(mismatched input .*\); .*e.g. \"checkpoint='mc\[12\]/x.ckpt'\"$"):
        check_parsable(["seed=0", "checkpoint=mc[12]/x.ckpt"])


def test_each_data_groups_keys_are_the_keys_a_run_reads_and_another_is_an_error():
    """`+data.val_fractoin=0.3` was accepted and did nothing (at training and at prediction)."""
    import yaml

    from grud.cli.inference import prediction_data_options
    from grud.cli.pipeline import DATA_KEYS, check_data_keys
    from grud.errors import ConfigError

    for kind, keys in DATA_KEYS.items():
        group = yaml.safe_load((CONF / "data" / f"{kind}.yaml").read_text())
        assert sorted([*group, "split_seed"]) == sorted(keys), kind  # the drift guard
    with pytest.raises(ConfigError, match=r"^data\.val_fractoin: not a key of data=csv_long \(did you mean "
                                          r"data\.val_fraction\?\); its keys: path, labels"):
        check_data_keys(["path", "val_fractoin"], "csv_long")
    with pytest.raises(ConfigError, match=r"^data\.variable_column: not a key of data=physionet2012 \(a key of "
                                          r"data=csv_long\)"):
        check_data_keys(["variable_column"], "physionet2012")
    check_data_keys(["split_seed", "variables"], "csv_wide")
    trained = {"kind": "csv_long", "id_column": "sid", "static_variables": ["Age"]}
    with pytest.raises(ConfigError, match=r"^data\.tme_unit: not a key of data=csv_long \(did you mean "
                                          r"data\.time_unit\?\)"):
        prediction_data_options(trained, {"path": "x.csv", "tme_unit": "min"}, {"path", "tme_unit"}, False)
    # a group chosen at prediction switches the kind its keys are checked against
    with pytest.raises(ConfigError, match=r"^data\.variable_column: not a key of data=csv_wide"):
        prediction_data_options(trained, {"kind": "csv_wide", "path": "x.csv", "variable_column": "v"},
                                {"path", "variable_column"}, True)
    opts = prediction_data_options(trained, {"path": "x.csv", "time_unit": "min"}, {"path", "time_unit"}, False)
    assert opts["time_unit"] == "min" and opts["id_column"] == "sid"
    # training-only keys do nothing at prediction: refused, with where the setting lives
    for key, value, said in (("batch_size", 32, r"data\.batch_size: a training key; at prediction the series per "
                                                r"batch are batch_size=N"),
                             ("val_fraction", 0.1, r"data\.val_fraction: a training key that prediction does not "
                                                   r"read \(prediction reads every series of data\.path\)"),
                             ("split_seed", 3, r"data\.split_seed: a training key"),
                             ("categorical_static", ["Age"], r"the codes come from the checkpoint"),
                             ("test_path", "t.csv", r"the test file of a training run")):
        with pytest.raises(ConfigError, match=said):
            prediction_data_options(trained, {"path": "x.csv", key: value}, {"path", key}, False)
    prediction_data_options({"kind": "physionet2012"}, {"kind": "physionet2012", "path": "set-b", "grid": 1.0,
                                                        "max_hours": 48}, {"path", "grid", "max_hours"}, False)


def test_the_notebook_api_names_a_misspelt_key_as_the_cli_does(tmp_path):
    """grud.api.train passed Hydra's "To append to your config use +data.val_fractoin" through."""
    import grud.api
    from grud.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^data\.val_fractoin: not a key of data=physionet2012 \(did you mean "
                                          r"data\.val_fraction\?\)"):
        grud.api.train(["data.val_fractoin=0.3"], run_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match=r"^model\.hiden_size: not a key of model=grud \(did you mean "
                                          r"model\.hidden_size\?\)"):
        grud.api.train(["model.hiden_size=3"], run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_each_task_groups_keys_are_the_keys_training_reads_and_another_is_an_error():
    """`+task.value_transform=log` on a forecaster was accepted and did nothing."""
    import yaml

    from grud.cli.pipeline import TASK_KEYS, check_task_keys
    from grud.cli.predict import task_overrides
    from grud.errors import ConfigError

    for name, keys in TASK_KEYS.items():
        group = yaml.safe_load((CONF / "task" / f"{name}.yaml").read_text())
        assert sorted(group) == sorted(keys), name  # the drift guard: a new key is read, or refused
    with pytest.raises(ConfigError, match=r"task\.value_transform: not a key of task=forecast; its keys: "
                                          r"history_hours, horizon_hours"):
        check_task_keys({"history_hours": 24, "value_transform": "log"}, TASK_KEYS["forecast"], "task=forecast")
    with pytest.raises(ConfigError, match=r"task\.forcast_grid_hours: not a key of prediction or evaluation "
                                          r"\(did you mean task\.forecast_grid_hours\?\)"):
        task_overrides({"task": {"history_hours": None, "forcast_grid_hours": 1}})
    assert task_overrides({"task": {"name": None, "impute_rate": 0.1, "history_hours": 12}}) == {"history_hours": 12.0}


def _leaves(node: dict, prefix: str = ""):
    for k, v in node.items():
        if isinstance(v, dict) and v:
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"


def test_every_config_key_a_user_can_set_is_in_the_readme():
    """The README documents every key (the issue's CLI contract): a key added to conf/ without a
    README row fails here. A key counts as documented when the README names it in full
    (`data.time_zero`, `seed=`) or, in a row that lists several, by its last part (`.layers`)."""
    from omegaconf import OmegaConf

    readme = (CONF.parent / "README.md").read_text(encoding="utf-8")
    keys = set()
    for group in ("data", "model", "task", "trainer"):
        for option in _options(group):
            overrides = [f"{group}={option}"]
            if group == "data" and option.startswith("csv"):
                overrides.append("data.path=events.csv")
            if group == "model" and option in ("locf", "mean_forecast"):
                overrides.append("task=forecast")
            keys |= set(_leaves(OmegaConf.to_container(_compose("train", overrides), resolve=False)))
    for name in ("predict", "evaluate"):
        keys |= set(_leaves(OmegaConf.to_container(_compose(name, ["checkpoint=x.ckpt", "data.path=y.csv"]),
                                                   resolve=False)))
    last = lambda k: k.rsplit(".", 1)[-1]  # noqa: E731
    undocumented = sorted(k for k in keys if f"`{k}" not in readme and f"{k}=" not in readme
                          and f"`.{last(k)}`" not in readme and f"`{last(k)}`" not in readme)
    assert len(keys) > 100 and not undocumented
