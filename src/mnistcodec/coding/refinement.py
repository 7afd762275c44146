"""Encoder-side latent refinement: search the integer latents that minimise each digit's Lagrangian.

The analysis transform is trained to predict good latents for the average
digit; for one given digit, better integer latents usually exist. With the
decoder and the coding tables fixed, the encoder may send any integers it
likes: the format and the decoder are unchanged. Following Yang, Marino and
Mandt, "Improving Inference for Neural Image Compression" (NeurIPS 2020),
stochastic Gumbel annealing (SGA) searches, per digit ``x`` at level ``l``,

    k* = argmin_k  L(k) = I_l(k) + lambda_l D(x, s(k, l)),

with ``I_l(k)`` the information content of ``k`` in bits (what the codec
reports), ``D`` the model's distortion (mean absolute or squared pixel error
of the reconstruction clipped to [0, 1]) and ``s`` the synthesis transform.
The search moves continuous latents ``v`` (in units of the quantisation step:
``v = g_l y - o_l``, ``v = y - o`` for a fixed-rate model), starting from the
analysis transform's. Each step rounds every ``v_i`` down or up at random,

    P(down) / P(up) = exp(-atanh(v_i - floor v_i) / tau) / exp(-atanh(ceil v_i - v_i) / tau),

relaxed with Gumbel-softmax at temperature ``tau``, and takes an Adam step on
the relaxed Lagrangian. ``tau`` anneals from 0.5 towards 0, where the choice
becomes deterministic rounding.

Never worse. Every ``check_every`` steps, and at the start, each digit's
hard-rounded latents ``round(v)`` are scored with the exact ``L`` and the best
seen is kept, so a refined digit's Lagrangian is never above the one of the
analysis transform's own latents.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

#: Temperature at the first step; it decays as ``TAU_START * exp(-TAU_DECAY * t / steps)``.
TAU_START = 0.5
TAU_DECAY = 5.0
#: Adam's step size on ``v`` (quantisation steps per iteration).
LEARNING_RATE = 0.03
#: How often the hard-rounded latents are scored (every step is exact but slower).
CHECK_EVERY = 5
_EDGE = 1e-4


@dataclass(frozen=True)
class RefinementProblem:
    """What the search needs: how latents map to bits and pixels at each digit's level.

    ``to_bits(z_hat)`` gives each digit's information content (bits, ``(B,)``) of
    quantised latents ``z_hat = k + offset``; ``to_pixels(z_hat)`` the float
    reconstruction ``(B, 1, 28, 28)``; ``offset`` ``(B, D)`` or ``(D,)``.
    """

    to_bits: Callable[[Tensor], Tensor]
    to_pixels: Callable[[Tensor], Tensor]
    offset: Tensor
    lmbda: Tensor
    distortion: str

    def digit_distortion(self, x: Tensor, x_hat: Tensor) -> Tensor:
        error = x.flatten(1) - x_hat.clamp(0.0, 1.0).flatten(1)
        return (error**2 if self.distortion == "mse" else error.abs()).mean(dim=1)

    def lagrangian(self, x: Tensor, z_hat: Tensor) -> Tensor:
        """``I(k) + lambda D`` per digit, ``(B,)``."""
        return self.to_bits(z_hat) + self.lmbda * self.digit_distortion(x, self.to_pixels(z_hat))


def _relaxed_rounding(v: Tensor, tau: float, generator: torch.Generator | None) -> Tensor:
    """A Gumbel-softmax draw between ``floor v`` and ``floor v + 1`` at temperature ``tau``."""
    floor = torch.floor(v).detach()
    frac = (v - floor).clamp(_EDGE, 1.0 - _EDGE)
    logits = torch.stack([-torch.atanh(frac), -torch.atanh(1.0 - frac)], dim=-1) / tau
    uniform = torch.rand(logits.shape, generator=generator, dtype=v.dtype).clamp_min(1e-20)
    gumbel = -torch.log(-torch.log(uniform))
    weights = F.softmax((logits + gumbel) / tau, dim=-1)
    return floor + weights[..., 1]


def refine_integers(
    problem: RefinementProblem,
    x: Tensor,
    v0: Tensor,
    steps: int,
    seed: int = 0,
    check_every: int = CHECK_EVERY,
) -> tuple[Tensor, Tensor]:
    """Integer latents ``k`` (B, D) no worse than ``round(v0)`` for each digit, and their ``L``.

    ``x``: the digits in [0, 1], ``(B, 1, 28, 28)``; ``v0``: the analysis
    transform's latents in quantisation steps, ``(B, D)``.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        best_k = torch.round(v0)
        best = problem.lagrangian(x, best_k + problem.offset)
    v = v0.detach().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([v], lr=LEARNING_RATE)
    for step in range(steps):
        tau = TAU_START * float(np.exp(-TAU_DECAY * step / max(steps, 1)))
        with torch.enable_grad():
            z_tilde = _relaxed_rounding(v, tau, generator) + problem.offset
            loss = problem.lagrangian(x, z_tilde).sum()
            (gradient,) = torch.autograd.grad(loss, v)
        v.grad = gradient
        optimiser.step()
        if (step + 1) % check_every == 0 or step + 1 == steps:
            with torch.no_grad():
                k = torch.round(v)
                score = problem.lagrangian(x, k + problem.offset)
                better = score < best
                best_k = torch.where(better[:, None], k, best_k)
                best = torch.where(better, score, best)
    return best_k.detach(), best.detach()
