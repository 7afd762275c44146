"""Write the overflow golden files of ``test_conformance.py`` (run once; they never change).

Seven chosen latent vectors for ``seed-lmbda2000``, escapes of every kind
included (values just outside the table, float32 extremes, exponents that fill
16-bit chunks exactly or leave a remainder, the largest exponent 129), coded
per digit and as streams in blocks of 3 digits: ``overflow.per-digit.mnc``,
``overflow.stream.mnc`` (format version 1, as first written), their version-3
counterparts ``overflow.v3.per-digit.mnc`` and ``overflow.v3.stream.mnc``, and
the latents themselves in ``overflow.latents.json``. Usage:
``python tests/golden/make_overflow.py`` (``--v3``: write only the version-3
files, leaving the version-1 files as they are).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from mnistcodec.coding.container import VERSION, VERSION_1, Block, Header, encode_file
from mnistcodec.coding.range_coder import LatentCoder
from mnistcodec.coding.zoo import resolve_model

GOLDEN_DIR = Path(__file__).resolve().parent
MODEL = "seed-lmbda2000"
BLOCK_SIZE = 3
FLOAT32_MAX = int(np.finfo(np.float32).max)


def latent_vectors(dims: int = 50) -> list[list[int]]:
    rng = np.random.default_rng(0)
    extremes = [-6, 6, 2**40, -(2**24) - 1, int(np.float32(3e38)), -(2**127), FLOAT32_MAX]
    extremes += [2**15, 2**16, 2**129 - 1, -(2**129 - 1)]
    sparse = rng.integers(-2, 3, size=dims).tolist()
    for dim in (3, 17, 40):
        sparse[dim] = int(rng.integers(-(10**6), 10**6)) * 37
    return [
        extremes + [0] * (dims - len(extremes)),
        rng.integers(-2, 3, size=dims).tolist(),
        [(-1) ** i * (6 + 7 * i) for i in range(dims)],
        [5 if i % 2 else -5 for i in range(dims)],
        [0] * dims,
        [0] * (dims - 1) + [-(2**40)],
        sparse,
    ]


def write_overflow_golden(only_v3: bool = False) -> None:
    loaded = resolve_model(MODEL)
    coder = LatentCoder(loaded.tables)
    latents = latent_vectors(loaded.tables.latent_dims)
    fingerprint = bytes.fromhex(loaded.fingerprint)
    versions = {VERSION: ("bit", "v3."), VERSION_1: ("byte", "")}
    for version in [VERSION] if only_v3 else versions:
        granularity, infix = versions[version]
        per_digit, stream = [], []
        for first in range(0, len(latents), BLOCK_SIZE):
            part = latents[first : first + BLOCK_SIZE]
            symbols = coder.to_symbols(np.array(part, dtype=object))
            strings = coder.encode_strings(symbols, granularity)
            levels = [0] if version != VERSION_1 else []
            per_digit.append(Block(len(part), strings=strings, levels=levels))
            stream.append(Block(len(part), stream=coder.encode_stream(symbols), levels=levels))
        for mode, blocks in (("per-digit", per_digit), ("stream", stream)):
            header = Header(mode, len(latents), BLOCK_SIZE, fingerprint, version=version)
            data = encode_file(header, blocks)
            (GOLDEN_DIR / f"overflow.{infix}{mode}.mnc").write_bytes(data)
    record = {"model": MODEL, "block_size": BLOCK_SIZE, "latents": latents}
    (GOLDEN_DIR / "overflow.latents.json").write_text(json.dumps(record) + "\n")


if __name__ == "__main__":
    write_overflow_golden(only_v3="--v3" in sys.argv[1:])
