"""Reproduce the seed: lambda 2000, 50 latents, 5 epochs, batch 128, Adam 1e-3.

Trains with the library's defaults (the seed protocol), prints validation rate
and distortion per epoch, evaluates the final model on all 10,000 test digits
(with real entropy coding) and compares with the reference figures of the
seed's TensorFlow stack (docs/seed-reference.md). Writes a JSON record and, with
``--markdown``, a table for BENCHMARKS.md.

    python bench/reproduce_seed.py [--out runs/seed-reproduction.safetensors] [--json bench/results/reproduce_seed.json]
    python bench/reproduce_seed.py --precision bf16 --out runs/seed5-bf16.safetensors \
        --json bench/results/reproduce_seed_bf16.json     # trained with bf16 products

The final model is evaluated on the float32 reference path whatever it was
trained in, so that only the training precision differs.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from mnistcodec.data import load_split
from mnistcodec.experiments.evaluate import evaluate
from mnistcodec.model.compression_model import ModelConfig
from mnistcodec.training.loop import TrainConfig, train

REFERENCE = {
    "val_rate": 48.7,
    "val_distortion": 0.0415,
    "info_bits": 48.7,
    "string_bits": 51.3,
    "psnr_db": 18.6,
}
TOLERANCE = 0.05


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/seed-reproduction.safetensors")
    parser.add_argument("--json", default="bench/results/reproduce_seed.json")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    parser.add_argument(
        "--reuse", action="store_true", help="evaluate an existing --out instead of training"
    )
    args = parser.parse_args()

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.reuse and out.exists():
        from mnistcodec.coding.model_files import load_model

        loaded = load_model(out)
        history = loaded.metadata.get("history", [])
        trained = loaded.metadata.get("training", {}).get("precision_used", {}).get("precision")
        if trained != args.precision and args.precision != "auto":
            raise SystemExit(f"{out} was trained in {trained}, not {args.precision}")
    else:
        result = train(
            ModelConfig(),
            TrainConfig(epochs=args.epochs, seed=args.seed, precision=args.precision),
            out,
            force=True,
        )
        loaded, history = result.model, [vars(r) for r in result.history]
    train_seconds = time.perf_counter() - t0
    figures = evaluate(loaded, load_split("test").images, precision="fp32")

    final = history[-1]
    checks = {
        "val_rate": (final["val_rate"], REFERENCE["val_rate"]),
        "val_distortion": (final["val_distortion"], REFERENCE["val_distortion"]),
    }
    print("\nepoch  val_rate  val_distortion  seconds")
    for r in history:
        print(
            f"{r['epoch']:>5}  {r['val_rate']:8.2f}  {r['val_distortion']:14.4f}  {r['seconds']:7.1f}"
        )
    print("\nfigure            ours      seed (TF)  within 5 %")
    ok = True
    for key, (ours, ref) in checks.items():
        within = abs(ours - ref) <= TOLERANCE * ref
        ok &= within
        print(f"{key:<16}{ours:9.4f}  {ref:9.4f}  {'yes' if within else 'NO'}")
    for key in ("info_bits", "string_bits", "psnr_db"):
        print(f"{key:<16}{figures[key]:9.4f}  {REFERENCE[key]:9.4f}")
    record = {
        "command": "python bench/reproduce_seed.py"
        + (f" --precision {args.precision}" if args.precision != "auto" else ""),
        "precision": loaded.metadata.get("training", {}).get("precision_used"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "history": history,
        "evaluation": figures,
        "reference": REFERENCE,
        "within_tolerance": ok,
        "wall_seconds": train_seconds,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(record, indent=2))
    print(f"\nwritten {args.json}; within tolerance: {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
