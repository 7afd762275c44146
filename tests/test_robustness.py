"""Robustness: killed training runs resume, memory stays flat, user inputs get clear answers.

See ``docs/robustness.md``. The fuzzing of the file readers is in ``test_fuzz.py``.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from mnistcodec.cli import main
from mnistcodec.coding.api import Codec
from mnistcodec.coding.files import (
    compress_to_file,
    decompress_file,
    iter_decompress,
)
from mnistcodec.coding.inspection import read_compressed
from mnistcodec.coding.model_files import load_model
from mnistcodec.data import encode_idx, read_idx
from mnistcodec.errors import InputError, TrainingError
from mnistcodec.model.compression_model import CompressionModel, ModelConfig
from mnistcodec.storage.atomic import atomic_write, remove_stale_temporaries
from mnistcodec.storage.images import open_inputs, png_grid, write_image_pieces
from mnistcodec.training.checkpoints import load_checkpoint
from mnistcodec.training.loop import TrainConfig, train
from test_coding import make_spread_model

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def model_path(tiny_model, test_digits, tmp_path_factory):
    path = tmp_path_factory.mktemp("robust model") / "model ✓.safetensors"
    make_spread_model(tiny_model, test_digits, path)
    return path


@pytest.fixture(scope="module")
def codec(model_path):
    return Codec.from_model(model_path)


@pytest.fixture
def one_torch_thread():
    """Heavy in-process coding on one thread (two threads crawl on a busy 2-core machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- crash-safe training ----------------------------------------------------------------------


def _watch(stream, sink: list[str]) -> threading.Thread:
    def read() -> None:
        for chunk in iter(lambda: stream.read(256), ""):
            sink.append(chunk)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def test_sigkill_mid_epoch_then_resume(tmp_path):
    """Kill a training run in its second epoch; --resume continues from epoch 1 and finishes."""
    out = tmp_path / "run dir" / "killed model.safetensors"
    out.parent.mkdir()
    ckpt = out.with_name(out.name + ".ckpt")
    args = [
        sys.executable, "-m", "mnistcodec", "train", "--limit", "512", "--val-limit", "128",
        "--latent-dims", "8", "--epochs", "3", "--batch-size", "16", "--device", "cpu", "-o", str(out),
    ]  # fmt: skip
    env = {**os.environ, **ONE_THREAD}
    proc = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    stderr: list[str] = []
    _watch(proc.stderr, stderr)
    mid_epoch_2 = re.compile(r"epoch 2/3:\s+\d+%\|[^|]*\|\s+(\d+)/(\d+)")
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            steps = [(int(a), int(b)) for a, b in mid_epoch_2.findall("".join(stderr))]
            if ckpt.exists() and any(0 < done < total - 4 for done, total in steps):
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"training ended before it could be killed: {''.join(stderr)}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    meta, tensors = load_checkpoint(ckpt)
    assert meta["epoch"] == 1 and len(meta["history"]) == 1 and tensors
    assert not out.exists(), "the model is written only when training completes"
    leftovers = [p.name for p in out.parent.iterdir() if p.name.endswith(".tmp")]
    assert all(f".{proc.pid}." in name for name in leftovers), leftovers
    # What a kill during the checkpoint's own write would leave: the dead process's temp file.
    stale = out.parent / f".{ckpt.name}.{proc.pid}.k1ll3d00.tmp"
    stale.write_bytes(b"partial checkpoint")

    resumed = subprocess.run(
        [*args, "--resume", "--quiet"], env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout and "after epoch 1" in resumed.stdout
    assert "epoch 1/3" not in resumed.stdout and "epoch 3/3" in resumed.stdout
    loaded = load_model(out)
    history = loaded.metadata["history"]
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert history[0] == meta["history"][0]
    assert load_checkpoint(ckpt)[0]["epoch"] == 3
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(
        [out.name, ckpt.name, out.name + ".history.csv", out.name + ".history.json"]
    )


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    target = tmp_path / "file.bin"
    dead, alive = _dead_pid(), os.getppid()
    stale = tmp_path / f".file.bin.{dead}.abcd1234.tmp"
    live = tmp_path / f".file.bin.{alive}.abcd1234.tmp"
    other = tmp_path / f".other.bin.{dead}.abcd1234.tmp"
    for path in (stale, live, other):
        path.write_bytes(b"x")
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert not stale.exists() and live.exists() and other.exists()
    assert remove_stale_temporaries(tmp_path, "other.bin") == [other]


def test_non_finite_loss_names_epoch_and_step_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "nan.safetensors"
    epochs_done = []
    real_loss = CompressionModel.loss

    def loss_that_fails_in_epoch_2(self, rd):
        value = real_loss(self, rd)
        return (
            value * float("nan")
            if any(line.startswith("epoch 1/") for line in epochs_done)
            else value
        )

    monkeypatch.setattr(CompressionModel, "loss", loss_that_fails_in_epoch_2)
    with pytest.raises(TrainingError, match=r"epoch 2, step 1\b.*last good checkpoint"):
        train(
            ModelConfig(latent_dims=8),
            TrainConfig(epochs=2, limit=256, val_limit=64),
            out,
            log=epochs_done.append,
        )
    meta, _ = load_checkpoint(out.with_name(out.name + ".ckpt"))
    assert meta["epoch"] == 1 and not out.exists()


def test_non_finite_loss_names_the_step_without_progress_bars(tmp_path, monkeypatch):
    real_loss = CompressionModel.loss
    monkeypatch.setattr(
        CompressionModel, "loss", lambda self, rd: real_loss(self, rd) * float("nan")
    )
    with pytest.raises(TrainingError, match=r"epoch 1, step 1\b"):
        train(
            ModelConfig(latent_dims=8),
            TrainConfig(epochs=1, limit=256, val_limit=64),
            tmp_path / "nan.safetensors",
            progress=False,
            log=lambda _: None,
        )


# -- bounded memory ---------------------------------------------------------------------------


def _traced_peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_compress_and_decompress_memory_does_not_grow_with_the_digit_count(
    model_path, test_digits, tmp_path, one_torch_thread
):
    """Peak (numpy and Python) allocations for 3,200 digits stay those of 400.

    Blocks of 400 digits, read in pieces of 200 and synthesised 100 at a
    time, so that the (constant) working set is small next to the input.
    """
    codec = Codec.from_model(model_path, chunk_size=100)
    small, large = 400, 3200
    for n in (small, large):
        images = np.resize(test_digits, (n, 28, 28))
        (tmp_path / f"in{n}.idx.gz").write_bytes(gzip.compress(encode_idx(images), 1))
    peaks = {}
    for n in (small, large):
        mnc, idx = tmp_path / f"{n}.mnc", tmp_path / f"out{n}.idx"

        def round_trip(n=n, mnc=mnc, idx=idx):
            inputs = open_inputs([tmp_path / f"in{n}.idx.gz"])
            compress_to_file(codec, inputs.pieces(200), inputs.count, mnc, block_size=400)
            header, pieces = iter_decompress(codec, read_compressed(mnc))
            write_image_pieces(idx, header.count, pieces)

        peaks[n] = _traced_peak(round_trip)
        assert np.array_equal(read_idx(idx)[:300], codec.reconstruct(test_digits))
    input_bytes = large * 28 * 28
    assert peaks[large] < peaks[small] + 300_000, peaks
    assert peaks[large] < 0.6 * input_bytes, peaks


def test_grid_png_written_row_by_row_matches_the_in_memory_grid(codec, test_digits, tmp_path):
    from PIL import Image

    for n in (1, 5, 17, 300):
        path = tmp_path / f"grid{n}.png"
        pieces = [test_digits[i : i + 7] for i in range(0, n, 7)]
        pieces[-1] = pieces[-1][: n - 7 * (len(pieces) - 1)]
        write_image_pieces(path, n, pieces)
        assert np.array_equal(np.array(Image.open(path)), png_grid(test_digits[:n]))


def test_a_truncated_input_found_while_streaming_leaves_no_output(codec, test_digits, tmp_path):
    data = gzip.compress(encode_idx(test_digits))
    source = tmp_path / "cut.idx.gz"
    source.write_bytes(data[: len(data) // 2])
    inputs = open_inputs([source])
    assert inputs.count == 300
    with pytest.raises(InputError, match="truncated"):
        compress_to_file(
            codec, inputs.pieces(64), inputs.count, tmp_path / "out.mnc", block_size=64
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.idx.gz"]


# -- inputs from users ------------------------------------------------------------------------


def test_paths_with_spaces_and_unicode(model_path, codec, test_digits, tmp_path, capsys):
    folder = tmp_path / "dossier é ✓"
    folder.mkdir()
    source = folder / "chiffres à coder.idx"
    source.write_bytes(encode_idx(test_digits[:12]))
    mnc = folder / "sortie ünï.mnc"
    assert cli(capsys, "compress", model_path, source, "-o", mnc, "-q")[0] == 0
    grid = folder / "grille ø.png"
    code, out, _ = cli(capsys, "decompress", model_path, mnc, "-o", grid)
    assert code == 0 and str(grid) in out
    pngs = folder / "digits ★"
    assert cli(capsys, "decompress", model_path, mnc, "-o", pngs)[0] == 0
    assert len(list(pngs.glob("digit-*.png"))) == 12
    code, out, _ = cli(capsys, "inspect", mnc)
    assert code == 0 and str(mnc) in out


def _error(capsys, *args) -> str:
    code, _, err = cli(capsys, *args)
    assert code == 2 and err.startswith("mnistcodec: error:") and err.count("\n") == 1, err
    return err


def test_directories_fifos_and_unreadable_files_are_clear_errors(
    model_path, codec, test_digits, tmp_path, capsys
):
    mnc = tmp_path / "ok.mnc"
    compress_to_file(codec, [test_digits[:3]], 3, mnc)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    folder = tmp_path / "a folder"
    folder.mkdir()
    unreadable = Path("/proc/self/mem")  # a regular file whose reads fail, even for root
    for bad, message in ((folder, "is a directory"), (fifo, "not a regular file")):
        assert message in _error(capsys, "compress", model_path, bad, "-o", tmp_path / "x.mnc")
        assert message in _error(capsys, "decompress", model_path, bad, "-o", tmp_path / "x.png")
        assert message in _error(capsys, "inspect", bad)
        assert message in _error(capsys, "decompress", bad, mnc, "-o", tmp_path / "x.png")
    assert "cannot read" in _error(
        capsys, "compress", model_path, unreadable, "-o", tmp_path / "x.mnc"
    )
    assert "cannot read" in _error(capsys, "inspect", unreadable)
    assert "cannot read" in _error(capsys, "decompress", unreadable, mnc, "-o", tmp_path / "x.png")
    assert "is a directory" in _error(capsys, "compress", model_path, mnc, "-o", folder)
    assert not (tmp_path / "x.mnc").exists() and not (tmp_path / "x.png").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes any file")
def test_permission_denied(model_path, codec, test_digits, tmp_path, capsys):
    mnc = tmp_path / "locked.mnc"
    compress_to_file(codec, [test_digits[:3]], 3, mnc)
    mnc.chmod(0)
    locked = tmp_path / "locked dir"
    locked.mkdir(mode=0o500)
    try:
        assert "cannot read" in _error(capsys, "inspect", mnc)
        assert "cannot create" in _error(
            capsys, "compress", model_path, "--index", "0:2", "-o", locked / "x.mnc"
        )
    finally:
        mnc.chmod(0o644)
        locked.chmod(0o700)


def test_outputs_that_cannot_be_written(model_path, codec, test_digits, tmp_path, capsys):
    mnc = tmp_path / "ok.mnc"
    compress_to_file(codec, [test_digits[:3]], 3, mnc)
    missing = tmp_path / "no such dir" / "x.mnc"
    assert "does not exist" in _error(capsys, "compress", model_path, mnc, "-o", missing)
    # /proc refuses new files even to root: a read-only output directory.
    for args in (
        ["compress", model_path, "--index", "0:2", "-o", "/proc/x.mnc"],
        ["decompress", model_path, mnc, "-o", "/proc/x.png"],
        ["decompress", model_path, mnc, "-o", "/proc/x.idx"],
        ["decompress", model_path, mnc, "-o", "/proc/digits"],
    ):
        assert "cannot create" in _error(capsys, *args)


def _stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_compress_to_stdout_and_decompress_from_stdin(
    model_path, codec, test_digits, tmp_path, capsysbinary, monkeypatch
):
    idx = tmp_path / "in.idx"
    idx.write_bytes(encode_idx(test_digits[:9]))
    assert main(["compress", str(model_path), str(idx), "-o", "-"]) == 0
    data, err = capsysbinary.readouterr()
    assert data[:4] == b"\x89MNC" and b"compressed 9 digits" in err
    expected = codec.reconstruct(test_digits[:9])
    assert np.array_equal(decompress_file(codec, _written(tmp_path, data)), expected)

    _stdin(monkeypatch, data)
    grid = tmp_path / "from stdin.png"
    assert main(["decompress", str(model_path), "-", "-o", str(grid)]) == 0
    assert b"from standard input" in capsysbinary.readouterr().out
    from PIL import Image

    assert np.array_equal(np.array(Image.open(grid)), png_grid(expected))

    _stdin(monkeypatch, data)
    assert main(["decompress", str(model_path), "-", "-o", "-"]) == 0
    raw, err = capsysbinary.readouterr()
    assert b"IDX on standard output" in err
    assert np.array_equal(read_idx(_written(tmp_path, raw, "out.idx")), expected)

    _stdin(monkeypatch, data)
    assert main(["inspect", "-", "--json"]) == 0
    info = json.loads(capsysbinary.readouterr().out)
    assert info["path"] == "-" and info["count"] == 9

    _stdin(monkeypatch, encode_idx(test_digits[:9]))
    assert main(["compress", str(model_path), "-", "-o", str(tmp_path / "from stdin.mnc")]) == 0
    assert (tmp_path / "from stdin.mnc").read_bytes() == data


def _written(tmp_path: Path, data: bytes, name: str = "written.mnc") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_bad_standard_input_is_a_clear_error(model_path, tmp_path, capsys, monkeypatch):
    for data, message in ((b"", "empty file"), (b"GIF89a", "bad magic")):
        _stdin(monkeypatch, data)
        assert message in _error(capsys, "inspect", "-")
        _stdin(monkeypatch, data)
        assert message in _error(capsys, "decompress", model_path, "-", "-o", tmp_path / "o.png")
    _stdin(monkeypatch, b"")
    assert "empty" in _error(capsys, "compress", model_path, "-", "-o", tmp_path / "o.mnc")
    assert "only once" in _error(capsys, "compress", model_path, "-", "-", "-o", tmp_path / "o.mnc")
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "o.mnc").exists()


def test_binary_output_is_not_written_to_a_terminal(model_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    mnc = tmp_path / "x.mnc"
    mnc.write_bytes(b"")
    for args in (
        ["compress", model_path, "--index", "0:2", "-o", "-"],
        ["decompress", model_path, mnc, "-o", "-"],
        ["sample", model_path, "-o", "-"],
    ):
        assert "terminal" in _error(capsys, *args)


def test_stdout_output_of_sample(model_path, codec, capsysbinary):
    assert main(["sample", str(model_path), "--n", "4", "--seed", "2", "-o", "-"]) == 0
    raw, err = capsysbinary.readouterr()
    assert b"decoded 4 random" in err
    assert raw[:4] == b"\x00\x00\x08\x03" and len(raw) == 16 + 4 * 784
    assert np.array_equal(
        np.frombuffer(raw[16:], np.uint8).reshape(4, 28, 28), codec.sample(4, seed=2)
    )


def test_model_argument_that_is_not_a_model(model_path, tmp_path, capsys):
    folder = tmp_path / "models"
    folder.mkdir()
    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    mnc = tmp_path / "x.mnc"
    for bad, message in ((folder, "is a directory"), (text, "not a model file")):
        assert message in _error(capsys, "compress", bad, "--index", "0:2", "-o", mnc)
    assert "no model file" in _error(
        capsys, "compress", tmp_path / "missing", "--index", "0:2", "-o", mnc
    )
    torch.save({"x": 1}, tmp_path / "pickled.pt")
    assert "not a model file" in _error(
        capsys, "compress", tmp_path / "pickled.pt", "--index", "0:2", "-o", mnc
    )
    assert not mnc.exists()
