"""Hostile input, property-based: random and adversarial files through the readers and the CLI.

Each generated file either reads to the dataset its documented semantics give (the same
dataset as a plain UTF-8 comma-separated rendering of the same rows, for encodings,
delimiters, line ends, quoting, duplicates, extra columns, ...) or raises :class:`grud.DataError`
whose message says what was expected and names the file, line and column of the fault. At the
command line, grud-predict writes the predictions of exactly the series the reader finds, or
prints one ``error:`` line equal to the reader's message.
"""
from __future__ import annotations

import csv
import io
import os
import random
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from grud import DataError
from grud.data import read_long_csv, read_physionet2012, read_wide_csv
from grud.data.readers import MAX_SPAN_HOURS, read_label_table
from tests.conftest import make_long_csv

COLUMNS = ["id", "time", "variable", "value"]
NAN_WORDS = ["NaN", "nan", "NA", "N/A", "null", "NULL", "None", "none"]

# ids with delimiters, quotes, spaces and Latin-1 letters; integer-looking ids too
ID_ALPHABET = list("abcXYZ,;|\"' é-_0123")
ids = st.one_of(
    st.integers(0, 10**6).map(str),
    st.text(alphabet=ID_ALPHABET, min_size=1, max_size=8).filter(lambda s: s.strip() != ""),
)
variables = st.sampled_from(["HR", "MAP", "Température", "SpO2 (%)", "a,b", 'q"x'])
values = st.one_of(st.none(), st.integers(-1000, 1000), st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: round(x, 3)))
times = st.integers(0, 2000).map(lambda x: x / 8)
rows_strategy = st.lists(st.tuples(ids, times, variables, values), min_size=1, max_size=30)


def render(rows, header=COLUMNS, delimiter=",", order=(0, 1, 2, 3), extra=None, lineterminator="\n") -> str:
    """The rows as delimited text (csv quoting), columns in ``order``, optional extra column."""
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator=lineterminator)
    w.writerow([header[i] for i in order] + (["note"] if extra else []))
    for k, r in enumerate(rows):
        cells = [r[0], _num(r[1]), r[2], "" if r[3] is None else _num(r[3])]
        w.writerow([cells[i] for i in order] + ([extra[k % len(extra)]] if extra else []))
    return buf.getvalue()


def _num(x) -> str:
    return str(x) if not isinstance(x, float) or not x.is_integer() else str(int(x))


def reference(rows) -> dict:
    """{id: (step times, {(step, variable): mean})} by the readers' documented semantics."""
    out = {}
    by_id: dict = {}
    for i, t, v, x in rows:
        by_id.setdefault(i.strip(), []).append((t, v, x))
    for sid, mine in by_id.items():
        t0 = min(t for t, _, _ in mine)
        cells: dict = {}
        for t, v, x in mine:
            if x is not None:
                cells.setdefault((t - t0, v), []).append(float(x))
        out[sid] = (sorted({t for t, _ in cells}), {k: np.mean(v) for k, v in cells.items()})
    return out


def assert_matches_reference(ds, rows) -> None:
    ref = reference(rows)
    assert sorted(ds.ids) == sorted(ref)
    assert ds.variables == sorted({v for _, _, v, _ in rows})
    for k, sid in enumerate(ds.ids):
        steps, cells = ref[sid]
        s = ds[k]
        np.testing.assert_array_equal(s.times, steps)
        for j, var in enumerate(ds.variables):
            expect = [cells.get((t, var), np.nan) for t in steps]
            np.testing.assert_allclose(s.values[:, j], np.float32(expect), rtol=1e-6)


def assert_same(a, b) -> None:
    assert a.ids == b.ids and a.variables == b.variables
    np.testing.assert_array_equal(a.offsets, b.offsets)
    np.testing.assert_array_equal(a.times, b.times)
    np.testing.assert_array_equal(a.values, b.values)


def assert_error(exc: DataError, path, *fragments, line=None, column=None) -> None:
    """The message names the file (and line/column when given) and holds every fragment."""
    msg = str(exc)
    assert msg.startswith(str(path)), msg
    assert exc.path == str(path)
    if line is not None:
        assert exc.line == line and f"line {line}" in msg, (exc.line, msg)
    if column is not None:
        assert exc.column == column and f"column {column!r}" in msg, (exc.column, msg)
    for f in fragments:
        assert f in msg, (f, msg)


# ====================================================================== the hostile variants
# Each variant: (rows, draw) -> (bytes, reader keyword arguments, expectation). An expectation is
# ("same",) = the dataset of the plain rendering, ("reads", check) = reads and check(ds) holds,
# or ("error", fragments, line, column).

def v_plain(rows, draw):
    return render(rows).encode(), {}, ("same",)


def v_bom(rows, draw):
    return b"\xef\xbb\xbf" + render(rows).encode(), {}, ("same",)


def v_utf16(rows, draw):
    return render(rows).encode("utf-16"), {}, ("same",)


def v_latin1(rows, draw):
    return render(rows).encode("latin-1"), {}, ("same",)


def v_delimiter(rows, draw):
    d = draw(st.sampled_from([";", "\t", "|"]))
    given = draw(st.booleans())
    return render(rows, delimiter=d).encode(), ({"delimiter": d} if given else {}), ("same",)


def v_line_ends(rows, draw):
    end = draw(st.sampled_from(["\r\n", "\r"]))
    return render(rows, lineterminator=end).encode(), {}, ("same",)


def v_blank_lines(rows, draw):
    lines = render(rows).splitlines(keepends=True)
    k = draw(st.integers(1, len(lines)))
    return "".join(lines[:k] + ["\n", "   \n"] + lines[k:]).encode(), {}, ("same",)


def v_duplicated_and_shuffled(rows, draw):
    doubled = list(rows) + list(rows)
    random.Random(draw(st.integers(0, 99))).shuffle(doubled)
    return render(doubled).encode(), {}, ("same",)


def v_extra_and_reordered_columns(rows, draw):
    order = draw(st.permutations([0, 1, 2, 3]))
    notes = draw(st.lists(st.text(alphabet=list('ab ,;"\t\'|x'), max_size=6), min_size=1, max_size=3))
    return render(rows, order=tuple(order), extra=notes).encode(), {}, ("same",)


def v_renamed_columns(rows, draw):
    header = ["Patient ID", "charttime", "label", "valuenum"]
    kw = dict(zip(["id_column", "time_column", "variable_column", "value_column"], header))
    return render(rows, header=header).encode(), kw, ("same",)


def v_nan_words(rows, draw):
    lines = render(rows).splitlines()
    word = draw(st.sampled_from(NAN_WORDS))
    out = [lines[0]] + [ln + word if ln.endswith(",") else ln for ln in lines[1:]]
    return ("\n".join(out) + "\n").encode(), {}, ("same",)


def v_huge_id(rows, draw):
    big = "x" * 100_000
    rows = [(big, *rows[0][1:])] + list(rows[1:])
    return render(rows).encode(), {}, ("reads", lambda ds: big in ds.ids)


def _rewrite(text: str, edit, delimiter=",") -> str:
    """``text`` with ``edit(fields)`` applied to every parsed line, written back with csv quoting."""
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="\n").writerows(
        edit(r) for r in csv.reader(io.StringIO(text), delimiter=delimiter))
    return buf.getvalue()


def v_missing_column(rows, draw):
    text = _rewrite(render(rows), lambda r: r[:3])
    return text.encode(), {}, ("error", ["missing column 'value'", "the header has: 'id', 'time', 'variable'"], 1,
                               "value")


def v_binary(rows, draw):
    junk = draw(st.binary(min_size=1, max_size=200))
    return b"\x00" + junk, {}, ("error", ["binary content: expected a text file"], None, None)


def v_empty(rows, draw):
    return draw(st.sampled_from([b"", b" ", b"\n\n", b"\t \r\n"])), {}, ("error", ["empty file: expected a header"],
                                                                        None, None)


def v_header_only(rows, draw):
    return ("id,time,variable,value" + draw(st.sampled_from(["", "\n", "\n\n  \n"]))).encode(), {}, (
        "error", ["no rows"], None, None)


def v_ragged(rows, draw):
    k = draw(st.integers(0, len(rows) - 1))
    lines = render(rows).splitlines()
    lines[k + 1] += ",surplus"
    return ("\n".join(lines) + "\n").encode(), {}, ("error", ["expected 4 fields as in the header, found 5"], k + 2,
                                                     None)


def _with_cell(rows, k, col, text):
    cells = [list(r) for r in csv.reader(io.StringIO(render(rows)))]
    cells[k + 1][col] = text
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(cells)
    return buf.getvalue().encode()


def v_not_a_number(rows, draw):
    k = draw(st.integers(0, len(rows) - 1))
    bad = draw(st.sampled_from(["abc", "12 mg", "1,5", "--", "0x1F", "1_000", "yes"]))
    return _with_cell(rows, k, 3, bad), {}, ("error", [f"expected a number, got {bad!r}"], k + 2, "value")


def v_infinite(rows, draw):
    k = draw(st.integers(0, len(rows) - 1))
    bad = draw(st.sampled_from(["inf", "-inf", "Infinity", "-INF"]))
    return _with_cell(rows, k, 3, bad), {}, ("error", ["infinite value", "expected a finite number"], k + 2, "value")


def v_too_large(rows, draw):
    k = draw(st.integers(0, len(rows) - 1))
    bad = draw(st.sampled_from(["1e39", "-3.5e38", "1e300"]))
    return _with_cell(rows, k, 3, bad), {}, ("error", ["too large", "expected a number within"], k + 2, "value")


def v_booleans(rows, draw):
    k = draw(st.integers(0, len(rows) - 1))
    word = draw(st.sampled_from(["TRUE", "false", "True"]))
    rows2 = list(rows)
    rows2[k] = (*rows[k][:3], 1.0 if word.lower() == "true" else 0.0)
    return _with_cell(rows, k, 3, word), {}, ("reads", lambda ds: _matches(ds, rows2))


def _matches(ds, rows) -> bool:
    assert_matches_reference(ds, rows)
    return True


def v_empty_id(rows, draw):
    k = draw(st.integers(0, len(rows) - 1))
    return _with_cell(rows, k, 0, draw(st.sampled_from(["", "  "]))), {}, ("error", ["empty id"], k + 2, "id")


def v_empty_time(rows, draw):
    k = draw(st.integers(0, len(rows) - 1))
    return _with_cell(rows, k, 1, draw(st.sampled_from(["", "NA"]))), {}, ("error", ["empty time"], k + 2, "time")


def v_impossible_time(rows, draw):
    k = draw(st.integers(0, len(rows) - 1))
    bad = draw(st.sampled_from(["25:99", "soon", "??", "12:3x"]))
    return _with_cell(rows, k, 1, bad), {}, (
        "error", [f"expected a number of hours (or a date-time, or H:MM), got {bad!r}"], k + 2, "time")


def v_huge_time(rows, draw):
    late = draw(st.sampled_from([2 * MAX_SPAN_HOURS, 1e12, 1e300]))
    rows2 = list(rows) + [(rows[0][0], late, "HR", 1)]
    return render(rows2).encode(), {}, ("error", ["a series may span at most", "time_unit"], len(rows2) + 1, "time")


VARIANTS = {f.__name__[2:]: f for f in (
    v_plain, v_bom, v_utf16, v_latin1, v_delimiter, v_line_ends, v_blank_lines, v_duplicated_and_shuffled,
    v_extra_and_reordered_columns, v_renamed_columns, v_nan_words, v_huge_id, v_booleans, v_missing_column,
    v_binary, v_empty, v_header_only, v_ragged, v_not_a_number, v_infinite, v_too_large, v_empty_id, v_empty_time,
    v_impossible_time, v_huge_time,
)}


def check_read(path: Path, kw: dict, expectation, rows):
    """Read ``path`` and hold the outcome against ``expectation``; returns the dataset or the error."""
    if expectation[0] == "error":
        _, fragments, line, column = expectation
        with pytest.raises(DataError) as info:
            read_long_csv(path, cache=False, **kw)
        assert_error(info.value, path, *fragments, line=line, column=column)
        return info.value
    ds = read_long_csv(path, cache=False, **kw)
    if expectation[0] == "same":
        assert_matches_reference(ds, rows)
    else:
        assert expectation[1](ds)
    return ds


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_strategy, variant=st.sampled_from(sorted(VARIANTS)), data=st.data())
@example(rows=[("p1", 0.0, "HR", 80)], variant="plain", data=None)  # a single observation
@example(rows=[("a,\"b\"", 1.0, "HR", None)], variant="plain", data=None)  # no observed value at all
def test_long_reader_on_hostile_files(tmp_path, rows, variant, data):
    draw = data.draw if data is not None else None  # the explicit examples use variant "plain"
    raw, kw, expectation = VARIANTS[variant](rows, draw)
    path = tmp_path / "hostile.csv"
    path.write_bytes(raw)
    check_read(path, kw, expectation, rows)
    if expectation[0] == "same":  # and the plain rendering gives exactly the same arrays
        plain = tmp_path / "plain.csv"
        plain.write_text(render(rows), encoding="utf-8")
        assert_same(read_long_csv(path, cache=False, **kw), read_long_csv(plain, cache=False))


# ====================================================================== wide files
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_strategy, data=st.data())
def test_wide_reader_matches_long_or_names_the_bad_cell(tmp_path, rows, data):
    """The wide pivot of the rows reads like the long file; a bad cell is named by line and column."""
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["id"] = frame["id"].str.strip()
    frame = frame.dropna(subset=["value"])
    assume(len(frame) > 0)
    wide = frame.pivot_table(index=["id", "time"], columns="variable", values="value", aggfunc="mean").reset_index()
    wide.columns.name = None
    delimiter = data.draw(st.sampled_from([",", ";", "\t"]))
    path = tmp_path / "wide.csv"
    fault = data.draw(st.sampled_from(["none", "text", "ragged", "no id column", "huge"]))
    text = wide.to_csv(index=False, sep=delimiter, float_format="%.17g", lineterminator="\n")
    lines = text.splitlines()
    k = data.draw(st.integers(0, len(wide) - 1))
    var = data.draw(st.sampled_from([c for c in wide.columns if c not in ("id", "time")]))
    if fault == "none":
        path.write_text(text, encoding="utf-8")
        ds = read_wide_csv(path, cache=False)
        long_rows = [(i, t, v, x) for i, t, v, x in frame.itertuples(index=False)]
        assert_matches_reference(ds, long_rows)
        return
    if fault == "ragged":
        lines[k + 1] += delimiter + "1"
        expect = (["expected", "fields as in the header"], k + 2, None)
    elif fault == "no id column":
        lines = _rewrite(text, lambda r: r[1:], delimiter).splitlines()
        expect = (["missing column 'id'"], 1, "id")
    else:
        bad = "n/d" if fault == "text" else "4e38"
        cells = wide.astype(object).where(wide.notna(), "")
        cells.iloc[k, list(wide.columns).index(var)] = bad
        lines = cells.to_csv(index=False, sep=delimiter, lineterminator="\n").splitlines()
        expect = ([f"expected a number, got {bad!r}"] if fault == "text" else ["too large"], k + 2, var)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # a ragged row among few rows, under a header whose names hold another delimiter ('a,b' in
    # "id;time;a,b"), leaves the delimiter ambiguous: the sniffer may pick the other one and report
    # a missing id column instead (a DataError too); name the delimiter to test the ragged row
    other = [d for d in (",", ";", "\t") if d != delimiter and d in lines[0]]
    kw = {"delimiter": delimiter} if fault == "ragged" and other else {}
    with pytest.raises(DataError) as info:
        read_wide_csv(path, cache=False, **kw)
    fragments, line, column = expect
    assert_error(info.value, path, *fragments, line=line, column=column)


# ====================================================================== labels
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(labels=st.dictionaries(ids.map(str.strip), st.sampled_from([0, 1]), min_size=1, max_size=12), data=st.data())
def test_label_files_read_or_name_the_bad_row(tmp_path, labels, data):
    """All-one-class labels read fine (training refuses them later); a text label, an
    infinite label and two different labels for one id are errors naming the line."""
    items = list(labels.items())
    fault = data.draw(st.sampled_from(["none", "booleans", "duplicate", "conflict", "text", "inf", "all one class"]))
    if fault == "all one class":
        items = [(i, 1) for i, _ in items]
    path = tmp_path / "labels.csv"
    k = data.draw(st.integers(0, len(items) - 1))
    cells = [[i, str(y)] for i, y in items]
    if fault == "booleans":
        cells = [[i, "TRUE" if y else "false"] for i, y in items]
    elif fault == "duplicate":
        cells.append(list(cells[k]))
    elif fault == "conflict":
        cells.append([items[k][0], str(1 - items[k][1])])
    elif fault in ("text", "inf"):
        cells[k][1] = "dead" if fault == "text" else "inf"
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([["id", "label"], *cells])
    path.write_text(buf.getvalue(), encoding="utf-8")
    if fault in ("conflict", "text", "inf"):
        with pytest.raises(DataError) as info:
            read_label_table(path)
        if fault == "conflict":
            assert_error(info.value, path, f"id {items[k][0]!r} has label", f"on line {k + 2}",
                         line=len(cells) + 1, column="label")
        elif fault == "text":
            assert_error(info.value, path, "expected a number, got 'dead'", line=k + 2, column="label")
        else:
            assert_error(info.value, path, "infinite value", line=k + 2, column="label")
        return
    got_ids, got = read_label_table(path)
    assert dict(zip(got_ids, got)) == {i: float(y) for i, y in items}


# ====================================================================== PhysioNet stay files
stay_rows = st.lists(st.tuples(st.integers(0, 48 * 60), st.sampled_from(["HR", "Temp", "pH", "Weight"]),
                               st.floats(0.5, 150, allow_nan=False).map(lambda x: round(x, 2))), min_size=1, max_size=20)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=stay_rows, data=st.data())
def test_physionet_stay_files_read_or_name_the_bad_line(tmp_path, rows, data):
    def stay(lines, end="\n"):
        return end.join(["Time,Parameter,Value", "00:00,RecordID,140001", "00:00,Age,61", *lines]) + end

    fault = data.draw(st.sampled_from(["none", "bom", "crlf", "latin1", "bad time", "text value", "ragged",
                                       "header", "empty"]))
    if fault == "latin1":  # a parameter name in a Windows export's encoding
        rows = [*rows, (5, "Température", 37.5)]
    body = [f"{m // 60:02d}:{m % 60:02d},{p},{v}" for m, p, v in rows]
    k = data.draw(st.integers(0, len(body) - 1))
    path = tmp_path / "140001.txt"
    if fault in ("none", "bom", "crlf", "latin1"):
        raw = stay(body, "\r\n" if fault == "crlf" else "\n").encode("latin-1")
        if fault == "bom":
            raw = b"\xef\xbb\xbf" + raw
        path.write_bytes(raw)
        ds = read_physionet2012(path, value_ranges=None, cache=False)
        assert ds.ids == ["140001"] and ds.static_names == ["Age", "Gender", "Height", "ICUType"]
        assert ds.static[0, 0] == 61
        assert sorted(ds.variables) == sorted({p for _, p, _ in rows})
        np.testing.assert_allclose(ds.times, sorted({m / 60 for m, _, _ in rows}), rtol=1e-12)
        return
    if fault == "bad time":
        body[k] = "7:9x," + body[k].split(",", 1)[1]
        expect = (["expected a time HH:MM", "'7:9x'"], k + 4, "Time")
    elif fault == "text value":
        body[k] = body[k].rsplit(",", 1)[0] + ",high"
        expect = (["expected a number, got 'high'"], k + 4, "Value")
    elif fault == "ragged":
        body[k] += ",1"
        expect = (["expected 3 fields"], k + 4, None)
    elif fault == "header":
        path.write_text(stay(body).replace("Time,Parameter,Value", "Time;Parameter;Value"))
        expect = (["expected the header 'Time,Parameter,Value'"], 1, None)
    else:
        path.write_bytes(b"")
        expect = (["empty file"], None, None)
    if fault not in ("header", "empty"):
        path.write_text(stay(body))
    with pytest.raises(DataError) as info:
        read_physionet2012(path, value_ranges=None, cache=False)
    fragments, line, column = expect
    assert_error(info.value, path, *fragments, line=line, column=column)


# ====================================================================== checkpoints
@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory) -> bytes:
    """A checkpoint shaped like grud-train's (written by the same atomic save)."""
    import torch

    from grud.cli.checkpoint import atomic_torch_save

    path = tmp_path_factory.mktemp("ckpt") / "best.ckpt"
    atomic_torch_save({"epoch": 3, "global_step": 40, "state_dict": {"network.w": torch.randn(8, 4)},
                       "hyper_parameters": {"model": {"name": "grud", "hidden_size": 8}, "optim": {"lr": 1e-3}}}, path)
    return path.read_bytes()


class _Payload:
    """Unpickling this runs a shell command (what a malicious checkpoint does)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damage=st.sampled_from(["truncated", "random bytes", "malicious pickle", "malicious torch.save", "folder",
                               "empty"]), cut=st.floats(0, 1, exclude_max=True), junk=st.binary(min_size=1, max_size=300))
def test_damaged_or_malicious_checkpoints_are_refused_by_name(tmp_path, checkpoint_bytes, damage, cut, junk):
    import pickle

    import torch

    from grud.cli.checkpoint import safe_load
    from grud.errors import CheckpointError

    d = Path(tempfile.mkdtemp(dir=tmp_path))  # one folder per example
    path, marker = d / "best.ckpt", d / "pwned"
    if damage == "truncated":
        path.write_bytes(checkpoint_bytes[: int(cut * len(checkpoint_bytes))])
        expected = "empty file" if int(cut * len(checkpoint_bytes)) == 0 else "damaged, truncated or another format"
    elif damage == "random bytes":
        path.write_bytes(junk)
        expected = None  # unreadable or refused, either way named
    elif damage == "malicious pickle":
        path.write_bytes(pickle.dumps({"state_dict": _Payload(marker)}))
        expected = "refused to load"
    elif damage == "malicious torch.save":
        torch.save({"state_dict": {}, "hyper_parameters": _Payload(marker)}, path)
        expected = "refused to load"
    elif damage == "folder":
        path.mkdir()
        expected = "got a folder"
    else:
        path.write_bytes(b"")
        expected = "empty file"
    with pytest.raises(CheckpointError) as info:
        safe_load(path)
    assert str(info.value).startswith(f"{path}: ")
    if expected:
        assert expected in str(info.value)
    assert not marker.exists(), "the checkpoint ran code while loading"


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_a_checkpoint_cut_inside_its_first_four_bytes_is_reported_as_truncated(tmp_path, checkpoint_bytes, keep):
    # shorter than the zip magic, torch reads it as a legacy pickle and its unpickler fails
    from grud.cli.checkpoint import safe_load
    from grud.errors import CheckpointError

    path = tmp_path / "best.ckpt"
    path.write_bytes(checkpoint_bytes[:keep])
    with pytest.raises(CheckpointError, match="damaged, truncated or another format"):
        safe_load(path)


# ====================================================================== the CLI
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny GRU-D trained on HR, MAP, Lactate and Age (1 epoch)."""
    d = tmp_path_factory.mktemp("hostile_cli")
    make_long_csv(d / "events.csv", n_series=30, labels_path=d / "labels.csv")
    env = dict(os.environ, GRUD_CACHE_DIR=str(d / "cache"))
    subprocess.run(["grud-train", "data=csv_long", f"data.path={d / 'events.csv'}", f"data.labels={d / 'labels.csv'}",
                    f"hydra.run.dir={d / 'run'}", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                    "model.hidden_size=8", "data.batch_size=16", "summary=false", "plots=false"],
                   cwd=d, env=env, check=True, capture_output=True, timeout=600)
    return d / "run" / "checkpoints" / "best.ckpt", env


# 5 fixed examples in CI (one grud-predict process each); GRUD_CLI_EXAMPLES=N explores N random ones
CLI_EXAMPLES = os.environ.get("GRUD_CLI_EXAMPLES")


@pytest.mark.slow
@settings(max_examples=int(CLI_EXAMPLES or 5), derandomize=CLI_EXAMPLES is None, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_strategy, variant=st.sampled_from(sorted(VARIANTS)), data=st.data())
def test_predict_cli_on_hostile_files_predicts_or_prints_the_readers_error(checkpoint, rows, variant, data):
    """Variables never seen in training (Température, ...) are dropped; every series the reader
    finds gets a probability, or the one error line is the reader's message."""
    ckpt, env = checkpoint
    raw, kw, _ = VARIANTS[variant](rows, data.draw)
    assume(not kw)  # the checkpoint's column names and sniffed delimiter apply
    with tempfile.TemporaryDirectory() as tmp:
        path, out = Path(tmp) / "new.csv", Path(tmp) / "pred.csv"
        path.write_bytes(raw)
        try:
            expected = read_long_csv(path, cache=False)
        except DataError as exc:
            expected = exc
        proc = subprocess.run(["grud-predict", f"checkpoint={ckpt}", f"data.path={path}", f"output={out}"],
                              cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        if isinstance(expected, DataError):
            assert proc.returncode == 1
            lines = proc.stderr.strip().splitlines()
            assert [ln for ln in lines if ln.startswith("error:")] == ["error: " + " ".join(str(expected).split())]
            assert lines[-1].startswith("error: ")
            assert not out.exists()
            return
        assert proc.returncode == 0, proc.stderr[-3000:]
        pred = pd.read_csv(out, dtype={"id": str}, keep_default_na=False)
        assert sorted(pred["id"]) == sorted(expected.ids)
        assert pred["probability"].astype(float).between(0, 1).all()


@pytest.mark.slow
def test_train_cli_with_labels_of_one_class_is_one_error_line(tmp_path):
    make_long_csv(tmp_path / "events.csv", n_series=12, labels_path=tmp_path / "labels.csv")
    lab = pd.read_csv(tmp_path / "labels.csv")
    lab["label"] = 0
    lab.to_csv(tmp_path / "labels.csv", index=False)
    proc = subprocess.run(["grud-train", "data=csv_long", f"data.path={tmp_path / 'events.csv'}",
                           f"data.labels={tmp_path / 'labels.csv'}", f"hydra.run.dir={tmp_path / 'run'}",
                           "trainer.max_epochs=1", "model.hidden_size=8", "summary=false", "plots=false"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "at least two classes" in last and "data.labels" in last


@pytest.mark.slow
def test_train_cli_with_some_series_unlabelled_trains_on_the_labelled_ones(tmp_path):
    """Series without a label row are legal input (NaN label); small batches of only such
    series must not turn the training loss into NaN."""
    make_long_csv(tmp_path / "events.csv", n_series=40, labels_path=tmp_path / "labels.csv")
    lab = pd.read_csv(tmp_path / "labels.csv")
    lab.iloc[::2].to_csv(tmp_path / "labels.csv", index=False)
    proc = subprocess.run(["grud-train", "data=csv_long", f"data.path={tmp_path / 'events.csv'}",
                           f"data.labels={tmp_path / 'labels.csv'}", f"hydra.run.dir={tmp_path / 'run'}",
                           "trainer.max_epochs=2", "trainer.enable_progress_bar=false", "model.hidden_size=8",
                           "data.batch_size=2", "data.bucket=false", "summary=false", "plots=false"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "run" / "metrics.json").exists()
