"""Golden files: what earlier versions wrote keeps decoding, and re-encodes byte for byte.

``tests/golden`` holds, for every shipped model, test digits 0-23 coded per
digit and as one stream, and the digits they decode to, all written by the
command line (``tests/golden/make_golden.py``). Any change to the code that
alters a decoded pixel or an encoded byte of the float32 reference path
(``--precision fp32``) fails here. The default precision (``auto``) may use
bf16 products on hardware with bf16 matrix units; it is held to the decoding
conformance rule instead (99 % of pixels within 1 grey level), and on other
machines it is the reference path itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnistcodec.cli import main
from mnistcodec.data import read_idx

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
NAMES = sorted(p.name.removesuffix(".decoded.idx") for p in GOLDEN_DIR.glob("*.decoded.idx"))
MODES = {"per-digit": [], "stream": ["--stream"]}


def test_every_shipped_model_has_golden_files():
    shipped = Path(__file__).resolve().parents[1] / "src" / "mnistcodec" / "pretrained"
    assert NAMES == sorted(
        p.name.removesuffix(".safetensors") for p in shipped.glob("*.safetensors")
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", NAMES)
def test_golden_file_decodes_to_the_same_pixels(name, mode, tmp_path):
    out = tmp_path / "decoded.idx"
    argv = ["decompress", name, str(GOLDEN_DIR / f"{name}.{mode}.mnc"), "-o", str(out)]
    assert main(argv + ["--precision", "fp32"]) == 0
    expected = read_idx(GOLDEN_DIR / f"{name}.decoded.idx")
    assert expected.shape == (24, 28, 28)
    np.testing.assert_array_equal(read_idx(out), expected)


@pytest.mark.parametrize("name", NAMES)
def test_golden_file_decodes_conformantly_at_the_default_precision(name, tmp_path):
    out = tmp_path / "decoded.idx"
    assert (
        main(["decompress", name, str(GOLDEN_DIR / f"{name}.per-digit.mnc"), "-o", str(out)]) == 0
    )
    error = np.abs(read_idx(out).astype(int) - read_idx(GOLDEN_DIR / f"{name}.decoded.idx"))
    assert np.mean(error <= 1) >= 0.99


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", NAMES)
def test_golden_digits_reencode_to_the_same_bytes(name, mode, tmp_path):
    out = tmp_path / "coded.mnc"
    argv = ["compress", name, "--split", "test", "--index", "0:24", "-o", str(out)]
    argv += ["--precision", "fp32"]
    assert main(argv + MODES[mode]) == 0
    assert out.read_bytes() == (GOLDEN_DIR / f"{name}.{mode}.mnc").read_bytes()


def test_the_python_api_takes_shipped_names_like_the_cli():
    from mnistcodec.coding.api import Codec
    from mnistcodec.coding.files import decompress_bytes

    name = "seed-lmbda2000"
    codec = Codec.from_model(name, precision="fp32")
    decoded = decompress_bytes(codec, (GOLDEN_DIR / f"{name}.per-digit.mnc").read_bytes())
    np.testing.assert_array_equal(decoded, read_idx(GOLDEN_DIR / f"{name}.decoded.idx"))
