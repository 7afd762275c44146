"""A micro report: every manipulation of the lab has its section, numbers and figures, in English and French."""

from __future__ import annotations

import html as html_lib
import json
import re
import shutil
from pathlib import Path

import pytest

from mnistcodec.cli import build_parser, main
from mnistcodec.errors import InputError
from mnistcodec.lab.page import page_context
from mnistcodec.lab.protocol import report_trials_dir
from mnistcodec.lab.report import PROTOCOLS, build_report

pytest.importorskip("imagecodecs")

SECTIONS = [
    "m2-1",
    "m21-1",
    "m21-2",
    "m21-3",
    "m21-4",
    "m21-5",
    "m21-6",
    "m21-7",
    "m21-8",
    "m21-9",
    "m21-10",
    "m22-3",
    "m22-4",
    "m22-5",
    "m22-6",
    "m3-1",
    "m3-2",
    "m3-3",
    "m3-4",
    "m3-5",
    "m4-6",
    "m4-7",
    "m4-8",
    "m4-9",
    "m5-1",
    "presets",
    "beyond",
]


@pytest.fixture(scope="module")
def micro_report(tmp_path_factory, _data_environment):
    out = tmp_path_factory.mktemp("report") / "report"
    lines: list[str] = []
    result = build_report(out, "micro", progress=False, log=lines.append)
    return result, lines


def _files(out):
    return {
        p.relative_to(out): p.read_bytes()
        for p in [
            out / "index.html",
            out / "results.json",
            *sorted((out / "figures").glob("*.png")),
        ]
    }


@pytest.fixture(scope="module")
def micro_report_fr(tmp_path_factory, micro_report):
    """The French page of the same run, written beside a copy of the English report (cache included).

    Returns the result, the progress lines, and the English files before and after the French run.
    """
    out = tmp_path_factory.mktemp("report-fr") / "report"
    shutil.copytree(micro_report[0].out, out)
    english = _files(out)
    lines: list[str] = []
    result = build_report(out, "micro", progress=False, log=lines.append, lang="fr")
    return result, lines, (english, _files(out))


def _text(html: str) -> str:
    """The page's text: style and tags dropped, entities decoded, spaces collapsed (no-break spaces kept)."""
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<style>.*?</style>", "", html, flags=re.S))
    return re.sub(r"[ \t\r\n]+", " ", html_lib.unescape(text)).strip()


def test_micro_report_has_every_section_in_the_lab_order(micro_report):
    result, _ = micro_report
    html = result.index.read_text()
    positions = [html.find(f'id="{anchor}"') for anchor in SECTIONS]
    assert all(p > 0 for p in positions), [
        a for a, p in zip(SECTIONS, positions, strict=True) if p < 0
    ]
    assert positions == sorted(positions)
    assert html.count("data:image/png;base64,") >= 10
    assert 'src="figures/' not in html  # self-contained
    assert "60,000 training digits" in html and "Protocol of this run: micro" in html


def test_micro_report_results_hold_the_numbers(micro_report):
    result, _ = micro_report
    data = json.loads((result.out / "results.json").read_text())
    assert data["dataset"]["train_size"] == 60000 and data["dataset"]["test_size"] == 10000
    assert data["lab_2_1"]["y"]["shape"] == [1, 10] and data["lab_2_1"]["y"]["dtype"] == "float32"
    assert data["lab_2_1"]["example_batch"]["size"] == 32
    batch = data["lab_batch"]["by_lmbda"]["2000"]
    assert len(batch["hex"]) == 16 and batch["decoded_equals_reconstruction"]
    assert all(re.fullmatch("[0-9a-f]*", h) for h in batch["hex"])
    assert {r["lmbda"] for r in data["lambda_sweep"]} == {300.0, 2000.0}
    assert {r["prior"] for r in data["prior_sweep"]} == {"logistic", "deep-factorized"}
    assert data["baselines"]["rows"] and data["samples"]["count"] == 16
    assert data["training"]["main_log"][0].startswith("epoch 1/1")


def test_micro_report_compares_the_seed_and_improved_presets(micro_report):
    result, _ = micro_report
    data = json.loads((result.out / "results.json").read_text())
    rows = data["presets"]["rows"]
    assert [r["lmbda"] for r in rows["seed"]] == [300.0, 2000.0]
    assert [r["lmbda"] for r in rows["improved"]] == [300.0, 2000.0]
    seed_keys = {r["key"] for r in rows["seed"]}
    assert seed_keys.isdisjoint(r["key"] for r in rows["improved"])
    assert {r["key"] for r in rows["improved"]} == {r["key"] for r in data["lambda_sweep"]}
    bd = data["presets"]["bd_rates"]
    assert set(bd) == {"psnr", "mad"}
    for entry in bd.values():
        assert entry["bd_rate_percent"] is not None or entry["note"]
    html = result.index.read_text()
    assert "BD-rate of the improved preset against the seed" in html
    assert (result.out / "figures" / "preset_curves.png").is_file()


def test_trials_and_measurements_are_cached_under_the_output(micro_report):
    result, lines = micro_report
    trials = result.out / "cache" / "trials"
    assert report_trials_dir(result.out) == trials
    for spec in PROTOCOLS["micro"].all_specs():
        assert (trials / spec.key / "result.json").is_file()
    assert list((result.out / "cache").glob("baselines-*.json"))
    # lambda sweep 2 + latent 1 + prior 1 + the seed preset's 2 (the improved preset's curve is the
    # lambda sweep: same configuration, same prior learning rate)
    assert any("training and evaluating 6 trial(s)" in line for line in lines)


def test_refuses_a_directory_that_is_not_a_report(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="--force"):
        build_report(tmp_path, "micro", progress=False, log=lambda _: None)


def test_report_command_line():
    parser = build_parser()
    assert parser.parse_args(["report"]).protocol == "quick"
    assert parser.parse_args(["report", "--full"]).full
    assert parser.parse_args(["report", "--protocol", "micro", "--force"]).force
    with pytest.raises(SystemExit):
        parser.parse_args(["report", "--quick", "--full"])


def test_report_command_line_language():
    parser = build_parser()
    assert parser.parse_args(["report"]).lang == "en"
    assert parser.parse_args(["report", "--lang", "fr"]).lang == "fr"


def test_unknown_language_is_one_clear_error(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", "--protocol", "micro", "--lang", "de", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mnistcodec: error:")
    assert "'de'" in err[0] and "en, fr" in err[0]
    assert not out.exists()  # refused before any work
    with pytest.raises(InputError, match="choose one of en, fr"):
        build_report(tmp_path / "other", "micro", progress=False, log=lambda _: None, lang="EN")


LAB_QUESTIONS_FR = [
    "Donner la structure des réseaux réalisant l'analyse et la synthèse.",
    "Quel est le type de la variable y ?",
    "Pourquoi réalise-t-on cette opération d'ajout de bruit ?",
    "Quel est le débit obtenu ?",
    "Quelle est la taille du lot (batch) utilisé dans cet exemple ?",
    "Quel est le rôle de l'argument 10 de MNISTCompressionTrainer ?",
    "Quelles sont les informations que l'on obtient lors de la phase d'apprentissage ?",
    "Pourquoi la longueur de la chaîne codée diffère-t-elle du contenu informatif de chaque chiffre ?",
    "Que se passe-t-il si l'on répète l'expérience avec des valeurs différentes, par exemple λ=500 ?",
    "Evaluer l'influence du choix des probabilités a priori pour les composantes de l'espace latent.",
    "Qu'observez-vous?",
]

ENGLISH_HEADINGS = [
    "Defining the model",
    "Rate and distortion, step by step",
    "2.2 · Training",
    "Compressing MNIST digits",
    "The rate-distortion trade-off",
    "The decoder as a generative model",
    "Beyond the seed",
    "Shipped models",
    "Protocol of this run",
    "Short protocol",
    "information (bits)",
    "real bits",
    "test curve",
    "anchor curve",
    "quality settings",
    "What is the type",
    "Why is the reconstruction",
    "figure not available",
]


def test_french_page_asks_the_lab_questions_in_french(micro_report, micro_report_fr):
    result, lines, _ = micro_report_fr
    page = result.index.read_text()
    assert '<html lang="fr">' in page
    positions = [page.find(f'id="{anchor}"') for anchor in SECTIONS]
    assert all(p > 0 for p in positions) and positions == sorted(positions)
    assert page.count("data:image/png;base64,") >= 10
    text = _text(page)
    for question in LAB_QUESTIONS_FR:
        assert question in text, question
    assert (
        "Protocole de cette exécution : micro" in text
        and "60\u00a0000 chiffres d'entraînement" in text
    )
    headings = [_text(h) for h in re.findall(r"<h[12]>(.*?)</h[12]>", page)]
    assert headings[1:] == [
        "2 · Définir le modèle de l'entraînement",
        "2.1 · Calcul du débit et de la distorsion, pas à pas (modèle non entraîné)",
        "2.2 · Entraînement du modèle",
        "3 · Compresser des images de la base MNIST",
        "4 · Compromis entre débit et distorsion",
        "5 · Utiliser le décodeur comme un modèle génératif",
        "Au-delà du code de départ",
    ]
    present = [words for words in ENGLISH_HEADINGS if words in text]
    assert not present, present
    assert "dictionnaires de chiffres entiers" in text
    english = _text(micro_report[0].index.read_text())
    assert '<html lang="en">' in micro_report[0].index.read_text()
    assert "Défin" not in english and "Au-delà" not in english


def test_french_page_reuses_the_measurements(micro_report, micro_report_fr):
    (en, _), (fr, lines, _) = micro_report, micro_report_fr
    assert not [line for line in lines if "running (" in line]  # every trial came from the cache
    assert any("codecs classiques : en cache" in line for line in lines)
    en_data = json.loads((en.out / "results.json").read_text())
    fr_data = json.loads((fr.out / "fr" / "results.json").read_text())
    assert en_data["language"] == "en" and fr_data["language"] == "fr"
    for key in (
        "lab_2_1",
        "lab_batch",
        "lambda_sweep",
        "latent_sweep",
        "prior_sweep",
        "bd_rates",
        "samples",
        "presets",
        "prior_initial_bits_per_latent",
        "floor",
    ):
        assert fr_data[key] == en_data[key], key
    assert fr_data["protocol"]["description"][0].startswith("Entraînement : 1 époque")
    assert en_data["protocol"]["description"][0].startswith("Training: 1 epoch on")


def test_french_report_has_its_own_files_and_french_progress(micro_report_fr):
    result, lines, (english_before, english_after) = micro_report_fr
    assert result.index == result.out / "fr" / "index.html"
    assert english_after == english_before  # the English page and figures are untouched
    figures = {p.name for p in (result.out / "fr" / "figures").glob("*.png")}
    assert {"rd_curves.png", "preset_curves.png", "rd_floor.png", "untrained.png"} <= figures
    steps = [line for line in lines if line.startswith("[")]
    assert len(steps) == 10 and all(line.startswith("[rapport ") for line in steps)
    assert not [line for line in steps if "report" in line or "loading" in line]
    assert lines[-1].startswith("rapport écrit dans ")


def test_micro_report_states_the_floor_and_the_rd_estimate(micro_report):
    result, _ = micro_report
    data = json.loads((result.out / "results.json").read_text())
    floor = data["floor"]
    mean, classes = floor["trivial_codecs"]
    assert mean["codec"] == "mean digit" and mean["bits_per_digit"] == 0 and mean["n"] == 10000
    assert 11.5 < mean["psnr_db"] < 12.2 and 12.7 < classes["psnr_db"] < 13.4
    assert 3.2 < classes["bits_per_digit"] < 3.4
    assert floor["rd_estimate"]["points"] == [
        {"bits_per_digit": 3.6, "psnr_db": 13.9},
        {"bits_per_digit": 8.9, "psnr_db": 16.3},
    ]
    # Every point of every checked curve is either listed under the floor or above it.
    for name, rows in floor["below"].items():
        assert len(rows) <= floor["checked"][name]
        for row in rows:
            assert row["psnr_db"] < floor["floor"]["class_psnr_db"]
    text = _text(result.index.read_text())
    assert "What to notice:" in text and "NERD" in text and "32×32" in text
    assert (result.out / "figures" / "rd_floor.png").is_file()
    # The default model's codebook levels, named with their sizes.
    books = floor["default_model_codebooks"]
    assert [b["codewords"] for b in books] == [16, 64, 256, 1024, 4096]
    assert "whole-digit codebooks of 16, 64, 256, 1,024, 4,096 codewords" in text


def test_the_notebook_keeps_its_models_in_the_report_cache_by_default():
    notebook = json.loads((Path(__file__).parents[1] / "notebooks" / "lab.ipynb").read_text())
    code = "".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code")
    assert 'report_trials_dir(REPO / "report")' in code
    assert report_trials_dir() == Path("report") / "cache" / "trials"


def test_bd_rates_against_classical_codecs_keep_only_numbers_and_say_why_not(micro_report):
    result, _ = micro_report
    data = json.loads((result.out / "results.json").read_text())
    entries = data["bd_rates"]["learned_vs_classical"]
    tests = {e["test"] for e in entries}
    assert "vr-mixture-long" in tests or any(t.startswith("learned") for t in tests)
    split = page_context(data)["bd_classical"]
    assert all(e["bd_rate_percent"] is not None for e in split["computed"])
    missing = [e for group in split["missing"].values() for e in group]
    assert len(split["computed"]) + len(missing) == len(entries)
    for e in missing:
        if e["side"] == "above":
            assert e["anchor_quality_range"][0] >= e["test_quality_range"][1]
        elif e["side"] == "below":
            assert e["anchor_quality_range"][1] <= e["test_quality_range"][0]
    html = result.index.read_text()
    assert (
        "no overlap"
        not in _text(html).split("BD-rate of the learned curves")[1].split("Classical codecs on")[0]
    )
