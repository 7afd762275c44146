"""The process' allocation policy (mnistcodec.coding.memory): who sets it, and when it stays off.

Each case runs in its own interpreter: the policy is a property of the process.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="the policy is glibc's malloc; elsewhere it does nothing",
)

CODE = """
import json, resource, sys
import numpy as np
from mnistcodec.coding import memory
from mnistcodec.coding.api import Codec
from mnistcodec.data import load_split

first = sys.argv[1]
if first == "server":
    memory.return_memory_promptly()
codec = Codec.from_model("vr-mse", precision="fp32")
images = load_split("test").images[: int(sys.argv[2])]
out = {"before": memory.policy()}
strings, _ = codec.compress(images)
out["after_encode"] = memory.policy()
codec.decompress(strings)
out["after_server"] = memory.return_memory_promptly()
out["peak_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(out))
"""


def run(first: str = "codec", digits: int = 600, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))}
    environ.pop("MNISTCODEC_MALLOC", None)
    environ.update(env)
    out = subprocess.run(
        [sys.executable, "-c", CODE, first, str(digits)],
        env=environ,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_batch_sets_the_reuse_policy():
    # What the policy saves (page faults, time) is measured by bench/coding_variants.py,
    # not here: fault counts vary with the allocator's state from run to run.
    out = run(digits=600)
    assert out["before"] is None
    assert out["after_encode"] == "batches"
    # A server started later in the process sets its own policy.
    assert out["after_server"] == "prompt"


def test_small_calls_leave_malloc_alone():
    assert run(digits=100)["after_encode"] is None


def test_the_server_policy_is_not_overridden_by_batches():
    out = run(first="server")
    assert out["before"] == "prompt"
    assert out["after_encode"] == "prompt"


@pytest.mark.parametrize(
    "env", [{"MNISTCODEC_MALLOC": "system"}, {"MALLOC_ARENA_MAX": "2"}, {"GLIBC_TUNABLES": ""}]
)
def test_the_users_choice_stands(env):
    out = run(**env)
    assert out["after_encode"] is None
    assert out["after_server"] is None


def test_policy_leaves_peak_memory_alone():
    """Reusing freed buffers must not raise the peak: both runs end within 10 % of each other."""
    with_policy = run(digits=1200)["peak_kib"]
    without = run(digits=1200, MNISTCODEC_MALLOC="system")["peak_kib"]
    assert with_policy <= 1.1 * without


TRAIN_CODE = """
import json, sys
from mnistcodec.coding import memory
from mnistcodec.model.compression_model import ModelConfig
from mnistcodec.training.loop import TrainConfig, train

config = TrainConfig(epochs=1, limit=64, val_limit=32, device="cpu", precision="fp32")
train(ModelConfig(), config, sys.argv[1], progress=False, log=lambda _: None)
print(json.dumps({"policy": memory.policy()}))
"""


@pytest.mark.parametrize(
    "env, expected", [({}, "batches"), ({"MNISTCODEC_MALLOC": "system"}, None)]
)
def test_training_on_the_cpu_reuses_freed_buffers(tmp_path, env, expected):
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))}
    environ.pop("MNISTCODEC_MALLOC", None)
    environ.update(env)
    out = subprocess.run(
        [sys.executable, "-c", TRAIN_CODE, str(tmp_path / "m.safetensors")],
        env=environ,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1])["policy"] == expected
