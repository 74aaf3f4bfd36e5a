"""Victim models for TextAttack: ``ModelWrapper`` subclasses that return class probabilities for a list of
inputs (a string, or a (text, text_pair) tuple for pair tasks).

- ``LocalVictim``: a Hugging Face classifier loaded with ``auditor.models.load_classifier``; batches are
  padded to their longest input only (TextAttack's ``HuggingFaceModelWrapper`` pads every input to 512).
- ``OnnxVictim``: an ONNX Runtime session (``auditor.export.OnnxClassifier``) with the model's tokenizer.
- ``RemoteVictim``: a model deployed behind TorchServe's ``POST /predictions/{name}``: concurrent requests
  of one or several inputs each, with a bearer token, a timeout and urllib3 retries; a server that cannot be
  reached is an AuditorError.

Every victim also explains an input (``explain``: self-attention attribution by the engine, or the same
server's ``POST /explanations/{name}``); explanation calls are counted apart from classified inputs.
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
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

import auditor.textattack_env  # noqa: F401  (NLTK_DATA before textattack)
from textattack.models.wrappers import ModelWrapper

from auditor.edits import Tokenizer
from auditor.errors import AuditorError, InputError, RequestRefused
from auditor.live.identity import model_from_headers
from auditor.models import Classifier, load_classifier
from auditor.predict import softmax, torch_logits
from auditor.schemas import Explanation, ExplanationOptions, Prediction, PredictionList, ServedModelRef, VictimIdentity

TextInput = str | tuple[str, ...]


class Victim(ModelWrapper):
    """Probabilities (inputs × classes, label-id order) for TextAttack inputs, in batches of ``batch_size``;
    counts the inputs it classified, the explanations it gave and the seconds it spent on each. ``tokenizer``:
    the model's tokenizer where the victim has it (``TokenizerCharacterEdit`` needs it), else None."""

    batch_size: int = 32
    tokenizer: Tokenizer | None = None

    def __init__(self) -> None:
        self.model = self  # TextAttack's goal functions look the model up here
        self.inputs = 0
        self.seconds = 0.0
        self.explanations = 0
        self.explanation_seconds = 0.0
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

    def explain(self, text_input: TextInput, options: ExplanationOptions) -> Explanation:
        """Self-attention attribution of one input (counted in ``explanations``)."""
        started = time.perf_counter()
        text, pair = (text_input, None) if isinstance(text_input, str) else (text_input[0], text_input[1])
        explanation = self._explain(text, pair, options)
        with self._lock:
            self.explanations += 1
            self.explanation_seconds += time.perf_counter() - started
        return explanation

    @abstractmethod
    def _explain(self, text: str, text_pair: str | None, options: ExplanationOptions) -> Explanation: ...


class LocalVictim(Victim):
    def __init__(self, classifier: Classifier, batch_size: int = 32, location: str | None = None) -> None:
        super().__init__()
        self.classifier = classifier
        self.tokenizer = classifier.tokenizer
        self.batch_size = batch_size
        self._identity = VictimIdentity(
            kind="local", location=location or classifier.identity.name, labels=classifier.labels, model=classifier.identity
        )

    @property
    def identity(self) -> VictimIdentity:
        return self._identity

    def probabilities(self, texts: list[str], text_pairs: list[str] | None) -> np.ndarray:
        return softmax(torch_logits(self.classifier, self.classifier.encode(texts, text_pairs, truncate=True)))

    def _explain(self, text: str, text_pair: str | None, options: ExplanationOptions) -> Explanation:
        from auditor.explain import explain

        return explain(self.classifier, text, text_pair, options, truncate=True)


class OnnxVictim(Victim):
    """``onnx_classifier.logits(encoding)`` on batches tokenized by ``tokenizer`` (padded to the longest).
    Explanations come from the engine on the PyTorch weights in ``model_dir`` (loaded on first use)."""

    def __init__(
        self, onnx_classifier, tokenizer, labels: list[str], location: str, batch_size: int = 32, model_dir: Path | None = None
    ) -> None:
        super().__init__()
        self.onnx = onnx_classifier
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.model_dir = model_dir
        self._explainer: LocalVictim | None = None
        self._identity = VictimIdentity(kind="onnx", location=location, labels=labels)

    def weights(self) -> Classifier | None:
        """The PyTorch model in ``model_dir``, loaded once on first use (explanations, the causal check); None
        without it."""
        if self._explainer is None and self.model_dir is not None:
            self._explainer = LocalVictim(load_classifier(self.model_dir))
        return None if self._explainer is None else self._explainer.classifier

    def _explain(self, text: str, text_pair: str | None, options: ExplanationOptions) -> Explanation:
        if self.weights() is None:
            raise InputError(f"{self._identity.location}: explanations need the PyTorch weights beside the ONNX file")
        return self._explainer._explain(text, text_pair, options)

    @property
    def identity(self) -> VictimIdentity:
        return self._identity

    def probabilities(self, texts: list[str], text_pairs: list[str] | None) -> np.ndarray:
        encoding = self.tokenizer(texts, text_pairs, padding=True, truncation=True, return_tensors="np")
        return softmax(self.onnx.logits(encoding))


ENDPOINT_PATTERN = re.compile(r"^https?://[^/]+(/.*)?/predictions/[^/]+/?$")
RETRIED_STATUSES = (429, 500, 502, 503, 504)


class RemoteVictim(Victim):
    """A TorchServe endpoint ``http(s)://host:port/predictions/NAME``, ``concurrency`` requests at a time.

    ``inputs_per_request`` = 1 sends one input per request (``PredictionRequest``); more (default 8, the default
    ``ServingLimits.max_batch``) sends up to that many
    inputs per request as ``{"inputs": […]}`` (``PredictionBatchRequest``; the archive's ``max_batch`` must
    allow it), far fewer round trips for the same answers. ``tokenizer``: the served model's tokenizer, when
    the caller has it (the endpoint does not serve one). Connection failures, timeouts, 429 and 5xx answers
    are retried ``retries`` times by urllib3's ``Retry`` (exponential back-off from ``backoff`` seconds,
    honouring Retry-After); then, and on any other 4xx answer, an AuditorError says what went wrong.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        concurrency: int = 8,
        backoff: float = 0.5,
        inputs_per_request: int = 8,
        tokenizer: Tokenizer | None = None,
    ) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        if not ENDPOINT_PATTERN.match(url):
            raise InputError(f"endpoint must look like http://HOST:PORT/predictions/MODEL, got {url!r}")
        if inputs_per_request < 1 or concurrency < 1:
            raise InputError(f"inputs per request and concurrency must be positive, got {inputs_per_request} and {concurrency}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.inputs_per_request = inputs_per_request
        self.batch_size = concurrency * inputs_per_request * (4 if inputs_per_request == 1 else 1)
        retry = Retry(
            total=retries, connect=retries, read=retries, status=retries, other=0, backoff_factor=backoff,
            status_forcelist=RETRIED_STATUSES, allowed_methods=None, raise_on_status=False, respect_retry_after_header=True,
        )  # fmt: skip
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=concurrency, max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="auditor-remote")
        self._identity: VictimIdentity | None = None
        self.served: ServedModelRef | None = None  # the model the answers name (auditor.live.identity)

    @property
    def identity(self) -> VictimIdentity:
        if self._identity is None:
            probe = self._predictions({"text": "a"})[0]  # the endpoint's labels come with any prediction
            self._identity = VictimIdentity(kind="endpoint", location=self.url, labels=probe.labels, served=self.served)
        return self._identity

    def probabilities(self, texts: list[str], text_pairs: list[str] | None) -> np.ndarray:
        pairs = text_pairs if text_pairs is not None else [None] * len(texts)
        bodies: list[dict] = [{"text": text} if pair is None else {"text": text, "text_pair": pair} for text, pair in zip(texts, pairs)]
        size = self.inputs_per_request
        if size > 1:
            bodies = [{"inputs": bodies[start : start + size]} for start in range(0, len(bodies), size)]
        predictions = [prediction for answer in self.pool.map(self._predictions, bodies) for prediction in answer]
        return np.array([p.probabilities for p in predictions], dtype=np.float64)

    def _predictions(self, body: dict) -> list[Prediction]:
        answer = self._post(self.url, body)
        try:
            return PredictionList.model_validate_json(answer).root if "inputs" in body else [Prediction.model_validate_json(answer)]
        except ValueError:
            raise AuditorError(f"{self.url} did not answer with predictions: {answer[:300]!r}") from None

    def _explain(self, text: str, text_pair: str | None, options: ExplanationOptions) -> Explanation:
        """The same server's ``POST /explanations/{name}``."""
        body = {"text": text, "options": options.model_dump(mode="json")}
        if text_pair is not None:
            body["text_pair"] = text_pair
        head, _, name = self.url.rpartition("/predictions/")
        url = f"{head}/explanations/{name}"
        answer = self._post(url, body)
        try:
            return Explanation.model_validate_json(answer)
        except ValueError:
            raise AuditorError(f"{url} did not answer with an explanation: {answer[:300]!r}") from None

    def _post(self, url: str, body: dict) -> bytes:
        """The body of a 200 answer to ``body``; AuditorError after the retries or on a 4xx answer."""
        attempts = f"after {self.retries + 1} attempts"
        try:
            response = self.session.post(url, json=body, timeout=self.timeout)
        except (requests.ConnectionError, requests.Timeout) as error:
            reason = getattr(error.args[0], "reason", error) if error.args else error
            if isinstance(reason, (ReadTimeoutError, requests.Timeout)) or isinstance(error, requests.ReadTimeout):
                failure = f"no answer within {self.timeout:g} s"
            else:
                failure = f"cannot connect ({type(reason).__name__})"
            raise AuditorError(f"{url} is unreachable {attempts}: {failure}; is the server running?") from None
        if response.status_code in RETRIED_STATUSES:
            raise AuditorError(f"{url} is unreachable {attempts}: HTTP {response.status_code}: {response.text[:200]}")
        if response.status_code != 200:
            refused = RequestRefused if response.status_code == 400 else AuditorError
            raise refused(f"{url} refused the request: HTTP {response.status_code}: {response.text[:300]}")
        self._check_served(model_from_headers(response.headers))
        return response.content

    def _check_served(self, served: ServedModelRef | None) -> None:
        """Remember the model the first answer named (identity headers); AuditorError when a later answer names
        another: the endpoint changed models during the audit, whose answers would mix two models."""
        with self._lock:
            if self.served is None:
                self.served = served
            elif served != self.served:
                raise AuditorError(
                    f"{self.url} changed models during the audit: it answered as {self.served.label()}, now as "
                    f"{served.label() if served else 'a model without identity headers'}; rerun the audit"
                )

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.session.close()


def is_endpoint(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def load_tokenizer(location: str) -> Tokenizer:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(location)
    except (OSError, ValueError) as error:
        reason = str(error).splitlines()[0].split(". ")[0]
        raise InputError(f"cannot load a tokenizer from {location!r} (a folder of tokenizer files or a hub name): {reason}") from None


def open_victim(
    location: str,
    token: str | None = None,
    batch_size: int = 32,
    inputs_per_request: int = 8,
    threads: int | None = None,
    tokenizer: str | None = None,
) -> Victim:
    """A model directory (or ``.onnx`` file next to its tokenizer) or an endpoint URL as a victim; an endpoint
    gets ``inputs_per_request`` inputs per request (1: one request per input; see ``RemoteVictim``) and the
    tokenizer in ``tokenizer`` (a directory or hub name; a local model has its own);
    ``threads`` fixes ONNX Runtime's intra-op threads (PyTorch's are per process: ``torch.set_num_threads``)."""
    if is_endpoint(location):
        loaded = load_tokenizer(tokenizer) if tokenizer is not None else None
        return RemoteVictim(location, token=token, inputs_per_request=inputs_per_request, tokenizer=loaded)
    if tokenizer is not None:
        raise InputError("--tokenizer is for an endpoint: a local model uses its own tokenizer")
    path = Path(location)
    if path.suffix == ".onnx":
        from transformers import AutoConfig, AutoTokenizer

        from auditor.export import OnnxClassifier

        if not path.is_file():
            raise InputError(f"ONNX file not found: {path}")
        config = AutoConfig.from_pretrained(path.parent)
        labels = [config.id2label[i] for i in range(config.num_labels)]
        tokenizer = AutoTokenizer.from_pretrained(path.parent)
        onnx = OnnxClassifier(path, path.parent, threads=threads)
        return OnnxVictim(onnx, tokenizer, labels, str(path), batch_size, model_dir=path.parent)
    return LocalVictim(load_classifier(location), batch_size=batch_size, location=str(location))
