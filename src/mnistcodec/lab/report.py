"""The lab report: one run that answers every manipulation of the lab with numbers and plots.

``build_report(out, "quick")`` fetches MNIST, trains the trials of a
:class:`ReportProtocol` (through :mod:`mnistcodec.experiments.sweep`, cached in
``<out>/cache``), codes the lab's batch, runs the classical codecs, draws the
figures (:mod:`mnistcodec.lab.figures`) and writes

* ``<out>/index.html``: self-contained (images embedded), one section per
  manipulation of the lab in the lab's order: the question, then what this
  run measured that answers it;
* ``<out>/results.json``: every number of the page;
* ``<out>/figures/*.png``: the figures as separate files.

Protocols (:data:`PROTOCOLS`): ``quick`` (the default; about 10 minutes on 2
CPU cores: training subsets and 2 short epochs, evaluations and classical
codecs on subsets), ``full`` (the lab's protocol: 5 epochs on the 60,000
training digits, lambda 300..2000, latent sizes, every prior at every lambda,
evaluation and classical codecs on all 10,000 test digits) and ``micro``
(seconds; for tests). The page states the protocol it used.

Re-running reuses the cached trials and classical-codec measurements and
rewrites the page and figures (atomically); ``force=True`` recomputes the
trials and measurements of the protocol.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mnistcodec import __version__
from mnistcodec.errors import InputError
from mnistcodec.experiments.bdrate import bd_text, compare_curves, preset_bd_rates, rd_curve
from mnistcodec.experiments.sweep import (
    TrialResult,
    TrialSpec,
    available_cores,
    run_trials,
    unique_specs,
)
from mnistcodec.lab import figures
from mnistcodec.lab import html as H
from mnistcodec.model.compression_model import CompressionModel, ModelConfig
from mnistcodec.storage.atomic import atomic_write_text
from mnistcodec.training.loop import TrainConfig
from mnistcodec.training.presets import get_preset

REPORT_PRESETS = ("seed", "improved")
"""The named configurations compared in the report's "Beyond the seed" chapter."""

LAB_BATCH = slice(48, 64)
"""The lab's batch: ``validation_dataset.batch(16).skip(3).take(1)`` = test digits 48..63."""

EXAMPLE_BATCH = 32
"""The lab's example batch: ``validation_dataset.batch(32).take(1)``."""


@dataclass(frozen=True)
class ReportProtocol:
    """What a report run trains and measures.

    Trials: a lambda sweep (``lmbdas`` at ``main_latent_dims``, ``main_prior``),
    a latent-size sweep (``latent_dims`` at ``latent_lmbdas``) and a prior sweep
    (``priors`` at ``prior_lmbdas``), and the seed and improved presets
    (:mod:`mnistcodec.training.presets`) at ``preset_lmbdas``, all trained with the
    same ``epochs``/``train_limit`` and evaluated with coding on the first
    ``eval_limit`` test digits (``None``: all). ``prior_lr`` applies to the
    three sweeps; each preset brings its own. Classical codecs run on the
    first ``baseline_n`` test digits with ``baseline_qualities`` overriding
    each codec's default sweep.
    """

    name: str
    epochs: int
    train_limit: int | None
    val_limit: int | None
    eval_limit: int | None
    lmbdas: tuple[float, ...]
    latent_dims: tuple[int, ...]
    priors: tuple[str, ...]
    latent_lmbdas: tuple[float, ...] = (2000.0,)
    prior_lmbdas: tuple[float, ...] = (2000.0,)
    main_lmbda: float = 2000.0
    main_latent_dims: int = 50
    main_prior: str = "logistic"
    grid_lmbdas: tuple[float, ...] = (2000.0, 500.0, 300.0)
    preset_lmbdas: tuple[float, ...] = (300.0, 500.0, 1000.0, 2000.0)
    baseline_n: int = 1000
    baseline_codecs: tuple[str, ...] | None = None
    baseline_qualities: tuple[tuple[str, tuple], ...] = ()
    batch_size: int = 128
    prior_lr: float | None = None
    seed: int = 0
    jobs: int = 2

    def __post_init__(self) -> None:
        if self.main_lmbda not in self.lmbdas:
            raise InputError(f"protocol {self.name}: main_lmbda {self.main_lmbda:g} must be one of lmbdas")
        if self.main_latent_dims not in self.latent_dims or self.main_prior not in self.priors:
            raise InputError(f"protocol {self.name}: the main model must be part of the latent and prior sweeps")
        if self.main_lmbda not in self.latent_lmbdas or self.main_lmbda not in self.prior_lmbdas:
            raise InputError(f"protocol {self.name}: the sweeps must include main_lmbda {self.main_lmbda:g}")

    def train_config(self, dataset: str = "mnist", data_dir: str | None = None) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs, batch_size=self.batch_size, prior_lr=self.prior_lr, seed=self.seed,
            limit=self.train_limit,
            val_limit=self.val_limit, dataset=dataset, data_dir=data_dir, device="cpu",
        )

    def spec(self, lmbda: float, latent_dims: int, prior: str, train: TrainConfig) -> TrialSpec:
        model = ModelConfig(latent_dims=int(latent_dims), prior=prior, lmbda=float(lmbda))
        return TrialSpec(model, train, self.eval_limit)

    def preset_specs(self, name: str, dataset: str = "mnist", data_dir: str | None = None) -> list[TrialSpec]:
        """A named preset's curve: its architecture, prior and prior learning rate at ``preset_lmbdas``."""
        preset = get_preset(name)
        train = replace(self.train_config(dataset, data_dir), prior_lr=preset.prior_lr)
        return [
            TrialSpec(ModelConfig(arch=preset.arch, latent_dims=self.main_latent_dims, prior=preset.prior,
                                  lmbda=float(lm)), train, self.eval_limit)
            for lm in self.preset_lmbdas
        ]

    def trial_groups(self, dataset: str = "mnist", data_dir: str | None = None) -> dict[str, list[TrialSpec]]:
        """The trials of each sweep: ``lambda``, ``latent``, ``prior``, ``preset:<name>``.

        Shared trials (same configuration) appear in several groups and are trained once.
        """
        train = self.train_config(dataset, data_dir)
        return {
            **{f"preset:{name}": self.preset_specs(name, dataset, data_dir) for name in REPORT_PRESETS},
            "lambda": [self.spec(lm, self.main_latent_dims, self.main_prior, train) for lm in self.lmbdas],
            "latent": [
                self.spec(lm, d, self.main_prior, train) for lm in self.latent_lmbdas for d in self.latent_dims
            ],
            "prior": [
                self.spec(lm, self.main_latent_dims, pr, train) for lm in self.prior_lmbdas for pr in self.priors
            ],
        }

    def all_specs(self, dataset: str = "mnist", data_dir: str | None = None) -> list[TrialSpec]:
        groups = self.trial_groups(dataset, data_dir)
        return unique_specs([s for g in groups.values() for s in g])

    def main_spec(self, dataset: str = "mnist", data_dir: str | None = None) -> TrialSpec:
        return self.spec(self.main_lmbda, self.main_latent_dims, self.main_prior, self.train_config(dataset, data_dir))

    def describe(self) -> list[str]:
        """Plain-language lines stating the protocol (shown at the top of the report)."""
        digits = "all 60,000" if self.train_limit is None else f"the first {self.train_limit:,}"
        val = "all 10,000" if self.val_limit is None else f"the first {self.val_limit:,}"
        ev = "all 10,000" if self.eval_limit is None else f"the first {self.eval_limit:,}"
        return [
            f"Training: {self.epochs} epoch(s) on {digits} training digits per model, batch {self.batch_size}, "
            "Adam lr 1e-3"
            + (f" (the prior's parameters: {self.prior_lr:g}, so that it can fit the latents in few steps)"
               if self.prior_lr is not None else "")
            + f", seed {self.seed}; validation after each epoch on {val} test digits.",
            f"Lambda sweep: lambda in {_fmt_list(self.lmbdas)} (latent {self.main_latent_dims}, {self.main_prior} prior).",
            f"Latent-size sweep: {_fmt_list(self.latent_dims)} latents at lambda {_fmt_list(self.latent_lmbdas)}.",
            f"Prior sweep: {', '.join(self.priors)} at lambda {_fmt_list(self.prior_lmbdas)} "
            f"(latent {self.main_latent_dims}).",
            f"Seed against improved preset: both trained as above at lambda {_fmt_list(self.preset_lmbdas)}, "
            "each with its own prior learning rate (seed 1e-3, improved 1e-2).",
            f"Evaluation with real entropy coding on {ev} test digits; the lab's batch is test digits 48-63.",
            f"Classical codecs on the first {self.baseline_n:,} test digits"
            + (f" (reduced quality sweeps: {', '.join(n for n, _ in self.baseline_qualities)})"
               if self.baseline_qualities else "") + ".",
        ]


def _fmt_list(values: Sequence[float]) -> str:
    return ", ".join(f"{v:g}" for v in values)


PROTOCOLS: dict[str, ReportProtocol] = {
    "micro": ReportProtocol(
        name="micro", epochs=1, train_limit=128, val_limit=64, eval_limit=32, prior_lr=1e-2,
        lmbdas=(300.0, 2000.0), latent_dims=(10, 50), priors=("logistic", "deep-factorized"),
        preset_lmbdas=(300.0, 2000.0),
        baseline_n=8, baseline_codecs=("jpeg", "webp", "png"),
        baseline_qualities=(("jpeg", (10, 50, 90)), ("webp", (0, 50, 100))), jobs=1,
    ),
    "quick": ReportProtocol(
        name="quick", epochs=2, train_limit=10000, val_limit=2000, eval_limit=1000, prior_lr=1e-2,
        lmbdas=(300.0, 500.0, 1000.0, 1500.0, 2000.0), latent_dims=(5, 10, 20, 50),
        priors=("logistic", "normal", "laplace", "deep-factorized"),
        baseline_n=1000, baseline_qualities=(("avif", (0, 30, 60, 90)), ("jpegxl", (0, 20, 40, 60, 80, 95))),
        jobs=2,
    ),
    "full": ReportProtocol(
        name="full", epochs=5, train_limit=None, val_limit=None, eval_limit=None,
        lmbdas=(300.0, 500.0, 1000.0, 1500.0, 2000.0), latent_dims=(5, 10, 20, 50, 100),
        priors=("logistic", "normal", "laplace", "deep-factorized"),
        prior_lmbdas=(300.0, 500.0, 1000.0, 1500.0, 2000.0), baseline_n=10000, jobs=2,
    ),
}
"""Named protocols; see the module docstring."""


@dataclass
class ReportResult:
    out: Path
    index: Path
    results: dict
    seconds: float
    files: dict[str, Path] = field(default_factory=dict)


class _Progress:
    """Numbered, timed progress lines."""

    def __init__(self, log: Callable[[str], None], steps: int) -> None:
        self.log, self.steps, self.step, self.t0 = log, steps, 0, time.perf_counter()

    def __call__(self, text: str) -> None:
        self.step += 1
        self.log(f"[report {self.step}/{self.steps} | {time.perf_counter() - self.t0:5.0f}s] {text}")

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


def _resolve_protocol(protocol: str | ReportProtocol) -> ReportProtocol:
    if isinstance(protocol, ReportProtocol):
        return protocol
    try:
        return PROTOCOLS[protocol]
    except KeyError:
        raise InputError(f"unknown report protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}") from None


def _prepare_out(out: Path, force: bool) -> None:
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
    (out / "figures").mkdir(exist_ok=True)
    (out / "cache").mkdir(exist_ok=True)


# ----------------------------------------------------------------------------- measurements


def _untrained_steps(train_images: np.ndarray, test_images: np.ndarray, seed: int, fig_dir: Path) -> dict:
    """Lab 2.1 step by step with untrained transforms (latent_dims = 10)."""
    from mnistcodec.model.priors import NoisyLogistic, bits_from_log_prob
    from mnistcodec.model.summary import model_summary
    from mnistcodec.model.transforms import images_to_unit

    torch.manual_seed(seed)
    trainer10 = CompressionModel(ModelConfig(latent_dims=10)).eval()
    x_uint8 = test_images[0]
    figures.plot_test_image(x_uint8, fig_dir / "test_image.png")
    x = images_to_unit(torch.from_numpy(x_uint8.copy()))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        y = trainer10.analysis_transform(x)
        u = torch.rand(y.shape, generator=g) - 0.5
        y_tilde = y + u
        lab_prior = NoisyLogistic(10)
        lab_prior.log_scale.copy_(torch.log(torch.linspace(0.01, 2.0, 10)))
        lab_rate = float(bits_from_log_prob(lab_prior.log_prob(y_tilde))[0])
        own_rate = float(bits_from_log_prob(trainer10.prior.log_prob(y_tilde))[0])
    untrained = figures.plot_untrained_reconstruction(trainer10, x_uint8, fig_dir / "untrained.png", seed=seed)
    with torch.no_grad():
        batch = images_to_unit(torch.from_numpy(test_images[:EXAMPLE_BATCH].copy()))
        out = trainer10(batch, training=True, generator=torch.Generator().manual_seed(seed))
    figures.plot_prior_densities(fig_dir / "prior_densities.png")
    return {
        "x": {"dtype": str(x_uint8.dtype), "shape": list(x_uint8.shape), "index": "test digit 0",
              "float_input_shape": list(x.shape), "float_input_dtype": str(x.dtype).removeprefix("torch.")},
        "y": {"type": type(y).__name__, "dtype": str(y.dtype).removeprefix("torch."), "shape": list(y.shape),
              "values": [round(float(v), 4) for v in y[0]]},
        "noise": {"u": [round(float(v), 4) for v in u[0]], "y_tilde": [round(float(v), 4) for v in y_tilde[0]],
                  "y_rounded": [float(v) for v in torch.round(y[0])]},
        "rate_lab_prior_bits": lab_rate,
        "rate_unit_scale_prior_bits": own_rate,
        "untrained_distortion": untrained["distortion"],
        "untrained_rate_bits": untrained["rate_bits"],
        "example_batch": {"size": EXAMPLE_BATCH, "rate_bits": float(out.rate), "distortion": float(out.distortion),
                          "y_shape": list(out.y.shape)},
        "summary_latent10": model_summary(trainer10),
    }


def _baselines(images: np.ndarray, protocol: ReportProtocol, cache: Path, force: bool, progress: bool,
               log: Callable[[str], None]) -> dict:
    """Classical codecs on ``images``, cached by settings and imagecodecs version."""
    import imagecodecs

    from mnistcodec.experiments.baselines import codec_status, points_to_rows, run_baselines

    qualities = {name: list(q) for name, q in protocol.baseline_qualities}
    settings = {
        "n": int(images.shape[0]),
        "codecs": list(protocol.baseline_codecs) if protocol.baseline_codecs else None,
        "qualities": qualities,
        "imagecodecs": imagecodecs.__version__,
        "digits_sha256": hashlib.sha256(images.tobytes()).hexdigest(),
    }
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    path = cache / f"baselines-{key}.json"
    if path.is_file() and not force:
        try:
            data = json.loads(path.read_text())
            if data.get("settings") == settings:
                log(f"classical codecs: cached ({path.name})")
                return data
        except ValueError:
            pass
    skipped: dict[str, str] = {}
    t0 = time.perf_counter()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        points = run_baselines(images, codecs=protocol.baseline_codecs, qualities=qualities or None,
                               progress=progress, workers=available_cores(), skipped=skipped)
    status = codec_status()
    data = {"settings": settings, "rows": points_to_rows(points), "skipped": skipped,
            "seconds": time.perf_counter() - t0, "status": {k: v for k, v in status.items() if v}}
    atomic_write_text(path, json.dumps(data, indent=2))
    return data


def _initial_bits_per_latent(families: Sequence[str], seed: int) -> dict[str, float]:
    """Bits a freshly initialised prior charges for a latent at its mode (where untrained latents sit)."""
    from mnistcodec.model.priors import make_prior

    out = {}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for family in families:
            prior = make_prior(family, 1).double()
            with torch.no_grad():
                mode = prior.quantization_offset().view(1, 1)
                out[family] = float(-torch.log2(prior.prob(mode))[0, 0])
    return out


LAB_STEPS = 5 * 469
"""Optimisation steps of the lab's protocol: 5 epochs of 469 batches."""


def _rows_for(results: Mapping[str, TrialResult], specs: Sequence[TrialSpec]) -> list[dict]:
    return [results[s.key].row() for s in specs if s.key in results]


def _bd_learned_vs_classical(learned_rows: Sequence[Mapping], baseline_rows: Sequence[Mapping]) -> list[dict]:
    learned = ("learned (real bits)", *rd_curve(learned_rows, "string_bits"))
    tests = []
    codecs: dict[tuple[str, str], list[Mapping]] = {}
    for row in baseline_rows:
        if not row.get("lossless"):
            codecs.setdefault((row["label"], row["mode"]), []).append(row)
    for (label, mode), rows in codecs.items():
        tests.append((f"{label} ({mode})", *rd_curve(rows, "bits_per_digit")))
    # Anchor = each classical codec, test = learned: negative means the learned codec saves bits.
    out = []
    for name, rates, quals in tests:
        out.extend(compare_curves((name, rates, quals), [learned]))
    return out


def _bd_between(groups: Mapping[str, Sequence[Mapping]]) -> list[dict]:
    curves = [(label, *rd_curve(rows, "string_bits")) for label, rows in groups.items()
              if len({r["lmbda"] for r in rows}) > 1]
    if len(curves) < 2:
        return []
    return compare_curves(curves[0], curves[1:])


# ----------------------------------------------------------------------------- the run


def build_report(
    out: str | os.PathLike = "report",
    protocol: str | ReportProtocol = "quick",
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    dataset: str = "mnist",
    data_dir: str | None = None,
    jobs: int | None = None,
) -> ReportResult:
    """Run ``protocol`` and write ``<out>/index.html`` and ``<out>/results.json``."""
    from mnistcodec.coding.model_files import load_model
    from mnistcodec.data import load_split

    proto = _resolve_protocol(protocol)
    if jobs is not None:
        proto = replace(proto, jobs=int(jobs))
    out = Path(out)
    _prepare_out(out, force)
    fig_dir, cache = out / "figures", out / "cache"
    step = _Progress(log, 10)
    timings: dict[str, float] = {}

    def timed(name: str, t0: float) -> None:
        timings[name] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    step(f"loading {dataset} (protocol {proto.name})")
    train_split = load_split("train", dataset, data_dir)
    test_split = load_split("test", dataset, data_dir)
    timed("data", t0)

    t0 = time.perf_counter()
    step("lab 2.1: untrained model, step by step")
    steps = _untrained_steps(train_split.images, test_split.images, proto.seed, fig_dir)
    timed("untrained", t0)

    t0 = time.perf_counter()
    specs = proto.all_specs(dataset, data_dir)
    step(f"training and evaluating {len(specs)} trial(s) with {proto.jobs} worker process(es)")
    trials_dir = cache / "trials"
    if force:
        for spec in specs:
            shutil.rmtree(trials_dir / spec.key, ignore_errors=True)
    trial_list = run_trials(specs, trials_dir, jobs=proto.jobs, progress=progress,
                            log=lambda line: log(f"  {line}"))
    trials = {t.spec.key: t for t in trial_list}
    timed("trials", t0)
    groups = proto.trial_groups(dataset, data_dir)
    main = trials[proto.main_spec(dataset, data_dir).key]

    t0 = time.perf_counter()
    step("coding the lab's batch (test digits 48-63) and drawing the training curves")
    from mnistcodec.coding.api import Codec
    from mnistcodec.model.summary import model_summary
    from mnistcodec.training.loop import EpochRecord, format_epoch

    main_loaded = load_model(main.model_path)
    figures.plot_training_curves(main.history, fig_dir / "training_curves.png",
                                 title=f"lambda {proto.main_lmbda:g}, {proto.main_latent_dims} latents")
    log_lines = [format_epoch(EpochRecord(**r), proto.epochs) for r in main.history]
    lab_batch = test_split.images[LAB_BATCH]
    grids: dict[str, dict] = {}
    lambda_trials = {s.model.lmbda: trials[s.key] for s in groups["lambda"]}
    for lmbda in proto.grid_lmbdas:
        trial = lambda_trials.get(float(lmbda))
        if trial is None:
            continue
        loaded = main_loaded if trial is main else load_model(trial.model_path)
        numbers = figures.plot_codec_grid(loaded, lab_batch, fig_dir / f"grid_lmbda{lmbda:g}.png",
                                          title=f"lambda = {lmbda:g}: original | reconstruction")
        codec = Codec(loaded)
        numbers["decoded_equals_reconstruction"] = bool(
            np.array_equal(numbers.pop("reconstructions"), codec.reconstruct(lab_batch)))
        numbers.pop("strings")
        grids[f"{lmbda:g}"] = numbers
    timed("lab_batch", t0)

    t0 = time.perf_counter()
    step(f"classical codecs on {proto.baseline_n} test digits")
    base = _baselines(test_split.images[: proto.baseline_n], proto, cache, force, progress, log)
    timed("baselines", t0)

    t0 = time.perf_counter()
    step("rate-distortion curves and BD-rates")
    lambda_rows = _rows_for(trials, groups["lambda"])
    main_label = f"d={proto.main_latent_dims} {proto.main_prior}"
    figures.plot_rd_curves({main_label: lambda_rows}, base["rows"], fig_dir / "rd_curves.png")
    bd_classical = _bd_learned_vs_classical(lambda_rows, base["rows"]) if len(lambda_rows) > 1 else []
    timed("rd", t0)

    t0 = time.perf_counter()
    step("latent-size and prior sweeps")
    latent_rows = _rows_for(trials, groups["latent"])
    prior_rows = _rows_for(trials, groups["prior"])
    if len({r["latent_dims"] for r in latent_rows}) > 1:
        figures.plot_latent_sweep(latent_rows, fig_dir / "latent_sweep.png")
    if len({r["prior"] for r in prior_rows}) > 1:
        figures.plot_prior_sweep(prior_rows, fig_dir / "prior_sweep.png")
        learned_priors = {}
        for spec in groups["prior"]:
            if spec.model.lmbda == proto.main_lmbda:
                learned_priors[spec.model.prior] = load_model(trials[spec.key].model_path)
        figures.plot_learned_priors(learned_priors, fig_dir / "learned_priors.png")
    initial_bits = _initial_bits_per_latent(proto.priors, proto.seed)
    by_prior: dict[str, list[dict]] = {}
    for row in prior_rows:
        by_prior.setdefault(row["prior"], []).append(row)
    bd_priors = _bd_between(by_prior)
    timed("sweeps", t0)

    t0 = time.perf_counter()
    step("generative samples from random bits")
    samples, rejected = figures.plot_samples(main_loaded, fig_dir / "samples.png", count=16, nbytes=8,
                                             seed=proto.seed)
    timed("samples", t0)

    t0 = time.perf_counter()
    step("the seed and improved presets: curves, BD-rates and the shipped models")
    beyond = _shipped_comparison(test_split.images[: proto.eval_limit])
    preset_rows = {name: _rows_for(trials, groups[f"preset:{name}"]) for name in REPORT_PRESETS}
    figures.plot_preset_curves(
        preset_rows, fig_dir / "preset_curves.png",
        extra_points={"shipped models (5 epochs)": [{**r["measured"], "lmbda": r["lmbda"], "label": r["name"]} for r in beyond]},
        title=f"seed vs improved preset ({proto.epochs} epoch(s), {proto.train_limit or len(train_split):,} digits)")
    preset_bd = preset_bd_rates(*preset_rows.items())
    timed("shipped", t0)

    results = {
        "mnistcodec_version": __version__,
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "cores": available_cores(), "platform": platform.platform()},
        "protocol": {**asdict(proto), "description": proto.describe()},
        "dataset": {"name": dataset, "train_size": len(train_split), "test_size": len(test_split),
                    "image_shape": list(train_split.images.shape[1:]), "dtype": str(train_split.images.dtype),
                    "source": train_split.source},
        "lab_2_1": {k: v for k, v in steps.items() if k != "summary_latent10"},
        "summaries": {"latent10": steps["summary_latent10"], "main": model_summary(CompressionModel(main.spec.model))},
        "training": {"batch_size": proto.batch_size, "epochs": proto.epochs,
                     "digits_per_epoch": proto.train_limit or len(train_split),
                     "steps_per_epoch": math.ceil((proto.train_limit or len(train_split)) / proto.batch_size),
                     "main_history": main.history, "main_log": log_lines},
        "lab_batch": {"indices": [LAB_BATCH.start, LAB_BATCH.stop - 1], "by_lmbda": grids},
        "coding": {"precision": main_loaded.tables.precision, "table_width": main_loaded.tables.width,
                   **main_loaded.metadata.get("coding", {})},
        "trials": [trials[s.key].row() for s in specs],
        "lambda_sweep": lambda_rows,
        "latent_sweep": latent_rows,
        "prior_sweep": prior_rows,
        "prior_initial_bits_per_latent": initial_bits,
        "baselines": base,
        "bd_rates": {"learned_vs_classical": bd_classical, "between_priors": bd_priors},
        "samples": {"count": int(samples.shape[0]), "bytes_per_string": 8, "redrawn": rejected,
                    "mean_pixel": float(samples.mean())},
        "shipped_models": beyond,
        "presets": {"rows": preset_rows, "bd_rates": preset_bd},
        "timings_seconds": timings,
    }
    timings["before_html"] = round(step.elapsed(), 1)
    t0 = time.perf_counter()
    step("writing index.html and results.json")
    html_text = render_report(results, proto, fig_dir)
    timed("html", t0)
    timings["total"] = round(step.elapsed(), 1)
    atomic_write_text(out / "results.json", json.dumps(results, indent=2, default=_json_default))
    index = atomic_write_text(out / "index.html", html_text)
    log(f"report written to {index} in {step.elapsed():.0f}s")
    files = {p.stem: p for p in sorted(fig_dir.glob("*.png"))}
    return ReportResult(out, index, results, step.elapsed(), files)


def _shipped_comparison(images: np.ndarray) -> list[dict]:
    """Evaluate every shipped pretrained model on ``images`` (this run's figures)."""
    from mnistcodec.coding.zoo import resolve_model, shipped_models
    from mnistcodec.experiments.evaluate import evaluate

    rows = []
    for name in shipped_models():
        loaded = resolve_model(name)
        measured = evaluate(loaded, images)
        rows.append({
            "name": name,
            "lmbda": loaded.config.lmbda,
            "training_command": loaded.metadata.get("training_command", ""),
            "measured": measured,
            "recorded_full_test": loaded.metadata.get("evaluation", {}),
        })
    return rows


def _preset_section(results: Mapping, proto: ReportProtocol, fig_dir: Path) -> H.Section:
    """Seed and improved curves trained by this run, with their BD-rates at equal PSNR and MAD."""
    presets = results["presets"]
    rows = presets["rows"]
    body = [
        [name, f"{r['lmbda']:g}", _f(r["string_bits"]), _f(r["info_bits"]), _f(r["psnr_db"]),
         _f(r["mad"], "{:.4f}"), _f(r["train_seconds"], "{:.0f}")]
        for name in REPORT_PRESETS for r in sorted(rows[name], key=lambda r: r["lmbda"])
    ]
    bd = presets["bd_rates"]
    seconds = {name: sum(r["train_seconds"] for r in rows[name]) for name in REPORT_PRESETS}
    tr = results["training"]
    steps = tr["epochs"] * tr["steps_per_epoch"]
    parts = [
        H.image(fig_dir / "preset_curves.png",
                "Seed and improved presets trained by this run over λ (circles), and the shipped 5-epoch models "
                "(stars): PSNR and MAD against the real per-digit string length."),
        H.raw_p(f'<span class="big">BD-rate of the improved preset against the seed: {H.esc(bd_text(bd["psnr"]["bd_rate_percent"], bd["psnr"]["note"]))} '
                f'at equal PSNR, {H.esc(bd_text(bd["mad"]["bd_rate_percent"], bd["mad"]["note"]))} at equal MAD</span> ({H.esc(bd["psnr"]["method"])} '
                "interpolation; negative means fewer bits for the same quality)."),
        H.table(["preset", "λ", "real bits", "information (bits)", "PSNR (dB)", "MAD", "train s"], body,
                left=(0,)),
        H.p(f"Training budget: both presets {tr['epochs']} epoch(s) of {tr['digits_per_epoch']:,} digits "
            f"({steps} steps) per λ with the same network, prior family, batch and data; training took "
            f"{seconds['seed']:.0f} s (seed) and {seconds['improved']:.0f} s (improved) in all on this machine. "
            "The only difference: the improved preset's prior parameters learn at 1e-2 instead of 1e-3."),
    ]
    if steps < LAB_STEPS:
        parts.append(H.p(
            f"With {steps} steps per model (the lab: {LAB_STEPS:,}) the seed's prior has barely moved from its "
            "initial shape, so this run exaggerates the gap. On the lab's 5-epoch protocol over λ 300-2000 the "
            "improved preset needs about 40 % fewer bits at equal PSNR (bench/improved_bdrate.py, BENCHMARKS.md); "
            "mnistcodec report --full measures it here.", "note"))
    return H.Section(
        "presets", "Beyond the seed", "How much better than the seed can the same network do with the same budget?",
        "", parts)


def _shipped_section(rows: Sequence[Mapping]) -> H.Section:
    table = H.table(
        ["model", "λ", "string bits", "info bits", "PSNR dB", "MAD", "training"],
        [[r["name"], f"{r['lmbda']:g}", _f(r["measured"]["string_bits"]), _f(r["measured"]["info_bits"]),
          _f(r["measured"]["psnr_db"]), _f(r["measured"]["mad"], "{:.4f}"), r["training_command"]]
         for r in rows],
    )
    n = rows[0]["measured"]["n"] if rows else 0
    return H.Section(
        "beyond", "Shipped models", "How do the pretrained models that ship with mnistcodec do on this run's digits?",
        "", [H.p(f"Pretrained models that ship with mnistcodec (the lab's 5-epoch protocol on all 60,000 training "
                 f"digits), evaluated by this run on {n} test digits. The improved preset changes one thing: the "
                 "prior's parameters learn at 1e-2 instead of 1e-3 (see docs/improvements.md); the BD-rate of "
                 "their whole 5-epoch curves is measured by bench/improved_bdrate.py (BENCHMARKS.md)."),
             table if rows else H.p("No shipped models found.", "missing")])


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# ----------------------------------------------------------------------------- the page


def _f(value: Any, fmt: str = "{:.2f}") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return fmt.format(value)


def _pct(new: float, old: float) -> str:
    return f"{100.0 * (new - old) / old:+.0f} %" if old else "-"


def _row_for(rows: Sequence[Mapping], **match: Any) -> Mapping | None:
    for row in rows:
        if all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def _trial_table(rows: Sequence[Mapping], first: tuple[str, str]) -> str:
    key, header = first
    body = [
        [r[key] if not isinstance(r[key], float) else f"{r[key]:g}", _f(r["info_bits"]), _f(r["string_bits"]),
         _f(r["rate_bound_bits"]), _f(r["psnr_db"]), _f(r["psnr_of_mean_mse_db"]), _f(r["mad"], "{:.4f}"),
         _f(r["lagrangian"], "{:.1f}"), _f(r["train_seconds"], "{:.0f}")]
        for r in rows
    ]
    return H.table(
        [header, "information (bits)", "real bits", "rate bound (bits)", "PSNR (dB)", "PSNR of mean MSE",
         "MAD", "info + λ·MAD", "train s"], body)


def _bd_table(entries: Sequence[Mapping]) -> str:
    body = []
    for e in entries:
        if e["bd_rate_percent"] is not None:
            value = f"{e['bd_rate_percent']:+.1f} %"
        else:
            value = e["note"] or "-"
        rng_a = e.get("anchor_quality_range") or [float("nan")] * 2
        rng_b = e.get("test_quality_range") or [float("nan")] * 2
        body.append([e["test"], e["anchor"], value,
                     f"{rng_b[0]:.1f}-{rng_b[1]:.1f}", f"{rng_a[0]:.1f}-{rng_a[1]:.1f}",
                     e["note"] if e["bd_rate_percent"] is not None else ""])
    return H.table(["test curve", "anchor curve", "BD-rate", "test PSNR range (dB)", "anchor PSNR range (dB)",
                    "note"], body, left=(0, 1, 5))


def _baseline_summary(rows: Sequence[Mapping]) -> str:
    """Per codec and mode: cheapest point, most expensive point, lossless size."""
    groups: dict[tuple[str, str], list[Mapping]] = {}
    for row in rows:
        groups.setdefault((row["label"], row["mode"]), []).append(row)
    body = []
    for (label, mode), pts in groups.items():
        pts = sorted(pts, key=lambda r: r["bits_per_digit"])
        lo, hi = pts[0], pts[-1]
        if lo.get("lossless"):
            body.append([label, mode, "lossless", _f(lo["bits_per_digit"], "{:.0f}"), "exact", "", ""])
        else:
            body.append([label, mode, f"{lo['quality']}..{hi['quality']}", _f(lo["bits_per_digit"], "{:.0f}"),
                         _f(lo["psnr_db"], "{:.1f}"), _f(hi["bits_per_digit"], "{:.0f}"), _f(hi["psnr_db"], "{:.1f}")])
    return H.table(["codec", "mode", "quality settings", "fewest bits/digit", "its PSNR (dB)",
                    "most bits/digit", "its PSNR (dB)"], body, left=(0, 1, 2))


def _compare_grids(results: Mapping, a: str, b: str) -> str:
    grids = results["lab_batch"]["by_lmbda"]
    lam = {r["lmbda"]: r for r in results["lambda_sweep"]}
    rows = []
    for key in (a, b):
        if key not in grids:
            continue
        g = grids[key]
        ev = lam.get(float(key), {})
        rows.append([f"λ = {key}", _f(np.mean(g["string_bits"])), _f(np.mean(g["info_bits"])),
                     _f(np.mean(g["psnr_db"])), _f(ev.get("string_bits")), _f(ev.get("info_bits")),
                     _f(ev.get("psnr_db"))])
    return H.table(["model", "batch: real bits", "batch: information", "batch: PSNR (dB)",
                    "test set: real bits", "test set: information", "test set: PSNR (dB)"], rows)


def _lambda_sentence(results: Mapping, new: str, old: str = "2000") -> str:
    lam = {f"{r['lmbda']:g}": r for r in results["lambda_sweep"]}
    if new not in lam or old not in lam:
        return f"lambda {new} was not trained in this protocol."
    a, b = lam[old], lam[new]
    return (
        f"Going from λ = {old} to λ = {new}, the real rate changes from {a['string_bits']:.1f} to "
        f"{b['string_bits']:.1f} bits per digit ({_pct(b['string_bits'], a['string_bits'])}) and the PSNR "
        f"from {a['psnr_db']:.2f} to {b['psnr_db']:.2f} dB (MAD {a['mad']:.4f} → {b['mad']:.4f}): a smaller λ "
        "weighs distortion less in R + λ·D, so the model spends fewer bits and reconstructs less faithfully "
        "(blurrier, more 'average' digits)."
    )


def _grid_section(results: Mapping, fig_dir: Path, lmbda: str) -> list[str]:
    grids = results["lab_batch"]["by_lmbda"]
    if lmbda not in grids:
        return [H.p(f"lambda {lmbda} is not part of this protocol's lambda sweep.", "missing")]
    return [
        H.image(fig_dir / f"grid_lmbda{lmbda}.png",
                f"Test digits 48-63 coded with the λ = {lmbda} model: original | reconstruction, "
                "real string bits, information content and PSNR per digit."),
        H.p(_lambda_sentence(results, lmbda)),
        _compare_grids(results, "2000", lmbda),
    ]


def render_report(results: Mapping, proto: ReportProtocol, fig_dir: Path) -> str:
    """The HTML page for ``results`` (as built by :func:`build_report`)."""
    from mnistcodec.lab.html import Chapter, Section

    ds, l21, tr = results["dataset"], results["lab_2_1"], results["training"]
    main_key = f"{proto.main_lmbda:g}"
    main_row = _row_for(results["lambda_sweep"], lmbda=proto.main_lmbda) or {}
    grid = results["lab_batch"]["by_lmbda"].get(main_key)
    base = results["baselines"]
    chapters: list[Chapter] = []

    c = Chapter("2 · Defining the model")
    c.sections.append(Section(
        "m2-1", "2 · M1", "Give the structure of the analysis and synthesis networks.",
        "Donner la structure des réseaux réalisant l'analyse et la synthèse.",
        [H.p("Analysis: conv 5×5/2 (1→20) + leaky ReLU, conv 5×5/2 (20→50) + leaky ReLU, flatten (7·7·50 = 2450), "
             "dense 500 + leaky ReLU, dense latent_dims (linear). Synthesis mirrors it: dense 500, dense 2450, "
             "reshape 50×7×7, transposed conv 5×5/2 (50→20), transposed conv 5×5/2 (20→1), leaky ReLU (slope 0.2) "
             f"after each. The prior has its own parameters. This run's λ = {main_key} model:"),
         H.pre(results["summaries"]["main"])]))
    chapters.append(c)

    c = Chapter("2.1 · Rate and distortion, step by step (untrained model)")
    c.sections += [
        Section("m21-1", "2.1 · M1", "Load the MNIST training and validation sets.",
                "Pour cela, la commande suivante peut être utilisée.",
                [H.pre('from mnistcodec.data import load_split\n'
                       'training = load_split("train")   # tfds.load("mnist", split="train")\n'
                       'validation = load_split("test")  # tfds.load("mnist", split="test")'),
                 H.p(f"Files used by this run (verified by SHA-256): {ds['source']}", "note")]),
        Section("m21-2", "2.1 · M2", "What are the sizes of the training and validation sets?",
                "Quelle est la taille de l'ensemble d'entraînement, de l'ensemble de test ?",
                [H.raw_p(f'<span class="big">{ds["train_size"]:,} training digits, {ds["test_size"]:,} '
                         f'validation (test) digits</span>, each {ds["image_shape"][0]}×{ds["image_shape"][1]} '
                         f'{H.esc(ds["dtype"])}.')]),
        Section("m21-3", "2.1 · M3", "Extract and display one image x.", "Extrayez et affichez une image x.",
                [H.image(fig_dir / "test_image.png", "x = the first test digit"),
                 H.p(f"dtype {l21['x']['dtype']}, shape {tuple(l21['x']['shape'])} (TensorFlow adds a channel: "
                     f"(28, 28, 1)). The model takes it as {l21['x']['float_input_dtype']} in [0, 1] with shape "
                     f"{tuple(l21['x']['float_input_shape'])} (batch, channel, height, width).")]),
        Section("m21-4", "2.1 · M4", "What is the type of the latent representation y?",
                "Quel est le type de la variable y ?",
                [H.raw_p(f'<span class="big">y is a {H.esc(l21["y"]["type"])} of dtype {H.esc(l21["y"]["dtype"])} '
                         f'and shape {tuple(l21["y"]["shape"])}</span> (analysis transform with 10 latents, '
                         "untrained)."),
                 H.pre("y = " + ", ".join(f"{v:+.3f}" for v in l21["y"]["values"]))]),
        Section("m21-5", "2.1 · M5", "Why add uniform noise in [-0.5, 0.5] to y (giving ỹ)?",
                "Pourquoi réalise-t-on cette opération d'ajout de bruit ?",
                [H.p("At test time the latents are rounded, and rounding has zero gradient almost everywhere, so "
                     "it cannot be trained through. Adding u ~ U(-0.5, 0.5) is a differentiable stand-in with the "
                     "same error range as rounding: the synthesis transform learns to cope with errors of that size, "
                     "and -log2 of the noisy density p~(y + u) = F(y + u + ½) - F(y + u - ½) is a differentiable "
                     "upper bound on the bits the rounded latents will cost (Ballé et al. 2017, §2.3)."),
                 H.table(["dimension"] + [str(i) for i in range(len(l21["y"]["values"]))],
                         [["y"] + [f"{v:+.3f}" for v in l21["y"]["values"]],
                          ["u"] + [f"{v:+.3f}" for v in l21["noise"]["u"]],
                          ["ỹ = y + u"] + [f"{v:+.3f}" for v in l21["noise"]["y_tilde"]],
                          ["round(y)"] + [f"{v:+.0f}" for v in l21["noise"]["y_rounded"]]])]),
        Section("m21-6", "2.1 · M6", "Plot the prior: noisy logistic densities for scales 0.01 to 2.",
                "L'a priori est une densité de probabilité ... (tfc.NoisyLogistic).",
                [H.image(fig_dir / "prior_densities.png",
                         "Noisy densities p~(t) = F(t + ½) - F(t - ½) for scales linspace(.01, 2, 10) on [-6, 6], "
                         "for every prior family (the lab's Figure 2.1.2 is the logistic panel)."),
                 H.p("As the scale goes to 0 the logistic tends to a Dirac spike, but the noisy density tends to the "
                     "uniform density on [-0.5, 0.5] (height 1): the noise sets a floor on how peaked the prior can "
                     "be. Larger scales give the bell shape of the underlying family.")]),
        Section("m21-7", "2.1 · M7", "What rate is obtained (untrained)?", "Quel est le débit obtenu ?",
                [H.raw_p(f'<span class="big">{l21["rate_lab_prior_bits"]:.2f} bits</span> for x under the lab\'s '
                         "prior (10 noisy logistics with scales linspace(.01, 2, 10)), "
                         f"{l21['rate_unit_scale_prior_bits']:.2f} bits under the untrained trainer's own prior "
                         "(all scales 1). The lab reported 18.56 bits; the number depends on the random initial "
                         "weights.")]),
        Section("m21-8", "2.1 · M8", "Why is the reconstruction of poor quality?",
                "Pourquoi la reconstruction est-elle de mauvaise qualité ?",
                [H.image(fig_dir / "untrained.png", "x and the untrained model's x~ = synthesis(y~)"),
                 H.raw_p(f'distortion (mean absolute error on [0, 1]): <span class="big">'
                         f'{l21["untrained_distortion"]:.4f}</span> (the lab: 0.1709). Nothing has been trained yet: '
                         "the synthesis transform's weights are random, so x~ carries no information about x.")]),
        Section("m21-9", "2.1 · M1 (bis)", "What batch size does this example use?",
                "Quelle est la taille du lot (batch) utilisé dans cet exemple ?",
                [H.raw_p(f'<span class="big">{l21["example_batch"]["size"]} digits</span> '
                         "(validation_dataset.batch(32).take(1): the first 32 test digits). On that batch the "
                         f"untrained trainer gives rate {l21['example_batch']['rate_bits']:.2f} bits per digit and "
                         f"distortion {l21['example_batch']['distortion']:.4f}, each averaged over the batch.")]),
        Section("m21-10", "2.1 · M2 (bis)", "What is the role of the argument 10 of MNISTCompressionTrainer?",
                "Quel est le rôle de l'argument 10 de MNISTCompressionTrainer ?",
                [H.p(f"It is latent_dims, the size of the latent vector y: each digit is encoded into 10 numbers "
                     f"(here y has shape {tuple(l21['example_batch']['y_shape'])} for the batch), and the prior "
                     "holds one density per latent dimension. The reports' models use 50 by default "
                     "(make_mnist_compression_trainer(lmbda, latent_dims=50))."),
                 H.pre(results["summaries"]["latent10"])]),
    ]
    chapters.append(c)

    c = Chapter("2.2 · Training")
    history = tr["main_history"]
    c.sections += [
        Section("m22-3", "2.2 · M3", "What batch size is used in training?",
                "Quelle est la taille des lots utilisés dans l'entraînement ?",
                [H.raw_p(f'<span class="big">{tr["batch_size"]} digits per batch</span>: '
                         f"{tr['digits_per_epoch']:,} training digits make {tr['steps_per_epoch']} optimisation "
                         "steps per epoch in this run (469 on all 60,000).")]),
        Section("m22-4", "2.2 · M4", "What does 'epoch' mean?", "Quelle est la signification d'epoch ?",
                [H.p(f"One epoch is one pass over the whole training set, each digit seen once (in a new random "
                     f"order each epoch). This run trains {tr['epochs']} epoch(s) of {tr['digits_per_epoch']:,} "
                     f"digits, {tr['epochs'] * tr['steps_per_epoch']} steps in total per model; the lab trains 5 "
                     "epochs on 60,000 digits (2,345 steps).")]),
        Section("m22-5", "2.2 · M5", "What is the role of lmbda?", "Quel est le rôle de lmbda ?",
                [H.p("λ is the Lagrange multiplier of the loss L = R + λ·D (rate in bits per digit, distortion D "
                     "the mean absolute pixel error): it sets the trade-off. A larger λ makes distortion expensive, "
                     "so the model spends more bits for better reconstructions. Measured in this run "
                     "(latent 50, logistic prior):"),
                 _trial_table(results["lambda_sweep"], ("lmbda", "λ"))]),
        Section("m22-6", "2.2 · M6", "What information do we get during training?",
                "Quelles sont les informations que l'on obtient lors de la phase d'apprentissage ?",
                [H.p("After every epoch: the loss, the rate and the distortion averaged over the epoch's batches "
                     "(with noise), and the same on the validation digits (with rounding). The λ = "
                     f"{main_key} model's log:"),
                 H.pre("\n".join(tr["main_log"])),
                 H.image(fig_dir / "training_curves.png", "rate, distortion and loss per epoch")
                 if len(history) else ""]),
    ]
    chapters.append(c)

    c = Chapter("3 · Compressing MNIST digits")
    batch_rows = []
    if grid:
        for i in range(len(grid["hex"])):
            batch_rows.append([LAB_BATCH.start + i, "0x" + grid["hex"][i], f"{grid['string_bits'][i]:.0f}",
                               f"{grid['info_bits'][i]:.2f}", f"{grid['string_bits'][i] - grid['info_bits'][i]:+.2f}",
                               f"{grid['psnr_db'][i]:.2f}"])
    overhead = main_row.get("string_overhead_bits")
    c.sections += [
        Section("m3-1", "3 · M1", "Select a batch of 16 test images. How do you select another batch?",
                "Sélectionner un lot de 16 images ... Comment sélectionner un autre lot ?",
                [H.p("batch(16).skip(3).take(1) skips 3 batches of 16 and takes the next: test digits 48 to 63. "
                     "Another batch: change skip, i.e. take digits 16k to 16k + 15."),
                 H.pre("batch = validation.images[16 * k : 16 * (k + 1)]   # k = 3 here: digits 48..63")]),
        Section("m3-2", "3 · M2", "Compress them to bit strings and compute their information content.",
                "Compressez ces images afin d'obtenir des chaînes de bits, et calculer l'entropie associée.",
                ([H.raw_p(f"String representation of digit 48 in hex: <code>0x{H.esc(grid['hex'][0])}</code>; "
                          f"bits actually needed: <b>{grid['info_bits'][0]:.2f}</b> (information content), "
                          f"string length {grid['string_bits'][0]:.0f} bits (λ = {main_key})."),
                  H.table(["digit", "string (hex)", "real bits", "information (bits)", "overhead", "PSNR (dB)"],
                          batch_rows, left=(1,))] if grid else [H.p("main model missing", "missing")])),
        Section("m3-3", "3 · M3", "Decompress the strings to get the images back.",
                "Décompressez les chaînes de bits afin d'obtenir à nouveau les images.",
                [H.p("codec.decompress(strings) decodes the 16 strings to uint8 digits of shape (16, 28, 28); "
                     "they are identical to the model's reconstruction of the rounded latents: "
                     f"{grid['decoded_equals_reconstruction'] if grid else '-'}.")]),
        Section("m3-4", "3 · M4", "Show originals and reconstructions; why does the string length differ from the "
                "information content?",
                "Pourquoi la longueur de la chaîne codée diffère-t-elle du contenu informatif de chaque chiffre ?",
                [H.image(fig_dir / f"grid_lmbda{main_key}.png",
                         f"λ = {main_key}: original | reconstruction, real bits, information, PSNR (lab Figure 3.0.1)"),
                 H.p("The information content -log2 P(ŷ) is an ideal, fractional number of bits. A real string "
                     "is a whole number of bytes, and the range coder works with integer frequency tables "
                     f"({results['coding']['precision']}-bit precision, plus an escape symbol for values outside "
                     "the table) and must terminate "
                     "its stream unambiguously: so strings are a few bits longer on average"
                     + (f" (+{overhead:.2f} bits per digit on the {main_row.get('eval_n')} evaluation digits)."
                        if overhead is not None else ".")
                     + " A single digit's string can also be shorter than its information when the last byte "
                       "happens to decode correctly when shortened.")]),
        Section("m3-5", "3 · M5", "Evaluate the PSNR (dB).", "Evaluer également le PSNR (en dB).",
                [H.raw_p(f'λ = {main_key}: <span class="big">{_f(main_row.get("psnr_db"))} dB</span> mean of '
                         f"per-digit PSNRs ({_f(main_row.get('psnr_of_mean_mse_db'))} dB from the mean MSE) on "
                         f"{main_row.get('eval_n')} test digits; "
                         f"{_f(np.mean(grid['psnr_db']) if grid else None)} dB on the lab's batch."),
                 H.image(fig_dir / "rd_curves.png",
                         "Left: PSNR against real bits and against information content over λ (lab Figures 3.0.2 "
                         "and 3.0.3). Right (log scale): the same learned codec against classical codecs, each "
                         "digit its own file (per-file, solid) or all digits tiled in one image (tiled, dashed)."),
                 H.p("BD-rate of the learned codec (real bits, PSNR as quality) against each classical codec: "
                     "negative means the learned codec needs fewer bits for the same PSNR; 'no overlap' means "
                     "the two curves share no PSNR range, so no equal-quality comparison exists."),
                 _bd_table(results["bd_rates"]["learned_vs_classical"])
                 if results["bd_rates"]["learned_vs_classical"] else H.p("(needs at least two λ)", "missing"),
                 H.p(f"Classical codecs on the first {base['settings']['n']:,} test digits (full table in "
                     "results.json):"),
                 _baseline_summary(base["rows"]),
                 H.p("Skipped codecs: " + "; ".join(f"{k}: {v}" for k, v in base["skipped"].items()), "note")
                 if base["skipped"] else ""]),
    ]
    chapters.append(c)

    c = Chapter("4 · The rate-distortion trade-off")
    steps = tr["epochs"] * tr["steps_per_epoch"]
    latent_rows, prior_rows = results["latent_sweep"], results["prior_sweep"]
    c.sections += [
        Section("m4-6", "4 · M6", "What happens with a different λ, e.g. λ = 500?",
                "Que se passe-t-il si l'on répète l'expérience avec des valeurs différentes, par exemple λ=500 ?",
                _grid_section(results, fig_dir, "500")),
        Section("m4-7", "4 · M7", "What happens when λ is reduced to 300?",
                "Que se passe-t-il lorsqu'on réduit λ=300 ?", _grid_section(results, fig_dir, "300")),
        Section("m4-8", "4 · M8", "Evaluate the influence of the latent space dimension.",
                "Evaluer l'influence de la dimension de l'espace latent.",
                [H.image(fig_dir / "latent_sweep.png", "bits and PSNR against the number of latents")
                 if len({r["latent_dims"] for r in latent_rows}) > 1 else H.p("one latent size only", "missing"),
                 _trial_table(latent_rows, ("latent_dims", "latents")),
                 H.p(_latent_sentence(latent_rows))]),
        Section("m4-9", "4 · M9", "Evaluate the influence of the prior chosen for the latent components.",
                "Evaluer l'influence du choix des probabilités a priori pour les composantes de l'espace latent.",
                [H.image(fig_dir / "prior_sweep.png", "real bits, PSNR and the evaluated Lagrangian per prior family")
                 if len({r["prior"] for r in prior_rows}) > 1 else H.p("one prior only", "missing"),
                 _trial_table(prior_rows, ("prior", "prior")),
                 H.image(fig_dir / "learned_priors.png", "learned noisy densities of the widest latent dimensions")
                 if (fig_dir / "learned_priors.png").is_file() and len({r["prior"] for r in prior_rows}) > 1
                 else "",
                 H.p(_prior_sentence([r for r in prior_rows if r["lmbda"] == proto.main_lmbda])),
                 H.p("Starting points: bits a freshly initialised prior charges for a latent at its mode "
                     "(untrained latents sit there), times the number of latents, before any training:"),
                 H.table(["prior", "bits per latent at the mode", f"× {proto.main_latent_dims} latents"],
                         [[k, f"{v:.2f}", f"{v * proto.main_latent_dims:.1f}"]
                          for k, v in results["prior_initial_bits_per_latent"].items()]),
                 H.p(f"With {steps} steps per model at the lab's learning rate the priors have barely moved from "
                     "these starting points, so the comparison mostly reflects them (the deep factorized density "
                     "starts deliberately broad, like a logistic of scale 10, and needs many steps to tighten)."
                     if steps < LAB_STEPS and proto.prior_lr is None else
                     "Compare with the trained rates above: training moved every prior away from its starting "
                     "point to fit the latents (the deep factorized density starts deliberately broad, like a "
                     "logistic of scale 10).", "note"),
                 _bd_table(results["bd_rates"]["between_priors"]) if results["bd_rates"]["between_priors"]
                 else H.p("BD-rates between priors need each prior at several λ (the full protocol trains them).",
                          "note")]),
    ]
    chapters.append(c)

    c = Chapter("5 · The decoder as a generative model")
    c.sections.append(Section(
        "m5-1", "5 · M1", "What do you observe when decoding random bit strings?", "Qu'observez-vous ?",
        [H.image(fig_dir / "samples.png", f"16 random 8-byte strings decoded by the λ = {main_key} model "
                                          "(integrity check off)"),
         H.p("Every random string decodes to some latent vector (the range decoder reads the bytes as a position "
             "in the prior's cumulative distribution, so latents come out distributed as the prior), and the "
             "synthesis transform turns it into a digit-like image: strokes on a black background, some "
             "recognisable digits, some blends. The decoder has learned what MNIST digits look like; random bits "
             "sample its learned distribution. A string whose bits land on the escape symbol decodes a latent "
             "far outside the prior's table (through the overflow code) and gives a saturated, noise-like image."),
         H.p(f"{results['samples']['redrawn']} random string(s) could not be decoded at all (the range decoder "
             "ended in a state no encoder produces) and were redrawn.", "note")]))
    chapters.append(c)

    c = Chapter("Beyond the seed")
    if results.get("presets") is not None:
        c.sections.append(_preset_section(results, proto, fig_dir))
    if results.get("shipped_models") is not None:
        c.sections.append(_shipped_section(results["shipped_models"]))
    if c.sections:
        chapters.append(c)

    timings = results["timings_seconds"]
    steps = tr["epochs"] * tr["steps_per_epoch"]
    caveat = ""
    if steps < LAB_STEPS:
        fast_prior = (
            f"The prior's parameters learn at {proto.prior_lr:g} instead of 1e-3: Adam moves a parameter by about "
            "its learning rate per step, and at 1e-3 the priors would barely leave their initial shapes in so few "
            "steps (rates would stay near what the untrained prior charges). " if proto.prior_lr else
            "The prior's parameters move by about the learning rate (1e-3) per step, so rates stay close to what "
            "the freshly initialised prior charges. "
        )
        caveat = (
            f"<li><b>Short protocol:</b> each model takes {steps} optimisation steps (the lab: {LAB_STEPS:,}). "
            + H.esc(fast_prior)
            + "The models are not converged, so the differences between λ, latent sizes and priors are "
            "indicative only. Run <code>mnistcodec report --full</code> for the lab's protocol.</li>"
        )
    preamble = (
        '<div class="proto"><b>Protocol of this run: ' + H.esc(proto.name) + "</b><ul>"
        + "".join(f"<li>{H.esc(line)}</li>" for line in proto.describe())
        + f"<li>Computed in {timings.get('before_html', 0):.0f} s on {results['machine']['cores']} CPU core(s) "
          f"(cached trials and measurements are reused: trials {timings.get('trials', 0):.0f} s, classical codecs "
          f"{timings.get('baselines', 0):.0f} s). Every number below comes from this run; the full set is in "
          "results.json.</li>" + caveat + "</ul></div>"
    )
    return H.page(
        "MNIST learned compression: the lab, answered",
        f"mnistcodec {results['mnistcodec_version']} · {results['generated']} · "
        "End-to-end optimized image compression (Ballé et al. 2017) on MNIST, "
        "after the TensorFlow Compression tutorial and lab UE 455 TP 3",
        preamble, chapters)


def _latent_sentence(rows: Sequence[Mapping]) -> str:
    if len({r["latent_dims"] for r in rows}) < 2:
        return "Only one latent size was trained."
    parts = []
    for lmbda in sorted({r["lmbda"] for r in rows}):
        group = sorted((r for r in rows if r["lmbda"] == lmbda), key=lambda r: r["latent_dims"])
        if len(group) < 2:
            continue
        lo, hi = group[0], group[-1]
        best = min(group, key=lambda r: r["lagrangian"])
        parts.append(
            f"At λ = {lmbda:g}, from {lo['latent_dims']} to {hi['latent_dims']} latents the real rate goes from "
            f"{lo['string_bits']:.1f} to {hi['string_bits']:.1f} bits and the PSNR from {lo['psnr_db']:.2f} to "
            f"{hi['psnr_db']:.2f} dB; the evaluated objective info + λ·MAD is lowest with {best['latent_dims']} "
            f"latents ({best['lagrangian']:.1f})."
        )
    return " ".join(parts) + (
        " More latents give the model more degrees of freedom to describe a digit, and cost more bits; the rate "
        "term decides how many of them actually carry information (unused dimensions collapse onto the prior's "
        "mode and cost little), so past some size extra latents add little, and with short training a larger "
        "model may not even have caught up."
    )


def _prior_sentence(rows: Sequence[Mapping]) -> str:
    if len({r["prior"] for r in rows}) < 2:
        return "Only one prior family was trained."
    best = min(rows, key=lambda r: r["lagrangian"])
    parts = ", ".join(f"{r['prior']} {r['lagrangian']:.1f}" for r in sorted(rows, key=lambda r: r["lagrangian"]))
    return (
        f"Evaluated objective info + λ·MAD (lower is better, same λ): {parts}. The best fit here is {best['prior']}. "
        "A prior that matches the marginal distribution of the latents codes them in fewer bits; the "
        "non-parametric deep factorized density can take any unimodal or skewed shape, the parametric families "
        "only adjust a scale (and the transforms adapt to whichever prior they are trained with)."
    )
