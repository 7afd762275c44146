"""The ``ray`` executor of :func:`mnistcodec.experiments.sweep.run_trials`: trials as Ray tasks.

Ray is optional (``pip install mnistcodec[ray]``); this module imports it only
when a sweep runs on it, and imports PyTorch only in the workers that train.

Connecting (:func:`connect`). ``address="auto"``: the cluster ``RAY_ADDRESS``
names, else one started on this machine with ``ray start``, else a local Ray
instance started for the sweep (and stopped after it; ``"local"``: always
that). An explicit address
(``HOST:PORT`` of the head node, ``ray://HOST:PORT`` for Ray Client) is
checked first with a plain TCP connection, so a wrong one fails in seconds
with one line instead of Ray's minutes of retries.

Trials. Each trial is one task declaring ``num_cpus=cpus_per_trial`` (and
PyTorch trains with that many threads, as a local worker with the same share
does, so the numbers are the same) and ``num_gpus=gpus_per_trial`` when it
trains on CUDA (``device`` ``cuda``, or ``auto`` on a cluster with GPUs);
shares are fractional, so several small trainings share one GPU. Ray runs a
task again when its worker process dies (``max_retries``); a trial that fails
for its own reasons (a :class:`~mnistcodec.errors.MnistCodecError`) is
reported with its error and the sweep goes on, as with the local executor.

Data. The driver loads and verifies each split once and puts it in Ray's
object store; a worker checks it against the dataset's checksums
(:func:`mnistcodec.data.remember_split`) and reads no file.

Cache. A task runs :func:`~mnistcodec.experiments.sweep.run_trial`, the code
the local executor runs, on the trial directory's path on its node, and sends
the directory's files back; the driver writes those its cache lacks. So the
driver's cache is complete whether or not the nodes share a file system, and
an interrupted sweep resumes from it.

Progress. As trials finish, a line counts them: done, running (started on a
worker), waiting and failed.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnistcodec.errors import InputError, MnistCodecError
from mnistcodec.storage.atomic import atomic_write

if TYPE_CHECKING:
    from mnistcodec.data import Split
    from mnistcodec.experiments.sweep import TrialResult, TrialSpec

INSTALL_HINT = "pip install 'mnistcodec[ray]'"
PROBE_SECONDS = 3.0
"""How long the TCP check of an explicit address waits for the head node."""
CONNECT_ATTEMPTS = "2"
"""Ray's attempts (about a second each) to reach a cluster's GCS that answers TCP."""
PROGRESS_SECONDS = 2.0
"""How often the driver looks at which trials have started, between completions."""


@dataclass(frozen=True)
class RayOptions:
    """Where the Ray cluster is and what each trial asks of it."""

    address: str = "auto"
    cpus_per_trial: int = 1
    gpus_per_trial: float = 0.25  # asked for only by trials that train on CUDA
    max_retries: int = 3  # runs of a trial again when its worker process dies

    def __post_init__(self) -> None:
        if int(self.cpus_per_trial) != self.cpus_per_trial or self.cpus_per_trial < 1:
            raise InputError(
                f"CPUs per trial must be a positive integer, got {self.cpus_per_trial}"
            )
        if not 0 < self.gpus_per_trial <= 1:
            raise InputError(f"GPUs per trial must be in (0, 1], got {self.gpus_per_trial}")
        if self.max_retries < 0:
            raise InputError(f"retries must be at least 0, got {self.max_retries}")
        if self.address not in ("auto", "local"):
            host_and_port(self.address)


def import_ray() -> Any:
    """The ``ray`` module, or an :class:`InputError` that says how to install it.

    The workers' lines Ray prints in this process come each with its own, plain prefix: no
    deduplication of the trials' similar epoch lines, no colour codes (the CLI would show them
    as ``\\xNN``), unless the environment asks for them.
    """
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    try:
        # lazy: Ray is optional and slow to import; only the ray executor needs it
        import ray
    except ImportError:
        raise InputError(f"the ray executor needs Ray: {INSTALL_HINT}") from None
    return ray


def host_and_port(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT`` or ``ray://HOST:PORT``; :class:`InputError` otherwise."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(
            f"--ray-address {address!r} is not a Ray address: give auto, local, HOST:PORT (the head "
            "node's port, 6379 unless `ray start --head --port` chose another) or ray://HOST:PORT"
        )
    return host.strip("[]"), int(port)


def _probe(address: str) -> None:
    """Fail fast when nothing accepts TCP connections at ``address``."""
    host, port = host_and_port(address)
    try:
        with socket.create_connection((host, port), timeout=PROBE_SECONDS):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise InputError(
            f"no Ray cluster at {address} ({reason}); start one there with `ray start --head`, "
            "or pass the head node's HOST:PORT"
        ) from None


@contextmanager
def _connect_attempts(count: str) -> Iterator[None]:
    """Limit Ray's retries to reach a cluster's GCS (``RAY_gcs_server_port_wait_time_s``)."""
    name = "RAY_gcs_server_port_wait_time_s"
    saved = os.environ.get(name)
    os.environ[name] = count
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


def connect(address: str = "auto", log: Callable[[str], None] = print) -> bool:
    """Connect this process to Ray (see the module docstring); True when this call did it.

    ``local`` always starts a local instance. A process already connected (``ray.init``
    called by the caller) keeps its connection.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    target = os.environ.get("RAY_ADDRESS", "") if address == "auto" else address
    if target == "local":
        ray.init(logging_level=logging.WARNING, include_dashboard=False)
        log("ray: started a local Ray instance for this sweep")
        return True
    if target and target != "auto":
        _probe(target)
        try:
            with _connect_attempts(CONNECT_ATTEMPTS):
                ray.init(address=target, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            detail = f"{exc} {exc.__cause__ or ''}".lower()
            hint = (
                "the cluster asks for a token: set RAY_AUTH_MODE=token, and RAY_AUTH_TOKEN "
                "or ~/.ray/auth_token as on the head node"
                if "auth" in detail
                else "is it a Ray head node (`ray start --head`) of the same Ray version?"
            )
            raise InputError(
                f"cannot connect to the Ray cluster at {target}: {str(exc).splitlines()[0]}; {hint}"
            ) from None
        log(f"ray: connected to the cluster at {target}")
        return True
    try:
        with _connect_attempts(CONNECT_ATTEMPTS):
            ray.init(address="auto", logging_level=logging.WARNING)
        log("ray: connected to the cluster running on this machine")
        return True
    except ConnectionError:
        return connect("local", log)


@dataclass(frozen=True)
class _Resources:
    cpus: int
    gpus: float


def _resources(ray: Any, specs: Sequence[TrialSpec], options: RayOptions) -> list[_Resources]:
    """Each trial's request, checked against the nodes of the cluster (none could run it: error)."""
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    cluster_gpus = any(node.get("GPU", 0) > 0 for node in nodes)
    requests = []
    for spec in specs:
        device = spec.train.device
        cuda = device.startswith("cuda") or (device == "auto" and cluster_gpus)
        request = _Resources(options.cpus_per_trial, options.gpus_per_trial if cuda else 0.0)
        if not any(
            node.get("CPU", 0) >= request.cpus and node.get("GPU", 0) >= request.gpus
            for node in nodes
        ):
            gpus = f" and {request.gpus:g} GPU" if request.gpus else ""
            raise InputError(
                f"no node of the Ray cluster has {request.cpus} CPU(s){gpus} for a trial "
                f"(nodes: {[{k: node.get(k, 0) for k in ('CPU', 'GPU')} for node in nodes]}); "
                "ask for less (--cpus-per-trial, --gpus-per-trial) or add nodes"
            )
        requests.append(request)
    return requests


class StartedTrials:
    """A Ray actor: the indices of the trials whose task has started on a worker."""

    def __init__(self) -> None:
        self.indices: set[int] = set()

    def start(self, index: int) -> None:
        self.indices.add(index)

    def started(self) -> set[int]:
        return self.indices


def _trial_files(directory: Path) -> dict[str, bytes]:
    """The trial directory's files (not temporaries), the result file last."""
    names = sorted(
        (p.name for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")),
        key=lambda name: (name == "result.json", name),
    )
    return {name: (directory / name).read_bytes() for name in names}


def trial_task(
    spec: TrialSpec,
    root: str,
    train_split: Split,
    test_split: Split,
    threads: int,
    index: int,
    tracker: Any,
    prefix: str,
) -> tuple[TrialResult, dict[str, bytes]]:
    """One trial in a Ray worker: the data from the object store, ``threads`` PyTorch threads."""
    # lazy: PyTorch and the training code load in the workers that train, not in the actor's
    import torch

    # lazy: as PyTorch (the training code imports it)
    from mnistcodec.data import remember_split
    from mnistcodec.experiments.sweep import run_trial

    tracker.start.remote(index)
    torch.set_num_threads(threads)
    for split in (train_split, test_split):
        remember_split(split, spec.train.data_dir)
    result = run_trial(
        spec, root, progress=False, log=lambda line: print(f"{prefix} {line}", flush=True)
    )
    return result, _trial_files(result.directory)


def _keep_files(root: Path, key: str, files: dict[str, bytes]) -> None:
    """Write into the driver's cache the trial files it lacks (its node may be another one)."""
    directory = root / key
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        path = directory / name
        if not (path.is_file() and path.read_bytes() == data):
            atomic_write(path, data)


def run_on_ray(
    specs: Sequence[TrialSpec],
    todo: list[int],
    root: Path,
    log: Callable[[str], None],
    failures: list[str],
    options: RayOptions,
) -> dict[int, TrialResult]:
    """Run the trials ``todo`` (indices into ``specs``) as Ray tasks; failures go to ``failures``."""
    ray = import_ray()
    connected_here = connect(options.address, log)
    try:
        return _run_tasks(ray, specs, todo, root, log, failures, options)
    finally:
        if connected_here:
            ray.shutdown()


def _put_splits(ray: Any, specs: Sequence[TrialSpec]) -> dict[tuple, tuple[Any, Any]]:
    """Each (dataset, data directory)'s train and test splits, loaded once, in the object store."""
    # lazy: the data package loads NumPy, which the progress actor's worker does not need
    from mnistcodec.data import load_split

    refs = {}
    for spec in specs:
        where = (spec.train.dataset, spec.train.data_dir)
        if where not in refs:
            refs[where] = tuple(ray.put(load_split(split, *where)) for split in ("train", "test"))
    return refs


def _submit(
    ray: Any,
    specs: Sequence[TrialSpec],
    todo: list[int],
    root: Path,
    log: Callable[[str], None],
    options: RayOptions,
) -> tuple[dict[Any, int], Any]:
    """Submit one task per trial of ``todo``: ``{task reference: trial index}`` and the tracker."""
    n = len(specs)
    requests = _resources(ray, [specs[i] for i in todo], options)
    data = _put_splits(ray, [specs[i] for i in todo])
    tracker = ray.remote(num_cpus=0)(StartedTrials).remote()
    task = ray.remote(trial_task)
    pending: dict[Any, int] = {}
    for i, request in zip(todo, requests, strict=True):
        spec = specs[i]
        train_ref, test_ref = data[(spec.train.dataset, spec.train.data_dir)]
        ref = task.options(
            num_cpus=request.cpus, num_gpus=request.gpus, max_retries=options.max_retries
        ).remote(
            spec, str(root), train_ref, test_ref, request.cpus, i, tracker, f"[trial {i + 1}/{n}]"
        )
        pending[ref] = i
        log(f"[trial {i + 1}/{n}] {spec.label}: queued on Ray ({spec.key})")
    asks = {f"{r.cpus} CPU(s)" + (f" + {r.gpus:g} GPU" if r.gpus else "") for r in requests}
    log(f"ray: {len(todo)} trial(s) submitted, each asking for {', '.join(sorted(asks))}")
    return pending, tracker


def _run_tasks(
    ray: Any,
    specs: Sequence[TrialSpec],
    todo: list[int],
    root: Path,
    log: Callable[[str], None],
    failures: list[str],
    options: RayOptions,
) -> dict[int, TrialResult]:
    """Submit the trials, then collect them as they finish, counting done, running and failed."""
    n = len(specs)
    pending, tracker = _submit(ray, specs, todo, root, log, options)
    done: dict[int, TrialResult] = {}
    failed, last = 0, None
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=PROGRESS_SECONDS)
            for ref in ready:
                i = pending.pop(ref)
                error = _collect(ray, ref, specs[i], root, done, i)
                if error is None:
                    log(f"[trial {i + 1}/{n}] {specs[i].label}: done in {done[i].seconds:.0f}s")
                else:
                    failed += 1
                    failures.append(f"{specs[i].label}: {error}")
                    log(f"[trial {i + 1}/{n}] {specs[i].label}: FAILED: {error}")
            started = ray.get(tracker.started.remote()) if pending else set()
            running = len(started & set(pending.values()))
            counts = (len(done), running, len(pending) - running, failed)
            if counts != last:
                log("ray: {} done, {} running, {} waiting, {} failed".format(*counts))
                last = counts
    except BaseException:  # interrupted, or a trial's bug: stop the other trials' tasks
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    return done


def _collect(
    ray: Any, ref: Any, spec: TrialSpec, root: Path, done: dict[int, TrialResult], index: int
) -> str | None:
    """Store a finished task's trial in ``done`` and the cache; its error message if it failed."""
    try:
        result, files = ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, MnistCodecError):
            return str(cause)
        raise
    except ray.exceptions.RayError as exc:  # the worker or its node was lost, beyond retries
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    _keep_files(root, spec.key, files)
    done[index] = result
    return None
