"""Fuzz the compressed-file reader and decoder and the model-file loader.

    .venv/bin/python tests/fuzz.py --cases 10000 --target all     # the full run (minutes)
    .venv/bin/python tests/fuzz.py --cases 500 --target mnc --seed 3
    .venv/bin/python tests/fuzz.py --target model --only 1234     # replay one case

Targets:

* ``mnc``: :func:`mnistcodec.coding.files.decompress_bytes` with a real (tiny)
  model, and :func:`~mnistcodec.coding.inspection.inspect_bytes`, on mutated
  ``.mnc`` files;
* ``model``: :func:`mnistcodec.coding.model_files.load_model_bytes` on mutated model
  files.

Cases are byte-level mutations of valid seed files, drawn by a generator
seeded per case (``--seed`` and the case number), so any case can be replayed
alone: random bytes, truncations (every length of each ``.mnc`` seed, and of
each model file's header region), bit flips with the checksums left wrong or
recomputed, header fields set to extreme values (zero, one, the largest value,
values negative when read signed, lengths past the end), payload and
length-field surgery behind valid checksums, structure-aware JSON edits of
model headers (sizes, types, nesting, non-finite numbers) with the content
hash left wrong, recomputed or removed, and valid files of other models.

Oracle: every case must end in decoded digits of the announced shape, or in
a :class:`~mnistcodec.errors.MnistCodecError` with a one-line message, within
``--timeout`` seconds and without growing the process by more than
``--memory-mb``. Anything else is a failure: its input is written to
``--corpus`` (default ``tests/corpus``), where ``tests/test_fuzz.py`` replays
it as a regression test.

The seed models are built here, deterministically, without data: random
initial weights (spread so that digits have distinct latents, escape codes
included) for the ``mnc`` target, and all-zero weights (which gzip to a few
kB, so mutated files fit the corpus), one per prior family, for ``model``.
Digits come from the MNIST test split when it is available
(``MNISTCODEC_DATA_DIR``), else from a fixed random pattern.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import resource
import signal
import struct
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mnistcodec.coding.api import Codec
from mnistcodec.coding.container import HEADER_SIZE, MAGIC, Block, Header, encode_file
from mnistcodec.coding.files import compress_to_bytes, decompress_bytes
from mnistcodec.coding.inspection import inspect_bytes
from mnistcodec.coding.model_files import load_model_bytes, save_model
from mnistcodec.errors import MnistCodecError
from mnistcodec.model.compression_model import CompressionModel, ModelConfig
from mnistcodec.model.priors import PRIORS
from mnistcodec.storage.atomic import atomic_write, atomic_write_text
from mnistcodec.storage.model_container import CONTENT_KEY, METADATA_KEY, content_hash

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT / "tests" / "corpus"
TARGETS = ("mnc", "model")
LATENT_DIMS = 8
SPREAD = 40.0  # scale of the analysis output layer: latents of a few units, some escaped

# ---------------------------------------------------------------------------- fixtures


def fuzz_model(seed: int, prior: str = "logistic", zero: bool = False) -> CompressionModel:
    """A deterministic seed-architecture model: random initial weights spread out, or zeros."""
    torch.manual_seed(seed)
    config = ModelConfig(latent_dims=LATENT_DIMS, prior=prior)
    model = CompressionModel(config)
    with torch.no_grad():
        if zero:
            for name, param in model.named_parameters():
                if not name.startswith("entropy_bottleneck"):
                    param.zero_()
        else:
            model.analysis_transform.fc_2.weight.mul_(SPREAD)
            model.synthesis_transform.conv_2.weight.mul_(4.0)
    return model


def sample_digits(n: int) -> np.ndarray:
    """MNIST test digits if the data is available, else a fixed pattern."""
    try:
        from mnistcodec.data import load_split

        return load_split("test").images[:n].copy()
    except MnistCodecError:
        rng = np.random.default_rng(0)
        return (rng.random((n, 28, 28)) ** 4 * 255).astype(np.uint8)


@dataclass
class MncFixture:
    """A codec, a second model's codec and valid ``.mnc`` seed files with their digits."""

    codec: Codec
    other: Codec
    seeds: dict[str, bytes]
    expected: dict[str, np.ndarray]


def extreme_latents_file(codec: Codec) -> bytes:
    """A valid per-digit file whose latents need escape codes, up to the float32 extremes."""
    k = np.zeros((4, codec.latent_dims))
    k[0, :] = np.finfo(np.float32).max
    k[1, ::2] = -np.finfo(np.float32).max
    k[2, 0] = 2.0**100
    k[3, :] = np.arange(codec.latent_dims) * 37 - 100
    coder = codec.coders[0]  # a version-1 file is at level 0 (a fixed-rate model's only one)
    strings = coder.encode_strings(coder.to_symbols(k))
    header = Header("per-digit", 4, 3, bytes.fromhex(codec.fingerprint))
    return encode_file(header, [Block(3, strings=strings[:3]), Block(1, strings=strings[3:])])


def make_mnc_fixture(workdir: Path, codec: Codec | None = None) -> MncFixture:
    """Seeds for the ``mnc`` target, written with ``codec`` (default: a fuzz model)."""
    if codec is None:
        codec = Codec(save_model(fuzz_model(0), workdir / "fuzz-mnc.safetensors"))
    other = Codec(save_model(fuzz_model(1), workdir / "fuzz-other.safetensors"))
    digits = sample_digits(24)
    seeds = {
        "per-digit": compress_to_bytes(codec, digits[:20], "per-digit", block_size=8).data,
        "stream": compress_to_bytes(codec, digits[:20], "stream", block_size=8).data,
        "one-digit": compress_to_bytes(codec, digits[20], "per-digit").data,
        "one-stream": compress_to_bytes(codec, digits[21:24], "stream").data,
        "extremes": extreme_latents_file(codec),
        "no-digits": encode_file(Header("stream", 0, 16, bytes.fromhex(codec.fingerprint)), []),
        "other-model": compress_to_bytes(other, digits[:5], "per-digit", block_size=2).data,
    }
    expected = {
        name: decompress_bytes(codec, data)
        for name, data in seeds.items()
        if name not in ("no-digits", "other-model")
    }
    return MncFixture(codec, other, seeds, expected)


def make_model_seeds(workdir: Path, priors: tuple[str, ...] | None = None) -> dict[str, bytes]:
    """Valid model files with all-zero weights (compressible), one per prior family."""
    seeds = {}
    for index, prior in enumerate(sorted(PRIORS) if priors is None else priors):
        path = workdir / f"zero-{prior}.safetensors"
        save_model(fuzz_model(index, prior, zero=True), path, weights_dtype=torch.float16)
        seeds[prior] = path.read_bytes()
    return seeds


# ---------------------------------------------------------------------------- mutations

INTERESTING = {
    8: [0, 1, 2, 0x7F, 0x80, 0xFE, 0xFF],
    16: [0, 1, 27, 28, 29, 0x7FFF, 0x8000, 0xFFFF],
    32: [0, 1, 2, 255, 4096, (1 << 20), (1 << 20) + 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF],
    64: [0, 1, 4, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 32, 0x7FFFFFFFFFFFFFFF, 1 << 63, (1 << 64) - 1],
}
# .mnc header fields: (name, offset, bits)
MNC_FIELDS = [
    ("version", 8, 8),
    ("mode", 9, 8),
    ("height", 10, 16),
    ("width", 12, 16),
    ("count", 14, 32),
    ("block size", 18, 32),
    ("payload length", 54, 64),
]


def _flip_bits(rng: random.Random, data: bytes, lo: int = 0, hi: int | None = None) -> bytes:
    out = bytearray(data)
    hi = len(out) if hi is None else min(hi, len(out))
    if hi <= lo:
        return bytes(out)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        pos = rng.randrange(lo, hi)
        out[pos] ^= 1 << rng.randrange(8)
    return bytes(out)


def _random_bytes(rng: random.Random, prefix: bytes = b"") -> bytes:
    n = rng.choice((0, 1, 7, 8, 9, 65, 66, 69, 70, 71, 100, 300, 1000))
    return (prefix + rng.randbytes(n))[: max(n, len(prefix)) if rng.random() < 0.5 else None]


def _splice_bytes(rng: random.Random, data: bytes, lo: int = 0) -> bytes:
    """Insert, delete, duplicate or overwrite a random span at or after ``lo``."""
    if len(data) <= lo:
        return data + rng.randbytes(rng.randrange(1, 9))
    a = rng.randrange(lo, len(data))
    b = min(len(data), a + rng.choice((1, 2, 4, 8, 32)))
    op = rng.randrange(4)
    if op == 0:
        return data[:a] + data[b:]
    if op == 1:
        return data[:a] + rng.randbytes(b - a) + data[a:]
    if op == 2:
        return data[:b] + data[a:b] + data[b:]
    return data[:a] + bytes([rng.choice((0, 0xFF, 0x80, 0x7F))]) * (b - a) + data[b:]


def fix_crcs(data: bytes, consistent: bool = True) -> bytes:
    """Recompute the header CRC and the file CRC of a (mutated) ``.mnc`` file.

    ``consistent``: also set the payload length to what the file holds, so
    the reader gets past the length checks and walks the payload.
    """
    out = bytearray(data)
    if len(out) < HEADER_SIZE:
        return bytes(out)
    if consistent and len(out) >= HEADER_SIZE + 4:
        out[54:62] = struct.pack(">Q", len(out) - HEADER_SIZE - 4)
    out[62:66] = struct.pack(">I", zlib.crc32(bytes(out[:62])))
    (payload,) = struct.unpack(">Q", bytes(out[54:62]))
    end = HEADER_SIZE + payload
    if end + 4 <= len(out):
        out[end : end + 4] = struct.pack(">I", zlib.crc32(bytes(out[:end])))
    return bytes(out)


def retarget(data: bytes, fingerprint: str) -> bytes:
    """``data`` with its fingerprint replaced; checksums that were valid are kept valid."""
    if len(data) < HEADER_SIZE or data[: len(MAGIC)] != MAGIC:
        return data
    out = bytearray(data)
    header_ok = zlib.crc32(bytes(out[:62])) == struct.unpack(">I", bytes(out[62:66]))[0]
    (payload,) = struct.unpack(">Q", bytes(out[54:62]))
    end = HEADER_SIZE + payload
    file_ok = end + 4 <= len(out) and (
        zlib.crc32(bytes(out[:end])) == struct.unpack(">I", bytes(out[end : end + 4]))[0]
    )
    out[22:54] = bytes.fromhex(fingerprint)
    if header_ok:
        out[62:66] = struct.pack(">I", zlib.crc32(bytes(out[:62])))
    if file_ok:
        out[end : end + 4] = struct.pack(">I", zlib.crc32(bytes(out[:end])))
    return bytes(out)


def _varint(value: int, width: int | None = None) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value or (width is not None and len(out) + 1 < width):
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def mutate_mnc(rng: random.Random, fixture: MncFixture) -> tuple[str, bytes]:
    """One ``.mnc`` case: ``(kind, bytes)``."""
    names = sorted(fixture.seeds)
    seed = fixture.seeds[rng.choice(names)]
    op = rng.randrange(100)
    if op < 6:
        prefix = rng.choice((b"", MAGIC, MAGIC + b"\x01", seed[:HEADER_SIZE]))
        return "random bytes", _random_bytes(rng, prefix)
    if op < 14:
        return "truncation", seed[: rng.randrange(len(seed))]
    if op < 24:
        return "bit flips", _flip_bits(rng, seed)
    if op < 40:
        flipped = _flip_bits(rng, seed, rng.choice((0, HEADER_SIZE)))
        return "bit flips, checksums fixed", fix_crcs(flipped, rng.random() < 0.5)
    if op < 58:
        name, offset, bits = rng.choice(MNC_FIELDS)
        values = INTERESTING[bits] + [rng.getrandbits(bits)]
        real = int.from_bytes(seed[offset : offset + bits // 8], "big")
        values += [(real + d) % (1 << bits) for d in (-1, 1)]
        out = bytearray(seed)
        out[offset : offset + bits // 8] = rng.choice(values).to_bytes(bits // 8, "big")
        fixed = fix_crcs(bytes(out), consistent=name != "payload length" and rng.random() < 0.5)
        return f"header {name} extreme", fixed if rng.random() < 0.85 else bytes(out)
    if op < 76:
        return "payload surgery", fix_crcs(_payload_surgery(rng, seed, fixture), True)
    if op < 84:
        other = fixture.seeds[rng.choice(names)]
        cut = rng.randrange(HEADER_SIZE, max(HEADER_SIZE + 1, len(seed)))
        spliced = seed[:cut] + other[rng.randrange(HEADER_SIZE, max(HEADER_SIZE + 1, len(other))) :]
        return "splice of two files", fix_crcs(spliced, rng.random() < 0.8)
    if op < 88:
        return "span edit", fix_crcs(_splice_bytes(rng, seed, HEADER_SIZE), rng.random() < 0.8)
    if op < 92:
        return "many digits in few bytes", _many_digits(rng, fixture.codec.fingerprint)
    if op < 96:
        data = fixture.seeds["other-model"]
        if rng.random() < 0.5:
            return "other model's file", data
        return "other model's file, retargeted", retarget(data, fixture.codec.fingerprint)
    return "valid seed", seed


def _many_digits(rng: random.Random, fingerprint: str) -> bytes:
    """A well-formed file (valid checksums and lengths) claiming many digits in few bytes."""
    mode = rng.choice(("stream", "per-digit"))
    if mode == "stream":
        block_size = rng.choice((1 << 20, (1 << 20) - 1, 1 << 16, 4096))
        count = rng.choice(((1 << 32) - 1, 1 << 31, block_size * 7 + 3, rng.randrange(1, 1 << 32)))
        blocks = [
            Block(n, stream=rng.randbytes(rng.choice((0, 0, 1, 4, 9))))
            for n in _block_sizes(count, block_size, limit=1 << 14)
        ]
    else:
        block_size = rng.choice((1, 7, 4096, 1 << 20))
        count = rng.choice((1, 100, 5000, rng.randrange(1, 5000)))
        blocks = [
            Block(n, strings=[rng.choice((b"", b"", b"\x01", rng.randbytes(2))) for _ in range(n)])
            for n in _block_sizes(count, block_size, limit=1 << 14)
        ]
    try:
        return encode_file(Header(mode, count, block_size, bytes.fromhex(fingerprint)), blocks)
    except ValueError:
        return b""


def _block_sizes(count: int, block_size: int, limit: int) -> list[int]:
    blocks = -(-count // block_size)
    if blocks > limit:
        return []
    return [min(block_size, count - i * block_size) for i in range(blocks)]


def _payload_surgery(rng: random.Random, seed: bytes, fixture: MncFixture) -> bytes:
    """Edit the length fields and strings of a file's payload (checksums fixed by the caller)."""
    payload = bytearray(seed[HEADER_SIZE:-4])
    choice = rng.randrange(6)
    if choice == 0 and payload:  # a length field made huge, overlong or 11 bytes long
        pos = rng.randrange(len(payload))
        value = rng.choice((0, 1, 127, 128, 1 << 32, (1 << 63) - 1, 1 << 70, len(payload) + 1))
        width = rng.choice((None, 10, 11))
        payload[pos : pos + 1] = _varint(value, width)
    elif choice == 1:  # a string's bytes replaced by random bytes
        pos = rng.randrange(len(payload) + 1)
        payload[pos : pos + 4] = rng.randbytes(4)
    elif choice == 2:  # zero bytes appended (non-canonical strings)
        payload += b"\0" * rng.randrange(1, 5)
    elif choice == 3:  # bytes of another seed's payload
        other = fixture.seeds[rng.choice(sorted(fixture.seeds))][HEADER_SIZE:-4]
        if other:
            a = rng.randrange(len(other))
            pos = rng.randrange(len(payload) + 1)
            payload[pos:pos] = other[a : a + rng.randrange(1, 16)]
    elif choice == 4 and payload:  # the payload cut short
        del payload[rng.randrange(len(payload)) :]
    else:  # a count that does not match the payload
        out = bytearray(seed)
        count = struct.unpack(">I", bytes(out[14:18]))[0]
        new = rng.choice((count + 1, max(count - 1, 0), count * 2, 1 << 20, 0xFFFFFFFF))
        out[14:18] = struct.pack(">I", new)
        return bytes(out)
    return seed[:HEADER_SIZE] + bytes(payload) + seed[-4:]


# ---- model files


def split_model(data: bytes) -> tuple[dict, dict, bytes]:
    """``(safetensors header without metadata, our record, tensor data)`` of a valid file."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    record = json.loads(header.pop("__metadata__")[METADATA_KEY])
    return header, record, data[8 + n :]


def join_model(
    header: dict, record, tensors: bytes, rehash: str = "fix", raw_record: str | None = None
) -> bytes:
    """Serialise a (mutated) header and record around tensor data.

    ``rehash``: ``"fix"`` recomputes ``content_sha256``, ``"drop"`` removes it
    (a file from before it existed), ``"keep"`` leaves whatever is there.
    """
    if isinstance(record, dict):
        record = dict(record)
        if rehash == "drop":
            record.pop(CONTENT_KEY, None)
    meta_text = raw_record if raw_record is not None else json.dumps(record, sort_keys=True)
    body = json.dumps({"__metadata__": {METADATA_KEY: meta_text}, **header}).encode()
    data = struct.pack("<Q", len(body)) + body + tensors
    if rehash == "fix" and isinstance(record, dict) and raw_record is None:
        record[CONTENT_KEY] = content_hash(data, record)
        return join_model(header, record, tensors, rehash="keep")
    return data


EXTREMES = [
    0,
    -1,
    1,
    2**31,
    -(2**31) - 1,
    2**63,
    2**64,
    10**30,
    1e308,
    float("inf"),
    float("-inf"),
    float("nan"),
    0.5,
    True,
    None,
    "",
    "8",
    [],
    [1, 2],
    {},
    {"a": 1},
]


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def mutate_model(rng: random.Random, seeds: dict[str, bytes]) -> tuple[str, bytes]:
    """One model-file case: ``(kind, bytes)``."""
    name = rng.choice(sorted(seeds))
    seed = seeds[name]
    header, record, tensors = split_model(seed)
    header_end = 8 + struct.unpack("<Q", seed[:8])[0]
    op = rng.randrange(100)
    if op < 5:
        prefix = rng.choice((b"", seed[:8], struct.pack("<Q", 2), b"\xff" * 8))
        return "random bytes", _random_bytes(rng, prefix)
    if op < 12:
        cut = rng.randrange(header_end + 64) if rng.random() < 0.7 else rng.randrange(len(seed))
        return "truncation", seed[:cut]
    if op < 20:
        lo, hi = (0, header_end) if rng.random() < 0.5 else (header_end, len(seed))
        return "bit flips", _flip_bits(rng, seed, lo, hi)
    if op < 26:
        value = rng.choice(INTERESTING[64] + [header_end - 9, header_end - 7, len(seed)])
        return "header length extreme", struct.pack("<Q", value % (1 << 64)) + seed[8:]
    rehash = rng.choice(("fix", "fix", "drop", "keep"))
    if op < 46:
        return f"record field extreme ({rehash})", join_model(
            header, _edit_record(rng, record), tensors, rehash
        )
    if op < 62:
        return f"tensor entry extreme ({rehash})", join_model(
            _edit_entries(rng, header, len(tensors)), record, tensors, rehash
        )
    if op < 70:
        raw = rng.choice(
            (
                _deep(rng.choice((100, 5000, 100000))),
                "{" * 3,
                '{"format": "mnistcodec-model", "format_version": 1}',
                json.dumps(record)[: rng.randrange(1, 200)],
                '"' + "x" * 10 + '"',
                "1e999999",
                "NaN",
            )
        )
        return "record text", join_model(header, record, tensors, "keep", raw_record=raw)
    if op < 82:
        lo = rng.randrange(len(tensors))
        flipped = _flip_bits(rng, tensors, lo, lo + 64)
        return f"tensor data bit flips ({rehash})", join_model(header, record, flipped, rehash)
    if op < 88:
        other_header, other_record, other_tensors = split_model(seeds[rng.choice(sorted(seeds))])
        mixes = (
            (header, other_record, tensors),
            (other_header, record, tensors),
            (header, record, other_tensors),
        )
        h, r, t = rng.choice(mixes)
        return f"parts of two models ({rehash})", join_model(h, r, t, rehash)
    if op < 94:
        record = dict(record)
        record["fingerprint"] = rng.choice(
            ("0" * 64, hashlib.sha256(rng.randbytes(8)).hexdigest(), record["fingerprint"][:10])
        )
        return "another fingerprint", join_model(header, record, tensors, rehash)
    if op < 97:
        return "not a model", _other_safetensors(rng)
    return "valid model", seed


def _edit_record(rng: random.Random, record: dict) -> dict:
    record = json.loads(json.dumps(record))
    paths = [("config", k) for k in record["config"]] + [("coding", k) for k in record["coding"]]
    paths += [(k,) for k in record if k != CONTENT_KEY]
    path = rng.choice(paths)
    target = record
    for key in path[:-1]:
        target = target[key]
    if rng.random() < 0.1:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = rng.choice(EXTREMES)
    return record


def _edit_entries(rng: random.Random, header: dict, data_len: int) -> dict:
    header = json.loads(json.dumps(header))
    name = rng.choice(sorted(header))
    entry = header[name]
    field_name = rng.choice(("dtype", "shape", "data_offsets", "entry", "name"))
    if field_name == "dtype":
        entry["dtype"] = rng.choice(("F64", "F32", "F16", "BF16", "I64", "I8", "U8", "BOOL", "X"))
    elif field_name == "shape":
        entry["shape"] = rng.choice(
            ([], [0], [1], [2**31], [2**40, 2**40], [-1], [3, 0], [data_len], [10**30])
        )
    elif field_name == "data_offsets":
        lo, hi = entry["data_offsets"]
        entry["data_offsets"] = rng.choice(
            ([0, 0], [hi, lo], [lo, data_len + 1], [lo, 2**64 - 1], [-1, hi], [lo, hi + 2], [0, 4])
        )
    elif field_name == "entry":
        header[name] = rng.choice(EXTREMES)
    else:
        header[name + rng.choice(("_", ".x", ""))] = header.pop(name)
    return header


def _other_safetensors(rng: random.Random) -> bytes:
    from safetensors.torch import save

    meta = rng.choice(
        (
            None,
            {"checkpoint": json.dumps({"format": "mnistcodec-checkpoint", "epoch": 1})},
            {METADATA_KEY: json.dumps({"format": "mnistcodec-model", "format_version": 2})},
            {METADATA_KEY: json.dumps({"format": "other"})},
        )
    )
    return save({"x": torch.zeros(3)}, metadata=meta)


# ---------------------------------------------------------------------------- running


class Hang(BaseException):
    """Raised by the alarm when a case runs past its time limit."""


def _alarm(signum, frame):
    raise Hang


@dataclass
class Outcome:
    kind: str  # "ok", "error" or "failure"
    detail: str


def check_mnc(fixture: MncFixture, data: bytes) -> Outcome:
    """Decode and inspect ``data``; judge the result."""
    try:
        inspect_bytes(data)
    except MnistCodecError as exc:
        inspected = type(exc).__name__
    else:
        inspected = "ok"
    try:
        digits = decompress_bytes(fixture.codec, data)
    except MnistCodecError as exc:
        return _judge_error(exc)
    count = struct.unpack(">I", data[14:18])[0]
    if digits.dtype != np.uint8 or digits.shape != (count, 28, 28):
        return Outcome("failure", f"decoded {digits.dtype} {digits.shape}, header says {count}")
    for name, expected in fixture.expected.items():
        if data == fixture.seeds[name] and not np.array_equal(digits, expected):
            return Outcome("failure", f"seed {name} decodes to other digits")
    if inspected != "ok":
        return Outcome("failure", f"decodes, but inspect raises {inspected}")
    return Outcome("ok", "decoded")


def check_model(data: bytes) -> Outcome:
    try:
        loaded = load_model_bytes(data, name="fuzzed model")
    except MnistCodecError as exc:
        return _judge_error(exc)
    if not all(torch.isfinite(p).all() for p in loaded.model.parameters()):
        return Outcome("failure", "loaded a model with non-finite weights")
    return Outcome("ok", "loaded")


def _judge_error(exc: MnistCodecError) -> Outcome:
    message = str(exc)
    if not message.strip() or "\n" in message:
        return Outcome("failure", f"{type(exc).__name__} with an unclear message: {message!r}")
    return Outcome("error", type(exc).__name__)


def run_one(check: Callable[[bytes], Outcome], data: bytes, timeout: float, memory_mb: float):
    """Run one case under a time limit; any exception outside our family is a failure."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        outcome = check(data)
    except Hang:
        outcome = Outcome("failure", f"hang: no result within {timeout} s")
    except Exception as exc:  # the point of fuzzing: anything else is a bug
        where = traceback.extract_tb(exc.__traceback__)[-1]
        outcome = Outcome(
            "failure",
            f"{type(exc).__name__}: {str(exc)[:200]} ({Path(where.filename).name}:{where.lineno})",
        )
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    if grown > memory_mb and outcome.kind != "failure":
        outcome = Outcome("failure", f"peak memory grew by {grown:.0f} MB in one case")
    return outcome


def save_crasher(corpus: Path, target: str, data: bytes) -> Path:
    """Write a failing input to the corpus (model files gzipped: they are mostly zeros)."""
    corpus.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(data).hexdigest()[:16]
    if target == "model":
        path = corpus / f"model-{digest}.safetensors.gz"
        atomic_write(path, gzip.compress(data, mtime=0))
    else:
        path = corpus / f"mnc-{digest}.mnc"
        atomic_write(path, data)
    return path


def load_corpus_entry(path: Path) -> tuple[str, bytes]:
    """``(target, bytes)`` of a corpus file (by its name: ``mnc-*``, ``model-*``)."""
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    return ("model" if path.name.startswith("model-") else "mnc"), data


@dataclass
class Report:
    target: str
    cases: int = 0
    seconds: float = 0.0
    outcomes: Counter = field(default_factory=Counter)
    kinds: Counter = field(default_factory=Counter)
    failures: list[tuple[int, str, str, bytes]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.cases / self.seconds if self.seconds else 0.0

    def summary(self) -> dict:
        return {
            "target": self.target,
            "cases": self.cases,
            "seconds": round(self.seconds, 1),
            "cases_per_second": round(self.rate, 1),
            "decoded_or_loaded": self.outcomes["ok"],
            "errors": dict(sorted(self.outcomes.items())),
            "failures": len(self.failures),
            "case_kinds": dict(sorted(self.kinds.items())),
        }


def systematic_cases(target: str, seeds: dict[str, bytes]) -> list[tuple[str, bytes]]:
    """Every truncation of each ``.mnc`` seed, and of each model file up to its tensor data."""
    cases = []
    for name in sorted(seeds):
        data = seeds[name]
        end = len(data) if target == "mnc" else 8 + struct.unpack("<Q", data[:8])[0] + 8
        cases.extend((f"truncation (every length, {name})", data[:n]) for n in range(end))
    return cases


def run_target(
    target: str,
    cases: int,
    seed: int,
    check: Callable[[bytes], Outcome],
    mutate: Callable[[random.Random], tuple[str, bytes]],
    seeds: dict[str, bytes],
    timeout: float = 10.0,
    memory_mb: float = 512.0,
    systematic: bool = True,
    only: int | None = None,
    log: Callable[[str], None] = print,
) -> Report:
    """Run ``cases`` cases (systematic truncations first, then random mutations)."""
    report = Report(target)
    fixed = systematic_cases(target, seeds) if systematic else []
    fixed = fixed[: cases // 2] if len(fixed) > cases // 2 else fixed
    start = time.perf_counter()
    for i in range(cases) if only is None else [only]:
        if i < len(fixed):
            kind, data = fixed[i]
        else:
            kind, data = mutate(random.Random(f"{seed}:{target}:{i}"))
        outcome = run_one(check, data, timeout, memory_mb)
        report.cases += 1
        report.kinds[kind.split(" (")[0]] += 1
        report.outcomes[outcome.detail if outcome.kind == "error" else outcome.kind] += 1
        if outcome.kind == "failure":
            report.failures.append((i, kind, outcome.detail, data))
            log(f"  FAILURE {target} case {i} ({kind}): {outcome.detail}")
    report.seconds = time.perf_counter() - start
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10000, help="cases per target (default 10000)")
    parser.add_argument("--target", choices=(*TARGETS, "all"), default="all")
    parser.add_argument("--seed", type=int, default=0, help="seed of the case generator")
    parser.add_argument("--only", type=int, default=None, help="run case N alone (replay)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per case (default 10)")
    parser.add_argument("--memory-mb", type=float, default=512.0, help="growth allowed per case")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="where crashers go")
    parser.add_argument("--json", type=Path, default=None, help="write the reports as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    targets = TARGETS if args.target == "all" else (args.target,)
    reports = []
    with tempfile.TemporaryDirectory(prefix="mnistcodec-fuzz-") as tmp:
        for target in targets:
            t0 = time.perf_counter()
            if target == "mnc":
                fixture = make_mnc_fixture(Path(tmp))
                seeds = fixture.seeds

                def check(data, fixture=fixture):
                    return check_mnc(fixture, data)

                def mutate(rng, fixture=fixture):
                    return mutate_mnc(rng, fixture)
            else:
                seeds = make_model_seeds(Path(tmp))
                check = check_model

                def mutate(rng, seeds=seeds):
                    return mutate_model(rng, seeds)

            print(
                f"{target}: seeds ready in {time.perf_counter() - t0:.1f} s; running {args.cases} cases"
            )
            report = run_target(
                target,
                args.cases,
                args.seed,
                check,
                mutate,
                seeds,
                args.timeout,
                args.memory_mb,
                only=args.only,
            )
            for index, kind, detail, data in report.failures:
                path = save_crasher(args.corpus, target, data)
                print(f"  case {index} ({kind}): {detail} -> {path}")
            reports.append(report)
            summary = report.summary()
            print(
                f"{target}: {summary['cases']} cases in {summary['seconds']} s "
                f"({summary['cases_per_second']} cases/s), {summary['failures']} failures, "
                f"{summary['decoded_or_loaded']} decoded or loaded"
            )
            for name, n in summary["errors"].items():
                print(f"    {n:>6}  {name}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of the fuzzing process: {peak:.0f} MB")
    if args.json:
        atomic_write_text(
            args.json,
            json.dumps(
                {
                    "seed": args.seed,
                    "peak_rss_mb": round(peak),
                    "reports": [r.summary() for r in reports],
                    "python": sys.version.split()[0],
                    "torch": torch.__version__,
                },
                indent=2,
            ),
        )
    return 1 if any(r.failures for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
