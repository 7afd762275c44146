"""The names the training layer answers to, importable without PyTorch (for the command line)."""

from __future__ import annotations

#: CPU threading of a training step: ``auto`` picks ``intra-op`` on a machine
#: that is not oversubscribed and ``shards`` on one that is (see
#: :mod:`mnistcodec.training.threading`).
THREADING_MODES = ("auto", "intra-op", "shards")
