"""Encoder-side search among the integer latents that training digits use.

At low rates a codec that sends the index of a whole-digit codeword beats
one that codes 50 scalar latents one by one
(:mod:`mnistcodec.experiments.codebooks`). A model's own decoder and tables
already define such a codebook: every integer latent vector ``k`` at level
``l`` decodes to a digit ``s(k, l)`` and costs ``I_l(k)`` bits. The integer
latents the analysis transform gives the training digits are the ones the
prior makes cheap and the decoder renders well, so this module keeps, per
level, the ``N`` most frequent of them as candidates (ties broken by the
order in which the training digits first use them), with their information content and their
decoded ``uint8`` digits. For a digit ``x`` at level ``l`` the encoder then
sends

    k* = argmin over {k_0} U candidates_l of  I_l(k) + lambda_l D(x, s(k, l)),

``k_0`` being the analysis transform's own latents, ``D`` the model's
distortion (mean squared or absolute error, pixels on [0, 1]) of the decoded
``uint8`` digit, and a candidate replacing ``k_0`` only when its Lagrangian is
strictly lower: no digit's Lagrangian gets worse. The decoder, the tables
and the format do not change; only the encoder chooses differently. For
squared error the search over ``N`` candidates is one matrix product,
``||x - r||^2 = ||x||^2 - 2 x.r + ||r||^2``.

Building the candidates costs one analysis pass over the training digits and
one synthesis pass over ``N`` candidates per level (a few seconds for MNIST),
done once per level, when the level is first searched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from mnistcodec.coding.names import DEFAULT_CANDIDATES, MAX_CANDIDATES
from mnistcodec.errors import InputError
from mnistcodec.storage.digits import check_digits

if TYPE_CHECKING:
    from mnistcodec.coding.api import Codec

#: Digits per block of the search (a (block, N) matrix of Lagrangians).
_BLOCK = 1024


@dataclass(frozen=True)
class LevelCandidates:
    """One level's candidates: integer latents (N, D), their bits (N,) and decoded pixels (N, P)."""

    k: np.ndarray
    bits: np.ndarray
    pixels: torch.Tensor  # float32 on [0, 1], (N, H*W)
    squared_norms: torch.Tensor  # (N,)


def _row_keys(k: np.ndarray) -> np.ndarray:
    """One 64-bit key per row of integer latents: equal rows, equal keys.

    A wrapping integer product with fixed odd multipliers; two different rows
    may share a key (about one chance in 2^64 per pair), which merges their
    counts but never changes a candidate's latents or bits.
    """
    multipliers = np.random.default_rng(0x5EA4C8).integers(1, 2**62, k.shape[1]) * 2 + 1
    with np.errstate(over="ignore"):
        return (k.astype(np.int64) * multipliers[None, :]).sum(axis=1)


class LatentSearch:
    """The candidates of one codec, built from training digits level by level (see the module)."""

    def __init__(
        self, codec: Codec, train_images: np.ndarray, candidates: int = DEFAULT_CANDIDATES
    ) -> None:
        if type(candidates) is not int or not 1 <= candidates <= MAX_CANDIDATES:
            raise InputError(
                f"the search needs 1 to {MAX_CANDIDATES} candidates per level, got {candidates!r}"
            )
        self.codec = codec
        self.train_images = check_digits(train_images, allow_empty=False)
        self.candidates = candidates
        self._latents: torch.Tensor | None = None
        self._levels: dict[int, LevelCandidates] = {}

    def _train_latents(self) -> torch.Tensor:
        if self._latents is None:
            self._latents = torch.cat(
                [
                    self.codec.latents(part)
                    for part in np.array_split(
                        self.train_images, max(1, len(self.train_images) // 8192)
                    )
                ]
            )
        return self._latents

    def level(self, level: int) -> LevelCandidates:
        """The candidates of ``level``, built on first use."""
        if level not in self._levels:
            y = self._train_latents()
            levels = np.full(y.shape[0], level, dtype=np.int64)
            k, bits = self.codec.quantise(y, levels)
            _, first, counts = np.unique(_row_keys(k), return_index=True, return_counts=True)
            # The most frequent first; among equally frequent ones, the first seen in training.
            keep = np.lexsort((first, -counts))[: self.candidates]
            chosen = k[first[keep]]
            pixels = self.codec.synthesise(chosen, np.full(len(chosen), level, dtype=np.int64))
            flat = torch.from_numpy(pixels.reshape(len(chosen), -1)).float() / 255.0
            self._levels[level] = LevelCandidates(
                k=chosen,
                bits=bits[first[keep]],
                pixels=flat,
                squared_norms=(flat * flat).sum(dim=1),
            )
        return self._levels[level]

    def lagrangians(
        self, x: torch.Tensor, candidates: LevelCandidates, lmbda: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each digit's best candidate and its Lagrangian, ``(B,)`` and ``(B,)``."""
        pixels = x.shape[1]
        if self.codec.loaded.config.distortion == "mse":
            products = x @ candidates.pixels.T
            distortion = (
                (x * x).sum(dim=1, keepdim=True) - 2.0 * products + candidates.squared_norms[None]
            ).clamp_min(0.0) / pixels
        else:
            distortion = torch.cdist(x, candidates.pixels, p=1.0) / pixels
        costs = torch.from_numpy(candidates.bits).float()[None] + lmbda * distortion
        best = torch.min(costs, dim=1)
        return best.indices, best.values

    def improve(
        self, images: np.ndarray, levels: np.ndarray, k: np.ndarray, bits: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(k, bits)`` with each digit's latents replaced by a candidate of lower Lagrangian."""
        k, bits = k.copy(), bits.copy()
        own = self.codec.synthesise(k, levels)
        for level in np.unique(levels).tolist():
            rows = np.flatnonzero(levels == level)
            candidates = self.level(int(level))
            lmbda = float(self.codec.lambdas[int(level)])
            for start in range(0, rows.size, _BLOCK):
                block = rows[start : start + _BLOCK]
                x = torch.from_numpy(images[block].reshape(block.size, -1)).float() / 255.0
                index, cost = self.lagrangians(x, candidates, lmbda)
                mine = torch.from_numpy(own[block].reshape(block.size, -1)).float() / 255.0
                error = x - mine
                if self.codec.loaded.config.distortion == "mse":
                    distortion = (error * error).mean(dim=1)
                else:
                    distortion = error.abs().mean(dim=1)
                current = torch.from_numpy(bits[block]).float() + lmbda * distortion
                better = (cost < current).numpy()
                chosen = index.numpy()[better]
                k[block[better]] = candidates.k[chosen]
                bits[block[better]] = candidates.bits[chosen]
        return k, bits
