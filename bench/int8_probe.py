"""Probe: encoding with int8 products in the analysis transform, side by side with float32.

On a CPU without bf16 matrix units (AVX2 only), int8 products through
PyTorch's fbgemm kernels are the remaining faster arithmetic. This probe
quantises the two heavy analysis layers (the 20->50 convolution, as an im2col
product, and the 2450->500 dense layer) dynamically: weights per output
channel, activations per call, int32 sums. It then encodes the 10,000 test
digits both ways with the same model, tables and range coder, and prints:

* the throughput of a whole encode (analysis, quantisation, per-digit strings),
  median of ``--repeats`` runs per side, the sides alternating;
* the ratio to the peer's encode throughput of the latest ``make bench`` run;
* the information content and the PSNR of the decoded digits, against float32
  (the limits of the bf16 encoder: 0.5 % and 0.05 dB).

It is a probe, not a product path: ``torch.ao`` quantised tensors are
deprecated in PyTorch. ::

    python bench/int8_probe.py [--model seed-lmbda2000] [--repeats 5] [--layers fc_1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mnistcodec.coding.api import Codec
from mnistcodec.data import load_split
from mnistcodec.experiments.metrics import mean_psnr

REPO = Path(__file__).resolve().parents[1]


def int8_linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Module:
    """A dynamically quantised dense layer (int8 weights per output channel)."""
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    layer.qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.nn.quantized.dynamic.Linear.from_float(layer)


class Int8Analysis(nn.Module):
    """The seed analysis transform with conv_2 and fc_1 as int8 products."""

    def __init__(self, analysis: nn.Module, layers: frozenset[str]) -> None:
        super().__init__()
        self.layers = layers
        self.reference = analysis
        self.bf16_layers: frozenset[str] = frozenset()  # the codec's precision switch: none here
        conv = analysis.conv_2
        self.conv_2 = int8_linear(conv.weight.detach().reshape(conv.out_channels, -1), conv.bias)
        self.fc_1 = int8_linear(analysis.fc_1.weight.detach(), analysis.fc_1.bias.detach())

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.reference
        slope = a.act.negative_slope
        parts = []
        for part in x.split(512):
            h = F.leaky_relu(a.conv_1(part), slope)
            if "conv_2" in self.layers:
                cols = F.unfold(h, 5, padding=2, stride=2).transpose(1, 2).reshape(-1, 500)
                h = F.leaky_relu(self.conv_2(cols), slope).view(part.shape[0], 49, 50)
                h = h.transpose(1, 2).reshape(part.shape[0], -1)  # (c, h, w) order for fc_1
            else:
                h = F.leaky_relu(a.conv_2(h), slope).flatten(1)
            fc_1 = self.fc_1 if "fc_1" in self.layers else a.fc_1
            h = F.leaky_relu(fc_1(h), slope)
            parts.append(a.fc_2(h))
        return torch.cat(parts)


def encode(codec: Codec, images: np.ndarray) -> tuple[float, list[bytes], np.ndarray]:
    start = time.perf_counter()
    strings, info = codec.compress(images)
    return time.perf_counter() - start, strings, info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="seed-lmbda2000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--layers",
        nargs="+",
        choices=("conv_2", "fc_1"),
        default=["conv_2", "fc_1"],
        help="the analysis layers computed in int8 (default both)",
    )
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "int8_probe.json"))
    args = parser.parse_args(argv)
    images = load_split("test").images
    fp32 = Codec.from_model(args.model, precision="fp32", chunk_size=len(images))
    int8 = Codec.from_model(args.model, precision="fp32", chunk_size=len(images))
    int8.model.analysis_transform = Int8Analysis(
        int8.model.analysis_transform, frozenset(args.layers)
    )
    times: dict[str, list[float]] = {"fp32": [], "int8": []}
    results = {}
    for _ in range(args.repeats):
        for name, codec in (("fp32", fp32), ("int8", int8)):
            seconds, strings, info = encode(codec, images)
            times[name].append(seconds)
            results[name] = (strings, info)
    figures = {}
    for name, (strings, info) in results.items():
        decoded = fp32.decompress(strings)
        figures[name] = {
            "digits_per_s": len(images) / statistics.median(times[name]),
            "info_bits": float(info.mean()),
            "string_bits": float(np.mean([8 * len(s) for s in strings])),
            "psnr_db": mean_psnr(images, decoded),
        }
    peer = None
    runs = sorted((REPO / "bench" / "results").glob("bench-*.json"))
    if runs:
        latest = json.loads(runs[-1].read_text())
        encode_figure = next(f for f in latest["figures"] if f["key"] == "encode")
        peer = encode_figure["peer"]["median"] if encode_figure.get("peer") else None
    a, b = figures["fp32"], figures["int8"]
    record = {
        "command": "python bench/int8_probe.py " + " ".join(argv or sys.argv[1:]),
        "model": args.model,
        "int8_layers": sorted(args.layers),
        "cpu_threads": torch.get_num_threads(),
        "figures": figures,
        "int8_over_fp32": b["digits_per_s"] / a["digits_per_s"],
        "peer_encode_digits_per_s": peer,
        "info_change_percent": 100 * (b["info_bits"] / a["info_bits"] - 1),
        "psnr_change_db": b["psnr_db"] - a["psnr_db"],
    }
    Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
    for name, f in figures.items():
        versus = f", {f['digits_per_s'] / peer:.2f}x the peer" if peer else ""
        print(
            f"{name}: {f['digits_per_s']:,.0f} digits/s{versus}; info {f['info_bits']:.3f} bits, "
            f"strings {f['string_bits']:.2f} bits, PSNR {f['psnr_db']:.3f} dB"
        )
    print(
        f"int8 / fp32 throughput {record['int8_over_fp32']:.2f}x; information "
        f"{record['info_change_percent']:+.3f} %, PSNR {record['psnr_change_db']:+.4f} dB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
