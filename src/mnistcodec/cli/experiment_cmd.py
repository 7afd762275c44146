"""``sweep``, ``baselines`` and ``report`` commands."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mnistcodec.cli.common import (
    add_data_args,
    add_precision_arg,
    add_training_args,
    positive_float,
    positive_int,
    seed_int,
)
from mnistcodec.model.compression_model import DISTORTIONS
from mnistcodec.model.priors import PRIORS
from mnistcodec.model.transforms import ARCHITECTURES

if TYPE_CHECKING:
    from mnistcodec.experiments.ray_executor import RayOptions


def sweep_handler(args: argparse.Namespace) -> int:
    # Lazy imports here: the sweep pulls in PyTorch and NumPy; the CLI starts without them.
    from mnistcodec.experiments.bdrate import format_bd_table
    from mnistcodec.experiments.sweep import make_grid, run_sweep  # lazy: PyTorch
    from mnistcodec.experiments.tables import format_table
    from mnistcodec.training.loop import TrainConfig  # lazy: PyTorch

    train_config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        prior_lr=args.prior_lr,
        level_weight=args.level_weight or 0.0,
        lr_decay_epochs=args.lr_decay_epochs,
        lr_decay_factor=args.lr_decay_factor,
        device=args.device,
        limit=args.limit,
        val_limit=args.val_limit,
        dataset=args.dataset,
        data_dir=args.data_dir,
        precision=args.precision,
    )
    specs = make_grid(
        args.lmbda,
        args.latent_dims,
        args.prior,
        train_config,
        seeds=args.seeds,
        eval_limit=args.eval_limit,
        arch=args.arch,
        distortion=args.distortion,
    )
    print(f"sweep: {len(specs)} trial(s) -> {args.out}")
    t0 = time.perf_counter()
    result = run_sweep(
        specs,
        args.out,
        jobs=args.jobs,
        progress=not args.quiet,
        executor=args.executor,
        ray_options=_ray_options(args),
    )
    files = {**result.files, **_plot_sweep(result.rows, Path(args.out))}
    print(format_table(result.rows))
    if result.bd_rates:
        print("BD-rates between configurations (real bits, PSNR):")
        print(format_bd_table(result.bd_rates))
    for name, path in files.items():
        print(f"{name:>7}: {path}")
    print(f"sweep done in {time.perf_counter() - t0:.0f}s")
    return 0


def _ray_options(args: argparse.Namespace) -> RayOptions | None:
    """The Ray executor's options from ``--ray-address`` and the per-trial resources (checked)."""
    if args.executor != "ray":
        return None
    # lazy: the executor module is light, but only a sweep on Ray needs it
    from mnistcodec.experiments.ray_executor import RayOptions

    return RayOptions(args.ray_address, args.cpus_per_trial, args.gpus_per_trial)


def _plot_sweep(rows: list[dict], out: Path) -> dict[str, Path]:
    """The plots a grid supports: RD curves over lambda, latent-size and prior sweeps."""
    # Lazy imports here: matplotlib and NumPy are slow to import; the CLI starts without them.
    from mnistcodec.experiments.bdrate import group_by_config
    from mnistcodec.lab import figures  # lazy: matplotlib

    files: dict[str, Path] = {}
    curves = group_by_config(rows, min_lambdas=2)
    if curves:
        files["rd"] = figures.plot_rd_curves(curves, None, out / "rd.png")
    if len({r["latent_dims"] for r in rows}) > 1:
        files["latent"] = figures.plot_latent_sweep(rows, out / "latent.png")
    if len({r["prior"] for r in rows}) > 1:
        files["priors"] = figures.plot_prior_sweep(rows, out / "priors.png")
    return files


def baselines_handler(args: argparse.Namespace) -> int:
    # Lazy imports here: the codecs, PyTorch and matplotlib are heavy; the CLI starts without them.
    from mnistcodec.experiments.bdrate import format_bd_table
    from mnistcodec.experiments.comparison import (  # lazy: the classical codecs and PyTorch
        compare_with_baselines,
        format_baseline_table,
        format_trivial_table,
        read_learned_rows,
    )
    from mnistcodec.experiments.rd_limit import NERD_MNIST  # lazy: with the command
    from mnistcodec.lab import figures  # lazy: matplotlib

    result = compare_with_baselines(
        args.out,
        n=args.n,
        codecs=args.codecs,
        modes=args.modes,
        workers=args.workers,
        learned_rows=read_learned_rows(args.learned or []),
        dataset=args.dataset,
        data_dir=args.data_dir,
        progress=not args.quiet,
    )
    print(format_baseline_table(result.rows))
    print(format_trivial_table(result.trivial))
    for name, reason in result.skipped.items():
        print(f"skipped {name}: {reason}")
    out = Path(args.out)
    figures.plot_rd_curves(
        result.learned_curves,
        result.rows,
        out / "rd.png",
        title=f"classical codecs on {result.n} test digits",
        trivial=result.trivial,
        reference=NERD_MNIST.rows(),
    )
    if result.bd_rates:
        print("BD-rates (PSNR as quality; negative = fewer bits than the anchor):")
        print(format_bd_table(result.bd_rates))
    print(
        f"wrote {out / 'baselines.csv'}, {out / 'baselines.json'}, {out / 'bd_rates.json'}, {out / 'rd.png'}"
    )
    return 0


def report_handler(args: argparse.Namespace) -> int:
    from mnistcodec.lab.report import build_report  # lazy: loads torch and matplotlib

    protocol = "full" if args.full else args.protocol
    result = build_report(
        args.out,
        protocol,
        force=args.force,
        progress=not args.quiet,
        dataset=args.dataset,
        data_dir=args.data_dir,
        jobs=args.jobs,
        lang=args.lang,
        precision=args.precision,
        executor=args.executor,
        ray_options=_ray_options(args),
    )
    print(f"open {result.index.resolve().as_uri()}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    register_sweep(subparsers)
    register_baselines(subparsers)
    register_report(subparsers)


def _add_grid_args(p: argparse.ArgumentParser) -> None:
    """The sweep's grid: every combination of these values is one trial."""
    p.add_argument(
        "--lmbda",
        type=positive_float,
        nargs="+",
        default=[2000.0],
        metavar="L",
        help="lambdas (default 2000)",
    )
    p.add_argument(
        "--latent-dims",
        type=positive_int,
        nargs="+",
        default=[50],
        metavar="D",
        help="latent sizes (default 50)",
    )
    p.add_argument(
        "--prior",
        nargs="+",
        default=["logistic"],
        choices=sorted(PRIORS),
        help="prior families (default logistic)",
    )
    p.add_argument(
        "--seeds", type=seed_int, nargs="+", default=[0], metavar="S", help="seeds (default 0)"
    )
    p.add_argument(
        "--arch", default="seed", choices=sorted(ARCHITECTURES), help="architecture (default seed)"
    )


def _add_executor_args(p: argparse.ArgumentParser) -> None:
    """Where the trials run: this machine's worker processes, or a Ray cluster."""
    p.add_argument(
        "--executor",
        default="local",
        choices=["local", "ray"],
        help="local worker processes (default) or tasks on a Ray cluster (pip install mnistcodec[ray])",
    )
    p.add_argument(
        "--ray-address",
        default="auto",
        metavar="ADDR",
        help="Ray head node HOST:PORT; auto (default): $RAY_ADDRESS, else a cluster running on this "
        "machine, else a local Ray instance for this run (local: always that)",
    )
    p.add_argument(
        "--cpus-per-trial",
        type=positive_int,
        default=1,
        metavar="N",
        help="with --executor ray: CPUs (and PyTorch threads) of each trial (default 1)",
    )
    p.add_argument(
        "--gpus-per-trial",
        type=positive_float,
        default=0.25,
        metavar="F",
        help="with --executor ray: share of a GPU for each trial that trains on CUDA (default 0.25)",
    )


def register_sweep(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sweep",
        description="Train and evaluate every combination of --lmbda, --latent-dims, --prior and --seeds. "
        "Each trial is cached in OUT/trials/<hash of its configuration>/, so an interrupted sweep resumes "
        "and a repeated one is free. Writes OUT/results.{csv,json}, OUT/bd_rates.json and plots.",
    )
    _add_grid_args(p)
    p.add_argument(
        "--distortion", default="mad", choices=DISTORTIONS, help="distortion term (default mad)"
    )
    add_training_args(p)
    p.add_argument(
        "--eval-limit",
        type=positive_int,
        default=None,
        metavar="N",
        help="evaluate (with coding) on the first N test digits (default all)",
    )
    p.add_argument(
        "--jobs",
        "-j",
        type=positive_int,
        default=1,
        help="parallel worker processes of the local executor (default 1)",
    )
    _add_executor_args(p)
    p.add_argument(
        "--out", "-o", default="sweep", metavar="DIR", help="output directory (default sweep/)"
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    add_data_args(p)
    p.set_defaults(handler=sweep_handler)


def register_baselines(subparsers: argparse._SubParsersAction) -> None:
    # Lazy: loads NumPy, only once the parser is built (importing mnistcodec.cli stays light).
    from mnistcodec.experiments.baselines import CODECS, MODES

    p = subparsers.add_parser(
        "baselines",
        description="Measure classical codecs on the first N test digits, per file and tiled; write "
        "OUT/baselines.{csv,json}, OUT/bd_rates.json and OUT/rd.png. BD-rates are given against JPEG, and "
        "for learned curves passed with --learned against every codec.",
    )
    p.add_argument(
        "--n", type=positive_int, default=1000, help="number of test digits (default 1000)"
    )
    p.add_argument(
        "--codecs",
        nargs="+",
        default=None,
        choices=list(CODECS),
        metavar="CODEC",
        help=f"codecs to run (default all available: {', '.join(CODECS)})",
    )
    p.add_argument(
        "--modes", nargs="+", default=list(MODES), choices=list(MODES), help="per-file and/or tiled"
    )
    p.add_argument("--workers", type=positive_int, default=None, help="threads for per-file coding")
    p.add_argument(
        "--learned",
        nargs="+",
        default=None,
        metavar="JSON",
        help="results.json of a sweep or report: add its learned curves and BD-rates",
    )
    p.add_argument(
        "--out",
        "-o",
        default="baselines",
        metavar="DIR",
        help="output directory (default baselines/)",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_data_args(p)
    p.set_defaults(handler=baselines_handler)


def register_report(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        description="Answer every manipulation of the lab with numbers and figures computed by this run; "
        "write OUT/index.html (self-contained), OUT/results.json and OUT/figures/. --quick (default) takes "
        "about 10 minutes on 2 CPU cores; --full follows the lab's protocol (hours). Trials and classical-codec "
        "measurements are cached in OUT/cache/: re-running reuses them and rewrites the page and figures "
        "atomically (an existing report is always overwritten). --force recomputes the protocol's trials and "
        "measurements, and allows writing into a non-empty directory that is not a report.",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--quick",
        dest="protocol",
        action="store_const",
        const="quick",
        help="short protocol, subsets and 2 epochs (default)",
    )
    group.add_argument(
        "--full", action="store_true", help="the lab's protocol: 5 epochs on all data"
    )
    group.add_argument(
        "--protocol",
        dest="protocol",
        choices=["micro", "quick", "full"],
        help="protocol by name (micro: seconds, for smoke tests)",
    )
    p.add_argument(
        "--out", "-o", default="report", metavar="DIR", help="output directory (default report/)"
    )
    p.add_argument(
        "--lang",
        default="en",
        metavar="LANG",
        help="language of the page and its figures: en (default, in OUT/) or fr (in OUT/fr/); "
        "cached measurements serve every language",
    )
    p.add_argument("--force", action="store_true", help="recompute cached trials and measurements")
    p.add_argument(
        "--jobs",
        "-j",
        type=positive_int,
        default=None,
        help="worker processes for training (default: the protocol's, 2)",
    )
    _add_executor_args(p)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    add_data_args(p)
    add_precision_arg(p)
    p.set_defaults(handler=report_handler, protocol="quick", full=False)
