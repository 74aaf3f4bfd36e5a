"""The TorchServe handler against a real ``torchserve`` (no mocks): archives built from the fixture models
(full and head-pruned, PyTorch and ONNX Runtime backends, single-sentence and pair tasks), one server for the
whole module, answers compared with in-process inference and attribution through the library; then hostile
and heavy requests against the same server (malformed bodies, answers over the limit decided before
computing, an explanation sharing a batch with predictions, a body over max_request_size, keys in query
strings, an environment that asks to switch authorization off): no 5xx, no worker restart, every prediction
answered. Explanation storms under the README's configuration are tests/test_storm.py's."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import requests
import torch

from auditor.data import load_dataset
from auditor.explain import explain
from auditor.errors import InputError, ModelLoadError
from auditor.export import OnnxClassifier
from auditor.models import Classifier, load_classifier
from auditor.pruning import prune_model
from auditor.schemas import ErrorResponse, Explanation, ExplanationOptions, Prediction
from auditor.serving.archive import build_archive, package_model
from auditor.schemas import HandlerSettings, ServingLimits
from auditor.serving.torchserve import ServedModel, TorchServe
from tests.numerics import PREDICTION_ATOL, SERVED_ULPS, argmax_margins, assert_close

pytestmark = pytest.mark.slow  # a real TorchServe with four archives

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO.parent / "shared" / "models"
PRUNED_HEADS = {0: [0, 3, 7], 2: [1, 2], 5: [4, 5, 6, 11]}
RTE_LIMITS = ServingLimits(max_tokens=192, max_chars=1000, max_steps=4, max_batch=3)
HOSTILE_ENVIRONMENT = {"TS_DISABLE_TOKEN_AUTHORIZATION": "true", "TS_ENABLE_MODEL_API": "true", "TS_DEBUG": "true"}


@dataclass
class Served:
    """An archive on the server and the in-process classifier it must agree with."""

    name: str
    classifier: Classifier
    pair: bool
    onnx: OnnxClassifier | None = None


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """One TorchServe with four archives: SST-2 full (torch) and pruned (onnx), RTE full and pruned (torch),
    started in an environment whose TS_* variables would switch authorization off and the model API on."""
    work = tmp_path_factory.mktemp("serving")
    store = work / "model_store"
    sst2_dir, rte_dir = MODELS / "minilm-sst2", MODELS / "minilm-rte"
    build_archive(sst2_dir, "sst2", store, archive_format="zip-store", threads=1)
    build_archive(rte_dir, "rte", store, limits=RTE_LIMITS, archive_format="zip-store", task="pair")
    package_model(sst2_dir, "sst2-pruned-onnx", store, PRUNED_HEADS, backend="onnx", limits=ServingLimits(max_response_bytes=1_000_000), archive_format="zip-store")
    package_model(rte_dir, "rte-pruned", store, PRUNED_HEADS, limits=RTE_LIMITS, archive_format="zip-store", task="pair")
    # independent references: the same models loaded (and pruned, in the checkpoints' float16) here
    sst2_pruned = load_classifier(prune_model(load_classifier(sst2_dir, "cpu", torch.float16), PRUNED_HEADS, work / "sst2-pruned"))
    rte_pruned = load_classifier(prune_model(load_classifier(rte_dir, "cpu", torch.float16), PRUNED_HEADS, work / "rte-pruned"))
    models = {
        "sst2": Served("sst2", load_classifier(sst2_dir), pair=False),
        "rte": Served("rte", load_classifier(rte_dir), pair=True),
        "sst2-pruned-onnx": Served("sst2-pruned-onnx", sst2_pruned, pair=False),
        "rte-pruned": Served("rte-pruned", rte_pruned, pair=True),
    }
    # server-side batches of several requests here (the README's configuration, one request per batch, is
    # tests/test_storm.py's): every request of a batch is answered on its own
    batching = [ServedModel("sst2", batch_size=8, max_batch_delay_ms=300, workers=2)]
    batching += [ServedModel(name, batch_size=4, max_batch_delay_ms=20, workers=2) for name in ("rte", "sst2-pruned-onnx", "rte-pruned")]
    with TorchServe(store, batching, environment=HOSTILE_ENVIRONMENT) as server:
        yield server, models


def inputs(pair: bool, n: int) -> list[dict[str, str]]:
    dataset = load_dataset("rte" if pair else "sst2").head(n)
    return [{"text": e.text, **({"text_pair": e.text_pair} if pair else {})} for e in dataset.examples]


def reference_probabilities(classifier: Classifier, bodies: list[dict[str, str]]) -> list[list[float]]:
    """softmax of the PyTorch model's logits, computed here without the package's prediction code."""
    pairs = [body["text_pair"] for body in bodies] if "text_pair" in bodies[0] else None
    encoding = classifier.encode([body["text"] for body in bodies], pairs)
    with torch.no_grad():
        return classifier.model(**encoding).logits.double().softmax(-1).tolist()


@pytest.mark.numerics
@pytest.mark.parametrize("name", ["sst2", "rte", "sst2-pruned-onnx", "rte-pruned"])
def test_predictions_equal_in_process_inference(served, name: str) -> None:
    server, models = served
    model = models[name]
    bodies = inputs(model.pair, 6)
    labels = model.classifier.labels
    references = reference_probabilities(model.classifier, bodies)
    assert float(argmax_margins(torch.tensor(references)).min()) > 2 * PREDICTION_ATOL  # so the worker's argmax is this one
    for body, expected in zip(bodies, references):
        answer = server.post(f"/predictions/{name}", body)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/json")
        got = Prediction.model_validate_json(answer.text)
        best = max(range(len(labels)), key=expected.__getitem__)
        assert (got.label, got.label_id, got.labels) == (labels[best], best, labels)
        assert got.probabilities == pytest.approx(expected, abs=PREDICTION_ATOL)


@pytest.mark.numerics
def test_onnx_archive_predicts_with_onnx_runtime(served, tmp_path: Path) -> None:
    """The onnx archive answers exactly as ONNX Runtime does on the same graph here, which differs from the
    PyTorch model's answer in the last bits: predictions do run on ONNX Runtime. Exact (1e-12 on doubles):
    the same graph on the same ONNX Runtime kernels of this CPU, in the worker and here; ATen's kernel path
    (ATEN_CPU_CAPABILITY) changes only the PyTorch side. On some inputs the two libraries happen to round
    alike (1 of 12 SST-2 sentences under AVX2, 1 under AVX-512, none under default), so PyTorch must differ on
    at least half of the inputs, not on each."""
    from auditor.export import export_onnx

    server, models = served
    model = models["sst2-pruned-onnx"]
    runtime = OnnxClassifier(export_onnx(model.classifier, tmp_path / "model.onnx"), MODELS / "minilm-sst2")
    unlike_torch = []
    for body in inputs(False, 6):
        logits = torch.from_numpy(runtime.logits(model.classifier.encode([body["text"]])))
        on_runtime = logits.double().softmax(-1)[0].tolist()
        on_torch = reference_probabilities(model.classifier, [body])[0]
        got = Prediction.model_validate_json(server.post("/predictions/sst2-pruned-onnx", body).text)
        assert got.probabilities == pytest.approx(on_runtime, abs=1e-12)
        unlike_torch.append(got.probabilities != pytest.approx(on_torch, abs=1e-12))
    assert sum(unlike_torch) >= 3, unlike_torch


@pytest.mark.numerics
@pytest.mark.parametrize("name", ["sst2", "rte-pruned", "sst2-pruned-onnx"])
def test_explanations_equal_library_attribution(served, name: str) -> None:
    server, models = served
    model = models[name]
    body = inputs(model.pair, 1)[0]
    options = {"steps": 2, "layers": [0, 2, 5], "top_k": 4, "include_matrices": True, "include_tree": True, "target": 1}
    answer = server.post(f"/explanations/{name}", {**body, "options": options})
    assert answer.status_code == 200, answer.text
    expected = explain(model.classifier, body["text"], body.get("text_pair"), ExplanationOptions(**options))
    got = Explanation.model_validate_json(answer.text)
    assert got.layers[1].head_ids == [h for h in range(12) if "pruned" not in name or h not in PRUNED_HEADS[2]]
    local = expected.model_dump(mode="json")
    local["model"]["name"] = name  # the served model is named as on the server
    assert_close(json.loads(answer.text), local, SERVED_ULPS)
    assert got.target == 1 and [layer.layer for layer in got.layers] == [0, 2, 5]


def test_explanation_defaults(served) -> None:
    server, models = served
    answer = server.post("/explanations/rte", inputs(True, 1)[0])
    assert answer.status_code == 200, answer.text
    got = Explanation.model_validate_json(answer.text)
    assert got.tree is not None and all(layer.matrices is None for layer in got.layers)
    assert len(got.layers) == models["rte"].classifier.identity.num_layers


def test_attribution_metrics_are_reported(served) -> None:
    server, _ = served
    assert server.post("/explanations/sst2", {"text": "a quiet, moving film", "options": {"steps": 1}}).status_code == 200
    patterns = (
        r"AttributionTime\.Milliseconds:[0-9.]+\|#ModelName:sst2,",
        r"AttributionTokens\.Count:7\.0\|#ModelName:sst2,",  # [CLS] a quiet , moving film [SEP]
    )
    deadline = time.monotonic() + 20  # the frontend writes the metrics log asynchronously
    while True:
        metrics = (server.logs / "model_metrics.log").read_text()
        if all(re.search(pattern, metrics) for pattern in patterns) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for pattern in patterns:
        assert re.search(pattern, metrics), metrics[-2000:]


def test_requests_without_the_key_are_refused(served) -> None:
    server, _ = served
    for headers in ({}, {"Authorization": "Bearer not-the-key"}):
        answer = requests.post(f"{server.inference_url}/predictions/sst2", json={"text": "fine"}, headers=headers, timeout=30)
        assert answer.status_code == 400 and answer.json()["type"] == "InvalidKeyException"
    answer = requests.post(f"{server.inference_url}/explanations/sst2", json={"text": "fine"}, timeout=30)
    assert answer.status_code == 400 and answer.json()["type"] == "InvalidKeyException"


BAD_PREDICTIONS = {
    "empty text": {"text": ""},
    "blank text": {"text": "   "},
    "no text": {"text_pair": "a"},
    "text not a string": {"text": 3},
    "text a list": {"text": ["a", "b"]},
    "pair not a string": {"text": "a", "text_pair": 7},
    "empty pair": {"text": "a", "text_pair": ""},
    "unknown field": {"text": "a", "txt": "b"},
    "not an object": ["a"],
    "a JSON string": "a film",
    "null": None,
    "invalid JSON": b'{"text": "a',
    "not UTF-8": b'{"text": "caf\xe9"}',
    "empty body": b"",
    "100,000 nested [": b"[" * 100_000,
    "100,000 nested [ in a field": b'{"text": ' + b"[" * 100_000,
    "a 5,000-digit integer": b'{"text": ' + b"9" * 5000 + b"}",
    "only zero-width spaces": {"text": "\u200b\u200b\u200b"},
    "only invisible characters": {"text": "a", "text_pair": "\ufeff\u2060\u200d \u3164"},
    "text true": {"text": True},
    "inputs empty": {"inputs": []},
    "inputs over max_batch": {"inputs": [{"text": "a", "text_pair": "b"}] * 4},
    "inputs and text": {"inputs": [{"text": "a", "text_pair": "b"}], "text": "c"},
    "inputs not a list": {"inputs": {"text": "a"}},
    "over max_tokens": {"text": "word " * 195, "text_pair": "a"},
    "over max_chars": {"text": "a" * 999, "text_pair": "bc"},
    "no text_pair for a pair model": {"text": "A man sleeps."},
    "an input without text_pair": {"inputs": [{"text": "a", "text_pair": "b"}, {"text": "c"}]},
}
BAD_EXPLANATIONS = {
    "steps over max_steps": {"text": "a", "text_pair": "b", "options": {"steps": 5}},
    "steps zero": {"text": "a", "text_pair": "b", "options": {"steps": 0}},
    "steps a string": {"text": "a", "text_pair": "b", "options": {"steps": "many"}},
    "steps a numeric string": {"text": "a", "text_pair": "b", "options": {"steps": "3"}},
    "steps a float": {"text": "a", "text_pair": "b", "options": {"steps": 3.0}},
    "steps of 5,000 digits": b'{"text": "a", "text_pair": "b", "options": {"steps": ' + b"9" * 5000 + b"}}",
    "target true": {"text": "a", "text_pair": "b", "options": {"target": True}},
    "top_k over max_top_k": {"text": "a", "text_pair": "b", "options": {"top_k": 65}},
    "include_matrices a string": {"text": "a", "text_pair": "b", "options": {"include_matrices": "yes"}},
    "zero-width text": {"text": "\u200b", "text_pair": "b"},
    "100,000 nested [": b"[" * 100_000,
    "unknown target": {"text": "a", "text_pair": "b", "options": {"target": 2}},
    "layer outside the model": {"text": "a", "text_pair": "b", "options": {"layers": [6]}},
    "unknown method": {"text": "a", "text_pair": "b", "options": {"method": "simpson"}},
    "unknown option": {"text": "a", "text_pair": "b", "options": {"stepz": 2}},
    "over max_tokens": {"text": "word " * 195, "text_pair": "a"},
    "empty text": {"text": "", "options": {}},
    "not UTF-8": b"\xff\xfe",
    "no text_pair for a pair model": {"text": "A man sleeps.", "options": {"steps": 1}},
}


@pytest.mark.parametrize(
    ("route", "body"),
    [("predictions", body) for body in BAD_PREDICTIONS.values()] + [("explanations", body) for body in BAD_EXPLANATIONS.values()],
    ids=[f"predictions: {k}" for k in BAD_PREDICTIONS] + [f"explanations: {k}" for k in BAD_EXPLANATIONS],
)
def test_bad_input_gets_400_and_the_server_keeps_answering(served, route: str, body: object) -> None:
    server, _ = served
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = server.post(f"/{route}/rte", data)
    assert answer.status_code == 400, answer.text
    error = ErrorResponse.model_validate_json(answer.text)
    assert error.code == 400 and error.type == "InputError" and error.message
    assert server.post("/predictions/rte", {"text": "A man sleeps.", "text_pair": "A man rests."}).status_code == 200


@pytest.mark.numerics
def test_batch_answers_each_request_and_fails_only_the_bad_one(served) -> None:
    server, models = served
    bodies: list[object] = inputs(False, 7)
    bodies.insert(3, {"text": ""})
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda body: server.post("/predictions/sst2", body), bodies))
    expected = iter(reference_probabilities(models["sst2"].classifier, [body for body in bodies if body["text"]]))
    for body, answer in zip(bodies, answers):
        if not body["text"]:
            assert answer.status_code == 400 and answer.json()["type"] == "InputError"
            continue
        assert answer.status_code == 200, answer.text
        assert answer.json()["probabilities"] == pytest.approx(next(expected), abs=PREDICTION_ATOL)
    sizes = [int(n) for n in re.findall(r"batch of (\d+) requests", (server.logs / "model_log.log").read_text())]
    assert max(sizes) > 1, "the server never batched requests"


def test_package_command_rejects_bad_options(tmp_path: Path) -> None:
    model = str(MODELS / "minilm-sst2")
    for arguments, message in [
        (["--pruned", "zero:1"], "cannot read heads"),
        (["--max-tokens", "0"], "max_tokens"),
    ]:
        command = [sys.executable, "-m", "auditor", "package", "--model", model, "--name", "x", "--store", str(tmp_path), *arguments]
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr
    assert not list(tmp_path.iterdir())


def test_build_archive_rejects_a_folder_without_a_model_and_a_bad_name(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no config.json"):
        build_archive(tmp_path, "x", tmp_path / "store")
    with pytest.raises(InputError, match="archive name"):
        build_archive(MODELS / "minilm-sst2", "bad/name", tmp_path / "store")
    with pytest.raises(InputError, match="needs an exported .onnx file"):
        build_archive(MODELS / "minilm-sst2", "x", tmp_path / "store", backend="onnx")


# --- hostile and heavy requests against the same server -----------------------------------------------------


def management(server: TorchServe, method: str, path: str, key: str | None = "management", host: str = "127.0.0.1") -> requests.Response:
    headers = {"Authorization": f"Bearer {server.keys[key]}"} if key else {}
    return requests.request(method, f"http://{host}:{server.ports['management']}{path}", headers=headers, timeout=30)


def worker_pids(server: TorchServe) -> dict[str, list[int]]:
    return {
        model.name: [worker["pid"] for version in management(server, "GET", f"/models/{model.name}").json() for worker in version["workers"]]
        for model in server.models
    }


@pytest.mark.numerics
def test_batched_predictions_equal_single_ones(served) -> None:
    server, models = served
    for name in ("sst2", "rte", "sst2-pruned-onnx"):
        bodies = inputs(models[name].pair, 3 if name == "rte" else 8)
        answer = server.post(f"/predictions/{name}", {"inputs": bodies})
        assert answer.status_code == 200, answer.text
        batched = [Prediction.model_validate(item) for item in answer.json()]
        single = [Prediction.model_validate_json(server.post(f"/predictions/{name}", body).text) for body in bodies]
        assert float(argmax_margins(torch.tensor([p.probabilities for p in single])).min()) > 2 * PREDICTION_ATOL  # no near-tie
        assert [p.label for p in batched] == [p.label for p in single]
        for got, expected in zip(batched, single):  # padded with other inputs or not, in either worker: float32 rounding
            assert got.probabilities == pytest.approx(expected.probabilities, abs=PREDICTION_ATOL)


def test_a_bad_input_of_a_batched_request_is_named(served) -> None:
    server, _ = served
    for bad, message in [({"text": "\u200b"}, "inputs.2.text"), ({"text": "word " * 130}, "inputs[2]: input has"), ({"text": 3}, "inputs.2.text")]:
        answer = server.post("/predictions/sst2", {"inputs": [{"text": "fine"}, {"text": "dull"}, bad]})
        assert answer.status_code == 400, answer.text
        assert message in ErrorResponse.model_validate_json(answer.text).message


@pytest.mark.numerics
def test_endpoint_victim_batched_equals_single_requests(served) -> None:
    from auditor.victims import RemoteVictim

    server, _ = served
    texts = [body["text"] for body in inputs(False, 20)]
    url = f"{server.inference_url}/predictions/sst2"
    single = RemoteVictim(url, token=server.inference_key, inputs_per_request=1, concurrency=4)
    batched = RemoteVictim(url, token=server.inference_key, inputs_per_request=8, concurrency=2)
    try:
        assert batched.labels == single.labels == ["negative", "positive"]
        np.testing.assert_allclose(batched(texts), single(texts), atol=PREDICTION_ATOL)  # either of two workers
    finally:
        single.close()
        batched.close()


def test_explanation_matrices_beyond_the_answer_limit_are_refused(served) -> None:
    """Matrices of all layers of a 100-token input would be a ~3.4 MB answer over a 1 MB limit: a 400 decided
    before computing; predictions are answered meanwhile."""
    server, _ = served
    heavy = {"text": " ".join(["word"] * 98), "options": {"steps": 1, "include_matrices": True}}
    medium = {"text": " ".join(["word"] * 66), "options": {"steps": 1, "include_matrices": True}}
    small = {"text": " ".join(["word"] * 30), "options": {"steps": 1, "include_matrices": True, "layers": [0]}}
    answers = [server.post("/explanations/sst2-pruned-onnx", body) for body in (heavy, medium, small)]
    for answer in answers[:2]:
        assert answer.status_code == 400 and "answer limit" in answer.json()["message"], answer.text[:300]
    assert answers[2].status_code == 200, answers[2].text[:300]
    assert Explanation.model_validate_json(answers[2].text).layers[0].matrices.shape == [9, 32, 32]


def test_a_batch_with_predictions_answers_its_explanation_429_with_retry_after(served) -> None:
    """sst2 batches up to 8 requests for 300 ms here: an explanation sent with predictions shares their batch,
    and is refused at once (429, Retry-After: 1) rather than make them wait."""
    server, _ = served
    with ThreadPoolExecutor(4) as pool:
        explained = pool.submit(server.post, "/explanations/sst2", {"text": " ".join(["word"] * 126), "options": {"steps": 20}})
        time.sleep(0.05)
        predicted = list(pool.map(lambda body: server.post("/predictions/sst2", body), inputs(False, 3)))
        answer = explained.result()
    assert [p.status_code for p in predicted] == [200] * 3
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "1", (answer.status_code, answer.headers)
    assert ErrorResponse.model_validate_json(answer.text).type == "Busy"
    assert max(p.elapsed.total_seconds() for p in predicted) < 2


def test_the_archive_task_decides_text_pair(served) -> None:
    server, _ = served
    single = server.post("/predictions/sst2", {"text": "A man sleeps.", "text_pair": "Nobody sleeps."})
    assert single.status_code == 400 and "task: single" in single.json()["message"]
    pair = server.post("/explanations/rte-pruned", {"text": "A man sleeps.", "options": {"steps": 1}})
    assert pair.status_code == 400 and "task: pair" in pair.json()["message"]


def test_a_body_over_max_request_size_is_refused_by_the_frontend(served) -> None:
    """TorchServe's frontend refuses a body over config.properties' max_request_size before any handler sees
    it: 413 with an empty body (the README states this exception to the ErrorResponse rule)."""
    server, _ = served
    answer = server.post("/predictions/sst2", b'{"text": "' + b"a" * 1_100_000 + b'"}')
    assert answer.status_code == 413 and answer.content == b""
    assert server.post("/predictions/sst2", {"text": "fine"}).status_code == 200


def test_no_key_and_no_request_text_in_any_log(served) -> None:
    server, _ = served
    secret_text = "zebra-quokka-marmalade"
    key = server.inference_key
    url = f"{server.inference_url}/predictions/sst2?key={key}&token={key}"
    assert requests.post(url, json={"text": secret_text}, headers=server.headers, timeout=30).status_code == 200
    assert server.post("/explanations/sst2", {"text": secret_text, "options": {"steps": 1}}).status_code == 200
    assert server.post("/predictions/sst2", {"text": secret_text, "txt": secret_text}).status_code == 400
    time.sleep(2)  # the frontend writes its logs asynchronously
    logs = sorted(server.logs.glob("*.log"))
    assert logs and not (server.logs / "access_log.log").exists()
    for log in logs:
        text = log.read_text(errors="replace")
        assert key not in text and secret_text not in text, log.name
        assert not re.search(r"\[(DEBUG|TRACE)\s*\]", text), f"{log.name} logs below INFO"
        assert log.stat().st_mode & 0o077 == 0, f"{log.name} is readable by others"
    launcher = server.workdir / "launcher.log"  # the copy of the frontend's log on its standard output
    assert key not in launcher.read_text(errors="replace") and launcher.stat().st_mode & 0o077 == 0


def test_environment_cannot_switch_authorization_off_or_the_model_api_on(served) -> None:
    """The server was started with TS_DISABLE_TOKEN_AUTHORIZATION=true and TS_ENABLE_MODEL_API=true in its
    environment: config.properties has enable_envvars_config=false, so both are ignored."""
    server, _ = served
    assert requests.post(f"{server.inference_url}/predictions/sst2", json={"text": "fine"}, timeout=30).status_code == 400
    assert management(server, "GET", "/models", key=None).status_code == 400  # no key
    registering = management(server, "POST", "/models?url=sst2.mar&model_name=again")
    assert registering.status_code == 405, registering.text
    assert management(server, "DELETE", "/models/rte").status_code == 405
    assert "enable_envvars_config=false" in (REPO / "config.properties").read_text()


def test_management_api_is_loopback_only(served) -> None:
    """The management API (describing and scaling models, with the management key) listens on 127.0.0.1 only."""
    server, _ = served
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outward interface
            address = probe.getsockname()[0]
        except OSError:
            address = None
    if address and not address.startswith("127."):
        for port in (server.ports["management"], server.ports["inference"], server.ports["metrics"]):
            with socket.socket() as connection, pytest.raises(OSError):
                connection.settimeout(5)
                connection.connect((address, port))
    assert management(server, "GET", "/models/sst2").status_code == 200


def test_served_answers_stay_within_configured_sizes_and_timeouts() -> None:
    """The config's answer size and timeout cover the worst request the default limits admit."""
    from auditor.serving.torchserve import read_properties

    properties = read_properties(REPO / "config.properties")
    limits = ServingLimits()
    assert int(properties["max_response_size"]) > limits.max_response_bytes
    models = json.loads(properties["models"])
    assert models["sst2"]["1.0"]["responseTimeout"] >= 120
    # predictions never wait behind explanations: batches of one request, more workers than explanation slots
    slots = HandlerSettings().explanation_slots
    for name, versions in models.items():
        assert versions["1.0"]["batchSize"] == 1 and versions["1.0"]["minWorkers"] > slots, name


def test_pruned_archives_keep_the_float16_weights(served) -> None:
    """The PyTorch archive holds the pruned checkpoint's float16 weights; the ONNX archive holds them once, in
    its graph (float16, cast to float32 when the session starts), beside the map explanations read them by."""
    server, _ = served
    with zipfile.ZipFile(server.model_store / "rte-pruned.mar") as archive:
        stored = archive.read("model.safetensors")
    header = json.loads(stored[8 : 8 + int.from_bytes(stored[:8], "little")])
    assert {entry["dtype"] for name, entry in header.items() if name != "__metadata__"} == {"F16"}
    with zipfile.ZipFile(server.model_store / "sst2-pruned-onnx.mar") as archive:
        assert "model.safetensors" not in archive.namelist() and "onnx_weights.json" in archive.namelist()
        graph = onnx.load_from_string(archive.read("model.onnx")).graph
    assert {i.data_type for i in graph.initializer if len(i.dims) > 0} == {onnx.TensorProto.FLOAT16, onnx.TensorProto.INT64}
