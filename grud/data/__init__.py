"""Data layer: readers, the dataset type, masking utilities, transforms and batching.

``from grud.data import masking`` works without Hydra or Lightning.
"""
from grud.data.dataset import IrregularDataset, Series
from grud.data.readers import read_long_csv, read_physionet2012, read_wide_csv

__all__ = ["IrregularDataset", "Series", "read_long_csv", "read_wide_csv", "read_physionet2012"]
