"""The entropy bottleneck: noise in training, rounding in evaluation.

Training (Ballé et al. 2017): ``y~ = y + u`` with ``u ~ U(-1/2, 1/2)``; the rate
is the differentiable upper bound ``R = -sum_i log2 p~_i(y~_i)`` bits per digit.

Evaluation: ``y^ = round(y - o) + o`` with ``o`` the prior's quantisation
offset; the rate is the information content ``-sum_i log2 P_i(y^_i)`` under the
discretised prior ``P_i(k + o_i) = F_i(k + o_i + 1/2) - F_i(k + o_i - 1/2)``.
Coding with the frozen integer tables of :mod:`mnistcodec.coding` spends a few
bits more than this (table precision, escape mass, termination).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mnistcodec.model.priors import Prior, bits_from_log_prob


class EntropyBottleneck(nn.Module):
    """Wraps a :class:`~mnistcodec.model.priors.Prior`; returns latents and bits per digit."""

    def __init__(self, prior: Prior) -> None:
        super().__init__()
        self.prior = prior

    def quantize(self, y: Tensor) -> Tensor:
        """``round(y - o) + o``."""
        offset = self.prior.quantization_offset().to(y)
        return torch.round(y - offset) + offset

    def forward(
        self, y: Tensor, training: bool | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Return ``(y~ or y^, bits per digit)``; ``training`` defaults to ``self.training``."""
        training = self.training if training is None else training
        if training:
            noise = torch.rand(y.shape, generator=generator, device=y.device, dtype=y.dtype) - 0.5
            y_out = y + noise
        else:
            y_out = self.quantize(y)
        return y_out, bits_from_log_prob(self.prior.log_prob(y_out))
