"""The codec: digits in, bit strings out, and back.

``Codec`` joins a frozen model (:class:`~mnistcodec.modelfile.LoadedModel`) and
its :class:`~mnistcodec.coding.codec.LatentCoder`::

    codec = Codec.from_model("model.safetensors")
    strings, info_bits = codec.compress(images_uint8)     # per-digit strings
    images = codec.decompress(strings)                    # uint8 (N, 28, 28)
    stream, info_bits = codec.compress_stream(images_uint8)
    images = codec.decompress_stream(stream, count)

Encoding: ``y = analysis(x / 255)``, ``k = round(y - o)`` with the stored
offsets ``o``; the information content reported is ``-sum log2 P(k)`` under the
discretised prior (float, as in evaluation). Decoding: ``y^ = k + o`` in float32,
``x^ = synthesis(y^)``, pixels ``round(255 x^)`` saturated to uint8, as the seed.

Work is done in chunks of ``chunk_size`` digits so memory stays flat however
many digits are coded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import torch

from mnistcodec.coding.codec import LatentCoder, Symbols
from mnistcodec.errors import InputError
from mnistcodec.modelfile import LoadedModel, load_model
from mnistcodec.transforms import IMAGE_SHAPE, images_to_unit

DEFAULT_CHUNK = 4096


def check_images(images: np.ndarray) -> np.ndarray:
    """Require uint8 digits of shape (N, 28, 28) (or a single (28, 28) digit)."""
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    if images.dtype != np.uint8:
        raise InputError(f"images must be uint8, got {images.dtype}")
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise InputError(f"images must have shape (N, 28, 28), got {images.shape}")
    return images


class Codec:
    """Compress and decompress digits with a frozen model."""

    def __init__(self, loaded: LoadedModel, device: str | torch.device = "cpu", chunk_size: int = DEFAULT_CHUNK) -> None:
        self.loaded = loaded
        self.model = loaded.model.to(device).eval()
        self.device = torch.device(device)
        self.coder = LatentCoder(loaded.tables)
        self.offsets = torch.from_numpy(loaded.tables.offsets.copy()).to(self.device)
        self.chunk_size = int(chunk_size)

    @classmethod
    def from_model(cls, path: str | os.PathLike, **kwargs) -> Codec:
        return cls(load_model(path), **kwargs)

    @property
    def fingerprint(self) -> str:
        return self.loaded.fingerprint

    @property
    def latent_dims(self) -> int:
        return self.loaded.tables.latent_dims

    # -- transforms --------------------------------------------------------------------

    @torch.no_grad()
    def analyse(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 digits -> (integer latents k as float64 (N, D), information bits (N,))."""
        x = images_to_unit(torch.from_numpy(np.ascontiguousarray(images)).to(self.device))
        y = self.model.analysis_transform(x)
        if not torch.isfinite(y).all():
            raise InputError("the analysis transform produced non-finite latents")
        k = torch.round(y - self.offsets)
        y_hat = k + self.offsets
        bits = -self.model.prior.log_prob(y_hat).sum(dim=1) / np.log(2.0)
        return k.cpu().double().numpy(), bits.cpu().double().numpy()

    @torch.no_grad()
    def synthesise(self, k: np.ndarray) -> np.ndarray:
        """Integer latents (N, D) -> uint8 digits (N, 28, 28)."""
        k32 = torch.from_numpy(np.asarray(k, dtype=np.float32)).to(self.device)
        y_hat = k32 + self.offsets
        x_hat = self.model.synthesis_transform(y_hat)
        pixels = torch.nan_to_num(torch.round(x_hat * 255.0), nan=0.0).clamp(0, 255)
        return pixels.to(torch.uint8).view(-1, *IMAGE_SHAPE).cpu().numpy()

    def _chunks(self, n: int) -> Iterator[slice]:
        for start in range(0, n, self.chunk_size):
            yield slice(start, min(n, start + self.chunk_size))

    # -- per-digit strings -------------------------------------------------------------

    def compress(self, images: np.ndarray) -> tuple[list[bytes], np.ndarray]:
        """One string per digit and each digit's information content in bits."""
        images = check_images(images)
        strings: list[bytes] = []
        info = np.empty(images.shape[0])
        for part in self._chunks(images.shape[0]):
            k, info[part] = self.analyse(images[part])
            strings.extend(self.coder.encode_strings(self.coder.to_symbols(k)))
        return strings, info

    def decode_latents(self, strings: list[bytes], check: bool = True) -> np.ndarray:
        """Strings -> integer latents k (N, D) (float64, exact)."""
        return self.coder.from_symbols(self.coder.decode_strings(list(strings), check=check))

    def decompress(self, strings: list[bytes], check: bool = True) -> np.ndarray:
        """Strings -> uint8 digits; ``check=False`` only for generative sampling."""
        strings = list(strings)
        out = np.empty((len(strings), *IMAGE_SHAPE), dtype=np.uint8)
        for part in self._chunks(len(strings)):
            out[part] = self.synthesise(self.decode_latents(strings[part], check=check))
        return out

    # -- stream mode -------------------------------------------------------------------

    def compress_stream(self, images: np.ndarray) -> tuple[bytes, np.ndarray]:
        """All digits in one stream (use for blocks of moderate size)."""
        images = check_images(images)
        k, info = self.analyse(images)
        return self.coder.encode_stream(self.coder.to_symbols(k)), info

    def decompress_stream(self, stream: bytes, count: int, check: bool = True) -> np.ndarray:
        symbols: Symbols = self.coder.decode_stream(stream, count, check=check)
        return self.synthesise(self.coder.from_symbols(symbols))

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        """What decoding gives, computed without entropy coding (for tests and checks)."""
        images = check_images(images)
        out = np.empty_like(images)
        for part in self._chunks(images.shape[0]):
            out[part] = self.synthesise(self.analyse(images[part])[0])
        return out
