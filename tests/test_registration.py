"""Run-time registration against a real TorchServe: with the management key, every path that registers a model or
a workflow (by http and file URL, and by file name in the store) is refused under config.properties, and no worker
process starts, no archive is downloaded and no code from the archive runs. The same probes succeed on a server
that opts in (``TorchServe(open_registration=True)``), so they are real registrations."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from auditor.serving.archive import build_archive
from auditor.serving.torchserve import ServedModel, TorchServe

pytestmark = pytest.mark.slow  # real TorchServes probed for registration paths

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"
SETTLE_S = 8.0
"""How long a refused registration is given to start a worker anyway (a model's worker starts in 3–5 s here)."""


def write_workflow(path: Path, marker: Path) -> None:
    """A workflow archive (.war) of one function node whose module writes ``marker`` when a worker imports it."""
    manifest = {
        "createdOn": "06/12/2026 00:00:00",
        "archiverVersion": "0.2.15",
        "workflow": {"workflowName": path.stem, "specFile": "spec.yaml", "handler": "probe.py"},
    }
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("WAR-INF/MANIFEST.json", json.dumps(manifest))
        archive.writestr("spec.yaml", "models:\n  min-workers: 1\n  max-workers: 1\ndag:\n  probe: []\n")
        archive.writestr("probe.py", f"open({str(marker)!r}, 'a').write('ran\\n')\n\ndef probe(data, context):\n    return data\n")


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sst2.mar, and a copy of it as probe.mar, to register under another name."""
    store = tmp_path_factory.mktemp("registration") / "built"
    build_archive(MODELS / "minilm-sst2", "sst2", store, archive_format="zip-store", threads=1)
    shutil.copy2(store / "sst2.mar", store / "probe.mar")
    return store


@pytest.fixture()
def outside(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback http.server serving a folder outside the model store: (its URL, the folder)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *arguments: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()


def probes(url: str, folder: Path, store: Path, archives: Path, tag: str) -> dict[str, tuple[str, Path]]:
    """Every registration path: name → (management path with query, the marker its code would write). The
    archives are placed where each path reads them: the http server's folder, a file outside the store, the store."""
    markers = {}
    for place, directory in (("http", folder), ("file", folder), ("store", store)):
        name = f"wf{place}{tag}"
        markers[place] = folder / f"{name}.ran"
        write_workflow(directory / f"{name}.war", markers[place])
    shutil.copy2(archives / "probe.mar", folder / "probe.mar")
    shutil.copy2(archives / "probe.mar", store / "probe.mar")
    return {
        "model by http URL": (f"/models?url={url}/probe.mar&model_name=probehttp&initial_workers=1", folder / "none"),
        "model by file URL": (f"/models?url=file://{folder}/probe.mar&model_name=probefile&initial_workers=1", folder / "none"),
        "model by file name": ("/models?url=probe.mar&model_name=probestore&initial_workers=1", folder / "none"),
        "workflow by http URL": (f"/workflows?url={url}/wfhttp{tag}.war", markers["http"]),
        "workflow by file URL": (f"/workflows?url=file://{folder}/wffile{tag}.war", markers["file"]),
        "workflow by file name": (f"/workflows?url=wfstore{tag}.war", markers["store"]),
    }


def register(server: TorchServe, path: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {server.keys['management']}"}
    return requests.post(f"http://127.0.0.1:{server.ports['management']}{path}", headers=headers, timeout=120)


def test_every_registration_path_is_refused(archives: Path, outside: tuple[str, Path], tmp_path: Path) -> None:
    url, folder = outside
    store = tmp_path / "model_store"
    store.mkdir()
    shutil.copy2(archives / "sst2.mar", store / "sst2.mar")
    with TorchServe(store, [ServedModel("sst2", workers=1)]) as server:
        paths = probes(url, folder, store, archives, "closed")
        stored = sorted(path.name for path in store.iterdir())
        workers = server.worker_pids
        assert len(workers) == 1
        answers = {name: register(server, path) for name, (path, _) in paths.items()}
        time.sleep(SETTLE_S)
        for name, answer in answers.items():
            assert 400 <= answer.status_code < 500, (name, answer.status_code, answer.text)
        assert server.worker_pids == workers
        assert not [marker for _, marker in paths.values() if marker.exists()]
        assert sorted(path.name for path in store.iterdir()) == stored  # nothing downloaded into the store
        headers = {"Authorization": f"Bearer {server.keys['management']}"}
        management = f"http://127.0.0.1:{server.ports['management']}"
        assert [model["modelName"] for model in requests.get(f"{management}/models", headers=headers, timeout=10).json()["models"]] == ["sst2"]
        assert requests.get(f"{management}/workflows", headers=headers, timeout=10).json()["workflows"] == []


def test_the_probes_register_on_a_server_that_opts_in(archives: Path, outside: tuple[str, Path], tmp_path: Path) -> None:
    """The refusals above come from the configuration, not from broken probes."""
    url, folder = outside
    store = tmp_path / "model_store"
    store.mkdir()
    shutil.copy2(archives / "sst2.mar", store / "sst2.mar")
    with TorchServe(store, [ServedModel("sst2", workers=1)], open_registration=True) as server:
        paths = probes(url, folder, store, archives, "open")
        workers = server.worker_pids
        for name in ("workflow by http URL", "model by file name"):
            path, _ = paths[name]
            answer = register(server, path)
            assert answer.status_code == 200, (name, answer.text)
        assert paths["workflow by http URL"][1].exists()  # the downloaded archive's code ran in a worker
        assert len(server.worker_pids) == len(workers) + 2
