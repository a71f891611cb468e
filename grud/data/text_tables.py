"""Delimited text files written by people and spreadsheets: decoding, delimiters, numbers.

The readers in :mod:`grud.data.readers` load every user table (data, labels, value-range
tables) through :func:`load_text_table`, so all of them share these rules:

* **Encoding.** UTF-8 (a leading byte-order mark is removed); UTF-16 when the file starts
  with a UTF-16 byte-order mark (Excel's "Unicode text"); otherwise the bytes are read as
  Latin-1 (every byte is a character there, so old Windows exports still open; an INFO log
  line says so). A file holding NUL bytes or mostly control characters is refused as binary.
* **Delimiter.** Given, or sniffed from the header among ``,`` ``;`` tab and ``|``.
* **Lines.** The header is line 1. Blank lines are skipped. A line with more or fewer fields
  than the header is an error naming the line. Lines may end in LF, CRLF or (old Mac
  exports) a lone CR.
* **Numbers.** An empty cell and the words ``nan``, ``NA``, ``N/A``, ``null``, ``none`` (any
  case) mean "not observed". ``inf``/``-inf``/``infinity`` are refused: an infinite
  measurement is always a mistake, and writing it as empty states the intent. So is a
  measurement beyond the float32 range (about ±3.4e38, :data:`FLOAT32_MAX`; measurements are
  stored as float32). ``TRUE``/``FALSE`` (any case, as spreadsheets write booleans) read as
  1 and 0.
"""
from __future__ import annotations

import csv
import io
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from grud.errors import ConfigError, DataError

log = logging.getLogger(__name__)

#: Cell contents that mean "no value" (compared case-insensitively, after stripping blanks).
EMPTY_WORDS = ("", "nan", "na", "n/a", "null", "none")
#: The same words in the spellings pandas is told about (pandas compares exactly).
EMPTY_SPELLINGS = sorted(
    {w for word in EMPTY_WORDS for w in (word, word.upper(), word.capitalize(), word.title())}
)
DELIMITER_CANDIDATES = (",", ";", "\t", "|")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
#: The largest magnitude a measurement may have (values are stored as float32).
FLOAT32_MAX = float(np.finfo(np.float32).max)
_BOOLEANS = {"true": 1.0, "false": 0.0}
_INK = re.compile(rb"\S")
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")
#: a value an export capped (an age of "> 89", a lab below its detection limit "<0.3")
CAPPED_VALUE = re.compile(r"^[<>]=?\s*[+-]?(\d+\.?\d*|\.\d+)$")
CAPPED_HINT = ("a value capped by the export: replace it by a number, such as its limit (90 for '> 89', 0.3 for "
               "'<0.3'), before reading")


def closest_name(name: str, names) -> str | None:
    """The name in ``names`` that ``name`` most likely misspells (case ignored first), or None."""
    import difflib

    names = [str(n) for n in names]
    lower = {n.lower(): n for n in names}
    if name.lower() in lower:
        return lower[name.lower()]
    close = difflib.get_close_matches(name.lower(), list(lower), n=1, cutoff=0.6)
    return lower[close[0]] if close else None


@dataclass
class TextTable:
    """A decoded delimited file, not yet parsed into columns.

    ``data`` is the UTF-8 text without byte-order mark; ``columns`` the header names (blanks
    stripped); ``row_lines`` maps data row ``i`` (as pandas counts them, blank lines included)
    to its 1-based line in the file, or is ``None`` when that is simply ``i + 2``.
    """

    path: str
    data: bytes
    delimiter: str
    columns: list[str]
    row_lines: np.ndarray | None = field(default=None, repr=False)

    def line_of(self, rows) -> np.ndarray:
        """1-based file line of each data row index in ``rows``."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.row_lines is None:
            return rows + 2
        return self.row_lines[rows]

    def require(self, names, what: str = "column") -> None:
        """Raise :class:`DataError` naming the first of ``names`` that is not in the header."""
        for name in names:
            if name not in self.columns:
                close = closest_name(str(name), [str(c) for c in self.columns])
                hint = f" (did you mean {close!r}?)" if close else ""
                raise DataError(
                    f"missing {what} {name!r}{hint}; the header has: {', '.join(map(repr, self.columns))}"
                    f" (delimiter: {_DELIMITER_NAMES.get(self.delimiter, repr(self.delimiter))})",
                    path=self.path,
                    line=1,
                    column=name,
                )

    def read_columns(self, columns: list[str], dtypes: dict | None = None) -> pd.DataFrame:
        """The named columns as a DataFrame (string columns unless ``dtypes`` says otherwise).

        Row ``i`` of the result is file line ``line_of(i)``; blank lines come back as rows
        of missing values (callers drop them), so the numbering stays exact. ``"category"``
        reads a text column as written, like a string column, but stores each distinct text
        once (ids and variable names of a big file).
        """
        dtypes = dict(dtypes or {})
        pos = {c: self.columns.index(c) for c in columns}
        # string (and category) columns keep every cell as written ("" when empty); typed columns
        # (a dtype, or None = let pandas infer) treat only our empty words as missing
        dtype = {pos[c]: (str if dtypes.get(c, str) == "category" else dtypes.get(c, str))
                 for c in columns if dtypes.get(c, str) is not None}
        na_values = {pos[c]: EMPTY_SPELLINGS for c in columns if c in dtypes and dtypes[c] != "category"}
        try:
            frame = self._read_csv(pos, dtype, na_values)
        except pd.errors.ParserError as exc:  # checked above, so rare: report it without a traceback
            text = str(exc)
            quote = re.search(r"EOF inside string starting at row (\d+)", text)
            if quote:  # pandas counts rows from 0 at the header: row r is file line r + 1
                raise DataError("cannot parse the file: a quote (\") opened here is never closed", path=self.path,
                                line=int(quote.group(1)) + 1) from None
            m = re.search(r"line (\d+)", text)
            line = int(m.group(1)) if m else None
            raise DataError(f"cannot parse the file: {text.splitlines()[-1]}", path=self.path, line=line) from None
        frame.columns = [self.columns[i] for i in frame.columns]
        categorical = [c for c in columns if dtypes.get(c) == "category"]
        if categorical:
            # parsed as text (pandas' own category parsing would turn "007" into 7), then stored once per value
            for c in categorical:
                frame[c] = frame[c].astype("category")
            release_unused_memory()
        return frame[columns]

    def _read_csv(self, pos: dict, dtype: dict, na_values: dict) -> pd.DataFrame:
        return pd.read_csv(
            io.BytesIO(self.data),
            sep=self.delimiter,
            header=None,
            skiprows=1,
            names=list(range(len(self.columns))),
            usecols=sorted(pos.values()),
            dtype=dtype,
            keep_default_na=False,
            na_values=na_values or None,
            skip_blank_lines=False,
            encoding="utf-8",
            engine="c",
        )


def read_source_bytes(path, what: str = "file") -> bytes:
    """All bytes of ``path``; a missing file or folder is a :class:`DataError`."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{what} not found", path=p)
    if p.is_dir():
        raise DataError(f"expected a {what}, got a folder", path=p)
    try:
        return p.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {what}: {exc.strerror or exc}", path=p) from None


def decode_text(raw: bytes, path) -> bytes:
    """UTF-8 bytes of ``raw`` (see the module docstring for the encodings tried)."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    elif raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            raise DataError("starts with a UTF-16 byte-order mark but is not valid UTF-16", path=path) from None
    head = raw[:65536]
    if b"\x00" in head or _control_fraction(head) > 0.1:
        raise DataError("binary content: expected a text file (CSV/TSV)", path=path)
    try:
        raw.decode("utf-8")
        return raw
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        log.info("%s: not UTF-8 (first at line %d); read as Latin-1", path, line)
        return raw.decode("latin-1").encode("utf-8")


def _control_fraction(head: bytes) -> float:
    if not head:
        return 0.0
    arr = np.frombuffer(head, dtype=np.uint8)
    ctrl = (arr < 32) & (arr != 9) & (arr != 10) & (arr != 13)
    return float(ctrl.mean())


def sniff_delimiter(header: str, sample: list[str]) -> str:
    """The candidate that splits the header most often and consistently over ``sample``."""
    best, best_score = ",", (-1, -1)
    for cand in DELIMITER_CANDIDATES:
        n = header.count(cand)
        if n == 0:
            continue
        consistent = sum(line.count(cand) == n for line in sample)
        score = (consistent, n)
        if score > best_score:
            best, best_score = cand, score
    return best


def check_delimiter(delimiter) -> str | None:
    """Validate a user-given delimiter (``"tab"`` and ``"\\t"`` mean a tab)."""
    if delimiter is None:
        return None
    if isinstance(delimiter, str) and delimiter.lower() in ("tab", "\\t"):
        return "\t"
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\n\r\"":
        raise ConfigError(f"delimiter: expected one character such as ',', ';', '\\t' or '|', got {delimiter!r}")
    return delimiter


def load_text_table(raw: bytes, path, delimiter: str | None = None) -> TextTable:
    """Decode ``raw``, find the delimiter and header, and check every line's field count.

    Raises :class:`DataError` for an empty file, a header without rows ("no rows"), binary
    content, duplicate header names and ragged lines.
    """
    path = str(path)
    delimiter = check_delimiter(delimiter)
    if not _INK.search(raw):
        raise DataError("empty file: expected a header line and rows", path=path)
    data = decode_text(raw, path)
    if b"\n" not in data and b"\r" in data:  # lone-CR line ends (classic Mac OS exports)
        data = data.replace(b"\r", b"\n")
    text_head = data[:65536].decode("utf-8", errors="replace")
    lines = text_head.splitlines()
    header_line = lines[0] if lines else ""
    if not header_line.strip():
        raise DataError("empty header: expected column names on the first line", path=path, line=1)
    if delimiter is None:
        delimiter = sniff_delimiter(header_line, [ln for ln in lines[1:51] if ln.strip()])
    columns = [c.strip() for c in next(csv.reader([header_line], delimiter=delimiter))]
    seen = set()
    for c in columns:
        if c in seen and c:
            raise DataError(f"column {c!r} appears twice in the header", path=path, line=1, column=c)
        seen.add(c)
    body_start = data.find(b"\n")
    if body_start < 0 or not _INK.search(data, body_start + 1):
        raise DataError("no rows: the file holds only a header", path=path)
    table = TextTable(path, data, delimiter, columns)
    table.row_lines = _check_field_counts(table)
    return table


def _check_field_counts(table: TextTable) -> np.ndarray | None:
    """Raise on the first line whose field count differs from the header's.

    Returns the row -> line map when quoted fields make it irregular, else ``None``.
    """
    k = len(table.columns)
    data, d = table.data, table.delimiter
    if b'"' not in data:
        arr = np.frombuffer(data, dtype=np.uint8)
        first_line = 1
        # blocks of whole lines bound the memory of the index arrays on big files
        for a, b in _line_blocks(data, _BLOCK_BYTES):
            block = arr[a:b]
            ends = np.flatnonzero(block == 10)
            if len(block) and block[-1] != 10:
                ends = np.append(ends, len(block))
            starts = np.concatenate([[0], ends[:-1] + 1])
            seps = np.flatnonzero(block == ord(d))
            nsep = np.searchsorted(seps, ends) - np.searchsorted(seps, starts)
            for i in np.flatnonzero(nsep + 1 != k):  # line 1 is the header; blank lines are fine
                line = data[a + starts[i] : a + ends[i]]
                if first_line + i == 1 or not line.strip(b" \r\t" if d != "\t" else b" \r"):
                    continue
                if d == "\t" and not line.strip(b" \r\t"):
                    continue
                raise DataError(
                    f"expected {k} fields as in the header, found {int(nsep[i]) + 1}",
                    path=table.path,
                    line=first_line + int(i),
                )
            first_line += len(ends)
        return None
    # quoted fields (possibly spanning lines): let the csv module count
    reader = csv.reader(io.StringIO(table.data.decode("utf-8")), delimiter=d)
    lines = []
    prev_end = 0
    records = iter(reader)
    while True:
        try:
            rec = next(records)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a lone carriage return inside an unquoted field
            what = ("a carriage return (\\r) that does not end the line, inside an unquoted field"
                    if "new-line character" in str(exc) else str(exc))
            raise DataError(f"cannot parse the file: {what}", path=table.path, line=reader.line_num) from None
        start = prev_end + 1
        prev_end = reader.line_num
        if start == 1:
            continue
        lines.append(start)
        if rec and any(f.strip() for f in rec) and len(rec) != k:
            raise DataError(f"expected {k} fields as in the header, found {len(rec)}", path=table.path, line=start)
    return np.asarray(lines, dtype=np.int64)


_BLOCK_BYTES = 32 << 20


def release_unused_memory() -> None:
    """Hand memory that pandas' Arrow-backed strings freed back to the system.

    Arrow's allocator keeps freed blocks for reuse by Arrow only; on a big file the text
    columns' blocks would otherwise stay in the process while numpy needs new memory.
    """
    try:
        import pyarrow
    except ImportError:  # pandas without pyarrow: nothing is held
        return
    pyarrow.default_memory_pool().release_unused()


def _line_blocks(data: bytes, size: int):
    """(start, end) byte ranges of about ``size`` bytes that end after a newline (or at the end)."""
    a, n = 0, len(data)
    while a < n:
        b = data.find(b"\n", min(a + size, n) - 1)
        b = n if b < 0 else b + 1
        yield a, b
        a = b


def is_empty_cell(strings: pd.Series) -> np.ndarray:
    """(N,) True where a string cell means "no value" (see :data:`EMPTY_WORDS`)."""
    s = strings.astype(str).str.strip().str.lower()
    return s.isin(EMPTY_WORDS).to_numpy() | strings.isna().to_numpy()


def read_numbers(strings: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(nums, unparsed)`` of a string column: (N,) float64 with empty words (and what does not
    parse) as NaN, TRUE / FALSE as 1 / 0 (as pandas' typed parser reads them), and (N,) True where
    a cell is neither empty nor a number."""
    stripped = strings.astype(str).str.strip()
    empty = is_empty_cell(strings)
    nums = np.array(pd.to_numeric(stripped.where(~empty, None), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan))
    unparsed = np.isnan(nums) & ~empty
    if unparsed.any():
        words = stripped[unparsed].str.lower().map(_BOOLEANS)
        nums[np.flatnonzero(unparsed)] = words.to_numpy(dtype=np.float64, na_value=np.nan)
    return nums, np.isnan(nums) & ~empty


def parse_numbers(strings: pd.Series, table_path: str, column: str, lines: np.ndarray) -> np.ndarray:
    """(N,) float64 of a string column (:func:`read_numbers`); anything but an empty word or a
    finite number is a DataError.

    ``lines`` gives each entry's file line for the error message.
    """
    nums, unparsed = read_numbers(strings)
    bad = np.flatnonzero(unparsed)
    if len(bad):
        i = int(bad[0])
        got = str(strings.iloc[i]).strip()
        hint = (" (a decimal comma? write 3.5, not 3,5)" if _DECIMAL_COMMA.match(got)
                else f" ({CAPPED_HINT})" if CAPPED_VALUE.match(got) else "")
        raise DataError(f"expected a number, got {got!r}{hint}", path=table_path, line=int(lines[i]), column=column)
    check_finite(nums, table_path, column, lines)
    return nums


def check_finite(nums: np.ndarray, table_path: str, column: str, lines: np.ndarray) -> None:
    """Raise on the first infinite entry of ``nums`` (NaN is fine: it means unobserved)."""
    inf = np.flatnonzero(np.isinf(nums))
    if len(inf):
        i = int(inf[0])
        raise DataError(
            f"infinite value {float(nums[i])!r}: expected a finite number (leave the cell empty for a missing value)",
            path=table_path,
            line=int(lines[i]),
            column=column,
        )


def check_float32_range(nums: np.ndarray, table_path: str, column: str, lines: np.ndarray) -> None:
    """Raise on the first entry of ``nums`` beyond ±:data:`FLOAT32_MAX` (it would be stored as inf)."""
    with np.errstate(invalid="ignore"):
        big = np.flatnonzero(np.abs(nums) > FLOAT32_MAX)
    if len(big):
        i = int(big[0])
        raise DataError(
            f"value {float(nums[i]):g} is too large: expected a number within ±{FLOAT32_MAX:.1e} "
            "(measurements are stored as float32)",
            path=table_path,
            line=int(lines[i]),
            column=column,
        )
