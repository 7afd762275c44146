"""Probe: ``torch.compile`` (inductor, C++ code generation) on the two transforms, side by side with eager.

Compiles the seed model's analysis and synthesis transforms (their plain
layer-by-layer ``reference_forward``) for one batch shape, reports the compilation time, then times eager float32, eager through
the engine the calibration chose here, and the compiled graphs, alternating,
on batches of ``--batch`` digits (medians of ``--repeats``). It also checks
that the compiled transforms compute the same functions (largest difference
to eager float32). ``torch.compile`` needs a C++ compiler at run time. ::

    python bench/compile_probe.py [--model seed-lmbda2000] [--batch 512] [--repeats 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from mnistcodec.coding.api import Codec
from mnistcodec.data import load_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmd import cpu_name  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="seed-lmbda2000")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "compile_probe.json"))
    args = parser.parse_args(argv)

    codec = Codec.from_model(args.model)
    images = load_split("test").images[: args.batch]
    x = torch.from_numpy(images).float().div(255).reshape(-1, 1, 28, 28)
    model = codec.model
    with torch.no_grad():
        y = model.analysis_transform(x)
        codec.engine.analysis(x)  # settles the calibrated choice
    started = time.perf_counter()
    # The plain layer-by-layer forward (the CPU kernels' custom function would break the graph).
    analysis = torch.compile(model.analysis_transform.reference_forward, dynamic=False)
    synthesis = torch.compile(model.synthesis_transform.reference_forward, dynamic=False)
    with torch.no_grad():
        compiled_y = analysis(x)
        compiled_x = synthesis(y)
    compile_seconds = time.perf_counter() - started
    with torch.no_grad():
        error = {
            "analysis": float((compiled_y - model.analysis_transform(x)).abs().max()),
            "synthesis": float((compiled_x - model.synthesis_transform(y)).abs().max()),
        }
    runs = {
        "eager fp32": (lambda: model.analysis_transform(x), lambda: model.synthesis_transform(y)),
        "engine (calibrated)": (
            lambda: codec.engine.analysis(x),
            lambda: codec.engine.synthesis(y, None),
        ),
        "compiled fp32": (lambda: analysis(x), lambda: synthesis(y)),
    }
    times: dict[str, dict[str, list[float]]] = {n: {"analysis": [], "synthesis": []} for n in runs}
    with torch.no_grad():
        for _ in range(args.repeats):
            for name, sides in runs.items():
                for side, run in zip(("analysis", "synthesis"), sides, strict=True):
                    start = time.perf_counter()
                    run()
                    times[name][side].append(time.perf_counter() - start)
    speeds = {
        name: {side: args.batch / statistics.median(t) for side, t in sides.items()}
        for name, sides in times.items()
    }
    for name, sides in speeds.items():
        print(
            f"{name:>20}: analysis {sides['analysis']:9,.0f} digits/s,"
            f" synthesis {sides['synthesis']:9,.0f} digits/s"
        )
    print(f"compilation: {compile_seconds:.1f} s; largest difference to eager fp32: {error}")
    record = {
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "model": args.model,
        "batch": args.batch,
        "engine": codec.engine.describe(),
        "compile_seconds": round(compile_seconds, 2),
        "max_abs_difference": error,
        "digits_per_s": {n: {s: round(v, 1) for s, v in d.items()} for n, d in speeds.items()},
    }
    Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
