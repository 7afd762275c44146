"""What the benchmark scripts share: the sections of BENCHMARKS.md each owns, and the CPU's name."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path

MANIFEST = (
    Path(__file__).resolve().parents[1] / "src" / "mnistcodec" / "pretrained" / "MANIFEST.json"
)


def replace_section(path: Path, start: str, end: str, section: str) -> None:
    """Replace the text between ``start`` and ``end`` (markers included) with ``section``.

    Everything else in ``path`` is kept; without the markers the section is
    appended. The file is replaced atomically.
    """
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1]
        text = head + section.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), for every speed figure."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_stamp() -> dict:
    """``cpu``, ``cpu_flags`` (those that select kernels) and ``when``, for a speed result."""
    from mnistcodec.coding.calibration import machine_record  # lazy: imports torch

    return {
        "cpu": cpu_name(),
        "cpu_flags": machine_record()["cpu_flags"],
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_outputs(
    result: dict, json_path: Path, markdown_path: Path, start: str, end: str, section: str
) -> None:
    """Write ``result`` as JSON and ``section`` between ``start`` and ``end`` of ``markdown_path``."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    replace_section(Path(markdown_path), start, end, section)
    print(f"wrote {json_path} and {markdown_path}")


def shipped_level_points(name: str, keep: Sequence[str]) -> list[dict]:
    """A shipped model's level evaluations as its file records them (``evaluation_levels`` in
    ``pretrained/MANIFEST.json``, re-derived by ``mnistcodec models --check``), ``keep`` keys only."""
    rows = json.loads(MANIFEST.read_text())[name]["evaluation_levels"]
    return [{k: p[k] for k in keep if k in p} for p in rows]
