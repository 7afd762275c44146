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
import ctypes
import errno
import io
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from mnistcodec.errors import InputError, MnistCodecError, OutputError

#: The path that means standard input or standard output.
STDIO = "-"

_TEMP_SUFFIX = ".tmp"

#: Errors of a write that the disk refused: full, over quota, over the file size
#: limit (``RLIMIT_FSIZE``), read-only.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


def is_stdio(path: str | os.PathLike | None) -> bool:
    """Whether ``path`` is ``-`` (standard input or output)."""
    return path is not None and os.fspath(path) == STDIO


def file_kind(mode: int) -> str:
    """What a file of this ``st_mode`` is, in words: "a directory", "a FIFO", ..."""
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symbolic link"),
    )
    return next((name for test, name in kinds if test(mode)), "a regular file")


def check_writable(path: str | os.PathLike, force: bool = False) -> Path:
    """Validate an output path before any work is done.

    An output is a new path or, with ``force``, an existing regular file (or a
    symbolic link, which is replaced, not followed). Anything else in its place
    (a directory, device, FIFO or socket) is refused whatever ``force`` says,
    as are an existing file without ``force`` (a dangling symbolic link
    included) and a missing parent directory, each with a message that says
    what to do. A name ending in ``/`` names a directory, so it is refused too
    (it is never written as a file under the name without the slash).
    """
    raw = os.fspath(path)
    if raw.endswith(("/", os.sep)) and raw.strip("/" + os.sep):
        raise InputError(
            f"output {raw} ends with {raw[-1]}, which names a directory; give a file name"
        )
    path = Path(path)
    try:
        link = os.lstat(path)
    except FileNotFoundError:
        link = None
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    if link is not None:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = link.st_mode  # a dangling symbolic link: the link itself
        if stat.S_ISDIR(mode):
            raise InputError(f"output {path} is a directory; give a file name")
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            raise InputError(
                f"output {path} is {file_kind(mode)}, not a regular file; mnistcodec writes "
                "only regular files (-o - writes to standard output)"
            )
        if not force:
            state = (
                "is a symbolic link to a missing file" if stat.S_ISLNK(mode) else "already exists"
            )
            raise InputError(f"output {path} {state}; pass --force to overwrite it")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"output directory {parent} does not exist")
    _check_can_create(parent)
    return path


def _check_can_create(directory: Path) -> None:
    """Create and remove a file in ``directory``: a read-only place fails now, not after the work."""
    try:
        fd, name = tempfile.mkstemp(
            prefix=_temp_prefix(directory, "probe"), suffix=_TEMP_SUFFIX, dir=directory
        )
    except OSError as exc:
        raise InputError(f"cannot create a file in {directory} ({exc.strerror or exc})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)


def _temp_prefix(directory: str | os.PathLike, name: str) -> str:
    """``.<name>.<pid>.``, the name cut so that a temporary name fits wherever ``name`` fits.

    A temporary name adds the dots, the process id, 8 random characters and
    ``.tmp`` (at most 22 bytes); a name within that of the file system's limit
    (``NAME_MAX``) is cut, on a character boundary, to make room.
    """
    try:
        name_max = os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    room = max(1, name_max - len(f"..{os.getpid()}.") - 8 - len(_TEMP_SUFFIX))
    encoded = os.fsencode(name)
    if len(encoded) > room:
        name = os.fsdecode(encoded[:room].decode("utf-8", "ignore").encode("utf-8"))
    return f".{name}.{os.getpid()}."


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
    prefix = _temp_prefix(directory, name).removesuffix(f"{os.getpid()}.")
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.[A-Za-z0-9_]+" + re.escape(_TEMP_SUFFIX))
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


def _write_failed(exc: BaseException, path: Path) -> BaseException:
    """A full disk, a quota or a file size limit as one :class:`OutputError`; else ``exc``."""
    if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
        return OutputError(f"cannot write {path}: {exc.strerror}; {path} is unchanged")
    return exc


def _publish(tmp_name: str, path: Path, force: bool) -> None:
    """Rename ``tmp_name`` to ``path``; without ``force``, never over a file that appeared meanwhile.

    The new file is linked to its name (``link`` fails if the name exists, so
    of two writers racing for one new output exactly one wins), then the
    temporary name is removed. File systems without hard links fall back to a
    last check and a rename.
    """
    if force:
        check_writable(path, force=True)
        os.replace(tmp_name, path)
        return
    try:
        os.link(tmp_name, path)
    except FileExistsError:
        raise InputError(
            f"output {path} appeared while this was being written; it was kept "
            "(pass --force to overwrite it)"
        ) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        check_writable(path, force=False)
        os.replace(tmp_name, path)
        return
    os.unlink(tmp_name)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, force: bool = True) -> Iterator[BinaryIO]:
    """Open a temporary file that replaces ``path`` only when the block succeeds.

    The handle is opened for reading and writing (``w+b``), so a writer may
    seek back to fill in a header. A full disk (or quota, or file size limit)
    while writing is an :class:`OutputError`, and ``path`` is left as it was.
    """
    path = check_writable(path, force=force)
    parent = path.parent if str(path.parent) else Path(".")
    remove_stale_temporaries(parent, path.name)
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=_temp_prefix(parent, path.name), suffix=_TEMP_SUFFIX, dir=parent
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
        _publish(tmp_name, path, force)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        failure = _write_failed(exc, path)
        if failure is exc:
            raise
        raise failure from None
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


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); ``False`` if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(
        at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), ctypes.c_uint(rename_exchange)
    )
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), os.fspath(second))


def _replace_directory(staging: Path, path: Path) -> None:
    """Put directory ``staging`` in the place of directory ``path``; the old one ends at ``staging``.

    One atomic exchange where the system has it; elsewhere two renames, with
    the old directory kept under the staging name until the new one is in.
    """
    if _exchange(staging, path):
        return
    old = staging.with_name(staging.name + ".old" + _TEMP_SUFFIX)
    os.rename(path, old)
    try:
        os.rename(staging, path)
    except BaseException:
        os.rename(old, path)
        raise
    os.rename(old, staging)


def _replace_link(staging: Path, path: Path) -> None:
    """Put directory ``staging`` in the place of the link ``path``; the link's target is untouched."""
    if _exchange(staging, path):
        os.unlink(staging)  # the link, now at the staging name
        return
    os.unlink(path)
    os.rename(staging, path)


def check_link_output(path: str | os.PathLike, force: bool) -> bool:
    """Whether a directory output is a symbolic link, which only ``force`` replaces (never
    follows); a link to anything but a directory is refused."""
    path = Path(path)
    if not path.is_symlink():
        return False
    if not force:
        state = f"to {os.readlink(path)}" if path.exists() else "to a missing file"
        raise InputError(
            f"output {path} is a symbolic link {state}; outputs are never written through links: "
            "pass --force to replace the link itself, or give the target's path"
        )
    if path.exists() and not path.is_dir():
        raise InputError(f"output {path} is a symbolic link to a file; give a directory")
    return True


@contextlib.contextmanager
def atomic_directory(
    path: str | os.PathLike, replace_link: bool = False
) -> Iterator[Callable[[str, bytes], None]]:
    """Yield ``put(name, data)``; directory ``path`` holds these files only if the block succeeds.

    Files are written into a staging directory beside ``path``, flushed to
    disk (one ``sync`` for all of them: an fsync per file costs milliseconds
    each), then the staging directory takes the place of ``path`` as a whole:
    renamed into place if ``path`` is new, exchanged with it in one step if it
    exists (its old files go, none is mixed with the new ones). On any failure
    (a full disk is an :class:`OutputError`) the staging directory is removed
    and ``path`` is left as it was. The caller checks ``path`` first
    (existing, empty, ``--force``, ...). A symbolic link at ``path`` is
    replaced by the directory only if ``replace_link`` (the caller's
    ``--force``), as :func:`atomic_open` replaces a link to a file: it is never
    followed, and nothing is written into its target.
    """
    path = Path(path)
    link = check_link_output(path, replace_link)
    existing = path.is_dir() and not link
    parent = path.parent if str(path.parent) else Path(".")
    remove_stale_temporaries(parent, path.name)
    try:
        staging = Path(
            tempfile.mkdtemp(
                prefix=_temp_prefix(parent, path.name), suffix=_TEMP_SUFFIX, dir=parent
            )
        )
    except OSError as exc:
        raise InputError(f"cannot create a directory in {parent} ({exc.strerror or exc})") from None

    def put(name: str, data: bytes) -> None:
        if os.sep in name or name in ("", ".", ".."):
            raise ValueError(f"not a plain file name: {name!r}")
        (staging / name).write_bytes(data)

    try:
        yield put
        os.sync()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, (path.stat().st_mode & 0o7777) if existing else 0o777 & ~umask)
        if existing:
            _replace_directory(staging, path)
        elif link:
            _replace_link(staging, path)
        else:
            os.rename(staging, path)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        failure = _write_failed(exc, path)
        if failure is exc:
            raise
        raise failure from None
    if existing:
        shutil.rmtree(staging, ignore_errors=True)
    fsync_directory(parent)


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
            raise error(
                f"standard input holds more than {describe_size(limit)}, the limit for {what}; "
                "nothing more was read"
            )
        return data
    size = check_readable(path, what, limit, error, allow_stdin)
    try:
        with open(path, "rb") as handle:
            data = _read_bounded(handle, size, limit)
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None
    if data is None:
        raise error(f"{path} is larger than {describe_size(limit)}, the limit for {what}")
    return data


def describe_size(nbytes: int) -> str:
    """``1 GiB (1073741824 bytes)``: a size limit in words people read, and exactly."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if nbytes >= 1 << shift and nbytes % (1 << shift) == 0:
            return f"{nbytes >> shift} {unit} ({nbytes} bytes)"
    return f"{nbytes} bytes"


def _read_bounded(handle: BinaryIO, expected: int, limit: int) -> bytes | None:
    """Everything ``handle`` holds, or ``None`` past ``limit`` bytes.

    Reads ``expected`` bytes (the size the file system reports) at once, then
    in 1 MiB pieces (files that grow, pipes, ``/proc`` files reporting 0), so no
    buffer is ever much larger than the data.
    """
    first = handle.read(min(expected + 1, limit + 1))
    if len(first) > limit:
        return None
    chunk = handle.read(min(1 << 20, limit + 1 - len(first))) if first else b""
    if not chunk:
        return first
    # More than the file system said (a pipe): gathered in one growing buffer,
    # whose value is then taken without a copy, so memory stays near the data.
    gathered = io.BytesIO()
    gathered.write(first)
    total = len(first)
    while chunk:
        gathered.write(chunk)
        total += len(chunk)
        if total > limit:
            return None
        chunk = handle.read(min(1 << 20, limit + 1 - total))
    del first, chunk
    return gathered.getvalue()
