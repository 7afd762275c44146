"""Writing codebook levels into a model file (model format version 2).

:func:`save_with_codebooks` takes a variable-rate model file and codebooks
(:class:`~mnistcodec.coding.codebook_levels.Codebook`, trained by
:mod:`mnistcodec.experiments.codebooks`) and writes the model whose lowest
levels are those codebooks; ``mnistcodec codebooks`` is its command line.
"""

from __future__ import annotations

import os

import torch

from mnistcodec import __version__
from mnistcodec.coding import codebook_levels as cbl
from mnistcodec.coding.model_files import (
    LoadedModel,
    compute_fingerprint,
    load_model,
    synthesis_part,
)
from mnistcodec.errors import ModelFileError
from mnistcodec.storage.atomic import atomic_write
from mnistcodec.storage.model_container import (
    CODEBOOK_FORMAT_VERSION,
    decode_tensors,
    encode_container,
    read_model_bytes,
    read_record,
)


def save_with_codebooks(
    source: LoadedModel,
    codebooks: dict[int, cbl.Codebook],
    path: str | os.PathLike,
    metadata: dict | None = None,
    force: bool = False,
) -> LoadedModel:
    """The variable-rate model file ``source`` with ``codebooks`` as some of its levels.

    Written atomically to ``path`` as model format version 2: each codebook
    level's tables become its codewords' one-row table, its codewords are
    added, the network and the other levels are kept byte for byte. The
    record's evaluations (of the source's levels) are dropped; ``metadata``
    adds keys.
    """
    if source.path is None or not source.variable_rate or source.codebooks:
        raise ModelFileError("codebook levels go into a variable-rate model file without any")
    data = read_model_bytes(source.path)
    tensors, record = decode_tensors(data, str(source.path)), read_record(data, str(source.path))
    levels = cbl.record_levels(
        {cbl.RECORD_KEY: sorted(codebooks)}, source.levels, CODEBOOK_FORMAT_VERSION, "codebooks"
    )
    tables = list(source.level_tables)
    for level in levels:
        book = codebooks[level]
        cbl.check_table(book.tables, book.size, f"level {level}'s codebook table")
        if book.tables.precision != source.tables.precision:
            raise ModelFileError("a codebook table must have the model's coding precision")
        prefix = f"coding.level.{level}."
        tensors[prefix + "counts"] = torch.from_numpy(book.tables.counts.copy()).to(
            tensors[prefix + "counts"].dtype
        )
        tensors[prefix + "lower"] = torch.from_numpy(book.tables.lower.copy())
        tensors[prefix + "offsets"] = torch.from_numpy(book.tables.offsets.copy())
        tables[level] = book.tables
    pixels = cbl.pixel_tensors(codebooks)
    tensors.update(pixels)
    if source.component_tables is not None:
        tables.append(source.component_tables)
    state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    decoder_part = {**synthesis_part(state), **pixels}
    for key in ("evaluation", "evaluation_levels", "fingerprint"):
        record.pop(key, None)
    record.update(
        format_version=CODEBOOK_FORMAT_VERSION,
        package_version=__version__,
        fingerprint=compute_fingerprint(source.config, tables, decoder_part, levels),
        **{cbl.RECORD_KEY: list(levels)},
        **(metadata or {}),
    )
    atomic_write(path, encode_container(tensors, record), force=force)
    return load_model(path)
