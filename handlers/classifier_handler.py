"""TorchServe handler for auditor's sequence classifiers (see auditor.serving.archive for the archive layout).

POST /predictions/{model}  body PredictionRequest -> Prediction, or PredictionBatchRequest -> PredictionList
POST /explanations/{model} body ExplanationRequest -> Explanation (self-attention attribution, PyTorch model; an
ONNX archive's is built from the graph's weights, see auditor.onnx_weights)
Bad input -> HTTP 400 with an ErrorResponse body, an explanation with no capacity now -> 429 with a
Retry-After header, for that request only; the rest of the batch is answered. Every answer names the model in
the identity headers (``auditor.live.identity``); with a ``shadow`` in the archive's settings, prediction
requests answered 200 are sampled for replay on the shadow after they are answered (``auditor.live.shadow``).

The handler is thin: ``auditor.serving.service.Service`` parses, validates, admits and answers the requests; this
file adapts it to TorchServe (settings, device, statuses, content types, metrics). It runs in TorchServe's
Python worker, which must be able to ``import auditor`` (install auditor into the environment that runs
``torchserve``).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import torch
from ts.metrics.metric_type_enum import MetricTypes
from ts.torch_handler.base_handler import BaseHandler

from auditor.live.identity import identity_headers, served_model
from auditor.live.shadow import start_shadow
from auditor.serving.archive import WEIGHT_FILES, handler_settings
from auditor.serving.capacity import ExplanationSlots
from auditor.models import load_classifier
from auditor.serving.service import Service

logger = logging.getLogger(__name__)
PHRASES = {200: "OK", 400: "Bad Request", 429: "Too Many Requests", 500: "Internal Server Error"}


class ClassifierHandler(BaseHandler):
    """Predictions on the archive's backend (PyTorch or ONNX Runtime); explanations on the PyTorch model (read
    from the ONNX graph when the archive has no PyTorch weights)."""

    def initialize(self, context) -> None:
        properties = context.system_properties
        model_dir = Path(properties["model_dir"])
        settings = handler_settings(context.model_yaml_config)
        gpu = properties.get("gpu_id")
        device = f"cuda:{gpu}" if torch.cuda.is_available() and gpu is not None else "cpu"
        if settings.threads is not None:
            torch.set_num_threads(settings.threads)
        if settings.niceness:
            os.nice(settings.niceness)
        if settings.backend == "onnx" and not any((model_dir / name).is_file() for name in WEIGHT_FILES):
            from auditor.onnx_weights import load_classifier_from_onnx

            classifier = load_classifier_from_onnx(model_dir, model_dir / settings.onnx_file, device=device)
        else:
            classifier = load_classifier(model_dir, device=device)
        # answers name the model as served (the archive is unpacked into a folder with a random name)
        classifier.identity = classifier.identity.model_copy(update={"name": context.model_name})
        onnx = None
        if settings.backend == "onnx":
            from auditor.export import OnnxClassifier

            onnx = OnnxClassifier(model_dir / settings.onnx_file, model_dir, threads=settings.threads)
        # the model's workers share the archive's unpacked folder, and with it the explanation slots
        slots = ExplanationSlots(model_dir / ".explanation-slots", settings.explanation_slots)
        self.service = Service(classifier, settings, slots, onnx)
        self.service.warm_up()
        self.model = served_model(context, classifier.identity)
        self.shadow = start_shadow(settings.shadow, self.model, context.metrics, model_dir) if settings.shadow else None
        self.initialized = True
        logger.info("auditor handler: %s on %s, %s", context.model_name, device, settings.model_dump())

    def handle(self, data: list[dict], context) -> list[str]:
        bodies = [row.get("body", row.get("data")) for row in data]
        flags = [context.get_request_header(index, "explain") == "True" for index in range(len(data))]
        started = time.perf_counter()
        answers = self.service.handle(bodies, flags)
        latency_ms = (time.perf_counter() - started) * 1000
        for index, answer in enumerate(answers):
            for header, value in identity_headers(self.model).items():
                context.set_response_header(index, header, value)
            if self.shadow is not None and answer.status == 200 and not flags[index]:
                self.shadow.submit(bodies[index], answer.body, latency_ms)
            if answer.status != 200:
                context.set_response_status(answer.status, PHRASES[answer.status], index)
            context.set_response_content_type(index, "application/json")
            if answer.retry_after_s is not None:
                context.set_response_header(index, "Retry-After", str(answer.retry_after_s))
            if answer.explanation_ms is not None:
                context.metrics.add_time("AttributionTime", round(answer.explanation_ms, 2), idx=index, unit="ms")
                context.metrics.add_metric("AttributionTokens", answer.tokens, "count", idx=index, metric_type=MetricTypes.GAUGE)
        if len(data) > 1:  # not for batches of one request (the default): a log line per request costs throughput
            logger.info("batch of %d requests, %d explanations", len(data), sum(flags))
        return [answer.body for answer in answers]
