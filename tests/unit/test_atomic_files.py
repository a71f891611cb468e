"""Run-directory files are written to a temporary name and renamed: never half-written."""
from __future__ import annotations

import os
import stat

import pytest
import torch

from grud.cli.checkpoint import atomic_torch_save
from grud.cli.files import atomic_write, atomic_write_bytes


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "sub" / "metrics.json"
    atomic_write_bytes(target, b"old")

    def half_then_fail(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]


def test_torch_save_goes_through_the_same_rename(tmp_path):
    atomic_torch_save({"w": torch.arange(3)}, tmp_path / "best.ckpt")
    assert torch.equal(torch.load(tmp_path / "best.ckpt", weights_only=True)["w"], torch.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["best.ckpt"]


def test_a_new_file_gets_ordinary_permissions_and_a_replaced_file_keeps_its_mode(tmp_path):
    # mkstemp's temporary is owner-only (0o600); the finished file must be readable as if opened normally.
    old_mask = os.umask(0o022)
    try:
        created = atomic_write_bytes(tmp_path / "pred.csv", b"id,probability\n")
    finally:
        os.umask(old_mask)
    assert stat.S_IMODE(created.stat().st_mode) == 0o644

    created.chmod(0o640)
    atomic_write_bytes(created, b"id,probability\n1,0.5\n")
    assert stat.S_IMODE(created.stat().st_mode) == 0o640
    assert created.read_bytes() == b"id,probability\n1,0.5\n"


def test_the_umask_is_obeyed_without_being_read_or_set(tmp_path, monkeypatch):
    # setting the umask to read it would race with other threads creating files
    old_mask = os.umask(0o077)
    try:
        def no_umask(*_):
            raise AssertionError("atomic_write changed the process umask")

        monkeypatch.setattr(os, "umask", no_umask)
        created = atomic_write_bytes(tmp_path / "private.json", b"{}")
    finally:
        monkeypatch.undo()
        os.umask(old_mask)
    assert stat.S_IMODE(created.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["private.json"]


def test_grud_evaluate_prints_the_json_its_file_holds_undefined_metrics_as_null(tmp_path, capsys):
    """stdout said "test/auroc": NaN (not JSON) while the file held null."""
    import json
    import math

    from grud.cli.evaluate import _write

    _write(tmp_path / "e.json", {"test/auroc": math.nan, "test/brier": 0.25, "test/n": 3})
    printed = capsys.readouterr().out
    assert json.loads(printed) == json.loads((tmp_path / "e.json").read_text()) == \
        {"test/auroc": None, "test/brier": 0.25, "test/n": 3}


def test_prediction_chunks_are_written_as_one_csv_and_a_failure_leaves_the_old_file(tmp_path):
    """grud-predict writes its chunks as they come: one header, the rows in order, as one frame's
    CSV; an error after some chunks (the third here) leaves the earlier output whole."""
    import pandas as pd

    from grud.cli.predict import write_frames

    frames = [pd.DataFrame({"id": ["a", "a", "b"], "probability": [0.1, 0.25, 0.5]}),
              pd.DataFrame({"id": pd.Series([], dtype=object), "probability": pd.Series([], dtype=float)}),
              pd.DataFrame({"id": ["c"], "probability": [1 / 3]})]
    out = tmp_path / "pred.csv"
    assert write_frames(out, iter(frames)) == (4, 3)
    whole = pd.concat(frames, ignore_index=True)
    assert out.read_text() == whole.to_csv(index=False, float_format="%.6f", lineterminator="\n")

    def failing():
        yield frames[0]
        yield frames[2]
        raise RuntimeError("disk on fire")

    before = out.read_bytes()
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_frames(out, failing())
    assert out.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["pred.csv"]
    with pytest.raises(RuntimeError, match="other columns"):
        write_frames(out, iter([frames[0], frames[0].rename(columns={"probability": "p"})]))
