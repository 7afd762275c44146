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
every tensor and the whole JSON record (see :func:`mnistcodec.storage.model_container.content_hash`), so a changed
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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mnistcodec import __version__
from mnistcodec.coding.tables import (
    DEFAULT_PRECISION,
    DEFAULT_TAIL_MASS,
    CodingTables,
    build_tables,
)
from mnistcodec.errors import MnistCodecError, ModelFileError
from mnistcodec.model.compression_model import CompressionModel, ModelConfig
from mnistcodec.storage.atomic import atomic_write
from mnistcodec.storage.model_container import (
    FORMAT_NAME,
    FORMAT_VERSION,
    check_content,
    decode_tensors,
    encode_container,
    read_model_bytes,
    read_record,
)

#: Largest latent size a model file may declare.
MAX_CONFIG_SIZE = 1 << 16
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
    data = encode_container(tensors, record)
    atomic_write(path, data, force=force)
    frozen.metadata = read_record(data, str(path))
    frozen.path = Path(path)
    return frozen


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
    record = read_record(data, name)
    check_content(data, record, name)
    config, precision = _check_record(record, name)
    tensors = decode_tensors(data, name)
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
    record = {**read_record(data, str(path)), **extra}
    updated = encode_container(decode_tensors(data, str(path)), record)
    atomic_write(path, updated)
    loaded.metadata = read_record(updated, str(path))
    return loaded
