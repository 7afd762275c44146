"""Bjøntegaard delta rate (BD-rate) between two rate-distortion curves.

The BD-rate is the average relative rate difference of a test curve B against
an anchor curve A at equal quality, over the quality range both curves cover
(G. Bjøntegaard, VCEG-M33, 2001)::

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

The computation is done by the maintained ``bjontegaard`` package
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
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from mnistcodec.errors import InputError

METHODS = ("akima", "pchip", "cubic")
"""Interpolation methods understood by :func:`bd_rate`."""

_MIN_POINTS = {"akima": 2, "pchip": 2, "cubic": 4}


def _import_bjontegaard():
    try:
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
