"""The error line of the command-line tools."""
from __future__ import annotations

import sys


def test_the_error_line_starts_its_own_line_after_an_open_progress_bar(capsys):
    """grud-predict's bar redraws after a carriage return: the error line was written onto the bar's line."""
    from tqdm import tqdm

    from grud.cli.errors import report

    bar = tqdm(total=3, file=sys.stderr, desc="predict")
    bar.update(1)
    try:
        report(ValueError("boom"))
    finally:
        bar.close()
    err = capsys.readouterr().err
    assert "\nerror: ValueError: boom" in err
    assert any(line == "error: ValueError: boom" for line in err.split("\n"))
    report(ValueError("again"))  # no bar open: no blank line
    assert capsys.readouterr().err == "error: ValueError: again\n"
