"""Training that starts from a trained model's weights (``train --init-from``)."""

from __future__ import annotations

import pytest
import torch

from mnistcodec.cli import main
from mnistcodec.coding.model_files import load_model
from mnistcodec.errors import InputError
from mnistcodec.model.compression_model import ModelConfig
from mnistcodec.model.variable_rate import make_model
from mnistcodec.training.loop import start_from


def test_start_from_loads_every_weight():
    model = make_model(ModelConfig(arch="vr", mixture_components=16, conditioned_decoder=True))
    target = make_model(
        ModelConfig(
            arch="vr",
            mixture_components=16,
            conditioned_decoder=True,
            distortion="mse",
            lambda_min=180.0,
            lambda_max=16000.0,
        )
    )
    start_from(target, "vr-mixture-long")
    source = load_model(_shipped_path()).model.state_dict()
    for name, tensor in target.state_dict().items():
        assert torch.equal(tensor, source[name].to(torch.float32)), name
    assert model.state_dict().keys() == target.state_dict().keys()


def _shipped_path():
    from mnistcodec.coding.zoo import resolve_model

    return resolve_model("vr-mixture-long").path


@pytest.mark.parametrize(
    "config, field",
    [
        (ModelConfig(arch="vr", mixture_components=16), "conditioned_decoder"),
        (ModelConfig(arch="vr", mixture_components=8, conditioned_decoder=True), "mixture"),
        (ModelConfig(), "arch"),
    ],
)
def test_a_different_architecture_is_refused(config, field):
    with pytest.raises(InputError, match=f"cannot start from vr-mixture-long: its {field}"):
        start_from(make_model(config), "vr-mixture-long")


def test_fine_tuning_through_the_cli(tmp_path, capsys):
    out = tmp_path / "tuned.safetensors"
    args = ["train", "--preset", "vr-mixture", "--distortion", "mse", "--lambda-range", "180:16000"]
    args += ["--init-from", "vr-mixture-long", "--epochs", "1", "--limit", "256"]
    args += ["--val-limit", "64", "--lr", "1e-5", "--prior-lr", "1e-5", "-q", "--out", str(out)]
    assert main(args) == 0
    loaded = load_model(out)
    assert loaded.metadata["training"]["init_from"] == "vr-mixture-long"
    assert loaded.config.distortion == "mse" and loaded.config.lambda_max == 16000.0
    # One epoch at a tiny learning rate stays next to the weights it started from.
    source = load_model(_shipped_path()).model.state_dict()
    weight = "synthesis_transform.fc_1.weight"
    tuned = loaded.model.state_dict()
    assert torch.allclose(tuned[weight], source[weight].float(), atol=1e-2)
    bad = tmp_path / "bad.safetensors"
    assert main(["train", "--init-from", "vr-mixture-long", "--out", str(bad), "-q"]) != 0
    assert "cannot start from vr-mixture-long" in capsys.readouterr().err and not bad.exists()
