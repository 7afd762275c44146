"""Every inference engine against float32: encoders' rate and PSNR, decoders' pixels, speed.

    python bench/engines.py [--models vr-codebook,seed-lmbda2000] [--rounds 5]

For each model and each engine this machine offers
(:func:`mnistcodec.coding.engine.available_engines`, ``torch-bf16`` aside),
on all 10,000 MNIST test digits:

* at the lowest network level, the default level and the highest level (one
  level for a fixed-rate model), the latents quantised at that level: the
  share of integer latents that differ from ``torch`` (float32)'s, the mean
  information content and the mean PSNR of the float32 decoder's digits, as
  differences from float32's;
* the analysis' speed (``Codec.latents`` of the 10,000 digits), the engines
  alternating round by round, medians, as digits per second and as a ratio
  to ``torch-bf16-native`` where this CPU has it (else to ``torch``);
* as a decoder (encoder-only engines aside), on float32's latents at the
  default level: the share of pixels within 1 grey level of float32's (the
  conformance rule asks 99 %), the largest difference, the PSNR change, and
  the synthesis' speed, alternating likewise.

Prints the tables and writes ``bench/results/engines.json`` and the
section of BENCHMARKS.md between ``<!-- engines:start -->`` and
``<!-- engines:end -->``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmd import machine_stamp, write_outputs  # noqa: E402
from mnistcodec.coding import engine as E  # noqa: E402
from mnistcodec.coding.api import Codec  # noqa: E402
from mnistcodec.coding.calibration import ENGINE_ENV  # noqa: E402
from mnistcodec.coding.zoo import DEFAULT_MODEL  # noqa: E402
from mnistcodec.data import load_split  # noqa: E402
from mnistcodec.experiments.metrics import mean_psnr  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- engines:start -->", "<!-- engines:end -->"


def encoder_codec(name: str, engine: str) -> Codec:
    os.environ[ENGINE_ENV] = engine
    try:
        return Codec.from_model(name)
    finally:
        del os.environ[ENGINE_ENV]


def levels_of(codec: Codec) -> list[int]:
    network = codec.loaded.network_levels
    return sorted({network[0], codec.default_level, network[-1]})


def accuracy(reference: Codec, codec: Codec, digits: np.ndarray) -> list[dict]:
    rows = []
    for level in levels_of(reference):
        k_ref, info_ref = reference.quantise(reference.latents(digits), np.full(len(digits), level))
        k, info = reference.quantise(codec.latents(digits), np.full(len(digits), level))
        psnr_ref = mean_psnr(digits, reference.synthesise(k_ref, level))
        psnr = mean_psnr(digits, reference.synthesise(k, level))
        rows.append(
            {
                "level": level,
                "latents_changed": float(np.mean(k != k_ref)),
                "information_change": float(info.mean() / info_ref.mean() - 1),
                "psnr_change_db": float(psnr - psnr_ref),
            }
        )
    return rows


def alternating(runs: dict, rounds: int, count: int) -> dict[str, float]:
    """Items per second of each run, the runs alternating round by round, medians."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run()  # warm-up: int8 ranges, folded levels, ONNX sessions
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: count / statistics.median(t) for name, t in times.items()}


def decoders(
    name: str, reference: Codec, codecs: dict[str, Codec], digits, rounds: int
) -> list[dict]:
    """Each decoder engine on float32's latents at the default level, against float32."""
    k, _ = reference.analyse(digits)
    pixels = reference.synthesise(k).astype(int)
    psnr_ref = mean_psnr(digits, pixels.astype(np.uint8))
    engines = [engine for engine in codecs if engine not in E.ENCODER_ONLY]
    runs = {engine: lambda c=codecs[engine]: c.synthesise(k) for engine in engines}
    speed = alternating(runs, rounds, len(k))
    rows = []
    for engine in engines:
        decoded = codecs[engine].synthesise(k)
        error = np.abs(decoded.astype(int) - pixels)
        rows.append(
            {
                "model": name,
                "engine": engine,
                "digits_per_s": speed[engine],
                "within_1": float(np.mean(error <= 1)),
                "max_difference": int(error.max()),
                "psnr_change_db": float(mean_psnr(digits, decoded) - psnr_ref),
            }
        )
    return rows


def measure(models: list[str], rounds: int) -> dict:
    digits = load_split("test").images
    engines = [name for name in E.available_engines() if name != "torch-bf16"]
    base = "torch-bf16-native" if "torch-bf16-native" in engines else E.REFERENCE
    results, decoded = [], []
    for name in models:
        reference = Codec.from_model(name, precision="fp32")
        codecs = {engine: encoder_codec(name, engine) for engine in engines}
        runs = {
            engine: lambda c=codec: c.latents(digits)
            for engine, codec in codecs.items()
            if engine not in E.DECODER_MEASURED_ONLY
        }
        speed = alternating(runs, rounds, len(digits))
        for engine, codec in codecs.items():
            if engine in E.DECODER_MEASURED_ONLY:  # its encoder is another engine's
                continue
            print(f"{name}: {engine}", file=sys.stderr, flush=True)
            results.append(
                {
                    "model": name,
                    "engine": engine,
                    "digits_per_s": speed[engine],
                    "ratio": speed[engine] / speed[base],
                    "levels": accuracy(reference, codec, digits),
                }
            )
        decoded.extend(decoders(name, reference, codecs, digits, rounds))
    return {
        "digits": len(digits),
        "rounds": rounds,
        "ratio_to": base,
        "rows": results,
        "decoders": decoded,
    }


def table(result: dict) -> str:
    lines = [
        f"| model | engine | analysis (digits/s) | ratio to {result['ratio_to']} | level "
        "| latents changed | information | PSNR |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in result["rows"]:
        for i, level in enumerate(row["levels"]):
            head = (
                f"| `{row['model']}` | {row['engine']} | {row['digits_per_s']:,.0f} "
                f"| {row['ratio']:.2f}x"
                if i == 0
                else "| | | |"
            )
            lines.append(
                f"{head} | {level['level']} | {100 * level['latents_changed']:.2f} % "
                f"| {100 * level['information_change']:+.3f} % "
                f"| {level['psnr_change_db']:+.4f} dB |"
            )
    lines += [
        "",
        "| model | decoder | synthesis (digits/s) | pixels within 1 grey level | largest "
        "difference | PSNR |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in result["decoders"]:
        lines.append(
            f"| `{row['model']}` | {row['engine']} | {row['digits_per_s']:,.0f} "
            f"| {100 * row['within_1']:.3f} % | {row['max_difference']} "
            f"| {row['psnr_change_db']:+.4f} dB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=f"{DEFAULT_MODEL},seed-lmbda2000")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--no-write", action="store_true", help="print only")
    args = p.parse_args(argv)
    result = {
        **measure(args.models.split(","), args.rounds),
        **machine_stamp(),
    }
    text = table(result)
    print(text)
    if not args.no_write:
        section = (
            f"{START}\n## Inference engines against float32\n\n"
            f"`python bench/engines.py` on {result['cpu']} "
            f"({', '.join(result['cpu_flags'])}), all {result['digits']:,} test digits; "
            "encoders' changes are against the `torch` (float32) encoder, decoded by float32; "
            "decoders decode float32's latents at the default level; speeds "
            f"are `Codec.latents` and `Codec.synthesise`, the engines alternating, median of {result['rounds']} "
            f"rounds ({result['when']}).\n\n{text}\n{END}\n"
        )
        json_path = REPO / "bench" / "results" / "engines.json"
        write_outputs(result, json_path, REPO / "BENCHMARKS.md", START, END, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
