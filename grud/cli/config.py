"""Where the Hydra configs live, and turning config nodes into plain containers."""
from __future__ import annotations

import math
import os
import re
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


def group_options(group: str) -> list[str]:
    """The config names of ``group`` (``data`` -> ``csv_long``, ``csv_wide``, ``physionet2012``)."""
    from importlib import resources

    folder = resources.files(CONFIG_MODULE).joinpath(group)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml")) if folder.is_dir() else []


def check_group_choices(overrides: list[str]) -> None:
    """A ``data=NAME`` override must name a data config: grud-predict and grud-evaluate declare
    the group optional (training's file type by default), and Hydra silently skips an optional
    group whose name does not exist, so ``data=csv_wdie`` would read the file as another type."""
    from grud.errors import ConfigError

    if any(o.startswith("hydra.searchpath") for o in overrides):
        return  # configs from other folders: Hydra itself knows them
    for o in overrides:
        key, eq, value = o.partition("=")
        if key.lstrip("+~") != "data" or not eq or any(c in value for c in "()[]*?'\""):
            continue  # choice(...), glob(...) and quoted values are Hydra's to parse
        allowed = group_options("data")
        for name in (v.strip() for v in value.split(",")):  # a sweep lists several
            if name not in allowed and name not in ("null", ""):
                from grud.data.text_tables import closest_name

                close = closest_name(name, allowed)
                hint = f" (did you mean {close}?)" if close else ""
                raise ConfigError(f"data={name}: no such data config{hint}; expected one of {', '.join(allowed)}")


#: groups whose unknown keys keep Hydra's "+key=value" hint: any Lightning Trainer argument may be added
_OPEN_GROUPS = ("trainer",)


def unknown_key_error(config_name: str, overrides: list[str], exc: Exception):
    """A ConfigError for Hydra's "Could not override 'model.hiden_size'. To append to your config
    use +model.hiden_size=8", whose hint is wrong for a misspelt key, a key of another data type,
    or (grud-predict, grud-evaluate) a training setting, which ``+`` would have them ignore: the
    key, the config it is not a key of, the closest key and (data) the data types that take it.
    None for other errors, and where Hydra's hint is right: a group that takes any key (grud-train's
    trainer: Lightning's arguments), a key a reader takes that the config does not declare
    (``+data.split_seed``), a top-level key grud-train has no node for.

    ``overrides``: the command line's, ``hydra.*`` ones included (they choose the sweeper's keys).
    """
    from hydra import compose

    from grud.data.text_tables import closest_name
    from grud.errors import ConfigError

    m = re.match(r"Could not override '([^']+)'", str(exc))
    if not m or "." not in m.group(1):
        return None
    key = m.group(1)
    parts = key.split(".")
    if config_name == "train" and parts[0] in _OPEN_GROUPS:
        return None
    rest, cfg = [o for o in overrides if _override_key(o) != key], None
    for _ in range(len(rest) + 1):  # other unknown keys of the same command line: left out too
        try:
            cfg = compose(config_name=config_name, overrides=rest, return_hydra_config=True)
            break
        except Exception as other:
            m = re.match(r"Could not override '([^']+)'", str(other))
            if not m:
                return None
            rest = [o for o in rest if _override_key(o) != m.group(1)]
    if cfg is None:
        return None
    if config_name != "train" and parts[0] not in cfg:
        return not_read_here(config_name, f"{key}: grud-{config_name} does not read {parts[0]}.*", cfg)
    node = cfg
    for p in parts[:-1]:
        node = node.get(p) if hasattr(node, "get") else None
    if not hasattr(node, "keys"):
        return None
    keys = [str(k) for k in node.keys()]
    choice = (cfg.hydra.runtime.choices or {}).get(parts[0]) if len(parts) == 2 else None
    if parts[0] == "data" and len(parts) == 2 and config_name == "train":
        from grud.cli.pipeline import check_data_keys

        try:
            check_data_keys([parts[1]], cfg.data.get("kind") or choice)
        except ConfigError as better:
            return better
        return None  # a key the reader takes that the config does not declare: +data.split_seed is right
    where = f"{parts[0]}={choice}" if choice else ".".join(parts[:-1])
    close = closest_name(parts[-1], keys)
    hint = f" (did you mean {'.'.join(parts[:-1])}.{close}?)" if close else ""
    return ConfigError(f"{key}: not a key of {where}{hint}; its keys: {', '.join(keys)}")


def not_read_here(config_name: str, what: str, cfg):
    """The ConfigError for a key grud-predict / grud-evaluate does not read (``what`` names it),
    listing the keys ``cfg`` (that command's config) has."""
    from grud.errors import ConfigError

    return ConfigError(f"{what} (the checkpoint holds the model and how it was trained); its keys: "
                       f"{', '.join(str(k) for k in cfg if k != 'hydra')}")


def _override_key(override: str) -> str:
    return override.split("=")[0].lstrip("+~")


def check_parsable(overrides: list[str]) -> None:
    """Each override must parse in Hydra's grammar; one that does not is named, with the quoting
    that fixes the usual case (a glob with [ ], or a value with spaces, commas or parentheses)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    from grud.errors import ConfigError

    parser = OverridesParser.create()
    for o in overrides:
        try:
            parser.parse_overrides([o])
        except OverrideParseException as exc:
            key, _, value = o.partition("=")
            reason = re.split(r"\s+See https?://", str(exc))[0].strip()
            raise ConfigError(f"{o}: Hydra cannot parse this override ({reason}); a value with "
                              f"[ ], spaces, commas or parentheses must be quoted for Hydra inside the shell's "
                              f"quotes, e.g. \"{key}='{value}'\"") from None


def precheck(config_name: str, argv: list[str]) -> None:
    """Compose the config before Hydra runs, so a bad override becomes one ``error:`` line.

    A multirun (``-m``, or an ``experiment=`` that sets ``hydra.mode: MULTIRUN``) composes every
    job of its grid, the command line's sweeps and those of ``hydra.sweeper.params`` (choice and
    range sweeps; of a grid above :data:`PRECHECK_MAX_JOBS` jobs, enough that every value is
    composed once), so ``model=grud,logreg model.hidden_size=8`` fails before the first job
    rather than in the middle of the sweep. An Optuna search is checked for an
    ``optimized_metric`` its task reports, in the right direction; its sampled trials are left to it.
    """
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from grud.errors import ConfigError

    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in argv):
        return
    overrides = [a for a in argv if not a.startswith("-") and not a.startswith("hydra.")
                 and not a.startswith("hydra/")]
    hydra_overrides = [a for a in argv if a.startswith("hydra.") or a.startswith("hydra/")]
    check_parsable(overrides + hydra_overrides)
    check_group_choices(overrides + hydra_overrides)
    flagged = any(a in ("-m", "--multirun") for a in argv)
    command_line = _grid_jobs(overrides)
    sampled = command_line is None  # interval(...) sweeps: composed without them, left to the sweeper
    if sampled:
        command_line = [([o for o in overrides if not _is_sweep(o)], [])]

    def composed(job, swept, with_hydra=False):
        try:
            return compose(config_name=config_name, overrides=job + (hydra_overrides if with_hydra else []),
                           return_hydra_config=with_hydra)
        except Exception as exc:
            exc = unknown_key_error(config_name, job + hydra_overrides, exc) or exc
            if not swept:
                raise exc from None
            what = str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
            raise ConfigError(f"the sweep's job {' '.join(swept)}: {what}") from exc

    def job_keys_of(cfg, swept) -> None:  # a data key no reader takes, a monitor the task lacks: before any job
        if config_name != "train":  # +model.hidden_size=3 at grud-predict was accepted and did nothing
            declared = compose(config_name=config_name, overrides=[])
            names = set(declared)  # not "in declared": a DictConfig says no for a key whose value is ???
            extra = [str(k) for k in cfg if k not in names and k != "hydra"]
            if extra:
                raise not_read_here(config_name, f"{extra[0]}: grud-{config_name} does not read it", declared)
            return
        from grud.cli.pipeline import check_data_keys, monitor_of

        data = cfg.get("data") or {}
        try:
            check_data_keys(list(data), data.get("kind", "physionet2012"))
            monitor_of(cfg, (cfg.get("task") or {}).get("name", "classification"))
        except ConfigError as exc:
            if not swept:
                raise
            raise ConfigError(f"the sweep's job {' '.join(swept)}: {exc}") from None

    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            base = composed(*command_line[0], with_hydra=True)
            job_keys_of(base, command_line[0][1])
            sweeper = base.hydra.get("sweeper") or {}
            target = str(sweeper.get("_target_", ""))
            multirun = flagged or "MULTIRUN" in str(base.hydra.get("mode"))
            if not multirun and (len(command_line) > 1 or sampled):
                compose(config_name=config_name, overrides=overrides)  # Hydra's "add --multirun" error
            if multirun and "optuna" in target.lower():  # every model / task the trials may pick
                for job, swept in command_line:
                    check_optimized_metric(base if job is command_line[0][0] else composed(job, swept),
                                           sweeper.get("direction"))
            if sampled:
                return
            jobs = command_line
            params = sweeper.get("params") if multirun and "BasicSweeper" in target else None
            if params:  # an experiment's own sweep; a key also on the command line takes that value
                jobs = _grid_jobs(overrides, params)
                if jobs is None:
                    return
            for job, swept in jobs[1:] if jobs is command_line else jobs:
                job_keys_of(composed(job, swept), swept)
    finally:
        GlobalHydra.instance().clear()


#: the validation metrics each task reports (what ``optimized_metric`` and ``early_stopping.monitor``
#: may name) and their direction; the first is the task's own, what its runs rank epochs by by default
TASK_METRICS = {"classification": {"val/auroc": "maximize", "val/auprc": "maximize", "val/accuracy": "maximize",
                                   "val/brier": "minimize", "val/loss": "minimize"},
                "forecast": {"val/mse": "minimize", "val/mae": "minimize", "val/loss": "minimize"}}


def own_metric(task: str | None) -> str | None:
    """The validation metric ``task`` ranks epochs by unless ``early_stopping.monitor`` says otherwise."""
    return next(iter(TASK_METRICS.get(task or "", {})), None)


def check_optimized_metric(cfg, direction) -> None:
    """ConfigError unless an Optuna search's ``optimized_metric`` is a validation metric of its task,
    optimised in its direction (a trial returning nothing ends the search with no result)."""
    from grud.errors import ConfigError

    metric = cfg.get("optimized_metric")
    task = (cfg.get("task") or {}).get("name", "classification")
    known = dict(TASK_METRICS.get(task, {}))
    if ((cfg.get("model") or {}).get("kind")) == "baseline":
        known.pop("val/loss", None)  # the scikit-learn and forecasting baselines report no loss
    if not known:
        return
    if not metric:  # every trial would return nothing: Optuna ends with "No trials are completed yet"
        first, way = next(iter(known.items()))
        raise ConfigError(f"an Optuna search needs optimized_metric, the validation metric each trial returns: use "
                          f"hparams_search=optuna (optimized_metric={first}, {way}, over optim.lr and "
                          f"model.hidden_size; conf/hparams_search/optuna.yaml), or set optimized_metric={first} "
                          f"hydra.sweeper.direction={way} and hydra.sweeper.params yourself")
    if metric not in known:
        raise ConfigError(f"optimized_metric={metric}: task={task} reports {', '.join(known)} on validation; "
                          f"e.g. optimized_metric={next(iter(known))} hydra.sweeper.direction={next(iter(known.values()))}")
    want = known[metric]
    if direction is not None and str(direction).lower() not in (want, f"studydirection.{want}"):
        raise ConfigError(f"optimized_metric={metric} is better when {'higher' if want == 'maximize' else 'lower'}: "
                          f"set hydra.sweeper.direction={want} (got {direction})")


def _is_sweep(override: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_overrides([override])[0].is_sweep_override()
    except HydraException:
        return False


def _sweep_axes(overrides: list[str], params: dict | None = None):
    """The basic sweeper's grid as axes: one per key, a list of ``(override, swept)`` each; the
    command line's entry wins over ``hydra.sweeper.params`` for a key. None for sampled sweeps
    (``interval(...)``). Raises HydraException for an override that does not parse."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    parsed = parser.parse_overrides(list(overrides))
    given = {o.get_key_element().lstrip("+~") for o in parsed}
    parsed += parser.parse_overrides([f"{k}={v}" for k, v in (params or {}).items() if k not in given])
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
    return axes


def _grid_jobs(overrides: list[str], params: dict | None = None):
    """[(the job's overrides, its swept ones)] of a grid; None when it cannot be listed."""
    import itertools

    from hydra.errors import HydraException

    try:
        axes = _sweep_axes(overrides, params)
    except HydraException:
        return [(overrides, [])]  # a syntax error: composing reports it
    if axes is None:
        return None
    if math.prod(len(axis) for axis in axes) <= PRECHECK_MAX_JOBS:
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


def grid_size(overrides: list[str], params: dict | None = None) -> int | None:
    """How many jobs the basic sweeper makes of ``overrides`` (and ``hydra.sweeper.params``);
    None when it cannot be counted (``interval(...)`` and other sampled sweeps)."""
    from hydra.errors import HydraException

    try:
        axes = _sweep_axes(overrides, params)
    except HydraException:
        return None
    return None if axes is None else math.prod(len(axis) for axis in axes)
