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
from pathlib import Path
from typing import TYPE_CHECKING

from mnistcodec.errors import ModelFileError

if TYPE_CHECKING:
    from mnistcodec.coding.model_files import LoadedModel

PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"
#: The model used when none is named: the shipped variable-rate model.
DEFAULT_MODEL = "vr-mse"
#: Most bytes a shipped model file may take (float16 weights, integer tables and records):
#: 6.5 MB, for the squared-error model's finer top levels (lambda up to 16,000).
MAX_SHIPPED_BYTES = 6_500_000


def shipped_models() -> dict[str, Path]:
    """Names of the models that ship with the package and their files."""
    if not PRETRAINED_DIR.is_dir():
        return {}
    return {
        p.name.removesuffix(".safetensors"): p for p in sorted(PRETRAINED_DIR.glob("*.safetensors"))
    }


def is_model_reference(text: str) -> bool:
    """Whether a command-line word names a model: a shipped name or a ``.safetensors`` file."""
    return text in shipped_models() or text.endswith(".safetensors")


def shipped_for_fingerprint(fingerprint: str) -> str | None:
    """The shipped model with this fingerprint (from ``MANIFEST.json``), if any."""
    manifest = PRETRAINED_DIR / "MANIFEST.json"
    if not manifest.is_file():
        return None
    entries = json.loads(manifest.read_text())
    return next(
        (name for name, entry in entries.items() if entry.get("fingerprint") == fingerprint), None
    )


def resolve_model(name_or_path: str | os.PathLike | None = None) -> LoadedModel:
    """Load a shipped model by name, or a model file by path (a path that exists wins).

    ``None`` is :data:`DEFAULT_MODEL`.
    """
    # lazy: PyTorch; the catalogue above serves the command line without it
    from mnistcodec.coding.model_files import load_model

    name_or_path = os.fspath(DEFAULT_MODEL if name_or_path is None else name_or_path)
    shipped = shipped_models()
    if name_or_path in shipped and not Path(name_or_path).exists():
        return load_model(shipped[name_or_path])
    path = Path(name_or_path)
    if not path.exists():
        names = ", ".join(shipped) or "none"
        raise ModelFileError(
            f"no model file {name_or_path!r} and no shipped model of that name (shipped: {names})"
        )
    return load_model(path)
