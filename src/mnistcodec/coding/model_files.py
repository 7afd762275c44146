"""Model files: one safetensors file, weights + coding tables + JSON metadata.

Layout (see ``docs/model-format.md``):

* tensors ``model.<name>``: the ``CompressionModel`` state dict (float32, or
  float16 for compact shipped models; computation is always float32);
* tensors ``coding.counts`` (int32, D x K+1), ``coding.lower`` (int32, D) and
  ``coding.offsets`` (float32, D): the frozen coding tables;
* metadata key ``mnistcodec``: JSON with the format name and version, the
  :class:`~mnistcodec.model.ModelConfig`, coding parameters, training record
  and the model fingerprint.

The fingerprint is the SHA-256 of everything the decoder needs: the
architecture and latent size, the coding tables and offsets, and the synthesis
transform's stored weights. Loading recomputes it and refuses a file whose
contents do not match. Files also record ``content_sha256``, a SHA-256 over
every tensor and the whole JSON record (see :func:`content_hash`), so a changed
byte anywhere (analysis weights and prior included, which the fingerprint
leaves out) is refused too; files written before it existed are checked by the
fingerprint alone.

No pickle is involved anywhere; loading never runs code from the file. Every
size is checked against the bytes present before anything is allocated: the
model is first built on PyTorch's ``meta`` device (no memory), its expected
tensor shapes are compared with the file's, and the stored tensors then become
its parameters.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from mnistcodec import __version__
from mnistcodec.coding.tables import (
    DEFAULT_PRECISION,
    DEFAULT_TAIL_MASS,
    CodingTables,
    build_tables,
)
from mnistcodec.errors import MnistCodecError, ModelFileError
from mnistcodec.model.compression_model import CompressionModel, ModelConfig
from mnistcodec.storage.atomic import atomic_write, read_input

FORMAT_NAME = "mnistcodec-model"
FORMAT_VERSION = 1
METADATA_KEY = "mnistcodec"
MAX_MODEL_BYTES = 1 << 30
MAX_HEADER_BYTES = 1 << 24
#: Largest latent size a model file may declare.
MAX_CONFIG_SIZE = 1 << 16
CONTENT_KEY = "content_sha256"
WEIGHT_DTYPES = (torch.float32, torch.float16)
CODING_DTYPES = {
    "coding.counts": torch.int32,
    "coding.lower": torch.int32,
    "coding.offsets": torch.float32,
}


@dataclass
class LoadedModel:
    """A model ready for evaluation and coding, with what its file recorded."""

    model: CompressionModel
    tables: CodingTables
    fingerprint: str
    metadata: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def config(self) -> ModelConfig:
        return self.model.config


def compute_fingerprint(config: ModelConfig, tables: CodingTables, synthesis: dict) -> str:
    """SHA-256 over the architecture, coding tables, offsets and synthesis weights."""
    h = hashlib.sha256()
    head = {"arch": config.arch, "latent_dims": config.latent_dims, "precision": tables.precision}
    h.update(json.dumps(head, sort_keys=True).encode())
    arrays = [tables.counts, tables.lower, tables.offsets]
    for array in arrays:
        h.update(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes())
    for name in sorted(synthesis):
        tensor = synthesis[name].detach().cpu().contiguous()
        h.update(name.encode() + b"\0" + str(tensor.dtype).encode() + b"\0")
        h.update(tensor.numpy().astype(tensor.numpy().dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()


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


def _synthesis_part(state: dict) -> dict:
    prefix = "synthesis_transform."
    return {k: v for k, v in state.items() if k.startswith(prefix)}


def freeze(
    model: CompressionModel,
    precision: int = DEFAULT_PRECISION,
    tail_mass: float = DEFAULT_TAIL_MASS,
    weights_dtype: torch.dtype = torch.float32,
) -> LoadedModel:
    """Build coding tables and fingerprint for a trained model (done once)."""
    model = model.cpu().eval()
    state = {k: v.detach().clone().to(weights_dtype) for k, v in model.state_dict().items()}
    tables = build_tables(model.prior, precision=precision, tail_mass=tail_mass)
    fingerprint = compute_fingerprint(model.config, tables, _synthesis_part(state))
    if weights_dtype != torch.float32:
        model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    metadata = {"coding": {"precision": precision, "tail_mass": tail_mass}}
    return LoadedModel(model, tables, fingerprint, metadata)


def save_model(
    model: CompressionModel,
    path: str | os.PathLike,
    metadata: dict | None = None,
    precision: int = DEFAULT_PRECISION,
    tail_mass: float = DEFAULT_TAIL_MASS,
    weights_dtype: torch.dtype = torch.float32,
    force: bool = True,
) -> LoadedModel:
    """Freeze ``model`` and write it atomically to ``path``; return the frozen model."""
    frozen = freeze(model, precision, tail_mass, weights_dtype)
    tensors = {
        f"model.{k}": v.detach().cpu().contiguous().to(weights_dtype)
        for k, v in model.state_dict().items()
    }
    tensors["coding.counts"] = torch.from_numpy(frozen.tables.counts.copy())
    tensors["coding.lower"] = torch.from_numpy(frozen.tables.lower.copy())
    tensors["coding.offsets"] = torch.from_numpy(frozen.tables.offsets.copy())
    record = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "config": model.config.to_dict(),
        "coding": {"precision": precision, "tail_mass": tail_mass},
        "weights_dtype": str(weights_dtype).removeprefix("torch."),
        "fingerprint": frozen.fingerprint,
        **(metadata or {}),
    }
    draft = st_save(tensors, metadata={METADATA_KEY: json.dumps(record, sort_keys=True)})
    record[CONTENT_KEY] = content_hash(draft, record)
    data = st_save(tensors, metadata={METADATA_KEY: json.dumps(record, sort_keys=True)})
    if content_hash(data, record) != record[CONTENT_KEY]:
        raise RuntimeError("safetensors laid out the same tensors differently twice")
    atomic_write(path, data, force=force)
    frozen.metadata = record
    frozen.path = Path(path)
    return frozen


def read_metadata(data: bytes, name: str) -> dict:
    """Parse the safetensors header of ``data`` and return our JSON record."""
    header, _ = _split_header(data, name)
    try:
        record = json.loads(header["__metadata__"][METADATA_KEY])
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ModelFileError(f"{name} is not an mnistcodec model file ({type(exc).__name__}: {exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{name} is not an mnistcodec model file")
    if record.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{name} has model format version {record.get('format_version')!r:.40}; "
            f"this mnistcodec reads version {FORMAT_VERSION}"
        )
    return record


def _check_record(record: dict, name: str) -> tuple[ModelConfig, int]:
    """The configuration and coding precision of a record, every field type-checked."""
    config, coding = record.get("config"), record.get("coding")
    if not isinstance(config, dict) or not isinstance(coding, dict):
        raise ModelFileError(f"{name} has an invalid configuration (config and coding must be objects)")
    for key in ("latent_dims",):
        value = config.get(key, 1)
        if type(value) is not int or not 1 <= value <= MAX_CONFIG_SIZE:
            raise ModelFileError(
                f"{name} has an invalid configuration: {key} = {value!r:.40} "
                f"(expected an integer from 1 to {MAX_CONFIG_SIZE})"
            )
    for key in ("arch", "prior", "distortion"):
        if key in config and not isinstance(config[key], str):
            raise ModelFileError(f"{name} has an invalid configuration: {key} must be a string")
    lmbda = config.get("lmbda", 1.0)
    if type(lmbda) not in (int, float):
        raise ModelFileError(f"{name} has an invalid configuration: lmbda must be a number")
    precision = coding.get("precision")
    if type(precision) is not int:
        raise ModelFileError(f"{name} has invalid coding parameters: precision = {precision!r:.40}")
    try:
        return ModelConfig.from_dict(config), precision
    except (TypeError, ValueError, MnistCodecError) as exc:
        raise ModelFileError(f"{name} has an invalid configuration: {exc}") from None


def read_model_bytes(path: str | os.PathLike) -> bytes:
    """Read a model file with clear errors for missing, unreadable or huge files."""
    return read_input(path, "a model file", MAX_MODEL_BYTES, error=ModelFileError)


def _skeleton(config: ModelConfig, name: str) -> CompressionModel:
    """The model built on the ``meta`` device: shapes only, no memory, no initialisation."""
    try:
        with torch.device("meta"):
            return CompressionModel(config)
    except (TypeError, ValueError, RuntimeError, MnistCodecError) as exc:
        raise ModelFileError(f"{name} has an invalid configuration: {exc}") from None


def _materialise(skeleton: CompressionModel, state: dict) -> CompressionModel:
    """``skeleton`` with the stored tensors as its parameters (float32).

    A model that keeps tensors outside its parameters and buffers cannot be
    filled this way; it is then built normally and loaded.
    """
    state = {k: v.to(torch.float32) for k, v in state.items()}
    skeleton.load_state_dict(state, assign=True)
    leftover = any(
        isinstance(value, torch.Tensor) and value.is_meta
        for module in skeleton.modules()
        for value in [*vars(module).values(), *module.parameters(recurse=False), *module.buffers(recurse=False)]
    )
    if not leftover:
        return skeleton
    model = CompressionModel(skeleton.config)
    model.load_state_dict(state)
    return model


def load_model_bytes(data: bytes, name: str = "model") -> LoadedModel:
    """Load and verify a model from the bytes of a model file."""
    record = read_metadata(data, name)
    if CONTENT_KEY in record and content_hash(data, record, name) != record[CONTENT_KEY]:
        raise ModelFileError(
            f"{name} fails its integrity check: its contents do not match their stored "
            "SHA-256; the file was modified or corrupted"
        )
    config, precision = _check_record(record, name)
    try:
        tensors = st_load(data)
    except Exception as exc:  # safetensors raises its own error types
        raise ModelFileError(f"{name} is corrupt: {exc}") from None
    skeleton = _skeleton(config, name)
    expected = {f"model.{k}": v.shape for k, v in skeleton.state_dict().items()}
    expected.update({"coding.counts": None, "coding.lower": None, "coding.offsets": None})
    if set(tensors) != set(expected):
        missing = sorted(set(expected) - set(tensors))[:3]
        extra = sorted(set(tensors) - set(expected))[:3]
        raise ModelFileError(f"{name} does not match its configuration (missing {missing}, unexpected {extra})")
    state = {}
    for key, shape in expected.items():
        if shape is None:
            continue
        tensor = tensors[key]
        if tensor.shape != shape or tensor.dtype not in WEIGHT_DTYPES:
            raise ModelFileError(
                f"{name}: tensor {key} is {str(tensor.dtype).removeprefix('torch.')} "
                f"{tuple(tensor.shape)}, expected float32 or float16 {tuple(shape)}"
            )
        state[key.removeprefix("model.")] = tensor
    for key, dtype in CODING_DTYPES.items():
        if key in tensors and tensors[key].dtype != dtype:
            raise ModelFileError(
                f"{name}: tensor {key} is {str(tensors[key].dtype).removeprefix('torch.')}, "
                f"expected {str(dtype).removeprefix('torch.')}"
            )
    try:
        tables = CodingTables(
            counts=tensors["coding.counts"].numpy().astype(np.int32),
            lower=tensors["coding.lower"].numpy().astype(np.int32),
            offsets=tensors["coding.offsets"].numpy().astype(np.float32),
            precision=precision,
        ).validate()
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{name} has invalid coding tables: {exc}") from None
    if tables.latent_dims != config.latent_dims:
        raise ModelFileError(f"{name}: coding tables do not match latent_dims={config.latent_dims}")
    fingerprint = compute_fingerprint(config, tables, _synthesis_part(state))
    if fingerprint != record.get("fingerprint"):
        raise ModelFileError(
            f"{name} fails its integrity check: stored fingerprint {str(record.get('fingerprint'))[:16]}... "
            f"but contents hash to {fingerprint[:16]}...; the file was modified or corrupted"
        )
    for key, tensor in state.items():
        if not torch.isfinite(tensor).all():
            raise ModelFileError(f"{name} holds non-finite weights ({key})")
    model = _materialise(skeleton, state)
    model.eval()
    return LoadedModel(model, tables, fingerprint, record)


def load_model(path: str | os.PathLike) -> LoadedModel:
    """Load and verify a model file (see module docstring)."""
    loaded = load_model_bytes(read_model_bytes(path), name=str(path))
    loaded.path = Path(path)
    return loaded


def update_metadata(path: str | os.PathLike, extra: dict) -> LoadedModel:
    """Add keys to a model file's JSON record, leaving every tensor as it is."""
    data = read_model_bytes(path)
    loaded = load_model_bytes(data, str(path))
    record = {k: v for k, v in read_metadata(data, str(path)).items() if k != CONTENT_KEY}
    record.update(extra)
    tensors = st_load(data)
    draft = st_save(tensors, metadata={METADATA_KEY: json.dumps(record, sort_keys=True)})
    record[CONTENT_KEY] = content_hash(draft, record)
    atomic_write(path, st_save(tensors, metadata={METADATA_KEY: json.dumps(record, sort_keys=True)}))
    loaded.metadata = record
    return loaded
