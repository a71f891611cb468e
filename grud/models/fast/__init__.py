"""Fused recurrence paths (forward without a recorded graph, hand-written backward through time).

Public entry points: :func:`gru_recurrence`, :func:`lstm_recurrence`, :func:`clockwork_recurrence`,
and their autograd-recorded ``*_reference`` twins used by the tests; :func:`masked_input_projection`
(GRU-D's ``W_ih x + V m + b_ih`` as one product).
"""
from grud.models.fast.projection import masked_input_projection
from grud.models.fast.recurrence import (
    clockwork_recurrence,
    clockwork_recurrence_reference,
    gru_recurrence,
    gru_recurrence_reference,
    lstm_recurrence,
    lstm_recurrence_reference,
)

__all__ = [
    "masked_input_projection",
    "gru_recurrence",
    "lstm_recurrence",
    "clockwork_recurrence",
    "gru_recurrence_reference",
    "lstm_recurrence_reference",
    "clockwork_recurrence_reference",
]
