"""Classical codecs measured on test digits, compared with learned curves.

What the ``baselines`` command computes, as one call::

    learned = read_learned_rows(["sweep/results.json"])
    comparison = compare_with_baselines("baselines", n=1000, learned_rows=learned)
    comparison.rows       # one dict per classical point (codec, mode, quality)
    comparison.trivial    # the mean digit (0 bits) and the class means (the label's entropy)
    comparison.bd_rates   # BD-rates, PSNR as quality

The classical codecs run through :func:`mnistcodec.experiments.baselines.run_baselines`
on the first ``n`` test digits. The BD-rates (:mod:`mnistcodec.experiments.bdrate`)
are those of every lossy codec against JPEG within each mode, then those of each
learned configuration against every lossy codec and mode. The two codecs
without a network (:mod:`mnistcodec.experiments.trivial_codecs`, built from
the training split) are measured on the same digits. The directory gets
``baselines.csv``, ``baselines.json`` (``n``, ``rows``, ``skipped``,
``trivial_codecs``) and ``bd_rates.json``; nothing is drawn (the command plots ``learned_curves`` and
``rows`` with :func:`mnistcodec.lab.figures.plot_rd_curves`).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mnistcodec.data import DEFAULT_DATASET, load_split
from mnistcodec.errors import InputError
from mnistcodec.experiments.baselines import MODES, points_to_rows, run_baselines
from mnistcodec.experiments.bdrate import (
    classical_bd_rates,
    group_by_config,
    learned_vs_classical_bd_rates,
)
from mnistcodec.experiments.tables import rows_to_csv
from mnistcodec.experiments.trivial_codecs import measure_trivial_codecs
from mnistcodec.storage.atomic import atomic_write_text


def read_learned_rows(paths: Iterable[str | os.PathLike]) -> list[dict]:
    """The learned rows of sweep ``results.json`` files (a list of rows) or report ``results.json``
    files (their ``lambda_sweep``, else ``trials``), concatenated in order.

    Raises :class:`InputError` for a file that cannot be read or holds no rows with ``string_bits``.
    """
    rows: list[dict] = []
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read learned results {path}: {exc}") from None
        if isinstance(data, dict):  # a report's results.json
            data = data.get("lambda_sweep", data.get("trials", []))
        if not isinstance(data, list) or not all(
            isinstance(r, dict) and "string_bits" in r for r in data
        ):
            raise InputError(f"{path} is not a sweep results.json (or a report results.json)")
        rows.extend(data)
    return rows


@dataclass
class BaselineComparison:
    """Classical points on ``n`` test digits, the learned curves and the BD-rates, with the files written."""

    n: int
    rows: list[dict]
    skipped: dict[str, str]
    learned_curves: dict[str, list[Mapping]]
    bd_rates: list[dict]
    files: dict[str, Path] = field(default_factory=dict)
    trivial: list[dict] = field(default_factory=list)


def compare_with_baselines(
    out: str | os.PathLike,
    n: int = 1000,
    codecs: Sequence[str] | None = None,
    modes: Sequence[str] = MODES,
    workers: int | None = None,
    learned_rows: Sequence[Mapping] = (),
    dataset: str = DEFAULT_DATASET,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> BaselineComparison:
    """Measure the classical codecs on the first ``n`` test digits and compare them with ``learned_rows``.

    ``codecs`` default to every available one; a codec that is missing or
    fails its round trip is listed in ``skipped`` with the reason. Writes
    ``<out>/baselines.{csv,json}`` and ``<out>/bd_rates.json``.
    """
    test = load_split("test", dataset, data_dir)
    train = load_split("train", dataset, data_dir)
    images = test.images[:n]
    trivial = [
        p.row() for p in measure_trivial_codecs(train.images, train.labels, images, test.labels[:n])
    ]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    skipped: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        points = run_baselines(
            images, codecs=codecs, progress=progress, modes=modes, workers=workers, skipped=skipped
        )
    rows = points_to_rows(points)
    count = int(images.shape[0])
    files = {
        "csv": out / "baselines.csv",
        "json": out / "baselines.json",
        "bd_rates": out / "bd_rates.json",
    }
    atomic_write_text(files["csv"], rows_to_csv(rows))
    atomic_write_text(
        files["json"],
        json.dumps(
            {"n": count, "rows": rows, "skipped": skipped, "trivial_codecs": trivial}, indent=2
        ),
    )
    bd = classical_bd_rates(rows, modes) + learned_vs_classical_bd_rates(learned_rows, rows)
    atomic_write_text(files["bd_rates"], json.dumps(bd, indent=2))
    learned_curves = group_by_config(learned_rows, prefix="learned ")
    return BaselineComparison(count, rows, skipped, learned_curves, bd, files, trivial)


def format_trivial_table(rows: Sequence[Mapping]) -> str:
    """The codecs without a network as text: bits per digit and PSNR, and what each sends."""
    sends = {"mean digit": "nothing", "class means": "the label, entropy coded"}
    lines = ["codecs without a network (built from the training digits):"]
    for r in rows:
        lines.append(
            f"  {r['codec']:<12}{r['bits_per_digit']:>6.2f} bits/digit{r['psnr_db']:>7.2f} dB"
            f"  (sends {sends.get(r['codec'], '?')})"
        )
    return "\n".join(lines)


def format_baseline_table(rows: Sequence[Mapping]) -> str:
    """A fixed-width text table of classical points: codec, quality, mode, bits per digit, PSNR, MAD."""
    lines = [f"{'codec':<18}{'quality':>9}  {'mode':<9}{'bits/digit':>11}{'PSNR dB':>9}{'MAD':>8}"]
    for r in rows:
        lines.append(
            f"{r['label']:<18}{r['quality']!s:>9}  {r['mode']:<9}{r['bits_per_digit']:>11.1f}"
            f"{r['psnr_db']:>9.2f}{r['mad']:>8.4f}"
        )
    return "\n".join(lines)
