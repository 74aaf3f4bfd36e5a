"""Capacity of its own for explanations, so that predictions never wait behind them.

TorchServe hands a worker one server-side batch at a time and any free worker takes the next one. A worker
busy with an explanation therefore takes no predictions; if every worker of a model could be busy so, a
prediction would wait for an explanation to finish (seconds). Two things prevent that:

- ``ExplanationSlots``: the workers of one model share ``slots`` explanation slots (advisory ``flock`` locks on
  files in the model's folder, which every worker of the model shares). A worker computes an explanation only
  while it holds a slot; with fewer slots than workers, at least one worker is always free for predictions.
  An explanation that finds every slot taken is answered 429 at once, with a ``Retry-After``: the time the
  earliest running explanation still needs (``ExplanationSlots.retry_after_s``). The kernel drops a lock when
  its process dies, so a killed worker never leaks its slot.
- ``LowPriorityRunner``: explanations run on one thread with a raised nice value, so on a machine with fewer
  cores than busy workers, the scheduler serves the prediction workers first.

The cost model: attributing encoder layer l runs, for each of ``steps`` quadrature steps, a forward and a
backward pass through layers l … L−1 (the layers below l run once, without gradients). A layer's time grows
linearly with the tokens (below 6 × hidden size tokens, the attention's quadratic term is a small part of
its work). So an explanation costs ``tokens × steps × Σ_l (L − l)`` token-layer passes, and takes overhead + rate × cost
CPU seconds of the explanation thread, fitted by least squares to the last ``WINDOW`` explanations the model's workers
finished (``ExplanationSlots.record``; each worker's warm-up records two of different cost): the overhead (the
forward pass without gradients, the tree, the JSON) does not grow with the cost, so cheap explanations pin it down
and cannot inflate the rate (a rate taken as seconds ÷ cost was 80 times a full-cost explanation's after 20
``layers: [5], steps: 1`` ones, and so was ``Retry-After``). The wall-clock time follows from the pace the thread
gets (CPU ÷ wall seconds), measured on the running explanation (``ExplanationSlots._remaining_seconds``).
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
"""Finished explanations the time model is fitted to: the most recent ones of the model's workers."""
RECENT = 5
"""Finished explanations whose wall-clock ÷ CPU seconds give the current slowdown."""
PRIOR_S = 1.0
"""Wall-clock seconds of the recent explanations' pace that a running explanation's own pace is weighed against:
its first tenths of a second say little (the scheduler grants a thread that wakes up a burst at full speed, then
its share), its later seconds say more than the past."""


def thread_cpu_seconds(pid: int, thread: int) -> float | None:
    """CPU seconds a thread has run, from /proc: the scheduler's nanosecond count (``schedstat``) where the kernel
    keeps one, else user + system time in clock ticks (``stat``); None when the thread is gone or unreadable."""
    task = Path(f"/proc/{pid}/task/{thread}")
    try:
        return int((task / "schedstat").read_text().split()[0]) / 1e9
    except (OSError, IndexError, ValueError):
        pass
    try:
        fields = (task / "stat").read_text().rsplit(") ", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def layer_passes(layers: Sequence[int], num_layers: int) -> int:
    """Σ_l (L − l) over the attributed layers: the encoder layers one quadrature step runs forward and backward."""
    return sum(num_layers - layer for layer in layers)


def explanation_cost(tokens: int, steps: int, passes: int) -> int:
    """Work of one explanation in token-layer passes: ``steps`` steps of ``passes`` layer passes (``layer_passes``)
    over ``tokens`` tokens."""
    return tokens * steps * passes


@dataclass(frozen=True)
class Measurement:
    """A finished explanation: its cost, the CPU seconds of the thread that computed it (close to its wall time
    alone: the thread takes its share of any intra-op parallel work) and its wall-clock seconds (None: unknown)."""

    cost: int
    cpu_s: float
    wall_s: float | None


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

    def _stored(self) -> list[Measurement]:
        """The last ``WINDOW`` finished explanations of any worker of the model."""
        try:
            stored = json.loads((self.directory / RATE_FILE).read_text())["explanations"]
            measured = [Measurement(int(cost), float(cpu), None if wall is None else float(wall)) for cost, cpu, wall in stored]
        except (OSError, ValueError, KeyError, TypeError):
            return []
        return [m for m in measured if m.cost > 0 and math.isfinite(m.cpu_s) and m.cpu_s > 0 and (m.wall_s is None or m.wall_s > 0)]

    def record(self, cost: int, cpu_s: float, wall_s: float | None) -> None:
        """Add a finished explanation to the shared window: its cost, the CPU seconds of the thread that computed
        it and its wall-clock seconds (None for a warm-up, whose wall time counts the other workers' warm-ups)."""
        if cost <= 0 or cpu_s <= 0:
            return
        measured = self._stored()[-(WINDOW - 1) :] + [Measurement(cost, cpu_s, wall_s)]
        self._write(self.directory / RATE_FILE, {"explanations": [[m.cost, m.cpu_s, m.wall_s] for m in measured]})

    def slowdown(self) -> float:
        """Wall-clock seconds per CPU second of the last ``RECENT`` explanations (at least 1): how much the
        machine's load and the explanation thread's lower priority stretch an explanation now."""
        recent = [m for m in self._stored() if m.wall_s is not None][-RECENT:]
        return max(1.0, sum(m.wall_s for m in recent) / sum(m.cpu_s for m in recent)) if recent else 1.0  # type: ignore[misc]

    def time_model(self) -> tuple[float, float]:
        """(overhead CPU seconds, CPU seconds per token-layer pass), fitted by least squares to the window of
        finished explanations. With fewer than two distinct costs, or a fit whose overhead or rate comes out
        negative (noise), the line through the origin weighted towards the expensive ones: Σ cost·s / Σ cost²."""
        measured = self._stored()
        if not measured:
            return 0.0, self.default_rate_s
        costs = [float(m.cost) for m in measured]
        seconds = [m.cpu_s for m in measured]
        if len(set(costs)) > 1:
            mean_cost, mean_seconds = sum(costs) / len(costs), sum(seconds) / len(seconds)
            spread = sum((cost - mean_cost) ** 2 for cost in costs)
            rate = sum((cost - mean_cost) * (value - mean_seconds) for cost, value in zip(costs, seconds)) / spread
            overhead = mean_seconds - rate * mean_cost
            if rate > 0 and overhead >= 0:
                return overhead, rate
        return 0.0, sum(cost * value for cost, value in zip(costs, seconds)) / sum(cost * cost for cost in costs)

    def expected_seconds(self, cost: int) -> float:
        """Wall-clock seconds an explanation of ``cost`` token-layer passes is expected to take now:
        ``slowdown() × (overhead + rate × cost)``."""
        overhead, rate = self.time_model()
        return self.slowdown() * (overhead + rate * cost)

    @contextmanager
    def reserve(self, cost: int, thread: int | None = None) -> Iterator[Reservation]:
        """Hold the first free slot (a lock per open file, so threads of one process exclude each other too).
        ``thread``: the native id of this process's thread that computes the explanation, whose CPU time then
        tells a refused request how far it has come (``retry_after_s``)."""
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
                held = {"cost": cost, "started": reservation.started, "pid": os.getpid(), "thread": thread,
                        "thread_cpu": None if thread is None else thread_cpu_seconds(os.getpid(), thread)}  # fmt: skip
                os.pwrite(handle, json.dumps(held).encode(), 0)
                yield reservation
            finally:
                os.ftruncate(handle, 0)
                fcntl.flock(handle, fcntl.LOCK_UN)
                os.close(handle)
            return
        raise SlotsTaken(self.retry_after_s(), self.slots)

    def retry_after_s(self) -> int:
        """Whole seconds until the earliest running explanation is expected to end (at least 1)."""
        now = time.time()
        remaining = []
        for slot in range(self.slots):
            held = self._held(slot)
            if held is not None:
                remaining.append(self._remaining_seconds(int(held["cost"]), now - float(held["started"]), held))
        return max(1, math.ceil(min(remaining, default=0.0)))

    def _held(self, slot: int, attempts: int = 20) -> dict | None:
        """What the holder of ``slot`` wrote (cost, start, thread); None when the slot is released. A holder
        writes its file just after it takes the lock, so an empty file is read again for up to 20 × 5 ms: a
        request refused at the same moment another took the slot (two sent at once) would else be told 1 s."""
        for attempt in range(attempts):
            try:
                held = json.loads(self._path(slot).read_text() or "{}")
                int(held["cost"]), float(held["started"])
                return held
            except (OSError, ValueError, KeyError, TypeError):
                if attempt + 1 < attempts:
                    time.sleep(0.005)
        return None  # released meanwhile: free now

    def _remaining_seconds(self, cost: int, elapsed: float, held: dict) -> float:
        """Seconds a running explanation still needs: the CPU seconds of work left (``time_model`` less the CPU
        seconds its thread has used) at the pace the thread gets (CPU ÷ wall seconds: the share of a core that the
        machine's load and the thread's lower priority leave it). The pace is measured on the running request,
        weighed against ``PRIOR_S`` seconds at the recent explanations' pace (1 ÷ ``slowdown``):

            pace = (used + PRIOR_S ÷ slowdown) ÷ (elapsed + PRIOR_S).

        Without the thread's CPU time (another platform), ``expected_seconds`` less the time elapsed."""
        if held.get("thread") is None or held.get("thread_cpu") is None:
            return self.expected_seconds(cost) - elapsed
        now_cpu = thread_cpu_seconds(int(held["pid"]), int(held["thread"]))
        if now_cpu is None:
            return 0.0  # the thread is gone: the slot frees now
        used = max(now_cpu - float(held["thread_cpu"]), 0.0)
        overhead, rate = self.time_model()
        pace = (used + PRIOR_S / self.slowdown()) / (max(elapsed, 0.0) + PRIOR_S)
        return max(overhead + rate * cost - used, 0.0) / pace

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
        self.native_id: int | None = None
        """The thread's id for the kernel (/proc/<pid>/task/<id>), once it has started."""
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="auditor-explanations", initializer=self._lower)

    def _lower(self) -> None:
        self.native_id = threading.get_native_id()
        if self.niceness > 0 and hasattr(os, "setpriority"):
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, os.getpriority(os.PRIO_PROCESS, 0) + self.niceness))
            except OSError:
                pass  # not permitted here: explanations run at the worker's priority

    def run(self, call: Callable[[], Result]) -> Result:
        return self._executor.submit(call).result()
