"""Every figure function writes a PNG from numbers, and the measurements behind them."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from mnistcodec.lab import figures, measurements
from mnistcodec.model.compression_model import CompressionModel, ModelConfig
from mnistcodec.model.priors import PRIORS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path) -> bool:
    data = path.read_bytes()
    return data.startswith(PNG_MAGIC) and len(data) > 1000


def _learned_rows():
    return [
        {
            "lmbda": lm,
            "latent_dims": d,
            "prior": pr,
            "string_bits": bits + 3,
            "info_bits": bits,
            "psnr_db": psnr,
            "mad": mad,
        }
        for lm, d, pr, bits, psnr, mad in [
            (300, 50, "logistic", 20.0, 14.0, 0.08),
            (2000, 50, "logistic", 50.0, 18.0, 0.04),
            (2000, 10, "logistic", 30.0, 16.0, 0.06),
            (2000, 50, "normal", 52.0, 17.8, 0.041),
        ]
    ]


def _baseline_rows():
    rows = []
    for mode, extra in (("per-file", 1500.0), ("tiled", 0.0)):
        for q, bits, psnr in ((10, 300.0, 20.0), (50, 600.0, 28.0), (90, 1200.0, 40.0)):
            rows.append(
                {
                    "codec": "jpeg",
                    "label": "JPEG",
                    "quality": q,
                    "mode": mode,
                    "bits_per_digit": bits + extra,
                    "psnr_db": psnr,
                    "lossless": False,
                }
            )
        rows.append(
            {
                "codec": "png",
                "label": "PNG",
                "quality": "lossless",
                "mode": mode,
                "bits_per_digit": 900.0 + extra,
                "psnr_db": 100.0,
                "lossless": True,
            }
        )
    return rows


DRAWING_MODULES = ("figures", "curves", "drawing", "words")


@pytest.mark.parametrize("module", DRAWING_MODULES)
def test_figures_only_draw(module):
    """The drawing modules import nothing that runs a model, codes digits, trains or evaluates."""
    path = Path(figures.__file__).with_name(f"{module}.py")
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    forbidden = (
        "torch",
        "mnistcodec.coding",
        "mnistcodec.experiments",
        "mnistcodec.training",
        "mnistcodec.model",
    )
    assert not [name for name in imported if name.startswith(forbidden)], imported
    assert {name for name in imported if name.startswith("mnistcodec")} <= {
        "mnistcodec.errors",
        "mnistcodec.storage.atomic",
        "mnistcodec.storage.digits",
        *(f"mnistcodec.lab.{m}" for m in DRAWING_MODULES),
    }


def test_plot_test_image(tmp_path, test_digits):
    assert _is_png(figures.plot_test_image(test_digits[0], tmp_path / "x.png"))


def test_plot_prior_densities_every_family(tmp_path):
    densities = measurements.prior_densities(list(PRIORS))
    assert _is_png(
        figures.plot_prior_densities(densities, measurements.DENSITY_SCALES, tmp_path / "p.png")
    )
    t, p = measurements.prior_family_densities("logistic")
    assert p.shape == (501, 10) and t[0] == -6 and t[-1] == 6
    # The smallest scale is close to U(-1/2, 1/2).
    assert abs(p[250, 0] - 1.0) < 1e-6


def test_plot_untrained_reconstruction(tmp_path, test_digits):
    out = measurements.untrained_reconstruction(
        CompressionModel(ModelConfig(latent_dims=10)), test_digits[0]
    )
    figures.plot_untrained_reconstruction(
        test_digits[0], out["x_hat"], out["distortion"], out["rate_bits"], tmp_path / "u.png"
    )
    assert _is_png(tmp_path / "u.png")
    assert 0 < out["distortion"] < 1 and out["rate_bits"] > 0 and out["x_tilde"].dtype == np.uint8


def test_plot_training_curves(tmp_path, tiny_model):
    history = tiny_model.metadata["history"]
    assert _is_png(figures.plot_training_curves(history, tmp_path / "h.png"))
    assert _is_png(figures.plot_training_curves(history * 3, tmp_path / "h3.png", title="three"))


def test_plot_codec_grid(tmp_path, tiny_model, test_digits):
    digits = test_digits[48:64]
    numbers = measurements.code_batch(tiny_model, digits)
    figures.plot_digit_grid(
        digits,
        numbers["reconstructions"],
        numbers["string_bits"],
        numbers["info_bits"],
        numbers["psnr_db"],
        tmp_path / "g.png",
        title="grid",
    )
    assert _is_png(tmp_path / "g.png")
    assert len(numbers["hex"]) == 16 and all(
        b == 8 * len(s) for b, s in zip(numbers["string_bits"], numbers["strings"], strict=True)
    )
    assert numbers["reconstructions"].shape == (16, 28, 28)
    assert numbers["decoded_equals_reconstruction"]


def test_plot_rd_curves(tmp_path):
    rows = [r for r in _learned_rows() if r["latent_dims"] == 50 and r["prior"] == "logistic"]
    assert _is_png(
        figures.plot_rd_curves({"d=50 logistic": rows}, _baseline_rows(), tmp_path / "rd.png")
    )
    assert _is_png(figures.plot_rd_curves({"only learned": rows}, None, tmp_path / "rd2.png"))


def test_plot_sweeps(tmp_path):
    rows = _learned_rows()
    assert _is_png(
        figures.plot_latent_sweep([r for r in rows if r["prior"] == "logistic"], tmp_path / "l.png")
    )
    assert _is_png(
        figures.plot_prior_sweep([r for r in rows if r["lmbda"] == 2000], tmp_path / "p.png")
    )


def test_plot_learned_priors(tmp_path, tiny_model):
    densities = measurements.learned_prior_densities({"tiny": tiny_model})
    t, p, dims = densities["tiny"]
    assert p.shape == (t.shape[0], 4) and len(dims) == 4
    assert _is_png(figures.plot_learned_priors(densities, tmp_path / "lp.png"))


def test_plot_samples(tmp_path, tiny_model):
    samples, redrawn = measurements.generative_samples(tiny_model, count=6)
    assert _is_png(figures.plot_samples(samples, tmp_path / "s.png", cols=3))
    assert samples.shape == (6, 28, 28) and samples.dtype == np.uint8 and redrawn >= 0


@pytest.mark.parametrize("seed", [0, 1])
def test_samples_are_reproducible(tiny_model, seed):
    a, _ = measurements.generative_samples(tiny_model, count=4, seed=seed)
    b, _ = measurements.generative_samples(tiny_model, count=4, seed=seed)
    np.testing.assert_array_equal(a, b)
