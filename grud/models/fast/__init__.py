"""Fused recurrence paths (forward without a recorded graph, hand-written backward through time).

Public entry points: :func:`gru_recurrence`, :func:`lstm_recurrence`, :func:`clockwork_recurrence`,
and their autograd-recorded ``*_reference`` twins used by the tests.
"""
from grud.models.fast.recurrence import (
    clockwork_recurrence,
    clockwork_recurrence_reference,
    gru_recurrence,
    gru_recurrence_reference,
    lstm_recurrence,
    lstm_recurrence_reference,
)

__all__ = [
    "gru_recurrence",
    "lstm_recurrence",
    "clockwork_recurrence",
    "gru_recurrence_reference",
    "lstm_recurrence_reference",
    "clockwork_recurrence_reference",
]
