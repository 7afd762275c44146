"""Evaluation of a frozen model on a dataset split.

Figures (all per digit, averaged over the split):

* ``rate_bound_bits``: the training objective's rate, ``-log2 p~(y + u)`` with
  fixed-seed uniform noise ``u``;
* ``info_bits``: information content of the quantised latents under the
  discretised prior, ``-log2 P(y^)``;
* ``string_bits``: real length of the per-digit strings, the bit strings of
  ``.mnc`` version 3 (the container stores each string's length beside it);
  ``byte_string_bits``: the same digits as the byte strings of versions 1 and
  2 (8 x bytes);
* ``stream_bits_per_digit``: length of one stream holding every digit, over N;
* ``psnr_db``: mean of per-digit PSNRs of the decoded uint8 digits;
  ``psnr_of_mean_mse_db``: PSNR of the mean MSE over the split;
* ``mad``: mean absolute error on [0, 1] of the model's float reconstruction of
  the quantised latents (the seed's validation distortion); ``mad_decoded``: the
  same for the decoded uint8 digits.

A variable-rate model is evaluated at one level (``level``, default its
reference level; the result then holds ``level`` and ``lmbda``), or at every
level by :func:`evaluate_levels`. ``precision`` is that of the codec
(:class:`~mnistcodec.coding.api.Codec`); the model's float terms are computed at
the same precision, and the result records it (``precision``: ``fp32``,
``bf16`` or ``mixed``, the conformant decoder). At a codebook level
(:mod:`mnistcodec.coding.codebook_levels`) no network runs: both rates are the
index's information content and ``mad`` is that of the decoded codewords.
"""

from __future__ import annotations

import numpy as np
import torch

from mnistcodec.coding.api import Codec
from mnistcodec.coding.container import string_bits
from mnistcodec.coding.model_files import LoadedModel
from mnistcodec.experiments import metrics
from mnistcodec.model.precision import FP32, TransformPrecision, model_precision
from mnistcodec.model.transforms import images_to_unit
from mnistcodec.storage.digits import check_digits


@torch.no_grad()
def model_terms(
    loaded: LoadedModel,
    images: np.ndarray,
    seed: int = 0,
    batch_size: int = 1000,
    level: int | None = None,
    precision: TransformPrecision = FP32,
) -> dict[str, float]:
    """Rate bound, information content and float MAD over ``images`` (at ``level``)."""
    model = loaded.model.eval()
    with model_precision(model, precision):
        return _model_terms(loaded, images, seed, batch_size, level)


def _model_terms(
    loaded: LoadedModel, images: np.ndarray, seed: int, batch_size: int, level: int | None
) -> dict[str, float]:
    model = loaded.model
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    bound = info = mad = 0.0
    n = images.shape[0]
    for start in range(0, n, batch_size):
        x = images_to_unit(torch.from_numpy(images[start : start + batch_size]).to(device))
        if loaded.variable_rate:
            y = model.analysis_transform(x)
            level = model.reference_level if level is None else model.check_level(level)
            levels = torch.full((y.shape[0],), level, device=device)
            _, bound_bits = model.entropy_bottleneck(y, levels, True, g)
            y_hat, info_bits = model.entropy_bottleneck(y, levels, False)
            x_hat = model.synthesis_transform(y_hat, levels)
        else:
            y = model.analysis_transform(x)
            _, bound_bits = model.entropy_bottleneck(y, training=True, generator=g)
            y_hat, info_bits = model.entropy_bottleneck(y, training=False)
            x_hat = model.synthesis_transform(y_hat)
        bound += float(bound_bits.sum())
        info += float(info_bits.sum())
        mad += float(torch.abs(x - x_hat).mean(dim=(1, 2, 3)).sum())
    return {"rate_bound_bits": bound / n, "info_bits": info / n, "mad": mad / n}


def evaluate(
    loaded: LoadedModel,
    images: np.ndarray,
    coding: bool = True,
    seed: int = 0,
    level: int | None = None,
    precision: str = "auto",
) -> dict:
    """Every figure of the module docstring; ``coding=False`` skips the entropy coder."""
    images = check_digits(images)
    device = next(loaded.model.parameters()).device
    codec = Codec(loaded, device=device, precision=precision)
    level = int(codec.digit_levels(level, 1)[0])
    result: dict = {"n": int(images.shape[0]), "precision": codec.precision.name}
    if loaded.variable_rate:
        result.update({"level": level, "lmbda": codec.lambdas[level]})
    if level in loaded.codebooks:  # no network: the rate is the index's, exactly
        _, info = codec.analyse(images, level)
        terms = {"rate_bound_bits": float(info.mean()), "info_bits": float(info.mean())}
        result.update(terms, mad=metrics.mad(images, codec.reconstruct(images, level)))
    else:
        result.update(model_terms(loaded, images, seed, level=level, precision=codec.precision))
    levels = (level,) if loaded.variable_rate else ()
    if coding:
        strings, _ = codec.compress(images, *levels)
        decoded = codec.decompress(strings, levels=level)
        stream, _ = codec.compress_stream(images, *levels)
        result["string_bits"] = float(np.mean([string_bits(s) for s in strings]))
        # The same digits as the byte strings of .mnc versions 1 and 2, for comparison.
        byte_strings, _ = codec.compress(images, *levels, granularity="byte")
        result["byte_string_bits"] = float(np.mean([8 * len(s) for s in byte_strings]))
        result["stream_bits_per_digit"] = 8 * len(stream) / max(1, images.shape[0])
        result["string_overhead_bits"] = result["string_bits"] - result["info_bits"]
    else:
        decoded = codec.reconstruct(images, level)
    result["psnr_db"] = metrics.mean_psnr(images, decoded)
    result["psnr_of_mean_mse_db"] = metrics.psnr_of_mean_mse(images, decoded)
    result["mad_decoded"] = metrics.mad(images, decoded)
    return result


def evaluate_levels(
    loaded: LoadedModel,
    images: np.ndarray,
    coding: bool = True,
    seed: int = 0,
    precision: str = "auto",
) -> list[dict]:
    """:func:`evaluate` at every level of the model, in level order."""
    return [
        evaluate(loaded, images, coding, seed, level, precision) for level in range(loaded.levels)
    ]


def format_evaluation(result: dict[str, float]) -> str:
    """Human-readable lines, labelled as in the module docstring."""
    lines = [f"digits evaluated            {result['n']}"]
    if "level" in result:
        lines.append(
            f"level                       {result['level']} (lambda {result['lmbda']:.1f})"
        )
    labels = [
        ("rate_bound_bits", "rate bound (noisy)", "bits/digit"),
        ("info_bits", "information content", "bits/digit"),
        ("string_bits", "real string length", "bits/digit (per-digit bit strings)"),
        ("byte_string_bits", "as byte strings", "bits/digit (.mnc versions 1 and 2)"),
        ("stream_bits_per_digit", "stream length", "bits/digit (one stream)"),
        ("psnr_db", "PSNR", "dB (mean of per-digit PSNRs)"),
        ("psnr_of_mean_mse_db", "PSNR of mean MSE", "dB"),
        ("mad", "distortion (MAD)", "(float reconstruction, [0,1])"),
        ("mad_decoded", "MAD of decoded digits", "([0,1])"),
    ]
    for key, label, unit in labels:
        if key in result:
            lines.append(f"{label:<28}{result[key]:.4f} {unit}")
    return "\n".join(lines)
