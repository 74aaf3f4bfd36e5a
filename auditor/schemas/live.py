"""Live comparison of a primary model with its shadow (``auditor.live``): the settings an archive carries and
one comparison as the records database stores it."""

from __future__ import annotations

from pydantic import Field

from auditor.schemas.common import StrictModel


class ServedModelRef(StrictModel):
    """A served model as a comparison names it: TorchServe's model name and version and the weights digest
    (``ModelIdentity.weights_sha256``), which tells two releases served under one name apart."""

    name: str
    version: str
    weights_sha256: str

    def label(self) -> str:
        return f"{self.name}/{self.version}@{self.weights_sha256}"


class ComparisonRecord(StrictModel):
    """One request answered by the primary and replayed on the shadow: one row of the ``comparisons`` table.

    ``input_sha256`` is the SHA-256 of the canonical JSON of the inputs (``auditor.live.records.input_digest``),
    so labels that arrive later can be joined to it; ``text`` and ``text_pair`` are stored only when the
    operator opts in (``store_texts``)."""

    ts: float = Field(description="Unix time at which the primary answered, seconds")
    primary_model: ServedModelRef
    shadow_model: ServedModelRef
    primary_label: str
    shadow_label: str
    primary_probabilities: list[float]
    shadow_probabilities: list[float]
    input_sha256: str
    primary_latency_ms: float
    shadow_latency_ms: float
    text: str | None = None
    text_pair: str | None = None
