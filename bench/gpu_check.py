#!/usr/bin/env python3
"""GPU check: a full seed-protocol training and the coding throughput on one CUDA device.

    python bench/gpu_check.py                 # 5 epochs, writes BENCHMARKS.md's GPU section
    python bench/gpu_check.py --epochs 1      # a shorter smoke run

What it does, on ``cuda``:

1. trains the seed configuration (lambda 2000, 50 latents, batch 128, Adam
   1e-3) for 5 epochs with validation on the 10,000 test digits each epoch,
   data kept on the GPU, and times it end to end (issue 7's target: under 10 s
   on one H100-class GPU);
2. codes the test digits with the trained model on the GPU: encode and decode
   digits per second (whole set in one call, per-digit strings and one stream),
   single-digit latency;
3. checks that latents decode identically on the CPU (the tables are frozen),
   and counts reconstruction pixels that differ between the GPU and CPU
   networks (float rounding; see ``mnistcodec.coding.api``).

Results go to ``bench/results/gpu-<time>.json`` and to the section of
``BENCHMARKS.md`` between ``<!-- gpu:start -->`` and ``<!-- gpu:end -->``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
START, END = "<!-- gpu:start -->", "<!-- gpu:end -->"
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"


def timed(fn, repeats: int) -> tuple[list[float], object]:
    import torch

    times, result = [], None
    for _ in range(repeats):
        torch.cuda.synchronize()
        t = time.perf_counter()
        result = fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return times, result


def run(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from mnistcodec.coding.api import Codec
    from mnistcodec.coding.model_files import load_model
    from mnistcodec.data import load_split
    from mnistcodec.model.compression_model import ModelConfig
    from mnistcodec.training.loop import TrainConfig, train

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check needs a GPU")
    device = torch.device("cuda")
    out: dict = {
        "device": torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "epochs": args.epochs,
        "precision": args.precision,
    }
    load_split("train"), load_split("test")  # read and verify the data before timing
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gpu.safetensors"
        torch.cuda.synchronize()
        t = time.perf_counter()
        result = train(
            ModelConfig(),
            TrainConfig(epochs=args.epochs, device="cuda", precision=args.precision),
            path,
            force=True,
            progress=False,
            log=lambda line: print(line, flush=True),
        )
        torch.cuda.synchronize()
        out["train_seconds_total"] = time.perf_counter() - t
        out["epoch_seconds"] = [r.seconds for r in result.history]
        out["training_precision"] = result.model.metadata["training"]["precision_used"]
        last = result.history[-1]
        out["final"] = {"val_rate": last.val_rate, "val_distortion": last.val_distortion}

        images = load_split("test").images
        n = int(images.shape[0])
        codec = Codec(load_model(path), device="cuda", precision=args.precision)
        out["coding_precision"] = codec.precision.describe()
        codec.decompress(codec.compress(images[:256])[0])  # warm-up
        enc, (strings, _) = timed(lambda: codec.compress(images), args.repeats)
        dec, decoded = timed(lambda: codec.decompress(strings), args.repeats)
        senc, (stream, _) = timed(lambda: codec.compress_stream(images), args.repeats)
        sdec, _ = timed(lambda: codec.decompress_stream(stream, n), args.repeats)
        one = images[:1]
        one_string = codec.compress(one)[0]
        enc1, _ = timed(lambda: codec.compress(one), 50)
        dec1, _ = timed(lambda: codec.decompress(one_string), 50)
        out["coding"] = {
            "digits": n,
            "encode_digits_per_s": [n / t for t in enc],
            "decode_digits_per_s": [n / t for t in dec],
            "stream_encode_digits_per_s": [n / t for t in senc],
            "stream_decode_digits_per_s": [n / t for t in sdec],
            "single_encode_ms": 1e3 * statistics.median(enc1),
            "single_decode_ms": 1e3 * statistics.median(dec1),
            "string_bits_mean": float(np.mean([8 * len(s) for s in strings])),
        }
        cpu = Codec(load_model(path), device="cpu", precision="fp32")
        same_latents = bool(
            np.array_equal(cpu.decode_latents(strings), codec.decode_latents(strings))
        )
        cpu_pixels = cpu.decompress(strings)
        differ = np.abs(cpu_pixels.astype(np.int16) - decoded.astype(np.int16))
        out["cross_device"] = {
            "latents_identical": same_latents,
            "pixels_differing": int(np.count_nonzero(differ)),
            "max_pixel_difference": int(differ.max()),
            "pixels": int(differ.size),
        }
    out["finished"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    return out


def markdown(r: dict, command: str) -> str:
    c = r["coding"]
    med = lambda xs: f"{statistics.median(xs):,.0f}"  # noqa: E731
    x = r["cross_device"]
    target = "met" if r["epochs"] == 5 and r["train_seconds_total"] < 10 else "not met"
    return "\n".join(
        [
            START,
            f"## GPU: {r['device']}",
            "",
            f"Written by `{command}`, {r['started']}; torch {r['torch']}, CUDA {r['cuda']};"
            f" training in {r['training_precision']['precision']}, coding in"
            f" {r['coding_precision']['precision']} (CPU reference: fp32).",
            "",
            "| figure | value |",
            "| --- | --- |",
            f"| seed training, {r['epochs']} epochs incl. validation (end to end) | {r['train_seconds_total']:.1f} s |",
            f"| seconds per epoch | {', '.join(f'{s:.2f}' for s in r['epoch_seconds'])} |",
            f"| final validation rate / distortion | {r['final']['val_rate']:.1f} bits / {r['final']['val_distortion']:.4f} |",
            f"| encode, per-digit strings (median) | {med(c['encode_digits_per_s'])} digits/s |",
            f"| decode, per-digit strings (median) | {med(c['decode_digits_per_s'])} digits/s |",
            f"| encode / decode, one stream (median) | {med(c['stream_encode_digits_per_s'])} / {med(c['stream_decode_digits_per_s'])} digits/s |",
            f"| single-digit encode / decode latency | {c['single_encode_ms']:.2f} / {c['single_decode_ms']:.2f} ms |",
            f"| latents decoded on the CPU identical | {'yes' if x['latents_identical'] else 'NO'} |",
            f"| reconstruction pixels differing GPU vs CPU fp32 | {x['pixels_differing']:,} of {x['pixels']:,} (max {x['max_pixel_difference']} grey level) |",
            "",
            f"Target (issue 7): 5-epoch training under 10 s on one H100-class GPU: {target}.",
            END,
            "",
        ]
    )


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + section.rstrip("\n") + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    p.add_argument("--markdown", default=str(REPO / "BENCHMARKS.md"))
    p.add_argument("--results-dir", default=str(REPO / "bench" / "results"))
    args = p.parse_args()
    if "MNISTCODEC_DATA_DIR" not in os.environ and SHARED_MNIST.is_dir():
        os.environ["MNISTCODEC_DATA_DIR"] = str(SHARED_MNIST)
    result = run(args)
    command = "python bench/gpu_check.py" + ("" if args.epochs == 5 else f" --epochs {args.epochs}")
    command += "" if args.precision == "auto" else f" --precision {args.precision}"
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = result["started"].replace(":", "").replace("+0000", "Z")
    (results_dir / f"gpu-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    section = markdown(result, command)
    write_section(Path(args.markdown), section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
