"""Prior families: valid densities, the deep factorized median, training and coding round trips."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from mnistcodec.cli import build_parser
from mnistcodec.coding.api import Codec
from mnistcodec.coding.tables import build_tables
from mnistcodec.errors import InputError
from mnistcodec.experiments.evaluate import model_terms
from mnistcodec.model.compression_model import CompressionModel, ModelConfig
from mnistcodec.model.priors import PRIORS, NoisyDeepFactorized, make_prior
from mnistcodec.training.loop import TrainConfig, make_optimizer, train


def _randomised(prior: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A copy with every parameter perturbed: a 'trained' prior of arbitrary shape."""
    prior = copy.deepcopy(prior).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    return prior


@pytest.mark.parametrize("family", sorted(PRIORS))
def test_every_family_integrates_to_one(family):
    prior = _randomised(make_prior(family, 3), seed=1)
    t = torch.linspace(-400, 400, 400_001, dtype=torch.float64)[:, None].expand(-1, 3)
    integral = torch.trapezoid(prior.prob(t), t[:, 0], dim=0)
    assert torch.allclose(integral, torch.ones(3, dtype=torch.float64), atol=1e-6), integral


def test_deep_factorized_cdf_is_monotone_for_any_parameters():
    prior = _randomised(NoisyDeepFactorized(4, init_scale=1.0), seed=2)
    t = torch.linspace(-50, 50, 20_001, dtype=torch.float64)[:, None].expand(-1, 4)
    cdf = prior.cdf(t)
    assert torch.all(torch.diff(cdf, dim=0) >= 0)
    assert cdf[0].max() < 0.01 and cdf[-1].min() > 0.99


def test_deep_factorized_starts_broad():
    torch.manual_seed(0)
    prior = NoisyDeepFactorized(8).double()
    q = prior.quantile(torch.full((8,), 0.9, dtype=torch.float64)) - prior.quantization_offset()
    # Roughly a logistic of scale 10: its 90 % quantile is 10 * log(9) = 22 above the median.
    assert torch.all((q > 10) & (q < 40)), q


def test_deep_factorized_offset_is_the_median_cached_and_refreshed():
    torch.manual_seed(0)
    prior = NoisyDeepFactorized(5)
    offset = prior.quantization_offset()
    assert offset.dtype == torch.float64 and offset.shape == (5,)
    assert torch.allclose(prior.cdf(offset), torch.full((5,), 0.5, dtype=torch.float64), atol=1e-12)
    assert torch.equal(prior.quantization_offset(), offset)  # cached, same value
    loss = -prior.log_prob(torch.randn(64, 5) * 3 + 2).sum()
    loss.backward()
    with torch.no_grad():  # an in-place parameter update, as optimisers do
        for p in prior.parameters():
            p.sub_(0.05 * p.grad.sign())
    moved = prior.quantization_offset()
    assert not torch.equal(moved, offset)
    assert torch.allclose(prior.cdf(moved), torch.full((5,), 0.5, dtype=torch.float64), atol=1e-12)


def test_deep_factorized_offset_follows_fused_adam_steps():
    """Fused Adam updates parameters without bumping their version: the cache must still notice."""
    torch.manual_seed(0)
    model = CompressionModel(ModelConfig(latent_dims=5, prior="deep-factorized"))
    prior = model.prior
    optimizer = make_optimizer(model, lr=0.05)
    assert optimizer.defaults["fused"]
    before = prior.quantization_offset()
    loss = -prior.log_prob(torch.randn(64, 5) * 3 + 2).sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    after = prior.quantization_offset()
    assert not torch.equal(after, before)
    torch.testing.assert_close(after, prior.median(), rtol=0, atol=0)


def test_deep_factorized_tables_use_the_same_offset_as_the_bottleneck():
    torch.manual_seed(3)
    prior = _randomised(NoisyDeepFactorized(6), seed=3).float()
    tables = build_tables(prior)
    np.testing.assert_array_equal(tables.offsets, prior.quantization_offset().float().numpy())


def test_unknown_prior_is_a_clear_error():
    with pytest.raises(InputError, match="deep-factorized"):
        make_prior("cauchy", 4)


def test_cli_offers_every_prior():
    args = build_parser().parse_args(["train", "--prior", "deep-factorized"])
    assert args.prior == "deep-factorized"


@pytest.mark.parametrize("family", sorted(PRIORS))
def test_each_prior_trains_and_round_trips_through_coding(family, tmp_path, test_digits):
    result = train(
        ModelConfig(latent_dims=8, prior=family, lmbda=500.0),
        TrainConfig(epochs=1, limit=128, val_limit=32, batch_size=64),
        tmp_path / "m.safetensors",
        progress=False,
        log=lambda _: None,
    )
    record = result.history[0]
    assert np.isfinite([record.loss, record.val_rate, record.val_distortion]).all()
    codec = Codec(result.model)
    digits = test_digits[:24]
    strings, info = codec.compress(digits)
    decoded = codec.decompress(strings)
    np.testing.assert_array_equal(decoded, codec.reconstruct(digits))
    # The codec's information content is the evaluation-mode rate of the model.
    terms = model_terms(result.model, digits)
    assert abs(terms["info_bits"] - float(np.mean(info))) < 1e-3 * max(1.0, terms["info_bits"])
    assert np.mean([8 * len(s) for s in strings]) < np.mean(info) + 16
