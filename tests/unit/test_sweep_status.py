"""A multirun exits 1 when any job it ran failed; jobs an earlier sweep left in the folder do not count."""
from __future__ import annotations

import json
import os
import time

import pytest
from omegaconf import OmegaConf

from grud.cli.sweep_status import FAILED_JOBS_EXIT, SweepStatus, jobs_not_completed


def _job(root, name, overrides, status, age=0.0):
    d = root / name
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if status == "ok":
        (d / "metrics.json").write_text(json.dumps({"status": "ok", "test/auroc": 0.8}))
    elif status == "failed":
        (d / "failure.json").write_text(json.dumps({"status": "failed", "error": "optim.lr: expected > 0",
                                                    "type": "ConfigError"}))
    if age:
        t = time.time() - age
        os.utime(d / ".hydra" / "overrides.yaml", (t, t))


def test_only_this_sweeps_jobs_that_did_not_complete_are_counted(tmp_path):
    from grud.cli.sweep_status import _job_stamps

    _job(tmp_path, "3", ["seed=3"], "failed", age=3600)  # an earlier sweep's job, left as it was
    _job(tmp_path, "4", ["seed=4"], "ok", age=3600)  # an earlier sweep's job this sweep reruns
    before = _job_stamps(tmp_path)
    _job(tmp_path, "0", ["seed=0"], "ok")
    _job(tmp_path, "1", ["seed=1"], "failed")
    _job(tmp_path, "2", ["seed=2"], None)  # killed: neither file
    (tmp_path / "4" / ".hydra" / "overrides.yaml").write_text("- seed=4\n")
    (tmp_path / "4" / "failure.json").write_text(json.dumps({"status": "failed", "error": "x"}))
    ran, bad = jobs_not_completed(tmp_path, before)
    assert ran == 4 and sorted(j.name for j in bad) == ["1", "2", "4"]
    assert jobs_not_completed(tmp_path / "absent", {}) == (0, [])


def test_the_callback_exits_1_with_one_error_line_naming_a_failed_job(tmp_path, capsys):
    cb = SweepStatus()
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    cb.on_multirun_start(config)
    _job(tmp_path, "0", ["seed=0"], "ok")
    cb.on_multirun_end(config)  # every job completed: nothing happens
    assert capsys.readouterr().err == ""
    _job(tmp_path, "1", ["optim.lr=-1"], "failed")
    with pytest.raises(SystemExit) as exc:
        cb.on_multirun_end(config)
    assert exc.value.code == FAILED_JOBS_EXIT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: 1 of 2 job(s) of the sweep failed, e.g. job 1 (optim.lr=-1)")
    assert "ConfigError: optim.lr: expected > 0" in err[0] and f"grud-aggregate {tmp_path}" in err[0]


def test_a_sweeper_or_launcher_failure_ends_with_one_error_line_naming_the_jobs(tmp_path, capsys, monkeypatch):
    """A joblib worker killed by the system, or an Optuna search whose every trial failed, raises
    out of Hydra's multirun: one error line and exit 1, not Hydra's traceback."""
    from hydra._internal.hydra import Hydra

    from grud.cli.sweep_status import sweep_stops_with_error_line

    monkeypatch.delenv("GRUD_DEBUG", raising=False)
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})

    def stopped_multirun(self, *args, **kwargs):  # what the sweeper does: start, run jobs, then raise
        SweepStatus().on_multirun_start(config)
        _job(tmp_path, "0", ["seed=0"], "ok")
        _job(tmp_path, "1", ["optim.lr=-1"], None)  # killed: neither file
        raise RuntimeError("A worker process managed by the executor was unexpectedly terminated")

    monkeypatch.setattr(Hydra, "multirun", stopped_multirun)
    with sweep_stops_with_error_line():
        assert Hydra.multirun is not stopped_multirun
        with pytest.raises(SystemExit) as exc:
            Hydra.multirun(None, "train", [])
    assert Hydra.multirun is stopped_multirun  # restored
    assert exc.value.code == FAILED_JOBS_EXIT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: the sweep stopped: RuntimeError: A worker process managed by the executor")
    assert "1 of 2 job(s) did not complete, e.g. job 1 (optim.lr=-1)" in err[0]
    assert f"grud-aggregate {tmp_path}" in err[0]


def test_a_multirun_stopped_before_any_job_says_so_and_exits_2(capsys, monkeypatch):
    from hydra._internal.hydra import Hydra

    from grud.cli.sweep_status import sweep_stops_with_error_line

    monkeypatch.setenv("GRUD_DEBUG", "1")

    def broken(self, *args, **kwargs):
        raise ValueError("No trials are completed yet.")

    monkeypatch.setattr(Hydra, "multirun", broken)
    with sweep_stops_with_error_line(), pytest.raises(SystemExit) as exc:
        Hydra.multirun(None, "train", [])
    assert exc.value.code == 2  # no job ran: a setting of the sweep itself
    err = capsys.readouterr().err
    assert "Traceback" in err  # GRUD_DEBUG=1 shows it
    last = err.strip().splitlines()[-1]
    assert last == "error: the sweep stopped before any job ran: ValueError: No trials are completed yet."
    assert "grud-aggregate" not in last  # no folder to point at
