"""Golden files: what earlier versions wrote keeps decoding, and re-encodes byte for byte.

``tests/golden`` holds, for every shipped model, test digits 0-23 coded per
digit and as one stream, and the digits they decode to, all written by the
command line (``tests/golden/make_golden.py``): in the current format,
version 3 (``<model>.v3.<mode>.mnc``), and as the release that shipped the
model wrote them (``<model>.<mode>.mnc``: version 1, or 2 for a variable-rate
model, with byte strings), which must keep decoding to the same digits. Any change to the code that
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
#: Golden file infixes: the files earlier versions wrote, and the current format.
FORMATS = {"legacy": "", "v3": "v3."}


def test_every_shipped_model_has_golden_files():
    shipped = Path(__file__).resolve().parents[1] / "src" / "mnistcodec" / "pretrained"
    assert NAMES == sorted(
        p.name.removesuffix(".safetensors") for p in shipped.glob("*.safetensors")
    )


# Models shipped since version 3 have no files of earlier versions.
CASES = [
    (name, fmt)
    for name in NAMES
    for fmt in FORMATS
    if (GOLDEN_DIR / f"{name}.{FORMATS[fmt]}per-digit.mnc").exists()
]
WITH_LEGACY = [name for name, fmt in CASES if fmt == "legacy"]


def test_every_shipped_model_has_version_3_golden_files():
    assert all((name, "v3") in CASES for name in NAMES)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name, fmt", CASES)
def test_golden_file_decodes_to_the_same_pixels(name, mode, fmt, tmp_path):
    out = tmp_path / "decoded.idx"
    path = GOLDEN_DIR / f"{name}.{FORMATS[fmt]}{mode}.mnc"
    argv = ["decompress", name, str(path), "-o", str(out)]
    assert main(argv + ["--precision", "fp32"]) == 0
    expected = read_idx(GOLDEN_DIR / f"{name}.decoded.idx")
    assert expected.shape == (24, 28, 28)
    np.testing.assert_array_equal(read_idx(out), expected)


@pytest.mark.parametrize("name", NAMES)
def test_golden_file_decodes_conformantly_at_the_default_precision(name, tmp_path):
    out = tmp_path / "decoded.idx"
    assert (
        main(["decompress", name, str(GOLDEN_DIR / f"{name}.v3.per-digit.mnc"), "-o", str(out)])
        == 0
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
    assert out.read_bytes() == (GOLDEN_DIR / f"{name}.v3.{mode}.mnc").read_bytes()


@pytest.mark.parametrize("name", WITH_LEGACY)
def test_version_3_strings_are_never_longer_than_the_byte_strings(name):
    """The same latents in both per-digit files: each bit string fits in its byte string's bits."""
    from mnistcodec.coding.container import parse_file, string_bits

    old = parse_file((GOLDEN_DIR / f"{name}.per-digit.mnc").read_bytes())
    new = parse_file((GOLDEN_DIR / f"{name}.v3.per-digit.mnc").read_bytes())
    assert (old[0].version, new[0].version) in {(1, 3), (2, 3)}
    old_strings = [s for block in old[1] for s in block.strings]
    new_strings = [s for block in new[1] for s in block.strings]
    assert all(string_bits(b) <= 8 * len(a) for a, b in zip(old_strings, new_strings, strict=True))
    assert sum(map(string_bits, new_strings)) < 8 * sum(map(len, old_strings))


def test_the_python_api_takes_shipped_names_like_the_cli():
    from mnistcodec.coding.api import Codec
    from mnistcodec.coding.files import decompress_bytes

    name = "seed-lmbda2000"
    codec = Codec.from_model(name, precision="fp32")
    decoded = decompress_bytes(codec, (GOLDEN_DIR / f"{name}.v3.per-digit.mnc").read_bytes())
    np.testing.assert_array_equal(decoded, read_idx(GOLDEN_DIR / f"{name}.decoded.idx"))


#: ``vr-codebook``'s files at codebook levels (``tests/golden/make_codebook_levels.py``):
#: stem -> the options that wrote it.
CODEBOOK_FILES = {
    "level-2.v3.per-digit": ["--level", "2"],
    "level-2.v3.stream": ["--level", "2", "--stream"],
    "target.v3.per-digit": ["--target-psnr", "16"],
}


@pytest.mark.parametrize("stem", CODEBOOK_FILES)
def test_codebook_level_files_decode_and_reencode(stem, tmp_path):
    """Digits at codebook levels, alone and mixed with network levels, in both directions."""
    path = GOLDEN_DIR / f"vr-codebook.{stem}.mnc"
    out = tmp_path / "decoded.idx"
    assert (
        main(["decompress", "vr-codebook", str(path), "-o", str(out), "--precision", "fp32"]) == 0
    )
    np.testing.assert_array_equal(
        read_idx(out), read_idx(GOLDEN_DIR / f"vr-codebook.{stem}.digits.idx")
    )
    coded = tmp_path / "coded.mnc"
    argv = ["compress", "vr-codebook", "--split", "test", "--index", "0:24", "-o", str(coded)]
    assert main([*argv, "--precision", "fp32", *CODEBOOK_FILES[stem]]) == 0
    assert coded.read_bytes() == path.read_bytes()
