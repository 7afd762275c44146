"""Standard output as a binary stream whose every write is whole, or one clear error.

``-o -`` sends a ``.mnc`` file or raw IDX to standard output. A pipe may take
only part of a write without an error when its reader goes away (``| head``),
and a full device refuses it; either way the command must end in one
:class:`~mnistcodec.errors.OutputError` saying the output is incomplete, never
in a report of success.
"""

from __future__ import annotations

import errno
import sys
from typing import BinaryIO

from mnistcodec.errors import OutputError


def write_stdout(data: bytes, flush: bool = True) -> int:
    """Write all of ``data`` to standard output; a failed write is an :class:`OutputError`.

    See :class:`StdoutWriter`.
    """
    stdout = StdoutWriter()
    stdout.write(data)
    if flush:
        stdout.flush()
    return len(data)


class StdoutWriter:
    """Standard output (or ``stream``) as a binary file whose every write is whole.

    A write to a pipe can take only part of the data without an error (the
    reader went away); the rest is written again until the system takes it
    all or refuses with an error. A full device, a closed pipe (``| head``) or
    any other refusal ends in one :class:`OutputError` that says the output is
    incomplete, never in a report of success.
    """

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self._stream = stream

    def _target(self) -> BinaryIO:
        return sys.stdout.buffer if self._stream is None else self._stream

    def write(self, data: bytes) -> int:
        view = memoryview(data).cast("B")
        try:
            while view:
                written = self._target().write(view)
                if not written:
                    raise OSError(errno.EIO, "the write was refused")
                view = view[written:]
        except OSError as exc:
            raise stdout_failed(exc) from None
        return len(data)

    def flush(self) -> None:
        try:
            self._target().flush()
        except OSError as exc:
            raise stdout_failed(exc) from None

    def __getattr__(self, name: str):
        return getattr(self._target(), name)


def stdout_failed(exc: OSError) -> OutputError:
    """The error for a write to standard output that failed with ``exc``."""
    if isinstance(exc, BrokenPipeError):
        reason = "it was closed by the reader (broken pipe)"
    else:
        reason = exc.strerror or str(exc)
    return OutputError(f"cannot write standard output: {reason}; the output is incomplete")
