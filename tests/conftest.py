"""Shared test setup: the shared MNIST data directory and an isolated cache."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

SHARED_MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"


def load_bench_module(name: str):
    """Import ``bench/<name>.py`` (benchmark scripts are not a package) as ``bench_<name>``."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session", autouse=True)
def _data_environment(tmp_path_factory):
    """Point the loader at the shared MNIST files and keep the user cache untouched."""
    saved = {key: os.environ.get(key) for key in ("MNISTCODEC_DATA_DIR", "XDG_CACHE_HOME")}
    os.environ.setdefault("MNISTCODEC_DATA_DIR", str(SHARED_MNIST_DIR))
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


TINY_TRAIN_DIGITS = 512
TINY_VAL_DIGITS = 256


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory, _data_environment):
    """A seed model trained for one epoch on 512 digits (a few seconds on 2 cores).

    Session-scoped: tests must not modify the file (copy it first).
    """
    from mnistcodec.model.compression_model import ModelConfig
    from mnistcodec.training.loop import TrainConfig, train

    out = tmp_path_factory.mktemp("tiny-model") / "tiny.safetensors"
    train(
        ModelConfig(latent_dims=16),
        TrainConfig(epochs=1, limit=TINY_TRAIN_DIGITS, val_limit=TINY_VAL_DIGITS, seed=0),
        out,
        progress=False,
        log=lambda _line: None,
    )
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_model_path):
    """The loaded tiny model (shared; do not mutate)."""
    from mnistcodec.coding.model_files import load_model

    return load_model(tiny_model_path)


@pytest.fixture(scope="session")
def test_digits(_data_environment):
    """The first 300 MNIST test digits, uint8 (300, 28, 28)."""
    from mnistcodec.data import load_split

    return load_split("test").images[:300].copy()
