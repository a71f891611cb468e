"""grud.api.predict's frame holds what its CSV reads back as."""
from __future__ import annotations

import pandas as pd
import pytest

from grud.api import _ids_as_read_back


@pytest.mark.parametrize("ids, whole", [(["141000", "141001", "-3", "0"], True), (["p001", "p002"], False),
                                        (["007", "8"], False), (["1.5", "2"], False),
                                        (["99999999999999999999", "1"], False)])
def test_ids_come_back_as_the_written_csv_reads_them(ids, whole, tmp_path):
    """Integer ids came back as text: ``pred.merge(my_table, on="patientunitstayid")`` raised."""
    frame = pd.DataFrame({"patientunitstayid": pd.array(ids, dtype="string"), "probability": 0.5})
    frame.to_csv(tmp_path / "p.csv", index=False)
    back = pd.read_csv(tmp_path / "p.csv")
    got = _ids_as_read_back(frame)
    if whole:  # as read_csv reads them, so the frame merges with the user's tables
        assert got["patientunitstayid"].dtype == back["patientunitstayid"].dtype == "int64"
        pd.testing.assert_frame_equal(got, back)
        assert len(got.merge(back[["patientunitstayid"]], on="patientunitstayid")) == len(ids)
    else:  # text, as written: leading zeros, decimals and huge numbers are not turned into numbers
        assert list(got["patientunitstayid"]) == ids
