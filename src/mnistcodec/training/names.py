"""The names the training layer answers to, importable without PyTorch (for the command line)."""

from __future__ import annotations

#: CPU threading of a training step (see :mod:`mnistcodec.training.threading`):
#: ``intra-op`` and ``shards`` give the same numbers for the same command, seed and
#: thread count; ``auto`` picks one of them from the machine's load at the start,
#: so its numbers depend on what else the machine runs.
THREADING_MODES = ("intra-op", "shards", "auto")

#: The default mode: deterministic (the same numbers whatever the load).
DEFAULT_THREADING = "intra-op"

#: The modes that do not look at the load.
DETERMINISTIC_THREADING = ("intra-op", "shards")
