"""Reliability of grud-train: crash and resume, divergence, failing sweep jobs, determinism,
DDP on two CPU processes and the submitit launcher.

Every run is a subprocess of the console script, as a user would start it. One small learnable
export (tests.conftest.make_long_csv, 120 series) serves all runs; a module fixture trains the
reference run once and the tests compare against it.
"""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from grud.cli.checkpoint import safe_load
from tests.conftest import make_long_csv

pytestmark = pytest.mark.slow

MAX_EPOCHS = 6
# early stopping off (patience > epochs), so every complete run trains exactly MAX_EPOCHS epochs
BASE = [f"trainer.max_epochs={MAX_EPOCHS}", "trainer.enable_progress_bar=false", "model.hidden_size=8",
        "data.batch_size=16", "summary=false", "plots=false", "early_stopping.patience=100"]
# AdamW's decoupled decay multiplies every weight by (1 - lr * weight_decay) = -4 per step: the
# weights grow 4x per step whatever the data, so the loss overflows after about 20 steps (epoch 4
# here, 5 steps per epoch), well after the first checkpoints. Deterministic, no knife edge.
ADAMW_LR1 = ["optim.name=adamw", "optim.lr=1", "optim.grad_clip=null", "optim.scheduler=none",
             "trainer.max_epochs=10"]
DIVERGING = [*ADAMW_LR1, "optim.weight_decay=5"]
TIMEOUT = 600


def run(cmd, cwd, env, check=True):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=TIMEOUT)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def error_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert lines, "nothing on stderr"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return lines[-1]


def metrics_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def temporaries(run_dir: Path) -> list:
    return sorted(str(p) for p in run_dir.rglob("*.tmp"))


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    d = tmp_path_factory.mktemp("reliability")
    make_long_csv(d / "events.csv", n_series=120, labels_path=d / "labels.csv")
    env = dict(os.environ, GRUD_CACHE_DIR=str(d / "cache"))
    return d, env


def train_cmd(export_dir: Path, run_dir: Path, *extra) -> list[str]:
    return ["grud-train", "data=csv_long", f"data.path={export_dir / 'events.csv'}",
            f"data.labels={export_dir / 'labels.csv'}", f"hydra.run.dir={run_dir}", *BASE, *extra]


@pytest.fixture(scope="module")
def reference(export):
    d, env = export
    out = d / "reference"
    run(train_cmd(d, out), cwd=d, env=env)
    return out


# ---------------------------------------------------------------------------------------- crash + resume
def _kill_mid_epoch(proc: subprocess.Popen, last: Path) -> None:
    """SIGKILL ``proc`` half an epoch after its second checkpoint (epoch 1) was written."""
    seen, deadline = [], time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before it could be killed; make epochs longer")
        if last.exists():
            m = last.stat().st_mtime_ns
            if not seen or m != seen[-1]:
                seen.append(m)
            if len(seen) == 2:
                epoch_seconds = (seen[1] - seen[0]) / 1e9
                time.sleep(epoch_seconds / 2)
                assert proc.poll() is None, "the run finished during the wait; make it longer"
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return
        time.sleep(0.01)
    proc.kill()
    pytest.fail("no second checkpoint within the time limit")


@pytest.fixture(scope="module")
def resumed(export, reference):
    """A run killed with SIGKILL mid-training, then the same command with resume=true."""
    d, env = export
    out = d / "crashed"
    cmd = train_cmd(d, out)
    with open(d / "crashed.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=d, env=env, stdout=log, stderr=subprocess.STDOUT)
        _kill_mid_epoch(proc, out / "checkpoints" / "last.ckpt")
    assert proc.returncode == -signal.SIGKILL
    killed_at = int(safe_load(out / "checkpoints" / "last.ckpt")["epoch"])
    after_kill = {
        "files": sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()),
        "config": yaml.safe_load((out / "config.yaml").read_text()),
        "best": safe_load(out / "checkpoints" / "best.ckpt"),
    }
    # what a kill during a checkpoint save leaves behind: a half-written temporary next to it
    stale = out / "checkpoints" / ".last.ckpt.k1ll3d.tmp"
    stale.write_bytes(b"PK\x03\x04 half a checkpoint")
    proc = run(cmd + ["resume=true"], cwd=d, env=env)
    return {"dir": out, "killed_at": killed_at, "after_kill": after_kill, "stale": stale, "proc": proc}


def test_sigkill_mid_epoch_then_resume_finishes_the_same_run(resumed, reference):
    out, killed_at = resumed["dir"], resumed["killed_at"]
    after_kill = resumed["after_kill"]
    # the kill left a usable run directory: readable config and checkpoints, no metrics yet
    assert "metrics.json" not in after_kill["files"]
    assert after_kill["config"]["seed"] == 0 and after_kill["config"]["resume"] is False
    assert "state_dict" in after_kill["best"]
    assert 1 <= killed_at < MAX_EPOCHS - 1, f"killed after epoch {killed_at}: not in the middle of the run"

    m, ref = metrics_of(out), metrics_of(reference)
    assert m["status"] == "ok"
    assert m["resumed_from_epoch"] == killed_at
    assert m["epochs"] == ref["epochs"] == MAX_EPOCHS
    assert ref["resumed_from_epoch"] is None
    assert f"resuming from {out / 'checkpoints' / 'last.ckpt'} (epoch {killed_at})" in resumed["proc"].stderr
    assert m["n_train"] == ref["n_train"] and m["data_hash"] == ref["data_hash"]
    # the same run, not only as long: weights (dropout's random state travels in last.ckpt) and results
    weights, ref_weights = (safe_load(r / "checkpoints" / "last.ckpt")["state_dict"] for r in (out, reference))
    assert weights.keys() == ref_weights.keys()
    differ = [k for k in weights if not torch.equal(weights[k], ref_weights[k])]
    assert not differ, f"the resumed run ended with other weights than the uninterrupted one: {differ}"
    assert m["test/auroc"] == ref["test/auroc"] and m["val/auroc"] == ref["val/auroc"]


def test_resume_leaves_no_temporary_or_truncated_file(resumed):
    out = resumed["dir"]
    assert not resumed["stale"].exists(), "the temporary file of the interrupted save was not removed"
    assert temporaries(out) == []
    json.loads((out / "metrics.json").read_text())
    yaml.safe_load((out / "config.yaml").read_text())
    for name in ("best.ckpt", "last.ckpt"):
        assert "state_dict" in safe_load(out / "checkpoints" / name)


def test_resume_keeps_the_epoch_history(resumed):
    """metrics.csv after the resume still holds the epochs trained before the kill."""
    history = pd.read_csv(resumed["dir"] / "metrics.csv")
    val_epochs = sorted(set(history.loc[history["val/auroc"].notna(), "epoch"].astype(int)))
    assert set(range(MAX_EPOCHS)) <= set(val_epochs), f"validation rows only for epochs {val_epochs}"


def test_resume_without_a_checkpoint_is_one_clear_error(export, tmp_path):
    d, env = export
    proc = run(train_cmd(d, tmp_path / "fresh", "resume=true"), cwd=d, env=env, check=False)
    assert proc.returncode != 0
    last = error_line(proc)
    assert last.startswith("error: ") and "resume=true" in last
    assert str(tmp_path / "fresh" / "checkpoints" / "last.ckpt") in last and "does not exist" in last
    reason = json.loads((tmp_path / "fresh" / "failure.json").read_text())
    assert reason["status"] == "failed" and "resume=true" in reason["error"]


def test_resume_refuses_a_malicious_last_checkpoint_and_runs_nothing(export, tmp_path):
    d, env = export
    out, marker = tmp_path / "run", tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (out / "checkpoints").mkdir(parents=True)
    last = out / "checkpoints" / "last.ckpt"
    last.write_bytes(pickle.dumps({"epoch": 1, "state_dict": Payload()}))
    proc = run(train_cmd(d, out, "resume=true"), cwd=d, env=env, check=False)
    assert proc.returncode != 0
    line = error_line(proc)
    assert line.startswith("error: ") and str(last) in line and "refused to load" in line
    assert not marker.exists(), "the checkpoint ran code"
    assert not (out / "metrics.json").exists()


# ---------------------------------------------------------------------------------------- divergence
def test_diverging_loss_stops_with_a_clear_error_and_keeps_the_best_checkpoint(export):
    d, env = export
    out = d / "diverging"
    proc = run(train_cmd(d, out, *DIVERGING), cwd=d, env=env, check=False)
    assert proc.returncode != 0
    last = error_line(proc)
    assert last.startswith("error: ") and "training loss became" in last and "optim.lr" in last
    assert ("nan" in last) or ("inf" in last)
    failed_epoch = int(last.split(" at epoch ")[1].split(",")[0])
    failure = json.loads((out / "failure.json").read_text())
    assert failure["status"] == "failed" and "training loss became" in failure["error"]
    assert not (out / "metrics.json").exists()
    best = safe_load(out / "checkpoints" / "best.ckpt")
    assert best["epoch"] < failed_epoch, "the best checkpoint must come from before the divergence"
    assert all(torch.isfinite(v).all() for v in best["state_dict"].values() if v.is_floating_point())
    assert temporaries(out) == []


def test_divergence_first_seen_in_validation_is_the_same_clear_error(export, tmp_path):
    """One batch per epoch: the first update (lr 1e30) makes the model's outputs NaN, and the
    epoch's validation sees them before any further training loss does."""
    d, env = export
    out = tmp_path / "run"
    proc = run(train_cmd(d, out, "optim.lr=1e30", "data.batch_size=512", "trainer.max_epochs=2"), cwd=d, env=env,
               check=False)
    assert proc.returncode != 0
    last = error_line(proc)
    assert last.startswith("error: ") and "optim.lr" in last, last
    assert ("nan" in last.lower()) or ("finite" in last.lower()), last
    assert "ValueError" not in last, last
    assert "failed" == json.loads((out / "failure.json").read_text())["status"]


def test_sweep_records_nan_and_out_of_memory_jobs_and_finishes_the_others(export, tmp_path):
    d, env = export
    sweep = tmp_path / "sweep"
    # 4 jobs: (healthy), (diverging), (out of memory) x2 - the weights of hidden_size=1e8 need 400 PB
    common = [o for o in train_cmd(d, tmp_path / "unused", *ADAMW_LR1)[1:] if not o.startswith("model.hidden_size=")]
    cmd = ["grud-train", "-m", *common, "optim.weight_decay=0.0001,5", "model.hidden_size=8,100000000",
           f"hydra.sweep.dir={sweep}"]
    proc = run(cmd, cwd=tmp_path, env=env, check=False)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith(
        "error: 3 of 4 job(s) of the sweep failed"), proc.stderr[-2000:]  # after every job ran
    jobs = {}
    for job in sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()):
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        key = tuple(o for o in overrides if o.startswith(("optim.weight_decay=", "model.hidden_size=")))
        jobs[key] = job
    assert len(jobs) == 4
    ok = jobs[("optim.weight_decay=0.0001", "model.hidden_size=8")]
    assert metrics_of(ok)["status"] == "ok" and not (ok / "failure.json").exists()
    nan = jobs[("optim.weight_decay=5", "model.hidden_size=8")]
    assert "training loss became" in json.loads((nan / "failure.json").read_text())["error"]
    assert (nan / "checkpoints" / "best.ckpt").exists()
    for wd in ("0.0001", "5"):
        oom = json.loads((jobs[(f"optim.weight_decay={wd}", "model.hidden_size=100000000")] / "failure.json").read_text())
        assert oom["error"].startswith("out of memory") and "model.hidden_size" in oom["error"], oom

    run(["grud-aggregate", str(sweep)], cwd=tmp_path, env=env, check=False)
    md = (sweep / "summary.md").read_text()
    failed_part = md.split("ailed jobs")[-1]
    assert "training loss became" in failed_part and failed_part.count("out of memory") >= 2


# ---------------------------------------------------------------------------------------- determinism
def test_same_seed_and_config_give_identical_metrics_twice(export, reference, tmp_path):
    d, env = export
    again = tmp_path / "again"
    run(train_cmd(d, again), cwd=d, env=env)
    a, b = metrics_of(reference), metrics_of(again)
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    wa = safe_load(reference / "checkpoints" / "best.ckpt")["state_dict"]
    wb = safe_load(again / "checkpoints" / "best.ckpt")["state_dict"]
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


# ---------------------------------------------------------------------------------------- scale-out
def test_ddp_on_two_cpu_processes_matches_the_single_process_run(export, reference, tmp_path):
    d, env = export
    out = tmp_path / "ddp"
    # the same global batch: 2 processes x 8 series = the reference's 16
    proc = run(train_cmd(d, out, "trainer=ddp", "data.batch_size=8"), cwd=d,
               env=dict(env, OMP_NUM_THREADS="1"))
    assert "MEMBER: 2/2" in proc.stderr, "the second DDP process did not start"
    ddp, single = metrics_of(out), metrics_of(reference)
    assert ddp["status"] == "ok" and ddp["epochs"] == single["epochs"] == MAX_EPOCHS
    # learnable data: both runs leave the untrained model's ~0.5 far behind, so the comparison means something
    assert single["val/auroc"] >= 0.9, single["val/auroc"]
    assert abs(ddp["val/auroc"] - single["val/auroc"]) <= 0.02, (ddp["val/auroc"], single["val/auroc"])
    assert temporaries(out) == []


def test_submitit_local_launcher_runs_a_two_job_sweep(export, tmp_path):
    d, env = export
    sweep = tmp_path / "submitit"
    cmd = ["grud-train", "-m", "hydra/launcher=submitit_local", *train_cmd(d, tmp_path / "unused")[1:],
           "trainer.max_epochs=1", "seed=0,1", f"hydra.sweep.dir={sweep}"]
    run(cmd, cwd=tmp_path, env=env)
    assert (sweep / ".submitit").is_dir(), "the jobs did not go through submitit"
    seeds = sorted(metrics_of(sweep / str(i))["seed"] for i in (0, 1))
    assert seeds == [0, 1]
    for i in (0, 1):
        assert metrics_of(sweep / str(i))["status"] == "ok"


@pytest.mark.parametrize("sig, code, said", [(signal.SIGTERM, 143, "terminated by SIGTERM"),
                                             (signal.SIGINT, 130, "interrupted (Ctrl-C)")])
def test_a_signal_during_training_exits_non_zero_with_one_error_line_and_no_record(export, tmp_path, sig, code, said):
    """Lightning ends a run on SIGTERM (kill, Slurm, docker stop) with a code-less SystemExit: the run
    exited 0, so `grud-train ... && next step` went on as if it had finished; Ctrl-C exited 1, as a
    failed job does."""
    d, env = export
    out = tmp_path / "term"
    # as from a terminal: a shell's background job (CI started with `&`) ignores SIGINT, and a child
    # inherits that, so Python would never raise KeyboardInterrupt and the run would train on
    proc = subprocess.Popen(train_cmd(d, out, "trainer.max_epochs=300"), cwd=d, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    last, deadline = out / "checkpoints" / "last.ckpt", time.monotonic() + TIMEOUT
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be terminated"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == code
    assert err.strip().splitlines()[-1] == (f"error: {said} during training of {out}; resume=true "
                                            "continues from checkpoints/last.ckpt")
    assert "Traceback" not in err
    assert not (out / "metrics.json").exists() and not (out / "failure.json").exists()  # incomplete, resumable
