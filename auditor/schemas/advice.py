"""Defence advice measured in an audit's run (issue 33): each piece is one line drawn from its numbers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from auditor.schemas.common import Rate

DefenceName = Literal["spellcheck", "prune-implicated"]


class AdviceMeasure(BaseModel):
    """One measured figure of a piece of advice: a rate with its 95 % interval, or a paired difference
    (``value`` with ``low``..``high``, e.g. a clean-accuracy drop) when ``rate`` is None."""

    name: str = Field(description="what was measured, e.g. 'successes undone', 'clean accuracy with the front end'")
    rate: Rate | None = None
    value: float | None = None
    low: float | None = None
    high: float | None = None


class Advice(BaseModel):
    """A defence tried in the audit's run against the same successes and clean examples: whether it helped
    (decided from the measures, never fixed), the line the report prints, and the measures behind it."""

    defence: DefenceName
    helps: bool
    line: str = Field(description="one sentence with the numbers and their intervals, drawn from the measures")
    measures: list[AdviceMeasure]
