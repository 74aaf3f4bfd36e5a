"""Killing a run mid-way, as a user's Ctrl-\\ or an OOM kill would: shared by the resume tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


def kill_after_records(command: list[str], environment: dict[str, str], checkpoint: Path, records: int, timeout: float = 600) -> None:
    """Start ``command`` in its own session, SIGKILL it as soon as ``checkpoint`` holds its header and
    ``records`` finished records, then kill what it left behind (e.g. Ray's processes). Fails when the run
    finishes first."""
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            if checkpoint.exists() and len(checkpoint.read_bytes().splitlines()) >= records + 1:
                break
            time.sleep(0.05)
        assert process.poll() is None, "the run finished before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
