"""Devices, and the numeric precision of the transforms: float32, the exact reference, or bf16.

bf16 follows the standard mixed-precision recipe. The chosen layers' products
read their input and weight rounded to bfloat16, accumulate in float32 (oneDNN
on the CPU's matrix units, cuBLAS on tensor cores) and return a bfloat16
result, which is widened back to float32 before the bias is added. Everything
else stays float32: master weights, biases, activations between layers, the
prior, the rate, the loss and the optimizer.

Which layers (:data:`BF16_LAYERS`): the two heavy layers of each transform,
the analysis' 20->50 convolution and 2450->500 dense layer, the synthesis'
500->2450 dense layer and 50->20 transposed convolution: 94 % of each
transform's multiply-adds. The small layers next to the image and to the
latents stay float32.

Decoding is held to a conformance rule, as JPEG bounds its inverse
transform's error: at least 99 % of the pixels within 1 grey level of the
float32 reference. Measured on the 10,000 test digits with the shipped
models on an AVX2 CPU, bf16 in both heavy synthesis layers missed it
(98.7-98.9 %: the 50->20 layer's bfloat16 result feeds the last layer); bf16
in the 500->2450 layer alone keeps 99.9999 % within 1 level (at most 2 levels
off). So the conformant decoder uses :data:`CONFORMANT_SYNTHESIS_LAYERS`, and
both layers are opt-in (``bf16``); on CPUs whose bf16 kernels keep both
layers within the rule, the engine calibration may choose them per model
(``torch-bf16-full``, :mod:`mnistcodec.coding.engine`).

``auto`` picks bf16 only where the device has bf16 matrix units
(:func:`bf16_matrix_units`): AMX tiles on the CPU, tensor cores of compute
capability 8 or later on CUDA; elsewhere it stays on float32. Training also
takes bf16 on CPUs with AVX512-BF16 (:func:`bf16_units`), through
oneDNN's bfloat16 kernels, measured faster than float32 there.

Where ``bf16`` is asked for on a device without any of those units, the products are
computed by rounding: the operands are rounded to bfloat16, multiplied and
summed in float32 (the product of two bfloat16 numbers is exact in float32),
and the result is rounded to bfloat16 (:func:`emulated`). That is the matrix
units' arithmetic up to the order of the sums, at float32's speed; the
library's own bfloat16 kernels on vector units are several times slower than
float32 (7x for a training epoch, 18x for the 50->20 transposed convolution,
on an AVX2 CPU). ``MNISTCODEC_BF16=native`` or ``emulated`` forces one way,
and :func:`bf16_route` does so inside a block (the engine calibration of
:mod:`mnistcodec.coding.engine` measures both routes on CPUs with AVX512-BF16,
whose bf16 dot products oneDNN uses without AMX).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mnistcodec.errors import InputError
from mnistcodec.model.names import PRECISIONS

BF16 = torch.bfloat16

#: The layers whose products run in bf16, per transform.
BF16_LAYERS = {"analysis": ("conv_2", "fc_1"), "synthesis": ("fc_2", "conv_1")}
#: The synthesis layers a conformant decoder runs in bf16 (see the module docstring).
CONFORMANT_SYNTHESIS_LAYERS = ("fc_2",)


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` picks CUDA when available, else CPU; ``cuda`` without a GPU is refused."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was requested but no CUDA device is available")
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"unknown device {name!r}; use auto, cpu or cuda")
    return device


def check_precision(name: str) -> str:
    if name not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    return name


#: The variables that cap oneDNN's instruction sets (the older name second).
ONEDNN_CAP_VARS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
#: oneDNN's instruction sets, smallest first, as ``ONEDNN_MAX_CPU_ISA`` names them.
ONEDNN_ISAS = (
    "SSE41",
    "AVX",
    "AVX2",
    "AVX2_VNNI",
    "AVX2_VNNI_2",
    "AVX512_CORE",
    "AVX512_CORE_VNNI",
    "AVX512_CORE_BF16",
    "AVX512_CORE_FP16",
    "AVX10_1_512",
    "AVX512_CORE_AMX",
    "AVX10_1_512_AMX",
    "AVX512_CORE_AMX_FP16",
    "AVX10_1_512_AMX_FP16",
)


def onednn_allows(isa: str) -> bool:
    """Whether oneDNN may use ``isa`` (one of :data:`ONEDNN_ISAS`): not when
    ``ONEDNN_MAX_CPU_ISA`` (or the older ``DNNL_MAX_CPU_ISA``) caps it below. An unset,
    ``ALL`` or unknown cap allows everything, as oneDNN reads it."""
    for name in ONEDNN_CAP_VARS:
        cap = os.environ.get(name, "").strip().upper()
        if cap:
            if cap in ONEDNN_ISAS:
                return ONEDNN_ISAS.index(isa) <= ONEDNN_ISAS.index(cap)
            return True
    return True


def bf16_matrix_units(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` multiplies bfloat16 matrices in hardware (AMX; tensor cores sm80+),
    and, on the CPU, oneDNN is not capped below them."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
    if device.type != "cpu" or not onednn_allows("AVX512_CORE_AMX"):
        return False
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    if probe is not None:
        return bool(probe())
    try:  # pragma: no cover - older PyTorch
        with open("/proc/cpuinfo") as cpuinfo:
            return "amx_bf16" in cpuinfo.read()
    except OSError:  # pragma: no cover
        return False


@functools.lru_cache(maxsize=1)
def cpu_description() -> tuple[str, tuple[str, ...]]:
    """This CPU's model name and feature flags, as Linux reports them (empty elsewhere)."""
    name, flags = "", ()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not name:
                    name = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = tuple(sorted(value.split()))
    except OSError:  # pragma: no cover - not Linux
        pass
    return name, flags


def int8_dot_products() -> bool:
    """Whether oneDNN's int8 kernels add u8 x s8 products straight into int32 here: VNNI
    (AVX512-VNNI, AVX-VNNI) or AMX-INT8, and oneDNN is not capped below them. Without them
    pairs of products are first added in saturating int16."""
    flags = cpu_description()[1]
    return (
        ("avx512_vnni" in flags and onednn_allows("AVX512_CORE_VNNI"))
        or ("avx_vnni" in flags and onednn_allows("AVX2_VNNI"))
        or ("amx_int8" in flags and onednn_allows("AVX512_CORE_AMX"))
    )


def bf16_vector_units() -> bool:
    """Whether the CPU has bf16 dot-product instructions (AVX512-BF16) or tiles (AMX), and
    oneDNN is not capped below them (:func:`onednn_allows`)."""
    if not onednn_allows("AVX512_CORE_BF16"):
        return False
    flags = cpu_description()[1]
    return "avx512_bf16" in flags or "amx_bf16" in flags or bf16_matrix_units("cpu")


def resolve_precision(requested: str, device: str | torch.device = "cpu") -> str:
    """``"fp32"`` or ``"bf16"``: ``auto`` is bf16 only on a device with bf16 matrix units."""
    check_precision(requested)
    if requested == "auto":
        return "bf16" if bf16_matrix_units(device) else "fp32"
    return requested


def bf16_units(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes bfloat16 products in hardware: matrix units, or AVX512-BF16.

    There, ``auto`` trains in bf16 and bf16 products take PyTorch's own
    bfloat16 kernels (the native route): AVX512-BF16's dot products make a
    training epoch about 0.8x float32's on a Zen 4 EPYC, for the same losses
    within 0.3 % after 2 epochs (docs/precision.md). Without either, those
    kernels are slower than float32.
    """
    device = torch.device(device)
    return bf16_matrix_units(device) or (device.type == "cpu" and bf16_vector_units())


def resolve_training_precision(requested: str, device: str | torch.device = "cpu") -> str:
    """``"fp32"`` or ``"bf16"`` for training: ``auto`` is bf16 where :func:`bf16_units`."""
    check_precision(requested)
    if requested == "auto":
        return "bf16" if bf16_units(device) else "fp32"
    return requested


def training_precision_for_device(requested: str, device: str) -> str:
    """What ``requested`` resolves to for training on the device named ``device`` here."""
    try:
        return resolve_training_precision(requested, resolve_device(device))
    except InputError:  # a device this machine lacks: whoever uses it will say so
        return requested


@dataclass(frozen=True)
class TransformPrecision:
    """The layers of each transform whose products run in bf16 (none: float32)."""

    analysis: tuple[str, ...] = ()
    synthesis: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        if not (self.analysis or self.synthesis):
            return "fp32"
        full = self.analysis == BF16_LAYERS["analysis"] and (
            self.synthesis == BF16_LAYERS["synthesis"]
        )
        return "bf16" if full else "mixed"

    def describe(self) -> dict:
        """For metadata and benchmark records."""
        return {
            "precision": self.name,
            "bf16_layers": {"analysis": list(self.analysis), "synthesis": list(self.synthesis)},
        }


FP32 = TransformPrecision()
#: Every heavy layer in bf16: training, and ``--precision bf16``.
FULL_BF16 = TransformPrecision(BF16_LAYERS["analysis"], BF16_LAYERS["synthesis"])
#: ``auto``'s codec on bf16 hardware: a bf16 encoder, a decoder within the conformance rule.
CONFORMANT = TransformPrecision(BF16_LAYERS["analysis"], CONFORMANT_SYNTHESIS_LAYERS)


def training_precision(requested: str, device: str | torch.device = "cpu") -> TransformPrecision:
    """Both transforms' heavy layers in bf16, or none (:func:`resolve_training_precision`)."""
    return FP32 if resolve_training_precision(requested, device) == "fp32" else FULL_BF16


def coding_precision(requested: str, device: str | torch.device = "cpu") -> TransformPrecision:
    """Encoder and decoder layers for a codec: ``auto`` decodes conformantly."""
    if resolve_precision(requested, device) == "fp32":
        return FP32
    return FULL_BF16 if requested == "bf16" else CONFORMANT


@contextlib.contextmanager
def products_in_bf16(transform: nn.Module, layers: tuple[str, ...]) -> Iterator[None]:
    """Run ``transform``'s ``layers`` in bf16 inside the block; restored afterwards."""
    saved = transform.bf16_layers
    transform.bf16_layers = frozenset(layers)
    try:
        yield
    finally:
        transform.bf16_layers = saved


@contextlib.contextmanager
def model_precision(model: nn.Module, precision: TransformPrecision) -> Iterator[None]:
    """Both transforms of ``model`` at ``precision`` inside the block."""
    with products_in_bf16(model.analysis_transform, precision.analysis):
        with products_in_bf16(model.synthesis_transform, precision.synthesis):
            yield


def set_precision(model: nn.Module, precision: TransformPrecision) -> None:
    """Set both transforms of ``model`` (for training, until set again)."""
    model.analysis_transform.bf16_layers = frozenset(precision.analysis)
    model.synthesis_transform.bf16_layers = frozenset(precision.synthesis)


# -- the products --------------------------------------------------------------------------------


#: The bf16 route forced inside a :func:`bf16_route` block (None: the default rule).
_ROUTE: contextvars.ContextVar[str | None] = contextvars.ContextVar("bf16_route", default=None)
BF16_ROUTES = ("native", "emulated")


@contextlib.contextmanager
def bf16_route(route: str | None) -> Iterator[None]:
    """Inside the block, bf16 products take ``route`` (``native``/``emulated``; None: default)."""
    if route is not None and route not in BF16_ROUTES:
        raise ValueError(f"unknown bf16 route {route!r}")
    token = _ROUTE.set(route)
    try:
        yield
    finally:
        _ROUTE.reset(token)


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 products on ``device`` use bfloat16 kernels (else :func:`emulated`)."""
    route = _ROUTE.get()
    if route is not None:
        return route == "native"
    return _default_native_bf16(device)


@functools.lru_cache(maxsize=8)
def _default_native_bf16(device: torch.device) -> bool:
    forced = os.environ.get("MNISTCODEC_BF16", "")
    if forced in ("native", "emulated"):
        return forced == "native"
    return bf16_units(device)


def bf16_weight(weight: Tensor) -> Tensor:
    """A weight rounded to bfloat16 once, for several products (bfloat16 or float32 storage)."""
    return weight.to(BF16) if native_bf16(weight.device) else round_to_bf16(weight)


def round_to_bf16(t: Tensor) -> Tensor:
    """``t`` rounded to the nearest bfloat16 (ties to even), kept as float32."""
    return t.to(BF16).float()


def emulated(op: Callable[[Tensor, Tensor], Tensor], x: Tensor, w: Tensor) -> Tensor:
    """``op``'s bf16 product by rounding: bfloat16 operands, float32 sums, a bfloat16 result."""
    return round_to_bf16(op(round_to_bf16(x), round_to_bf16(w)))


def _product(op: Callable[[Tensor, Tensor], Tensor], x: Tensor, w: Tensor) -> Tensor:
    """The bf16 product ``op(x, w)``, as float32."""
    if native_bf16(x.device):
        return op(x.to(BF16), w.to(BF16)).float()
    return emulated(op, x, w.float())


def _add_bias(out: Tensor, bias: Tensor | None, channel_dim: int) -> Tensor:
    """``out + bias`` along ``channel_dim``; written into ``out`` (a product's fresh float32
    result) when no gradient is recorded: the same sums, without another tensor its size."""
    if bias is None:
        return out
    shape = [1] * out.dim()
    shape[channel_dim] = -1
    if not torch.is_grad_enabled():
        return out.add_(bias.view(shape))
    return out + bias.view(shape)


#: Whether the float32 kernels of :func:`onednn_float32` are in force.
_ONEDNN_FLOAT32: contextvars.ContextVar[bool] = contextvars.ContextVar("onednn_fp32", default=False)


def onednn_float32_available() -> bool:
    """Whether this PyTorch runs float32 dense layers on oneDNN's matmul (``mkldnn._linear_pointwise``)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


@contextlib.contextmanager
def onednn_float32(on: bool = True) -> Iterator[None]:
    """Inside the block, gradient-free float32 products on the CPU take the ``torch-onednn``
    engine's kernels: dense products on oneDNN's matmul instead of PyTorch's default (MKL's
    sgemm on x86), about 1.2 to 1.9x faster for the 500->2450 layer on the project's Zen 4
    and with AVX2-capped kernels; and the synthesis' two transposed convolutions as
    sub-pixel convolutions (:func:`mnistcodec.model.cpu_kernels.subpixel_weights`). The
    same products, summed in another order."""
    token = _ONEDNN_FLOAT32.set(on)
    try:
        yield
    finally:
        _ONEDNN_FLOAT32.reset(token)


def onednn_float32_active() -> bool:
    """Whether a :func:`onednn_float32` block is in force (and no gradient is recorded)."""
    return _ONEDNN_FLOAT32.get() and not torch.is_grad_enabled()


def onednn_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``x W^T (+ b)`` in float32 by oneDNN's matmul (``mkldnn._linear_pointwise``), which
    also reads transposed views without copying them."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def linear(x: Tensor, weight: Tensor, bias: Tensor | None, bf16: bool) -> Tensor:
    """``x W^T + b``; with ``bf16``, the product in bf16 and the bias in float32."""
    if not bf16:
        if onednn_float32_active() and x.device.type == "cpu":
            return onednn_linear(x.contiguous(), weight.contiguous(), bias)
        return F.linear(x, weight, bias)
    return _add_bias(_product(F.linear, x, weight), bias, -1)


def conv2d(x: Tensor, layer: nn.Conv2d, bf16: bool, weight: Tensor | None = None) -> Tensor:
    """``layer``'s convolution of ``x`` (its stride and padding), bf16 products if asked."""
    w = layer.weight if weight is None else weight
    if not bf16:
        return F.conv2d(x, w, layer.bias, layer.stride, layer.padding)
    product = _product(lambda a, b: F.conv2d(a, b, None, layer.stride, layer.padding), x, w)
    return _add_bias(product, layer.bias, 1)


def conv_transpose2d(x: Tensor, layer: nn.ConvTranspose2d, bf16: bool) -> Tensor:
    """``layer``'s transposed convolution of ``x``, bf16 products if asked."""
    args = (layer.stride, layer.padding, layer.output_padding)
    if not bf16:
        return F.conv_transpose2d(x, layer.weight, layer.bias, *args)
    product = _product(lambda a, b: F.conv_transpose2d(a, b, None, *args), x, layer.weight)
    return _add_bias(product, layer.bias, 1)


def apply_layer(layer: nn.Module, x: Tensor, bf16: bool) -> Tensor:
    """``layer(x)`` (hooks fire), or its product in bf16."""
    if not bf16:
        return layer(x)
    if isinstance(layer, nn.Linear):
        return linear(x, layer.weight, layer.bias, True)
    if isinstance(layer, nn.ConvTranspose2d):
        return conv_transpose2d(x, layer, True)
    return conv2d(x, layer, True)


#: Forget the environment's route (``MNISTCODEC_BF16`` is read once per device).
native_bf16.cache_clear = _default_native_bf16.cache_clear  # type: ignore[attr-defined]
