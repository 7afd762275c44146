"""The container of model files: one safetensors file, tensors plus one JSON record.

A model file is a safetensors file (8-byte little-endian header length, a
JSON header, raw little-endian tensor data) whose ``__metadata__`` holds one
key, ``mnistcodec``, a JSON record with ``format`` = ``mnistcodec-model`` and
``format_version``. :func:`encode_container` writes it, with the record's
``content_sha256`` (:func:`content_hash`) filled in; :func:`read_record` and
:func:`decode_tensors` read it back with every size checked against the
bytes present before anything is allocated. What the tensors and the record
mean is :mod:`mnistcodec.coding.model_files`' business (``docs/model-format.md``).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from mnistcodec.errors import ModelFileError
from mnistcodec.storage.atomic import read_input

FORMAT_NAME = "mnistcodec-model"
FORMAT_VERSION = 1
#: The version of model files with codebook levels (:mod:`mnistcodec.coding.codebook_levels`).
CODEBOOK_FORMAT_VERSION = 2
#: The versions this package reads.
READ_VERSIONS = (FORMAT_VERSION, CODEBOOK_FORMAT_VERSION)
METADATA_KEY = "mnistcodec"
MAX_MODEL_BYTES = 1 << 30
MAX_HEADER_BYTES = 1 << 24
CONTENT_KEY = "content_sha256"


def _split_header(data: bytes, name: str) -> tuple[dict, int]:
    """The safetensors header of ``data`` as a dict, and where the tensor data starts."""
    if len(data) < 8:
        raise ModelFileError(f"{name} is not a model file (too short)")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > min(MAX_HEADER_BYTES, len(data) - 8):
        raise ModelFileError(f"{name} is not a model file (bad safetensors header)")
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (ValueError, RecursionError) as exc:
        raise ModelFileError(f"{name} is not a model file (unreadable header: {exc})") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{name} is not a model file (header is not a JSON object)")
    return header, 8 + header_len


def content_hash(data: bytes, record: dict, name: str = "model") -> str:
    """SHA-256 of a model file's tensors and JSON record, ``content_sha256`` left out.

    Hashed: the tensor entries of the safetensors header (name, dtype, shape,
    offsets; canonical JSON), the record (canonical JSON) and every byte of the
    tensor data. Independent of how the header is laid out or padded.
    """
    header, start = _split_header(data, name)
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    rest = {k: v for k, v in record.items() if k != CONTENT_KEY}
    h = hashlib.sha256(b"mnistcodec-content-v1\0")
    h.update(json.dumps(entries, sort_keys=True, separators=(",", ":")).encode() + b"\0")
    h.update(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode() + b"\0")
    h.update(memoryview(data)[start:])
    return h.hexdigest()


def encode_container(tensors: dict[str, torch.Tensor], record: dict) -> bytes:
    """The bytes of a model file holding ``tensors`` and ``record`` (``content_sha256`` set)."""
    record = {k: v for k, v in record.items() if k != CONTENT_KEY}
    draft = st_save(tensors, metadata={METADATA_KEY: json.dumps(record, sort_keys=True)})
    record[CONTENT_KEY] = content_hash(draft, record)
    data = st_save(tensors, metadata={METADATA_KEY: json.dumps(record, sort_keys=True)})
    if content_hash(data, record) != record[CONTENT_KEY]:
        raise RuntimeError("safetensors laid out the same tensors differently twice")
    return data


def read_record(data: bytes, name: str) -> dict:
    """Parse the safetensors header of ``data`` and return our JSON record."""
    header, _ = _split_header(data, name)
    try:
        record = json.loads(header["__metadata__"][METADATA_KEY])
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ModelFileError(
            f"{name} is not an mnistcodec model file ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(record, dict) or record.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{name} is not an mnistcodec model file")
    version = record.get("format_version")
    if type(version) is not int or version not in READ_VERSIONS:
        raise ModelFileError(
            f"{name} has model format version {version!r:.40}; "
            f"this mnistcodec reads versions {FORMAT_VERSION} and {CODEBOOK_FORMAT_VERSION}"
        )
    return record


def check_content(data: bytes, record: dict, name: str) -> None:
    """Refuse a file whose tensors or record no longer match its ``content_sha256``.

    Files written before the content hash existed have none and pass.
    """
    if CONTENT_KEY in record and content_hash(data, record, name) != record[CONTENT_KEY]:
        raise ModelFileError(
            f"{name} fails its integrity check: its contents do not match their stored "
            "SHA-256; the file was modified or corrupted"
        )


def decode_tensors(data: bytes, name: str) -> dict[str, torch.Tensor]:
    """Every tensor of a model file's bytes."""
    try:
        return st_load(data)
    except Exception as exc:  # safetensors raises its own error types
        raise ModelFileError(f"{name} is corrupt: {exc}") from None


def read_model_bytes(path: str | os.PathLike) -> bytes:
    """Read a model file with clear errors for missing, unreadable or huge files."""
    return read_input(path, "a model file", MAX_MODEL_BYTES, error=ModelFileError)
