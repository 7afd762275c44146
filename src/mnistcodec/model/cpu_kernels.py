"""Fast CPU kernels behind the seed transforms: the same function, computed faster.

:class:`~mnistcodec.model.transforms.SeedAnalysisTransform` and
:class:`~mnistcodec.model.transforms.SeedSynthesisTransform` state the layers
as the paper does (``reference_forward``). On the CPU in float32 their
``forward`` calls :func:`analysis_forward` and :func:`synthesis_forward`
instead, which use the same parameters and return the same values up to float
rounding (tests compare outputs and gradients):

* the 20->50 convolution and the 50->20 transposed convolution run on
  channels-last tensors (oneDNN's kernels for these shapes are faster in NHWC);
* the 20->1 transposed convolution, from batches of :data:`TAPS_MIN_BATCH`
  digits up, is one matrix product giving the 25 kernel taps of every input
  pixel, accumulated into the four output phases of the stride-2 grid (oneDNN
  is slow for a single output channel); its backward is an im2col of the
  output gradient and two matrix products (:class:`TransposedConvToOne`);
* when training, the 1->20 convolution's weight gradient, from batches of
  :data:`TAPS_MIN_BATCH` digits up, is one matrix product over the image's
  25 taps (oneDNN's kernel for a single input channel took about 2 ms of a
  step of 128 digits, the product and its taps about 0.5 ms; :class:`ConvFromOne`);
* when training, the two 2450-wide dense layers run their forward product and
  both backward products on oneDNN's matmul (:class:`DenseOnOneDnn`; with AVX2
  kernels those products ran 1.1 to 1.3x faster than MKL's sgemm, a step about
  5 % faster), but for the 500->2450 layer's weight gradient, which MKL's
  product computes faster;
* activations are applied in place where autograd allows it;
* without gradients (inference, validation, coding), batches of at least
  :data:`GRID_ORDER_MIN_BATCH` digits use, for the two dense layers next to the
  7x7x50 grid, copies of their weights with the 2450 inputs or outputs in (row,
  column, channel) order (:func:`grid_order_weights`), made once per call, so
  the channels-last grid is read and written without a layout copy; the
  single-channel input is read as channels-last; and batches larger than
  :data:`CPU_CHUNK` digits run in sub-batches of that size, which keeps
  activations in cache. Inside :func:`~mnistcodec.model.precision.onednn_float32`
  (the ``torch-onednn`` engine), both transposed convolutions of those batches run
  as sub-pixel convolutions (:func:`subpixel_weights`). Nothing is cached between
  calls: optimizers such as fused Adam update parameters without any trace a cache
  could check.

Layers named in the transform's ``bf16_layers`` run their products in bf16
through :mod:`mnistcodec.model.precision`, on the same layouts; the reordered
dense weights are then rounded to bfloat16 once per call.

The kernels call the functional ops with each layer's parameters rather than
the layer modules, so hooks on a layer would not fire: :func:`applies` sends
a transform with hooks (summaries, feature extraction) down the reference
path, as it does one whose ``cpu_fast_path`` is ``False``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules import module as torch_module

from mnistcodec.model import precision
from mnistcodec.storage.digits import IMAGE_SHAPE

CPU_CHUNK = 512  # digits per sub-batch for gradient-free CPU inference
TAPS_MIN_BATCH = 16  # below this, oneDNN's 20->1 transposed convolution is faster
GRID_ORDER_MIN_BATCH = 256  # below this, reordering a dense weight costs more than it saves

_CHANNELS_LAST = torch.channels_last
#: Whether training's large dense layers run on :class:`DenseOnOneDnn` (a switch for benches).
DENSE_ON_ONEDNN = True
#: Whether :class:`DenseOnOneDnn` takes MKL's product for the weight gradient of a layer with
#: more outputs than inputs (a switch for benches).
WIDE_WEIGHT_GRADIENT_ON_MKL = True


def applies(transform: nn.Module, x: Tensor) -> bool:
    """Whether the fast route computes ``transform(x)``: float32 on the CPU, no hooks, not switched off."""
    return (
        transform.cpu_fast_path
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not has_layer_hooks(transform)
    )


def has_layer_hooks(transform: nn.Module) -> bool:
    """Whether hooks watch the layers: only the reference path calls each layer module."""
    if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
        return True
    return any(
        layer._forward_hooks
        or layer._forward_pre_hooks
        or layer._backward_hooks
        or layer._backward_pre_hooks
        for layer in transform.children()
    )


def in_chunks(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``fn(x)``, in sub-batches of :data:`CPU_CHUNK` digits."""
    if x.shape[0] <= CPU_CHUNK:
        return fn(x)
    return torch.cat([fn(part) for part in x.split(CPU_CHUNK)])


def grid_order_weights(layer: nn.Linear, grid_side: str) -> tuple[Tensor, Tensor]:
    """``layer``'s weight and bias with its 7x7x50 side in (h, w, c) order instead of (c, h, w).

    ``grid_side`` is ``"in"`` (the 2450 inputs, for the analysis' fc_1) or ``"out"``
    (the 2450 outputs, for the synthesis' fc_2). With ``P`` that permutation,
    ``W x = (W P^T)(P x)`` and ``P (W h + b) = (P W) h + P b``.
    """
    w, b = layer.weight, layer.bias
    if grid_side == "in":
        return w.view(-1, 50, 7, 7).permute(0, 2, 3, 1).reshape(w.shape[0], -1), b
    weight = w.view(50, 7, 7, -1).permute(1, 2, 0, 3).reshape(-1, w.shape[1])
    return weight, b.view(50, 7, 7).permute(1, 2, 0).reshape(-1)


# -- analysis ------------------------------------------------------------------------------------


def analysis_forward(transform: nn.Module, x: Tensor) -> Tensor:
    """``transform.reference_forward(x)`` for a ``SeedAnalysisTransform``, by the CPU kernels."""
    if torch.is_grad_enabled() or x.shape[0] < GRID_ORDER_MIN_BATCH:
        return _analysis_channels_last(transform, x)
    weight, bias = grid_order_weights(transform.fc_1, "in")
    if "fc_1" in transform.bf16_layers:
        weight = precision.bf16_weight(weight)
    return in_chunks(lambda part: _analysis_grid_order(transform, part, weight, bias), x)


def _analysis_channels_last(transform: nn.Module, x: Tensor) -> Tensor:
    conv_1, conv_2, fc_1, fc_2 = transform.conv_1, transform.conv_2, transform.fc_1, transform.fc_2
    slope, bf16 = transform.act.negative_slope, transform.bf16_layers
    x = x.reshape(-1, 1, *IMAGE_SHAPE)
    if torch.is_grad_enabled() and "conv_1" not in bf16 and x.shape[0] >= TAPS_MIN_BATCH:
        h = ConvFromOne.apply(x, conv_1.weight, conv_1.bias)
    else:
        h = precision.conv2d(x, conv_1, "conv_1" in bf16)
    # Each activation runs on the layout its gradient comes back in (mixed layouts make
    # the activation's backward a slow strided loop).
    h = F.leaky_relu_(h.contiguous(memory_format=_CHANNELS_LAST), slope)
    h = precision.conv2d(h, conv_2, "conv_2" in bf16)
    h = F.leaky_relu_(h.contiguous(), slope)
    h = F.leaky_relu_(_dense(h.flatten(1), fc_1, "fc_1" in bf16), slope)
    return precision.linear(h, fc_2.weight, fc_2.bias, "fc_2" in bf16)


def _analysis_grid_order(
    transform: nn.Module, x: Tensor, fc_1_weight: Tensor, fc_1_bias: Tensor
) -> Tensor:
    """Gradient-free forward; ``fc_1``'s weight comes in grid order (:func:`grid_order_weights`)."""
    conv_1, conv_2, fc_2 = transform.conv_1, transform.conv_2, transform.fc_2
    slope, bf16 = transform.act.negative_slope, transform.bf16_layers
    x = x.reshape(-1, 1, *IMAGE_SHAPE).contiguous()
    # One channel: the same memory read as channels-last, so oneDNN writes NHWC.
    x = x.as_strided(x.shape, (28 * 28, 1, 28, 1), x.storage_offset())
    h = precision.conv2d(x, conv_1, "conv_1" in bf16)
    h = F.leaky_relu_(h.contiguous(memory_format=_CHANNELS_LAST), slope)
    h = precision.conv2d(h, conv_2, "conv_2" in bf16)
    h = F.leaky_relu_(h, slope).permute(0, 2, 3, 1).reshape(h.shape[0], -1)
    h = F.leaky_relu_(precision.linear(h, fc_1_weight, fc_1_bias, "fc_1" in bf16), slope)
    return precision.linear(h, fc_2.weight, fc_2.bias, "fc_2" in bf16)


def _dense_on_onednn() -> bool:
    """Whether a recorded float32 dense product takes :class:`DenseOnOneDnn`."""
    return DENSE_ON_ONEDNN and torch.is_grad_enabled() and precision.onednn_float32_available()


def _dense(x: Tensor, layer: nn.Linear, bf16: bool) -> Tensor:
    """``layer``'s product; when training in float32, forward and backward on oneDNN's matmul."""
    if not bf16 and _dense_on_onednn():
        return DenseOnOneDnn.apply(x, layer.weight, layer.bias)
    return precision.linear(x, layer.weight, layer.bias, bf16)


# -- synthesis -----------------------------------------------------------------------------------


def synthesis_forward(transform: nn.Module, y: Tensor, affine=None) -> Tensor:
    """``transform.reference_forward(y, affine)`` for a ``SeedSynthesisTransform``, by the CPU kernels.

    ``affine`` (a :class:`~mnistcodec.model.transforms.LevelAffine`, or None)
    maps the pre-activations of ``fc_1``, ``fc_2`` and ``conv_1`` per digit.
    """
    if torch.is_grad_enabled() or y.shape[0] < GRID_ORDER_MIN_BATCH:
        return _synthesis_channels_last(transform, y, affine)
    weight, bias = grid_order_weights(transform.fc_2, "out")
    if "fc_2" in transform.bf16_layers:
        weight = precision.bf16_weight(weight)
    subpixel = {}
    if precision.onednn_float32_active():
        for name in ("conv_1", "conv_2"):
            layer = getattr(transform, name)
            if name not in transform.bf16_layers and subpixel_fits(layer):
                subpixel[name] = subpixel_weights(layer)
    parts = [
        _synthesis_grid_order(
            transform,
            y[i : i + CPU_CHUNK],
            weight,
            bias,
            None if affine is None else affine.rows(i, CPU_CHUNK),
            subpixel,
        )
        for i in range(0, y.shape[0], CPU_CHUNK)
    ]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _synthesis_channels_last(transform: nn.Module, y: Tensor, affine=None) -> Tensor:
    fc_1, fc_2 = transform.fc_1, transform.fc_2
    slope, bf16 = transform.act.negative_slope, transform.bf16_layers
    h = precision.linear(y, fc_1.weight, fc_1.bias, "fc_1" in bf16)
    h = F.leaky_relu_(h if affine is None else affine("fc_1", h), slope)
    if "fc_2" in bf16 or _dense_on_onednn():
        h = _dense(h, fc_2, "fc_2" in bf16).view(-1, 50, 7, 7)
    else:
        # fc_2 as W h^T: the (2450, B) product is the faster GEMM shape, read as the
        # (B, 50, 7, 7) grid it holds in (c, h, w, b) order.
        h = torch.addmm(fc_2.bias.unsqueeze(1), fc_2.weight, h.t())
        h = h.view(50, 7, 7, -1).permute(3, 0, 1, 2)
    # One copy into channels-last, then the activation on the layout its gradient comes
    # back in from the convolution.
    h = h.contiguous(memory_format=_CHANNELS_LAST)
    h = F.leaky_relu_(h if affine is None else affine("fc_2", h), slope)
    return _synthesis_convolutions(transform, h, affine)


def _synthesis_grid_order(
    transform: nn.Module,
    y: Tensor,
    fc_2_weight: Tensor,
    fc_2_bias: Tensor,
    affine=None,
    subpixel: dict[str, tuple[Tensor, Tensor]] | None = None,
) -> Tensor:
    """Gradient-free forward; ``fc_2``'s weight comes in grid order (:func:`grid_order_weights`),
    and the layers named in ``subpixel`` as sub-pixel convolutions (:func:`subpixel_weights`)."""
    fc_1 = transform.fc_1
    slope, bf16 = transform.act.negative_slope, transform.bf16_layers
    h = precision.linear(y, fc_1.weight, fc_1.bias, "fc_1" in bf16)
    h = F.leaky_relu_(_affine_in_place(affine, "fc_1", h), slope)
    h = precision.linear(h, fc_2_weight, fc_2_bias, "fc_2" in bf16)
    if affine is not None:
        grid = h.view(-1, 49, 50)
        grid.mul_(affine.scales["fc_2"].unsqueeze(1)).add_(affine.shifts["fc_2"].unsqueeze(1))
    h = F.leaky_relu_(h, slope)
    # (B, 7*7*50) in (h, w, c) order is the channels-last (B, 50, 7, 7) grid: no copy.
    grid = h.view(-1, 7, 7, 50).permute(0, 3, 1, 2)
    return _synthesis_convolutions(transform, grid, affine, subpixel)


def _synthesis_convolutions(
    transform: nn.Module,
    h: Tensor,
    affine=None,
    subpixel: dict[str, tuple[Tensor, Tensor]] | None = None,
) -> Tensor:
    """The two transposed convolutions from a channels-last (B, 50, 7, 7) grid; those named in
    ``subpixel`` as sub-pixel convolutions with its weights."""
    conv_1, conv_2 = transform.conv_1, transform.conv_2
    slope, bf16 = transform.act.negative_slope, transform.bf16_layers
    subpixel = subpixel or {}
    if "conv_1" in subpixel:
        h = subpixel_transposed(h, *subpixel["conv_1"])
    else:
        h = precision.conv_transpose2d(h, conv_1, "conv_1" in bf16)
    if torch.is_grad_enabled():
        h = F.leaky_relu_(h if affine is None else affine("conv_1", h), slope)
    else:
        h = F.leaky_relu_(_affine_in_place(affine, "conv_1", h), slope)
    if "conv_2" in bf16:
        h = precision.conv_transpose2d(h, conv_2, True)
    elif "conv_2" in subpixel:
        h = subpixel_transposed(h, *subpixel["conv_2"])
    elif h.shape[0] >= TAPS_MIN_BATCH:
        h = TransposedConvToOne.apply(h, conv_2.weight, conv_2.bias)
    else:
        h = F.conv_transpose2d(h, conv_2.weight, conv_2.bias, stride=2, padding=2, output_padding=1)
    return F.leaky_relu_(h, slope)


def _affine_in_place(affine, name: str, h: Tensor) -> Tensor:
    """``affine(name, h)`` (:class:`~mnistcodec.model.transforms.LevelAffine`) written into ``h``.

    The same product and sum per element (so the same float32 values), without
    two temporaries the size of ``h``; for gradient-free calls only.
    """
    if affine is None:
        return h
    shape = (h.shape[0], -1) + (1,) * (h.dim() - 2)
    return h.mul_(affine.scales[name].view(shape)).add_(affine.shifts[name].view(shape))


# -- the 50->20 transposed convolution as a sub-pixel convolution ---------------------------------


#: Tap ``k`` of the 5x5 kernel that input offset ``d`` (0, 1, 2: rows ``m - 1 .. m + 1``)
#: sends to output phase ``p``: ``k = p + 4 - 2 d``; 5 is past the kernel (a zero tap).
_SUBPIXEL_TAPS = ((4, 2, 0), (5, 3, 1))


def subpixel_weights(layer: nn.ConvTranspose2d) -> tuple[Tensor, Tensor]:
    """A 5x5, stride-2 transposed convolution (padding 2, output padding 1) as a 3x3
    convolution to its four output phases: weight (4 C_out, C_in, 3, 3) and bias (4 C_out).

    Output pixel ``o = 2 i + k - 2`` receives tap ``k`` of input pixel ``i``. In phase ``p``
    (``o = 2 m + p``), input ``i = m + d - 1`` reaches it through tap ``k = p + 4 - 2 d``
    (:data:`_SUBPIXEL_TAPS`, zero where ``k = 5``). Channel ``(p, q, c)`` of the 3x3
    convolution (padding 1) at grid position ``(m, n)`` is channel ``c`` of output pixel
    ``(2 m + p, 2 n + q)``: the same sums as the transposed convolution, with 9/6.25 as many
    multiply-adds, on 4 C_out output channels (80 for the seed: whole vector registers,
    where oneDNN pads the transposed convolution's 20 to 24 or 32).
    """
    w = F.pad(layer.weight, (0, 1, 0, 1))  # (C_in, C_out, 6, 6): tap 5 is zero
    taps = torch.tensor(_SUBPIXEL_TAPS)
    w = w[:, :, taps[:, None, :, None], taps[None, :, None, :]]  # (C_in, C_out, p, q, d, e)
    w = w.permute(2, 3, 1, 0, 4, 5).reshape(-1, layer.in_channels, 3, 3)
    return w.contiguous(memory_format=_CHANNELS_LAST), layer.bias.repeat(4)


def subpixel_fits(layer: nn.ConvTranspose2d) -> bool:
    """Whether ``layer`` is the transposed convolution :func:`subpixel_weights` rewrites."""
    return (
        layer.kernel_size == (5, 5)
        and layer.stride == (2, 2)
        and layer.padding == (2, 2)
        and layer.output_padding == (1, 1)
        and layer.dilation == (1, 1)
        and layer.groups == 1
        and layer.bias is not None
    )


def subpixel_transposed(h: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """(B, C_in, H, W) -> (B, C_out, 2 H, 2 W) channels-last, by :func:`subpixel_weights`."""
    batch, _, rows, cols = h.shape
    out = F.conv2d(h, weight, bias, padding=1)  # (B, 4 C_out, H, W)
    phases = out.permute(0, 2, 3, 1).reshape(batch, rows, cols, 2, 2, -1)
    grid = phases.permute(0, 1, 3, 2, 4, 5).reshape(batch, 2 * rows, 2 * cols, -1)
    return grid.permute(0, 3, 1, 2)


# -- the 20->1 transposed convolution of the seed ------------------------------------------------
#
# A 5x5 stride-2 layer from a 14x14 grid of C channels to a 28x28 single-channel
# image, with padding 2 ("same"). Output pixel ``o`` of the transposed
# convolution receives tap ``k`` of input pixel ``i`` when ``o = 2 i + k - 2``;
# on a grid padded by 2 on each side (32 x 32), that is position ``2 i + k``.
# Writing ``k = 2 a + p`` puts the tap in phase ``p`` (the parity of the padded
# position) at phase-grid position ``i + a`` (16 x 16).


def _image_taps(image: Tensor) -> Tensor:
    """im2col of (B,28,28) for 5x5/2, pad 2: (25, B*196), row ``5 kh + kw``, column NHW.

    The padded image is split into its four phases first, so that every tap is a
    window with unit stride along rows; taps of one phase are copied together.
    """
    batch = image.shape[0]
    padded = F.pad(image, (2, 2, 2, 2))
    phases = padded.view(batch, 16, 2, 16, 2).permute(2, 4, 0, 1, 3).contiguous()
    s_batch, s_row, s_col = phases.stride()[2:]
    taps = image.new_empty(5, 5, batch, 14, 14)
    for p in range(2):
        for q in range(2):
            windows = phases[p, q].as_strided(
                (3 - p, 3 - q, batch, 14, 14), (s_row, s_col, s_batch, s_row, s_col)
            )
            taps[p::2, q::2] = windows
    return taps.view(25, batch * 196)


def _taps_to_image(taps: Tensor) -> Tensor:
    """Sum the 25 taps (25, B*196) into their 28x28 output pixels: (B,28,28)."""
    batch = taps.shape[1] // 196
    taps = taps.view(5, 5, batch, 14, 14)
    phases = taps.new_zeros(2, 2, batch, 16, 16)
    for kh in range(5):
        a, p = divmod(kh, 2)
        for kw in range(5):
            b, q = divmod(kw, 2)
            phases[p, q, :, a : a + 14, b : b + 14] += taps[kh, kw]
    return phases.permute(2, 3, 0, 4, 1).reshape(batch, 32, 32)[:, 2:30, 2:30]


def _nhwc_rows(h: Tensor) -> Tensor:
    """(B,C,14,14) -> (B*196, C) rows in NHW order (a view for channels-last input)."""
    return h.permute(0, 2, 3, 1).reshape(-1, h.shape[1])


class TransposedConvToOne(torch.autograd.Function):
    """ConvTranspose2d(C->1, 5x5, stride 2, padding 2, output_padding 1) as taps + phases.

    Forward: taps ``T = W^T H`` with ``H`` the (C, B*196) input pixels and ``W``
    the (C, 25) kernel, scattered into the output by :func:`_taps_to_image`,
    plus the bias. Backward, with ``G`` the im2col of the output gradient
    (:func:`_image_taps`): ``dH = W G``, ``dW = H G^T``, ``db = sum(grad)``.
    """

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        rows = _nhwc_rows(h)  # (B*196, C)
        taps = torch.mm(weight.reshape(-1, 25).t(), rows.t())  # (25, B*196)
        ctx.save_for_backward(rows, weight)
        ctx.channels = h.shape[1]
        return _taps_to_image(taps).unsqueeze(1) + bias

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        rows, weight = ctx.saved_tensors
        taps = _image_taps(grad.reshape(-1, *IMAGE_SHAPE))  # (25, B*196)
        grad_h = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_rows = torch.mm(taps.t(), weight.reshape(-1, 25).t())  # (B*196, C)
            grad_h = grad_rows.view(-1, 14, 14, ctx.channels).permute(0, 3, 1, 2)
        if ctx.needs_input_grad[1]:
            grad_w = torch.mm(taps, rows).t().reshape(weight.shape)
        if ctx.needs_input_grad[2]:
            grad_b = grad.sum().reshape(1)
        return grad_h, grad_w, grad_b


class ConvFromOne(torch.autograd.Function):
    """Conv2d(1->C, 5x5, stride 2, padding 2) on (B,1,28,28), whose weight gradient is one product.

    Forward: oneDNN's convolution, returned channels-last. Backward, with ``T``
    the (25, B*196) taps of the input image (:func:`_image_taps`, the im2col of
    this convolution) and ``G`` the (B*196, C) output gradient in NHW order:
    ``dW = G^T T^T``, ``db = G^T 1``, and ``dx`` (when asked for) by the
    transposed convolution. oneDNN's weight gradient for a single input channel
    ran at a tenth of the matrix product's speed.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        # One channel: the same memory read as channels-last, so oneDNN writes NHWC.
        x = x.contiguous()
        x = x.as_strided(x.shape, (28 * 28, 1, 28, 1), x.storage_offset())
        h = F.conv2d(x, weight, bias, stride=2, padding=2)
        return h.contiguous(memory_format=_CHANNELS_LAST)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        rows = _nhwc_rows(grad)  # (B*196, C)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.nn.grad.conv2d_input(x.shape, weight, grad, stride=2, padding=2)
        if ctx.needs_input_grad[1]:
            taps = _image_taps(x.reshape(-1, *IMAGE_SHAPE))  # (25, B*196)
            grad_w = torch.mm(rows.t(), taps.t()).reshape(weight.shape)
        if ctx.needs_input_grad[2]:
            grad_b = torch.mv(rows.t(), rows.new_ones(rows.shape[0]))  # faster than a column sum
        return grad_x, grad_w, grad_b


class DenseOnOneDnn(torch.autograd.Function):
    """``y = x W^T + b`` with the forward product and both backward products on oneDNN's matmul.

    Backward, with ``G`` the output gradient: ``dx = G W``, ``dW = G^T x`` and
    ``db = G^T 1``; each product is ``mkldnn._linear_pointwise`` on transposed
    views, no copies, except ``dW`` of a layer with more outputs than inputs,
    which is MKL's sgemm (``torch.mm``). For the (128 x 2450 x 500) products of
    a training step (AVX2 kernels, alternating, medians), oneDNN's matmul ran
    1.1 to 1.3x faster than MKL, but for the (2450, 500) weight gradient MKL
    took 1.75 ms against oneDNN's 2.57 (1.83 against 2.19 with AVX-512
    kernels); for the (500, 2450) one oneDNN took 2.40 ms against 3.11.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        return precision.onednn_linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = precision.onednn_linear(grad, weight.t(), None)
        if ctx.needs_input_grad[1]:
            if WIDE_WEIGHT_GRADIENT_ON_MKL and weight.shape[0] > weight.shape[1]:
                grad_w = torch.mm(grad.t(), x)
            else:
                grad_w = precision.onednn_linear(grad.t(), x.t(), None)
        if ctx.needs_input_grad[2]:
            grad_b = torch.mv(grad.t(), grad.new_ones(grad.shape[0]))
        return grad_x, grad_w, grad_b
