"""Analysis and synthesis transforms, as the paper and the seed state them.

The ``seed`` architecture reproduces the TensorFlow Compression MNIST tutorial
exactly: 5x5 kernels with stride 2 and "same" padding, leaky ReLU with Keras'
slope 0.2, a linear last analysis layer and a leaky ReLU on the last synthesis
layer, and Keras' initialisation (Glorot-uniform kernels, zero biases)::

    y  = g_a(x) = W_4 a(W_3 flatten(a(conv_2(a(conv_1(x))))) + b_3) + b_4
    x^ = g_s(y) = a(convT_2(a(convT_1(reshape(a(W_2 a(W_1 y + b_1) + b_2))))))

with ``a(t) = max(t, 0.2 t)``. Keras' "same" padding for a stride-2 transposed
convolution is PyTorch's ``padding=2, output_padding=1``.

Each transform's ``reference_forward`` is that composition of its layer
modules. ``forward`` computes the same function: on the CPU in float32 it goes
through the kernels of :mod:`mnistcodec.model.cpu_kernels` (tested equal to
the reference), elsewhere (GPUs, other dtypes, layers with hooks, or
``cpu_fast_path = False``) through ``reference_forward``. The parameters are
those of the plain layers, so model files do not depend on the route. Both
routes run the layers named in ``bf16_layers`` with bf16 products
(:mod:`mnistcodec.model.precision`); by default none.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from mnistcodec.errors import InputError
from mnistcodec.model import cpu_kernels
from mnistcodec.model.precision import apply_layer
from mnistcodec.storage.digits import IMAGE_SHAPE

LEAKY_SLOPE = 0.2  # Keras' leaky_relu default


def keras_init_(module: nn.Module) -> nn.Module:
    """Glorot-uniform weights ``U(-sqrt(6 / (fan_in + fan_out)), +...)`` and zero biases.

    Applied to every conv, transposed conv and dense layer of ``module``.
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module


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
        self.bf16_layers: frozenset[str] = frozenset()  # see mnistcodec.model.precision
        keras_init_(self)

    def forward(self, x: Tensor) -> Tensor:
        if cpu_kernels.applies(self, x):
            return cpu_kernels.analysis_forward(self, x)
        return self.reference_forward(x)

    def reference_forward(self, x: Tensor) -> Tensor:
        bf16 = self.bf16_layers
        h = self.act(apply_layer(self.conv_1, x, "conv_1" in bf16))
        h = self.act(apply_layer(self.conv_2, h, "conv_2" in bf16))
        # Keras flattens NHWC; the order is a fixed permutation absorbed by fc_1.
        h = self.act(apply_layer(self.fc_1, h.flatten(1), "fc_1" in bf16))
        return apply_layer(self.fc_2, h, "fc_2" in bf16)


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
        self.bf16_layers: frozenset[str] = frozenset()  # see mnistcodec.model.precision
        keras_init_(self)

    def forward(self, y: Tensor, levels: Tensor | None = None) -> Tensor:
        """``levels`` (one per digit) only matter to a :class:`ConditionedSynthesisTransform`."""
        affine = self.level_affine(levels)
        if cpu_kernels.applies(self, y):
            return cpu_kernels.synthesis_forward(self, y, affine)
        return self.reference_forward(y, affine)

    def level_affine(self, levels: Tensor | None) -> LevelAffine | None:
        return None

    def reference_forward(self, y: Tensor, affine: LevelAffine | None = None) -> Tensor:
        bf16 = self.bf16_layers
        same = _identity if affine is None else affine
        h = self.act(same("fc_1", apply_layer(self.fc_1, y, "fc_1" in bf16)))
        h = apply_layer(self.fc_2, h, "fc_2" in bf16).view(-1, 50, 7, 7)
        h = self.act(same("fc_2", h))
        h = self.act(same("conv_1", apply_layer(self.conv_1, h, "conv_1" in bf16)))
        return self.act(apply_layer(self.conv_2, h, "conv_2" in bf16))


def _identity(name: str, h: Tensor) -> Tensor:
    return h


class LevelAffine:
    """Each digit's per-level affine maps of a :class:`ConditionedSynthesisTransform`, for one call.

    ``affine(name, h)`` returns ``h * exp(s_{l_b}) + t_{l_b}`` with the
    per-unit (dense) or per-channel (grid) vectors of digit ``b``'s level,
    broadcast along dimension 1 of ``h``; :meth:`grid` does the same for a
    ``(B, 49, 50)`` grid in (row, column, channel) order.
    """

    def __init__(self, transform: ConditionedSynthesisTransform, levels: Tensor) -> None:
        self.scales = {n: torch.exp(p[levels]) for n, p in transform.level_log_scales.items()}
        self.shifts = {n: p[levels] for n, p in transform.level_shifts.items()}

    def rows(self, start: int, count: int) -> LevelAffine:
        """The maps of digits ``start .. start + count - 1``."""
        part = LevelAffine.__new__(LevelAffine)
        part.scales = {n: v[start : start + count] for n, v in self.scales.items()}
        part.shifts = {n: v[start : start + count] for n, v in self.shifts.items()}
        return part

    def __call__(self, name: str, h: Tensor) -> Tensor:
        shape = (h.shape[0], -1) + (1,) * (h.dim() - 2)
        return h * self.scales[name].view(shape).to(h.dtype) + self.shifts[name].view(shape).to(
            h.dtype
        )

    def grid(self, name: str, h: Tensor) -> Tensor:
        scale, shift = self.scales[name].unsqueeze(1), self.shifts[name].unsqueeze(1)
        return h * scale.to(h.dtype) + shift.to(h.dtype)


class ConditionedSynthesisTransform(SeedSynthesisTransform):
    """The seed's synthesis transform with one affine map per level on each hidden layer.

    For a digit at level ``l``, the pre-activation ``h`` of the dense 500, of
    the 7x7x50 grid (per channel) and of the 20-channel layer (per channel)
    becomes ``h * exp(s_l) + t_l`` before the leaky ReLU: the conditional
    layers of Choi, El-Khamy & Lee (2019), which let one decoder specialise
    for each quantisation step. ``s = t = 0`` at the start: the seed's decoder.
    """

    CONDITIONED = (("fc_1", 500), ("fc_2", 50), ("conv_1", 20))

    def __init__(self, latent_dims: int, levels: int) -> None:
        super().__init__(latent_dims)
        self.levels = int(levels)
        self.level_log_scales = nn.ParameterDict(
            {n: nn.Parameter(torch.zeros(self.levels, size)) for n, size in self.CONDITIONED}
        )
        self.level_shifts = nn.ParameterDict(
            {n: nn.Parameter(torch.zeros(self.levels, size)) for n, size in self.CONDITIONED}
        )

    def level_affine(self, levels: Tensor | None) -> LevelAffine:
        if levels is None:
            raise InputError("a conditioned synthesis transform needs each digit's level")
        return LevelAffine(self, levels)

    @torch.no_grad()
    def folded(self, level: int) -> SeedSynthesisTransform:
        """The same function at ``level``, as a plain transform: the affine maps in the weights.

        A map ``h * a + t`` after a layer ``h = W x + b`` is the layer
        ``(a W) x + (a b + t)``, scaling the rows of ``W`` of each unit (dense
        500), channel (the 7x7x50 grid, 49 rows each) or output channel (the
        50->20 transposed convolution). Equal to :meth:`forward` at that level
        up to float rounding, so only inference engines held to bounds use it.
        """
        with torch.device("meta"):  # no initialisation: every weight is copied in
            plain = SeedSynthesisTransform(self.fc_1.in_features)
        state = {k: v.clone() for k, v in self.state_dict().items() if not k.startswith("level_")}
        plain.load_state_dict(state, assign=True)
        scale = {n: torch.exp(p[level]) for n, p in self.level_log_scales.items()}
        shift = {n: p[level] for n, p in self.level_shifts.items()}
        grid_scale = scale["fc_2"].repeat_interleave(49)  # output o = 49 c + pixel
        grid_shift = shift["fc_2"].repeat_interleave(49)
        for layer, a, t, view in (
            (plain.fc_1, scale["fc_1"], shift["fc_1"], (-1, 1)),
            (plain.fc_2, grid_scale, grid_shift, (-1, 1)),
            (plain.conv_1, scale["conv_1"], shift["conv_1"], (1, -1, 1, 1)),
        ):
            layer.weight.mul_(a.view(view))
            layer.bias.mul_(a).add_(t)
        return plain.eval().requires_grad_(False)

    def level_parameters(self) -> list[nn.Parameter]:
        """The per-level scales and shifts (trained at the prior's learning rate)."""
        return [*self.level_log_scales.values(), *self.level_shifts.values()]


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
    """uint8 (B,28,28) or (B,1,28,28) -> float32 (B,1,28,28) ``x = k / 255`` in [0, 1]."""
    x = images.to(torch.float32) / 255.0
    return x.view(-1, 1, *IMAGE_SHAPE)
