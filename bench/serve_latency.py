"""Latency and throughput of the playground's ``POST /api/compress`` under 16 concurrent clients.

Starts ``mnistcodec serve --port 0`` (a fresh process per PyTorch thread
setting), then ``--clients`` client threads (16, then 1 for the latency of a
request alone), each on its own keep-alive HTTP
connection, post digits one request after another until ``--requests``
requests are answered; each request's latency is timed from sending to the
last byte of the answer. Two kinds of body, timed separately:

``test digits``
    MNIST test digits as exact 28x28 PNGs (``fit=false``): the codec alone.
``drawings``
    the same digits as 280x280 canvas-like PNGs (10x larger, white on black),
    fitted to MNIST's form first: what the page sends while someone draws.

Every answer must be a 200 with a bit string. Clients and server share the
machine's cores, so throughput is that of the machine, not of the server
alone. Prints a table, writes ``bench/results/serve_latency.json`` and the
section of ``BENCHMARKS.md`` between ``<!-- serve:start -->`` and
``<!-- serve:end -->``::

    python bench/serve_latency.py                      # 16 clients, then 1; 1000 requests per run
    python bench/serve_latency.py --threads 1,2        # server PyTorch threads 1, then 2
    python bench/serve_latency.py --quick --no-write   # a smoke run
    python bench/serve_latency.py --from-json bench/results/serve_latency.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmd import replace_section  # noqa: E402
from mnistcodec.data import load_split  # noqa: E402
from mnistcodec.storage.images import encode_png  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- serve:start -->", "<!-- serve:end -->"
PERCENTILES = (50, 90, 99)


@contextmanager
def server(model: str, threads: int):
    """A ``mnistcodec serve`` process on a free port: yields ``(host, port)``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "stdout.txt"
        command = [sys.executable, "-m", "mnistcodec", "serve", "--port", "0"]
        command += ["--model", model, "--threads", str(threads)]
        with open(out, "w") as handle:
            process = subprocess.Popen(command, stdout=handle, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while "http://" not in out.read_text():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("mnistcodec serve did not start")
                time.sleep(0.1)
            address = out.read_text().split("http://", 1)[1].split("/", 1)[0]
            host, port = address.rsplit(":", 1)
            yield host, int(port)
        finally:
            process.terminate()
            process.wait(timeout=30)


def bodies(count: int) -> dict[str, tuple[str, list[bytes]]]:
    """The two kinds of request: ``(query, bodies)`` by name."""
    digits = load_split("test").images[:count]
    drawings = [
        encode_png(np.asarray(Image.fromarray(d).resize((280, 280), Image.Resampling.BILINEAR)))
        for d in digits
    ]
    return {
        "test digits": ("fit=false", [encode_png(d) for d in digits]),
        "drawings": ("fit=true", drawings),
    }


def run_clients(
    host: str, port: int, query: str, payloads: list[bytes], clients: int, requests: int
) -> dict:
    """``requests`` posts by ``clients`` threads: latencies (s), wall time, failures."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=60)
        headers = {"Content-Type": "image/png"}
        for index in counter:  # shared: each request is taken by one client
            body = payloads[index % len(payloads)]
            start = time.perf_counter()
            connection.request("POST", f"/api/compress?{query}", body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            elapsed = time.perf_counter() - start
            ok = response.status == 200 and "string_hex" in json.loads(data)
            with lock:
                latencies.append(elapsed)
                if not ok:
                    failures.append(f"{response.status}: {data[:200]!r}")
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    return {"latencies": latencies, "wall_s": wall, "failures": failures}


def summary(run: dict) -> dict:
    ms = 1000 * np.asarray(run["latencies"])
    out = {f"p{p}_ms": float(np.percentile(ms, p)) for p in PERCENTILES}
    out.update(
        mean_ms=float(ms.mean()),
        max_ms=float(ms.max()),
        requests=int(ms.size),
        wall_s=run["wall_s"],
        requests_per_s=ms.size / run["wall_s"],
        failures=len(run["failures"]),
    )
    return out


def markdown(result: dict) -> str:
    config = result["config"]
    clients = " or ".join(str(c) for c in sorted({run["clients"] for run in result["runs"]}))
    lines = [
        START,
        "## The playground under load",
        "",
        f"Written by `python bench/serve_latency.py` (`bench/results/serve_latency.json`): "
        f"`mnistcodec serve --model {config['model']}` and client threads ({clients} at once) on "
        f"the same {result['machine']['cpus']}-core machine, each on its own keep-alive "
        "connection, "
        f"posting to `POST /api/compress` (default level) until {config['requests']} requests are "
        "answered, after a warm-up; latency from sending to the last byte of the answer. "
        "*Test digits*: 28x28 MNIST PNGs coded as they are (`fit=false`); *drawings*: the "
        "same digits as 280x280 PNGs, fitted to MNIST's form first, as the page sends them. "
        f"Load average {result['machine']['load_before'][0]:.1f} before, "
        f"{result['machine']['load_after'][0]:.1f} after (other work shares the machine).",
        "",
        "| clients | body | server PyTorch threads | requests | p50 ms | p90 ms | p99 ms | max ms "
        "| requests/s | failed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in result["runs"]:
        s = run["summary"]
        lines.append(
            f"| {run['clients']} | {run['kind']} | {run['threads']} | {s['requests']} | {s['p50_ms']:.1f} | "
            f"{s['p90_ms']:.1f} | {s['p99_ms']:.1f} | {s['max_ms']:.1f} | "
            f"{s['requests_per_s']:.0f} | {s['failures']} |"
        )
    lines += [
        "",
        "Each request runs its PyTorch work in a worker thread; `mnistcodec serve` gives PyTorch "
        "one intra-op thread by default (`--threads`), so the cores serve concurrent requests "
        "rather than one digit's small matrix products. A request alone takes the single-client "
        "latency; with 16 clients the server answers more requests per second (PyTorch and the "
        "network overlap the Python work, which holds one core at a time), and each request "
        "mostly waits for the ones ahead of it: the median is near 16 divided by the throughput.",
        END,
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="vr")
    parser.add_argument(
        "--clients", default="16,1", help="concurrent clients, comma-separated (default 16,1)"
    )
    parser.add_argument("--requests", type=int, default=1000, help="timed requests per run")
    parser.add_argument("--warmup", type=int, default=64, help="untimed requests first")
    parser.add_argument("--threads", default="1", help="server PyTorch threads, comma-separated")
    parser.add_argument("--quick", action="store_true", help="100 requests per run")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--from-json", default=None, metavar="PATH", help="rewrite the section from a results file"
    )
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "serve_latency.json"))
    parser.add_argument("--markdown", default=str(REPO / "BENCHMARKS.md"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        replace_section(
            Path(args.markdown), START, END, markdown(json.loads(Path(args.from_json).read_text()))
        )
        return 0
    if args.quick:
        args.requests, args.warmup = 100, 16
    kinds = bodies(256)
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_before": list(os.getloadavg()),
    }
    runs = []
    for threads in [int(t) for t in args.threads.split(",")]:
        with server(args.model, threads) as (host, port):
            for clients in [int(c) for c in args.clients.split(",")]:
                for kind, (query, payloads) in kinds.items():
                    run_clients(host, port, query, payloads, clients, args.warmup)
                    run = run_clients(host, port, query, payloads, clients, args.requests)
                    if run["failures"]:
                        print(f"failed requests: {run['failures'][:3]}", file=sys.stderr)
                    runs.append(
                        {
                            "threads": threads,
                            "clients": clients,
                            "kind": kind,
                            "summary": summary(run),
                        }
                    )
                    s = runs[-1]["summary"]
                    print(
                        f"threads {threads}, {clients} clients, {kind}: p50 {s['p50_ms']:.1f} ms, "
                        f"p90 {s['p90_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms, "
                        f"{s['requests_per_s']:.0f} requests/s, {s['failures']} failed"
                    )
    machine["load_after"] = list(os.getloadavg())
    config = {k: getattr(args, k) for k in ("model", "clients", "requests", "warmup")}
    result = {"config": config, "machine": machine, "runs": runs}
    if not args.no_write:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        replace_section(Path(args.markdown), START, END, markdown(result))
        print(f"wrote {args.json} and the serve section of {args.markdown}")
    return 1 if any(run["summary"]["failures"] for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
