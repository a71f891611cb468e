"""grud-train: fit any model on any dataset for a task (Hydra; see README for every key).

    grud-train                                   # GRU-D, mortality, embedded PhysioNet 2012
    grud-train model=gru_mean trainer.max_epochs=3
    grud-train -m model=grud,gru_mean,logreg seed=0,1,2
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from grud.cli.allocator import keep_freed_memory
from grud.cli.config import CONFIG_PATH, is_multirun, plain, precheck, run_dir_from_hydra
from grud.cli.errors import FILE_ONLY, describe, report
from grud.cli.files import atomic_write_json

log = logging.getLogger("grud")


def record_failure(run_dir, exc: BaseException) -> None:
    """Write ``failure.json`` (status, reason, type) into the job's run directory."""
    try:
        atomic_write_json(run_dir / "failure.json",
                          {"status": "failed", "error": describe(exc), "type": type(exc).__name__})
    except OSError as err:  # the run dir itself may be the problem; the error line still tells
        log.error("could not write failure.json: %s", err)


# the folders of a run directory that grud writes into (never searched deeper: hydra.run.dir may be ".")
_RUN_FOLDERS = (".", "checkpoints", "plots")


def remove_stale_temporaries(run_dir) -> list[Path]:
    """Delete the ``.<name>.*.tmp`` files a killed run left in ``run_dir`` and its
    ``checkpoints/`` and ``plots/`` folders.

    Every run-directory file is written to such a temporary name in its folder and then
    renamed (:mod:`grud.cli.files`, :mod:`grud.cli.checkpoint`), so a process killed
    mid-write leaves one of these behind, never a truncated file under the final name.
    Called at the start of a run, before anything is written; returns the deleted paths.
    """
    removed = []
    run_dir = Path(run_dir)
    for folder in _RUN_FOLDERS:
        d = run_dir / folder
        if not d.is_dir():
            continue
        for p in sorted(d.glob(".*.tmp")):
            if not p.is_file():
                continue
            try:
                p.unlink()
                removed.append(p)
            except OSError as err:
                log.warning("could not remove the stale temporary file %s: %s", p, err)
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted run: %s", len(removed),
                 ", ".join(str(p.relative_to(run_dir)) for p in removed))
    return removed


def _stopped(run_dir, how: str, code: int) -> int:
    """Print the one error line of a run stopped by a signal during training; return ``code``."""
    print(f"error: {how} during training of {run_dir}; resume=true continues from checkpoints/last.ckpt",
          file=sys.stderr, flush=True)
    return code


@hydra.main(config_path=CONFIG_PATH, config_name="train", version_base="1.3")
def _train(cfg: DictConfig):
    from grud.cli.pipeline import is_first_process, run_training
    from omegaconf import OmegaConf

    keep_freed_memory()  # here, not in main(): joblib / submitit jobs run in their own processes
    from grud.cli.known_warnings import log_metric_warnings

    log_metric_warnings()
    run_dir = run_dir_from_hydra()
    config = plain(cfg)
    if is_first_process():
        remove_stale_temporaries(run_dir)
    try:
        from grud.cli.pipeline import resume_checkpoint

        resume_from = resume_checkpoint(config, run_dir, fresh_if_none=is_multirun())
        metrics = run_training(config, run_dir, resume_from=resume_from,
                               config_text=OmegaConf.to_yaml(cfg, resolve=True).encode())
    except KeyboardInterrupt:
        raise
    except SystemExit as exc:
        # Lightning stops fit with a code-less SystemExit after a SIGTERM (kill, Slurm, docker stop),
        # and with exit(1) after a Ctrl-C: no record, as for a killed job (grud-aggregate: incomplete);
        # the run or sweep stops with 128 + the signal, not 0 or a failed job's 1
        if exc.code is None and type(exc).__name__ == "SIGTERMException":
            raise SystemExit(_stopped(run_dir, "terminated by SIGTERM", 143)) from None
        if isinstance(exc.__context__, KeyboardInterrupt):
            raise SystemExit(_stopped(run_dir, "interrupted (Ctrl-C)", 130)) from None
        raise
    except Exception as exc:  # recorded per job so a sweep goes on; a single run exits with error:
        record_failure(run_dir, exc)
        if is_multirun():
            log.error("job failed: %s", describe(exc))
            return None
        log.error("run failed: %s", describe(exc), extra=FILE_ONLY)  # train.log; stderr gets the error: line
        raise SystemExit(report(exc))
    return metrics.get(config.get("optimized_metric", ""), None) if config.get("optimized_metric") else None


def main() -> None:
    try:
        precheck("train", sys.argv[1:])
    except Exception as exc:
        raise SystemExit(report(exc, code=2)) from None
    from grud.cli.sweep_status import sweep_stops_with_error_line

    try:
        with sweep_stops_with_error_line():  # a sweeper's or launcher's own failure: one error: line
            _train()
    except Exception as exc:  # Hydra's own argument errors (-m with --cfg); jobs report inside _train
        raise SystemExit(report(exc, code=2)) from None


if __name__ == "__main__":
    main()
