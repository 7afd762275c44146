"""The lab's figures as PNG files (matplotlib, Agg backend): drawing only.

Each function takes numbers or arrays (measured by
:mod:`mnistcodec.lab.measurements` or read from result rows), writes one PNG
atomically to ``out`` and returns its path. No function here runs a model,
codes a digit or evaluates anything. The figures' words come from a
language's catalogue (``words=Words("fr")``, :mod:`mnistcodec.lab.words`;
English by default), and so do their numbers' separators. The
rate-distortion figures live in :mod:`mnistcodec.lab.curves` and are
re-exported here::

    from mnistcodec.lab import figures, measurements
    figures.plot_prior_densities(measurements.prior_densities(["logistic"]), measurements.DENSITY_SCALES,
                                 "priors.png")                                # lab Fig. 2.1.2
    coded = measurements.code_batch(loaded, test[48:64])
    figures.plot_digit_grid(test[48:64], coded["reconstructions"], coded["string_bits"],
                            coded["info_bits"], coded["psnr_db"], "grid.png")  # Fig. 3.0.1

Result rows (``learned``) are dicts with at least ``lmbda``, ``latent_dims``,
``prior``, ``string_bits``, ``info_bits`` and ``psnr_db`` (the rows of
:func:`mnistcodec.experiments.sweep.results_table`); baseline rows are those of
:func:`mnistcodec.experiments.baselines.points_to_rows`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnistcodec.lab.curves import plot_floor, plot_preset_curves, plot_rd_curves
from mnistcodec.lab.drawing import COLOURS as _COLOURS
from mnistcodec.lab.drawing import plt, save_figure
from mnistcodec.lab.words import Words
from mnistcodec.storage.digits import tile

__all__ = [
    "plot_digit_grid",
    "plot_floor",
    "plot_latent_sweep",
    "plot_learned_priors",
    "plot_preset_curves",
    "plot_prior_densities",
    "plot_prior_sweep",
    "plot_rd_curves",
    "plot_samples",
    "plot_test_image",
    "plot_training_curves",
    "plot_untrained_reconstruction",
    "save_figure",
]


def _digit_axes(ax: plt.Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


# ----------------------------------------------------------------------------- lab section 2.1


def plot_test_image(
    image: np.ndarray, out: str | os.PathLike, title: str = "x", words: Words | None = None
) -> Path:
    """One digit with its dtype and shape in the title (lab 2.1, manipulation 3)."""
    words = words or Words()
    image = np.asarray(image)
    fig, ax = plt.subplots(figsize=(3.2, 3.4))
    shown = ax.imshow(image.reshape(28, 28), cmap="gray", vmin=0, vmax=255)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(
        words("test_image_title", name=title, dtype=image.dtype, shape=image.shape), fontsize=9
    )
    _digit_axes(ax)
    return save_figure(fig, out, words)


def plot_prior_densities(
    densities: Mapping[str, tuple[np.ndarray, np.ndarray]],
    scales: Sequence[float],
    out: str | os.PathLike,
    lim: float = 6.0,
    words: Words | None = None,
) -> Path:
    """Noisy densities for ``scales`` on ``[-lim, lim]``, one panel per family (Fig. 2.1.2).

    ``densities``: family -> ``(t (P,), p (P, len(scales)))``, as
    :func:`mnistcodec.lab.measurements.prior_densities` gives. As the scale goes
    to 0 the noisy density tends to U(-1/2, 1/2) (height 1), not to a Dirac
    spike: the noise sets a floor on how peaked it can be.
    """
    words = words or Words()
    families = list(densities)
    cols = min(2, len(families))
    rows = -(-len(families) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.3 * rows), squeeze=False)
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(scales)))
    for ax, family in zip(axes.ravel(), families, strict=False):
        t, p = densities[family]
        for j, scale in enumerate(scales):
            ax.plot(t, p[:, j], color=colours[j], lw=1.2, label=words.num(scale))
        label = "init_scale" if family == "deep-factorized" else "scale"
        ax.set_title(
            words("prior_panel", family=family, parameter=label, count=len(scales)), fontsize=9
        )
        ax.set_xlabel(words("t"))
        ax.set_ylabel(words("density_t"))
        ax.set_xlim(-lim, lim)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(families) :]:
        ax.set_visible(False)
    axes.ravel()[0].legend(
        title=words("scale"), fontsize=7, title_fontsize=7, ncol=2, loc="upper right"
    )
    fig.tight_layout()
    return save_figure(fig, out, words)


def plot_untrained_reconstruction(
    image: np.ndarray,
    x_hat: np.ndarray,
    distortion: float,
    rate_bits: float,
    out: str | os.PathLike,
    words: Words | None = None,
) -> Path:
    """x and the noisy-latent reconstruction x~ of an untrained model, with their distortion (Fig. 2.1.3).

    ``x_hat``: the synthesis output on [0, 1] (28, 28), as
    :func:`mnistcodec.lab.measurements.untrained_reconstruction` gives.
    """
    words = words or Words()
    image = np.asarray(image, dtype=np.uint8).reshape(28, 28)
    x_hat = np.asarray(x_hat, dtype=np.float64).reshape(28, 28)
    fig, axes = plt.subplots(1, 2, figsize=(5.4, 3.0))
    lo, hi = float(x_hat.min()), float(x_hat.max())
    axes[0].imshow(image, cmap="gray", vmin=0, vmax=255)
    axes[0].set_title(words("x"), fontsize=9)
    # Untrained outputs are nearly constant: stretch the contrast so their structure shows.
    axes[1].imshow(x_hat, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1e-6)
    axes[1].set_title(words("untrained_output", lo=lo, hi=hi), fontsize=8)
    for ax in axes:
        _digit_axes(ax)
    fig.suptitle(words("untrained_title", distortion=distortion, rate=rate_bits), fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out, words)


# ----------------------------------------------------------------------------- lab section 2.2


def _records(history: Sequence[Any]) -> list[dict]:
    return [asdict(r) if is_dataclass(r) else dict(r) for r in history]


def plot_training_curves(
    history: Sequence[Any], out: str | os.PathLike, title: str = "", words: Words | None = None
) -> Path:
    """Rate, distortion and loss per epoch, training and validation.

    ``history``: :class:`~mnistcodec.training.loop.EpochRecord` objects or their dicts.
    A single epoch is drawn as points.
    """
    words = words or Words()
    rows = _records(history)
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.1))
    marker = "o" if len(rows) < 12 else None
    for ax, key, label in zip(
        axes,
        ("rate", "distortion", "loss"),
        (words("rate_bits"), words("distortion_mad"), words("loss")),
        strict=True,
    ):
        ax.plot(epochs, [r[key] for r in rows], marker=marker, label=words("train_noisy"))
        ax.plot(
            epochs,
            [r[f"val_{key}"] for r in rows],
            marker=marker,
            label=words("validation_quantised"),
        )
        ax.set_xlabel(words("epoch"))
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
        if len(epochs) < 12:
            ax.set_xticks(epochs)
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        else:
            ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out, words)


# ----------------------------------------------------------------------------- lab section 3


def plot_digit_grid(
    originals: np.ndarray,
    reconstructions: np.ndarray,
    string_bits: Sequence[float],
    info_bits: Sequence[float],
    psnr_db: Sequence[float],
    out: str | os.PathLike,
    title: str = "",
    cols: int = 4,
    words: Words | None = None,
) -> Path:
    """Original | reconstruction pairs annotated with real bits, information and PSNR (Fig. 3.0.1).

    Drawn as one image (a montage) with text under each pair, which keeps it
    fast however many digits there are.
    """
    words = words or Words()
    originals = np.asarray(originals, dtype=np.uint8).reshape(-1, 28, 28)
    reconstructions = np.asarray(reconstructions, dtype=np.uint8).reshape(-1, 28, 28)
    n = originals.shape[0]
    gap, text_rows, pad = 4, 16, 6
    pairs = np.concatenate(
        [originals, np.full((n, 28, gap), 110, np.uint8), reconstructions], axis=2
    )
    # Blank rows under every pair hold its annotation.
    tiles = np.concatenate([pairs, np.full((n, text_rows, pairs.shape[2]), 255, np.uint8)], axis=1)
    image = tile(tiles, cols, gap=pad, fill=255)
    rows = -(-n // cols)
    fig, ax = plt.subplots(figsize=(2.7 * cols, 1.85 * rows + (0.35 if title else 0.0)))
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    th, tw = tiles.shape[1] + pad, tiles.shape[2] + pad
    for i in range(n):
        r, c = divmod(i, cols)
        ax.text(
            c * tw + pairs.shape[2] / 2,
            r * th + 28 + 1,
            words("grid_cell", bits=string_bits[i], info=info_bits[i], psnr=psnr_db[i]),
            ha="center",
            va="top",
            fontsize=7.5,
        )
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    return save_figure(fig, out, words)


# ----------------------------------------------------------------------------- lab section 4


def _group(rows: Sequence[Mapping], key: str) -> dict[Any, list[Mapping]]:
    groups: dict[Any, list[Mapping]] = {}
    for row in rows:
        groups.setdefault(row[key], []).append(row)
    return groups


def _mean_by(rows: Sequence[Mapping], key: str, value: str) -> tuple[list, list]:
    groups = _group(rows, key)
    xs = sorted(groups)
    return xs, [float(np.mean([r[value] for r in groups[x]])) for x in xs]


def plot_latent_sweep(
    rows: Sequence[Mapping], out: str | os.PathLike, title: str = "", words: Words | None = None
) -> Path:
    """Bits (real and information) and PSNR against the latent size, one line per lambda."""
    words = words or Words()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    for i, (lmbda, group) in enumerate(sorted(_group(rows, "lmbda").items())):
        colour = _COLOURS[i % len(_COLOURS)]
        dims, real = _mean_by(group, "latent_dims", "string_bits")
        _, info = _mean_by(group, "latent_dims", "info_bits")
        _, psnr = _mean_by(group, "latent_dims", "psnr_db")
        left.plot(dims, real, "o-", color=colour, label=words("lambda_real", value=lmbda))
        left.plot(dims, info, "x:", color=colour, label=words("lambda_information", value=lmbda))
        right.plot(dims, psnr, "o-", color=colour, label=words("lmbda", value=lmbda))
    for ax, ylabel in ((left, words("bits_per_digit")), (right, words("psnr"))):
        ax.set_xscale("log")
        ax.set_xlabel(words("latent_dims"))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
        dims = sorted({int(r["latent_dims"]) for r in rows})
        ax.set_xticks(dims)
        ax.set_xticklabels([str(d) for d in dims])
        ax.minorticks_off()
    left.set_title(words("rate_vs_latents"), fontsize=9)
    right.set_title(words("quality_vs_latents"), fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out, words)


def plot_prior_sweep(
    rows: Sequence[Mapping], out: str | os.PathLike, title: str = "", words: Words | None = None
) -> Path:
    """Real bits, PSNR and the evaluated Lagrangian ``info + lambda * MAD`` per prior family.

    Bars grouped by prior, one bar per lambda (means over seeds).
    """
    words = words or Words()
    priors = sorted({r["prior"] for r in rows})
    lmbdas = sorted({float(r["lmbda"]) for r in rows})
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    width = 0.8 / len(lmbdas)
    panels = (
        ("string_bits", words("real_bits_per_digit")),
        ("psnr_db", words("psnr")),
        ("lagrangian", words("lagrangian")),
    )
    for ax, (key, label) in zip(axes, panels, strict=True):
        for j, lmbda in enumerate(lmbdas):
            values = []
            for prior in priors:
                sel = [r for r in rows if r["prior"] == prior and float(r["lmbda"]) == lmbda]
                if key == "lagrangian":
                    vals = [r["info_bits"] + r["lmbda"] * r["mad"] for r in sel]
                else:
                    vals = [r[key] for r in sel]
                values.append(float(np.mean(vals)) if vals else np.nan)
            xs = np.arange(len(priors)) + (j - (len(lmbdas) - 1) / 2) * width
            bars = ax.bar(
                xs,
                values,
                width,
                color=_COLOURS[j % len(_COLOURS)],
                label=words("lmbda", value=lmbda),
            )
            ax.bar_label(bars, fmt=lambda v: words.num(v, "{:.1f}"), fontsize=6.5)
        ax.set_xticks(np.arange(len(priors)))
        ax.set_xticklabels(priors, fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
        finite = [b.get_height() for c in ax.containers for b in c if np.isfinite(b.get_height())]
        if finite and key == "psnr_db":
            ax.set_ylim(min(finite) - 2, max(finite) + 1.5)
        elif finite:
            ax.set_ylim(0, max(finite) * 1.15)
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out, words)


def plot_learned_priors(
    densities: Mapping[str, tuple[np.ndarray, np.ndarray, Sequence[int]]],
    out: str | os.PathLike,
    words: Words | None = None,
) -> Path:
    """The trained noisy densities of a few latent dimensions, one panel per model.

    ``densities``: label -> ``(t (P,), p (P, k), the k dimensions shown)``, as
    :func:`mnistcodec.lab.measurements.learned_prior_densities` gives.
    """
    words = words or Words()
    labels = list(densities)
    fig, axes = plt.subplots(1, len(labels), figsize=(3.3 * len(labels), 3.0), squeeze=False)
    for ax, label in zip(axes[0], labels, strict=True):
        t, p, dims = densities[label]
        for k, d in enumerate(dims):
            ax.plot(
                t,
                p[:, k],
                color=_COLOURS[k % len(_COLOURS)],
                lw=1.2,
                label=words("dimension", value=d),
            )
        ax.set_title(label, fontsize=9)
        ax.set_xlabel(words("y"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5)
    axes[0, 0].set_ylabel(words("density_y"))
    fig.tight_layout()
    return save_figure(fig, out, words)


# ----------------------------------------------------------------------------- lab section 5


def plot_samples(samples: np.ndarray, out: str | os.PathLike, cols: int = 4) -> Path:
    """Generative samples from random bits, as a grid (Fig. 5.0.1)."""
    samples = np.asarray(samples, dtype=np.uint8).reshape(-1, 28, 28)
    rows = -(-samples.shape[0] // cols)
    fig, ax = plt.subplots(figsize=(1.2 * cols, 1.2 * rows))
    ax.imshow(
        tile(samples, cols, gap=2, fill=90), cmap="gray", vmin=0, vmax=255, interpolation="nearest"
    )
    ax.set_axis_off()
    return save_figure(fig, out)
