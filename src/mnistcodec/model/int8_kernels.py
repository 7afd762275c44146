"""The seed analysis transform with its convolutions and first dense layer in int8 (oneDNN, u8 x s8).

``conv_2`` (20->50, 5x5/2) and ``fc_1`` (2450->500) take 93 % of the
analysis' arithmetic, and ``conv_1`` (1->20), with a single input channel,
ran at a fifth of their speed in float32. Here the three run on oneDNN's
quantised kernels (VNNI dot products where the CPU has them, AMX tiles on
Xeons with AMX-INT8):

* **weights:** signed 8 bits per output channel, ``W[c] ~ w_scale[c] * q[c]``
  with ``w_scale[c] = max |W[c]| / 127``;
* **activations:** the leaky-ReLU outputs ``h_1`` (14x14x20) and ``h_2``
  (7x7x50) in unsigned 8 bits over a fixed range ``[lo, hi]`` per tensor:
  ``h ~ s (q - z)`` with ``s = (hi - lo) / 255``, ``z = round(-lo / s)``,
  ``q = clamp(round(h / s) + z, 0, 255)``. The ranges come from the float32
  transform on digit-like pictures, widened by :data:`RANGE_MARGIN`
  (:func:`activation_ranges`), and are fixed: a digit's latents do not depend
  on the digits coded with it;
* **the input:** the digit's own 8 bits, ``x = d / 255`` (a float input is
  rounded to that grid, which loses nothing for digits), as its four phases
  (space to depth): ``conv_1`` is then a 3x3 convolution on 4 input channels
  (:func:`space_to_depth_weights`), 1.9x faster than the 5x5 one on a single
  channel with AVX2 kernels. Where the kernels
  have no VNNI or AMX (:func:`~mnistcodec.model.precision.int8_dot_products`),
  ``conv_1``'s weights have 7 bits (:data:`CONV_1_WEIGHT_LARGEST`): such
  kernels add pairs of u8 x s8 products in saturating 16-bit integers, which
  two neighbouring pixels of 255 overflow with 8-bit weights (with AVX-512
  kernels without VNNI the default model's int8 encoder then failed its
  bounds, and 7 bits everywhere cost the seed model 0.3 % more information);
* **zero points:** ``conv_2`` and ``fc_1`` read their u8 inputs with zero point 0,
  the activation's zero point folded into the bias
  (``sum_j w_j (q_j - z) = sum_j w_j q_j - z sum_j w_j``); ``conv_2``'s padding is
  written into its input as pixels of value ``z`` (:func:`_padded_u8`), so that every
  tap of the sum holds. oneDNN's kernels with a source zero point ran 1.1 to 1.3x
  slower with AVX2 kernels (its compensation and padding);
* ``conv_1`` has its weights and bias divided by ``s_1``, so its float32
  output is already in quantisation steps (leaky ReLU commutes with a
  positive scale); ``conv_2`` returns float32 in steps of ``s_2`` (its
  per-channel scales are ``w_scale * s_1 / s_2``, its bias ``b / s_2`` less the
  zero point's term);
  ``fc_1`` applies the leaky ReLU in the kernel and returns float32; ``fc_2``
  (500->D, 1 % of the work) is float32.

The latents differ from float32's by the rounding of weights and activations:
an encoder may choose its latents, so what this costs is rate and PSNR, which
the engine's calibration checks (:mod:`mnistcodec.coding.engine`).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mnistcodec.model import cpu_kernels, precision
from mnistcodec.model.cpu_kernels import in_chunks
from mnistcodec.storage.digits import IMAGE_SHAPE

#: The activation ranges measured on digit-like pictures, widened by this factor.
RANGE_MARGIN = 1.5
_STRIDE, _PADDING, _DILATION = [2, 2], [2, 2], [1, 1]
#: ``conv_2``'s padding, written into its input (:func:`_padded_u8`) rather than asked of oneDNN.
_PAD = 2
_NO_PADDING = [0, 0]
#: The input's quantisation step: a digit's grey level ``d`` is ``x = d / 255``.
_INPUT_STEP = 1 / 255
#: The largest |weight| of ``conv_1`` in steps where the kernels have no VNNI: 7 bits.
CONV_1_WEIGHT_LARGEST = 63


@functools.cache
def available() -> bool:
    """Whether this PyTorch build runs oneDNN's quantised convolution and product here."""
    try:
        ops = torch.ops.onednn
        weight, scales = torch.ones((2, 1, 5, 5), dtype=torch.int8), torch.ones(2)
        zeros = torch.zeros(2, dtype=torch.int32)
        packed = ops.qconv_prepack(weight, scales, 1.0, 0, _STRIDE, _PADDING, _DILATION, 1, None)
        x = torch.zeros((1, 1, 8, 8), dtype=torch.uint8)
        ops.qconv2d_pointwise(
            x, 1.0, 0, packed, scales, zeros, None, _STRIDE, _PADDING, _DILATION, 1,
            1.0, 0, torch.float32, "none", [], "",
        )  # fmt: skip
        dense = ops.qlinear_prepack(torch.ones((2, 4), dtype=torch.int8), None)
        ops.qlinear_pointwise(
            torch.zeros((1, 4), dtype=torch.uint8), 1.0, 0, dense, scales, zeros, None,
            1.0, 0, torch.float32, "leaky_relu", [0.2], "",
        )  # fmt: skip
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    return True


def _leaky_steps(transform: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """The float32 activations ``h_1`` and ``h_2`` of ``transform`` on pictures ``x``."""
    slope = transform.act.negative_slope
    h_1 = F.leaky_relu(F.conv2d(x, transform.conv_1.weight, transform.conv_1.bias, 2, 2), slope)
    h_2 = F.leaky_relu(F.conv2d(h_1, transform.conv_2.weight, transform.conv_2.bias, 2, 2), slope)
    return h_1, h_2


@torch.no_grad()
def activation_ranges(transform: nn.Module, x: Tensor) -> tuple[tuple[float, float], ...]:
    """``((lo_1, hi_1), (lo_2, hi_2))``: the ranges of ``h_1`` and ``h_2`` on pictures ``x``,
    widened by :data:`RANGE_MARGIN` and holding 0."""
    ranges = []
    for h in _leaky_steps(transform, x.reshape(-1, 1, *IMAGE_SHAPE).float()):
        lo, hi = float(h.min()) * RANGE_MARGIN, float(h.max()) * RANGE_MARGIN
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError("the analysis transform gives non-finite activations")
        ranges.append((min(lo, 0.0), max(hi, 0.0)))
    return tuple(ranges)


def _steps(lo: float, hi: float) -> tuple[float, int]:
    """``(s, z)``: the step and zero point of unsigned 8 bits over ``[lo, hi]`` (``lo <= 0 <= hi``)."""
    step = max((hi - lo) / 255, 1e-12)
    return step, min(255, max(0, round(-lo / step)))


def _weight_int8(weight: Tensor, largest: int = 127) -> tuple[Tensor, Tensor]:
    """Signed 8-bit weights per output channel, ``|q| <= largest``, and their scales ``max |W[c]| / largest``."""
    flat = weight.reshape(weight.shape[0], -1)
    scales = (flat.abs().amax(1) / largest).clamp_min(1e-12)
    q = torch.round(flat / scales[:, None]).clamp(-largest, largest).to(torch.int8)
    return q.reshape(weight.shape), scales.float()


#: ``1.5 * 2**23``: for ``0 <= y <= 255``, the float32 sum ``y + R`` is ``R + round(y)``
#: (its unit in the last place is 1, and ties go to the even mantissa, as ``torch.round``:
#: ``R`` is even), so the low byte of its bits is ``round(y)``.
_ROUNDING_OFFSET = 12582912.0


def _rounded_bits(h: Tensor, slope: float, zero: int) -> Tensor:
    """Pre-activations in quantisation steps, in place -> int32 whose low byte is
    ``clamp(round(leaky(h) + z), 0, 255)`` (the sum in float32).

    Rounding by :data:`_ROUNDING_OFFSET` takes one conversion pass fewer than ``round`` and
    a float -> int16 -> uint8 conversion (PyTorch's float -> uint8 conversion is not
    vectorised). Clamping before rounding gives the same integers: the bounds are integers.
    """
    return _round_to_bits(F.leaky_relu_(h, slope).add_(zero))


def _round_to_bits(y: Tensor) -> Tensor:
    """Float32 ``y``, in place -> int32 whose low byte is ``clamp(round(y), 0, 255)``."""
    return y.clamp_(0, 255).add_(_ROUNDING_OFFSET).view(torch.int32)


def _to_u8(h: Tensor, slope: float, zero: int) -> Tensor:
    """Pre-activations in quantisation steps -> ``clamp(round(leaky(h) + z), 0, 255)`` as uint8
    (:func:`_rounded_bits`; the int32 -> uint8 conversion keeps the low byte)."""
    return _rounded_bits(h, slope, zero).to(torch.uint8)


def _border_buffer(n: int, zero: int, channels: int) -> Tensor:
    """(n, 18, 18, channels) uint8 of value ``zero``: ``conv_2``'s padded input, whose
    border of :data:`_PAD` pixels is written once per call and each sub-batch fills the inside."""
    side = IMAGE_SHAPE[0] // 2 + 2 * _PAD
    return torch.full((n, side, side, channels), zero, dtype=torch.uint8)


def _padded_u8(h: Tensor, slope: float, zero: int, out: Tensor | None = None) -> Tensor:
    """:func:`_to_u8` of a channels-last (N, C, H, W) ``h`` written inside a border of
    :data:`_PAD` pixels of value ``zero`` (the quantised 0): (N, C, H + 4, W + 4), channels-last.
    ``out``, a :func:`_border_buffer` of at least N digits, is reused when given."""
    n, c, rows, cols = h.shape
    if out is None:
        out = _border_buffer(n, zero, c)
    out = out[:n]
    out[:, _PAD:-_PAD, _PAD:-_PAD].copy_(_rounded_bits(h, slope, zero).permute(0, 2, 3, 1))
    return out.permute(0, 3, 1, 2)


def _to_digits(x: Tensor) -> Tensor:
    """Pictures in [0, 1] -> their nearest 8-bit grey levels ``round(255 x)``, uint8
    (:func:`_round_to_bits`); a digit ``d / 255`` gives back ``d``."""
    return _round_to_bits(x.mul(255)).to(torch.uint8)


def space_to_depth_weights(weight: Tensor) -> Tensor:
    """A (C, 1, 5, 5) stride-2 kernel (padding 2) as the (C, 4, 3, 3) stride-1 kernel (padding 1)
    on the image's four phases (:func:`space_to_depth`).

    Output pixel ``i`` reads input ``2 i + k - 2``; with ``k = 2 a + p`` that is phase ``p``
    at phase-grid position ``i + a - 1``: tap ``(a, b)`` of input channel ``2 p + q`` is
    ``W[2 a + p, 2 b + q]``, zero where that is past the kernel. The same sums, on 4 input
    channels instead of 1 (oneDNN pads input channels to its block: 1 of 8 was used).
    """
    padded = F.pad(weight[:, 0], (0, 1, 0, 1)).view(weight.shape[0], 3, 2, 3, 2)
    return padded.permute(0, 2, 4, 1, 3).reshape(weight.shape[0], 4, 3, 3).contiguous()


def space_to_depth(d: Tensor) -> Tensor:
    """uint8 digits (N, 1, 28, 28), contiguous -> their four phases (N, 4, 14, 14), channels-last:
    channel ``2 p + q`` at ``(i, j)`` is pixel ``(2 i + p, 2 j + q)``.

    Each pair of horizontal neighbours is moved as one int16 (a strided uint8 copy with
    an inner size of 2 ran at 4.7 µs per digit, this at 0.25).
    """
    n = d.shape[0]
    pairs = d.reshape(n, 28, 28).view(torch.int16).view(n, 14, 2, 14)
    phases = pairs.permute(0, 1, 3, 2).contiguous().view(torch.uint8)
    return phases.view(n, 14, 14, 4).permute(0, 3, 1, 2)


class Int8Analysis:
    """``transform(x)`` for a frozen ``SeedAnalysisTransform``, its heavy layers in int8 (above)."""

    def __init__(self, transform: nn.Module, ranges: tuple[tuple[float, float], ...]) -> None:
        ops = torch.ops.onednn
        (step_1, self.zero_1), (step_2, self.zero_2) = (_steps(*r) for r in ranges)
        self.step_2 = step_2
        self.slope = float(transform.act.negative_slope)
        conv_1, conv_2, fc_1 = transform.conv_1, transform.conv_2, transform.fc_1
        # Kernels without VNNI add pairs of u8 x s8 products in saturating int16, and two
        # neighbouring pixels of a digit are often both 255: 7-bit weights there (255 * 63 * 2 fits).
        weight = conv_1.weight.detach().float() / step_1
        largest = 127 if precision.int8_dot_products() else CONV_1_WEIGHT_LARGEST
        q, self.conv_1_scales = _weight_int8(weight, largest)
        self.conv_1 = ops.qconv_prepack(
            space_to_depth_weights(q), self.conv_1_scales, _INPUT_STEP, 0, [1, 1], [1, 1],
            _DILATION, 1, None,
        )  # fmt: skip
        self.conv_1_bias = conv_1.bias.detach().float() / step_1
        self.channels_1 = conv_1.out_channels
        self.zeros_1 = torch.zeros(self.conv_1_scales.numel(), dtype=torch.int32)
        # conv_2 and fc_1 read their inputs with zero point 0, the zero points folded into
        # the biases: sum_j w_j (q_j - z) = sum_j w_j q_j - z sum_j w_j (conv_2's border
        # pixels hold z, so every tap counts). oneDNN's kernels with a zero point ran
        # 1.1 to 1.3x slower with AVX2 kernels.
        q, scales = _weight_int8(conv_2.weight.detach().float())
        self.conv_2_scales = scales * (step_1 / step_2)
        self.conv_2_bias = (
            conv_2.bias.detach().double() / step_2
            - self.conv_2_scales.double() * self.zero_1 * q.double().sum((1, 2, 3))
        ).float()
        self.conv_2 = ops.qconv_prepack(
            q, self.conv_2_scales, 1.0, 0, _STRIDE, _NO_PADDING, _DILATION, 1, None
        )
        # fc_1's inputs in (row, column, channel) order: the channels-last grid, flattened.
        dense = fc_1.weight.detach().float().view(-1, 50, 7, 7).permute(0, 2, 3, 1)
        q, self.fc_1_scales = _weight_int8(dense.reshape(dense.shape[0], -1))
        self.fc_1 = ops.qlinear_prepack(q, None)
        self.fc_1_bias = (
            fc_1.bias.detach().double()
            - step_2 * self.fc_1_scales.double() * self.zero_2 * q.double().sum(1)
        ).float()
        self.fc_2_weight = transform.fc_2.weight.detach().float()
        self.fc_2_bias = transform.fc_2.bias.detach().float()
        self.zeros_2 = torch.zeros(self.conv_2_scales.numel(), dtype=torch.int32)
        self.zeros_3 = torch.zeros(self.fc_1_scales.numel(), dtype=torch.int32)

    @torch.no_grad()
    def __call__(self, x: Tensor) -> Tensor:
        """``x`` (N, 1, 28, 28) float32 in [0, 1] -> latents (N, D) float32, in sub-batches."""
        x = x.reshape(-1, 1, *IMAGE_SHAPE).float().contiguous()
        padded = self._border_buffer(x.shape[0])
        return in_chunks(lambda part: self._forward(_to_digits(part), padded), x)

    @torch.no_grad()
    def digits(self, d: Tensor) -> Tensor:
        """uint8 digits (N, 28, 28) -> the latents of ``self(d / 255)``, read as they are."""
        d = d.reshape(-1, 1, *IMAGE_SHAPE).contiguous()
        padded = self._border_buffer(d.shape[0])
        return in_chunks(lambda part: self._forward(part, padded), d)

    def _border_buffer(self, digits: int) -> Tensor:
        """``conv_2``'s padded input for a call of ``digits`` digits, reused by its sub-batches."""
        return _border_buffer(min(digits, cpu_kernels.CPU_CHUNK), self.zero_1, self.channels_1)

    def first_layer(self, x: Tensor) -> Tensor:
        """``x`` (N, 1, 28, 28) in [0, 1] -> ``h_1`` as uint8 (N, 20, 14, 14), channels-last."""
        return self._first_layer_padded(_to_digits(x))[:, :, _PAD:-_PAD, _PAD:-_PAD]

    def _first_layer_padded(self, d: Tensor, out: Tensor | None = None) -> Tensor:
        """uint8 digits (N, 1, 28, 28) -> ``h_1`` inside ``conv_2``'s border of zero points
        (:func:`_padded_u8`, into ``out`` if given); the digits as their four phases."""
        h = torch.ops.onednn.qconv2d_pointwise(
            space_to_depth(d), _INPUT_STEP, 0, self.conv_1, self.conv_1_scales, self.zeros_1,
            self.conv_1_bias, [1, 1], [1, 1], _DILATION, 1, 1.0, 0, torch.float32,
            "none", [], "",
        )  # fmt: skip
        return _padded_u8(h, self.slope, self.zero_1, out)

    def _forward(self, d: Tensor, padded: Tensor) -> Tensor:
        """uint8 digits (N, 1, 28, 28), contiguous -> latents (N, D); ``padded``, a
        :func:`_border_buffer` for N digits or more, holds ``conv_2``'s input."""
        ops = torch.ops.onednn
        h = self._first_layer_padded(d, padded)
        h = ops.qconv2d_pointwise(
            h, 1.0, 0, self.conv_2, self.conv_2_scales, self.zeros_2,
            self.conv_2_bias, _STRIDE, _NO_PADDING, _DILATION, 1, 1.0, 0, torch.float32,
            "none", [], "",
        )  # fmt: skip
        # (N, 50, 7, 7) channels-last: permuted to (N, 7, 7, 50) and flattened without a copy.
        h = _to_u8(h, self.slope, self.zero_2).permute(0, 2, 3, 1).reshape(h.shape[0], -1)
        h = ops.qlinear_pointwise(
            h, self.step_2, 0, self.fc_1, self.fc_1_scales, self.zeros_3,
            self.fc_1_bias, 1.0, 0, torch.float32, "leaky_relu", [self.slope], "",
        )  # fmt: skip
        return F.linear(h, self.fc_2_weight, self.fc_2_bias)
