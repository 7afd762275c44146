"""The ``baselines`` command on a few digits."""

from __future__ import annotations

import json

import pytest

from mnistcodec.cli import main
from mnistcodec.errors import InputError
from mnistcodec.experiments.comparison import read_learned_rows

pytest.importorskip("imagecodecs")


def test_baselines_command_writes_tables_plot_and_bd_rates(tmp_path, capsys):
    learned = tmp_path / "learned.json"
    learned.write_text(
        json.dumps(
            [
                {
                    "lmbda": 300,
                    "latent_dims": 50,
                    "prior": "logistic",
                    "string_bits": 30.0,
                    "info_bits": 28.0,
                    "psnr_db": 15.0,
                },
                {
                    "lmbda": 2000,
                    "latent_dims": 50,
                    "prior": "logistic",
                    "string_bits": 55.0,
                    "info_bits": 52.0,
                    "psnr_db": 18.5,
                },
            ]
        )
    )
    out = tmp_path / "base"
    assert (
        main(
            [
                "baselines",
                "--n",
                "6",
                "--codecs",
                "jpeg",
                "webp",
                "png",
                "--out",
                str(out),
                "--learned",
                str(learned),
                "-q",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "JPEG" in text and "tiled" in text and "per-file" in text
    assert "codecs without a network" in text and "mean digit" in text and "class means" in text
    data = json.loads((out / "baselines.json").read_text())
    mean, classes = data["trivial_codecs"]
    assert mean["codec"] == "mean digit" and mean["bits_per_digit"] == 0.0 and mean["n"] == 6
    assert classes["codec"] == "class means" and classes["bits_per_digit"] > 0
    assert data["n"] == 6 and {r["codec"] for r in data["rows"]} == {"jpeg", "webp", "png"}
    assert (out / "baselines.csv").read_text().startswith("codec,label,quality,mode")
    assert (out / "rd.png").stat().st_size > 1000
    bd = json.loads((out / "bd_rates.json").read_text())
    learned_vs = [e for e in bd if e["test"].startswith("learned")]
    assert learned_vs and all(e["bd_rate_percent"] is not None or e["note"] for e in learned_vs)
    assert any(e["test"] == "WebP (per-file)" and e["anchor"] == "JPEG (per-file)" for e in bd)


def test_baselines_command_rejects_a_bad_learned_file(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert (
        main(
            [
                "baselines",
                "--n",
                "2",
                "--codecs",
                "png",
                "--out",
                str(tmp_path / "o"),
                "--learned",
                str(bad),
                "-q",
            ]
        )
        == 2
    )
    assert "cannot read learned results" in capsys.readouterr().err


def test_learned_rows_from_sweep_and_report_results(tmp_path):
    row = {
        "lmbda": 300,
        "latent_dims": 50,
        "prior": "logistic",
        "string_bits": 30.0,
        "psnr_db": 15.0,
    }
    sweep, report, other = (
        tmp_path / "sweep.json",
        tmp_path / "report.json",
        tmp_path / "other.json",
    )
    sweep.write_text(json.dumps([row]))
    report.write_text(json.dumps({"lambda_sweep": [{**row, "lmbda": 2000}], "trials": [row]}))
    other.write_text(json.dumps([{"lmbda": 300}]))
    assert read_learned_rows([sweep, report]) == [row, {**row, "lmbda": 2000}]
    with pytest.raises(InputError, match="is not a sweep results.json"):
        read_learned_rows([other])
