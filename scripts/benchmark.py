#!/usr/bin/env python
"""grud's performance benchmark: every comparison side by side in one process.

    python scripts/benchmark.py                     # everything (several minutes)
    python scripts/benchmark.py --quick             # a reduced run in under a minute (numbers not for the README)
    python scripts/benchmark.py --only step,data    # some sections
    python scripts/benchmark.py --json bench.json   # also write the results as JSON

Sections:

* ``step``: one training step (forward + a loss on ``last`` + backward) of
  ``preset("grud", 37, hidden_size=64)`` in training mode at B=64 on T=48 (hourly grid) and
  T=200 (exact timestamps), against ``torch.nn.GRU(2F -> H)`` on the same B, T; the contenders
  alternate, each is repeated and the medians are compared. Every other preset gets its ratio too,
  with whether its recurrence runs on a fused path of :mod:`grud.models.fast` (detected by
  counting calls, not assumed).
* ``data``: first read of set-a from its ``.tar.gz`` (``GRUD_CACHE_DIR`` pointed at a fresh
  empty folder), the cached read, GRU-D's delta + forward fill for 4,000 x 200 x 37, and the
  padding waste of length bucketing on set-a's exact timestamps (48 h window, batch 64).
* ``epoch``: one epoch (training pass over set-a's 4,000 stays, validation pass over set-b,
  hourly grid, H=64, batch 64), grud through Lightning against ``pypots.classification.GRUD``
  through its own loop, on the same normalised arrays; preprocessing timed separately; AUROC of
  each on set-b. Needs ``pip install .[bench]`` (pypots).
* ``predict``: ``grud-predict`` end to end (a subprocess) on the 4,000 stays of set-a written
  as a long CSV, with a checkpoint trained for one epoch (the ``epoch`` section's if it ran).

Ratios are grud time / other time for ``step`` and other time / grud time for ``epoch``. The
machine is printed with the results (cores, CPU model, load average before and after: on a
shared machine the load matters), and sections that fail or are skipped get ``null`` and a
printed reason.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
try:
    import grud  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(ROOT))

import numpy as np
import torch

from grud.atomic_files import atomic_write

DATA = ROOT / "data" / "physionet2012"
SECTIONS = ("step", "data", "epoch", "predict")
KEYS = (
    "step_ratio_vs_nn_gru_t48", "step_ratio_vs_nn_gru_t200", "epoch_speedup_vs_pypots", "auroc_grud",
    "auroc_pypots", "read_seta_s", "read_seta_cached_s", "delta_fill_s", "predict_4000_s", "padding_waste",
)


# ---------------------------------------------------------------------------- helpers
def log(msg: str = "") -> None:
    print(msg, flush=True)


def alternate(contenders: dict, reps: int, warmup: int = 1) -> dict:
    """Median seconds of each callable, run in alternating order (reversed every other round)."""
    return {n: statistics.median(v) for n, v in samples(contenders, reps, warmup).items()}


def samples(contenders: dict, reps: int, warmup: int = 1) -> dict:
    """Seconds of every run of each callable, run in alternating order (reversed every other round)."""
    names = list(contenders)
    for _ in range(warmup):
        for n in names:
            contenders[n]()
    times = {n: [] for n in names}
    for r in range(reps):
        for n in names if r % 2 == 0 else names[::-1]:
            gc.collect()
            t0 = time.perf_counter()
            contenders[n]()
            times[n].append(time.perf_counter() - t0)
    return times


def page_faults(fn, reps: int = 5) -> float:
    """Median minor page faults of one call (memory the allocator had to fetch from the OS again)."""
    import resource

    counts = []
    for _ in range(reps):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        fn()
        counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return float(statistics.median(counts))


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


@contextlib.contextmanager
def env(**values):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: str(v) for k, v in values.items()})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def machine() -> dict:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for dist in ("pytorch-lightning", "pandas", "scikit-learn", "pypots"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = None
    return dict(
        cores=os.cpu_count(), cpu=cpu, platform=platform.platform(), threads=torch.get_num_threads(),
        load_average=list(os.getloadavg()) if hasattr(os, "getloadavg") else None, versions=versions,
    )


# ---------------------------------------------------------------------------- step
def synthetic_batch(B: int, T: int, F: int, seed: int = 0, observed: float = 0.2) -> tuple:
    """A GRU-D batch: values, mask, delta, times, lengths (all series T steps, ~20% observed)."""
    from grud.data import masking

    g = torch.Generator().manual_seed(seed)
    steps = torch.rand(B, T, generator=g) + 0.5
    times = torch.cumsum(steps, 1) - steps[:, :1]
    mask = (torch.rand(B, T, F, generator=g) < observed).float()
    values = torch.randn(B, T, F, generator=g) * mask
    delta = masking.time_deltas(times, mask)
    lengths = torch.full((B,), T, dtype=torch.int64)
    return values, mask, torch.as_tensor(delta, dtype=torch.float32), times, lengths


class FastPathProbe:
    """Counts calls to the fused recurrences while active (patched on grud.models.fast)."""

    NAMES = ("gru_recurrence", "lstm_recurrence", "clockwork_recurrence")

    def __init__(self):
        import grud.models.fast as fast

        self.module, self.calls, self._orig = fast, 0, {}

    def __enter__(self):
        for n in self.NAMES:
            orig = getattr(self.module, n)
            self._orig[n] = orig

            def wrapped(*a, _orig=orig, **k):
                self.calls += 1
                return _orig(*a, **k)

            setattr(self.module, n, wrapped)
        return self

    def __exit__(self, *exc):
        for n, f in self._orig.items():
            setattr(self.module, n, f)


def without_native(fn):
    """``fn`` run with the native kernel off (grud's fused PyTorch path)."""
    from grud.models.fast import native

    def run(*a, **k):
        with native.disabled():
            return fn(*a, **k)
    return run


def section_step(args, res: dict) -> None:
    from grud.models import PRESETS, preset
    from grud.models.fast import native

    B, F, H = 64, 37, 64
    reps = 3 if args.quick else 25
    lengths_T = (48, 200)
    others = [p for p in PRESETS if p != "grud"]
    rows = []
    for T in lengths_T:
        batch = synthetic_batch(B, T, F)
        x = torch.randn(B, T, 2 * F)
        torch.manual_seed(0)
        nn_gru = torch.nn.GRU(2 * F, H, batch_first=True)

        def step_nn():
            nn_gru.zero_grad(set_to_none=True)
            _, h_n = nn_gru(x)
            h_n[-1].square().mean().backward()

        def step_of(net):
            def step():
                net.zero_grad(set_to_none=True)
                _, last = net(*batch)
                last.square().mean().backward()
            return step

        torch.manual_seed(0)
        grud_net = preset("grud", F, hidden_size=H).train()
        contenders = {"nn.GRU": step_nn, "grud": step_of(grud_net)}
        if not args.quick and native.available():  # what runs where no C compiler is found
            contenders["grud (PyTorch path)"] = without_native(step_of(grud_net))
        if not args.quick:
            loop_net = preset("grud", F, hidden_size=H, fast=False).train()
            loop_net.load_state_dict(grud_net.state_dict())
            contenders["grud (reference loop)"] = step_of(loop_net)
        runs = samples(contenders, reps)
        med = {n: statistics.median(v) for n, v in runs.items()}
        best = {n: min(v) for n, v in runs.items()}
        res[f"step_ratio_vs_nn_gru_t{T}"] = med["grud"] / med["nn.GRU"]
        res[f"step_ratio_of_fastest_runs_t{T}"] = best["grud"] / best["nn.GRU"]  # less sensitive to a busy machine
        res[f"step_ms_nn_gru_t{T}"], res[f"step_ms_grud_t{T}"] = med["nn.GRU"] * 1e3, med["grud"] * 1e3
        # each round runs both back to back: the median of the per-round ratios cancels slow drifts
        res[f"step_ratio_paired_median_t{T}"] = statistics.median(
            g / n for g, n in zip(runs["grud"], runs["nn.GRU"]))
        res[f"step_page_faults_nn_gru_t{T}"] = page_faults(step_nn)
        res[f"step_page_faults_grud_t{T}"] = page_faults(contenders["grud"])
        for name, sec in med.items():
            path = {"nn.GRU": "-", "grud": f"yes ({'native' if native.available() else 'PyTorch'})",
                    "grud (PyTorch path)": "yes (PyTorch)"}.get(name, "no")
            rows.append((name, T, sec, sec / med["nn.GRU"], path, best[name] / best["nn.GRU"]))
        # the other presets, each against a fresh nn.GRU timing in the same alternation
        if args.quick and T != 48:
            continue
        for name in others if not args.quick else []:
            torch.manual_seed(0)
            net = preset(name, F, hidden_size=H).train()
            with FastPathProbe() as probe:
                step_of(net)()
            med = alternate({"nn.GRU": step_nn, name: step_of(net)}, max(3, reps // 3))
            fast = probe.calls > 0
            res.setdefault("preset_step_ratios", {})[f"{name}_t{T}"] = med[name] / med["nn.GRU"]
            res.setdefault("preset_fast_path", {})[name] = fast
            k = net.num_layers * (2 if net.bidirectional else 1)
            label = name if k == 1 else f"{name} ({k} recurrences)"
            rows.append((label, T, med[name], med[name] / med["nn.GRU"], fast, None))
    with FastPathProbe() as probe:
        torch.manual_seed(0)
        net = preset("grud", F, hidden_size=H).train()
        _, last = net(*synthetic_batch(4, 5, F))
        last.sum().backward()
    res.setdefault("preset_fast_path", {})["grud"] = probe.calls > 0

    log(f"\n== step: training step (forward + loss on last + backward), B={B}, F={F}, H={H}, "
        f"median of {reps} alternated runs")
    log(f"{'model':<30}{'T':>5}{'ms':>10}{'x nn.GRU':>10}{'(fastest runs)':>16}  fused path")
    for name, T, sec, ratio, fast, best_ratio in rows:
        fused = fast if isinstance(fast, str) else ("yes" if fast else "no")
        extra = "" if best_ratio is None else f"{best_ratio:.2f}"
        log(f"{name:<30}{T:>5}{sec * 1e3:>10.1f}{ratio:>10.2f}{extra:>16}  {fused}")
    for T in lengths_T:
        log(f"T={T}: median of the per-round ratios {res[f'step_ratio_paired_median_t{T}']:.2f}; minor page faults "
            f"per step nn.GRU {res[f'step_page_faults_nn_gru_t{T}']:.0f}, grud {res[f'step_page_faults_grud_t{T}']:.0f}")
    log("targets: grud <= 1.3 x nn.GRU at T=48 and T=200")


# ---------------------------------------------------------------------------- data
def section_data(args, res: dict, tmp: Path) -> None:
    from grud.data import masking
    from grud.data.batching import BucketBatchSampler, padding_waste
    from grud.data.readers import read_physionet2012

    seta, outa = DATA / "set-a.tar.gz", DATA / "Outcomes-a.txt"
    reps_first = 1 if args.quick else 3
    firsts, cached = [], []
    ds = None
    for r in range(reps_first):
        cache = tmp / f"cache-{r}"
        cache.mkdir()
        with env(GRUD_CACHE_DIR=cache):
            ds, sec = timed(lambda: read_physionet2012(seta, outa))
            firsts.append(sec)
            for _ in range(1 if args.quick else 3):
                cached.append(timed(lambda: read_physionet2012(seta, outa))[1])
    res["read_seta_s"] = statistics.median(firsts)
    res["read_seta_cached_s"] = statistics.median(cached)
    res["read_seta_series"] = len(ds)

    # delta + forward fill on 4,000 x 200 x 37
    n, T, F = 4000, 200, 37
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.random((n, T)) + 0.1, axis=1).astype(np.float32)
    mask = (rng.random((n, T, F)) < 0.2).astype(np.float32)
    values = (rng.standard_normal((n, T, F)) * mask).astype(np.float32)
    lengths = rng.integers(1, T + 1, n)

    fill = np.zeros(F, np.float32)

    def fill_delta_apart():
        masking.time_deltas(times, mask, lengths=lengths)
        masking.forward_fill(values, mask, fill)

    def fill_delta_together():  # one scan of the mask for both (what GRU-D needs)
        masking.forward_fill_and_deltas(values, mask, times, fill, lengths=lengths)

    med = alternate({"together": fill_delta_together, "apart": fill_delta_apart}, 3 if args.quick else 7)
    res["delta_fill_s"], res["delta_fill_separate_s"] = med["together"], med["apart"]

    # padding waste of length bucketing on the 48 h window, exact timestamps
    window = ds.window(48.0)
    lens = window.lengths
    sampler = BucketBatchSampler(lens, 64, shuffle=True, bucket=True, seed=0)
    res["padding_waste"] = padding_waste(lens, list(sampler))
    res["padding_waste_unbucketed"] = padding_waste(
        lens, list(BucketBatchSampler(lens, 64, shuffle=True, bucket=False, seed=0)))
    res["seta_length_max"], res["seta_length_median"] = int(lens.max()), float(np.median(lens))

    log("\n== data")
    log(f"first read of set-a (.tar.gz, fresh cache)    {res['read_seta_s']:8.2f} s   (target < 15 s)")
    log(f"cached read of set-a                          {res['read_seta_cached_s']:8.2f} s   (target < 2 s)")
    log(f"delta + forward fill, 4000 x 200 x 37         {res['delta_fill_s']:8.3f} s   (target < 0.2 s; "
        f"forward_fill_and_deltas; {res['delta_fill_separate_s']:.3f} s as two separate calls)")
    log(f"padding waste, bucketed (unbucketed)          {res['padding_waste']:8.3f}     "
        f"({res['padding_waste_unbucketed']:.3f}; target < 0.2; set-a 48 h lengths: median "
        f"{res['seta_length_median']:.0f}, max {res['seta_length_max']})")


# ---------------------------------------------------------------------------- epoch
def _compose_train(overrides: list[str]) -> dict:
    from grud.api import _compose
    from grud.cli.config import plain

    return plain(_compose("train", overrides))


def dense(ds, stats, T: int) -> np.ndarray:
    """(n, T, F) normalised values, NaN where unobserved or past a series' end."""
    z = stats.normalise_values(ds.values)
    out = np.full((len(ds), T, z.shape[1]), np.nan, np.float32)
    lengths = ds.lengths
    series = np.repeat(np.arange(len(ds)), lengths)
    step = np.arange(len(z)) - np.repeat(ds.offsets[:-1], lengths)
    keep = step < T
    out[series[keep], step[keep]] = z[keep]
    return out


def section_epoch(args, res: dict, tmp: Path) -> None:
    import logging

    import pytorch_lightning as pl
    from sklearn.metrics import roc_auc_score

    from grud.cli.pipeline import build_module, make_trainer
    from grud.data.batching import to_grid
    from grud.data.datamodule import GrudDataModule
    from grud.data.readers import read_physionet2012
    from grud.data.transforms import fit_stats

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    reps = 1 if args.quick else 7
    n_train, n_val = (400, 200) if args.quick else (None, None)

    # shared: read + hourly grid (grud's reader; PyPOTS has no reader for these files)
    def read():
        a = read_physionet2012(DATA / "set-a.tar.gz", DATA / "Outcomes-a.txt", max_hours=48)
        b = read_physionet2012(DATA / "set-b.tar.gz", DATA / "Outcomes-b.txt", max_hours=48)
        if n_train:
            a, b = a.subset(np.arange(n_train)), b.subset(np.arange(n_val))
        return to_grid(a, 1.0), to_grid(b, 1.0)

    with env(GRUD_CACHE_DIR=tmp / "cache-epoch"):
        (train, val), t_read = timed(read)
    H = 64
    # like for like with PyPOTS's GRUD: plain z-scores (the same normalised arrays) and a head on the
    # network's states, without grud's classification extras (summary features, imputation loss)
    cfg = _compose_train([
        "model=grud", f"model.hidden_size={H}", "data.batch_size=64", "data.grid=1.0", "task.impute_weight=0",
        "task.value_transform=affine", "task.head.summary=false",
        "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "summary=false", "plots=false",
    ])

    # grud preprocessing: statistics + encoding of both splits
    def grud_prep():
        stats = fit_stats(train)
        stats.reader = {"kind": "physionet2012", "max_hours": 48, "grid": 1.0}
        module = build_module(cfg, stats, train)
        dm = GrudDataModule(train, val, None, stats, module.encode_dataset, batch_size=64, bucket=True, seed=0)
        for split in ("train", "val"):
            dm.encoded(split).delta  # computed once per encoded split, on first use: preprocessing, not the epoch
        return stats, dm

    (stats, dm), t_grud_prep = timed(grud_prep)

    # PyPOTS preprocessing: dense normalised arrays + its dataset objects (LOCF, deltas, means)
    with contextlib.redirect_stdout(sys.stderr):
        from pypots.classification import GRUD as PyPOTSGRUD
        from pypots.classification.grud.data import DatasetForGRUD
    T = int(max(train.lengths.max(), val.lengths.max()))
    ya, yb = train.labels.astype(np.int64), val.labels.astype(np.int64)

    def pypots_prep():
        Xa, Xb = dense(train, stats, T), dense(val, stats, T)
        da = DatasetForGRUD({"X": Xa, "y": ya})
        db = DatasetForGRUD({"X": Xb, "y": yb})
        return Xa, Xb, da, db

    with contextlib.redirect_stdout(sys.stderr):
        (Xa, Xb, da, db), t_pypots_prep = timed(pypots_prep)

    def grud_epoch(key="grud"):
        torch.manual_seed(0)
        module = build_module(cfg, stats, train)
        run = Path(tempfile.mkdtemp(dir=tmp, prefix="grud-run-"))
        trainer = make_trainer(cfg, run, module.monitor, module.monitor_mode)
        t0 = time.perf_counter()
        trainer.fit(module, datamodule=dm)
        sec = time.perf_counter() - t0
        auroc = float(trainer.callback_metrics.get("val/auroc", float("nan")))
        state[key].append((sec, auroc, run))

    from grud.models.fast import native

    torch_path = native.available()  # also time grud without the native kernel (no C compiler)
    grud_torch_epoch = without_native(lambda: grud_epoch("grud_torch"))

    def pypots_epoch():
        torch.manual_seed(0)
        with contextlib.redirect_stdout(sys.stderr):
            model = PyPOTSGRUD(n_steps=T, n_features=Xa.shape[2], n_classes=2, rnn_hidden_size=H, batch_size=64,
                               epochs=1, device="cpu", saving_path=None, model_saving_strategy=None,
                               verbose=False)
            train_loader = torch.utils.data.DataLoader(da, batch_size=64, shuffle=True)
            val_loader = torch.utils.data.DataLoader(db, batch_size=64, shuffle=False)
            t0 = time.perf_counter()
            if hasattr(model, "_train_model"):  # PyPOTS's own loop: train pass + validation pass
                model._train_model(train_loader, val_loader)
                model.model.load_state_dict(model.best_model_dict)
            else:  # another PyPOTS version: fit() also builds its datasets (counted in the epoch then)
                model.fit({"X": Xa, "y": ya}, {"X": Xb, "y": yb})
            sec = time.perf_counter() - t0
            prob = model.predict({"X": Xb})["classification"]
        prob = np.asarray(prob)
        auroc = float(roc_auc_score(yb, prob[:, 1] if prob.ndim == 2 else prob))
        state["pypots"].append((sec, auroc))

    # a reference: torch's own nn.GRU on [values ; mask] (no decay, no delta) with a linear head, in a
    # bare loop without Lightning over the same batches (what a plain GRU costs through ATen's kernels)
    train_batches = list(dm._loader("train", shuffle=True))
    val_batches = list(dm._loader("val", shuffle=False))

    def floor_epoch():
        torch.manual_seed(0)
        gru = torch.nn.GRU(2 * Xa.shape[2], H, batch_first=True)
        head = torch.nn.Linear(H, 1)
        opt = torch.optim.Adam(list(gru.parameters()) + list(head.parameters()), lr=1e-3)
        t0 = time.perf_counter()
        for b in train_batches:
            opt.zero_grad(set_to_none=True)
            _, h_n = gru(torch.cat([b["values"], b["mask"]], -1))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(head(h_n[-1])[:, 0], b["target"])
            loss.backward()
            opt.step()
        with torch.no_grad():
            for b in val_batches:
                head(gru(torch.cat([b["values"], b["mask"]], -1))[1][-1])
        state["floor"].append(time.perf_counter() - t0)

    state = {"grud": [], "pypots": [], "floor": [], "grud_torch": []}
    order = [grud_epoch, pypots_epoch, floor_epoch] + ([grud_torch_epoch] if torch_path and not args.quick else [])
    if not args.quick:  # one untimed run of each first: one-off loading (the kernel, lazy imports) is not an epoch
        for fn in order:
            fn()
        state = {k: [] for k in state}
    for r in range(reps):
        for fn in order if r % 2 == 0 else order[::-1]:
            fn()
    t_grud = statistics.median(s[0] for s in state["grud"])
    t_pypots = statistics.median(s[0] for s in state["pypots"])
    res["epoch_grud_s"], res["epoch_pypots_s"] = t_grud, t_pypots
    res["epoch_speedup_vs_pypots"] = t_pypots / t_grud
    res["epoch_nn_gru_floor_s"] = statistics.median(state["floor"])
    res["epoch_speedup_ceiling_vs_pypots"] = t_pypots / res["epoch_nn_gru_floor_s"]
    res["auroc_grud"] = statistics.median(s[1] for s in state["grud"])
    res["auroc_pypots"] = statistics.median(s[1] for s in state["pypots"])
    res["epoch_grud_runs_s"] = [s[0] for s in state["grud"]]
    res["epoch_pypots_runs_s"] = [s[0] for s in state["pypots"]]
    # each round runs both: the median of the per-round ratios cancels the VM's slow drifts
    res["epoch_speedup_paired_median"] = statistics.median(
        p / g for p, g in zip(res["epoch_pypots_runs_s"], res["epoch_grud_runs_s"]))
    if state["grud_torch"]:
        res["epoch_grud_pytorch_path_s"] = statistics.median(s[0] for s in state["grud_torch"])
        res["epoch_speedup_vs_pypots_pytorch_path"] = t_pypots / res["epoch_grud_pytorch_path_s"]
    res["prep_read_grid_s"], res["prep_grud_s"], res["prep_pypots_s"] = t_read, t_grud_prep, t_pypots_prep
    res["epoch_checkpoint"] = str(state["grud"][0][2] / "checkpoints" / "best.ckpt")

    log(f"\n== epoch: train pass over set-a ({len(train)} stays) + validation pass over set-b ({len(val)}), "
        f"hourly grid (T <= {T}), H={H}, batch 64, median of {reps}")
    log(f"{'':<34}{'grud':>10}{'PyPOTS':>10}")
    log(f"{'epoch (s)':<34}{t_grud:>10.2f}{t_pypots:>10.2f}   speedup x{t_pypots / t_grud:.2f} (target >= 3)")
    log(f"{'AUROC on set-b after 1 epoch':<34}{res['auroc_grud']:>10.3f}{res['auroc_pypots']:>10.3f}")
    log(f"{'every run (s)':<34}{' '.join(f'{x:.2f}' for x in res['epoch_grud_runs_s'])} | "
        f"{' '.join(f'{x:.2f}' for x in res['epoch_pypots_runs_s'])}")
    log(f"{'median of the per-round speed-ups':<34}{res['epoch_speedup_paired_median']:>10.2f}")
    if state["grud_torch"]:
        log(f"{'grud without the native kernel':<34}{res['epoch_grud_pytorch_path_s']:>10.2f}{'':>10}   "
            f"speedup x{res['epoch_speedup_vs_pypots_pytorch_path']:.2f} (the PyTorch path: no C compiler)")
    log(f"{'nn.GRU on [x ; m], bare loop':<34}{res['epoch_nn_gru_floor_s']:>10.2f}{'':>10}   "
        f"PyPOTS / it x{res['epoch_speedup_ceiling_vs_pypots']:.2f} (reference: a plain GRU through torch's "
        "kernels, no decay, no Lightning)")
    log(f"{'preprocessing (s)':<34}{t_grud_prep:>10.2f}{t_pypots_prep:>10.2f}   "
        f"(+ {t_read:.2f} s shared read + grid)")


# ---------------------------------------------------------------------------- predict
def grud_command(name: str) -> list[str]:
    exe = shutil.which(name)
    if exe:
        return [exe]
    return [sys.executable, "-m", f"grud.cli.{name.split('-', 1)[1]}"]


def section_predict(args, res: dict, tmp: Path) -> None:
    import pandas as pd

    csv, labels = tmp / "set-a.csv", tmp / "set-a-labels.csv"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "physionet_to_csv.py"), str(DATA / "set-a.tar.gz"),
                    str(csv), "--outcomes", str(DATA / "Outcomes-a.txt"), "--labels-out", str(labels)],
                   check=True, capture_output=True, text=True)
    if args.quick:  # a 500-stay subset
        frame = pd.read_csv(csv, dtype={"id": str})
        keep = frame["id"].drop_duplicates().iloc[:500]
        atomic_write(csv, lambda tmp: frame[frame["id"].isin(set(keep))].to_csv(tmp, index=False))
    n_stays = pd.read_csv(csv, usecols=["id"], dtype={"id": str})["id"].nunique()
    ckpt = res.get("epoch_checkpoint")
    if not ckpt or not Path(ckpt).exists():
        run = tmp / "predict-run"
        overrides = ["model=grud", "model.hidden_size=64", "data.grid=1.0", "trainer.max_epochs=1",
                     "trainer.enable_progress_bar=false", "summary=false", "plots=false", f"hydra.run.dir={run}"]
        if args.quick:
            overrides += ["trainer.limit_train_batches=5", "trainer.limit_val_batches=2"]
        with env(GRUD_CACHE_DIR=tmp / "cache-predict"):
            import grud.api

            grud.api.train(overrides)
        ckpt = str(run / "checkpoints" / "best.ckpt")
    out = tmp / "predictions.csv"
    cmd = grud_command("grud-predict") + [
        f"checkpoint={ckpt}", "data=csv_long", f"data.path={csv}",
        "data.static_variables=[Age,Gender,Height,ICUType]", "data.value_ranges=physionet2012", f"output={out}",
    ]
    with env(GRUD_CACHE_DIR=tmp / "cache-predict-run"):  # a fresh cache: the CSV is read for real
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        sec = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"grud-predict failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    rows = pd.read_csv(out, dtype={"id": str})
    res["predict_4000_s" if not args.quick else "predict_500_s"] = sec
    res["predict_stays"] = int(rows["id"].nunique())
    log(f"\n== predict: grud-predict end to end on a long CSV of {n_stays} stays")
    log(f"{'grud-predict (subprocess, fresh cache)':<44}{sec:8.2f} s   ({res['predict_stays']} stays predicted; "
        f"target < 20 s for 4000)")


# ---------------------------------------------------------------------------- main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", metavar="FILE", help="write the results (and the machine) as JSON")
    p.add_argument("--quick", action="store_true", help="reduced sizes and repeats (under a minute; not for the README)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for every contender (default: torch's default, one per core)")
    p.add_argument("--only", metavar="SECTIONS", default=",".join(SECTIONS),
                   help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    args = p.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in only if s not in SECTIONS]
    if bad:
        p.error(f"--only: unknown section(s) {', '.join(bad)}; choose from {', '.join(SECTIONS)}")

    if args.threads is not None:
        if args.threads < 1:
            p.error(f"--threads: expected a positive integer, got {args.threads}")
        torch.set_num_threads(args.threads)
    from grud.cli.allocator import keep_freed_memory

    mach = machine()
    mach["malloc_kept"] = keep_freed_memory()  # as grud-train does; every contender runs in this process
    log(f"grud benchmark{' (quick: not for the README)' if args.quick else ''}")
    log(f"machine: {mach['cores']} cores, {mach['cpu']}, torch threads {mach['threads']}, "
        f"load average {', '.join(f'{x:.2f}' for x in mach['load_average'] or [])}")
    log("versions: " + ", ".join(f"{k} {v}" for k, v in mach["versions"].items() if v))
    log("malloc: " + ("glibc thresholds raised as in grud-train (grud.cli.allocator)" if mach["malloc_kept"]
                      else "left at the C library's defaults"))
    from grud.models.fast import native

    mach["native_kernel"] = native.status()
    log(f"native GRU kernel (grud.models.fast.native): {mach['native_kernel']}")
    load = (mach["load_average"] or [0.0])[0]
    mach["busy"] = bool(load > 0.5 * (mach["cores"] or 1))
    if mach["busy"]:
        log(f"WARNING: the machine is busy (1-minute load {load:.2f} on {mach['cores']} cores): other processes "
            "compete for the cores and the timings below are unreliable; rerun on an idle machine "
            "(--threads 1 suffers least from the competition)")
    res: dict = {k: None for k in KEYS}
    reasons: dict = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="grud-bench-") as tmpdir:
        tmp = Path(tmpdir)
        for name in SECTIONS:
            if name not in only:
                reasons[name] = "skipped (--only)"
                continue
            try:
                if name == "step":
                    section_step(args, res)
                else:
                    {"data": section_data, "epoch": section_epoch, "predict": section_predict}[name](args, res, tmp)
            except Exception as exc:  # report and go on with the other sections
                hint = " (pip install -e \".[bench]\" installs it)" if isinstance(exc, ModuleNotFoundError) else ""
                reasons[name] = f"failed: {type(exc).__name__}: {exc}{hint}"
                log(f"\n== {name}: FAILED ({type(exc).__name__}: {exc})")
                traceback.print_exc(file=sys.stderr)
    res.pop("epoch_checkpoint", None)
    mach["load_average_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    log(f"\n== summary ({time.perf_counter() - started:.0f} s; load average after: "
        f"{', '.join(f'{x:.2f}' for x in mach['load_average_after'] or [])})")
    for k in KEYS:
        v = res[k]
        log(f"{k:<28}{'null' if v is None else f'{v:.3f}'}")
    for name, why in reasons.items():
        log(f"[{name}] {why}")
    if args.json:
        out = Path(args.json)
        payload = dict(res, machine=mach, quick=args.quick, sections=only, reasons=reasons,
                       command=" ".join([Path(sys.argv[0]).name] + sys.argv[1:]))
        atomic_write(out, lambda tmp: Path(tmp).write_text(json.dumps(payload, indent=2, default=float)))
        log(f"wrote {out}")
    failed = [n for n, why in reasons.items() if why.startswith("failed")]
    return 1 if failed else 0  # a section asked for and not measured is a failed run


if __name__ == "__main__":
    raise SystemExit(main())
