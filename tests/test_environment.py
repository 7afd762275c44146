"""Robustness against the environment: devices, full disks, signals, racing writers, long names.

See ``docs/robustness.md`` (Hostile environments). Each test reproduces one
fault: a device node or FIFO as an output, a tmpfs mount or ``RLIMIT_FSIZE``
for a full disk, ``/dev/full`` and a closed pipe for standard output, signals
sent to a child process, two processes racing for one output, names at the
file system's limit. Mounts and child processes are cleaned up even when a
test fails.
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest

from mnistcodec.cli import main
from mnistcodec.coding import limits, model_files
from mnistcodec.errors import InputError, TrainingError
from mnistcodec.model.compression_model import CompressionModel, ModelConfig
from mnistcodec.storage.atomic import atomic_directory, atomic_open, atomic_write, read_input
from mnistcodec.training.loop import TrainConfig, train

MODEL = "seed-lmbda2000"
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _cli(capsys, *args) -> tuple[int, str, str]:
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mnistcodec: error: "), err
    assert "Traceback" not in err
    return lines[0]


def _command(*args) -> list[str]:
    return [sys.executable, "-m", "mnistcodec", *map(str, args)]


def _env() -> dict[str, str]:
    return {**os.environ, **ONE_THREAD}


@pytest.fixture(scope="module")
def mnc_files(tmp_path_factory) -> dict[int, Path]:
    """.mnc files of the first 4, 10 and 300 test digits."""
    folder = tmp_path_factory.mktemp("mnc")
    files = {}
    for count in (4, 10, 300):
        files[count] = folder / f"first{count}.mnc"
        assert (
            main(["compress", MODEL, "--index", f"0:{count}", "-o", str(files[count]), "-q"]) == 0
        )
    return files


@contextlib.contextmanager
def _tmpfs(path: Path, size: str = "16k"):
    """A small tmpfs at ``path`` (skips the test where mounting is not allowed)."""
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


# -- 1. devices, FIFOs, sockets, directories, dangling links as outputs ------------------


def _special_files(tmp_path: Path) -> dict[str, Path]:
    made = {}
    device = tmp_path / "device"
    with contextlib.suppress(PermissionError, OSError):
        os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 7))
        made["a character device"] = device
    os.mkfifo(tmp_path / "fifo.idx")
    made["a FIFO"] = tmp_path / "fifo.idx"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock.mnc"))
    sock.close()
    made["a socket"] = tmp_path / "sock.mnc"
    (tmp_path / "folder.mnc").mkdir()
    made["a directory"] = tmp_path / "folder.mnc"
    return made


def test_force_never_replaces_a_device_fifo_socket_or_directory(tmp_path, capsys, mnc_files):
    for kind, path in _special_files(tmp_path).items():
        mode = path.lstat().st_mode
        status, _, err = _cli(
            capsys, "compress", MODEL, "--index", "0:4", "-o", path, "--force", "-q"
        )
        assert status == 2 and kind in _one_error_line(err), (kind, err)
        if kind != "a directory":  # a directory is a valid output of decompress
            status, _, err = _cli(capsys, "decompress", MODEL, mnc_files[4], "-o", path, "--force")
            assert status == 2, (kind, err)
            _one_error_line(err)
        assert path.lstat().st_mode == mode, kind
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_dangling_symlink_is_replaced_only_with_force(tmp_path, capsys):
    link = tmp_path / "out.mnc"
    link.symlink_to(tmp_path / "missing.mnc")
    status, _, err = _cli(capsys, "compress", MODEL, "--index", "0:4", "-o", link, "-q")
    assert status == 2 and "symbolic link to a missing file" in _one_error_line(err)
    assert link.is_symlink()
    status, _, _ = _cli(capsys, "compress", MODEL, "--index", "0:4", "-o", link, "-q", "--force")
    assert status == 0 and not link.is_symlink() and link.is_file()
    assert not (tmp_path / "missing.mnc").exists()


# -- 3. full disks and full or closed standard output ------------------------------------


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, capsys, mnc_files):
    with _tmpfs(tmp_path / "disk") as disk:
        outputs = [
            ("compress", MODEL, "--index", "0:3000", "-o", disk / "x.mnc", "-q"),
            ("decompress", MODEL, mnc_files[300], "-o", disk / "x.idx"),
            ("decompress", MODEL, mnc_files[300], "-o", disk / "x.png"),
            ("decompress", MODEL, mnc_files[300], "-o", disk / "digits"),
        ]
        for args in outputs:
            status, _, err = _cli(capsys, *args)
            assert status == 2 and "No space left on device" in _one_error_line(err), args
            assert list(disk.iterdir()) == [], args
        (disk / "keep.idx").write_bytes(b"keep")
        status, _, err = _cli(
            capsys, "decompress", MODEL, mnc_files[300], "-o", disk / "keep.idx", "--force"
        )
        assert status == 2 and "unchanged" in _one_error_line(err)
        assert [p.name for p in disk.iterdir()] == ["keep.idx"]
        assert (disk / "keep.idx").read_bytes() == b"keep"


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def test_a_file_size_limit_is_one_line_and_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run(
        _command("compress", MODEL, "--index", "0:2000", "-o", out / "x.mnc", "-q"),
        capture_output=True,
        text=True,
        env=_env(),
        preexec_fn=_limit_file_size,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "File too large" in _one_error_line(done.stderr)
    assert list(out.iterdir()) == []


def test_a_full_standard_output_is_one_line(tmp_path, capsys, monkeypatch, mnc_files):
    commands = [
        ("compress", MODEL, "--index", "0:10", "-o", "-", "-q"),
        ("decompress", MODEL, mnc_files[10], "-o", "-"),
        ("sample", MODEL, "-o", "-"),
        ("inspect", mnc_files[10]),
    ]
    for args in commands:
        with open("/dev/full", "wb", buffering=0) as raw:
            monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BufferedWriter(raw)))
            status, _, err = _cli(capsys, *args)
            monkeypatch.undo()
        assert status == 2, args
        assert "No space left on device" in _one_error_line(err), args


def test_a_full_standard_output_in_a_real_process(tmp_path):
    with open("/dev/full", "wb") as full:
        done = subprocess.run(
            _command("compress", MODEL, "--index", "0:10", "-o", "-", "-q"),
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
            timeout=120,
            check=False,
        )
    assert done.returncode == 2
    assert "No space left on device" in _one_error_line(done.stderr)


def test_a_pipe_closed_early_is_not_reported_as_success(tmp_path):
    """``compress ... -o - | head -c 10``: the writer must not say it wrote everything."""
    child = subprocess.Popen(
        _command("compress", MODEL, "--split", "test", "-o", "-", "-q"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    try:
        assert len(child.stdout.read(10)) == 10
        child.stdout.close()
        err = child.stderr.read().decode()
        status = child.wait(timeout=120)
    finally:
        child.kill()
        child.wait()
    assert status == 2, err
    assert "broken pipe" in _one_error_line(err)
    assert "compressed" not in err


# -- 4. a directory output is replaced as a whole ---------------------------------------


def test_force_replaces_a_digit_directory_as_a_whole(tmp_path, capsys, mnc_files):
    digits = tmp_path / "digits"
    assert _cli(capsys, "decompress", MODEL, mnc_files[10], "-o", digits)[0] == 0
    assert len(list(digits.iterdir())) == 10
    assert _cli(capsys, "decompress", MODEL, mnc_files[4], "-o", digits, "--force")[0] == 0
    assert sorted(p.name for p in digits.iterdir()) == [f"digit-0000{i}.png" for i in range(4)]
    (digits / "digit-00001.png").unlink()
    (digits / "digit-00001.png").mkdir()
    before = sorted(p.name for p in digits.iterdir())
    status, _, err = _cli(capsys, "decompress", MODEL, mnc_files[10], "-o", digits, "--force")
    assert status == 2 and "not a digit PNG file" in _one_error_line(err)
    assert sorted(p.name for p in digits.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["digits"]


# -- 5. SIGTERM and SIGHUP --------------------------------------------------------------


def _wait_for(condition, child: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_termination_signals_leave_no_temporary_file(tmp_path, signum):
    if signal.getsignal(signum) is signal.SIG_IGN:
        # Under nohup the children inherit the ignored signal, and commands keep running then.
        pytest.skip(f"{signal.Signals(signum).name} is ignored in this environment")
    out = tmp_path / "train.mnc"
    child = subprocess.Popen(
        _command("compress", MODEL, "--split", "train", "-o", out, "-q"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        _wait_for(lambda: any(tmp_path.glob(".train.mnc.*.tmp")), child)
        child.send_signal(signum)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == 128 + signum, err
    assert f"terminated by {signal.Signals(signum).name}" in err
    assert list(tmp_path.iterdir()) == []


# -- 6. two writers of one new output ----------------------------------------------------

_RACER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mnistcodec.errors import InputError
    from mnistcodec.storage.atomic import atomic_open
    out, go, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    try:
        with atomic_open(out, force=False) as handle:
            handle.write(name.encode())
            while not go.exists():
                time.sleep(0.01)
    except InputError as exc:
        print(exc, file=sys.stderr)
        sys.exit(3)
    """
)


def test_two_writers_of_one_new_output_exactly_one_wins(tmp_path):
    out, go = tmp_path / "out.bin", tmp_path / "go"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(out), str(go), name],
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("first", "second")
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob(".out.bin.*.tmp"))) < 2:
            assert all(r.poll() is None for r in racers) and time.monotonic() < deadline
            time.sleep(0.01)
        go.touch()
        results = [(r.wait(timeout=60), r.stderr.read()) for r in racers]
    finally:
        for racer in racers:
            racer.kill()
            racer.wait()
    assert sorted(status for status, _ in results) == [0, 3], results
    winner = ("first", "second")[[status for status, _ in results].index(0)]
    assert out.read_bytes() == winner.encode()
    assert "appeared while this was being written" in next(e for s, e in results if s == 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["go", "out.bin"]


def test_an_output_that_appears_while_writing_is_kept(tmp_path):
    out = tmp_path / "out.mnc"
    with pytest.raises(InputError, match="appeared while"):
        with atomic_open(out, force=False) as handle:
            handle.write(b"mine")
            out.write_bytes(b"theirs")
    assert out.read_bytes() == b"theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mnc"]


# -- 7. names at the file system's limit -------------------------------------------------


def test_names_at_the_file_system_limit(tmp_path, capsys):
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    for length in (limit - 16, limit - 8, limit - 1, limit):
        name = "a" * (length - 4) + ".mnc"
        atomic_write(tmp_path / name, b"x", force=False)
        assert (tmp_path / name).read_bytes() == b"x"
    wide = "é" * ((limit - 4) // 2) + ".idx"
    assert len(os.fsencode(wide)) <= limit
    atomic_write(tmp_path / wide, b"y")
    with atomic_directory(tmp_path / ("d" * limit)) as put:
        put("digit-00000.png", b"z")
    status, _, err = _cli(
        capsys,
        "compress",
        MODEL,
        "--index",
        "0:4",
        "-o",
        tmp_path / ("c" * (limit - 4) + ".mnc"),
        "-q",
    )
    assert status == 0, err
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# -- 9. smaller ones ---------------------------------------------------------------------


def test_terminal_escapes_in_names_are_not_echoed(tmp_path, capsys):
    hostile = tmp_path / "\x1b]0;owned\x07\x1b[31mred.mnc"
    status, _, err = _cli(capsys, "inspect", hostile)
    assert status == 2 and "\x1b" not in err and "\x07" not in err
    assert "\\x1b[31mred.mnc" in _one_error_line(err)
    status, out, err = _cli(capsys, "compress", MODEL, "--index", "0:4", "-o", hostile, "-q")
    assert status == 0 and "\x1b" not in out and "\\x1b" in out
    assert hostile.exists()


def test_sample_count_and_string_size_are_bounded(capsys, tmp_path):
    for args in (("--n", 10**7), ("--bytes", 10**9)):
        status, _, err = _cli(capsys, "sample", MODEL, *args, "-o", tmp_path / "s.idx")
        assert status == 2 and "at most" in _one_error_line(err), args
    assert list(tmp_path.iterdir()) == []


# -- 2. the writer keeps the loader's limits; 9. training checks before any work ---------


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--latent-dims", "100000", "expected an integer from 1 to 65536"),
        ("--lmbda", "inf", "lambda must be finite"),
        ("--lr", "1e30", "learning rate must be positive and at most 1.0"),
    ],
)
def test_train_refuses_what_the_loader_would_refuse_before_any_work(
    tmp_path, capsys, option, value, message
):
    out = tmp_path / "model.safetensors"
    started = time.monotonic()
    status, _, err = _cli(
        capsys, "train", option, value, "--limit", "64", "--epochs", "1", "--out", out, "--quiet"
    )
    assert status == 2 and message in _one_error_line(err)
    assert time.monotonic() - started < 10
    assert list(tmp_path.iterdir()) == []


def test_the_loader_and_the_trainer_share_one_table_of_limits():
    assert model_files.MAX_CONFIG_SIZE == limits.MAX_LATENT_DIMS
    assert limits.latent_dims_problem(limits.MAX_LATENT_DIMS) is None
    assert limits.latent_dims_problem(limits.MAX_LATENT_DIMS + 1) is not None


def test_train_into_a_read_only_place_fails_before_training(tmp_path, capsys):
    place = tmp_path / "ro"
    place.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=16k", "tmpfs", str(place)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        started = time.monotonic()
        status, out, err = _cli(
            capsys, "train", "--limit", "64", "--epochs", "1", "--out", place / "m.safetensors"
        )
        assert status == 2 and "cannot create a file in" in _one_error_line(err)
        assert "Read-only file system" in err and "epoch" not in out
        assert time.monotonic() - started < 10
    finally:
        subprocess.run(["umount", "-l", str(place)], check=False)


def test_a_first_epoch_that_fails_names_no_checkpoint(tmp_path, monkeypatch):
    real_loss = CompressionModel.loss
    monkeypatch.setattr(
        CompressionModel, "loss", lambda self, rd: real_loss(self, rd) * float("nan")
    )
    with pytest.raises(TrainingError, match="no checkpoint was written") as failure:
        train(
            ModelConfig(latent_dims=8),
            TrainConfig(epochs=1, limit=64, val_limit=64),
            tmp_path / "nan.safetensors",
            progress=False,
            log=lambda _: None,
        )
    assert "last good checkpoint" not in str(failure.value)
    assert list(tmp_path.iterdir()) == []


class _Endless(io.RawIOBase):
    """A standard input that never ends (``yes``, ``cat /dev/zero``)."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        buffer[:] = b"\0" * len(buffer)
        return len(buffer)


def test_endless_standard_input_is_refused_at_the_limit_in_bounded_memory(monkeypatch):
    limit = 32 << 20
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(_Endless())))
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as refused:
            read_input("-", "a compressed file", limit, allow_stdin=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "more than 32 MiB (33554432 bytes), the limit for a compressed file" in str(
        refused.value
    )
    assert peak < 1.5 * limit
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"x" * (limit - 1))))
    assert len(read_input("-", "a compressed file", limit, allow_stdin=True)) == limit - 1
