#!/usr/bin/env python3
"""Start-up: whole-process times of the light commands and of one-digit coding.

    python bench/startup.py            # 7 runs per command, writes BENCHMARKS.md's section
    python bench/startup.py --runs 3

Each command runs as a new process, the way a user or a script calls it. The
commands are ``--version``, ``--help``, ``inspect`` (none imports PyTorch),
and ``compress`` and ``decompress`` of one digit with ``seed-lmbda2000``. Each
row gives the minimum, median and maximum wall time, and whether the process
imported torch. The same one-digit file is also decoded without mnistcodec or
PyTorch: the ONNX Runtime example of docs/onnx-export.md, on the model's
export (``mnistcodec export --onnx``). That is the alternative inference path
the coding commands could take.

Results go to ``bench/results/startup.json`` and to the section of
``BENCHMARKS.md`` between ``<!-- startup:start -->`` and
``<!-- startup:end -->``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from benchmd import replace_section  # noqa: E402

START, END = "<!-- startup:start -->", "<!-- startup:end -->"
MODEL = "seed-lmbda2000"


def mnistcodec_cli() -> list[str]:
    return [sys.executable, "-m", "mnistcodec"]


def run_timed(argv: list[str], runs: int, env: dict) -> dict:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.strip()[-500:]}")
    return {"min": min(times), "median": statistics.median(times), "max": max(times)}


def imports_torch(argv_tail: list[str], env: dict) -> bool:
    """Whether ``mnistcodec ARGV`` imports torch (checked at exit through ``sys.modules``)."""
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as flag:
        code = (
            "import sys, atexit\n"
            f"atexit.register(lambda: open({flag.name!r}, 'w').write(str('torch' in sys.modules)))\n"
            "from mnistcodec.cli import main\n"
            f"sys.exit(main({argv_tail!r}))\n"
        )
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True)
        return Path(flag.name).read_text() == "True"


def ort_script(tmp: Path, export: Path, mnc: Path) -> Path:
    """The documented ONNX Runtime decoder, as a script decoding ``mnc``."""
    text = (REPO / "docs" / "onnx-export.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, re.S)
    script = tmp / "ort_decode.py"
    script.write_text(code + f"\nprint(decode_mnc({str(export)!r}, {str(mnc)!r}).shape)\n")
    return script


def measure(runs: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    with tempfile.TemporaryDirectory(prefix="mnistcodec-startup-") as name:
        tmp = Path(name)
        mnc, png, export = tmp / "one.mnc", tmp / "one.png", tmp / "onnx"
        one = ["--split", "test", "--index", "0:1"]
        subprocess.run(
            [*mnistcodec_cli(), "compress", MODEL, *one, "-o", str(mnc)],
            env=env,
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*mnistcodec_cli(), "export", MODEL, "--onnx", str(export)],
            env=env,
            check=True,
            capture_output=True,
        )
        commands = {
            "mnistcodec --version": ["--version"],
            "mnistcodec --help": ["--help"],
            "mnistcodec inspect one.mnc": ["inspect", str(mnc)],
            f"mnistcodec compress {MODEL} (one test digit)": [
                "compress",
                MODEL,
                *one,
                "-o",
                str(tmp / "again.mnc"),
                "--force",
            ],
            "mnistcodec decompress one.mnc": ["decompress", str(mnc), "-o", str(png), "--force"],
        }
        rows = []
        for label, tail in commands.items():
            row = {"command": label, **run_timed([*mnistcodec_cli(), *tail], runs, env)}
            row["imports_torch"] = imports_torch(tail, env)
            rows.append(row)
        script = ort_script(tmp, export, mnc)
        row = {"command": "ONNX Runtime decode of one.mnc (docs/onnx-export.md)"}
        row.update(run_timed([sys.executable, str(script)], runs, env))
        row["imports_torch"] = False
        rows.append(row)
        python = run_timed([sys.executable, "-c", "pass"], runs, env)
        torch_import = run_timed([sys.executable, "-c", "import torch"], runs, env)
        ort_import = run_timed([sys.executable, "-c", "import onnxruntime"], runs, env)
    return {
        "rows": rows,
        "python_alone": python,
        "import_torch": torch_import,
        "import_onnxruntime": ort_import,
    }


def markdown(result: dict) -> str:
    lines = [
        START,
        "## Start-up",
        "",
        f"Written by `{result['command']}`, {result['started']}: each command is a new process,"
        f" {result['runs']} runs, min / **median** / max wall seconds (load average at the start"
        f" {', '.join(f'{x:.1f}' for x in result['load_average'])}).",
        "",
        "| command | seconds | imports torch |",
        "| --- | --- | --- |",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['command']} | {row['min']:.2f} / **{row['median']:.2f}** / {row['max']:.2f}"
            f" | {'yes' if row['imports_torch'] else 'no'} |"
        )
    for key, label in (
        ("python_alone", "python -c pass"),
        ("import_torch", "python -c 'import torch'"),
        ("import_onnxruntime", "python -c 'import onnxruntime'"),
    ):
        t = result[key]
        lines.append(f"| {label} | {t['min']:.2f} / **{t['median']:.2f}** / {t['max']:.2f} | |")
    rows = {row["command"].split(" (")[0]: row for row in result["rows"]}
    decode = rows["mnistcodec decompress one.mnc"]["median"]
    ort = rows["ONNX Runtime decode of one.mnc"]["median"]
    lines += [
        "",
        f"A one-digit `decompress` takes {decode:.2f} s, and importing PyTorch alone"
        f" {result['import_torch']['median']:.2f} s: the import is nearly all of it. The ONNX"
        " Runtime route decodes the same file in"
        f" {ort:.2f} s ({decode / ort:.1f}x faster). But it is a second implementation of the"
        " synthesis, whose float sums land one grey level apart in rare pixels (one pixel of"
        " the 24 golden digits of `seed-lmbda2000`, docs/onnx-export.md). So the commands keep"
        " PyTorch: one reference path whose pixels the golden files pin down. The export is the"
        " light runtime for deployments (`mnistcodec export --onnx`).",
    ]
    lines.append(END)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--markdown", default=str(REPO / "BENCHMARKS.md"))
    p.add_argument("--json", default=str(REPO / "bench" / "results" / "startup.json"))
    args = p.parse_args(argv)
    result = {
        "command": "python bench/startup.py" + (f" --runs {args.runs}" if args.runs != 7 else ""),
        "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "runs": args.runs,
        "load_average": os.getloadavg(),
        **measure(args.runs),
    }
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    section = markdown(result)
    replace_section(Path(args.markdown), START, END, section)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
