"""Artefacts that several test modules need, built once per test run.

Under pytest-xdist every worker is its own process with its own session fixtures, so an artefact is built in
the directory the workers share (the parent of each worker's base temporary directory), under a file lock: the
first worker to ask builds it, the others wait and read it. Without xdist it lives in the run's own base
temporary directory. Builders write to a temporary name and rename, so a half-built artefact is never read."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock

from tests.test_audit import SST2, auditor


def shared_artifact(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """The path ``name`` in the run's shared directory, built by ``build(path)`` by the first worker to ask."""
    root = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    path = root / "shared-artifacts" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock"):
        if not path.exists():
            partial = path.with_name(f"partial-{path.name}")
            if partial.is_dir():
                shutil.rmtree(partial)
            build(partial)
            partial.rename(path)
    return path


@pytest.fixture(scope="session")
def sst2_patterns(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Token-pair patterns mined from 48 SST-2 training sentences (min support 2): the patterns of the audit,
    diff, served-audit and CI-gate tests."""

    def mine(path: Path) -> None:
        done = auditor("mine", "--model", str(SST2), "--data", "sst2", "--examples", "48", "--min-support", "2", "--out", str(path))
        assert done.returncode == 0, done.stderr

    return shared_artifact(tmp_path_factory, "sst2-patterns.json", mine)
