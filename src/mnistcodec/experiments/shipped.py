"""Shipped models re-evaluated: do the figures recorded in their files still hold?

Each shipped model (:mod:`mnistcodec.coding.zoo`) records its evaluation on the
MNIST test digits; :func:`check_shipped` evaluates the file again and compares
figure by figure (``mnistcodec models --check``).
"""

from __future__ import annotations

import math

from mnistcodec.coding.zoo import resolve_model
from mnistcodec.errors import ModelFileError
from mnistcodec.experiments.evaluate import evaluate

CHECKED_FIGURES = ("info_bits", "string_bits", "stream_bits_per_digit", "psnr_db", "mad")


def check_shipped(
    name: str, images, tolerance: float = 1e-4
) -> dict[str, tuple[float, float, bool]]:
    """Re-evaluate a shipped model on the float32 reference path; ``figure -> (recorded,
    measured, equal)``."""
    loaded = resolve_model(name)
    recorded = loaded.metadata.get("evaluation") or {}
    if not recorded:
        raise ModelFileError(f"shipped model {name} records no evaluation figures")
    n = int(recorded.get("n", len(images)))
    measured = evaluate(loaded, images[:n], precision="fp32")
    out = {}
    for key in CHECKED_FIGURES:
        # Figures recorded before bit strings (no byte_string_bits) measured byte strings.
        old = key == "string_bits" and "byte_string_bits" not in recorded
        now = "byte_string_bits" if old else key
        a, b = float(recorded[key]), float(measured[now])
        out[key] = (a, b, math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance))
    return out
