"""Model lookup: a shipped model name or a path to a model file."""

from __future__ import annotations

from pathlib import Path

from mnistcodec.errors import ModelFileError
from mnistcodec.modelfile import LoadedModel, load_model

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"


def shipped_models() -> dict[str, Path]:
    """Names of the models that ship with the package and their files."""
    if not PRETRAINED_DIR.is_dir():
        return {}
    return {p.name.removesuffix(".safetensors"): p for p in sorted(PRETRAINED_DIR.glob("*.safetensors"))}


def resolve_model(name_or_path: str) -> LoadedModel:
    """Load a shipped model by name, or a model file by path."""
    shipped = shipped_models()
    if name_or_path in shipped and not Path(name_or_path).exists():
        return load_model(shipped[name_or_path])
    path = Path(name_or_path)
    if not path.exists():
        names = ", ".join(shipped) or "none"
        raise ModelFileError(f"no model file {name_or_path!r} and no shipped model of that name (shipped: {names})")
    return load_model(path)
