"""The environment is the lock file: ``scripts/setup.sh`` installs exactly ``requirements.lock`` (hashes
checked, no dependency resolution), so every locked package is installed at its locked version and nothing
else is installed beside auditor itself and pip. A venv that drifted (a package installed or upgraded by hand,
a stale venv from before a lock change) fails here rather than in a user's first run."""

from __future__ import annotations

import re
import sysconfig
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name

LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"
NOT_LOCKED = {"auditor", "pip"}  # the package under test (installed editable by setup) and the installer


def locked_versions() -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", LOCK.read_text(), flags=re.MULTILINE)
    return {canonicalize_name(name): version for name, version in pins}


def installed_versions() -> dict[str, str]:
    """The distributions installed into this environment's site-packages (not those another test put on
    sys.path, such as a Ray or TorchServe working folder)."""
    site = {Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")}
    return {
        canonicalize_name(dist.metadata["Name"]): dist.version
        for dist in metadata.distributions()
        if Path(str(dist.locate_file(""))).resolve() in site
    }


def test_every_locked_package_is_installed_at_its_version() -> None:
    installed = installed_versions()
    wrong = {name: (version, installed.get(name)) for name, version in locked_versions().items() if installed.get(name) != version}
    assert not wrong, f"installed versions differ from requirements.lock (locked, installed): {wrong}; rerun scripts/setup.sh"


def test_nothing_beyond_the_lock_is_installed() -> None:
    extra = sorted(set(installed_versions()) - set(locked_versions()) - NOT_LOCKED)
    assert not extra, f"installed but not in requirements.lock: {extra}; add them to pyproject.toml and run scripts/lock.sh"


def test_every_locked_entry_carries_a_hash() -> None:
    entries = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text().strip())
    unhashed = [entry.split()[0] for entry in entries if "==" in entry.split()[0] and "--hash=sha256:" not in entry]
    assert len(entries) == len(locked_versions()) and not unhashed, unhashed
