"""Load on a served model, as clients make it: concurrent prediction clients (throughput and latency), and
explanation storms, many explanations at the limits at once while predictions run (``bench/load.py``,
tests/test_storm.py).

A storm is measured against a quiet stretch of the same length: the same prediction clients without the
explanations, run right after it, so that both see the same machine.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests

AT_THE_LIMITS = " ".join(["word"] * 126)
"""A text of 128 tokens with [CLS] and [SEP] for the fixture models' tokenizer: the default ``max_tokens``."""


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


@dataclass
class LoadResult:
    """Requests, errors, latencies and seconds of one model, summed over the rounds."""

    model: str
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    accuracy: float = float("nan")

    @property
    def throughput(self) -> float:
        return (self.requests - self.errors) / self.seconds

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


class PredictionClient:
    """One client's keep-alive connection for ``POST /predictions/{model}``.

    It uses ``http.client`` rather than ``requests``: the clients share the server's cores, and ``requests``
    spends about three times the CPU per call, which would be measured as the server's.
    """

    def __init__(self, url: str, key: str, model: str, timeout_s: float) -> None:
        address = urlsplit(url)
        self.connection = http.client.HTTPConnection(address.hostname, address.port, timeout=timeout_s)
        self.path = f"{address.path.rstrip('/')}/predictions/{model}"
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def predict(self, text: str) -> int | str:
        """The answer's HTTP status, or the name of the error when no answer came (the next call reconnects)."""
        try:
            self.connection.request("POST", self.path, body=json.dumps({"text": text}), headers=self.headers)
            answer = self.connection.getresponse()
            answer.read()
            return answer.status
        except (OSError, http.client.HTTPException) as error:
            self.connection.close()
            return type(error).__name__

    def close(self) -> None:
        self.connection.close()


def run_load(url: str, key: str, result: LoadResult, texts: list[str], clients: int, per_client: int, offset: int) -> None:
    """``clients`` threads, each with its own keep-alive connection (``PredictionClient``), send ``per_client``
    requests in turn; adds the requests, errors, latencies and wall time to ``result``."""
    lock = threading.Lock()
    start_barrier = threading.Barrier(clients)

    def client(index: int) -> None:
        predictions = PredictionClient(url, key, result.model, timeout_s=60)
        start_barrier.wait()
        for i in range(per_client):
            began = time.perf_counter()
            ok = predictions.predict(texts[(offset + index * per_client + i) % len(texts)]) == 200
            elapsed = (time.perf_counter() - began) * 1000
            with lock:
                result.latencies_ms.append(elapsed)
                result.errors += not ok
        predictions.close()

    began = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    result.seconds += time.perf_counter() - began
    result.requests += clients * per_client


@dataclass(frozen=True)
class Storm:
    """``count`` explanations of ``layers`` (with their matrices) at the limits sent at once, then, once they
    are answered, ``then_full`` explanations of every layer at the limit cost (20 steps, 128 tokens)."""

    name: str
    count: int
    layers: tuple[int, ...]
    then_full: int = 0

    def bodies(self) -> tuple[list[dict], list[dict]]:
        first = {"text": AT_THE_LIMITS, "options": {"steps": 20, "layers": list(self.layers), "include_matrices": True}}
        full = {"text": AT_THE_LIMITS, "options": {"steps": 20}}
        return [first] * self.count, [full] * self.then_full


STORMS = (
    Storm("8 x layer [0] + matrices", 8, (0,)),
    Storm("16 x layer [5] + matrices", 16, (5,)),
    Storm("16 x layers [0, 1] + matrices", 16, (0, 1)),
    Storm("7 x layers [0, 1] + matrices, then one full-cost", 7, (0, 1), then_full=1),
)
"""The storms that made predictions wait 18 s to 166 s before explanations had capacity of their own."""


@dataclass
class StormResult:
    """Prediction latencies and statuses during a storm and during the quiet stretch before it; explanation
    statuses with their Retry-After values and latencies."""

    storm: str
    quiet_ms: list[float] = field(default_factory=list)
    storm_ms: list[float] = field(default_factory=list)
    prediction_statuses: Counter = field(default_factory=Counter)
    explanation_statuses: list[int] = field(default_factory=list)
    explanation_ms: list[float] = field(default_factory=list)
    retry_after_s: list[int] = field(default_factory=list)
    retry_ratios: list[float] = field(default_factory=list)
    """Per 429: its Retry-After ÷ the seconds until the next explanation of the storm was answered 200 (when the
    slot it waited for freed), the true wait at least 1 s as Retry-After counts whole seconds."""
    seconds: float = 0.0

    def merge(self, other: StormResult) -> None:
        self.quiet_ms += other.quiet_ms
        self.storm_ms += other.storm_ms
        self.prediction_statuses += other.prediction_statuses
        self.explanation_statuses += other.explanation_statuses
        self.explanation_ms += other.explanation_ms
        self.retry_after_s += other.retry_after_s
        self.retry_ratios += other.retry_ratios
        self.seconds += other.seconds

    def summary(self) -> str:
        counts = Counter(self.explanation_statuses)
        statuses = ", ".join(f"{count} x {status}" for status, count in sorted(counts.items()))
        retry = f", Retry-After {min(self.retry_after_s)}-{max(self.retry_after_s)} s" if self.retry_after_s else ""
        computed = [ms / 1000 for ms, status in zip(self.explanation_ms, self.explanation_statuses) if status == 200]
        took = f", 200s took {min(computed):.1f}-{max(computed):.1f} s" if computed else ""
        if self.retry_ratios:
            took += f", Retry-After / true wait {min(self.retry_ratios):.2f}-{max(self.retry_ratios):.2f}"
        return (
            f"{self.storm:<50}{len(self.quiet_ms):>6}{percentile(self.quiet_ms, 0.5):>8.0f}{percentile(self.quiet_ms, 0.99):>8.0f}"
            f"{max(self.quiet_ms, default=float('nan')):>8.0f}{len(self.storm_ms):>6}{percentile(self.storm_ms, 0.5):>8.0f}"
            f"{percentile(self.storm_ms, 0.99):>8.0f}{max(self.storm_ms, default=float('nan')):>8.0f}   {statuses}{retry}{took}"
        )


STORM_HEADER = (
    f"{'storm':<50}{'quiet':>6}{'p50':>8}{'p99':>8}{'max':>8}{'storm':>6}{'p50':>8}{'p99':>8}{'max':>8}   explanations\n"
    f"{'':<50}{'preds':>6}{'ms':>8}{'ms':>8}{'ms':>8}{'preds':>6}{'ms':>8}{'ms':>8}{'ms':>8}"
)


def _predict_until(url: str, key: str, model: str, texts: list[str], clients: int, done: Callable[[], bool], latencies: list[float], statuses: Counter) -> None:
    """``clients`` prediction clients in a loop until ``done()``; each request's latency and status recorded."""
    lock = threading.Lock()

    def client(index: int) -> None:
        predictions = PredictionClient(url, key, model, timeout_s=120)
        sent = 0
        while not done():
            began = time.perf_counter()
            status = predictions.predict(texts[(index * 7919 + sent) % len(texts)])
            with lock:
                latencies.append((time.perf_counter() - began) * 1000)
                statuses[status] += 1
            sent += 1
        predictions.close()

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))


def run_storm(url: str, key: str, model: str, storm: Storm, texts: list[str], clients: int = 4, min_seconds: float = 3.0) -> StormResult:
    """The storm, then a quiet stretch as long as it took (at least ``min_seconds``): ``clients`` prediction
    clients throughout, and during the storm its explanations, each sent once."""
    result = StormResult(storm.name)
    explanations_done = threading.Event()
    lock = threading.Lock()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    answered: list[tuple[float, object, int | None]] = []  # (when, status, Retry-After) per explanation

    def explain(body: dict) -> None:
        began = time.perf_counter()
        try:
            answer = requests.post(f"{url}/explanations/{model}", data=json.dumps(body), headers=headers, timeout=300)
            status, retry = answer.status_code, answer.headers.get("Retry-After")
        except requests.RequestException as error:
            status, retry = type(error).__name__, None
        ended = time.perf_counter()
        with lock:
            result.explanation_statuses.append(status)
            result.explanation_ms.append((ended - began) * 1000)
            answered.append((ended, status, None if retry is None else int(retry)))
            if retry is not None:
                result.retry_after_s.append(int(retry))

    def storm_explanations() -> None:
        first, then = storm.bodies()
        for wave in (first, then):
            if wave:
                with ThreadPoolExecutor(len(wave)) as pool:
                    list(pool.map(explain, wave))
        explanations_done.set()

    stormer = threading.Thread(target=storm_explanations)
    storm_started = time.perf_counter()
    stormer.start()
    _predict_until(url, key, model, texts, clients, lambda: explanations_done.is_set() and time.perf_counter() - storm_started >= min_seconds,
                   result.storm_ms, result.prediction_statuses)  # fmt: skip
    stormer.join()
    storm_seconds = time.perf_counter() - storm_started
    computed = sorted(when for when, status, _ in answered if status == 200)
    for when, status, retry in answered:
        freed = next((end for end in computed if end > when), None)
        if status == 429 and retry is not None and freed is not None:
            result.retry_ratios.append(retry / max(freed - when, 1.0))
    quiet_started = time.perf_counter()
    _predict_until(url, key, model, texts, clients, lambda: time.perf_counter() - quiet_started >= storm_seconds, result.quiet_ms, result.prediction_statuses)
    result.seconds = time.perf_counter() - storm_started
    return result
