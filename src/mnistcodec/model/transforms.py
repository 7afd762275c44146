"""Analysis and synthesis transforms.

The ``seed`` architecture reproduces the TensorFlow Compression MNIST tutorial
exactly (layer sizes, 5x5 kernels, stride 2 "same" padding, leaky ReLU with
Keras' slope 0.2, a linear last analysis layer and a leaky ReLU on the last
synthesis layer), including Keras' initialisation: Glorot-uniform kernels and
zero biases.

Two ways to compute the same function. ``reference_forward`` is the plain
composition of the layers (used on GPUs, where cuDNN is fast, and as the
reference in tests). On the CPU, ``forward`` takes a faster route with the same
parameters and the same outputs up to float rounding:

* the 20->50 convolution and the 50->20 transposed convolution run on
  channels-last tensors (oneDNN's kernels for these shapes are faster in NHWC);
* the 20->1 transposed convolution is one matrix product giving the 25 kernel
  taps of every input pixel, accumulated into the four output phases of the
  stride-2 grid (oneDNN is slow for a single output channel); its backward is
  an im2col of the output gradient and two matrix products;
* activations are applied in place where autograd allows it;
* without gradients (inference, validation, coding), batches of at least
  :data:`GRID_ORDER_MIN_BATCH` digits use, for the two dense layers next to the
  7x7x50 grid, copies of their weights with the 2450 inputs or outputs in (row,
  column, channel) order, made once per call, so the channels-last grid is read
  and written without a layout copy; the single-channel input is read as
  channels-last; and large batches run in sub-batches of :data:`CPU_CHUNK`
  digits, which keeps activations in cache. (Nothing is cached between calls:
  optimizers such as fused Adam update parameters without any trace a cache
  could check.)

The fast route calls the functional ops rather than each layer module, so when
a hook is registered on a layer (summaries, feature extraction) the reference
path runs instead. ``cpu_fast_path = False`` on a transform forces it.

The parameter names and shapes are those of the plain layers, so model files
are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mnistcodec.errors import InputError
from mnistcodec.storage.digits import IMAGE_SHAPE

LEAKY_SLOPE = 0.2  # Keras' leaky_relu default
CPU_CHUNK = 512  # digits per sub-batch for gradient-free CPU inference
_TAPS_MIN_BATCH = 16  # below this, oneDNN's 20->1 transposed convolution is faster
GRID_ORDER_MIN_BATCH = 256  # below this, reordering a dense weight costs more than it saves

_CHANNELS_LAST = torch.channels_last


def keras_init_(module: nn.Module) -> nn.Module:
    """Glorot-uniform weights and zero biases for every conv and dense layer."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module


def _use_cpu_path(module: nn.Module, x: Tensor) -> bool:
    return (
        module.cpu_fast_path
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not _has_layer_hooks(module)
    )


def _has_layer_hooks(module: nn.Module) -> bool:
    """Whether hooks watch the layers: only the reference path calls each layer module."""
    from torch.nn.modules import module as torch_module

    if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
        return True
    return any(
        layer._forward_hooks
        or layer._forward_pre_hooks
        or layer._backward_hooks
        or layer._backward_pre_hooks
        for layer in module.children()
    )


def _in_chunks(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``fn(x)``, in sub-batches of :data:`CPU_CHUNK` digits when no gradient is needed."""
    if torch.is_grad_enabled() or x.shape[0] <= CPU_CHUNK:
        return fn(x)
    return torch.cat([fn(part) for part in x.split(CPU_CHUNK)])


def _grid_order_weights(layer: nn.Linear, grid_side: str) -> tuple[Tensor, Tensor]:
    """``layer``'s weight and bias with its 7x7x50 side in (h, w, c) order instead of (c, h, w).

    ``grid_side`` is ``"in"`` (the 2450 inputs, for the analysis' fc_1) or ``"out"``
    (the 2450 outputs, for the synthesis' fc_2).
    """
    w, b = layer.weight, layer.bias
    if grid_side == "in":
        return w.view(-1, 50, 7, 7).permute(0, 2, 3, 1).reshape(w.shape[0], -1), b
    weight = w.view(50, 7, 7, -1).permute(1, 2, 0, 3).reshape(-1, w.shape[1])
    return weight, b.view(50, 7, 7).permute(1, 2, 0).reshape(-1)


class SeedAnalysisTransform(nn.Module):
    """x (B,1,28,28) -> y (B, latent_dims).

    conv 1->20 5x5/2 + leaky; conv 20->50 5x5/2 + leaky; flatten (7*7*50);
    dense 500 + leaky; dense latent_dims (linear).
    """

    def __init__(self, latent_dims: int) -> None:
        super().__init__()
        self.conv_1 = nn.Conv2d(1, 20, 5, stride=2, padding=2)
        self.conv_2 = nn.Conv2d(20, 50, 5, stride=2, padding=2)
        self.fc_1 = nn.Linear(7 * 7 * 50, 500)
        self.fc_2 = nn.Linear(500, latent_dims)
        self.act = nn.LeakyReLU(LEAKY_SLOPE)
        self.cpu_fast_path = True
        keras_init_(self)

    def forward(self, x: Tensor) -> Tensor:
        if _use_cpu_path(self, x):
            if torch.is_grad_enabled() or x.shape[0] < GRID_ORDER_MIN_BATCH:
                return _in_chunks(self._cpu_forward, x)
            weight, bias = _grid_order_weights(self.fc_1, "in")
            return _in_chunks(lambda part: self._cpu_inference(part, weight, bias), x)
        return self.reference_forward(x)

    def reference_forward(self, x: Tensor) -> Tensor:
        h = self.act(self.conv_1(x))
        h = self.act(self.conv_2(h))
        # Keras flattens NHWC; the order is a fixed permutation absorbed by fc_1.
        h = self.act(self.fc_1(h.flatten(1)))
        return self.fc_2(h)

    def _cpu_forward(self, x: Tensor) -> Tensor:
        x = x.reshape(-1, 1, *IMAGE_SHAPE)
        h = F.conv2d(x, self.conv_1.weight, self.conv_1.bias, stride=2, padding=2)
        # Each activation runs on the layout its gradient comes back in (mixed layouts make
        # the activation's backward a slow strided loop).
        h = F.leaky_relu_(h.contiguous(memory_format=_CHANNELS_LAST), LEAKY_SLOPE)
        h = F.conv2d(h, self.conv_2.weight, self.conv_2.bias, stride=2, padding=2)
        h = F.leaky_relu_(h.contiguous(), LEAKY_SLOPE)
        h = F.leaky_relu_(self.fc_1(h.flatten(1)), LEAKY_SLOPE)
        return self.fc_2(h)

    def _cpu_inference(self, x: Tensor, fc_1_weight: Tensor, fc_1_bias: Tensor) -> Tensor:
        """Gradient-free forward; ``fc_1``'s weight comes in grid order (:func:`_grid_order_weights`)."""
        x = x.reshape(-1, 1, *IMAGE_SHAPE).contiguous()
        # One channel: the same memory read as channels-last, so oneDNN writes NHWC.
        x = x.as_strided(x.shape, (28 * 28, 1, 28, 1), x.storage_offset())
        h = F.conv2d(x, self.conv_1.weight, self.conv_1.bias, stride=2, padding=2)
        h = F.leaky_relu_(h.contiguous(memory_format=_CHANNELS_LAST), LEAKY_SLOPE)
        h = F.conv2d(h, self.conv_2.weight, self.conv_2.bias, stride=2, padding=2)
        h = F.leaky_relu_(h, LEAKY_SLOPE).permute(0, 2, 3, 1).reshape(h.shape[0], -1)
        h = F.leaky_relu_(F.linear(h, fc_1_weight, fc_1_bias), LEAKY_SLOPE)
        return self.fc_2(h)


class SeedSynthesisTransform(nn.Module):
    """y (B, latent_dims) -> x^ (B,1,28,28).

    dense 500 + leaky; dense 2450 + leaky; reshape 50x7x7; transposed conv
    50->20 5x5/2 + leaky; transposed conv 20->1 5x5/2 + leaky.
    """

    def __init__(self, latent_dims: int) -> None:
        super().__init__()
        self.fc_1 = nn.Linear(latent_dims, 500)
        self.fc_2 = nn.Linear(500, 7 * 7 * 50)
        self.conv_1 = nn.ConvTranspose2d(50, 20, 5, stride=2, padding=2, output_padding=1)
        self.conv_2 = nn.ConvTranspose2d(20, 1, 5, stride=2, padding=2, output_padding=1)
        self.act = nn.LeakyReLU(LEAKY_SLOPE)
        self.cpu_fast_path = True
        keras_init_(self)

    def forward(self, y: Tensor) -> Tensor:
        if _use_cpu_path(self, y):
            if torch.is_grad_enabled() or y.shape[0] < GRID_ORDER_MIN_BATCH:
                return _in_chunks(self._cpu_forward, y)
            weight, bias = _grid_order_weights(self.fc_2, "out")
            return _in_chunks(lambda part: self._cpu_inference(part, weight, bias), y)
        return self.reference_forward(y)

    def reference_forward(self, y: Tensor) -> Tensor:
        h = self.act(self.fc_1(y))
        h = self.act(self.fc_2(h)).view(-1, 50, 7, 7)
        h = self.act(self.conv_1(h))
        return self.act(self.conv_2(h))

    def _cpu_forward(self, y: Tensor) -> Tensor:
        h = F.leaky_relu_(self.fc_1(y), LEAKY_SLOPE)
        # fc_2 as W h^T: the (2450, B) product is the faster GEMM shape; the copy into
        # channels-last below is needed anyway.
        h = torch.addmm(self.fc_2.bias.unsqueeze(1), self.fc_2.weight, h.t())
        h = F.leaky_relu_(h, LEAKY_SLOPE).t().reshape(-1, 50, 7, 7)
        return self._cpu_convolutions(h.contiguous(memory_format=_CHANNELS_LAST))

    def _cpu_inference(self, y: Tensor, fc_2_weight: Tensor, fc_2_bias: Tensor) -> Tensor:
        """Gradient-free forward; ``fc_2``'s weight comes in grid order (:func:`_grid_order_weights`)."""
        h = F.leaky_relu_(self.fc_1(y), LEAKY_SLOPE)
        h = F.leaky_relu_(F.linear(h, fc_2_weight, fc_2_bias), LEAKY_SLOPE)
        # (B, 7*7*50) in (h, w, c) order is the channels-last (B, 50, 7, 7) grid: no copy.
        return self._cpu_convolutions(h.view(-1, 7, 7, 50).permute(0, 3, 1, 2))

    def _cpu_convolutions(self, h: Tensor) -> Tensor:
        """The two transposed convolutions from a channels-last (B, 50, 7, 7) grid."""
        h = F.conv_transpose2d(
            h, self.conv_1.weight, self.conv_1.bias, stride=2, padding=2, output_padding=1
        )
        h = F.leaky_relu_(h, LEAKY_SLOPE)
        if h.shape[0] >= _TAPS_MIN_BATCH:
            h = _TransposedConvToOne.apply(h, self.conv_2.weight, self.conv_2.bias)
        else:
            h = F.conv_transpose2d(
                h, self.conv_2.weight, self.conv_2.bias, stride=2, padding=2, output_padding=1
            )
        return F.leaky_relu_(h, LEAKY_SLOPE)


# -- the 20->1 transposed convolution of the seed on the CPU ----------------------------------------
#
# A 5x5 stride-2 layer from a 14x14 grid of C channels to a 28x28 single-channel
# image, with padding 2 ("same"). Output pixel ``o`` of the
# transposed convolution receives tap ``k`` of input pixel ``i`` when
# ``o = 2 i + k - 2``; on a grid padded by 2 on each side (32 x 32), that is
# position ``2 i + k``. Writing ``k = 2 a + p`` puts the tap in phase ``p`` (the
# parity of the padded position) at phase-grid position ``i + a`` (16 x 16).


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


class _TransposedConvToOne(torch.autograd.Function):
    """ConvTranspose2d(C->1, 5x5, stride 2, padding 2, output_padding 1) as taps + phases."""

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


TransformFactory = Callable[[int], tuple[nn.Module, nn.Module]]

ARCHITECTURES: dict[str, TransformFactory] = {
    "seed": lambda latent_dims: (
        SeedAnalysisTransform(latent_dims),
        SeedSynthesisTransform(latent_dims),
    ),
}


def make_transforms(arch: str, latent_dims: int) -> tuple[nn.Module, nn.Module]:
    """Return ``(analysis_transform, synthesis_transform)`` for a named architecture."""
    if arch not in ARCHITECTURES:
        known = ", ".join(sorted(ARCHITECTURES))
        raise InputError(f"unknown architecture {arch!r}; choose one of: {known}")
    if latent_dims < 1:
        raise InputError(f"latent_dims must be positive, got {latent_dims}")
    return ARCHITECTURES[arch](latent_dims)


def images_to_unit(images: Tensor) -> Tensor:
    """uint8 (B,28,28) or (B,1,28,28) -> float32 (B,1,28,28) in [0, 1]."""
    x = images.to(torch.float32) / 255.0
    return x.view(-1, 1, *IMAGE_SHAPE)
