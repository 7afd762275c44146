#!/usr/bin/env python3
"""bf16 against float32, side by side: quality on the test set, and speed on this machine.

    python bench/precision.py            # all 10,000 test digits, writes BENCHMARKS.md's section
    python bench/precision.py --quick    # 1,000 digits, one speed round

Quality, for every shipped model, on the test digits:

* encoding with bf16 products (``--precision bf16``'s encoder, also ``auto``'s
  on bf16 hardware): information content and PSNR against float32's;
* decoding float32's latents with the conformant decoder (``auto`` on bf16
  hardware: bf16 in the 500->2450 layer) and with the full bf16 decoder
  (``--precision bf16``): mean PSNR against float32's, the share of pixels
  within 1 grey level of the float32 reference and the largest difference;
* the integer latents decoded from the strings, for every precision: equal.

Speed, alternating the precisions round by round: ``Codec.compress`` and
``Codec.decompress`` of the test digits and one training epoch on a subset,
medians and the ratio bf16 / float32. Where the CPU has no bf16 matrix units,
``auto`` stays on float32 and ``bf16`` computes its products by rounding
(float32 arithmetic; :mod:`mnistcodec.model.precision`): the figures then say
so, and do not stand for AMX. Results: ``bench/results/precision.json``
and the section of ``BENCHMARKS.md`` between ``<!-- precision:start -->`` and
``<!-- precision:end -->``; with ``bench/results/reproduce_seed_bf16.json``
present (``bench/reproduce_seed.py --precision bf16``), the seed reproduction
trained in bf16 as well; with ``--curve DIR`` holding ``improved-L.json`` for
lambda 300, 500, 1000 and 2000 (``mnistcodec evaluate --json --precision fp32``
of ``mnistcodec train --preset improved --lmbda L --precision bf16``), the
BD-rate of that bf16-trained curve against the float32 curve stored in
``bench/results/improved_bdrate.json``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from benchmd import cpu_name, replace_section  # noqa: E402
from mnistcodec.coding.api import Codec  # noqa: E402
from mnistcodec.coding.zoo import shipped_models  # noqa: E402
from mnistcodec.data import load_split  # noqa: E402
from mnistcodec.experiments import metrics  # noqa: E402
from mnistcodec.experiments.bdrate import preset_bd_rates  # noqa: E402
from mnistcodec.model import precision as P  # noqa: E402
from mnistcodec.model.compression_model import ModelConfig  # noqa: E402
from mnistcodec.training.loop import TrainConfig, train  # noqa: E402

START, END = "<!-- precision:start -->", "<!-- precision:end -->"
RESULTS = REPO / "bench" / "results"


def conformant_codec(name: str) -> Codec:
    """The codec ``auto`` makes on bf16 hardware, made here whatever the hardware."""
    codec = Codec.from_model(name, precision="fp32")
    codec.precision = P.CONFORMANT
    return codec


def quality(name: str, images: np.ndarray) -> dict:
    fp32 = Codec.from_model(name, precision="fp32")
    bf16 = Codec.from_model(name, precision="bf16")
    k32, info32 = fp32.analyse(images)
    k16, info16 = bf16.analyse(images)
    exact = fp32.synthesise(k32)
    psnr32 = metrics.mean_psnr(images, exact)
    row = {
        "model": name,
        "info_bits_fp32": float(info32.mean()),
        "info_bits_bf16_encoder": float(info16.mean()),
        "info_relative_difference": float(info16.mean() / info32.mean() - 1),
        "psnr_fp32": psnr32,
        "psnr_bf16_encoder": metrics.mean_psnr(images, fp32.synthesise(k16)),
        "latents_changed_by_bf16_encoder": float(np.mean(k16 != k32)),
    }
    for label, codec in (("conformant", conformant_codec(name)), ("bf16", bf16)):
        decoded = codec.synthesise(k32)
        error = np.abs(decoded.astype(int) - exact.astype(int))
        row[f"psnr_{label}_decoder"] = metrics.mean_psnr(images, decoded)
        row[f"within_1_{label}_decoder"] = float(np.mean(error <= 1))
        row[f"max_difference_{label}_decoder"] = int(error.max())
    strings = fp32.encode_latents(k32[:512])
    row["latents_decode_equal"] = all(
        np.array_equal(Codec.from_model(name, precision=p).decode_latents(strings), k32[:512])
        for p in ("bf16", "auto")
    )
    return row


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def speed(images: np.ndarray, rounds: int, train_limit: int) -> dict:
    n = images.shape[0]
    runs: dict[str, dict[str, list[float]]] = {
        p: {"encode": [], "decode": [], "epoch": []} for p in ("fp32", "bf16")
    }
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for p in ("fp32", "bf16"):
                codec = Codec.from_model("vr", precision=p)
                strings, _ = codec.compress(images[:256])
                runs[p]["encode"].append(n / timed(lambda c=codec: c.compress(images)))
                strings, _ = codec.compress(images)
                runs[p]["decode"].append(n / timed(lambda c=codec, s=strings: c.decompress(s)))
                config = TrainConfig(epochs=1, limit=train_limit, val_limit=1000, precision=p)
                result = train(
                    ModelConfig(),
                    config,
                    Path(tmp) / f"{p}-{r}.safetensors",
                    force=True,
                    progress=False,
                    log=lambda _: None,
                )
                runs[p]["epoch"].append(result.history[-1].seconds)
    medians = {p: {k: statistics.median(v) for k, v in d.items()} for p, d in runs.items()}
    ratios = {k: medians["bf16"][k] / medians["fp32"][k] for k in medians["fp32"]}
    return {"runs": runs, "medians": medians, "bf16_over_fp32": ratios, "train_limit": train_limit}


def seed_in_bf16() -> dict | None:
    path = RESULTS / "reproduce_seed_bf16.json"
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    final = record["history"][-1]
    ref = record["reference"]
    return {
        "val_rate": final["val_rate"],
        "val_distortion": final["val_distortion"],
        "reference": {"val_rate": ref["val_rate"], "val_distortion": ref["val_distortion"]},
        "within_tolerance": record["within_tolerance"],
        "epoch_seconds": [r["seconds"] for r in record["history"]],
        "command": record["command"],
    }


def curve_in_bf16(directory: Path) -> dict:
    """BD-rates of the improved curve trained in bf16 against the stored float32 curve."""
    fp32 = json.loads((RESULTS / "improved_bdrate.json").read_text())["points"]["improved"]
    bf16 = []
    for point in fp32:
        path = directory / f"improved-{point['lmbda']:g}.json"
        bf16.append({**json.loads(path.read_text()), "lmbda": point["lmbda"]})
    bd = preset_bd_rates(("fp32", fp32), ("bf16", bf16))
    return {
        "points": bf16,
        "bd_rate_psnr_percent": bd["psnr"]["bd_rate_percent"],
        "bd_rate_mad_percent": bd["mad"]["bd_rate_percent"],
        "notes": [bd["psnr"]["note"], bd["mad"]["note"]],
    }


def markdown(result: dict) -> str:
    m, sp = result["machine"], result["speed"]
    units = "has" if m["bf16_matrix_units"] else "has no"
    lines = [
        START,
        "## Mixed precision: bf16 against float32",
        "",
        f"Written by `{result['command']}`, {result['started']}; {result['n']} test digits."
        f" Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}; this CPU {units} bf16"
        f" matrix units (AMX), so `--precision auto` runs {m['auto']} here.",
        "",
        "Quality (decoders given float32's latents; the conformance rule: 99 % of pixels within"
        " 1 grey level of float32):",
        "",
        "| model | info bits fp32 | bf16 encoder | PSNR fp32 | bf16 encoder | conformant decoder:"
        " PSNR / within 1 / max | bf16 decoder: PSNR / within 1 / max | latents decode equal |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for q in result["quality"]:
        lines.append(
            f"| {q['model']} | {q['info_bits_fp32']:.3f} | {q['info_bits_bf16_encoder']:.3f}"
            f" ({100 * q['info_relative_difference']:+.3f} %) | {q['psnr_fp32']:.3f} |"
            f" {q['psnr_bf16_encoder']:.3f} | {q['psnr_conformant_decoder']:.3f} /"
            f" {100 * q['within_1_conformant_decoder']:.4f} % / {q['max_difference_conformant_decoder']}"
            f" | {q['psnr_bf16_decoder']:.3f} / {100 * q['within_1_bf16_decoder']:.3f} % /"
            f" {q['max_difference_bf16_decoder']} | {'yes' if q['latents_decode_equal'] else 'NO'} |"
        )
    md, ratio = sp["medians"], sp["bf16_over_fp32"]
    lines += [
        "",
        f"Speed, medians of {len(sp['runs']['fp32']['encode'])} alternating rounds (`vr`,"
        f" per-digit strings; one training epoch of {sp['train_limit']} digits with validation):",
        "",
        "| figure | fp32 | bf16 | bf16 / fp32 |",
        "| --- | --- | --- | --- |",
        f"| encode, digits/s | {md['fp32']['encode']:,.0f} | {md['bf16']['encode']:,.0f} |"
        f" {ratio['encode']:.2f}x |",
        f"| decode, digits/s | {md['fp32']['decode']:,.0f} | {md['bf16']['decode']:,.0f} |"
        f" {ratio['decode']:.2f}x |",
        f"| training epoch, s | {md['fp32']['epoch']:.1f} | {md['bf16']['epoch']:.1f} |"
        f" {ratio['epoch']:.2f}x |",
    ]
    if not m["bf16_matrix_units"]:
        lines += [
            "",
            f"bf16 ran by {m['bf16_route']} here: without bf16 matrix units its products are"
            " float32 arithmetic on values rounded to bfloat16, so the bf16 column measures the"
            " rounding's cost, not a CPU with AMX. The speed of bf16 on AMX has not been"
            " measured by this suite yet.",
        ]
    seed = result.get("seed_bf16")
    if seed:
        lines += [
            "",
            f"Seed reproduction trained in bf16 (`{seed['command']}`, lambda 2000, 5 epochs,"
            " evaluated in float32): validation rate"
            f" {seed['val_rate']:.2f} bits and MAD {seed['val_distortion']:.4f} after 5 epochs"
            f" against the reference {seed['reference']['val_rate']} / "
            f"{seed['reference']['val_distortion']}"
            f" ({100 * (seed['val_rate'] / seed['reference']['val_rate'] - 1):+.1f} % /"
            f" {100 * (seed['val_distortion'] / seed['reference']['val_distortion'] - 1):+.1f} %):"
            f" {'within' if seed['within_tolerance'] else 'NOT within'} the 5 % tolerance.",
        ]
    curve = result.get("improved_curve_bf16")
    if curve:
        lines += [
            "",
            "The improved curve trained in bf16 (`mnistcodec train --preset improved --lmbda L"
            " --precision bf16`, lambda 300-2000, 5 epochs; evaluated in float32 on all 10,000"
            " test digits) against the float32 curve of bench/results/improved_bdrate.json:"
            f" BD-rate {curve['bd_rate_psnr_percent']:+.2f} % at equal PSNR,"
            f" {curve['bd_rate_mad_percent']:+.2f} % at equal MAD (limit: within ±2 %).",
            "",
            "| lambda | string bits | PSNR dB | MAD |",
            "| --- | --- | --- | --- |",
        ]
        for point in curve["points"]:
            lines.append(
                f"| {point['lmbda']:g} | {point['string_bits']:.2f} | {point['psnr_db']:.2f} |"
                f" {point['mad']:.4f} |"
            )
    lines.append(END)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1,000 digits and one speed round")
    p.add_argument("--curve", default=None, help="directory of the bf16 improved curve's JSON")
    p.add_argument("--markdown", default=str(REPO / "BENCHMARKS.md"))
    p.add_argument("--json", default=str(RESULTS / "precision.json"))
    args = p.parse_args(argv)
    n = 1000 if args.quick else 10000
    images = load_split("test").images[:n]
    started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    result = {
        "command": "python bench/precision.py" + (" --quick" if args.quick else ""),
        "started": started,
        "n": n,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "bf16_matrix_units": P.bf16_matrix_units("cpu"),
            "auto": P.coding_precision("auto").name,
            "bf16_route": "native" if P.native_bf16(torch.device("cpu")) else "rounding",
        },
    }
    result["machine"]["cpu"] = cpu_name()
    result["quality"] = [quality(name, images) for name in shipped_models()]
    result["speed"] = speed(images, 1 if args.quick else 3, 2000 if args.quick else 5000)
    result["seed_bf16"] = seed_in_bf16()
    if args.curve:
        result["improved_curve_bf16"] = curve_in_bf16(Path(args.curve))
        result["command"] += f" --curve {args.curve}"
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    section = markdown(result)
    replace_section(Path(args.markdown), START, END, section)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
