"""Pydantic models: the one definition of every request, response and report that crosses a boundary
(HTTP bodies, JSON files, CLI output). ``auditor schema`` exports their JSON Schema."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from auditor.quadrature import QuadratureMethod


class StrictModel(BaseModel):
    """Unknown fields are an error, so a typo in a request is reported instead of ignored."""

    model_config = ConfigDict(extra="forbid")


class ModelIdentity(BaseModel):
    """What identifies a model's weights and shape, recorded in every artefact computed from it."""

    name: str
    model_type: str
    weights_sha256: str
    num_layers: int
    num_heads: int
    labels: list[str]
    pruned_heads: dict[int, list[int]] = {}


class PredictionRequest(StrictModel):
    """Body of ``POST /predictions/{model}``: one text, or a sentence pair."""

    text: str = Field(min_length=1)
    text_pair: str | None = Field(default=None, min_length=1)

    @field_validator("text", "text_pair")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value


class Prediction(BaseModel):
    """A classifier's answer for one input; ``probabilities`` follow ``labels`` (label-id order)."""

    label: str
    label_id: int
    probabilities: list[float]
    labels: list[str]


class ErrorResponse(BaseModel):
    """Body of every 4xx answer."""

    code: int
    type: str
    message: str


class ExplanationOptions(StrictModel):
    """What to compute for ``POST /explanations/{model}`` and ``auditor explain``."""

    target: Literal["predicted"] | int = "predicted"
    steps: int = Field(default=3, ge=1)
    method: QuadratureMethod = "gausslegendre"
    layers: list[int] | None = None
    top_k: int = Field(default=5, ge=0, description="token pairs reported per layer")
    include_matrices: bool = False
    include_tree: bool = True
    threshold: float = Field(default=0.4, gt=0, le=1, description="τ of the attribution tree")


class ExplanationRequest(PredictionRequest):
    """Body of ``POST /explanations/{model}``: the input and the options."""

    options: ExplanationOptions = ExplanationOptions()


class TreeNode(BaseModel):
    """A token in the attribution tree, at the hidden-state ``layer`` where it enters the tree.

    Layers count hidden states: ``num_layers`` is the output of the last encoder layer (where [CLS] sits),
    and a token attached through an edge of encoder layer l (0-based) sits at ``layer`` l, the input of that
    encoder layer.
    """

    id: str
    layer: int
    token_index: int
    token: str


class TreeEdge(BaseModel):
    """Information flowing from ``source`` (the key token) to ``target`` (the query token) in encoder layer ``layer``.

    ``score`` is the normalised attribution S̃ (> the tree's threshold); ``attribution`` the raw head-summed one.
    """

    source: str
    target: str
    layer: int
    score: float
    attribution: float


class AttributionTree(BaseModel):
    """The attribution tree of Hao et al. (2021, Algorithm 1): nodes are (layer, token), rooted at [CLS]."""

    tokens: list[str]
    threshold: float
    num_layers: int
    nodes: list[TreeNode]
    edges: list[TreeEdge]


class TokenPair(BaseModel):
    """One entry of a layer's head-summed attribution matrix: how much ``query`` drawing on ``key`` mattered.

    ``score`` = Σ_h Attr_h(A^l)[query_index, key_index]; ``head`` is the (original) index of the head that
    holds the largest share of it and ``head_score`` that head's attribution.
    """

    query_index: int
    key_index: int
    query_token: str
    key_token: str
    score: float
    head: int
    head_score: float


class LayerExplanation(BaseModel):
    """Attribution summary of one encoder layer (0-based ``layer``).

    ``delta`` is the completeness delta Σ Attr − (F(A) − F(0·A^l)); ``baseline_probability`` is F(0·A^l),
    the target probability with this layer's attention zeroed. ``matrices`` (only when requested) holds
    Attr_h per head in ``head_ids`` order, each a (tokens × tokens) list of rows (query) of columns (key).
    """

    layer: int
    head_ids: list[int]
    delta: float
    baseline_probability: float
    top_pairs: list[TokenPair]
    matrices: list[list[list[float]]] | None = None


class Explanation(BaseModel):
    """Self-attention attribution of one input: the prediction, and per layer which token interactions drove
    the ``target`` class probability."""

    model: ModelIdentity
    text: str
    text_pair: str | None = None
    prediction: Prediction
    target: int
    target_label: str
    target_probability: float
    tokens: list[str]
    method: QuadratureMethod
    steps: int
    layers: list[LayerExplanation]
    tree: AttributionTree | None = None


# --- serving (auditor.serving, handlers/) -----------------------------------------------------------------

Backend = Literal["torch", "onnx"]


class ServingLimits(StrictModel):
    """What one request may ask of a worker; anything over a limit is answered with HTTP 400."""

    max_tokens: int = Field(default=128, ge=3, description="longest input in tokens, special tokens included")
    max_chars: int = Field(default=4096, ge=1, description="longest text + text_pair in characters (checked before tokenizing)")
    max_steps: int = Field(default=20, ge=1, description="most quadrature steps an explanation may ask for")
    max_batch: int = Field(default=8, ge=1, description="most inputs run through the model in one forward pass")


class HandlerSettings(StrictModel):
    """The ``handler:`` section of a TorchServe archive's model-config.yaml: prediction backend, worker threads, limits."""

    backend: Backend = "torch"
    onnx_file: str = "model.onnx"
    threads: int | None = Field(default=None, ge=1, description="intra-op threads of the worker (PyTorch and ONNX Runtime); default: theirs")
    limits: ServingLimits = ServingLimits()


def json_schemas() -> dict[str, dict]:
    """JSON Schema of every public model defined in this module (new models are included automatically)."""
    return {
        name: value.model_json_schema()
        for name, value in sorted(globals().items())
        if isinstance(value, type)
        and issubclass(value, BaseModel)
        and value.__module__ == __name__
        and not name.startswith("_")
        and value.model_fields
    }

