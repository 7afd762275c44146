"""Pretrained models shipped with the package, and model lookup by name or path.

Each shipped model is a normal model file (float16 weights, exact integer
coding tables) in ``mnistcodec/pretrained/``; its metadata records how it was
trained (``training_command``), the SHA-256 of the data it was trained on and
its evaluation on the 10,000 MNIST test digits (``evaluation``).
:func:`mnistcodec.experiments.shipped.check_shipped` re-derives those figures
from the file. The catalogue (names, files, the default) imports no PyTorch;
:func:`resolve_model` loads.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mnistcodec.errors import ModelFileError

if TYPE_CHECKING:
    from mnistcodec.coding.model_files import LoadedModel

PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"
#: The model used when none is named: the shipped variable-rate model.
DEFAULT_MODEL = "vr-codebook"
#: Most bytes a shipped model file may take (float16 weights, integer tables and records):
#: 11 MB, for ``vr-codebook``'s 5,456 whole-digit codewords (4.3 MB) beside the network.
MAX_SHIPPED_BYTES = 11_000_000


def shipped_models() -> dict[str, Path]:
    """Names of the models that ship with the package and their files."""
    if not PRETRAINED_DIR.is_dir():
        return {}
    return {
        p.name.removesuffix(".safetensors"): p for p in sorted(PRETRAINED_DIR.glob("*.safetensors"))
    }


#: The bytes every model file's header holds (its record's ``format``,
#: :data:`mnistcodec.storage.model_container.FORMAT_NAME`; spelled here so the
#: catalogue imports no PyTorch).
MODEL_FORMAT_BYTES = b"mnistcodec-model"
#: Most header bytes read to recognise a model file.
_SNIFF_BYTES = 1 << 24


def is_model_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a regular file whose bytes are a model file's (whatever its name).

    A model file is a safetensors file: an 8-byte little-endian header length,
    then a JSON header that holds the record with ``format`` = ``mnistcodec-model``.
    Only the header is read; a directory or anything unreadable is not a model.
    """
    try:
        if not Path(path).is_file():
            return False
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                return False
            (length,) = struct.unpack("<Q", head)
            if not 2 <= length <= _SNIFF_BYTES:
                return False
            header = handle.read(length)
    except OSError:
        return False
    return header[:1] == b"{" and MODEL_FORMAT_BYTES in header


def _is_path(text: str) -> bool:
    """A word written as a path (``./vr``, ``runs/m``), never read as a shipped model's name."""
    return os.sep in text or "/" in text


def is_model_reference(text: str) -> bool:
    """Whether a command-line word names a model: a shipped name, a ``.safetensors`` name,
    or a file whose bytes are a model file's (``train --out runs/seed.model`` wrote it)."""
    if text in shipped_models() and not _is_path(text):
        return True
    return text.endswith(".safetensors") or is_model_file(text)


def shipped_for_fingerprint(fingerprint: str) -> str | None:
    """The shipped model with this fingerprint (from ``MANIFEST.json``), if any."""
    manifest = PRETRAINED_DIR / "MANIFEST.json"
    if not manifest.is_file():
        return None
    entries = json.loads(manifest.read_text())
    return next(
        (name for name, entry in entries.items() if entry.get("fingerprint") == fingerprint), None
    )


def resolve_model(
    name_or_path: str | os.PathLike | None = None,
    notify: Callable[[str], None] | None = None,
) -> LoadedModel:
    """Load a shipped model by name, or a model file by path.

    ``None`` is :data:`DEFAULT_MODEL`. A shipped model's bare name means the
    shipped model, even where a file or directory of that name exists (a
    directory is never a model: ``export vr --onnx vr`` makes one); a file of
    that name is read when written as a path (``./vr``). When a bare name is
    both, ``notify`` (if given) is told which was taken.
    """
    # lazy: PyTorch; the catalogue above serves the command line without it
    from mnistcodec.coding.model_files import load_model

    name_or_path = os.fspath(DEFAULT_MODEL if name_or_path is None else name_or_path)
    shipped = shipped_models()
    path = Path(name_or_path)
    if name_or_path in shipped and not _is_path(name_or_path):
        if notify is not None and path.is_file():
            notify(
                f"{name_or_path} is the shipped model {name_or_path}; the local file "
                f"{name_or_path} was not used (write ./{name_or_path} to use it)"
            )
        return load_model(shipped[name_or_path])
    if path.is_dir():
        raise ModelFileError(f"{name_or_path} is a directory, not a model file")
    if not path.exists():
        names = ", ".join(shipped) or "none"
        raise ModelFileError(
            f"no model file {name_or_path!r} and no shipped model of that name (shipped: {names})"
        )
    return load_model(path)
