"""Rate-distortion curves of result rows, and the Bjøntegaard delta rate between them.

The BD-rate (G. Bjøntegaard, VCEG-M33, 2001) is the mean difference of log
rate between a test curve B and an anchor curve A at equal quality, over the
quality interval both curves cover, turned back into a relative rate::

    BD-rate = 10 ** ( (1 / (q_hi - q_lo)) * integral_{q_lo}^{q_hi} [log10 R_B(q) - log10 R_A(q)] dq ) - 1

reported in percent: **negative means B needs fewer bits than A for the same
quality** (-50 % = half the bits). ``log10 R(q)`` is interpolated from the
measured points with the method given:

- ``"akima"`` (default): Akima interpolation, the most stable on real
  curves according to the maintainers of the ``bjontegaard`` package;
- ``"pchip"``: piecewise cubic Hermite, as in the JCT-VC / JVET common test
  condition spreadsheets;
- ``"cubic"``: the original VCEG-M33 method, one least-squares cubic
  polynomial per curve (needs at least 4 points; can oscillate).

The integral is computed by the maintained ``bjontegaard`` package
(``pip install bjontegaard``); this module validates the inputs first and
turns every problem into an :class:`~mnistcodec.errors.InputError` with a
message that says what to fix.

Quality metrics. ``quality`` is any metric where higher is better (PSNR in
dB, MS-SSIM, ...). For a distortion where lower is better (MAD, MSE) pass
``higher_is_better=False``: the values are negated internally. Negation is a
reflection of the integration axis, so the result is the same average rate
difference over the same distortion interval as integrating over the
distortion itself. Other monotone transforms (e.g. ``-10*log10(MAD)``) change
how the interval is weighted and give a different number; apply them
yourself and pass ``higher_is_better=True`` if that is what you want.

Validation. Each curve needs finite values, positive rates, at least 2
points (4 for ``"cubic"``), and distinct quality values. Points are sorted
by quality. After sorting, the rate must increase with quality (a curve
where more bits buy less quality has dominated points; clean it with
:func:`pareto_front` first). The two curves' quality ranges must overlap;
if they overlap on less than ``min_overlap`` of their union the
``bjontegaard`` package emits a warning (the number is then an average
over a small part of the curves).

Curves of result rows. Learned models give rows of
:meth:`mnistcodec.experiments.sweep.TrialResult.row` (``lmbda``,
``latent_dims``, ``prior``, ``string_bits``, ``psnr_db``, ``mad``); classical
codecs give rows of :func:`mnistcodec.experiments.baselines.points_to_rows`
(``codec``, ``label``, ``mode``, ``quality``, ``bits_per_digit``, ``lossless``).
:func:`rd_curve` turns rows into one curve (averaging repeated settings, e.g.
seeds) and :func:`compare_curves` gives BD-rate entries that say why a
number is missing instead of failing. On top of them: BD-rates between
learned configurations (:func:`learned_bd_rates`, :func:`bd_rates_between`),
between classical codecs (:func:`classical_bd_rates`), of learned
configurations or of one learned curve against classical codecs
(:func:`learned_vs_classical_bd_rates`, :func:`curve_vs_classical_bd_rates`)
and between two presets
(:func:`preset_bd_rates`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from mnistcodec.errors import InputError

METHODS = ("akima", "pchip", "cubic")
"""Interpolation methods understood by :func:`bd_rate`."""

_MIN_POINTS = {"akima": 2, "pchip": 2, "cubic": 4}


def _import_bjontegaard():
    try:
        # Lazy: an optional dependency (the "baselines" extra), slow to import.
        import bjontegaard
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise InputError(
            "BD-rate needs the 'bjontegaard' package: pip install 'mnistcodec[baselines]' "
            "(or pip install bjontegaard)"
        ) from exc
    return bjontegaard


def _as_curve(
    rate: Sequence[float] | np.ndarray,
    quality: Sequence[float] | np.ndarray,
    name: str,
    method: str,
    higher_is_better: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate one curve and return (rate, quality) sorted by increasing quality."""
    try:
        r = np.asarray(rate, dtype=np.float64)
        q = np.asarray(quality, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"curve {name}: rates and qualities must be numbers ({exc})") from exc
    if r.ndim != 1 or q.ndim != 1:
        raise InputError(f"curve {name}: rates and qualities must be 1-D sequences")
    if r.shape != q.shape:
        raise InputError(
            f"curve {name}: {r.size} rates but {q.size} quality values; give one of each per point"
        )
    need = _MIN_POINTS[method]
    if r.size < need:
        raise InputError(
            f"curve {name}: {r.size} point(s); method '{method}' needs at least {need}"
        )
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(q))):
        raise InputError(f"curve {name}: rates and qualities must be finite (no NaN or inf)")
    if np.any(r <= 0):
        raise InputError(f"curve {name}: rates must be positive (BD-rate works on log rate)")
    if not higher_is_better:
        q = -q
    order = np.argsort(q, kind="stable")
    r, q = r[order], q[order]
    if np.any(np.diff(q) == 0):
        dup = q[np.flatnonzero(np.diff(q) == 0)[0]]
        dup = dup if higher_is_better else -dup
        raise InputError(
            f"curve {name}: two points share the quality value {dup:g}; "
            "each point must have a distinct quality (drop or average duplicates)"
        )
    if np.any(np.diff(r) <= 0):
        i = int(np.flatnonzero(np.diff(r) <= 0)[0])
        qa, qb = (q[i], q[i + 1]) if higher_is_better else (-q[i], -q[i + 1])
        raise InputError(
            f"curve {name}: rate does not increase with quality (rate {r[i]:g} at quality {qa:g} "
            f"but {r[i + 1]:g} at the better quality {qb:g}); "
            "keep only the non-dominated points, e.g. with mnistcodec.experiments.bdrate.pareto_front()"
        )
    return r, q


def bd_rate(
    rate_a: Sequence[float] | np.ndarray,
    quality_a: Sequence[float] | np.ndarray,
    rate_b: Sequence[float] | np.ndarray,
    quality_b: Sequence[float] | np.ndarray,
    method: str = "akima",
    *,
    higher_is_better: bool = True,
    min_overlap: float = 0.75,
) -> float:
    """BD-rate of curve B (test) against curve A (anchor), in percent.

    Negative means B needs fewer bits than A at equal quality: B with every
    rate halved gives -50 %, doubled gives +100 %.

    Parameters
    ----------
    rate_a, quality_a:
        Anchor points: rates (any positive unit, e.g. bits per digit; only
        ratios matter) and qualities.
    rate_b, quality_b:
        Test points, same units. The curves may have different numbers of
        points.
    method:
        ``"akima"`` (default), ``"pchip"`` or ``"cubic"`` (see the module
        docstring).
    higher_is_better:
        ``True`` for quality metrics such as PSNR; ``False`` for distortions
        such as MAD or MSE (values are negated internally).
    min_overlap:
        Fraction of the union of the two quality ranges that must be shared
        before the ``bjontegaard`` package stops warning. Ranges that do not
        overlap at all always raise :class:`InputError`.

    Raises
    ------
    InputError
        Invalid method, too few points, non-finite or non-positive values,
        duplicate qualities, a rate that does not grow with quality, or
        quality ranges that do not overlap.
    """
    if method not in METHODS:
        raise InputError(f"unknown BD-rate method {method!r}; choose one of {', '.join(METHODS)}")
    ra, qa = _as_curve(rate_a, quality_a, "A", method, higher_is_better)
    rb, qb = _as_curve(rate_b, quality_b, "B", method, higher_is_better)
    lo = max(qa[0], qb[0])
    hi = min(qa[-1], qb[-1])
    if not hi > lo:

        def show(q: np.ndarray) -> str:
            a, b = (q[0], q[-1]) if higher_is_better else (-q[-1], -q[0])
            return f"[{a:g}, {b:g}]"

        raise InputError(
            f"the quality ranges of the two curves do not overlap (A covers {show(qa)}, "
            f"B covers {show(qb)}); BD-rate compares rates at equal quality, so measure "
            "more points where the curves meet"
        )
    bj = _import_bjontegaard()
    with warnings.catch_warnings():
        # np.polyfit may warn about conditioning for the cubic fit; the result
        # is still what VCEG-M33 defines, so keep only the package's own warnings.
        warnings.simplefilter("ignore", np.exceptions.RankWarning)
        value = bj.bd_rate(
            ra, qa, rb, qb, method=method, require_matching_points=False, min_overlap=min_overlap
        )
    value = float(value)
    if not np.isfinite(value):  # pragma: no cover - guarded by the checks above
        raise InputError("BD-rate is not finite for these curves; check the points")
    return value


def bd_quality(
    rate_a: Sequence[float] | np.ndarray,
    quality_a: Sequence[float] | np.ndarray,
    rate_b: Sequence[float] | np.ndarray,
    quality_b: Sequence[float] | np.ndarray,
    method: str = "akima",
    *,
    min_overlap: float = 0.75,
) -> float:
    """Bjøntegaard delta quality (BD-PSNR when quality is PSNR) of B against A.

    The average quality difference ``Q_B - Q_A`` at equal rate, integrated
    over the overlap of the two curves' log-rate ranges, in the quality's own
    unit (positive means B is better). Same validation as :func:`bd_rate`,
    for a higher-is-better quality.
    """
    if method not in METHODS:
        raise InputError(f"unknown BD method {method!r}; choose one of {', '.join(METHODS)}")
    ra, qa = _as_curve(rate_a, quality_a, "A", method, True)
    rb, qb = _as_curve(rate_b, quality_b, "B", method, True)
    if not min(ra[-1], rb[-1]) > max(ra[0], rb[0]):
        raise InputError(
            f"the rate ranges of the two curves do not overlap (A covers [{ra[0]:g}, {ra[-1]:g}], "
            f"B covers [{rb[0]:g}, {rb[-1]:g}])"
        )
    bj = _import_bjontegaard()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", np.exceptions.RankWarning)
        value = bj.bd_psnr(
            ra, qa, rb, qb, method=method, require_matching_points=False, min_overlap=min_overlap
        )
    return float(value)


def pareto_front(
    rate: Sequence[float] | np.ndarray,
    quality: Sequence[float] | np.ndarray,
    *,
    higher_is_better: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the non-dominated points of a rate-quality curve.

    A point is dominated when another point has a rate no higher and a
    quality at least as good (and is not the same point). Returns
    ``(rate, quality)`` sorted by increasing rate, with quality strictly
    improving along it: the input :func:`bd_rate` accepts. Useful for codecs
    whose quality setting is not perfectly monotone on tiny images.
    """
    r = np.asarray(rate, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    if r.ndim != 1 or r.shape != q.shape:
        raise InputError("rates and qualities must be 1-D sequences of the same length")
    sign = 1.0 if higher_is_better else -1.0
    # Sort by rate, and at equal rate best quality first; then keep a point
    # only if it beats every cheaper point.
    order = np.lexsort((-sign * q, r))
    keep = []
    best = -np.inf
    for i in order:
        if sign * q[i] > best:
            keep.append(i)
            best = sign * q[i]
    keep = np.asarray(keep, dtype=np.intp)
    return r[keep], q[keep]


# ----------------------------------------------------------------------------- curves of result rows


def rd_curve(
    rows: Iterable[Mapping], rate_key: str, quality_key: str = "psnr_db"
) -> tuple[list, list]:
    """(rates, qualities) of rows, averaged over rows with the same lambda/quality setting."""
    points: dict[Any, list[tuple[float, float]]] = {}
    for row in rows:
        setting = row.get("lmbda", row.get("quality"))
        points.setdefault(setting, []).append((float(row[rate_key]), float(row[quality_key])))
    rates = [sum(p[0] for p in pts) / len(pts) for pts in points.values()]
    quals = [sum(p[1] for p in pts) / len(pts) for pts in points.values()]
    return rates, quals


def compare_curves(
    anchor: tuple[str, Sequence[float], Sequence[float]],
    tests: Iterable[tuple[str, Sequence[float], Sequence[float]]],
    *,
    higher_is_better: bool = True,
    method: str = "akima",
) -> list[dict]:
    """BD-rate (%) of each test curve against the anchor; PSNR-like quality by default.

    ``higher_is_better=False`` compares at equal distortion (MAD, MSE).
    Curves are reduced to their non-dominated points first. When two curves
    share no quality range the entry says ``"no overlap"`` (``bd_rate`` is
    ``None``) instead of failing; a small overlap is flagged in ``note``.
    """
    name_a, rate_a, qual_a = anchor
    ra, qa = pareto_front(rate_a, qual_a, higher_is_better=higher_is_better)
    out = []
    for name_b, rate_b, qual_b in tests:
        rb, qb = pareto_front(rate_b, qual_b, higher_is_better=higher_is_better)
        entry: dict[str, Any] = {
            "anchor": name_a,
            "test": name_b,
            "bd_rate_percent": None,
            "note": "",
            "anchor_quality_range": [float(min(qa)), float(max(qa))] if len(qa) else None,
            "test_quality_range": [float(min(qb)), float(max(qb))] if len(qb) else None,
        }
        if len(ra) < 2 or len(rb) < 2:
            entry["note"] = "fewer than 2 useful points"
        elif min(qa.max(), qb.max()) <= max(qa.min(), qb.min()):
            entry["note"] = "no overlap"
        else:
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    value = bd_rate(
                        ra, qa, rb, qb, method=method, higher_is_better=higher_is_better
                    )
                entry["bd_rate_percent"] = value if math.isfinite(value) else None
                if caught:
                    entry["note"] = "small overlap"
            except InputError as exc:
                entry["note"] = "no overlap" if "overlap" in str(exc) else str(exc)
        out.append(entry)
    return out


def bd_text(value: float | None, note: str = "") -> str:
    """A BD-rate as text: ``"-39.8 % (small overlap)"``, or ``"not computable (<note>)"``."""
    if value is None:
        return f"not computable ({note})"
    return f"{value:+.1f} %" + (f" ({note})" if note else "")


def format_bd_table(entries: Sequence[Mapping]) -> str:
    """One line per entry of :func:`compare_curves`: ``"<test> vs <anchor>: <BD-rate> (<note>)"``."""
    lines = []
    for e in entries:
        value = (
            "no overlap"
            if e["bd_rate_percent"] is None and e["note"] == "no overlap"
            else (
                f"{e['bd_rate_percent']:+.1f} %" if e["bd_rate_percent"] is not None else e["note"]
            )
        )
        note = f" ({e['note']})" if e["note"] and e["bd_rate_percent"] is not None else ""
        lines.append(f"{e['test']} vs {e['anchor']}: {value}{note}")
    return "\n".join(lines)


def config_label(row: Mapping) -> str:
    """The learned configuration a row belongs to: ``"d=<latent_dims> <prior>"``."""
    return f"d={row['latent_dims']} {row['prior']}"


def group_by_config(
    rows: Iterable[Mapping], prefix: str = "", min_lambdas: int = 1
) -> dict[str, list[Mapping]]:
    """Rows of learned models by configuration (``prefix`` + :func:`config_label`), in order of
    first appearance; only configurations with at least ``min_lambdas`` distinct lambdas."""
    groups: dict[str, list[Mapping]] = {}
    for row in rows:
        groups.setdefault(prefix + config_label(row), []).append(row)
    return {label: g for label, g in groups.items() if len({r["lmbda"] for r in g}) >= min_lambdas}


def bd_rates_between(groups: Mapping[str, Sequence[Mapping]]) -> list[dict]:
    """BD-rates (real string bits, PSNR) between named groups of learned rows: the first group
    with several lambdas is the anchor of the others that have several lambdas."""
    curves = [
        (label, *rd_curve(rows, "string_bits"))
        for label, rows in groups.items()
        if len({r["lmbda"] for r in rows}) > 1
    ]
    if len(curves) < 2:
        return []
    return compare_curves(curves[0], curves[1:])


def learned_bd_rates(rows: Sequence[Mapping]) -> list[dict]:
    """BD-rates between learned configurations (real bits), the first with several lambdas as anchor."""
    return bd_rates_between(group_by_config(rows))


def _classical_curves(baseline_rows: Iterable[Mapping]) -> list[tuple[Mapping, str, list, list]]:
    """Each lossy codec and mode as ``(first row, "<label> (<mode>)", rates, qualities)``."""
    groups: dict[tuple[str, str], list[Mapping]] = {}
    for row in baseline_rows:
        if not row.get("lossless"):
            groups.setdefault((row["label"], row["mode"]), []).append(row)
    return [
        (pts[0], f"{label} ({mode})", *rd_curve(pts, "bits_per_digit"))
        for (label, mode), pts in groups.items()
    ]


def classical_bd_rates(
    baseline_rows: Sequence[Mapping], modes: Iterable[str] | None = None, anchor_codec: str = "jpeg"
) -> list[dict]:
    """BD-rates (PSNR) of every lossy classical codec against ``anchor_codec``, within each mode.

    ``modes`` (default: those of the rows, in order) sets which modes are
    compared and in what order; a mode without the anchor codec gives no entries.
    """
    curves = _classical_curves(baseline_rows)
    if modes is None:
        modes = dict.fromkeys(first["mode"] for first, *_ in curves)
    out: list[dict] = []
    for mode in modes:
        in_mode = [
            (first, (name, rates, quals))
            for first, name, rates, quals in curves
            if first["mode"] == mode
        ]
        anchor = next((curve for first, curve in in_mode if first["codec"] == anchor_codec), None)
        if anchor is not None:
            out += compare_curves(anchor, [curve for _, curve in in_mode if curve is not anchor])
    return out


def curve_vs_classical_bd_rates(
    name: str, rows: Sequence[Mapping], baseline_rows: Sequence[Mapping], rate: str = "string_bits"
) -> list[dict]:
    """BD-rate (``rate`` of the rows, PSNR) of one learned curve against each lossy classical codec.

    ``rows``: one per lambda or level (``lmbda``, ``rate``, ``psnr_db``); each
    lossy codec and mode of ``baseline_rows`` is an anchor named
    ``"<label> (<mode>)"``. Entries are those of :func:`compare_curves`.
    """
    test = (name, *rd_curve(rows, rate))
    out: list[dict] = []
    for _, anchor, rates, quals in _classical_curves(baseline_rows):
        out += compare_curves((anchor, rates, quals), [test])
    return out


def learned_vs_classical_bd_rates(
    learned_rows: Sequence[Mapping], baseline_rows: Sequence[Mapping]
) -> list[dict]:
    """BD-rate (real string bits, PSNR) of each learned configuration against each classical codec.

    ``learned_rows`` are grouped by configuration into curves named
    ``"learned d=<latent_dims> <prior>"`` (those with at least two lambdas);
    each lossy codec and mode of ``baseline_rows`` is an anchor named
    ``"<label> (<mode>)"``. Negative means the learned codec needs fewer bits
    than the classical one at equal PSNR. Entries are those of
    :func:`compare_curves`, per learned curve, then per classical curve.
    """
    out: list[dict] = []
    for label, rows in group_by_config(learned_rows, prefix="learned ", min_lambdas=2).items():
        out += curve_vs_classical_bd_rates(label, rows, baseline_rows)
    return out


PRESET_BD_METHOD = "pchip"
"""Interpolation for the seed-vs-improved BD-rates (as the JCT-VC common test conditions)."""


def preset_bd_rates(
    anchor: tuple[str, Sequence[Mapping]],
    test: tuple[str, Sequence[Mapping]],
    method: str = PRESET_BD_METHOD,
    rate: str = "string_bits",
) -> dict[str, dict]:
    """BD-rate of one curve of evaluated models against another, on real string bits.

    ``anchor`` and ``test`` are ``(name, rows)`` with rows holding
    ``string_bits``, ``psnr_db`` and ``mad`` (one row per lambda, as
    :meth:`~mnistcodec.experiments.sweep.TrialResult.row` or ``mnistcodec evaluate --json``
    give). Returns ``{"psnr": entry, "mad": entry}``: the BD-rate at equal PSNR and at
    equal MAD, each an entry of :func:`compare_curves` with the ``quality`` it used.
    ``rate`` names another rate of the rows (``byte_string_bits``, ``info_bits``).
    """
    out = {}
    for label, key, higher in (("psnr", "psnr_db", True), ("mad", "mad", False)):
        curves = [(name, *rd_curve(rows, rate, key)) for name, rows in (anchor, test)]
        (entry,) = compare_curves(curves[0], curves[1:], higher_is_better=higher, method=method)
        out[label] = {**entry, "quality": key, "method": method}
    return out
