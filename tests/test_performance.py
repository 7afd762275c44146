"""The optimised paths compute what the plain ones do, and the benchmark runs.

* transforms: the CPU kernels (:mod:`mnistcodec.model.cpu_kernels`) against the
  reference layers (``reference_forward``), outputs and gradients, at batch
  sizes on both sides of every threshold, and the dispatch between them;
* training: Adam steps with the kernels against the reference path, fused Adam
  against the default, shards and threads against one thread;
* entropy coding: strings against a golden digest of the pre-optimisation
  coder, and against the trial-decode search it replaced (kept here as the
  reference), including the decoder's canonical-string check;
* ``bench/run.py --quick``: a smoke test (no timing assertions).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import load_bench_module
from mnistcodec.coding.api import Codec
from mnistcodec.coding.model_files import load_model
from mnistcodec.coding.range_coder import DecodeError, LatentCoder, Symbols, _bytes_to_words
from mnistcodec.coding.tables import CodingTables
from mnistcodec.errors import InputError
from mnistcodec.model import cpu_kernels, precision
from mnistcodec.model.compression_model import CompressionModel, ModelConfig
from mnistcodec.model.cpu_kernels import (
    CPU_CHUNK,
    GRID_ORDER_MIN_BATCH,
    TAPS_MIN_BATCH,
    ConvFromOne,
    DenseOnOneDnn,
    TransposedConvToOne,
)
from mnistcodec.model.transforms import images_to_unit
from mnistcodec.training.loop import ADAM_EPS, TrainConfig, make_optimizer, train
from mnistcodec.training.names import DEFAULT_THREADING
from mnistcodec.training.threading import choose_threading

REPO = Path(__file__).resolve().parents[1]

# Batch sizes on both sides of each threshold of the kernels (with gradients only the
# taps switch applies; without, the grid-order weights and the chunking too).
GRADIENT_BATCHES = [1, TAPS_MIN_BATCH - 1, TAPS_MIN_BATCH, 24]
INFERENCE_BATCHES = [
    3,
    TAPS_MIN_BATCH - 1,
    TAPS_MIN_BATCH,
    GRID_ORDER_MIN_BATCH - 1,
    GRID_ORDER_MIN_BATCH,
    CPU_CHUNK + 37,
]


# -- transforms --------------------------------------------------------------------------------


def _model(latent_dims: int = 50) -> CompressionModel:
    torch.manual_seed(0)
    model = CompressionModel(ModelConfig(latent_dims=latent_dims))
    with torch.no_grad():  # non-zero biases, so bias paths are exercised
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model


def _set_fast(model: CompressionModel, fast: bool) -> None:
    model.analysis_transform.cpu_fast_path = fast
    model.synthesis_transform.cpu_fast_path = fast


def assert_same_function(actual: torch.Tensor, expected: torch.Tensor, atol: float) -> None:
    """Equal up to float32 rounding: ``rtol`` 1e-5, ``atol`` scaled by the output's magnitude.

    An absolute tolerance below the float32 spacing of the values compared means
    nothing, so ``atol`` applies as given to outputs of magnitude up to 1 and
    grows with ``max |expected|`` beyond.
    """
    scale = max(1.0, float(expected.detach().abs().max()))
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=atol * scale)


def _loss_and_grads(model: CompressionModel, x: torch.Tensor, fast: bool):
    _set_fast(model, fast)
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    out = model(x, training=True, generator=torch.Generator().manual_seed(1))
    loss = model.loss(out)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    grads["input"] = x.grad.clone()
    return out, loss.detach(), grads


@pytest.mark.parametrize("batch", GRADIENT_BATCHES)
def test_kernels_match_reference_forward_and_gradients(batch):
    model = _model()
    x = torch.rand(batch, 1, 28, 28)
    ref_out, ref_loss, ref_grads = _loss_and_grads(model, x, fast=False)
    out, loss, grads = _loss_and_grads(model, x, fast=True)
    assert_same_function(out.y, ref_out.y, atol=1e-5)
    assert_same_function(out.x_hat, ref_out.x_hat, atol=1e-6)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-4)
    for name, grad in ref_grads.items():
        # Float32 sums over the batch in another order: bias gradients sum B*784 terms.
        scale = float(grad.abs().max()) + 1e-12
        assert float((grads[name] - grad).abs().max()) <= 1e-3 * scale, name


@pytest.mark.parametrize("batch", INFERENCE_BATCHES)
def test_gradient_free_kernels_match_reference(batch):
    model = _model().eval()
    analysis, synthesis = model.analysis_transform, model.synthesis_transform
    x = torch.rand(batch, 1, 28, 28)
    for context in (torch.no_grad, torch.inference_mode):
        with context():
            y = cpu_kernels.analysis_forward(analysis, x)
            assert_same_function(y, analysis.reference_forward(x), atol=1e-5)
            x_hat = cpu_kernels.synthesis_forward(synthesis, y)
            assert_same_function(x_hat, synthesis.reference_forward(y), atol=1e-6)
        assert x_hat.shape == (batch, 1, 28, 28) and x_hat.is_contiguous()


def _assert_same_forward_and_backward(function, reference, inputs, grad_out, names):
    """``function`` and ``reference`` on copies of ``inputs`` (float64): the same output and
    the same gradient of every input (None where an input records none); returns the output."""
    results = []
    for f in (function, reference):
        # The activations channels-last, the layout the kernels see in the transforms.
        layouts = [torch.channels_last] + [torch.preserve_format] * (len(inputs) - 1)
        copies = [
            t.detach().clone(memory_format=layout).requires_grad_(t.requires_grad)
            for t, layout in zip(inputs, layouts, strict=True)
        ]
        out = f(*copies)
        out.backward(grad_out)
        results.append([out.detach(), *(t.grad for t in copies)])
    for name, got, expected in zip(("output", *names), *results, strict=True):
        if expected is None:
            assert got is None, name
        else:
            torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-10, msg=name)
    return results[0][0]


@pytest.mark.parametrize("batch", [1, TAPS_MIN_BATCH])
def test_transposed_conv_to_one_is_the_transposed_convolution(batch):
    """Forward and backward against ``F.conv_transpose2d`` in float64."""
    g = torch.Generator().manual_seed(batch)
    inputs = [
        torch.randn(batch, 20, 14, 14, generator=g, dtype=torch.float64, requires_grad=True),
        torch.randn(20, 1, 5, 5, generator=g, dtype=torch.float64, requires_grad=True),
        torch.randn(1, generator=g, dtype=torch.float64, requires_grad=True),
    ]
    grad_out = torch.randn(batch, 1, 28, 28, generator=g, dtype=torch.float64)
    _assert_same_forward_and_backward(
        TransposedConvToOne.apply,
        lambda h, w, b: F.conv_transpose2d(h, w, b, stride=2, padding=2, output_padding=1),
        inputs,
        grad_out,
        ("h", "weight", "bias"),
    )


@pytest.mark.parametrize("input_grad", [False, True])
def test_conv_from_one_is_the_convolution(input_grad):
    """Forward and backward against ``F.conv2d`` in float64; the output is channels-last."""
    g = torch.Generator().manual_seed(3)
    inputs = [
        torch.rand(5, 1, 28, 28, generator=g, dtype=torch.float64).requires_grad_(input_grad),
        torch.randn(20, 1, 5, 5, generator=g, dtype=torch.float64, requires_grad=True),
        torch.randn(20, generator=g, dtype=torch.float64, requires_grad=True),
    ]
    grad_out = torch.randn(5, 20, 14, 14, generator=g, dtype=torch.float64)
    out = _assert_same_forward_and_backward(
        ConvFromOne.apply,
        lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=2),
        inputs,
        grad_out,
        ("x", "weight", "bias"),
    )
    assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.skipif(
    not precision.onednn_float32_available(), reason="this PyTorch has no oneDNN matmul"
)
@pytest.mark.parametrize("shape", [(2450, 500), (500, 2450)], ids=["fc_1", "synthesis fc_2"])
@pytest.mark.parametrize("input_grad", [False, True])
def test_dense_on_onednn_is_the_linear_layer(input_grad, shape):
    """Forward and the three gradients against ``F.linear`` in float64 (float32 kernels:
    equal up to float32 rounding), on both large shapes (the weight gradient of the second by
    MKL's product) and a transposed input view."""
    inputs, outputs = shape
    g = torch.Generator().manual_seed(5)
    x = torch.randn(inputs, 37, generator=g).t()  # a transposed view, as autograd may pass
    weight = torch.randn(outputs, inputs, generator=g) / 50
    bias = torch.randn(outputs, generator=g)
    grad_out = torch.randn(37, outputs, generator=g)
    results = []
    for f, dtype in ((DenseOnOneDnn.apply, torch.float32), (F.linear, torch.float64)):
        leaves = [
            t.to(dtype, copy=True).requires_grad_(r)
            for t, r in ((x, input_grad), (weight, True), (bias, True))
        ]
        out = f(*leaves)
        out.backward(grad_out.to(dtype))
        results.append([out.detach(), *(t.grad for t in leaves)])
    for name, got, expected in zip(("output", "x", "weight", "bias"), *results, strict=True):
        if expected is None:
            assert got is None, name
        else:
            assert got.dtype == torch.float32, name
            scale = float(expected.abs().max())
            assert float((got.double() - expected).abs().max()) <= 1e-5 * scale, name


def test_training_takes_dense_on_onednn_for_the_large_layers(monkeypatch):
    """With gradients on, the 2450-wide layers run :class:`DenseOnOneDnn` (where available)."""
    calls = []
    real = DenseOnOneDnn.apply
    monkeypatch.setattr(DenseOnOneDnn, "apply", lambda *a: calls.append(a[1].shape) or real(*a))
    model = _model()
    model(torch.rand(TAPS_MIN_BATCH, 1, 28, 28), training=True, generator=torch.Generator())
    expected = [(500, 2450), (2450, 500)] if precision.onednn_float32_available() else []
    assert calls == expected
    with torch.no_grad():
        model(torch.rand(4, 1, 28, 28), training=True, generator=torch.Generator())
    assert len(calls) == len(expected)


@pytest.mark.parametrize("channels, grid", [((50, 20), 7), ((20, 1), 14)], ids=["conv_1", "conv_2"])
def test_the_subpixel_convolution_is_the_transposed_convolution(channels, grid):
    """In float64, against ``F.conv_transpose2d``, on channels-last and plain inputs: the
    synthesis' 50->20 and 20->1 layers."""
    g = torch.Generator().manual_seed(0)
    c_in, c_out = channels
    layer = torch.nn.ConvTranspose2d(c_in, c_out, 5, 2, 2, 1).double()
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=g))
        layer.bias.copy_(torch.randn(c_out, generator=g))
        assert cpu_kernels.subpixel_fits(layer)
        weight, bias = cpu_kernels.subpixel_weights(layer)
        assert weight.shape == (4 * c_out, c_in, 3, 3) and bias.shape == (4 * c_out,)
        h = torch.randn(3, c_in, grid, grid, generator=g, dtype=torch.float64)
        expected = layer(h)
        for layout in (torch.contiguous_format, torch.channels_last):
            got = cpu_kernels.subpixel_transposed(h.contiguous(memory_format=layout), weight, bias)
            torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-10)
            assert got.is_contiguous(memory_format=torch.channels_last)
    for other in (
        torch.nn.ConvTranspose2d(50, 20, 5, 2, 2, 0),
        torch.nn.ConvTranspose2d(50, 20, 3, 2, 1, 1),
        torch.nn.ConvTranspose2d(50, 20, 5, 1, 2),
        torch.nn.ConvTranspose2d(50, 20, 5, 2, 2, 1, bias=False),
    ):
        assert not cpu_kernels.subpixel_fits(other)


@pytest.mark.skipif(
    not precision.onednn_float32_available(), reason="this PyTorch has no oneDNN matmul op"
)
@pytest.mark.parametrize("batch", [GRID_ORDER_MIN_BATCH - 1, GRID_ORDER_MIN_BATCH, CPU_CHUNK + 37])
def test_the_onednn_float32_kernels_compute_the_same_synthesis(batch, monkeypatch):
    model = _model().eval()
    synthesis = model.synthesis_transform
    y = torch.randn(batch, synthesis.fc_1.in_features, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = cpu_kernels.synthesis_forward(synthesis, y)
        subpixel_channels = []
        real = cpu_kernels.subpixel_transposed
        monkeypatch.setattr(
            cpu_kernels,
            "subpixel_transposed",
            lambda h, w, b: subpixel_channels.append(w.shape[0]) or real(h, w, b),
        )
        with precision.onednn_float32():
            got = cpu_kernels.synthesis_forward(synthesis, y)
    assert_same_function(got, synthesis.reference_forward(y), atol=1e-5)
    assert_same_function(got, reference, atol=1e-5)
    assert got.shape == (batch, 1, 28, 28) and got.is_contiguous()
    # From GRID_ORDER_MIN_BATCH digits, both transposed convolutions run sub-pixel, per chunk.
    chunks = -(-batch // CPU_CHUNK) if batch >= GRID_ORDER_MIN_BATCH else 0
    assert subpixel_channels == [80, 4] * chunks


@pytest.mark.parametrize(
    "function, shapes",
    [
        (TransposedConvToOne.apply, ((2, 2, 14, 14), (2, 1, 5, 5), (1,))),
        (ConvFromOne.apply, ((2, 1, 28, 28), (3, 1, 5, 5), (3,))),
    ],
    ids=["TransposedConvToOne", "ConvFromOne"],
)
def test_the_custom_gradients_pass_gradcheck(function, shapes):
    g = torch.Generator().manual_seed(0)
    inputs = tuple(
        torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True) for shape in shapes
    )
    assert torch.autograd.gradcheck(function, inputs, fast_mode=True)


def test_forward_takes_the_kernels_only_where_they_apply():
    model = _model().eval()
    analysis, synthesis = model.analysis_transform, model.synthesis_transform
    x, y = torch.rand(20, 1, 28, 28), torch.randn(20, 50)
    with torch.no_grad():
        assert torch.equal(analysis(x), cpu_kernels.analysis_forward(analysis, x))
        assert torch.equal(synthesis(y), cpu_kernels.synthesis_forward(synthesis, y))
        _set_fast(model, False)
        assert torch.equal(analysis(x), analysis.reference_forward(x))
        assert torch.equal(synthesis(y), synthesis.reference_forward(y))
        _set_fast(model, True)
        model.double()
        assert not cpu_kernels.applies(analysis, x.double())
        assert torch.equal(analysis(x.double()), analysis.reference_forward(x.double()))


def test_inference_reads_strided_inputs_correctly():
    model = _model().eval()
    n = GRID_ORDER_MIN_BATCH + 5
    x = torch.rand(n, 1, 28, 28)
    with torch.no_grad():
        expected = model.analysis_transform.reference_forward(x)
        for view in (
            x.transpose(2, 3).contiguous().transpose(2, 3),
            x.contiguous(memory_format=torch.channels_last),
            torch.rand(2 * n, 1, 28, 28)[::2].copy_(x),
        ):
            assert_same_function(model.analysis_transform(view), expected, atol=1e-5)


@pytest.mark.parametrize("batch", [GRID_ORDER_MIN_BATCH - 1, GRID_ORDER_MIN_BATCH + 5])
def test_inference_follows_optimizer_steps(batch):
    """Inference sees the current parameters after fused Adam steps (which leave no version trace)."""
    model = _model().eval()
    x = torch.rand(batch, 1, 28, 28)
    y = torch.randn(batch, model.latent_dims)
    analysis, synthesis = model.analysis_transform, model.synthesis_transform
    optimizer = make_optimizer(model, lr=0.05)
    for _ in range(2):
        with torch.no_grad():
            analysis(x), synthesis(y)
        loss = model.loss(model(torch.rand(8, 1, 28, 28), training=True))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        assert_same_function(analysis(x), analysis.reference_forward(x), atol=1e-5)
        assert_same_function(synthesis(y), synthesis.reference_forward(y), atol=1e-6)
    with torch.inference_mode():
        assert_same_function(synthesis(y), synthesis.reference_forward(y), atol=1e-6)


def test_parameters_are_those_of_the_plain_layers():
    model = _model(latent_dims=7)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["analysis_transform.conv_1.weight"] == (20, 1, 5, 5)
    assert shapes["analysis_transform.conv_2.weight"] == (50, 20, 5, 5)
    assert shapes["analysis_transform.fc_1.weight"] == (500, 2450)
    assert shapes["synthesis_transform.fc_2.weight"] == (2450, 500)
    assert shapes["synthesis_transform.conv_1.weight"] == (50, 20, 5, 5)
    assert shapes["synthesis_transform.conv_2.weight"] == (20, 1, 5, 5)
    assert len(shapes) == 8 + 8 + 1


def test_layer_hooks_see_every_layer():
    """A hook on a layer makes the transform call its layers (the reference path)."""
    model = _model().eval()
    seen = []
    handles = [
        layer.register_forward_hook(lambda mod, inp, out, name=name: seen.append(name))
        for name, layer in model.analysis_transform.named_children()
        if name != "act"
    ]
    with torch.no_grad():
        model.analysis_transform(torch.rand(2, 1, 28, 28))
    for handle in handles:
        handle.remove()
    assert seen == ["conv_1", "conv_2", "fc_1", "fc_2"]


def test_fused_adam_steps_like_the_default_adam():
    """Same gradients in, same parameters out: only how Adam runs has changed."""
    models = [_model(latent_dims=10) for _ in range(2)]
    optimizers = [
        make_optimizer(models[0], 1e-3),
        torch.optim.Adam(models[1].parameters(), lr=1e-3, eps=ADAM_EPS, foreach=False),
    ]
    assert optimizers[0].defaults["fused"]
    for step in range(3):
        grads = [
            torch.randn_like(p, generator=torch.Generator().manual_seed(step))
            for p in models[0].parameters()
        ]
        for model, optimizer in zip(models, optimizers, strict=True):
            for p, g in zip(model.parameters(), grads, strict=True):
                p.grad = g.clone()
            optimizer.step()
    for (name, a), b in zip(
        models[0].state_dict().items(), models[1].state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=name)


def test_training_losses_match_reference_path():
    """A few Adam steps on each path: the same loss trajectory up to float rounding."""
    x = images_to_unit(torch.randint(0, 256, (64, 28, 28), dtype=torch.uint8)).view(
        4, 16, 1, 28, 28
    )
    losses = []
    for fast in (False, True):
        model = _model(latent_dims=10)
        _set_fast(model, fast)
        optimizer = make_optimizer(model, 1e-3)
        g = torch.Generator().manual_seed(2)
        run = []
        for batch in x:
            loss = model.loss(model(batch, training=True, generator=g))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            run.append(float(loss.detach()))
        losses.append(run)
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)


def _train_with_threads(tmp_path, name: str, threads: int, threading: str):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        result = train(
            ModelConfig(latent_dims=8),
            TrainConfig(epochs=1, limit=300, val_limit=100, seed=3, threading=threading),
            tmp_path / f"{name}.safetensors",
            progress=False,
            log=lambda _: None,
        )
        assert torch.get_num_threads() == threads  # restored after training
    finally:
        torch.set_num_threads(previous)
    training = load_model(tmp_path / f"{name}.safetensors").metadata["training"]
    return result, training


@pytest.mark.parametrize("threading", ["shards", "intra-op"])
def test_two_threads_match_one_thread_and_repeat_exactly(tmp_path, threading):
    """Shards split each batch (same noise), intra-op threads split each operation."""
    one, _ = _train_with_threads(tmp_path, "one", 1, threading)
    two, training = _train_with_threads(tmp_path, "two", 2, threading)
    again, _ = _train_with_threads(tmp_path, "again", 2, threading)
    assert training["threading_used"] == threading and training["threads"] == 2
    a, b, c = (r.history[0] for r in (one, two, again))
    assert (b.loss, b.val_loss) == (c.loss, c.val_loss)
    assert two.model.fingerprint == again.model.fingerprint
    figures = ("loss", "rate", "distortion", "val_loss", "val_rate", "val_distortion")
    np.testing.assert_allclose(
        [getattr(b, f) for f in figures], [getattr(a, f) for f in figures], rtol=1e-5
    )


def test_the_default_threading_gives_the_same_numbers_whatever_the_load(tmp_path, monkeypatch):
    """The same command, seed and thread count: the same numbers on an idle and a busy machine;
    the mode is recorded in the model file and in every row of the history files."""
    assert TrainConfig().threading == DEFAULT_THREADING == "intra-op"
    runs = []
    for name, load in [("idle", 0.0), ("busy", 1000.0)]:
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, 0.0, 0.0))
        previous = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            out = tmp_path / f"{name}.safetensors"
            result = train(
                ModelConfig(latent_dims=8),
                TrainConfig(epochs=1, limit=300, val_limit=100, seed=3),
                out,
                progress=False,
                log=lambda _: None,
            )
        finally:
            torch.set_num_threads(previous)
        runs.append(result)
        assert load_model(out).metadata["training"]["threading_used"] == "intra-op"
        rows = json.loads(out.with_name(out.name + ".history.json").read_text())
        assert [(r["threading"], r["threads"]) for r in rows] == [("intra-op", 2)]
        assert "threading,threads" in out.with_name(out.name + ".history.csv").read_text()
    idle, busy = runs
    figures = ("loss", "rate", "distortion", "val_loss", "val_rate", "val_distortion")
    assert [getattr(idle.history[0], f) for f in figures] == [
        getattr(busy.history[0], f) for f in figures
    ]
    assert idle.model.fingerprint == busy.model.fingerprint


def test_auto_threading_follows_the_load(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    cores = os.cpu_count()
    monkeypatch.setattr(os, "getloadavg", lambda: (0.5 * cores, 0.0, 0.0))
    assert choose_threading("auto", 2, cpu) == "intra-op"
    monkeypatch.setattr(os, "getloadavg", lambda: (2.0 * cores + 1, 0.0, 0.0))
    assert choose_threading("auto", 2, cpu) == "shards"
    assert choose_threading("intra-op", 2, cpu) == "intra-op"
    assert choose_threading("auto", 1, cpu) == "intra-op"  # nothing to split
    assert choose_threading("shards", 2, cuda) == "intra-op"  # a GPU runs whole batches

    def unavailable():
        raise OSError("no load average here")

    monkeypatch.setattr(os, "getloadavg", unavailable)
    assert choose_threading("auto", 2, cpu) == "intra-op"


def test_unknown_threading_mode_is_refused():
    with pytest.raises(InputError, match="threading must be one of"):
        TrainConfig(threading="many")


# -- entropy coding ----------------------------------------------------------------------------

# sha256 over (2-byte length + bytes) of each per-digit string, and of the stream, written
# by the coder before it found prefixes by interval arithmetic (trial decodes).
GOLDEN_STRINGS = "e5b255fb2c03e51dc1a56f763cc5fdf9d423b9e7744accc6372f56c37c89ee1e"
GOLDEN_STREAM = "cb1ac430d38857b9a7af59f09fb89fb54768cae6fb83c8ffeb771a739d58b040"


def _golden_tables(dims: int = 12, width: int = 9, precision: int = 16) -> CodingTables:
    """Integer-only tables: peaked rows of several spreads, escape column last."""
    rows = []
    for d in range(dims):
        spread = 1 + d % 4
        center = width // 2 + (d % 3) - 1
        row = [max(1, (1 << 14) >> (abs(k - center) * 4 // spread)) for k in range(width)]
        row.append(1 + d)
        row[center] += (1 << precision) - sum(row)
        rows.append(row)
    counts = np.array(rows, dtype=np.int32)
    lower = np.array([-(width // 2) + (d % 2) for d in range(dims)], dtype=np.int32)
    return CodingTables(counts, lower, np.zeros(dims, np.float32), precision).validate()


def _golden_latents(tables: CodingTables, n: int = 400, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k = rng.integers(-3, 4, size=(n, tables.latent_dims)).astype(np.float64)
    k += tables.lower[None, :] + tables.width // 2
    escaped = rng.random((n, tables.latent_dims)) < 0.01
    k[escaped] = rng.integers(-300, 300, size=int(escaped.sum()))
    k[0, :3] = [2.0**40, -(2.0**24) - 1, 3.0e38]
    return k


def _digest(strings: list[bytes]) -> str:
    h = hashlib.sha256()
    for s in strings:
        h.update(len(s).to_bytes(2, "big") + s)
    return h.hexdigest()


def test_strings_equal_the_golden_output_of_the_unoptimised_coder():
    tables = _golden_tables()
    coder = LatentCoder(tables)
    symbols = coder.to_symbols(_golden_latents(tables))
    assert sum(len(v) for v in symbols.overflow) > 20  # escapes are exercised
    strings = coder.encode_strings(symbols, "byte")  # the byte strings of .mnc versions 1 and 2
    assert _digest(strings) == GOLDEN_STRINGS
    assert hashlib.sha256(coder.encode_stream(symbols)).hexdigest() == GOLDEN_STREAM
    decoded = coder.decode_strings(strings, granularity="byte")
    assert np.array_equal(decoded.indices, symbols.indices) and decoded.overflow == symbols.overflow
    bits = coder.encode_strings(symbols)
    assert bits == _reference_strings(coder, symbols, "bit")
    decoded = coder.decode_strings(bits)
    assert np.array_equal(decoded.indices, symbols.indices) and decoded.overflow == symbols.overflow


def _trial_decode_prefix(coder: LatentCoder, indices, overflow, info_bits: float) -> bytes:
    """The search the coder used before: try prefixes by decoding them."""
    encoder = coder._encode_digit(indices, overflow)
    full = np.asarray(encoder.get_compressed(), dtype=">u4").tobytes().rstrip(b"\0")
    for length in range(max(0, int(info_bits // 8) - 1), len(full)):
        prefix = full[:length]
        candidates = [prefix]
        value = int.from_bytes(prefix, "big") + 1
        if length and value < (1 << (8 * length)):
            candidates.append(value.to_bytes(length, "big"))
        for candidate in candidates:
            candidate = candidate.rstrip(b"\0")
            try:
                got, got_overflow = coder._decode_digit(_bytes_to_words(candidate))
            except DecodeError:
                continue
            if np.array_equal(got, indices) and got_overflow == overflow:
                return candidate
    return full


def _decodes_to(coder: LatentCoder, candidate: bytes, indices, overflow) -> bool:
    try:
        got, got_overflow = coder._decode_digit(_bytes_to_words(candidate))
    except DecodeError:
        return False
    return np.array_equal(got, indices) and got_overflow == overflow


def _trial_decode_bits(coder: LatentCoder, indices, overflow) -> bytes:
    """The shortest bit string by trial decodes: at each bit length, the prefix, then plus one."""
    encoder = coder._encode_digit(indices, overflow)
    full = np.asarray(encoder.get_compressed(), dtype=">u4").tobytes()
    value, size = int.from_bytes(full, "big"), 8 * len(full)
    for length in range(size + 1):
        prefix = value >> (size - length)
        for candidate in (prefix, prefix + 1):
            if candidate == 0:
                data = b""
            elif candidate < 1 << length:
                data = (candidate << (-length % 8)).to_bytes(-(-length // 8), "big").rstrip(b"\0")
            else:
                continue
            if _decodes_to(coder, data, indices, overflow):
                return data
    raise AssertionError("no prefix decodes")


def _reference_strings(coder: LatentCoder, symbols: Symbols, granularity: str) -> list[bytes]:
    if granularity == "bit":
        return [
            _trial_decode_bits(coder, symbols.indices[i], symbols.overflow[i])
            for i in range(symbols.indices.shape[0])
        ]
    info = coder.table_bits(symbols)
    return [
        _trial_decode_prefix(coder, symbols.indices[i], symbols.overflow[i], info[i])
        for i in range(symbols.indices.shape[0])
    ]


def _random_tables(rng: np.random.Generator, dims: int, width: int, precision: int) -> CodingTables:
    free = (1 << precision) - (width + 1)
    weights = rng.gamma(0.3, size=(dims, width + 1))
    counts = np.floor(weights / weights.sum(1, keepdims=True) * free).astype(np.int64) + 1
    counts[:, 0] += (1 << precision) - counts.sum(1)
    lower = rng.integers(-width, 1, size=dims).astype(np.int32)
    return CodingTables(counts.astype(np.int32), lower, np.zeros(dims, np.float32), precision)


@pytest.mark.parametrize("granularity", ["bit", "byte"])
@pytest.mark.parametrize("seed", range(6))
def test_interval_prefix_equals_trial_decoding_on_random_tables(seed, granularity):
    rng = np.random.default_rng(seed)
    dims, width = int(rng.integers(1, 40)), int(rng.integers(1, 40))
    tables = _random_tables(rng, dims, width, int(rng.integers(10, 17))).validate()
    coder = LatentCoder(tables)
    k = rng.integers(-2, width + 2, size=(150, dims)) + tables.lower[None, :]
    symbols = coder.to_symbols(k.astype(np.float64))
    expected = _reference_strings(coder, symbols, granularity)
    assert coder.encode_strings(symbols, granularity) == expected


@pytest.mark.parametrize("granularity", ["bit", "byte"])
def test_interval_prefix_equals_trial_decoding_on_real_digits(tiny_model, test_digits, granularity):
    codec = Codec(tiny_model)
    k, _ = codec.analyse(test_digits)
    symbols = codec.coder.to_symbols(k)
    expected = _reference_strings(codec.coder, symbols, granularity)
    assert codec.coder.encode_strings(symbols, granularity) == expected


def _reference_accepts(coder: LatentCoder, data: bytes, granularity: str) -> bool:
    """The decoder's check by trial decodes: decode, re-encode, search, compare."""
    try:
        indices, overflow = coder._decode_digit(_bytes_to_words(data))
    except DecodeError:
        return False
    if data.endswith(b"\0"):
        return False
    if granularity == "bit":
        return _trial_decode_bits(coder, indices, overflow) == data
    info = float(coder.table_bits(Symbols(indices[None], [overflow]))[0])
    return _trial_decode_prefix(coder, indices, overflow, info) == data


@pytest.mark.parametrize("granularity", ["bit", "byte"])
def test_decode_check_accepts_exactly_what_the_reference_accepts(granularity):
    tables = _golden_tables()
    coder = LatentCoder(tables)
    strings = coder.encode_strings(coder.to_symbols(_golden_latents(tables, n=60)), granularity)
    rng = np.random.default_rng(3)
    variants = []
    for s in strings:
        flipped = bytearray(s)
        flipped[int(rng.integers(len(s)))] ^= 1 << int(rng.integers(8))
        variants += [s, s + b"\x01", s + b"\0", s[:-1], bytes(flipped), rng.bytes(len(s))]
    for data in variants:
        try:
            coder.decode_strings([data], granularity=granularity)
            accepted = True
        except DecodeError:
            accepted = False
        assert accepted == _reference_accepts(coder, data, granularity), data.hex()


def test_decode_reports_the_first_bad_string():
    tables = _golden_tables()
    coder = LatentCoder(tables)
    strings = coder.encode_strings(coder.to_symbols(_golden_latents(tables, n=5)))
    strings[3] = strings[3] + b"\x07"
    with pytest.raises(DecodeError, match="string 3"):
        coder.decode_strings(strings)


# -- the benchmark suite -----------------------------------------------------------------------


def test_bench_markdown_keeps_one_section_per_cpu_kind(tmp_path):
    bench = load_bench_module("run")
    zen4 = {"cpu": "AMD EPYC", "cpu_flags": ["avx2", "avx512f", "avx512_bf16", "avx512_vnni"]}
    zen3 = {"cpu": "AMD EPYC", "cpu_flags": ["avx2"]}
    (s4, e4), (s3, e3) = bench.markers(zen4), bench.markers(zen3)
    assert s4 != s3 and bench.cpu_kind(zen3) == ("amd-epyc-avx2", "AMD EPYC, AVX2")
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(f"# Title\n\nintro\n\n{s3}\nold zen3\n{e3}\n\n## Other section\nkept\n")
    bench.write_markdown(path, f"{s4}\nzen4 figures\n{e4}\n")
    bench.write_markdown(path, f"{s4}\nnewer zen4 figures\n{e4}\n")
    text = path.read_text()
    assert "old zen3" in text and "newer zen4 figures" in text and "\nzen4 figures" not in text
    assert text.startswith("# Title\n\nintro") and "## Other section\nkept\n" in text
    fresh = tmp_path / "fresh.md"
    bench.write_markdown(fresh, f"{s3}\nx\n{e3}\n")
    assert s3 in fresh.read_text()


def test_bench_isa_caps_are_their_own_cpu_kind(monkeypatch):
    bench = load_bench_module("run")
    zen4 = {"cpu": "AMD EPYC", "cpu_flags": ["avx2", "avx512f", "avx512_bf16", "avx512_vnni"]}
    kinds = {bench.cpu_kind({**zen4, "isa_cap": cap}) for cap in (None, *bench.ISA_CAPS)}
    assert len(kinds) == 3 and len({slug for slug, _ in kinds}) == 3
    assert bench.cpu_kind({**zen4, "isa_cap": "avx2"})[1] == (
        "AMD EPYC, AVX2 kernels (capped on AVX-512 + AVX512-BF16 + VNNI)"
    )
    for name in {key for env in bench.ISA_CAPS.values() for key in env}:
        monkeypatch.delenv(name, raising=False)
    assert bench.isa_cap_in_force() is None
    for cap, env in bench.ISA_CAPS.items():
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        assert bench.isa_cap_in_force() == cap
        assert bench.child_env()["ONEDNN_MAX_CPU_ISA"] == env["ONEDNN_MAX_CPU_ISA"]


@pytest.mark.slow
def test_bench_quick_runs(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        str(REPO / "bench" / "run.py"),
        "--quick",
        "--no-peer",
        "--quiet",
        "--markdown",
        str(tmp_path / "BENCHMARKS.md"),
        "--results-dir",
        str(tmp_path / "results"),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (result_file,) = (tmp_path / "results").glob("bench-quick-*.json")
    results = json.loads(result_file.read_text())
    assert not results["peer"]["available"]
    names = {row["name"]: row for row in results["figures"]}
    for name in (
        "training epoch (incl. validation)",
        "encode, per-digit strings",
        "encode, the default model, per-digit strings",
        "decode, the default model, per-digit strings",
        "peak RSS, training",
    ):
        assert names[name]["ours"]["default threads"]["median"] > 0
    machine = results["machine"]
    assert machine["cpu"] and isinstance(machine["cpu_flags"], list) and machine["cpu_flags_sha256"]
    assert results["ours"]["default threads"]["code"][0]["engine"]
    text = (tmp_path / "BENCHMARKS.md").read_text()
    bench = load_bench_module("run")
    start, end = bench.markers(machine)
    assert start in text and end in text and "ours only" in text
    assert f"stack: {bench.cpu_kind(machine)[1]}" in text


def test_floor_counts_the_seed_networks_multiply_adds():
    """bench/floor.py's per-layer count matches the layer shapes (2.573 M per transform)."""
    floor = load_bench_module("floor")
    model = CompressionModel(ModelConfig())
    analysis = dict(floor.layer_macs(model.analysis_transform, torch.zeros(1, 1, 28, 28)))
    synthesis = dict(floor.layer_macs(model.synthesis_transform, torch.zeros(1, 50)))
    assert analysis == {
        "conv_1": 14 * 14 * 20 * 25,
        "conv_2": 7 * 7 * 50 * 20 * 25,
        "fc_1": 2450 * 500,
        "fc_2": 500 * 50,
    }
    assert synthesis == {
        "fc_1": 50 * 500,
        "fc_2": 500 * 2450,
        "conv_1": 7 * 7 * 50 * 20 * 25,
        "conv_2": 14 * 14 * 20 * 25,
    }
    assert sum(analysis.values()) == sum(synthesis.values()) == 2_573_000


def test_the_readme_speed_table_keeps_the_newest_full_run_of_each_cpu_kind(tmp_path):
    bench = load_bench_module("run")

    def result(name, cpu, flags, quick=False, peer=True, encode=1.5):
        record = {
            "quick": quick,
            "machine": {"cpu": cpu, "cpu_flags": flags},
            "peer_runs": {"train": [], "code": [{}] if peer else []},
            "figures": [
                {"key": "encode", "ratio": {"default threads": encode, "1 thread": 0.5}},
                {"key": "decode", "ratio": {"default threads": 1.25}},
            ],
        }
        (tmp_path / name).write_text(json.dumps(record))

    zen4 = ["avx2", "avx512f", "avx512_bf16"]
    result("bench-2026-01-01T000000Z.json", "AMD EPYC", zen4, encode=1.1)
    result("bench-2026-02-01T000000Z.json", "AMD EPYC", zen4, encode=1.6)
    result("bench-2026-03-01T000000Z.json", "AMD EPYC", zen4, peer=False, encode=9.0)
    result("bench-2026-03-02T000000Z.json", "AMD EPYC", [], encode=8.0)  # flags not kept
    result("bench-quick-2026-04-01T000000Z.json", "AMD EPYC", zen4, quick=True, encode=7.0)
    result("bench-2026-02-02T000000Z.json", "Intel Xeon", ["avx2", "amx_bf16"], encode=2.0)
    table = bench.readme_section(tmp_path)
    lines = table.splitlines()
    assert lines[0] == bench.README_START and lines[-1] == bench.README_END
    rows = [line for line in lines if line.startswith("| AMD") or line.startswith("| Intel")]
    assert len(rows) == 2
    (zen_row,) = [row for row in rows if "AVX512-BF16" in row]
    assert "bench-2026-02-01T000000Z.json" in zen_row and "| 1.60x | 1.25x |" in zen_row
    assert "2.00x" in table and "9.00x" not in table and "8.00x" not in table


def test_the_training_kernels_bench_switches_each_variant_and_restores_it():
    """bench/training_kernels.py: a one-block smoke run of each variant (no timing asserted)."""
    bench = load_bench_module("training_kernels")
    fast = cpu_kernels.ConvFromOne.apply
    rows = [bench.measure(name, setter, 1, 1) for name, setter in bench.variants().items()]
    assert cpu_kernels.ConvFromOne.apply == fast  # switched back on at the end
    assert cpu_kernels.DENSE_ON_ONEDNN and cpu_kernels.WIDE_WEIGHT_GRADIENT_ON_MKL
    assert [row["variant"] for row in rows] == [
        "conv_1 weight gradient",
        "dense layers on oneDNN",
        "500->2450 weight gradient by MKL",
        "memory policy",
    ]
    assert all(row["on_ms_per_step"] > 0 and row["off_ms_per_step"] > 0 for row in rows)
    result = {
        "machine": {"when": "now", "cpu": "a CPU", "cpu_flags": ["avx2"]},
        "kernel_caps": {},
        "threads": 2,
        "blocks": 1,
        "steps": 1,
        "rows": rows,
    }
    text = bench.markdown(result)
    assert text.startswith(bench.START) and bench.END in text and "memory policy" in text
