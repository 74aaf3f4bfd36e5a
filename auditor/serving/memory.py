"""Memory of TorchServe workers: what config.properties asks for against what the machine has.

Each worker is a Python process holding the model, its tokenizer, PyTorch (and ONNX Runtime for an ONNX archive)
and, during an explanation, the attribution's buffers; freed, they would stay resident in the C allocator's
heap (about 0.9 GB for MiniLM at the limits) unless ``release_freed_memory`` hands them back. ``bench/load.py`` measures the
resident memory of every worker; README, "Memory", has the figures. ``auditor package`` warns when the workers
the server configuration starts would need more memory than the machine has.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
from pathlib import Path

from auditor.serving.torchserve import read_properties

WORKER_BYTES = 900_000_000
"""Resident memory of one MiniLM worker, idle or between explanations (``bench/load.py``, README "Memory")."""
EXPLANATION_BYTES = 950_000_000
"""What a worker holds on top while it computes an explanation at the limits (128 tokens, 20 steps, every
layer); one worker per model at a time with the default ``explanation_slots`` of 1."""


def configured_workers(config: Path) -> dict[str, int]:
    """Workers per model that a TorchServe configuration starts: each ``models=`` entry's maxWorkers (else
    minWorkers), else ``default_workers_per_model`` for each archive in ``load_models``."""
    properties = read_properties(config)
    default = int(properties.get("default_workers_per_model", os.cpu_count() or 1))
    workers = {Path(name.strip()).stem: default for name in properties.get("load_models", "").split(",") if name.strip()}
    for name, versions in json.loads(properties.get("models", "{}") or "{}").items():
        for version in versions.values():
            workers[name] = int(version.get("maxWorkers", version.get("minWorkers", default)))
    return workers


def machine_memory_bytes() -> int:
    """Physical memory of this machine."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def needed_bytes(workers: dict[str, int]) -> int:
    """Memory the workers need at most: ``WORKER_BYTES`` each, and ``EXPLANATION_BYTES`` more for one worker per
    model computing an explanation."""
    return sum(workers.values()) * WORKER_BYTES + len(workers) * EXPLANATION_BYTES


def memory_warning(config: Path, machine_bytes: int | None = None) -> str | None:
    """A warning when the workers ``config`` starts need more than the machine's memory (``needed_bytes``)."""
    workers = configured_workers(config)
    machine = machine_memory_bytes() if machine_bytes is None else machine_bytes
    needed = needed_bytes(workers)
    if needed <= machine:
        return None
    listed = ", ".join(f"{name} {count}" for name, count in workers.items())
    return (
        f"{config} starts {sum(workers.values())} workers ({listed}); at {WORKER_BYTES / 1e9:.1f} GB each and "
        f"{EXPLANATION_BYTES / 1e9:.2f} GB more while one per model explains, they need {needed / 1e9:.1f} GB, more than this "
        f"machine's {machine / 1e9:.1f} GB: lower the workers per model"
    )


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None  # not glibc: nothing to trim


def release_freed_memory() -> None:
    """Hand the free pages of the C heap back to the system (glibc's ``malloc_trim``), e.g. an explanation's
    attribution buffers once it has ended: a MiniLM worker's resident memory went from 1565 MB back to 645 MB."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
