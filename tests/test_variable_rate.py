"""The variable-rate model: levels, per-level tables, .mnc version 2, rate control."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
import torch

from mnistcodec.cli import main
from mnistcodec.coding.api import Codec
from mnistcodec.coding.container import HEADER_SIZE, VERSION
from mnistcodec.coding.files import compress_to_bytes, decompress_bytes
from mnistcodec.coding.inspection import inspect_bytes
from mnistcodec.coding.model_files import load_model, save_model
from mnistcodec.coding.rate_control import LevelChoice, RateTarget, all_levels, choose_levels
from mnistcodec.errors import FormatError, InputError
from mnistcodec.model.compression_model import ModelConfig
from mnistcodec.model.variable_rate import (
    LEVEL_COUNT,
    LEVEL_LAMBDAS,
    VariableRateModel,
    nearest_level,
)
from mnistcodec.training.loop import TrainConfig, train

DIGITS = 24


@pytest.fixture(scope="module")
def vr_path(tmp_path_factory, _data_environment):
    """A vr model trained for one epoch on 384 digits through the training loop."""
    out = tmp_path_factory.mktemp("vr") / "vr.safetensors"
    train(
        ModelConfig(arch="vr"),
        TrainConfig(epochs=1, limit=384, val_limit=128, prior_lr=1e-2),
        out,
        progress=False,
        log=lambda _line: None,
    )
    return out


@pytest.fixture(scope="module")
def vr_codec(vr_path):
    return Codec(load_model(vr_path))


@pytest.fixture(scope="module")
def digits(test_digits):
    return test_digits[:DIGITS]


@pytest.fixture(scope="module")
def every_level(vr_codec, digits):
    """Strings, information and PSNR of every digit at every level."""
    return all_levels(vr_codec, digits)


def test_levels_span_the_lambdas():
    assert LEVEL_COUNT >= 16 and len(LEVEL_LAMBDAS) == LEVEL_COUNT
    assert LEVEL_LAMBDAS[0] == pytest.approx(150) and LEVEL_LAMBDAS[-1] == pytest.approx(8000)
    assert nearest_level(150) == 0 and nearest_level(1e6) == LEVEL_COUNT - 1
    assert LEVEL_LAMBDAS[nearest_level(2000)] == pytest.approx(2125.3, abs=0.1)
    with pytest.raises(InputError):
        nearest_level(-1)


def test_training_writes_tables_for_every_level(vr_path, vr_codec):
    loaded = vr_codec.loaded
    assert loaded.variable_rate and loaded.levels == LEVEL_COUNT == vr_codec.levels
    assert loaded.metadata["levels"] == pytest.approx(list(LEVEL_LAMBDAS))
    assert len({t.counts.tobytes() for t in loaded.level_tables}) == LEVEL_COUNT
    assert loaded.tables is loaded.level_tables[loaded.model.reference_level]
    assert load_model(vr_path).fingerprint == loaded.fingerprint


def test_fingerprint_covers_the_gains(tmp_path):
    torch.manual_seed(0)
    model = VariableRateModel(ModelConfig(arch="vr"))
    first = save_model(model, tmp_path / "a.safetensors").fingerprint
    with torch.no_grad():
        model.entropy_bottleneck.log_gains[3, 0] += 0.5
    assert save_model(model, tmp_path / "b.safetensors").fingerprint != first


def test_round_trip_at_every_level(vr_codec, digits):
    mean_bits = []
    for level in range(vr_codec.levels):
        strings, info = vr_codec.compress(digits, level)
        decoded = vr_codec.decompress(strings, levels=level)
        assert np.array_equal(decoded, vr_codec.reconstruct(digits, level))
        if level in (0, 7, vr_codec.levels - 1):
            stream, _ = vr_codec.compress_stream(digits, level)
            assert np.array_equal(vr_codec.decompress_stream(stream, DIGITS, level=level), decoded)
        mean_bits.append(info.mean())
    assert mean_bits[-1] > mean_bits[0]


def test_file_stores_the_level_and_decodes(vr_codec, digits):
    for mode in ("per-digit", "stream"):
        result = compress_to_bytes(
            vr_codec, digits, mode=mode, block_size=20, choice=LevelChoice(level=7)
        )
        info = inspect_bytes(result.data)
        assert info["format_version"] == VERSION
        levels = info["levels"] if mode == "per-digit" else info["block_levels"]
        assert levels == [7] * (DIGITS if mode == "per-digit" else -(-DIGITS // 20))
        assert info["levels_used"] == [7]
        assert np.array_equal(
            decompress_bytes(vr_codec, result.data), vr_codec.reconstruct(digits, 7)
        )


def test_fixed_rate_models_write_version_3_at_level_0(tiny_model, digits):
    codec = Codec(tiny_model)
    result = compress_to_bytes(codec, digits)
    info = inspect_bytes(result.data)
    assert result.data[8] == VERSION == 3 and info["levels"] == [0] * DIGITS
    assert np.array_equal(decompress_bytes(codec, result.data), codec.reconstruct(digits))


def _with_crcs(data: bytearray) -> bytes:
    fields = HEADER_SIZE - 4
    data[fields:HEADER_SIZE] = struct.pack(">I", zlib.crc32(bytes(data[:fields])))
    data[-4:] = struct.pack(">I", zlib.crc32(bytes(data[:-4])))
    return bytes(data)


def test_a_level_the_model_lacks_is_a_clean_error(vr_codec, digits, tmp_path, capsys):
    data = bytearray(compress_to_bytes(vr_codec, digits[:4], choice=LevelChoice(level=2)).data)
    assert data[HEADER_SIZE : HEADER_SIZE + 2] == bytes([0, 2])
    data[HEADER_SIZE + 1] = LEVEL_COUNT
    with pytest.raises(FormatError, match=f"level {LEVEL_COUNT}.*levels 0 to {LEVEL_COUNT - 1}"):
        decompress_bytes(vr_codec, _with_crcs(data))
    path = tmp_path / "bad.mnc"
    path.write_bytes(_with_crcs(data))
    model = str(vr_codec.loaded.path)
    assert main(["decompress", model, str(path), "-o", str(tmp_path / "x.png")]) == 2
    assert f"level {LEVEL_COUNT}" in capsys.readouterr().err
    with pytest.raises(InputError, match="does not exist"):
        vr_codec.compress(digits[:2], LEVEL_COUNT)


def test_rate_control_never_exceeds_the_bits(vr_codec, digits, every_level):
    strings, psnr = every_level.strings, every_level.psnr_db
    bits = np.array([[8 * len(s) for s in row] for row in strings])
    target = float(np.median(bits))
    choice = choose_levels(vr_codec, digits, RateTarget(bits=target))
    chosen_bits = np.array([8 * len(s) for s in choice.strings])
    assert (chosen_bits <= target).all()
    best = np.where(bits <= target, psnr, -np.inf).max(axis=0)
    assert np.allclose(choice.psnr_db, best)
    with pytest.raises(InputError, match="even at level 0"):
        choose_levels(vr_codec, digits, RateTarget(bits=1))


def test_rate_control_meets_the_psnr_when_a_level_can(vr_codec, digits, every_level):
    strings, psnr = every_level.strings, every_level.psnr_db
    target = float(np.median(psnr))
    choice = choose_levels(vr_codec, digits, RateTarget(psnr=target))
    reachable = psnr.max(axis=0) >= target
    assert (choice.psnr_db[reachable] >= target).all()
    assert choice.missed == int((~reachable).sum())
    bits = np.array([[8 * len(s) for s in row] for row in strings])
    fewest = np.where(psnr >= target, bits, np.inf).min(axis=0)
    chosen = np.array([8 * len(s) for s in choice.strings])
    assert np.array_equal(chosen[reachable], fewest[reachable])
    result = compress_to_bytes(vr_codec, digits, choice=LevelChoice(target=RateTarget(psnr=target)))
    assert np.array_equal(result.levels, choice.levels)
    assert np.array_equal(
        decompress_bytes(vr_codec, result.data), vr_codec.reconstruct(digits, choice.levels)
    )


def test_cli_levels_targets_and_evaluation(vr_path, tmp_path, capsys):
    model = str(vr_path)
    out = tmp_path / "d.mnc"
    args = ["compress", model, "--split", "test", "--index", "0:4", "-o", str(out), "--force"]
    assert main([*args, "--lmbda", "300"]) == 0
    assert f"level                      {nearest_level(300)} of 0-15" in capsys.readouterr().out
    assert main(["inspect", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["levels_used"] == [nearest_level(300)]
    assert main([*args, "--target-bits", "200"]) == 0
    assert "levels (level: digits)" in capsys.readouterr().out
    for bad in (
        ["--level", "16"],
        ["--level", "2", "--target-psnr", "20"],
        ["--target-bits", "9", "--stream"],
    ):
        assert main([*args, *bad]) == 2
        assert "error" in capsys.readouterr().err
    assert main(["evaluate", model, "--limit", "16", "--all-levels", "--json", "--no-coding"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["level"] for row in rows] == list(range(LEVEL_COUNT))
    assert main(["evaluate", model, "--limit", "16", "--lmbda", "4000", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["level"] == nearest_level(4000) and row["string_bits"] > 0


def test_a_low_level_stream_passes_the_stream_length_bound(test_digits):
    # The bound that refuses streams too short for their digits uses the block's own level.
    codec = Codec.from_model("vr")
    result = compress_to_bytes(codec, test_digits, mode="stream", choice=LevelChoice(level=0))
    assert (
        8 * len(result.data) / len(test_digits)
        < 0.5 * codec.loaded.tables.symbol_bits().min(axis=1).sum()
    )
    assert np.array_equal(decompress_bytes(codec, result.data), codec.reconstruct(test_digits, 0))


def test_level_weights_rebalance_the_lagrangian():
    torch.manual_seed(3)
    model = VariableRateModel(ModelConfig(arch="vr"))
    x = torch.rand(32, 1, 28, 28)
    g = torch.Generator().manual_seed(0)
    out = model(x, training=True, generator=g)
    lagrangian = out.rate_bits + out.lmbda * out.digit_distortion
    assert torch.allclose(model.loss(out), lagrangian.mean())
    model.level_weight = 1.0
    weighted = (2000.0 / out.lmbda) * lagrangian
    assert torch.allclose(model.loss(out), weighted.mean())
    # Level 0 (lambda 150) now counts 2000/150 times its Lagrangian, level 15 a quarter.
    assert out.lmbda.min() == LEVEL_LAMBDAS[0] and out.lmbda.max() == LEVEL_LAMBDAS[-1]


def test_level_weight_is_checked_and_recorded(tmp_path):
    from mnistcodec.experiments.sweep import TrialSpec

    with pytest.raises(InputError, match="level-weight"):
        TrainConfig(level_weight=-1)
    tiny = {"epochs": 1, "limit": 128, "val_limit": 64}
    with pytest.raises(InputError, match="variable-rate"):
        train(ModelConfig(), TrainConfig(**tiny, level_weight=1), tmp_path / "s", progress=False)
    out = tmp_path / "vr.safetensors"
    train(ModelConfig(arch="vr"), TrainConfig(**tiny, level_weight=1), out, progress=False)
    assert load_model(out).metadata["training"]["level_weight"] == 1
    # Sweep keys of unweighted trials are those they had before the option existed.
    assert "level_weight" not in TrialSpec(ModelConfig(), TrainConfig()).config()["train"]
    spec = TrialSpec(ModelConfig(arch="vr"), TrainConfig(level_weight=0.5))
    assert spec.config()["train"]["level_weight"] == 0.5
