"""A variable-rate model's levels span the lambda range of its configuration."""

from __future__ import annotations

import math

import pytest

from mnistcodec.cli import main
from mnistcodec.coding.api import Codec
from mnistcodec.coding.model_files import load_model
from mnistcodec.errors import InputError
from mnistcodec.model.compression_model import ModelConfig
from mnistcodec.model.variable_rate import (
    LEVEL_COUNT,
    LEVEL_LAMBDAS,
    VariableRateModel,
    level_lambdas,
)


def test_levels_are_log_uniform_over_the_range():
    lambdas = level_lambdas(100.0, 8000.0)
    assert len(lambdas) == LEVEL_COUNT
    assert lambdas[0] == pytest.approx(100) and lambdas[-1] == pytest.approx(8000)
    ratios = [b / a for a, b in zip(lambdas, lambdas[1:], strict=False)]
    assert all(math.isclose(r, 80 ** (1 / 15), rel_tol=1e-9) for r in ratios)
    model = VariableRateModel(ModelConfig(arch="vr", lambda_min=100.0, lambda_max=8000.0))
    assert model.lambdas == pytest.approx(lambdas)
    assert VariableRateModel(ModelConfig(arch="vr")).lambdas == pytest.approx(LEVEL_LAMBDAS)


def test_the_default_range_is_left_out_of_the_record():
    assert "lambda_min" not in ModelConfig(arch="vr").to_dict()
    record = ModelConfig(arch="vr", lambda_min=100.0).to_dict()
    assert record["lambda_min"] == 100.0 and record["lambda_max"] == 8000.0
    assert ModelConfig.from_dict(record) == ModelConfig(arch="vr", lambda_min=100.0)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"arch": "vr", "lambda_min": 0.0}, "lambda_min must be a positive number"),
        ({"arch": "vr", "lambda_max": float("inf")}, "lambda_max must be a positive number"),
        ({"arch": "vr", "lambda_min": 9000.0}, "must be below lambda_max"),
        ({"arch": "vr", "lambda_min": "100"}, "lambda_min must be a positive number"),
        ({"arch": "seed", "lambda_min": 100.0}, "needs the variable-rate architecture"),
    ],
)
def test_ranges_are_checked(fields, message):
    with pytest.raises(InputError, match=message):
        ModelConfig(**fields)


def test_a_trained_range_travels_in_the_model_file(tmp_path, test_digits):
    out = tmp_path / "range.safetensors"
    args = ["train", "--preset", "vr-mixture", "--distortion", "mse", "--lambda-range", "100:8000"]
    args += ["--epochs", "1", "--limit", "256", "--val-limit", "64", "-q", "--out", str(out)]
    assert main(args) == 0
    loaded = load_model(out)
    assert loaded.config.lambda_min == 100.0 and loaded.config.lambda_max == 8000.0
    assert loaded.metadata["levels"] == pytest.approx(list(level_lambdas(100.0, 8000.0)))
    codec = Codec(loaded)
    assert codec.level_for_lambda(100) == 0 and codec.level_for_lambda(8000) == LEVEL_COUNT - 1
    strings, _ = codec.compress(test_digits[:8], 3)
    assert (codec.decompress(strings, levels=3) == codec.reconstruct(test_digits[:8], 3)).all()


@pytest.mark.parametrize("text", ["100", "8000:100", "a:b", "0:10"])
def test_the_cli_refuses_a_bad_range(text, capsys):
    assert main(["train", "--arch", "vr", "--lambda-range", text, "--out", "x.safetensors"]) == 2
    assert "--lambda-range" in capsys.readouterr().err


def test_a_range_on_a_fixed_rate_model_is_an_error(tmp_path, capsys):
    out = tmp_path / "seed.safetensors"
    assert main(["train", "--lambda-range", "100:8000", "--out", str(out), "-q"]) != 0
    assert "variable-rate" in capsys.readouterr().err and not out.exists()
    with pytest.raises(InputError):
        ModelConfig(lambda_max=10.0)


def test_the_shipped_squared_error_model_round_trips_at_every_level(test_digits):
    codec = Codec.from_model("vr-mse")
    assert codec.loaded.config.distortion == "mse"
    assert codec.lambdas == pytest.approx(level_lambdas(215.0, 16000.0))
    digits = test_digits[:12]
    for level in range(codec.levels):
        strings, _ = codec.compress(digits, level)
        assert (codec.decompress(strings, levels=level) == codec.reconstruct(digits, level)).all()
        stream, _ = codec.compress_stream(digits, level)
        decoded = codec.decompress_stream(stream, len(digits), level=level)
        assert (decoded == codec.reconstruct(digits, level)).all()
