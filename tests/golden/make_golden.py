"""Write the golden files of ``test_golden.py`` with the command line (run once per format change).

For every shipped model: test digits 0-23 coded per digit and as one stream in
the current format, version 3 (``<model>.v3.per-digit.mnc``,
``<model>.v3.stream.mnc``), and the digits both decode to
(``<model>.decoded.idx``); a variable-rate model codes them at its reference
level (the default of ``compress``). The files that earlier versions wrote
(``<model>.per-digit.mnc``, ``<model>.stream.mnc``: format 1, or 2 for a
variable-rate model) are never rewritten; where they exist, the new files must
decode to the digits they decode to. Usage:
``python tests/golden/make_golden.py [NAME ...]`` (default: every shipped model).
"""

from __future__ import annotations

import sys
from pathlib import Path

from mnistcodec.cli import main
from mnistcodec.coding.container import VERSION

GOLDEN_DIR = Path(__file__).resolve().parent
INDEX = "0:24"
MODES = {"per-digit": [], "stream": ["--stream"]}


def shipped_names() -> list[str]:
    manifest = GOLDEN_DIR.parents[1] / "src" / "mnistcodec" / "pretrained"
    return sorted(p.name.removesuffix(".safetensors") for p in manifest.glob("*.safetensors"))


def write_golden(names: list[str] | None = None) -> None:
    for name in names or shipped_names():
        for mode, flags in MODES.items():
            out = GOLDEN_DIR / f"{name}.v{VERSION}.{mode}.mnc"
            argv = [
                "compress",
                name,
                "--split",
                "test",
                "--index",
                INDEX,
                "-o",
                str(out),
                "--force",
                "--precision",
                "fp32",
            ]
            if main(argv + flags) != 0:
                sys.exit(f"compress failed for {name} ({mode})")
        decoded = GOLDEN_DIR / f"{name}.decoded.idx"
        fresh = GOLDEN_DIR / f"{name}.decoded.new.idx"
        argv = ["decompress", name, str(GOLDEN_DIR / f"{name}.v{VERSION}.per-digit.mnc")]
        if main([*argv, "-o", str(fresh), "--force", "--precision", "fp32"]) != 0:
            sys.exit(f"decompress failed for {name}")
        if decoded.exists() and decoded.read_bytes() != fresh.read_bytes():
            fresh.unlink()
            sys.exit(f"{name}: the new files decode to other digits than the earlier ones")
        fresh.replace(decoded)


if __name__ == "__main__":
    write_golden(sys.argv[1:])
