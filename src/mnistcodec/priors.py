"""Factorised priors for the latents, each convolved with uniform noise.

Every prior models ``latent_dims`` independent scalar densities ``p_i``. Training
adds ``u ~ U(-1/2, 1/2)`` to the latents, so the density that is fitted is the
*noisy* one (Ballé et al. 2017, section 2.3)::

    p~_i(t) = (p_i * U(-1/2, 1/2))(t) = F_i(t + 1/2) - F_i(t - 1/2)

where ``F_i`` is the CDF of ``p_i``. Evaluated at a quantised latent
``t = round(y - o) + o``, the same expression is the probability of that bin
under the discretised prior, so one formula gives both the differentiable rate
bound (training) and the exact information content (evaluation).

A family only has to provide :meth:`Prior.cdf_logits`, ``logit(F_i(x))``; the
noisy log-density is computed from logits in a numerically stable way (the
upper tail is used when the bin lies right of the median), quantiles by
bisection, and the quantisation offset from :meth:`Prior.quantization_offset`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mnistcodec.errors import InputError

_LOG_FLOOR = 1e-30


class Prior(nn.Module):
    """Base class: ``latent_dims`` independent densities, evaluated noisily.

    Tensors passed in have the latent dimension last: shape ``(..., latent_dims)``.
    """

    family: str = ""

    def __init__(self, latent_dims: int) -> None:
        super().__init__()
        self.latent_dims = int(latent_dims)

    def cdf_logits(self, x: Tensor) -> Tensor:
        """``logit(F_i(x))`` of the underlying (noise-free) density."""
        raise NotImplementedError

    def cdf(self, x: Tensor) -> Tensor:
        """CDF ``F_i(x)`` of the underlying (noise-free) density."""
        return torch.sigmoid(self.cdf_logits(x))

    def log_prob(self, x: Tensor) -> Tensor:
        """Natural log of the noisy density ``F_i(x + 1/2) - F_i(x - 1/2)``.

        With ``a = logit F(x - 1/2)`` and ``b = logit F(x + 1/2)``,
        ``F(b) - F(a) = sigmoid(b) - sigmoid(a)``; when ``a + b > 0`` the bin lies
        in the upper tail and ``sigmoid(-a) - sigmoid(-b)`` (the same number) is
        computed instead, so neither tail loses precision.
        """
        a = self.cdf_logits(x - 0.5)
        b = self.cdf_logits(x + 0.5)
        upper_tail = (a + b) > 0
        hi = torch.where(upper_tail, -a, b)
        lo = torch.where(upper_tail, -b, a)
        log_hi = F.logsigmoid(hi)
        log_lo = F.logsigmoid(lo)
        return log_hi + torch.log((-torch.expm1(log_lo - log_hi)).clamp_min(_LOG_FLOOR))

    def prob(self, x: Tensor) -> Tensor:
        """Noisy density ``F_i(x + 1/2) - F_i(x - 1/2)``."""
        return torch.exp(self.log_prob(x))

    def quantization_offset(self) -> Tensor:
        """Offset ``o_i`` so that latents are quantised as ``round(y - o) + o``.

        The default is the median (found by bisection), which equals the mode
        for the symmetric unimodal families.
        """
        return self.quantile(torch.full((self.latent_dims,), 0.5, dtype=torch.float64))

    @torch.no_grad()
    def quantile(self, p: Tensor, iterations: int = 100) -> Tensor:
        """Solve ``F_i(x) = p_i`` per dimension by bisection.

        Runs in the dtype of the parameters: call it on a float64 copy (as the
        table builder does) for full precision. Used once when tables are
        frozen, never in the coding path.
        """
        dtype = next(self.parameters()).dtype if any(True for _ in self.parameters()) else p.dtype
        p = p.to(dtype)
        target = torch.log(p) - torch.log1p(-p)
        lo = torch.full_like(target, -1.0)
        hi = torch.full_like(target, 1.0)
        for _ in range(128):
            below = self.cdf_logits(lo) > target
            above = self.cdf_logits(hi) < target
            if not (below.any() or above.any()):
                break
            lo = torch.where(below, lo * 2, lo)
            hi = torch.where(above, hi * 2, hi)
        for _ in range(iterations):
            mid = (lo + hi) / 2
            go_right = self.cdf_logits(mid) < target
            lo = torch.where(go_right, mid, lo)
            hi = torch.where(go_right, hi, mid)
        return (lo + hi) / 2

    def extra_repr(self) -> str:
        return f"latent_dims={self.latent_dims}"


class _ScaledSymmetricPrior(Prior):
    """A location-0 family with one trainable log-scale per dimension, initialised to 0."""

    def __init__(self, latent_dims: int) -> None:
        super().__init__(latent_dims)
        self.log_scale = nn.Parameter(torch.zeros(latent_dims))

    @property
    def scale(self) -> Tensor:
        return torch.exp(self.log_scale)

    def standard_logits(self, z: Tensor) -> Tensor:
        """``logit(F(z))`` of the standard (scale 1) member of the family."""
        raise NotImplementedError

    def cdf_logits(self, x: Tensor) -> Tensor:
        return self.standard_logits(x / self.scale)

    def quantization_offset(self) -> Tensor:
        return torch.zeros(self.latent_dims, dtype=torch.float64)


class NoisyLogistic(_ScaledSymmetricPrior):
    """Logistic(0, s_i) convolved with U(-1/2, 1/2): the seed's prior.

    ``F(x) = sigmoid(x / s)``, so ``logit F(x) = x / s`` exactly.
    """

    family = "logistic"

    def standard_logits(self, z: Tensor) -> Tensor:
        return z


class NoisyNormal(_ScaledSymmetricPrior):
    """Normal(0, s_i) convolved with U(-1/2, 1/2).

    ``logit Phi(z) = log Phi(z) - log Phi(-z)``, computed with ``log_ndtr``.
    """

    family = "normal"

    def standard_logits(self, z: Tensor) -> Tensor:
        return torch.special.log_ndtr(z) - torch.special.log_ndtr(-z)


class NoisyLaplace(_ScaledSymmetricPrior):
    """Laplace(0, s_i) convolved with U(-1/2, 1/2).

    For ``z <= 0``, ``F(z) = exp(z)/2`` and ``logit F(z) = z - log(2 - exp(z))``;
    the logit is odd, which gives ``z > 0``.
    """

    family = "laplace"

    def standard_logits(self, z: Tensor) -> Tensor:
        neg = -z.abs()
        logit_neg = neg - torch.log(2 - torch.exp(neg))
        return torch.where(z > 0, -logit_neg, logit_neg)


PRIORS: dict[str, type[Prior]] = {
    NoisyLogistic.family: NoisyLogistic,
    NoisyNormal.family: NoisyNormal,
    NoisyLaplace.family: NoisyLaplace,
}


def make_prior(name: str, latent_dims: int) -> Prior:
    """Instantiate a prior family by name (see :data:`PRIORS`)."""
    try:
        cls = PRIORS[name]
    except KeyError:
        known = ", ".join(sorted(PRIORS))
        raise InputError(f"unknown prior {name!r}; choose one of: {known}") from None
    return cls(latent_dims)


def bits_from_log_prob(log_prob: Tensor) -> Tensor:
    """Sum ``-log2 p`` over the latent dimension: bits per digit, shape ``(batch,)``."""
    return -log_prob.sum(dim=-1) / math.log(2.0)
