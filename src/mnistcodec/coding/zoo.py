"""Pretrained models shipped with the package, and model lookup by name or path.

Each shipped model is a normal model file (float16 weights, exact integer
coding tables) in ``mnistcodec/pretrained/``; its metadata records how it was
trained (``training_command``), the SHA-256 of the data it was trained on and
its evaluation on the 10,000 MNIST test digits (``evaluation``).
:func:`mnistcodec.experiments.shipped.check_shipped` re-derives those figures
from the file.
"""

from __future__ import annotations

import os
from pathlib import Path

from mnistcodec.coding.model_files import LoadedModel, load_model
from mnistcodec.errors import ModelFileError

PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"


def shipped_models() -> dict[str, Path]:
    """Names of the models that ship with the package and their files."""
    if not PRETRAINED_DIR.is_dir():
        return {}
    return {p.name.removesuffix(".safetensors"): p for p in sorted(PRETRAINED_DIR.glob("*.safetensors"))}


def resolve_model(name_or_path: str | os.PathLike) -> LoadedModel:
    """Load a shipped model by name, or a model file by path (a path that exists wins)."""
    name_or_path = os.fspath(name_or_path)
    shipped = shipped_models()
    if name_or_path in shipped and not Path(name_or_path).exists():
        return load_model(shipped[name_or_path])
    path = Path(name_or_path)
    if not path.exists():
        names = ", ".join(shipped) or "none"
        raise ModelFileError(f"no model file {name_or_path!r} and no shipped model of that name (shipped: {names})")
    return load_model(path)
