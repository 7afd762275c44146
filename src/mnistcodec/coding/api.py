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

A variable-rate model (:mod:`mnistcodec.model.variable_rate`) codes each digit
at a level ``l``: ``k = round(g_l y - o_l)`` with level ``l``'s tables and
offsets, ``y^ = (k + o_l) / g_l``. Every method takes ``levels``: one level for
all digits or one per digit (default: the model's reference level); a
fixed-rate model has the single level 0.

Work is done in chunks of ``chunk_size`` digits so memory stays flat however
many digits are coded. Files (``.mnc``) are written and read by
:mod:`mnistcodec.coding.files`.

Exactness. The integer latents and the bit strings depend only on the stored
tables and are identical on every machine. Decoded pixels are float32 network
outputs rounded to integers: identical on one machine whatever the thread
count, but another CPU, BLAS or device may, in rare pixels, land on the other
side of a rounding boundary (one grey level).

Precision (:mod:`mnistcodec.model.precision`). ``precision="fp32"`` is the
exact reference path. ``"auto"`` (the default) runs, on the CPU, the engine a
calibration measured fastest on this machine for this model among the
conformant ones (:mod:`mnistcodec.coding.calibration`: PyTorch in float32 or
bf16, ONNX Runtime); on a GPU it stays on float32 unless the device has bf16
matrix units, where it encodes with bf16 products and decodes with bf16 in the
one synthesis layer that keeps decoding conformant (99 % of pixels within 1
grey level of float32). ``"bf16"`` runs every heavy layer in bf16, decoding
included. Whatever the precision, the integer latents decoded from a
string are the same: they depend only on the frozen tables.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import torch

from mnistcodec.coding import codebook_levels as cbl
from mnistcodec.coding import sampling
from mnistcodec.coding.calibration import codec_engine
from mnistcodec.coding.engine import Engine
from mnistcodec.coding.latent_search import LatentSearch
from mnistcodec.coding.limits import check_sample
from mnistcodec.coding.mixture_coder import MixtureCoder
from mnistcodec.coding.model_files import LoadedModel
from mnistcodec.coding.names import DEFAULT_CANDIDATES
from mnistcodec.coding.quantiser import Quantiser
from mnistcodec.coding.range_coder import LatentCoder, Symbols
from mnistcodec.coding.refinement import RefinementProblem, refine_integers
from mnistcodec.coding.tables import CodingTables
from mnistcodec.coding.zoo import resolve_model
from mnistcodec.errors import FormatError, InputError
from mnistcodec.model.precision import TransformPrecision
from mnistcodec.model.transforms import images_to_unit
from mnistcodec.model.variable_rate import nearest_level
from mnistcodec.storage.digits import IMAGE_SHAPE, check_digits

DEFAULT_CHUNK = 4096
#: Most refinement steps :class:`Codec` accepts.
MAX_REFINE_STEPS = 100_000
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class Codec:
    """Compress and decompress digits with a frozen model."""

    def __init__(
        self,
        loaded: LoadedModel,
        device: str | torch.device = "cpu",
        chunk_size: int = DEFAULT_CHUNK,
        precision: str = "auto",
        refine_steps: int = 0,
    ) -> None:
        self.loaded = loaded
        if type(refine_steps) is not int or not 0 <= refine_steps <= MAX_REFINE_STEPS:
            raise InputError(
                f"refinement steps must be an integer from 0 to {MAX_REFINE_STEPS}, "
                f"got {refine_steps!r}"
            )
        #: Steps of encoder-side latent refinement (:mod:`mnistcodec.coding.refinement`); 0: none.
        self.refine_steps = refine_steps
        self.model = loaded.model.to(device).eval()
        self.device = torch.device(device)
        #: Runs the two transforms (:mod:`mnistcodec.coding.engine`).
        self.engine = codec_engine(loaded, self.device, precision)
        #: Latents to integers and back at each digit's level (:mod:`mnistcodec.coding.quantiser`).
        self.quantiser = Quantiser(loaded, self.device)
        self.chunk_size = int(chunk_size)
        self.coders = [self._level_coder(*lt) for lt in enumerate(loaded.level_tables)] or [
            LatentCoder(loaded.tables)
        ]
        #: The coder of the default level (a fixed-rate model's only one).
        self.coder = self.coders[self.default_level]
        #: Encoder-side search among training latents (:meth:`enable_search`); None: off.
        self.search: LatentSearch | None = None

    def enable_search(self, train_images: np.ndarray, candidates: int = DEFAULT_CANDIDATES):
        """From now on, search the ``candidates`` most frequent integer latents of ``train_images``
        (:mod:`mnistcodec.coding.latent_search`) for every digit encoded."""
        self.search = LatentSearch(self, train_images, candidates)
        return self.search

    @property
    def offsets(self) -> torch.Tensor:
        """The tables' quantisation offsets (a fixed-rate model's)."""
        return self.quantiser.offsets

    @property
    def level_offsets(self) -> torch.Tensor | None:
        """A variable-rate model's offsets per level (L, D); None for a fixed-rate model."""
        return self.quantiser.level_offsets

    @property
    def gains(self) -> torch.Tensor | None:
        """A variable-rate model's gains per level (L, D); None for a fixed-rate model."""
        return self.quantiser.gains

    def _level_coder(self, level: int, tables: CodingTables) -> LatentCoder:
        """A level's coder: a mixture's codes a component before the latents; a codebook an index."""
        if level in self.loaded.codebooks:
            return cbl.CodebookCoder(self.loaded.codebooks[level], self.latent_dims)
        if self.loaded.component_tables is None:
            return LatentCoder(tables)
        return MixtureCoder(tables, self.loaded.component_tables)

    @property
    def precision(self) -> TransformPrecision:
        """The transforms' bf16 layers in the engine now in use."""
        return self.engine.precision

    @precision.setter
    def precision(self, value: TransformPrecision) -> None:
        """Run PyTorch with these bf16 layers from now on (no engine choice)."""
        self.engine = Engine(self.loaded, precision=value)

    @property
    def levels(self) -> int:
        """Operating points of the model (1 for a fixed-rate model)."""
        return self.loaded.levels

    @property
    def lambdas(self) -> tuple[float, ...]:
        """Each level's lambda."""
        if self.loaded.variable_rate:
            return self.model.lambdas
        return (float(self.loaded.config.lmbda),)

    @property
    def default_level(self) -> int:
        return self.model.reference_level if self.loaded.variable_rate else 0

    def level_for_lambda(self, lmbda: float) -> int:
        """The level whose lambda is nearest to ``lmbda`` (log scale)."""
        return nearest_level(lmbda, self.lambdas)

    def digit_levels(self, levels: int | np.ndarray | None, count: int) -> np.ndarray:
        """``levels`` as one level per digit (int64, ``(count,)``), every one checked."""
        if levels is None:
            levels = self.default_level
        out = np.broadcast_to(np.asarray(levels, dtype=np.int64), (count,)).copy()
        if out.size and (out.min() < 0 or out.max() >= self.levels):
            bad = int(out[(out < 0) | (out >= self.levels)][0])
            raise InputError(
                f"level {bad} does not exist; this model has levels 0 to {self.levels - 1}"
            )
        return out

    def check_file_levels(self, levels: np.ndarray) -> None:
        """A file's levels must be levels of this model: a clean error otherwise."""
        if levels.size and int(levels.max()) >= self.levels:
            raise FormatError(
                f"the file uses level {int(levels.max())}, but this model has levels 0 to "
                f"{self.levels - 1}; decode it with the model that wrote it"
            )

    @classmethod
    def from_model(cls, name_or_path: str | os.PathLike, **kwargs) -> Codec:
        """A codec for a model file, or for a shipped model by name (``"seed-lmbda2000"``)."""
        return cls(resolve_model(name_or_path), **kwargs)

    @property
    def fingerprint(self) -> str:
        return self.loaded.fingerprint

    @property
    def latent_dims(self) -> int:
        return self.loaded.config.latent_dims

    # -- transforms --------------------------------------------------------------------

    @torch.no_grad()
    def latents(self, images: np.ndarray) -> torch.Tensor:
        """uint8 digits -> the analysis transform's latents ``y`` (N, D), float32."""
        y = self.engine.digit_analysis(
            torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        )
        if not torch.isfinite(y).all():
            raise InputError("the analysis transform produced non-finite latents")
        return y

    @torch.no_grad()
    def quantise(self, y: torch.Tensor, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Latents ``y`` at each digit's level -> (integer latents k (N, D), information bits (N,))."""
        index = torch.from_numpy(levels).to(self.device) if self.loaded.variable_rate else None
        k, bits = self.quantiser.integers(y, index)
        return k.cpu().double().numpy(), bits.cpu().double().numpy()

    def analyse(self, images: np.ndarray, levels=None) -> tuple[np.ndarray, np.ndarray]:
        """uint8 digits -> (integer latents k as float64 (N, D), information bits (N,)).

        With ``refine_steps`` the latents are searched per digit
        (:meth:`refine`), with :meth:`enable_search` among training latents
        too; the decoder reads them as any others.
        """
        levels = self.digit_levels(levels, images.shape[0])
        books = cbl.codebook_rows(self.loaded.codebooks, levels)
        if books is None:
            return self.choose_latents(images, self.latents(images), levels)
        y = torch.zeros((images.shape[0], self.latent_dims), device=self.device)
        if not books.all():  # the analysis transform only for digits at network levels
            y[torch.from_numpy(~books).to(self.device)] = self.latents(images[~books])
        return self.choose_latents(images, y, levels)

    def choose_latents(
        self, images: np.ndarray, y: torch.Tensor, levels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(k, information bits)`` sent for latents ``y``: rounded or refined, then searched.

        Digits at codebook levels get their nearest codeword's index instead
        (:mod:`mnistcodec.coding.codebook_levels`).
        """
        books = cbl.codebook_rows(self.loaded.codebooks, levels)
        if books is None:
            return self._network_latents(images, y, levels)
        k, bits = cbl.choose_at_levels(self.loaded.codebooks, images, levels, self.latent_dims)
        net = ~books
        if net.any():
            k[net], bits[net] = self._network_latents(images[net], y[net], levels[net])
        return k, bits

    def _network_latents(
        self, images: np.ndarray, y: torch.Tensor, levels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.refine_steps:
            k, bits = self.refine(images, y, levels, self.refine_steps)
        else:
            k, bits = self.quantise(y, levels)
        if self.search is not None:
            return self.search.improve(images, levels, k, bits)
        return k, bits

    def refinement_problem(self, levels: np.ndarray) -> RefinementProblem:
        """The Lagrangian of each digit at its level, for :mod:`mnistcodec.coding.refinement`."""
        bottleneck, synthesis = self.model.entropy_bottleneck, self.model.synthesis_transform
        if self.loaded.variable_rate:
            index = torch.from_numpy(levels).to(self.device)
            gain, offset = self.gains[index], self.level_offsets[index]
            lmbda = torch.tensor(self.lambdas, dtype=torch.float32, device=self.device)[index]
            return RefinementProblem(
                to_bits=lambda z: bottleneck.information_bits(z, gain),
                to_pixels=lambda z: synthesis(z / gain, index),
                offset=offset,
                lmbda=lmbda,
                distortion=self.loaded.config.distortion,
            )
        return RefinementProblem(
            to_bits=bottleneck.bits,
            to_pixels=lambda z: synthesis(z, None),
            offset=self.offsets,
            lmbda=torch.full((levels.size,), float(self.loaded.config.lmbda), device=self.device),
            distortion=self.loaded.config.distortion,
        )

    def refine(
        self, images: np.ndarray, y: torch.Tensor, levels: np.ndarray, steps: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Refined integer latents (N, D) and their information bits (N,), in fp32.

        Each digit's Lagrangian ``I(k) + lambda D`` is never above the one of
        :meth:`quantise`'s latents (:func:`~mnistcodec.coding.refinement.refine_integers`).
        """
        problem = self.refinement_problem(levels)
        x = images_to_unit(torch.from_numpy(np.ascontiguousarray(images)).to(self.device))
        gain = self.gains[torch.from_numpy(levels)] if self.loaded.variable_rate else 1.0
        v0 = y * gain - problem.offset
        k, _ = refine_integers(problem, x, v0, steps)
        with torch.no_grad():
            bits = problem.to_bits(k + problem.offset)
        return k.cpu().double().numpy(), bits.cpu().double().numpy()

    @torch.no_grad()
    def synthesise(self, k: np.ndarray, levels=None) -> np.ndarray:
        """Integer latents (N, D) -> uint8 digits (N, 28, 28).

        Latents from real files are float32 values; the clip only matters for
        the huge values random bytes can decode to (generative sampling).
        """
        k64 = np.clip(np.asarray(k, dtype=np.float64), -_FLOAT32_MAX, _FLOAT32_MAX)
        if self.loaded.codebooks:
            levels = self.digit_levels(levels, k64.shape[0])
            books = cbl.codebook_rows(self.loaded.codebooks, levels)
            if books is not None:
                out = cbl.lookup_at_levels(self.loaded.codebooks, k64, levels)
                if (~books).any():
                    out[~books] = self.synthesise(k64[~books], levels[~books])
                return out
        k32 = torch.from_numpy(k64.astype(np.float32)).to(self.device)
        index = None
        if self.loaded.variable_rate:
            index = torch.from_numpy(self.digit_levels(levels, k32.shape[0])).to(self.device)
        y_hat = self.quantiser.dequantise(k32, index)
        x_hat = self.engine.synthesis(y_hat, index)
        pixels = torch.nan_to_num(torch.round(x_hat * 255.0), nan=0.0).clamp(0, 255)
        return pixels.to(torch.uint8).view(-1, *IMAGE_SHAPE).cpu().numpy()

    def _chunks(self, n: int) -> Iterator[slice]:
        for start in range(0, n, self.chunk_size):
            yield slice(start, min(n, start + self.chunk_size))

    # -- per-digit strings -------------------------------------------------------------

    def compress(
        self, images: np.ndarray, levels=None, granularity: str = "bit"
    ) -> tuple[list[bytes], np.ndarray]:
        """One string per digit and each digit's information content in bits.

        ``granularity``: ``"bit"`` strings (``.mnc`` version 3, the default; their
        length is :func:`~mnistcodec.coding.container.string_bits`) or the
        ``"byte"`` strings of versions 1 and 2.
        """
        images = check_digits(images)
        levels = self.digit_levels(levels, images.shape[0])
        strings: list[bytes] = []
        info = np.empty(images.shape[0])
        for part in self._chunks(images.shape[0]):
            k, info[part] = self.analyse(images[part], levels[part])
            strings.extend(self.encode_latents(k, levels[part], granularity))
        return strings, info

    def encode_latents(self, k: np.ndarray, levels=None, granularity: str = "bit") -> list[bytes]:
        """Integer latents (N, D) -> one string per digit, each with its level's tables."""
        levels = self.digit_levels(levels, k.shape[0])
        strings: list[bytes] = [b""] * k.shape[0]
        for level in np.unique(levels):
            rows = np.flatnonzero(levels == level)
            coder = self.coders[int(level)]
            for row, string in zip(
                rows, coder.encode_strings(coder.to_symbols(k[rows]), granularity), strict=True
            ):
                strings[row] = string
        return strings

    def decode_latents(
        self, strings: list[bytes], check: bool = True, levels=None, granularity: str = "bit"
    ) -> np.ndarray:
        """Strings -> integer latents k (N, D) (float64, exact)."""
        strings = list(strings)
        levels = self.digit_levels(levels, len(strings))
        k = np.empty((len(strings), self.latent_dims))
        for level in np.unique(levels):
            rows = np.flatnonzero(levels == level)
            coder = self.coders[int(level)]
            symbols = coder.decode_strings([strings[r] for r in rows], check, granularity)
            k[rows] = coder.from_symbols(symbols)
        return k

    def decompress(
        self, strings: list[bytes], check: bool = True, levels=None, granularity: str = "bit"
    ) -> np.ndarray:
        """Strings -> uint8 digits; ``check=False`` only for generative sampling."""
        strings = list(strings)
        levels = self.digit_levels(levels, len(strings))
        out = np.empty((len(strings), *IMAGE_SHAPE), dtype=np.uint8)
        for part in self._chunks(len(strings)):
            k = self.decode_latents(strings[part], check, levels[part], granularity)
            out[part] = self.synthesise(k, levels[part])
        return out

    # -- stream mode -------------------------------------------------------------------

    def compress_stream(
        self, images: np.ndarray, level: int | None = None
    ) -> tuple[bytes, np.ndarray]:
        """All digits in one range-coder stream (one level), and each digit's information in bits.

        The analysis runs in chunks; the integer latents of all digits are kept
        until the stream is written (8 bytes per latent), so files code large
        inputs as a sequence of streams (:mod:`mnistcodec.coding.files`).
        """
        images = check_digits(images)
        level = int(self.digit_levels(level, 1)[0])
        k = np.empty((images.shape[0], self.latent_dims))
        info = np.empty(images.shape[0])
        for part in self._chunks(images.shape[0]):
            k[part], info[part] = self.analyse(images[part], level)
        coder = self.coders[level]
        return coder.encode_stream(coder.to_symbols(k)), info

    def decode_stream_latents(
        self, stream: bytes, count: int, check: bool = True, level: int | None = None
    ) -> np.ndarray:
        """A stream of ``count`` digits -> integer latents k (count, D) (float64, exact)."""
        coder = self.coders[int(self.digit_levels(level, 1)[0])]
        symbols: Symbols = coder.decode_stream(stream, count, check=check)
        return coder.from_symbols(symbols)

    def decompress_stream(
        self, stream: bytes, count: int, check: bool = True, level: int | None = None
    ) -> np.ndarray:
        """A stream of ``count`` digits -> uint8 digits (count, 28, 28)."""
        k = self.decode_stream_latents(stream, count, check=check, level=level)
        out = np.empty((count, *IMAGE_SHAPE), dtype=np.uint8)
        for part in self._chunks(count):
            out[part] = self.synthesise(k[part], level)
        return out

    # -- generative use ----------------------------------------------------------------

    def sample(
        self, n: int = 16, seed: int = 0, nbytes: int = 8, level: int | None = None
    ) -> np.ndarray:
        """Decode ``n`` random ``nbytes``-byte strings with the decode check off: uint8 digits.

        The lab's generative use: random bits decoded through the prior (of
        ``level``'s tables; default the reference level) and the synthesis
        transform give digits drawn from (roughly) the learned distribution. See
        :meth:`sample_latents` for how strings are drawn; :meth:`iter_sample`
        gives them piece by piece.
        """
        out = np.empty((n, *IMAGE_SHAPE), dtype=np.uint8)
        start = 0
        for piece in self.iter_sample(n, seed, nbytes, level):
            out[start : start + piece.shape[0]] = piece
            start += piece.shape[0]
        return out

    def iter_sample(
        self, n: int = 16, seed: int = 0, nbytes: int = 8, level: int | None = None
    ) -> Iterator[np.ndarray]:
        """:meth:`sample`'s digits in pieces of at most ``chunk_size``: memory stays one piece.

        The arguments are checked at the call, before any piece is asked for.
        """
        level = int(self.digit_levels(level, 1)[0])
        check_sample(n, seed, nbytes)
        return sampling.pieces(self, n, sampling.rows(self, n, seed, nbytes, level), level)

    def sample_latents(
        self, n: int = 16, seed: int = 0, nbytes: int = 8, level: int | None = None
    ) -> tuple[np.ndarray, int]:
        """Integer latents (n, D) of ``n`` random strings, and how many strings were redrawn.

        Strings come from ``numpy.random.default_rng(seed)``; the rare string the
        range decoder rejects (a state no encoder produces) is replaced by the
        generator's next one, so the result depends only on ``(n, seed, nbytes,
        level)`` and the model.
        """
        level = int(self.digit_levels(level, 1)[0])
        redrawn = [0]
        rows = np.stack(list(sampling.rows(self, n, seed, nbytes, level, redrawn)))
        return rows, redrawn[0]

    def reconstruct(self, images: np.ndarray, levels=None) -> np.ndarray:
        """What decoding gives, computed without entropy coding (for tests and checks)."""
        images = check_digits(images)
        levels = self.digit_levels(levels, images.shape[0])
        out = np.empty_like(images)
        for part in self._chunks(images.shape[0]):
            out[part] = self.synthesise(self.analyse(images[part], levels[part])[0], levels[part])
        return out
