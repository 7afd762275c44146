"""Encode and decode time of the default model at each of its levels, codebook and network.

    python bench/level_speed.py [--rounds 5] [--digits 10000]

``Codec.compress`` (per-digit strings) and ``Codec.decompress`` of the first
``--digits`` MNIST test digits at every level, in one process, the default
engine (``auto``); each figure is the median of ``--rounds`` rounds, level
after level after a warm-up call (the bf16 decoder keeps the last few levels
folded into its weights, so a level's steady speed is what is measured). At a codebook level (:mod:`mnistcodec.coding.codebook_levels`) encoding
is the exact nearest-codeword search and decoding a table lookup; at a network
level both run a transform. Prints the table, writes
``bench/results/level_speed.json`` and the section of BENCHMARKS.md between
``<!-- level-speed:start -->`` and ``<!-- level-speed:end -->``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmd import cpu_name, write_outputs  # noqa: E402
from mnistcodec.coding.api import Codec  # noqa: E402
from mnistcodec.coding.zoo import DEFAULT_MODEL  # noqa: E402
from mnistcodec.data import load_split  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- level-speed:start -->", "<!-- level-speed:end -->"


def measure(codec: Codec, digits, rounds: int) -> list[dict]:
    """Median microseconds per digit to encode and to decode, per level."""
    codec.decompress(codec.compress(digits[:256])[0])  # engine calibration, caches
    times: dict[int, dict[str, list[float]]] = {
        level: {"encode": [], "decode": []} for level in range(codec.levels)
    }
    for level in range(codec.levels):  # level by level: the decoder keeps a few levels folded
        codec.decompress(codec.compress(digits[:256], level)[0], levels=level)
        for _ in range(rounds):
            start = time.perf_counter()
            strings, _ = codec.compress(digits, level)
            middle = time.perf_counter()
            codec.decompress(strings, levels=level)
            end = time.perf_counter()
            times[level]["encode"].append(middle - start)
            times[level]["decode"].append(end - middle)
    return [
        {
            "level": level,
            "codebook": level in codec.loaded.codebooks,
            "codewords": codec.loaded.codebooks[level].size
            if level in codec.loaded.codebooks
            else None,
            **{
                f"{kind}_us": 1e6 * statistics.median(values) / digits.shape[0]
                for kind, values in times[level].items()
            },
        }
        for level in range(codec.levels)
    ]


def _engine(codec: Codec) -> str:
    """The engines the codec ran, ``encoder / decoder`` (the choice of ``auto``)."""
    choice = getattr(codec.engine, "choice", None)
    return f"{choice.encoder} / {choice.decoder}" if choice is not None else "torch"


def markdown(result: dict) -> str:
    lines = [
        START,
        f"Per digit, median of {result['rounds']} rounds over {result['digits']:,} test digits, "
        f"`{result['model']}` with the `{result['engine']}` engines, {result['cpu']} "
        "(`python bench/level_speed.py`):",
        "",
        "| level | kind | encode (µs) | decode (µs) |",
        "| --- | --- | --- | --- |",
    ]
    for row in result["levels"]:
        kind = f"codebook, {row['codewords']:,} codewords" if row["codebook"] else "network"
        lines.append(
            f"| {row['level']} | {kind} | {row['encode_us']:.1f} | {row['decode_us']:.1f} |"
        )
    lines.append(END)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--digits", type=int, default=10_000)
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "level_speed.json"))
    parser.add_argument("--markdown", default=str(REPO / "BENCHMARKS.md"))
    args = parser.parse_args(argv)
    codec = Codec.from_model(args.model)
    digits = load_split("test").images[: args.digits]
    levels = measure(codec, digits, args.rounds)
    result = {
        "model": args.model,
        "engine": _engine(codec),
        "cpu": cpu_name(),
        "rounds": args.rounds,
        "digits": int(digits.shape[0]),
        "levels": levels,
    }
    for row in levels:
        print(
            f"level {row['level']:2d}: encode {row['encode_us']:6.1f} us, decode {row['decode_us']:6.1f} us"
        )
    write_outputs(result, args.json, args.markdown, START, END, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
