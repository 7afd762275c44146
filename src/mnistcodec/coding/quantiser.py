"""Latents to integers and back, at each digit's level: the codec's quantiser.

A fixed-rate model codes ``k = round(y - o)`` (the tables' offsets ``o``) with
``y^ = k + o``. A variable-rate model codes digit ``b`` at level ``l`` as
``k = round(g_l y - o_l)`` (the level's gain vector ``g_l`` and its tables'
offsets ``o_l``) with ``y^ = (k + o_l) / g_l``. The information content of
``k`` is the model's own, in float (its prior's, not the integer tables').
"""

from __future__ import annotations

import numpy as np
import torch

from mnistcodec.coding.model_files import LoadedModel


class Quantiser:
    """The quantisation of one loaded model, on one device."""

    def __init__(self, loaded: LoadedModel, device: torch.device | str = "cpu") -> None:
        self.loaded = loaded
        self.bottleneck = loaded.model.entropy_bottleneck
        self.variable_rate = loaded.variable_rate
        #: The tables' offsets (a fixed-rate model's ``o``).
        self.offsets = torch.from_numpy(loaded.tables.offsets.copy()).to(device)
        self.gains = self.level_offsets = None
        if self.variable_rate:
            dims = loaded.config.latent_dims
            offsets = np.stack([t.offsets[:dims] for t in loaded.level_tables])
            #: Each level's offsets ``o_l`` (L, D) and gains ``g_l`` (L, D).
            self.level_offsets = torch.from_numpy(offsets).to(device)
            log_gains = self.bottleneck.log_gains.detach()
            self.gains = torch.exp(log_gains).to(device, torch.float32)

    @torch.no_grad()
    def integers(
        self, y: torch.Tensor, levels: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents ``y`` (N, D) at each digit's level -> (integers ``k`` (N, D), information bits (N,))."""
        if not self.variable_rate:
            k = self.bottleneck.integers(y, self.offsets)
            return k, self.bottleneck.bits(self.bottleneck.dequantize(k, self.offsets))
        gain, offset = self.gains[levels], self.level_offsets[levels]
        k = torch.round(y * gain - offset)
        return k, self.bottleneck.information_bits(k + offset, gain)

    def dequantise(self, k: torch.Tensor, levels: torch.Tensor | None) -> torch.Tensor:
        """Integers ``k`` (N, D) float32 -> the decoder's latents ``y^``."""
        if not self.variable_rate:
            return self.bottleneck.dequantize(k, self.offsets)
        return (k + self.level_offsets[levels]) / self.gains[levels]
