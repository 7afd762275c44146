"""The playground's work, free of any web framework: every API call is one method here.

:class:`Playground` holds the models, each loaded once on first use
(:class:`ModelCatalogue`), and the MNIST test split (read once, when a test
digit is first asked for). Its methods take bytes and plain values and
return plain values (dicts, bytes), raising the :mod:`mnistcodec.errors`
family on bad input, so that :mod:`mnistcodec.playground.app` only maps
them to HTTP. The methods are safe to call from several threads at once:
the models are only read after loading.

Images sent in are fitted to MNIST's form (:mod:`mnistcodec.storage.fitting`)
unless ``fit=False``, which takes an exact 28x28 8-bit greyscale PNG as it is
(a test digit, coded as the dataset has it). Models are named from the
catalogue only (the shipped models and the one the server was started with):
a name sent in is never opened as a path.
"""

from __future__ import annotations

import base64
import math
import threading
from pathlib import Path

import numpy as np

from mnistcodec.coding.api import Codec
from mnistcodec.coding.container import parse_header, string_bits
from mnistcodec.coding.files import compress_to_bytes, decompress_bytes
from mnistcodec.coding.inspection import inspect_bytes
from mnistcodec.coding.rate_control import LevelChoice
from mnistcodec.coding.zoo import DEFAULT_MODEL, resolve_model, shipped_models
from mnistcodec.data import load_split
from mnistcodec.errors import InputError, WrongModelError
from mnistcodec.experiments.classical_codecs import available_codecs, resolve_codec, round_trip
from mnistcodec.experiments.metrics import mad, psnr_per_image
from mnistcodec.storage.fitting import fit_image_bytes
from mnistcodec.storage.images import decode_png, encode_png, png_grid

#: Largest request body the API reads (an image or a .mnc file).
MAX_BODY_BYTES = 1 << 20
#: Most digits one call to :meth:`Playground.sample_png` decodes.
MAX_WEB_SAMPLES = 64
#: Longest random string :meth:`Playground.sample_png` draws per digit.
MAX_WEB_SAMPLE_BYTES = 64
#: Largest seed :meth:`Playground.sample_png` takes (NumPy's generators take any; JSON numbers do not).
MAX_SEED = (1 << 53) - 1
#: Largest level a request may name (the API's schema; a model has fewer).
MAX_LEVEL = 255
#: Largest image (width x height) the playground decodes: a 16-megapixel photo. Checked from
#: the header, before any pixel is decoded (a JPEG is decoded at a reduced size).
MAX_WEB_PIXELS = 1 << 24
#: Most digits of a dropped ``.mnc`` file decoded.
MAX_DECODED_DIGITS = 1024
#: The classical codecs the page compares with.
CLASSICAL = ("jpeg", "webp", "avif")


class UnknownModelError(InputError):
    """A model name that is not in the catalogue."""


def b64_png(image: np.ndarray) -> str:
    """An 8-bit greyscale image as base64 PNG text (for JSON answers)."""
    return base64.b64encode(encode_png(image)).decode("ascii")


class ModelCatalogue:
    """The models a server offers, each loaded once, on first use (thread-safe)."""

    def __init__(self, default: str = DEFAULT_MODEL) -> None:
        self.files: dict[str, str | Path] = dict(shipped_models())
        if default not in self.files:
            path = Path(default)
            if not path.is_file():
                names = ", ".join(self.files) or "none"
                raise UnknownModelError(
                    f"no model file {default!r} and no shipped model of that name (shipped: {names})"
                )
            default = path.name.removesuffix(".safetensors")
            if default in self.files:  # a file named like a shipped model keeps its path as name
                default = str(path)
            self.files[default] = path
        self.default = default
        self._codecs: dict[str, Codec] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return list(self.files)

    def get(self, name: str | None) -> Codec:
        """The codec of a catalogue name (``None``: the default), loaded on first use."""
        name = self.default if name is None else name
        if name not in self.files:
            raise UnknownModelError(
                f"unknown model {name!r:.80}; this server has: {', '.join(self.files)}"
            )
        with self._lock:
            if name not in self._codecs:
                self._codecs[name] = Codec(resolve_model(self.files[name]))
            return self._codecs[name]

    def for_fingerprint(self, fingerprint: str) -> str | None:
        """The catalogue name of the model with this fingerprint, if any (loads the models)."""
        return next((n for n in self.files if self.get(n).fingerprint == fingerprint), None)

    def describe(self, name: str) -> dict:
        codec = self.get(name)
        return {
            "name": name,
            "default": name == self.default,
            "fingerprint": codec.fingerprint,
            "variable_rate": codec.loaded.variable_rate,
            "levels": codec.levels,
            "lambdas": list(codec.lambdas),
            "default_level": codec.default_level,
            "latent_dims": codec.latent_dims,
        }


def choose_level(codec: Codec, level: int | None, lmbda: float | None) -> int:
    """The level a request names by ``level`` or ``lmbda`` (nearest, log scale), checked."""
    if level is not None and lmbda is not None:
        raise InputError("give level or lmbda, not both")
    if lmbda is not None:
        if not (math.isfinite(lmbda) and lmbda > 0):
            raise InputError(f"lmbda must be positive and finite, got {lmbda}")
        return codec.level_for_lambda(lmbda)
    return int(codec.digit_levels(level, 1)[0])


def latent_view(codec: Codec, k: np.ndarray, level: int) -> dict:
    """One digit's integer latents ``k`` (D,) against the prior of ``level``'s coding tables.

    In the latents' own units: each quantised latent ``y^ = (k + o) / g`` (gain
    ``g`` = 1 for a fixed-rate model), the bits its symbol costs under the
    integer tables (an escaped latent: the escape symbol's), and for every
    in-table value its ``y^`` and probability; ``step`` is the quantisation step
    ``1 / g``. Under a mixture prior the tables are those of the component the
    encoder chooses (``component``, whose index costs ``component_bits``). At a
    codebook level there are no latents: every list is empty and ``codebook``
    holds the codeword's ``index``, the level's ``codewords`` and the index's ``bits``.
    """
    if level in codec.loaded.codebooks:  # no latents: the string is one codeword's index
        book, index = codec.loaded.codebooks[level], int(k[0])
        empty: dict = {key: [] for key in ("values", "k", "bits", "step")}
        codebook = {"index": index, "codewords": book.size, "bits": book.index_bits([index])[0]}
        return {
            **empty,
            "prior_values": [],
            "prior_probs": [],
            "component": None,
            "component_bits": 0.0,
            "codebook": {**codebook, "bits": float(codebook["bits"])},
        }
    coder = codec.coders[level]
    tables = coder.tables
    component, component_bits = coder.component_of(k)
    rows = coder.rows(component)
    offsets, lower = tables.offsets[rows].astype(np.float64), tables.lower[rows]
    if codec.loaded.variable_rate:
        gains = codec.gains[level].detach().cpu().double().numpy()
    else:
        gains = np.ones(codec.latent_dims)
    grid = lower[:, None].astype(np.float64) + np.arange(tables.width)[None, :]
    index = np.where((k >= lower) & (k < lower + tables.width), k - lower, tables.escape).astype(
        np.int64
    )
    bits = tables.symbol_bits()[rows, index]
    return {
        "values": ((k + offsets) / gains).tolist(),
        "k": k.astype(np.int64).tolist(),
        "bits": bits.tolist(),
        "step": (1.0 / gains).tolist(),
        "component": component,
        "component_bits": component_bits,
        "prior_values": ((grid + offsets[:, None]) / gains[:, None]).round(6).tolist(),
        "prior_probs": tables.probabilities()[rows, :-1].round(6).tolist(),
    }


def _binary(string: bytes) -> str:
    """A bit string as its ``0`` and ``1`` characters (its bits only, no padding)."""
    return "".join(f"{byte:08b}" for byte in string)[: string_bits(string)]


def _nearest_size(spec, digit: np.ndarray, target_bytes: int) -> tuple[int, bytes, np.ndarray]:
    """The quality of ``spec`` whose file is nearest ``target_bytes`` (bisection on quality)."""
    low, high = int(min(spec.qualities)), int(max(spec.qualities))
    tried: dict[int, tuple[bytes, np.ndarray]] = {}

    def size(quality: int) -> int:
        if quality not in tried:
            tried[quality] = round_trip(spec, digit, quality)
        return len(tried[quality][0])

    lo, hi = low, high
    while lo < hi:  # the smallest quality whose file reaches the target
        mid = (lo + hi) // 2
        if size(mid) >= target_bytes:
            hi = mid
        else:
            lo = mid + 1
    candidates = [q for q in (lo - 1, lo) if low <= q <= high]
    best = min(candidates, key=lambda q: (abs(size(q) - target_bytes), -q))
    return best, *tried[best]


class Playground:
    """The playground's operations on a :class:`ModelCatalogue` and the MNIST test split."""

    def __init__(self, default_model: str = DEFAULT_MODEL, data_dir: str | None = None) -> None:
        self.models = ModelCatalogue(default_model)
        self.data_dir = data_dir
        self._test = None
        self._test_lock = threading.Lock()

    # -- inputs --------------------------------------------------------------------------

    def digit(self, data: bytes, fit: bool = True) -> np.ndarray:
        """A request body as a uint8 digit (28, 28): fitted, or an exact 28x28 PNG as it is."""
        if len(data) > MAX_BODY_BYTES:
            raise InputError(f"the body holds more than {MAX_BODY_BYTES} bytes")
        if fit:
            return fit_image_bytes(data, "the image", max_pixels=MAX_WEB_PIXELS)
        return decode_png(data, "the image")

    def test_digit(self, index: int) -> dict:
        """Test digit ``index`` of MNIST: its label and its PNG (base64)."""
        with self._test_lock:
            if self._test is None:
                self._test = load_split("test", data_dir=self.data_dir)
        count = self._test.images.shape[0]
        if not 0 <= index < count:
            raise InputError(f"test digit index must be from 0 to {count - 1}, got {index}")
        return {
            "index": index,
            "label": int(self._test.labels[index]),
            "png": b64_png(self._test.images[index]),
        }

    # -- coding ----------------------------------------------------------------------------

    def compress(self, data: bytes, model=None, level=None, lmbda=None, fit=True) -> dict:
        """Code one image: its string, bits, reconstruction, PSNR, MAD and latents."""
        codec = self.models.get(model)
        level = choose_level(codec, level, lmbda)
        digit = self.digit(data, fit)[None]
        k, info = codec.analyse(digit, level)  # what Codec.compress does, keeping k
        string = codec.encode_latents(k, level)[0]
        decoded = codec.decompress([string], levels=level)
        return {
            "model": model or self.models.default,
            "level": level,
            "lmbda": codec.lambdas[level],
            "string_hex": string.hex(),
            "string_bytes": len(string),
            "string_bits": string_bits(string),
            "string_binary": _binary(string),
            "info_bits": float(info[0]),
            "psnr_db": float(psnr_per_image(digit, decoded)[0]),
            "mad": mad(digit, decoded),
            "input_png": b64_png(digit[0]),
            "reconstruction_png": b64_png(decoded[0]),
            "latents": latent_view(codec, k[0], level),
        }

    def mnc(self, data: bytes, model=None, level=None, lmbda=None, fit=True) -> bytes:
        """The ``.mnc`` file of one image (per-digit mode)."""
        codec = self.models.get(model)
        level = choose_level(codec, level, lmbda)
        digit = self.digit(data, fit)[None]
        return compress_to_bytes(codec, digit, choice=LevelChoice(level=level)).data

    def compare(self, data: bytes, model=None, level=None, lmbda=None, fit=True) -> dict:
        """The digit through JPEG, WebP and AVIF at the quality nearest the learned string's size."""
        codec = self.models.get(model)
        level = choose_level(codec, level, lmbda)
        digit = self.digit(data, fit)
        strings, _ = codec.compress(digit[None], level)
        target = len(strings[0])
        usable = set(available_codecs())
        rows = []
        for name in CLASSICAL:
            spec = resolve_codec(name)
            row = {"codec": name, "label": spec.label}
            if name not in usable:
                rows.append({**row, "error": "not available in this imagecodecs build"})
                continue
            quality, encoded, decoded = _nearest_size(spec, digit, target)
            rows.append(
                {
                    **row,
                    "quality": quality,
                    "bytes": len(encoded),
                    "bits": 8 * len(encoded),
                    "psnr_db": float(psnr_per_image(digit[None], decoded[None])[0]),
                    "mad": mad(digit[None], decoded[None]),
                    "png": b64_png(decoded),
                }
            )
        return {"target_bytes": target, "target_bits": string_bits(strings[0]), "codecs": rows}

    def sample_png(
        self, model=None, seed: int = 0, n: int = 16, nbytes: int = 8, level=None, lmbda=None
    ) -> bytes:
        """``n`` random ``nbytes``-byte strings decoded at a level (as :meth:`compress` names
        it: ``level`` or ``lmbda``), as one PNG grid."""
        if not 1 <= n <= MAX_WEB_SAMPLES:
            raise InputError(f"n must be from 1 to {MAX_WEB_SAMPLES}, got {n}")
        if not 0 <= nbytes <= MAX_WEB_SAMPLE_BYTES:
            raise InputError(f"bytes must be from 0 to {MAX_WEB_SAMPLE_BYTES}, got {nbytes}")
        if not 0 <= seed <= MAX_SEED:
            raise InputError(f"seed must be from 0 to {MAX_SEED}, got {seed}")
        codec = self.models.get(model)
        level = choose_level(codec, level, lmbda)
        return encode_png(png_grid(codec.sample(n, seed=seed, nbytes=nbytes, level=level)))

    def decode_mnc(self, data: bytes, model: str | None = None) -> dict:
        """A ``.mnc`` file decoded: its digits as a PNG grid, with what its header says."""
        if len(data) > MAX_BODY_BYTES:
            raise InputError(f"the file holds more than {MAX_BODY_BYTES} bytes")
        header = parse_header(data)
        if header.count > MAX_DECODED_DIGITS:
            raise InputError(
                f"the file holds {header.count} digits; the playground decodes at most "
                f"{MAX_DECODED_DIGITS} (use mnistcodec decompress)"
            )
        info = inspect_bytes(data)
        if model is None:
            model = self.models.for_fingerprint(header.fingerprint_hex)
            if model is None:
                raise WrongModelError(
                    f"the file was written by model {header.fingerprint_hex[:16]}, "
                    "which this server does not have"
                )
        codec = self.models.get(model)
        digits = decompress_bytes(codec, data)
        return {
            "model": model,
            "count": header.count,
            "mode": header.mode,
            "file_bytes": len(data),
            "levels": info.get("levels", [])[:MAX_DECODED_DIGITS],
            "grid_png": b64_png(png_grid(digits)),
            "first_png": b64_png(digits[0]),
        }
