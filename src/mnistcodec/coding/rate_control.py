"""Rate control with a variable-rate model: a level per digit, chosen by target.

Each digit is coded at every level of the model (one analysis, one string
and one decoding per level), and the level kept is

* ``bits=B``: among the levels whose string fits in ``B`` bits (8 x bytes),
  the one whose decoded digit has the highest PSNR (ties: fewer bits). A digit
  whose string does not fit at any level is an error: the target is never
  exceeded;
* ``psnr=P``: among the levels whose decoded digit reaches ``P`` dB, the one
  with the shortest string (ties: higher PSNR); a digit that no level brings
  to ``P`` dB gets the level with the highest PSNR, and is counted in
  :attr:`RateChoice.missed`.

The latents at each level are the ones :meth:`~mnistcodec.coding.api.Codec.compress`
would send (refined or searched, if the codec does either).

The PSNR is the one :mod:`mnistcodec.experiments.metrics` defines (MSE on the
0..255 scale, floored so identical digits score 100 dB), of the digits as this
machine decodes them: another CPU may decode a rare pixel one grey level off
(see :mod:`mnistcodec.coding.api`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnistcodec.coding.api import Codec
from mnistcodec.coding.container import Block, string_bits
from mnistcodec.errors import InputError

PSNR_MAX = 100.0
_MSE_FLOOR = 255.0**2 * 10.0 ** (-PSNR_MAX / 10.0)


@dataclass(frozen=True)
class RateTarget:
    """A per-digit target: at most ``bits`` bits, or at least ``psnr`` dB (exactly one)."""

    bits: float | None = None
    psnr: float | None = None

    def __post_init__(self) -> None:
        if (self.bits is None) == (self.psnr is None):
            raise InputError("give exactly one rate target: --target-bits or --target-psnr")
        if self.bits is not None and not self.bits > 0:
            raise InputError(f"--target-bits must be positive, got {self.bits}")
        if self.psnr is not None and not 0 < self.psnr <= PSNR_MAX:
            raise InputError(f"--target-psnr must be in (0, {PSNR_MAX:g}] dB, got {self.psnr}")


@dataclass
class RateChoice:
    """Each digit's string, information content (bits), level and decoded PSNR."""

    strings: list[bytes]
    info_bits: np.ndarray
    levels: np.ndarray
    psnr_db: np.ndarray
    missed: int = 0


def digit_psnr(images: np.ndarray, decoded: np.ndarray) -> np.ndarray:
    """PSNR (dB) of each digit, MSE on the 0..255 scale floored at 100 dB."""
    diff = images.astype(np.float64) - decoded.astype(np.float64)
    mse = np.mean(diff.reshape(diff.shape[0], -1) ** 2, axis=1)
    return 10.0 * np.log10(255.0**2 / np.maximum(mse, _MSE_FLOOR))


@dataclass
class AllLevels:
    """Every digit coded at every level (arrays ``(levels, digits)``; strings by level)."""

    strings: list[list[bytes]]
    info_bits: np.ndarray
    string_bits: np.ndarray
    psnr_db: np.ndarray


def all_levels(codec: Codec, images: np.ndarray) -> AllLevels:
    """Strings, information (bits) and PSNR of every digit at every level."""
    y = codec.latents(images)
    strings, info, psnr = [], [], []
    for level in range(codec.levels):
        levels = codec.digit_levels(level, images.shape[0])
        k, bits = codec.choose_latents(images, y, levels)
        strings.append(codec.encode_latents(k, levels))
        info.append(bits)
        psnr.append(digit_psnr(images, codec.synthesise(k, levels)))
    lengths = np.array([[string_bits(s) for s in row] for row in strings], dtype=np.float64)
    return AllLevels(strings, np.stack(info), lengths, np.stack(psnr))


def choose_levels(
    codec: Codec, images: np.ndarray, target: RateTarget, first: int = 0
) -> RateChoice:
    """The level of each digit of ``images`` for ``target`` (``first``: index of digit 0, for errors)."""
    if codec.levels < 2:
        raise InputError("rate control needs a variable-rate model (one with several levels)")
    coded = all_levels(codec, images)
    strings, info, psnr, bits = coded.strings, coded.info_bits, coded.psnr_db, coded.string_bits
    n = images.shape[0]
    missed = 0
    if target.bits is not None:
        fits = bits <= target.bits
        if not fits.any(axis=0).all():
            digit = int(np.flatnonzero(~fits.any(axis=0))[0])
            raise InputError(
                f"digit {first + digit} needs {bits[:, digit].min():.0f} bits even at level 0, "
                f"more than --target-bits {target.bits:g}"
            )
        score = np.where(fits, psnr - 1e-9 * bits, -np.inf)
        levels = np.argmax(score, axis=0)
    else:
        meets = psnr >= target.psnr
        score = np.where(meets, -bits + 1e-9 * psnr, -np.inf)
        unmet = np.flatnonzero(~meets.any(axis=0))
        score[np.argmax(psnr[:, unmet], axis=0), unmet] = 0.0
        missed = int(unmet.size)
        levels = np.argmax(score, axis=0)
    columns = np.arange(n)
    return RateChoice(
        strings=[strings[level][i] for i, level in enumerate(levels)],
        info_bits=info[levels, columns],
        levels=levels.astype(np.int64),
        psnr_db=psnr[levels, columns],
        missed=missed,
    )


@dataclass(frozen=True)
class LevelChoice:
    """How a variable-rate model picks levels: one ``level`` for all digits, or a ``target``."""

    level: int | None = None
    target: RateTarget | None = None

    def check(self, codec: Codec, mode: str) -> None:
        """Refuse, before any work, what the model or the mode cannot do."""
        if self.level is not None:
            codec.digit_levels(self.level, 1)
        if self.target is not None:
            if self.level is not None:
                raise InputError("give a level or a rate target, not both")
            if codec.levels < 2:
                raise InputError(
                    "rate control needs a variable-rate model (one with several levels)"
                )
            if mode != "per-digit":
                raise InputError(
                    "rate control chooses a level per digit, which only per-digit mode does: "
                    "drop --stream"
                )


def code_block(codec: Codec, images: np.ndarray, mode: str, choice: LevelChoice, first: int):
    """One block coded: ``(block, information bits, each digit's level, digits missed)``."""
    n = images.shape[0]
    if choice.target is not None:
        chosen = choose_levels(codec, images, choice.target, first=first)
        block = Block(n, strings=chosen.strings, levels=chosen.levels.tolist())
        return block, chosen.info_bits, chosen.levels, chosen.missed
    level = int(codec.digit_levels(choice.level, 1)[0])
    # A fixed-rate model is called as it always was; its blocks carry its only level, 0.
    args = (level,) if codec.loaded.variable_rate else ()
    levels = [level]
    if mode == "per-digit":
        strings, info = codec.compress(images, *args)
        block = Block(n, strings=strings, levels=levels)
    else:
        stream, info = codec.compress_stream(images, *args)
        block = Block(n, stream=stream, levels=levels)
    return block, info, np.full(n, level), 0
