"""A micro report: every manipulation of the lab has its section, numbers and figures."""

from __future__ import annotations

import json
import re

import pytest

from mnistcodec.cli import build_parser
from mnistcodec.errors import InputError
from mnistcodec.lab.report import PROTOCOLS, build_report

pytest.importorskip("imagecodecs")

SECTIONS = [
    "m2-1", "m21-1", "m21-2", "m21-3", "m21-4", "m21-5", "m21-6", "m21-7", "m21-8", "m21-9", "m21-10",
    "m22-3", "m22-4", "m22-5", "m22-6", "m3-1", "m3-2", "m3-3", "m3-4", "m3-5", "m4-6", "m4-7", "m4-8",
    "m4-9", "m5-1", "presets", "beyond",
]


@pytest.fixture(scope="module")
def micro_report(tmp_path_factory, _data_environment):
    out = tmp_path_factory.mktemp("report") / "report"
    lines: list[str] = []
    result = build_report(out, "micro", progress=False, log=lines.append)
    return result, lines


def test_micro_report_has_every_section_in_the_lab_order(micro_report):
    result, _ = micro_report
    html = result.index.read_text()
    positions = [html.find(f'id="{anchor}"') for anchor in SECTIONS]
    assert all(p > 0 for p in positions), [a for a, p in zip(SECTIONS, positions, strict=True) if p < 0]
    assert positions == sorted(positions)
    assert html.count("data:image/png;base64,") >= 10
    assert "src=\"figures/" not in html  # self-contained
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
