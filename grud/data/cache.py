"""On-disk cache of parsed datasets, so a second read of the same input takes a moment.

A cached dataset is one ``.npz`` file (numpy arrays only, read with ``allow_pickle=False``)
under ``$GRUD_CACHE_DIR`` or else ``~/.cache/grud``, in ``datasets/``. Its name is a hash
of everything the result depends on: the input file's bytes, the label file's bytes (or a
label DataFrame's content), every reader option, the resolved value-range table and
:data:`CACHE_FORMAT`. Change any of them and the next read parses again.

Writes go to a temporary file in the same folder, then ``os.replace``: a crash never leaves
a half-written entry under the final name. A cache file that cannot be loaded (truncated,
foreign, older format) is ignored, logged and overwritten; a cache folder that cannot be
written only costs speed. Delete the folder at any time to clear the cache.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from grud.atomic_files import atomic_write
from grud.data.dataset import IrregularDataset

log = logging.getLogger(__name__)

#: Bump when the readers' output for the same input and options changes.
CACHE_FORMAT = 4
_META_KEY = "meta_json"


def cache_dir() -> Path:
    """``$GRUD_CACHE_DIR`` if set (and not empty), else ``~/.cache/grud``."""
    env = os.environ.get("GRUD_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "grud"


def hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_files(named: list[tuple[str, bytes]]) -> str:
    """Hash of several (name, content) pairs, order-independent."""
    h = hashlib.sha256()
    for name, content in sorted(named, key=lambda x: x[0]):
        h.update(name.encode("utf-8") + b"\0" + hashlib.sha256(content).digest())
    return h.hexdigest()


def hash_frame(frame: pd.DataFrame) -> str:
    """Hash of a DataFrame's column names, dtypes and values (row order included)."""
    h = hashlib.sha256()
    h.update(json.dumps([str(c) for c in frame.columns]).encode())
    h.update(json.dumps([str(t) for t in frame.dtypes]).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


def dataset_key(parts: dict) -> str:
    """Cache key of a read: a hash of ``parts`` (JSON-able) and :data:`CACHE_FORMAT`."""
    text = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]


def entry_path(key: str, kind: str = "dataset") -> Path:
    return cache_dir() / "datasets" / f"{kind}-{key}.npz"


def load_dataset(key: str, kind: str = "dataset") -> IrregularDataset | None:
    """The cached dataset under ``key``, or ``None`` (missing or unreadable: logged)."""
    path = entry_path(key, kind)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop(_META_KEY)))
        ds = IrregularDataset.from_arrays(arrays, meta)
    except Exception as exc:  # noqa: BLE001 - any damage means "not cached"
        log.warning("ignoring unreadable cache file %s (%s: %s); reading the input again", path, type(exc).__name__, exc)
        return None
    log.debug("read %s from cache %s", meta.get("path", "dataset"), path)
    return ds


def save_dataset(key: str, ds: IrregularDataset, kind: str = "dataset") -> Path | None:
    """Store ``ds`` under ``key`` (temp file + rename). Returns the path, or ``None`` if not writable."""
    path = entry_path(key, kind)
    try:
        arrays = ds.to_arrays()
        arrays[_META_KEY] = np.array(json.dumps(ds.meta, default=str))

        def write(tmp):
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        return atomic_write(path, write)
    except OSError as exc:
        log.warning("could not write the dataset cache %s (%s); continuing without it", path, exc)
        return None
