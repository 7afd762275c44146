"""The floor under every rate-distortion curve of MNIST: codecs without a network, and R(D).

    python bench/rd_floor.py [--data-dir DIR] [--out bench/results/rd_floor.json]

Measures the two codecs of :mod:`mnistcodec.experiments.trivial_codecs` on
the 10,000 MNIST test digits, built from the 60,000 training digits and
labels: the mean training digit sent as nothing (0 bits) and the class-mean
codebook with the label entropy coded under the training label frequencies.
PSNR is the mean of per-digit PSNRs, pixels on [0, 1], the digits decoded as
``uint8`` like every codec. It also measures K-means pixel codebooks of 16 to
4,096 codewords (:mod:`mnistcodec.experiments.codebooks`: the index of the
nearest codeword, range coded into real bit strings under the training
frequencies), the reference the learned curves meet at low rates. Prints them with the quoted R(D) estimate
(:data:`mnistcodec.experiments.rd_limit.NERD_MNIST`) and the floor's line, and
writes everything to ``bench/results/rd_floor.json`` for README.md and
BENCHMARKS.md to quote.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mnistcodec.data import load_split
from mnistcodec.experiments.codebooks import DEFAULT_SIZES, ITERATIONS, measure_codebooks
from mnistcodec.experiments.rd_limit import NERD_MNIST
from mnistcodec.experiments.trivial_codecs import Floor, measure_trivial_codecs
from mnistcodec.storage.atomic import atomic_write_text

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="MNIST IDX files (default: the loader's)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "rd_floor.json"))
    parser.add_argument(
        "--codebooks",
        default=",".join(str(k) for k in DEFAULT_SIZES),
        help="codebook sizes, comma-separated (default %(default)s; empty: none)",
    )
    args = parser.parse_args()

    train, test = (
        load_split("train", data_dir=args.data_dir),
        load_split("test", data_dir=args.data_dir),
    )
    t0 = time.perf_counter()
    points = measure_trivial_codecs(train.images, train.labels, test.images, test.labels)
    seconds = time.perf_counter() - t0
    floor = Floor.from_points(points)
    sizes = [int(k) for k in args.codebooks.split(",") if k.strip()]
    codebooks = measure_codebooks(train.images, test.images, sizes, log=print)
    slope = (floor.class_psnr_db - floor.mean_psnr_db) / floor.class_bits
    lines = [
        f"codecs without a network on the {test.images.shape[0]:,} MNIST test digits "
        f"(built from {train.images.shape[0]:,} training digits; mean of per-digit PSNRs, decoded as uint8):",
        "",
        "| codec | bits per digit | PSNR (dB) | PSNR of mean MSE (dB) | MAD |",
        "| --- | --- | --- | --- | --- |",
        *[
            f"| {p.codec} | {p.bits_per_digit:.2f} | {p.psnr_db:.2f} | {p.psnr_of_mean_mse_db:.2f} | {p.mad:.4f} |"
            for p in points
        ],
        "",
        f"The floor: {floor.mean_psnr_db:.2f} dB at 0 bits, rising {slope:.3f} dB per bit to "
        f"{floor.class_psnr_db:.2f} dB at {floor.class_bits:.2f} bits, flat beyond; a point under it "
        "is worse than a codec without a network.",
        "",
        f"{NERD_MNIST.name} (quoted, {NERD_MNIST.citation}): "
        + ", ".join(f"{b:g} bits at {q:g} dB" for b, q in NERD_MNIST.points)
        + f"; {NERD_MNIST.data}, {NERD_MNIST.distortion}, block length {NERD_MNIST.block_length};"
        f" about {NERD_MNIST.resize_db:g} dB for the resize to 28x28; capped near {NERD_MNIST.max_bits:g} bits"
        f" (nothing above about {NERD_MNIST.max_psnr_db:g} dB); one digit at a time costs more"
        f" ({NERD_MNIST.one_shot_source}: +{NERD_MNIST.one_shot_extra_bits[0]:g} to"
        f" +{NERD_MNIST.one_shot_extra_bits[1]:g} bits).",
        "",
        f"K-means pixel codebooks ({ITERATIONS} Lloyd steps on the training digits; the index of the"
        " nearest codeword range coded under the training frequencies):",
        "",
        "| codewords | information bits | bit-string bits | PSNR (dB) | PSNR of mean MSE (dB) | MAD | training (s) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *[
            f"| {c.codewords:,} | {c.info_bits:.2f} | {c.string_bits:.2f} | {c.psnr_db:.2f} "
            f"| {c.psnr_of_mean_mse_db:.2f} | {c.mad:.4f} | {c.train_seconds:.1f} |"
            for c in codebooks
        ],
    ]
    print("\n".join(lines))
    result = {
        "command": "python bench/rd_floor.py",
        "test_digits": int(test.images.shape[0]),
        "train_digits": int(train.images.shape[0]),
        "seconds": round(seconds, 2),
        "trivial_codecs": [p.row() for p in points],
        "codebooks": [c.row() for c in codebooks],
        "floor": {
            "mean_psnr_db": floor.mean_psnr_db,
            "class_bits": floor.class_bits,
            "class_psnr_db": floor.class_psnr_db,
            "db_per_bit": slope,
        },
        "rd_estimate": NERD_MNIST.as_dict(),
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
