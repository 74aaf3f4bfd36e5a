"""Capacity of its own for explanations, so that predictions never wait behind them.

TorchServe hands a worker one server-side batch at a time and any free worker takes the next one. A worker
busy with an explanation therefore takes no predictions; if every worker of a model could be busy so, a
prediction would wait for an explanation to finish (seconds). Two things prevent that:

- ``ExplanationSlots``: the workers of one model share ``slots`` explanation slots (advisory ``flock`` locks on
  files in the model's folder, which every worker of the model shares). A worker computes an explanation only
  while it holds a slot; with fewer slots than workers, at least one worker is always free for predictions.
  An explanation that finds every slot taken is answered 429 at once, with a ``Retry-After`` from the cost
  model: the time the earliest running explanation still needs. The kernel drops a lock when its process
  dies, so a killed worker never leaks its slot.
- ``LowPriorityRunner``: explanations run on one thread with a raised nice value, so on a machine with fewer
  cores than busy workers, the scheduler serves the prediction workers first.

The cost model: attributing encoder layer l runs, for each of ``steps`` quadrature steps, a forward and a
backward pass through layers l … L−1 (the layers below l run once, without gradients). A layer's time grows
linearly with the tokens (below 6 × hidden size tokens, the attention's quadratic term is a small part of
its work). So an explanation costs ``tokens × steps × Σ_l (L − l)`` token-layer passes, and takes ``overhead + rate × cost``
seconds: the overhead (tokenizing, the forward pass without gradients, the tree, the JSON; about 0.25 s for
MiniLM here) does not grow with the cost. Both are fitted by least squares to the last ``WINDOW`` explanations
the model's workers finished (``ExplanationSlots.record``; each worker's warm-up records two of different cost),
so they follow the hardware and the load. A rate taken as seconds ÷ cost would charge the overhead to the cost:
after cheap explanations (``layers: [5], steps: 1``) it was 80 times the rate of a full-cost one, and so was
``Retry-After``. Cheap explanations pin the overhead down; the expensive ones the rate.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

Result = TypeVar("Result")

RATE_FILE = "rate.json"
WINDOW = 32
"""Finished explanations (cost, seconds) the time model is fitted to: the most recent ones of the model's workers."""


def layer_passes(layers: Sequence[int], num_layers: int) -> int:
    """Σ_l (L − l) over the attributed layers: the encoder layers one quadrature step runs forward and backward."""
    return sum(num_layers - layer for layer in layers)


def explanation_cost(tokens: int, steps: int, passes: int) -> int:
    """Work of one explanation in token-layer passes: ``steps`` steps of ``passes`` layer passes (``layer_passes``)
    over ``tokens`` tokens."""
    return tokens * steps * passes


@dataclass(frozen=True)
class Reservation:
    """A held slot: its index, the explanation's cost, and when it started (wall-clock seconds)."""

    slot: int
    cost: int
    started: float


class SlotsTaken(Exception):
    """Every explanation slot is held; ``retry_after_s`` is when the earliest one is expected to be free."""

    def __init__(self, retry_after_s: int, running: int) -> None:
        super().__init__(f"all {running} explanation slots are busy; retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s
        self.running = running


class ExplanationSlots:
    """``slots`` explanation slots shared by every process that opens the same ``directory``.

    ``with slots.reserve(cost):`` holds a free slot while the explanation runs (SlotsTaken when there is
    none); the slot's file records the cost and start so that a refused request can say when to retry.
    """

    def __init__(self, directory: Path | str, slots: int, default_rate_s: float = 1e-3) -> None:
        if slots < 1:
            raise ValueError(f"need at least one explanation slot, got {slots}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.slots = slots
        self.default_rate_s = default_rate_s

    def _path(self, slot: int) -> Path:
        return self.directory / f"slot-{slot}.json"

    def _stored(self) -> list[tuple[int, float]]:
        """The (cost, seconds) of the last ``WINDOW`` finished explanations of any worker of the model."""
        try:
            stored = json.loads((self.directory / RATE_FILE).read_text())["explanations"]
            measured = [(int(cost), float(seconds)) for cost, seconds in stored]
        except (OSError, ValueError, KeyError, TypeError):
            return []
        return [(cost, seconds) for cost, seconds in measured if cost > 0 and math.isfinite(seconds) and seconds > 0]

    def record(self, cost: int, seconds: float) -> None:
        """Add a finished explanation (or a warm-up's) to the shared window of measurements."""
        if cost <= 0 or seconds <= 0:
            return
        measured = self._stored()[-(WINDOW - 1) :] + [(cost, seconds)]
        self._write(self.directory / RATE_FILE, {"explanations": measured})

    def time_model(self) -> tuple[float, float]:
        """(overhead seconds, seconds per token-layer pass), fitted by least squares to the window of finished
        explanations. With fewer than two distinct costs, or a fit whose overhead or rate comes out negative
        (noise), the line through the origin weighted towards the expensive ones: rate = Σ cost·s / Σ cost²."""
        measured = self._stored()
        if not measured:
            return 0.0, self.default_rate_s
        costs = [float(cost) for cost, _ in measured]
        seconds = [value for _, value in measured]
        if len(set(costs)) > 1:
            mean_cost, mean_seconds = sum(costs) / len(costs), sum(seconds) / len(seconds)
            spread = sum((cost - mean_cost) ** 2 for cost in costs)
            rate = sum((cost - mean_cost) * (value - mean_seconds) for cost, value in zip(costs, seconds)) / spread
            overhead = mean_seconds - rate * mean_cost
            if rate > 0 and overhead >= 0:
                return overhead, rate
        return 0.0, sum(cost * value for cost, value in zip(costs, seconds)) / sum(cost * cost for cost in costs)

    def expected_seconds(self, cost: int) -> float:
        """Seconds an explanation of ``cost`` token-layer passes is expected to take (``time_model``)."""
        overhead, rate = self.time_model()
        return overhead + rate * cost

    @contextmanager
    def reserve(self, cost: int) -> Iterator[Reservation]:
        """Hold the first free slot (a lock per open file, so threads of one process exclude each other too)."""
        for slot in range(self.slots):
            handle = os.open(self._path(slot), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(handle)
                continue
            reservation = Reservation(slot, cost, time.time())
            try:
                os.ftruncate(handle, 0)
                os.pwrite(handle, json.dumps({"cost": cost, "started": reservation.started}).encode(), 0)
                yield reservation
            finally:
                os.ftruncate(handle, 0)
                fcntl.flock(handle, fcntl.LOCK_UN)
                os.close(handle)
            return
        raise SlotsTaken(self.retry_after_s(), self.slots)

    def retry_after_s(self) -> int:
        """Whole seconds until the earliest running explanation is expected to end (at least 1)."""
        now, (overhead, rate) = time.time(), self.time_model()
        remaining = []
        for slot in range(self.slots):
            try:
                held = json.loads(self._path(slot).read_text() or "{}")
                remaining.append(float(held["started"]) + overhead + float(held["cost"]) * rate - now)
            except (OSError, ValueError, KeyError, TypeError):
                continue  # being written or released right now: free soon
        return max(1, math.ceil(min(remaining, default=0.0)))

    @staticmethod
    def _write(path: Path, value: dict) -> None:
        scratch = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        scratch.write_text(json.dumps(value))
        os.replace(scratch, path)


class LowPriorityRunner:
    """Runs calls on one thread whose nice value is raised by ``niceness`` (Linux schedules threads, so this
    lowers only that thread: the worker's predictions keep their priority)."""

    def __init__(self, niceness: int) -> None:
        self.niceness = niceness
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="auditor-explanations", initializer=self._lower)

    def _lower(self) -> None:
        if self.niceness > 0 and hasattr(os, "setpriority"):
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, os.getpriority(os.PRIO_PROCESS, 0) + self.niceness))
            except OSError:
                pass  # not permitted here: explanations run at the worker's priority

    def run(self, call: Callable[[], Result]) -> Result:
        return self._executor.submit(call).result()
