"""Priors, bottleneck, model, model files, training and evaluation."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from mnistcodec.coding.model_files import load_model, save_model
from mnistcodec.data import load_split
from mnistcodec.errors import InputError, ModelFileError, TrainingError
from mnistcodec.model.compression_model import CompressionModel, ModelConfig
from mnistcodec.model.entropy_bottleneck import EntropyBottleneck
from mnistcodec.model.priors import NoisyLogistic, make_prior
from mnistcodec.training.loop import TrainConfig, train, validate


@pytest.mark.parametrize("family", ["logistic", "normal", "laplace"])
def test_noisy_density_integrates_to_one(family):
    prior = make_prior(family, 4).double()
    with torch.no_grad():
        prior.log_scale.copy_(torch.tensor([-3.0, -0.5, 0.0, 1.5]))
    t = torch.linspace(-60, 60, 240001, dtype=torch.float64)[:, None].expand(-1, 4)
    p = prior.prob(t)
    integral = torch.trapezoid(p, t[:, 0], dim=0)
    assert torch.allclose(integral, torch.ones(4, dtype=torch.float64), atol=1e-6)


def test_noisy_logistic_tends_to_uniform_as_scale_shrinks():
    prior = NoisyLogistic(1).double()
    with torch.no_grad():
        prior.log_scale.fill_(math.log(1e-4))
    inside = torch.tensor([[-0.45], [-0.2], [0.0], [0.3], [0.45]], dtype=torch.float64)
    outside = torch.tensor([[-0.55], [0.6], [2.0]], dtype=torch.float64)
    assert torch.allclose(prior.prob(inside), torch.ones_like(inside), atol=1e-6)
    assert prior.prob(outside).max() < 1e-6


def test_log_prob_is_stable_in_the_tails():
    prior = NoisyLogistic(1)
    lp = prior.log_prob(torch.tensor([[-80.0], [80.0]]))
    assert torch.isfinite(lp).all()
    assert torch.allclose(lp[0], lp[1])


def test_rate_bound_and_information_agree_in_expectation():
    torch.manual_seed(0)
    bottleneck = EntropyBottleneck(make_prior("logistic", 8))
    with torch.no_grad():
        bottleneck.prior.log_scale.copy_(torch.linspace(-1, 2, 8))
    # Latents uniform over many bins: E_u[-log p~(y+u)] == E[-log P(round(y))].
    y = (torch.rand(200000, 8) - 0.5) * 6
    _, bound = bottleneck(y, training=True, generator=torch.Generator().manual_seed(1))
    _, info = bottleneck(y, training=False)
    assert abs(bound.mean().item() - info.mean().item()) < 0.05 * info.mean().item()


def test_seed_architecture_shapes_and_parameter_count():
    model = CompressionModel(ModelConfig())
    out = model(torch.rand(3, 1, 28, 28), training=True)
    assert out.y.shape == (3, 50) and out.x_hat.shape == (3, 1, 28, 28)
    assert sum(p.numel() for p in model.analysis_transform.parameters()) == 1_276_120
    assert sum(p.numel() for p in model.synthesis_transform.parameters()) == 1_278_471
    assert all(
        float(layer.bias.detach().abs().max()) == 0
        for layer in model.analysis_transform.modules()
        if hasattr(layer, "bias") and layer.bias is not None
    )


def test_training_lowers_the_loss(tmp_path):
    result = train(
        ModelConfig(latent_dims=16),
        TrainConfig(epochs=2, limit=512, val_limit=256),
        tmp_path / "m.safetensors",
        progress=False,
        log=lambda _: None,
    )
    first, second = result.history
    assert second.loss < first.loss
    assert (tmp_path / "m.safetensors.history.json").exists()
    assert (tmp_path / "m.safetensors.history.csv").read_text().startswith("epoch,")


def test_save_load_reproduces_outputs(tmp_path, tiny_model, test_digits):
    path = save_model(tiny_model.model, tmp_path / "copy.safetensors").path
    loaded = load_model(path)
    assert loaded.fingerprint == tiny_model.fingerprint
    x = torch.from_numpy(test_digits[:16]).float().div(255).view(-1, 1, 28, 28)
    with torch.no_grad():
        a = tiny_model.model(x, training=False)
        b = loaded.model(x, training=False)
    assert torch.equal(a.x_hat, b.x_hat) and torch.equal(a.rate_bits, b.rate_bits)


def test_tampered_model_file_is_refused(tmp_path, tiny_model_path):
    path = tmp_path / "tampered.safetensors"
    data = bytearray(tiny_model_path.read_bytes())
    data[-10] ^= 0x01  # a synthesis/coding byte near the end of the tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="integrity|corrupt|non-finite"):
        load_model(path)


def test_foreign_and_truncated_model_files_are_refused(tmp_path, tiny_model_path):
    foreign = tmp_path / "foreign.safetensors"
    foreign.write_bytes(b"hello world, not a model")
    with pytest.raises(ModelFileError):
        load_model(foreign)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(tiny_model_path.read_bytes()[:5000])
    with pytest.raises(ModelFileError):
        load_model(truncated)


def test_same_seed_same_numbers(tmp_path):
    runs = [
        train(
            ModelConfig(latent_dims=8),
            TrainConfig(epochs=1, limit=256, val_limit=128, seed=3),
            tmp_path / f"run{i}.safetensors",
            progress=False,
            log=lambda _: None,
        )
        for i in range(2)
    ]
    assert runs[0].history[0].loss == runs[1].history[0].loss
    assert runs[0].model.fingerprint == runs[1].model.fingerprint


def test_resume_continues_from_the_checkpoint(tmp_path):
    config, out = ModelConfig(latent_dims=8), tmp_path / "r.safetensors"
    full = train(
        config,
        TrainConfig(epochs=2, limit=256, val_limit=128),
        tmp_path / "full.safetensors",
        progress=False,
        log=lambda _: None,
    )
    train(
        config,
        TrainConfig(epochs=1, limit=256, val_limit=128),
        out,
        progress=False,
        log=lambda _: None,
    )
    resumed = train(
        config,
        TrainConfig(epochs=2, limit=256, val_limit=128),
        out,
        resume=True,
        progress=False,
        log=lambda _: None,
    )
    assert [r.loss for r in resumed.history] == [r.loss for r in full.history]
    assert resumed.model.fingerprint == full.model.fingerprint


def test_learning_rates_decay_in_the_last_epochs_of_a_run_and_of_a_resumed_run(
    tmp_path, monkeypatch
):
    import mnistcodec.training.loop as loop

    decayed = dict(lr=1e-3, prior_lr=1e-2, lr_decay_epochs=1, lr_decay_factor=0.5)
    config = TrainConfig(epochs=3, limit=128, val_limit=64, **decayed)
    assert [config.learning_rates(e) for e in (1, 2, 3)] == [(1e-3, 1e-2)] * 2 + [(5e-4, 5e-3)]
    seen = []
    real = loop.train_epoch

    def spy(model, optimizer, *args):
        seen.append([group["lr"] for group in optimizer.param_groups])
        return real(model, optimizer, *args)

    monkeypatch.setattr(loop, "train_epoch", spy)
    quiet = dict(progress=False, log=lambda _: None)
    train(ModelConfig(latent_dims=8), config, tmp_path / "d.safetensors", **quiet)
    assert seen == [[1e-3, 1e-2], [1e-3, 1e-2], [5e-4, 5e-3]]
    # A run made without decay, resumed for one more epoch with it.
    seen.clear()
    out = tmp_path / "r.safetensors"
    plain = TrainConfig(epochs=2, limit=128, val_limit=64, lr=1e-3, prior_lr=1e-2)
    train(ModelConfig(latent_dims=8), plain, out, **quiet)
    train(ModelConfig(latent_dims=8), config, out, resume=True, **quiet)
    assert seen == [[1e-3, 1e-2], [1e-3, 1e-2], [5e-4, 5e-3]]
    with pytest.raises(InputError, match="lr-decay-epochs"):
        TrainConfig(epochs=2, lr_decay_epochs=3)
    with pytest.raises(InputError, match="lr-decay-factor"):
        TrainConfig(epochs=2, lr_decay_factor=1.5)


def test_resume_keeps_the_threading_mode_the_run_started_with(tmp_path, monkeypatch):
    """``auto``, the load-adaptive option: a resumed run keeps what the load gave at its start."""
    config, out = ModelConfig(latent_dims=8), tmp_path / "r.safetensors"
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(os, "getloadavg", lambda: (1000.0, 0.0, 0.0))  # a busy machine: shards
        train(
            config,
            TrainConfig(epochs=1, limit=256, val_limit=64, threading="auto"),
            out,
            progress=False,
            log=lambda _: None,
        )
        # Idle now: auto would pick intra-op.
        monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
        train(
            config,
            TrainConfig(epochs=2, limit=256, val_limit=64, threading="auto"),
            out,
            resume=True,
            progress=False,
            log=lambda _: None,
        )
    finally:
        torch.set_num_threads(previous)
    assert load_model(out).metadata["training"]["threading_used"] == "shards"


def test_last_validation_is_that_of_the_saved_model(tmp_path):
    """Validation after each epoch sees the weights the optimizer just wrote (no stale state)."""
    out = tmp_path / "v.safetensors"
    result = train(
        ModelConfig(latent_dims=8),
        TrainConfig(epochs=2, limit=256, val_limit=300),
        out,
        progress=False,
        log=lambda _: None,
    )
    val = torch.from_numpy(load_split("test").images[:300])
    rate, distortion, _ = validate(load_model(out).model, val)
    last = result.history[-1]
    assert last.val_rate == pytest.approx(rate, rel=1e-5)
    assert last.val_distortion == pytest.approx(distortion, rel=1e-5)


def test_resume_with_other_options_is_refused(tmp_path):
    out = tmp_path / "r.safetensors"
    train(
        ModelConfig(latent_dims=8),
        TrainConfig(epochs=1, limit=128, val_limit=64),
        out,
        progress=False,
        log=lambda _: None,
    )
    with pytest.raises(TrainingError, match="different model"):
        train(
            ModelConfig(latent_dims=9),
            TrainConfig(epochs=2, limit=128, val_limit=64),
            out,
            resume=True,
            progress=False,
            log=lambda _: None,
        )


def run_cli(*args, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "mnistcodec", *args], capture_output=True, text=True, timeout=300
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_cli_summary():
    out = run_cli("summary").stdout
    assert "analysis_transform.conv_1" in out and "Total params: 2,554,641" in out


def test_cli_train_and_evaluate_json(tmp_path):
    model = tmp_path / "cli.safetensors"
    options = "--limit 256 --val-limit 128 --epochs 1 --latent-dims 8 --quiet".split()
    proc = run_cli("train", *options, "--out", str(model))
    assert "epoch 1/1" in proc.stdout and model.exists()
    decayed = tmp_path / "decayed.safetensors"
    run_cli(
        "train",
        *options,
        "--lr-decay-epochs",
        "1",
        "--lr-decay-factor",
        "0.5",
        "--out",
        str(decayed),
    )
    training = load_model(decayed).metadata["training"]
    assert (training["lr_decay_epochs"], training["lr_decay_factor"]) == (1, 0.5)
    again = run_cli(
        "train", "--limit", "256", "--epochs", "1", "--out", str(model), "--quiet", check=False
    )
    assert again.returncode == 2 and "already exists" in again.stderr
    result = json.loads(run_cli("evaluate", str(model), "--json", "--limit", "200").stdout)
    for key in (
        "rate_bound_bits",
        "info_bits",
        "psnr_db",
        "psnr_of_mean_mse_db",
        "mad",
        "n",
        "string_bits",
        "byte_string_bits",
        "stream_bits_per_digit",
    ):
        assert key in result
    assert result["n"] == 200 and result["string_bits"] >= result["info_bits"] - 1
    # Bit strings are never longer than the byte strings of the same digits.
    assert result["string_bits"] <= result["byte_string_bits"] <= result["string_bits"] + 8


def test_cli_bad_model_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\0" * 100)
    proc = run_cli("evaluate", str(bad), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("mnistcodec: error:")


def test_non_finite_training_is_refused_before_it_starts(tmp_path):
    """A learning rate or lambda that can only end in inf/NaN never starts a run."""
    with pytest.raises(InputError, match="at most"):
        TrainConfig(epochs=1, limit=256, val_limit=64, lr=1e30)
    with pytest.raises(InputError, match="lambda must be finite"):
        train(
            ModelConfig(latent_dims=8, lmbda=float("inf")),
            TrainConfig(epochs=1, limit=256, val_limit=64),
            tmp_path / "nan.safetensors",
            progress=False,
            log=lambda _: None,
        )
    assert list(tmp_path.iterdir()) == []


def test_model_file_shape_mismatch_is_refused(tmp_path, tiny_model_path):
    data = tiny_model_path.read_bytes()
    tensors = st_load(data)
    header_len = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8 : 8 + header_len])["__metadata__"]
    tensors["model.synthesis_transform.fc_1.bias"] = torch.zeros(3)
    bad = tmp_path / "shape.safetensors"
    bad.write_bytes(st_save(tensors, metadata=meta))
    with pytest.raises(ModelFileError):
        load_model(bad)


def test_copying_a_model_keeps_it_valid(tmp_path, tiny_model_path):
    shutil.copy(tiny_model_path, tmp_path / "c.safetensors")
    assert load_model(tmp_path / "c.safetensors").fingerprint
    assert np.isfinite(load_model(tmp_path / "c.safetensors").tables.offsets).all()
