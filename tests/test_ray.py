"""Sweeps on a real local Ray cluster (2 CPUs, started and stopped here).

The same results as the local executor, a trial's own failure reported while
the others finish, a worker killed mid-trial and retried, clear errors for a
bad ``--ray-address`` and for a missing Ray.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mnistcodec.cli import main
from mnistcodec.errors import MnistCodecError
from mnistcodec.experiments.ray_executor import RayOptions
from mnistcodec.experiments.sweep import make_grid, run_trials
from mnistcodec.training.loop import TrainConfig

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = TrainConfig(epochs=1, limit=128, val_limit=64, batch_size=64)
GRID = {"lmbdas": [300, 2000], "latent_dims": [4], "priors": ["logistic"], "eval_limit": 32}
SWEEP_ARGS = [
    "--lmbda", "300", "2000", "--latent-dims", "4", "--epochs", "1", "--limit", "128",
    "--val-limit", "64", "--batch-size", "64", "--eval-limit", "32", "-q",
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid``."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _kill_if_ray(pid: int) -> None:
    """SIGKILL ``pid`` if it is still a Ray process (not a process that reused its id)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if cmdline.startswith(b"ray::") or b"ray" in cmdline.split(b"\0")[0]:
            os.kill(pid, signal.SIGKILL)
    except (OSError, ProcessLookupError):
        pass


def _env() -> dict[str, str]:
    """This process's environment, with this checkout's sources first (for Ray's workers)."""
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "RAY_ADDRESS": ""}


@pytest.fixture(scope="module")
def ray_address(_data_environment):
    """A head node with 2 CPUs (``ray start --head --block``); its address; stopped at the end.

    Without token authentication (``RAY_AUTH_MODE=disabled``), whether or not ``~/.ray``
    holds a token: a short-lived cluster on a random port, which the drivers here reach by
    an explicit address (for which Ray never turns authentication on by itself).
    """
    temp = tempfile.mkdtemp(prefix="mnc-ray-", dir="/tmp")  # short: Ray's socket paths are bounded
    port = _free_port()
    log_path = Path(temp) / "ray-start.log"
    command = [
        str(Path(sys.executable).with_name("ray")),
        "start", "--head", "--block", "--num-cpus", "2", "--num-gpus", "0",
        "--port", str(port), "--include-dashboard=false", "--disable-usage-stats",
        "--object-store-memory", str(256 * 2**20), "--temp-dir", temp,
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        env = {**_env(), "RAY_AUTH_MODE": "disabled"}
        head = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    processes: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while b"Ray runtime started" not in log_path.read_bytes():
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start failed:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        processes = _children(head.pid)
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        for pid in _children(head.pid) | processes:
            _kill_if_ray(pid)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def local_trials(tmp_path_factory, _data_environment):
    """The grid's trials by the local executor with one PyTorch thread each, as Ray's run them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path_factory.mktemp("local") / "trials"
        return run_trials(make_grid(train_config=TINY, **GRID), root, progress=False, log=print)
    finally:
        torch.set_num_threads(threads)


def _same_numbers(ray_dir: Path, local_dir: Path) -> None:
    """Evaluation and training history (but its timings) of two trial directories are equal."""
    ours, theirs = (json.loads((d / "result.json").read_text()) for d in (ray_dir, local_dir))
    assert ours["evaluation"] == theirs["evaluation"]
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in ours["history"]] == [
        {k: v for k, v in row.items() if k != "seconds"} for row in theirs["history"]
    ]


def test_a_sweep_on_ray_gives_the_local_results(ray_address, local_trials, tmp_path, capsys):
    out = tmp_path / "sweep"
    failing = make_grid(
        lmbdas=[float("inf")], latent_dims=[4], priors=["logistic"], train_config=TINY
    )
    lines: list[str] = []
    with pytest.raises(MnistCodecError, match="1 of 3 trials failed: lmbda=inf.*finite"):
        run_trials(
            make_grid(train_config=TINY, **GRID) + failing,
            out / "trials",
            log=lines.append,
            executor="ray",
            ray_options=RayOptions(address=ray_address),
        )
    assert "ray: 2 done, 0 running, 0 waiting, 1 failed" in lines
    assert not ray.is_initialized()  # the executor disconnects what it connected
    for trial in local_trials:  # the failure did not stop the others; same numbers as local
        _same_numbers(out / "trials" / trial.spec.key, trial.directory)

    # The sweep command resumes from the cache the Ray run filled, and tabulates it.
    argv = ["sweep", *SWEEP_ARGS, "--executor", "ray", "--ray-address", ray_address, "-o", str(out)]
    assert main(argv) == 0
    assert capsys.readouterr().out.count(": cached (") == 2
    rows = json.loads((out / "results.json").read_text())
    local_rows = [t.row() for t in local_trials]
    for row in [*rows, *local_rows]:
        row.pop("train_seconds")
    assert rows == local_rows


def _trial_worker() -> int | None:
    """The Ray worker process running a trial (Ray titles it ``ray::trial_task``)."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(
                b"ray::trial_task"
            ):
                return int(entry.name)
        except OSError:
            pass
    return None


def test_a_killed_worker_is_retried(ray_address, local_trials, tmp_path):
    out = tmp_path / "sweep"
    trial_dir = out / "trials" / local_trials[0].spec.key
    argv = [
        *SWEEP_ARGS[:1], "300", *SWEEP_ARGS[3:], "--executor", "ray",
        "--ray-address", ray_address, "-o", str(out),
    ]  # fmt: skip
    sweep = subprocess.Popen(
        [sys.executable, "-m", "mnistcodec", "sweep", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    try:
        deadline = time.monotonic() + 120
        victim = None
        while victim is None:  # the trial has started on a worker: kill that worker
            assert sweep.poll() is None and time.monotonic() < deadline, sweep.stdout.read()
            if (trial_dir / "config.json").is_file():
                victim = _trial_worker()
            time.sleep(0.05)
        os.kill(victim, signal.SIGKILL)
        output, _ = sweep.communicate(timeout=180)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
    assert sweep.returncode == 0, output
    assert f"Worker PID: {victim}" in output and "will be retried" in output  # Ray's messages
    assert "ray: 1 done, 0 running, 0 waiting, 0 failed" in output
    _same_numbers(trial_dir, local_trials[0].directory)
    rows = json.loads((out / "results.json").read_text())
    assert [r["lmbda"] for r in rows] == [300]


@pytest.mark.parametrize("address", ["nonsense", "127.0.0.1:{free}", "10.0.0.1:99999"])
def test_a_bad_ray_address_is_a_one_line_error(address, tmp_path, capsys):
    address = address.format(free=_free_port())
    started = time.monotonic()
    argv = ["sweep", *SWEEP_ARGS, "--executor", "ray", "--ray-address", address]
    assert main([*argv, "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert address in err and ("not a Ray address" in err or "no Ray cluster at" in err)
    assert time.monotonic() - started < 10
    assert not ray.is_initialized()


def test_without_ray_the_executor_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert main(["sweep", *SWEEP_ARGS, "--executor", "ray", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'mnistcodec[ray]'" in err and err.count("\n") == 1


def test_options_are_checked():
    with pytest.raises(MnistCodecError, match="positive integer"):
        RayOptions(cpus_per_trial=0)
    with pytest.raises(MnistCodecError, match=r"in \(0, 1\]"):
        RayOptions(gpus_per_trial=2)
    assert replace(RayOptions(), address="ray://head:10001").address == "ray://head:10001"
