"""Coding round trip on a dataset split: exactness, overhead and speed, both modes.

    .venv/bin/python bench/coding_roundtrip.py runs/seed5.safetensors [--n 10000] [--json OUT]

Measures, on the first N digits of the split (default: all 10,000 test digits):

* exact round trip: the latents decoded from the file equal the quantised
  latents of every digit, and the decoded digits equal the model's own
  reconstructions of the quantised latents (``Codec.reconstruct``);
* per-digit mode: mean string bits minus mean information content
  (acceptance: <= 2.6 bits per digit, the seed's overhead);
* stream mode: stream bits over the information content (acceptance:
  <= 0.5 %);
* whole-file bits per digit (header, lengths and CRCs included);
* encode and decode speed of whole files, digits per second, both modes
  (file calls: analysis + coding, decoding + synthesis, decode check on);
* unless ``--no-threads-check``: the per-digit file decoded in two separate
  processes with 1 and 2 torch threads gives byte-identical digits, equal to
  this process's.

Timings are single runs on a shared machine: compare them only with figures
from the same run.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mnistcodec.coding.api import Codec
from mnistcodec.coding.files import (
    DEFAULT_BLOCK_SIZE,
    compress_to_bytes,
    decode_latents_bytes,
    decompress_bytes,
)
from mnistcodec.coding.zoo import resolve_model
from mnistcodec.data import load_split
from mnistcodec.storage.atomic import atomic_write_text

PER_DIGIT_LIMIT_BITS = 2.6
STREAM_LIMIT_PERCENT = 0.5

DECODE_SCRIPT = """
import sys, torch
torch.set_num_threads(int(sys.argv[1]))
from mnistcodec.coding.api import Codec
from mnistcodec.coding.files import decompress_file
from mnistcodec.coding.zoo import resolve_model
images = decompress_file(Codec(resolve_model(sys.argv[2])), sys.argv[3])
open(sys.argv[4], "wb").write(images.tobytes())
"""


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def measure_mode(
    codec: Codec, images, k, info, reference, mode: str, block_size: int
) -> tuple[dict, bytes]:
    n = images.shape[0]
    result, encode_s = timed(compress_to_bytes, codec, images, mode=mode, block_size=block_size)
    decoded, decode_s = timed(decompress_bytes, codec, result.data)
    latents = decode_latents_bytes(codec, result.data)
    mean_info = float(info.mean())
    figures = {
        "latents_exact": bool(np.array_equal(latents, k)),
        "images_equal_reconstructions": bool(np.array_equal(decoded, reference)),
        "payload_bits_per_digit": result.payload_bits_per_digit,
        "file_bits_per_digit": result.file_bits_per_digit,
        "file_bytes": len(result.data),
        "overhead_bits": result.payload_bits_per_digit - mean_info,
        "overhead_percent": 100 * (result.payload_bits_per_digit / mean_info - 1),
        "encode_digits_per_s": n / encode_s,
        "decode_digits_per_s": n / decode_s,
        "encode_s": encode_s,
        "decode_s": decode_s,
    }
    return figures, result.data


def _difference(a: bytes, b: np.ndarray) -> dict:
    decoded = np.frombuffer(a, dtype=np.uint8).reshape(b.shape).astype(np.int16)
    diff = np.abs(decoded - b.astype(np.int16))
    return {
        "identical": bool(not diff.any()),
        "differing_pixels": int(np.count_nonzero(diff)),
        "differing_digits": int(np.count_nonzero(diff.reshape(len(b), -1).any(axis=1))),
        "max_abs_difference": int(diff.max()),
    }


def threads_check(model: str, data: bytes, reference: np.ndarray) -> dict:
    """Decode ``data`` in two new processes (1 and 2 torch threads); compare the digits."""
    with tempfile.TemporaryDirectory() as tmp:
        mnc = Path(tmp) / "bench.mnc"
        mnc.write_bytes(data)
        outputs = {}
        for threads in (1, 2):
            out = Path(tmp) / f"decoded-{threads}.raw"
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            cmd = [sys.executable, "-c", DECODE_SCRIPT, str(threads), model, str(mnc), str(out)]
            subprocess.run(cmd, env=env, check=True)
            outputs[threads] = out.read_bytes()
    two = np.frombuffer(outputs[2], dtype=np.uint8).reshape(reference.shape)
    return {
        "1_vs_2_threads": _difference(outputs[1], two),
        "1_thread_vs_this_process": _difference(outputs[1], reference),
    }


def run(args: argparse.Namespace) -> dict:
    codec = Codec(resolve_model(args.model))
    split = load_split(args.split, args.dataset, args.data_dir)
    images = split.images[: args.n]
    n = images.shape[0]
    k = np.empty((n, codec.latent_dims))
    info = np.empty(n)
    for start in range(0, n, codec.chunk_size):
        part = slice(start, min(n, start + codec.chunk_size))
        k[part], info[part] = codec.analyse(images[part])
    reference = codec.reconstruct(images)
    report = {
        "model": args.model,
        "fingerprint": codec.fingerprint,
        "split": f"{args.dataset} {args.split}",
        "n": n,
        "block_size": args.block_size,
        "mean_info_bits": float(info.mean()),
        "mean_table_bits": float(codec.coder.table_bits(codec.coder.to_symbols(k)).mean()),
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "constriction": importlib.metadata.version("constriction"),
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "loadavg": list(os.getloadavg()),
        },
    }
    data = b""
    for mode in ("per-digit", "stream"):
        report[mode], mode_data = measure_mode(
            codec, images, k, info, reference, mode, args.block_size
        )
        if mode == "per-digit":
            data = mode_data
    if args.threads_check:
        report["threads"] = threads_check(args.model, data, reference)
    report["acceptance"] = {
        "latents_exact": report["per-digit"]["latents_exact"] and report["stream"]["latents_exact"],
        "images_equal_reconstructions": report["per-digit"]["images_equal_reconstructions"]
        and report["stream"]["images_equal_reconstructions"],
        f"per_digit_overhead_le_{PER_DIGIT_LIMIT_BITS}_bits": report["per-digit"]["overhead_bits"]
        <= PER_DIGIT_LIMIT_BITS,
        f"stream_overhead_le_{STREAM_LIMIT_PERCENT}_percent": report["stream"]["overhead_percent"]
        <= STREAM_LIMIT_PERCENT,
    }
    if args.threads_check:
        report["acceptance"]["threads_identical"] = all(
            r["identical"] for r in report["threads"].values()
        )
    return report


def print_report(report: dict) -> None:
    print(
        f"model {report['model']} ({report['fingerprint'][:16]}), {report['split']}, n={report['n']}"
    )
    env = report["environment"]
    print(
        f"torch {env['torch']}, {env['torch_threads']} threads, {env['cpu_count']} CPUs, "
        f"load {env['loadavg'][0]:.1f}; block size {report['block_size']}"
    )
    print(f"mean information content         {report['mean_info_bits']:.3f} bits/digit")
    print(f"  ideal under the integer tables {report['mean_table_bits']:.3f} bits/digit")
    for mode in ("per-digit", "stream"):
        r = report[mode]
        print(f"-- {mode} mode")
        print(
            f"  latents exact / images equal   {r['latents_exact']} / {r['images_equal_reconstructions']}"
        )
        print(
            f"  payload                        {r['payload_bits_per_digit']:.3f} bits/digit "
            f"({r['overhead_bits']:+.3f} bits, {r['overhead_percent']:+.3f} %)"
        )
        print(
            f"  whole file                     {r['file_bits_per_digit']:.3f} bits/digit ({r['file_bytes']} bytes)"
        )
        print(
            f"  encode / decode                {r['encode_digits_per_s']:,.0f} / "
            f"{r['decode_digits_per_s']:,.0f} digits/s"
        )
    for name, r in report.get("threads", {}).items():
        print(
            f"-- new processes, {name.replace('_', ' ')}: identical {r['identical']} "
            f"({r['differing_pixels']} pixels in {r['differing_digits']} digits differ, "
            f"max {r['max_abs_difference']})"
        )
    print("-- acceptance")
    for name, ok in report["acceptance"].items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="model file or shipped model name")
    parser.add_argument(
        "--n", type=int, default=10000, help="first N digits of the split (default 10000)"
    )
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--block-size", type=int, default=DEFAULT_BLOCK_SIZE)
    parser.add_argument("--no-threads-check", dest="threads_check", action="store_false")
    parser.add_argument(
        "--json", default=None, metavar="OUT", help="also write the figures as JSON"
    )
    args = parser.parse_args()
    report = run(args)
    print_report(report)
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
    return 0 if all(report["acceptance"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
