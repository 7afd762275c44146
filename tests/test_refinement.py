"""Encoder-side latent refinement: never a worse Lagrangian, files the unchanged decoder reads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mnistcodec.cli import main
from mnistcodec.coding.api import Codec
from mnistcodec.coding.container import parse_header
from mnistcodec.coding.zoo import resolve_model
from mnistcodec.errors import InputError
from mnistcodec.model.transforms import images_to_unit

DIGITS = 24
STEPS = 20


@pytest.fixture(scope="module")
def shipped():
    return resolve_model("vr-mixture-long")


def lagrangians(codec: Codec, images: np.ndarray, k: np.ndarray, level: int) -> np.ndarray:
    """Each digit's exact ``I(k) + lambda D`` at ``level``."""
    levels = codec.digit_levels(level, images.shape[0])
    problem = codec.refinement_problem(levels)
    x = images_to_unit(torch.from_numpy(images))
    z = torch.from_numpy(k.astype(np.float32)) + problem.offset
    with torch.no_grad():
        return problem.lagrangian(x, z).numpy()


@pytest.mark.parametrize("level", [1, 9])
def test_refinement_never_worsens_a_digit(shipped, test_digits, level):
    images = test_digits[:DIGITS]
    plain = Codec(shipped, precision="fp32")
    refined = Codec(shipped, precision="fp32", refine_steps=STEPS)
    k0, bits0 = plain.analyse(images, level)
    k1, bits1 = refined.analyse(images, level)
    before, after = lagrangians(plain, images, k0, level), lagrangians(plain, images, k1, level)
    assert np.all(after <= before + 1e-4)
    assert after.mean() < before.mean()  # it finds better latents, not only the same ones
    assert np.any(k1 != k0)
    # The reported information is the one of the refined latents.
    problem = plain.refinement_problem(plain.digit_levels(level, DIGITS))
    expected = problem.to_bits(torch.from_numpy(k1.astype(np.float32)) + problem.offset)
    assert np.allclose(bits1, expected.detach().numpy(), atol=1e-3)


def test_refined_files_decode_with_the_unchanged_decoder(shipped, test_digits, tmp_path):
    images = test_digits[:DIGITS]
    refined = Codec(shipped, precision="fp32", refine_steps=STEPS)
    strings, _ = refined.compress(images, 2)
    plain = Codec(shipped, precision="fp32")
    k_refined, _ = refined.analyse(images, 2)
    decoded = plain.decompress(strings, levels=2)
    assert np.array_equal(decoded, plain.synthesise(k_refined, 2))
    assert not np.array_equal(decoded, plain.reconstruct(images, 2))


def test_refinement_of_a_fixed_rate_model(tiny_model, test_digits):
    images = test_digits[:DIGITS]
    plain = Codec(tiny_model, precision="fp32")
    refined = Codec(tiny_model, precision="fp32", refine_steps=100)
    k0, _ = plain.analyse(images)
    k1, _ = refined.analyse(images)
    before, after = lagrangians(plain, images, k0, 0), lagrangians(plain, images, k1, 0)
    assert np.all(after <= before + 1e-4) and after.mean() < before.mean()
    strings, _ = refined.compress(images)
    assert np.array_equal(plain.decompress(strings), plain.synthesise(k1))


@pytest.mark.parametrize("steps", [-1, 10**6, 2.5])
def test_refinement_steps_are_checked(shipped, steps):
    with pytest.raises(InputError, match="refinement steps"):
        Codec(shipped, refine_steps=steps)


def test_compress_refine_through_the_cli(tmp_path, capsys):
    out = tmp_path / "refined.mnc"
    assert (
        main(["compress", "--split", "test", "--index", "0:8", "--refine", "10", "-o", str(out)])
        == 0
    )
    assert "compressed 8 digits" in capsys.readouterr().out
    assert parse_header(out.read_bytes()).count == 8
    assert main(["decompress", str(out), "-o", str(tmp_path / "digits.png")]) == 0
    bad = ["compress", "--split", "test", "--refine", "-3", "-o", str(tmp_path / "x.mnc")]
    assert main(bad) == 2 and "non-negative integer" in capsys.readouterr().err
