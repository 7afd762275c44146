"""A Keras-style model summary: layers, output shapes, parameter counts."""

from __future__ import annotations

import torch
from torch import nn

from mnistcodec.model.compression_model import CompressionModel
from mnistcodec.storage.digits import IMAGE_SHAPE


def _leaf_rows(
    module: nn.Module, example: torch.Tensor, prefix: str
) -> list[tuple[str, str, str, int]]:
    rows: list[tuple[str, str, str, int]] = []
    hooks = []
    for name, layer in module.named_modules():
        if not name or any(True for _ in layer.children()) or isinstance(layer, nn.LeakyReLU):
            continue

        def hook(mod, inputs, output, name=name):
            params = sum(p.numel() for p in mod.parameters())
            shape = "(None, " + ", ".join(str(s) for s in output.shape[1:]) + ")"
            rows.append((f"{prefix}.{name}", type(mod).__name__, shape, params))

        hooks.append(layer.register_forward_hook(hook))
    try:
        with torch.no_grad():
            module(example)
    finally:
        for h in hooks:
            h.remove()
    return rows


def model_summary(model: CompressionModel) -> str:
    """Text table of every layer of both transforms and the prior."""
    model = model.cpu().eval()
    x = torch.zeros(1, 1, *IMAGE_SHAPE)
    y = model.analysis_transform(x)
    rows = _leaf_rows(model.analysis_transform, x, "analysis_transform")
    rows += _leaf_rows(model.synthesis_transform, y, "synthesis_transform")
    prior_params = sum(p.numel() for p in model.prior.parameters())
    rows.append(
        (
            f"prior ({model.config.prior})",
            type(model.prior).__name__,
            f"({model.latent_dims},)",
            prior_params,
        )
    )
    gains = getattr(model.entropy_bottleneck, "log_gains", None)
    if gains is not None:  # a variable-rate model: one gain per level and latent
        rows.append(("gains (log, per level)", "Parameter", str(tuple(gains.shape)), gains.numel()))
    widths = (44, 18, 20, 10)
    head = ("Layer", "Type", "Output shape", "Params")
    line = "-" * sum(widths)
    out = [
        f"Model: {model.config.arch} (latent_dims={model.latent_dims}, prior={model.config.prior})",
        line,
    ]
    out.append("".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    out.append("=" * sum(widths))
    for name, kind, shape, params in rows:
        out.append(f"{name:<44}{kind:<18}{shape:<20}{params:>10,}")
    out.append("=" * sum(widths))
    for label, part in (
        ("analysis_transform", model.analysis_transform),
        ("synthesis_transform", model.synthesis_transform),
        ("prior", model.prior),
        *([("gains", model.entropy_bottleneck.log_gains)] if gains is not None else []),
    ):
        count = (
            part.numel()
            if isinstance(part, torch.Tensor)
            else sum(p.numel() for p in part.parameters())
        )
        out.append(f"{label} params: {count:,}")
    out.append(f"Total params: {sum(p.numel() for p in model.parameters()):,}")
    return "\n".join(out)
