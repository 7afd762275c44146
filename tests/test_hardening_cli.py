"""The command line against hostile or careless use (issue 24, items 8-16; issue 25, items 6, 11).

Each test names the class of input it guards: links and odd names as outputs,
degenerate models, integers out of range, names that shadow the shipped
models, model files of any name, options in any order, and the messages of
failures. Every one failed on the code before these fixes.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnistcodec.cli import main
from mnistcodec.coding.api import Codec
from mnistcodec.coding.model_files import save_model
from mnistcodec.coding.zoo import (
    DEFAULT_MODEL,
    MODEL_FORMAT_BYTES,
    PRETRAINED_DIR,
    is_model_file,
    is_model_reference,
    resolve_model,
)
from mnistcodec.data import read_idx
from mnistcodec.errors import InputError, ModelFileError
from mnistcodec.storage.images import encode_png, png_grid
from mnistcodec.storage.model_container import (
    FORMAT_NAME,
    decode_tensors,
    encode_container,
    read_record,
)

SEED_MODEL = "seed-lmbda2000"


def _cli(capsys, *args) -> tuple[int, str, str]:
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def _run(*args, cwd=None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mnistcodec", *map(str, args)],
        capture_output="stdout" not in kwargs,
        text=True,
        timeout=300,
        cwd=cwd,
        **kwargs,
    )


def _no_temporaries(folder: Path) -> None:
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


@pytest.fixture(scope="module")
def mnc_file(tmp_path_factory, _data_environment) -> Path:
    path = tmp_path_factory.mktemp("hardening") / "four.mnc"
    status = main(["compress", SEED_MODEL, "--index", "0:4", "-o", str(path), "-q"])
    assert status == 0
    return path


# -- 8. outputs that are symbolic links ---------------------------------------------------


def test_a_link_to_a_directory_is_never_followed_and_leaves_no_temporary(
    tmp_path, capsys, mnc_file
):
    target = tmp_path / "target"
    target.mkdir()
    link = tmp_path / "L"
    link.symlink_to(target)
    status, _, err = _cli(capsys, "decompress", mnc_file, "-o", link)
    assert status == 2 and "symbolic link" in err and "--force" in err
    assert link.is_symlink() and list(target.iterdir()) == []
    status, _, err = _cli(capsys, "decompress", mnc_file, "-o", link, "--force")
    assert status == 0, err
    assert not link.is_symlink() and len(list(link.iterdir())) == 4
    assert list(target.iterdir()) == []  # the link's target is never written
    _no_temporaries(tmp_path)
    # a directory of digits behind a link: the same rule
    (target / "digit-00000.png").write_bytes(encode_png(np.zeros((28, 28), np.uint8)))
    other = tmp_path / "M"
    other.symlink_to(target)
    status, _, _ = _cli(capsys, "decompress", mnc_file, "-o", other, "--force")
    assert status == 0 and not other.is_symlink()
    assert [p.name for p in target.iterdir()] == ["digit-00000.png"]
    _no_temporaries(tmp_path)


def test_export_to_a_dangling_link_names_no_temporary(tmp_path, capsys):
    pytest.importorskip("onnx")
    link = tmp_path / "D"
    link.symlink_to(tmp_path / "nowhere")
    status, _, err = _cli(capsys, "export", SEED_MODEL, "--onnx", link)
    assert status == 2 and "symbolic link to a missing file" in err
    assert ".tmp" not in err and link.is_symlink()
    _no_temporaries(tmp_path)


def test_the_web_export_treats_a_linked_target_as_the_onnx_export_does(tmp_path, capsys):
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "site"
    link.symlink_to(target)
    status, _, err = _cli(capsys, "export", SEED_MODEL, "--web", link)
    assert status == 2 and "symbolic link" in err and "--force" in err
    status, _, _ = _cli(capsys, "export", SEED_MODEL, "--web", link, "--force")
    assert status == 0 and not link.is_symlink() and (link / "manifest.json").is_file()
    assert list(target.iterdir()) == []  # the link was replaced, never followed
    _no_temporaries(tmp_path)


# -- 9. output names ----------------------------------------------------------------------


def test_output_names_do_what_they_say(tmp_path, capsys, mnc_file):
    upper = tmp_path / "OUT.IDX.GZ"
    assert _cli(capsys, "decompress", mnc_file, "-o", upper)[0] == 0
    assert upper.read_bytes()[:2] == b"\x1f\x8b"
    assert read_idx(upper).shape == (4, 28, 28)
    status, _, _ = _cli(capsys, "decompress", mnc_file, "-o", f"{tmp_path / 'g.png'}/")
    assert status == 0 and (tmp_path / "g.png").is_dir()
    assert len(list((tmp_path / "g.png").iterdir())) == 4
    slash = f"{tmp_path / 'x.mnc'}/"
    status, _, err = _cli(capsys, "compress", SEED_MODEL, "--index", "0:2", "-o", slash, "-q")
    assert status == 2 and "names a directory" in err
    assert not (tmp_path / "x.mnc").exists()
    _no_temporaries(tmp_path)


# -- 10. degenerate models -----------------------------------------------------------------


@pytest.fixture(scope="module")
def degenerate_models(tmp_path_factory) -> dict[str, Path]:
    """The shipped ``vr`` re-signed (tables and fingerprint rebuilt) with broken gains."""
    folder = tmp_path_factory.mktemp("degenerate")
    made = {}
    for label, value in (("zero", 0.0), ("huge", 40.0)):
        model = resolve_model("vr").model
        with torch.no_grad():
            model.entropy_bottleneck.log_gains.fill_(value)
        path = folder / f"{label}.safetensors"
        save_model(model, path, weights_dtype=torch.float16)
        made[label] = path
    return made


@pytest.mark.parametrize("label", ["zero", "huge"])
def test_degenerate_gains_are_refused_at_load(degenerate_models, label, capsys, tmp_path):
    path = degenerate_models[label]
    with pytest.raises(ModelFileError, match="degenerate model"):
        resolve_model(path)
    status, _, err = _cli(capsys, "compress", path, "--index", "0:2", "-o", tmp_path / "x.mnc")
    assert status == 2 and "degenerate" in err and str(path) in err
    assert "Traceback" not in err and not (tmp_path / "x.mnc").exists()


def test_a_coding_precision_out_of_range_names_the_file(tmp_path):
    data = (PRETRAINED_DIR / f"{SEED_MODEL}.safetensors").read_bytes()
    record = read_record(data, "model")
    record["coding"] = {**record["coding"], "precision": 30}
    path = tmp_path / "precise.safetensors"
    path.write_bytes(encode_container(decode_tensors(data, "model"), record))
    with pytest.raises(ModelFileError, match=f"{path}.*precision"):
        resolve_model(path)


# -- 11. integers out of range ---------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("train", "--seed", str(1 << 63), "--out", "m.safetensors"),
        ("train", "--seed", str(-(1 << 63) - 1), "--out", "m.safetensors"),
        ("train", "--batch-size", str(1 << 70), "--out", "m.safetensors"),
        ("sample", "--seed", str(1 << 64), "-o", "s.png"),
        ("sweep", "--seeds", "0", str(1 << 63), "--out", "sweep"),
        ("compress", "--level", str(1 << 63), "--index", "0:2", "-o", "x.mnc"),
        ("serve", "--port", "70000"),
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_integer_options_are_range_checked(args, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, err = _cli(capsys, *args)
    assert status == 2 and "Traceback" not in err
    assert f"usage: mnistcodec {args[0]}" in err and "must be" in err
    assert list(tmp_path.iterdir()) == []


def test_a_huge_seed_reaching_the_library_is_one_error():
    codec = Codec.from_model(SEED_MODEL)
    with pytest.raises(InputError, match="seed must be from 0"):
        codec.sample(2, seed=1 << 63)


# -- 12. names that shadow the shipped models -------------------------------------------------


def test_a_directory_is_never_a_model_and_a_shadowing_file_is_said(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / DEFAULT_MODEL).mkdir()  # what export DEFAULT --onnx DEFAULT leaves
    (tmp_path / "vr").write_bytes((PRETRAINED_DIR / f"{SEED_MODEL}.safetensors").read_bytes())
    status, _, err = _cli(capsys, "sample", "--n", "2", "-o", "default.png")
    assert status == 0, err
    status, _, err = _cli(capsys, "sample", "vr", "--n", "2", "-o", "shipped.png", "-q")
    assert status == 0 and "the local file vr was not used" in err and "./vr" in err
    status, _, err = _cli(capsys, "sample", "./vr", "--n", "2", "-o", "local.png", "-q")
    assert status == 0 and err == ""
    shipped = np.asarray(Image.open("shipped.png"))
    local = np.asarray(Image.open("local.png"))
    assert np.array_equal(shipped, png_grid(Codec.from_model("vr").sample(2)))
    assert np.array_equal(local, png_grid(Codec.from_model(SEED_MODEL).sample(2)))
    with pytest.raises(ModelFileError, match="is a directory"):
        resolve_model(f"./{DEFAULT_MODEL}")


# -- 13. sample streams its digits ------------------------------------------------------------


def test_sample_streams_its_digits_to_the_output(tmp_path):
    """The first digits of a large sample reach standard output long before the last is drawn.

    Sampling everything first (as before) held every digit in memory, about 5 GB at the
    largest count; streamed, a reader gets the first piece while the rest is drawn, and
    memory stays one piece. The run is stopped once the first piece has arrived.
    """
    count, piece = 1 << 20, 4096  # the largest count; a piece is Codec's chunk of digits
    process = subprocess.Popen(
        # fp32, the exact path: with auto, a call this large may calibrate and pick an engine
        # whose pixels differ by a grey level (within the conformance rule).
        [sys.executable, "-m", "mnistcodec", "sample", SEED_MODEL, "--n", str(count), "-o", "-"]
        + ["--precision", "fp32"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        head = process.stdout.read(16 + 784 * piece)
        assert process.poll() is None  # still drawing the other 1044480 digits
    finally:
        process.kill()
        process.wait()
    assert head[:8] == b"\x00\x00\x08\x03" + count.to_bytes(4, "big")
    first = np.frombuffer(head[16:], np.uint8).reshape(piece, 28, 28)
    codec = Codec.from_model(SEED_MODEL, precision="fp32")
    assert np.array_equal(first[:64], codec.sample(64))
    chunked = Codec.from_model(SEED_MODEL, chunk_size=100, precision="fp32")
    pieces = list(chunked.iter_sample(250, seed=0))
    assert [p.shape[0] for p in pieces] == [100, 100, 50]
    assert np.array_equal(np.concatenate(pieces), first[:250])


# -- 14. options after positionals ------------------------------------------------------------


def test_options_go_anywhere_and_errors_show_the_command_usage(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photo = Image.new("L", (90, 90), 255)
    photo.paste(0, (30, 10, 50, 80))
    photo.save("photo.png")
    Image.fromarray(np.zeros((28, 28), np.uint8)).save("-dash.png")
    Image.fromarray(np.full((28, 28), 9, np.uint8)).save("in.png")
    runs = [
        ("compress", "vr", "--fit", "photo.png", "-o", "a.mnc", "-q"),
        ("compress", "vr", "--level", "3", "in.png", "-o", "b.mnc", "-q"),
        ("compress", "vr", "-o", "c.mnc", "-q", "--", "-dash.png"),
        ("compress", "in.png", "-o", "d.mnc", "--level", "2", "-q"),
    ]
    for args in runs:
        status, _, err = _cli(capsys, *args)
        assert status == 0, (args, err)
    status, _, err = _cli(capsys, "compress", "vr", "in.png", "--bogus", "-o", "e.mnc")
    assert status == 2 and "usage: mnistcodec compress" in err and "--bogus" in err


# -- 15. model files by content -----------------------------------------------------------------


def test_a_model_file_is_recognised_by_its_bytes(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert MODEL_FORMAT_BYTES.decode() == FORMAT_NAME
    Path("seed.model").write_bytes((PRETRAINED_DIR / f"{SEED_MODEL}.safetensors").read_bytes())
    Path("fake.model").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{" + b" " * 15)
    assert is_model_file("seed.model") and is_model_reference("seed.model")
    assert not is_model_file("fake.model") and not is_model_file(".")
    status, _, _ = _cli(capsys, "compress", SEED_MODEL, "--index", "0:3", "-o", "a.mnc", "-q")
    assert _cli(capsys, "decompress", "a.mnc", "-o", "digits.idx", "-q")[0] == 0
    status, out, err = _cli(capsys, "compress", "seed.model", "digits.idx", "-o", "b.mnc", "-q")
    assert status == 0, err
    assert Path("a.mnc").read_bytes()[:40] == Path("b.mnc").read_bytes()[:40]


# -- 16. messages ---------------------------------------------------------------------------------


def test_messages_say_what_happened(tmp_path, capsys, monkeypatch, mnc_file):
    monkeypatch.chdir(tmp_path)
    status, _, err = _cli(
        capsys, "compress", "vr", "--index", "0:2", "--target-bits", "40", "--stream", "-o", "t.mnc"
    )
    assert status == 2 and "--mode" not in err and "--stream" in err
    png = io.BytesIO()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(png, format="PNG")
    data = bytearray(png.getvalue())
    data[-20] ^= 0xFF  # a byte of the last IDAT: its CRC no longer matches
    Path("bad.png").write_bytes(bytes(data))
    status, _, err = _cli(capsys, "compress", "vr", "bad.png", "-o", "b.mnc")
    assert status == 2 and "BytesIO" not in err and "0x" not in err, err


def test_help_and_reports_that_cannot_be_written_fail_and_say_so(tmp_path):
    with open("/dev/full", "w") as full:
        done = _run("--help", stdout=full, stderr=subprocess.PIPE)
    assert done.returncode == 2 and "No space left" in done.stderr
    out = tmp_path / "w.mnc"
    with open("/dev/full", "w") as full:
        done = _run(
            "compress", SEED_MODEL, "--index", "0:2", "-o", out, stdout=full, stderr=subprocess.PIPE
        )
    assert done.returncode == 2 and f"{out} is written completely" in done.stderr
    assert out.is_file() and out.stat().st_size > 0


# -- issue 25: sample's rate options; decompress -q ---------------------------------------------------


def test_sample_takes_the_rate_options_of_compress(tmp_path, capsys):
    codec = Codec.from_model(DEFAULT_MODEL)
    for option, value, level in (("--level", "15", 15), ("--lmbda", "150", 0)):
        out = tmp_path / f"{option[2:]}.png"
        status, stdout, err = _cli(capsys, "sample", "--n", "4", option, value, "-o", out)
        assert status == 0, err
        assert f"level {level}" in stdout
        grid = np.asarray(Image.open(out))
        assert np.array_equal(grid, png_grid(codec.sample(4, level=level)))
    assert not np.array_equal(
        np.asarray(Image.open(tmp_path / "level.png")),
        np.asarray(Image.open(tmp_path / "lmbda.png")),
    )
    status, _, err = _cli(capsys, "sample", "--level", "16", "-o", tmp_path / "x.png")
    assert status == 2 and "level 16 does not exist" in err


def test_decompress_and_sample_take_quiet(tmp_path, capsys, mnc_file):
    status, out, err = _cli(capsys, "decompress", "-q", mnc_file, "-o", tmp_path / "d.png")
    assert status == 0 and out == "" and err == ""
    status, out, err = _cli(
        capsys, "sample", SEED_MODEL, "-q", "--n", "2", "-o", tmp_path / "s.png"
    )
    assert status == 0 and out == "" and err == ""


def test_export_has_the_default_model_and_a_fixed_rate_level_error_says_so(
    tmp_path, capsys, monkeypatch
):
    pytest.importorskip("onnx")
    monkeypatch.chdir(tmp_path)
    status, out, err = _cli(capsys, "export", "--onnx", "exported")
    assert status == 0, err
    assert (
        f"exported {DEFAULT_MODEL}" in out and (tmp_path / "exported" / "manifest.json").is_file()
    )
    status, _, err = _cli(capsys, "sample", SEED_MODEL, "--level", "3", "-o", "s.png")
    assert status == 2 and "fixed-rate model" in err and "levels 0 to 0" not in err
