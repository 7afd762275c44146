"""Sweeps: configuration hashing, the trial cache, resuming, parallel workers, BD-rate tables."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest

import mnistcodec.experiments.sweep
from mnistcodec.cli import main
from mnistcodec.errors import MnistCodecError
from mnistcodec.experiments.bdrate import compare_curves, learned_bd_rates
from mnistcodec.experiments.sweep import (
    SweepResult,
    TrialSpec,
    make_grid,
    run_sweep,
    run_trial,
    run_trials,
)
from mnistcodec.training.loop import TrainConfig, train

TINY = TrainConfig(epochs=1, limit=128, val_limit=64, batch_size=64)


def _grid(**kwargs):
    options = {
        "lmbdas": [300, 2000],
        "latent_dims": [4],
        "priors": ["logistic"],
        "train_config": TINY,
        "eval_limit": 32,
    }
    options.update(kwargs)
    return make_grid(**options)


def test_key_depends_on_the_configuration_but_not_the_data_directory():
    a, b = _grid()
    assert a.key != b.key
    assert replace(a, train=replace(a.train, data_dir="/elsewhere")).key == a.key
    assert replace(a, train=replace(a.train, epochs=2)).key != a.key
    assert replace(a, eval_limit=10).key == a.key  # evaluation settings live in result.json
    assert len(make_grid([300, 300], [4], ["logistic"], TINY)) == 1


@pytest.fixture(scope="module")
def trained_grid(tmp_path_factory, _data_environment):
    """Two tiny trials run once; tests work on copies of their cache."""
    root = tmp_path_factory.mktemp("grid")
    results = run_trials(_grid(), root, progress=False, log=lambda _: None)
    return root, results


@pytest.fixture
def grid_copy(trained_grid, tmp_path):
    root, results = trained_grid
    shutil.copytree(root, tmp_path / "trials")
    return tmp_path / "trials", results


def test_trials_are_cached_and_a_repeat_is_free(grid_copy, monkeypatch):
    root, first = grid_copy
    assert [t.trained for t in first] == [True, True]
    assert all((t.directory / "result.json").is_file() and t.model_path.is_file() for t in first)

    def no_work(*args, **kwargs):
        raise AssertionError("a cached trial was computed again")

    monkeypatch.setattr(mnistcodec.experiments.sweep, "train", no_work)
    monkeypatch.setattr(mnistcodec.experiments.sweep, "evaluate", no_work)
    again = run_trials(_grid(), root, progress=False, log=lambda _: None)
    assert all(t.reused for t in again)
    assert [t.row() for t in again] == [t.row() for t in first]


def test_an_interrupted_sweep_continues(grid_copy, monkeypatch):
    root, first = grid_copy
    (root / first[1].spec.key / "result.json").unlink()  # killed after training, before evaluating
    monkeypatch.setattr(
        mnistcodec.experiments.sweep, "train", lambda *a, **k: pytest.fail("retrained")
    )
    real_evaluate = mnistcodec.experiments.sweep.evaluate

    def failing(*args, **kwargs):
        raise MnistCodecError("interrupted again")

    monkeypatch.setattr(mnistcodec.experiments.sweep, "evaluate", failing)
    with pytest.raises(MnistCodecError, match="1 of 2 trials failed"):
        run_trials(_grid(), root, progress=False, log=lambda _: None)
    monkeypatch.setattr(mnistcodec.experiments.sweep, "evaluate", real_evaluate)
    resumed = run_trials(_grid(), root, progress=False, log=lambda _: None)
    assert resumed[0].reused
    assert not resumed[1].trained and resumed[1].evaluated  # its model survived; only evaluated
    assert resumed[1].evaluation == first[1].evaluation


def test_a_trial_interrupted_during_training_resumes_from_its_checkpoint(tmp_path):
    spec = TrialSpec(_grid()[0].model, replace(TINY, epochs=2), eval_limit=16)
    model_path = tmp_path / spec.key / "model.safetensors"
    model_path.parent.mkdir()
    first = train(
        spec.model, replace(spec.train, epochs=1), model_path, progress=False, log=lambda _: None
    )
    model_path.unlink()  # killed after the epoch-1 checkpoint, before the model file
    lines = []
    result = run_trial(spec, tmp_path, progress=False, log=lines.append)
    assert any("resuming" in line for line in lines)
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert result.history[0]["loss"] == first.history[0].loss


def test_evaluation_settings_change_reevaluates_without_training(grid_copy, monkeypatch):
    root, first = grid_copy
    monkeypatch.setattr(
        mnistcodec.experiments.sweep, "train", lambda *a, **k: pytest.fail("retrained")
    )
    bigger = run_trial(
        replace(first[0].spec, eval_limit=48), root, progress=False, log=lambda _: None
    )
    assert bigger.evaluation["n"] == 48 and not bigger.trained


def test_sweep_command_in_parallel_writes_tables_and_plots(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = [
        "sweep",
        "--lmbda",
        "300",
        "2000",
        "--latent-dims",
        "4",
        "--epochs",
        "1",
        "--limit",
        "128",
        "--val-limit",
        "64",
        "--eval-limit",
        "32",
        "--batch-size",
        "64",
        "--jobs",
        "2",
        "--out",
        str(out),
        "-q",
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "2 trial(s)" in text and "real bits" in text
    rows = json.loads((out / "results.json").read_text())
    assert sorted(r["lmbda"] for r in rows) == [300, 2000]
    assert (out / "results.csv").read_text().startswith("key,lmbda,latent_dims")
    assert (out / "rd.png").stat().st_size > 1000
    assert main(argv) == 0  # repeated: everything from the cache
    assert capsys.readouterr().out.count(": cached (") == 2


def test_run_sweep_writes_tables_and_bd_rates(grid_copy, tmp_path):
    root, _ = grid_copy
    out = root.parent / "sweep"
    shutil.copytree(root, out / "trials")
    result = run_sweep(_grid(), out, progress=False, log=lambda _: None)
    assert all(t.reused for t in result.trials) and len(result.rows) == 2
    assert result.files == {"csv": out / "results.csv", "json": out / "results.json"}
    assert (out / "results.csv").is_file() and (out / "bd_rates.json").is_file()
    assert (
        json.loads((out / "bd_rates.json").read_text()) == result.bd_rates == []
    )  # one configuration
    assert not list(out.glob("*.png"))  # a sweep measures; the command draws
    # Each row says how its trial used the CPU: the default, deterministic mode.
    threads = {row["threads"] for row in result.rows}
    assert {row["threading"] for row in result.rows} == {"intra-op"} and None not in threads
    rows = json.loads((out / "results.json").read_text())
    assert [(r["threading"], r["threads"]) for r in rows] == [
        (r["threading"], r["threads"]) for r in result.rows
    ]
    assert "threading,threads" in (out / "results.csv").read_text().splitlines()[0]


def test_sweep_command_plots_latent_and_prior_grids(tmp_path, monkeypatch, capsys):
    rows = [
        {
            "lmbda": lm,
            "latent_dims": d,
            "prior": pr,
            "string_bits": b + 2,
            "info_bits": b,
            "psnr_db": q,
            "mad": 0.05,
        }
        for lm, d, pr, b, q in [
            (300, 8, "logistic", 20, 14),
            (2000, 8, "logistic", 40, 17),
            (2000, 4, "logistic", 25, 15),
            (2000, 8, "laplace", 42, 16.5),
        ]
    ]
    monkeypatch.setattr(
        mnistcodec.experiments.sweep,
        "run_sweep",
        lambda specs, out, **kwargs: SweepResult([], rows, {}, learned_bd_rates(rows)),
    )
    assert main(["sweep", "--out", str(tmp_path), "-q"]) == 0
    text = capsys.readouterr().out
    files = {name: tmp_path / f"{name}.png" for name in ("rd", "latent", "priors")}
    assert all(f"{name:>7}: {path}" in text for name, path in files.items())
    assert all(path.stat().st_size > 1000 for path in files.values())
    assert learned_bd_rates(rows) == []  # only one configuration has several lambdas


def test_compare_curves_reports_no_overlap_instead_of_failing():
    anchor = ("jpeg", [1000, 2000, 3000], [25.0, 30.0, 35.0])
    low = ("learned", [20, 40, 60], [12.0, 15.0, 18.0])
    half = ("half", [500, 1000, 1500], [25.0, 30.0, 35.0])
    low_entry, half_entry = compare_curves(anchor, [low, half])
    assert low_entry["bd_rate_percent"] is None and low_entry["note"] == "no overlap"
    assert half_entry["bd_rate_percent"] == pytest.approx(-50.0, abs=0.5)
