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
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mnistcodec.data import load_split
from mnistcodec.experiments import metrics
from mnistcodec.experiments.bdrate import PRESET_BD_METHOD, compare_curves
from mnistcodec.model.compression_model import ModelConfig
from mnistcodec.model.transforms import LevelAffine, images_to_unit
from mnistcodec.model.variable_rate import VariableRateModel
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


class ConditionedAnalysis(nn.Module):
    """The seed's analysis transform with a per-level affine map on each hidden layer.

    The encoder-side twin of :class:`~mnistcodec.model.transforms.ConditionedSynthesisTransform`
    (measured and dropped, docs/improvements.md): the pre-activations of
    ``conv_1``, ``conv_2`` and ``fc_1`` become ``h * exp(s_l) + t_l``. ``levels``
    is set before each forward by :func:`condition_encoder`.
    """

    CONDITIONED = (("conv_1", 20), ("conv_2", 50), ("fc_1", 500))

    def __init__(self, base: nn.Module, levels: int) -> None:
        super().__init__()
        self.base = base
        self.level_log_scales = nn.ParameterDict(
            {n: nn.Parameter(torch.zeros(levels, size)) for n, size in self.CONDITIONED}
        )
        self.level_shifts = nn.ParameterDict(
            {n: nn.Parameter(torch.zeros(levels, size)) for n, size in self.CONDITIONED}
        )
        self.levels: torch.Tensor | None = None

    def level_parameters(self) -> list[nn.Parameter]:
        return [*self.level_log_scales.values(), *self.level_shifts.values()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, affine = self.base, LevelAffine(self, self.levels)
        h = b.act(affine("conv_1", b.conv_1(x)))
        h = b.act(affine("conv_2", b.conv_2(h)))
        h = b.act(affine("fc_1", b.fc_1(h.flatten(1))))
        return b.fc_2(h)


def condition_encoder(model: VariableRateModel) -> None:
    """Give ``model`` a level-conditioned analysis transform (the levels set per forward)."""
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


def optimizer_for(model: VariableRateModel, variant: str) -> torch.optim.Adam:
    """The transforms at ``lr``, the prior at the prior's rate, gains and per-level maps at the gains'."""
    _, lr, prior_lr, gain_lr, _, _ = VARIANTS[variant]
    bottleneck = model.entropy_bottleneck
    per_level = [
        p
        for transform in (model.analysis_transform, model.synthesis_transform)
        if hasattr(transform, "level_parameters")
        for p in transform.level_parameters()
    ]
    fast = {id(p) for p in per_level}
    transforms = [
        p
        for transform in (model.analysis_transform, model.synthesis_transform)
        for p in transform.parameters()
        if id(p) not in fast
    ]
    groups = [
        {"params": transforms, "lr": lr},
        {"params": list(bottleneck.prior.parameters()), "lr": prior_lr},
        {"params": [bottleneck.log_gains, *per_level], "lr": gain_lr},
    ]
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
    config = ModelConfig(
        arch="vr",
        prior=prior,
        mixture_components=max(args.mixture, 1),
        conditioned_decoder=args.conditioned_decoder,
    )
    model = VariableRateModel(config)
    bottleneck = model.entropy_bottleneck
    bottleneck.__init__(bottleneck.prior, bottleneck.lambdas, exponent, rounding)
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
