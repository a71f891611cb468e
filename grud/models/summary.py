"""A Keras-style text summary of a recurrent network: layers, output shapes, parameter counts.

``print(summary(preset("grud", n_features=33)))`` gives a table like Keras' ``model.summary()``:
one row per input strategy, recurrent layer (with a row per direction's cell) and dropout, then
total, trainable and non-trainable parameter counts. Output shapes come from one forward pass on
a dummy batch (its own random generator, so the caller's random state is untouched).
"""
from __future__ import annotations

import torch
from torch import nn

from grud.models.cells import ClockworkCell
from grud.models.network import RecurrentNetwork

__all__ = ["summary", "count_parameters"]


def count_parameters(module: nn.Module, trainable: bool | None = None) -> int:
    """Number of parameter entries of ``module`` (only (non-)trainable ones if ``trainable`` is set)."""
    return sum(
        p.numel() for p in module.parameters() if trainable is None or p.requires_grad == trainable
    )


def _dummy_batch(model: RecurrentNetwork, n_features: int, seq_len: int, batch_size: int):
    g = torch.Generator().manual_seed(0)
    device = model.x_mean.device
    dtype = model.x_mean.dtype
    B, T, F = batch_size, seq_len, n_features
    mask = (torch.rand(B, T, F, generator=g) < 0.5).to(dtype)
    values = torch.randn(B, T, F, generator=g).to(dtype) * mask
    times = torch.arange(T, dtype=dtype)[None].expand(B, T).contiguous()
    delta = torch.ones(B, T, F, dtype=dtype)
    lengths = torch.full((B,), T, dtype=torch.int64)
    static = torch.zeros(B, model.n_static, dtype=dtype)
    return [t.to(device) for t in (values, mask, delta, times, lengths, static)]


def _shape(out) -> str:
    if isinstance(out, (tuple, list)):
        out = out[0]
    return str(tuple(out.shape)) if isinstance(out, torch.Tensor) else ""


def summary(model: RecurrentNetwork, seq_len: int = 48, batch_size: int = 1) -> str:
    """Keras-style table of ``model`` for a batch of ``batch_size`` series of ``seq_len`` steps
    of the model's ``n_features`` variables.

    Args:
        model: a :class:`RecurrentNetwork` (e.g. from :func:`grud.models.preset`).
        seq_len: T of the dummy batch.
        batch_size: B of the dummy batch.

    Returns:
        The table as one string (no trailing newline).
    """
    F = model.n_features
    rows: list[tuple[str, str, int]] = []
    shapes: dict[str, str] = {}
    named = [("input", model.input_layer)]
    if model.static_state:
        named.append(("initial_state", model.initial_state))
    for i, layer in enumerate(model.layers):
        if i > 0 and model.between_layers.p > 0:
            named.append((f"dropout_{i}", model.between_layers))
        named.append((f"layer_{i}", layer))
    hooks = []
    for name, module in named:
        if name.startswith("dropout"):
            continue
        hooks.append(module.register_forward_hook(lambda m, a, out, name=name: shapes.__setitem__(name, _shape(out))))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            _, last = model(*_dummy_batch(model, F, seq_len, batch_size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)

    for name, module in named:
        if name.startswith("dropout"):
            prev = f"layer_{int(name.split('_')[1]) - 1}"
            rows.append((f"{name} (Dropout p={module.p})", shapes.get(prev, ""), 0))
            continue
        rows.append((f"{name} ({type(module).__name__})", shapes.get(name, ""), count_parameters(module)))
        if name.startswith("layer_"):
            directions = ["forward", "backward"]
            for d, cell in enumerate(module.cells):
                rows.append((f"  {directions[d]} ({type(cell).__name__})", "", count_parameters(cell)))
    rows.append(("last state", str(tuple(last.shape)), 0))

    title = getattr(model, "preset_name", None)
    hp = model.hparams
    head = f"Model: {title + ' ' if title else ''}(RecurrentNetwork: input={hp['input']}, cell={hp['cell']}, " \
           f"hidden_size={hp['hidden_size']}, num_layers={hp['num_layers']}, " \
           f"bidirectional={hp['bidirectional']})"
    w0 = max(34, max(len(r[0]) for r in rows) + 2)
    w1 = max(16, max(len(r[1]) for r in rows) + 2)
    w2 = 12
    width = w0 + w1 + w2
    lines = [head, "_" * width, f"{'Layer (type)':<{w0}}{'Output Shape':<{w1}}{'Param #':>{w2}}", "=" * width]
    for i, (name, shape, n) in enumerate(rows):
        lines.append(f"{name:<{w0}}{shape:<{w1}}{n:>{w2},}")
        nxt = rows[i + 1][0] if i + 1 < len(rows) else None
        if nxt is not None and not nxt.startswith("  "):
            lines.append("_" * width)
    total = count_parameters(model)
    trainable = count_parameters(model, trainable=True)
    lines.append("=" * width)
    lines.append(f"Total params: {total:,}")
    masked = sum(
        int((cell.connectivity == 0).sum()) for layer in model.layers for cell in layer.cells
        if isinstance(cell, ClockworkCell)
    )
    if masked:
        lines.append(f"  of which {masked:,} clockwork recurrent weights never act (no faster -> slower connection)")
    lines.append(f"Trainable params: {trainable:,}")
    lines.append(f"Non-trainable params: {total - trainable:,}")
    lines.append(f"Buffers: x_mean {tuple(model.x_mean.shape)} (training means, normalised space)")
    return "\n".join(lines)
