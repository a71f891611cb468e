"""Exception types for input a user got wrong.

Every error a user can cause with their files, columns or config is a :class:`DataError`
(or a subclass). The command-line entry points turn it into one ``error: ...`` line on
stderr and a non-zero exit; library users catch it like any exception.
"""
from __future__ import annotations


class DataError(ValueError):
    """Input that does not have the expected form.

    The message says what was expected and, where there is one, names the file, the line
    (1-based, as an editor shows it) and the column.
    """

    def __init__(self, message: str, *, path=None, line: int | None = None, column: str | None = None):
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.path = None if path is None else str(path)
        self.line = line
        self.column = column
        self.reason = message


class ConfigError(DataError):
    """A configuration value (Hydra override or keyword argument) that cannot be used."""


class CheckpointError(DataError):
    """A checkpoint that cannot be read safely or does not hold what grud expects."""
