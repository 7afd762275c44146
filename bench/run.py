#!/usr/bin/env python3
"""Benchmark suite: mnistcodec side by side with the seed's own TensorFlow stack.

    python bench/run.py              # full suite (several minutes; `make bench`)
    python bench/run.py --quick      # tiny subsets, ours only (`make bench-quick`)

What is measured, for ours and for the peer (TensorFlow 2.14.1 +
tensorflow-compression 2.14.1 running ``bench/peer/tf_seed.py`` in its own
virtualenv, ``bench/peer/setup_peer.sh``):

* training of the seed configuration (lambda 2000, 50 latents, batch 128):
  seconds per epoch (each epoch includes validation on the test split, as both
  the tutorial and ``mnistcodec train`` do), training digits per second;
* coding of the test digits: encode and decode digits per second with the whole
  set in one call (per-digit strings; ours also in stream mode), and
  single-digit latency;
* peak resident memory (RSS) of the training and of the coding processes;
* the coding of the same digits with the shipped default model
  (``--default-model``, ``mnistcodec.coding.zoo.DEFAULT_MODEL``), against the
  peer's seed model.

The machine record holds the CPU model and the flags that select kernels, and
each coding run records the inference engine it ran (``precision="auto"``: the
calibrated choice, see ``mnistcodec.coding.calibration``).

Every measurement runs in a fresh process, ours and the peer's alternating
round by round, so both see the same machine load; figures are reported as
min / median / max over epochs, repeats and rounds, with the ratio of the
medians. Results go to ``bench/results/bench-<time>.json`` and to the section
of ``BENCHMARKS.md`` for this CPU kind, between ``<!-- bench:KIND:start -->`` and
``<!-- bench:KIND:end -->`` (KIND: the CPU model and its widest vector units), so
that every kind met keeps its own table; the rest of that file is left alone.

Threads: the peer uses TensorFlow's default pools (one thread per core). Ours
is measured with torch's default (one thread per core: training splits each
batch across threads, see ``mnistcodec.training.threading``) and, in the full suite, also
with one thread (``--ours-threads``); on a shared, loaded machine the two differ.
Training uses the library's default threading (``auto``: intra-op threads on a
machine that is not oversubscribed, batch shards on a busy one); the mode used
is recorded. CPU time (user + system, all threads) of each training process is
reported besides wall time: it does not depend on the share of the machine a
process got.

Instruction-set caps (``--isa-cap avx2`` or ``avx512``) run both sides with the
kernels of a smaller CPU (``ISA_CAPS``: oneDNN's, which TensorFlow uses too,
PyTorch's own and MKL's): the nearest stand-in for an AVX2 or a plain AVX-512 CPU
on a machine with more. It is a stand-in, not that CPU: caches, clocks and
cores stay this machine's. ONNX Runtime ignores the caps, so the calibration
does not measure it there. The CPU kind of the results says the cap.

Without the peer's virtualenv the suite says so and reports ours only.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmd import replace_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PEER_SCRIPT = REPO / "bench" / "peer" / "tf_seed.py"
DEFAULT_PEER_PYTHON = REPO / "bench" / ".peer-venv" / "bin" / "python"
RESULTS_DIR = REPO / "bench" / "results"
MARKDOWN = REPO / "BENCHMARKS.md"
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"

FULL = {
    "train_rounds": 2,
    "train_epochs": 2,
    "train_limit": None,
    "val_limit": None,
    "code_rounds": 2,
    "code_repeats": 3,
    "code_limit": None,
    "latency_calls": 50,
}
#: ``--isa-cap``: the environment that caps the kernels of both sides at an instruction set.
ISA_CAPS = {
    "avx2": {
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "DNNL_MAX_CPU_ISA": "AVX2",
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    },
    "avx512": {
        "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
        "DNNL_MAX_CPU_ISA": "AVX512_CORE",
        "ATEN_CPU_CAPABILITY": "avx512",
        "MKL_ENABLE_INSTRUCTIONS": "AVX512",
    },
}
QUICK = {
    "train_rounds": 1,
    "train_epochs": 2,
    "train_limit": 1280,
    "val_limit": 512,
    "code_rounds": 1,
    "code_repeats": 2,
    "code_limit": 512,
    "latency_calls": 10,
}


# -- measurement helpers (used inside the worker processes) ----------------------------------


def peak_rss_mib() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def summary(values: list[float]) -> dict:
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "n": len(values),
        "values": values,
    }


# -- workers: ours ---------------------------------------------------------------------------


def worker_train(spec: dict) -> dict:
    """Train the seed configuration; epoch times from the training history."""
    import torch

    from mnistcodec.coding.model_files import load_model
    from mnistcodec.data import load_split
    from mnistcodec.model.compression_model import ModelConfig
    from mnistcodec.training.loop import TrainConfig, train, validate

    config = TrainConfig(
        epochs=spec["epochs"],
        limit=spec["limit"],
        val_limit=spec["val_limit"],
        seed=spec["seed"],
        device="cpu",
        precision=spec.get("precision", "auto"),
    )
    t0 = time.perf_counter()
    result = train(
        ModelConfig(), config, spec["out"], force=True, progress=False, log=lambda _: None
    )
    total = time.perf_counter() - t0
    train_rss = peak_rss_mib()
    # Validation's share of an epoch, timed on the trained model (warm, same process).
    val = torch.from_numpy(load_split("test").images[: spec["val_limit"]])
    loaded = load_model(spec["out"])
    model = loaded.model
    val_times = []
    for _ in range(3):
        t = time.perf_counter()
        validate(model, val)
        val_times.append(time.perf_counter() - t)
    n = len(load_split("train").images[: spec["limit"]])
    last = result.history[-1]
    return {
        "epoch_seconds": [r.seconds for r in result.history],
        "validation_seconds": statistics.median(val_times),
        "train_digits": n,
        "validation_digits": int(val.shape[0]),
        "steps_per_epoch": -(-n // config.batch_size),
        "total_seconds": total,
        "final": {"val_rate": last.val_rate, "val_distortion": last.val_distortion},
        "peak_rss_mib": train_rss,
        "threads": torch.get_num_threads(),
        "threading": loaded.metadata["training"]["threading_used"],
        "precision": loaded.metadata["training"]["precision_used"],
    }


def worker_code(spec: dict) -> dict:
    """Encode and decode the test digits with a trained model."""
    import numpy as np
    import torch

    from mnistcodec.coding.api import Codec
    from mnistcodec.data import load_split
    from mnistcodec.experiments import metrics

    images = load_split("test").images[: spec["limit"]]
    n = int(images.shape[0])
    from mnistcodec.coding.calibration import CALIBRATION_MIN_DIGITS

    codec = Codec.from_model(spec["model"], precision=spec.get("precision", "auto"))
    # Warm-up, and (precision auto) the engine calibration, once per machine and model: a call
    # large enough to trigger it, so that it is never inside a timed call.
    warm = images[: max(256, CALIBRATION_MIN_DIGITS)]
    codec.decompress(codec.compress(warm)[0])
    out: dict = {"digits": n, "threads": torch.get_num_threads(), **codec.engine.describe()}
    encode, decode, stream_encode, stream_decode = [], [], [], []
    strings = stream = decoded = None
    for _ in range(spec["repeats"]):
        t = time.perf_counter()
        strings, info = codec.compress(images)
        encode.append(n / (time.perf_counter() - t))
    for _ in range(spec["repeats"]):
        t = time.perf_counter()
        decoded = codec.decompress(strings)
        decode.append(n / (time.perf_counter() - t))
    for _ in range(spec["repeats"]):
        t = time.perf_counter()
        stream, _ = codec.compress_stream(images)
        stream_encode.append(n / (time.perf_counter() - t))
    for _ in range(spec["repeats"]):
        t = time.perf_counter()
        again = codec.decompress_stream(stream, n)
        stream_decode.append(n / (time.perf_counter() - t))
    if not np.array_equal(again, decoded):
        raise RuntimeError("stream and per-digit decoding disagree")
    one = images[:1]
    one_string = codec.compress(one)[0]
    enc1, dec1 = [], []
    for _ in range(spec["latency_calls"]):
        t = time.perf_counter()
        codec.compress(one)
        enc1.append(time.perf_counter() - t)
    for _ in range(spec["latency_calls"]):
        t = time.perf_counter()
        codec.decompress(one_string)
        dec1.append(time.perf_counter() - t)
    out.update(
        {
            "encode_digits_per_s": encode,
            "decode_digits_per_s": decode,
            "stream_encode_digits_per_s": stream_encode,
            "stream_decode_digits_per_s": stream_decode,
            "single_encode_ms": [1e3 * t for t in enc1],
            "single_decode_ms": [1e3 * t for t in dec1],
            "string_bits_mean": float(np.mean([8 * len(s) for s in strings])),
            "stream_bits_per_digit": 8 * len(stream) / n,
            "information_bits_mean": float(info.mean()),
            "psnr_mean_of_per_digit_db": float(metrics.mean_psnr(images, decoded)),
            "peak_rss_mib": peak_rss_mib(),
        }
    )
    return out


WORKERS = {"train": worker_train, "code": worker_code}


# -- orchestration ---------------------------------------------------------------------------


def child_env(threads: int | None = None) -> dict:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "MNISTCODEC_DATA_DIR" not in env and SHARED_MNIST.is_dir():
        env["MNISTCODEC_DATA_DIR"] = str(SHARED_MNIST)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), *filter(None, [env.get("PYTHONPATH")])])
    return env


def run_child(cmd: list[str], env: dict, what: str) -> dict:
    """Run ``cmd``; return its wall and CPU seconds (user + system, all its threads)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"process_wall_seconds": wall, "process_cpu_seconds": cpu}


def run_ours(kind: str, spec: dict, tmp: Path, threads: int | None = None) -> dict:
    spec_path, out_path = tmp / f"{kind}-spec.json", tmp / f"{kind}-out.json"
    spec_path.write_text(json.dumps(spec))
    script = str(Path(__file__).resolve())
    cmd = [sys.executable, script, "--worker", kind, str(spec_path), str(out_path)]
    usage = run_child(cmd, child_env(threads), f"our {kind} worker")
    return {**json.loads(out_path.read_text()), **usage}


def run_peer(python: Path, args: list[str], tmp: Path, name: str) -> dict:
    out_path = tmp / f"peer-{name}.json"
    cmd = [str(python), str(PEER_SCRIPT), *args, "--json", str(out_path)]
    usage = run_child(cmd, child_env(), f"peer {name}")
    return {**json.loads(out_path.read_text()), **usage}


def peer_status(python: Path) -> str | None:
    """None when the peer's venv is usable, else why not."""
    if not python.exists():
        return f"no peer virtualenv at {python} (create it with bash bench/peer/setup_peer.sh)"
    probe = "import tensorflow, tensorflow_compression"
    proc = subprocess.run(
        [str(python), "-c", probe], env=child_env(), capture_output=True, text=True
    )
    if proc.returncode != 0:
        return f"the peer virtualenv does not import TensorFlow Compression: {proc.stderr.strip()[-300:]}"
    return None


def machine_info() -> dict:
    import importlib.metadata

    import numpy
    import torch

    from mnistcodec.coding.calibration import machine_record
    from mnistcodec.model.precision import bf16_matrix_units

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    config = torch.__config__.show()
    blas = []
    for line in config.splitlines():
        if "Math Kernel Library" in line:
            blas.append("MKL " + line.split("Version", 1)[-1].split("-")[0].strip())
        elif "MKL-DNN" in line:
            blas.append("oneDNN " + line.split("MKL-DNN", 1)[-1].split("(")[0].strip())
        elif "OpenBLAS" in line:
            blas.append(line.strip(" -"))
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "blas": blas,
        "numpy": numpy.__version__,
        "constriction": importlib.metadata.version("constriction"),
        "omp_wait_policy": child_env().get("OMP_WAIT_POLICY"),
        "bf16_matrix_units": bf16_matrix_units("cpu"),
        "cpu_flags": machine_record()["cpu_flags"],
        "cpu_flags_sha256": machine_record()["cpu_flags_sha256"],
        "onnxruntime": machine_record()["onnxruntime"],
        "isa_cap": isa_cap_in_force(),
        "kernel_caps": machine_record()["kernel_caps"],
    }


def isa_cap_in_force() -> str | None:
    """The ``--isa-cap`` whose environment is set (None: the CPU's own instruction sets)."""
    for name, env in ISA_CAPS.items():
        if all(os.environ.get(key) == value for key, value in env.items()):
            return name
    return None


def ratio(ours: float | None, peer: float | None) -> float | None:
    if ours is None or peer is None or peer == 0:
        return None
    return ours / peer


def run_suite(args: argparse.Namespace) -> dict:
    plan = dict(QUICK if args.quick else FULL)
    for key in ("train_rounds", "train_epochs", "train_limit", "code_rounds", "code_repeats"):
        if getattr(args, key) is not None:
            plan[key] = getattr(args, key)
    use_peer = not args.no_peer and (args.peer or not args.quick)
    peer_python = Path(args.peer_python)
    peer_reason = peer_status(peer_python) if use_peer else "not requested (--quick or --no-peer)"
    has_peer = use_peer and peer_reason is None
    log = args.log
    log(f"peer: {'TensorFlow stack at ' + str(peer_python) if has_peer else peer_reason}")

    configs = {config_label(t): t for t in args.ours_threads}
    results: dict = {
        "command": " ".join(["python", "bench/run.py", *args.argv]),
        "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "plan": plan,
        "precision": args.precision,
        "machine": machine_info(),
        "load_average_start": os.getloadavg(),
        "peer": {"available": has_peer, "reason": peer_reason},
        "ours": {label: {"threads": t, "train": [], "code": []} for label, t in configs.items()},
        "default_model": args.default_model,
        "ours_default_model": {"code": []},
        "peer_runs": {"train": [], "code": []},
    }
    with tempfile.TemporaryDirectory(prefix="mnistcodec-bench-") as tmp_name:
        tmp = Path(tmp_name)
        models = {label: tmp / f"ours-{i}.safetensors" for i, label in enumerate(configs)}
        peer_weights = tmp / "peer-ckpt" / "seed"
        for r in range(plan["train_rounds"]):
            for label, threads in configs.items():
                log(f"training round {r + 1}/{plan['train_rounds']}: ours ({label})")
                spec = {
                    "epochs": plan["train_epochs"],
                    "limit": plan["train_limit"],
                    "val_limit": plan["val_limit"],
                    "seed": r,
                    "precision": args.precision,
                    "out": str(models[label] if r == 0 else tmp / f"scratch-{r}.safetensors"),
                }
                results["ours"][label]["train"].append(run_ours("train", spec, tmp, threads))
            if has_peer:
                log(f"training round {r + 1}/{plan['train_rounds']}: peer")
                peer_args = ["train", "--epochs", str(plan["train_epochs"]), "--seed", str(r)]
                if plan["train_limit"]:
                    peer_args += ["--limit", str(plan["train_limit"])]
                if r == 0:
                    peer_args += ["--save-weights", str(peer_weights)]
                results["peer_runs"]["train"].append(run_peer(peer_python, peer_args, tmp, "train"))
        for r in range(plan["code_rounds"]):
            for label, threads in configs.items():
                log(f"coding round {r + 1}/{plan['code_rounds']}: ours ({label})")
                spec = {
                    "model": str(models[label]),
                    "limit": plan["code_limit"],
                    "repeats": plan["code_repeats"],
                    "latency_calls": plan["latency_calls"],
                    "precision": args.precision,
                }
                results["ours"][label]["code"].append(run_ours("code", spec, tmp, threads))
            if args.default_model:
                log(f"coding round {r + 1}/{plan['code_rounds']}: ours, {args.default_model}")
                spec = {
                    "model": args.default_model,
                    "limit": plan["code_limit"],
                    "repeats": plan["code_repeats"],
                    "latency_calls": plan["latency_calls"],
                    "precision": args.precision,
                }
                results["ours_default_model"]["code"].append(run_ours("code", spec, tmp))
            if has_peer:
                log(f"coding round {r + 1}/{plan['code_rounds']}: peer")
                peer_args = [
                    "code",
                    "--weights",
                    str(peer_weights),
                    "--repeats",
                    str(plan["code_repeats"]),
                    "--latency-calls",
                    str(plan["latency_calls"]),
                ]
                results["peer_runs"]["code"].append(run_peer(peer_python, peer_args, tmp, "code"))
    results["load_average_end"] = os.getloadavg()
    results["finished"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    results["figures"] = figures(results)
    return results


def config_label(threads: int) -> str:
    return "default threads" if not threads else f"{threads} thread" + ("s" if threads > 1 else "")


def figures(results: dict) -> list[dict]:
    """Table rows: name, unit, direction, a summary per side (ours per thread setting, peer)."""
    peer_train, peer_code = results["peer_runs"]["train"], results["peer_runs"]["code"]

    def pool(runs: list[dict], key: str) -> list[float]:
        return [v for run in runs for v in (run[key] if isinstance(run[key], list) else [run[key]])]

    def per_epoch(runs: list[dict], key: str) -> list[float]:
        return [run[key] / len(run["epoch_seconds"]) for run in runs]

    def ours_rows(train: list[dict], code: list[dict]) -> dict[str, list[float]]:
        epochs = [(run, s) for run in train for s in run["epoch_seconds"]]
        return {
            "epoch": pool(train, "epoch_seconds"),
            "train_part": [s - run["validation_seconds"] for run, s in epochs],
            "throughput": [
                run["train_digits"] / (s - run["validation_seconds"]) for run, s in epochs
            ],
            "validation": pool(train, "validation_seconds"),
            "cpu_per_epoch": per_epoch(train, "process_cpu_seconds"),
            "encode": pool(code, "encode_digits_per_s"),
            "decode": pool(code, "decode_digits_per_s"),
            "stream_encode": pool(code, "stream_encode_digits_per_s"),
            "stream_decode": pool(code, "stream_decode_digits_per_s"),
            "single_encode": pool(code, "single_encode_ms"),
            "single_decode": pool(code, "single_decode_ms"),
            "bits": pool(code, "string_bits_mean"),
            "rss_train": pool(train, "peak_rss_mib"),
            "rss_code": pool(code, "peak_rss_mib"),
        }

    peer_epochs = [e for run in peer_train for e in run["epochs"]]
    peer = {
        "epoch": [e["seconds"] for e in peer_epochs],
        "train_part": [e["train_seconds"] for e in peer_epochs],
        "throughput": [
            run["train_digits"] / e["train_seconds"] for run in peer_train for e in run["epochs"]
        ],
        "validation": [e["validation_seconds"] for e in peer_epochs],
        "cpu_per_epoch": [run["process_cpu_seconds"] / len(run["epochs"]) for run in peer_train],
        "encode": pool(peer_code, "compress_digits_per_s"),
        "decode": pool(peer_code, "decompress_digits_per_s"),
        "stream_encode": [],
        "stream_decode": [],
        "single_encode": [run["single_digit"]["compress_median_ms"] for run in peer_code],
        "single_decode": [run["single_digit"]["decompress_median_ms"] for run in peer_code],
        "bits": pool(peer_code, "string_bits_mean"),
        "rss_train": pool(peer_train, "peak_rss_mib"),
        "rss_code": pool(peer_code, "peak_rss_mib"),
    }
    ours = {label: ours_rows(c["train"], c["code"]) for label, c in results["ours"].items()}
    # The default model's coding (default threads only) against the peer's seed model.
    default_code = results.get("ours_default_model", {}).get("code", [])
    for i, label in enumerate(ours):
        for key, source in DEFAULT_MODEL_ROWS.items():
            ours[label][key] = pool(default_code, source) if i == 0 and default_code else []
            peer[key] = peer[source_key(source)]
    rows = []
    for key, name, unit, better in ROWS:
        peer_s = summary(peer[key]) if peer[key] else None
        sides = {label: summary(v[key]) if v[key] else None for label, v in ours.items()}
        rows.append(
            {
                "key": key,
                "name": name,
                "unit": unit,
                "better": better,
                "ours": sides,
                "peer": peer_s,
                "ratio": {
                    label: ratio(o and o["median"], peer_s and peer_s["median"])
                    for label, o in sides.items()
                },
            }
        )
    return rows


ROWS = [
    ("epoch", "training epoch (incl. validation)", "s", "lower"),
    ("train_part", "training part of an epoch", "s", "lower"),
    ("throughput", "training throughput", "digits/s", "higher"),
    ("validation", "validation pass (10,000 test digits)", "s", "lower"),
    ("cpu_per_epoch", "CPU time per epoch (whole run incl. start-up / epochs)", "CPU s", "lower"),
    ("encode", "encode, per-digit strings", "digits/s", "higher"),
    ("decode", "decode, per-digit strings", "digits/s", "higher"),
    ("stream_encode", "encode, one stream", "digits/s", "higher"),
    ("stream_decode", "decode, one stream", "digits/s", "higher"),
    ("single_encode", "single-digit encode latency", "ms", "lower"),
    ("single_decode", "single-digit decode latency", "ms", "lower"),
    ("bits", "string length", "bits/digit", "lower"),
    ("default_encode", "encode, the default model, per-digit strings", "digits/s", "higher"),
    ("default_decode", "decode, the default model, per-digit strings", "digits/s", "higher"),
    ("default_bits", "string length, the default model", "bits/digit", "lower"),
    ("rss_train", "peak RSS, training", "MiB", "lower"),
    ("rss_code", "peak RSS, coding", "MiB", "lower"),
]


#: Rows of the default model's coding: the worker's figure each comes from.
DEFAULT_MODEL_ROWS = {
    "default_encode": "encode_digits_per_s",
    "default_decode": "decode_digits_per_s",
    "default_bits": "string_bits_mean",
}


def source_key(worker_key: str) -> str:
    """The peer's row that a default-model row is compared with (the peer's seed model)."""
    return {"encode_digits_per_s": "encode", "decode_digits_per_s": "decode"}.get(
        worker_key, "bits"
    )


# -- reporting -------------------------------------------------------------------------------


def cpu_kind(machine: dict) -> tuple[str, str]:
    """``(slug, label)`` of the CPU kind: its model name and its widest vector units (under
    an instruction-set cap, the cap's units and the CPU's own)."""
    flags = set(machine.get("cpu_flags") or [])
    cap = machine.get("isa_cap")
    if cap:
        own = cpu_kind({**machine, "isa_cap": None})[1].split(", ", 1)[-1]
        capped = {"avx2": "AVX2", "avx512": "AVX-512"}[cap]
        label = f"{machine['cpu']}, {capped} kernels (capped on {own})"
        slug = "".join(c if c.isalnum() else "-" for c in label.lower())
        return "-".join(filter(None, slug.split("-"))), label
    if "amx_bf16" in flags:
        units = "AMX"
    elif "avx512_bf16" in flags:
        units = "AVX-512 + AVX512-BF16" + (" + VNNI" if "avx512_vnni" in flags else "")
    elif "avx512f" in flags:
        units = "AVX-512" + (" + VNNI" if "avx512_vnni" in flags else "")
    elif "avx2" in flags:
        units = "AVX2"
    else:
        units = "no AVX2"
    label = f"{machine['cpu']}, {units}"
    slug = "".join(c if c.isalnum() else "-" for c in label.lower())
    return "-".join(filter(None, slug.split("-"))), label


def markers(machine: dict) -> tuple[str, str]:
    """The markers of this CPU kind's section of BENCHMARKS.md (one section per kind met)."""
    slug = cpu_kind(machine)[0]
    return f"<!-- bench:{slug}:start -->", f"<!-- bench:{slug}:end -->"


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_summary(s: dict | None) -> str:
    if not s:
        return "-"
    return f"{fmt(s['min'])} / **{fmt(s['median'])}** / {fmt(s['max'])}"


def thread_label(label: str, train_runs: list[dict]) -> str:
    """``"default threads: 2, training intra-op"``: threads and the training threading mode used."""
    if not train_runs:
        return f"{label}: ?"
    threads = train_runs[0]["threads"]
    modes = sorted({str(r.get("threading")) for r in train_runs})
    return f"{label}: {threads}" + (f", training {'/'.join(modes)}" if threads > 1 else "")


def precision_note(results: dict) -> str:
    """The precision asked for, and what the coding workers ran."""
    units = results["machine"].get("bf16_matrix_units")
    ran = sorted(
        {
            c.get("precision", "fp32")
            if not isinstance(c.get("engine"), dict)
            else f"engines {c['engine']['encoder']} / {c['engine']['decoder']}"
            for o in results["ours"].values()
            for c in o["code"]
        }
    )
    hardware = "with" if units else "without"
    return (
        f"precision `{results.get('precision', 'auto')}` on a CPU {hardware} bf16 matrix units"
        f" (ran: {', '.join(ran) or 'fp32'})"
    )


def markdown(results: dict) -> str:
    m = results["machine"]
    peer = results["peer"]
    labels = list(results["ours"])
    thread_note = ", ".join(thread_label(label, c["train"]) for label, c in results["ours"].items())
    start, end = markers(m)
    lines = [
        start,
        f"## mnistcodec vs the seed's TensorFlow stack: {cpu_kind(m)[1]}",
        "",
        f"Written by `{results['command']}` ({'quick mode: tiny subsets' if results['quick'] else 'full suite'}),"
        f" {results['started']} to {results['finished']}.",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}; CPU flags that select"
        f" kernels: {', '.join(m.get('cpu_flags') or []) or 'none'} (all flags: SHA-256"
        f" {str(m.get('cpu_flags_sha256'))[:12]});"
        + (
            f" kernels capped at {m['isa_cap']} on both sides"
            f" ({', '.join(f'`{k}={v}`' for k, v in ISA_CAPS[m['isa_cap']].items())}),"
            " a stand-in for that CPU, not that CPU;"
            if m.get("isa_cap")
            else ""
        )
        + " load average"
        f" {', '.join(f'{x:.1f}' for x in results['load_average_start'])} at the start,"
        f" {', '.join(f'{x:.1f}' for x in results['load_average_end'])} at the end"
        " (the sides alternate run by run so that all see the same load).",
        f"- Ours: Python {m['python']}, torch {m['torch']}, {'; '.join(m['blas'])}, numpy"
        f" {m['numpy']}, constriction {m['constriction']}; `OMP_WAIT_POLICY={m['omp_wait_policy'] or 'unset'}`;"
        f" torch threads ({thread_note}); {precision_note(results)}.",
    ]
    if peer["available"] and results["peer_runs"]["train"]:
        env = results["peer_runs"]["train"][0]["environment"]
        versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
        lines.append(
            f"- Peer: `bench/peer/tf_seed.py` (the tutorial's model and training), Python"
            f" {env['python']}, {versions}; TensorFlow's default thread pools."
        )
    else:
        lines.append(f"- Peer: not measured ({peer['reason']}); ours only.")
    plan = results["plan"]
    train_set = f"the first {plan['train_limit']:,}" if plan["train_limit"] else "all 60,000"
    val_set = f"{plan['val_limit']:,}" if plan["val_limit"] else "the 10,000"
    code_set = f"{plan['code_limit']:,}" if plan["code_limit"] else "all 10,000"
    lines += [
        f"- Plan: {plan['train_rounds']} training round(s) of {plan['train_epochs']} epoch(s)"
        f" on {train_set} training digits (lambda 2000, 50 latents, batch 128, validation on"
        f" {val_set} test digits each epoch); {plan['code_rounds']} coding round(s) of"
        f" {plan['code_repeats']} repeat(s) with {code_set} test digits in one call, and single"
        f" digits {plan['latency_calls']} times.",
        "",
        "Each cell is min / **median** / max over epochs, repeats and rounds. Ratios: ours over"
        " peer (medians); for times lower is better, for throughputs higher is better.",
        "",
        "| figure | unit | "
        + " | ".join(f"ours, {label}" for label in labels)
        + " | peer | "
        + " | ".join(f"ratio ({label})" for label in labels)
        + " |",
        "| --- | --- | " + " | ".join("---" for _ in range(2 * len(labels) + 1)) + " |",
    ]
    for row in results["figures"]:
        ours_cells = " | ".join(fmt_summary(row["ours"][label]) for label in labels)
        ratio_cells = " | ".join(
            "-" if row["ratio"][label] is None else f"{row['ratio'][label]:.2f}x"
            for label in labels
        )
        lines.append(
            f"| {row['name']} | {row['unit']} | {ours_cells} | {fmt_summary(row['peer'])} | {ratio_cells} |"
        )
    headline = headline_lines(results)
    if headline:
        lines += ["", *headline]
    lines += [
        "",
        "Notes: the training epoch of both sides includes a validation pass over the test"
        " digits; ours is also timed alone (validation pass, same process, after training) and"
        " subtracted for the training part and the throughput. CPU time is user + system time of"
        " the whole training process (all its threads, start-up and saving included) divided by"
        " its epochs: unlike wall time it does not depend on how much of the machine the process"
        " got. Coding figures are whole-set calls through the public API (`Codec.compress` /"
        " `decompress`, `compress_stream` / `decompress_stream`; the peer's `MNISTCompressor` /"
        " `MNISTDecompressor`). The default model's rows code the same digits with the shipped"
        f" default model (`{results.get('default_model')}`, default threads) and compare them with"
        " the peer's seed model. Raw results: `bench/results/`.",
        end,
    ]
    return "\n".join(lines) + "\n"


TARGETS = [
    ("epoch", "lower", 0.9, "epoch time <= 0.9x the peer's"),
    ("encode", "higher", 1.5, "encode >= 1.5x the peer's digits/s"),
    ("decode", "higher", 1.2, "decode >= 1.2x the peer's digits/s"),
    ("default_encode", "higher", 1.5, "the default model's encode >= 1.5x the peer's (seed)"),
    ("default_decode", "higher", 1.2, "the default model's decode >= 1.2x the peer's (seed)"),
]


def headline_lines(results: dict) -> list[str]:
    rows = {row["key"]: row for row in results["figures"]}
    out = []
    for key, better, target, text in TARGETS:
        parts = []
        for label, r in rows[key]["ratio"].items():
            if r is None:
                continue
            met = r <= target if better == "lower" else r >= target
            parts.append(f"{label} {r:.2f}x ({'met' if met else 'not met'})")
        if parts:
            out.append(f"- {text}: {', '.join(parts)}.")
    for label, rss in rows["rss_train"]["ours"].items():
        if rss:
            out.append(
                f"- training peak RSS <= 1.5 GB ({label}): {fmt(rss['max'])} MiB,"
                f" {'met' if rss['max'] <= 1536 else 'not met'}."
            )
    return ["Targets (issue 26):", "", *out] if out else []


README_START, README_END = "<!-- speed:start -->", "<!-- speed:end -->"
README_ROWS = (
    ("epoch", "epoch time"),
    ("encode", "encode"),
    ("decode", "decode"),
    ("default_encode", "default model encode"),
    ("default_decode", "default model decode"),
)


def readme_section(results_dir: Path) -> str:
    """The README's speed table: the newest full-suite run of each CPU kind, ratios to the peer."""
    newest: dict[str, dict] = {}
    for path in sorted(results_dir.glob("bench-2*.json")):
        results = json.loads(path.read_text())
        machine = results.get("machine", {})
        if results.get("quick") or not machine.get("cpu_flags") or not results["peer_runs"]["code"]:
            continue  # quick runs, runs without the peer, and runs from before flags were kept
        newest[cpu_kind(machine)[0]] = {**results, "file": path.name}
    header = "| CPU | run | " + " | ".join(text for _, text in README_ROWS) + " |"
    lines = [README_START, header, "| --- " * (len(README_ROWS) + 2) + "|"]
    for results in newest.values():
        rows = {row["key"]: row for row in results["figures"]}
        cells = []
        for key, _ in README_ROWS:
            value = rows.get(key, {}).get("ratio", {}).get(config_label(0))
            cells.append("-" if value is None else f"{value:.2f}x")
        lines.append(
            f"| {cpu_kind(results['machine'])[1]} | `{results['file']}` | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join([*lines, README_END]) + "\n"


def write_markdown(path: Path, section: str) -> None:
    """Replace our section of ``path`` (between the markers), keeping everything else."""
    start, end = section.split("\n", 1)[0], section.rstrip("\n").rsplit("\n", 1)[-1]
    replace_section(path, start, end, section)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        kind, spec_path, out_path = argv[1:4]
        result = WORKERS[kind](json.loads(Path(spec_path).read_text()))
        Path(out_path).write_text(json.dumps(result))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny subsets, under a minute, ours only")
    p.add_argument("--peer", action="store_true", help="include the peer in --quick mode")
    p.add_argument("--no-peer", action="store_true", help="measure ours only")
    p.add_argument("--peer-python", default=str(DEFAULT_PEER_PYTHON), help="the peer venv's python")
    p.add_argument("--train-rounds", type=int, default=None)
    p.add_argument("--train-epochs", type=int, default=None)
    p.add_argument(
        "--train-limit",
        type=int,
        default=None,
        help="train on the first N training digits only (a shorter epoch; both sides)",
    )
    p.add_argument("--code-rounds", type=int, default=None)
    p.add_argument("--code-repeats", type=int, default=None)
    p.add_argument(
        "--ours-threads",
        default=None,
        help="comma-separated thread counts to measure ours with, 0 = torch's default"
        " (default: 0,1 for the full suite, 0 for --quick)",
    )
    p.add_argument(
        "--markdown",
        default=None,
        help="file to write the section into (default: BENCHMARKS.md, and for a full run also"
        " the README's speed table; a --quick run writes no markdown unless given one)",
    )
    p.add_argument(
        "--readme",
        default=str(REPO / "README.md"),
        help="README whose speed table a full run rewrites",
    )
    p.add_argument("--results-dir", default=str(RESULTS_DIR), help="where the JSON goes")
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="precision of ours (default auto: coding by the engine calibration, training in"
        " bf16 on AMX or AVX512-BF16)",
    )
    p.add_argument(
        "--default-model",
        default=None,
        help="shipped model whose coding is also measured against the peer's seed (default:"
        " the shipped default model; '' to skip)",
    )
    p.add_argument(
        "--isa-cap",
        choices=sorted(ISA_CAPS),
        default=None,
        help="cap both sides' kernels at this instruction set (a stand-in for a smaller CPU)",
    )
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    args.argv = argv
    if args.isa_cap:
        # Before torch is imported here, and inherited by every worker and the peer.
        os.environ.update(ISA_CAPS[args.isa_cap])
    if args.default_model is None:
        from mnistcodec.coding.zoo import DEFAULT_MODEL  # lazy: the parent only orchestrates

        args.default_model = DEFAULT_MODEL
    if args.ours_threads is None:
        args.ours_threads = "0" if args.quick else "0,1"
    args.ours_threads = [int(t) for t in args.ours_threads.split(",")]
    args.log = (lambda _msg: None) if args.quiet else (lambda msg: print(msg, flush=True))
    results = run_suite(args)
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = results["started"].replace(":", "").replace("+0000", "Z")
    json_path = results_dir / f"bench-{'quick-' if args.quick else ''}{stamp}.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    section = markdown(results)
    if args.markdown is None and args.quick:
        # A quick run's tiny subsets never replace a full run's figures.
        args.log(section)
        args.log(f"wrote {json_path}")
        return 0
    markdown_path = Path(args.markdown or MARKDOWN)
    write_markdown(markdown_path, section)
    written = [str(json_path), str(markdown_path)]
    if not args.quick and args.markdown is None:
        replace_section(Path(args.readme), README_START, README_END, readme_section(results_dir))
        written.append(args.readme)
    args.log(section)
    args.log(f"wrote {', '.join(written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
