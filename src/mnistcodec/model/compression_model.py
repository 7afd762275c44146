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


@dataclass(frozen=True)
class ModelConfig:
    """What defines a model: its architecture, latent size, prior and objective."""

    arch: str = "seed"
    latent_dims: int = 50
    prior: str = "logistic"
    lmbda: float = 2000.0
    distortion: str = "mad"

    def __post_init__(self) -> None:
        if self.distortion not in DISTORTIONS:
            raise InputError(f"distortion must be one of {DISTORTIONS}, got {self.distortion!r}")
        if not self.lmbda > 0:
            raise InputError(f"lambda must be positive, got {self.lmbda}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

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
