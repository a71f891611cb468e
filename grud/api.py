"""A small Python API for notebooks, on top of the command-line configs.

    import grud.api
    run_dir = grud.api.train(["data=csv_long", "data.path=events.csv", "data.labels=labels.csv",
                              "model=gru_mean", "trainer.max_epochs=3"])
    frame = grud.api.predict(run_dir / "checkpoints/best.ckpt", ["data.path=new_events.csv"], "pred.csv")

Overrides are a list of strings as on the command line (one string is split like a shell line);
a bad one raises :class:`grud.ConfigError`.

This module belongs to the CLI layer: it composes Hydra configs, importing Hydra inside its
functions only, so ``import grud`` and ``grud.data`` stay free of Hydra.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd


#: the ``task_overrides`` grud.api.predict takes (as conf/predict.yaml's task group)
PREDICT_TASK_KEYS = ("history_hours", "horizon_hours", "forecast_grid_hours")


def _override_list(overrides, what: str) -> list[str]:
    """``overrides`` as a list of strings: None -> [], one string -> its shell words."""
    import shlex

    from grud.errors import ConfigError

    if overrides is None:
        return []
    if isinstance(overrides, str):
        return shlex.split(overrides)
    if isinstance(overrides, (list, tuple)) and all(isinstance(o, str) for o in overrides):
        return list(overrides)
    raise ConfigError(f"{what}: expected a list of KEY=VALUE strings, got {overrides!r}")


def _compose(config_name: str, overrides: list[str]):
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from grud.cli.config import CONFIG_MODULE, check_group_choices, unknown_key_error
    from grud.errors import ConfigError

    check_group_choices(overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            try:
                return compose(config_name=config_name, overrides=list(overrides), return_hydra_config=False)
            except (HydraException, OmegaConfBaseException) as exc:  # a misspelt key: named as the CLI names it
                named = unknown_key_error(config_name, list(overrides), exc)
                if named is None:
                    raise
                raise named from None
    except (HydraException, OmegaConfBaseException) as exc:  # a bad override: the CLI's one error line
        raise ConfigError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        GlobalHydra.instance().clear()


def train(overrides: list[str] | None = None, run_dir=None) -> Path:
    """Train like ``grud-train OVERRIDES`` and return the run directory.

    ``run_dir`` (or an override ``hydra.run.dir=...``) sets where the run is written; by default
    ``outputs/<date>/<time>`` like the CLI.
    """
    from omegaconf import OmegaConf

    from grud.cli.pipeline import resume_checkpoint, run_training
    from grud.cli.train import record_failure
    from grud.cli.config import plain

    overrides = _override_list(overrides, "overrides")
    for o in list(overrides):
        if o.startswith("hydra.run.dir="):
            run_dir = o.split("=", 1)[1]
            overrides.remove(o)
    ignored = [o for o in overrides if o.startswith("hydra")]
    cfg = _compose("train", [o for o in overrides if not o.startswith("hydra")])
    run_dir = Path(run_dir) if run_dir else _new_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    with _run_log(run_dir / "train.log"):
        if ignored:
            import logging

            logging.getLogger("grud").warning("grud.api.train runs one job: %s not read (Hydra's sweep, launcher "
                                              "and sweeper settings are grud-train -m's)", " ".join(ignored))
        try:
            resume_from = resume_checkpoint(plain(cfg), run_dir)
            run_training(plain(cfg), run_dir, resume_from=resume_from,
                         config_text=OmegaConf.to_yaml(cfg, resolve=True).encode())
        except Exception as exc:  # the run directory records it as the CLI's does (grud-aggregate lists it)
            record_failure(run_dir, exc)
            raise
    return run_dir


def _new_run_dir() -> Path:
    """``outputs/<date>/<time>`` as the CLI names it; ``<time>-1``, ``-2``, ... when runs start within
    one second (a loop over seeds), so that no run lands in another's folder."""
    base = Path("outputs") / time.strftime("%Y-%m-%d") / time.strftime("%H-%M-%S")
    path, k = base, 0
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            k += 1
            path = base.with_name(f"{base.name}-{k}")


@contextmanager
def _run_log(path: Path):
    """grud's log lines of the run also go to ``path`` (``train.log``, as the CLI writes it)."""
    import logging

    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] %(message)s"))
    handler.setLevel(logging.INFO)
    logger = logging.getLogger("grud")
    before = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)
        handler.close()


def predict(checkpoint, data_overrides: list[str] | None = None, output=None, mc_samples: int = 0,
            task_overrides: list[str] | None = None, interval: str = "mc", interval_level: float = 0.9) -> pd.DataFrame:
    """Predict like ``grud-predict``; returns the predictions (and writes ``output`` if given).

    ``checkpoint`` is one file, or a list of files or a glob pattern whose members'
    probabilities (classification) or forecasts are averaged (``grud.cli.checkpoint_ensemble``). ``data_overrides``
    are ``data.*`` overrides as on the command line (``data.path=X``); data options not given
    default to those of training. ``interval`` / ``interval_level``: as ``grud-predict``'s keys
    (``interval="conformal"`` for calibrated forecast intervals). The id column comes back as
    integers when every id is a whole number written without leading zeros (as ``pd.read_csv``
    reads the output file), else as text exactly as written.
    """
    from grud.cli.checkpoint_ensemble import load_members, predict_members
    from grud.cli.files import atomic_write_csv
    from grud.cli.inference import prediction_data_options, window_value

    from grud.errors import ConfigError

    members = load_members(checkpoint)
    given, explicit, group = {}, set(), False
    for o in _override_list(data_overrides, "data_overrides"):
        key, _, value = o.partition("=")
        key = key.lstrip("+")
        if key == "data":
            group = True
            group_cfg = _compose("predict", ["checkpoint=x", f"data={value}", "data.path=x"])
            given.update({k: v for k, v in group_cfg.data.items() if k != "path" and v is not None})
            continue
        if not key.startswith("data.") or not _:
            raise ConfigError(f"data_overrides: expected data.KEY=VALUE or data=KIND, got {o!r}")
        from omegaconf import OmegaConf

        parsed = OmegaConf.create({"v": _yaml_value(value)})["v"]
        given[key[5:]] = OmegaConf.to_container(parsed) if hasattr(parsed, "keys") or isinstance(parsed, list) \
            else parsed
        explicit.add(key[5:])
    tasks = {}
    for o in _override_list(task_overrides, "task_overrides"):
        key, _, value = o.partition("=")
        key = key.lstrip("+").removeprefix("task.")
        if key not in PREDICT_TASK_KEYS or not _:
            raise ConfigError(f"task_overrides: expected task.KEY=HOURS with KEY one of {list(PREDICT_TASK_KEYS)}, "
                              f"got {o!r}")
        try:
            if value not in ("null", ""):  # null: as in training; horizon_hours=inf: to the end of each series
                tasks[key] = window_value(key, float(value))
        except ValueError:
            raise ConfigError(f"task.{key}: expected a number of hours or null, got {value!r}") from None
    def options(stats):
        return prediction_data_options(stats.reader, given, explicit, group, trained_variables=stats.variables)

    frame, _ = predict_members(members, options,
                               mc_samples=mc_samples, task_overrides=tasks, progress=False,
                               interval=interval, interval_level=interval_level)
    if output is not None:
        atomic_write_csv(Path(output), frame, float_format="%.6f")
    return _ids_as_read_back(frame)


def _ids_as_read_back(frame: pd.DataFrame) -> pd.DataFrame:
    """The id column (the first): int64 when every id is a whole number without leading zeros
    (``141000``; as ``pd.read_csv`` reads the written file back, so the frame merges with the
    user's own tables as the CSV does), else text exactly as written (``p001``; ``007`` too, which
    read_csv would turn into 7)."""
    if not len(frame.columns) or not len(frame):
        return frame
    col = frame.columns[0]
    ids = frame[col].astype(str)
    if ids.str.fullmatch(r"-?(0|[1-9][0-9]{0,17})").all():
        return frame.assign(**{col: ids.astype(np.int64)})
    return frame


def _yaml_value(text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text
