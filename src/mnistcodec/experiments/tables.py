"""Tables of results: CSV text and fixed-width text tables of rows (one dict per trial or codec)."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence


def rows_to_csv(rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> str:
    """CSV text with a header; ``columns`` default to the union of the rows' keys, in order."""
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def format_table(
    rows: Sequence[Mapping], columns: Sequence[tuple[str, str, str]] | None = None
) -> str:
    """A fixed-width text table; ``columns`` are ``(key, header, format)``."""
    columns = columns or (
        ("lmbda", "lambda", "{:g}"),
        ("latent_dims", "dims", "{}"),
        ("prior", "prior", "{}"),
        ("seed", "seed", "{}"),
        ("info_bits", "info bits", "{:.2f}"),
        ("string_bits", "real bits", "{:.2f}"),
        ("psnr_db", "PSNR dB", "{:.2f}"),
        ("mad", "MAD", "{:.4f}"),
        ("train_seconds", "train s", "{:.0f}"),
    )
    cells = [[header for _, header, _ in columns]]
    for row in rows:
        line = []
        for key, _, fmt in columns:
            value = row.get(key)
            line.append("-" if value is None else fmt.format(value))
        cells.append(line)
    widths = [max(len(r[c]) for r in cells) for c in range(len(columns))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells)
