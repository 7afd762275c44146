"""Crash-safe file output, and bounded reading of user-named files.

Every file the project writes goes through :func:`atomic_open` (or its
shorthands :func:`atomic_write` and :func:`atomic_write_text`): the bytes are
written to a temporary file in the destination directory, flushed and fsynced,
then renamed over the destination, and the directory is fsynced. A reader
therefore sees either the old file or the complete new one, never a partial
file, even if the process is killed or the machine loses power.

Temporary files are named ``.<name>.<pid>.<random>.tmp``. A process killed
while writing (SIGKILL, power loss) leaves its temporary file behind; the next
write of the same destination removes such leftovers whose process no longer
exists. (A temporary file of a live writer on another machine sharing the
directory over a network file system could be removed too: that writer's
rename then fails with an error, and no file is ever corrupted.)

Files named by users are read through :func:`read_input`: a size limit is
checked before reading, directories, FIFOs and devices are refused (a FIFO
with no writer would block forever), ``-`` reads standard input where the
caller allows it, and every failure is one clear error.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from mnistcodec.errors import InputError, MnistCodecError

#: The path that means standard input or standard output.
STDIO = "-"

_TEMP_SUFFIX = ".tmp"


def is_stdio(path: str | os.PathLike | None) -> bool:
    """Whether ``path`` is ``-`` (standard input or output)."""
    return path is not None and os.fspath(path) == STDIO


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


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def remove_stale_temporaries(directory: str | os.PathLike, name: str) -> list[Path]:
    """Remove ``.<name>.<pid>.*.tmp`` files left in ``directory`` by dead processes.

    Returns the removed paths. Temporary files (and staging directories, see
    :func:`atomic_directory`) of live processes, this one included, are kept.
    """
    pattern = re.compile(re.escape(f".{name}.") + r"(\d+)\.[A-Za-z0-9_]+" + re.escape(_TEMP_SUFFIX))
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or int(match.group(1)) == os.getpid():
            continue
        if _process_exists(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, force: bool = True) -> Iterator[BinaryIO]:
    """Open a temporary file that replaces ``path`` only when the block succeeds.

    The handle is opened for reading and writing (``w+b``), so a writer may
    seek back to fill in a header.
    """
    path = check_writable(path, force=force)
    parent = path.parent if str(path.parent) else Path(".")
    remove_stale_temporaries(parent, path.name)
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{path.name}.{os.getpid()}.", suffix=_TEMP_SUFFIX, dir=parent
        )
    except OSError as exc:
        raise InputError(f"cannot create a file in {parent} ({exc.strerror or exc})") from exc
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w+b") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    fsync_directory(parent)


def fsync_directory(directory: str | os.PathLike) -> None:
    """Make a rename in ``directory`` durable (best effort: not every system allows it)."""
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
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


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Callable[[str, bytes], None]]:
    """Yield ``put(name, data)``; the files appear in directory ``path`` only if the block succeeds.

    Files are written into a staging directory, flushed to disk (one
    ``sync`` for all of them: an fsync per file costs milliseconds each),
    then a new directory is renamed into place as a whole, or, when ``path``
    already exists, each file is renamed into it (replacing files of the same
    names, other files are kept). On any failure the staging directory is
    removed and ``path`` is left as it was. The caller checks ``path`` first
    (existing, empty, ...).
    """
    path = Path(path)
    existing = path.is_dir()
    parent = path if existing else (path.parent if str(path.parent) else Path("."))
    remove_stale_temporaries(parent, path.name)
    try:
        staging = Path(
            tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=_TEMP_SUFFIX, dir=parent)
        )
    except OSError as exc:
        raise InputError(f"cannot create a directory in {parent} ({exc.strerror or exc})") from None
    names: list[str] = []

    def put(name: str, data: bytes) -> None:
        if os.sep in name or name in ("", ".", ".."):
            raise ValueError(f"not a plain file name: {name!r}")
        (staging / name).write_bytes(data)
        names.append(name)

    try:
        yield put
        os.sync()
        if existing:
            for name in names:
                os.replace(staging / name, path / name)
            staging.rmdir()
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(staging, 0o777 & ~umask)
            os.rename(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_directory(path if existing else parent)


def check_readable(
    path: str | os.PathLike,
    what: str,
    limit: int,
    error: type[MnistCodecError] = InputError,
    allow_stdin: bool = False,
) -> int:
    """Check a user-named input file without opening it; return its size in bytes.

    Refuses a missing path, a directory, a FIFO, device or socket (opening a
    FIFO blocks until a writer appears) and a file larger than ``limit``, each
    with one clear ``error`` naming ``what`` was expected.
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise error(f"{what.removeprefix('a ').removeprefix('an ')} {path} not found") from None
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{path} is a directory, not {what}")
    if not stat.S_ISREG(info.st_mode):
        hint = "; give a regular file, or - to read standard input" if allow_stdin else ""
        raise error(f"{path} is not a regular file (a FIFO, device or socket){hint}")
    if info.st_size > limit:
        raise error(f"{path} is {info.st_size} bytes, too large for {what} (limit {limit})")
    return info.st_size


def read_input(
    path: str | os.PathLike,
    what: str,
    limit: int,
    error: type[MnistCodecError] = InputError,
    allow_stdin: bool = False,
) -> bytes:
    """The bytes of a user-named file, at most ``limit`` of them, or one clear ``error``.

    ``what`` names the expected content ("a model file", "a compressed file").
    ``-`` reads standard input when ``allow_stdin``; any other path is checked
    by :func:`check_readable` before it is opened.
    """
    if allow_stdin and is_stdio(path):
        try:
            data = _read_bounded(sys.stdin.buffer, 0, limit)
        except (OSError, AttributeError, ValueError) as exc:
            raise error(f"cannot read standard input: {exc}") from None
        if data is None:
            raise error(f"standard input holds more than {limit} bytes, too large for {what}")
        return data
    size = check_readable(path, what, limit, error, allow_stdin)
    try:
        with open(path, "rb") as handle:
            data = _read_bounded(handle, size, limit)
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None
    if data is None:
        raise error(f"{path} is larger than {limit} bytes, too large for {what}")
    return data


def _read_bounded(handle: BinaryIO, expected: int, limit: int) -> bytes | None:
    """Everything ``handle`` holds, or ``None`` past ``limit`` bytes.

    Reads ``expected`` bytes (the size the file system reports) at once, then
    in 1 MiB pieces (files that grow, pipes, ``/proc`` files reporting 0), so no
    buffer is ever much larger than the data.
    """
    chunks: list[bytes] = []
    total = 0
    step = min(expected + 1, limit + 1)
    while True:
        chunk = handle.read(step)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            return None
        step = min(1 << 20, limit + 1 - total)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
