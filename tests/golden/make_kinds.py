"""Write the golden files of versions and model kinds (run once; they never change).

docs/mnc-format.md settles that every version decodes with every model kind:
``kinds.vr-balanced.version-1.mnc`` is a version-1 file (no levels, byte
strings) of a variable-rate model, whose digits are therefore at level 0, and
``kinds.seed-lmbda2000.version-2.mnc`` a version-2 file (levels ``00 00``,
byte strings) of a fixed-rate model. Neither kind was written by a release,
but both are valid. Each holds MNIST test digits 0-7 in two per-digit blocks
of 4; ``kinds.latents.json`` has their integer latents. Usage:
``python tests/golden/make_kinds.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mnistcodec.coding.api import Codec
from mnistcodec.coding.container import VERSION_1, Block, Header, encode_file
from mnistcodec.data import load_split

GOLDEN_DIR = Path(__file__).resolve().parent
FILES = {"vr-balanced": VERSION_1, "seed-lmbda2000": 2}
DIGITS, BLOCK_SIZE = 8, 4


def main() -> None:
    images = load_split("test").images[:DIGITS]
    record = {}
    for name, version in FILES.items():
        codec = Codec.from_model(name, device="cpu", precision="fp32")
        coder = codec.coders[0]
        k, _ = codec.analyse(images, 0)
        blocks = []
        for first in range(0, DIGITS, BLOCK_SIZE):
            symbols = coder.to_symbols(k[first : first + BLOCK_SIZE])
            strings = coder.encode_strings(symbols, "byte")
            levels = [] if version == VERSION_1 else [0]
            blocks.append(Block(len(strings), strings=strings, levels=levels))
        fingerprint = bytes.fromhex(codec.fingerprint)
        header = Header("per-digit", DIGITS, BLOCK_SIZE, fingerprint, version=version)
        (GOLDEN_DIR / f"kinds.{name}.version-{version}.mnc").write_bytes(
            encode_file(header, blocks)
        )
        record[f"kinds.{name}.version-{version}.mnc"] = k.astype(np.int64).tolist()
    (GOLDEN_DIR / "kinds.latents.json").write_text(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
