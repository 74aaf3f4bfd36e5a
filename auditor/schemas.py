"""Pydantic models: the one definition of every request, response and report that crosses a boundary
(HTTP bodies, JSON files, CLI output). ``auditor schema`` exports their JSON Schema."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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
