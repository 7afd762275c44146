"""Crash-safe file output.

Every file the project writes goes through :func:`atomic_write`: the bytes are
written to a temporary file in the destination directory, flushed and fsynced,
then renamed over the destination. A reader therefore sees either the old file
or the complete new one, never a partial file, even if the process is killed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from mnistcodec.errors import InputError


def check_writable(path: str | os.PathLike, force: bool = False) -> Path:
    """Validate an output path before any work is done.

    Refuses an existing file unless ``force``, a directory in its place and a
    missing parent directory, with a message that says what to do.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"output {path} is a directory; give a file name")
    if path.exists() and not force:
        raise InputError(f"output {path} already exists; pass --force to overwrite it")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"output directory {parent} does not exist")
    return path


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, force: bool = True) -> Iterator[BinaryIO]:
    """Open a temporary file that replaces ``path`` only when the block succeeds."""
    path = check_writable(path, force=force)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise InputError(f"cannot write to {parent}: {exc.strerror}") from exc
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write(path: str | os.PathLike, data: bytes, force: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically; refuse to overwrite unless ``force``."""
    with atomic_open(path, force=force) as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, force: bool = True) -> Path:
    """Write UTF-8 text atomically (see :func:`atomic_write`)."""
    return atomic_write(path, text.encode("utf-8"), force=force)
