"""Live comparison of a primary model with its shadow (``auditor.live``): the settings an archive carries and
one comparison as the records database stores it."""

from __future__ import annotations

from pydantic import Field

from auditor.schemas.common import StrictModel

IDENTITY_HEADERS = ("X-Model-Name", "X-Model-Version", "X-Model-Weights-SHA256")
"""Response headers of every ``/predictions`` and ``/explanations`` answer naming the model that gave it
(``ServedModelRef``'s name, version and weights digest)."""


class ShadowSettings(StrictModel):
    """The ``shadow:`` part of an archive's ``handler:`` settings (``auditor package --shadow …``): the model whose
    answers the primary's are compared with, where it is served, how often, and where the comparisons go.

    Sampled prediction requests answered 200 are replayed on the shadow by a background thread of each worker,
    after the primary has answered; every sampled input is either one row of ``database`` or one drop counted
    by cause (``auditor.live.shadow``)."""

    model: str = Field(min_length=1, description="name of the shadow model at url (e.g. the full model when the primary is pruned)")
    url: str = Field(
        default="http://127.0.0.1:8080",
        pattern=r"^https?://[^/?#]+$",
        description="inference API serving the shadow (scheme, host and port): this TorchServe's own, or another",
    )
    key_file: str | None = Field(
        default=None,
        description="a TorchServe key_file.json holding the shadow server's inference key; default: the key_file.json in the "
        "working directory of the TorchServe this worker runs in, when it has one (the shadow is served by the same server)",
    )
    sample_rate: float = Field(default=1.0, ge=0.0, le=1.0, description="fraction of prediction requests replayed on the shadow")
    database: str = Field(min_length=1, description="the comparisons database (SQLite, WAL mode) that every worker appends to")
    store_texts: bool = Field(default=False, description="keep the inputs' texts in the database (its files are then mode 0600)")
    max_rows: int | None = Field(default=1_000_000, ge=1, description="most rows kept; the oldest are deleted first")
    max_age_s: float | None = Field(default=None, gt=0, description="rows older than this are deleted")
    queue_size: int = Field(default=256, ge=1, description="requests waiting for the shadow per worker; beyond it a comparison is dropped")
    batch_inputs: int = Field(
        default=8, ge=1, description="most inputs per shadow request: requests waiting in the queue are replayed together (at most the "
        "shadow archive's max_batch)"
    )
    timeout_s: float = Field(default=10.0, gt=0, description="longest wait for one shadow answer")
    startup_wait_s: float = Field(
        default=120.0, ge=0, description="how long loading the primary waits for the shadow's inference API to accept connections"
    )


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
