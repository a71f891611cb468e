"""grud-train: fit any model on any dataset for a task (Hydra; see README for every key).

    grud-train                                   # GRU-D, mortality, embedded PhysioNet 2012
    grud-train model=gru_mean trainer.max_epochs=3
    grud-train -m model=grud,gru_mean,logreg seed=0,1,2
"""
from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from grud.cli.config import CONFIG_PATH, is_multirun, plain, precheck, run_dir_from_hydra
from grud.cli.errors import describe, report
from grud.cli.files import atomic_write_json

log = logging.getLogger("grud")


def record_failure(run_dir, exc: BaseException) -> None:
    """Write ``failure.json`` (status, reason, type) into the job's run directory."""
    try:
        atomic_write_json(run_dir / "failure.json",
                          {"status": "failed", "error": describe(exc), "type": type(exc).__name__})
    except OSError as err:  # the run dir itself may be the problem; the error line still tells
        log.error("could not write failure.json: %s", err)


@hydra.main(config_path=CONFIG_PATH, config_name="train", version_base="1.3")
def _train(cfg: DictConfig):
    from grud.cli.files import atomic_write_bytes
    from grud.cli.pipeline import run_training
    from omegaconf import OmegaConf

    run_dir = run_dir_from_hydra()
    config = plain(cfg)
    try:
        atomic_write_bytes(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True).encode())
        metrics = run_training(config, run_dir)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # recorded per job so a sweep goes on; a single run exits with error:
        record_failure(run_dir, exc)
        if is_multirun():
            log.error("job failed: %s", describe(exc))
            return None
        raise SystemExit(report(exc))
    return metrics.get(config.get("optimized_metric", ""), None) if config.get("optimized_metric") else None


def main() -> None:
    try:
        precheck("train", sys.argv[1:])
    except Exception as exc:
        raise SystemExit(report(exc, code=2)) from None
    _train()


if __name__ == "__main__":
    main()
