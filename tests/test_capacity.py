"""Explanation slots shared by processes (``auditor.serving.capacity``): real processes holding real ``flock`` locks,
a holder killed with SIGKILL, the Retry-After the cost model gives, and the lower priority of the explanation
thread as the kernel reports it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from auditor.serving.capacity import ExplanationSlots, LowPriorityRunner, SlotsTaken, explanation_cost, layer_passes

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
    slots.calibrate(seconds=1.0, cost=1000)  # 1 ms per token pass
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


def test_finished_explanations_update_the_shared_rate(tmp_path: Path) -> None:
    slots = ExplanationSlots(tmp_path, 1, default_rate_s=0.5)
    assert slots.rate_s == 0.5
    slots.calibrate(seconds=2.0, cost=1000)
    slots.calibrate(seconds=9.0, cost=1000)  # a rate is recorded already: calibration keeps it
    assert slots.rate_s == pytest.approx(0.002)
    slots.record(cost=1000, seconds=4.0)  # the first explanation replaces the warm-up's calibration
    assert ExplanationSlots(tmp_path, 1).rate_s == pytest.approx(0.004)
    slots.record(cost=1000, seconds=1.0)  # later ones are averaged in
    assert ExplanationSlots(tmp_path, 1).rate_s == pytest.approx(0.5 * 0.004 + 0.5 * 0.001)
    slots.calibrate(seconds=9.0, cost=1)  # measured explanations are never overwritten by a calibration
    assert slots.expected_seconds(500) == pytest.approx(500 * 0.0025)


def test_the_explanation_thread_runs_at_lower_priority() -> None:
    runner = LowPriorityRunner(niceness=7)
    own = os.getpriority(os.PRIO_PROCESS, 0)
    theirs = runner.run(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
    assert theirs == min(19, own + 7)
    assert os.getpriority(os.PRIO_PROCESS, 0) == own  # the calling thread keeps its priority


def test_at_least_one_slot_is_required(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ExplanationSlots(tmp_path, 0)
