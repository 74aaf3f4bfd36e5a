"""Serving classifiers with TorchServe: ``TorchServe``, a real server on free loopback ports (for tests,
benchmarks and local use) started from the repository's config.properties and log4j2.xml.

Archives are built by ``auditor.serving.archive`` (``build_archive``, ``package_model``, …); the
worker's request logic is ``auditor.serving.service``. The handler (``handlers/classifier_handler.py``) runs in
TorchServe's Python worker, which is started with the interpreter that runs ``torchserve``: install auditor
into that environment (``pip install -e .``) so that the handler's ``import auditor`` works.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests

from auditor.errors import AuditorError, ModelLoadError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO_ROOT / "config.properties"
LOG_CONFIG = REPO_ROOT / "log4j2.xml"


@dataclass(frozen=True)
class ServedModel:
    """A model the server loads from its store, with its workers and batching settings.

    The defaults are what keeps predictions from waiting behind explanations (``auditor.serving.capacity``): server-side
    batches of one request, so that no prediction shares a batch with an explanation, and more workers than
    the archive's explanation slots (1 by default), so that one is always free for predictions.
    """

    name: str
    batch_size: int = 1
    max_batch_delay_ms: int = 0
    response_timeout_s: int = 120
    workers: int = 3


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def read_properties(path: Path) -> dict[str, str]:
    """A Java properties file as TorchServe reads it (``key=value`` lines, ``#`` comments)."""
    properties: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            properties[key.strip()] = value.strip()
    return properties


def models_property(models: Sequence[ServedModel]) -> str:
    """The ``models=`` value of config.properties: per model its workers, batch size and delay."""
    return json.dumps(
        {
            model.name: {
                "1.0": {
                    "defaultVersion": True,
                    "marName": f"{model.name}.mar",
                    "minWorkers": model.workers,
                    "maxWorkers": model.workers,
                    "batchSize": model.batch_size,
                    "maxBatchDelay": model.max_batch_delay_ms,
                    "responseTimeout": model.response_timeout_s,
                }
            }
            for model in models
        }
    )


class TorchServe:
    """A real ``torchserve`` on free loopback ports, with its own working directory and TMPDIR.

    ``with TorchServe(store, [ServedModel("sst2")]) as server:`` starts it from the settings of
    ``config`` (the repository's config.properties; addresses, ports, store and models replaced) with
    ``log_config`` copied into its working directory as the log4j2.xml that config's ``vmargs`` names (as when
    ``torchserve`` is started from the repository root), waits until
    every model is READY, reads the inference key from key_file.json, and on exit always stops it (from the
    directory it started in, as ``torchserve --stop`` requires) and removes the working directory.
    ``environment`` adds variables to the server's environment (this process's own are passed on too).

    Run-time registration stays closed as config.properties closes it (no model API, no URL allowed, no workflow
    store) unless ``open_registration`` opts in: then the model API is on, any file or http(s) URL may be
    downloaded and the workflow store is the model store, TorchServe's own defaults.
    """

    def __init__(
        self,
        model_store: Path,
        models: Sequence[ServedModel],
        config: Path = DEFAULT_CONFIG,
        startup_timeout_s: float = 300.0,
        workdir: Path | None = None,
        log_config: Path = LOG_CONFIG,
        environment: Mapping[str, str] | None = None,
        open_registration: bool = False,
    ) -> None:
        self.model_store = Path(model_store).resolve()
        self.models = list(models)
        self.config = Path(config)
        self.log_config = Path(log_config)
        self.environment = dict(environment or {})
        self.open_registration = open_registration
        self.startup_timeout_s = startup_timeout_s
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="auditor-torchserve-"))
        self.ports = {name: free_port() for name in ("inference", "management", "metrics", "grpc_inference", "grpc_management")}
        self.keys: dict[str, str] = {}

    # URLs and credentials
    @property
    def inference_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['inference']}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['metrics']}"

    @property
    def inference_key(self) -> str:
        return self.keys["inference"]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.inference_key}"}

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    def post(self, path: str, body: object, authorized: bool = True, timeout: float = 120.0) -> requests.Response:
        """POST to the inference API; ``body`` is sent as JSON unless it is already bytes."""
        data = body if isinstance(body, (bytes, bytearray)) else json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", **(self.headers if authorized else {})}
        return requests.post(f"{self.inference_url}{path}", data=data, headers=headers, timeout=timeout)

    # life cycle
    def __enter__(self) -> TorchServe:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _environment(self) -> dict[str, str]:
        tmp = self.workdir / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        environment = {**os.environ, **self.environment, "TEMP": str(tmp), "TMPDIR": str(tmp), "TMP": str(tmp)}
        environment.pop("TS_CONFIG_FILE", None)  # the launcher would prefer it to the config written here
        # the worker imports the same auditor as this process
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        return environment

    def _write_config(self) -> Path:
        properties = read_properties(self.config) if self.config.is_file() else {}
        properties.update(
            {
                "inference_address": self.inference_url,
                "management_address": f"http://127.0.0.1:{self.ports['management']}",
                "metrics_address": self.metrics_url,
                "grpc_inference_address": "127.0.0.1",
                "grpc_management_address": "127.0.0.1",
                "grpc_inference_port": str(self.ports["grpc_inference"]),
                "grpc_management_port": str(self.ports["grpc_management"]),
                "model_store": str(self.model_store),
                "load_models": ",".join(f"{model.name}.mar" for model in self.models),
                "models": models_property(self.models),
            }
        )
        if self.open_registration:
            properties.update({"enable_model_api": "true", "allowed_urls": "file://.*|http(s)?://.*", "workflow_store": str(self.model_store)})
        path = self.workdir / "config.properties"
        path.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))
        return path

    def _torchserve(self, *arguments: str, timeout: float = 120.0) -> str:
        """Run the ``torchserve`` launcher in the working directory; its output (and that of the Java server it
        starts, which keeps the file open and copies its log there) goes to launcher.log, mode 0600 like the log
        files. Returns what this call added to it."""
        command = [sys.executable, "-m", "ts.model_server", *arguments]
        log = self.workdir / "launcher.log"
        start = log.stat().st_size if log.is_file() else 0
        with open(os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab") as output:
            done = subprocess.run(command, cwd=self.workdir, env=self._environment(), stdout=output, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=timeout)  # fmt: skip
        with log.open("rb") as output:
            output.seek(start)
            said = output.read().decode("utf-8", errors="replace")
        if done.returncode != 0:
            raise AuditorError(f"torchserve {' '.join(arguments)} failed: {said.strip()[-2000:]}")
        return said

    def start(self) -> None:
        missing = [model.name for model in self.models if not (self.model_store / f"{model.name}.mar").is_file()]
        if missing:
            raise ModelLoadError(f"no archive for {', '.join(missing)} in {self.model_store}")
        config = self._write_config()
        shutil.copy2(self.log_config, self.workdir / "log4j2.xml")
        self._torchserve("--start", "--ncs", "--ts-config", str(config), "--model-store", str(self.model_store))
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        key_file = self.workdir / "key_file.json"
        pending = {model.name for model in self.models}
        while time.monotonic() < deadline:
            if not self.keys and key_file.is_file():
                try:
                    stored = json.loads(key_file.read_text())
                    self.keys = {kind: stored[kind]["key"] for kind in ("inference", "management", "API")}
                except (json.JSONDecodeError, KeyError):
                    pass  # written but not complete yet
            if self.keys:
                pending = {name for name in pending if not self._ready(name)}
                if not pending:
                    return
            if not self.running:
                break
            time.sleep(0.5)
        log = self.logs / "ts_log.log"
        tail = log.read_text(errors="replace")[-3000:] if log.is_file() else "(no log)"
        raise AuditorError(f"torchserve did not get {', '.join(sorted(pending))} READY; ts_log.log ends with:\n{tail}")

    def _ready(self, name: str) -> bool:
        headers = {"Authorization": f"Bearer {self.keys['management']}"}
        try:
            answer = requests.get(f"http://127.0.0.1:{self.ports['management']}/models/{name}", headers=headers, timeout=5)
        except requests.RequestException:
            return False
        if answer.status_code != 200:
            return False
        workers = [worker for version in answer.json() for worker in version.get("workers", [])]
        return bool(workers) and all(worker.get("status") == "READY" for worker in workers)

    @property
    def pid(self) -> int | None:
        pid_file = self.workdir / "tmp" / ".model_server.pid"
        try:
            return int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def model_worker_pids(self, name: str) -> list[int]:
        """The worker processes of one model, as the management API lists them."""
        headers = {"Authorization": f"Bearer {self.keys['management']}"}
        answer = requests.get(f"http://127.0.0.1:{self.ports['management']}/models/{name}", headers=headers, timeout=10)
        answer.raise_for_status()
        return sorted(worker["pid"] for version in answer.json() for worker in version.get("workers", []))

    @property
    def worker_pids(self) -> list[int]:
        """The server's Python worker processes (its child processes), whatever model they serve."""
        pid = self.pid
        return [] if pid is None else child_processes(pid)

    @property
    def running(self) -> bool:
        pid = self.pid
        return pid is not None and _alive(pid)

    def stop(self) -> None:
        """Stop the server (``torchserve --stop`` from its directory, then SIGKILL if it lingers)."""
        pid = self.pid
        if pid is not None:
            try:
                self._torchserve("--stop", "--foreground", timeout=90)
            except (subprocess.TimeoutExpired, AuditorError):
                pass  # killed below
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.2)
            if _alive(pid):
                os.kill(pid, 9)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return True


def child_processes(pid: int) -> list[int]:
    """Live child processes of ``pid`` (from /proc; empty where there is none)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended meanwhile
        if int(fields[1]) == pid and fields[0] != "Z":
            children.append(int(stat.parent.name))
    return sorted(children)


def resident_bytes(pid: int) -> int:
    """Resident memory of a process (VmRSS of /proc/<pid>/status), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no VmRSS for process {pid}")
