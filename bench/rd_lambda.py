"""One slope for the whole set: each digit at its level of least R + lambda D, for two models alike.

    python bench/rd_lambda.py [MODEL ...] [--digits 10000]

``compress --rd-lambda L`` codes each digit at the level of least string bits
+ L x distortion (:mod:`mnistcodec.coding.rate_control`). The gain it brings
belongs to the encoder, not to a model, so this script measures it on every
model named (default ``vr-mse`` and ``vr-mixture-long``), without the
search: every level of each model on the first ``--digits`` test digits, real
per-digit bit strings, float32 encoders, L at every level's lambda of the
model and at a few fractions of the lowest (each model's lambdas, in its own
distortion). Prints the BD-rates of each model's one-slope curve against its
plain levels and of the models against each other, and writes
``bench/results/rd_lambda.json`` and the section of BENCHMARKS.md between
``<!-- rd-lambda:start -->`` and ``<!-- rd-lambda:end -->``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmd import cpu_name, replace_section  # noqa: E402
from latent_search import _bits, lagrangian_curve  # noqa: E402
from mnistcodec.coding.api import Codec  # noqa: E402
from mnistcodec.coding.zoo import resolve_model  # noqa: E402
from mnistcodec.data import load_split  # noqa: E402
from mnistcodec.experiments.bdrate import bd_text, preset_bd_rates  # noqa: E402
from rd_limit import bits_at  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- rd-lambda:start -->", "<!-- rd-lambda:end -->"


def levels_curve(coded, codec: Codec, images: np.ndarray) -> list[dict]:
    """The plain curve: every digit at the same level."""
    from mnistcodec.experiments import metrics  # noqa: PLC0415

    return [
        {
            "level": level,
            "lmbda": float(codec.lambdas[level]),
            "n": int(images.shape[0]),
            "info_bits": float(coded.info_bits[level].mean()),
            "string_bits": float(coded.string_bits[level].mean()),
            "psnr_db": metrics.mean_psnr(images, coded.decoded[level]),
            "mad": metrics.mad(images, coded.decoded[level]),
        }
        for level in range(codec.levels)
    ]


def bd(anchor, test) -> dict:
    return {
        rate: {
            quality: entry["bd_rate_percent"]
            for quality, entry in preset_bd_rates(anchor, test, rate=rate).items()
        }
        for rate in ("string_bits", "info_bits")
    }


def markdown(result: dict) -> str:
    models = result["models"]
    lines = [
        START,
        "## One slope for the whole set (`--rd-lambda`)",
        "",
        f"Written by `python bench/rd_lambda.py {' '.join(models)}` (`bench/results/rd_lambda.json`): "
        f"each model on the first {result['digits']:,} test digits,",
        "every digit at the same level (plain) or at its level of least string bits + L x "
        "distortion (`--rd-lambda L`, each model's own",
        "distortion and lambdas; no search); real per-digit bit strings, float32 encoders. "
        f"{result['cpu']}.",
        "",
        "| model | levels | bits at 13.9 dB | at 16.3 dB | one slope: bits at 13.9 dB | at 16.3 dB "
        "| one slope vs its levels (PSNR, bit strings) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in models:
        m = result["per_model"][name]
        lines.append(
            f"| `{name}` | {len(m['plain'])} | {_bits(m['at_psnr']['plain']['13.9'])} "
            f"| {_bits(m['at_psnr']['plain']['16.3'])} | {_bits(m['at_psnr']['lagrangian']['13.9'])} "
            f"| {_bits(m['at_psnr']['lagrangian']['16.3'])} "
            f"| {bd_text(m['bd_lagrangian_vs_plain']['string_bits']['psnr'])} |"
        )
    if len(models) == 2:
        pair = result["pair"]
        lines += [
            "",
            f"`{models[1]}` against `{models[0]}` (bit strings, equal PSNR / equal MAD): "
            f"plain levels {bd_text(pair['plain']['string_bits']['psnr'])} / "
            f"{bd_text(pair['plain']['string_bits']['mad'])}; both with one slope "
            f"{bd_text(pair['lagrangian']['string_bits']['psnr'])} / "
            f"{bd_text(pair['lagrangian']['string_bits']['mad'])}.",
        ]
    lines.append(END)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from mnistcodec.coding.rate_control import all_levels  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["vr-mixture-long", "vr-mse"])
    parser.add_argument("--digits", type=int, default=10000)
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "rd_lambda.json"))
    parser.add_argument("--markdown", default=str(REPO / "BENCHMARKS.md"))
    args = parser.parse_args(argv)
    images = load_split("test").images[: args.digits]
    result: dict = {
        "models": args.models,
        "digits": int(images.shape[0]),
        "cpu": cpu_name(),
        "per_model": {},
    }
    for name in args.models:
        print(f"{name}:", flush=True)
        codec = Codec(resolve_model(name), precision="fp32")
        coded = all_levels(codec, images)
        plain = levels_curve(coded, codec, images)
        lagrangian = lagrangian_curve(codec, images, coded)
        result["per_model"][name] = {
            "plain": plain,
            "lagrangian": lagrangian,
            "bd_lagrangian_vs_plain": bd(("plain", plain), ("lagrangian", lagrangian)),
            "at_psnr": {
                key: {str(q): bits_at(curve, q) for q in (13.9, 16.3)}
                for key, curve in (("plain", plain), ("lagrangian", lagrangian))
            },
        }
        entry = result["per_model"][name]
        print(
            f"{name}: one slope vs its levels "
            f"{bd_text(entry['bd_lagrangian_vs_plain']['string_bits']['psnr'])} at equal PSNR",
            flush=True,
        )
    if len(args.models) == 2:
        a, b = (result["per_model"][m] for m in args.models)
        result["pair"] = {
            key: bd((args.models[0], a[key]), (args.models[1], b[key]))
            for key in ("plain", "lagrangian")
        }
        print(
            f"{args.models[1]} vs {args.models[0]}: plain "
            f"{bd_text(result['pair']['plain']['string_bits']['psnr'])}, one slope "
            f"{bd_text(result['pair']['lagrangian']['string_bits']['psnr'])} at equal PSNR"
        )
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    replace_section(Path(args.markdown), START, END, markdown(result))
    print(f"wrote {args.json} and {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
