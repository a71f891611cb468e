"""Where the Hydra configs live, and turning config nodes into plain containers."""
from __future__ import annotations

import os
from pathlib import Path

CONFIG_MODULE = "grud.conf"
CONFIG_PATH = "pkg://grud.conf"


def plain(node):
    """A Hydra/OmegaConf node as plain dicts and lists (checkpoint-safe); other values unchanged."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return node


#: a multirun precheck composes every job of a grid this small; of a larger one, enough jobs that
#: each swept value appears once (about 60 ms a job)
PRECHECK_MAX_JOBS = 64


def precheck(config_name: str, argv: list[str]) -> None:
    """Compose the config before Hydra runs, so a bad override becomes one ``error:`` line.

    A multirun (``-m``) composes every job of its command-line grid (choice and range sweeps; of
    a grid above :data:`PRECHECK_MAX_JOBS` jobs, enough that every value is composed once), so ``model=grud,logreg model.hidden_size=8`` fails before
    the first job rather than in the middle of the sweep; sweeps the sweeper samples
    (``interval(...)``, Optuna) are left to it.
    """
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    multirun = any(a in ("-m", "--multirun") for a in argv)
    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in argv):
        return
    overrides = [a for a in argv if not a.startswith("-") and not a.startswith("hydra.")
                 and not a.startswith("hydra/")]
    jobs = _grid_jobs(overrides) if multirun else [(overrides, [])]
    if jobs is None:
        return
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            for job, swept in jobs:
                try:
                    compose(config_name=config_name, overrides=job)
                except Exception as exc:
                    if not swept:
                        raise
                    from grud.errors import ConfigError

                    raise ConfigError(f"the sweep's job {' '.join(swept)}: {type(exc).__name__}: {exc}") from exc
    finally:
        GlobalHydra.instance().clear()


def _grid_jobs(overrides: list[str]):
    """[(the job's overrides, its swept ones)] of a command-line grid; None when it cannot be listed."""
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException:
        return [(overrides, [])]  # a syntax error: composing reports it
    axes = []
    for o in parsed:
        if not o.is_sweep_override():
            axes.append([(o.input_line, False)])
            continue
        try:
            values = list(o.sweep_string_iterator())
        except HydraException:
            return None  # interval(...) and other sampled sweeps
        axes.append([(f"{o.get_key_element()}={v}", True) for v in values])
    size = 1
    for axis in axes:
        size *= len(axis)
    if size <= PRECHECK_MAX_JOBS:
        combos = list(itertools.product(*axes))
    else:  # job i takes value i of every axis (cycling): each value once
        combos = [tuple(axis[i % len(axis)] for axis in axes) for i in range(max(len(a) for a in axes))]
    return [([o for o, _ in combo], [o for o, swept in combo if swept]) for combo in combos]


def run_dir_from_hydra() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


def explicit_overrides(prefix: str) -> dict:
    """``{key: value}`` of the command-line overrides under ``prefix.`` (e.g. data.path=X -> {path: X})."""
    from hydra.core.hydra_config import HydraConfig

    out = {}
    for o in HydraConfig.get().overrides.task:
        key = o.split("=", 1)[0].lstrip("+~")
        if key.startswith(prefix + "."):
            out[key[len(prefix) + 1:].split(".")[0]] = True
        elif key == prefix:
            out["__group__"] = True
    return out


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false", "no")
