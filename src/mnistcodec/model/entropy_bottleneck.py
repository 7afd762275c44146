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

    def offset(self, y: Tensor) -> Tensor:
        """The prior's quantisation offsets ``o`` (float, recomputed from the prior)."""
        return self.prior.quantization_offset().to(y)

    @staticmethod
    def integers(y: Tensor, offset: Tensor) -> Tensor:
        """The integer latents ``k = round(y - o)`` (the one place latents are rounded)."""
        return torch.round(y - offset)

    @staticmethod
    def dequantize(k: Tensor, offset: Tensor) -> Tensor:
        """``y^ = k + o``."""
        return k + offset

    def quantize(self, y: Tensor, offset: Tensor | None = None) -> Tensor:
        """``y^ = round(y - o) + o``; ``offset`` defaults to the prior's (frozen models pass theirs)."""
        offset = self.offset(y) if offset is None else offset
        return self.dequantize(self.integers(y, offset), offset)

    def bits(self, y: Tensor) -> Tensor:
        """Bits per digit ``-sum_i log2 p_i(y_i)`` under the noisy density: ``(batch,)``.

        For ``y~`` this is the training rate bound; for ``y^`` it is the
        information content under the discretised prior.
        """
        return bits_from_log_prob(self.prior.log_prob(y))

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
        return y_out, self.bits(y_out)
