"""Grids of trials (lambda x latent size x prior x seed) with a result cache.

A trial trains one model (:func:`mnistcodec.training.loop.train`), then evaluates it
with real entropy coding on the test split (:func:`mnistcodec.experiments.evaluate.evaluate`)::

    specs = make_grid(lmbdas=[300, 2000], latent_dims=[50], priors=["logistic"],
                      train_config=TrainConfig(epochs=1, limit=10000), eval_limit=1000)
    sweep = run_sweep(specs, "sweeps/demo", jobs=2)
    sweep.rows        # one dict per trial: config, final validation, evaluation
    sweep.bd_rates    # BD-rates between configurations (mnistcodec.experiments.bdrate)

A sweep returns numbers and writes tables; it draws nothing (the ``sweep``
command plots the rows with :mod:`mnistcodec.lab.figures`).

Cache. Each trial lives in ``<root>/<key>/`` where ``key`` is a hash of its
full configuration (model and training configs, without the data directory,
which does not change the data: files are verified by SHA-256). The directory
holds ``config.json``, the model file ``model.safetensors`` with its
``.ckpt`` checkpoint and ``.history.{json,csv}``, and ``result.json``. A
trial whose ``result.json`` matches the requested evaluation is reused as is;
a trial with a model file but no (matching) result is only evaluated; a trial
interrupted during training resumes from its checkpoint. So an interrupted
sweep continues where it stopped, and repeating a sweep costs nothing.

Executors. ``local`` (the default): ``jobs > 1`` runs trials in worker
processes (``ProcessPoolExecutor`` with the ``spawn`` start method), each
limited to ``cores // jobs`` PyTorch threads; each worker's epoch progress bar
gets its own terminal line. ``ray``: every trial is a task on a Ray cluster
(:mod:`mnistcodec.experiments.ray_executor`). Both run :func:`run_trial`, so
both fill the same cache with the same numbers.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mnistcodec.coding.model_files import load_model
from mnistcodec.data import load_split
from mnistcodec.errors import InputError, MnistCodecError, ModelFileError
from mnistcodec.experiments.bdrate import learned_bd_rates
from mnistcodec.experiments.evaluate import evaluate
from mnistcodec.experiments.tables import rows_to_csv
from mnistcodec.model.compression_model import ModelConfig
from mnistcodec.model.precision import training_precision_for_device
from mnistcodec.storage.atomic import atomic_write_text
from mnistcodec.training.checkpoints import checkpoint_path
from mnistcodec.training.loop import TrainConfig, train

if TYPE_CHECKING:
    from mnistcodec.experiments.ray_executor import RayOptions

CACHE_VERSION = 1
"""Bumped when the meaning of a cached trial changes (invalidates every cache)."""

MODEL_FILE = "model.safetensors"
RESULT_FILE = "result.json"

RESULT_COLUMNS = (
    "key",
    "lmbda",
    "latent_dims",
    "prior",
    "arch",
    "distortion",
    "seed",
    "epochs",
    "limit",
    "threading",
    "threads",
    "train_seconds",
    "val_rate",
    "val_distortion",
    "eval_n",
    "rate_bound_bits",
    "info_bits",
    "string_bits",
    "stream_bits_per_digit",
    "string_overhead_bits",
    "psnr_db",
    "psnr_of_mean_mse_db",
    "mad",
    "mad_decoded",
    "lagrangian",
)
"""Columns of the results table (CSV order)."""


@dataclass(frozen=True)
class TrialSpec:
    """One trial: what to train, and how many test digits to evaluate (``None``: all)."""

    model: ModelConfig
    train: TrainConfig
    eval_limit: int | None = None

    def config(self) -> dict:
        """The hashed configuration: model and training configs, minus the data directory and
        the CPU threading mode (neither changes what is computed beyond float rounding); the
        precision only when it resolves to bf16, the level weight and the learning-rate decay
        only when set, so other trials keep the keys they had before these options existed."""
        train = asdict(self.train)
        del train["data_dir"], train["threading"]
        if not train["level_weight"]:
            del train["level_weight"]
        if not train["lr_decay_epochs"]:
            del train["lr_decay_epochs"], train["lr_decay_factor"]
        if training_precision_for_device(train.pop("precision"), self.train.device) == "bf16":
            train["precision"] = "bf16"
        return {"model": self.model.to_dict(), "train": train}

    def pinned(self) -> TrialSpec:
        """This trial with its precision resolved here: every machine then runs it alike."""
        resolved = training_precision_for_device(self.train.precision, self.train.device)
        return replace(self, train=replace(self.train, precision=resolved))

    @property
    def key(self) -> str:
        blob = json.dumps({"cache_version": CACHE_VERSION, **self.config()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        m = self.model
        return f"lmbda={m.lmbda:g} d={m.latent_dims} {m.prior} seed={self.train.seed}"

    def evaluation_settings(self) -> dict:
        return {"split": "test", "limit": self.eval_limit, "coding": True, "noise_seed": 0}


@dataclass
class TrialResult:
    """A finished trial: where it lives, its training history and its evaluation."""

    spec: TrialSpec
    directory: Path
    history: list[dict] = field(default_factory=list)
    evaluation: dict = field(default_factory=dict)
    trained: bool = False
    evaluated: bool = False
    seconds: float = 0.0

    @property
    def model_path(self) -> Path:
        return self.directory / MODEL_FILE

    @property
    def reused(self) -> bool:
        """True when nothing had to be computed (all from the cache)."""
        return not (self.trained or self.evaluated)

    def row(self) -> dict:
        """A flat row of the results table (see :data:`RESULT_COLUMNS`)."""
        m, t, ev = self.spec.model, self.spec.train, self.evaluation
        last = self.history[-1] if self.history else {}
        row: dict[str, Any] = {
            "key": self.spec.key,
            "lmbda": m.lmbda,
            "latent_dims": m.latent_dims,
            "prior": m.prior,
            "arch": m.arch,
            "distortion": m.distortion,
            "seed": t.seed,
            "epochs": t.epochs,
            "limit": t.limit,
            "threading": last.get("threading"),  # how the last epoch used the CPU
            "threads": last.get("threads"),
            "train_seconds": sum(float(r.get("seconds", 0.0)) for r in self.history),
            "val_rate": last.get("val_rate"),
            "val_distortion": last.get("val_distortion"),
            "eval_n": ev.get("n"),
        }
        for name in RESULT_COLUMNS:
            if name not in row and name in ev:
                row[name] = ev[name]
        if "info_bits" in ev and "mad" in ev:
            row["lagrangian"] = ev["info_bits"] + m.lmbda * ev["mad"]
        return row


def make_grid(
    lmbdas: Iterable[float],
    latent_dims: Iterable[int],
    priors: Iterable[str],
    train_config: TrainConfig,
    seeds: Iterable[int] = (0,),
    eval_limit: int | None = None,
    arch: str = "seed",
    distortion: str = "mad",
) -> list[TrialSpec]:
    """Every combination of the given values, in a stable order (lambda varies fastest)."""
    specs = []
    for seed in seeds:
        for prior in priors:
            for dims in latent_dims:
                for lmbda in lmbdas:
                    specs.append(
                        TrialSpec(
                            ModelConfig(
                                arch=arch,
                                latent_dims=int(dims),
                                prior=prior,
                                lmbda=float(lmbda),
                                distortion=distortion,
                            ),
                            replace(train_config, seed=int(seed)),
                            eval_limit,
                        )
                    )
    return unique_specs(specs)


def unique_specs(specs: Iterable[TrialSpec]) -> list[TrialSpec]:
    """Drop repeated configurations (same key), keeping the first."""
    seen: dict[str, TrialSpec] = {}
    for spec in specs:
        seen.setdefault(spec.key, spec)
    return list(seen.values())


# ----------------------------------------------------------------------------- one trial


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def cached_result(spec: TrialSpec, root: str | os.PathLike) -> TrialResult | None:
    """The trial's cached result when it exists and matches ``spec``'s evaluation, else ``None``."""
    directory = Path(root) / spec.key
    data = _read_json(directory / RESULT_FILE)
    if (
        not isinstance(data, dict)
        or data.get("config") != spec.config()
        or data.get("eval") != spec.evaluation_settings()
        or not (directory / MODEL_FILE).is_file()
    ):
        return None
    return TrialResult(spec, directory, data.get("history", []), data.get("evaluation", {}))


def run_trial(
    spec: TrialSpec,
    root: str | os.PathLike,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrialResult:
    """Train (or resume) and evaluate one trial, reusing whatever its cache holds."""
    cached = cached_result(spec, root)
    if cached is not None:
        return cached
    t0 = time.perf_counter()
    directory = Path(root) / spec.key
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        directory / "config.json", json.dumps(spec.config(), indent=2, sort_keys=True)
    )
    model_path = directory / MODEL_FILE
    loaded = None
    if model_path.is_file():
        try:
            loaded = load_model(model_path)
        except ModelFileError as exc:
            log(f"cached model unusable ({exc}); training again")
    trained = loaded is None
    if loaded is None:
        resume = checkpoint_path(model_path).is_file()
        if resume:
            log(f"resuming {spec.label} from its checkpoint")
        loaded = train(
            spec.model,
            spec.train,
            model_path,
            resume=resume,
            force=True,
            progress=progress,
            log=log,
        ).model
    history = _read_json(model_path.with_name(MODEL_FILE + ".history.json"))
    if not isinstance(history, list):
        history = loaded.metadata.get("history", [])
    images = load_split("test", spec.train.dataset, spec.train.data_dir).images[: spec.eval_limit]
    evaluation = evaluate(loaded, images, coding=True, seed=0, precision=spec.train.precision)
    record = {
        "key": spec.key,
        "config": spec.config(),
        "eval": spec.evaluation_settings(),
        "evaluation": evaluation,
        "history": history,
    }
    atomic_write_text(directory / RESULT_FILE, json.dumps(record, indent=2))
    return TrialResult(
        spec, directory, history, evaluation, trained, True, time.perf_counter() - t0
    )


def _trial_in_worker(spec: TrialSpec, root: str, progress: bool, prefix: str) -> TrialResult:
    return run_trial(
        spec, root, progress=progress, log=lambda line: print(f"{prefix} {line}", flush=True)
    )


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


EXECUTORS = ("local", "ray")
"""Where :func:`run_trials` runs trials: this machine's process pool, or a Ray cluster."""


def run_trials(
    specs: Sequence[TrialSpec],
    root: str | os.PathLike,
    jobs: int = 1,
    progress: bool = True,
    log: Callable[[str], None] = print,
    executor: str = "local",
    ray_options: RayOptions | None = None,
) -> list[TrialResult]:
    """Run every trial (cached ones are free), in order of ``specs``, with ``executor``.

    ``local`` uses ``jobs`` worker processes; ``ray`` runs each trial as a Ray
    task (``ray_options``: the cluster's address and each trial's resources).
    All trials are attempted even if some fail; the failures are then raised
    together as one :class:`MnistCodecError` (the others stay cached).
    """
    if jobs < 1:
        raise InputError(f"--jobs must be at least 1, got {jobs}")
    if executor not in EXECUTORS:
        raise InputError(f"unknown executor {executor!r}; use {' or '.join(EXECUTORS)}")
    specs = unique_specs(spec.pinned() for spec in specs)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    n = len(specs)
    results: list[TrialResult | None] = [None] * n
    todo = []
    for i, spec in enumerate(specs):
        cached = cached_result(spec, root)
        if cached is not None:
            results[i] = cached
            log(f"[trial {i + 1}/{n}] {spec.label}: cached ({spec.key})")
        else:
            todo.append(i)
    failures: list[str] = []
    jobs = min(jobs, len(todo)) if todo else 1
    if executor == "ray" and todo:
        # lazy: Ray is an optional dependency, imported only when a sweep runs on it
        from mnistcodec.experiments.ray_executor import RayOptions, run_on_ray

        finished = run_on_ray(specs, todo, root, log, failures, ray_options or RayOptions())
    elif jobs == 1:
        finished = {}
        for i in todo:
            spec = specs[i]
            log(f"[trial {i + 1}/{n}] {spec.label}: running ({spec.key})")
            try:
                finished[i] = run_trial(
                    spec,
                    root,
                    progress=progress,
                    log=lambda line, i=i: log(f"[trial {i + 1}/{n}] {line}"),
                )
            except MnistCodecError as exc:
                failures.append(f"{spec.label}: {exc}")
                log(f"[trial {i + 1}/{n}] {spec.label}: FAILED: {exc}")
    else:
        finished = _run_pool(specs, todo, root, jobs, progress, log, failures)
    for i, result in finished.items():
        results[i] = result
    if failures:
        raise MnistCodecError(f"{len(failures)} of {n} trials failed: " + "; ".join(failures))
    return [r for r in results if r is not None]


def _run_pool(
    specs: Sequence[TrialSpec],
    todo: list[int],
    root: Path,
    jobs: int,
    progress: bool,
    log: Callable[[str], None],
    failures: list[str],
) -> dict[int, TrialResult]:
    n = len(specs)
    threads = max(1, available_cores() // jobs)
    log(f"running {len(todo)} trial(s) in {jobs} worker processes, {threads} thread(s) each")
    ctx = multiprocessing.get_context("spawn")
    done: dict[int, TrialResult] = {}
    saved_position = os.environ.get("TQDM_POSITION")
    with ProcessPoolExecutor(
        jobs, mp_context=ctx, initializer=_worker_init, initargs=(threads,)
    ) as pool:
        pending = {}
        try:
            for count, i in enumerate(todo):
                # A spawned worker reads tqdm's defaults from its environment when it
                # starts (during one of the first ``jobs`` submits): give each its own line.
                if count < jobs:
                    os.environ["TQDM_POSITION"] = str(count + 1)
                log(f"[trial {i + 1}/{n}] {specs[i].label}: queued ({specs[i].key})")
                pending[
                    pool.submit(
                        _trial_in_worker, specs[i], str(root), progress, f"[trial {i + 1}/{n}]"
                    )
                ] = i
        finally:
            if saved_position is None:
                os.environ.pop("TQDM_POSITION", None)
            else:
                os.environ["TQDM_POSITION"] = saved_position
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    i = pending.pop(future)
                    try:
                        done[i] = future.result()
                        log(f"[trial {i + 1}/{n}] {specs[i].label}: done in {done[i].seconds:.0f}s")
                    except MnistCodecError as exc:
                        failures.append(f"{specs[i].label}: {exc}")
                        log(f"[trial {i + 1}/{n}] {specs[i].label}: FAILED: {exc}")
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return done


# ----------------------------------------------------------------------------- tables


def results_table(results: Iterable[TrialResult]) -> list[dict]:
    """One row per trial (see :meth:`TrialResult.row`)."""
    return [r.row() for r in results]


def write_results(rows: Sequence[Mapping], csv_path: Path, json_path: Path) -> None:
    atomic_write_text(csv_path, rows_to_csv(rows, RESULT_COLUMNS))
    atomic_write_text(json_path, json.dumps(list(rows), indent=2))


# ----------------------------------------------------------------------------- a sweep


@dataclass
class SweepResult:
    """A finished sweep: its trials, their rows, the files written and the BD-rates between configurations."""

    trials: list[TrialResult]
    rows: list[dict]
    files: dict[str, Path] = field(default_factory=dict)
    bd_rates: list[dict] = field(default_factory=list)


def run_sweep(
    specs: Sequence[TrialSpec],
    out: str | os.PathLike,
    jobs: int = 1,
    progress: bool = True,
    log: Callable[[str], None] = print,
    executor: str = "local",
    ray_options: RayOptions | None = None,
) -> SweepResult:
    """Run the trials (cache in ``<out>/trials``), write ``results.{csv,json}`` and ``bd_rates.json``.

    The BD-rates are those between learned configurations
    (:func:`mnistcodec.experiments.bdrate.learned_bd_rates`). Nothing is drawn:
    the ``sweep`` command plots the rows with :mod:`mnistcodec.lab.figures`.
    ``executor`` and ``ray_options``: as for :func:`run_trials`.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    trials = run_trials(
        specs, out / "trials", jobs, progress, log, executor=executor, ray_options=ray_options
    )
    rows = results_table(trials)
    write_results(rows, out / "results.csv", out / "results.json")
    result = SweepResult(trials, rows, {"csv": out / "results.csv", "json": out / "results.json"})
    result.bd_rates = learned_bd_rates(rows)
    atomic_write_text(out / "bd_rates.json", json.dumps(result.bd_rates, indent=2))
    return result
