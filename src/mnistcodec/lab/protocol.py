"""What a report run trains and measures: :class:`ReportProtocol` and the named :data:`PROTOCOLS`.

Protocols: ``quick`` (the default; about 10 minutes on 2 CPU cores: training
subsets and 2 short epochs, evaluations and classical codecs on subsets),
``full`` (the lab's protocol: 5 epochs on the 60,000 training digits, lambda
300..2000, latent sizes, every prior at every lambda, evaluation and
classical codecs on all 10,000 test digits) and ``micro`` (seconds; for
tests). The page states the protocol it used (``templates/<lang>/protocol.txt``).

The lab notebook (``notebooks/lab.ipynb``) runs the same trials under the
names of :data:`NOTEBOOK_PROTOCOLS`: ``tiny`` (seconds: a few hundred training
digits, one epoch), ``quick`` and ``lab`` (the lab's protocol, ``full``), and
keeps them by default where the report does (:func:`report_trials_dir`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from mnistcodec.errors import InputError
from mnistcodec.experiments.sweep import TrialSpec, unique_specs
from mnistcodec.model.compression_model import ModelConfig
from mnistcodec.training.loop import TrainConfig
from mnistcodec.training.presets import get_preset

REPORT_PRESETS = ("seed", "improved")
"""The named configurations compared in the report's "Beyond the seed" chapter."""

LAB_BATCH = slice(48, 64)
"""The lab's batch: ``validation_dataset.batch(16).skip(3).take(1)`` = test digits 48..63."""

EXAMPLE_BATCH = 32
"""The lab's example batch: ``validation_dataset.batch(32).take(1)``."""

LAB_STEPS = 5 * 469
"""Optimisation steps of the lab's protocol: 5 epochs of 469 batches."""


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
    precision: str = "auto"  # of the trials' training and evaluation

    def __post_init__(self) -> None:
        if self.main_lmbda not in self.lmbdas:
            raise InputError(
                f"protocol {self.name}: main_lmbda {self.main_lmbda:g} must be one of lmbdas"
            )
        if self.main_latent_dims not in self.latent_dims or self.main_prior not in self.priors:
            raise InputError(
                f"protocol {self.name}: the main model must be part of the latent and prior sweeps"
            )
        if self.main_lmbda not in self.latent_lmbdas or self.main_lmbda not in self.prior_lmbdas:
            raise InputError(
                f"protocol {self.name}: the sweeps must include main_lmbda {self.main_lmbda:g}"
            )

    def train_config(self, dataset: str = "mnist", data_dir: str | None = None) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            prior_lr=self.prior_lr,
            seed=self.seed,
            limit=self.train_limit,
            val_limit=self.val_limit,
            dataset=dataset,
            data_dir=data_dir,
            device="cpu",
            precision=self.precision,
        )

    def spec(self, lmbda: float, latent_dims: int, prior: str, train: TrainConfig) -> TrialSpec:
        model = ModelConfig(latent_dims=int(latent_dims), prior=prior, lmbda=float(lmbda))
        return TrialSpec(model, train, self.eval_limit)

    def preset_specs(
        self, name: str, dataset: str = "mnist", data_dir: str | None = None
    ) -> list[TrialSpec]:
        """A named preset's curve: its architecture, prior and prior learning rate at ``preset_lmbdas``."""
        preset = get_preset(name)
        train = replace(self.train_config(dataset, data_dir), prior_lr=preset.prior_lr)
        return [
            TrialSpec(
                ModelConfig(
                    arch=preset.arch,
                    latent_dims=self.main_latent_dims,
                    prior=preset.prior,
                    lmbda=float(lm),
                ),
                train,
                self.eval_limit,
            )
            for lm in self.preset_lmbdas
        ]

    def trial_groups(
        self, dataset: str = "mnist", data_dir: str | None = None
    ) -> dict[str, list[TrialSpec]]:
        """The trials of each sweep: ``lambda``, ``latent``, ``prior``, ``preset:<name>``.

        Shared trials (same configuration) appear in several groups and are trained once.
        """
        train = self.train_config(dataset, data_dir)
        return {
            **{
                f"preset:{name}": self.preset_specs(name, dataset, data_dir)
                for name in REPORT_PRESETS
            },
            "lambda": [
                self.spec(lm, self.main_latent_dims, self.main_prior, train) for lm in self.lmbdas
            ],
            "latent": [
                self.spec(lm, d, self.main_prior, train)
                for lm in self.latent_lmbdas
                for d in self.latent_dims
            ],
            "prior": [
                self.spec(lm, self.main_latent_dims, pr, train)
                for lm in self.prior_lmbdas
                for pr in self.priors
            ],
        }

    def all_specs(self, dataset: str = "mnist", data_dir: str | None = None) -> list[TrialSpec]:
        groups = self.trial_groups(dataset, data_dir)
        return unique_specs([s for g in groups.values() for s in g])

    def main_spec(self, dataset: str = "mnist", data_dir: str | None = None) -> TrialSpec:
        return self.spec(
            self.main_lmbda,
            self.main_latent_dims,
            self.main_prior,
            self.train_config(dataset, data_dir),
        )


PROTOCOLS: dict[str, ReportProtocol] = {
    "micro": ReportProtocol(
        name="micro",
        epochs=1,
        train_limit=128,
        val_limit=64,
        eval_limit=32,
        prior_lr=1e-2,
        lmbdas=(300.0, 2000.0),
        latent_dims=(10, 50),
        priors=("logistic", "deep-factorized"),
        preset_lmbdas=(300.0, 2000.0),
        baseline_n=8,
        baseline_codecs=("jpeg", "webp", "png"),
        baseline_qualities=(("jpeg", (10, 50, 90)), ("webp", (0, 50, 100))),
        jobs=1,
    ),
    "quick": ReportProtocol(
        name="quick",
        epochs=2,
        train_limit=10000,
        val_limit=2000,
        eval_limit=1000,
        prior_lr=1e-2,
        lmbdas=(300.0, 500.0, 1000.0, 1500.0, 2000.0),
        latent_dims=(5, 10, 20, 50),
        priors=("logistic", "normal", "laplace", "deep-factorized"),
        baseline_n=1000,
        baseline_qualities=(("avif", (0, 30, 60, 90)), ("jpegxl", (0, 20, 40, 60, 80, 95))),
        jobs=2,
    ),
    "full": ReportProtocol(
        name="full",
        epochs=5,
        train_limit=None,
        val_limit=None,
        eval_limit=None,
        lmbdas=(300.0, 500.0, 1000.0, 1500.0, 2000.0),
        latent_dims=(5, 10, 20, 50, 100),
        priors=("logistic", "normal", "laplace", "deep-factorized"),
        prior_lmbdas=(300.0, 500.0, 1000.0, 1500.0, 2000.0),
        baseline_n=10000,
        jobs=2,
    ),
}
"""Named protocols; see the module docstring."""


def resolve_protocol(protocol: str | ReportProtocol) -> ReportProtocol:
    """A protocol by name (one of :data:`PROTOCOLS`), or the protocol given."""
    if isinstance(protocol, ReportProtocol):
        return protocol
    try:
        return PROTOCOLS[protocol]
    except KeyError:
        raise InputError(
            f"unknown report protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}"
        ) from None


NOTEBOOK_PROTOCOLS: dict[str, ReportProtocol] = {
    "tiny": replace(PROTOCOLS["micro"], name="tiny", train_limit=512),
    "quick": PROTOCOLS["quick"],
    "lab": PROTOCOLS["full"],
}
"""The lab notebook's protocols (``MNISTCODEC_NOTEBOOK_PROTOCOL``): ``lab`` is the lab's own."""


def report_trials_dir(out: str | os.PathLike = "report") -> Path:
    """Where a report written to ``out`` keeps its trained models: ``<out>/cache/trials``.

    The lab notebook keeps its models there too by default (the report's default
    ``report/`` at the repository's root), so the two share them: a trial
    of the same configuration is trained once (:mod:`mnistcodec.experiments.sweep`).
    """
    return Path(out) / "cache" / "trials"


def notebook_protocol(name: str) -> ReportProtocol:
    """The lab notebook's protocol called ``name`` (one of :data:`NOTEBOOK_PROTOCOLS`)."""
    try:
        return NOTEBOOK_PROTOCOLS[name]
    except KeyError:
        raise InputError(
            f"unknown notebook protocol {name!r}; choose one of {', '.join(NOTEBOOK_PROTOCOLS)}"
        ) from None
