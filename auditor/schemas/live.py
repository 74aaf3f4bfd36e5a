"""Live comparison of a primary model with its shadow (``auditor.live``): one comparison as the records
database stores it, and the report ``auditor live-report`` writes from the records (``LiveReport``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from auditor.schemas.common import Rate, StrictModel

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


Side = Literal["primary", "shadow"]


class Transition(StrictModel):
    """How many records the primary labelled ``primary_label`` and the shadow ``shadow_label``."""

    primary_label: str
    shadow_label: str
    count: int


class ClassFlips(StrictModel):
    """Of the records the primary gave ``label``, how many the shadow labelled otherwise."""

    label: str
    flips: Rate


class ConfidenceShift(StrictModel):
    """|Δp| = |p_shadow(c) − p_primary(c)| for c the primary's predicted class: how far the shadow moved the
    probability of the primary's answer. ``mean_low``/``mean_high``: the normal-approximation interval on the
    mean, mean ± z·s/√n (z for ``level``)."""

    records: int
    mean: float
    mean_low: float
    mean_high: float
    level: float
    median: float
    p90: float
    p99: float
    max: float
    histogram_edges: list[float]
    histogram_counts: list[int]


class Window(StrictModel):
    """Agreement over one window of the records in time order (an hour, or N consecutive records)."""

    start_ts: float
    end_ts: float
    first_record: int = Field(description="1-based index of the window's first record in time order")
    agreement: Rate


class BoundPoint(StrictModel):
    """The confidence sequence on the disagreement rate after ``records`` records."""

    records: int
    disagreement_rate: float
    low: float
    high: float


class DecisionSummary(StrictModel):
    """The promotion decision against the tolerance on the disagreement rate (``auditor.live.decision``):
    promote when the confidence sequence's upper bound is below the tolerance, roll back when its lower bound
    is above, else keep collecting; each has its exit status."""

    decision: Literal["promote", "roll back", "keep collecting"]
    exit_code: int
    tolerance: float
    alpha: float
    records: int
    disagreements: int
    low: float
    high: float
    method: str
    prior_mean: float
    prior_strength: float
    path: list[BoundPoint] = Field(description="the bounds along the records (at most a few hundred points)")


class LabelledSummary(StrictModel):
    """Measures on the records whose label arrived later (the labels file). The incumbent is the model in
    production; the candidate the one that would replace it. A negative flip: incumbent right, candidate wrong
    (Yan et al., CVPR 2021); ``mcnemar_p``: the exact McNemar test of negative against positive flips, as
    ``auditor diff`` computes it."""

    labels_file: str
    labelled: int
    unmatched_labels: int = Field(description="labels in the file whose input_sha256 no record has")
    candidate: Side
    incumbent: Side
    primary_accuracy: Rate
    shadow_accuracy: Rate
    negative_flips: Rate
    positive_flips: Rate
    mcnemar_p: float


class DropCount(StrictModel):
    cause: str
    count: int


class PairChange(StrictModel):
    """A (query, key) token pair of one layer: head-summed attribution Σ_h Attr_h in the full and the pruned model."""

    layer: int
    query_index: int
    key_index: int
    query_token: str
    key_token: str
    full: float
    pruned: float
    change: float = Field(description="pruned − full")


class PrunedHead(StrictModel):
    """A head the pruned model lacks and the attribution it carried in the full model, Σ_{i,j} Attr_h[i, j]."""

    layer: int
    head: int
    attribution: float


class DisagreementExplanation(StrictModel):
    """One stored-text disagreement explained by both models, each attributing the full model's answer."""

    ts: float
    input_sha256: str
    text: str
    text_pair: str | None
    primary_label: str
    shadow_label: str
    abs_delta_p: float
    full_side: Side
    target_label: str
    full_probability: float = Field(description="the full model's probability of target_label")
    pruned_probability: float = Field(description="the pruned model's probability of target_label")
    pair_changes: list[PairChange]
    pruned_heads: list[PrunedHead]


class LiveReport(StrictModel):
    """``auditor live-report``: the comparisons of a primary and a shadow model on live traffic, read from
    one or more databases, with the promotion decision."""

    auditor_version: str
    databases: list[str]
    primary_model: ServedModelRef
    shadow_model: ServedModelRef
    records: int
    first_ts: float
    last_ts: float
    agreement: Rate
    near_ties: int = Field(description="records where either model's two largest probabilities lie within 1e-5")
    labels: list[str]
    transitions: list[Transition]
    per_class: list[ClassFlips]
    confidence_shift: ConfidenceShift
    window_kind: Literal["hour", "records"]
    windows: list[Window]
    decision: DecisionSummary
    labelled: LabelledSummary | None = None
    drops: list[DropCount] | None = Field(default=None, description="comparisons not made, by cause (the drops table); None when not read")
    texts_stored: int = Field(description="disagreements whose text was stored")
    explanations: list[DisagreementExplanation] | None = None
