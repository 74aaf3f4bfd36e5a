"""Bases shared by every schema: strict request models, visible text, model identity."""

from __future__ import annotations

import unicodedata

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    """Unknown fields are an error, so a typo in a request is reported instead of ignored."""

    model_config = ConfigDict(extra="forbid")


class RequestModel(StrictModel):
    """An HTTP request body: unknown fields are an error and types are strict (``"steps": "3"`` and
    ``"target": true`` are rejected, not coerced)."""

    model_config = ConfigDict(extra="forbid", strict=True)


INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0\u2800\u034f")
"""Characters that render as nothing beyond the Unicode categories ``visible`` drops (fillers, blank braille)."""


def visible(text: str) -> str:
    """``text`` without whitespace, control and format characters (zero-width spaces and joiners, BOM,
    bidi marks…) and the fillers in ``INVISIBLE``: empty when the text would show nothing."""
    return "".join(
        c for c in text if not (c.isspace() or c in INVISIBLE or unicodedata.category(c) in ("Cc", "Cf", "Zs", "Zl", "Zp"))
    )


class ModelIdentity(BaseModel):
    """What identifies a model's weights and shape, recorded in every artefact computed from it."""

    name: str
    model_type: str
    weights_sha256: str
    num_layers: int
    num_heads: int
    labels: list[str]
    pruned_heads: dict[int, list[int]] = {}


class Rate(StrictModel):
    """``count`` of ``total`` with a two-sided interval at ``level`` (Wilson's score interval)."""

    count: int
    total: int
    rate: float | None = Field(description="count / total; None when total is 0")
    low: float
    high: float
    level: float
