"""Pydantic models: the one definition of every request, response and report that crosses a boundary
(HTTP bodies, JSON files, CLI output). ``auditor schema`` exports their JSON Schema."""

from __future__ import annotations

import unicodedata
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator

from auditor.quadrature import MAX_STEPS, QuadratureMethod


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


class ExplanationOptions(RequestModel):
    """What to compute for ``POST /explanations/{model}`` and ``auditor explain``."""

    target: Literal["predicted"] | int = "predicted"
    steps: int = Field(default=3, ge=1, le=MAX_STEPS, description="quadrature nodes of the attribution integral")
    method: QuadratureMethod = "gausslegendre"
    layers: list[int] | None = None
    top_k: int = Field(default=5, ge=0, description="token pairs reported per layer")
    include_matrices: bool = False
    include_tree: bool = True
    threshold: float = Field(default=0.4, gt=0, le=1, description="τ of the attribution tree")
    include_word_importance: bool = Field(default=False, description="report each word's attribution into [CLS] (WordImportance)")


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


class WordImportance(BaseModel):
    """How much one word mattered to the target probability, as seen by [CLS]: the summed self-attention
    attribution of [CLS] drawing on the word's pieces, over every layer and head,
    ``score`` = Σ_l Σ_h Σ_{j ∈ word} Attr_h(A^l)[CLS, j].

    Words are TextAttack's words of the segment (``auditor.triggers.word_spans``); ``index`` counts them
    from 0 in ``segment`` (0 = text, 1 = text_pair). A word cut off by truncation has no entry.
    """

    segment: Literal[0, 1]
    index: int = Field(ge=0)
    word: str
    score: float


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
    word_importance: list[WordImportance] | None = None


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

    @property
    def title(self) -> str:
        """How reports and plots name the data: ``sst2 dev``, or ``sst2 held-out.tsv`` for a file given by path."""
        file = self.source.rsplit("/", 1)[-1]
        return f"{self.dataset} {self.split}" if file == f"{self.split}.tsv" or self.source.startswith("hub:") else f"{self.dataset} {file}"


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


# --- serving (auditor.serving, handlers/) -----------------------------------------------------------------

Backend = Literal["torch", "onnx"]


class ServingLimits(StrictModel):
    """What one request may ask of a worker; anything over a limit is answered with HTTP 400.

    An explanation costs tokens² × steps × layers (attention-attribution work: ``steps`` forward and backward
    passes per layer, each quadratic in the tokens). One worker runs explanations of at most
    ``max_explanation_cost`` in total per server-side batch; an explanation that does not fit into the batch it
    arrived in is answered 429 (retry), one that costs more on its own 400. The default is the cost of
    ``max_tokens`` tokens, ``max_steps`` steps on 6 layers.
    """

    max_tokens: int = Field(default=128, ge=3, description="longest input in tokens, special tokens included")
    max_chars: int = Field(default=4096, ge=1, description="longest text + text_pair in characters (checked before tokenizing)")
    max_steps: int = Field(default=20, ge=1, le=MAX_STEPS, description="most quadrature steps an explanation may ask for")
    max_batch: int = Field(default=8, ge=1, description="most inputs run through the model in one forward pass, and in one request")
    max_explanation_cost: int = Field(default=128 * 128 * 20 * 6, ge=1, description="most tokens² × steps × layers of explanations per batch")
    max_top_k: int = Field(default=64, ge=0, description="most token pairs per layer an explanation may ask for")
    max_response_bytes: int = Field(
        default=4_000_000, ge=10_000, description="largest answer; an explanation that would be larger (matrices) is a 400"
    )


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
        and name.isidentifier()  # not the parametrised bases pydantic registers here, e.g. "RootModel[list[Prediction]]"
        and value.model_fields
    }


# --- robustness audits (auditor.triggers, auditor.attack, auditor.audit, auditor.report) -------------------


class TriggerElement(BaseModel):
    """One token of an attribution pattern: the word piece, the whole word it belongs to in the example it
    was mined from, its segment (0 = first sentence, 1 = second), and its word offset from the pattern's
    first token in the same segment."""

    token: str
    word: str
    segment: Literal[0, 1]
    offset: int = Field(ge=0)


class TriggerPattern(BaseModel):
    """Tokens of the top attribution pairs of one head, aggregated over the examples where they recur.

    ``label`` is the class the model predicted on those examples; ``anchors[segment]`` the mean relative
    position (0 = start, 1 = end) of the pattern's first token in that segment; ``mass`` the summed
    attribution of the pairs over all occurrences and ``count`` the number of occurrences.
    """

    label: int
    label_name: str
    elements: list[TriggerElement]
    anchors: dict[int, float]
    count: int = Field(ge=1)
    mass: float
    gold_labels: dict[int, int] = Field(description="gold label -> occurrences")

    @property
    def key(self) -> tuple[object, ...]:
        return (self.label, tuple((e.token, e.word, e.segment, e.offset) for e in self.elements))

    def words(self, segment: int) -> list[tuple[int, str]]:
        """(offset, word) of the pattern's distinct words in ``segment``, word pieces joined back into words;
        punctuation tokens, which no word holds, are left out."""
        merged: dict[int, str] = {}
        for element in self.elements:
            if element.segment == segment and any(c.isalnum() for c in element.word):
                merged.setdefault(element.offset, element.word)
        return sorted(merged.items())

    def rank_key(self) -> tuple[int, int, float]:
        return (sum(len(self.words(s)) for s in self.anchors), -self.count, -self.mass)

    @property
    def text(self) -> str:
        """Human-readable form, e.g. ``bad … film`` or ``no | not`` for a pattern spanning both sentences."""
        return " | ".join(" ".join(word for _, word in self.words(s)) for s in sorted(self.anchors) if self.words(s))


class TriggerMiningOptions(BaseModel):
    examples: int
    pairs_per_example: int
    threshold: float
    steps: int
    method: QuadratureMethod


class TriggerSet(BaseModel):
    """Attribution patterns mined from one model on one dataset, ranked per label (best first)."""

    model: ModelIdentity
    data: ExamplesUsed
    options: TriggerMiningOptions
    patterns: list[TriggerPattern]
    auditor_version: str
    seconds: float

    def ranked(self, label: int) -> list[TriggerPattern]:
        """Patterns of ``label``, best first: fewer words (the attack's cost is words inserted, so short
        patterns leave room for more), then more occurrences, then more attribution mass."""
        return sorted((p for p in self.patterns if p.label == label), key=TriggerPattern.rank_key)


class LexiconOptions(BaseModel):
    """How ``auditor.validity`` finds words that carry a label: the one-word labelled phrases of the training
    split (``phrases``), and a smoothed log-odds association (prior ``prior``, at least ``min_count``
    documents, log-odds ratio ≥ ``threshold`` and z ≥ ``min_z``). ``threshold`` was chosen on SST-2 train
    only (best F1 against its one-word phrases, ``bench/tune_audit.py``)."""

    phrases: bool = True
    min_count: int = Field(default=5, ge=1)
    prior: float = Field(default=1.0, gt=0)
    threshold: float = 0.5
    min_z: float = 1.96


class LabelLexicon(BaseModel):
    """Words that carry a label by themselves (word -> label index, -1 for a user word of any label), and
    the training data they were measured on; perturbations adding, substituting or deleting them are invalid."""

    labels: list[str]
    data: ExamplesUsed | None
    options: LexiconOptions
    words: dict[str, int]
    phrase_words: int
    associated_words: int
    user_words: int


class VictimIdentity(BaseModel):
    """The audited model: a local directory (with its weights' identity), an ONNX file, or an endpoint."""

    kind: Literal["local", "onnx", "endpoint"]
    location: str
    labels: list[str]
    model: ModelIdentity | None = None


class AttackOutcome(BaseModel):
    """One example under one attack. ``status``: ``skipped`` when the model already got it wrong."""

    index: int
    label: int
    text: str
    text_pair: str | None = None
    perturbed_text: str
    perturbed_text_pair: str | None = None
    status: Literal["succeeded", "failed", "skipped"]
    original_probabilities: list[float]
    perturbed_probabilities: list[float]
    queries: int
    explanations: int = Field(default=0, description="explanation calls the attack made (its word ranking)")
    rejected: int = Field(default=0, description="candidates the label-word constraint refused")
    word_edits: int = Field(description="word-level edit distance original -> perturbed (words inserted by insertions)")
    inserted_words: list[str] = Field(description="words of the perturbed text that are not in the original (edit alignment)")
    seconds: float


class ClassBreakdown(BaseModel):
    label: int
    name: str
    examples: int
    clean_accuracy: float
    accuracy_under_attack: float
    success_rate: float | None


class BudgetPoint(BaseModel):
    """Accuracy under attack counting only attacks that succeeded within ``budget`` queries."""

    budget: int
    accuracy: float


class AttackSummary(BaseModel):
    """One attack over the audited examples. Rates are fractions; ``success_rate`` is over the examples the
    model got right; query and edit means are over successful attacks (``None`` when there are none).

    Every attack of an audit runs under the same validity constraints (``auditor.validity``): a candidate
    that inserts, substitutes or deletes a label-carrying word is rejected before it is queried, so every
    success counted here is a valid, label-preserving one; ``rejected`` says how many candidates that took.
    Costs: ``queries`` model predictions, ``explanations`` explanation calls, ``seconds`` wall time.
    """

    name: str
    description: str
    examples: int
    clean_accuracy: float
    accuracy_under_attack: float
    success_rate: float | None
    mean_queries: float | None = Field(description="queries per attacked (not skipped) example")
    mean_queries_per_success: float | None
    mean_word_edits: float | None = Field(description="word-level edit distance per successful attack")
    queries: int = Field(description="model queries over all examples")
    explanations: int = Field(description="explanation calls over all examples")
    rejected: int = Field(description="candidates the label-word constraint refused, over all examples")
    per_class: list[ClassBreakdown]
    budget_curve: list[BudgetPoint]
    seconds: float
    outcomes: list[AttackOutcome]


class TriggerRow(BaseModel):
    """A mined pattern inserted into every example of another class: accuracy on that class before/after."""

    pattern: str
    pattern_label: str
    target_class: str
    examples: int
    accuracy_before: float
    accuracy_after: float
    count: int
    mass: float


class AuditSettings(BaseModel):
    """What an audit ran. ``transformations``: the edits the attribution-guided attack tries on each ranked
    word (chosen on training examples only, ``bench/tune_audit.py``); ``max_words``: the most words any
    attack may edit; ``steps``: quadrature steps of the ranking's attribution; ``top_k``: patterns per
    class for pattern insertion."""

    examples: int
    budget: int
    max_words: int
    transformations: list[Literal["charedit", "typo", "delete", "pattern"]] = ["charedit"]
    steps: int = 3
    top_k: int
    positions: Literal["pattern", "all"]
    baselines: list[Literal["random", "deepwordbug"]]
    trigger_top_k: int
    trigger_examples: int | None
    seed: int


class LexiconSummary(BaseModel):
    """The label-word lexicon an audit's validity constraint used (its words are in ``LabelLexicon``)."""

    data: ExamplesUsed | None
    options: LexiconOptions
    words: int
    phrase_words: int
    associated_words: int
    user_words: int


class RobustnessReport(BaseModel):
    """Result of ``auditor audit``: clean accuracy, the attribution-guided attack, the baselines run on the
    same examples with the same query budget and constraints, and the universal-trigger table.
    ``resumed``: how many attack outcomes came from an earlier, interrupted run's checkpoint."""

    schema_version: Literal[2] = 2
    auditor_version: str
    victim: VictimIdentity
    data: ExamplesUsed
    lexicon: LexiconSummary
    resumed: int = 0
    patterns: ExamplesUsed
    patterns_model: ModelIdentity
    settings: AuditSettings
    clean_accuracy: float
    attack: AttackSummary
    baselines: list[AttackSummary]
    triggers: list[TriggerRow]
    trigger_data: ExamplesUsed
    seconds: float


class ModelComparison(BaseModel):
    """One side of ``auditor compare``: accuracy, latency, and robustness under the shared patterns."""

    victim: VictimIdentity
    accuracy: float
    ms_per_example: float = Field(description="mean wall time of batched predictions, per example")
    attack: AttackSummary
    baselines: list[AttackSummary] = []
    triggers: list[TriggerRow]


class ComparisonReport(BaseModel):
    """``auditor compare``: a full and a pruned model on the same examples, patterns and budget."""

    schema_version: Literal[1] = 1
    auditor_version: str
    data: ExamplesUsed
    patterns: ExamplesUsed
    settings: AuditSettings
    agreement: float = Field(description="fraction of examples where both models predict the same label")
    full: ModelComparison
    pruned: ModelComparison
    seconds: float
