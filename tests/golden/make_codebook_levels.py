"""Write the codebook-level golden files of ``vr-codebook`` (run once; never rewritten).

Test digits 0-23 coded at codebook level 2 (256 codewords) per digit and as one
stream (``vr-codebook.level-2.v3.<mode>.mnc``), and per digit at the levels
that ``--target-psnr 16`` chooses, which mix codebook and network levels
(``vr-codebook.target.v3.per-digit.mnc``); each with the digits it decodes to
(``<file stem>.digits.idx``). Usage: ``python tests/golden/make_codebook_levels.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mnistcodec.cli import main

GOLDEN_DIR = Path(__file__).resolve().parent
MODEL = "vr-codebook"
COMMON = ["--split", "test", "--index", "0:24", "--force", "--precision", "fp32"]
FILES = {
    "level-2.v3.per-digit": ["--level", "2"],
    "level-2.v3.stream": ["--level", "2", "--stream"],
    "target.v3.per-digit": ["--target-psnr", "16"],
}


def write() -> None:
    for stem, flags in FILES.items():
        out = GOLDEN_DIR / f"{MODEL}.{stem}.mnc"
        if main(["compress", MODEL, *COMMON, *flags, "-o", str(out)]) != 0:
            sys.exit(f"compress failed for {stem}")
        decoded = GOLDEN_DIR / f"{MODEL}.{stem}.digits.idx"
        argv = ["decompress", MODEL, str(out), "-o", str(decoded), "--force"]
        if main([*argv, "--precision", "fp32"]) != 0:
            sys.exit(f"decompress failed for {stem}")


if __name__ == "__main__":
    write()
