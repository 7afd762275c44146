"""Codecs without a network, and the floor they set under every rate-distortion curve.

Two codecs computed from the training set, measured like every other codec
(decoded as ``uint8``, PSNR per digit with pixels on [0, 1], then averaged):

``mean digit``
    The decoder always outputs the mean training digit ``round(mean_i x_i)``.
    Nothing is sent: **0 bits** per digit.
``class means``
    A codebook of the 10 class means of the training set; each digit is sent
    as its label, with an ideal entropy code of the label under the training
    label frequencies ``p(c) = n_c / N``: ``-log2 p(c)`` bits for a digit of
    class ``c`` (its information content; about ``log2 10 = 3.32`` bits).

Any codec can be mixed with these by time sharing, so an operating point
``(R, Q)`` (bits per digit, PSNR in dB) is *worse than a codec without a
network* when ``Q`` lies under the floor::

    floor(R) = Q_mean + (Q_class - Q_mean) * R / R_class   for R <= R_class  (the line joining them)
    floor(R) = Q_class                                     for R >= R_class  (the class means cost less)

(with ``Q_mean <= Q_class``, as on MNIST), :func:`below_floor` says which
points lie under it and why; in particular every point under ``Q_mean`` sends
bits for nothing. PSNRs are means of per-digit PSNRs, so mixing two codecs
over digits averages their PSNRs exactly and the line is reachable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from mnistcodec.errors import InputError
from mnistcodec.experiments import metrics
from mnistcodec.storage.digits import check_digits

MEAN_DIGIT = "mean digit"
CLASS_MEANS = "class means"


@dataclass(frozen=True)
class TrivialPoint:
    """One codec without a network measured on ``n`` digits.

    ``bits_per_digit``: mean information content of what is sent;
    ``psnr_db``: mean of per-digit PSNRs; ``psnr_of_mean_mse_db`` and
    ``mad`` as in :mod:`mnistcodec.experiments.metrics`.
    """

    codec: str
    bits_per_digit: float
    psnr_db: float
    psnr_of_mean_mse_db: float
    mad: float
    n: int

    def row(self) -> dict:
        return asdict(self)


def _as_uint8(mean: np.ndarray) -> np.ndarray:
    return np.clip(np.round(mean), 0, 255).astype(np.uint8)


def mean_digit(train_images: np.ndarray) -> np.ndarray:
    """The mean training digit, rounded to ``uint8`` (H, W)."""
    images = check_digits(train_images, shape=None, allow_empty=False, allow_single=False)
    return _as_uint8(images.astype(np.float64).mean(axis=0))


def _check_labels(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise InputError(
            f"need one label per digit: {images.shape[0]} digits, labels {labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"labels must be integers, got {labels.dtype}")
    return labels.astype(np.int64)


def class_means(train_images: np.ndarray, train_labels: np.ndarray) -> dict[int, np.ndarray]:
    """The mean training digit of each class, rounded to ``uint8``: ``{label: (H, W)}``."""
    images = check_digits(train_images, shape=None, allow_empty=False, allow_single=False)
    labels = _check_labels(images, train_labels)
    return {
        int(c): _as_uint8(images[labels == c].astype(np.float64).mean(axis=0))
        for c in np.unique(labels)
    }


def label_bits(train_labels: np.ndarray) -> dict[int, float]:
    """``-log2 p(c)`` of each label under the training frequencies ``p(c) = n_c / N``."""
    labels = np.asarray(train_labels).astype(np.int64)
    values, counts = np.unique(labels, return_counts=True)
    return {int(c): float(-np.log2(k / labels.size)) for c, k in zip(values, counts, strict=True)}


def _point(codec: str, images: np.ndarray, decoded: np.ndarray, bits: float) -> TrivialPoint:
    return TrivialPoint(
        codec=codec,
        bits_per_digit=float(bits),
        psnr_db=metrics.mean_psnr(images, decoded),
        psnr_of_mean_mse_db=metrics.psnr_of_mean_mse(images, decoded),
        mad=metrics.mad(images, decoded),
        n=int(images.shape[0]),
    )


def measure_trivial_codecs(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
) -> list[TrivialPoint]:
    """The mean digit (0 bits) and the class means (the label's entropy code) on the test digits.

    Both are built from the training digits and labels only. A test label
    absent from the training labels cannot be coded: :class:`InputError`.
    """
    test = check_digits(test_images, shape=None, allow_empty=False, allow_single=False)
    labels = _check_labels(test, test_labels)
    mean = mean_digit(train_images)
    if mean.shape != test.shape[1:]:
        raise InputError(f"training digits are {mean.shape}, test digits {test.shape[1:]}")
    means = class_means(train_images, train_labels)
    bits = label_bits(train_labels)
    unknown = sorted(set(np.unique(labels).tolist()) - set(means))
    if unknown:
        raise InputError(f"test labels {unknown} never occur in the training labels")
    by_label = np.stack([means[int(c)] for c in labels])
    label_cost = float(np.mean([bits[int(c)] for c in labels]))
    return [
        _point(MEAN_DIGIT, test, np.broadcast_to(mean, test.shape), 0.0),
        _point(CLASS_MEANS, test, by_label, label_cost),
    ]


@dataclass(frozen=True)
class Floor:
    """The best a codec without a network reaches: see the module docstring."""

    mean_psnr_db: float
    class_bits: float
    class_psnr_db: float

    @classmethod
    def from_points(cls, points: Sequence[TrivialPoint | Mapping]) -> Floor:
        """The floor of the two points of :func:`measure_trivial_codecs` (or their rows)."""
        as_rows = [p.row() if isinstance(p, TrivialPoint) else dict(p) for p in points]
        rows = {row["codec"]: row for row in as_rows}
        if MEAN_DIGIT not in rows or CLASS_MEANS not in rows:
            raise InputError(f"the floor needs the {MEAN_DIGIT!r} and {CLASS_MEANS!r} points")
        mean, classes = rows[MEAN_DIGIT], rows[CLASS_MEANS]
        return cls(
            float(mean["psnr_db"]), float(classes["bits_per_digit"]), float(classes["psnr_db"])
        )

    def psnr_at(self, bits: float) -> float:
        """``floor(bits)``: the best mean PSNR the two trivial codecs reach, mixed, in ``bits``."""
        top = max(self.class_psnr_db, self.mean_psnr_db)
        if bits >= self.class_bits or self.class_bits <= 0:
            return top
        share = max(bits, 0.0) / self.class_bits
        return max(
            self.mean_psnr_db + (self.class_psnr_db - self.mean_psnr_db) * share, self.mean_psnr_db
        )

    def why_below(self, bits: float, psnr_db: float) -> str | None:
        """Why ``(bits, psnr_db)`` is worse than a codec without a network, or ``None``.

        ``"below the mean digit"``: a lower PSNR than sending nothing;
        ``"below the line"``: under the line joining the two trivial codecs
        (at most the class means' bits); ``"below the class means"``: more
        bits than the class means for a lower PSNR.
        """
        if not psnr_db < self.psnr_at(bits):
            return None
        if psnr_db < self.mean_psnr_db:
            return "below the mean digit"
        return "below the line" if bits <= self.class_bits else "below the class means"


def below_floor(
    floor: Floor,
    rows: Sequence[Mapping],
    rate_key: str = "string_bits",
    quality_key: str = "psnr_db",
) -> list[dict]:
    """The rows whose ``(rate, PSNR)`` lies under ``floor``: each row with the reason added.

    The margin ``floor_gap_db = floor(rate) - PSNR`` (positive) says by how much.
    """
    out = []
    for row in rows:
        bits, psnr = float(row[rate_key]), float(row[quality_key])
        why = floor.why_below(bits, psnr)
        if why is not None:
            out.append({**row, "floor_reason": why, "floor_gap_db": floor.psnr_at(bits) - psnr})
    return out
