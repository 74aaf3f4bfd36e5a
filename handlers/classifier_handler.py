"""TorchServe handler for auditor's sequence classifiers (see auditor.serving for the archive layout).

POST /predictions/{model}  body PredictionRequest  -> Prediction
POST /explanations/{model} body ExplanationRequest -> Explanation (self-attention attribution, PyTorch model)
Bad input -> HTTP 400 with an ErrorResponse body, for that request only; the rest of the batch is answered.

The handler is thin: it parses and validates requests, calls the auditor library, and serialises answers.
It runs in TorchServe's Python worker, which must be able to ``import auditor`` (install auditor into the
environment that runs ``torchserve``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from pydantic import BaseModel
from ts.metrics.metric_type_enum import MetricTypes
from ts.torch_handler.base_handler import BaseHandler

from auditor.errors import AuditorError
from auditor.explain import explain
from auditor.models import load_classifier
from auditor.predict import predictions_from_logits, torch_logits
from auditor.schemas import ErrorResponse, ExplanationRequest, PredictionRequest
from auditor.serving import check_limits, handler_settings, parse_request

logger = logging.getLogger(__name__)


class ClassifierHandler(BaseHandler):
    """Predictions on the archive's backend (PyTorch or ONNX Runtime); explanations on the PyTorch model."""

    def initialize(self, context) -> None:
        properties = context.system_properties
        model_dir = Path(properties["model_dir"])
        self.settings = handler_settings(context.model_yaml_config)
        gpu = properties.get("gpu_id")
        device = f"cuda:{gpu}" if torch.cuda.is_available() and gpu is not None else "cpu"
        if self.settings.threads is not None:
            torch.set_num_threads(self.settings.threads)
        self.classifier = load_classifier(model_dir, device=device)
        # answers name the model as served (the archive is unpacked into a folder with a random name)
        self.classifier.identity = self.classifier.identity.model_copy(update={"name": context.model_name})
        self.onnx = None
        if self.settings.backend == "onnx":
            from auditor.export import OnnxClassifier

            self.onnx = OnnxClassifier(model_dir / self.settings.onnx_file, model_dir, threads=self.settings.threads)
        self.initialized = True
        logger.info("auditor handler: %s on %s, %s", self.classifier.identity.name, device, self.settings.model_dump())

    def handle(self, data: list[dict], context) -> list[str]:
        self.context = context
        answers: list[str | None] = [None] * len(data)
        predictions: list[tuple[int, PredictionRequest]] = []
        for index, row in enumerate(data):
            body = row.get("body", row.get("data"))
            try:
                if context.get_request_header(index, "explain") == "True":
                    answers[index] = self._explain(index, parse_request(body, ExplanationRequest))
                else:
                    request = parse_request(body, PredictionRequest)
                    self._encode([request])  # validates the limits of this request alone
                    predictions.append((index, request))
            except AuditorError as error:
                answers[index] = self._error(index, 400, error)
            except Exception as error:  # noqa: BLE001 - a failure of one request must not fail the batch
                logger.exception("request %d failed", index)
                answers[index] = self._error(index, 500, error)
        logger.info("batch of %d requests, %d predictions", len(data), len(predictions))
        for chunk in self._chunks(predictions):
            try:
                for (index, _), prediction in zip(chunk, self._predict([request for _, request in chunk])):
                    answers[index] = self._json(index, prediction)
            except Exception as error:  # noqa: BLE001
                logger.exception("prediction of %d requests failed", len(chunk))
                for index, _ in chunk:
                    answers[index] = self._error(index, 500, error)
        return answers  # type: ignore[return-value]

    def _chunks(self, requests: list[tuple[int, PredictionRequest]]) -> list[list[tuple[int, PredictionRequest]]]:
        """Requests in forward passes of at most ``max_batch`` inputs, single texts and pairs apart."""
        size = self.settings.limits.max_batch
        chunks = []
        for paired in (False, True):
            group = [item for item in requests if (item[1].text_pair is not None) == paired]
            chunks += [group[start : start + size] for start in range(0, len(group), size)]
        return chunks

    def _encode(self, requests: list[PredictionRequest]):
        for request in requests:
            check_limits(self.settings.limits, request.text, request.text_pair)
        pairs = [request.text_pair for request in requests]
        return self.classifier.encode(
            [request.text for request in requests],
            None if all(pair is None for pair in pairs) else pairs,
            max_length=self.settings.limits.max_tokens,
        )

    def _predict(self, requests: list[PredictionRequest]):
        encoding = self._encode(requests)
        logits = self.onnx.logits(encoding) if self.onnx is not None else torch_logits(self.classifier, encoding)
        return predictions_from_logits(logits, self.classifier.labels)

    def _explain(self, index: int, request: ExplanationRequest) -> str:
        check_limits(self.settings.limits, request.text, request.text_pair, request.options.steps)
        tokens = int(self._encode([request])["input_ids"].shape[1])
        start = time.perf_counter()
        explanation = explain(self.classifier, request.text, request.text_pair, request.options)
        elapsed_ms = (time.perf_counter() - start) * 1000
        metrics = self.context.metrics
        metrics.add_time("AttributionTime", round(elapsed_ms, 2), idx=index, unit="ms")
        metrics.add_metric("AttributionTokens", tokens, "count", idx=index, metric_type=MetricTypes.GAUGE)
        return self._json(index, explanation)

    def _json(self, index: int, answer: BaseModel) -> str:
        self.context.set_response_content_type(index, "application/json")
        return answer.model_dump_json()

    def _error(self, index: int, code: int, error: Exception) -> str:
        phrase = "Bad Request" if code == 400 else "Internal Server Error"
        self.context.set_response_status(code, phrase, index)
        return self._json(index, ErrorResponse(code=code, type=type(error).__name__, message=str(error)))
