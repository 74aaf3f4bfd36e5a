#!/usr/bin/env bash
# Installs everything auditor needs on a Debian machine, offline except for the package registries:
# system packages (a Java runtime for TorchServe, Chromium for the HTML report test), a virtual
# environment in .venv with exactly the versions of requirements.lock (hashes checked; refresh it with
# scripts/lock.sh), and the package itself, editable, with its dev and ray extras.
#
#   TORCH_SPEC   a torch requirement to install instead of the lock's CPU build (e.g. TORCH_SPEC=torch==2.13.0
#                takes a CUDA build on a GPU machine; its CUDA packages are then not from the lock)
#   PYTHON       the interpreter for the venv (default python3)
#   SKIP_APT=1   skip the system packages
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ "${SKIP_APT:-0}" != 1 ] && [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "setup: missing system packages ${need_apt[*]}; install them with: sudo apt-get install ${need_apt[*]}" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
lock=requirements.lock
if [ -n "${TORCH_SPEC:-}" ]; then
  "${pip[@]}" "$TORCH_SPEC"
  lock=$(mktemp)
  # the lock without its torch entry (the requirement line and its hash lines)
  awk '/^torch==/ {skip=1; next} skip && /^[[:space:]]/ {next} {skip=0; print}' requirements.lock >"$lock"
fi
"${pip[@]}" --require-hashes --no-deps -r "$lock"
"${pip[@]}" --no-deps --no-build-isolation -e .
if [ -z "${TORCH_SPEC:-}" ]; then
  # an existing venv converges on the lock: packages it does not name (installed by hand, or dropped from it) go
  extra=$(.venv/bin/python - <<'PY'
import re
from importlib import metadata
from packaging.utils import canonicalize_name
locked = {canonicalize_name(name) for name in re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", open("requirements.lock").read(), re.M)}
installed = {canonicalize_name(dist.metadata["Name"]) for dist in metadata.distributions()}
print(" ".join(sorted(installed - locked - {"auditor", "pip"})))
PY
)
  if [ -n "$extra" ]; then .venv/bin/python -m pip uninstall --quiet --yes $extra; fi
fi
echo "setup: done ($(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
