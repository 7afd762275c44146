"""The codec: digits in, bit strings out, and back.

``Codec`` joins a frozen model (:class:`~mnistcodec.coding.model_files.LoadedModel`) and
its :class:`~mnistcodec.coding.range_coder.LatentCoder`::

    codec = Codec.from_model("model.safetensors")              # or a shipped model's name
    strings, info_bits = codec.compress(images_uint8)     # per-digit strings
    images = codec.decompress(strings)                    # uint8 (N, 28, 28)
    stream, info_bits = codec.compress_stream(images_uint8)
    images = codec.decompress_stream(stream, count)
    samples = codec.sample(16, seed=0, nbytes=8)          # generative use

Encoding: ``y = analysis(x / 255)``, ``k = round(y - o)`` with the stored
offsets ``o``; the information content reported is ``-sum log2 P(k)`` under the
discretised prior (float, as in evaluation). Decoding: ``y^ = k + o`` in float32,
``x^ = synthesis(y^)``, pixels ``round(255 x^)`` saturated to uint8, as the seed.

Work is done in chunks of ``chunk_size`` digits so memory stays flat however
many digits are coded. Files (``.mnc``) are written and read by
:mod:`mnistcodec.coding.files`.

Exactness. The integer latents and the bit strings depend only on the stored
tables and are identical on every machine. Decoded pixels are float32 network
outputs rounded to integers: identical on one machine whatever the thread
count, but another CPU, BLAS or device may, in rare pixels, land on the other
side of a rounding boundary (one grey level).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import torch

from mnistcodec.coding.model_files import LoadedModel
from mnistcodec.coding.range_coder import DecodeError, LatentCoder, Symbols
from mnistcodec.coding.zoo import resolve_model
from mnistcodec.errors import InputError
from mnistcodec.model.transforms import images_to_unit
from mnistcodec.storage.digits import IMAGE_SHAPE, check_digits

DEFAULT_CHUNK = 4096
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class Codec:
    """Compress and decompress digits with a frozen model."""

    def __init__(
        self,
        loaded: LoadedModel,
        device: str | torch.device = "cpu",
        chunk_size: int = DEFAULT_CHUNK,
    ) -> None:
        self.loaded = loaded
        self.model = loaded.model.to(device).eval()
        self.device = torch.device(device)
        self.coder = LatentCoder(loaded.tables)
        self.offsets = torch.from_numpy(loaded.tables.offsets.copy()).to(self.device)
        self.chunk_size = int(chunk_size)

    @classmethod
    def from_model(cls, name_or_path: str | os.PathLike, **kwargs) -> Codec:
        """A codec for a model file, or for a shipped model by name (``"seed-lmbda2000"``)."""
        return cls(resolve_model(name_or_path), **kwargs)

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
        bottleneck = self.model.entropy_bottleneck
        k = bottleneck.integers(y, self.offsets)
        bits = bottleneck.bits(bottleneck.dequantize(k, self.offsets))
        return k.cpu().double().numpy(), bits.cpu().double().numpy()

    @torch.no_grad()
    def synthesise(self, k: np.ndarray) -> np.ndarray:
        """Integer latents (N, D) -> uint8 digits (N, 28, 28).

        Latents from real files are float32 values; the clip only matters for
        the huge values random bytes can decode to (generative sampling).
        """
        k64 = np.clip(np.asarray(k, dtype=np.float64), -_FLOAT32_MAX, _FLOAT32_MAX)
        k32 = torch.from_numpy(k64.astype(np.float32)).to(self.device)
        y_hat = self.model.entropy_bottleneck.dequantize(k32, self.offsets)
        x_hat = self.model.synthesis_transform(y_hat)
        pixels = torch.nan_to_num(torch.round(x_hat * 255.0), nan=0.0).clamp(0, 255)
        return pixels.to(torch.uint8).view(-1, *IMAGE_SHAPE).cpu().numpy()

    def _chunks(self, n: int) -> Iterator[slice]:
        for start in range(0, n, self.chunk_size):
            yield slice(start, min(n, start + self.chunk_size))

    # -- per-digit strings -------------------------------------------------------------

    def compress(self, images: np.ndarray) -> tuple[list[bytes], np.ndarray]:
        """One string per digit and each digit's information content in bits."""
        images = check_digits(images)
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
        """All digits in one range-coder stream, and each digit's information in bits.

        The analysis runs in chunks; the integer latents of all digits are kept
        until the stream is written (8 bytes per latent), so files code large
        inputs as a sequence of streams (:mod:`mnistcodec.coding.files`).
        """
        images = check_digits(images)
        k = np.empty((images.shape[0], self.latent_dims))
        info = np.empty(images.shape[0])
        for part in self._chunks(images.shape[0]):
            k[part], info[part] = self.analyse(images[part])
        return self.coder.encode_stream(self.coder.to_symbols(k)), info

    def decode_stream_latents(self, stream: bytes, count: int, check: bool = True) -> np.ndarray:
        """A stream of ``count`` digits -> integer latents k (count, D) (float64, exact)."""
        symbols: Symbols = self.coder.decode_stream(stream, count, check=check)
        return self.coder.from_symbols(symbols)

    def decompress_stream(self, stream: bytes, count: int, check: bool = True) -> np.ndarray:
        """A stream of ``count`` digits -> uint8 digits (count, 28, 28)."""
        k = self.decode_stream_latents(stream, count, check=check)
        out = np.empty((count, *IMAGE_SHAPE), dtype=np.uint8)
        for part in self._chunks(count):
            out[part] = self.synthesise(k[part])
        return out

    # -- generative use ----------------------------------------------------------------

    def sample(self, n: int = 16, seed: int = 0, nbytes: int = 8) -> np.ndarray:
        """Decode ``n`` random ``nbytes``-byte strings with the decode check off: uint8 digits.

        The lab's generative use: random bits decoded through the prior and the
        synthesis transform give digits drawn from (roughly) the learned
        distribution. See :meth:`sample_latents` for how strings are drawn.
        """
        k, _ = self.sample_latents(n, seed=seed, nbytes=nbytes)
        out = np.empty((n, *IMAGE_SHAPE), dtype=np.uint8)
        for part in self._chunks(n):
            out[part] = self.synthesise(k[part])
        return out

    def sample_latents(self, n: int = 16, seed: int = 0, nbytes: int = 8) -> tuple[np.ndarray, int]:
        """Integer latents (n, D) of ``n`` random strings, and how many strings were redrawn.

        Strings come from ``numpy.random.default_rng(seed)``; the rare string the
        range decoder rejects (a state no encoder produces) is replaced by the
        generator's next one, so the result depends only on ``(n, seed, nbytes)``
        and the model.
        """
        if n < 1:
            raise InputError(f"number of samples must be at least 1, got {n}")
        if nbytes < 0:
            raise InputError(f"bytes per string must be non-negative, got {nbytes}")
        if seed < 0:
            raise InputError(f"seed must be non-negative, got {seed}")
        rng = np.random.default_rng(seed)
        rows: list[np.ndarray] = []
        for attempt in range(100 * n):
            try:
                rows.append(self.decode_latents([rng.bytes(nbytes)], check=False)[0])
            except DecodeError:
                continue
            if len(rows) == n:
                return np.stack(rows), attempt + 1 - n
        raise InputError(f"could not decode {n} random {nbytes}-byte strings with this model")

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        """What decoding gives, computed without entropy coding (for tests and checks)."""
        images = check_digits(images)
        out = np.empty_like(images)
        for part in self._chunks(images.shape[0]):
            out[part] = self.synthesise(self.analyse(images[part])[0])
        return out
