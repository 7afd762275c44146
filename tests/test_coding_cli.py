"""compress / decompress / inspect / sample from the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mnistcodec.cli import main
from mnistcodec.coding.api import Codec
from mnistcodec.coding.files import decompress_file
from mnistcodec.data import encode_idx, load_split, read_idx
from mnistcodec.storage.images import png_grid, read_inputs, write_png
from test_coding import make_spread_model


@pytest.fixture(scope="module")
def model_path(tiny_model, test_digits, tmp_path_factory):
    path = tmp_path_factory.mktemp("cli model") / "model.safetensors"
    make_spread_model(tiny_model, test_digits, path)
    return path


@pytest.fixture(scope="module")
def codec(model_path):
    return Codec.from_model(model_path)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mnistcodec", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# -- subprocess smoke tests -----------------------------------------------------------------


def test_compress_inspect_decompress_sample_in_subprocesses(model_path, codec, tmp_path):
    mnc = tmp_path / "lab batch é.mnc"
    done = run_cli("compress", model_path, "--split", "test", "--index", "48:64", "-o", mnc)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    first = next(line for line in lines if "test[48]" in line).split()
    assert first[0] == "0" and first[2].startswith("0x")
    assert int(first[3]) == 4 * (len(first[2]) - 2)
    assert "mean information content" in done.stdout and "bits/digit" in done.stdout
    batch = load_split("test").images[48:64]
    assert np.array_equal(decompress_file(codec, mnc), codec.reconstruct(batch))

    done = run_cli("inspect", mnc)
    assert done.returncode == 0, done.stderr
    assert (
        "per-digit" in done.stdout
        and codec.fingerprint in done.stdout
        and "16 (28x28)" in done.stdout
    )

    grid = tmp_path / "grid.png"
    done = run_cli("decompress", model_path, mnc, "-o", grid)
    assert done.returncode == 0, done.stderr
    assert np.array_equal(np.array(Image.open(grid)), png_grid(codec.reconstruct(batch)))

    sample = tmp_path / "sample.png"
    done = run_cli("sample", model_path, "--n", "16", "--seed", "7", "-o", sample)
    assert done.returncode == 0, done.stderr
    assert np.array_equal(
        np.array(Image.open(sample)), png_grid(codec.sample(16, seed=7, nbytes=8))
    )


def test_bad_png_in_a_subprocess_is_one_line_exit_2(model_path, tmp_path):
    rgb = tmp_path / "colour.png"
    Image.new("RGB", (28, 28)).save(rgb)
    done = run_cli("compress", model_path, rgb, "-o", tmp_path / "x.mnc")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0
    assert "expected a 28x28 8-bit greyscale PNG" in done.stderr and "RGB" in done.stderr
    assert not (tmp_path / "x.mnc").exists()


# -- in-process runs of the same entry point ------------------------------------------------


def test_png_and_idx_inputs_give_the_same_file(model_path, codec, test_digits, tmp_path, capsys):
    pngs = [write_png(tmp_path / f"in {i}.png", test_digits[i]) for i in range(6)]
    idx = tmp_path / "in.idx"
    idx.write_bytes(encode_idx(test_digits[:6]))
    assert cli(capsys, "compress", model_path, *pngs, "-o", tmp_path / "a.mnc")[0] == 0
    code, out, _ = cli(capsys, "compress", model_path, idx, "-o", tmp_path / "b.mnc")
    assert code == 0 and "in.idx[5]" in out
    assert (tmp_path / "a.mnc").read_bytes() == (tmp_path / "b.mnc").read_bytes()


@pytest.mark.parametrize(
    "out_name, kind", [("digits", "dir"), ("grid.png", "grid"), ("d.idx3-ubyte", "idx")]
)
def test_decompress_to_each_output_kind(
    model_path, codec, test_digits, tmp_path, capsys, out_name, kind
):
    mnc = tmp_path / "s.mnc"
    idx = tmp_path / "in.idx"
    idx.write_bytes(encode_idx(test_digits[:10]))
    code, out, _ = cli(capsys, "compress", model_path, idx, "--stream", "-o", mnc)
    assert code == 0 and "stream" in out and "% over the information" in out
    expected = codec.reconstruct(test_digits[:10])
    out_path = tmp_path / out_name
    assert cli(capsys, "decompress", model_path, mnc, "-o", out_path)[0] == 0
    if kind == "dir":
        assert np.array_equal(read_inputs(sorted(out_path.iterdir()))[0], expected)
    elif kind == "grid":
        assert np.array_equal(np.array(Image.open(out_path)), png_grid(expected))
    else:
        assert np.array_equal(read_idx(out_path), expected)
    code, _, err = cli(capsys, "decompress", model_path, mnc, "-o", out_path)
    assert code == 2 and "--force" in err
    assert cli(capsys, "decompress", model_path, mnc, "-o", out_path, "--force")[0] == 0


def test_existing_output_is_kept_and_force_replaces_it(model_path, tmp_path, capsys):
    out = tmp_path / "out.mnc"
    out.write_bytes(b"precious")
    code, _, err = cli(capsys, "compress", model_path, "--index", "0:4", "-o", out)
    assert code == 2 and "already exists" in err and out.read_bytes() == b"precious"
    assert cli(capsys, "compress", model_path, "--index", "0:4", "-o", out, "--force")[0] == 0
    assert out.read_bytes()[:4] == b"\x89MNC"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mnc"]


def test_listing_is_capped_and_quiet(model_path, tmp_path, capsys):
    code, out, _ = cli(capsys, "compress", model_path, "--index", "0:100", "-o", tmp_path / "a.mnc")
    assert code == 0 and "test[63]" in out and "test[64]" not in out and "36 more digits" in out
    code, out, _ = cli(
        capsys, "compress", model_path, "--index", "5", "-q", "-o", tmp_path / "b.mnc"
    )
    assert code == 0 and "test[5]" not in out and "digits                     1" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--index", "20:10"], "selects no digits"),
        (["--index", "9990:10001"], "out of range"),
        (["--index", "a:b"], "bad --index"),
        (["--index", "-3"], "non-negative"),
        ([], "no input"),
        (["in.png", "--split", "test"], "not both"),
        (["missing.png"], "not found"),
        (["."], "is a directory"),
        (["--index", "0:2", "--block-size", "2000000"], "--block-size"),
    ],
)
def test_bad_compress_inputs_exit_2(model_path, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    write_png(tmp_path / "in.png", np.zeros((28, 28), np.uint8))
    code, _, err = cli(capsys, "compress", model_path, *args, "-o", "out.mnc")
    assert code == 2 and message in err and err.startswith("mnistcodec: error:")
    assert not (tmp_path / "out.mnc").exists()


@pytest.mark.parametrize(
    "mode, size, found",
    [
        ("RGB", (28, 28), "RGB colour"),
        ("I;16", (28, 28), "16-bit greyscale"),
        ("L", (20, 28), "20x28"),
    ],
)
def test_bad_pngs_exit_2(model_path, tmp_path, capsys, mode, size, found):
    path = tmp_path / "bad.png"
    Image.new(mode, size).save(path)
    code, _, err = cli(capsys, "compress", model_path, path, "-o", tmp_path / "x.mnc")
    assert code == 2 and "expected a 28x28 8-bit greyscale PNG" in err and found in err


def test_bad_compressed_files_exit_2(model_path, tmp_path, capsys):
    assert cli(capsys, "compress", model_path, "--index", "0:8", "-o", tmp_path / "ok.mnc")[0] == 0
    data = (tmp_path / "ok.mnc").read_bytes()
    cases = {
        "cut.mnc": data[:-3],
        "junk.mnc": b"not a file",
        "long.mnc": data + b"x",
        "empty.mnc": b"",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        for command in (
            ["decompress", model_path, tmp_path / name, "-o", tmp_path / "o.png"],
            ["inspect", tmp_path / name],
        ):
            code, _, err = cli(capsys, *command)
            assert code == 2 and err.startswith("mnistcodec: error:") and err.count("\n") == 1
    assert not (tmp_path / "o.png").exists()


def test_wrong_model_exits_2(model_path, tiny_model_path, tmp_path, capsys):
    assert cli(capsys, "compress", model_path, "--index", "0:3", "-o", tmp_path / "a.mnc")[0] == 0
    code, _, err = cli(
        capsys, "decompress", tiny_model_path, tmp_path / "a.mnc", "-o", tmp_path / "o"
    )
    assert code == 2 and "not by the given model" in err
    assert not (tmp_path / "o").exists()


def test_inspect_json_and_stream(model_path, tmp_path, capsys):
    mnc = tmp_path / "s.mnc"
    assert (
        cli(
            capsys,
            "compress",
            model_path,
            "--index",
            "0:50",
            "--stream",
            "--block-size",
            "20",
            "-o",
            mnc,
        )[0]
        == 0
    )
    code, out, _ = cli(capsys, "inspect", mnc, "--json")
    info = json.loads(out)
    assert code == 0 and info["mode"] == "stream" and info["blocks"] == 3 and info["count"] == 50
    assert info["file_bytes"] == mnc.stat().st_size
    code, out, _ = cli(capsys, "inspect", mnc)
    assert code == 0 and "block size      20 (3 blocks)" in out


def test_sample_is_reproducible_and_refuses_overwrite(model_path, tmp_path, capsys):
    assert (
        cli(capsys, "sample", model_path, "--seed", "3", "--n", "5", "-o", tmp_path / "a.idx")[0]
        == 0
    )
    assert (
        cli(capsys, "sample", model_path, "--seed", "3", "--n", "5", "-o", tmp_path / "b.idx")[0]
        == 0
    )
    a = read_idx(tmp_path / "a.idx")
    assert a.shape == (5, 28, 28) and np.array_equal(a, read_idx(tmp_path / "b.idx"))
    code, _, err = cli(capsys, "sample", model_path, "-o", tmp_path / "a.idx")
    assert code == 2 and "already exists" in err
    code, _, err = cli(capsys, "sample", model_path, "--bytes", "-1", "-o", tmp_path / "c.png")
    assert code == 2 and "--bytes" in err
