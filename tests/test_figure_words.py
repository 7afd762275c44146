"""The figures speak the page's language: words from the catalogue, numbers with the language's separators."""

from __future__ import annotations

import re

import numpy as np
import pytest
from matplotlib.text import Text

from mnistcodec.experiments.rd_limit import NERD_MNIST
from mnistcodec.lab import curves, drawing, figures
from mnistcodec.lab.words import LANGUAGES, Words, format_number

TRIVIAL = [
    {"codec": "mean digit", "bits_per_digit": 0.0, "psnr_db": 11.86, "n": 10000},
    {"codec": "class means", "bits_per_digit": 3.32, "psnr_db": 13.05, "n": 10000},
]


def _curve(offset: float) -> list[dict]:
    return [
        {
            "lmbda": lm,
            "string_bits": bits + offset,
            "info_bits": bits + offset - 0.5,
            "psnr_db": psnr,
            "mad": mad,
        }
        for lm, bits, psnr, mad in (
            (300, 10.6, 11.15, 0.09),
            (1000, 25.0, 16.5, 0.05),
            (2000, 40.0, 19.2, 0.04),
        )
    ]


LEVELS = [
    {
        "level": k,
        "lmbda": 150.0 * 1.3**k,
        "string_bits": 3.2 + 3.6 * k,
        "psnr_db": 11.2 + 0.7 * k,
        "mad": 0.12 / (1 + 0.2 * k),
    }
    for k in range(16)
]

ENGLISH = re.compile(
    r"\b(bits per digit|epoch|train|distortion|against|untrained|real bits|information|"
    r"level|scale|shipped|mean digit|class means|values|rate|loss|quality|latent size|lower is better)\b"
)


@pytest.fixture
def drawn(monkeypatch):
    """Every figure drawn in the test: the texts it shows (ticks included), instead of a PNG."""
    shown: list[list[str]] = []

    def collect(fig, out, words=None):
        if words is not None:
            drawing.localise_numbers(fig, words)
        fig.canvas.draw()
        shown.append([t.get_text() for t in fig.findobj(Text) if t.get_visible() and t.get_text()])
        drawing.plt.close(fig)
        return out

    monkeypatch.setattr(figures, "save_figure", collect)
    monkeypatch.setattr(curves, "save_figure", collect)
    return shown


def _draw_everything(words: Words, tmp_path) -> None:
    history = [
        {
            "epoch": e,
            "rate": 50.0 - e,
            "distortion": 0.05,
            "loss": 150.0,
            "val_rate": 49.5 - e,
            "val_distortion": 0.051,
            "val_loss": 149.0,
        }
        for e in (1, 2)
    ]
    digit = np.zeros((28, 28), np.uint8)
    figures.plot_test_image(digit, tmp_path / "a.png", words=words)
    t = np.linspace(-6, 6, 11)
    figures.plot_prior_densities(
        {"logistic": (t, np.ones((11, 2)))}, (0.01, 2.0), tmp_path / "b.png", words=words
    )
    figures.plot_untrained_reconstruction(
        digit, np.full((28, 28), 0.25), 0.0946, 20.5, tmp_path / "c.png", words=words
    )
    figures.plot_training_curves(
        history,
        tmp_path / "d.png",
        title=words("training_title", lmbda=2000, latents=50),
        words=words,
    )
    figures.plot_digit_grid(
        np.stack([digit] * 2),
        np.stack([digit] * 2),
        [40, 41],
        [39.4, 40.6],
        [18.25, 17.5],
        tmp_path / "e.png",
        words=words,
    )
    figures.plot_rd_curves(
        {"d=50 logistic": _curve(0)},
        None,
        tmp_path / "f.png",
        words=words,
        trivial=TRIVIAL,
        reference=NERD_MNIST.rows(),
    )
    rows = [
        {**r, "latent_dims": d, "prior": p}
        for r in _curve(0)
        for d, p in ((10, "logistic"), (50, "normal"))
    ]
    figures.plot_latent_sweep(rows, tmp_path / "g.png", words=words)
    figures.plot_prior_sweep(rows, tmp_path / "h.png", words=words)
    figures.plot_learned_priors(
        {"logistic": (t, np.ones((11, 1)), [3])}, tmp_path / "i.png", words=words
    )
    stars = [{"label": "seed-lmbda2000", "string_bits": 48.9, "psnr_db": 18.7, "mad": 0.041}]
    figures.plot_preset_curves(
        {"seed": _curve(5), "improved": _curve(0), "vr": LEVELS},
        tmp_path / "j.png",
        {"shipped": stars},
        words=words,
    )
    below = [{**_curve(0)[0], "curve": "improved"}, {**LEVELS[0], "curve": "vr"}]
    figures.plot_floor(
        {"improved": _curve(0), "vr": LEVELS},
        TRIVIAL,
        NERD_MNIST.rows(),
        tmp_path / "k.png",
        below=below,
        words=words,
    )


def test_french_figures_have_no_english_words_and_use_decimal_commas(drawn, tmp_path):
    _draw_everything(Words("fr"), tmp_path)
    texts = [text for fig in drawn for text in fig]
    assert len(drawn) == 11
    english = [text for text in texts if ENGLISH.search(text)]
    assert not english, english
    decimals = [text for text in texts if re.search(r"\d\.\d", text)]
    assert not decimals, decimals
    joined = "\n".join(texts)
    assert "distorsion (MAD) 0,0946" in joined and "PSNR 18,2 dB" in joined and "niveau 0" in joined
    assert any(re.fullmatch(r"\d+,\d+", text) for text in texts)  # tick numbers too


def test_english_figures_keep_their_words(drawn, tmp_path):
    _draw_everything(Words("en"), tmp_path)
    joined = "\n".join(text for fig in drawn for text in fig)
    assert (
        "distortion (MAD) 0.0946" in joined and "bits per digit" in joined and "level 0" in joined
    )


def test_every_language_has_every_text():
    keys = [Words(lang).keys() for lang in LANGUAGES]
    assert all(k == keys[0] for k in keys) and len(keys[0]) > 40


@pytest.mark.parametrize(
    ("lang", "value", "fmt", "text"),
    [
        ("en", -0.04, "{:.0f}", "0"),
        ("en", -0.04, "{:+.1f} %", "+0.0 %"),
        ("en", -0.4, "{:.0f}", "0"),
        ("en", -0.0, "{:+.0f}", "+0"),  # round(y) of a small negative latent
        ("en", -12.5, "{:+.1f} %", "-12.5 %"),
        ("fr", 1234.5, "{:,.1f}", "1\u00a0234,5"),
        ("fr", -0.001, "{:.2f}", "0,00"),
    ],
)
def test_numbers_never_read_minus_zero(lang, value, fmt, text):
    assert format_number(lang, value, fmt) == text


def test_labels_are_placed_apart(tmp_path):
    fig, ax = drawing.plt.subplots(figsize=(4, 3))
    ax.plot([1, 2, 3], [1, 2, 3], "o-")
    fig.tight_layout()
    items = [(2, 2, "first"), (2, 2, "second"), (2, 2, "third")]
    left_out = drawing.place_labels(ax, items)
    renderer = fig.canvas.get_renderer()
    placed = [t for t in ax.texts]
    assert len(placed) + len(left_out) == 3 and len(placed) >= 2
    boxes = [t.get_window_extent(renderer) for t in placed]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    drawing.plt.close(fig)


def test_preset_legend_and_labels_stay_off_the_data(monkeypatch, tmp_path):
    """The crowded "Beyond the seed" figure: the legend under the panels, no two labels overlapping."""
    kept = {}

    def keep(fig, out, words=None):
        fig.canvas.draw()
        kept["fig"] = fig
        return out

    monkeypatch.setattr(curves, "save_figure", keep)
    stars = [
        {"label": name, "string_bits": 38.0 + i * 0.4, "psnr_db": 20.0, "mad": 0.032}
        for i, name in enumerate(("vr", "vr-balanced", "vr-mixture", "vr-mixture-long"))
    ]
    curves.plot_preset_curves(
        {"seed": _curve(5), "improved": _curve(0), "vr-mixture-long, every level": LEVELS},
        tmp_path / "p.png",
        {"shipped": stars},
    )
    fig = kept["fig"]
    renderer = fig.canvas.get_renderer()
    (legend,) = fig.legends
    box = legend.get_window_extent(renderer)
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent(renderer))
        labels = [t.get_window_extent(renderer) for t in ax.texts]
        assert labels and not any(
            a.overlaps(b) for i, a in enumerate(labels) for b in labels[i + 1 :]
        )
        assert len(ax.texts) < 3 + 3 + len(LEVELS)  # fewer labels than points
    drawing.plt.close(fig)
