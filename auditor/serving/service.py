"""The work of a serving worker, without TorchServe: parse and validate request bodies, admit explanations by
their cost and answer size, run predictions in forward passes of at most ``max_batch`` inputs, and answer every
request of a server-side batch with its own status and JSON body. ``handlers/classifier_handler.py`` adapts
``Service`` to TorchServe's handler interface.

Guarantees (each request alone; a bad or expensive request never fails its neighbours):

- a malformed body (not UTF-8, not JSON, nested too deep, an integer too long to read, a wrong type, a blank
  text, a text from which the model's tokenizer produces no token, a limit exceeded (``auditor.serving.limits``),
  a ``text_pair`` the archive's task does not take or lacks) is a 400 ``ErrorResponse``; for ``{"inputs": […]}``
  the message names the input and field (``inputs[3].text_pair: …``);
- an explanation is decided before any attribution runs: over a limit on its own (steps, ``top_k``, cost
  tokens × steps × layer passes over ``max_explanation_cost``, ``auditor.serving.capacity``, an answer that could exceed ``max_response_bytes``,
  ``auditor.explain.explanation_size_bound``) a 400; over what is left of the batch's budget, in a batch with
  predictions, or with every explanation slot of the model taken (``auditor.serving.capacity``) a 429 whose
  ``retry_after_s`` comes from the cost model. Every admitted explanation is charged to the batch's budget
  before it runs, and no admitted explanation is refused afterwards;
- a prediction never waits for an explanation: a batch with predictions computes none, and the model's
  workers compute at most ``explanation_slots`` explanations at once (fewer than its workers), on a thread of
  lower priority.
"""

from __future__ import annotations

import json
import logging
import math
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from auditor.serving.capacity import ExplanationSlots, LowPriorityRunner, SlotsTaken, explanation_cost, layer_passes
from auditor.serving.memory import release_freed_memory
from auditor.serving.limits import check_chars, check_explanation, check_task, size_alternatives
from auditor.encoders import encoder_for
from auditor.errors import InputError, validation_message
from auditor.explain import explain, explanation_size_bound, validate_layers
from auditor.models import NO_TOKENS, Classifier, mark_tokenizer_notices_shown, tokenless_fields
from auditor.predict import predictions_from_logits, torch_logits
from auditor.schemas import (
    ErrorResponse,
    ExplanationOptions,
    ExplanationRequest,
    HandlerSettings,
    PredictionBatchRequest,
    PredictionList,
    PredictionRequest,
)

logger = logging.getLogger(__name__)

Request = TypeVar("Request", bound=BaseModel)
Result = TypeVar("Result")


class Busy(InputError):
    """An explanation that fits the limits but finds no capacity now: answered 429 with ``Retry-After``."""

    status = 429

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(f"{message}: retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


class Overloaded(Busy):
    """An explanation stopped at its deadline (``explanation_timeout_s``), before TorchServe's response timeout
    would kill the worker: answered 503 with ``Retry-After``."""

    status = 503


class DeadlineExceeded(Exception):
    """Raised between two passes of an attribution that has run past its deadline."""


def decode_body(body: object) -> dict:
    """A request body as TorchServe hands it over (raw bytes, text, or already-decoded JSON) → a JSON object.
    InputError for non-UTF-8 bytes, invalid or unreadable JSON (nested too deeply, an integer of more than
    4300 digits), or a body that is not a JSON object."""
    if isinstance(body, (bytes, bytearray)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as error:
            raise InputError(f"request body is not UTF-8 text: {error}") from None
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except RecursionError:
            raise InputError("request body is not valid JSON: nested too deeply") from None
        except ValueError as error:  # JSONDecodeError, and integers too long to convert
            raise InputError(f"request body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise InputError(f"request body must be a JSON object with a \"text\" field, got {type(body).__name__}")
    return body


def parse_request(body: object, request_type: type[Request]) -> Request:
    """``decode_body``, then validated as ``request_type`` (InputError naming each wrong field)."""
    data = decode_body(body)
    try:
        return request_type.model_validate(data)
    except ValidationError as error:
        raise InputError(f"invalid request: {validation_message(error)}") from None
    except RecursionError:
        raise InputError("invalid request: nested too deeply") from None


def thread_timed(call: Callable[[], Result]) -> tuple[Result, float]:
    """``call()``'s result and the CPU seconds the calling thread spent in it."""
    started = time.thread_time()
    result = call()
    return result, time.thread_time() - started


@dataclass
class Answer:
    """One request's answer: HTTP status, JSON body, and for an explanation its time and tokens (metrics)."""

    status: int
    body: str
    explanation_ms: float | None = None
    tokens: int | None = None
    retry_after_s: int | None = None

    @classmethod
    def error(cls, status: int, error: Exception) -> Answer:
        body = ErrorResponse(code=status, type=type(error).__name__, message=str(error)).model_dump_json()
        return cls(status, body, retry_after_s=getattr(error, "retry_after_s", None))


@dataclass
class _Input:
    """One text (pair) to predict, from request ``request`` at position ``position`` of its inputs."""

    request: int
    position: int
    text: str
    text_pair: str | None
    ids: dict[str, list[int]] = field(default_factory=dict)


class Service:
    """Answers a server-side batch of prediction and explanation requests for one classifier.

    Predictions run on ``onnx`` (an ``auditor.export.OnnxClassifier``) when given, else on the PyTorch model;
    explanations always on the PyTorch model, while holding one of ``slots`` (shared by the model's workers),
    on a thread ``settings.explanation_niceness`` lower in priority. Each input is tokenized once, in one call
    per batch.
    """

    def __init__(self, classifier: Classifier, settings: HandlerSettings, slots: ExplanationSlots, onnx=None) -> None:
        self.classifier = classifier
        self.settings = settings
        self.limits = settings.limits
        self.slots = slots
        self.onnx = onnx
        self.segments = encoder_for(classifier.model).takes_segments  # else token_type_ids are left out
        mark_tokenizer_notices_shown(classifier.tokenizer)  # lengths are checked here; ids are padded after tokenizing
        self.runner = LowPriorityRunner(settings.explanation_niceness)

    def warm_up(self) -> None:
        """Two explanations, a cheap and a dearer one, to load the attribution code paths and give the model's
        time model (``ExplanationSlots.time_model``) an overhead and a rate from the start. They are timed by the
        explanation thread's CPU time: a model's workers warm up all at once, and their wall times would count
        each other's work (the thread takes its share of any intra-op parallel work, so its CPU time is close to
        the wall time alone)."""
        num_layers = self.classifier.identity.num_layers
        for words, options in ((1, ExplanationOptions(steps=1, layers=[-1], include_tree=False)), (20, ExplanationOptions(steps=4, include_tree=False))):
            text = " ".join(["a fine film"] * words)
            pair = text if self.settings.task == "pair" else None
            tokens = int(self.classifier.encode([text], None if pair is None else [pair])["input_ids"].shape[1])
            _, seconds = self.runner.run(lambda: thread_timed(lambda: explain(self.classifier, text, pair, options)))  # noqa: B023 - runs now
            cost = explanation_cost(tokens, options.steps, layer_passes(validate_layers(options.layers, num_layers) or range(num_layers), num_layers))
            self.slots.record(cost, seconds, None)

    def handle(self, bodies: Sequence[object], explain_flags: Sequence[bool]) -> list[Answer]:
        """One answer per body, in order; ``explain_flags[i]`` marks a ``POST /explanations`` request."""
        answers: list[Answer | None] = [None] * len(bodies)
        inputs: list[_Input] = []
        batched: dict[int, int] = {}  # request → number of inputs, for {"inputs": […]} bodies
        explanations: list[tuple[int, ExplanationRequest]] = []
        for index, (body, explaining) in enumerate(zip(bodies, explain_flags)):
            try:
                data = decode_body(body)
                if explaining:
                    explanations.append((index, parse_request(data, ExplanationRequest)))
                elif "inputs" in data:
                    request = parse_request(data, PredictionBatchRequest)
                    if len(request.inputs) > self.limits.max_batch:
                        raise InputError(f"inputs has {len(request.inputs)} entries, more than the limit of {self.limits.max_batch}")
                    batched[index] = len(request.inputs)
                    for position, item in enumerate(request.inputs):
                        inputs.append(_Input(index, position, item.text, item.text_pair))
                else:
                    request = parse_request(data, PredictionRequest)
                    inputs.append(_Input(index, 0, request.text, request.text_pair))
            except InputError as error:
                answers[index] = Answer.error(400, error)
        self._predict(inputs, batched, answers)
        budget = self.limits.max_explanation_cost
        predicting = bool(inputs)
        for index, request in explanations:
            try:
                answers[index], cost = self._explain(request, budget, predicting)
                budget -= cost
            except Busy as error:
                answers[index] = Answer.error(error.status, error)
            except InputError as error:
                answers[index] = Answer.error(400, error)
            except Exception as error:  # noqa: BLE001 - one failed explanation must not fail the batch
                answers[index] = self._internal(index, error)
        return answers  # type: ignore[return-value]

    # --- predictions ---------------------------------------------------------------------------------------

    def _predict(self, inputs: list[_Input], batched: dict[int, int], answers: list[Answer | None]) -> None:
        """Tokenize every input once, refuse the requests with a bad input, and answer the rest."""
        valid: list[_Input] = []
        failed: set[int] = set()
        for paired in (False, True):
            group = [item for item in inputs if (item.text_pair is not None) == paired]
            if group:
                valid += self._tokenize(group, batched, answers, failed)
        valid = [item for item in valid if item.request not in failed]
        results: dict[tuple[int, int], object] = {}
        valid.sort(key=lambda item: (item.text_pair is not None, len(item.ids["input_ids"])))  # little padding
        size = self.limits.max_batch
        chunks = [valid[start : start + size] for start in range(0, len(valid), size)]
        chunks = [[item for item in chunk if (item.text_pair is not None) == paired] for chunk in chunks for paired in (False, True)]
        for chunk in filter(None, chunks):
            try:
                for item, prediction in zip(chunk, self._forward(chunk)):
                    results[item.request, item.position] = prediction
            except Exception as error:  # noqa: BLE001 - a failed forward pass fails its own requests only
                for item in chunk:
                    if answers[item.request] is None:
                        answers[item.request] = self._internal(item.request, error)
        for item in valid:
            if answers[item.request] is not None:
                continue
            if item.request in batched:
                predictions = [results[item.request, position] for position in range(batched[item.request])]
                answers[item.request] = Answer(200, PredictionList(predictions).model_dump_json())
            else:
                answers[item.request] = Answer(200, results[item.request, 0].model_dump_json())

    def _tokenize(self, group: list[_Input], batched: dict[int, int], answers: list[Answer | None], failed: set[int]) -> list[_Input]:
        """Token ids of each input (one tokenizer call for the group); a request with an input over a limit
        is answered 400 naming the input (``inputs[i]``) when it is a batch request."""
        limits = self.limits
        kept = []
        for item in group:
            try:
                check_task(self.settings.task, item.text_pair)
                check_chars(limits, item.text, item.text_pair)
                kept.append(item)
            except InputError as error:
                self._refuse(item, batched, answers, failed, error)
        if not kept:
            return []
        texts, pairs = [item.text for item in kept], None if kept[0].text_pair is None else [item.text_pair for item in kept]
        encoded = self.classifier.tokenizer(texts, pairs, truncation=False)
        for row, name in tokenless_fields(self.classifier.tokenizer, texts, pairs, encoded):
            self._refuse(kept[row], batched, answers, failed, InputError(NO_TOKENS), name)
        for row, item in enumerate(kept):
            item.ids = {name: values[row] for name, values in encoded.items() if self.segments or name != "token_type_ids"}
            try:
                self._check_tokens(len(item.ids["input_ids"]))
            except InputError as error:
                self._refuse(item, batched, answers, failed, error)
        return [item for item in kept if item.request not in failed]

    def _check_tokens(self, tokens: int) -> None:
        """InputError when an input has more tokens than ``max_tokens`` or the model's position embeddings take."""
        limit = min(self.limits.max_tokens, self.classifier.max_length)
        if tokens > limit:
            raise InputError(f"input has {tokens} tokens, more than the limit of {limit}; shorten it")

    @staticmethod
    def _refuse(
        item: _Input, batched: dict[int, int], answers: list[Answer | None], failed: set[int], error: InputError, field: str | None = None
    ) -> None:
        """Answer the item's request 400 with ``error``, naming the input (``inputs[i]``, in a batch request) and
        the ``field`` when the error is about one."""
        if item.request in failed:
            return
        failed.add(item.request)
        where = ".".join(filter(None, [f"inputs[{item.position}]" if item.request in batched else None, field]))
        answers[item.request] = Answer.error(400, InputError(f"{where}: {error}" if where else str(error)))

    def _forward(self, chunk: list[_Input]):
        encoding = self.classifier.tokenizer.pad([item.ids for item in chunk], padding=True, return_tensors="np" if self.onnx is not None else "pt")
        if self.onnx is not None:
            logits = self.onnx.logits(encoding)
        else:
            logits = torch_logits(self.classifier, encoding)
        return predictions_from_logits(logits, self.classifier.labels)

    # --- explanations --------------------------------------------------------------------------------------

    def _explain(self, request: ExplanationRequest, budget: int, predicting: bool) -> tuple[Answer, int]:
        """(answer, cost), everything decided before the attribution runs. InputError when a limit refuses the
        request; Busy when it fits the limits but not the ``budget`` left in this batch, the batch has
        predictions, or every explanation slot is taken."""
        check_task(self.settings.task, request.text_pair)
        check_chars(self.limits, request.text, request.text_pair)
        pairs = None if request.text_pair is None else [request.text_pair]
        encoded = self.classifier.tokenizer([request.text], pairs, truncation=False)
        for _, name in tokenless_fields(self.classifier.tokenizer, [request.text], pairs, encoded):
            raise InputError(f"{name}: {NO_TOKENS}")
        input_ids = encoded["input_ids"][0]
        tokens = len(input_ids)
        self._check_tokens(tokens)
        cost = check_explanation(self.limits, request, tokens, self.classifier.identity.num_layers)
        bound = explanation_size_bound(self.classifier, request.text, request.text_pair, input_ids, request.options)
        if bound > self.limits.max_response_bytes:
            alternatives = size_alternatives(self.classifier, request, input_ids, self.limits.max_response_bytes)
            raise InputError(f"the answer could be {bound} bytes, more than the answer limit of {self.limits.max_response_bytes}: {' or '.join(alternatives)}")
        if predicting:
            raise Busy("this server-side batch holds predictions, which never wait for an explanation", 1)
        if cost > budget:
            spent = self.limits.max_explanation_cost - budget
            raise Busy(f"the worker is busy with other explanations of this batch (cost {spent})", self._seconds(spent))
        timeout = self.settings.explanation_timeout_s
        deadline = time.monotonic() + timeout

        def check_deadline() -> None:
            if time.monotonic() > deadline:
                raise DeadlineExceeded

        try:
            with self.slots.reserve(cost, self.runner.native_id):
                started = time.perf_counter()
                explanation, cpu = self.runner.run(
                    lambda: thread_timed(lambda: explain(self.classifier, request.text, request.text_pair, request.options, after_pass=check_deadline))
                )
                elapsed = time.perf_counter() - started
        except SlotsTaken as taken:
            raise Busy(f"every explanation slot of this model ({taken.running}) is busy", taken.retry_after_s) from None
        except DeadlineExceeded:
            release_freed_memory()
            raise Overloaded(f"the explanation was stopped after its limit of {timeout:g} s: the server is overloaded", self._seconds(cost)) from None
        self.slots.record(cost, cpu, elapsed)
        release_freed_memory()  # the attribution's buffers, else resident until the worker ends
        body = explanation.model_dump_json()
        size = len(body.encode("utf-8"))
        if size > bound:  # never: the bound is an upper bound by construction
            logger.error("explanation answer of %d bytes exceeded its bound of %d", size, bound)
        return Answer(200, body, explanation_ms=elapsed * 1000, tokens=tokens), cost

    def _seconds(self, cost: int) -> int:
        return max(1, math.ceil(self.slots.expected_seconds(cost)))

    @staticmethod
    def _internal(index: int, error: Exception) -> Answer:
        """A 500 for an unexpected failure; the log gets the traceback's frames but not the message, which may
        quote the user's text."""
        frames = "".join(traceback.format_tb(error.__traceback__))
        logger.error("request %d failed with %s:\n%s", index, type(error).__name__, frames)
        return Answer(500, ErrorResponse(code=500, type=type(error).__name__, message="internal error").model_dump_json())
