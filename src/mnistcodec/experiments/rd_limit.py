"""The rate-distortion limit of MNIST as published: quoted data, not something computed here.

:data:`NERD_MNIST` holds the points of the estimate of R(D) by Lei, Hassani
and Saeedi Bidokhti (NERD), converted to this toolkit's units (bits per 28x28
digit, mean per-digit PSNR in dB with pixels on [0, 1]), with the citation
and the caveats that go with them. The report's rate-distortion figure, the
benchmarks (``bench/rd_floor.py``) and the README quote them from here.
Only the points given are meaningful; a line drawn through them is a guide
for the eye, and nothing is extrapolated beyond them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RDReference:
    """A published estimate of R(D): its points and what they do and do not say.

    ``points``: ``(bits per digit, PSNR dB)`` pairs, increasing.
    ``resize_db``: the PSNR shift applied to convert the source's 32x32 images
    to 28x28 digits. ``max_bits``: the estimator's cap (nothing is known above
    ``max_psnr_db``). ``one_shot_extra_bits``: the range the source measured
    for coding one image at a time instead of unbounded blocks.
    """

    name: str
    authors: tuple[str, ...]
    title: str
    venue: str
    points: tuple[tuple[float, float], ...]
    distortion: str
    data: str
    block_length: str
    resize_db: float
    max_bits: float
    max_psnr_db: float
    one_shot_extra_bits: tuple[float, float]
    one_shot_source: str

    @property
    def citation(self) -> str:
        """``Authors, "Title", Venue``, in English."""
        names = ", ".join(self.authors[:-1]) + " and " + self.authors[-1]
        return f'{names}, "{self.title}", {self.venue}'

    def rows(self) -> list[dict]:
        """The points as rows with ``bits_per_digit`` and ``psnr_db``."""
        return [{"bits_per_digit": b, "psnr_db": q} for b, q in self.points]

    def as_dict(self) -> dict:
        """Everything, JSON-ready (for results files)."""
        return {
            "name": self.name,
            "authors": list(self.authors),
            "title": self.title,
            "venue": self.venue,
            "citation": self.citation,
            "points": self.rows(),
            "distortion": self.distortion,
            "data": self.data,
            "block_length": self.block_length,
            "resize_db": self.resize_db,
            "max_bits": self.max_bits,
            "max_psnr_db": self.max_psnr_db,
            "one_shot_extra_bits": list(self.one_shot_extra_bits),
            "one_shot_source": self.one_shot_source,
        }


NERD_MNIST = RDReference(
    name="NERD estimate of R(D)",
    authors=("Lei", "Hassani", "Saeedi Bidokhti"),
    title=(
        "Neural Estimation of the Rate-Distortion Function with Applications to Operational "
        "Source Coding"
    ),
    venue="IEEE Journal on Selected Areas in Information Theory (JSAIT), 2022",
    points=((3.6, 13.9), (8.9, 16.3)),
    distortion="squared error",
    data="MNIST training set, resized to 32x32",
    block_length="unbounded (R(D) itself, not a one-digit-at-a-time code)",
    resize_db=0.8,
    max_bits=15.0,
    max_psnr_db=17.0,
    one_shot_extra_bits=(1.3, 2.9),
    one_shot_source="their one-shot coder on SVHN",
)
"""R(D) of MNIST under squared error (NERD), in bits per 28x28 digit and PSNR (see the caveats)."""
