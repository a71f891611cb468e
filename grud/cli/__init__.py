"""Command-line entry points (grud-train, grud-predict, grud-evaluate, grud-aggregate).

This package and :mod:`grud.api` are the only places that compose Hydra configs.
"""
