"""Model files: one safetensors file, weights + coding tables + JSON metadata.

Layout (see ``docs/model-format.md``):

* tensors ``model.<name>``: the ``CompressionModel`` state dict (float32, or
  float16 for compact shipped models; computation is always float32);
* tensors ``coding.counts`` (int32, D x K+1), ``coding.lower`` (int32, D) and
  ``coding.offsets`` (float32, D): the frozen coding tables; a variable-rate
  model (``arch = "vr"``, :mod:`mnistcodec.model.variable_rate`) has one set
  per level instead, ``coding.level.<l>.counts``, ``.lower`` and ``.offsets``
  for ``l = 0 .. L-1``, and its record lists the levels' lambdas (``levels``);
  with a mixture prior (``mixture_components = C > 1``) each level's tables have
  ``C x D`` rows (row ``c D + i``: dimension ``i`` under component ``c``) and
  ``coding.components.counts``, ``.lower`` and ``.offsets`` hold the one-row
  table of the components' weights (:mod:`mnistcodec.coding.mixture_coder`);
* metadata key ``mnistcodec``: JSON with the format name and version, the
  :class:`~mnistcodec.model.ModelConfig`, coding parameters, training record
  and the model fingerprint.

The fingerprint is the SHA-256 of everything the decoder needs: the
architecture and latent size, the coding tables and offsets (every level's, in
order), and the synthesis transform's stored weights (and a variable-rate
model's log-gains, which turn integers back into latents). Loading recomputes it and refuses a file whose
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
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mnistcodec import __version__
from mnistcodec.coding import codebook_levels as cbl
from mnistcodec.coding.limits import (
    MAX_LATENT_DIMS,
    latent_dims_problem,
    model_values_problem,
)
from mnistcodec.coding.tables import (
    DEFAULT_PRECISION,
    DEFAULT_TAIL_MASS,
    CodingTables,
    build_tables,
    build_weight_table,
)
from mnistcodec.errors import MnistCodecError, ModelFileError
from mnistcodec.model.compression_model import CompressionModel, ModelConfig
from mnistcodec.model.variable_rate import LEVEL_COUNT, is_mixture, is_variable_rate, make_model
from mnistcodec.storage.atomic import atomic_write
from mnistcodec.storage.model_container import (
    CONTENT_KEY,
    FORMAT_NAME,
    FORMAT_VERSION,
    check_content,
    decode_tensors,
    encode_container,
    read_model_bytes,
    read_record,
)

#: Largest latent size a model file may declare (see :mod:`mnistcodec.coding.limits`).
MAX_CONFIG_SIZE = MAX_LATENT_DIMS
WEIGHT_DTYPES = (torch.float32, torch.float16)
CODING_DTYPES = {
    "counts": torch.int32,
    "lower": torch.int32,
    "offsets": torch.float32,
}
#: A mixture model stores its counts as uint16 (every count is below 2**16 at precision <= 16).
COMPACT_COUNTS = torch.uint16
#: The decoder-side state a fingerprint covers, besides the coding tables.
DECODER_PREFIXES = ("synthesis_transform.", "entropy_bottleneck.log_gains")


def table_prefixes(config: ModelConfig) -> list[str]:
    """Tensor name prefixes of a model's coding tables: one per level for ``vr``."""
    if config.arch == "vr":
        levels = [f"coding.level.{level}." for level in range(LEVEL_COUNT)]
        return levels + (["coding.components."] if config.mixture_components > 1 else [])
    return ["coding."]


@dataclass
class LoadedModel:
    """A model ready for evaluation and coding, with what its file recorded."""

    model: CompressionModel
    tables: CodingTables
    fingerprint: str
    metadata: dict = field(default_factory=dict)
    path: Path | None = None
    #: A variable-rate model's tables, one per level (``tables`` is the reference level's).
    level_tables: tuple[CodingTables, ...] = ()
    #: A mixture model's one-row table of its components' weights.
    component_tables: CodingTables | None = None
    #: Codebook levels (model format version 2): level -> its codewords and their table.
    codebooks: dict[int, cbl.Codebook] = field(default_factory=dict)

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    @property
    def variable_rate(self) -> bool:
        return bool(self.level_tables)

    @property
    def levels(self) -> int:
        """How many operating points the model has (1 for a fixed-rate model)."""
        return len(self.level_tables) or 1

    @property
    def network_levels(self) -> list[int]:
        """The levels the transforms code (all but the codebook levels)."""
        return [level for level in range(self.levels) if level not in self.codebooks]

    @property
    def content_key(self) -> str:
        """What identifies the model's whole content, for caches: the fingerprint and the
        recorded content hash (the fingerprint alone leaves the analysis weights out)."""
        return f"{self.fingerprint}:{self.metadata.get(CONTENT_KEY) or self.fingerprint}"


def compute_fingerprint(
    config: ModelConfig,
    tables: CodingTables | Sequence[CodingTables],
    synthesis: dict,
    codebook_levels: Sequence[int] = (),
) -> str:
    """SHA-256 over the architecture, coding tables (every level's), offsets and decoder weights.

    ``synthesis`` holds a model's codebook pixels too (``codebook.level.<l>.pixels``),
    and its codebook levels enter the hashed head.
    """
    levels = [tables] if isinstance(tables, CodingTables) else list(tables)
    h = hashlib.sha256()
    head = {
        "arch": config.arch,
        "latent_dims": config.latent_dims,
        "precision": levels[0].precision,
    }
    if config.mixture_components > 1:
        head["mixture_components"] = config.mixture_components
    if codebook_levels:
        head[cbl.RECORD_KEY] = list(codebook_levels)
    h.update(json.dumps(head, sort_keys=True).encode())
    arrays = [array for t in levels for array in (t.counts, t.lower, t.offsets)]
    for array in arrays:
        h.update(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes())
    for name in sorted(synthesis):
        tensor = synthesis[name].detach().cpu().contiguous()
        h.update(name.encode() + b"\0" + str(tensor.dtype).encode() + b"\0")
        h.update(tensor.numpy().astype(tensor.numpy().dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()


def synthesis_part(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.startswith(DECODER_PREFIXES)}


def _all_tables(model: CompressionModel, precision: int, tail_mass: float) -> list[CodingTables]:
    """The model's tables: one set, or one per level of a variable-rate model."""
    if not is_variable_rate(model):
        return [build_tables(model.prior, precision=precision, tail_mass=tail_mass)]
    bottleneck = model.entropy_bottleneck
    tables = [
        build_tables(bottleneck.level_prior(level), precision=precision, tail_mass=tail_mass)
        for level in range(bottleneck.levels)
    ]
    if is_mixture(model):
        tables.append(build_weight_table(bottleneck.prior.weights(), precision))
    return tables


def _frozen(
    model: CompressionModel,
    tables: list[CodingTables],
    fingerprint: str,
    metadata: dict,
    codebooks: dict | None = None,
):
    if is_variable_rate(model):
        components = tables[-1] if is_mixture(model) else None
        tables = tables[:-1] if is_mixture(model) else tables
        reference = tables[model.reference_level]
        return LoadedModel(
            model,
            reference,
            fingerprint,
            metadata,
            level_tables=tuple(tables),
            component_tables=components,
            codebooks=dict(codebooks or {}),
        )
    return LoadedModel(model, tables[0], fingerprint, metadata)


def freeze(
    model: CompressionModel,
    precision: int = DEFAULT_PRECISION,
    tail_mass: float = DEFAULT_TAIL_MASS,
    weights_dtype: torch.dtype = torch.float32,
) -> LoadedModel:
    """Build coding tables and fingerprint for a trained model (done once).

    A variable-rate model takes its stored (possibly float16) weights first, so
    its tables are built from the gains the coder will use.
    """
    model = model.cpu().eval()
    state = {k: v.detach().clone().to(weights_dtype) for k, v in model.state_dict().items()}
    if is_variable_rate(model) and weights_dtype != torch.float32:
        model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    tables = _all_tables(model, precision, tail_mass)
    fingerprint = compute_fingerprint(model.config, tables, synthesis_part(state))
    if weights_dtype != torch.float32:
        model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    metadata = {"coding": {"precision": precision, "tail_mass": tail_mass}}
    return _frozen(model, tables, fingerprint, metadata)


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
    all_tables = frozen.level_tables or (frozen.tables,)
    if frozen.component_tables is not None:
        all_tables = (*all_tables, frozen.component_tables)
    compact = is_mixture(model) and precision <= 16
    for prefix, tables in zip(table_prefixes(model.config), all_tables, strict=True):
        counts = torch.from_numpy(tables.counts.copy())
        tensors[f"{prefix}counts"] = counts.to(COMPACT_COUNTS) if compact else counts
        tensors[f"{prefix}lower"] = torch.from_numpy(tables.lower.copy())
        tensors[f"{prefix}offsets"] = torch.from_numpy(tables.offsets.copy())
    if is_variable_rate(model):
        metadata = {"levels": list(model.lambdas), **(metadata or {})}
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
        raise ModelFileError(
            f"{name} has an invalid configuration (config and coding must be objects)"
        )
    problem = latent_dims_problem(config.get("latent_dims", 1))
    if problem is not None:
        raise ModelFileError(f"{name} has an invalid configuration: {problem}")
    for key in ("arch", "prior", "distortion"):
        if key in config and not isinstance(config[key], str):
            raise ModelFileError(f"{name} has an invalid configuration: {key} must be a string")
    lmbda = config.get("lmbda", 1.0)
    if type(lmbda) not in (int, float) or not math.isfinite(lmbda):
        raise ModelFileError(f"{name} has an invalid configuration: lmbda must be a finite number")
    precision = coding.get("precision")
    if type(precision) is not int or not 1 <= precision <= 24:
        raise ModelFileError(
            f"{name} has invalid coding parameters: precision = {precision!r:.40} "
            "(expected an integer from 1 to 24)"
        )
    try:
        return ModelConfig.from_dict(config), precision
    except (TypeError, ValueError, MnistCodecError) as exc:
        raise ModelFileError(f"{name} has an invalid configuration: {exc}") from None


def _skeleton(config: ModelConfig, name: str) -> CompressionModel:
    """The model built on the ``meta`` device: shapes only, no memory, no initialisation."""
    try:
        with torch.device("meta"):
            return make_model(config)
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
        for value in [
            *vars(module).values(),
            *module.parameters(recurse=False),
            *module.buffers(recurse=False),
        ]
    )
    if not leftover:
        return skeleton
    model = make_model(skeleton.config)
    model.load_state_dict(state)
    return model


def _read_tables(
    tensors: dict, config: ModelConfig, precision: int, name: str, codebook_levels=()
) -> list[CodingTables]:
    """The stored coding tables (one set per level for ``vr``), dtypes and rows checked.

    A codebook level's one-row table is checked with its codewords
    (:func:`~mnistcodec.coding.codebook_levels.read_codebooks`).
    """
    out = []
    codebook_prefixes = {f"coding.level.{level}." for level in codebook_levels}
    for prefix in table_prefixes(config):
        for key, dtypes in _coding_dtypes(config, precision).items():
            if tensors[prefix + key].dtype not in dtypes:
                expected = " or ".join(str(d).removeprefix("torch.") for d in dtypes)
                raise ModelFileError(
                    f"{name}: tensor {prefix + key} is "
                    f"{str(tensors[prefix + key].dtype).removeprefix('torch.')}, "
                    f"expected {expected}"
                )
        try:
            tables = CodingTables(
                counts=tensors[prefix + "counts"].numpy().astype(np.int32),
                lower=tensors[prefix + "lower"].numpy().astype(np.int32),
                offsets=tensors[prefix + "offsets"].numpy().astype(np.float32),
                precision=precision,
            ).validate()
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{name} has invalid coding tables: {exc}") from None
        if prefix not in codebook_prefixes:
            _check_rows(tables, prefix, config, name)
        out.append(tables)
    return out


def _coding_dtypes(config: ModelConfig, precision: int) -> dict[str, tuple[torch.dtype, ...]]:
    """The dtypes a model's coding tensors may have: a mixture's counts may be uint16."""
    dtypes = {key: (dtype,) for key, dtype in CODING_DTYPES.items()}
    if config.mixture_components > 1 and precision <= 16:
        dtypes["counts"] = (COMPACT_COUNTS, torch.int32)
    return dtypes


def _check_rows(tables: CodingTables, prefix: str, config: ModelConfig, name: str) -> None:
    """A table's rows: ``D`` (``C x D`` per level of a mixture, offsets 0; one row of ``C`` weights)."""
    count = config.mixture_components
    if prefix == "coding.components.":
        if tables.latent_dims != 1 or tables.width != count:
            raise ModelFileError(f"{name}: the component table does not match components={count}")
        return
    if tables.latent_dims != count * config.latent_dims:
        raise ModelFileError(
            f"{name}: coding tables do not match latent_dims={config.latent_dims}"
            + (f" and components={count}" if count > 1 else "")
        )
    if count > 1 and np.any(tables.offsets != 0):
        raise ModelFileError(f"{name}: a mixture's coding tables must have offsets 0")


def _read_state(tensors: dict, skeleton: CompressionModel, name: str, codebook_levels=()) -> dict:
    """The stored weights, checked against the skeleton's names and shapes."""
    expected = {f"model.{k}": v.shape for k, v in skeleton.state_dict().items()}
    coding = {prefix + key for prefix in table_prefixes(skeleton.config) for key in CODING_DTYPES}
    coding |= {cbl.pixels_name(level) for level in codebook_levels}
    if set(tensors) != set(expected) | coding:
        missing = sorted((set(expected) | coding) - set(tensors))[:3]
        extra = sorted(set(tensors) - set(expected) - coding)[:3]
        raise ModelFileError(
            f"{name} does not match its configuration (missing {missing}, unexpected {extra})"
        )
    state = {}
    for key, shape in expected.items():
        tensor = tensors[key]
        if tensor.shape != shape or tensor.dtype not in WEIGHT_DTYPES:
            raise ModelFileError(
                f"{name}: tensor {key} is {str(tensor.dtype).removeprefix('torch.')} "
                f"{tuple(tensor.shape)}, expected float32 or float16 {tuple(shape)}"
            )
        state[key.removeprefix("model.")] = tensor
    return state


def load_model_bytes(data: bytes, name: str = "model") -> LoadedModel:
    """Load and verify a model from the bytes of a model file."""
    record = read_record(data, name)
    check_content(data, record, name)
    config, precision = _check_record(record, name)
    level_count = LEVEL_COUNT if config.arch == "vr" else 1
    codebook_levels = cbl.record_levels(record, level_count, record["format_version"], name)
    if codebook_levels and config.arch != "vr":
        raise ModelFileError(f"{name}: only a variable-rate model may have codebook levels")
    tensors = decode_tensors(data, name)
    skeleton = _skeleton(config, name)
    state = _read_state(tensors, skeleton, name, codebook_levels)
    tables = _read_tables(tensors, config, precision, name, codebook_levels)
    codebooks = cbl.read_codebooks(tensors, codebook_levels, tables, name)
    decoder_part = {**synthesis_part(state), **cbl.pixel_tensors(codebooks)}
    fingerprint = compute_fingerprint(config, tables, decoder_part, codebook_levels)
    if fingerprint != record.get("fingerprint"):
        raise ModelFileError(
            f"{name} fails its integrity check: stored fingerprint {str(record.get('fingerprint'))[:16]}... "
            f"but contents hash to {fingerprint[:16]}...; the file was modified or corrupted"
        )
    for key, tensor in state.items():
        if not torch.isfinite(tensor).all():
            raise ModelFileError(f"{name} holds non-finite weights ({key})")
    problem = model_values_problem(state, tables)
    if problem is not None:
        raise ModelFileError(f"{name} is a degenerate model: {problem}")
    model = _materialise(skeleton, state)
    model.eval()
    return _frozen(model, tables, fingerprint, record, codebooks)


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
