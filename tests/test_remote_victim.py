"""The endpoint victim against a small local HTTP server that misbehaves on purpose: 429 and 503 answers are
retried (urllib3 ``Retry``, honouring Retry-After), a 4xx is reported at once, batched bodies go out as
``{"inputs": […]}`` of at most ``inputs_per_request``. Answers through a real TorchServe: tests/test_serving.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from auditor.errors import AuditorError
from auditor.schemas import IDENTITY_HEADERS, ServedModelRef
from auditor.victims import RemoteVictim

PREDICTION = {"label": "positive", "label_id": 1, "probabilities": [0.25, 0.75], "labels": ["negative", "positive"]}


class Scripted(BaseHTTPRequestHandler):
    """Answers the statuses in ``server.script`` first (then 200), and records every body it got."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.bodies.append(body)
            status = self.server.script.pop(0) if self.server.script else 200
        answer = [PREDICTION] * len(body["inputs"]) if "inputs" in body else PREDICTION
        data = json.dumps(answer if status == 200 else {"code": status, "type": "X", "message": "scripted"}).encode()
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for header, value in self.server.identity.items():
            self.send_header(header, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    httpd.script, httpd.bodies, httpd.lock, httpd.identity = [], [], threading.Lock(), {}
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def victim_of(server: ThreadingHTTPServer, **options: object) -> RemoteVictim:
    return RemoteVictim(f"http://127.0.0.1:{server.server_address[1]}/predictions/sst2", backoff=0.01, timeout=5, **options)


def test_busy_and_failing_answers_are_retried(server: ThreadingHTTPServer) -> None:
    server.script = [429, 503, 500]
    victim = victim_of(server, retries=3, inputs_per_request=1, concurrency=1)
    assert victim(["a film"]).tolist() == [[0.25, 0.75]]
    assert [body["text"] for body in server.bodies] == ["a"] * 4 + ["a film"]  # the labels' probe: three refused, then answered
    server.script = [503] * 5
    with pytest.raises(AuditorError, match="unreachable after 3 attempts: HTTP 503"):
        victim_of(server, retries=2, inputs_per_request=1, concurrency=1)(["a film"])


def test_a_refused_request_is_not_retried(server: ThreadingHTTPServer) -> None:
    server.script = [400]
    with pytest.raises(AuditorError, match="refused the request: HTTP 400"):
        victim_of(server, retries=3, inputs_per_request=1)(["a film"])
    assert len(server.bodies) == 1


def test_batched_requests_carry_at_most_inputs_per_request(server: ThreadingHTTPServer) -> None:
    texts = [f"text {i}" for i in range(11)]
    assert victim_of(server, inputs_per_request=4, concurrency=2)(texts).shape == (11, 2)
    batches = [body for body in server.bodies if "inputs" in body]  # besides the probe that learns the labels
    sizes = sorted(len(body["inputs"]) for body in batches)
    assert sizes == [3, 4, 4] and sorted(item["text"] for body in batches for item in body["inputs"]) == sorted(texts)


def test_the_model_named_by_the_answers_is_recorded_and_a_change_is_an_error(server: ThreadingHTTPServer) -> None:
    server.identity = dict(zip(IDENTITY_HEADERS, ("sst2", "1.0", "aaaa")))
    victim = victim_of(server, inputs_per_request=1, concurrency=1)
    assert victim.identity.served == ServedModelRef(name="sst2", version="1.0", weights_sha256="aaaa")
    assert victim.identity.title().endswith("/predictions/sst2 (sst2/1.0@aaaa)")
    victim(["a film"])
    server.identity = dict(zip(IDENTITY_HEADERS, ("sst2", "2.0", "bbbb")))  # a new release behind the same name and port
    with pytest.raises(AuditorError, match=r"changed models during the audit: it answered as sst2/1.0@aaaa, now as sst2/2\.0@bbbb"):
        victim(["another film"])
    server.identity = {}
    assert victim_of(server, inputs_per_request=1).identity.served is None  # a server that names no model
