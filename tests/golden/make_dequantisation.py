"""Write ``dequantisation.json``: test vectors for "latents to pixels" (run once; they never change).

Each case is an integer latent ``k``, a float32 offset ``o`` and a float32 gain
``g``, and the float32 latent ``y^`` that the synthesis transform receives,
``y^ = (float32(k) + o) / g`` as docs/mnc-format.md states it (a fixed-rate
model's gain is 1, a mixture's offset 0). The cases are chosen where the rule
matters: offsets with gains, where other orders of the float32 operations give
other values (``k/g + o/g``, ``(k + o) * (1/g)``, one rounding of the exact
value), and large ``k``, where ``float32(k)`` (through the nearest float64)
differs from one rounding of ``k``, or saturates, or a gain below 1 overflows
to infinity. ``y^`` is what mnistcodec computes (the decoder's own code path,
its float32 input to the synthesis transform captured), checked here against
the rule computed with numpy. Integers are decimal strings (JSON numbers lose
integers above 2^53 in many languages) and float32 values are the 8 hex digits
of their bits. Usage: ``python tests/golden/make_dequantisation.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from mnistcodec.coding.api import Codec
from mnistcodec.coding.zoo import resolve_model

GOLDEN_DIR = Path(__file__).resolve().parent
OUT = GOLDEN_DIR / "dequantisation.json"
#: A variable-rate model whose decoder path the cases go through (its gains and offsets replaced).
MODEL = "vr-balanced"
F32MAX = float(np.finfo(np.float32).max)


def bits(value) -> str:
    return f"{int(np.float32(value).view(np.uint32)):08x}"


def spec(k: int, offset: np.float32, gain: np.float32) -> np.float32:
    """The rule: float32(k) through the nearest float64, saturated; then (f + o) / g in float32."""
    f = np.float32(min(max(float(k), -F32MAX), F32MAX))
    with np.errstate(over="ignore"):
        return (f + offset) / gain


def alternatives(k: int, offset: np.float32, gain: np.float32) -> list[np.float32]:
    """Other readings of the formula, which the cases tell apart from the rule."""
    f = np.float32(min(max(float(k), -F32MAX), F32MAX))
    with np.errstate(over="ignore"):
        return [
            f / gain + offset / gain,
            (f + offset) * (np.float32(1) / gain),
            np.float32((float(k) + float(offset)) / float(gain)),
        ]


def gain_offset_cases(count: int = 16) -> list[tuple[int, np.float32, np.float32]]:
    rng = np.random.default_rng(0)
    cases = []
    while len(cases) < count:
        k = int(rng.integers(-40, 41))
        offset = np.float32(rng.uniform(-0.5, 0.5))
        gain = np.float32(np.exp(rng.uniform(-3, 3)))
        want = spec(k, offset, gain)
        if any(alt != want for alt in alternatives(k, offset, gain)):
            cases.append((k, offset, gain))
    # A fixed-rate model's rule (gain 1) and a mixture's (offset 0).
    cases += [(3, np.float32(0.3), np.float32(1)), (-7, np.float32(-0.1), np.float32(1))]
    cases += [(5, np.float32(0), np.float32(0.37)), (-11, np.float32(0), np.float32(2.9))]
    return cases


def large_cases() -> list[tuple[int, np.float32, np.float32]]:
    one, zero = np.float32(1), np.float32(0)
    values = [
        2**24 + 1,  # halfway: to even, 2^24
        2**24 + 3,  # halfway: to even, 2^24 + 4
        2**54 + 2**30 + 1,  # through float64: 2^54 (one rounding: 2^54 + 2^31)
        -(2**54 + 2**30 + 1),
        2**80 + 2**56 + 2**3,  # through float64: 2^80 (one rounding: 2^80 + 2^57)
        int(F32MAX),  # the largest float32
        2**128 - 2**103,  # one rounding: infinity; the rule saturates
        2**128,
        2**129 - 1,  # the largest overflow code
        -(2**129 - 1),
    ]
    cases = [(k, zero, one) for k in values]
    cases += [
        (int(F32MAX), np.float32(0.25), np.float32(0.5)),  # a gain below 1: infinity
        (-(2**129 - 1), zero, np.float32(0.75)),  # minus infinity
        (2**24 + 1, np.float32(0.25), np.float32(3.0)),
        (2**54 + 2**30 + 1, np.float32(-0.375), np.float32(1.5)),
    ]
    return cases


def library_latents(cases) -> list[np.float32]:
    """The float32 latents mnistcodec's decoder hands the synthesis transform for the cases."""
    codec = Codec(resolve_model(MODEL), device="cpu", precision="fp32")
    dims, level = codec.latent_dims, 0
    coder = codec.coders[level]
    out = []
    captured = {}

    def capture(y_hat, index=None):
        captured["y"] = y_hat.detach().clone()
        return torch.zeros(y_hat.shape[0], 1, 28, 28)

    codec.model.synthesis_transform.forward = capture
    for start in range(0, len(cases), dims):
        part = cases[start : start + dims]
        pad = [(0, np.float32(0), np.float32(1))] * (dims - len(part))
        k = np.array([[c[0] for c in part + pad]], dtype=object)
        codec.level_offsets[level] = torch.tensor([float(c[1]) for c in part + pad])
        codec.gains[level] = torch.tensor([float(c[2]) for c in part + pad])
        decoded = coder.from_symbols(coder.to_symbols(k))  # the decoder's latents
        codec.synthesise(decoded, np.array([level]))
        out += list(captured["y"][0, : len(part)].numpy())
    return out


def main() -> None:
    cases = gain_offset_cases() + large_cases()
    library = library_latents(cases)
    records = []
    for (k, offset, gain), y in zip(cases, library, strict=True):
        want = spec(k, offset, gain)
        assert bits(y) == bits(want), (k, offset, gain, y, want)
        records.append(
            {
                "k": str(k),
                "offset": bits(offset),
                "gain": bits(gain),
                "y_hat": bits(want),
                "readable": f"({k} + {float(offset)!r}) / {float(gain)!r} = {float(want)!r}",
            }
        )
    document = {
        "rule": "y_hat = (float32(k) + offset) / gain in float32; float32(k): k to the nearest "
        "float64 (ties to even), saturated to +-FLOAT32_MAX, to the nearest float32 (ties to even)",
        "encoding": "k: a decimal integer; offset, gain, y_hat: the float32's 8 hex digits (bits)",
        "cases": records,
    }
    OUT.write_text(json.dumps(document, indent=1) + "\n")
    print(f"{len(records)} cases -> {OUT}")


if __name__ == "__main__":
    main()
