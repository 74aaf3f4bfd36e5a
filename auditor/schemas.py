"""Pydantic models: the one definition of every request, response and report that crosses a boundary
(HTTP bodies, JSON files, CLI output). ``auditor schema`` exports their JSON Schema."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from auditor.models import ModelIdentity
from auditor.quadrature import QuadratureMethod


class StrictModel(BaseModel):
    """Unknown fields are an error, so a typo in a request is reported instead of ignored."""

    model_config = ConfigDict(extra="forbid")


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


# --- head importance and pruning (auditor.heads, auditor.pruning) ---------------------------------------

ImportanceMethod = Literal["attribution", "attention", "taylor", "loo", "random"]
IMPORTANCE_METHODS: tuple[str, ...] = ("attribution", "attention", "taylor", "loo", "random")


class ExamplesUsed(BaseModel):
    """Which examples a computation used: the dataset, its split and file fingerprint, how many, and a
    digest of the examples themselves (texts and labels) so that a change in the data is always noticed."""

    dataset: str
    split: str
    source: str
    fingerprint: str
    count: int
    digest: str


class HeadImportance(BaseModel):
    """Importance of every attention head of one model, higher = more important.

    ``scores[layer][head]`` is indexed by the *original* head index; heads already pruned from the model
    are ``null``. ``model`` identifies the weights the scores were computed on.
    """

    method: ImportanceMethod
    scores: list[list[float | None]]
    examples: ExamplesUsed
    model: ModelIdentity
    options: dict[str, int | float | str] = {}
    target: Literal["gold"] = "gold"
    auditor_version: str
    seconds: float


class CurvePoint(BaseModel):
    """Accuracy after removing the ``heads_removed`` least important heads (``fraction`` of the model's heads)."""

    fraction: float
    heads_removed: int
    accuracy: float


class PruningCurves(BaseModel):
    """Accuracy vs fraction of heads pruned, one curve per importance method, all on the same evaluation set."""

    model: ModelIdentity
    evaluation: ExamplesUsed
    importance_examples: ExamplesUsed
    keep_per_layer: int
    full_accuracy: float
    curves: dict[str, list[CurvePoint]]
