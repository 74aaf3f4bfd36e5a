"""Victim models for TextAttack: ``ModelWrapper`` subclasses that return class probabilities for a list of
inputs (a string, or a (text, text_pair) tuple for pair tasks).

- ``LocalVictim``: a Hugging Face classifier loaded with ``auditor.models.load_classifier``; batches are
  padded to their longest input only (TextAttack's ``HuggingFaceModelWrapper`` pads every input to 512).
- ``OnnxVictim``: an ONNX Runtime session (``auditor.export.OnnxClassifier``) with the model's tokenizer.
- ``RemoteVictim``: a model deployed behind TorchServe's ``POST /predictions/{name}``: concurrent requests
  with a bearer token, a timeout and bounded retries; a server that cannot be reached is an AuditorError.
"""

from __future__ import annotations

import re
import threading
import time
from abc import abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

import auditor.textattack_env  # noqa: F401  (NLTK_DATA before textattack)
from textattack.models.wrappers import ModelWrapper

from auditor.errors import AuditorError, InputError
from auditor.models import Classifier, load_classifier
from auditor.predict import softmax, torch_logits
from auditor.schemas import Prediction, VictimIdentity

TextInput = str | tuple[str, ...]


class Victim(ModelWrapper):
    """Probabilities (inputs × classes, label-id order) for TextAttack inputs, in batches of ``batch_size``;
    counts the inputs it classified and the seconds it spent."""

    batch_size: int = 32

    def __init__(self) -> None:
        self.model = self  # TextAttack's goal functions look the model up here
        self.inputs = 0
        self.seconds = 0.0
        self._lock = threading.Lock()

    @property
    @abstractmethod
    def identity(self) -> VictimIdentity: ...

    @property
    def labels(self) -> list[str]:
        return self.identity.labels

    @abstractmethod
    def probabilities(self, texts: list[str], text_pairs: list[str] | None) -> np.ndarray:
        """Class probabilities for one batch."""

    def __call__(self, text_input_list: Sequence[TextInput]) -> np.ndarray:
        if not len(text_input_list):
            return np.zeros((0, len(self.labels)))
        started = time.perf_counter()
        rows = [(item, None) if isinstance(item, str) else (item[0], item[1]) for item in text_input_list]
        order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]) + len(rows[i][1] or ""))
        result = np.zeros((len(rows), len(self.labels)))
        for start in range(0, len(order), self.batch_size):
            chosen = order[start : start + self.batch_size]
            texts = [rows[i][0] for i in chosen]
            pairs = [rows[i][1] for i in chosen]
            result[chosen] = self.probabilities(texts, None if pairs[0] is None else pairs)
        with self._lock:
            self.inputs += len(rows)
            self.seconds += time.perf_counter() - started
        return result


class LocalVictim(Victim):
    def __init__(self, classifier: Classifier, batch_size: int = 32, location: str | None = None) -> None:
        super().__init__()
        self.classifier = classifier
        self.batch_size = batch_size
        self._identity = VictimIdentity(
            kind="local", location=location or classifier.identity.name, labels=classifier.labels, model=classifier.identity
        )

    @property
    def identity(self) -> VictimIdentity:
        return self._identity

    def probabilities(self, texts: list[str], text_pairs: list[str] | None) -> np.ndarray:
        return softmax(torch_logits(self.classifier, self.classifier.encode(texts, text_pairs, truncate=True)))


class OnnxVictim(Victim):
    """``onnx_classifier.logits(encoding)`` on batches tokenized by ``tokenizer`` (padded to the longest)."""

    def __init__(self, onnx_classifier, tokenizer, labels: list[str], location: str, batch_size: int = 32) -> None:
        super().__init__()
        self.onnx = onnx_classifier
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self._identity = VictimIdentity(kind="onnx", location=location, labels=labels)

    @property
    def identity(self) -> VictimIdentity:
        return self._identity

    def probabilities(self, texts: list[str], text_pairs: list[str] | None) -> np.ndarray:
        encoding = self.tokenizer(texts, text_pairs, padding=True, truncation=True, return_tensors="np")
        return softmax(self.onnx.logits(encoding))


ENDPOINT_PATTERN = re.compile(r"^https?://[^/]+(/.*)?/predictions/[^/]+/?$")


class RemoteVictim(Victim):
    """A TorchServe endpoint ``http(s)://host:port/predictions/NAME``; one request per input, ``concurrency``
    at a time. Connection failures, timeouts and 5xx answers are retried ``retries`` times with exponential
    back-off; then, and on any 4xx answer, an AuditorError says what went wrong."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        concurrency: int = 8,
        backoff: float = 0.5,
    ) -> None:
        super().__init__()
        if not ENDPOINT_PATTERN.match(url):
            raise InputError(f"endpoint must look like http://HOST:PORT/predictions/MODEL, got {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.batch_size = concurrency * 4
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=concurrency)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="auditor-remote")
        self._identity: VictimIdentity | None = None

    @property
    def identity(self) -> VictimIdentity:
        if self._identity is None:
            probe = self._predict("a", None)  # the endpoint's labels come with any prediction
            self._identity = VictimIdentity(kind="endpoint", location=self.url, labels=probe.labels)
        return self._identity

    def probabilities(self, texts: list[str], text_pairs: list[str] | None) -> np.ndarray:
        pairs = text_pairs if text_pairs is not None else [None] * len(texts)
        predictions = list(self.pool.map(self._predict, texts, pairs))
        return np.array([p.probabilities for p in predictions], dtype=np.float64)

    def _predict(self, text: str, text_pair: str | None) -> Prediction:
        body = {"text": text} if text_pair is None else {"text": text, "text_pair": text_pair}
        failure = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self.session.post(self.url, json=body, timeout=self.timeout)
            except requests.Timeout:
                failure = f"no answer within {self.timeout:g} s"
                continue
            except requests.ConnectionError as error:
                failure = f"cannot connect ({type(error).__name__})"
                continue
            if response.status_code >= 500:
                failure = f"HTTP {response.status_code}: {response.text[:200]}"
                continue
            if response.status_code != 200:
                raise AuditorError(f"{self.url} refused the request: HTTP {response.status_code}: {response.text[:300]}")
            try:
                return Prediction.model_validate_json(response.content)
            except ValueError:
                raise AuditorError(f"{self.url} did not answer with a prediction: {response.text[:300]}") from None
        raise AuditorError(f"{self.url} is unreachable after {self.retries + 1} attempts: {failure}; is the server running?")

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.session.close()


def is_endpoint(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def open_victim(location: str, token: str | None = None, batch_size: int = 32, threads: int | None = None) -> Victim:
    """A model directory (or ``.onnx`` file next to its tokenizer) or an endpoint URL as a victim; ``threads``
    fixes ONNX Runtime's intra-op threads (PyTorch's are per process: ``torch.set_num_threads``)."""
    if is_endpoint(location):
        return RemoteVictim(location, token=token)
    path = Path(location)
    if path.suffix == ".onnx":
        from transformers import AutoConfig, AutoTokenizer

        from auditor.export import OnnxClassifier

        if not path.is_file():
            raise InputError(f"ONNX file not found: {path}")
        config = AutoConfig.from_pretrained(path.parent)
        labels = [config.id2label[i] for i in range(config.num_labels)]
        tokenizer = AutoTokenizer.from_pretrained(path.parent)
        return OnnxVictim(OnnxClassifier(path, path.parent, threads=threads), tokenizer, labels, str(path), batch_size)
    return LocalVictim(load_classifier(location), batch_size=batch_size, location=str(location))
