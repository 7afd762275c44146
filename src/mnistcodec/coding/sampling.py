"""Random strings decoded as digits: the generative use of :class:`~mnistcodec.coding.api.Codec`.

A string is ``nbytes`` bytes of ``numpy.random.default_rng(seed)``, decoded at
one level with the decode check off; the rare string the range decoder rejects
is replaced by the generator's next one.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from mnistcodec.coding.limits import check_sample
from mnistcodec.coding.range_coder import DecodeError
from mnistcodec.errors import InputError


def pieces(codec, n: int, draw: Iterator[np.ndarray], level: int) -> Iterator[np.ndarray]:
    """The digits of the latents ``draw`` gives, decoded in pieces of the codec's chunk size."""
    for part in codec._chunks(n):
        k = np.stack([next(draw) for _ in range(part.stop - part.start)])
        yield codec.synthesise(k, level)


def rows(
    codec, n: int, seed: int, nbytes: int, level: int, redrawn: list[int] | None = None
) -> Iterator[np.ndarray]:
    """The integer latents of ``n`` random strings, one row at a time."""
    check_sample(n, seed, nbytes)
    rng = np.random.default_rng(seed)
    made = 0
    for attempt in range(100 * n):
        try:
            row = codec.decode_latents([rng.bytes(nbytes)], check=False, levels=level)[0]
        except DecodeError:
            continue
        made += 1
        if redrawn is not None:
            redrawn[0] = attempt + 1 - made
        yield row
        if made == n:
            return
    raise InputError(f"could not decode {n} random {nbytes}-byte strings with this model")
