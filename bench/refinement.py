"""What encoder-side latent refinement buys: every level with and without ``--refine``.

    python bench/refinement.py MODEL [--digits 1000] [--steps 100]

On the first ``--digits`` MNIST test digits, codes every level of a
variable-rate model twice, with the analysis transform's latents and with
``--steps`` steps of refinement (:mod:`mnistcodec.coding.refinement`), and
measures real per-digit bit strings, the information content the codec
reports, and the PSNR and MAD of the decoded digits. Prints the BD-rate of
the refined curve against the plain one (pchip, equal PSNR and equal MAD) and
the bits each needs at 13.9 and 16.3 dB, writes
``bench/results/refinement.json`` and the section of BENCHMARKS.md between
``<!-- refine:start -->`` and ``<!-- refine:end -->``. Refinement costs about
``steps`` forward and backward passes of the synthesis per digit.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmd import cpu_name, write_outputs  # noqa: E402
from mnistcodec.coding.api import Codec  # noqa: E402
from mnistcodec.coding.container import string_bits  # noqa: E402
from mnistcodec.coding.zoo import resolve_model  # noqa: E402
from mnistcodec.data import load_split  # noqa: E402
from mnistcodec.experiments import metrics  # noqa: E402
from mnistcodec.experiments.bdrate import bd_text, preset_bd_rates  # noqa: E402
from rd_limit import bits_at  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- refine:start -->", "<!-- refine:end -->"


def curve(codec: Codec, images: np.ndarray) -> list[dict]:
    points = []
    for level in range(codec.levels):
        t0 = time.perf_counter()
        strings, info = codec.compress(images, level)
        seconds = time.perf_counter() - t0
        decoded = codec.decompress(strings, levels=level)
        points.append(
            {
                "level": level,
                "lmbda": codec.lambdas[level],
                "n": int(images.shape[0]),
                "info_bits": float(info.mean()),
                "string_bits": float(np.mean([string_bits(s) for s in strings])),
                "psnr_db": metrics.mean_psnr(images, decoded),
                "mad": metrics.mad(images, decoded),
                "seconds": seconds,
            }
        )
        print(
            f"  level {level:2d}: {points[-1]['string_bits']:6.2f} bits "
            f"{points[-1]['psnr_db']:6.2f} dB ({seconds:.1f} s)",
            flush=True,
        )
    return points


def bd_by_rate(anchor: tuple[str, list[dict]], test: tuple[str, list[dict]]) -> dict:
    """BD-rates (%) of ``test`` against ``anchor``, by rate (bit strings, information) and quality."""
    return {
        rate: {
            quality: entry["bd_rate_percent"]
            for quality, entry in preset_bd_rates(anchor, test, rate=rate).items()
        }
        for rate in ("string_bits", "info_bits")
    }


def markdown(result: dict) -> str:
    plain, refined = result["plain"], result["refined"]
    lines = [
        START,
        "## Encoder-side latent refinement",
        "",
        f"Written by `python bench/refinement.py {result['model']} --digits {result['digits']} "
        f"--steps {result['steps']}` (`bench/results/refinement.json`): every level of "
        f"`{result['model']}` on the first {result['digits']:,} test digits, coded with the analysis",
        f"transform's latents and with {result['steps']} steps of refinement (`compress --refine "
        f"{result['steps']}`); real per-digit bit strings, decoded digits. {result['cpu']}.",
        "",
        f"BD-rate of the refined curve against the plain one: "
        f"**{bd_text(result['bd']['string_bits']['psnr'])}** at equal PSNR, "
        f"{bd_text(result['bd']['string_bits']['mad'])} at equal MAD (bit strings); "
        f"{bd_text(result['bd']['info_bits']['psnr'])} at equal PSNR on the information content.",
        f"Against `{result['against']}` (plain, the same digits): "
        f"**{bd_text(result['bd_against']['string_bits']['psnr'])}** at equal PSNR, "
        f"{bd_text(result['bd_against']['string_bits']['mad'])} at equal MAD (bit strings); "
        f"{bd_text(result['bd_against']['info_bits']['psnr'])} at equal PSNR on the information content.",
        "",
        "| information bits on these digits | at 13.9 dB | at 16.3 dB |",
        "| --- | --- | --- |",
        *(
            f"| {label} | {result['at_psnr'][key]['13.9']:.2f} | {result['at_psnr'][key]['16.3']:.2f} |"
            for key, label in (
                ("against_plain", f"`{result['against']}`"),
                ("plain", f"`{result['model']}`"),
                ("refined", f"`{result['model']}`, refined"),
            )
        ),
        f"Time: {result['seconds_per_digit_refined'] * 1e3:.1f} ms per digit and level refined, "
        f"against {result['seconds_per_digit_plain'] * 1e3:.2f} ms plain.",
        "",
        "| level | plain bits | plain PSNR | refined bits | refined PSNR |",
        "| --- | --- | --- | --- | --- |",
    ]
    for p, r in zip(plain, refined, strict=True):
        lines.append(
            f"| {p['level']} | {p['string_bits']:.2f} | {p['psnr_db']:.2f} | "
            f"{r['string_bits']:.2f} | {r['psnr_db']:.2f} |"
        )
    lines.append(END)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="vr-mse")
    parser.add_argument("--digits", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument(
        "--against",
        default="vr-mixture-long",
        help="a model whose plain curve on the same digits "
        "the refined one is compared with (default vr-mixture-long)",
    )
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "refinement.json"))
    parser.add_argument("--markdown", default=str(REPO / "BENCHMARKS.md"))
    args = parser.parse_args(argv)
    images = load_split("test").images[: args.digits]
    loaded = resolve_model(args.model)
    result: dict = {
        "model": args.model,
        "digits": args.digits,
        "steps": args.steps,
        "against": args.against,
    }
    cpu = cpu_name()
    result["cpu"] = cpu
    for name, steps in (("plain", 0), ("refined", args.steps)):
        print(f"{name}:", flush=True)
        result[name] = curve(Codec(loaded, precision="fp32", refine_steps=steps), images)
        seconds = sum(p["seconds"] for p in result[name]) / (len(result[name]) * args.digits)
        result[f"seconds_per_digit_{name}"] = seconds
    print(f"{args.against}, plain:", flush=True)
    result["against_plain"] = curve(Codec(resolve_model(args.against), precision="fp32"), images)
    result["bd_against"] = bd_by_rate(
        (args.against, result["against_plain"]), ("refined", result["refined"])
    )
    result["bd"] = bd_by_rate(("plain", result["plain"]), ("refined", result["refined"]))
    result["at_psnr"] = {
        name: {str(q): bits_at(result[name], q) for q in (13.9, 16.3)}
        for name in ("plain", "refined", "against_plain")
    }
    print(
        f"refined vs plain: {bd_text(result['bd']['string_bits']['psnr'])} at equal PSNR, "
        f"{bd_text(result['bd']['string_bits']['mad'])} at equal MAD (bit strings)"
    )
    write_outputs(result, args.json, args.markdown, START, END, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
