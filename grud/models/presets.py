"""Named models: the arguments of :class:`~grud.models.network.RecurrentNetwork` for each preset.

The first five reproduce the models of Che et al. (Sci. Rep. 2018): GRU-D and the GRU-Mean,
GRU-Forward, GRU-Simple and LSTM-Mean baselines. Dropout follows the authors' released code
(``dropout=0.3, recurrent_dropout=0.3`` on the recurrent layer, i.e. variational dropout on the
input and on the state). The paper reports 49 hidden units for GRU-D on PhysioNet (about 18.8k
parameters with 33 variables) and gives the baselines comparable parameter counts; the authors'
code defaults to 64 units, which is used for every other preset. Every preset conditions its
first state on the static features (``static_state=True``).

Each preset is mirrored by ``conf/model/<name>.yaml`` (same keys, plus ``name`` and ``kind``).
"""
from __future__ import annotations

from grud.errors import ConfigError
from grud.models.network import HPARAM_DEFAULTS, RecurrentNetwork

__all__ = ["PRESETS", "preset", "preset_arguments"]

_PAPER = dict(input_dropout=0.3, recurrent_dropout=0.3)

_ARGUMENTS: dict[str, dict] = {
    # Che et al. 2018: decay input + GRU-D cell (hidden decay, mask in the gates)
    "grud": dict(input="decay", cell="grud", hidden_size=49, **_PAPER),
    # baselines of Che et al. 2018
    "gru_mean": dict(input="mean", cell="gru", **_PAPER),
    "gru_forward": dict(input="forward", cell="gru", **_PAPER),
    "gru_simple": dict(input="mixed", cell="gru", **_PAPER),
    "lstm_mean": dict(input="mean", cell="lstm", **_PAPER),
    # the LSTM family: values, mask and delta in (Lipton et al. 2016 show the indicators help)
    "lstm": dict(input="mixed", cell="lstm", **_PAPER),
    "stacked_lstm": dict(input="mixed", cell="lstm", num_layers=2, dropout=0.3, **_PAPER),
    "bilstm": dict(input="mixed", cell="lstm", bidirectional=True, **_PAPER),
    "peephole_lstm": dict(input="mixed", cell="peephole_lstm", **_PAPER),
    # Koutnik et al. 2014: 4 modules with periods 1, 2, 4, 8 (n_modules=None: len(periods), else 4;
    # periods=None: powers of two, so overriding either alone works); no recurrent dropout (the
    # fused path has none)
    "clockwork": dict(
        input="mixed", cell="clockwork", n_modules=None, periods=None, period_unit="steps",
        input_dropout=0.3, recurrent_dropout=0.0,
    ),
}

# every preset starts its first layer from the static features (h0 = tanh(W s + b), zero-initialised):
# for GRU-D, validation AUROC 0.8452 against 0.8393 over seeds 0-9, 8 of 10 paired differences
# positive (NOTES.md, session 6); given to every preset so a comparison gives each model the same
# static information. Without static features (S = 0) the flag does nothing.
for _args in _ARGUMENTS.values():
    _args["static_state"] = True

#: preset names, in the order of the issue
PRESETS = tuple(_ARGUMENTS)


def preset_arguments(name: str) -> dict:
    """Every constructor argument of preset ``name`` except ``n_features``/``n_static``."""
    if name not in _ARGUMENTS:
        raise ConfigError(f"model.name: expected one of {', '.join(PRESETS)}, got {name!r}")
    args = dict(HPARAM_DEFAULTS)
    args.update(_ARGUMENTS[name])
    return {k: (list(v) if isinstance(v, list) else v) for k, v in args.items()}


def preset(name: str, n_features: int, n_static: int = 0, **overrides) -> RecurrentNetwork:
    """Build preset ``name`` for ``n_features`` variables, with any argument overridden.

    ``preset("grud", n_features=33, hidden_size=32, hidden_decay=False)``. Unknown preset names,
    argument names or values raise :class:`grud.ConfigError` listing the allowed ones.
    """
    args = preset_arguments(name)
    unknown = sorted(set(overrides) - set(args))
    if unknown:
        raise ConfigError(
            f"unknown model argument(s) {', '.join(map(repr, unknown))} for preset {name!r}; "
            f"allowed: {', '.join(args)}"
        )
    args.update(overrides)
    net = RecurrentNetwork(n_features, n_static, **args)
    net.preset_name = name
    return net
