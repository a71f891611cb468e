"""The raw PhysioNet/CinC Challenge 2012 stay files: one ``Time,Parameter,Value`` file per ICU stay.

Each file starts with the header ``Time,Parameter,Value``; ``Time`` is ``HH:MM`` since ICU
admission (hours may exceed 24); the first rows (at ``00:00``) are ``RecordID``, ``Age``,
``Gender``, ``Height``, ``ICUType`` and ``Weight``; ``-1`` means unknown. The files come as a
folder or a ``.tar.gz`` (the challenge's ``set-a.tar.gz``), or a single stay file.

:func:`parse_stays` turns all files into flat row arrays in one vectorised pass: the files'
bodies are joined into one buffer, checked with numpy (two commas and one colon per line,
colon before the first comma), and parsed by pandas' C reader with the colon read as a
field separator. Anything irregular (blank lines, quotes, a bad number, a bad time) sends
the parse to a line-by-line reader that either handles it or raises a :class:`DataError`
naming the file (``archive.tar.gz:member``), the line and the column.
"""
from __future__ import annotations

import csv
import io
import logging
import math
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from grud.data.text_tables import EMPTY_SPELLINGS, EMPTY_WORDS, FLOAT32_MAX
from grud.errors import DataError

log = logging.getLogger(__name__)

HEADER = "Time,Parameter,Value"
RECORD_ID = "RecordID"
_TIME = re.compile(r"^(\d+):([0-5]?\d)$")
_RECORD_ROW = re.compile(rb"^[^,\n]*,[ \t]*RecordID[ \t]*,[ \t]*([^\r\n]*?)[ \t]*\r?$", re.M)
_SUFFIXES = (".txt", ".csv")


@dataclass
class StayRows:
    """All rows of all stay files, flat.

    ``files``/``record_ids`` have one entry per file (RecordID as written, else the file
    stem); ``row_file`` (N,) indexes them; ``hours`` (N,) is the time since admission;
    ``codes`` (N,) index ``parameters``; ``values`` (N,) holds the numbers as written (NaN for an
    empty cell, ``-1`` kept; the ``RecordID`` rows hold NaN).
    """

    files: list[str]
    record_ids: list[str]
    row_file: np.ndarray
    hours: np.ndarray
    parameters: list[str]
    codes: np.ndarray
    values: np.ndarray


class StaySource:
    """A folder, a tar archive or a single stay file; ``fingerprint`` hashes its content."""

    def __init__(self, path):
        self.path = Path(path)
        p = self.path
        if not p.exists():
            raise DataError("PhysioNet data not found: expected a folder or a .tar.gz of Time,Parameter,Value files", path=p)
        self._files: list[tuple[str, bytes]] | None = None
        self._raw: bytes | None = None
        if p.is_dir():
            self.kind = "folder"
        else:
            try:
                self._raw = p.read_bytes()
            except OSError as exc:
                raise DataError(f"cannot read: {exc.strerror or exc}", path=p) from None
            self.kind = "tar" if _looks_like_tar(self._raw) else "file"

    @property
    def fingerprint(self) -> str:
        from grud.data.cache import hash_bytes, hash_files

        if self._raw is not None:
            return hash_bytes(self._raw)
        return hash_files(self.files())

    def files(self) -> list[tuple[str, bytes]]:
        """(display name, bytes) of every stay file, sorted by name."""
        if self._files is None:
            self._files = self._load()
            if not self._files:
                raise DataError(
                    f"no stay files found (expected files ending in {' or '.join(_SUFFIXES)})", path=self.path
                )
        return self._files

    def _load(self) -> list[tuple[str, bytes]]:
        p = self.path
        if self.kind == "file":
            return [(str(p), self._raw)]
        out = []
        if self.kind == "folder":
            for f in sorted(p.iterdir()):
                if f.is_file() and _is_stay_name(f.name):
                    try:
                        out.append((str(f), f.read_bytes()))
                    except OSError as exc:
                        raise DataError(f"cannot read: {exc.strerror or exc}", path=f) from None
            return out
        try:
            with tarfile.open(fileobj=io.BytesIO(self._raw), mode="r:*") as tf:
                for m in tf:
                    if m.isfile() and _is_stay_name(PurePosixPath(m.name).name):
                        out.append((f"{p}:{m.name}", tf.extractfile(m).read()))
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            raise DataError(f"cannot read the archive: {exc}", path=p) from None
        out.sort(key=lambda x: x[0])
        return out


def _looks_like_tar(raw: bytes) -> bool:
    if raw[:2] == b"\x1f\x8b" or raw[:3] == b"BZh" or raw[:6] == b"\xfd7zXZ\x00":
        return True
    return len(raw) > 262 and raw[257:262] == b"ustar"


def _is_stay_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(_SUFFIXES)


def _split_header(name: str, raw: bytes) -> bytes:
    """The body (after the header line) of one stay file, ending in a newline."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if not raw.strip():
        raise DataError(f"empty file: expected the header {HEADER!r} and rows", path=name)
    nl = raw.find(b"\n")
    header = raw if nl < 0 else raw[:nl]
    if header.decode("utf-8", errors="replace").replace(" ", "").strip() != HEADER:
        got = header.decode("utf-8", errors="replace").strip()[:80]
        raise DataError(f"expected the header {HEADER!r}, got {got!r}", path=name, line=1)
    body = b"" if nl < 0 else raw[nl + 1 :]
    if body and not body.endswith(b"\n"):
        body += b"\n"
    return body


def parse_stays(files: list[tuple[str, bytes]], latest_hours: float = math.inf) -> StayRows:
    """Parse every stay file (see the module docstring). Raises :class:`DataError` on bad input,
    naming the stay file and line: among it a value beyond float32's range (it would be stored as
    inf) and a row more than ``latest_hours`` after admission (the reader's span limit)."""
    names = [n for n, _ in files]
    bodies = [_split_header(n, raw) for n, raw in files]
    rows = _parse_fast(names, bodies, latest_hours)
    if rows is None:
        rows = _parse_slow(names, bodies, latest_hours)
    return rows


def _record_id(name: str, body: bytes) -> str:
    m = _RECORD_ROW.search(body)
    rid = m.group(1).decode("utf-8", errors="replace").strip() if m else ""
    if not rid:
        rid = PurePosixPath(name.replace("\\", "/")).stem
        log.warning("%s: no RecordID row; using the file name %r as the id", name, rid)
    return rid


def _parse_fast(names: list[str], bodies: list[bytes], latest_hours: float) -> StayRows | None:
    counts = np.array([b.count(b"\n") for b in bodies], dtype=np.int64)
    buf = b"".join(bodies)
    n = int(counts.sum())
    if n == 0:
        return _empty_rows(names, bodies)
    if b'"' in buf:
        return None
    arr = np.frombuffer(buf, dtype=np.uint8)
    ends = np.flatnonzero(arr == 10)
    starts = np.concatenate([[0], ends[:-1] + 1])
    commas = np.flatnonzero(arr == 44)
    colons = np.flatnonzero(arr == 58)
    ncomma = np.searchsorted(commas, ends) - np.searchsorted(commas, starts)
    ncolon = np.searchsorted(colons, ends) - np.searchsorted(colons, starts)
    if not ((ncomma == 2).all() and (ncolon == 1).all() and (colons < commas[0::2]).all()):
        return None
    try:
        df = pd.read_csv(
            io.BytesIO(buf.replace(b":", b",")),
            header=None,
            names=["H", "M", "P", "V"],
            dtype={"H": "int64", "M": "int64", "P": str, "V": "float64"},
            keep_default_na=False,
            na_values={"V": EMPTY_SPELLINGS},
            skip_blank_lines=False,
            encoding="utf-8",
            engine="c",
        )
    except (ValueError, OverflowError, pd.errors.ParserError):  # UnicodeDecodeError included: the slow reader reads Latin-1
        return None  # a bad number or time: the slow reader names the line
    if len(df) != n:
        return None
    H, M = df["H"].to_numpy(), df["M"].to_numpy()
    values = df["V"].to_numpy(dtype=np.float64, copy=True)
    if (H < 0).any() or (M < 0).any() or (M >= 60).any() or (np.abs(values) > FLOAT32_MAX).any():
        return None  # the slow reader names the line (NaN compares False; inf is beyond the range)
    hours = H.astype(np.float64) + M.astype(np.float64) / 60.0
    if (hours > latest_hours).any():
        return None
    codes, uniques = pd.factorize(df["P"], use_na_sentinel=True)
    params = [str(u).strip() for u in uniques]
    if (codes < 0).any() or any(p == "" for p in params):
        return None
    if len(set(params)) != len(params):  # " HR" and "HR": merge the spellings
        canon, inv = np.unique(params, return_inverse=True)
        codes, params = inv[codes], list(canon)
    params, codes = _sorted_codes(params, codes)
    record_ids = [_record_id(nm, b) for nm, b in zip(names, bodies)]
    if RECORD_ID in params:
        values[codes == params.index(RECORD_ID)] = np.nan
    return StayRows(
        files=names,
        record_ids=record_ids,
        row_file=np.repeat(np.arange(len(names), dtype=np.int64), counts),
        hours=hours,
        parameters=params,
        codes=codes.astype(np.int64),
        values=values,
    )


def _sorted_codes(params: list[str], codes: np.ndarray) -> tuple[list[str], np.ndarray]:
    order = sorted(range(len(params)), key=lambda i: params[i])
    remap = np.empty(len(params), dtype=np.int64)
    remap[order] = np.arange(len(params))
    return [params[i] for i in order], remap[codes] if len(codes) else codes.astype(np.int64)


def _empty_rows(names, bodies) -> StayRows:
    return StayRows(
        names, [_record_id(nm, b) for nm, b in zip(names, bodies)], np.zeros(0, np.int64), np.zeros(0),
        [], np.zeros(0, np.int64), np.zeros(0),
    )


def _parse_slow(names: list[str], bodies: list[bytes], latest_hours: float) -> StayRows:
    row_file, hours, params, values = [], [], [], []
    record_ids = []
    for fi, (name, body) in enumerate(zip(names, bodies)):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = body.decode("latin-1")
        rid = ""
        for ln, line in enumerate(text.splitlines(), start=2):
            if not line.strip():
                continue
            rec = next(csv.reader([line]))
            if len(rec) != 3:
                raise DataError(f"expected 3 fields (Time,Parameter,Value), found {len(rec)}", path=name, line=ln)
            t, p, v = (x.strip() for x in rec)
            m = _TIME.match(t)
            if not m:
                raise DataError(
                    f"expected a time HH:MM since ICU admission, got {t!r}", path=name, line=ln, column="Time"
                )
            if not p:
                raise DataError("empty parameter name", path=name, line=ln, column="Parameter")
            if p == RECORD_ID:
                rid = rid or v
                val = np.nan
            elif v.lower() in EMPTY_WORDS:
                val = np.nan
            else:
                try:
                    val = float(v)
                except ValueError:
                    raise DataError(f"expected a number, got {v!r}", path=name, line=ln, column="Value") from None
                if np.isinf(val):
                    raise DataError(
                        f"infinite value {v!r}: expected a finite number (leave the cell empty for a missing value)",
                        path=name, line=ln, column="Value",
                    )
                if abs(val) > FLOAT32_MAX:
                    raise DataError(f"value {v!r} of {p!r} is too large: expected a number within "
                                    f"±{FLOAT32_MAX:.1e} (measurements are stored as float32)",
                                    path=name, line=ln, column="Value")
            h = int(m.group(1)) + int(m.group(2)) / 60.0
            if h > latest_hours:
                raise DataError(f"this {p!r} row is {h:.4g} hours after ICU admission; a stay may span at most "
                                f"{latest_hours:.0e} hours: a corrupt time, or set max_hours",
                                path=name, line=ln, column="Time")
            row_file.append(fi)
            hours.append(h)
            params.append(p)
            values.append(val)
        if not rid:
            rid = PurePosixPath(name.replace("\\", "/")).stem
            log.warning("%s: no RecordID row; using the file name %r as the id", name, rid)
        record_ids.append(rid)
    codes, uniques = pd.factorize(pd.Series(params, dtype=object))
    plist, codes = _sorted_codes([str(u) for u in uniques], np.asarray(codes, dtype=np.int64))
    return StayRows(
        files=names,
        record_ids=record_ids,
        row_file=np.asarray(row_file, dtype=np.int64),
        hours=np.asarray(hours, dtype=np.float64),
        parameters=plist,
        codes=codes,
        values=np.asarray(values, dtype=np.float64),
    )
