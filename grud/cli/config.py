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


def precheck(config_name: str, argv: list[str]) -> None:
    """Compose the config once before Hydra runs, so a bad override becomes one ``error:`` line.

    Only for single runs (multirun overrides like ``a=1,2`` are checked by the sweeper).
    """
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    if any(a in ("-m", "--multirun") for a in argv) or any(a.startswith("-") for a in argv):
        return
    overrides = [a for a in argv if not a.startswith("hydra.") and not a.startswith("hydra/")]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            compose(config_name=config_name, overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


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
