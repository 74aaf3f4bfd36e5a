"""Shadow mode against a real ``torchserve`` (no mocks): the head-pruned SST-2 model as primary, the full one as
its shadow on the same server. Replayed SST-2 dev sentences from 4 concurrent clients are each one row of the
comparisons database or one counted drop; the rows' probabilities are the served answers (primary) and the
in-process full model's (shadow); the Prometheus metrics count the same; every answer names its model in the
identity headers. Faults: the shadow scaled to zero workers mid-run, a worker killed with SIGKILL while it
writes, a database that cannot be written, a shadow model that is not registered."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import torch

from auditor.data import load_dataset
from auditor.errors import AuditorError
from auditor.live.records import input_digest, read_drops, read_records
from auditor.models import load_classifier
from auditor.pruning import prune_model
from auditor.schemas import IDENTITY_HEADERS, ShadowSettings
from auditor.serving.archive import build_archive, package_model
from auditor.serving.torchserve import DEFAULT_CONFIG, ServedModel, TorchServe

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO.parent / "shared" / "models"
SST2 = MODELS / "minilm-sst2"
PRUNED_HEADS = {0: [0, 3, 7], 2: [1, 2], 5: [4, 5, 6, 11]}
TOLERANCE = 1e-4  # probabilities of two processes (server worker and this one) differ by float rounding, not more


def sentences(start: int, count: int) -> list[str]:
    return [example.text for example in load_dataset("sst2").examples[start : start + count]]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """One server: ``sst2-pruned`` (primary, shadow ``sst2``, database shadow.db, texts kept), ``sst2`` (the
    shadow), and ``sst2-nodb``, whose shadow is ``sst2`` but whose database lies under a regular file."""
    work = tmp_path_factory.mktemp("shadow")
    store = work / "model_store"
    blocker = work / "not-a-folder"
    blocker.write_text("a file where the database's folder should be\n")
    models = [ServedModel("sst2-pruned", workers=2), ServedModel("sst2", workers=2), ServedModel("sst2-nodb", workers=2)]
    config = work / "config.properties"  # the repository's, with the metrics scraped as Prometheus (README)
    config.write_text(DEFAULT_CONFIG.read_text() + "metrics_mode=prometheus\n")
    server = TorchServe(store, models, config=config)
    database = work / "shadow.db"
    shadow = ShadowSettings(model="sst2", url=server.inference_url, database=str(database), store_texts=True)
    package_model(SST2, "sst2-pruned", store, PRUNED_HEADS, archive_format="zip-store", threads=1, shadow=shadow)
    build_archive(SST2, "sst2", store, archive_format="zip-store", threads=1)
    unwritable = shadow.model_copy(update={"database": str(blocker / "shadow.db"), "store_texts": False})
    build_archive(SST2, "sst2-nodb", store, archive_format="zip-store", threads=1, shadow=unwritable)
    with server:
        yield server, database, work


def post_all(server: TorchServe, model: str, texts: list[str], clients: int = 4, during: Callable[[int], None] | None = None) -> list[requests.Response]:
    """Each text as one ``POST /predictions/{model}`` from ``clients`` concurrent clients; ``during(i)`` runs
    after the i-th answer arrives."""
    answered = [0]
    lock = threading.Lock()

    def send(text: str) -> requests.Response:
        answer = server.post(f"/predictions/{model}", {"text": text})
        with lock:
            answered[0] += 1
            count = answered[0]
        if during is not None:
            during(count)
        return answer

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(send, texts))


def metric(server: TorchServe, name: str, **labels: str) -> float:
    """Sum of the Prometheus samples of ``name`` whose labels include ``labels``, from the metrics port."""
    text = requests.get(f"{server.metrics_url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} ([0-9.eE+-]+)$", line)
        if match and all(f'{key}="{value}"' in match.group(1) for key, value in labels.items()):
            total += float(match.group(2))
    return total


def reference(classifier, texts: list[str]) -> list[tuple[str, list[float]]]:
    """(label, probabilities) per text: softmax of the PyTorch model's logits, computed here without the package's
    prediction code (one text at a time, as the server's workers do with batches of one request)."""
    answers = []
    for text in texts:
        with torch.no_grad():
            probabilities = classifier.model(**classifier.encode([text])).logits.double().softmax(-1)[0].tolist()
        answers.append((classifier.labels[max(range(len(probabilities)), key=probabilities.__getitem__)], probabilities))
    return answers


def counted(database: Path) -> tuple[int, dict[str, int]]:
    """(rows of comparisons, drops by cause) of the database."""
    return sum(1 for _ in read_records([database])), read_drops([database])


def wait_until(condition: Callable[[], bool], timeout_s: float = 180.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return condition()


def settled(server: TorchServe, database: Path, sampled: int) -> tuple[int, dict[str, int]]:
    """The database's counts once every sampled input is recorded or dropped (and the metrics say as much)."""
    def done() -> bool:
        rows, drops = counted(database)
        return rows + sum(drops.values()) >= sampled and metric(server, "ShadowRequests", ModelName="sst2-pruned") >= sampled

    assert wait_until(done), (counted(database), sampled)
    return counted(database)


def test_replay_records_every_request_with_both_answers(served) -> None:
    server, database, work = served
    before, _ = counted(database) if database.exists() else (0, {})
    texts = sentences(0, 96)
    answers = post_all(server, "sst2-pruned", texts)
    assert [answer.status_code for answer in answers] == [200] * len(texts)
    rows, drops = settled(server, database, len(texts))
    assert rows - before + sum(drops.values()) == len(texts) and rows - before == len(texts), drops  # 4 clients, queue far from full
    records = {record.input_sha256: record for record in read_records([database])}
    full = load_classifier(SST2)
    pruned = load_classifier(prune_model(load_classifier(SST2, "cpu", torch.float16), PRUNED_HEADS, work / "pruned-reference"))
    shadow_reference = reference(full, texts)
    disagreements = 0
    for text, answer, (label, probabilities) in zip(texts, answers, shadow_reference):
        record = records[input_digest(text)]
        assert record.text == text and record.primary_model.name == "sst2-pruned" and record.shadow_model.name == "sst2"
        assert record.primary_model.weights_sha256 == pruned.identity.weights_sha256 == answer.headers["X-Model-Weights-SHA256"]
        assert record.shadow_model.weights_sha256 == full.identity.weights_sha256
        assert record.primary_label == answer.json()["label"] and record.primary_probabilities == answer.json()["probabilities"]
        assert record.shadow_label == label or abs(probabilities[0] - 0.5) < TOLERANCE
        assert max(abs(a - b) for a, b in zip(record.shadow_probabilities, probabilities)) < TOLERANCE
        assert record.primary_latency_ms > 0 and record.shadow_latency_ms > 0
        disagreements += record.primary_label != record.shadow_label
    assert metric(server, "ShadowComparisons", ModelName="sst2-pruned") >= len(texts)
    assert metric(server, "ShadowDisagreements", ModelName="sst2-pruned") == sum(r.primary_label != r.shadow_label for r in records.values())
    assert metric(server, "ShadowTransitions", ModelName="sst2-pruned") == metric(server, "ShadowComparisons", ModelName="sst2-pruned")
    assert metric(server, "ShadowLatency", ModelName="sst2-pruned") > 0
    assert oct(database.stat().st_mode & 0o777) == oct(0o600)  # texts are kept


def test_every_answer_names_its_model(served) -> None:
    server, _, _ = served
    full = load_classifier(SST2)
    prediction = server.post("/predictions/sst2", {"text": "a fine film"})
    explanation = server.post("/explanations/sst2", {"text": "a fine film", "options": {"steps": 1, "layers": [5]}})
    refused = server.post("/predictions/sst2", {"text": ""})
    assert [prediction.status_code, explanation.status_code, refused.status_code] == [200, 200, 400]
    for answer in (prediction, explanation, refused):
        assert [answer.headers[header] for header in IDENTITY_HEADERS] == ["sst2", "1.0", full.identity.weights_sha256]
    assert server.post("/predictions/sst2-pruned", {"text": "a fine film"}).headers["X-Model-Weights-SHA256"] != full.identity.weights_sha256


def test_a_stopped_shadow_changes_no_answer_and_every_comparison_not_made_is_counted(served) -> None:
    server, database, _ = served
    management = f"http://127.0.0.1:{server.ports['management']}"
    headers = {"Authorization": f"Bearer {server.keys['management']}"}
    rows_before, drops_before = settled(server, database, int(metric(server, "ShadowRequests", ModelName="sst2-pruned")))
    sampled_before = metric(server, "ShadowRequests", ModelName="sst2-pruned")
    texts = sentences(100, 80)

    def stop_shadow(count: int) -> None:
        if count == 20:
            scaled = requests.put(f"{management}/models/sst2?min_worker=0&max_worker=0&synchronous=true", headers=headers, timeout=120)
            assert scaled.status_code == 200, scaled.text

    try:
        answers = post_all(server, "sst2-pruned", texts, during=stop_shadow)
        assert [answer.status_code for answer in answers] == [200] * len(texts)
        assert metric(server, "ShadowRequests", ModelName="sst2-pruned") - sampled_before == len(texts)
        rows, drops = settled(server, database, int(sampled_before) + len(texts))
        made = rows - rows_before
        not_made = sum(drops.values()) - sum(drops_before.values())
        assert made + not_made == len(texts) and not_made > 0, (made, drops)
        assert drops.get("shadow_error", 0) > drops_before.get("shadow_error", 0)  # 503: no worker for the shadow
        assert metric(server, "ShadowDrops", ModelName="sst2-pruned") == sum(drops.values())
    finally:
        requests.put(f"{management}/models/sst2?min_worker=2&max_worker=2&synchronous=true", headers=headers, timeout=300)


def test_kill_of_a_writing_worker_keeps_the_database_intact(served) -> None:
    server, database, _ = served
    management = f"http://127.0.0.1:{server.ports['management']}"
    headers = {"Authorization": f"Bearer {server.keys['management']}"}
    pids = [w["pid"] for v in requests.get(f"{management}/models/sst2-pruned", headers=headers, timeout=30).json() for w in v["workers"]]
    rows_before, _ = counted(database)
    killed = threading.Event()

    def kill_while_writing(count: int) -> None:
        if count >= 30 and counted(database)[0] > rows_before and not killed.is_set():
            killed.set()
            os.kill(pids[0], signal.SIGKILL)

    post_all(server, "sst2-pruned", sentences(200, 90), during=kill_while_writing)  # requests of the killed worker may fail
    assert killed.is_set()
    connection = sqlite3.connect(database)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        connection.close()
    assert counted(database)[0] > rows_before


def test_a_database_that_cannot_be_written_leaves_the_primary_serving(served) -> None:
    server, _, _ = served
    texts = sentences(300, 40)
    answers = post_all(server, "sst2-nodb", texts)
    assert [answer.status_code for answer in answers] == [200] * len(texts)
    assert wait_until(lambda: metric(server, "ShadowDrops", ModelName="sst2-nodb", Cause="database") >= len(texts))
    assert metric(server, "ShadowRequests", ModelName="sst2-nodb") == len(texts)
    assert metric(server, "ShadowComparisons", ModelName="sst2-nodb") == 0
    log = (server.logs / "model_log.log").read_text(errors="replace")
    assert len(re.findall(r"comparisons database .*not-a-folder/shadow\.db cannot be written", log)) == 1, log[-3000:]


def test_a_shadow_that_is_not_registered_fails_the_primary_load(tmp_path: Path) -> None:
    store = tmp_path / "model_store"
    (tmp_path / "server").mkdir()
    server = TorchServe(store, [ServedModel("orphan", workers=1)], startup_timeout_s=60, workdir=tmp_path / "server")
    settings = ShadowSettings(model="nosuch", url=server.inference_url, database=str(tmp_path / "shadow.db"))
    build_archive(SST2, "orphan", store, archive_format="zip-store", threads=1, shadow=settings)
    with pytest.raises(AuditorError, match="did not get orphan READY"):
        with server:
            pass
    log = (server.logs / "model_log.log").read_text(errors="replace")
    assert "shadow model 'nosuch' is not registered at " + server.inference_url in log, log[-3000:]
    assert not (tmp_path / "shadow.db").exists()  # no request was ever answered
