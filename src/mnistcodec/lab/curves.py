"""The report's rate-distortion figures: drawing only.

Rows of learned models hold ``string_bits``, ``info_bits``, ``psnr_db``,
``mad`` and ``lmbda`` (or ``level`` for a variable-rate model's levels);
classical rows are those of :func:`mnistcodec.experiments.baselines.points_to_rows`;
the codecs without a network are rows of
:class:`mnistcodec.experiments.trivial_codecs.TrivialPoint` (``codec``,
``bits_per_digit``, ``psnr_db``) and the R(D) estimate rows of
:meth:`mnistcodec.experiments.rd_limit.RDReference.rows`. Words come from
:class:`mnistcodec.lab.words.Words`; point labels are placed where they
collide with nothing (:func:`mnistcodec.lab.drawing.place_labels`), and the
legends sit outside the data.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from mnistcodec.lab.drawing import COLOURS, place_labels, plt, save_figure
from mnistcodec.lab.words import Words

_SHIPPED_MARKERS = ("*", "P", "X", "D", "^", "v", "s", "p", "h", "<", ">")
_FLOOR_COLOUR = "0.35"
_REFERENCE_COLOUR = "black"


def _sorted_by(rows: Sequence[Mapping], key: str) -> list[Mapping]:
    return sorted(rows, key=lambda r: float(r[key]))


def _point_name(row: Mapping, words: Words) -> str:
    """``level k`` for a variable-rate model's level, else ``λ=<lambda>``."""
    if row.get("level") is not None:
        return words("level", value=row["level"])
    return words("lmbda", value=row["lmbda"])


def _labelled(rows: Sequence[Mapping], most: int = 6) -> list[Mapping]:
    """The points of a curve worth a label: all of a short curve, else its ends and a few between."""
    if len(rows) <= most:
        return list(rows)
    step = -(-(len(rows) - 1) // (most - 1))
    picked = [rows[0], rows[-1]] + list(rows[step:-1:step])
    return picked


def draw_floor(ax: plt.Axes, trivial: Sequence[Mapping], words: Words, right: float) -> None:
    """The two codecs without a network and the floor they set, up to ``right`` bits."""
    by_codec = {r["codec"]: r for r in trivial}
    mean, classes = by_codec.get("mean digit"), by_codec.get("class means")
    if mean is None or classes is None:
        return
    xs = [0.0, classes["bits_per_digit"], max(right, classes["bits_per_digit"])]
    ys = [mean["psnr_db"], classes["psnr_db"], classes["psnr_db"]]
    ax.plot(xs, ys, "--", color=_FLOOR_COLOUR, lw=1.1, label=words("floor"))
    ax.plot(
        [0.0],
        [mean["psnr_db"]],
        "o",
        ms=7,
        mfc="white",
        mec=_FLOOR_COLOUR,
        mew=1.5,
        label=words("mean_digit"),
    )
    ax.plot(
        [classes["bits_per_digit"]],
        [classes["psnr_db"]],
        "s",
        ms=7,
        mfc="white",
        mec=_FLOOR_COLOUR,
        mew=1.5,
        label=words("class_means"),
    )


def draw_reference(ax: plt.Axes, reference: Sequence[Mapping], words: Words) -> None:
    """The published R(D) estimate: its points only, joined by a line as a guide."""
    if not reference:
        return
    rows = _sorted_by(reference, "bits_per_digit")
    ax.plot(
        [r["bits_per_digit"] for r in rows],
        [r["psnr_db"] for r in rows],
        "d-",
        color=_REFERENCE_COLOUR,
        lw=1.0,
        ms=6,
        label=words("rd_estimate"),
    )


def _learned_curves(left, right, learned, words) -> list[tuple[float, float, str]]:
    labels = []
    for i, (label, rows) in enumerate(learned.items()):
        rows = _sorted_by(rows, "string_bits")
        colour = COLOURS[i % len(COLOURS)]
        real = [r["string_bits"] for r in rows]
        info = [r["info_bits"] for r in rows]
        psnr = [r["psnr_db"] for r in rows]
        left.plot(real, psnr, "o-", color=colour, label=words("real_bits", label=label))
        left.plot(info, psnr, "x:", color=colour, label=words("information", label=label))
        labels += [(r["string_bits"], r["psnr_db"], _point_name(r, words)) for r in rows]
        right.plot(real, psnr, "o-", color=colour, lw=2.2, label=words("learned_real", label=label))
        right.plot(
            info, psnr, "x:", color=colour, lw=1.5, label=words("learned_information", label=label)
        )
    return labels


def _classical_curves(ax, baselines, offset, words) -> None:
    codecs: dict[str, list[Mapping]] = {}
    for row in baselines or []:
        if not row.get("lossless"):
            codecs.setdefault(row["codec"], []).append(row)
    for j, (name, rows) in enumerate(codecs.items()):
        colour = COLOURS[(offset + j) % len(COLOURS)]
        label = rows[0].get("label", name)
        for mode, style, marker in (("per-file", "-", "o"), ("tiled", "--", "s")):
            pts = _sorted_by([r for r in rows if r["mode"] == mode], "bits_per_digit")
            if pts:
                ax.plot(
                    [r["bits_per_digit"] for r in pts],
                    [r["psnr_db"] for r in pts],
                    linestyle=style,
                    marker=marker,
                    ms=3,
                    color=colour,
                    alpha=0.85,
                    label=words("classical", label=label, mode=mode),
                )


def plot_rd_curves(
    learned: Mapping[str, Sequence[Mapping]],
    baselines: Sequence[Mapping] | None,
    out: str | os.PathLike,
    title: str = "",
    words: Words | None = None,
    trivial: Sequence[Mapping] = (),
    reference: Sequence[Mapping] = (),
) -> Path:
    """PSNR against bits per digit (Figs. 3.0.2 and 3.0.3), and against classical codecs.

    Left: each learned curve over lambda, PSNR against the real string length
    (solid) and against the information content (dotted), linear axes, with
    the codecs without a network and their floor (``trivial``) and the R(D)
    estimate (``reference``) when given. Right, log-x: the same learned curves
    (real bits) with every lossy classical codec, one file per digit (solid,
    circles) and all digits tiled into one image (dashed, squares). Lossless
    codecs are left out (100 dB).
    """
    words = words or Words()
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(13.5, 4.8), gridspec_kw={"width_ratios": [1, 1.25]}
    )
    labels = _learned_curves(left, right, learned, words)
    draw_reference(left, reference, words)
    left.set_xlim(left=-1.0)
    draw_floor(left, trivial, words, left.get_xlim()[1])
    left.set_xlabel(words("bits_per_digit"))
    left.set_ylabel(words("psnr_mean"))
    left.set_title(words("learned_over_lambda"), fontsize=9)
    left.grid(alpha=0.3)
    _classical_curves(right, baselines, len(learned), words)
    right.set_xscale("log")
    right.set_xlabel(words("bits_per_digit_log"))
    right.set_ylabel(words("psnr"))
    right.set_title(words("learned_vs_classical"), fontsize=9)
    right.grid(alpha=0.3, which="both")
    right.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    handles, names = left.get_legend_handles_labels()
    fig.legend(
        handles,
        names,
        loc="upper left",
        bbox_to_anchor=(0.02, 0.16),
        ncol=3,
        fontsize=7,
        frameon=False,
    )
    place_labels(left, labels)
    return save_figure(fig, out, words)


def plot_preset_curves(
    curves: Mapping[str, Sequence[Mapping]],
    out: str | os.PathLike,
    extra_points: Mapping[str, Sequence[Mapping]] | None = None,
    title: str = "",
    words: Words | None = None,
) -> Path:
    """Named rate-distortion curves: PSNR (left) and MAD (right) against real bits.

    ``curves`` maps a name (``"seed"``, ``"improved"``, a shipped model's
    levels) to rows with ``string_bits``, ``psnr_db``, ``mad`` and ``lmbda``
    or ``level``. ``extra_points`` (e.g. the shipped models) are single
    points, each with its own marker and its ``label`` in the legend. A
    curve's points are labelled where there is room (all of a short curve,
    the ends and a few of a long one); the legend sits under the panels.
    """
    words = words or Words()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    labels: dict[plt.Axes, list] = {left: [], right: []}
    for i, (name, rows) in enumerate(curves.items()):
        rows = _sorted_by(rows, "string_bits")
        colour = COLOURS[i % len(COLOURS)]
        bits = [r["string_bits"] for r in rows]
        for ax, key in ((left, "psnr_db"), (right, "mad")):
            ax.plot(bits, [r[key] for r in rows], "o-", ms=4, color=colour, label=name)
            labels[ax] += [
                (r["string_bits"], r[key], _point_name(r, words)) for r in _labelled(rows)
            ]
    points = [r for rows in (extra_points or {}).values() for r in rows]
    for j, row in enumerate(points):
        colour = COLOURS[(len(curves) + j) % len(COLOURS)]
        marker = _SHIPPED_MARKERS[j % len(_SHIPPED_MARKERS)]
        for ax, key in ((left, "psnr_db"), (right, "mad")):
            ax.plot(
                [row["string_bits"]],
                [row[key]],
                marker,
                ms=8,
                mec="black",
                mew=0.5,
                color=colour,
                label=row.get("label", ""),
            )
    for ax, ylabel, what in (
        (left, words("psnr_mean"), words("quality_vs_real_bits")),
        (right, words("mad_unit"), words("distortion_vs_real_bits")),
    ):
        ax.set_xlabel(words("real_bits_per_digit"))
        ax.set_ylabel(ylabel)
        ax.set_title(what, fontsize=9)
        ax.grid(alpha=0.3)
    handles, names = left.get_legend_handles_labels()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.2, 1, 1))
    fig.legend(
        handles,
        names,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.2),
        ncol=3,
        fontsize=7,
        frameon=False,
    )
    for ax, items in labels.items():
        place_labels(ax, items)
    return save_figure(fig, out, words)


def plot_floor(
    curves: Mapping[str, Sequence[Mapping]],
    trivial: Sequence[Mapping],
    reference: Sequence[Mapping],
    out: str | os.PathLike,
    below: Sequence[Mapping] = (),
    title: str = "",
    words: Words | None = None,
    max_bits: float | None = None,
) -> Path:
    """Low rates: learned curves against the codecs without a network and the R(D) estimate.

    ``curves``: name -> rows (``string_bits``, ``psnr_db``, ``lmbda`` or
    ``level``); ``below``: the rows under the floor (as
    :func:`mnistcodec.experiments.trivial_codecs.below_floor` gives, with
    ``curve`` naming their curve), ringed in red and labelled in their
    curve's colour. The rate axis runs from 0 to ``max_bits`` (default:
    past the R(D) points and every point under the floor, at least 20 bits).
    """
    words = words or Words()
    rows_all = [r for rows in curves.values() for r in rows]
    if max_bits is None:
        far = [r["string_bits"] for r in below] + [r["bits_per_digit"] for r in reference]
        max_bits = max([20.0] + [1.15 * b for b in far])
    fig, ax = plt.subplots(figsize=(8.5, 4.6))
    colours = {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(curves)}
    for name, rows in curves.items():
        rows = _sorted_by(rows, "string_bits")
        ax.plot(
            [r["string_bits"] for r in rows],
            [r["psnr_db"] for r in rows],
            "o-",
            ms=4,
            color=colours[name],
            label=name,
        )
    draw_reference(ax, reference, words)
    draw_floor(ax, trivial, words, max_bits)
    if below:
        ax.plot(
            [r["string_bits"] for r in below],
            [r["psnr_db"] for r in below],
            "o",
            ms=11,
            mfc="none",
            mec="red",
            mew=1.5,
            label=words("below_floor"),
        )
    shown = [r["psnr_db"] for r in rows_all if r["string_bits"] <= max_bits]
    shown += [r["psnr_db"] for r in list(trivial) + list(reference)]
    ax.set_xlim(-0.5, max_bits)
    ax.set_ylim(min(shown) - 0.6, max(shown) + 0.6)
    ax.set_xlabel(words("real_bits_per_digit"))
    ax.set_ylabel(words("psnr_mean"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    for name in curves:
        mine = [r for r in below if r.get("curve") == name]
        place_labels(
            ax,
            [(r["string_bits"], r["psnr_db"], _point_name(r, words)) for r in mine],
            colour=colours[name],
        )
    return save_figure(fig, out, words)
