"""Checkpoints, resume and the training history files.

A checkpoint (``<out>.ckpt``, :func:`checkpoint_path`) is a safetensors file:
the model's weights as ``model.<name>``, Adam's state as
``optim.<param index>.<key>``, and one JSON metadata entry with the epoch just
completed, the history so far, both configurations, Adam's parameter groups
and the threading mode. It is written atomically after every epoch, so a
killed run leaves the last complete epoch. :func:`restore_checkpoint` loads it
into a freshly built model and optimizer; since every epoch's shuffling and
noise come from a generator seeded by ``(seed, epoch)``, the resumed run
reproduces the uninterrupted one exactly on the same machine and thread count.

:func:`write_history` writes ``<out>.history.json`` and ``<out>.history.csv``,
one row per epoch, beside the model.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from mnistcodec.errors import TrainingError
from mnistcodec.model.compression_model import CompressionModel, ModelConfig
from mnistcodec.storage.atomic import atomic_write, atomic_write_text
from mnistcodec.storage.model_container import MAX_HEADER_BYTES

CHECKPOINT_FORMAT = "mnistcodec-checkpoint"
_ADAM_IMPLEMENTATION = ("foreach", "fused", "capturable", "differentiable")


def checkpoint_path(out: Path) -> Path:
    """``<out>.ckpt``: where training on ``out`` keeps its checkpoint."""
    return out.with_name(out.name + ".ckpt")


def save_checkpoint(
    path: Path,
    model: CompressionModel,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    history: Sequence[dict],
    model_config: ModelConfig,
    train_options: dict,
    threading: str,
) -> None:
    """Weights and Adam state as tensors, everything else (plain JSON values) as metadata.

    ``history`` holds one row per epoch so far, ``train_options`` the training
    configuration's fields.
    """
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_state = optimizer.state_dict()
    for index, state in opt_state["state"].items():
        for key, value in state.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    meta = {
        "format": CHECKPOINT_FORMAT,
        "epoch": epoch,
        "history": list(history),
        "model_config": model_config.to_dict(),
        "train_config": train_options,
        "param_groups": opt_state["param_groups"],
        "threading": threading,
    }
    atomic_write(path, st_save(tensors, metadata={"checkpoint": json.dumps(meta)}))


def load_checkpoint(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Return ``(metadata, tensors)`` of a checkpoint, with clear errors."""
    try:
        data = path.read_bytes()
        tensors = st_load(data)
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


def restore_checkpoint(
    ckpt: Path, model: CompressionModel, optimizer: torch.optim.Optimizer, model_config: ModelConfig
) -> tuple[int, list[dict], str | None]:
    """Load a checkpoint into ``model`` and ``optimizer``.

    Returns the next epoch, the history rows so far and the threading mode the
    run used (``None`` in checkpoints that do not record it).
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
        _load_optimizer_state(optimizer, meta["param_groups"], tensors)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise TrainingError(f"checkpoint {ckpt} does not match this model: {exc}") from None
    device = next(model.parameters()).device
    for st in optimizer.state.values():
        for k, v in st.items():
            if torch.is_tensor(v):
                st[k] = v.to(device)
    return int(meta["epoch"]) + 1, list(meta["history"]), meta.get("threading")


def _load_optimizer_state(
    optimizer: torch.optim.Optimizer, param_groups: list[dict], tensors: dict[str, torch.Tensor]
) -> None:
    """Adam's per-parameter state from ``optim.<index>.<key>`` tensors and the saved groups."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    # Hyperparameters come from the checkpoint; how Adam runs (fused) from this code.
    flags = {k: optimizer.defaults[k] for k in _ADAM_IMPLEMENTATION if k in optimizer.defaults}
    groups = [{**group, **flags} for group in param_groups]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def write_history(out: Path, history: Sequence[dict]) -> None:
    """``<out>.history.json`` and ``<out>.history.csv`` beside the model, one row per epoch."""
    rows = list(history)
    atomic_write_text(out.with_name(out.name + ".history.json"), json.dumps(rows, indent=2))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out.with_name(out.name + ".history.csv"), buffer.getvalue())
