#!/usr/bin/env python3
"""What the default model's coding costs against the seed model's, stage by stage.

    python bench/mixture_cost.py [--digits 10000] [--rounds 3] [--precision auto]

Both shipped models code the same test digits in one process, the models
alternating round by round so that both see the same load. Per model, the
whole ``Codec.compress`` / ``decompress`` (digits per second) and each stage
in microseconds per digit:

* ``analysis``: the analysis transform (the codec's engine);
* ``quantise``: rounding at the reference level and the information content
  (for the mixture, the float ``-log2`` of the cheapest of its components);
* ``choose``: the mixture's component search (the integer search of
  :mod:`mnistcodec.coding.mixture_coder`), and ``choose_float64``: the float64
  search it replaces (the same answers; the run checks it);
* ``encode_strings`` / ``decode_strings``: the range coder, per-digit strings
  (decoding includes the canonical-string check);
* ``synthesis``: the synthesis transform (the engine).

It writes ``bench/results/mixture_cost.json`` and the section of
``BENCHMARKS.md`` between ``<!-- mixture-cost:start -->`` and
``<!-- mixture-cost:end -->``, with the CPU, its flags, the engines and the load.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from mnistcodec.coding.api import Codec
from mnistcodec.coding.calibration import CALIBRATION_MIN_DIGITS, machine_record
from mnistcodec.coding.mixture_coder import MixtureCoder
from mnistcodec.coding.zoo import DEFAULT_MODEL
from mnistcodec.data import load_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmd import replace_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- mixture-cost:start -->", "<!-- mixture-cost:end -->"
SEED = "seed-lmbda2000"
STAGES = (
    "analysis",
    "quantise",
    "choose",
    "choose_float64",
    "encode_strings",
    "decode_strings",
    "synthesis",
)


def timed(record: dict, key: str, fn):
    start = time.perf_counter()
    out = fn()
    record.setdefault(key, []).append(time.perf_counter() - start)
    return out


def one_round(codec: Codec, images: np.ndarray, record: dict) -> None:
    """Every stage once, then the whole compress and decompress."""
    n = images.shape[0]
    levels = codec.digit_levels(None, n)
    coder = codec.coder
    y = timed(record, "analysis", lambda: codec.latents(images))
    k, _ = timed(record, "quantise", lambda: codec.quantise(y, levels))
    if isinstance(coder, MixtureCoder):
        chosen = timed(record, "choose", lambda: coder.choose(k))
        slow = timed(record, "choose_float64", lambda: np.argmin(coder.exact_bits(k), axis=1))
        if not np.array_equal(chosen, slow):
            raise RuntimeError("the integer and float64 searches disagree")
    symbols = coder.to_symbols(k)
    strings = timed(record, "encode_strings", lambda: coder.encode_strings(symbols))
    decoded = timed(record, "decode_strings", lambda: coder.decode_strings(strings))
    k_hat = coder.from_symbols(decoded)
    timed(record, "synthesis", lambda: codec.synthesise(k_hat, levels))
    strings, _ = timed(record, "compress", lambda: codec.compress(images))
    timed(record, "decompress", lambda: codec.decompress(strings))


def measure(args: argparse.Namespace) -> dict:
    images = load_split("test").images[: args.digits]
    n = int(images.shape[0])
    codecs = {name: Codec.from_model(name, precision=args.precision) for name in (SEED, args.model)}
    for codec in codecs.values():  # warm-up, and the engine calibration where not yet cached
        codec.decompress(codec.compress(images[: max(256, CALIBRATION_MIN_DIGITS)])[0])
    raw: dict[str, dict] = {name: {} for name in codecs}
    load_start = os.getloadavg()
    for _ in range(args.rounds):
        for name, codec in codecs.items():
            one_round(codec, images, raw[name])
    out = {}
    for name, record in raw.items():
        stages = {key: 1e6 * statistics.median(record[key]) / n for key in STAGES if key in record}
        out[name] = {
            "encode_digits_per_s": n / statistics.median(record["compress"]),
            "decode_digits_per_s": n / statistics.median(record["decompress"]),
            "stage_us_per_digit": stages,
            "engine": codecs[name].engine.describe(),
            "raw_seconds": record,
        }
    return {
        "command": " ".join(["python", "bench/mixture_cost.py", *args.argv]),
        "when": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_record(),
        "digits": n,
        "rounds": args.rounds,
        "precision": args.precision,
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "models": out,
    }


def markdown(result: dict) -> str:
    seed, mix = result["models"][SEED], result["models"][result["model"]]
    m = result["machine"]

    def engine(record: dict) -> str:
        e = record["engine"]["engine"]
        return e if isinstance(e, str) else f"{e['encoder']} / {e['decoder']}"

    lines = [
        START,
        "## The default model's coding against the seed model's",
        "",
        f"Written by `{result['command']}`, {result['when']}: {result['digits']:,} test digits"
        f" in one call, {result['rounds']} rounds, the models alternating; medians. CPU"
        f" {m['cpu']} (flags {', '.join(m['cpu_flags'])}), {m['threads']} threads, torch"
        f" {m['torch']}, onnxruntime {m['onnxruntime']}; precision `{result['precision']}`"
        f" (engines, encoder / decoder: {SEED} {engine(seed)}, {result['model']} {engine(mix)});"
        f" load average {result['load_average_start'][0]:.1f} at the start and"
        f" {result['load_average_end'][0]:.1f} at the end on {os.cpu_count()} cores.",
        "",
        f"| stage (us per digit) | {SEED} | {result['model']} | ratio |",
        "| --- | --- | --- | --- |",
    ]
    for key in STAGES:
        a, b = seed["stage_us_per_digit"].get(key), mix["stage_us_per_digit"].get(key)
        cell = "-" if a is None else f"{a:.1f}"
        ratio = "-" if a is None or b is None else f"{b / a:.2f}x"
        lines.append(f"| {key} | {cell} | {'-' if b is None else f'{b:.1f}'} | {ratio} |")
    for key, label in (("encode_digits_per_s", "encode"), ("decode_digits_per_s", "decode")):
        a, b = seed[key], mix[key]
        lines.append(f"| **{label}, digits/s** | {a:,.0f} | {b:,.0f} | {b / a:.2f}x |")
    lines += [
        "",
        "`choose` is the integer component search now used; `choose_float64` the float64 search"
        " it replaced, timed on the same latents (the run checks that both choose the same"
        " components). Raw figures: `bench/results/mixture_cost.json`.",
        END,
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", default=DEFAULT_MODEL, help="the mixture model (default: the default)"
    )
    p.add_argument("--digits", type=int, default=10000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--json", default=str(REPO / "bench" / "results" / "mixture_cost.json"))
    p.add_argument("--markdown", default=str(REPO / "BENCHMARKS.md"))
    p.add_argument("--no-write", action="store_true", help="print only")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    result = measure(args)
    result["model"] = args.model
    section = markdown(result)
    print(section)
    if not args.no_write:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
        replace_section(Path(args.markdown), START, END, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
