"""Short runs that choose the variable-rate model's mechanism and training recipe.

Trains a ``vr`` model on the first ``--limit`` training digits for ``--epochs``
epochs with one variant of the recipe, then measures every level on the first
``--val`` test digits: information content (bits per digit under the
discretised prior), mean PSNR and MAD of the decoded uint8 digits. Prints one
JSON object per run (appended to ``--log``) with the BD-rate at equal PSNR
against the stored improved curve (bench/results/improved_bdrate.json; only a
rough guide at this budget, on information content; the variants are compared with each other)::

    python bench/vr_mechanism.py --variant gains-prior-lr --limit 10000 --epochs 3
    python bench/vr_mechanism.py --variant ste-decoder --lr-decay 0.3   # a decaying schedule
    python bench/vr_mechanism.py --variant ste-decoder --level-weight 0.5  # levels reweighted
    python bench/vr_mechanism.py --variant ste-decoder --mixture 16   # a mixture prior

``--level-weight A`` weights each digit's Lagrangian by ``(2000 / lambda_b)^A``:
``A = 0`` is the model's own loss, where the high-rate levels' larger
Lagrangians dominate the shared transforms' gradients; ``A = 1`` gives every
level the scale of ``R / lambda + D``. Each level's own optimum is the same
(a positive factor per level); only the balance between levels changes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mnistcodec.data import load_split
from mnistcodec.experiments import metrics
from mnistcodec.experiments.bdrate import PRESET_BD_METHOD, compare_curves
from mnistcodec.model.compression_model import ModelConfig
from mnistcodec.model.transforms import images_to_unit
from mnistcodec.model.variable_rate import VariableRateBottleneck, VariableRateModel
from mnistcodec.training.loop import ADAM_EPS, TrainConfig, train_epoch

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    # name: (prior family, transforms' lr, prior lr, gains' lr, gain exponent, decoder rounding)
    "gains-slow": ("logistic", 1e-3, 1e-2, 1e-3, 0.5, False),
    "gains-prior-lr": ("logistic", 1e-3, 1e-2, 1e-2, 0.5, False),
    "gain-exponent-1": ("logistic", 1e-3, 1e-2, 1e-2, 1.0, False),
    "ste-decoder": ("logistic", 1e-3, 1e-2, 1e-2, 0.5, True),
    "deep-factorized": ("deep-factorized", 1e-3, 1e-2, 1e-2, 0.5, False),
}


class MixtureBottleneck(VariableRateBottleneck):
    """Gain units over a mixture of K factorised logistics of ``y``, coded by component.

    ``p(y) = sum_k pi_k prod_i Logistic(y_i; mu_ki, s_ki)``. Level ``l`` quantises
    ``z = g_l y`` to integers; a digit is coded as the index ``k`` that minimises
    its code length, ``-log2 pi_k - sum_i log2 P_k(z_i)``, then its latents under
    component ``k``. Training uses the noisy mixture bound ``-log2 sum_k pi_k
    prod_i p~_k(z_i + u_i)``, within ``log2 K`` of the coded length.
    """

    def __init__(self, base: VariableRateBottleneck, components: int) -> None:
        nn.Module.__init__(self)
        self.prior = nn.Module()
        dims = base.prior.latent_dims
        self.prior.loc = nn.Parameter(torch.randn(components, dims) * 0.5)
        self.prior.log_scale = nn.Parameter(torch.zeros(components, dims))
        self.prior.logits = nn.Parameter(torch.zeros(components))
        self.lambdas = base.lambdas
        self.decoder_rounding = base.decoder_rounding
        self.log_gains = base.log_gains

    def component_nats(self, z: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        """``log pi_k + sum_i log P_k(z_i)``, shape (B, K)."""
        loc, scale = self.prior.loc[None], torch.exp(self.prior.log_scale)[None]
        x, g = z[:, None, :], gain[:, None, :]
        a = ((x - 0.5) / g - loc) / scale
        b = ((x + 0.5) / g - loc) / scale
        upper = (a + b) > 0
        hi = F.logsigmoid(torch.where(upper, -a, b))
        lo = F.logsigmoid(torch.where(upper, -b, a))
        nats = hi + torch.log((-torch.expm1(lo - hi)).clamp_min(1e-30))
        return nats.sum(-1) + torch.log_softmax(self.prior.logits, 0)[None]

    def forward(self, y, levels, training, generator=None):
        gain = self.gains(levels).to(y.dtype)
        z = y * gain
        if not training:
            z_hat = torch.round(z)
            bits = -self.component_nats(z_hat, gain).max(dim=1).values / math.log(2.0)
            return z_hat / gain, bits
        noise = torch.rand(z.shape, generator=generator, device=z.device, dtype=z.dtype) - 0.5
        nats = torch.logsumexp(self.component_nats(z + noise, gain), dim=1)
        bits = -nats / math.log(2.0)
        if not self.decoder_rounding:
            return (z + noise) / gain, bits
        return (z + (torch.round(z) - z).detach()) / gain, bits


class ConditionedSynthesis(nn.Module):
    """The seed's synthesis transform with a per-level affine map on each hidden layer.

    Layer ``j``'s pre-activation ``h`` becomes ``h * exp(s_lj) + t_lj`` for the
    digit's level ``l`` (per unit for the dense 500, per channel for the 7x7x50
    grid and the 20 channels), as conditional layers of Choi et al. (2019) do;
    ``s = t = 0`` at the start, so training starts from the seed's decoder.
    """

    def __init__(self, base: nn.Module, levels: int) -> None:
        super().__init__()
        self.base = base
        self.film = nn.ParameterDict(
            {
                name: nn.Parameter(torch.zeros(2, levels, n))
                for name, n in (("fc_1", 500), ("fc_2", 50), ("conv_1", 20))
            }
        )
        self.levels: torch.Tensor | None = None

    def affine(self, name: str, h: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film[name][0][self.levels], self.film[name][1][self.levels]
        shape = (h.shape[0], -1) + (1,) * (h.dim() - 2)
        return h * torch.exp(scale).view(shape) + shift.view(shape)

    def forward(self, y: torch.Tensor, levels: torch.Tensor | None = None) -> torch.Tensor:
        if levels is not None:
            self.levels = levels
        b = self.base
        h = b.act(self.affine("fc_1", b.fc_1(y)))
        h = b.fc_2(h).view(-1, 50, 7, 7)
        h = b.act(self.affine("fc_2", h))
        h = b.act(self.affine("conv_1", b.conv_1(h)))
        return b.act(b.conv_2(h))


class ConditionedAnalysis(nn.Module):
    """The seed's analysis transform with a per-level affine map on each hidden layer."""

    def __init__(self, base: nn.Module, levels: int) -> None:
        super().__init__()
        self.base = base
        self.film = nn.ParameterDict(
            {
                name: nn.Parameter(torch.zeros(2, levels, n))
                for name, n in (("conv_1", 20), ("conv_2", 50), ("fc_1", 500))
            }
        )
        self.levels: torch.Tensor | None = None

    affine = ConditionedSynthesis.affine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.base
        h = b.act(self.affine("conv_1", b.conv_1(x)))
        h = b.act(self.affine("conv_2", b.conv_2(h)))
        h = b.act(self.affine("fc_1", b.fc_1(h.flatten(1))))
        return b.fc_2(h)


def condition_encoder(model: VariableRateModel) -> None:
    """Give ``model`` a level-conditioned analysis transform (after :func:`condition_decoder`)."""
    model.analysis_transform = ConditionedAnalysis(model.analysis_transform, model.levels)
    forward = model.forward

    def conditioned(x, training=None, generator=None, levels=None):
        if levels is None:
            levels = torch.arange(x.shape[0]) % model.levels
        elif isinstance(levels, int):
            levels = torch.full((x.shape[0],), levels, dtype=torch.long)
        model.analysis_transform.levels = levels
        return forward(x, training=training, generator=generator, levels=levels)

    model.forward = conditioned


def condition_decoder(model: VariableRateModel) -> None:
    """Give ``model`` a level-conditioned synthesis transform (the levels set per forward)."""
    model.synthesis_transform = ConditionedSynthesis(model.synthesis_transform, model.levels)
    forward = model.forward

    def conditioned(x, training=None, generator=None, levels=None):
        training = model.training if training is None else training
        if levels is None:
            levels = torch.arange(x.shape[0]) % model.levels
        elif isinstance(levels, int):
            levels = torch.full((x.shape[0],), levels, dtype=torch.long)
        model.synthesis_transform.levels = levels
        return forward(x, training=training, generator=generator, levels=levels)

    model.forward = conditioned


def optimizer_for(model: VariableRateModel, variant: str) -> torch.optim.Adam:
    _, lr, prior_lr, gain_lr, _, _ = VARIANTS[variant]
    bottleneck = model.entropy_bottleneck
    groups = [
        {
            "params": [
                *model.analysis_transform.parameters(),
                *model.synthesis_transform.parameters(),
            ],
            "lr": lr,
        },
        {"params": list(bottleneck.prior.parameters()), "lr": prior_lr},
        {"params": [bottleneck.log_gains], "lr": gain_lr},
    ]
    films = [
        m.film
        for m in model.modules()
        if isinstance(m, (ConditionedSynthesis, ConditionedAnalysis))
    ]
    if films:
        film_ids = {id(p) for film in films for p in film.parameters()}
        groups[0]["params"] = [p for p in groups[0]["params"] if id(p) not in film_ids]
        groups.append({"params": [p for film in films for p in film.parameters()], "lr": gain_lr})
    return torch.optim.Adam(groups, lr=lr, eps=ADAM_EPS)


@torch.no_grad()
def level_points(model: VariableRateModel, images: np.ndarray) -> list[dict]:
    model.eval()
    x = images_to_unit(torch.from_numpy(images))
    points = []
    for level in range(model.levels):
        out = model(x, training=False, levels=level)
        decoded = (
            torch.round(out.x_hat * 255).clamp(0, 255).to(torch.uint8).view(-1, 28, 28).numpy()
        )
        points.append(
            {
                "level": level,
                "lmbda": model.lambdas[level],
                "info_bits": float(out.rate_bits.mean()),
                "psnr_db": metrics.mean_psnr(images, decoded),
                "mad_decoded": metrics.mad(images, decoded),
            }
        )
    return points


def weight_levels(model: VariableRateModel, exponent: float) -> None:
    """Replace ``model.loss`` by the mean of ``(2000 / lambda_b)^exponent (R_b + lambda_b D_b)``."""

    def loss(out) -> torch.Tensor:
        weight = (2000.0 / out.lmbda) ** exponent
        return torch.mean(weight * (out.rate_bits + out.lmbda * out.digit_distortion))

    model.loss = loss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="gains-prior-lr")
    parser.add_argument("--limit", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--val", type=int, default=2000)
    parser.add_argument(
        "--lr-decay",
        type=float,
        default=1.0,
        metavar="F",
        help="multiply every learning rate by F after each epoch (default 1: constant)",
    )
    parser.add_argument(
        "--level-weight",
        type=float,
        default=0.0,
        metavar="A",
        help="weight digit b's Lagrangian by (2000 / lambda_b)^A (default 0: unweighted)",
    )
    parser.add_argument(
        "--mixture",
        type=int,
        default=0,
        metavar="K",
        help="a mixture of K factorised logistics as the prior (default 0: one logistic)",
    )
    parser.add_argument(
        "--conditioned-decoder",
        action="store_true",
        help="a per-level affine map on each hidden layer of the synthesis transform",
    )
    parser.add_argument(
        "--conditioned-encoder",
        action="store_true",
        help="a per-level affine map on each hidden layer of the analysis transform",
    )
    parser.add_argument("--log", type=Path, default=REPO / "runs" / "vr" / "mechanism.jsonl")
    args = parser.parse_args(argv)
    train_images = torch.from_numpy(load_split("train").images[: args.limit])
    test_images = load_split("test").images[: args.val]
    torch.manual_seed(0)
    prior, _, _, _, exponent, rounding = VARIANTS[args.variant]
    model = VariableRateModel(ModelConfig(arch="vr", prior=prior))
    bottleneck = model.entropy_bottleneck
    bottleneck.__init__(bottleneck.prior, bottleneck.lambdas, exponent, rounding)
    if args.mixture:
        model.entropy_bottleneck = MixtureBottleneck(bottleneck, args.mixture)
        bottleneck = model.entropy_bottleneck
    if args.conditioned_decoder:
        condition_decoder(model)
    if args.conditioned_encoder:
        condition_encoder(model)
    optimizer = optimizer_for(model, args.variant)
    if args.level_weight:
        weight_levels(model, args.level_weight)
    config = TrainConfig(epochs=args.epochs)
    t0 = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        train_epoch(model, optimizer, train_images, config, epoch, None, False, Path("none"))
        for group in optimizer.param_groups:
            group["lr"] *= args.lr_decay
    seconds = time.perf_counter() - t0
    points = level_points(model, test_images)
    stored = json.loads((REPO / "bench" / "results" / "improved_bdrate.json").read_text())["points"]
    improved = stored["improved"]
    (entry,) = compare_curves(
        ("improved", [p["info_bits"] for p in improved], [p["psnr_db"] for p in improved]),
        [("vr", [p["info_bits"] for p in points], [p["psnr_db"] for p in points])],
        method=PRESET_BD_METHOD,
    )
    bd, note = entry["bd_rate_percent"], entry["note"]
    record = {
        **vars(args),
        "log": str(args.log),
        "seconds": seconds,
        "bd_vs_improved_psnr": bd,
        "note": note,
    }
    record["points"] = points
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with args.log.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    print(f"{args.variant}: {seconds:.0f} s, BD-rate vs improved (PSNR) {bd}, {note}")
    for p in points:
        print(
            f"  level {p['level']:2d} lambda {p['lmbda']:7.1f}: {p['info_bits']:6.2f} bits {p['psnr_db']:6.2f} dB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
