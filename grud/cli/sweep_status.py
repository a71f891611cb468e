"""A multirun's exit status: non-zero when any of its jobs failed (a Hydra callback).

Each job of a sweep catches its own failure, writes ``failure.json`` and returns, so that
Hydra's sweeper goes on to the next job (:func:`grud.cli.train._train`). Without this
callback the sweep would then exit 0 whatever its jobs did, and a script running it could
not tell. After the last job, :class:`SweepStatus` reads the jobs this sweep ran (their
``.hydra/overrides.yaml`` is new or rewritten since the sweep started; jobs of an earlier sweep
in the same folder are not counted) and, if any failed, ends the sweep with one ``error:``
line and exit code 1. The jobs that completed keep their results; ``grud-aggregate`` lists
both.
"""
from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from pathlib import Path

from hydra.experimental.callback import Callback

from grud.cli.aggregate import STATUS_OK, find_jobs, read_job

log = logging.getLogger("grud")

#: exit code of a sweep in which at least one job failed
FAILED_JOBS_EXIT = 1


def _job_stamps(sweep_dir) -> dict:
    """``{job folder: (mtime_ns, inode) of its .hydra/overrides.yaml}`` under ``sweep_dir``."""
    root = Path(sweep_dir)
    stamps = {}
    if root.is_dir():
        for job_dir in find_jobs(root):
            try:
                st = (job_dir / ".hydra" / "overrides.yaml").stat()
            except OSError:
                continue
            stamps[str(job_dir)] = (st.st_mtime_ns, st.st_ino)
    return stamps


def jobs_not_completed(sweep_dir, before: dict) -> tuple[int, list]:
    """(jobs this sweep ran, those of them that did not complete) in ``sweep_dir``.

    A job belongs to this sweep when its ``.hydra/overrides.yaml`` is new or was rewritten since
    ``before`` (:func:`_job_stamps` at the sweep's start): file times are compared with
    themselves, never with this host's clock (a file server's may differ). The second item
    lists :class:`grud.cli.aggregate.Job`.
    """
    ran, bad = 0, []
    root = Path(sweep_dir)
    for job_dir, stamp in _job_stamps(root).items():
        if before.get(job_dir) == stamp:
            continue  # an earlier sweep's job, untouched
        ran += 1
        job = read_job(Path(job_dir), root)
        if job.status != STATUS_OK:
            bad.append(job)
    return ran, bad


class SweepStatus(Callback):
    """Hydra callback (``hydra.callbacks.sweep_status`` in ``conf/train.yaml``): exit 1 after a
    multirun in which any job failed, naming the first failure."""

    def __init__(self) -> None:
        self.sweep_dir = None
        self.before: dict = {}

    def on_multirun_start(self, config, **kwargs) -> None:
        global _RUNNING
        self.sweep_dir = str(config.hydra.sweep.dir)
        self.before = _job_stamps(self.sweep_dir)
        _RUNNING = self

    def on_multirun_end(self, config, **kwargs) -> None:
        if self.sweep_dir is None:
            return
        ran, bad = jobs_not_completed(self.sweep_dir, self.before)
        if ran == 0:
            log.warning("found no job of this sweep under %s (no .hydra/overrides.yaml written): the exit status "
                        "does not reflect the jobs' outcome", self.sweep_dir)
        if not bad:
            return
        print(f"error: {len(bad)} of {ran} job(s) of the sweep failed, {first_failure(bad)}; the others' results "
              f"stand (grud-aggregate {self.sweep_dir} lists every job)", file=sys.stderr)
        raise SystemExit(FAILED_JOBS_EXIT)


def first_failure(bad: list) -> str:
    """``e.g. job <name> (<overrides>): <reason>`` of the first job in ``bad`` (:class:`Job` list)."""
    first = bad[0]
    label = " ".join(first.overrides or []) or first.name
    return f"e.g. job {first.name} ({label}): {first.reason}"


#: the :class:`SweepStatus` of the multirun in progress (set at its start), read by
#: :func:`sweep_stops_with_error_line` when the sweeper or launcher itself raises
_RUNNING: SweepStatus | None = None


#: exit code of a sweep its sweeper or launcher stopped before any job ran (a setting of the sweep itself)
NO_JOB_EXIT = 2


def stopped_sweep_message(exc: BaseException) -> tuple[str, int]:
    """The ``error:`` line's text and the exit code for a sweep whose sweeper or launcher raised ``exc``.

    Names what stopped it and, when jobs had run, how many did not complete with the first one's
    reason (an Optuna search whose every trial failed ends in Optuna's "No trials are completed
    yet": the jobs' own failures are the news), exit :data:`FAILED_JOBS_EXIT`; when no job ran
    (a sampler or launcher setting that cannot be built), exit :data:`NO_JOB_EXIT`.
    """
    from grud.cli.errors import describe

    status = _RUNNING
    ran, bad = (0, []) if status is None or status.sweep_dir is None else \
        jobs_not_completed(status.sweep_dir, status.before)
    if ran == 0:
        return f"the sweep stopped before any job ran: {describe(exc)}", NO_JOB_EXIT
    text = f"the sweep stopped: {describe(exc)}"
    if bad:
        text += f"; {len(bad)} of {ran} job(s) did not complete, {first_failure(bad)}"
    return (text + f"; the jobs that completed keep their results (grud-aggregate {status.sweep_dir} lists every job)",
            FAILED_JOBS_EXIT)


@contextmanager
def sweep_stops_with_error_line():
    """Within this context, an exception that escapes a multirun's sweeper or launcher (a joblib
    worker killed by the system, a submitit job that died, an Optuna search whose every trial
    failed) ends with one ``error:`` line and exit code :data:`FAILED_JOBS_EXIT` (:data:`NO_JOB_EXIT`
    when no job ran) instead of Hydra's traceback (``GRUD_DEBUG=1`` prints it as well).

    The jobs themselves never raise (:func:`grud.cli.train._train` records a failure and returns);
    this is for what happens around them. Wraps ``hydra._internal.hydra.Hydra.multirun``, the call
    ``hydra.main`` makes for ``-m`` (Hydra 1.3), and restores it on exit.
    """
    from hydra._internal.hydra import Hydra

    from grud.cli.errors import report

    original = Hydra.multirun

    def multirun(self, *args, **kwargs):
        global _RUNNING
        _RUNNING = None
        try:
            return original(self, *args, **kwargs)
        except Exception as exc:
            message, code = stopped_sweep_message(exc)
            raise SystemExit(report(exc, code, message)) from None

    Hydra.multirun = multirun
    try:
        yield
    finally:
        Hydra.multirun = original
