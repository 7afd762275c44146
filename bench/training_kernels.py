"""What training's CPU kernels are worth: seed training steps with each one on and off.

    python bench/training_kernels.py [--blocks 16] [--steps 8] [--no-write]

In one process, on 128-digit steps of the seed model (Adam, the training
split), blocks of ``--steps`` steps alternate between the two settings of
each variant (the order flipped every other block, one untimed step after
each switch), and the medians of the step times are compared:

* ``conv_1 weight gradient``: the first convolution as
  :class:`~mnistcodec.model.cpu_kernels.ConvFromOne` (its weight gradient one
  matrix product over the image's taps), against oneDNN's convolution and its
  own backward;
* ``dense layers on oneDNN``: the two 2450-wide dense layers as
  :class:`~mnistcodec.model.cpu_kernels.DenseOnOneDnn`, against ``F.linear``
  (MKL's sgemm) forward and backward;
* ``500->2450 weight gradient by MKL``: within ``DenseOnOneDnn``, the weight
  gradient of the layer with more outputs than inputs by MKL's product,
  against oneDNN's matmul;
* ``memory policy``: freed blocks kept for the next step (the
  :func:`~mnistcodec.coding.memory.reuse_for_batches` settings, which
  ``train`` sets on the CPU), against glibc's 128 KiB mmap and trim thresholds
  (glibc's default threshold rises as blocks are freed, so training without
  the policy faults less than this setting: the ratio is an upper bound).
  Page faults per step are counted too.

The kernels' instruction sets follow the environment, so
``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2``
measures the AVX2 stand-in of ``bench/run.py --isa-cap avx2``. Writes
``bench/results/training_kernels.json`` and the section of BENCHMARKS.md
between ``<!-- training-kernels:start -->`` and ``<!-- training-kernels:end -->``.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmd import machine_stamp, write_outputs  # noqa: E402
from mnistcodec.coding import memory  # noqa: E402
from mnistcodec.data import load_split  # noqa: E402
from mnistcodec.model import cpu_kernels  # noqa: E402
from mnistcodec.model.compression_model import CompressionModel, ModelConfig  # noqa: E402
from mnistcodec.model.transforms import images_to_unit  # noqa: E402
from mnistcodec.training.loop import make_optimizer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- training-kernels:start -->", "<!-- training-kernels:end -->"
BATCH = 128
#: glibc's default mmap and trim thresholds (before its dynamic adjustment).
_GLIBC_DEFAULT = 128 << 10


def _plain_conv_1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, weight, bias, stride=2, padding=2)


def variants() -> dict:
    """``{name: setter(on)}``: each switches one kernel or setting on or off."""
    fast_conv = cpu_kernels.ConvFromOne.apply
    libc = ctypes.CDLL("libc.so.6")

    def conv_1(on: bool) -> None:
        cpu_kernels.ConvFromOne.apply = fast_conv if on else _plain_conv_1

    def memory_policy(on: bool) -> None:
        mmap, trim = (
            (memory.MMAP_THRESHOLD, memory.TRIM_THRESHOLD)
            if on
            else (_GLIBC_DEFAULT, _GLIBC_DEFAULT)
        )
        memory._mallopt({memory._M_MMAP_THRESHOLD: mmap, memory._M_TRIM_THRESHOLD: trim})
        if not on:
            libc.malloc_trim(0)

    def dense(on: bool) -> None:
        cpu_kernels.DENSE_ON_ONEDNN = on

    def wide_weight_gradient(on: bool) -> None:
        cpu_kernels.WIDE_WEIGHT_GRADIENT_ON_MKL = on

    return {
        "conv_1 weight gradient": conv_1,
        "dense layers on oneDNN": dense,
        "500->2450 weight gradient by MKL": wide_weight_gradient,
        "memory policy": memory_policy,
    }


def measure(name: str, setter, blocks: int, steps: int) -> dict:
    """Alternate blocks of steps with the variant on and off; medians and faults per step."""
    torch.manual_seed(0)
    model = CompressionModel(ModelConfig())
    optimizer = make_optimizer(model, 1e-3)
    model.train()
    images = torch.from_numpy(load_split("train").images[: BATCH * 200])
    generator = torch.Generator().manual_seed(0)
    count = images.shape[0] // BATCH
    state = {"step": 0}

    def step() -> None:
        s = state["step"] % count
        state["step"] += 1
        x = images_to_unit(images[s * BATCH : (s + 1) * BATCH])
        optimizer.zero_grad(set_to_none=True)
        out = model(x, training=True, generator=generator)
        model.loss(out).backward()
        optimizer.step()

    times: dict[bool, list[float]] = {True: [], False: []}
    faults = {True: 0, False: 0}
    for on in (True, False):
        setter(on)
        for _ in range(3):
            step()  # warm-up of both settings
    for block in range(blocks):
        for on in (True, False) if block % 2 == 0 else (False, True):
            setter(on)
            step()  # untimed, after the switch
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(steps):
                start = time.perf_counter()
                step()
                times[on].append(1e3 * (time.perf_counter() - start))
            faults[on] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    setter(True)
    on_ms, off_ms = statistics.median(times[True]), statistics.median(times[False])
    return {
        "variant": name,
        "on_ms_per_step": round(on_ms, 2),
        "off_ms_per_step": round(off_ms, 2),
        "on_over_off": round(on_ms / off_ms, 3),
        "faults_per_step_on": round(faults[True] / len(times[True]), 1),
        "faults_per_step_off": round(faults[False] / len(times[False]), 1),
    }


def markdown(result: dict) -> str:
    m = result["machine"]
    caps = ", ".join(f"`{k}={v}`" for k, v in result["kernel_caps"].items()) or "none"
    lines = [
        START,
        "## Training's CPU kernels, each on and off",
        "",
        f"Written by `python bench/training_kernels.py`, {m['when']}: {m['cpu']}"
        f" ({', '.join(m['cpu_flags'])}), {result['threads']} torch threads, kernel caps:"
        f" {caps}. Seed model, {BATCH}-digit Adam steps, blocks of {result['steps']} steps"
        f" alternating ({result['blocks']} blocks per setting), medians.",
        "",
        "| variant | ms per step, on | ms per step, off | on / off | page faults per step, on / off |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['variant']} | {row['on_ms_per_step']:.2f} | {row['off_ms_per_step']:.2f}"
            f" | {row['on_over_off']:.3f}x | {row['faults_per_step_on']:.0f} /"
            f" {row['faults_per_step_off']:.0f} |"
        )
    lines += [
        "",
        "The memory policy's \"off\" is glibc's fixed 128 KiB thresholds; glibc's default"
        " threshold rises as blocks are freed, so a run without the policy faults less"
        ' than that row\'s "off".',
        END,
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blocks", type=int, default=16)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--no-write", action="store_true", help="print only")
    args = p.parse_args(argv)
    caps = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")
    rows = []
    for name, setter in variants().items():
        rows.append(measure(name, setter, args.blocks, args.steps))
        print(rows[-1], flush=True)
    result = {
        "machine": machine_stamp(),
        "kernel_caps": {k: os.environ[k] for k in caps if os.environ.get(k)},
        "threads": torch.get_num_threads(),
        "blocks": args.blocks,
        "steps": args.steps,
        "rows": rows,
    }
    section = markdown(result)
    print(section)
    if not args.no_write:
        write_outputs(
            result,
            REPO / "bench" / "results" / "training_kernels.json",
            REPO / "BENCHMARKS.md",
            START,
            END,
            section,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
