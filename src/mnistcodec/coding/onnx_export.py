"""Export a frozen model for other runtimes: the transforms as ONNX, the tables as JSON.

An export directory holds what a decoder (or encoder) in another language or
runtime needs besides a range coder and the specs (``docs/mnc-format.md``,
``docs/model-format.md``; how to use it: ``docs/onnx-export.md``):

* ``analysis.onnx``: ``x`` (N, 1, 28, 28) float32, ``pixels / 255`` -> ``y`` (N, D);
* ``synthesis.onnx``: ``y_hat`` (N, D) float32, ``k + offsets`` -> ``x_hat`` (N, 1, 28, 28);
* ``tables.json``: the integer coding tables as the model file stores them
  (``counts``, ``lower``, ``offsets``, ``precision``, ``tail_mass``), plus the
  coded model that follows from them by the spec's rule (``left``: each row's
  cumulative 24-bit weights) and the overflow code's parameters;
* ``codebooks.u8``, for a model with codebook levels (model format version 2)
  only: every codebook level's codewords, uint8 (K, 28, 28) each, back to back
  in level order; ``tables.json`` gives each level's ``codewords`` and byte
  ``offset`` (``levels.codebooks``);
* ``manifest.json``: the model's fingerprint (the one every ``.mnc`` file
  carries), its configuration, the ONNX opset, each file's SHA-256 and the
  input and output names, shapes and scalings of both graphs.

The graphs are the reference layers of :mod:`mnistcodec.model.transforms`
(``reference_forward``), not the CPU kernels, with a dynamic batch axis and
float32 weights (float16 model files are widened exactly). Both end where the
model does: rounding ``y`` to integers and ``x_hat`` to pixels stay outside
the graphs, as the manifest states, so that every runtime rounds the same way.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mnistcodec import __version__
from mnistcodec.coding.model_files import LoadedModel
from mnistcodec.coding.tables import CodingTables
from mnistcodec.errors import InputError, MnistCodecError
from mnistcodec.storage.atomic import atomic_directory, atomic_write
from mnistcodec.storage.digits import IMAGE_SHAPE
from mnistcodec.storage.export_dirs import check_export_directory

EXPORT_FORMAT = "mnistcodec-onnx-export"
EXPORT_FORMAT_VERSION = 1
TABLES_FORMAT = "mnistcodec-coding-tables"
OPSET = 17
MODEL_BITS = 24  # the range coder's fixed-point model precision (docs/mnc-format.md)
OVERFLOW_EXPONENTS = 130
OVERFLOW_CHUNK_BITS = 16
FILES = ("analysis.onnx", "synthesis.onnx", "tables.json", "manifest.json")
INSTALL_HINT = "pip install 'mnistcodec[onnx]'"

ANALYSIS_IO = ("x", "y")
SYNTHESIS_IO = ("y_hat", "x_hat")
CONDITIONED_SYNTHESIS_IO = ("y_hat", "level", "x_hat")
CODED_MODEL_RULE = (
    "left[j] = floor(C[j] * (2^24 - n) / 2^precision) + j for j = 0..K, left[K+1] = 2^24, "
    "with n = K + 1 and C[j] = counts[0] + ... + counts[j-1]"
)
UNIFORM_RULE = "U(size): left[s] = s * (2^24 // size); the last symbol takes the rest up to 2^24"


class _Reference(nn.Module):
    """A transform's ``reference_forward`` as a module's ``forward``, for tracing."""

    def __init__(self, transform: nn.Module) -> None:
        super().__init__()
        self.transform = transform

    def forward(self, inputs: torch.Tensor, levels: torch.Tensor | None = None) -> torch.Tensor:
        if levels is None:
            return self.transform.reference_forward(inputs)
        return self.transform.reference_forward(inputs, self.transform.level_affine(levels))


def check_export_dir(out_dir: str | os.PathLike, force: bool = False) -> Path:
    """Validate an export directory before any work: new, or (``force``) an earlier export.

    An existing directory is replaced only with ``force``, and only if it is
    empty or holds an earlier export (its ``manifest.json`` says so), so that
    ``--force`` never deletes a directory of other files.
    """
    return check_export_directory(out_dir, force, EXPORT_FORMAT, "export")


def _onnx():
    """The ``onnx`` package (it checks the exported graphs), or an error that says how to install it."""
    try:
        import onnx  # lazy: optional dependency (mnistcodec[onnx]), needed only to export
    except ImportError:
        raise MnistCodecError(
            f"ONNX export needs the onnx package; install it with {INSTALL_HINT}"
        ) from None
    return onnx


def _to_onnx(
    transform: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...], names: tuple[str, ...]
) -> bytes:
    """The ONNX bytes of ``transform.reference_forward`` with a dynamic batch axis, checked.

    ``example`` and ``names`` may hold a second input, each digit's level (int64,
    ``(N,)``), for a conditioned synthesis transform; the last name is the output's.
    """
    onnx = _onnx()
    if not hasattr(transform, "reference_forward"):
        raise InputError(f"{type(transform).__name__} has no reference layers to export")
    module = _Reference(transform).eval()
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter needs no onnxscript; torch warns that it is the legacy one.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example if isinstance(example, tuple) else (example,),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=list(names[:-1]),
            output_names=[names[-1]],
            dynamic_axes={name: {0: "N"} for name in names},
        )
    data = buffer.getvalue()
    onnx.checker.check_model(onnx.load_from_string(data))
    return data


def coded_model(tables: CodingTables) -> list[list[int]]:
    """Each row's cumulative 24-bit weights ``left`` (K + 2 values), by the spec's rule."""
    counts = tables.counts.astype(np.int64)
    n = counts.shape[1]
    cumulative = np.concatenate([np.zeros((counts.shape[0], 1), np.int64), counts[:, :-1]], axis=1)
    cumulative = np.cumsum(cumulative, axis=1)
    # C[j] < 2^24 and 2^24 - n < 2^24: every product fits in 48 bits.
    left = ((cumulative * ((1 << MODEL_BITS) - n)) >> tables.precision) + np.arange(n)
    full = np.full((counts.shape[0], 1), 1 << MODEL_BITS, np.int64)
    return np.concatenate([left, full], axis=1).tolist()


def _level_record(tables: CodingTables) -> dict:
    return {
        "counts": tables.counts.tolist(),
        "lower": tables.lower.tolist(),
        "offsets": [float(v) for v in tables.offsets],
        "coded_model": {"left": coded_model(tables)},
    }


def levels_record(loaded: LoadedModel) -> dict:
    """A variable-rate model's levels: lambdas, float32 gains and each level's tables."""
    model = loaded.model
    gains = torch.exp(model.entropy_bottleneck.log_gains.detach().cpu()).to(torch.float32)
    return {
        "count": loaded.levels,
        "reference_level": model.reference_level,
        "lambdas": [float(v) for v in model.lambdas],
        "gains": [[float(v) for v in row] for row in gains.numpy()],
        "tables": [_level_record(t) for t in loaded.level_tables],
        **({"codebooks": codebooks_record(loaded)} if loaded.codebooks else {}),
    }


CODEBOOK_RULE = (
    "a digit at a codebook level is one symbol, codeword index i, coded with the level's "
    "one-row table; it decodes to codeword i, the 784 bytes at offset + 784 i of codebooks.u8 "
    "(row-major 28 x 28 uint8 pixels); the encoder sends the codeword nearest in squared error"
)


def codebooks_record(loaded: LoadedModel) -> dict:
    """Each codebook level's codewords and where they lie in ``codebooks.u8``."""
    offset, levels = 0, {}
    for level, book in sorted(loaded.codebooks.items()):
        levels[str(level)] = {"codewords": book.size, "offset": offset}
        offset += book.codewords.nbytes
    return {"file": "codebooks.u8", "rule": CODEBOOK_RULE, "levels": levels}


def codebook_bytes(loaded: LoadedModel) -> bytes:
    """``codebooks.u8``: the codewords of every codebook level, in level order."""
    return b"".join(
        np.ascontiguousarray(book.codewords, dtype=np.uint8).tobytes()
        for _, book in sorted(loaded.codebooks.items())
    )


def components_record(loaded: LoadedModel) -> dict:
    """A mixture's component table and how each level's rows are laid out."""
    count = loaded.config.mixture_components
    return {
        "count": count,
        "rows": f"row c * {loaded.config.latent_dims} + i of a level's tables: dimension i "
        "under component c; a digit codes c first, with this table",
        "table": _level_record(loaded.component_tables),
    }


def tables_record(loaded: LoadedModel) -> dict:
    """The coding tables in the spec's form, as JSON-ready values.

    For a variable-rate model the top-level tables are the reference level's, and
    ``levels`` holds every level's gains and tables.
    """
    tables = loaded.tables
    coding = loaded.metadata.get("coding", {})
    record = {
        "format": TABLES_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "fingerprint": loaded.fingerprint,
        "model_format_version": loaded.metadata.get("format_version", 1),
        "latent_dims": tables.latent_dims,
        "width": tables.width,
        "precision": tables.precision,
        "tail_mass": coding.get("tail_mass"),
        "counts": tables.counts.tolist(),
        "lower": tables.lower.tolist(),
        "offsets": [float(v) for v in tables.offsets],
        "coded_model": {
            "model_bits": MODEL_BITS,
            "rule": CODED_MODEL_RULE,
            "left": coded_model(tables),
        },
        "overflow": {
            "exponent_model": f"U({OVERFLOW_EXPONENTS})",
            "chunk_bits": OVERFLOW_CHUNK_BITS,
            "uniform_rule": UNIFORM_RULE,
        },
        "range_coder": {"word_bits": 32, "state_bits": 64, "model_bits": MODEL_BITS},
    }
    if loaded.variable_rate:
        record["levels"] = levels_record(loaded)
    if loaded.component_tables is not None:
        record["latent_dims"] = loaded.config.latent_dims
        record["components"] = components_record(loaded)
    return record


def _graph_record(
    file: str, names: tuple[str, str], shapes: tuple[list, list], notes: tuple[str, str]
):
    return {
        "file": file,
        "input": {"name": names[0], "shape": shapes[0], "dtype": "float32", "scaling": notes[0]},
        "output": {"name": names[1], "shape": shapes[1], "dtype": "float32", "then": notes[1]},
    }


def manifest_record(loaded: LoadedModel, hashes: dict[str, str], source: str | None) -> dict:
    """What the export holds: the model, the graphs' inputs and outputs, each file's hash."""
    dims, image = loaded.config.latent_dims, ["N", 1, *IMAGE_SHAPE]
    if loaded.variable_rate:  # level l: levels.gains[l] and levels.tables[l].offsets
        quantise = "k = round_half_to_even(gains_l * y - offsets_l) in float32, at level l"
        dequantise = "y_hat = (float32(k) + offsets_l) / gains_l (float32), at the digit's level l"
    else:
        quantise = "k = round_half_to_even(y - offsets) in float32: the integer latents to code"
        dequantise = "y_hat = float32(k) + offsets (float32), k the decoded integer latents"
    analysis = _graph_record(
        "analysis.onnx",
        ANALYSIS_IO,
        (image, ["N", dims]),
        ("x = pixels / 255 (uint8 pixels to float32 in [0, 1]), channel-first", quantise),
    )
    synthesis = _graph_record(
        "synthesis.onnx",
        SYNTHESIS_IO,
        (["N", dims], image),
        (
            dequantise,
            "pixels = round_half_to_even(255 * x_hat) saturated to 0..255 (NaN gives 0), uint8",
        ),
    )
    if loaded.config.conditioned_decoder:
        synthesis["level_input"] = {
            "name": CONDITIONED_SYNTHESIS_IO[1],
            "shape": ["N"],
            "dtype": "int64",
            "scaling": "each digit's level l (0 .. levels - 1), as the .mnc file records it",
        }
    return {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "package_version": __version__,
        "model": source,
        "fingerprint": loaded.fingerprint,
        "config": loaded.config.to_dict(),
        "opset": OPSET,
        "analysis": analysis,
        "synthesis": synthesis,
        "tables": "tables.json",
        "sha256": hashes,
    }


def _json_bytes(record: dict, indent: int | None = 1) -> bytes:
    return (json.dumps(record, indent=indent, sort_keys=True) + "\n").encode("utf-8")


def _synthesis_onnx(transform: nn.Module, dims: int) -> bytes:
    """The synthesis graph: with a second input, each digit's level, when it is conditioned."""
    if not getattr(transform, "levels", None):
        return _to_onnx(transform, torch.zeros(1, dims), SYNTHESIS_IO)
    example = (torch.zeros(1, dims), torch.zeros(1, dtype=torch.int64))
    return _to_onnx(transform, example, CONDITIONED_SYNTHESIS_IO)


def export_onnx(loaded: LoadedModel, out_dir: str | os.PathLike, force: bool = False) -> Path:
    """Write ``loaded``'s transforms (ONNX) and coding tables (JSON) into directory ``out_dir``.

    ``out_dir`` must be new, or with ``force`` an earlier export or an empty
    directory; it is written atomically (all files appear at once, or none).
    A variable-rate model's graphs are those of any fixed-rate model (its
    transforms do not depend on the level); its levels go into ``tables.json``.
    Returns ``out_dir``.
    """
    path = check_export_dir(out_dir, force=force)
    model = copy.deepcopy(loaded.model).cpu().eval()  # the caller's model stays as it is
    dims = loaded.config.latent_dims
    files = {
        "analysis.onnx": _to_onnx(
            model.analysis_transform, torch.zeros(1, 1, *IMAGE_SHAPE), ANALYSIS_IO
        ),
        "synthesis.onnx": _synthesis_onnx(model.synthesis_transform, dims),
        "tables.json": _json_bytes(tables_record(loaded), indent=None),
    }
    if loaded.codebooks:
        files["codebooks.u8"] = codebook_bytes(loaded)
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    source = loaded.path.name if loaded.path is not None else None
    files["manifest.json"] = _json_bytes(manifest_record(loaded, hashes, source))
    with atomic_directory(path, replace_link=force) as put:
        for name, data in files.items():
            put(name, data)
    return path


def onnx_graph(loaded: LoadedModel, side: str, graphs_dir: Path | None = None) -> bytes:
    """The ONNX bytes of one transform, exported once and kept in ``graphs_dir`` if given.

    A kept graph is named by the SHA-256 of the model's whole content, so a
    changed model never meets an old graph; one that cannot be read is exported again.
    """
    path = None
    if graphs_dir is not None:
        key = hashlib.sha256(loaded.content_key.encode()).hexdigest()
        path = graphs_dir / f"{key[:32]}.{side}.onnx"
        try:
            return path.read_bytes()
        except OSError:
            pass
    model = copy.deepcopy(loaded.model).cpu().eval()
    try:
        if side == "analysis":
            data = _to_onnx(model.analysis_transform, torch.zeros(1, 1, *IMAGE_SHAPE), ANALYSIS_IO)
        else:
            data = _synthesis_onnx(model.synthesis_transform, loaded.config.latent_dims)
    except MnistCodecError as exc:
        raise InputError(f"the onnxruntime engine cannot export this model: {exc}") from None
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, data)
        except OSError:  # a read-only cache only costs the export next time
            pass
    return data
