"""Progress of a long step on stderr: a tqdm bar on a terminal; in a CI log (stderr not a terminal), where a
bar's carriage returns make one endless line, plain lines ``description: done/total (elapsed s)``: one when
the step starts (its size said before it runs), then at most one every ``interval`` seconds, and one when
it ends. No step over a few seconds runs silent anywhere."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

from tqdm import tqdm

T = TypeVar("T")

LOG_INTERVAL = 10.0
"""Seconds between two progress lines in a log: a 25-minute step prints about 150 lines."""


class Progress:
    """Counts done units of a step of ``total`` and shows them (see the module); ``show=False`` shows nothing."""

    def __init__(self, description: str, total: int, show: bool = True, unit: str = "it", file: TextIO | None = None, interval: float = LOG_INTERVAL) -> None:
        self.description, self.total, self.done = description, total, 0
        self.file = file if file is not None else sys.stderr
        self.interval = interval
        self.started = self.last = time.monotonic()
        terminal = self.file.isatty()
        self.bar = tqdm(total=total, desc=description, unit=unit, file=self.file, leave=False) if show and terminal else None
        self.lines = show and not terminal
        if self.lines:
            self._line()

    def update(self, count: int = 1) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
        elif self.lines and time.monotonic() - self.last >= self.interval:
            self._line()

    def _line(self) -> None:
        self.last = time.monotonic()
        print(f"{self.description}: {self.done}/{self.total} ({self.last - self.started:.0f} s)", file=self.file, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.lines:
            self._line()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def progress(items: Iterable[T], description: str, total: int | None = None, show: bool = True) -> Iterator[T]:
    """``items``, counted by a ``Progress`` (``total``: their number when ``items`` has no length)."""
    count = total if total is not None else len(items)  # type: ignore[arg-type]
    with Progress(description, count, show) as shown:
        for item in items:
            yield item
            shown.update()
