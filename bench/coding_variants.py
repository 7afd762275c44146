"""What each speed choice is worth: the default model's coding, with and without it, side by side.

    python bench/coding_variants.py [--rounds 4] [--model NAME] [--digits 10000]

Runs ``bench/run.py``'s coding worker (``Codec.compress`` into per-digit
strings and ``Codec.decompress`` of the first ``--digits`` MNIST test digits,
3 repeats per process, default threads) once per variant and round, the
variants alternating, each in a fresh process:

* ``auto``: what a user gets (the calibrated engines, the batch memory policy);
* ``bf16 engines``: ``MNISTCODEC_ENGINE=torch-bf16-native`` (the engines
  ``auto`` chose on AVX512-BF16 before the int8 encoder and the full bf16
  decoder);
* ``bf16-native decoder``: ``MNISTCODEC_ENGINE=torch-int8,torch-bf16-native``
  (the int8 encoder; the decoder with only its 500->2450 layer in bf16);
* ``no memory policy``: ``MNISTCODEC_MALLOC=system`` (glibc's defaults;
  :mod:`mnistcodec.coding.memory`).

Prints each variant's median digits per second and its ratio to ``auto``,
with the engines it ran, and writes ``bench/results/coding_variants.json``
and the section of BENCHMARKS.md between ``<!-- coding-variants:start -->``
and ``<!-- coding-variants:end -->``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmd import machine_stamp, write_outputs  # noqa: E402
from mnistcodec.coding.zoo import DEFAULT_MODEL  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- coding-variants:start -->", "<!-- coding-variants:end -->"
VARIANTS = {
    "auto": {},
    "bf16 engines": {"MNISTCODEC_ENGINE": "torch-bf16-native"},
    "bf16-native decoder": {"MNISTCODEC_ENGINE": "torch-int8,torch-bf16-native"},
    "no memory policy": {"MNISTCODEC_MALLOC": "system"},
}


def run_variant(spec: Path, out: Path, extra: dict) -> dict:
    env = {**os.environ, **extra, "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, str(REPO / "bench" / "run.py"), "--worker", "code", str(spec), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the coding worker failed ({extra}):\n{proc.stderr[-2000:]}")
    return json.loads(out.read_text())


def measure(model: str, digits: int, rounds: int) -> dict:
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(
            json.dumps({"model": model, "limit": digits, "repeats": 3, "latency_calls": 2})
        )
        for r in range(rounds):
            for name, extra in VARIANTS.items():
                print(f"round {r + 1}/{rounds}: {name}", file=sys.stderr, flush=True)
                runs[name].append(run_variant(spec, Path(tmp) / "out.json", extra))
    rows = []
    for name, records in runs.items():
        encode = [v for rec in records for v in rec["encode_digits_per_s"]]
        decode = [v for rec in records for v in rec["decode_digits_per_s"]]
        rows.append(
            {
                "variant": name,
                "env": VARIANTS[name],
                "engine": records[0]["engine"],
                "encode_digits_per_s": statistics.median(encode),
                "decode_digits_per_s": statistics.median(decode),
                "string_bits_mean": statistics.median(r["string_bits_mean"] for r in records),
                "psnr_db": statistics.median(r["psnr_mean_of_per_digit_db"] for r in records),
            }
        )
    return {"model": model, "digits": digits, "rounds": rounds, "rows": rows}


def table(result: dict) -> str:
    base = result["rows"][0]
    lines = [
        "| variant | encoder, decoder | encode (digits/s) | ratio | decode (digits/s) | ratio "
        "| bits per string | PSNR (dB) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in result["rows"]:
        engine = row["engine"]
        lines.append(
            f"| {row['variant']} | {engine['encoder']}, {engine['decoder']} "
            f"| {row['encode_digits_per_s']:,.0f} "
            f"| {row['encode_digits_per_s'] / base['encode_digits_per_s']:.2f}x "
            f"| {row['decode_digits_per_s']:,.0f} "
            f"| {row['decode_digits_per_s'] / base['decode_digits_per_s']:.2f}x "
            f"| {row['string_bits_mean']:.2f} | {row['psnr_db']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--digits", type=int, default=10_000)
    p.add_argument("--no-write", action="store_true", help="print only")
    args = p.parse_args(argv)
    result = {
        **measure(args.model, args.digits, args.rounds),
        **machine_stamp(),
    }
    text = table(result)
    print(text)
    if not args.no_write:
        section = (
            f"{START}\n## What each speed choice is worth: the default model's coding\n\n"
            f"`python bench/coding_variants.py` on {result['cpu']} "
            f"({', '.join(result['cpu_flags'])}), `{result['model']}`, the first "
            f"{result['digits']:,} test digits, per-digit strings, default threads; each variant "
            f"in a fresh process, {result['rounds']} alternating rounds of 3 repeats, medians "
            f"({result['when']}).\n\n{text}\n{END}\n"
        )
        json_path = REPO / "bench" / "results" / "coding_variants.json"
        write_outputs(result, json_path, REPO / "BENCHMARKS.md", START, END, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
