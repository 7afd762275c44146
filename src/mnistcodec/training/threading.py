"""How a training run uses the CPU cores (``TrainConfig.threading``).

With ``T = torch.get_num_threads() > 1`` there are two ways to use the cores:

* ``intra-op``: each operation of the batch runs on ``T`` threads (PyTorch's
  own OpenMP/oneDNN/MKL parallelism). Fastest on a machine the run has to
  itself (about 25 % faster than shards on an idle 2-core machine: one set of
  full-batch matrix products, no gradient sum).
* ``shards``: each batch is split into ``T`` nearly equal shards ``x_k`` of
  ``n_k`` digits that run forward and backward in ``T`` Python threads (one
  intra-op thread each, set for the duration of training,
  :func:`shard_pool`), and the shard gradients are summed in shard order::

      grad L = sum_k (n_k / n) grad L_k

  where ``L_k`` is the Lagrangian of shard ``k`` (a mean over its digits).
  No barrier after every small operation: on a machine shared with other busy
  processes, OpenMP threads waiting at those barriers lose their time slices
  and per-operation threading becomes several times slower, while shards
  keep going.
* ``auto`` (load-adaptive, an option) takes ``shards`` when the machine is
  oversubscribed at the start of training (1-minute load average above the
  core count) and ``intra-op`` otherwise (:func:`choose_threading`). The
  choice is recorded in the checkpoint, and a resumed run keeps it.

Both draw the batch's noise in the same order as one thread (shard ``k`` draws
from a copy of the epoch generator advanced past the shards before it). Sums
in another order make runs with different thread counts or modes differ by
float rounding (for instance 101.052 against 101.042 bits after a sweep's
epochs); one thread count and mode always gives the same numbers. So the
default is ``intra-op`` (:data:`~mnistcodec.training.names.DEFAULT_THREADING`):
the same command, seed and thread count give the same numbers whatever else
the machine runs, while ``auto``'s depend on the load. The mode used is
recorded in the model file (``training.threading_used``), in every row of the
training history and in a sweep's results.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch

from mnistcodec.model.compression_model import CompressionModel


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


class Workers(ThreadPoolExecutor):
    """A thread pool that knows its size."""

    def __init__(self, count: int) -> None:
        super().__init__(count, "mnistcodec-train")
        self.count = count


def shards(batch: torch.Tensor, count: int) -> list[torch.Tensor]:
    """``batch`` split into at most ``count`` nearly equal, non-empty parts."""
    return [part for part in batch.tensor_split(min(count, batch.shape[0])) if part.shape[0]]


@contextmanager
def intra_op_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` intra-op threads, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def shard_pool(threading: str, threads: int) -> Iterator[Workers | None]:
    """The shard threads for ``threading`` (``None`` for intra-op), one intra-op thread each."""
    if threading != "shards" or threads <= 1:
        with intra_op_threads(torch.get_num_threads()):
            yield None
        return
    pool = Workers(threads)
    try:
        with intra_op_threads(1):
            yield pool
    finally:
        pool.shutdown()


class ShardedStep:
    """Forward and backward of one batch, split across threads (see the module docstring)."""

    def __init__(self, model: CompressionModel, pool: Workers) -> None:
        self.model = model
        self.pool = pool
        self.params = [p for p in model.parameters() if p.requires_grad]

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Set every parameter's ``.grad``; return the batch's (loss, rate, distortion)."""
        parts = shards(x, self.pool.count)
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
