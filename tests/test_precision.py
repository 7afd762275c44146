"""Mixed precision: bf16 products agree with float32 within the stated tolerances.

bf16 runs on every CPU (oneDNN emulates it where the CPU has no bf16 matrix
units), so these checks run everywhere; only ``auto``'s choice depends on the
hardware, and it is tested with the detection replaced.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mnistcodec.cli import main
from mnistcodec.coding.api import Codec
from mnistcodec.coding.model_files import load_model
from mnistcodec.data import load_split
from mnistcodec.errors import InputError
from mnistcodec.experiments import metrics
from mnistcodec.model import precision
from mnistcodec.model.compression_model import ModelConfig
from mnistcodec.model.precision import (
    BF16_LAYERS,
    CONFORMANT_SYNTHESIS_LAYERS,
    coding_precision,
    products_in_bf16,
    resolve_precision,
    training_precision,
)
from mnistcodec.model.variable_rate import make_model
from mnistcodec.training.loop import TrainConfig, train


@pytest.fixture(scope="module")
def digits():
    return load_split("test").images[:384]


@pytest.fixture
def no_units(monkeypatch):
    monkeypatch.setattr(precision, "bf16_matrix_units", lambda device="cpu": False)
    monkeypatch.setattr(precision, "bf16_vector_units", lambda: False)


@pytest.fixture
def units(monkeypatch):
    monkeypatch.setattr(precision, "bf16_matrix_units", lambda device="cpu": True)


def test_auto_stays_on_float32_without_bf16_matrix_units(no_units):
    assert resolve_precision("auto") == "fp32"
    assert coding_precision("auto").name == "fp32"
    assert training_precision("auto").name == "fp32"
    assert resolve_precision("bf16") == "bf16"


def test_auto_trains_in_bf16_with_avx512_bf16_alone_and_codes_by_calibration(monkeypatch):
    monkeypatch.setattr(precision, "bf16_matrix_units", lambda device="cpu": False)
    monkeypatch.setattr(precision, "bf16_vector_units", lambda: True)
    assert training_precision("auto").name == "bf16"
    assert precision.training_precision_for_device("auto", "cpu") == "bf16"
    # Coding precisions are unchanged: the CPU's engine choice is measured (coding/calibration).
    assert resolve_precision("auto") == "fp32"
    assert training_precision("auto", "meta").name == "fp32"


def test_auto_uses_bf16_with_units_and_decodes_conformantly(units):
    assert resolve_precision("auto") == "bf16"
    assert training_precision("auto").name == "bf16"
    auto = coding_precision("auto")
    assert auto.analysis == BF16_LAYERS["analysis"]
    assert auto.synthesis == CONFORMANT_SYNTHESIS_LAYERS
    assert auto.name == "mixed"
    assert coding_precision("bf16").synthesis == BF16_LAYERS["synthesis"]
    assert coding_precision("fp32").name == "fp32"


def test_an_unknown_precision_is_refused():
    with pytest.raises(InputError, match="precision"):
        resolve_precision("fp16")
    with pytest.raises(InputError, match="precision"):
        TrainConfig(precision="int8")


def test_emulated_products_give_the_bf16_kernels_numbers():
    torch.manual_seed(2)
    x, w = torch.randn(64, 500), torch.randn(2450, 500)
    native = F.linear(x.to(torch.bfloat16), w.to(torch.bfloat16)).float()
    emulated = precision.emulated(F.linear, x, w)
    assert emulated.dtype == torch.float32
    assert torch.equal(emulated, precision.round_to_bf16(emulated))  # bfloat16 values
    # The sums' order may differ: one bfloat16 step apart at most (near zero, where the
    # sum cancels, a step of the terms' scale), and mostly equal.
    step = native.abs() * 2.0**-7 + 1e-3 * float(native.abs().max())
    assert bool(((emulated - native).abs() <= step).all())
    assert float((emulated == native).float().mean()) > 0.8


def test_the_bf16_route_can_be_forced(monkeypatch):
    for forced, expected in (("native", True), ("emulated", False)):
        monkeypatch.setenv("MNISTCODEC_BF16", forced)
        precision.native_bf16.cache_clear()
        assert precision.native_bf16(torch.device("cpu")) is expected
    precision.native_bf16.cache_clear()


def test_detection_answers_for_this_cpu():
    assert isinstance(precision.bf16_matrix_units("cpu"), bool)
    assert precision.bf16_matrix_units("meta") is False


@pytest.mark.parametrize("fast", [True, False], ids=["cpu-kernels", "reference"])
def test_bf16_transforms_agree_with_float32_forward_and_backward(fast):
    torch.manual_seed(0)
    model = make_model(ModelConfig())
    x = torch.rand(32, 1, 28, 28)
    for transform in (model.analysis_transform, model.synthesis_transform):
        transform.cpu_fast_path = fast

    def run(layers):
        model.zero_grad()
        with products_in_bf16(model.analysis_transform, layers["analysis"]):
            with products_in_bf16(model.synthesis_transform, layers["synthesis"]):
                y = model.analysis_transform(x)
                x_hat = model.synthesis_transform(y)
        (y.square().mean() + x_hat.mean()).backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        return y.detach(), x_hat.detach(), grads

    y32, x32, g32 = run({"analysis": (), "synthesis": ()})
    y16, x16, g16 = run(BF16_LAYERS)
    assert y16.dtype == torch.float32 and x16.dtype == torch.float32
    assert torch.allclose(y16, y32, rtol=0, atol=0.02 * float(y32.abs().max()))
    assert torch.allclose(x16, x32, rtol=0, atol=0.02 * float(x32.abs().max()) + 1e-3)
    for a, b in zip(g16, g32, strict=True):
        assert float((a - b).norm()) <= 0.05 * float(b.norm()) + 1e-6
    # The master weights stay float32.
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_the_two_routes_compute_the_same_bf16_function():
    torch.manual_seed(1)
    model = make_model(ModelConfig())
    y = torch.randn(300, 50)  # large enough for the grid-order inference kernels
    synthesis = model.synthesis_transform
    with torch.no_grad(), products_in_bf16(synthesis, BF16_LAYERS["synthesis"]):
        fast = synthesis(y)
        reference = synthesis.reference_forward(y)
    assert torch.allclose(fast, reference, atol=1e-2)


@pytest.mark.parametrize("name", ["seed-lmbda2000", "vr"])
def test_bf16_coding_keeps_the_quality_of_float32(name, digits):
    reference = Codec.from_model(name, precision="fp32")
    bf16 = Codec.from_model(name, precision="bf16")
    conformant = Codec(reference.loaded, precision="fp32")
    conformant.precision = precision.CONFORMANT  # what auto gives on bf16 hardware

    # Encoding: information content within 0.5 %, PSNR within 0.05 dB.
    k32, info32 = reference.analyse(digits)
    k16, info16 = bf16.analyse(digits)
    assert abs(info16.mean() / info32.mean() - 1) <= 0.005
    psnr32 = metrics.mean_psnr(digits, reference.synthesise(k32))
    assert abs(metrics.mean_psnr(digits, reference.synthesise(k16)) - psnr32) <= 0.05

    # Decoding the same latents: bf16's mean PSNR within 0.05 dB; the default
    # (conformant) decoder keeps 99 % of the pixels within 1 grey level.
    exact = reference.synthesise(k32).astype(int)
    full = bf16.synthesise(k32).astype(int)
    assert abs(metrics.mean_psnr(digits, full.astype(np.uint8)) - psnr32) <= 0.05
    within = np.mean(np.abs(conformant.synthesise(k32).astype(int) - exact) <= 1)
    assert within >= 0.99


def test_decoded_latents_are_bit_exact_whatever_the_precision(digits):
    reference = Codec.from_model("vr", precision="fp32")
    strings, _ = reference.compress(digits[:64])
    latents = reference.decode_latents(strings)
    for other in ("bf16", "auto"):
        codec = Codec.from_model("vr", precision=other)
        np.testing.assert_array_equal(codec.decode_latents(strings), latents)
    # Strings a bf16 encoder writes decode, and to the latents it quantised.
    bf16 = Codec.from_model("vr", precision="bf16")
    k, _ = bf16.analyse(digits[:64])
    np.testing.assert_array_equal(reference.decode_latents(bf16.encode_latents(k)), k)


def test_bf16_training_runs_and_records_its_precision(tmp_path):
    out = tmp_path / "m.safetensors"
    base = {"epochs": 1, "limit": 256, "val_limit": 128, "batch_size": 64, "threading": "intra-op"}
    fp32 = train(
        ModelConfig(),
        TrainConfig(**base, precision="fp32"),
        tmp_path / "a",
        progress=False,
        log=lambda s: None,
    )
    bf16 = train(
        ModelConfig(),
        TrainConfig(**base, precision="bf16"),
        out,
        progress=False,
        log=lambda s: None,
    )
    a, b = fp32.history[-1], bf16.history[-1]
    assert np.isfinite(b.loss) and abs(b.loss / a.loss - 1) < 0.1
    recorded = load_model(out).metadata["training"]
    assert recorded["precision"] == "bf16"
    assert recorded["precision_used"]["precision"] == "bf16"
    assert recorded["precision_used"]["bf16_layers"]["synthesis"] == list(BF16_LAYERS["synthesis"])
    # The frozen model is left on the float32 path.
    assert not bf16.model.model.synthesis_transform.bf16_layers


def test_command_line_precision_and_device(tmp_path, capsys):
    out = tmp_path / "d.mnc"
    argv = ["compress", "vr", "--split", "test", "--index", "0:8", "-o", str(out)]
    assert main(argv + ["--precision", "bf16"]) == 0
    decoded = tmp_path / "d.idx"
    assert main(["decompress", str(out), "-o", str(decoded), "--precision", "fp32"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "vr", "--limit", "32", "--json", "--precision", "fp32"]) == 0
    assert json.loads(capsys.readouterr().out)["precision"] == "fp32"
    if not torch.cuda.is_available():
        assert main(argv + ["--device", "cuda", "--force"]) == 2
        assert "no CUDA device" in capsys.readouterr().err
    assert main(argv + ["--precision", "fp16"]) == 2  # a usage error: main returns its status


def test_an_instruction_set_cap_below_bf16_turns_the_bf16_units_off(monkeypatch):
    """Under ``ONEDNN_MAX_CPU_ISA=AVX2`` oneDNN runs bf16 products on reference kernels
    (a training epoch took minutes): ``auto`` must not pick bf16 there."""
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    uncapped = (precision.bf16_vector_units(), precision.bf16_matrix_units("cpu"))
    for cap in ("ALL", "not-an-isa", "avx512_core_amx_fp16"):
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
        assert (precision.bf16_vector_units(), precision.bf16_matrix_units("cpu")) == uncapped, cap
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        for cap in ("AVX2", "avx512_core", "AVX512_CORE_VNNI"):
            monkeypatch.setenv(name, cap)
            assert not precision.bf16_vector_units() and not precision.bf16_matrix_units("cpu"), (
                name,
                cap,
            )
            assert precision.resolve_training_precision("auto") == "fp32"
            assert precision.resolve_precision("auto") == "fp32"
        monkeypatch.setenv(name, "AVX512_CORE_BF16")
        assert not precision.bf16_matrix_units("cpu")
        assert precision.bf16_vector_units() == uncapped[0]
        monkeypatch.delenv(name)
    assert precision.onednn_allows("AVX2") and precision.onednn_allows("AVX10_1_512_AMX_FP16")


@pytest.mark.skipif(
    not precision.onednn_float32_available(), reason="this PyTorch has no oneDNN matmul op"
)
def test_onednn_float32_is_the_same_product_on_another_kernel():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(300, 500, generator=generator)
    layer = torch.nn.Linear(500, 2450)
    reference = F.linear(x, layer.weight, layer.bias)
    with torch.no_grad():
        assert torch.equal(precision.linear(x, layer.weight, layer.bias, False), reference)
        with precision.onednn_float32():
            onednn = precision.linear(x, layer.weight, layer.bias, False)
            strided = precision.linear(x.t().contiguous().t(), layer.weight, layer.bias, False)
        assert torch.allclose(onednn, reference, rtol=1e-5, atol=1e-5)
        assert torch.equal(strided, onednn)
        with precision.onednn_float32(False):
            assert torch.equal(precision.linear(x, layer.weight, layer.bias, False), reference)
    with precision.onednn_float32():  # gradients recorded: PyTorch's own op, differentiable
        out = precision.linear(x, layer.weight, layer.bias, False)
    assert out.requires_grad and torch.equal(out.detach(), reference.detach())


@pytest.mark.parametrize(
    "flags, cap, expected",
    [
        (("avx2", "avx512f", "avx512_vnni"), None, True),
        (("avx2", "avx512f", "avx512_vnni"), "AVX512_CORE_VNNI", True),
        (("avx2", "avx512f", "avx512_vnni"), "AVX512_CORE", False),
        (("avx2", "avx512f", "avx512_vnni"), "AVX2", False),
        (("avx2", "avx_vnni"), None, True),
        (("avx2", "avx_vnni"), "AVX2", False),
        (("avx2", "avx512f", "amx_int8", "amx_tile"), "AVX512_CORE_BF16", False),
        (("avx2", "avx512f", "amx_int8", "amx_tile"), "ALL", True),
        (("avx2", "avx512f"), None, False),
        (("avx2",), None, False),
    ],
)
def test_int8_dot_products_need_vnni_or_amx_under_the_cap(monkeypatch, flags, cap, expected):
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    if cap is not None:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    monkeypatch.setattr(precision, "cpu_description", lambda: ("a CPU", flags))
    assert precision.int8_dot_products() is expected
