#!/usr/bin/env bash
# Refreshes requirements.lock: the exact versions, with hashes, of everything scripts/setup.sh installs
# (auditor's dependencies with its dev and ray extras, and torch's CPU build), for CPython 3.11 on Linux x86-64.
# pyproject.toml keeps ranges for people who install auditor into their own environment; run this after
# changing them and commit the lock. Needs uv (.venv/bin/pip install uv).
set -euo pipefail
cd "$(dirname "$0")/.."
uv=${UV:-.venv/bin/uv}
"$uv" pip compile pyproject.toml scripts/torch.in --extra dev --extra ray \
  --generate-hashes --find-links /opt/wheels --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --no-header --quiet --output-file requirements.lock
