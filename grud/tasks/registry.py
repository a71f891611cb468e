"""Task names -> Lightning module classes (imported lazily)."""
from __future__ import annotations

from grud.errors import ConfigError

TASK_NAMES = ("classification", "forecast")


def task_class(name: str):
    if name == "classification":
        from grud.tasks.classification import ClassificationTask

        return ClassificationTask
    if name == "forecast":
        from grud.tasks.forecasting import ForecastTask

        return ForecastTask
    raise ConfigError(f"task.name: expected one of {', '.join(TASK_NAMES)}, got {name!r}")
