"""The report's progress lines: numbered, timed, in the page's language.

Each stage of a run starts with one line, ``[report 3/10 |    4s] <what>``
(``[rapport 3/10 |    4 s] ...`` in French: the words are the catalogue's,
:class:`mnistcodec.lab.words.Words`), and the time each stage took is kept
for results.json.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from mnistcodec.lab.words import Words


class Progress:
    """Numbered, timed progress lines, and the time each stage took."""

    def __init__(self, log: Callable[[str], None], steps: int, words: Words) -> None:
        self.log, self.steps, self.step, self.t0 = log, steps, 0, time.perf_counter()
        self.words = words
        self.timings: dict[str, float] = {}
        self._stage: tuple[str, float] | None = None

    def __call__(self, text: str, stage: str | None = None) -> None:
        """Start a stage: log its line and time it (as ``stage``) until the next one."""
        self.stop()
        self.step += 1
        seconds = time.perf_counter() - self.t0
        self.log(self.words("p_step", step=self.step, steps=self.steps, seconds=seconds, text=text))
        if stage is not None:
            self._stage = (stage, time.perf_counter())

    def stop(self) -> None:
        if self._stage is not None:
            name, t0 = self._stage
            self.timings[name] = round(time.perf_counter() - t0, 2)
            self._stage = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0
