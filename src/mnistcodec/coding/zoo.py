"""Pretrained models shipped with the package, and model lookup by name or path.

Each shipped model is a normal model file (float16 weights, exact integer
coding tables) in ``mnistcodec/pretrained/``; its metadata records how it was
trained (``training_command``), the SHA-256 of the data it was trained on and
its evaluation on the 10,000 MNIST test digits (``evaluation``).
:func:`check_shipped` re-derives those figures from the file.
"""

from __future__ import annotations

import math
from pathlib import Path

from mnistcodec.coding.model_files import LoadedModel, load_model
from mnistcodec.errors import ModelFileError

PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"
CHECKED_FIGURES = ("info_bits", "string_bits", "stream_bits_per_digit", "psnr_db", "mad")


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


def check_shipped(name: str, images, tolerance: float = 1e-4) -> dict[str, tuple[float, float, bool]]:
    """Re-evaluate a shipped model; ``figure -> (recorded, measured, equal)``."""
    from mnistcodec.experiments.evaluate import evaluate

    loaded = resolve_model(name)
    recorded = loaded.metadata.get("evaluation") or {}
    if not recorded:
        raise ModelFileError(f"shipped model {name} records no evaluation figures")
    measured = evaluate(loaded, images[: int(recorded.get("n", len(images)))])
    out = {}
    for key in CHECKED_FIGURES:
        a, b = float(recorded[key]), float(measured[key])
        out[key] = (a, b, math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance))
    return out
