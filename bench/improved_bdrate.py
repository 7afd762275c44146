"""BD-rate of the improved preset against the seed, on the seed's protocol.

Both curves come from models trained with the 5-epoch protocol (50 latents,
logistic prior, batch 128) at the same lambdas and evaluated with real
per-digit strings on all 10,000 test digits:

    for L in 500 1000 2000; do
      mnistcodec train --preset seed     --lmbda $L --out runs/curves/seed-$L.safetensors
      mnistcodec train --preset improved --lmbda $L --out runs/curves/improved-$L.safetensors
      mnistcodec evaluate runs/curves/seed-$L.safetensors     --json > runs/curves/seed-$L.json
      mnistcodec evaluate runs/curves/improved-$L.safetensors --json > runs/curves/improved-$L.json
    done
    python bench/improved_bdrate.py [--curves runs/curves] [--json bench/results/improved_bdrate.json]

Prints each point, the BD-rate at equal PSNR and at equal MAD (negative:
the improved preset needs fewer bits), and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from mnistcodec.bdrate import bd_rate
from mnistcodec.errors import MnistCodecError


def load_curve(directory: Path, preset: str) -> list[dict]:
    points = []
    for path in sorted(directory.glob(f"{preset}-*.json")):
        match = re.fullmatch(rf"{preset}-([0-9.]+)", path.stem)
        if not match:
            continue
        result = json.loads(path.read_text())
        result["lmbda"] = float(match.group(1))
        points.append(result)
    return sorted(points, key=lambda r: r["lmbda"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curves", default="runs/curves")
    parser.add_argument("--json", default="bench/results/improved_bdrate.json")
    args = parser.parse_args()
    curves = {name: load_curve(Path(args.curves), name) for name in ("seed", "improved")}
    print(f"{'preset':<10}{'lambda':>8}{'string bits':>13}{'info bits':>11}{'PSNR dB':>9}{'MAD':>9}")
    for name, points in curves.items():
        for p in points:
            print(f"{name:<10}{p['lmbda']:>8g}{p['string_bits']:>13.2f}{p['info_bits']:>11.2f}{p['psnr_db']:>9.2f}{p['mad']:>9.4f}")
    seed, improved = curves["seed"], curves["improved"]
    result = {"points": curves}
    for label, key, higher in (("psnr", "psnr_db", True), ("mad", "mad", False)):
        try:
            value = bd_rate(
                [p["string_bits"] for p in seed],
                [p[key] for p in seed],
                [p["string_bits"] for p in improved],
                [p[key] for p in improved],
                method="pchip",
                higher_is_better=higher,
            )
        except MnistCodecError as exc:
            value = None
            print(f"BD-rate at equal {label}: not computable ({exc})")
        else:
            print(f"BD-rate at equal {label}: {value:+.1f} %")
        result[f"bd_rate_{label}_percent"] = value
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
