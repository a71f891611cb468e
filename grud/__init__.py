"""grud: learning from irregular, partially observed multivariate time series.

GRU-D (Che et al., Scientific Reports 2018) and its baselines, LSTMs and the Clockwork RNN,
with readers for clinical CSV exports and the PhysioNet 2012 challenge files.

The package imports without Hydra; only :mod:`grud.cli` and :mod:`grud.api` compose configs.
"""
from grud.errors import CheckpointError, ConfigError, DataError

__version__ = "0.1.0"

__all__ = ["DataError", "ConfigError", "CheckpointError", "__version__"]
