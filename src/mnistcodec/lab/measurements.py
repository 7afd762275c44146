"""The report's numbers: every measurement the page and its figures show, and nothing drawn.

Each function takes models, digits or result rows and returns numbers or
arrays; :mod:`mnistcodec.lab.figures` draws them and the templates word them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from mnistcodec.coding.api import Codec
from mnistcodec.coding.container import string_bits
from mnistcodec.coding.model_files import LoadedModel
from mnistcodec.coding.zoo import DEFAULT_MODEL, resolve_model, shipped_models
from mnistcodec.experiments import metrics
from mnistcodec.experiments.baselines import codec_status, points_to_rows, run_baselines
from mnistcodec.experiments.evaluate import evaluate
from mnistcodec.experiments.rd_limit import NERD_MNIST
from mnistcodec.experiments.sweep import TrialResult, TrialSpec, available_cores
from mnistcodec.experiments.trivial_codecs import Floor, below_floor
from mnistcodec.lab.protocol import EXAMPLE_BATCH, ReportProtocol
from mnistcodec.model.compression_model import CompressionModel, ModelConfig
from mnistcodec.model.priors import (
    NoisyDeepFactorized,
    NoisyLogistic,
    bits_from_log_prob,
    make_prior,
)
from mnistcodec.model.summary import model_summary
from mnistcodec.model.transforms import images_to_unit
from mnistcodec.storage.atomic import atomic_write_text

DENSITY_SCALES = tuple(float(s) for s in np.linspace(0.01, 2.0, 10))
"""The lab's prior scales, ``linspace(.01, 2, 10)`` (Figure 2.1.2)."""


# ----------------------------------------------------------------------------- lab section 2.1


@torch.no_grad()
def untrained_reconstruction(model: CompressionModel, image: np.ndarray, seed: int = 0) -> dict:
    """x through the noisy latents and back: ``x~ = synthesis(y + u)`` (lab Fig. 2.1.3).

    Returns ``{"distortion": MAD on [0, 1], "rate_bits": bound, "x_hat": float (28, 28),
    "x_tilde": uint8 (28, 28)}``.
    """
    model = model.cpu()
    image = np.asarray(image, dtype=np.uint8).reshape(28, 28)
    x = images_to_unit(torch.from_numpy(image.copy()))
    out = model(x, training=True, generator=torch.Generator().manual_seed(seed))
    x_tilde = torch.clamp(torch.round(out.x_hat * 255), 0, 255).to(torch.uint8).view(28, 28).numpy()
    return {
        "distortion": float(torch.mean(torch.abs(x - out.x_hat))),
        "rate_bits": float(out.rate_bits[0]),
        "x_hat": out.x_hat.view(28, 28).numpy(),
        "x_tilde": x_tilde,
    }


@torch.no_grad()
def untrained_steps(test_images: np.ndarray, seed: int) -> tuple[dict, dict]:
    """Lab 2.1 step by step with untrained transforms (latent_dims = 10).

    Returns ``(numbers, reconstruction)``: the numbers of results.json's
    ``lab_2_1`` (and the model summary), and :func:`untrained_reconstruction` of test digit 0.
    """
    torch.manual_seed(seed)
    trainer10 = CompressionModel(ModelConfig(latent_dims=10)).eval()
    x_uint8 = test_images[0]
    x = images_to_unit(torch.from_numpy(x_uint8.copy()))
    g = torch.Generator().manual_seed(seed)
    y = trainer10.analysis_transform(x)
    u = torch.rand(y.shape, generator=g) - 0.5
    y_tilde = y + u
    lab_prior = NoisyLogistic(10)
    lab_prior.log_scale.copy_(torch.log(torch.linspace(0.01, 2.0, 10)))
    lab_rate = float(bits_from_log_prob(lab_prior.log_prob(y_tilde))[0])
    own_rate = float(bits_from_log_prob(trainer10.prior.log_prob(y_tilde))[0])
    untrained = untrained_reconstruction(trainer10, x_uint8, seed=seed)
    batch = images_to_unit(torch.from_numpy(test_images[:EXAMPLE_BATCH].copy()))
    out = trainer10(batch, training=True, generator=torch.Generator().manual_seed(seed))
    numbers = {
        "x": {
            "dtype": str(x_uint8.dtype),
            "shape": list(x_uint8.shape),
            "index": "test digit 0",
            "float_input_shape": list(x.shape),
            "float_input_dtype": str(x.dtype).removeprefix("torch."),
        },
        "y": {
            "type": type(y).__name__,
            "dtype": str(y.dtype).removeprefix("torch."),
            "shape": list(y.shape),
            "values": [round(float(v), 4) for v in y[0]],
        },
        "noise": {
            "u": [round(float(v), 4) for v in u[0]],
            "y_tilde": [round(float(v), 4) for v in y_tilde[0]],
            "y_rounded": [float(v) for v in torch.round(y[0])],
        },
        "rate_lab_prior_bits": lab_rate,
        "rate_unit_scale_prior_bits": own_rate,
        "untrained_distortion": untrained["distortion"],
        "untrained_rate_bits": untrained["rate_bits"],
        "example_batch": {
            "size": EXAMPLE_BATCH,
            "rate_bits": float(out.rate),
            "distortion": float(out.distortion),
            "y_shape": list(out.y.shape),
        },
        "summary_latent10": model_summary(trainer10),
    }
    return numbers, untrained


@torch.no_grad()
def prior_family_densities(
    family: str,
    scales: Sequence[float] = DENSITY_SCALES,
    lim: float = 6.0,
    points: int = 501,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy densities of one family, one column per scale: ``(t (P,), p (P, S))``.

    The parametric families get their scale directly; the deep factorized
    density has no scale parameter, so each column is a freshly initialised
    one with ``init_scale`` = the scale (biases drawn with ``seed``).
    """
    scales = torch.tensor(list(scales), dtype=torch.float64)
    t = torch.linspace(-lim, lim, points, dtype=torch.float64)
    if family == NoisyDeepFactorized.family:
        columns = []
        for scale in scales.tolist():
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                prior = NoisyDeepFactorized(1, init_scale=scale).double()
            columns.append(prior.prob(t[:, None])[:, 0])
        p = torch.stack(columns, dim=1)
    else:
        prior = make_prior(family, len(scales)).double()
        prior.log_scale.copy_(torch.log(scales))
        p = prior.prob(t[:, None].expand(-1, len(scales)))
    return t.numpy(), p.numpy()


def prior_densities(
    families: Sequence[str], scales: Sequence[float] = DENSITY_SCALES, lim: float = 6.0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """:func:`prior_family_densities` of each family (lab Fig. 2.1.2, one panel per family)."""
    return {family: prior_family_densities(family, scales, lim) for family in families}


def initial_bits_per_latent(families: Sequence[str], seed: int) -> dict[str, float]:
    """Bits a freshly initialised prior charges for a latent at its mode (where untrained latents sit)."""
    out = {}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for family in families:
            prior = make_prior(family, 1).double()
            with torch.no_grad():
                mode = prior.quantization_offset().view(1, 1)
                out[family] = float(-torch.log2(prior.prob(mode))[0, 0])
    return out


@torch.no_grad()
def learned_prior_densities(
    models: Mapping[str, LoadedModel], dims: int = 4, lim: float | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The trained noisy densities of a few latent dimensions of each model.

    The dimensions chosen are those with the widest densities (the largest
    information content under the model's own prior), shown on
    ``[-lim, lim]`` (default: wide enough for their 0.1 % to 99.9 % quantiles).
    Returns ``label -> (t (801,), p (801, dims), chosen dimensions)``.
    """
    out = {}
    for label, loaded in models.items():
        prior64 = copy.deepcopy(loaded.model.prior).to(device="cpu", dtype=torch.float64)
        lo = prior64.quantile(torch.full((prior64.latent_dims,), 1e-3, dtype=torch.float64)).numpy()
        hi = prior64.quantile(
            torch.full((prior64.latent_dims,), 1 - 1e-3, dtype=torch.float64)
        ).numpy()
        chosen = np.argsort(lo - hi)[:dims]
        edge = np.max(np.abs(np.concatenate([lo[chosen], hi[chosen]])))
        half = float(lim if lim is not None else max(3.0, edge + 1.0))
        t = torch.linspace(-half, half, 801, dtype=torch.float64)
        p = prior64.prob(t[:, None].expand(-1, prior64.latent_dims)).numpy()
        out[label] = (t.numpy(), p[:, chosen], chosen)
    return out


# ----------------------------------------------------------------------------- lab sections 3 and 5


def code_batch(loaded: LoadedModel, images: np.ndarray) -> dict:
    """Compress ``images`` with a frozen model, decompress, and measure each digit.

    Returns ``{"strings": [bytes], "hex": [str], "string_bits", "info_bits",
    "psnr_db" (lists), "reconstructions": uint8 array, "decoded_equals_reconstruction":
    whether the decoded digits equal the model's reconstruction of the rounded latents}``.
    """
    codec = Codec(loaded)
    images = np.asarray(images, dtype=np.uint8).reshape(-1, 28, 28)
    strings, info = codec.compress(images)
    decoded = codec.decompress(strings)
    psnr = metrics.psnr_per_image(images, decoded)
    return {
        "strings": strings,
        "hex": [s.hex() for s in strings],
        "string_bits": [float(string_bits(s)) for s in strings],
        "info_bits": [float(v) for v in info],
        "psnr_db": [float(v) for v in psnr],
        "reconstructions": decoded,
        "decoded_equals_reconstruction": bool(np.array_equal(decoded, codec.reconstruct(images))),
    }


def generative_samples(
    loaded: LoadedModel, count: int = 16, nbytes: int = 8, seed: int = 0
) -> tuple[np.ndarray, int]:
    """Random ``nbytes``-byte strings decoded with the integrity check off (lab section 5).

    The lab draws ``os.urandom(8)``; strings here come from a seeded generator
    (:meth:`~mnistcodec.coding.api.Codec.sample_latents`) so a report is
    reproducible. Returns ``(digits uint8 (count, 28, 28), number of strings redrawn)``.
    """
    codec = Codec(loaded)
    latents, redrawn = codec.sample_latents(count, seed=seed, nbytes=nbytes)
    return codec.synthesise(latents), redrawn


def shipped_comparison(images: np.ndarray) -> list[dict]:
    """Evaluate every shipped pretrained model on ``images`` (this run's digits)."""
    rows = []
    for name in shipped_models():
        loaded = resolve_model(name)
        rows.append(
            {
                "name": name,
                "lmbda": loaded.config.lmbda,
                "training_command": loaded.metadata.get("training_command", ""),
                "measured": evaluate(loaded, images),
                "recorded_full_test": loaded.metadata.get("evaluation", {}),
            }
        )
    return rows


def shipped_levels(name: str = DEFAULT_MODEL) -> list[dict]:
    """A shipped variable-rate model's recorded evaluation at every level, or ``[]``.

    The figures are those the shipped file records (all 10,000 MNIST test
    digits, real per-digit strings): one row per level with ``lmbda`` (rounded to a whole
    number, as the figures show it).
    """
    if name not in shipped_models():
        return []
    rows = resolve_model(name).metadata.get("evaluation_levels") or []
    return [{**r, "lmbda": float(round(r["lmbda"]))} for r in rows]


def shipped_codebooks(name: str = DEFAULT_MODEL) -> list[dict]:
    """A shipped model's codebook levels (model format 2): ``[{"level", "codewords"}]``, or ``[]``."""
    if name not in shipped_models():
        return []
    books = resolve_model(name).codebooks
    return [{"level": level, "codewords": books[level].size} for level in sorted(books)]


def floor_summary(trivial: Sequence[Mapping], curves: Mapping[str, Sequence[Mapping]]) -> dict:
    """The codecs without a network, their floor, and each curve's points under it.

    ``trivial``: rows of :func:`mnistcodec.experiments.trivial_codecs.measure_trivial_codecs`;
    ``curves``: name -> rows with ``string_bits`` and ``psnr_db``. Returns
    ``trivial_codecs``, ``floor`` (its three numbers), ``below`` (name -> the rows
    under the floor, with ``floor_reason`` and ``floor_gap_db``), ``checked`` (name ->
    number of points) and the quoted ``rd_estimate``.
    """
    floor = Floor.from_points(trivial)
    return {
        "trivial_codecs": list(trivial),
        "floor": {
            "mean_psnr_db": floor.mean_psnr_db,
            "class_bits": floor.class_bits,
            "class_psnr_db": floor.class_psnr_db,
        },
        "below": {name: below_floor(floor, rows) for name, rows in curves.items()},
        "checked": {name: len(rows) for name, rows in curves.items()},
        "rd_estimate": NERD_MNIST.as_dict(),
    }


# ----------------------------------------------------------------------------- classical codecs


def baselines(
    images: np.ndarray,
    protocol: ReportProtocol,
    cache: Path,
    force: bool,
    progress: bool,
) -> tuple[dict, str | None]:
    """Classical codecs on ``images``, cached by settings and imagecodecs version.

    Returns ``(data, name of the cache file it came from, or None when measured now)``.
    """
    import imagecodecs  # lazy: optional dependency (mnistcodec[baselines]), needed only here

    qualities = {name: list(q) for name, q in protocol.baseline_qualities}
    settings = {
        "n": int(images.shape[0]),
        "codecs": list(protocol.baseline_codecs) if protocol.baseline_codecs else None,
        "qualities": qualities,
        "imagecodecs": imagecodecs.__version__,
        "digits_sha256": hashlib.sha256(images.tobytes()).hexdigest(),
    }
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    path = cache / f"baselines-{key}.json"
    if path.is_file() and not force:
        try:
            data = json.loads(path.read_text())
            if data.get("settings") == settings:
                return data, path.name
        except ValueError:
            pass
    skipped: dict[str, str] = {}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        points = run_baselines(
            images,
            codecs=protocol.baseline_codecs,
            qualities=qualities or None,
            progress=progress,
            workers=available_cores(),
            skipped=skipped,
        )
    status = codec_status()
    data = {
        "settings": settings,
        "rows": points_to_rows(points),
        "skipped": skipped,
        "seconds": time.perf_counter() - t0,
        "status": {k: v for k, v in status.items() if v},
    }
    atomic_write_text(path, json.dumps(data, indent=2))
    return data, None


# ----------------------------------------------------------------------------- result rows


def rows_for(results: Mapping[str, TrialResult], specs: Sequence[TrialSpec]) -> list[dict]:
    """The result rows of ``specs`` that were trained, in the order of ``specs``."""
    return [results[s.key].row() for s in specs if s.key in results]
