"""Training with the rate-distortion Lagrangian ``L = R + lambda * D``.

The loop reads top to bottom: shuffle the training digits with a per-epoch
seeded generator, take Adam steps on ``L`` with uniform noise in the
bottleneck, then validate on the test split in evaluation mode (rounded
latents, information content, as the seed does), log, checkpoint.

Keras defaults the seed inherits are kept: Glorot-uniform initialisation (see
:mod:`mnistcodec.model.transforms`) and Adam with ``eps = 1e-7``.

Checkpoints (``<out>.ckpt``, safetensors: weights, Adam state, history) are
written atomically after every epoch; ``resume=True`` continues from the last
complete one and reproduces the uninterrupted run exactly on the same machine
and thread count, because every epoch's shuffling and noise come from a
generator seeded by ``(seed, epoch)``.

Threads on the CPU (``TrainConfig.threading``). With ``T =
torch.get_num_threads() > 1`` there are two ways to use the cores:

* ``intra-op``: each operation of the batch runs on ``T`` threads (PyTorch's
  own OpenMP/oneDNN/MKL parallelism). Fastest on a machine the run has to
  itself (about 25 % faster than shards on an idle 2-core machine: one set of
  full-batch matrix products, no gradient sum).
* ``shards``: each batch is split into ``T`` equal shards that run forward and
  backward in ``T`` Python threads (one intra-op thread each, set for the
  duration of ``train``), and the shard gradients, weighted by shard size, are
  summed in shard order. No barrier after every small operation: on a machine
  shared with other busy processes, OpenMP threads waiting at those barriers
  lose their time slices and per-operation threading becomes several times
  slower, while shards keep going.
* ``auto`` (the default) takes ``shards`` when the machine is oversubscribed
  at the start of training (1-minute load average above the core count) and
  ``intra-op`` otherwise. The choice is recorded in the checkpoint, and a
  resumed run keeps it.

Both draw the batch's noise in the same order as one thread (shard ``k`` draws
from a copy of the epoch generator advanced past the shards before it). Sums
in another order make runs with different thread counts or modes differ by
float rounding; one thread count and mode always gives the same numbers.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from tqdm.auto import tqdm

from mnistcodec.coding.model_files import LoadedModel, save_model
from mnistcodec.data import load_split
from mnistcodec.errors import InputError, TrainingError
from mnistcodec.model.compression_model import CompressionModel, ModelConfig
from mnistcodec.model.transforms import images_to_unit
from mnistcodec.storage.atomic import atomic_write, atomic_write_text, check_writable

ADAM_EPS = 1e-7  # Keras' default; PyTorch's is 1e-8
_ADAM_IMPLEMENTATION = ("foreach", "fused", "capturable", "differentiable")
CHECKPOINT_FORMAT = "mnistcodec-checkpoint"
THREADING_MODES = ("auto", "intra-op", "shards")


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
    threading: str = "auto"

    def __post_init__(self) -> None:
        if self.threading not in THREADING_MODES:
            raise InputError(
                f"threading must be one of {', '.join(THREADING_MODES)}, got {self.threading!r}"
            )
        if self.epochs < 1:
            raise InputError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            raise InputError(f"learning rate must be positive, got {self.lr}")
        if self.limit is not None and self.limit < 1:
            raise InputError(f"--limit must be at least 1, got {self.limit}")


@dataclass
class EpochRecord:
    epoch: int
    seconds: float
    loss: float
    rate: float
    distortion: float
    val_loss: float
    val_rate: float
    val_distortion: float


@dataclass
class TrainResult:
    model: LoadedModel
    history: list[EpochRecord] = field(default_factory=list)
    path: Path | None = None


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was requested but no CUDA device is available")
    return device


def choose_threading(requested: str, threads: int, device: torch.device) -> str:
    """The CPU threading mode to train with (see the module docstring): ``intra-op`` or ``shards``."""
    if device.type != "cpu" or threads <= 1:
        return "intra-op"
    if requested != "auto":
        return requested
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return "intra-op"
    return "shards" if load > (os.cpu_count() or threads) else "intra-op"


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """The generator for one epoch's shuffling and noise, seeded by (seed, epoch)."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch)


def make_optimizer(
    model: CompressionModel, lr: float, prior_lr: float | None = None
) -> torch.optim.Adam:
    """Adam with Keras' epsilon, as one fused kernel; the prior may have its own rate."""
    prior_params = list(model.prior.parameters())
    prior_ids = {id(p) for p in prior_params}
    transform_params = [p for p in model.parameters() if id(p) not in prior_ids]
    groups = [
        {"params": transform_params, "lr": lr},
        {"params": prior_params, "lr": lr if prior_lr is None else prior_lr},
    ]
    return torch.optim.Adam(groups, lr=lr, eps=ADAM_EPS, fused=True)


@torch.inference_mode()
def validate(
    model: CompressionModel,
    images: torch.Tensor,
    batch_size: int = 1000,
    pool: _Workers | None = None,
) -> tuple[float, float, float]:
    """Mean information content, mean distortion and Lagrangian in evaluation mode.

    Sums are kept on the device and read once at the end; with ``pool``, each
    batch is split across its threads.
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
            for part_terms in pool.map(terms, _shards(batch, pool.count)):
                sums += part_terms
    rate, dist = (sums / n).tolist()
    return rate, dist, rate + model.config.lmbda * dist


class _Workers(ThreadPoolExecutor):
    """A thread pool that knows its size."""

    def __init__(self, count: int) -> None:
        super().__init__(count, "mnistcodec-train")
        self.count = count


def _shards(batch: torch.Tensor, count: int) -> list[torch.Tensor]:
    """``batch`` split into at most ``count`` nearly equal, non-empty parts."""
    return [part for part in batch.tensor_split(min(count, batch.shape[0])) if part.shape[0]]


@contextmanager
def _intra_op_threads(count: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class _ShardedStep:
    """Forward and backward of one batch, split across threads (see the module docstring)."""

    def __init__(self, model: CompressionModel, pool: _Workers) -> None:
        self.model = model
        self.pool = pool
        self.params = [p for p in model.parameters() if p.requires_grad]

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Set every parameter's ``.grad``; return the batch's (loss, rate, distortion)."""
        parts = _shards(x, self.pool.count)
        generators = [g]
        state = g.get_state()
        for before in range(1, len(parts)):
            skip = sum(part.shape[0] for part in parts[:before]) * self.model.latent_dims
            ahead = torch.Generator(device=x.device)
            ahead.set_state(state)
            torch.rand(skip, generator=ahead, device=x.device)
            generators.append(ahead)
        weights = [part.shape[0] / x.shape[0] for part in parts]
        results = list(self.pool.map(self._shard, parts, generators, weights))
        if len(parts) > 1:
            g.set_state(generators[-1].get_state())
        for i, p in enumerate(self.params):
            grad = results[0][0][i]
            for result in results[1:]:
                grad = grad + result[0][i]
            p.grad = grad.contiguous()
        terms = results[0][1]
        for result in results[1:]:
            terms = terms + result[1]
        return terms

    def _shard(self, x: torch.Tensor, g: torch.Generator, weight: float):
        out = self.model(x, training=True, generator=g)
        loss = self.model.loss(out)
        grads = torch.autograd.grad(loss * weight, self.params)
        terms = torch.stack([loss.detach(), out.rate.detach(), out.distortion.detach()])
        return grads, terms.double() * weight


def checkpoint_path(out: Path) -> Path:
    return out.with_name(out.name + ".ckpt")


def save_checkpoint(
    path: Path,
    model: CompressionModel,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    history: list[EpochRecord],
    model_config: ModelConfig,
    train_config: TrainConfig,
    threading: str = "intra-op",
) -> None:
    """Weights and Adam state as tensors, everything else as JSON metadata."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_state = optimizer.state_dict()
    for index, state in opt_state["state"].items():
        for key, value in state.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    meta = {
        "format": CHECKPOINT_FORMAT,
        "epoch": epoch,
        "history": [asdict(r) for r in history],
        "model_config": model_config.to_dict(),
        "train_config": asdict(train_config),
        "param_groups": opt_state["param_groups"],
        "threading": threading,
    }
    atomic_write(path, st_save(tensors, metadata={"checkpoint": json.dumps(meta)}))


def load_checkpoint(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Return ``(metadata, tensors)`` of a checkpoint, with clear errors."""
    try:
        data = path.read_bytes()
        tensors = st_load(data)
        from mnistcodec.storage.model_container import MAX_HEADER_BYTES

        header_len = int.from_bytes(data[:8], "little")
        if header_len > min(MAX_HEADER_BYTES, len(data)):
            raise ValueError("bad header")
        meta = json.loads(json.loads(data[8 : 8 + header_len])["__metadata__"]["checkpoint"])
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("not a checkpoint")
    except FileNotFoundError:
        raise TrainingError(f"no checkpoint {path} to resume from") from None
    except Exception as exc:
        raise TrainingError(f"checkpoint {path} is unreadable or corrupt ({exc})") from None
    return meta, tensors


def write_history(out: Path, history: list[EpochRecord]) -> None:
    """``<out>.history.json`` and ``<out>.history.csv`` beside the model."""
    rows = [asdict(r) for r in history]
    atomic_write_text(out.with_name(out.name + ".history.json"), json.dumps(rows, indent=2))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(EpochRecord.__dataclass_fields__))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out.with_name(out.name + ".history.csv"), buffer.getvalue())


def format_epoch(record: EpochRecord, epochs: int) -> str:
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
    if not resume:
        check_writable(out, force=force)
    elif not ckpt.exists():
        raise TrainingError(f"--resume given but no checkpoint {ckpt} exists")
    device = resolve_device(train_config.device)

    train_split = load_split("train", train_config.dataset, train_config.data_dir)
    test_split = load_split("test", train_config.dataset, train_config.data_dir)
    train_images = torch.from_numpy(train_split.images[: train_config.limit]).to(device)
    val_images = torch.from_numpy(test_split.images[: train_config.val_limit]).to(device)

    torch.manual_seed(train_config.seed)
    model = CompressionModel(model_config).to(device)
    optimizer = make_optimizer(model, train_config.lr, train_config.prior_lr)
    history: list[EpochRecord] = []
    start_epoch = 1
    threads = torch.get_num_threads() if device.type == "cpu" else 1
    threading = choose_threading(train_config.threading, threads, device)
    if resume:
        start_epoch, history, threading = _restore(
            ckpt, model, optimizer, model_config, train_config, threading
        )
        log(f"resuming from {ckpt} after epoch {start_epoch - 1}")

    n = train_images.shape[0]
    steps = math.ceil(n / train_config.batch_size)
    pool = _Workers(threads) if threading == "shards" and threads > 1 else None
    sharded = _ShardedStep(model, pool) if pool is not None else None
    try:
        with _intra_op_threads(1 if pool is not None else torch.get_num_threads()):
            for epoch in range(start_epoch, train_config.epochs + 1):
                record = _train_epoch(
                    model,
                    optimizer,
                    sharded,
                    pool,
                    train_images,
                    val_images,
                    train_config,
                    epoch,
                    steps,
                    progress,
                    ckpt,
                )
                history.append(record)
                log(format_epoch(record, train_config.epochs))
                save_checkpoint(
                    ckpt, model, optimizer, epoch, history, model_config, train_config, threading
                )
    finally:
        if pool is not None:
            pool.shutdown()

    frozen = save_model(
        model,
        out,
        metadata=_training_record(train_config, history, train_split.source, threading, threads),
        force=True,
    )
    model.to(device)
    write_history(out, history)
    return TrainResult(frozen, history, out)


def _train_epoch(
    model: CompressionModel,
    optimizer: torch.optim.Optimizer,
    sharded: _ShardedStep | None,
    pool: _Workers | None,
    train_images: torch.Tensor,
    val_images: torch.Tensor,
    train_config: TrainConfig,
    epoch: int,
    steps: int,
    progress: bool,
    ckpt: Path,
) -> EpochRecord:
    """One epoch of Adam steps, then validation; the hot loop."""
    n = train_images.shape[0]
    device = train_images.device
    t0 = time.perf_counter()
    model.train()
    g = epoch_generator(train_config.seed, epoch, device)
    order = torch.randperm(n, generator=g, device=device)
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    bar = tqdm(
        range(steps),
        desc=f"epoch {epoch}/{train_config.epochs}",
        disable=not progress,
        unit="step",
        leave=False,
        dynamic_ncols=True,
    )
    for step in bar:
        idx = order[step * train_config.batch_size : (step + 1) * train_config.batch_size]
        x = images_to_unit(train_images[idx])
        optimizer.zero_grad(set_to_none=True)
        if sharded is None:
            out_rd = model(x, training=True, generator=g)
            loss = model.loss(out_rd)
            loss.backward()
            batch_terms = torch.stack(
                [loss.detach(), out_rd.rate.detach(), out_rd.distortion.detach()]
            ).double()
        else:
            batch_terms = sharded(x, g)
        optimizer.step()
        sums += batch_terms * idx.shape[0]
        # On the CPU reading the running sums costs nothing, so every step is
        # checked; on a GPU only every 20 steps, to avoid a host sync per step.
        if device.type == "cpu" or step % 20 == 0 or step == steps - 1:
            loss_v, rate_v, dist_v = (sums / min(n, (step + 1) * train_config.batch_size)).tolist()
            if not math.isfinite(loss_v):
                raise TrainingError(
                    f"non-finite loss at epoch {epoch}, step {step + 1}; "
                    f"the last good checkpoint is {ckpt}"
                )
        if progress and (step % 20 == 0 or step == steps - 1):
            bar.set_postfix(loss=f"{loss_v:.2f}", rate=f"{rate_v:.2f}", dist=f"{dist_v:.4f}")
    bar.close()
    loss_v, rate_v, dist_v = (sums / n).tolist()
    if not all(math.isfinite(v) for v in (loss_v, rate_v, dist_v)) or not all(
        torch.isfinite(p).all() for p in model.parameters()
    ):
        raise TrainingError(
            f"non-finite loss or parameters in epoch {epoch}; the last good checkpoint is {ckpt}"
        )
    val_rate, val_dist, val_loss = validate(model, val_images, pool=pool)
    return EpochRecord(
        epoch, time.perf_counter() - t0, loss_v, rate_v, dist_v, val_loss, val_rate, val_dist
    )


def _training_record(
    train_config: TrainConfig, history: list[EpochRecord], source: str, threading: str, threads: int
) -> dict:
    from mnistcodec.data import DATASETS

    spec = DATASETS[train_config.dataset]
    return {
        "training": {**asdict(train_config), "source": source, "threads": threads,
                     "threading_used": threading},
        "dataset_sha256": {name: f.sha256 for name, f in spec.files.items()},
        "history": [asdict(r) for r in history],
    }


def _restore(
    ckpt: Path,
    model: CompressionModel,
    optimizer: torch.optim.Optimizer,
    model_config: ModelConfig,
    train_config: TrainConfig,
    threading: str,
) -> tuple[int, list[EpochRecord], str]:
    """Load a checkpoint into ``model`` and ``optimizer``: next epoch, history, threading mode.

    The run keeps the threading mode it started with unless one was asked for explicitly.
    """
    meta, tensors = load_checkpoint(ckpt)
    if meta["model_config"] != model_config.to_dict():
        raise TrainingError(
            f"checkpoint {ckpt} was made for a different model ({meta['model_config']}); "
            "use the same options to resume"
        )
    try:
        model.load_state_dict(
            {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
        )
        state: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        # Hyperparameters come from the checkpoint; how Adam runs (fused) from this code.
        flags = {k: optimizer.defaults[k] for k in _ADAM_IMPLEMENTATION if k in optimizer.defaults}
        groups = [{**group, **flags} for group in meta["param_groups"]]
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (RuntimeError, KeyError, ValueError) as exc:
        raise TrainingError(f"checkpoint {ckpt} does not match this model: {exc}") from None
    device = next(model.parameters()).device
    for st in optimizer.state.values():
        for k, v in st.items():
            if torch.is_tensor(v):
                st[k] = v.to(device)
    history = [EpochRecord(**r) for r in meta["history"]]
    if train_config.threading == "auto" and meta.get("threading") in THREADING_MODES[1:]:
        threading = meta["threading"]
    return int(meta["epoch"]) + 1, history, threading
