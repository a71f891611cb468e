"""Recurrent models: GRU-D, its imputation baselines, the LSTM family and the Clockwork RNN.

Plain PyTorch modules (no Lightning, no Hydra). Every model is a :class:`RecurrentNetwork`:
an input strategy (:mod:`grud.models.inputs`) followed by recurrent layers
(:mod:`grud.models.layers`) around one-step cells (:mod:`grud.models.cells`). Named
configurations live in :mod:`grud.models.presets`::

    from grud.models import preset, summary
    net = preset("grud", n_features=33)
    outputs, last = net(values, mask, delta, times, lengths)
    print(summary(net))

Shape:
    values, mask, delta (B, T, F); times (B, T); lengths (B,); static (B, S) or None
    -> outputs (B, T, H_out), last (B, H_out).
"""
from grud.models.cells import ClockworkCell, GRUCell, GRUDCell, LSTMCell, PeepholeLSTMCell
from grud.models.inputs import INPUTS, DecayInput, ForwardInput, MeanInput, MixedInput
from grud.models.layers import CELLS, RecurrentLayer
from grud.models.network import RecurrentNetwork
from grud.models.presets import PRESETS, preset, preset_arguments
from grud.models.summary import count_parameters, summary

__all__ = [
    "RecurrentNetwork",
    "preset",
    "preset_arguments",
    "PRESETS",
    "INPUTS",
    "CELLS",
    "summary",
    "count_parameters",
    "RecurrentLayer",
    "GRUCell",
    "GRUDCell",
    "LSTMCell",
    "PeepholeLSTMCell",
    "ClockworkCell",
    "MeanInput",
    "ForwardInput",
    "MixedInput",
    "DecayInput",
]
