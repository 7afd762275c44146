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

Families (:data:`PRIORS`, the choices of ``--prior``):

* ``logistic``, ``normal``, ``laplace``: location 0, one trainable scale per
  dimension; symmetric and unimodal, so the quantisation offset is 0;
* ``deep-factorized``: the non-parametric density of Ballé, Minnen, Singh,
  Hwang & Johnston, "Variational image compression with a scale hyperprior"
  (ICLR 2018, appendix 6.1), as ``NoisyDeepFactorized`` in TensorFlow
  Compression; its quantisation offset is its median.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mnistcodec.errors import InputError

_LOG_FLOOR = 1e-30


def solve_cdf_logits(cdf_logits, target: Tensor, iterations: int) -> Tensor:
    """Solve ``cdf_logits(x) = target`` per dimension by bisection.

    The CDF logit is increasing, so the bracket ``[-1, 1]`` is doubled until it
    holds the root, then halved ``iterations`` times.
    """
    lo = torch.full_like(target, -1.0)
    hi = torch.full_like(target, 1.0)
    for _ in range(128):
        below = cdf_logits(lo) > target
        above = cdf_logits(hi) < target
        if not (below.any() or above.any()):
            break
        lo = torch.where(below, lo * 2, lo)
        hi = torch.where(above, hi * 2, hi)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        go_right = cdf_logits(mid) < target
        lo = torch.where(go_right, mid, lo)
        hi = torch.where(go_right, hi, mid)
    return (lo + hi) / 2


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
        return solve_cdf_logits(self.cdf_logits, target, iterations)

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


class NoisyDeepFactorized(Prior):
    """The deep factorized density (Ballé et al. 2018, appendix 6.1), convolved with U(-1/2, 1/2).

    Per latent dimension ``i`` the CDF is ``F_i(x) = sigmoid(f_K(...f_1(x)))``
    where each layer ``k`` maps ``h`` (``r_{k-1}`` values) to ``r_k`` values::

        f_k(h) = g_k(softplus(H_k) h + b_k),       g_k(h) = h + tanh(a_k) * tanh(h)

    with ``r = (1, *filters, 1)`` (``1 -> 3 -> 3 -> 3 -> 1`` by default) and no
    gating on the last layer. ``softplus(H_k) > 0`` and ``tanh(a_k) > -1`` make
    every layer increasing, so ``F_i`` is a valid CDF for any parameters; its
    logit is the chain's output, which :meth:`cdf_logits` returns directly.

    Initialisation as TensorFlow Compression and CompressAI: with
    ``s = init_scale ** (1 / (len(filters) + 1))``, every matrix entry is
    ``softplus^-1(1 / (s * r_k))``, biases ``U(-1/2, 1/2)``, gating factors 0,
    which makes the initial density roughly a logistic of scale
    ``init_scale`` (broad, so the latents can move before the prior fits).

    The quantisation offset is the median of each density, found by bisection
    in float64 (without gradients) and cached with a copy of the parameters'
    values, so evaluation-mode forwards pay for it once per parameter update.
    (Values, not tensor versions: fused Adam updates parameters in place
    without bumping their version.)
    """

    family = "deep-factorized"

    def __init__(
        self, latent_dims: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0
    ) -> None:
        super().__init__(latent_dims)
        if not init_scale > 0 or any(int(f) < 1 for f in filters):
            raise InputError(
                f"invalid deep factorized prior: filters {filters}, init_scale {init_scale}"
            )
        self.filters = tuple(int(f) for f in filters)
        self.init_scale = float(init_scale)
        widths = (1, *self.filters, 1)
        scale = self.init_scale ** (1.0 / (len(self.filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for k in range(len(self.filters) + 1):
            init = math.log(math.expm1(1.0 / scale / widths[k + 1]))
            shape = (self.latent_dims, widths[k + 1], widths[k])
            self.matrices.append(nn.Parameter(torch.full(shape, init)))
            self.biases.append(nn.Parameter(torch.rand(self.latent_dims, widths[k + 1], 1) - 0.5))
            if k < len(self.filters):
                self.factors.append(nn.Parameter(torch.zeros(self.latent_dims, widths[k + 1], 1)))
        self._median_cache: tuple[list[Tensor], Tensor] | None = None

    def cdf_logits(self, x: Tensor) -> Tensor:
        """The chain's output; runs in ``x``'s dtype (parameters are cast to it)."""
        shape = x.shape
        h = x.reshape(-1, self.latent_dims).T.unsqueeze(1)  # (D, 1, N)
        for k, matrix in enumerate(self.matrices):
            h = torch.matmul(F.softplus(matrix.to(h.dtype)), h) + self.biases[k].to(h.dtype)
            if k < len(self.factors):
                h = h + torch.tanh(self.factors[k].to(h.dtype)) * torch.tanh(h)
        return h.squeeze(1).T.reshape(shape)

    def _cache_is_current(self) -> bool:
        """Whether the cached median was computed from the parameters' present values."""
        if self._median_cache is None:
            return False
        values = self._median_cache[0]
        params = list(self.parameters())
        return len(values) == len(params) and all(
            v.dtype == p.dtype and v.device == p.device and torch.equal(v, p)
            for v, p in zip(values, params, strict=True)
        )

    @torch.no_grad()
    def median(self, iterations: int = 64) -> Tensor:
        """Median of each density by bisection in float64, shape (D,)."""
        target = torch.zeros(self.latent_dims, dtype=torch.float64, device=self.matrices[0].device)
        return solve_cdf_logits(self.cdf_logits, target, iterations)

    def quantization_offset(self) -> Tensor:
        """The median (float64, shape (D,)), recomputed only when a parameter changed."""
        if not self._cache_is_current():
            values = [p.detach().clone() for p in self.parameters()]
            self._median_cache = (values, self.median())
        return self._median_cache[1].clone()

    def extra_repr(self) -> str:
        return f"latent_dims={self.latent_dims}, filters={self.filters}, init_scale={self.init_scale:g}"


class LocatedLogistic(Prior):
    """Logistic(mu_i, s_i) convolved with U(-1/2, 1/2), with fixed parameters.

    One component of a :class:`LogisticMixture` (its rows flattened), so that
    each component is frozen into integer tables like any prior. Its latents
    are quantised to the integers: the quantisation offset is 0.
    """

    family = "logistic"

    def __init__(self, loc: Tensor, scale: Tensor) -> None:
        super().__init__(loc.shape[-1])
        self.register_buffer("loc", loc)
        self.register_buffer("scale", scale)

    def cdf_logits(self, x: Tensor) -> Tensor:
        return (x - self.loc.to(x.dtype)) / self.scale.to(x.dtype)

    def quantization_offset(self) -> Tensor:
        return torch.zeros(self.latent_dims, dtype=torch.float64)


class LogisticMixture(nn.Module):
    """A mixture of ``C`` factorised logistics: a latent-adaptive prior coded by component.

    ``p(y) = sum_c w_c prod_i Logistic(y_i; mu_ci, s_ci)`` with ``w = softmax(logits)``.
    Each component is a factorised prior (:meth:`component_priors`); a digit is
    coded as a component index and its latents under that component, so the
    code length is ``min_c [-log2 w_c - sum_i log2 P_c(y_i)]``, within
    ``log2 C`` bits of ``-log2 p(y)``. The locations start at ``N(0, 1/4)``
    draws (the components must differ for training to separate them), the
    scales at 1 and the weights uniform.
    """

    family = "logistic"

    def __init__(self, latent_dims: int, components: int) -> None:
        super().__init__()
        self.latent_dims = int(latent_dims)
        self.components = int(components)
        self.loc = nn.Parameter(torch.randn(self.components, self.latent_dims) * 0.5)
        self.log_scale = nn.Parameter(torch.zeros(self.components, self.latent_dims))
        self.logits = nn.Parameter(torch.zeros(self.components))

    def component_nats(self, z: Tensor, gain: Tensor) -> Tensor:
        """``log w_c + sum_i log P_c(z_i)`` for ``z = gain * y``, shape ``(B, C)``."""
        return self.latent_nats(z, gain).sum(dim=-1) + self.log_weights(z.dtype)[None]

    def latent_nats(self, z: Tensor, gain: Tensor) -> Tensor:
        """``log P_c(z_i)`` for every component, shape ``(B, C, D)``.

        ``P_c(z_i) = F_c((z_i + 1/2) / g_i) - F_c((z_i - 1/2) / g_i)``, computed
        from logits with the upper tail where the bin lies right of the
        location, as :meth:`Prior.log_prob` does.
        """
        loc, scale = self.loc.to(z.dtype)[None], torch.exp(self.log_scale).to(z.dtype)[None]
        x, g = z[:, None, :], gain[:, None, :]
        a = ((x - 0.5) / g - loc) / scale
        b = ((x + 0.5) / g - loc) / scale
        upper = (a + b) > 0
        log_hi = F.logsigmoid(torch.where(upper, -a, b))
        log_lo = F.logsigmoid(torch.where(upper, -b, a))
        return log_hi + torch.log((-torch.expm1(log_lo - log_hi)).clamp_min(_LOG_FLOOR))

    def log_weights(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """``log w_c``, shape ``(C,)``."""
        return torch.log_softmax(self.logits.to(dtype), dim=0)

    def component_priors(self) -> LocatedLogistic:
        """Every component as one prior of ``C x D`` dimensions (row ``c D + i``), frozen."""
        return LocatedLogistic(
            self.loc.detach().reshape(-1).clone(), torch.exp(self.log_scale.detach()).reshape(-1)
        )

    def weights(self) -> Tensor:
        """The components' weights ``w``, shape ``(C,)``, without gradients."""
        return torch.softmax(self.logits.detach(), dim=0)

    def extra_repr(self) -> str:
        return f"latent_dims={self.latent_dims}, components={self.components}"


PRIORS: dict[str, type[Prior]] = {
    NoisyLogistic.family: NoisyLogistic,
    NoisyNormal.family: NoisyNormal,
    NoisyLaplace.family: NoisyLaplace,
    NoisyDeepFactorized.family: NoisyDeepFactorized,
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
