"""The numbers the coding layer's options answer to, importable without PyTorch (for the command line)."""

from __future__ import annotations

#: Candidates per level of the encoder's search among training latents
#: (:mod:`mnistcodec.coding.latent_search`): the default, and the most accepted.
DEFAULT_CANDIDATES = 4096
MAX_CANDIDATES = 65536
