"""HTTP bodies of ``POST /predictions`` and errors, and the ``handler:`` settings, limits and ONNX weight map of
an archive (auditor.serving.service, auditor.serving.archive, auditor.onnx_weights, handlers/)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, RootModel, field_validator

from auditor.quadrature import MAX_STEPS
from auditor.schemas.common import RequestModel, StrictModel, visible
from auditor.schemas.live import ShadowSettings


class PredictionRequest(RequestModel):
    """Body of ``POST /predictions/{model}``: one text, or a sentence pair. A text that shows nothing
    (only whitespace, zero-width or other invisible characters) is rejected."""

    text: str = Field(min_length=1)
    text_pair: str | None = Field(default=None, min_length=1)

    @field_validator("text", "text_pair")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not visible(value):
            raise ValueError("must not be blank (it has no visible characters)")
        return value


class PredictionBatchRequest(RequestModel):
    """Body of ``POST /predictions/{model}`` for several inputs at once (at most the archive's ``max_batch``);
    answered with a ``PredictionList`` in the same order. One bad input fails the request (HTTP 400 naming
    its index)."""

    inputs: list[PredictionRequest] = Field(min_length=1)


class Prediction(BaseModel):
    """A classifier's answer for one input; ``probabilities`` follow ``labels`` (label-id order)."""

    label: str
    label_id: int
    probabilities: list[float]
    labels: list[str]


class PredictionList(RootModel[list[Prediction]]):
    """Answer to a ``PredictionBatchRequest``: one ``Prediction`` per input, in the order of ``inputs``."""


class ErrorResponse(BaseModel):
    """Body of every 4xx answer (429: an explanation the worker has no room for now; retry after a while)."""

    code: int
    type: str
    message: str




Backend = Literal["torch", "onnx"]
Task = Literal["single", "pair"]


class ServingLimits(StrictModel):
    """What one request may ask of a worker; anything over a limit is answered with HTTP 400.

    An explanation costs tokens × steps × Σ_l (L − l) token-layer passes (``auditor.serving.capacity``: per step,
    attributing layer l runs a forward and backward pass through the L − l layers from l up). One costing more
    than ``max_explanation_cost`` is a 400; a worker runs explanations of at most that cost in total per
    server-side batch, and one that does not fit into the batch it arrived in is answered 429 (retry). The
    default is the cost of ``max_tokens`` tokens, ``max_steps`` steps and every layer of a 6-layer model.
    """

    max_tokens: int = Field(default=128, ge=3, description="longest input in tokens, special tokens included")
    max_chars: int = Field(default=4096, ge=1, description="longest text + text_pair in characters (checked before tokenizing)")
    max_steps: int = Field(default=20, ge=1, le=MAX_STEPS, description="most quadrature steps an explanation may ask for")
    max_batch: int = Field(default=8, ge=1, description="most inputs run through the model in one forward pass, and in one request")
    max_explanation_cost: int = Field(
        default=128 * 20 * 21, ge=1, description="most tokens × steps × layer passes (Σ over attributed layers l of L − l) of explanations per batch"
    )
    max_top_k: int = Field(default=64, ge=0, description="most token pairs per layer an explanation may ask for")
    max_response_bytes: int = Field(
        default=4_000_000, ge=10_000, description="largest answer in bytes; an explanation whose answer could be larger is a 400, decided before computing"
    )


class HandlerSettings(StrictModel):
    """The ``handler:`` section of a TorchServe archive's model-config.yaml: the task, prediction backend,
    worker threads, explanation capacity (``auditor.serving.capacity``) and limits."""

    task: Task = Field(default="single", description="single sentences (a text_pair is refused) or sentence pairs (a text_pair is required)")
    backend: Backend = "torch"
    onnx_file: str = "model.onnx"
    threads: int | None = Field(default=None, ge=1, description="intra-op threads of the worker (PyTorch and ONNX Runtime); default: theirs")
    explanation_slots: int = Field(
        default=1, ge=1, description="explanations computed at once by all workers of the model; keep it below the workers per model"
    )
    explanation_niceness: int = Field(default=10, ge=0, le=19, description="how much lower the explanation thread's priority is than the worker's")
    explanation_timeout_s: float = Field(
        default=90.0,
        gt=0,
        description="an explanation still computing after this many seconds (an overloaded machine) is stopped and answered 503 "
        "with Retry-After; keep it below the archive's responseTimeout (120 s), after which TorchServe kills the worker",
    )
    limits: ServingLimits = ServingLimits()
    niceness: int = Field(
        default=0, ge=0, le=19, description="how much lower the worker processes' priority is than the server's: e.g. 10 for a model that "
        "only serves as another's shadow, so that the primary's requests get the cores first"
    )
    shadow: ShadowSettings | None = Field(default=None, description="replay sampled predictions on a shadow model and record both answers")


class OnnxWeight(StrictModel):
    """Where an ONNX graph holds one tensor of the PyTorch model's state dict."""

    initializer: str | None = Field(
        description="the initializer holding the values (float32 or float16); for a quantised tensor x, the x of x_quantized, x_scale "
        "and x_zero_point; none for a tensor of zeros, which the graph needs none for (the exporter drops zero biases)"
    )
    transposed: bool = Field(default=False, description="the graph holds the transpose (a Linear weight fed to MatMul)")
    quantized: bool = Field(default=False, description="int8/uint8 with a per-tensor scale and zero point (quantize_dynamic)")


class OnnxWeightMap(StrictModel):
    """``onnx_weights.json`` of an ONNX archive, which ships no PyTorch weights: its explanation model is built
    from config.json and every floating-point tensor of its state dict is read from the graph
    (``auditor.onnx_weights``)."""

    weights_sha256: str = Field(
        description="identity of the weights read: the source model's (auditor.models.weights_digest) when the graph holds them "
        "exactly, else the graph file's SHA-256 (first 16 hex digits)"
    )
    tensors: dict[str, OnnxWeight] = Field(description="state-dict name -> where the graph holds it")
