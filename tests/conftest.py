"""Shared fixtures: an isolated cache, a small synthetic long CSV with labels, tiny trainer overrides."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
PHYSIONET = REPO / "data" / "physionet2012"


def load_script(name: str):
    """``scripts/<name>.py`` imported as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GRUD_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


def make_long_csv(path: Path, n_series: int = 40, seed: int = 0, id_column="id", time_column="time",
                  variable_column="variable", value_column="value", datetimes: bool = False,
                  shuffle: bool = True, label_column="label", labels_path: Path | None = None):
    """A learnable synthetic export: label 1 series have a rising HR and lower MAP."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    base = pd.Timestamp("2024-01-01 08:00")
    for i in range(n_series):
        sid = f"p{i:03d}"
        y = int(i % 3 == 0)
        labels.append({id_column: sid, label_column: y})
        n = int(rng.integers(3, 15))
        times = np.sort(rng.uniform(0, 30, n))
        for t in times:
            t_out = (base + pd.Timedelta(hours=float(t))).strftime("%Y-%m-%d %H:%M:%S") if datetimes else round(float(t), 4)
            rows.append({id_column: sid, time_column: t_out, variable_column: "HR",
                         value_column: round(80 + 15 * y * t / 30 + rng.normal(0, 3), 2)})
            if rng.random() < 0.6:
                rows.append({id_column: sid, time_column: t_out, variable_column: "MAP",
                             value_column: round(85 - 10 * y + rng.normal(0, 4), 2)})
            if rng.random() < 0.2:
                rows.append({id_column: sid, time_column: t_out, variable_column: "Lactate",
                             value_column: round(1.5 + 1.5 * y + rng.normal(0, 0.3), 2)})
        t0 = (base.strftime("%Y-%m-%d %H:%M:%S") if datetimes else 0.0)
        rows.append({id_column: sid, time_column: t0, variable_column: "Age", value_column: int(rng.integers(20, 90))})
    frame = pd.DataFrame(rows)
    if shuffle:
        frame = frame.sample(frac=1.0, random_state=seed)
    frame.to_csv(path, index=False)
    if labels_path is not None:
        pd.DataFrame(labels).to_csv(labels_path, index=False)
    return path


@pytest.fixture
def long_csv(tmp_path):
    events = make_long_csv(tmp_path / "events.csv", labels_path=tmp_path / "labels.csv")
    return events, tmp_path / "labels.csv"


TINY_TRAIN = ["trainer.max_epochs=2", "trainer.enable_progress_bar=false", "model.hidden_size=8",
              "data.batch_size=16", "summary=false"]
