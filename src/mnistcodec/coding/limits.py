"""The limits a model file must keep, in one table the writer and the loader share.

The loader (:func:`mnistcodec.coding.model_files.load_model_bytes`) refuses a
file that breaks any of them; training checks a configuration against the
same table (:func:`check_model_config`) before any work starts, so no run
ends in a model that cannot be loaded.
"""

from __future__ import annotations

import math

import torch

from mnistcodec.errors import InputError, MnistCodecError
from mnistcodec.model.compression_model import ModelConfig
from mnistcodec.model.variable_rate import make_model
from mnistcodec.storage.model_container import MAX_HEADER_BYTES, MAX_MODEL_BYTES

#: Largest latent size a model file may declare.
MAX_LATENT_DIMS = 1 << 16
#: Largest learning rate training accepts (Adam's steps are about this size).
MAX_LEARNING_RATE = 1.0
#: Largest magnitude of a stored log-gain or per-level log-scale (e^16 is about 9 million:
#: beyond it latents overflow the coder's integers). Trained models stay within 8.
MAX_LOG_GAIN = 16.0
#: Largest magnitude of a coding table's offset or lower bound.
MAX_TABLE_VALUE = 1 << 20

__all__ = [
    "MAX_HEADER_BYTES",
    "MAX_LATENT_DIMS",
    "MAX_LEARNING_RATE",
    "MAX_LOG_GAIN",
    "MAX_TABLE_VALUE",
    "MAX_MODEL_BYTES",
    "check_learning_rate",
    "check_model_config",
    "latent_dims_problem",
]


def latent_dims_problem(value: object) -> str | None:
    """Why ``value`` is not a latent size a model file may have, or ``None``."""
    if type(value) is not int or not 1 <= value <= MAX_LATENT_DIMS:
        return f"latent_dims = {value!r:.40} (expected an integer from 1 to {MAX_LATENT_DIMS})"
    return None


def model_values_problem(state: dict, tables: list) -> str | None:
    """Why a model's stored values cannot code (a degenerate model), or ``None``.

    Each log-gain and per-level log-scale is within :data:`MAX_LOG_GAIN`; the
    levels are distinct operating points, ordered by lambda, so the mean
    log-gain over the latents rises strictly from level to level (equal gains
    make every level the same; all-zero gains decode to blank digits); every
    table's offsets and lower bounds are within :data:`MAX_TABLE_VALUE`.
    """
    for key, tensor in state.items():
        if "log_gains" in key or "level_log_scales" in key:
            largest = float(tensor.abs().max()) if tensor.numel() else 0.0
            if largest > MAX_LOG_GAIN:
                return f"{key} holds {largest:.4g}, beyond the limit of {MAX_LOG_GAIN:g}"
        if key.endswith("log_gains") and tensor.ndim == 2 and tensor.shape[0] > 1:
            steps = torch.diff(tensor.to(torch.float64).mean(dim=1))
            if not bool((steps > 0).all()):
                level = int(torch.nonzero(steps <= 0)[0]) + 1
                return (
                    f"{key}: level {level}'s mean log-gain does not rise above level "
                    f"{level - 1}'s (the levels must be distinct, ordered by lambda)"
                )
    for table in tables:
        largest = max(float(abs(table.offsets).max()), float(abs(table.lower).max()))
        if largest > MAX_TABLE_VALUE:
            return f"a coding table holds {largest:.4g}, beyond the limit of {MAX_TABLE_VALUE}"
    return None


def check_model_config(config: ModelConfig) -> None:
    """Refuse a configuration whose model file the loader would refuse, before any work.

    The latent size, a finite lambda and the weights' size (from a build on
    PyTorch's meta device: no memory) against :data:`MAX_MODEL_BYTES`.
    """
    problem = latent_dims_problem(config.latent_dims)
    if problem is not None:
        raise InputError(f"cannot train this model: {problem}")
    if not math.isfinite(config.lmbda):
        raise InputError(f"cannot train this model: lambda must be finite, got {config.lmbda}")
    try:
        with torch.device("meta"):
            model = make_model(config)
    except (TypeError, ValueError, RuntimeError, MnistCodecError) as exc:
        raise InputError(f"cannot train this model: {exc}") from None
    weight_bytes = sum(4 * tensor.numel() for tensor in model.state_dict().values())
    if weight_bytes > MAX_MODEL_BYTES - MAX_HEADER_BYTES:
        raise InputError(
            f"cannot train this model: its weights take {weight_bytes} bytes, more than a model "
            f"file may hold ({MAX_MODEL_BYTES} bytes)"
        )


def check_learning_rate(lr: float, what: str = "learning rate") -> None:
    """A learning rate must be positive, finite and at most :data:`MAX_LEARNING_RATE`."""
    if not 0 < lr <= MAX_LEARNING_RATE:
        raise InputError(f"{what} must be positive and at most {MAX_LEARNING_RATE}, got {lr}")


#: Most digits one call to :meth:`Codec.sample` decodes (784 MiB of digits).
MAX_SAMPLES = 1 << 20
#: Longest random string :meth:`Codec.sample` draws per digit.
MAX_SAMPLE_BYTES = 1 << 16
#: Largest seed :meth:`Codec.sample` takes (2^63 - 1, as ``train --seed``).
MAX_SAMPLE_SEED = (1 << 63) - 1


def check_sample(n: int, seed: int, nbytes: int) -> None:
    """Refuse a sample count, seed or string length out of range (one clear error)."""
    if not 1 <= n <= MAX_SAMPLES:
        raise InputError(f"number of samples must be at least 1 and at most {MAX_SAMPLES}, got {n}")
    if not 0 <= nbytes <= MAX_SAMPLE_BYTES:
        raise InputError(
            f"bytes per string must be non-negative and at most {MAX_SAMPLE_BYTES}, got {nbytes}"
        )
    if not 0 <= seed <= MAX_SAMPLE_SEED:
        raise InputError(f"seed must be from 0 to {MAX_SAMPLE_SEED}, got {seed}")
