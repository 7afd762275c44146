"""``sweep``, ``baselines`` and ``report`` commands."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mnistcodec.cli.common import add_data_args, positive_float, positive_int
from mnistcodec.errors import InputError
from mnistcodec.model.compression_model import DISTORTIONS
from mnistcodec.model.priors import PRIORS
from mnistcodec.model.transforms import ARCHITECTURES


def sweep_handler(args: argparse.Namespace) -> int:
    from mnistcodec.experiments.sweep import format_bd_table, format_table, make_grid, run_sweep
    from mnistcodec.training.loop import TrainConfig

    train_config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, prior_lr=args.prior_lr, device=args.device,
        limit=args.limit,
        val_limit=args.val_limit, dataset=args.dataset, data_dir=args.data_dir,
    )
    specs = make_grid(
        args.lmbda, args.latent_dims, args.prior, train_config, seeds=args.seeds, eval_limit=args.eval_limit,
        arch=args.arch, distortion=args.distortion,
    )
    print(f"sweep: {len(specs)} trial(s) -> {args.out}")
    t0 = time.perf_counter()
    result = run_sweep(specs, args.out, jobs=args.jobs, progress=not args.quiet)
    print(format_table(result.rows))
    if result.bd_rates:
        print("BD-rates between configurations (real bits, PSNR):")
        print(format_bd_table(result.bd_rates))
    for name, path in result.files.items():
        print(f"{name:>7}: {path}")
    print(f"sweep done in {time.perf_counter() - t0:.0f}s")
    return 0


def _learned_rows(paths: list[str]) -> list[dict]:
    rows: list[dict] = []
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read learned results {path}: {exc}") from None
        if isinstance(data, dict):  # a report's results.json
            data = data.get("lambda_sweep", data.get("trials", []))
        if not isinstance(data, list) or not all(isinstance(r, dict) and "string_bits" in r for r in data):
            raise InputError(f"{path} is not a sweep results.json (or a report results.json)")
        rows.extend(data)
    return rows


def baselines_handler(args: argparse.Namespace) -> int:
    import warnings

    from mnistcodec.data import load_split
    from mnistcodec.experiments.baselines import CODECS, points_to_rows, run_baselines
    from mnistcodec.experiments.sweep import compare_curves, format_bd_table, rd_curve, rows_to_csv
    from mnistcodec.lab import figures
    from mnistcodec.storage.atomic import atomic_write_text

    learned = _learned_rows(args.learned or [])
    images = load_split("test", args.dataset, args.data_dir).images[: args.n]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    skipped: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        points = run_baselines(images, codecs=args.codecs, progress=not args.quiet, modes=args.modes,
                               workers=args.workers, skipped=skipped)
    rows = points_to_rows(points)
    atomic_write_text(out / "baselines.csv", rows_to_csv(rows))
    atomic_write_text(out / "baselines.json", json.dumps({"n": int(images.shape[0]), "rows": rows,
                                                         "skipped": skipped}, indent=2))
    print(f"{'codec':<18}{'quality':>9}  {'mode':<9}{'bits/digit':>11}{'PSNR dB':>9}{'MAD':>8}")
    for r in rows:
        print(f"{r['label']:<18}{r['quality']!s:>9}  {r['mode']:<9}{r['bits_per_digit']:>11.1f}"
              f"{r['psnr_db']:>9.2f}{r['mad']:>8.4f}")
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")

    curves: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if not r["lossless"]:
            curves.setdefault((r["label"], r["mode"]), []).append(r)
    classical = [(f"{label} ({mode})", *rd_curve(pts, "bits_per_digit")) for (label, mode), pts in curves.items()]
    bd: list[dict] = []
    for mode in args.modes:
        anchor = next((c for c in classical if c[0] == f"{CODECS['jpeg'].label} ({mode})"), None)
        if anchor is not None:
            bd += compare_curves(anchor, [c for c in classical if c[0].endswith(f"({mode})") and c is not anchor])
    learned_curves: dict[str, list[dict]] = {}
    for r in learned:
        learned_curves.setdefault(f"learned d={r['latent_dims']} {r['prior']}", []).append(r)
    for label, pts in learned_curves.items():
        if len({p["lmbda"] for p in pts}) > 1:
            test = (label, *rd_curve(pts, "string_bits"))
            for anchor in classical:
                bd += compare_curves(anchor, [test])
    atomic_write_text(out / "bd_rates.json", json.dumps(bd, indent=2))
    figures.plot_rd_curves(learned_curves, rows, out / "rd.png",
                           title=f"classical codecs on {images.shape[0]} test digits")
    if bd:
        print("BD-rates (PSNR as quality; negative = fewer bits than the anchor):")
        print(format_bd_table(bd))
    print(f"wrote {out / 'baselines.csv'}, {out / 'baselines.json'}, {out / 'bd_rates.json'}, {out / 'rd.png'}")
    return 0


def report_handler(args: argparse.Namespace) -> int:
    from mnistcodec.lab.report import build_report

    protocol = "full" if args.full else args.protocol
    result = build_report(args.out, protocol, force=args.force, progress=not args.quiet, dataset=args.dataset,
                          data_dir=args.data_dir, jobs=args.jobs)
    print(f"open {result.index.resolve().as_uri()}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from mnistcodec.experiments.baselines import CODECS, MODES

    p = subparsers.add_parser(
        "sweep", help="train and evaluate a grid of models (cached, resumable, parallel)",
        description="Train and evaluate every combination of --lmbda, --latent-dims, --prior and --seeds. "
        "Each trial is cached in OUT/trials/<hash of its configuration>/, so an interrupted sweep resumes "
        "and a repeated one is free. Writes OUT/results.{csv,json}, OUT/bd_rates.json and plots.",
    )
    p.add_argument("--lmbda", type=positive_float, nargs="+", default=[2000.0], metavar="L", help="lambdas (default 2000)")
    p.add_argument("--latent-dims", type=positive_int, nargs="+", default=[50], metavar="D", help="latent sizes (default 50)")
    p.add_argument("--prior", nargs="+", default=["logistic"], choices=sorted(PRIORS), help="prior families (default logistic)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="S", help="seeds (default 0)")
    p.add_argument("--arch", default="seed", choices=sorted(ARCHITECTURES), help="architecture (default seed)")
    p.add_argument("--distortion", default="mad", choices=DISTORTIONS, help="distortion term (default mad)")
    p.add_argument("--epochs", type=positive_int, default=5, help="epochs per trial (default 5)")
    p.add_argument("--batch-size", type=positive_int, default=128, help="batch size (default 128)")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--prior-lr", type=positive_float, default=None, metavar="LR",
                   help="learning rate of the prior's parameters (default: --lr)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N", help="train on the first N digits only")
    p.add_argument("--val-limit", type=positive_int, default=None, metavar="N", help="validate on the first N test digits")
    p.add_argument("--eval-limit", type=positive_int, default=None, metavar="N",
                   help="evaluate (with coding) on the first N test digits (default all)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--jobs", "-j", type=positive_int, default=1, help="parallel worker processes (default 1)")
    p.add_argument("--out", "-o", default="sweep", metavar="DIR", help="output directory (default sweep/)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    add_data_args(p)
    p.set_defaults(handler=sweep_handler)

    p = subparsers.add_parser(
        "baselines", help="classical codecs (JPEG, JPEG 2000, WebP, AVIF, JPEG XL, PNG) on test digits",
        description="Measure classical codecs on the first N test digits, per file and tiled; write "
        "OUT/baselines.{csv,json}, OUT/bd_rates.json and OUT/rd.png. BD-rates are given against JPEG, and "
        "for learned curves passed with --learned against every codec.",
    )
    p.add_argument("--n", type=positive_int, default=1000, help="number of test digits (default 1000)")
    p.add_argument("--codecs", nargs="+", default=None, choices=list(CODECS), metavar="CODEC",
                   help=f"codecs to run (default all available: {', '.join(CODECS)})")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES), help="per-file and/or tiled")
    p.add_argument("--workers", type=positive_int, default=None, help="threads for per-file coding")
    p.add_argument("--learned", nargs="+", default=None, metavar="JSON",
                   help="results.json of a sweep or report: add its learned curves and BD-rates")
    p.add_argument("--out", "-o", default="baselines", metavar="DIR", help="output directory (default baselines/)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_data_args(p)
    p.set_defaults(handler=baselines_handler)

    p = subparsers.add_parser(
        "report", help="the lab report: train, code, compare and plot; writes OUT/index.html",
        description="Answer every manipulation of the lab with numbers and figures computed by this run; "
        "write OUT/index.html (self-contained), OUT/results.json and OUT/figures/. --quick (default) takes "
        "about 10 minutes on 2 CPU cores; --full follows the lab's protocol (hours). Trials and classical-codec "
        "measurements are cached in OUT/cache/: re-running reuses them and rewrites the page and figures "
        "atomically (an existing report is always overwritten). --force recomputes the protocol's trials and "
        "measurements, and allows writing into a non-empty directory that is not a report.",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--quick", dest="protocol", action="store_const", const="quick",
                       help="short protocol, subsets and 2 epochs (default)")
    group.add_argument("--full", action="store_true", help="the lab's protocol: 5 epochs on all data")
    group.add_argument("--protocol", dest="protocol", choices=["micro", "quick", "full"],
                       help="protocol by name (micro: seconds, for smoke tests)")
    p.add_argument("--out", "-o", default="report", metavar="DIR", help="output directory (default report/)")
    p.add_argument("--force", action="store_true", help="recompute cached trials and measurements")
    p.add_argument("--jobs", "-j", type=positive_int, default=None,
                   help="worker processes for training (default: the protocol's, 2)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    add_data_args(p)
    p.set_defaults(handler=report_handler, protocol="quick", full=False)
