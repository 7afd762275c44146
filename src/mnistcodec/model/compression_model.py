"""The compression model: analysis transform, entropy bottleneck, synthesis transform.

``forward`` computes the terms of the rate-distortion Lagrangian::

    L = R + lambda * D

with ``R`` the mean bits per digit (rate bound in training mode, information
content in evaluation mode) and ``D`` the mean absolute pixel error on [0, 1]
(the seed's distortion) or, optionally, the mean squared error.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mnistcodec.errors import InputError
from mnistcodec.model.entropy_bottleneck import EntropyBottleneck
from mnistcodec.model.names import DISTORTIONS
from mnistcodec.model.priors import Prior, make_prior
from mnistcodec.model.transforms import make_transforms

#: A variable-rate model's lambda range unless its configuration names another.
DEFAULT_LAMBDA_RANGE = (150.0, 8000.0)
#: Most components a mixture prior may have.
MAX_COMPONENTS = 256


@dataclass(frozen=True)
class ModelConfig:
    """What defines a model: its architecture, latent size, prior and objective."""

    arch: str = "seed"
    latent_dims: int = 50
    prior: str = "logistic"
    lmbda: float = 2000.0
    distortion: str = "mad"
    #: Components of a mixture prior (``arch = "vr"`` with the logistic family only); 1: none.
    #: (Files of early versions may hold a key ``components``, unused: it is ignored.)
    mixture_components: int = 1
    #: A synthesis transform with one affine map per level on each hidden layer (``arch = "vr"``).
    conditioned_decoder: bool = False
    #: A variable-rate model's lowest and highest lambda: its levels are log-uniform between them.
    lambda_min: float = DEFAULT_LAMBDA_RANGE[0]
    lambda_max: float = DEFAULT_LAMBDA_RANGE[1]

    def __post_init__(self) -> None:
        if (
            type(self.mixture_components) is not int
            or not 1 <= self.mixture_components <= MAX_COMPONENTS
        ):
            raise InputError(
                f"mixture_components must be an integer from 1 to {MAX_COMPONENTS}, "
                f"got {self.mixture_components!r}"
            )
        if type(self.conditioned_decoder) is not bool:
            raise InputError("conditioned_decoder must be true or false")
        if self.conditioned_decoder and self.arch != "vr":
            raise InputError("a conditioned decoder needs the variable-rate architecture (arch vr)")
        if self.mixture_components > 1 and (self.arch != "vr" or self.prior != "logistic"):
            raise InputError(
                "a mixture prior (mixture_components > 1) needs the variable-rate architecture "
                "(arch vr) and the logistic family"
            )
        if self.distortion not in DISTORTIONS:
            raise InputError(f"distortion must be one of {DISTORTIONS}, got {self.distortion!r}")
        if not self.lmbda > 0:
            raise InputError(f"lambda must be positive, got {self.lmbda}")
        for name in ("lambda_min", "lambda_max"):
            value = getattr(self, name)
            if type(value) not in (int, float) or not 0 < value < 1e9:
                raise InputError(f"{name} must be a positive number below 1e9, got {value!r}")
        if not self.lambda_min < self.lambda_max:
            raise InputError(
                f"lambda_min ({self.lambda_min:g}) must be below lambda_max ({self.lambda_max:g})"
            )
        if self.lambda_range != DEFAULT_LAMBDA_RANGE and self.arch != "vr":
            raise InputError("a lambda range needs the variable-rate architecture (arch vr)")

    @property
    def lambda_range(self) -> tuple[float, float]:
        return (self.lambda_min, self.lambda_max)

    def to_dict(self) -> dict:
        """The fields as a dict, without the later fields at their defaults (older files lack them)."""
        data = dataclasses.asdict(self)
        if self.mixture_components == 1:
            del data["mixture_components"]
        if not self.conditioned_decoder:
            del data["conditioned_decoder"]
        if self.lambda_range == DEFAULT_LAMBDA_RANGE:
            del data["lambda_min"], data["lambda_max"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class RDOutput:
    """Per-batch outputs: ``rate_bits`` per digit (B,), scalar ``distortion``, tensors."""

    rate_bits: Tensor
    distortion: Tensor
    x_hat: Tensor
    y: Tensor
    y_hat: Tensor

    @property
    def rate(self) -> Tensor:
        return self.rate_bits.mean()


class CompressionModel(nn.Module):
    """Analysis transform + entropy bottleneck (prior) + synthesis transform."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        self.analysis_transform, self.synthesis_transform = make_transforms(
            self.config.arch, self.config.latent_dims
        )
        self.entropy_bottleneck = EntropyBottleneck(
            make_prior(self.config.prior, self.config.latent_dims)
        )

    @property
    def prior(self) -> Prior:
        return self.entropy_bottleneck.prior

    @property
    def latent_dims(self) -> int:
        return self.config.latent_dims

    def distortion(self, x: Tensor, x_hat: Tensor) -> Tensor:
        """Mean absolute (or squared) pixel error on [0, 1]."""
        if self.config.distortion == "mse":
            return torch.mean((x - x_hat) ** 2)
        return torch.mean(torch.abs(x - x_hat))

    def forward(
        self, x: Tensor, training: bool | None = None, generator: torch.Generator | None = None
    ) -> RDOutput:
        """``x``: float (B,1,28,28) in [0, 1]."""
        y = self.analysis_transform(x)
        y_hat, rate_bits = self.entropy_bottleneck(y, training=training, generator=generator)
        x_hat = self.synthesis_transform(y_hat)
        return RDOutput(rate_bits, self.distortion(x, x_hat), x_hat, y, y_hat)

    def loss(self, out: RDOutput) -> Tensor:
        """The Lagrangian ``R + lambda * D`` (bits per digit)."""
        return out.rate + self.config.lmbda * out.distortion
