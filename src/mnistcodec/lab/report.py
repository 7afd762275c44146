"""The lab report: one run that answers every manipulation of the lab with numbers and plots.

``build_report(out, "quick")`` fetches MNIST, trains the trials of a
:class:`~mnistcodec.lab.protocol.ReportProtocol` (through
:mod:`mnistcodec.experiments.sweep`, cached in ``<out>/cache``), measures
(:mod:`mnistcodec.lab.measurements`), draws (:mod:`mnistcodec.lab.figures`)
and writes the page in one language (:mod:`mnistcodec.lab.page`, ``lang="en"``
or ``"fr"``):

* ``<out>/index.html``: self-contained (images embedded), one section per
  manipulation of the lab in the lab's order: the question, then what this
  run measured that answers it;
* ``<out>/results.json``: every number of the page (and the page's language);
* ``<out>/figures/*.png``: the figures as separate files, their words and
  numbers in the page's language.

A language other than English is written to its own folder,
``<out>/<lang>/`` (``index.html``, ``results.json``, ``figures/``), beside
the English page; the progress lines are in the page's language too. Every
language shares ``<out>/cache``.

Protocols: :data:`~mnistcodec.lab.protocol.PROTOCOLS` (``quick``, ``full``,
``micro``). Re-running reuses the cached trials and classical-codec
measurements and rewrites the page and figures (atomically), so writing the
page in another language trains nothing; ``force=True`` recomputes the
trials and measurements of the protocol.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mnistcodec import __version__
from mnistcodec.coding.model_files import LoadedModel, load_model
from mnistcodec.coding.zoo import DEFAULT_MODEL
from mnistcodec.data import load_split
from mnistcodec.errors import InputError
from mnistcodec.experiments.bdrate import (
    bd_rates_between,
    curve_vs_classical_bd_rates,
    learned_vs_classical_bd_rates,
    preset_bd_rates,
)
from mnistcodec.experiments.rd_limit import NERD_MNIST
from mnistcodec.experiments.sweep import TrialResult, available_cores, run_trials
from mnistcodec.experiments.trivial_codecs import measure_trivial_codecs
from mnistcodec.lab import figures, measurements
from mnistcodec.lab.page import check_language, protocol_lines, render_page
from mnistcodec.lab.progress import Progress
from mnistcodec.lab.protocol import (
    LAB_BATCH,
    PROTOCOLS,
    REPORT_PRESETS,
    ReportProtocol,
    report_trials_dir,
    resolve_protocol,
)
from mnistcodec.lab.words import Words
from mnistcodec.model.compression_model import CompressionModel
from mnistcodec.model.precision import check_precision
from mnistcodec.model.priors import PRIORS
from mnistcodec.model.summary import model_summary
from mnistcodec.storage.atomic import atomic_write_text
from mnistcodec.training.loop import EpochRecord, format_epoch

if TYPE_CHECKING:
    from mnistcodec.experiments.ray_executor import RayOptions

__all__ = ["PROTOCOLS", "ReportProtocol", "ReportResult", "build_report"]


@dataclass
class ReportResult:
    out: Path
    index: Path
    results: dict
    seconds: float
    files: dict[str, Path] = field(default_factory=dict)


def language_dir(out: str | os.PathLike, lang: str) -> Path:
    """Where the page of ``lang`` goes: ``out`` for English, ``out/<lang>`` for another language."""
    return Path(out) if lang == "en" else Path(out) / lang


def _prepare_out(out: Path, force: bool, lang: str) -> None:
    """Create ``out``; refuse a non-empty directory that is not a report unless ``force``."""
    if out.exists() and not out.is_dir():
        raise InputError(f"report output {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        ours = any((out / name).exists() for name in ("index.html", "results.json", "cache"))
        if not ours and not force:
            raise InputError(
                f"{out} is a non-empty directory that does not hold a report; choose another --out "
                "or pass --force to write into it"
            )
    out.mkdir(parents=True, exist_ok=True)
    (language_dir(out, lang) / "figures").mkdir(parents=True, exist_ok=True)
    (out / "cache").mkdir(exist_ok=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class _Run:
    """One report run: each stage measures, draws its figures and returns its part of results.json."""

    def __init__(
        self,
        out: Path,
        proto: ReportProtocol,
        force: bool,
        progress: bool,
        log: Callable[[str], None],
        dataset: str,
        data_dir: str | None,
        executor: str = "local",
        ray_options: RayOptions | None = None,
        lang: str = "en",
    ) -> None:
        self.out, self.proto, self.force, self.progress, self.log = out, proto, force, progress, log
        self.dataset, self.data_dir = dataset, data_dir
        self.executor, self.ray_options = executor, ray_options
        self.words = Words(lang)
        self.lang_dir = language_dir(out, lang)
        self.fig_dir, self.cache = self.lang_dir / "figures", out / "cache"
        self.step = Progress(log, 10, self.words)
        self.groups = proto.trial_groups(dataset, data_dir)

    def load_data(self) -> None:
        self.step(self.words("p_loading", dataset=self.dataset, protocol=self.proto.name), "data")
        self.train_split = load_split("train", self.dataset, self.data_dir)
        self.test_split = load_split("test", self.dataset, self.data_dir)

    def untrained(self) -> dict:
        words = self.words
        self.step(words("p_untrained"), "untrained")
        test_images = self.test_split.images
        figures.plot_test_image(test_images[0], self.fig_dir / "test_image.png", words=words)
        numbers, recon = measurements.untrained_steps(test_images, self.proto.seed)
        figures.plot_untrained_reconstruction(
            test_images[0],
            recon["x_hat"],
            recon["distortion"],
            recon["rate_bits"],
            self.fig_dir / "untrained.png",
            words=words,
        )
        figures.plot_prior_densities(
            measurements.prior_densities(list(PRIORS)),
            measurements.DENSITY_SCALES,
            self.fig_dir / "prior_densities.png",
            words=words,
        )
        return numbers

    def train(self) -> dict[str, TrialResult]:
        specs = self.proto.all_specs(self.dataset, self.data_dir)
        line = self.words(
            "p_training", count=len(specs), jobs=self.proto.jobs, ray=self.executor == "ray"
        )
        self.step(line, "trials")
        trials_dir = report_trials_dir(self.out)
        if self.force:
            for spec in specs:
                shutil.rmtree(trials_dir / spec.key, ignore_errors=True)
        trial_list = run_trials(
            specs,
            trials_dir,
            jobs=self.proto.jobs,
            progress=self.progress,
            log=lambda line: self.log(f"  {line}"),
            executor=self.executor,
            ray_options=self.ray_options,
        )
        self.trials = {t.spec.key: t for t in trial_list}
        self.main = self.trials[self.proto.main_spec(self.dataset, self.data_dir).key]
        self.main_loaded = load_model(self.main.model_path)
        return self.trials

    def _loaded(self, trial: TrialResult) -> LoadedModel:
        return self.main_loaded if trial is self.main else load_model(trial.model_path)

    def lab_batch(self) -> dict[str, dict]:
        """The lab's batch coded by each model of ``grid_lmbdas``, and the main model's training curves."""
        words = self.words
        self.step(words("p_lab_batch"), "lab_batch")
        proto = self.proto
        figures.plot_training_curves(
            self.main.history,
            self.fig_dir / "training_curves.png",
            title=words("training_title", lmbda=proto.main_lmbda, latents=proto.main_latent_dims),
            words=words,
        )
        images = self.test_split.images[LAB_BATCH]
        lambda_trials = {s.model.lmbda: self.trials[s.key] for s in self.groups["lambda"]}
        grids: dict[str, dict] = {}
        for lmbda in proto.grid_lmbdas:
            trial = lambda_trials.get(float(lmbda))
            if trial is None:
                continue
            numbers = measurements.code_batch(self._loaded(trial), images)
            figures.plot_digit_grid(
                images,
                numbers.pop("reconstructions"),
                numbers["string_bits"],
                numbers["info_bits"],
                numbers["psnr_db"],
                self.fig_dir / f"grid_lmbda{lmbda:g}.png",
                title=words("grid_title", lmbda=lmbda),
                words=words,
            )
            numbers.pop("strings")
            grids[f"{lmbda:g}"] = numbers
        return grids

    def baselines(self) -> dict:
        self.step(self.words("p_baselines", n=self.proto.baseline_n), "baselines")
        images = self.test_split.images[: self.proto.baseline_n]
        data, cached = measurements.baselines(
            images, self.proto, self.cache, self.force, self.progress
        )
        if cached:
            self.log(self.words("p_cached", name=cached))
        return data

    def rd_curves(self, base: dict) -> tuple[list[dict], list[dict]]:
        """The lambda sweep's rows, the codecs without a network, and BD-rates against the classical codecs.

        The BD-rates are those of the lambda sweep and of the default shipped model's levels
        (as its file records them) against each lossy classical codec.
        """
        self.step(self.words("p_rd"), "rd")
        proto = self.proto
        lambda_rows = measurements.rows_for(self.trials, self.groups["lambda"])
        train, test = self.train_split, self.test_split
        trivial = measure_trivial_codecs(train.images, train.labels, test.images, test.labels)
        self.trivial = [p.row() for p in trivial]
        main_label = f"d={proto.main_latent_dims} {proto.main_prior}"
        figures.plot_rd_curves(
            {main_label: lambda_rows},
            base["rows"],
            self.fig_dir / "rd_curves.png",
            words=self.words,
            trivial=self.trivial,
            reference=NERD_MNIST.rows(),
        )
        self.levels = measurements.shipped_levels()
        bd = learned_vs_classical_bd_rates(lambda_rows, base["rows"])
        if len(self.levels) > 1:
            bd += curve_vs_classical_bd_rates(DEFAULT_MODEL, self.levels, base["rows"])
        return lambda_rows, bd

    def sweeps(self) -> dict:
        """The latent-size and prior sweeps: rows, figures, initial prior costs and BD-rates between priors."""
        words = self.words
        self.step(words("p_sweeps"), "sweeps")
        proto = self.proto
        latent_rows = measurements.rows_for(self.trials, self.groups["latent"])
        prior_rows = measurements.rows_for(self.trials, self.groups["prior"])
        if len({r["latent_dims"] for r in latent_rows}) > 1:
            figures.plot_latent_sweep(latent_rows, self.fig_dir / "latent_sweep.png", words=words)
        if len({r["prior"] for r in prior_rows}) > 1:
            figures.plot_prior_sweep(prior_rows, self.fig_dir / "prior_sweep.png", words=words)
            learned = {
                spec.model.prior: load_model(self.trials[spec.key].model_path)
                for spec in self.groups["prior"]
                if spec.model.lmbda == proto.main_lmbda
            }
            figures.plot_learned_priors(
                measurements.learned_prior_densities(learned),
                self.fig_dir / "learned_priors.png",
                words=words,
            )
        by_prior: dict[str, list[dict]] = {}
        for row in prior_rows:
            by_prior.setdefault(row["prior"], []).append(row)
        return {
            "latent_sweep": latent_rows,
            "prior_sweep": prior_rows,
            "prior_initial_bits_per_latent": measurements.initial_bits_per_latent(
                proto.priors, proto.seed
            ),
            "between_priors": bd_rates_between(by_prior),
        }

    def samples(self) -> dict:
        self.step(self.words("p_samples"), "samples")
        samples, redrawn = measurements.generative_samples(
            self.main_loaded, count=16, nbytes=8, seed=self.proto.seed
        )
        figures.plot_samples(samples, self.fig_dir / "samples.png")
        return {
            "count": int(samples.shape[0]),
            "bytes_per_string": 8,
            "redrawn": redrawn,
            "mean_pixel": float(samples.mean()),
        }

    def presets(self) -> tuple[list[dict], dict]:
        """The shipped models on this run's digits, and the seed and improved curves with their BD-rates."""
        words = self.words
        self.step(words("p_shipped"), "shipped")
        proto = self.proto
        shipped = measurements.shipped_comparison(self.test_split.images[: proto.eval_limit])
        rows = {
            name: measurements.rows_for(self.trials, self.groups[f"preset:{name}"])
            for name in REPORT_PRESETS
        }
        stars = [{**r["measured"], "lmbda": r["lmbda"], "label": r["name"]} for r in shipped]
        digits = proto.train_limit or len(self.train_split)
        # The shipped variable-rate model's every level, as its file records them.
        curves: dict[str, list[dict]] = dict(rows)
        if self.levels:
            label = words("shipped_levels", model=DEFAULT_MODEL, n=self.levels[0].get("n", 0))
            curves[label] = self.levels
        figures.plot_preset_curves(
            curves,
            self.fig_dir / "preset_curves.png",
            extra_points={"shipped": stars},
            title=words("preset_title", epochs=proto.epochs, digits=digits, model=DEFAULT_MODEL),
            words=words,
        )
        return shipped, {"rows": rows, "bd_rates": preset_bd_rates(*rows.items())}

    def floor(self, lambda_rows: list[dict], presets: dict) -> dict:
        """Which points of the seed's curves and of our models lie under the codecs without a network."""
        curves = {"lambda_sweep": lambda_rows, **presets["rows"]}
        if self.levels:
            curves[DEFAULT_MODEL] = self.levels
        floor = measurements.floor_summary(self.trivial, curves)
        shown = {name: curves[name] for name in (*REPORT_PRESETS, DEFAULT_MODEL) if name in curves}
        figures.plot_floor(
            shown,
            self.trivial,
            NERD_MNIST.rows(),
            self.fig_dir / "rd_floor.png",
            below=[{**r, "curve": name} for name in shown for r in floor["below"][name]],
            title=self.words("floor_title", n=self.trivial[0]["n"]),
            words=self.words,
        )
        return {
            **floor,
            "default_model": DEFAULT_MODEL,
            "default_model_levels": self.levels,
            "default_model_codebooks": measurements.shipped_codebooks(),
        }

    def measure(self, lang: str) -> dict:
        """Every stage in order; the numbers of results.json."""
        proto = self.proto
        self.load_data()
        steps = self.untrained()
        self.train()
        grids = self.lab_batch()
        base = self.baselines()
        lambda_rows, bd_classical = self.rd_curves(base)
        sweeps = self.sweeps()
        samples = self.samples()
        shipped, presets = self.presets()
        floor = self.floor(lambda_rows, presets)
        self.step.stop()
        train_split, test_split, main_loaded = self.train_split, self.test_split, self.main_loaded
        digits = proto.train_limit or len(train_split)
        protocol = asdict(proto)
        return {
            "mnistcodec_version": __version__,
            "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
            "language": lang,
            "machine": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "cores": available_cores(),
                "platform": platform.platform(),
            },
            "protocol": {**protocol, "description": protocol_lines(protocol, lang)},
            "dataset": {
                "name": self.dataset,
                "train_size": len(train_split),
                "test_size": len(test_split),
                "image_shape": list(train_split.images.shape[1:]),
                "dtype": str(train_split.images.dtype),
                "source": train_split.source,
            },
            "lab_2_1": {k: v for k, v in steps.items() if k != "summary_latent10"},
            "summaries": {
                "latent10": steps["summary_latent10"],
                "main": model_summary(CompressionModel(self.main.spec.model)),
            },
            "training": {
                "batch_size": proto.batch_size,
                "epochs": proto.epochs,
                "digits_per_epoch": digits,
                "steps_per_epoch": math.ceil(digits / proto.batch_size),
                "main_history": self.main.history,
                "main_log": [
                    format_epoch(EpochRecord(**r), proto.epochs) for r in self.main.history
                ],
            },
            "lab_batch": {"indices": [LAB_BATCH.start, LAB_BATCH.stop - 1], "by_lmbda": grids},
            "coding": {
                "precision": main_loaded.tables.precision,
                "table_width": main_loaded.tables.width,
                **main_loaded.metadata.get("coding", {}),
            },
            "trials": [
                self.trials[s.key].row() for s in proto.all_specs(self.dataset, self.data_dir)
            ],
            "lambda_sweep": lambda_rows,
            "latent_sweep": sweeps["latent_sweep"],
            "prior_sweep": sweeps["prior_sweep"],
            "prior_initial_bits_per_latent": sweeps["prior_initial_bits_per_latent"],
            "baselines": base,
            "bd_rates": {
                "learned_vs_classical": bd_classical,
                "between_priors": sweeps["between_priors"],
            },
            "samples": samples,
            "shipped_models": shipped,
            "presets": presets,
            "floor": floor,
            "timings_seconds": self.step.timings,
        }


def build_report(
    out: str | os.PathLike = "report",
    protocol: str | ReportProtocol = "quick",
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    dataset: str = "mnist",
    data_dir: str | None = None,
    jobs: int | None = None,
    lang: str = "en",
    precision: str | None = None,
    executor: str = "local",
    ray_options: RayOptions | None = None,
) -> ReportResult:
    """Run ``protocol`` and write ``<out>/index.html`` (in ``lang``) and ``<out>/results.json``.

    The trials run with ``executor`` (``local`` worker processes, or ``ray`` tasks configured by
    ``ray_options``), as in :func:`mnistcodec.experiments.sweep.run_trials`.
    """
    check_language(lang)
    proto = resolve_protocol(protocol)
    if jobs is not None:
        proto = replace(proto, jobs=int(jobs))
    if precision is not None:
        proto = replace(proto, precision=check_precision(precision))
    out = Path(out)
    _prepare_out(out, force, lang)
    run = _Run(out, proto, force, progress, log, dataset, data_dir, executor, ray_options, lang)
    results = run.measure(lang)
    timings = results["timings_seconds"]
    timings["before_html"] = round(run.step.elapsed(), 1)
    run.step(run.words("p_html"), "html")
    html_text = render_page(results, run.fig_dir, lang)
    run.step.stop()
    timings["total"] = round(run.step.elapsed(), 1)
    results_json = json.dumps(results, indent=2, default=_json_default)
    atomic_write_text(run.lang_dir / "results.json", results_json)
    index = atomic_write_text(run.lang_dir / "index.html", html_text)
    log(run.words("p_written", path=index, seconds=run.step.elapsed()))
    files = {p.stem: p for p in sorted(run.fig_dir.glob("*.png"))}
    return ReportResult(out, index, results, run.step.elapsed(), files)
