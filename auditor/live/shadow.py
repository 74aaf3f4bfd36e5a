"""Shadow mode in a serving worker: sampled prediction requests, once the primary has answered them, are replayed
on the shadow model by a background thread, and both answers become rows of the comparisons database
(``auditor.live.records``).

The client never waits for the shadow: ``ShadowReplayer.submit`` only puts the request into a bounded queue
(or counts it dropped, cause ``queue_full``, when the queue is full) and returns. The thread replays the
requests waiting in the queue together, in ``{"inputs": […]}`` requests of at most ``batch_inputs`` inputs (one
forward pass of the shadow, one transaction of the database), so that the shadow's work per input falls as
traffic rises; each row's ``shadow_latency_ms`` is the round trip of the request that carried it. Each
sampled input ends as exactly one of

- a row of ``comparisons`` (and ``ShadowComparisons`` + 1 in the metrics), or
- a drop counted by cause (``DROP_CAUSES``) in the ``ShadowDrops`` metric and in the database's ``drops``
  table; a database that cannot be written counts its drops (cause ``database``) in the metrics only and
  logs one error line per model load (the first worker to fail creates a marker file in the archive folder
  that all the model's workers share).

so that ``ShadowRequests`` = ``ShadowComparisons`` + ``ShadowDrops`` summed over causes, exactly; only what a
worker killed with SIGKILL had in its queue is lost with it.

The shadow is found at ``ShadowSettings.url`` (the same TorchServe or another) with the inference key of
``key_file``, by default the key_file.json of the TorchServe this worker runs in: its parent process, the
frontend, is started in the directory where torchserve writes that file. ``check_registered`` runs when the
primary loads: an unknown shadow model (HTTP 404) or an inference API that does not accept connections within
``startup_wait_s`` fail the primary's load with a ``ModelLoadError``. TorchServe registers every model of
``load_models`` before it opens its inference port, so the order of the primary and the shadow in
``load_models`` does not matter; a read timeout of the probe means the frontend queued it for a model that
exists but has no free worker yet, which is registered.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import requests
from pydantic import ValidationError

from auditor.errors import InputError, ModelLoadError
from auditor.live.identity import model_from_headers
from auditor.live.records import RecordStore, input_digest
from auditor.schemas import ComparisonRecord, Prediction, PredictionBatchRequest, PredictionRequest, ServedModelRef, ShadowSettings

logger = logging.getLogger(__name__)

DROP_CAUSES = (
    "queue_full",  # the worker's queue of requests waiting for the shadow was full
    "shadow_unreachable",  # no connection to the shadow's inference API
    "shadow_timeout",  # no answer within timeout_s
    "shadow_error",  # an answer other than 200 (e.g. 503: the shadow has no workers)
    "shadow_answer",  # a 200 whose body is not one prediction per input
    "database",  # the comparisons could not be written
)
ERROR_MARKER = ".shadow-database-error-logged"


class ShadowMetrics:
    """TorchServe custom metrics of the comparison, emitted through the worker's metrics cache (``context.metrics``,
    safe to call from the replay thread: each call writes one ``[METRICS]`` line that the frontend parses; with
    ``metrics_mode=prometheus`` and ``model_metrics_auto_detect=true`` they are on the metrics port).

    Counters ``ShadowRequests`` (sampled inputs), ``ShadowComparisons``, ``ShadowDisagreements``,
    ``ShadowTransitions`` (dimension ``Transition``: ``primary label->shadow label``), ``ShadowDrops``
    (dimension ``Cause``); gauge ``ShadowLatency`` (ms, the last shadow answer's round trip). Every metric has the
    dimensions ``ModelName`` (the primary) and ``Level`` (``Model``)."""

    def __init__(self, cache, model_name: str) -> None:
        self.cache = cache
        self.model_name = model_name
        self.lock = threading.Lock()

    def _dimensions(self, **extra: str) -> list:
        from ts.metrics.dimension import Dimension

        named = {"ModelName": self.model_name, "Level": "Model", **extra}
        return [Dimension(name, value) for name, value in named.items()]

    def _count(self, name: str, value: int, **extra: str) -> None:
        if self.cache is None or value <= 0:
            return
        with self.lock:
            self.cache.add_counter(name, value, dimensions=self._dimensions(**extra))

    def sampled(self, inputs: int) -> None:
        self._count("ShadowRequests", inputs)

    def dropped(self, cause: str, inputs: int) -> None:
        self._count("ShadowDrops", inputs, Cause=cause)

    def compared(self, records: list[ComparisonRecord]) -> None:
        self._count("ShadowComparisons", len(records))
        self._count("ShadowDisagreements", sum(record.primary_label != record.shadow_label for record in records))
        for (before, after), count in Counter((record.primary_label, record.shadow_label) for record in records).items():
            self._count("ShadowTransitions", count, Transition=f"{before}->{after}")
        if records and self.cache is not None:
            from ts.metrics.metric_type_enum import MetricTypes

            with self.lock:
                self.cache.add_metric("ShadowLatency", round(records[-1].shadow_latency_ms, 2), "ms", dimensions=self._dimensions(),
                                      metric_type=MetricTypes.GAUGE)  # fmt: skip


def inference_key(settings: ShadowSettings) -> str | None:
    """The shadow server's inference key: from ``settings.key_file``, else from the key_file.json of the
    TorchServe this worker runs in (in its parent process's working directory), else none (a server without
    token authorization). ModelLoadError when a named key file cannot be read."""
    named = settings.key_file is not None
    path = Path(settings.key_file) if named else Path(f"/proc/{os.getppid()}/cwd/key_file.json")
    try:
        return str(json.loads(path.read_text())["inference"]["key"])
    except FileNotFoundError:
        if named:
            raise ModelLoadError(f"shadow key file {path} does not exist") from None
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelLoadError(f"cannot read the shadow's inference key from {path} (want TorchServe's key_file.json): {error}") from None


@dataclass
class _Sampled:
    """A request the primary answered 200, waiting for the shadow."""

    ts: float
    body: object
    answer: str
    inputs: int
    latency_ms: float


def _inputs(body: object) -> list[PredictionRequest]:
    from auditor.serving.service import decode_body

    data = decode_body(body)
    if "inputs" in data:
        return PredictionBatchRequest.model_validate(data).inputs
    return [PredictionRequest.model_validate(data)]


def _groups(items: list[_Sampled], batch_inputs: int) -> list[list[_Sampled]]:
    """``items`` in order, in groups of at most ``batch_inputs`` inputs (a request with more is a group alone)."""
    groups: list[list[_Sampled]] = []
    for item in items:
        if groups and sum(other.inputs for other in groups[-1]) + item.inputs <= batch_inputs:
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def _predictions(answer: str) -> list[Prediction]:
    parsed = json.loads(answer)
    return [Prediction.model_validate(item) for item in (parsed if isinstance(parsed, list) else [parsed])]


class ShadowReplayer:
    """One worker's shadow replay: ``submit`` from the request path, a daemon thread for the rest (see the
    module docstring). ``marker_dir`` is a folder all the model's workers share (the archive's)."""

    def __init__(self, settings: ShadowSettings, primary: ServedModelRef, metrics: ShadowMetrics, marker_dir: Path) -> None:
        self.settings = settings
        self.primary = primary
        self.metrics = metrics
        self.marker = Path(marker_dir) / ERROR_MARKER
        self.key = inference_key(settings)
        self.endpoint = f"{settings.url}/predictions/{settings.model}"
        self.headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {self.key}"} if self.key else {})}
        self.session = requests.Session()
        self.queue: queue.Queue[_Sampled] = queue.Queue(settings.queue_size)
        self.random = random.Random()
        self.lock = threading.Lock()
        self.unwritten: Counter[str] = Counter()  # drops counted in the metrics, not yet in the database
        self.store: RecordStore | None = None
        self.database_failed = False
        self.thread = threading.Thread(target=self._run, name="auditor-shadow", daemon=True)

    def start(self) -> None:
        """``check_registered``, then the replay thread."""
        self.check_registered()
        self.thread.start()

    def check_registered(self) -> None:
        """ModelLoadError unless the shadow's inference API knows the shadow model (see the module docstring)."""
        name, url = self.settings.model, self.settings.url
        deadline = time.monotonic() + self.settings.startup_wait_s
        while True:
            try:
                answer = self.session.post(self.endpoint, data=b"{}", headers=self.headers, timeout=3)
            except requests.Timeout as error:
                if not isinstance(error, requests.ConnectTimeout):
                    return  # queued: the model exists
                failure: Exception = error
            except requests.RequestException as error:
                failure = error
            else:
                if answer.status_code == 404:
                    raise ModelLoadError(f"shadow model {name!r} is not registered at {url} (HTTP 404: {answer.text.strip()[:200]})")
                if answer.status_code in (401, 403):
                    raise ModelLoadError(f"the inference API at {url} refused the key for shadow model {name!r} (HTTP {answer.status_code})")
                return
            if time.monotonic() > deadline:
                raise ModelLoadError(f"shadow model {name!r}: no inference API accepts connections at {url} ({type(failure).__name__})")
            time.sleep(1.0)

    # --- the request path ---------------------------------------------------------------------------------

    def submit(self, body: object, answer: str, latency_ms: float) -> None:
        """Sample one prediction request answered 200 with ``answer``; never blocks."""
        if self.random.random() >= self.settings.sample_rate:
            return
        inputs = len(json.loads(answer)) if answer.startswith("[") else 1
        self.metrics.sampled(inputs)
        try:
            self.queue.put_nowait(_Sampled(time.time(), body, answer, inputs, latency_ms))
        except queue.Full:
            self._drop("queue_full", inputs)

    # --- the replay thread --------------------------------------------------------------------------------

    def _drop(self, cause: str, inputs: int) -> None:
        self.metrics.dropped(cause, inputs)
        if cause != "database":
            with self.lock:
                self.unwritten[cause] += inputs

    def _run(self) -> None:
        while True:
            try:
                items = [self.queue.get(timeout=1.0)]
            except queue.Empty:
                if self.unwritten:
                    self._write([])
                continue
            inputs = items[0].inputs
            while inputs < self.settings.batch_inputs:  # the requests waiting now, replayed together
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                items.append(item)
                inputs += item.inputs
            records: list[ComparisonRecord] = []
            for group in _groups(items, self.settings.batch_inputs):
                try:
                    records += self._compare(group)
                except Exception:  # noqa: BLE001 - the thread must outlive any one comparison; counted, never lost
                    logger.exception("shadow comparison failed")
                    self._drop("shadow_answer", sum(item.inputs for item in group))
            self._write(records)

    def _compare(self, items: list[_Sampled]) -> list[ComparisonRecord]:
        """The shadow's answers to the inputs of ``items`` (one ``{"inputs": […]}`` request) as records; an answer
        not made is counted as a drop of every input (and no records)."""
        texts = [text for item in items for text in _inputs(item.body)]
        primary = [(item, prediction) for item in items for prediction in _predictions(item.answer)]
        inputs = sum(item.inputs for item in items)
        body = json.dumps({"inputs": [text.model_dump(exclude_none=True) for text in texts]})
        started = time.perf_counter()
        try:
            answer = self.session.post(self.endpoint, data=body.encode("utf-8"), headers=self.headers, timeout=self.settings.timeout_s)
        except requests.Timeout:
            self._drop("shadow_timeout", inputs)
            return []
        except requests.RequestException:
            self._drop("shadow_unreachable", inputs)
            return []
        latency_ms = (time.perf_counter() - started) * 1000
        if answer.status_code != 200:
            self._drop("shadow_error", inputs)
            return []
        try:
            shadow = _predictions(answer.text)
        except (ValueError, ValidationError):
            shadow = []
        if not len(shadow) == len(primary) == len(texts) == inputs:
            self._drop("shadow_answer", inputs)
            return []
        model = model_from_headers(answer.headers) or ServedModelRef(name=self.settings.model, version="", weights_sha256="unknown")
        return [
            ComparisonRecord(
                ts=item.ts, primary_model=self.primary, shadow_model=model,
                primary_label=ours.label, shadow_label=theirs.label,
                primary_probabilities=ours.probabilities, shadow_probabilities=theirs.probabilities,
                input_sha256=input_digest(text.text, text.text_pair),
                primary_latency_ms=item.latency_ms, shadow_latency_ms=latency_ms,
                text=text.text, text_pair=text.text_pair,
            )  # fmt: skip
            for text, (item, ours), theirs in zip(texts, primary, shadow)
        ]

    def _write(self, records: list[ComparisonRecord]) -> None:
        """``records`` and the drops counted since the last write, in one transaction; when the database
        cannot be written the records are counted as drops (cause ``database``, metrics only)."""
        with self.lock:
            drops, self.unwritten = self.unwritten, Counter()
        try:
            if self.store is None:
                settings = self.settings
                self.store = RecordStore(Path(settings.database), store_texts=settings.store_texts, max_rows=settings.max_rows,
                                         max_age_s=settings.max_age_s)  # fmt: skip
            self.store.insert(records, drops)
        except (sqlite3.Error, OSError, InputError) as error:
            with self.lock:
                self.unwritten.update(drops)  # written with the next records that can be
            self._close_store()
            self._drop("database", len(records))
            self._log_database_error(error)
            return
        self.metrics.compared(records)

    def _close_store(self) -> None:
        if self.store is not None:
            try:
                self.store.close()
            except sqlite3.Error:
                pass
            self.store = None

    def _log_database_error(self, error: Exception) -> None:
        """One error line per model load: the worker that creates the marker file logs it."""
        if self.database_failed:
            return
        self.database_failed = True
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except OSError:
            return  # another worker logged it
        logger.error(
            "comparisons database %s cannot be written (%s: %s); the primary serves on, comparisons are counted as drops "
            "(ShadowDrops, cause database) until it can", self.settings.database, type(error).__name__, error,
        )  # fmt: skip


def start_shadow(settings: ShadowSettings, primary: ServedModelRef, metrics_cache, model_dir: Path) -> ShadowReplayer:
    """The started replayer of a worker serving ``primary`` (ModelLoadError: the shadow is not registered);
    ``metrics_cache`` is the worker's ``context.metrics``, ``model_dir`` the archive's folder."""
    if settings.model == primary.name:
        raise ModelLoadError(f"{primary.name} names itself as its shadow: name another model (its requests would be replayed on itself)")
    replayer = ShadowReplayer(settings, primary, ShadowMetrics(metrics_cache, primary.name), model_dir)
    replayer.start()
    logger.info("shadow of %s: %s at %s, sample rate %s, comparisons in %s", primary.name, settings.model, settings.url,
                settings.sample_rate, settings.database)  # fmt: skip
    return replayer
