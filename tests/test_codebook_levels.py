"""Codebook levels (model format version 2): building, loading, coding and refusing them."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from mnistcodec.cli import main
from mnistcodec.coding import codebook_levels as cbl
from mnistcodec.coding.api import Codec
from mnistcodec.coding.codebook_files import save_with_codebooks
from mnistcodec.coding.files import compress_file, decompress_file
from mnistcodec.coding.model_files import load_model, load_model_bytes
from mnistcodec.coding.rate_control import LevelChoice, RateTarget
from mnistcodec.coding.zoo import resolve_model
from mnistcodec.errors import FormatError, ModelFileError
from mnistcodec.experiments.codebooks import train_codebook
from mnistcodec.experiments.evaluate import evaluate
from mnistcodec.storage.model_container import decode_tensors, encode_container, read_record

SHIPPED = "vr-codebook"


@pytest.fixture(scope="module")
def codec():
    return Codec.from_model(SHIPPED, precision="fp32")


@pytest.fixture(scope="module")
def built(tmp_path_factory, _data_environment):
    """``mnistcodec codebooks`` on the shipped ``vr`` model: levels 0 and 1, 4 and 16 codewords."""
    out = tmp_path_factory.mktemp("codebooks") / "vr-cb.safetensors"
    argv = ["codebooks", "vr", "--sizes", "4,16", "--limit", "300", "--iterations", "3"]
    assert main([*argv, "-q", "-o", str(out)]) == 0
    return out


def test_the_shipped_model_has_codebook_levels_below_vr_mse_s_network(codec, test_digits):
    assert sorted(codec.loaded.codebooks) == [0, 1, 2, 3, 4]
    assert [codec.loaded.codebooks[lv].size for lv in range(5)] == [16, 64, 256, 1024, 4096]
    assert codec.loaded.metadata["format_version"] == 2
    plain = Codec.from_model("vr-mse", precision="fp32")
    digits = test_digits[:40]
    for level in (5, 10, 15):  # the network levels are vr-mse's, bit for bit
        strings, info = codec.compress(digits, level)
        plain_strings, plain_info = plain.compress(digits, level)
        assert strings == plain_strings
        np.testing.assert_array_equal(info, plain_info)


@pytest.mark.parametrize("level", range(16))
def test_every_level_round_trips(codec, test_digits, level):
    digits = test_digits[:30]
    strings, info = codec.compress(digits, level)
    decoded = codec.decompress(strings, levels=level)
    np.testing.assert_array_equal(decoded, codec.reconstruct(digits, level))
    if level in codec.loaded.codebooks:
        book = codec.loaded.codebooks[level]
        index = book.assign(digits)
        np.testing.assert_array_equal(decoded, book.codewords[index])
        np.testing.assert_allclose(info, 16 - np.log2(book.tables.counts[0, index]))


def test_a_codebook_digit_is_its_nearest_codeword_exactly(codec, test_digits):
    book, digits = codec.loaded.codebooks[3], test_digits[:60]
    diff = digits[:, None].astype(np.int64) - book.codewords[None].astype(np.int64)
    error = (diff**2).sum(axis=(2, 3))  # exact integers; argmin: the first on ties
    np.testing.assert_array_equal(book.assign(digits), error.argmin(axis=1))
    np.testing.assert_array_equal(codec.reconstruct(digits, 3), book.codewords[error.argmin(1)])
    tie = np.stack([book.codewords[5], book.codewords[5]])
    tied = cbl.Codebook(tie, book.tables)
    assert tied.assign(book.codewords[5:6]).tolist() == [0]


def test_blocks_mixing_codebook_and_network_levels_decode(codec, test_digits, tmp_path):
    digits = test_digits[:40]
    levels = np.arange(40) % 16
    strings, _ = codec.compress(digits, levels)
    np.testing.assert_array_equal(
        codec.decompress(strings, levels=levels), codec.reconstruct(digits, levels)
    )
    target = LevelChoice(target=RateTarget(psnr=16.0))
    result = compress_file(codec, digits, tmp_path / "t.mnc", choice=target)
    assert set(result.levels.tolist()) & {0, 1, 2, 3, 4}
    assert set(result.levels.tolist()) - {0, 1, 2, 3, 4}
    decoded = decompress_file(codec, tmp_path / "t.mnc")
    np.testing.assert_array_equal(decoded, codec.reconstruct(digits, result.levels))


def test_streams_at_a_codebook_level(codec, test_digits):
    stream, info = codec.compress_stream(test_digits[:50], level=3)
    assert len(stream) * 8 <= info.sum() + 64
    np.testing.assert_array_equal(
        codec.decompress_stream(stream, 50, level=3), codec.reconstruct(test_digits[:50], 3)
    )


def test_an_index_past_the_codewords_is_corrupt_data(codec, test_digits):
    coder = codec.coders[0]
    escape = np.zeros((1, codec.latent_dims))
    escape[0, 0] = codec.loaded.codebooks[0].size  # the escape column, then its overflow code
    string = coder.encode_strings(coder.to_symbols(escape))[0]
    with pytest.raises(FormatError, match="codewords"):
        codec.decompress([string], levels=0)


def test_sampling_at_a_codebook_level_gives_codewords(codec):
    samples = codec.sample(12, seed=3, nbytes=2, level=2)
    words = codec.loaded.codebooks[2].codewords.reshape(256, -1)
    for sample in samples:
        assert (words == sample.reshape(-1)).all(axis=1).any()


def test_evaluation_at_a_codebook_level(codec, test_digits):
    result = evaluate(codec.loaded, test_digits[:60], level=2, precision="fp32")
    assert result["rate_bound_bits"] == result["info_bits"]
    assert abs(result["string_bits"] - result["info_bits"]) < 2
    assert result["mad"] == pytest.approx(result["mad_decoded"])


def test_the_built_model(built, test_digits):
    loaded = load_model(built)
    source = resolve_model("vr")
    assert sorted(loaded.codebooks) == [0, 1]
    assert [loaded.codebooks[lv].size for lv in (0, 1)] == [4, 16]
    assert loaded.metadata["format_version"] == 2 and loaded.fingerprint != source.fingerprint
    assert "mnistcodec codebooks vr" in loaded.metadata["codebooks_command"]
    assert "evaluation" not in loaded.metadata
    codec = Codec(loaded, precision="fp32")
    for level in (0, 1, 2, 8):
        strings, _ = codec.compress(test_digits[:10], level)
        decoded = codec.decompress(strings, levels=level)
        np.testing.assert_array_equal(decoded, codec.reconstruct(test_digits[:10], level))


def test_codebooks_refuse_bad_input(built, tmp_path, capsys):
    assert main(["codebooks", "vr", "--sizes", "16,4", "-o", str(tmp_path / "a")]) != 0
    assert main(["codebooks", "vr", "--sizes", "x", "-o", str(tmp_path / "b")]) != 0
    assert main(["codebooks", str(built), "-o", str(tmp_path / "c")]) != 0  # has codebooks
    assert main(["codebooks", "seed-lmbda2000", "-o", str(tmp_path / "d")]) != 0  # fixed rate
    sizes = ",".join(str(4 + i) for i in range(16))
    assert main(["codebooks", "vr", "--sizes", sizes, "-o", str(tmp_path / "e")]) != 0
    assert main(["codebooks", "vr", "--sizes", "4", "--limit", "50", "-o", str(built)]) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "increasing" in err and "at most 15" in err
    assert "exists" in err or "overwrite" in err


def _rewritten(path, edit) -> bytes:
    """The model file with ``edit(tensors, record)`` applied and its content hash recomputed."""
    data = path.read_bytes()
    tensors, record = decode_tensors(data, "m"), read_record(data, "m")
    edit(tensors, record)
    return encode_container(tensors, record)


def _set(key, value):
    return lambda tensors, record: record.__setitem__(key, value)


@pytest.mark.parametrize(
    "edit, message",
    [
        (_set("format_version", 1), "needs model format version 2"),
        (_set("format_version", 3), "format version 3"),
        (_set("codebook_levels", []), "codebook_levels must list"),
        (_set("codebook_levels", [1, 0]), "codebook_levels must list"),
        (_set("codebook_levels", [0, 1, 99]), "codebook_levels must list"),
        (_set("codebook_levels", [0]), "does not match its configuration"),
        (
            lambda t, r: t.__setitem__(cbl.pixels_name(0), t[cbl.pixels_name(0)].to(torch.int32)),
            "expected uint8",
        ),
        (
            lambda t, r: t.__setitem__(cbl.pixels_name(1), t[cbl.pixels_name(1)][:8]),
            "one row of 8 counts",
        ),
        (
            lambda t, r: t.__setitem__(cbl.pixels_name(0), 255 - t[cbl.pixels_name(0)]),
            "fails its integrity check",
        ),
    ],
)
def test_the_loader_refuses_bad_codebook_files(built, edit, message):
    with pytest.raises(ModelFileError, match=message):
        load_model_bytes(_rewritten(built, edit))


def test_a_version_1_record_with_codebook_levels_is_refused():
    with pytest.raises(ModelFileError, match="needs model format version 2"):
        cbl.record_levels({"codebook_levels": [0]}, 16, 1, "m")


def test_codebooks_go_only_into_a_plain_variable_rate_file(built, tmp_path, train_digits_small):
    book = train_codebook(train_digits_small, 4, iterations=1)
    with pytest.raises(ModelFileError):
        save_with_codebooks(load_model(built), {0: book}, tmp_path / "x.safetensors")
    with pytest.raises(ModelFileError):
        save_with_codebooks(resolve_model("seed-lmbda2000"), {0: book}, tmp_path / "y.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


@pytest.fixture(scope="module")
def train_digits_small(_data_environment):
    from mnistcodec.data import load_split

    return load_split("train").images[:100].copy()


def test_the_fingerprint_head_names_the_codebook_levels(codec):
    data = codec.loaded.path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    assert header[cbl.pixels_name(4)]["dtype"] == "U8"
    assert header[cbl.pixels_name(4)]["shape"] == [4096, 28, 28]
    assert header["coding.level.4.counts"]["shape"] == [1, 4097]


def test_the_playground_view_of_a_codebook_level(codec, test_digits):
    from mnistcodec.playground.service import latent_view

    k, _ = codec.analyse(test_digits[:1], 2)
    view = latent_view(codec, k[0], 2)
    assert view["values"] == [] and view["codebook"]["codewords"] == 256
    assert view["codebook"]["index"] == int(codec.loaded.codebooks[2].assign(test_digits[:1])[0])


def test_without_int8_products_the_search_is_the_same(codec, test_digits, monkeypatch):
    book = codec.loaded.codebooks[3]
    expected = book.assign(test_digits[:80])

    def missing(*args):
        raise RuntimeError("no int8 matrix product here")

    monkeypatch.setattr(torch, "_int_mm", missing)
    np.testing.assert_array_equal(book.assign(test_digits[:80]), expected)
