"""A multirun's exit status: non-zero when any of its jobs failed (a Hydra callback).

Each job of a sweep catches its own failure, writes ``failure.json`` and returns, so that
Hydra's sweeper goes on to the next job (:func:`grud.cli.train._train`). Without this
callback the sweep would then exit 0 whatever its jobs did, and a script running it could
not tell. After the last job, :class:`SweepStatus` reads the jobs this sweep ran (their
``.hydra/overrides.yaml`` was written after the sweep started; jobs of an earlier sweep in
the same folder are not counted) and, if any failed, ends the sweep with one ``error:``
line and exit code 1. The jobs that completed keep their results; ``grud-aggregate`` lists
both.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from hydra.experimental.callback import Callback

from grud.cli.aggregate import STATUS_OK, find_jobs, read_job

#: exit code of a sweep in which at least one job failed
FAILED_JOBS_EXIT = 1


def jobs_not_completed(sweep_dir, since: float) -> tuple[int, list]:
    """(jobs this sweep ran, those of them that did not complete) in ``sweep_dir``.

    A job belongs to this sweep when its ``.hydra/overrides.yaml`` is not older than ``since``
    (a time from :func:`time.time`); the second item lists :class:`grud.cli.aggregate.Job`.
    """
    ran, bad = 0, []
    root = Path(sweep_dir)
    if not root.is_dir():
        return 0, []
    for job_dir in find_jobs(root):
        overrides = job_dir / ".hydra" / "overrides.yaml"
        try:
            if overrides.stat().st_mtime < since:
                continue
        except OSError:
            continue
        ran += 1
        job = read_job(job_dir, root)
        if job.status != STATUS_OK:
            bad.append(job)
    return ran, bad


class SweepStatus(Callback):
    """Hydra callback (``hydra.callbacks.sweep_status`` in ``conf/train.yaml``): exit 1 after a
    multirun in which any job failed, naming the first failure."""

    def __init__(self) -> None:
        self.started = None

    def on_multirun_start(self, config, **kwargs) -> None:
        self.started = time.time() - 1.0  # file times may be rounded to the second

    def on_multirun_end(self, config, **kwargs) -> None:
        if self.started is None:
            return
        sweep_dir = config.hydra.sweep.dir
        ran, bad = jobs_not_completed(sweep_dir, self.started)
        if not bad:
            return
        first = bad[0]
        label = " ".join(first.overrides or []) or first.name
        print(f"error: {len(bad)} of {ran} job(s) of the sweep failed, e.g. job {first.name} ({label}): "
              f"{first.reason}; the others' results stand (grud-aggregate {sweep_dir} lists every job)",
              file=sys.stderr)
        raise SystemExit(FAILED_JOBS_EXIT)
