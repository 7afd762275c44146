"""Inference engines: the ways the codec can run a model's two transforms on this machine.

The codec (:class:`~mnistcodec.coding.api.Codec`) calls ``engine.analysis(x)``
(pixels / 255 -> latents ``y``) and ``engine.synthesis(y_hat, levels)``
(quantised latents -> ``x_hat``); everything around them (quantisation, the
tables, the range coder, pixel rounding) is the same whatever the engine. The
engines (:data:`ENGINES`):

* ``torch``: PyTorch eager in float32 with the CPU kernels of
  :mod:`mnistcodec.model.cpu_kernels` (channels-last convolutions, grid-order
  dense weights, the 20->1 transposed convolution as one product). The exact
  reference: golden files decode to the same pixels on it.
* ``torch-onednn``: ``torch`` with two float32 kernels changed
  (:func:`mnistcodec.model.precision.onednn_float32`): the dense layers'
  products on oneDNN's matmul instead of PyTorch's default sgemm (MKL's on
  x86), and the synthesis' 50->20 transposed convolution as a sub-pixel
  convolution; a conditioned decoder's maps are folded into the weights, as
  for the bf16 decoders. The same float32 function, summed in another order;
  offered where PyTorch has that op.
* ``torch-bf16``: the same, with the heavy layers' products in bf16 by
  rounding (:func:`mnistcodec.model.precision.emulated`): the analysis' two
  heavy layers, and in the synthesis only the 500->2450 layer (the
  conformant decoder of ``docs/precision.md``).
* ``torch-bf16-native``: the same layers through oneDNN's bfloat16 kernels,
  which use AVX512-BF16 dot products or AMX tiles; offered only on CPUs that
  have one of them.
* ``torch-bf16-full`` (measured as a decoder): ``torch-bf16-native`` with
  both heavy synthesis layers in bf16 (the 50->20 transposed convolution too,
  its slowest layer in float32). Not conformant by construction: the
  calibration keeps it only where it measures :data:`DECODER_CALIBRATION_SHARE`
  of the pixels within 1 grey level on the model's own pictures.
* ``torch-int8`` (encoder only): the analysis with ``conv_2`` and ``fc_1`` in
  int8 through oneDNN's quantised kernels (VNNI or AMX-INT8 where the CPU has
  them), its activation ranges fixed from digit-like pictures
  (:mod:`mnistcodec.model.int8_kernels`; the calibration keeps them in its
  cache entry, :func:`int8_ranges`); offered where PyTorch runs those
  kernels. Decoders stay in float32 or bf16: their rule is pixels.
* ``onnxruntime``: ONNX Runtime's CPU provider on the reference graphs of
  :mod:`mnistcodec.coding.onnx_export` (float32), run in sub-batches of
  ``chunk`` digits; offered where ``onnxruntime`` and ``onnx`` import. The
  graphs are exported once per model and kept in the cache directory.

Conformance. Every engine other than ``torch`` computes the same functions in
another order of float operations (or in bf16), so it is held to bounds: a
decoder to the rule of ``docs/precision.md`` (at least 99 % of pixels within 1
grey level of ``torch``), an encoder to the rate and PSNR it gives: at each
digit's level, the mean information content within :data:`ENCODER_INFO_SHARE`
and the mean PSNR within :data:`ENCODER_PSNR_DB` of ``torch``'s, with at most
:data:`ENCODER_LATENT_SHARE` of the integer latents changed (an encoder may
choose its latents: any latents decode, so what an encoder engine can cost is
rate and distortion; ``docs/precision.md``). :mod:`mnistcodec.coding.calibration`
measures them and chooses; ``MNISTCODEC_ENGINE`` overrides the choice.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mnistcodec.coding import memory
from mnistcodec.coding.model_files import LoadedModel
from mnistcodec.coding.onnx_export import onnx_graph
from mnistcodec.coding.quantiser import Quantiser
from mnistcodec.errors import InputError
from mnistcodec.model import int8_kernels
from mnistcodec.model import precision as P
from mnistcodec.model.transforms import images_to_unit
from mnistcodec.storage.digits import IMAGE_SHAPE

ENGINES = (
    "torch",
    "torch-onednn",
    "torch-bf16",
    "torch-bf16-native",
    "torch-bf16-full",
    "torch-int8",
    "onnxruntime",
)
#: Engines that run only the analysis transform.
ENCODER_ONLY = ("torch-int8",)
#: Engines whose analysis is another engine's (``torch-bf16-native``): measured as decoders only.
DECODER_MEASURED_ONLY = ("torch-bf16-full",)
#: Digit-like pictures the int8 encoder's activation ranges are measured on.
INT8_RANGE_PICTURES = 256
#: The exact reference engine.
REFERENCE = "torch"
#: Sub-batch sizes the ONNX Runtime engine is measured with.
ORT_CHUNKS = (256, 1024)
#: An encoder engine's bounds against ``torch``, at each digit's level: the mean
#: information content at most this share above, the PSNR at most this many dB below ...
ENCODER_INFO_SHARE = 0.005
ENCODER_PSNR_DB = 0.05
#: ... and at most this share of the integer latents changed (the int8 encoder changes
#: up to 0.75 % of the default model's at its highest level, at no measurable cost).
ENCODER_LATENT_SHARE = 0.01
#: Folded decoders an engine keeps (about 5 MB each), the most recently used levels.
FOLDED_LEVELS = 4
#: ``torch-onednn`` folds a level's maps into the weights only for a level with at least
#: this many digits in a call (or the call's only level); the other digits run together
#: through the conditioned transform, their maps applied per digit.
FOLD_MIN_DIGITS = 256
#: Least share of pixels a decoder engine keeps within 1 grey level of ``torch``.
DECODER_PIXEL_SHARE = 0.99
#: ... and the share the calibration asks of it on the model's own pictures, a margin
#: for digits those pictures do not resemble.
DECODER_CALIBRATION_SHARE = 0.995


@dataclass(frozen=True)
class Choice:
    """How each transform runs: an engine name per side and the ONNX Runtime sub-batch."""

    encoder: str = REFERENCE
    decoder: str = REFERENCE
    chunk: int = ORT_CHUNKS[-1]

    def describe(self) -> dict:
        return {"encoder": self.encoder, "decoder": self.decoder, "chunk": self.chunk}

    @classmethod
    def parse(cls, record: dict) -> Choice:
        """A choice from its :meth:`describe` record; ``ValueError`` when it is not one."""
        choice = cls(str(record["encoder"]), str(record["decoder"]), int(record["chunk"]))
        if (
            choice.encoder not in ENGINES
            or choice.decoder not in ENGINES
            or choice.decoder in ENCODER_ONLY
            or choice.chunk < 1
        ):
            raise ValueError(f"not an engine choice: {record!r}")
        return choice


def parse_override(text: str) -> Choice:
    """``MNISTCODEC_ENGINE``: one engine for both sides, or ``ENCODER,DECODER``.

    An encoder-only engine named alone leaves the decoder on ``torch``.
    """
    parts = [part.strip() for part in text.split(",")]
    if len(parts) not in (1, 2) or any(part not in ENGINES for part in parts):
        raise InputError(
            f"MNISTCODEC_ENGINE={text!r} is not an engine; use auto or one of "
            f"{', '.join(ENGINES)} (or ENCODER,DECODER)"
        )
    if len(parts) == 2 and parts[1] in ENCODER_ONLY:
        raise InputError(f"MNISTCODEC_ENGINE={text!r}: {parts[1]} runs encoders only")
    decoder = parts[-1] if parts[-1] not in ENCODER_ONLY else REFERENCE
    return Choice(parts[0], decoder)


def available_engines() -> tuple[str, ...]:
    """The engines this machine can run."""
    names = ["torch"]
    if P.onednn_float32_available():
        names.append("torch-onednn")
    names.append("torch-bf16")
    if P.bf16_vector_units():
        names.extend(("torch-bf16-native", "torch-bf16-full"))
    if int8_kernels.available():
        names.append("torch-int8")
    if onnxruntime_version() is not None:
        names.append("onnxruntime")
    return tuple(names)


#: Environment variables that cap the instruction sets of oneDNN's and PyTorch's own
#: vectorised kernels below what the CPU has.
ISA_CAP_VARS = (*P.ONEDNN_CAP_VARS, "ATEN_CPU_CAPABILITY")
#: Those, and others that change which kernels run or how (MKL's cap, oneDNN's float32
#: arithmetic): a choice measured under one setting is not a choice for another.
KERNEL_CAP_VARS = (*ISA_CAP_VARS, "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_DEFAULT_FPMATH_MODE")


def kernel_caps() -> dict[str, str]:
    """The instruction-set caps in force: the :data:`KERNEL_CAP_VARS` that are set, and the
    vector capability PyTorch's own kernels dispatched to (``AVX512``, ``AVX2``, ...)."""
    caps = {name: os.environ[name] for name in KERNEL_CAP_VARS if os.environ.get(name)}
    capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    if capability is not None:
        caps["aten"] = capability()
    return caps


def isa_capped() -> bool:
    """Whether oneDNN or PyTorch's kernels are capped below the CPU's instruction sets."""
    return any(os.environ.get(name) for name in ISA_CAP_VARS)


def candidate_engines() -> tuple[str, ...]:
    """The engines a calibration measures: all available but ``torch-bf16``, and but
    ``onnxruntime`` under an instruction-set cap.

    Rounding to bf16 around float32 products (``torch-bf16``) does the float32
    work and more, so it never beats ``torch``; it stays an explicit choice. ONNX
    Runtime picks its kernels from the CPU alone and ignores the caps of
    :data:`ISA_CAP_VARS`: where a cap is set it is not measured (it can still be
    named in ``MNISTCODEC_ENGINE``).
    """
    skipped = {"torch-bf16", *(("onnxruntime",) if isa_capped() else ())}
    return tuple(name for name in available_engines() if name not in skipped)


def onnxruntime_version() -> str | None:
    """ONNX Runtime's version, or None when it (or ``onnx``, to export graphs) is missing."""
    try:
        import onnx  # noqa: F401  # lazy: optional dependency, only for this engine
        import onnxruntime  # lazy: optional dependency, only for this engine
    except ImportError:
        return None
    return str(onnxruntime.__version__)


# -- running the transforms ----------------------------------------------------------------


def _torch_layers(engine: str, side: str) -> tuple[tuple[str, ...], str | None]:
    """The bf16 layers and bf16 route of ``engine`` on ``side`` (none: float32 or not torch)."""
    if engine not in ("torch-bf16", "torch-bf16-native", "torch-bf16-full"):
        return (), None
    if side == "analysis":
        layers = P.BF16_LAYERS["analysis"]
    elif engine == "torch-bf16-full":
        layers = P.BF16_LAYERS["synthesis"]
    else:
        layers = P.CONFORMANT_SYNTHESIS_LAYERS
    return layers, "emulated" if engine == "torch-bf16" else "native"


def _batch_memory(inputs: torch.Tensor) -> None:
    """A batch on the CPU: keep freed buffers for the next sub-batch (:mod:`mnistcodec.coding.memory`)."""
    if inputs.shape[0] >= memory.BATCH_DIGITS and inputs.device.type == "cpu":
        memory.reuse_for_batches()


class Engine:
    """Runs a model's transforms as a :class:`Choice` says (CPU), or at a fixed precision."""

    def __init__(
        self,
        loaded: LoadedModel,
        choice: Choice = Choice(),
        precision: P.TransformPrecision | None = None,
        graphs_dir: Path | None = None,
        int8_ranges: tuple[tuple[float, float], ...] | None = None,
    ) -> None:
        self.loaded, self.choice = loaded, choice
        #: A fixed precision (``--precision fp32`` / ``bf16``, any device) instead of a choice.
        self.fixed = precision
        self.graphs_dir = graphs_dir
        self._sessions: dict[str, object] = {}
        self._folded: dict[int, torch.nn.Module] = {}
        self._int8: int8_kernels.Int8Analysis | None = None
        #: The int8 encoder's activation ranges (:func:`int8_ranges`), if already measured.
        self.int8_ranges = int8_ranges

    @property
    def precision(self) -> P.TransformPrecision:
        """The bf16 layers of the torch engines in use (none for ONNX Runtime)."""
        if self.fixed is not None:
            return self.fixed
        return P.TransformPrecision(
            _torch_layers(self.choice.encoder, "analysis")[0],
            _torch_layers(self.choice.decoder, "synthesis")[0],
        )

    def describe(self) -> dict:
        if self.fixed is not None:
            return {"engine": "torch", **self.fixed.describe()}
        return {"engine": self.choice.describe(), **self.precision.describe()}

    @torch.no_grad()
    def digit_analysis(self, digits: torch.Tensor) -> torch.Tensor:
        """uint8 digits (N, 28, 28) -> :meth:`analysis` of ``digits / 255``. The int8 encoder
        reads the digits' 8 bits as they are, without the round trip through float32."""
        if self._int8_encodes(digits):
            _batch_memory(digits)
            return self._int8_analysis().digits(digits)
        return self.analysis(images_to_unit(digits))

    def _int8_encodes(self, inputs: torch.Tensor) -> bool:
        """Whether the int8 encoder runs the analysis of ``inputs`` (chosen, and on the CPU)."""
        return (
            self.fixed is None
            and self.choice.encoder == "torch-int8"
            and inputs.device.type == "cpu"
        )

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (N, 1, 28, 28) float32 in [0, 1] -> latents ``y`` (N, D) float32."""
        _batch_memory(x)
        transform = self.loaded.model.analysis_transform
        if self.fixed is not None:
            with P.products_in_bf16(transform, self.fixed.analysis):
                return transform(x)
        if self.choice.encoder == "onnxruntime" and x.device.type == "cpu":
            return self._run_onnx("analysis", x, None)
        if self._int8_encodes(x):
            return self._int8_analysis()(x)
        layers, route = _torch_layers(self.choice.encoder, "analysis")
        dense = self.choice.encoder == "torch-onednn"
        with P.products_in_bf16(transform, layers), P.bf16_route(route), P.onednn_float32(dense):
            return transform(x)

    @torch.no_grad()
    def synthesis(self, y_hat: torch.Tensor, levels: torch.Tensor | None) -> torch.Tensor:
        """``y_hat`` (N, D) and each digit's level (or None) -> ``x_hat`` (N, 1, 28, 28)."""
        _batch_memory(y_hat)
        transform = self.loaded.model.synthesis_transform
        if self.fixed is not None:
            with P.products_in_bf16(transform, self.fixed.synthesis):
                return transform(y_hat, levels)
        if self.choice.decoder == "onnxruntime" and y_hat.device.type == "cpu":
            return self._run_onnx("synthesis", y_hat, levels)
        layers, route = _torch_layers(self.choice.decoder, "synthesis")
        dense = self.choice.decoder == "torch-onednn"
        if (route is not None or dense) and levels is not None and hasattr(transform, "folded"):
            return self._folded_synthesis(y_hat, levels, layers, route, dense)
        with P.products_in_bf16(transform, layers), P.bf16_route(route), P.onednn_float32(dense):
            return transform(y_hat, levels)

    def _per_digit_maps(
        self, y_hat: torch.Tensor, levels: torch.Tensor, folding: list[int]
    ) -> torch.Tensor | None:
        """The ``torch-onednn`` synthesis of the digits whose level is not in ``folding``, with
        their maps applied per digit, in an output for all digits (None: no such digit)."""
        rest = torch.nonzero(~torch.isin(levels, torch.tensor(folding, dtype=levels.dtype)))
        if not rest.numel():
            return None
        rest = rest.squeeze(1)
        with P.onednn_float32(True):
            part = self.loaded.model.synthesis_transform(y_hat[rest], levels[rest])
        if rest.numel() == levels.numel():
            return part
        out = part.new_empty((levels.numel(), *part.shape[1:]))
        out[rest] = part
        return out

    def _folded_synthesis(
        self,
        y_hat: torch.Tensor,
        levels: torch.Tensor,
        layers: tuple[str, ...],
        route: str | None,
        dense: bool = False,
    ) -> torch.Tensor:
        """A conditioned decoder's bf16 and oneDNN engines: each level's maps folded into the
        weights.

        The digits of one level run through that level's plain transform
        (:meth:`~mnistcodec.model.transforms.ConditionedSynthesisTransform.folded`,
        kept for the :data:`FOLDED_LEVELS` most recent levels), without the
        per-digit maps; bounded like any other decoder than ``torch``. For
        ``torch-onednn``, only levels with :data:`FOLD_MIN_DIGITS` digits or more
        (or a call's only level) are folded: on 1,024 digits at 16 levels, folding
        each level (again, past the four kept) ran at 0.6x the per-digit maps, while
        one folded level ran at about 1.1x them (AVX2 kernels).
        """
        unique, counts = torch.unique(levels, return_counts=True)
        folding, out = unique.tolist(), None
        if dense and route is None and len(folding) > 1:
            folding = [
                lv for lv, c in zip(folding, counts.tolist(), strict=True) if c >= FOLD_MIN_DIGITS
            ]
            out = self._per_digit_maps(y_hat, levels, folding)
        for level in folding:
            transform = self._folded.pop(level, None)
            if transform is None:
                transform = self.loaded.model.synthesis_transform.folded(level)
            self._folded[level] = transform  # the most recent last
            while len(self._folded) > FOLDED_LEVELS:
                del self._folded[next(iter(self._folded))]
            rows = torch.nonzero(levels == level).squeeze(1)
            with (
                P.products_in_bf16(transform, layers),
                P.bf16_route(route),
                P.onednn_float32(dense),
            ):
                if rows.numel() == levels.numel():
                    return transform(y_hat)
                part = transform(y_hat[rows])
            if out is None:
                out = part.new_empty((levels.numel(), *part.shape[1:]))
            out[rows] = part
        return out if out is not None else y_hat.new_empty((0, 1, *IMAGE_SHAPE))

    def _int8_analysis(self) -> int8_kernels.Int8Analysis:
        """The int8 analysis, with the ranges given or measured once (:func:`int8_ranges`)."""
        if self._int8 is None:
            if self.int8_ranges is None:
                self.int8_ranges = int8_ranges(self.loaded)
            transform = self.loaded.model.analysis_transform
            self._int8 = int8_kernels.Int8Analysis(transform, self.int8_ranges)
        return self._int8

    def _run_onnx(self, side: str, inputs: torch.Tensor, levels: torch.Tensor | None):
        session = self._session(side)
        names = [i.name for i in session.get_inputs()]
        array = inputs.contiguous().numpy()
        parts = []
        for start in range(0, array.shape[0], self.choice.chunk):
            feed = {names[0]: array[start : start + self.choice.chunk]}
            if len(names) > 1:
                rows = levels[start : start + self.choice.chunk] if levels is not None else None
                if rows is None:
                    raise InputError("a conditioned synthesis transform needs each digit's level")
                feed[names[1]] = rows.to(torch.int64).numpy()
            parts.append(session.run(None, feed)[0])
        out = np.concatenate(parts) if parts else np.empty((0,), np.float32)
        shape = (
            (-1, self.loaded.config.latent_dims) if side == "analysis" else (-1, 1, *IMAGE_SHAPE)
        )
        return torch.from_numpy(out).reshape(shape)

    def _session(self, side: str):
        if side not in self._sessions:
            import onnxruntime  # lazy: optional dependency, only for this engine

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            options.inter_op_num_threads = 1
            # Its threads would otherwise spin after each run, taking the cores from
            # whatever runs next (PyTorch's threads: the calibration measured the float32
            # encoder at half its speed right after ONNX Runtime on 2 cores).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._sessions[side] = onnxruntime.InferenceSession(
                onnx_graph(self.loaded, side, self.graphs_dir),
                options,
                providers=["CPUExecutionProvider"],
            )
        return self._sessions[side]


# -- digit-like pictures ---------------------------------------------------------------------


def cycled_levels(loaded: LoadedModel, digits: int) -> torch.Tensor | None:
    """Digit ``n``'s level, the ``n mod L``-th of the ``L`` levels the network codes, for a
    variable-rate model (None for a fixed-rate one); codebook levels use no transform."""
    if not loaded.variable_rate:
        return None
    network = loaded.network_levels
    return torch.tensor(network)[torch.arange(digits) % len(network)]


@torch.no_grad()
def digit_like_pictures(loaded: LoadedModel, digits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Digit-like images ``x`` (N, 1, 28, 28) and decoder latents ``y_hat`` (N, D), by ``torch``.

    Noise is coded and reconstructed, digit ``n`` at level ``n mod L``
    (:func:`cycled_levels`), then those pictures once more: the synthesis'
    outputs are pictures of its own kind, whatever the model, with no dataset
    needed; ``y_hat`` are the quantised latents of the second pictures.
    """
    reference, quantiser = Engine(loaded), Quantiser(loaded)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((digits, 1, 28, 28), generator=generator)
    levels = cycled_levels(loaded, digits)
    y_hat = quantiser.dequantise(quantiser.integers(reference.analysis(x), levels)[0], levels)
    x = torch.round(reference.synthesis(y_hat, levels).clamp(0, 1) * 255) / 255
    y_hat = quantiser.dequantise(quantiser.integers(reference.analysis(x), levels)[0], levels)
    return x, y_hat


def int8_ranges(loaded: LoadedModel) -> tuple[tuple[float, float], ...]:
    """The int8 encoder's activation ranges, measured on :data:`INT8_RANGE_PICTURES`
    digit-like pictures (about 0.1 s; the calibration keeps them in its cache entry)."""
    x = digit_like_pictures(loaded, INT8_RANGE_PICTURES)[0]
    try:
        return int8_kernels.activation_ranges(loaded.model.analysis_transform, x)
    except ValueError as exc:
        raise InputError(f"the torch-int8 engine cannot run this model: {exc}") from None


def parse_int8_ranges(record) -> tuple[tuple[float, float], ...] | None:
    """Ranges from a cache entry (``[[lo, hi], [lo, hi]]``), or None when they are not that."""
    try:
        ranges = tuple((float(lo), float(hi)) for lo, hi in record)
    except (TypeError, ValueError):
        return None
    valid = len(ranges) == 2 and all(
        math.isfinite(lo) and math.isfinite(hi) and lo <= 0 <= hi for lo, hi in ranges
    )
    return ranges if valid else None
