"""Shared test setup: the shared MNIST data directory and an isolated cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

SHARED_MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


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
