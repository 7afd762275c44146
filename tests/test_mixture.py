"""The mixture prior (coded by component) and the level-conditioned decoder of ``vr`` models."""

from __future__ import annotations

import json

import constriction
import numpy as np
import pytest
import torch

from mnistcodec.cli import main
from mnistcodec.coding.api import Codec
from mnistcodec.coding.files import compress_to_bytes, decompress_bytes
from mnistcodec.coding.mixture_coder import MixtureCoder
from mnistcodec.coding.model_files import load_model, save_model
from mnistcodec.coding.range_coder import DecodeError
from mnistcodec.coding.rate_control import LevelChoice
from mnistcodec.errors import InputError
from mnistcodec.model.compression_model import ModelConfig
from mnistcodec.model.transforms import ConditionedSynthesisTransform, LevelAffine
from mnistcodec.model.variable_rate import LEVEL_COUNT, MixtureBottleneck, VariableRateModel
from mnistcodec.training.loop import TrainConfig, make_optimizer, train

DIGITS = 24
COMPONENTS = 4
CONFIG = ModelConfig(arch="vr", mixture_components=COMPONENTS, conditioned_decoder=True)


@pytest.fixture(scope="module")
def mixture_path(tmp_path_factory, _data_environment):
    """A mixture model with a conditioned decoder, one epoch on 384 digits."""
    out = tmp_path_factory.mktemp("mixture") / "mixture.safetensors"
    train(
        CONFIG,
        TrainConfig(epochs=1, limit=384, val_limit=128, prior_lr=1e-2, level_weight=1.0),
        out,
        progress=False,
        log=lambda _line: None,
    )
    return out


@pytest.fixture(scope="module")
def codec(mixture_path):
    return Codec(load_model(mixture_path))


@pytest.fixture(scope="module")
def digits(test_digits):
    return test_digits[:DIGITS]


def test_the_file_holds_component_tables(codec, mixture_path):
    loaded = codec.loaded
    assert loaded.config == CONFIG and isinstance(
        loaded.model.entropy_bottleneck, MixtureBottleneck
    )
    assert loaded.component_tables.latent_dims == 1
    assert loaded.component_tables.width == COMPONENTS
    assert all(t.latent_dims == COMPONENTS * 50 for t in loaded.level_tables)
    assert all(isinstance(c, MixtureCoder) for c in codec.coders)
    assert codec.latent_dims == 50
    assert load_model(mixture_path).fingerprint == loaded.fingerprint


def test_round_trip_at_every_level_in_both_modes(codec, digits):
    for level in range(LEVEL_COUNT):
        strings, info = codec.compress(digits, level)
        expected = codec.reconstruct(digits, level)
        assert np.array_equal(codec.decompress(strings, levels=level), expected)
        stream, _ = codec.compress_stream(digits, level)
        assert np.array_equal(codec.decompress_stream(stream, DIGITS, level=level), expected)
        bits = np.array([8 * len(s) for s in strings])
        # A string is its information content (component included) plus at most a few bits.
        assert np.all(bits <= info + 12), level


def test_files_decode_with_the_level_they_store(codec, digits):
    for mode in ("per-digit", "stream"):
        data = compress_to_bytes(
            codec, digits, mode=mode, block_size=10, choice=LevelChoice(level=9)
        ).data
        assert np.array_equal(decompress_bytes(codec, data), codec.reconstruct(digits, 9))


def test_the_encoder_takes_the_cheapest_component(codec, digits):
    coder = codec.coders[5]
    k, _ = codec.analyse(digits, 5)
    symbols = coder.to_symbols(k)
    chosen = coder.table_bits(symbols)
    for component in range(COMPONENTS):
        forced = symbols.indices.copy()
        forced[:, 0] = component
        rows = coder.rows(component)
        rel = k - coder.tables.lower[rows][None, :]
        inside = (rel >= 0) & (rel < coder.tables.width)
        forced[:, 1:] = np.where(inside, rel, coder.tables.escape)
        overflow = [[int(v) for v in k[i][~inside[i]]] for i in range(len(k))]
        other = coder.table_bits(type(symbols)(forced, overflow))
        assert np.all(chosen <= other + 1e-9)
    assert np.array_equal(coder.from_symbols(symbols), k)


def test_a_string_naming_no_component_is_a_clean_error(codec):
    coder = codec.coders[0]
    encoder = constriction.stream.queue.RangeEncoder()
    # The component table's escape column (index C) is never a component.
    encoder.encode(np.array([COMPONENTS], np.int32), coder._family, coder._component_probs)
    words = encoder.get_compressed()
    data = np.asarray(words, dtype=">u4").tobytes().rstrip(b"\0") or b"\x01"
    with pytest.raises(DecodeError):
        coder.decode_strings([data])


def test_random_strings_sample_digits(codec):
    samples = codec.sample(8, seed=3)
    assert samples.shape == (8, 28, 28) and samples.dtype == np.uint8


def test_the_decoder_depends_on_the_level_and_its_fast_path_is_exact():
    torch.manual_seed(0)
    transform = ConditionedSynthesisTransform(50, LEVEL_COUNT)
    with torch.no_grad():
        for p in transform.level_parameters():
            p.normal_(0, 0.3)
    y = torch.randn(600, 50)
    levels = torch.arange(600) % LEVEL_COUNT
    with torch.no_grad():
        fast = transform(y, levels)
        reference = transform.reference_forward(y, LevelAffine(transform, levels))
        small = transform(y[:20], levels[:20])
        other = transform(y, (levels + 1) % LEVEL_COUNT)
    torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(small, reference[:20], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(fast, other)
    with pytest.raises(InputError, match="level"):
        transform(y)


def test_level_parameters_learn_at_the_priors_rate():
    model = VariableRateModel(CONFIG)
    optimizer = make_optimizer(model, 1e-3, 1e-2)
    fast = {id(p) for p in optimizer.param_groups[1]["params"]}
    assert all(id(p) in fast for p in model.synthesis_transform.level_parameters())
    assert all(id(p) in fast for p in model.entropy_bottleneck.parameters())
    out = model(torch.rand(32, 1, 28, 28), training=True)
    model.loss(out).backward()
    assert model.synthesis_transform.level_log_scales["fc_1"].grad.abs().sum() > 0
    assert model.entropy_bottleneck.prior.logits.grad.abs().sum() > 0


def test_the_fingerprint_covers_the_component_weights(tmp_path):
    torch.manual_seed(0)
    model = VariableRateModel(ModelConfig(arch="vr", mixture_components=3))
    first = save_model(model, tmp_path / "a.safetensors").fingerprint
    with torch.no_grad():
        model.entropy_bottleneck.prior.logits[1] += 2.0
    assert save_model(model, tmp_path / "b.safetensors").fingerprint != first


def test_configurations_are_checked_and_old_ones_read():
    with pytest.raises(InputError, match="variable-rate"):
        ModelConfig(mixture_components=4)
    with pytest.raises(InputError, match="variable-rate"):
        ModelConfig(conditioned_decoder=True)
    with pytest.raises(InputError, match="logistic"):
        ModelConfig(arch="vr", prior="laplace", mixture_components=4)
    with pytest.raises(InputError, match="mixture_components"):
        ModelConfig(arch="vr", mixture_components=0)
    old = {"arch": "vr", "latent_dims": 50, "prior": "logistic", "lmbda": 2000.0}
    assert ModelConfig.from_dict(old) == ModelConfig(arch="vr")
    assert "mixture_components" not in ModelConfig(arch="vr").to_dict()
    # Early files hold an unused key "components"; it stays ignored.
    assert ModelConfig.from_dict({**old, "arch": "seed", "components": 32}) == ModelConfig()
    assert ModelConfig.from_dict(CONFIG.to_dict()) == CONFIG


def test_cli_refuses_a_mixture_without_vr(tmp_path, capsys):
    code = main(["train", "--mixture", "4", "--epochs", "1", "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == 2 and "variable-rate" in err and "Traceback" not in err


def test_onnx_export_takes_the_level(codec, digits, tmp_path):
    pytest.importorskip("onnx", reason="the onnx extra")
    onnxruntime = pytest.importorskip("onnxruntime", reason="the onnx extra")
    from mnistcodec.coding.onnx_export import export_onnx

    out = export_onnx(codec.loaded, tmp_path / "export")
    tables = json.loads((out / "tables.json").read_text())
    assert tables["components"]["count"] == COMPONENTS and tables["latent_dims"] == 50
    assert len(tables["levels"]["tables"][0]["counts"]) == COMPONENTS * 50
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["synthesis"]["level_input"]["name"] == "level"
    levels = np.arange(DIGITS) % LEVEL_COUNT
    k, _ = codec.analyse(digits, levels)
    gains = codec.gains.cpu().numpy()[levels]
    y_hat = (k.astype(np.float32) / gains).astype(np.float32)
    session = onnxruntime.InferenceSession(str(out / "synthesis.onnx"))
    (x_hat,) = session.run(None, {"y_hat": y_hat, "level": levels.astype(np.int64)})
    pixels = np.clip(np.round(x_hat * 255), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    expected = codec.synthesise(k, levels)
    assert np.abs(pixels.astype(int) - expected.astype(int)).max() <= 1


def test_the_tabulated_information_content_is_the_formulas(digits):
    """Codec information content (tables of log P per level) against the bottleneck's formula."""
    codec = Codec.from_model("vr-mse", precision="fp32")
    images = np.concatenate([digits, np.random.default_rng(0).integers(0, 256, (20, 28, 28))])
    y = codec.latents(images.astype(np.uint8))
    levels = torch.arange(y.shape[0]) % codec.levels
    k, bits = codec.quantiser.integers(y, levels)
    k[-1, 0] = 10_000  # outside every window: the formula's
    bits = codec.quantiser.mixture.bits(k, levels)
    expected = codec.model.entropy_bottleneck.information_bits(k, codec.gains[levels]).detach()
    assert torch.allclose(bits, expected, rtol=1e-6, atol=1e-4)
    assert float(bits[-1]) > 20


def test_a_folded_decoder_is_the_conditioned_one_at_its_level():
    """Folding a level's affine maps into the weights computes the same function (float rounding)."""
    loaded = Codec.from_model("vr-mse", precision="fp32").loaded
    transform = loaded.model.synthesis_transform
    y = torch.randn(300, loaded.config.latent_dims, generator=torch.Generator().manual_seed(0))
    for level in (0, 7, 15):
        levels = torch.full((300,), level)
        with torch.no_grad():
            expected = transform(y, levels)
            folded = transform.folded(level)(y)
        assert torch.allclose(folded, expected, atol=1e-5)
        assert not isinstance(transform.folded(level), ConditionedSynthesisTransform)
