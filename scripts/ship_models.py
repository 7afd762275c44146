"""Package trained models as shipped pretrained models.

    python scripts/ship_models.py NAME=PATH [NAME=PATH ...]
    python scripts/ship_models.py --refresh NAME [NAME ...]
    python scripts/ship_models.py --adopt NAME=PATH [NAME=PATH ...]

Each model is re-saved with float16 weights (its integer coding tables are
kept exact) into ``src/mnistcodec/pretrained/NAME.safetensors``, with its
training command, the SHA-256 of its training data and its evaluation on all
10,000 MNIST test digits, measured on the shipped file itself (a
variable-rate model: at its reference level, and at every level in
``evaluation_levels``). A manifest (``MANIFEST.json``) records each file's
fingerprint and SHA-256. ``--refresh`` evaluates already shipped models again
with the current code (for instance after a change of the string format) and
rewrites only their recorded figures: the weights, tables and fingerprint stay.
``--adopt`` ships a model file as it is (tensors byte for byte), such as one that
``mnistcodec codebooks`` built from a shipped model: its training command is
the source's followed by the file's ``codebooks_command``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

from mnistcodec.coding.model_files import load_model, save_model, update_metadata
from mnistcodec.coding.zoo import MAX_SHIPPED_BYTES, PRETRAINED_DIR
from mnistcodec.data import load_split
from mnistcodec.experiments.evaluate import evaluate, evaluate_levels
from mnistcodec.storage.atomic import atomic_write_text


def training_command(meta: dict) -> str:
    cfg, tr = meta["config"], meta.get("training", {})
    parts = [
        "mnistcodec train",
        f"--arch {cfg['arch']}",
        f"--prior {cfg['prior']}",
        f"--lmbda {cfg['lmbda']:g}",
        f"--latent-dims {cfg['latent_dims']}",
        f"--distortion {cfg['distortion']}",
        f"--epochs {tr.get('epochs')}",
        f"--batch-size {tr.get('batch_size')}",
        f"--lr {tr.get('lr')}",
    ]
    if tr.get("prior_lr") is not None:
        parts.append(f"--prior-lr {tr['prior_lr']}")
    if tr.get("level_weight"):
        parts.append(f"--level-weight {tr['level_weight']:g}")
    if tr.get("lr_decay_epochs"):
        parts.append(f"--lr-decay-epochs {tr['lr_decay_epochs']}")
        parts.append(f"--lr-decay-factor {tr['lr_decay_factor']:g}")
    if cfg.get("mixture_components", 1) > 1:
        parts.append(f"--mixture {cfg['mixture_components']}")
    if cfg.get("conditioned_decoder"):
        parts.append("--conditioned-decoder")
    if "lambda_min" in cfg:
        parts.append(f"--lambda-range {cfg['lambda_min']:g}:{cfg['lambda_max']:g}")
    if tr.get("init_from"):
        parts.append(f"--init-from {tr['init_from']}")
    parts.append(f"--seed {tr.get('seed')}")
    return " ".join(parts)


def record_evaluation(out, images) -> dict:
    """Evaluate the shipped file ``out`` (float32, the reference path that ``models --check``
    re-derives) and record the figures in it; returns the records."""
    shipped = load_model(out)
    extra = {}
    if shipped.variable_rate:
        extra["evaluation_levels"] = evaluate_levels(shipped, images, precision="fp32")
        extra["evaluation"] = extra["evaluation_levels"][shipped.model.reference_level]
    else:
        extra["evaluation"] = evaluate(shipped, images, precision="fp32")
    update_metadata(out, extra)
    final = load_model(out)
    assert final.fingerprint == shipped.fingerprint, "re-recording changed the model"
    return extra


def refresh(names: list[str], manifest: dict, images) -> None:
    for name in names:
        out = PRETRAINED_DIR / f"{name}.safetensors"
        if name not in manifest or not out.exists():
            raise SystemExit(f"no shipped model {name}")
        extra = record_evaluation(out, images)
        manifest[name].update(extra)
        manifest[name]["sha256"] = hashlib.sha256(out.read_bytes()).hexdigest()
        manifest[name]["bytes"] = out.stat().st_size
        print(
            f"{name}: strings {extra['evaluation']['string_bits']:.2f} bits (refreshed)", flush=True
        )


def adopt(items: list[str], manifest: dict, images) -> None:
    for item in items:
        name, source = item.split("=", 1)
        loaded = load_model(source)
        out = PRETRAINED_DIR / f"{name}.safetensors"
        out.write_bytes(Path(source).read_bytes())
        base, more = (
            loaded.metadata.get("training_command"),
            loaded.metadata.get("codebooks_command"),
        )
        command = f"{base}; then {more}" if base and more else (more or base or "")
        update_metadata(out, {"training_command": command})
        extra = record_evaluation(out, images)
        size = out.stat().st_size
        if size > MAX_SHIPPED_BYTES:
            raise SystemExit(f"{out} is {size} bytes, over the {MAX_SHIPPED_BYTES} limit")
        manifest[name] = {
            "fingerprint": load_model(out).fingerprint,
            "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
            "bytes": size,
            "training_command": command,
            **extra,
        }
        print(f"{name}: {size / 1e6:.2f} MB, adopted from {source}", flush=True)


def main(argv: list[str]) -> int:
    PRETRAINED_DIR.mkdir(parents=True, exist_ok=True)
    manifest_path = PRETRAINED_DIR / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    images = load_split("test").images
    if argv[:1] == ["--refresh"]:
        refresh(argv[1:], manifest, images)
        atomic_write_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        return 0
    if argv[:1] == ["--adopt"]:
        adopt(argv[1:], manifest, images)
        atomic_write_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        return 0
    for item in argv:
        name, source = item.split("=", 1)
        loaded = load_model(source)
        meta = loaded.metadata
        out = PRETRAINED_DIR / f"{name}.safetensors"
        record = {
            "training": meta.get("training"),
            "training_command": training_command(meta),
            "dataset_sha256": meta.get("dataset_sha256"),
            "history": meta.get("history"),
        }
        save_model(loaded.model, out, metadata=record, weights_dtype=torch.float16)
        extra = record_evaluation(out, images)
        record["evaluation"] = extra["evaluation"]
        final = load_model(out)
        size = out.stat().st_size
        if size > MAX_SHIPPED_BYTES:
            raise SystemExit(f"{out} is {size} bytes, over the {MAX_SHIPPED_BYTES} limit")
        manifest[name] = {
            "fingerprint": final.fingerprint,
            "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
            "bytes": size,
            "evaluation": record["evaluation"],
            "training_command": record["training_command"],
        }
        if "evaluation_levels" in extra:
            manifest[name]["evaluation_levels"] = extra["evaluation_levels"]
        print(
            f"{name}: {size / 1e6:.2f} MB, fingerprint {final.fingerprint[:16]}, "
            f"strings {record['evaluation']['string_bits']:.2f} bits, PSNR {record['evaluation']['psnr_db']:.2f} dB"
        )
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
