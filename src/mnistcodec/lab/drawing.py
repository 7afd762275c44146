"""What every figure of the report shares: saving, colours, numbers by language, labels that do not collide.

Drawing only (matplotlib, Agg backend). The words of a figure come from the
language's catalogue (:class:`mnistcodec.lab.words.Words`); numbers on linear
axes are written in the language's convention (a decimal comma in French) by
:func:`save_figure`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from mnistcodec.lab.words import Words  # noqa: E402
from mnistcodec.storage.atomic import atomic_write  # noqa: E402

DPI = 110
COLOURS = plt.get_cmap("tab10").colors


class _CommaFormatter(ticker.ScalarFormatter):
    """Matplotlib's default tick labels with a decimal comma."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return super().__call__(x, pos).replace(".", ",")

    def get_offset(self) -> str:
        return super().get_offset().replace(".", ",")


def localise_numbers(fig: plt.Figure, words: Words) -> None:
    """Write the tick numbers of ``fig``'s linear axes in ``words``' language (decimal comma in French)."""
    if not words.decimal_comma:
        return
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if (
                axis.get_scale() == "linear"
                and type(axis.get_major_formatter()) is ticker.ScalarFormatter
            ):
                axis.set_major_formatter(_CommaFormatter())


def save_figure(fig: plt.Figure, out: str | os.PathLike, words: Words | None = None) -> Path:
    """Render ``fig`` to PNG bytes (numbers in ``words``' language), write them atomically, close the figure."""
    buffer = io.BytesIO()
    try:
        if words is not None:
            localise_numbers(fig, words)
        fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return atomic_write(out, buffer.getvalue())


# Candidate positions of a point's label, in points from the point, with the text's alignment.
_OFFSETS = (
    (5, 3, "left", "bottom"),
    (5, -3, "left", "top"),
    (-5, 3, "right", "bottom"),
    (-5, -3, "right", "top"),
    (0, 7, "center", "bottom"),
    (0, -7, "center", "top"),
    (9, 0, "left", "center"),
    (-9, 0, "right", "center"),
)


def _marker_boxes(ax: plt.Axes, radius: float) -> list[Bbox]:
    """Display-space boxes around every marker drawn on ``ax``, each at least ``radius`` wide."""
    boxes = []
    for line in ax.get_lines():
        if line.get_marker() in (None, "None", "", " ") or not line.get_visible():
            continue
        r = max(radius, line.get_markersize() * ax.figure.dpi / 144 + 1)
        for x, y in ax.transData.transform(line.get_xydata()):
            boxes.append(Bbox.from_bounds(x - r, y - r, 2 * r, 2 * r))
    return boxes


def _line_boxes(ax: plt.Axes, step: float = 3.0) -> list[Bbox]:
    """Small display-space boxes every ``step`` pixels along every drawn line of ``ax``."""
    boxes = []
    for line in ax.get_lines():
        if line.get_linestyle() in ("None", "", " ") or not line.get_visible():
            continue
        points = ax.transData.transform(line.get_xydata())
        for (x0, y0), (x1, y1) in zip(points[:-1], points[1:], strict=True):
            n = max(1, int(np.hypot(x1 - x0, y1 - y0) // step))
            for t in np.linspace(0.0, 1.0, n + 1):
                x, y = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
                boxes.append(Bbox.from_bounds(x - 1, y - 1, 2, 2))
    return boxes


def _first_free(ax, renderer, frame, point, text, avoid, fontsize, colour):
    """The label of ``point`` at the first candidate position inside ``frame`` clear of ``avoid``, or None."""
    for dx, dy, ha, va in _OFFSETS:
        label = ax.annotate(
            text,
            point,
            xytext=(dx, dy),
            textcoords="offset points",
            ha=ha,
            va=va,
            fontsize=fontsize,
            color=colour,
        )
        box = label.get_window_extent(renderer)
        inside = (
            frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        )
        if inside and not any(box.overlaps(other) for other in avoid):
            return label
        label.remove()
    return None


def place_labels(
    ax: plt.Axes, items: Sequence[tuple[float, float, str]], fontsize: float = 7, colour=None
) -> list[str]:
    """Label points of ``ax`` where the labels overlap no other label, marker or legend.

    ``items``: ``(x, y, text)`` in data coordinates, most important first.
    Each label takes the first of a few positions around its point that is
    inside the axes and clear of other labels, markers and lines (else, of
    labels and markers only); a label with no such position is left out.
    Call it last, once the axes' limits and layout are final. Returns the
    texts left out.
    """
    renderer = ax.figure.canvas.get_renderer()
    taken = _marker_boxes(ax, radius=4.0)
    legend = ax.get_legend()
    if legend is not None:
        taken.append(legend.get_window_extent(renderer))
    lines = _line_boxes(ax)
    frame = ax.get_window_extent(renderer)
    left_out = []
    for x, y, text in items:
        # First a place that crosses no line either, else one that only avoids labels and markers.
        for avoid in (taken + lines, taken):
            label = _first_free(ax, renderer, frame, (x, y), text, avoid, fontsize, colour)
            if label is not None:
                taken.append(label.get_window_extent(renderer))
                break
        else:
            left_out.append(text)
    return left_out
