"""The process's memory allocation policy (glibc's ``malloc``), one per process.

Coding a batch on the CPU allocates large activation buffers per sub-batch
(a 512-digit chunk's first convolution alone writes 8 MB) and frees them
before the next. glibc serves a block above its mmap threshold (128 KiB,
raised as blocks are freed, to at most 32 MiB) with a fresh mapping, and
gives the heap's free top back to the system above its trim threshold; either
way every 4 KiB page of the next buffer is faulted in and zeroed again. On a
virtual machine a fault costs about a microsecond: without a policy, coding
10,000 digits with the default model took about 1.6 faults per digit to
encode and 5.5 to decode.

Two policies, set once per process by whichever asks first:

* :func:`reuse_for_batches` (batch coding: the codec asks for it at its first
  call of at least :data:`BATCH_DIGITS` digits, see
  :class:`~mnistcodec.coding.calibration.AutoEngine`; and training on the CPU,
  whose every step allocates and frees the same activations and gradients:
  about 1,500 page faults per step of 128 digits without it, 1.3 µs each on
  a virtual machine, a few percent of a step): blocks up to
  :data:`MMAP_THRESHOLD` come from the heap, and freed memory is kept for the
  next chunk until :data:`TRIM_THRESHOLD` of it lies free. The peak resident
  memory is unchanged; memory is returned later.
* :func:`return_memory_promptly` (the playground server, which must return to
  its idle footprint): a fixed 1 MiB mmap threshold, so every large array is
  its own mapping, unmapped when freed, and at most 4 arenas.

Nothing happens where the C library is not glibc, when the environment sets
one of glibc's own tunables (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_TOP_PAD_``, ``MALLOC_ARENA_MAX``, ``GLIBC_TUNABLES``: the user's
choice stands), or with ``MNISTCODEC_MALLOC=system``.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

MALLOC_ENV = "MNISTCODEC_MALLOC"
#: glibc's environment tunables: when one is set, the process' policy is the user's.
GLIBC_TUNABLE_ENV = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_ARENA_MAX",
    "GLIBC_TUNABLES",
)
#: Calls of at least this many digits are batches (the codec's sub-batches are 512).
BATCH_DIGITS = 256
#: :func:`reuse_for_batches`: blocks up to this size come from the heap ...
MMAP_THRESHOLD = 256 << 20
#: ... and the heap keeps up to this much free memory at its top.
TRIM_THRESHOLD = 512 << 20
# mallopt(3) parameters.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8

#: The policy this process runs ("batches", "prompt"), or None: glibc's own.
_policy: str | None = None
#: Whether :func:`reuse_for_batches` has decided (it is asked at every batch; it tries once).
_batches_decided = False


def policy() -> str | None:
    """The policy set in this process, or None (glibc's defaults, or the user's tunables)."""
    return _policy


def _settable() -> bool:
    if _policy is not None or os.environ.get(MALLOC_ENV, "").strip() == "system":
        return False
    if any(name in os.environ for name in GLIBC_TUNABLE_ENV):
        return False
    return _glibc()


@functools.cache
def _glibc() -> bool:
    """Whether the C library is glibc (``platform.libc_ver`` reads the interpreter's file)."""
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def _mallopt(settings: dict[int, int]) -> bool:
    try:
        libc = ctypes.CDLL("libc.so.6")
        return all(libc.mallopt(param, value) == 1 for param, value in settings.items())
    except (OSError, AttributeError):
        return False


def reuse_for_batches() -> str | None:
    """Keep freed buffers in the heap for reuse (see the module); returns the process' policy.

    Decided at the first call: later batches cost one check.
    """
    global _policy, _batches_decided
    if _batches_decided:
        return _policy
    _batches_decided = True
    if _settable() and _mallopt(
        {_M_MMAP_THRESHOLD: MMAP_THRESHOLD, _M_TRIM_THRESHOLD: TRIM_THRESHOLD}
    ):
        _policy = "batches"
    return _policy


def return_memory_promptly() -> str | None:
    """Map each large block on its own and unmap it when freed (see the module)."""
    global _policy
    if _policy == "batches":
        _policy = None  # a server started after batch work: its own policy wins
    if _settable() and _mallopt(
        {_M_MMAP_THRESHOLD: 1 << 20, _M_TRIM_THRESHOLD: 4 << 20, _M_ARENA_MAX: 4}
    ):
        _policy = "prompt"
    return _policy
