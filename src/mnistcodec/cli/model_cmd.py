"""``train``, ``evaluate``, ``summary``, ``models`` and ``codebooks`` commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from mnistcodec.cli.common import (
    add_data_args,
    add_device_args,
    add_level_args,
    add_training_args,
    choose_level,
    note,
    positive_float,
    positive_int,
    seed_int,
)
from mnistcodec.coding.zoo import DEFAULT_MODEL, shipped_models
from mnistcodec.errors import InputError
from mnistcodec.model.names import ARCHITECTURE_NAMES, DISTORTIONS, PRIOR_NAMES
from mnistcodec.training.names import DEFAULT_THREADING, THREADING_MODES
from mnistcodec.training.presets import PRESETS, get_preset

if TYPE_CHECKING:
    from mnistcodec.model.compression_model import ModelConfig

# The handlers import the library lazily: PyTorch loads only for a command that runs a model,
# so ``mnistcodec --help`` and ``--version`` start at once.


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--arch",
        default="seed",
        choices=ARCHITECTURE_NAMES,
        help="architecture (default seed; vr: one variable-rate model for 16 lambdas)",
    )
    parser.add_argument(
        "--latent-dims", type=positive_int, default=50, help="latent size (default 50)"
    )
    parser.add_argument(
        "--prior",
        default="logistic",
        choices=PRIOR_NAMES,
        help="prior family (default logistic)",
    )
    parser.add_argument(
        "--lmbda",
        type=positive_float,
        default=2000.0,
        help="Lagrange multiplier lambda (default 2000)",
    )
    parser.add_argument(
        "--distortion", default="mad", choices=DISTORTIONS, help="distortion term (default mad)"
    )
    parser.add_argument(
        "--mixture",
        type=positive_int,
        default=None,
        metavar="C",
        help="a mixture of C logistics as the prior, coded by component (--arch vr; default 1: none)",
    )
    parser.add_argument(
        "--conditioned-decoder",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="per-level affine maps in the synthesis transform (--arch vr; default off)",
    )
    parser.add_argument(
        "--lambda-range",
        type=lambda_range,
        default=None,
        metavar="MIN:MAX",
        help="a variable-rate model's 16 levels, log-uniform from lambda MIN to MAX "
        "(--arch vr; default 150:8000)",
    )


def lambda_range(text: str) -> tuple[float, float]:
    """``MIN:MAX`` as two positive floats with MIN < MAX."""
    parts = text.split(":")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected MIN:MAX, got {text!r}")
    low, high = (positive_float(part) for part in parts)
    if not low < high:
        raise argparse.ArgumentTypeError(f"MIN must be below MAX, got {text!r}")
    return low, high


def model_config_from(args: argparse.Namespace) -> ModelConfig:
    from mnistcodec.model.compression_model import ModelConfig  # lazy: PyTorch

    bounds = getattr(args, "lambda_range", None)
    lambda_fields = {"lambda_min": bounds[0], "lambda_max": bounds[1]} if bounds else {}
    return ModelConfig(
        arch=args.arch,
        latent_dims=args.latent_dims,
        prior=args.prior,
        lmbda=args.lmbda,
        distortion=args.distortion,
        mixture_components=getattr(args, "mixture", None) or 1,
        conditioned_decoder=bool(getattr(args, "conditioned_decoder", None)),
        **lambda_fields,
    )


def default_model_path(config: ModelConfig) -> Path:
    lmbda = f"{config.lmbda:g}"
    mixture = f"-c{config.mixture_components}" if config.mixture_components > 1 else ""
    return (
        Path("runs")
        / f"{config.arch}-lmbda{lmbda}-d{config.latent_dims}-{config.prior}{mixture}.safetensors"
    )


def train_handler(args: argparse.Namespace) -> int:
    from mnistcodec.training.loop import TrainConfig, train  # lazy: PyTorch

    if args.preset:
        preset = get_preset(args.preset)
        args.arch, args.prior = preset.arch, preset.prior
        if args.prior_lr is None:
            args.prior_lr = preset.prior_lr
        if args.level_weight is None:
            args.level_weight = preset.level_weight
        if args.mixture is None:
            args.mixture = preset.mixture_components
        if args.conditioned_decoder is None:
            args.conditioned_decoder = preset.conditioned_decoder
    config = model_config_from(args)
    out = Path(args.out) if args.out else default_model_path(config)
    if not args.out:
        out.parent.mkdir(parents=True, exist_ok=True)
    train_config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        prior_lr=args.prior_lr,
        level_weight=args.level_weight or 0.0,
        lr_decay_epochs=args.lr_decay_epochs,
        lr_decay_factor=args.lr_decay_factor,
        init_from=args.init_from,
        seed=args.seed,
        device=args.device,
        limit=args.limit,
        val_limit=args.val_limit,
        dataset=args.dataset,
        data_dir=args.data_dir,
        threading=args.threading,
        precision=args.precision,
    )
    result = train(
        config, train_config, out, resume=args.resume, force=args.force, progress=not args.quiet
    )
    print(f"model written to {out} (fingerprint {result.model.fingerprint[:16]})")
    return 0


def evaluate_handler(args: argparse.Namespace) -> int:
    # lazy: PyTorch and the model
    from mnistcodec.coding.zoo import resolve_model
    from mnistcodec.data import load_split
    from mnistcodec.experiments.evaluate import evaluate, evaluate_levels, format_evaluation
    from mnistcodec.model.precision import resolve_device

    loaded = resolve_model(args.model, notify=note)
    loaded.model.to(resolve_device(args.device))
    images = load_split(args.split, args.dataset, args.data_dir).images[: args.limit]
    coding, precision = not args.no_coding, args.precision
    if args.all_levels:
        if args.level is not None or args.lmbda is not None:
            raise InputError("give --all-levels, --level or --lmbda, not several")
        results = evaluate_levels(loaded, images, coding=coding, precision=precision)
    else:
        level = choose_level(loaded, args)
        results = [evaluate(loaded, images, coding=coding, level=level, precision=precision)]
    if args.json:
        print(json.dumps(results if args.all_levels else results[0], indent=2))
        return 0
    print(f"model {args.model or DEFAULT_MODEL} on {args.dataset} {args.split}")
    print("\n\n".join(format_evaluation(result) for result in results))
    return 0


def codebooks_handler(args: argparse.Namespace) -> int:
    # lazy: PyTorch and the model
    from mnistcodec.coding.codebook_files import save_with_codebooks
    from mnistcodec.coding.zoo import resolve_model
    from mnistcodec.data import load_split
    from mnistcodec.experiments.codebooks import train_codebook

    try:
        sizes = [int(size) for size in args.sizes.split(",")]
    except ValueError:
        sizes = []
    if not sizes or sizes != sorted(set(sizes)):
        raise InputError(f"--sizes must be increasing codebook sizes, got {args.sizes!r}")
    source = resolve_model(args.model, notify=note)
    if not source.variable_rate or source.codebooks:
        raise InputError(f"{args.model}: codebook levels go into a variable-rate model without any")
    if len(sizes) >= source.levels:
        raise InputError(f"give at most {source.levels - 1} sizes: one level stays the network's")
    images = load_split("train", args.dataset, args.data_dir).images[: args.limit]
    codebooks = {}
    for level, size in enumerate(sizes):
        codebooks[level] = train_codebook(images, size, args.iterations, args.seed)
        if not args.quiet:
            note(f"level {level}: {size} codewords trained on {images.shape[0]} digits")
    command = f"mnistcodec codebooks {args.model} --sizes {args.sizes} --seed {args.seed}"
    record = {"codebooks": {"sizes": sizes, "iterations": args.iterations, "seed": args.seed}}
    loaded = save_with_codebooks(
        source, codebooks, args.out, {**record, "codebooks_command": command}, force=args.force
    )
    print(f"model written to {args.out} (fingerprint {loaded.fingerprint[:16]})")
    return 0


def summary_handler(args: argparse.Namespace) -> int:
    # lazy: PyTorch and the model
    from mnistcodec.coding.zoo import resolve_model
    from mnistcodec.model.summary import model_summary
    from mnistcodec.model.variable_rate import make_model

    if args.model:
        model = resolve_model(args.model, notify=note).model
    else:
        model = make_model(model_config_from(args))
    print(model_summary(model))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train")
    add_model_args(p)
    add_training_args(p)
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="named configuration: seed (the tutorial's), improved (faster prior) or vr (one variable-rate model); sets --arch, --prior, --prior-lr",
    )
    p.add_argument(
        "--seed", type=seed_int, default=0, help="random seed, 0 to 2^63 - 1 (default 0)"
    )
    p.add_argument(
        "--threading",
        choices=THREADING_MODES,
        default=DEFAULT_THREADING,
        help="CPU threads: intra-op (each operation on all cores; fastest on a machine of your own; "
        "default), shards (each batch split across threads; robust on a busy, shared machine) or "
        "auto (shards when the load average exceeds the cores, so the numbers depend on the load); "
        "intra-op and shards give the same numbers for the same command, seed and thread count",
    )
    p.add_argument(
        "--out",
        "-o",
        default=None,
        metavar="PATH",
        help="model file (default runs/<config>.safetensors)",
    )
    p.add_argument("--resume", action="store_true", help="continue from <out>.ckpt")
    p.add_argument(
        "--init-from",
        default=None,
        metavar="MODEL",
        help="start from this model's weights (file or shipped name; same architecture, "
        "prior and latents; the distortion and --lambda-range may differ): fine-tuning",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing model file")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    add_data_args(p)
    p.set_defaults(handler=train_handler)
    register_evaluate(subparsers)

    p = subparsers.add_parser("summary")
    p.add_argument(
        "model", nargs="?", default=None, help="model file or shipped name (default: a new model)"
    )
    add_model_args(p)
    p.set_defaults(handler=summary_handler)

    register_models(subparsers)
    register_codebooks(subparsers)


def register_codebooks(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("codebooks")
    p.add_argument("model", help="variable-rate model file or shipped name (e.g. vr-mse)")
    p.add_argument(
        "--sizes",
        default="16,64,256,1024,4096",
        help="codewords of the new lowest levels, in level order (default 16,64,256,1024,4096; "
        "each at most 4096)",
    )
    p.add_argument("--iterations", type=positive_int, default=25, help="K-means steps (default 25)")
    p.add_argument("--seed", type=seed_int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--limit", type=positive_int, default=None, help="train on the first N training digits"
    )
    p.add_argument("--out", "-o", required=True, metavar="PATH", help="the new model file")
    p.add_argument("--force", action="store_true", help="overwrite an existing model file")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    add_data_args(p)
    p.set_defaults(handler=codebooks_handler)


def register_evaluate(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate")
    p.add_argument(
        "model",
        nargs="?",
        default=None,
        help=f"model file or shipped model name (default: {DEFAULT_MODEL})",
    )
    p.add_argument(
        "--split", default="test", choices=["train", "test"], help="split (default test)"
    )
    p.add_argument(
        "--limit", type=positive_int, default=None, metavar="N", help="first N digits only"
    )
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.add_argument(
        "--no-coding", action="store_true", help="skip the entropy coder (no string_bits)"
    )
    add_level_args(p)
    p.add_argument(
        "--all-levels",
        action="store_true",
        help="every level of a variable-rate model (--json: a list)",
    )
    add_data_args(p)
    add_device_args(p)
    p.set_defaults(handler=evaluate_handler)


def strings_figure(ev: dict) -> str:
    """A record's string lengths, the same units for every model: bit strings (``.mnc`` version
    3; a dash in a record made before them) and, in brackets, byte strings (versions 1 and 2)."""
    if "byte_string_bits" in ev:
        return f"{ev['string_bits']:.2f} bits (byte strings {ev['byte_string_bits']:.2f})"
    return f"- bits (byte strings {ev.get('string_bits', float('nan')):.2f})"


def models_handler(args: argparse.Namespace) -> int:
    # lazy: PyTorch and the models
    from mnistcodec.coding.model_files import load_model
    from mnistcodec.data import load_split
    from mnistcodec.experiments.shipped import check_shipped

    shipped = shipped_models()
    if not shipped:
        print("no shipped models")
        return 0
    failed = False
    for name, path in shipped.items():
        loaded = load_model(path)
        cfg, ev = loaded.config, loaded.metadata.get("evaluation", {})
        # The lambda the figures are for: a variable-rate model's is its evaluated level's.
        if "level" in ev:
            rate = f"level {ev['level']}, lambda {ev['lmbda']:.0f}"
        else:
            rate = f"lambda {cfg.lmbda:g}"
        print(
            f"{name:<24} {cfg.arch}/{cfg.prior} {rate}, d={cfg.latent_dims}  "
            f"{path.stat().st_size / 1e6:.1f} MB  info {ev.get('info_bits', float('nan')):.2f} bits  "
            f"strings {strings_figure(ev)}  "
            f"PSNR {ev.get('psnr_db', float('nan')):.2f} dB"
            + ("  (default)" if name == DEFAULT_MODEL else "")
        )
        if loaded.variable_rate:
            lambdas = loaded.model.lambdas
            print(
                f"    {loaded.levels} levels (--level 0-{loaded.levels - 1}, lambda {lambdas[0]:g} to {lambdas[-1]:g}); "
                f"the default level is {loaded.model.reference_level}"
            )
        extras = [
            f"a mixture prior of {cfg.mixture_components} logistics" * (cfg.mixture_components > 1),
            "a level-conditioned decoder" * cfg.conditioned_decoder,
        ]
        if any(extras):
            print("    " + " and ".join(e for e in extras if e))
        if loaded.codebooks:
            levels, sizes = (
                sorted(loaded.codebooks),
                [cb.size for _, cb in sorted(loaded.codebooks.items())],
            )
            print(
                f"    levels {levels[0]}-{levels[-1]}: whole-digit codebooks of "
                f"{', '.join(f'{n:,}' for n in sizes)} codewords (model format 2)"
            )
        if args.check:
            images = load_split("test", args.dataset, args.data_dir).images
            for key, (recorded, measured, same) in check_shipped(name, images).items():
                failed |= not same
                print(
                    f"    {key:<22} recorded {recorded:.6f}  measured {measured:.6f}  {'ok' if same else 'MISMATCH'}"
                )
    return 1 if failed else 0


def register_models(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models")
    p.add_argument(
        "--check", action="store_true", help="re-derive each model's recorded evaluation figures"
    )
    add_data_args(p)
    p.set_defaults(handler=models_handler)
