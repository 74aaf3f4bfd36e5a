"""Invariance checks of an audit (``auditor.invariance``): everyday perturbations that should not change a
prediction, one row each in ``RobustnessReport.invariance``."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, Field

from auditor.schemas.common import Rate

CheckName = Literal[
    "typos", "lowercase", "uppercase", "punctuation-removed", "punctuation-added", "contractions-expanded",
    "contractions-contracted", "names", "locations",
]  # fmt: skip
"""The invariance checks (``auditor.invariance.checks.CHECKS``), in the order a report lists them."""
CHECK_NAMES: tuple[str, ...] = get_args(CheckName)

MIN_APPLIED = 20
"""A check applied to fewer examples gives no flip rate: its interval would span most of [0, 1]."""


class InvarianceOutcome(BaseModel):
    """One example under one perturbation: the model's prediction on the original and on the perturbed
    texts. ``flipped``: the two predictions differ (whatever the gold label)."""

    index: int = Field(description="position of the example among the audited examples")
    example_id: str = Field(description="digest of the example's text and text pair (auditor.data.example_id)")
    label: int
    text: str
    text_pair: str | None = None
    perturbed_text: str
    perturbed_text_pair: str | None = None
    original_prediction: int
    perturbed_prediction: int

    @property
    def flipped(self) -> bool:
        return self.original_prediction != self.perturbed_prediction


class InvarianceCheck(BaseModel):
    """One perturbation over the audited examples. It applies to an example when it changes its text;
    ``outcomes`` holds every example it applied to (paired by ``example_id`` in ``auditor diff``).
    ``flip_rate``: flips over ``applied`` with its Wilson interval, or None when the check applied to fewer
    than ``MIN_APPLIED`` examples (``note`` says so); ``flip_examples``: the first three flips."""

    name: CheckName
    description: str = Field(description="exactly what the perturbation changes")
    applied: int = Field(description="examples whose text the perturbation changed")
    flips: int = Field(description="of those, the examples whose prediction changed")
    flip_rate: Rate | None
    note: str | None = Field(default=None, description="why there is no flip rate")
    flip_examples: list[InvarianceOutcome] = Field(description="up to three flips, in example order")
    outcomes: list[InvarianceOutcome]
    seconds: float
