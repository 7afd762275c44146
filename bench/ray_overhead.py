"""Ray's overhead: the same 8 small trials with the local executor and on a local Ray cluster.

Each round runs the sweep twice on fresh caches: ``run_trials(..., jobs=2)``
(two worker processes, one PyTorch thread each on 2 cores) and
``run_trials(..., executor="ray")`` on a local Ray instance with as many CPUs
as the local run has workers (``ray.init(num_cpus=2)``, one CPU per trial).
The Ray instance's start-up is timed apart from the sweep; the sweep's time
includes everything a sweep on a running cluster pays (connection, data in the
object store, worker processes importing PyTorch). Also checks that both give
the same numbers. Writes ``bench/results/ray_overhead.json`` and the section
of BENCHMARKS.md between ``<!-- ray:start -->`` and ``<!-- ray:end -->``.

    PYTHONPATH=src python bench/ray_overhead.py [--rounds 1] [--limit 2048]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmd import replace_section  # noqa: E402
from mnistcodec.experiments.ray_executor import RayOptions, import_ray  # noqa: E402
from mnistcodec.experiments.sweep import available_cores, make_grid, run_trials  # noqa: E402
from mnistcodec.training.loop import TrainConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- ray:start -->", "<!-- ray:end -->"
WORKERS = 2
THREADS = max(1, available_cores() // WORKERS)  # what a local worker gets, and so each Ray task


def trials(limit: int, eval_limit: int) -> list:
    """8 trials: 4 lambdas x 2 seeds, 8 latents, one epoch on ``limit`` digits."""
    config = TrainConfig(epochs=1, limit=limit, val_limit=512, batch_size=64, device="cpu")
    return make_grid(
        [300, 600, 1200, 2400], [8], ["logistic"], config, seeds=[0, 1], eval_limit=eval_limit
    )


def numbers(results: list) -> list[dict]:
    return [{k: v for k, v in r.row().items() if k != "train_seconds"} for r in results]


def timed_sweep(specs: list, executor: str, work: Path) -> tuple[float, list]:
    root = Path(tempfile.mkdtemp(prefix=f"{executor}-", dir=work))
    t0 = time.perf_counter()
    results = run_trials(
        specs,
        root,
        jobs=WORKERS,
        progress=False,
        log=lambda _line: None,
        executor=executor,
        ray_options=RayOptions(cpus_per_trial=THREADS),
    )
    return time.perf_counter() - t0, results


def one_round(ray, specs: list, work: Path) -> dict:
    local_s, local = timed_sweep(specs, "local", work)
    t0 = time.perf_counter()
    ray.init(num_cpus=WORKERS * THREADS, include_dashboard=False, logging_level="warning")
    start_s = time.perf_counter() - t0
    try:
        ray_s, on_ray = timed_sweep(specs, "ray", work)
    finally:
        ray.shutdown()
    return {
        "local_seconds": round(local_s, 2),
        "ray_seconds": round(ray_s, 2),
        "ray_start_seconds": round(start_s, 2),
        "local_trial_seconds": round(sum(r.seconds for r in local), 2),
        "ray_trial_seconds": round(sum(r.seconds for r in on_ray), 2),
        "same_numbers": numbers(local) == numbers(on_ray),
    }


def markdown(result: dict) -> str:
    s = result["summary"]
    difference = s["ray_seconds"] - s["local_seconds"]
    t = result["threads_per_trial"]
    lines = [
        START,
        "## Ray executor overhead",
        "",
        "Written by `python bench/ray_overhead.py` (`bench/results/ray_overhead.json`). The same "
        f"{result['trials']} small trials (4 lambdas x 2 seeds, 8 latents, one epoch on "
        f"{result['limit']} digits, evaluated with coding on {result['eval_limit']} test digits), "
        f"each on fresh caches: the local executor with {WORKERS} worker processes (`--jobs "
        f"{WORKERS}`, {t} PyTorch thread(s) each) against a local Ray instance with "
        f"{WORKERS * t} CPUs (`--executor ray --cpus-per-trial {t}`). Ray's start-up (`ray.init`) is timed apart; the Ray sweep's time is "
        "what a sweep on a running cluster pays (connecting, the data in the object store, "
        "worker processes importing PyTorch).",
        "",
        "| | local executor | Ray executor | ratio |",
        "| --- | ---: | ---: | ---: |",
        f"| sweep wall time (s) | {s['local_seconds']:.1f} | {s['ray_seconds']:.1f} | "
        f"{s['ratio']:.2f} |",
        f"| sum of the trials' own times (s) | {s['local_trial_seconds']:.1f} | "
        f"{s['ray_trial_seconds']:.1f} | |",
        f"| starting the local Ray instance (s) | | {s['ray_start_seconds']:.1f} | |",
        "",
        f"Median of {result['rounds']} round(s). Same numbers from both executors: "
        f"{'yes' if result['same_numbers'] else 'NO'}. Machine: {result['machine']['cores']} "
        f"cores, shared with other work (load average {result['machine']['load_before']:.1f} "
        f"before, {result['machine']['load_after']:.1f} after), so the times are noisy; "
        f"Ray {result['versions']['ray']}, PyTorch {result['versions']['torch']}. The Ray sweep "
        f"took {abs(difference):.1f} s {'more' if difference >= 0 else 'less'} than the local one "
        f"({difference / result['trials']:+.2f} s per trial); a sweep that starts its own local "
        f"Ray instance (`--ray-address auto` with no cluster running) adds the start-up.",
        END,
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--limit", type=int, default=2048, help="training digits per trial")
    parser.add_argument("--eval-limit", type=int, default=256)
    parser.add_argument("--json", default=str(REPO / "bench/results/ray_overhead.json"))
    parser.add_argument("--markdown", default=str(REPO / "BENCHMARKS.md"))
    args = parser.parse_args()
    # The bench's own short-lived instance: no token for it written into ~/.ray.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray = import_ray()
    specs = trials(args.limit, args.eval_limit)
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="ray-overhead-"))
    try:
        rounds = [one_round(ray, specs, work) for _ in range(args.rounds)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {
        key: statistics.median(r[key] for r in rounds) for key in rounds[0] if key != "same_numbers"
    }
    summary["ratio"] = round(summary["ray_seconds"] / summary["local_seconds"], 3)
    result = {
        "trials": len(specs),
        "limit": args.limit,
        "eval_limit": args.eval_limit,
        "rounds": args.rounds,
        "threads_per_trial": THREADS,
        "per_round": rounds,
        "summary": summary,
        "same_numbers": all(r["same_numbers"] for r in rounds),
        "machine": {
            "cores": available_cores(),
            "platform": platform.platform(),
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
        },
        "versions": {"ray": ray.__version__, "torch": torch.__version__},
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    replace_section(Path(args.markdown), START, END, markdown(result))
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.json} and {args.markdown}")
    return 0 if result["same_numbers"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
