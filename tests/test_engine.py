"""Inference engines and their calibration: conformance of every engine, the cache, ``doctor``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mnistcodec.cli import main
from mnistcodec.coding import calibration as C
from mnistcodec.coding import engine as E
from mnistcodec.coding.api import Codec
from mnistcodec.coding.model_files import load_model
from mnistcodec.coding.zoo import DEFAULT_MODEL, resolve_model, shipped_models
from mnistcodec.errors import InputError
from mnistcodec.experiments import metrics
from mnistcodec.model import int8_kernels
from mnistcodec.storage.idx import read_idx

GOLDEN = Path(__file__).resolve().parent / "golden"
MODELS = ("seed-lmbda2000", "vr-mixture-long", DEFAULT_MODEL)


@pytest.fixture
def engine_env(monkeypatch, tmp_path):
    """A fresh cache directory; returns a setter for MNISTCODEC_ENGINE."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(C.ENGINE_ENV, raising=False)
    return lambda value: monkeypatch.setenv(C.ENGINE_ENV, value)


def _codec(name: str, engine: str, set_engine) -> Codec:
    set_engine(engine)
    codec = Codec.from_model(name)
    decoder = engine if engine not in E.ENCODER_ONLY else E.REFERENCE
    assert codec.engine.choice == E.Choice(engine, decoder) and codec.engine.source == "override"
    return codec


DECODER_ENGINES = [name for name in E.available_engines() if name not in E.ENCODER_ONLY]


@pytest.mark.parametrize("engine", E.available_engines())
@pytest.mark.parametrize("name", MODELS)
def test_every_encoder_engine_keeps_the_latents_or_the_stated_bound(
    name, engine, engine_env, test_digits
):
    reference = Codec.from_model(name, precision="fp32")
    codec = _codec(name, engine, engine_env)
    # The lowest, the default and the highest level: the finest gains change the most latents.
    for level in sorted({0, reference.default_level, reference.levels - 1}):
        k_ref, info_ref = reference.analyse(test_digits, level)
        k, info = codec.analyse(test_digits, level)
        changed = np.count_nonzero(k != k_ref) / k.size
        if engine == E.REFERENCE:
            assert changed == 0 and np.array_equal(info, info_ref)
            continue
        assert changed <= E.ENCODER_LATENT_SHARE
        assert info.mean() / info_ref.mean() - 1 <= E.ENCODER_INFO_SHARE
        decoded = reference.synthesise(k, level)
        decoded_ref = reference.synthesise(k_ref, level)
        psnr, psnr_ref = (
            metrics.mean_psnr(test_digits, decoded),
            metrics.mean_psnr(test_digits, decoded_ref),
        )
        assert psnr_ref - psnr <= E.ENCODER_PSNR_DB


@pytest.mark.parametrize("engine", DECODER_ENGINES)
@pytest.mark.parametrize("name", sorted(shipped_models()))
def test_every_decoder_engine_meets_the_conformance_rule_on_the_golden_files(
    name, engine, engine_env, tmp_path
):
    engine_env(engine)
    out = tmp_path / "decoded.idx"
    argv = ["decompress", name, str(GOLDEN / f"{name}.v3.per-digit.mnc"), "-o", str(out)]
    assert main(argv) == 0
    error = np.abs(read_idx(out).astype(int) - read_idx(GOLDEN / f"{name}.decoded.idx"))
    assert np.mean(error <= 1) >= E.DECODER_PIXEL_SHARE
    if engine == E.REFERENCE:
        assert error.max() == 0


def test_an_unknown_engine_is_one_clear_error(engine_env, tmp_path, capsys):
    engine_env("tensorrt")
    with pytest.raises(InputError, match="MNISTCODEC_ENGINE"):
        Codec.from_model("seed-lmbda2000")
    out = tmp_path / "x.idx"
    golden = str(GOLDEN / "seed-lmbda2000.v3.per-digit.mnc")
    assert main(["decompress", "seed-lmbda2000", golden, "-o", str(out)]) == 2
    assert "MNISTCODEC_ENGINE" in capsys.readouterr().err and not out.exists()


def test_fp32_ignores_the_engine_choice(engine_env, test_digits):
    engine_env("onnxruntime" if "onnxruntime" in E.available_engines() else "torch-bf16")
    codec = Codec.from_model("seed-lmbda2000", precision="fp32")
    assert codec.engine.fixed is not None and codec.precision.name == "fp32"


# -- calibration and its cache -----------------------------------------------------------------


@pytest.fixture
def quick_calibration(monkeypatch):
    monkeypatch.setattr(C, "CALIBRATION_DIGITS", 64)
    monkeypatch.setattr(C, "CALIBRATION_ROUNDS", 1)


def test_calibration_chooses_a_conformant_engine_and_caches_it(
    engine_env, quick_calibration, tiny_model_path
):
    loaded = load_model(tiny_model_path)
    assert C.cached_entry(loaded) is None
    entry = C.calibrate(loaded)
    choice = E.Choice.parse(entry["choice"])
    for side, engine in (("encoder", choice.encoder), ("decoder", choice.decoder)):
        label = engine if engine != "onnxruntime" else f"onnxruntime@{choice.chunk}"
        assert entry["measured_digits_per_s"][side][label]["conformant"]
    C.store_entry(loaded, entry)
    assert C.cached_entry(loaded) == json.loads(json.dumps(entry))
    codec = Codec(loaded)
    assert codec.engine.source == "cached" and codec.engine.choice == choice


def _stored(loaded) -> dict:
    entry = {"choice": E.Choice("torch", "torch").describe(), "machine": C.machine_record()}
    C.store_entry(loaded, entry)
    return entry


def test_the_cache_is_stale_when_the_cpu_or_a_library_changes(
    engine_env, tiny_model_path, monkeypatch
):
    loaded = load_model(tiny_model_path)
    _stored(loaded)
    assert C.cached_entry(loaded) is not None
    real = C.machine_record
    for key, value in (("cpu", "Another CPU"), ("torch", "9.9"), ("onnxruntime", "0.1")):
        monkeypatch.setattr(
            C, "machine_record", lambda key=key, value=value: {**real(), key: value}
        )
        assert C.cached_entry(loaded) is None, key
    monkeypatch.setattr(C, "machine_record", real)
    assert C.cached_entry(loaded) is not None


def test_the_cache_is_stale_under_another_instruction_set_cap(
    engine_env, tiny_model_path, monkeypatch
):
    loaded = load_model(tiny_model_path)
    _stored(loaded)
    for name in E.KERNEL_CAP_VARS:
        monkeypatch.delenv(name, raising=False)
    assert C.cached_entry(loaded) is not None
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert C.machine_record()["kernel_caps"]["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert C.cached_entry(loaded) is None  # measured with other kernels
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert C.cached_entry(loaded) is not None
    assert C.machine_record()["kernel_caps"].get("aten") == torch.backends.cpu.get_cpu_capability()


@pytest.mark.skipif("onnxruntime" not in E.available_engines(), reason="no ONNX Runtime")
def test_onnxruntime_threads_do_not_spin_after_a_run(engine_env):
    """Spinning threads took the cores from the engine timed next (the calibration measured
    the float32 encoder at half its speed after ONNX Runtime)."""
    engine = E.Engine(resolve_model("seed-lmbda2000"), E.Choice("onnxruntime", "onnxruntime"))
    options = engine._session("synthesis").get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_onnxruntime_is_not_calibrated_under_an_instruction_set_cap(monkeypatch):
    for name in E.KERNEL_CAP_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(E, "onnxruntime_version", lambda: "1.0")
    assert not E.isa_capped() and "onnxruntime" in E.candidate_engines()
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY"):
        monkeypatch.setenv(name, "AVX2")
        assert E.isa_capped()
        assert "onnxruntime" not in E.candidate_engines()  # its kernels ignore the cap
        assert "onnxruntime" in E.available_engines()  # still an explicit choice
        assert "torch" in E.candidate_engines()
        monkeypatch.delenv(name)


def test_the_cache_is_stale_when_the_model_changes(engine_env, tiny_model_path, tmp_path):
    loaded = load_model(tiny_model_path)
    _stored(loaded)
    changed = load_model(tiny_model_path)
    changed.metadata["content_sha256"] = "0" * 64  # another analysis transform, same decoder
    assert C.cached_entry(changed) is None
    assert C.cached_entry(resolve_model("seed-lmbda2000")) is None


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[]",
        '{"format": "something else"}',
        json.dumps({"format": C.CACHE_FORMAT, "version": C.CACHE_VERSION, "entries": 3}),
    ],
)
def test_a_corrupt_cache_is_ignored_with_a_warning_and_rewritten(engine_env, tiny_model_path, text):
    loaded = load_model(tiny_model_path)
    path = C.cache_path()
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.warns(UserWarning, match="ignoring the engine cache"):
        assert C.cached_entry(loaded) is None
    with pytest.warns(UserWarning, match="ignoring the engine cache"):
        codec = Codec(loaded)
    assert codec.engine.source == "default"
    _stored(loaded)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert C.cached_entry(loaded) is not None
    assert json.loads(path.read_text())["format"] == C.CACHE_FORMAT


def test_a_large_call_calibrates_once_and_small_ones_never(
    engine_env, quick_calibration, tiny_model_path, monkeypatch, test_digits
):
    loaded = load_model(tiny_model_path)
    monkeypatch.setattr(C, "CALIBRATION_MIN_DIGITS", 200)
    codec = Codec(loaded)
    codec.compress(test_digits[:50])
    assert codec.engine.source == "default" and not C.cache_path().exists()
    codec.compress(test_digits[:250])
    assert codec.engine.source == "calibrated" and C.cached_entry(loaded) is not None
    assert Codec(loaded).engine.source == "cached"


def test_a_choice_timed_on_busy_cores_is_measured_again_a_few_times(
    engine_env, quick_calibration, tiny_model_path, monkeypatch, test_digits
):
    """An entry whose timing had under BUSY_CPU_SHARE of the CPU is used, and measured again by
    the next large call; after MAX_REMEASURES busy ones in a row, the last is kept."""
    loaded = load_model(tiny_model_path)
    monkeypatch.setattr(C, "CALIBRATION_MIN_DIGITS", 200)
    measured = C.calibrate(loaded)
    assert 0 < measured["cpu_share"] <= 2  # process CPU time over wall time x threads
    C.store_entry(loaded, {**measured, "cpu_share": 1.0})
    assert Codec(loaded).engine.source == "cached"  # a quiet one is trusted
    busy = {**measured, "cpu_share": C.BUSY_CPU_SHARE / 2}
    C.store_entry(loaded, busy)
    shown = C.doctor_record({"m": loaded})["models"]["m"]
    assert shown["source"] == "provisional" and shown["cpu_share"] == busy["cpu_share"]
    calls = []
    monkeypatch.setattr(C, "calibrate", lambda model: calls.append(1) or dict(busy))
    for count in range(1, C.MAX_REMEASURES + 1):
        codec = Codec(loaded)
        assert codec.engine.source == "provisional"
        assert codec.engine.choice == E.Choice.parse(measured["choice"])  # used meanwhile
        codec.compress(test_digits[:50])  # a small call measures nothing
        assert len(calls) == count - 1
        codec.compress(test_digits[:250])
        assert len(calls) == count and codec.engine.source == "calibrated"
        assert C.cached_entry(loaded)["remeasures"] == count
    assert Codec(loaded).engine.source == "cached"
    # A quiet measurement ends it at once.
    C.store_entry(loaded, busy)
    monkeypatch.setattr(C, "calibrate", lambda model: {**measured, "cpu_share": 0.95})
    Codec(loaded).compress(test_digits[:250])
    assert "remeasures" not in C.cached_entry(loaded)
    assert Codec(loaded).engine.source == "cached"


def test_doctor_shows_measures_and_caches(engine_env, quick_calibration, tiny_model_path, capsys):
    assert main(["doctor", str(tiny_model_path)]) == 0
    out = capsys.readouterr().out
    assert "engine cache" in out and "[default]" in out
    capability = torch.backends.cpu.get_cpu_capability()
    assert f"aten={capability}" in out.split("kernel isa", 1)[1].splitlines()[0]
    assert main(["doctor", str(tiny_model_path), "--calibrate", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    model = record["models"][str(tiny_model_path)]
    assert model["source"] == "calibrated" and record["machine"] == C.machine_record()
    assert main(["doctor", str(tiny_model_path)]) == 0
    assert "[cached" in capsys.readouterr().out
    engine_env("torch")
    assert main(["doctor", str(tiny_model_path), "--json"]) == 0
    assert (
        json.loads(capsys.readouterr().out)["models"][str(tiny_model_path)]["source"] == "override"
    )


def test_the_calibrations_encoder_check_bounds_rate_and_psnr_at_every_level():
    loaded = resolve_model(DEFAULT_MODEL)
    x, y_hat = E.digit_like_pictures(loaded, 256)
    levels = E.cycled_levels(loaded, 256)
    network = set(range(loaded.levels)) - set(loaded.codebooks)  # codebook levels: no transform
    assert levels is not None and set(levels.tolist()) == network
    check = C.EncoderCheck(loaded, x, levels)
    y = E.Engine(loaded).analysis(x)
    assert check(y, y)
    # Latents 3 % too small: fewer bits and a worse PSNR; 10 % too large: more bits.
    assert not check(y * 0.97, y) and not check(y * 1.1, y)
    _, bits, _ = check.measure(y * 1.1)
    assert bits > check.reference[1] * (1 + E.ENCODER_INFO_SHARE)
    _, bits, psnr = check.measure(y * 0.97)
    k_ref, bits_ref, psnr_ref = check.reference
    assert bits < bits_ref and psnr < psnr_ref
    # One-sided: against a reference that needed more bits for a worse PSNR, the same
    # latents cost nothing; against one with fewer bits or a better PSNR, they do.
    check.reference = (k_ref, bits_ref * 1.01, psnr_ref - 0.1)
    assert check(y, y)
    for reference in ((bits_ref * 0.99, psnr_ref), (bits_ref, psnr_ref + 0.1)):
        check.reference = (k_ref, *reference)
        assert not check(y, y)


def test_a_cache_of_another_version_is_measured_again(engine_env, tiny_model_path):
    loaded = load_model(tiny_model_path)
    _stored(loaded)
    record = json.loads(C.cache_path().read_text())
    record["version"] = C.CACHE_VERSION - 1
    C.cache_path().write_text(json.dumps(record))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert C.cached_entry(loaded) is None


@pytest.mark.parametrize(
    "engine", [name for name in ("torch-bf16", "torch-onednn") if name in E.available_engines()]
)
def test_a_folding_decoder_keeps_a_few_folded_levels_and_decodes_mixed_levels(
    engine, engine_env, test_digits
):
    reference = Codec.from_model(DEFAULT_MODEL, precision="fp32")
    codec = _codec(DEFAULT_MODEL, engine, engine_env)
    levels = np.arange(test_digits.shape[0]) % reference.levels
    k, _ = reference.analyse(test_digits, levels)
    decoded = codec.synthesise(k, levels).astype(int)
    expected = reference.synthesise(k, levels).astype(int)
    assert np.mean(np.abs(decoded - expected) <= 1) >= E.DECODER_PIXEL_SHARE
    # torch-onednn folds only levels with FOLD_MIN_DIGITS digits: these small groups take
    # the per-digit maps instead.
    folded = E.FOLDED_LEVELS if engine == "torch-bf16" else 0
    assert len(codec.engine._folded) == folded
    few = codec.synthesise(k[:5], levels[:5]).astype(int)  # other batch shapes: float rounding
    assert np.abs(few - decoded[:5]).max() <= 1
    assert codec.synthesise(k[:0], levels[:0]).shape == (0, 28, 28)


@pytest.mark.skipif("torch-onednn" not in E.available_engines(), reason="no oneDNN matmul")
def test_the_onednn_decoder_folds_only_the_levels_with_many_digits(
    engine_env, test_digits, monkeypatch
):
    """A level with FOLD_MIN_DIGITS digits or more (or a call's only level) runs folded, the
    other digits together with their maps per digit; every digit decodes as ``torch``'s."""
    monkeypatch.setattr(E, "FOLD_MIN_DIGITS", 24)
    reference = Codec.from_model(DEFAULT_MODEL, precision="fp32")
    codec = _codec(DEFAULT_MODEL, "torch-onednn", engine_env)
    n, network = 40, np.array(reference.loaded.network_levels)
    big, other = int(network[0]), int(network[-1])
    levels = np.where(np.arange(n) < 30, big, network[np.arange(n) % len(network)])
    assert np.sum(levels == big) >= 30 and len(set(levels.tolist())) > 2
    k, _ = reference.analyse(test_digits[:n], levels)
    folded_calls = []
    real = codec.loaded.model.synthesis_transform.folded
    monkeypatch.setattr(
        codec.loaded.model.synthesis_transform,
        "folded",
        lambda level: folded_calls.append(level) or real(level),
    )
    decoded = codec.synthesise(k, levels).astype(int)
    assert folded_calls == [big] and list(codec.engine._folded) == [big]
    expected = reference.synthesise(k, levels).astype(int)
    assert np.abs(decoded - expected).max() <= 1
    codec.synthesise(k[:5], np.full(5, other))  # a call's only level: folded, however few
    assert folded_calls == [big, other]


# -- the int8 encoder ---------------------------------------------------------------------------


def test_an_encoder_only_engine_never_decodes():
    assert E.parse_override("torch-int8") == E.Choice("torch-int8", "torch")
    assert E.parse_override("torch-int8,torch-bf16") == E.Choice("torch-int8", "torch-bf16")
    with pytest.raises(InputError, match="encoders only"):
        E.parse_override("torch,torch-int8")
    with pytest.raises(ValueError):
        E.Choice.parse({"encoder": "torch", "decoder": "torch-int8", "chunk": 1024})


needs_int8 = pytest.mark.skipif(
    "torch-int8" not in E.available_engines(), reason="PyTorch runs no oneDNN int8 kernels here"
)


@needs_int8
def test_int8_latents_do_not_depend_on_the_other_digits_of_the_call(engine_env, test_digits):
    codec = _codec(DEFAULT_MODEL, "torch-int8", engine_env)
    level = codec.default_level
    together, _ = codec.analyse(test_digits, level)
    # Alone, in pairs, and in a call large enough for several sub-batches.
    alone = np.concatenate([codec.analyse(test_digits[i : i + 1], level)[0] for i in range(8)])
    pairs = np.concatenate([codec.analyse(test_digits[i : i + 2], level)[0] for i in (0, 2)])
    tiled = np.concatenate([test_digits] * 4)
    assert np.array_equal(alone, together[:8]) and np.array_equal(pairs, together[:4])
    assert np.array_equal(codec.analyse(tiled, level)[0][-300:], together)


@needs_int8
def test_int8_reads_digits_as_it_reads_their_pictures(engine_env, test_digits):
    """The codec hands the int8 encoder its uint8 digits: the latents of ``digits / 255``."""
    codec = _codec(DEFAULT_MODEL, "torch-int8", engine_env)
    digits = torch.from_numpy(np.concatenate([test_digits] * 3))  # several sub-batches
    pictures = digits.float().div(255).view(-1, 1, 28, 28)
    expected = codec.engine.analysis(pictures)
    assert torch.equal(codec.engine.digit_analysis(digits), expected)
    assert torch.equal(codec.latents(digits.numpy()), expected)
    int8 = codec.engine._int8_analysis()
    assert torch.equal(int8.digits(digits[:7]), int8(pictures[:7]))


@needs_int8
def test_int8_files_decode_anywhere_to_what_their_latents_say(engine_env, test_digits):
    codec = _codec(DEFAULT_MODEL, "torch-int8", engine_env)
    strings, _ = codec.compress(test_digits[:50])
    reference = Codec.from_model(DEFAULT_MODEL, precision="fp32")
    k, _ = codec.analyse(test_digits[:50])
    assert np.array_equal(reference.decompress(strings), reference.synthesise(k, None))


@needs_int8
def test_the_calibration_measures_int8_as_an_encoder_only(
    engine_env, quick_calibration, tiny_model_path
):
    entry = C.calibrate(load_model(tiny_model_path))
    assert "torch-int8" in entry["measured_digits_per_s"]["encoder"]
    assert "torch-int8" not in entry["measured_digits_per_s"]["decoder"]
    assert E.Choice.parse(entry["choice"]).decoder != "torch-int8"


@needs_int8
def test_int8_refuses_a_model_with_non_finite_activations(engine_env, tiny_model_path, tmp_path):
    loaded = load_model(tiny_model_path)
    with torch.no_grad():
        loaded.model.analysis_transform.conv_1.bias.fill_(float("inf"))
    engine = E.Engine(loaded, E.Choice("torch-int8", "torch"))
    with pytest.raises(InputError, match="torch-int8"):
        engine.analysis(torch.zeros((1, 1, 28, 28)))


def test_encoders_are_checked_off_the_codecs_fixed_points(
    engine_env, quick_calibration, tiny_model_path, monkeypatch
):
    """The pictures are the float32 codec's reconstructions, many reproduced exactly: there
    any latent another encoder changes is error from zero. Encoders see them with noise."""
    from mnistcodec.coding.quantiser import Quantiser

    loaded = resolve_model(DEFAULT_MODEL)
    x, _ = E.digit_like_pictures(loaded, 256)
    noisy = C.off_fixed_points(x)
    assert torch.equal(noisy, C.off_fixed_points(x))  # the same pictures every time
    assert torch.equal(noisy * 255, torch.round(noisy * 255))  # whole grey levels
    assert float((noisy - x).abs().max()) <= (C.PICTURE_NOISE_LEVELS / 2 + 0.5) / 255
    levels, quantiser, reference = E.cycled_levels(loaded, 256), Quantiser(loaded), E.Engine(loaded)

    def exact_share(pictures):
        k, _ = quantiser.integers(reference.analysis(pictures), levels)
        x_hat = reference.synthesis(quantiser.dequantise(k, levels), levels)
        same = torch.round(x_hat.clamp(0, 1) * 255) / 255 == pictures
        return float(same.flatten(1).all(1).float().mean())

    assert exact_share(x) > 0.1 and exact_share(noisy) == 0
    # The calibration gives its encoders those pictures.
    seen = []
    monkeypatch.setattr(C, "off_fixed_points", lambda p: seen.append(p) or p)
    C.calibrate(load_model(tiny_model_path))
    assert seen


@needs_int8
def test_a_cached_int8_choice_keeps_its_ranges_and_measures_nothing(
    engine_env, quick_calibration, tiny_model_path, monkeypatch, test_digits
):
    loaded = load_model(tiny_model_path)
    entry = C.calibrate(loaded)
    ranges = E.int8_ranges(loaded)
    assert E.parse_int8_ranges(entry["int8_ranges"] or ranges) == ranges
    # Stored with an int8 choice, a later codec runs int8 from the entry's ranges alone ...
    entry = {**entry, "choice": E.Choice("torch-int8", "torch").describe()}
    entry["int8_ranges"] = [list(r) for r in ranges]
    C.store_entry(loaded, json.loads(json.dumps(entry)))
    expected = E.Engine(loaded, E.Choice("torch-int8", "torch")).analysis(
        torch.from_numpy(test_digits[:8]).float().div(255).view(-1, 1, 28, 28)
    )

    def no_pictures(*_args):
        raise AssertionError("the ranges were measured again")

    monkeypatch.setattr(E, "digit_like_pictures", no_pictures)
    codec = Codec(load_model(tiny_model_path))
    assert codec.engine.source == "cached" and codec.engine.int8_ranges == ranges
    assert torch.equal(codec.latents(test_digits[:8]), expected)
    # ... and entries whose ranges are not two finite [lo <= 0 <= hi] pairs are ignored.
    for bad in (None, "x", [[0.0, 1.0]], [[1.0, 2.0], [-1.0, 1.0]], [[float("nan"), 1], [0, 1]]):
        assert E.parse_int8_ranges(bad) is None


def test_the_first_layer_on_four_phases_is_the_strided_convolution():
    """space_to_depth and its weights: the same sums as the 5x5 stride-2 convolution (padding
    2), in float64, on random 8-bit images with odd and even pixels distinct."""
    g = torch.Generator().manual_seed(0)
    d = torch.randint(0, 256, (3, 1, 28, 28), generator=g, dtype=torch.uint8)
    weight = torch.randint(-127, 128, (7, 1, 5, 5), generator=g, dtype=torch.int8)
    phases = int8_kernels.space_to_depth(d)
    assert phases.shape == (3, 4, 14, 14)
    assert phases.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(phases[:, 1], d[:, 0, 0::2, 1::2]) and torch.equal(
        phases[:, 2], d[:, 0, 1::2, 0::2]
    )
    expected = F.conv2d(d.double(), weight.double(), stride=2, padding=2)
    four = int8_kernels.space_to_depth_weights(weight)
    assert four.dtype == torch.int8 and four.shape == (7, 4, 3, 3)
    got = F.conv2d(phases.double(), four.double(), padding=1)
    assert torch.equal(got, expected)


def test_activations_are_rounded_to_8_bits_as_torch_rounds_them():
    """The int8 encoder's requantisation (rounding by an offset, the bits' low byte) is
    ``clamp(round(leaky(h) + z), 0, 255)`` with ``torch.round`` (the sum in float32): ties to
    even, both signs, past both ends; and the digits of pictures are ``round(255 x)``."""
    g = torch.Generator().manual_seed(0)
    ties = torch.arange(-300, 300, dtype=torch.float32) + 0.5
    noise = torch.randn(4096, generator=g) * 200
    h = torch.cat([ties, noise, torch.tensor([-1e9, 1e9, 0.0, -0.0, 254.5, 255.5])])
    for slope, zero in ((0.2, 17), (0.01, 0), (0.5, 255)):
        expected = torch.round(F.leaky_relu(h, slope) + zero).clamp(0, 255).to(torch.int16)
        got = int8_kernels._to_u8(h.clone(), slope, zero)
        assert got.dtype == torch.uint8 and torch.equal(got.to(torch.int16), expected)
    x = torch.cat(
        [(torch.arange(256) + 0.5) / 255, torch.rand(1000, generator=g), torch.tensor([-1.0, 2.0])]
    )
    expected = torch.round(x * 255).clamp(0, 255).to(torch.int16)
    assert torch.equal(int8_kernels._to_digits(x).to(torch.int16), expected)


def test_the_padded_first_layer_reuses_its_border():
    """``conv_2``'s padded input: the inside written per sub-batch, the border of zero points
    kept, a buffer for more digits than the sub-batch read in its first rows."""
    g = torch.Generator().manual_seed(1)
    h = (torch.randn(5, 20, 14, 14, generator=g) * 50).contiguous(memory_format=torch.channels_last)
    fresh = int8_kernels._padded_u8(h.clone(), 0.2, 9)
    buffer = int8_kernels._border_buffer(8, 9, 20)
    int8_kernels._padded_u8(torch.full_like(h, 300.0), 0.2, 9, buffer)  # an earlier sub-batch
    reused = int8_kernels._padded_u8(h.clone(), 0.2, 9, buffer)
    assert reused.shape == fresh.shape == (5, 20, 18, 18) and torch.equal(reused, fresh)
    assert torch.equal(fresh[:, :, 2:-2, 2:-2], int8_kernels._to_u8(h.clone(), 0.2, 9))
    border = torch.ones(18, 18, dtype=torch.bool)
    border[2:-2, 2:-2] = False
    assert bool((fresh[:, :, border] == 9).all())


FIRST_LAYER_CODE = """
import torch
import torch.nn.functional as F
from mnistcodec.model import int8_kernels as K
from mnistcodec.model.transforms import SeedAnalysisTransform

transform = SeedAnalysisTransform(50).eval()
with torch.no_grad():
    transform.conv_1.weight.fill_(0.05)  # every weight at the largest step
    transform.conv_1.bias.zero_()
    x = torch.ones(4, 1, 28, 28)  # every pixel 255: every pair of products at its largest
    ranges = K.activation_ranges(transform, x)
    analysis = K.Int8Analysis(transform, ranges)
    got = analysis.first_layer(x).int()
    step_1 = K._steps(*ranges[0])[0]
    h = F.conv2d(x, transform.conv_1.weight, None, 2, 2) / step_1
    expected = K._to_u8(h, transform.act.negative_slope, analysis.zero_1).int()
print(int((got - expected).abs().max()))
"""


@needs_int8
@pytest.mark.parametrize("isa", ["AVX2", "AVX512_CORE"])
def test_the_int8_first_layer_does_not_saturate_without_vnni(isa):
    """Kernels without VNNI add pairs of u8 x s8 products in int16: 7-bit weights keep white
    digits exact to a step (8-bit ones lost half the sum with AVX-512 kernels)."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": isa}
    out = subprocess.run(
        [sys.executable, "-c", FIRST_LAYER_CODE],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert int(out.stdout.strip().splitlines()[-1]) <= 1
