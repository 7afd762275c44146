"""Shared test setup: the shared MNIST data directory, an isolated cache, a playground server."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
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


#: The engines of the playground server the tests start.
PLAYGROUND_ENGINE = "torch"


@pytest.fixture(scope="session")
def playground_url(_data_environment, tmp_path_factory):
    """A real ``mnistcodec serve --port 0`` (a subprocess on a free port): its base URL.

    It runs the reference engines (``MNISTCODEC_ENGINE=torch``), so that its answers do not
    depend on what other tests left in the session's engine cache; the tests compare them
    with a codec on the same engines (``PLAYGROUND_ENGINE``).
    """
    log_dir = tmp_path_factory.mktemp("playground-server")
    out_path, err_path = log_dir / "stdout.txt", log_dir / "stderr.txt"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "mnistcodec", "serve", "--port", "0"],
            env={**os.environ, "MNISTCODEC_ENGINE": PLAYGROUND_ENGINE},
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 60
        url = None
        while url is None:
            text = out_path.read_text()
            if "http://" in text:
                url = text.split("http://", 1)[1].split("/", 1)[0]
            elif process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"mnistcodec serve did not start: {err_path.read_text()[-2000:]}"
                )
            else:
                time.sleep(0.1)
        yield f"http://{url}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
