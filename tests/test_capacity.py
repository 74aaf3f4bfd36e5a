"""Explanation slots shared by processes (``auditor.serving.capacity``): real processes holding real ``flock`` locks,
a holder killed with SIGKILL, the Retry-After the cost model gives, and the lower priority of the explanation
thread as the kernel reports it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from auditor.serving.capacity import PRIOR_S, ExplanationSlots, LowPriorityRunner, SlotsTaken, explanation_cost, layer_passes, thread_cpu_seconds

REPO = Path(__file__).resolve().parents[1]


def hold_slot(directory: Path, slots: int, cost: int) -> subprocess.Popen:
    """Another process that reserves a slot of ``directory`` and keeps it until killed."""
    program = textwrap.dedent(
        f"""
        import sys, time
        from auditor.serving.capacity import ExplanationSlots
        with ExplanationSlots({str(directory)!r}, {slots}).reserve({cost}):
            print("held", flush=True)
            time.sleep(600)
        """
    )
    holder = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_slot_held_by_another_process_refuses_with_the_time_it_still_needs(tmp_path: Path) -> None:
    slots = ExplanationSlots(tmp_path, 1)
    slots.record(1000, cpu_s=1.0, wall_s=1.0)  # 1 ms per token pass (one cost only: a line through the origin)
    holder = hold_slot(tmp_path, 1, cost=explanation_cost(100, 20, layer_passes([0], 6)))  # 12,000 token-layer passes: 12 s
    try:
        with pytest.raises(SlotsTaken) as refused, slots.reserve(10):
            pass
        assert 10 <= refused.value.retry_after_s <= 12
        assert "retry after" in str(refused.value)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with slots.reserve(10) as reservation:  # the kernel released the killed holder's lock
        assert reservation.slot == 0


def test_slots_are_shared_between_processes_and_threads(tmp_path: Path) -> None:
    slots = ExplanationSlots(tmp_path, 2)
    holder = hold_slot(tmp_path, 2, cost=5)
    try:
        with slots.reserve(5) as mine:
            assert mine.slot == 1
            refused: list[SlotsTaken] = []

            def third() -> None:
                try:
                    with slots.reserve(5):
                        pass
                except SlotsTaken as error:
                    refused.append(error)

            thread = threading.Thread(target=third)
            thread.start()
            thread.join()
            assert len(refused) == 1 and refused[0].running == 2
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_the_time_model_separates_the_overhead_from_the_rate(tmp_path: Path) -> None:
    """The probe's scenario (issue 30): 20 cheap explanations (0.25 s of overhead each) after the warm-ups' two
    costs. Seconds ÷ cost would be 0.0125 s per pass and a full-cost explanation 670 s; the fit gives 0.25 s +
    0.00016 s per pass, the CPU times the measurements were drawn from, times the slowdown of the recent ones
    (wall ÷ CPU), and a new worker reads the same."""
    slots = ExplanationSlots(tmp_path, 1, default_rate_s=0.5)
    assert slots.time_model() == (0.0, 0.5) and slots.slowdown() == 1.0  # nothing measured yet
    cheap = 0.25 + 20 * 0.00016
    slots.record(20, cpu_s=cheap, wall_s=cheap)
    assert slots.expected_seconds(40) == pytest.approx(40 * cheap / 20)  # one cost: through the origin
    for cost in (6, 5208, 6, 5208):  # the warm-ups: no wall time
        slots.record(cost, cpu_s=0.25 + cost * 0.00016, wall_s=None)
    for _ in range(20):  # on a loaded machine: 3 wall seconds per CPU second
        slots.record(20, cpu_s=cheap, wall_s=3 * cheap)
    overhead, rate = ExplanationSlots(tmp_path, 1).time_model()
    assert overhead == pytest.approx(0.25) and rate == pytest.approx(0.00016)
    assert slots.slowdown() == pytest.approx(3.0)
    assert slots.expected_seconds(53_760) == pytest.approx(3 * (0.25 + 53_760 * 0.00016))
    for _ in range(40):  # only the last WINDOW explanations count: all cheap now, so through the origin again
        slots.record(20, cpu_s=0.3, wall_s=0.2)  # and no slowdown below 1
    assert slots.time_model() == (0.0, pytest.approx(0.3 / 20)) and slots.slowdown() == 1.0
    slots.record(1000, cpu_s=0.1, wall_s=0.1)  # a dearer one that took less (noise): no negative overhead
    overhead, rate = slots.time_model()
    assert overhead == 0.0 and rate > 0


def test_a_running_explanation_is_measured_by_its_own_pace(tmp_path: Path) -> None:
    """Once the computing thread has used some CPU time, Retry-After is the CPU work left at the pace that thread
    gets now, weighed against PRIOR_S seconds at the recent explanations' pace: here a thread that burns CPU in
    another process, its work 3 CPU seconds by the time model. On a loaded machine its pace is well under 1."""
    slots = ExplanationSlots(tmp_path, 1)
    slots.record(1000, cpu_s=1.0, wall_s=1.0)  # 1 ms of CPU per token pass: 3000 passes are 3 CPU seconds
    program = textwrap.dedent(
        f"""
        import threading, time
        from auditor.serving.capacity import ExplanationSlots
        started = threading.Event()
        def burn():
            started.set()
            while True:
                sum(range(10000))
        worker = threading.Thread(target=burn, daemon=True)
        worker.start()
        started.wait()
        with ExplanationSlots({str(tmp_path)!r}, 1).reserve(3000, worker.native_id):
            print("held", flush=True)
            time.sleep(600)
        """
    )
    holder = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        held = json.loads(slots._path(0).read_text())
        deadline = time.monotonic() + 60
        while (thread_cpu_seconds(holder.pid, held["thread"]) or 0) - held["thread_cpu"] < 0.5 and time.monotonic() < deadline:
            time.sleep(0.1)
        used = thread_cpu_seconds(holder.pid, held["thread"]) - held["thread_cpu"]
        elapsed = time.time() - held["started"]
        with pytest.raises(SlotsTaken) as refused, slots.reserve(10):
            pass
        pace = (used + PRIOR_S / slots.slowdown()) / (elapsed + PRIOR_S)  # measured, weighed against the recent pace (1 here)
        expected = (3.0 - used) / pace  # the work left at that pace
        assert abs(refused.value.retry_after_s - expected) <= 1 + 0.2 * expected, (refused.value.retry_after_s, expected, used, elapsed)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_the_explanation_thread_runs_at_lower_priority() -> None:
    runner = LowPriorityRunner(niceness=7)
    own = os.getpriority(os.PRIO_PROCESS, 0)
    theirs = runner.run(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
    assert theirs == min(19, own + 7)
    assert os.getpriority(os.PRIO_PROCESS, 0) == own  # the calling thread keeps its priority


def test_at_least_one_slot_is_required(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ExplanationSlots(tmp_path, 0)
