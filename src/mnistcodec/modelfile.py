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
contents do not match. No pickle is involved anywhere; loading never runs code
from the file.
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
from mnistcodec.fileio import atomic_write
from mnistcodec.model import CompressionModel, ModelConfig

FORMAT_NAME = "mnistcodec-model"
FORMAT_VERSION = 1
METADATA_KEY = "mnistcodec"
MAX_MODEL_BYTES = 1 << 30
MAX_HEADER_BYTES = 1 << 24


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
    if tables.component_counts.size:
        arrays.append(tables.component_counts)
    for array in arrays:
        h.update(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes())
    for name in sorted(synthesis):
        tensor = synthesis[name].detach().cpu().contiguous()
        h.update(name.encode() + b"\0" + str(tensor.dtype).encode() + b"\0")
        h.update(tensor.numpy().astype(tensor.numpy().dtype.newbyteorder("<")).tobytes())
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
    if frozen.tables.component_counts.size:
        tensors["coding.components"] = torch.from_numpy(frozen.tables.component_counts.copy())
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
    data = st_save(tensors, metadata={METADATA_KEY: json.dumps(record, sort_keys=True)})
    atomic_write(path, data, force=force)
    frozen.metadata = record
    frozen.path = Path(path)
    return frozen


def read_metadata(data: bytes, name: str) -> dict:
    """Parse the safetensors header of ``data`` and return our JSON record."""
    if len(data) < 8:
        raise ModelFileError(f"{name} is not a model file (too short)")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > min(MAX_HEADER_BYTES, len(data) - 8):
        raise ModelFileError(f"{name} is not a model file (bad safetensors header)")
    try:
        header = json.loads(data[8 : 8 + header_len])
        record = json.loads(header["__metadata__"][METADATA_KEY])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{name} is not an mnistcodec model file ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{name} is not an mnistcodec model file")
    if record.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{name} has model format version {record.get('format_version')!r}; "
            f"this mnistcodec reads version {FORMAT_VERSION}"
        )
    return record


def read_model_bytes(path: str | os.PathLike) -> bytes:
    """Read a model file with clear errors for missing, unreadable or huge files."""
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"model {path} is a directory, not a model file")
    try:
        size = path.stat().st_size
        if size > MAX_MODEL_BYTES:
            raise ModelFileError(f"model {path} is too large ({size} bytes)")
        return path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"model file {path} not found") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read model {path}: {exc.strerror}") from None


def load_model_bytes(data: bytes, name: str = "model") -> LoadedModel:
    """Load and verify a model from the bytes of a model file."""
    record = read_metadata(data, name)
    try:
        tensors = st_load(data)
    except Exception as exc:  # safetensors raises its own error types
        raise ModelFileError(f"{name} is corrupt: {exc}") from None
    try:
        config = ModelConfig.from_dict(record["config"])
        coding = record["coding"]
        model = CompressionModel(config)
    except (KeyError, TypeError, ValueError, MnistCodecError) as exc:
        raise ModelFileError(f"{name} has an invalid configuration: {exc}") from None
    expected = {f"model.{k}": v.shape for k, v in model.state_dict().items()}
    expected.update({"coding.counts": None, "coding.lower": None, "coding.offsets": None})
    if config.prior == "mixture":
        expected["coding.components"] = None
    if set(tensors) != set(expected):
        missing = sorted(set(expected) - set(tensors))[:3]
        extra = sorted(set(tensors) - set(expected))[:3]
        raise ModelFileError(f"{name} does not match its configuration (missing {missing}, unexpected {extra})")
    state = {}
    for key, shape in expected.items():
        if shape is None:
            continue
        tensor = tensors[key]
        if tensor.shape != shape or not tensor.is_floating_point():
            raise ModelFileError(f"{name}: tensor {key} has shape {tuple(tensor.shape)}, expected {tuple(shape)}")
        state[key.removeprefix("model.")] = tensor
    try:
        tables = CodingTables(
            counts=tensors["coding.counts"].numpy().astype(np.int32),
            lower=tensors["coding.lower"].numpy().astype(np.int32),
            offsets=tensors["coding.offsets"].numpy().astype(np.float32),
            precision=int(coding["precision"]),
            component_counts=tensors["coding.components"].numpy().astype(np.int32)
            if "coding.components" in tensors
            else np.zeros(0, dtype=np.int32),
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
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    for p in model.parameters():
        if not torch.isfinite(p).all():
            raise ModelFileError(f"{name} holds non-finite weights")
    model.eval()
    return LoadedModel(model, tables, fingerprint, record)


def load_model(path: str | os.PathLike) -> LoadedModel:
    """Load and verify a model file (see module docstring)."""
    loaded = load_model_bytes(read_model_bytes(path), name=str(path))
    loaded.path = Path(path)
    return loaded
