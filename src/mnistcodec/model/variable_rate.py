"""One network for every rate: gain units on the latents (Cui et al. 2021).

The analysis and synthesis transforms are the seed's. What changes with the
operating point ("level") ``l`` is only how finely the latents are quantised:
level ``l`` has a positive gain per latent dimension, ``g_l`` (``levels x
latent_dims`` trainable log-gains), and codes the scaled latents
``z = g_l * y``::

    z = g_l * y,     k = round(z - o_l),     y^ = (k + o_l) / g_l

so ``1 / g_l`` is the quantisation step of each dimension at that level. The
prior is one density ``p`` of ``y`` shared by all levels (the analysis
transform does not depend on the level, so neither does the distribution of
``y``); level ``l`` discretises it on its own grid, ``P_l(k) = F((k + o_l + 1/2)
/ g_l) - F((k + o_l - 1/2) / g_l)``, with ``o_l = g_l * median`` (0 for the
symmetric families). :class:`GainedPrior` is that density of ``z`` as a
:class:`~mnistcodec.model.priors.Prior`, so each level is frozen into its own
integer tables exactly as a fixed-rate model is.

Training gives every digit of a batch a level, stratified: digit ``b`` of a
batch is at level ``b mod L``, so each batch holds every one of the
:data:`LEVEL_LAMBDAS` (16 lambdas log-uniform from 150 to 8000) equally often,
and since the digits are shuffled every epoch each digit meets the levels at
random. The Lagrangian is the batch mean of ``R_b + lambda_{l_b} D_b``. In
training mode the bottleneck adds uniform noise in ``z`` (of width ``1 /
g_l`` in ``y``); in evaluation mode it rounds. Without ``levels``, evaluation
uses :attr:`VariableRateModel.reference_level`, the level nearest to the
configuration's ``lmbda`` (the one the training loop validates).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mnistcodec.errors import InputError
from mnistcodec.model.compression_model import (
    DEFAULT_LAMBDA_RANGE,
    CompressionModel,
    ModelConfig,
    RDOutput,
)
from mnistcodec.model.priors import LogisticMixture, Prior, bits_from_log_prob, make_prior
from mnistcodec.model.transforms import ConditionedSynthesisTransform, make_transforms

#: The architecture name of the variable-rate model (``train --arch vr``).
ARCH = "vr"
LEVEL_COUNT = 16
LAMBDA_MIN, LAMBDA_MAX = DEFAULT_LAMBDA_RANGE


#: The operating points: lambda of level ``l``, log-uniform from LAMBDA_MIN to LAMBDA_MAX.
def level_lambdas(
    lambda_min: float = LAMBDA_MIN, lambda_max: float = LAMBDA_MAX
) -> tuple[float, ...]:
    """:data:`LEVEL_COUNT` lambdas log-uniform from ``lambda_min`` to ``lambda_max``."""
    ratio = lambda_max / lambda_min
    return tuple(lambda_min * ratio ** (i / (LEVEL_COUNT - 1)) for i in range(LEVEL_COUNT))


#: The default operating points (``ModelConfig.lambda_min`` and ``lambda_max`` move them).
LEVEL_LAMBDAS: tuple[float, ...] = level_lambdas()
#: Initial gains grow as (lambda / GAIN_REFERENCE) ** GAIN_EXPONENT; training moves them.
GAIN_REFERENCE = 2000.0
GAIN_EXPONENT = 0.5
#: Training proxy: noise for the rate; for the decoder, noise (False) or straight-through rounding.
DECODER_ROUNDING = True


def nearest_level(lmbda: float, lambdas: tuple[float, ...] = LEVEL_LAMBDAS) -> int:
    """The level whose lambda is nearest to ``lmbda`` on a log scale."""
    if not lmbda > 0 or not math.isfinite(lmbda):
        raise InputError(f"lambda must be a positive number, got {lmbda}")
    return min(range(len(lambdas)), key=lambda i: abs(math.log(lambdas[i] / lmbda)))


class GainedPrior(Prior):
    """The density of ``z = gain * y`` when ``y`` has density ``base``.

    ``gain`` has shape ``(D,)`` (one level) or ``(B, D)`` (a level per digit)
    and broadcasts against the latents; ``logit F_z(z) = logit F_y(z / gain)``.
    """

    def __init__(self, base: Prior, gain: Tensor) -> None:
        super().__init__(base.latent_dims)
        self.base = base
        self.register_buffer("gain", gain)

    @property
    def family(self) -> str:  # type: ignore[override]
        return self.base.family

    def cdf_logits(self, x: Tensor) -> Tensor:
        return self.base.cdf_logits(x / self.gain.to(x.dtype))

    def quantization_offset(self) -> Tensor:
        """``gain * o`` with ``o`` the base prior's offset (its median)."""
        return self.base.quantization_offset().to(self.gain) * self.gain


class VariableRateBottleneck(nn.Module):
    """Shared prior of ``y`` and the per-level log-gains; quantises ``g_l * y``."""

    def __init__(
        self,
        prior: Prior,
        lambdas: tuple[float, ...] = LEVEL_LAMBDAS,
        gain_exponent: float = GAIN_EXPONENT,
        decoder_rounding: bool = DECODER_ROUNDING,
    ) -> None:
        super().__init__()
        self.prior = prior
        self.lambdas = tuple(float(v) for v in lambdas)
        self.decoder_rounding = decoder_rounding
        init = [gain_exponent * math.log(v / GAIN_REFERENCE) for v in self.lambdas]
        self.log_gains = nn.Parameter(torch.tensor([[v] * prior.latent_dims for v in init]))

    @property
    def levels(self) -> int:
        return len(self.lambdas)

    def gains(self, levels: Tensor) -> Tensor:
        """The gains of each digit's level, ``(B, D)``."""
        return torch.exp(self.log_gains)[levels]

    def level_prior(self, level: int) -> GainedPrior:
        """The prior of level ``level``'s scaled latents (frozen: no gradients)."""
        return GainedPrior(self.prior, torch.exp(self.log_gains[level]).detach().clone())

    def forward(
        self, y: Tensor, levels: Tensor, training: bool, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(y~ or y^, bits per digit)`` with digit ``b`` at level ``levels[b]``."""
        gain = self.gains(levels).to(y.dtype)
        z = y * gain
        prior = GainedPrior(self.prior, gain)
        offset = prior.quantization_offset().to(z) if not training or self.decoder_rounding else 0.0
        if not training:
            z_out = torch.round(z - offset) + offset
            return z_out / gain, bits_from_log_prob(prior.log_prob(z_out))
        noise = torch.rand(z.shape, generator=generator, device=z.device, dtype=z.dtype) - 0.5
        bits = bits_from_log_prob(prior.log_prob(z + noise))
        if not self.decoder_rounding:
            return (z + noise) / gain, bits
        # Straight-through rounding: the decoder sees round(z - o) + o, gradients pass as identity.
        z_hat = z + (torch.round(z - offset) + offset - z).detach()
        return z_hat / gain, bits

    def information_bits(self, z_hat: Tensor, gain: Tensor) -> Tensor:
        """``-log2 P_l(z^)`` per digit for quantised scaled latents ``z^``, ``(B,)``."""
        return bits_from_log_prob(GainedPrior(self.prior, gain).log_prob(z_hat))


class MixtureBottleneck(VariableRateBottleneck):
    """Gain units over a :class:`~mnistcodec.model.priors.LogisticMixture` prior of ``y``.

    Level ``l`` quantises ``z = g_l y`` to the integers (offset 0) and a digit
    is coded as its cheapest component ``c`` and its latents under ``c``
    (:mod:`mnistcodec.coding.mixture_coder`); evaluation counts that code
    length, ``min_c [-log2 w_c - sum_i log2 P_{c,l}(z_i)]``. Training bounds it
    by the noisy mixture ``-log2 sum_c w_c prod_i p~_{c,l}(z_i + u_i)``, which is
    at most ``log2 C`` bits below; the decoder sees ``round(z)`` with gradients
    passed straight through (or the noisy ``z`` without ``decoder_rounding``).
    """

    prior: LogisticMixture

    def level_prior(self, level: int) -> GainedPrior:
        """All components at level ``level`` as one frozen prior of ``C x D`` dimensions."""
        gain = torch.exp(self.log_gains[level]).detach().repeat(self.prior.components)
        return GainedPrior(self.prior.component_priors(), gain.clone())

    def information_bits(self, z_hat: Tensor, gain: Tensor) -> Tensor:
        """The code length under the cheapest component, ``(B,)``."""
        return -self.prior.component_nats(z_hat, gain).max(dim=1).values / math.log(2.0)

    def forward(
        self, y: Tensor, levels: Tensor, training: bool, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(y~ or y^, bits per digit)`` with digit ``b`` at level ``levels[b]``."""
        gain = self.gains(levels).to(y.dtype)
        z = y * gain
        if not training:
            z_hat = torch.round(z)
            return z_hat / gain, self.information_bits(z_hat, gain)
        noise = torch.rand(z.shape, generator=generator, device=z.device, dtype=z.dtype) - 0.5
        nats = torch.logsumexp(self.prior.component_nats(z + noise, gain), dim=1)
        bits = -nats / math.log(2.0)
        if not self.decoder_rounding:
            return (z + noise) / gain, bits
        return (z + (torch.round(z) - z).detach()) / gain, bits


class VariableRateModel(CompressionModel):
    """The seed's transforms, gain units and a shared prior: :data:`LEVEL_COUNT` rates in one model."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        nn.Module.__init__(self)
        self.config = config or ModelConfig(arch=ARCH)
        if self.config.arch != ARCH:
            raise InputError(f"a variable-rate model has arch {ARCH!r}, not {self.config.arch!r}")
        self.analysis_transform, self.synthesis_transform = make_transforms(
            "seed", self.config.latent_dims
        )
        lambdas = level_lambdas(*self.config.lambda_range)
        if self.config.conditioned_decoder:
            self.synthesis_transform = ConditionedSynthesisTransform(
                self.config.latent_dims, LEVEL_COUNT
            )
        if self.config.mixture_components > 1:
            mixture = LogisticMixture(self.config.latent_dims, self.config.mixture_components)
            self.entropy_bottleneck = MixtureBottleneck(mixture, lambdas)
        else:
            prior = make_prior(self.config.prior, self.config.latent_dims)
            self.entropy_bottleneck = VariableRateBottleneck(prior, lambdas)
        #: Exponent ``A`` of the levels' weights in :meth:`loss` (training only; 0: unweighted).
        self.level_weight = 0.0

    @property
    def levels(self) -> int:
        return self.entropy_bottleneck.levels

    @property
    def components(self) -> int:
        """Components of the mixture prior (1: one factorised prior)."""
        return self.config.mixture_components

    @property
    def lambdas(self) -> tuple[float, ...]:
        return self.entropy_bottleneck.lambdas

    @property
    def reference_level(self) -> int:
        return nearest_level(self.config.lmbda, self.lambdas)

    def check_level(self, level: int) -> int:
        if not 0 <= int(level) < self.levels:
            raise InputError(
                f"level {level} does not exist; this model has levels 0 to {self.levels - 1}"
            )
        return int(level)

    def forward(
        self,
        x: Tensor,
        training: bool | None = None,
        generator: torch.Generator | None = None,
        levels: Tensor | int | None = None,
    ) -> RDOutput:
        """``x`` float (B,1,28,28); ``levels``: one level, one per digit, or drawn (training)."""
        training = self.training if training is None else training
        batch = x.shape[0]
        if levels is None and training:
            levels = torch.arange(batch, device=x.device) % self.levels
        elif levels is None or isinstance(levels, int):
            level = self.reference_level if levels is None else self.check_level(levels)
            levels = torch.full((batch,), level, dtype=torch.long, device=x.device)
        y = self.analysis_transform(x)
        y_hat, rate_bits = self.entropy_bottleneck(y, levels, training, generator)
        x_hat = self.synthesis_transform(y_hat, levels)
        per_digit = self.digit_distortion(x, x_hat)
        lmbda = torch.tensor(self.lambdas, dtype=x.dtype, device=x.device)[levels]
        return VariableRateOutput(rate_bits, per_digit.mean(), x_hat, y, y_hat, per_digit, lmbda)

    def digit_distortion(self, x: Tensor, x_hat: Tensor) -> Tensor:
        """Each digit's mean absolute (or squared) pixel error, ``(B,)``."""
        error = (x - x_hat) ** 2 if self.config.distortion == "mse" else torch.abs(x - x_hat)
        return error.flatten(1).mean(dim=1)

    def loss(self, out: RDOutput) -> Tensor:
        """The batch mean of ``w_b (R_b + lambda_b D_b)``, ``w_b = (2000 / lambda_b)^A``.

        With ``A = level_weight = 0`` every digit counts by its Lagrangian, so the
        high-rate levels, whose Lagrangians are largest, dominate the gradients of
        the shared transforms; ``A = 1`` gives every level the scale of
        ``2000 (R / lambda + D)``. Each level's own optimum is unchanged (a
        positive factor per level); only the balance between levels moves.
        """
        if isinstance(out, VariableRateOutput):
            lagrangian = out.rate_bits + out.lmbda * out.digit_distortion
            if self.level_weight:
                lagrangian = lagrangian * (GAIN_REFERENCE / out.lmbda) ** self.level_weight
            return torch.mean(lagrangian)
        return super().loss(out)


class VariableRateOutput(RDOutput):
    """:class:`RDOutput` with each digit's distortion and lambda."""

    def __init__(self, rate_bits, distortion, x_hat, y, y_hat, digit_distortion, lmbda) -> None:
        super().__init__(rate_bits, distortion, x_hat, y, y_hat)
        self.digit_distortion = digit_distortion
        self.lmbda = lmbda


def is_variable_rate(model: nn.Module) -> bool:
    return isinstance(model, VariableRateModel)


def is_mixture(model: nn.Module) -> bool:
    return is_variable_rate(model) and model.components > 1


def make_model(config: ModelConfig) -> CompressionModel:
    """The model a configuration describes: variable-rate for ``arch="vr"``, else fixed-rate."""
    if config.arch == ARCH:
        return VariableRateModel(config)
    return CompressionModel(config)
