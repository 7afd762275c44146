"""Named configurations: the improved preset trains, codes round trip and differs from the seed only in the prior's rate."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mnistcodec.coding.api import Codec
from mnistcodec.coding.model_files import load_model
from mnistcodec.errors import InputError
from mnistcodec.model.compression_model import CompressionModel, ModelConfig
from mnistcodec.training.loop import make_optimizer
from mnistcodec.training.presets import PRESETS, get_preset


def test_improved_preset_keeps_the_seed_network_and_speeds_up_the_prior_only():
    seed, improved = get_preset("seed"), get_preset("improved")
    assert (improved.arch, improved.prior) == (seed.arch, seed.prior) == ("seed", "logistic")
    assert seed.prior_lr is None and improved.prior_lr == pytest.approx(1e-2)
    model = CompressionModel(ModelConfig(arch=improved.arch, prior=improved.prior))
    transform_group, prior_group = make_optimizer(model, 1e-3, improved.prior_lr).param_groups
    assert transform_group["lr"] == pytest.approx(1e-3) and prior_group["lr"] == pytest.approx(1e-2)
    prior_ids = {id(p) for p in model.prior.parameters()}
    assert {id(p) for p in prior_group["params"]} == prior_ids


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(InputError, match="unknown preset"):
        get_preset("nope")
    assert set(PRESETS) == {"seed", "improved", "vr", "vr-balanced", "vr-mixture"}


def test_improved_preset_trains_from_the_command_line_and_codes_round_trip(tmp_path, test_digits):
    out = tmp_path / "improved.safetensors"
    options = "--preset improved --epochs 1 --limit 256 --val-limit 64 --latent-dims 16 --quiet"
    proc = subprocess.run(
        [sys.executable, "-m", "mnistcodec", "train", *options.split(), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    loaded = load_model(out)
    assert loaded.metadata["training"]["prior_lr"] == pytest.approx(1e-2)
    assert loaded.config.arch == "seed" and loaded.config.prior == "logistic"
    codec = Codec(loaded)
    digits = test_digits[:24]
    strings, _ = codec.compress(digits)
    assert np.array_equal(codec.decompress(strings), codec.reconstruct(digits))
