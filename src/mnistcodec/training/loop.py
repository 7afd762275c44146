"""Training with the rate-distortion Lagrangian ``L = R + lambda * D``.

Per batch of digits ``x`` (pixels on [0, 1]), with uniform noise ``u ~ U(-1/2, 1/2)``
in the bottleneck (Ballé et al. 2017)::

    y = g_a(x),    y~ = y + u,    x~ = g_s(y~)
    R = mean over the batch of -sum_i log2 p~_i(y~_i)     (bits per digit)
    D = mean |x - x~|                                     (the seed's MAD)

and Adam takes a step on ``L``. :func:`train` reads top to bottom: load the
splits, build the model and optimizer (or restore them from the checkpoint),
then for every epoch shuffle the training digits with a generator seeded by
``(seed, epoch)`` and take the Adam steps (:func:`train_epoch`), validate on
the test split in evaluation mode (rounded latents ``y^``, information content
``-log2 P(y^)``, as the seed does; :func:`validate`), log, checkpoint; finally
freeze the model for coding and write it.

Keras defaults the seed inherits are kept: Glorot-uniform initialisation (see
:mod:`mnistcodec.model.transforms`) and Adam with ``eps = 1e-7``. Checkpoints
and resume live in :mod:`mnistcodec.training.checkpoints`, the use of the CPU
cores (``TrainConfig.threading``) in :mod:`mnistcodec.training.threading`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from mnistcodec.coding import memory
from mnistcodec.coding.limits import check_learning_rate, check_model_config
from mnistcodec.coding.model_files import LoadedModel, save_model
from mnistcodec.coding.zoo import resolve_model
from mnistcodec.data import DATASETS, load_split
from mnistcodec.errors import InputError, TrainingError
from mnistcodec.model.compression_model import CompressionModel, ModelConfig
from mnistcodec.model.precision import (
    FP32,
    check_precision,
    resolve_device,
    set_precision,
    training_precision,
)
from mnistcodec.model.transforms import images_to_unit
from mnistcodec.model.variable_rate import make_model
from mnistcodec.storage.atomic import check_writable
from mnistcodec.training.checkpoints import (
    checkpoint_path,
    restore_checkpoint,
    save_checkpoint,
    write_history,
)
from mnistcodec.training.names import DEFAULT_THREADING, DETERMINISTIC_THREADING, THREADING_MODES
from mnistcodec.training.threading import (
    ShardedStep,
    Workers,
    choose_threading,
    shard_pool,
    shards,
)

ADAM_EPS = 1e-7  # Keras' default; PyTorch's is 1e-8


@dataclass(frozen=True)
class TrainConfig:
    """How to train: the seed's protocol by default."""

    epochs: int = 5
    batch_size: int = 128
    lr: float = 1e-3
    prior_lr: float | None = None  # learning rate of the prior's parameters (default: lr)
    seed: int = 0
    device: str = "auto"
    limit: int | None = None
    val_limit: int | None = None
    dataset: str = "mnist"
    data_dir: str | None = None
    threading: str = DEFAULT_THREADING
    precision: str = "auto"  # fp32, bf16 or auto (mnistcodec.model.precision)
    level_weight: float = 0.0  # a variable-rate model's level weights (VariableRateModel.loss)
    lr_decay_epochs: int = 0  # the last this many epochs train at lr_decay_factor x the rates
    lr_decay_factor: float = 0.1
    #: Start from this model's weights (a model file or shipped name) instead of a fresh
    #: initialisation: fine-tuning, possibly to another distortion or lambda range.
    init_from: str | None = None

    def __post_init__(self) -> None:
        check_precision(self.precision)
        if not 0.0 <= self.level_weight <= 4.0:
            raise InputError(f"--level-weight must be from 0 to 4, got {self.level_weight}")
        if self.threading not in THREADING_MODES:
            raise InputError(
                f"threading must be one of {', '.join(THREADING_MODES)}, got {self.threading!r}"
            )
        if self.epochs < 1:
            raise InputError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {self.batch_size}")
        check_learning_rate(self.lr)
        if self.prior_lr is not None:
            check_learning_rate(self.prior_lr, "the prior's learning rate")
        if self.limit is not None and self.limit < 1:
            raise InputError(f"--limit must be at least 1, got {self.limit}")
        if not 0 <= self.lr_decay_epochs <= self.epochs:
            raise InputError(
                f"--lr-decay-epochs must be from 0 to --epochs ({self.epochs}), got {self.lr_decay_epochs}"
            )
        if not 0.0 < self.lr_decay_factor <= 1.0:
            raise InputError(f"--lr-decay-factor must be in (0, 1], got {self.lr_decay_factor}")

    def learning_rates(self, epoch: int) -> tuple[float, float]:
        """The transforms' and the prior's learning rates in ``epoch`` (1-based).

        ``lr`` and ``prior_lr`` (default ``lr``), times ``lr_decay_factor`` in
        the last ``lr_decay_epochs`` epochs of the run: a step decay for the
        end of a long schedule, which a resumed run follows as well.
        """
        factor = self.lr_decay_factor if epoch > self.epochs - self.lr_decay_epochs else 1.0
        prior = self.lr if self.prior_lr is None else self.prior_lr
        return self.lr * factor, prior * factor


@dataclass
class EpochRecord:
    """One epoch's figures: training means over its steps, validation over the test split."""

    epoch: int
    seconds: float
    loss: float
    rate: float
    distortion: float
    val_loss: float
    val_rate: float
    val_distortion: float
    #: How the epoch used the CPU (``intra-op`` or ``shards``) and with how many threads;
    #: empty and 0 in rows written before they were recorded.
    threading: str = ""
    threads: int = 0


@dataclass
class TrainResult:
    model: LoadedModel
    history: list[EpochRecord] = field(default_factory=list)
    path: Path | None = None


def format_epoch(record: EpochRecord, epochs: int) -> str:
    """The epoch's log line, in the layout of Keras' ``fit``."""
    return (
        f"epoch {record.epoch}/{epochs} - {record.seconds:.1f}s - loss {record.loss:.4f}"
        f" - rate {record.rate:.4f} - distortion {record.distortion:.4f}"
        f" - val_loss {record.val_loss:.4f} - val_rate {record.val_rate:.4f}"
        f" - val_distortion {record.val_distortion:.4f}"
    )


def train(
    model_config: ModelConfig,
    train_config: TrainConfig,
    out: str | os.PathLike,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train a model and write it (with history and checkpoint) to ``out``."""
    out = Path(out)
    ckpt = checkpoint_path(out)
    check_model_config(model_config)
    if not resume:
        check_writable(out, force=force)
    elif not ckpt.exists():
        raise TrainingError(f"--resume given but no checkpoint {ckpt} exists")
    device = resolve_device(train_config.device)
    if device.type == "cpu":  # each step allocates the same buffers: keep the freed ones
        memory.reuse_for_batches()

    # The digits, on the device: training split (optionally the first `limit`) and test split.
    train_split = load_split("train", train_config.dataset, train_config.data_dir)
    test_split = load_split("test", train_config.dataset, train_config.data_dir)
    train_images = torch.from_numpy(train_split.images[: train_config.limit]).to(device)
    val_images = torch.from_numpy(test_split.images[: train_config.val_limit]).to(device)

    # The model and Adam, seeded; or both as the last complete epoch left them.
    torch.manual_seed(train_config.seed)
    model = make_model(model_config).to(device)
    precision = training_precision(train_config.precision, device)
    set_precision(model, precision)
    if train_config.level_weight:
        if not hasattr(model, "level_weight"):
            raise InputError("--level-weight is for variable-rate models (--arch vr)")
        model.level_weight = train_config.level_weight
    if train_config.init_from is not None and not resume:
        start_from(model, train_config.init_from)
    optimizer = make_optimizer(model, train_config.lr, train_config.prior_lr)
    threads = torch.get_num_threads() if device.type == "cpu" else 1
    threading = choose_threading(train_config.threading, threads, device)
    history: list[EpochRecord] = []
    start_epoch = 1
    if resume:
        start_epoch, rows, recorded = restore_checkpoint(ckpt, model, optimizer, model_config)
        history = [EpochRecord(**row) for row in rows]
        if train_config.threading == "auto" and recorded in DETERMINISTIC_THREADING:
            threading = recorded  # a resumed run keeps the mode it started with
        log(f"resuming from {ckpt} after epoch {start_epoch - 1}")

    # The epochs: Adam steps on L, validation, a log line and a checkpoint each.
    with shard_pool(threading, threads) as pool:
        sharded = ShardedStep(model, pool) if pool is not None else None
        for epoch in range(start_epoch, train_config.epochs + 1):
            t0 = time.perf_counter()
            rates = train_config.learning_rates(epoch)
            for group, lr in zip(optimizer.param_groups, rates, strict=True):
                group["lr"] = lr
            loss, rate, distortion = train_epoch(
                model, optimizer, train_images, train_config, epoch, sharded, progress, ckpt
            )
            val_rate, val_distortion, val_loss = validate(model, val_images, pool=pool)
            seconds = time.perf_counter() - t0
            figures = (loss, rate, distortion, val_loss, val_rate, val_distortion)
            record = EpochRecord(epoch, seconds, *figures, threading, threads)
            history.append(record)
            log(format_epoch(record, train_config.epochs))
            rows = [asdict(r) for r in history]
            save_checkpoint(
                ckpt, model, optimizer, epoch, rows, model_config, asdict(train_config), threading
            )

    # Freeze for coding (integer tables) and write the model with its history.
    set_precision(model, FP32)
    metadata = _training_metadata(train_config, history, train_split.source, threading, threads)
    metadata["training"]["precision_used"] = precision.describe()
    frozen = save_model(model, out, metadata=metadata, force=True)
    model.to(device)
    write_history(out, [asdict(r) for r in history])
    return TrainResult(frozen, history, out)


def train_epoch(
    model: CompressionModel,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    config: TrainConfig,
    epoch: int,
    sharded: ShardedStep | None,
    progress: bool,
    ckpt: Path,
) -> tuple[float, float, float]:
    """One epoch of Adam steps on ``L``; returns the mean loss, rate and distortion per digit.

    ``sharded`` splits every batch across threads; ``ckpt`` is named in the
    error raised when the loss or a parameter stops being finite.
    """
    n, device = images.shape[0], images.device
    steps = math.ceil(n / config.batch_size)
    model.train()
    g = epoch_generator(config.seed, epoch, device)
    order = torch.randperm(n, generator=g, device=device)
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    bar = tqdm(
        range(steps),
        desc=f"epoch {epoch}/{config.epochs}",
        disable=not progress,
        unit="step",
        leave=False,
        dynamic_ncols=True,
    )
    for step in bar:
        idx = order[step * config.batch_size : (step + 1) * config.batch_size]
        x = images_to_unit(images[idx])
        optimizer.zero_grad(set_to_none=True)
        if sharded is None:
            out = model(x, training=True, generator=g)
            loss = model.loss(out)
            loss.backward()
            terms = torch.stack([loss.detach(), out.rate.detach(), out.distortion.detach()])
            terms = terms.double()
        else:
            terms = sharded(x, g)
        optimizer.step()
        sums += terms * idx.shape[0]
        # On the CPU reading the running sums costs nothing, so every step is
        # checked; on a GPU only every 20 steps, to avoid a host sync per step.
        if device.type == "cpu" or step % 20 == 0 or step == steps - 1:
            loss_v, rate_v, dist_v = (sums / min(n, (step + 1) * config.batch_size)).tolist()
            if not math.isfinite(loss_v):
                raise TrainingError(
                    f"non-finite loss at epoch {epoch}, step {step + 1}; {_last_good(ckpt)}"
                )
        if progress and (step % 20 == 0 or step == steps - 1):
            bar.set_postfix(loss=f"{loss_v:.2f}", rate=f"{rate_v:.2f}", dist=f"{dist_v:.4f}")
    bar.close()
    loss_v, rate_v, dist_v = (sums / n).tolist()
    if not all(math.isfinite(v) for v in (loss_v, rate_v, dist_v)) or not all(
        torch.isfinite(p).all() for p in model.parameters()
    ):
        raise TrainingError(f"non-finite loss or parameters in epoch {epoch}; {_last_good(ckpt)}")
    return loss_v, rate_v, dist_v


def _last_good(ckpt: Path) -> str:
    """Where a failed run can resume from: its checkpoint, if one was written."""
    if ckpt.exists():
        return f"the last good checkpoint is {ckpt}"
    return "no checkpoint was written (it is written at the end of each epoch)"


@torch.inference_mode()
def validate(
    model: CompressionModel,
    images: torch.Tensor,
    batch_size: int = 1000,
    pool: Workers | None = None,
) -> tuple[float, float, float]:
    """Mean information content, mean distortion and Lagrangian in evaluation mode.

    ``R = mean -log2 P(y^)`` with ``y^ = round(y - o) + o``, ``D`` on ``g_s(y^)``,
    ``L = R + lambda D``. Sums are kept on the device and read once at the end;
    with ``pool``, each batch is split across its threads.
    """
    model.eval()
    sums = torch.zeros(2, dtype=torch.float64, device=images.device)
    n = images.shape[0]

    def terms(part: torch.Tensor) -> torch.Tensor:
        x = images_to_unit(part)
        out = model(x, training=False)
        return torch.stack([out.rate_bits.sum().double(), out.distortion.double() * x.shape[0]])

    for start in range(0, n, batch_size):
        batch = images[start : start + batch_size]
        if pool is None:
            sums += terms(batch)
        else:
            for part_terms in pool.map(terms, shards(batch, pool.count)):
                sums += part_terms
    rate, dist = (sums / n).tolist()
    return rate, dist, rate + model.config.lmbda * dist


def make_optimizer(
    model: CompressionModel, lr: float, prior_lr: float | None = None
) -> torch.optim.Adam:
    """Adam with Keras' epsilon, as one fused kernel; the prior may have its own rate.

    The prior's rate applies to every parameter of the entropy bottleneck (the
    prior's, and a variable-rate model's gains) and to a conditioned decoder's
    per-level scales and shifts.
    """
    prior_params = list(model.entropy_bottleneck.parameters())
    level_parameters = getattr(model.synthesis_transform, "level_parameters", None)
    if level_parameters is not None:
        prior_params += level_parameters()
    prior_ids = {id(p) for p in prior_params}
    transform_params = [p for p in model.parameters() if id(p) not in prior_ids]
    groups = [
        {"params": transform_params, "lr": lr},
        {"params": prior_params, "lr": lr if prior_lr is None else prior_lr},
    ]
    return torch.optim.Adam(groups, lr=lr, eps=ADAM_EPS, fused=True)


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """The generator for one epoch's shuffling and noise, seeded by (seed, epoch)."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch)


#: What a model to start from must share with the model trained (distortion and lambdas may differ).
SHARED_FIELDS = ("arch", "latent_dims", "prior", "mixture_components", "conditioned_decoder")


def start_from(model: torch.nn.Module, name_or_path: str) -> None:
    """Load the weights of a trained model of the same architecture into ``model``."""
    source = resolve_model(name_or_path)
    for name in SHARED_FIELDS:
        theirs, ours = getattr(source.config, name), getattr(model.config, name)
        if theirs != ours:
            raise InputError(
                f"cannot start from {name_or_path}: its {name} is {theirs!r}, this model's {ours!r}"
            )
    state = {k: v.to(torch.float32) for k, v in source.model.state_dict().items()}
    model.load_state_dict(state)


def _training_metadata(
    train_config: TrainConfig, history: list[EpochRecord], source: str, threading: str, threads: int
) -> dict:
    """What the model file records about its training: options, data, threads, history."""
    spec = DATASETS[train_config.dataset]
    run = {"source": source, "threads": threads, "threading_used": threading}
    return {
        "training": {**asdict(train_config), **run},
        "dataset_sha256": {name: f.sha256 for name, f in spec.files.items()},
        "history": [asdict(r) for r in history],
    }
