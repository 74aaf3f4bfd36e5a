"""Robustness audits: mined patterns, the label-word lexicon, attack outcomes and summaries, reports
(auditor.triggers, auditor.validity, auditor.attack, auditor.audit, auditor.report)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from auditor.quadrature import QuadratureMethod
from auditor.schemas.advice import Advice
from auditor.schemas.causal import CausalCheck
from auditor.schemas.common import ModelIdentity, Rate
from auditor.schemas.forensics import Forensics, ForensicsSummary
from auditor.schemas.importance import ExamplesUsed
from auditor.schemas.invariance import CheckName, InvarianceCheck
from auditor.schemas.live import ServedModelRef


class TreePair(BaseModel):
    """Two words of one example joined by an edge of its attribution tree (``auditor.tree``): the words
    (lower-cased, in text order), their segments (0 = first text, 1 = second) and word indices there, the
    edge's normalised attribution S̃ (the largest when several edges join the two words) and its layer."""

    words: tuple[str, str]
    segments: tuple[Literal[0, 1], Literal[0, 1]]
    indices: tuple[int, int]
    score: float
    layer: int


class MinedExample(BaseModel):
    """What mining keeps of one training example: the predicted and gold labels, the word count of each
    segment, and the word pairs its attribution tree joins."""

    predicted: int
    gold: int | None
    lengths: list[int]
    pairs: list[TreePair]


class TriggerPattern(BaseModel):
    """A token pair: two words joined by a high-attribution edge of the attribution trees of training
    examples, aggregated over the examples whose tree holds it.

    ``support``: the distinct examples whose tree holds the pair; ``predicted``: how many of them the model
    predicted as each label; ``mass``: Σ over them of the edge's normalised attribution S̃ (in (τ, 1]).
    ``label`` is the label whose examples carry the most attribution mass beyond their share,
    ``score`` = M_c − π_c·M: M_c the mass in examples predicted c, π_c the share of all mined examples
    predicted c (0 when the pair is spread over the labels like the examples are; it grows with support
    and mass). ``log_odds`` and ``z``: the smoothed log-odds association of the pair with ``label`` among the
    mined examples' predictions (``auditor.statistics.log_odds``). ``gap``: words from the first word to
    the second in the same segment (the most common; None across segments); ``positions``: each word's mean
    relative position in its segment (0 = start, 1 = end). ``example`` and ``layer``: the first mined
    example whose tree holds the pair, and the layer of that edge.
    """

    words: tuple[str, str]
    segments: tuple[Literal[0, 1], Literal[0, 1]]
    gap: int | None = Field(ge=1)
    positions: tuple[float, float]
    label: int
    label_name: str
    support: int = Field(ge=1)
    predicted: dict[int, int] = Field(description="predicted label -> supporting examples")
    gold_labels: dict[int, int] = Field(description="gold label -> supporting examples")
    mass: float
    score: float
    log_odds: float
    z: float
    example: int
    layer: int

    @property
    def significant(self) -> bool:
        """The association with ``label`` is significant at 95 % (one-sided z ≥ 1.645 would be laxer)."""
        return self.z >= 1.96

    @property
    def text(self) -> str:
        """Human-readable form: ``a b`` (adjacent), ``a … b`` (apart) or ``a | b`` (across the two texts)."""
        joiner = " | " if self.gap is None else " " if self.gap == 1 else " … "
        return joiner.join(self.words)


PatternRanking = Literal["excess-mass", "frequency"]


class TriggerMiningOptions(BaseModel):
    """How ``auditor mine`` mined: ``units`` (``sentences``: the examples no longer example contains,
    ``Dataset.sentences``; ``all``: every example), the first ``examples`` of them (None: all), the
    attribution's quadrature (``steps``, ``method``), the tree threshold τ and the batch size (the mining's
    result depends on these), then ``min_support``, which only filters the aggregated patterns, and ``ranking``,
    which only ranks them (``excess-mass``: each pair a pattern of the label whose examples carry the most of its
    attribution mass beyond their share; ``frequency``: the paper's rule, each pair a pattern of every class
    whose examples' trees hold it, ranked by how many do; ``auditor.triggers.aggregate_patterns``)."""

    units: Literal["sentences", "all"] = "sentences"
    examples: int | None = Field(default=None, ge=1)
    steps: int = Field(default=1, ge=1)
    method: QuadratureMethod = "gausslegendre"
    tree_threshold: float = Field(default=0.4, gt=0, le=1)
    batch_size: int = Field(default=32, ge=1)
    min_support: int = Field(default=5, ge=1)
    ranking: PatternRanking = "excess-mass"


class TriggerSet(BaseModel):
    """Attribution patterns mined from one model on one dataset, with the mined examples' prediction counts."""

    model: ModelIdentity
    data: ExamplesUsed
    options: TriggerMiningOptions
    predicted: dict[int, int] = Field(description="predicted label -> mined examples")
    pairs: int = Field(description="distinct word pairs the trees joined, before the support and label-word filters")
    patterns: list[TriggerPattern]
    auditor_version: str
    seconds: float

    def ranked(self, label: int) -> list[TriggerPattern]:
        """Patterns of ``label``, best first: the highest ``score`` (ties: more support, then text order)."""
        return sorted((p for p in self.patterns if p.label == label), key=lambda p: (-p.score, -p.support, p.words))


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
    the training data they were measured on; perturbations adding, substituting or deleting them are invalid.
    ``vocabulary``: the training data's words that pyspellchecker's English dictionary lacks ("filmgoers"),
    which count as words for the reader rule and the spell-check front end (``auditor.validity.Reader``)."""

    labels: list[str]
    data: ExamplesUsed | None
    options: LexiconOptions
    words: dict[str, int]
    phrase_words: int
    associated_words: int
    user_words: int
    vocabulary: list[str] = Field(default=[], description="training-data words the dictionary lacks, sorted: words to the reader rule")


class VictimIdentity(BaseModel):
    """The audited model: a local directory (with its weights' identity), an ONNX file, or an endpoint (with
    the model its answers named in their identity headers, ``auditor.live.identity``, when it sent them)."""

    kind: Literal["local", "onnx", "endpoint"]
    location: str
    labels: list[str]
    model: ModelIdentity | None = None
    served: ServedModelRef | None = Field(default=None, description="an endpoint's model: name, version and weights digest it answered with")
    defence: Literal["spellcheck"] | None = Field(
        default=None, description="the front end every input went through first (auditor.defence.DefendedVictim), None for the bare model"
    )

    def title(self) -> str:
        """``location``, and for an endpoint that named its model ``name/version@weights``: two releases served
        under one name and port are told apart."""
        title = self.location if self.served is None else f"{self.location} ({self.served.label()})"
        return title if self.defence is None else f"{title} behind the {self.defence} front end"


class WordEdit(BaseModel):
    """One word an attack changed, as a reader sees it (``auditor.validity.word_edits``).

    ``kind``: ``misspelling`` (a character edit that is no word of the dictionary and that the spell checker
    corrects back to ``original``), ``substitution`` (any other change of a word: into another word, or into
    something the spell checker does not restore; never part of a valid success), ``insertion`` or
    ``deletion`` of a whole word. ``is_word``: the edited word is another word of the dictionary; ``restored``: the spell
    checker's correction of the edited word is ``original`` (both ``None`` for insertions and deletions)."""

    kind: Literal["misspelling", "substitution", "insertion", "deletion"]
    original: str | None
    edited: str | None
    is_word: bool | None = None
    restored: bool | None = None


class AttackOutcome(BaseModel):
    """One example under one attack. ``status``: ``skipped`` when the model already got it wrong.
    ``example_id`` names the example by its text (``auditor.data.example_id``), so reports of other models
    or releases on the same examples pair up (``auditor diff``) whatever their order."""

    index: int
    example_id: str = Field(description="digest of the example's text and text pair (auditor.data.example_id)")
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
    rejected: int = Field(default=0, description="candidates the validity constraints refused")
    word_edits: int = Field(description="word-level edit distance original -> perturbed (words inserted by insertions)")
    inserted_words: list[str] = Field(description="words of the perturbed text that are not in the original (edit alignment)")
    edits: list[WordEdit] = Field(description="every word changed, with what a reader makes of it (auditor.validity.word_edits)")
    seconds: float
    forensics: Forensics | None = Field(default=None, description="a success's forensics (auditor.forensics); None otherwise or with settings.forensics off")

    @property
    def original_prediction(self) -> int:
        """The class the model predicted on the original example."""
        return max(range(len(self.original_probabilities)), key=self.original_probabilities.__getitem__)

    @property
    def perturbed_prediction(self) -> int:
        """The class the model predicted on the last text the attack showed it (the original when unchanged)."""
        return max(range(len(self.perturbed_probabilities)), key=self.perturbed_probabilities.__getitem__)


class ClassBreakdown(BaseModel):
    """One class's examples under one attack; each rate with its 95 % Wilson interval beside it (``*_interval``)."""

    label: int
    name: str
    examples: int
    clean_accuracy: float
    accuracy_under_attack: float
    success_rate: float | None
    clean_accuracy_interval: Rate
    accuracy_under_attack_interval: Rate
    success_rate_interval: Rate


class BudgetPoint(BaseModel):
    """Accuracy under attack counting only attacks that succeeded within ``budget`` queries."""

    budget: int
    accuracy: float
    accuracy_interval: Rate


class AttackSummary(BaseModel):
    """One attack over the audited examples. Rates are fractions; ``success_rate`` is over the examples the
    model got right; query and edit means are over successful attacks (``None`` when there are none). Every
    rate has its 95 % Wilson interval beside it (``clean_accuracy_interval``…: count, total, bounds).

    Every attack of an audit runs under the same validity constraints (``auditor.validity``, listed in
    ``RobustnessReport.validity``): a candidate that inserts, substitutes or deletes a label-carrying word or
    a negation, edits a number, or changes a word into anything but a misspelling a reader undoes is rejected
    before it is queried; ``rejected`` says how many candidates that took.
    Costs: ``queries`` model predictions, ``explanations`` explanation calls, ``seconds`` wall time.
    """

    name: str
    description: str
    examples: int
    clean_accuracy: float
    accuracy_under_attack: float
    success_rate: float | None
    clean_accuracy_interval: Rate
    accuracy_under_attack_interval: Rate
    success_rate_interval: Rate
    mean_queries: float | None = Field(description="queries per attacked (not skipped) example")
    mean_queries_per_success: float | None
    mean_word_edits: float | None = Field(description="word-level edit distance per successful attack")
    queries: int = Field(description="model queries over all examples")
    explanations: int = Field(description="explanation calls over all examples")
    rejected: int = Field(description="candidates the validity constraints refused, over all examples")
    per_class: list[ClassBreakdown]
    budget_curve: list[BudgetPoint]
    successes_by_edit: dict[str, int] = Field(
        description="valid successes by the kinds of word edit they hold (WordEdit.kind, joined with '+'): 'misspelling' "
        "(character edits), 'insertion' (pattern or random words inserted), 'insertion+misspelling', 'deletion'…"
    )
    seconds: float
    outcomes: list[AttackOutcome]


class TriggerRow(BaseModel):
    """A mined pattern inserted into every example of another class (``target_class``): the accuracy on that
    class without and with it, and the 95 % percentile-bootstrap interval of the drop (the examples
    resampled with their pair of outcomes). ``significant``: the interval excludes 0. Each accuracy has its
    95 % Wilson interval beside it (``accuracy_before_interval``, ``accuracy_after_interval``)."""

    pattern: str
    pattern_label: str
    target_class: str
    examples: int
    accuracy_before: float
    accuracy_after: float
    accuracy_before_interval: Rate
    accuracy_after_interval: Rate
    drop_low: float
    drop_high: float
    support: int
    score: float

    @property
    def drop(self) -> float:
        return self.accuracy_before - self.accuracy_after

    @property
    def significant(self) -> bool:
        return self.drop_low > 0 or self.drop_high < 0


OUTCOME_FREE_SETTINGS = frozenset({"forensics", "causal_check", "advice"})
"""Settings that change no attack outcome: checkpoints and ``auditor diff`` ignore them, so a resumed run may
add or drop the steps they name."""


class AuditSettings(BaseModel):
    """What an audit ran. ``transformations``: the edits the attribution-guided attack tries on each ranked
    word (chosen on training examples only, ``bench/tune_audit.py``); ``max_words``: the most words any
    attack may edit; ``steps`` and ``layers``: quadrature nodes and encoder layers (None: all) of the ranking's
    attribution (chosen like ``transformations``); ``sufficient_gain``: the share
    of the way to the decision boundary at which the search keeps a word's candidate without querying its
    others (``AttributionGreedySearch``; none: query all, keep the best; chosen like ``transformations``);
    ``sweep_words``: the most words probed for the last edit (``AttributionGreedySearch.last_edit_sweep``;
    none: every remaining word; chosen like ``transformations``);
    ``top_k``: patterns per class for pattern insertion (chosen like ``transformations``); ``random_candidates``:
    the random-insertion baseline's words per step (10, as in every earlier audit, whatever ``top_k`` is:
    fewer would weaken the baseline the patterns are compared with); ``patterns_after_edits``: among other transformations,
    pattern insertions are tried only when the search without them fails (``AttributionGreedySearch``'s
    ``held_back``; chosen like ``transformations``); ``forensics``: each success of each attack is explained
    (``auditor.forensics``: two explanations per success, which change no outcome, so a checkpoint and
    ``auditor diff`` ignore this setting)."""

    examples: int
    budget: int
    max_words: int
    transformations: list[Literal["tokenedit", "charedit", "typo", "delete", "pattern"]] = ["tokenedit", "pattern"]
    candidates: int = Field(default=3, ge=1, description="single-character edits the 'tokenedit' transformation tries per word")
    steps: int = Field(default=1, ge=1)
    layers: list[int] | None = [-1]
    sufficient_gain: float | None = Field(default=0.75, gt=0, le=1)
    sweep_words: int | None = Field(default=3, ge=1)
    top_k: int = Field(default=10, ge=1)
    random_candidates: int = Field(default=10, ge=1, description="random words the random-insertion baseline tries per step")
    patterns_after_edits: bool = Field(
        default=True, description="pattern insertion waits until the search without it fails (chosen like transformations)"
    )
    positions: Literal["pattern", "all"]
    baselines: list[Literal["random", "deepwordbug", "leave-one-out", "pattern-only", "edits-only"]]
    trigger_top_k: int
    trigger_examples: int | None
    seed: int
    invariance: list[CheckName] = Field(default=[], description="the invariance checks run, in report order")
    typo_rate: float = Field(
        default=0.1, gt=0, le=1, description="the share of eligible words the 'typos' check misspells (chosen on training data, bench/tune_invariance.py)"
    )
    forensics: bool = Field(default=True, description="the forensics of every success of every attack (auditor.forensics); they change no outcome")
    advice: bool = Field(
        default=True,
        description="measure the defence advice in the same run (RobustnessReport.advice, .defended); it changes no attack outcome, "
        "so checkpoints and 'auditor diff' ignore it",
    )
    causal_check: bool = Field(
        default=True, description="mask the heads the forensics implicate most and re-run the successes (auditor.causal; needs forensics and the PyTorch weights)"
    )


class LexiconSummary(BaseModel):
    """The label-word lexicon an audit's validity constraint used (its words are in ``LabelLexicon``)."""

    data: ExamplesUsed | None
    options: LexiconOptions
    words: int
    phrase_words: int
    associated_words: int
    user_words: int
    vocabulary_words: int = Field(default=0, description="training-data words the dictionary lacks, counted as words (LabelLexicon.vocabulary)")


class RobustnessReport(BaseModel):
    """Result of ``auditor audit``: clean accuracy, the attribution-guided attack, the baselines run on the
    same examples with the same query budget and constraints, and the universal-trigger table.
    ``resumed``: how many attack outcomes came from an earlier, interrupted run's checkpoint. Schema version
    3 added the ``tokenedit`` transformation (the new default) to ``settings.transformations``; version 4
    added ``settings.sufficient_gain``; version 5 the reader constraint: ``validity`` (the checks every
    attack ran under) and each outcome's ``edits``; version 6 each outcome's ``example_id``, which
    ``auditor diff`` pairs reports by; version 7 token-pair patterns (``TriggerPattern``), the trigger
    table's bootstrap intervals and each attack's ``successes_by_edit``; version 8 ``victim.served``, the
    model an endpoint's answers named in their identity headers; version 9 the data's ``mapping`` (columns
    and labels of a team's own file), ``reference`` (gold, or the model's own prediction for a file without
    labels), ``duplicates`` left out and ``sample_seed``; the invariance checks (``invariance``,
    ``settings.invariance`` and ``settings.typo_rate``); and a 95 % Wilson interval beside every rate
    (``clean_accuracy_interval``, ``accuracy_under_attack_interval``, ``success_rate_interval``, per class, per
    budget point and per trigger row: ``auditor.schemas.Rate``). Each success's ``forensics`` and, per attack,
    ``forensics_summary`` say which heads and word pairs carried the flips (``auditor.forensics``).
    ``advice``: the defences tried in the same run
    (``auditor.defence.spellcheck_advice``: successes the spell-check front end undoes, its clean cost, the
    adaptive audit's success rates), and ``defended``: the adaptive audit's summaries, the audit's attacks
    against the front end plus the model (None when ``settings.advice`` is off or the audited victim is
    already defended, ``victim.defence``). Version 10 added ``forensics``, ``forensics_summary``,
    ``causal_check``, ``advice``, ``defended``, ``victim.defence``, the lexicon's training ``vocabulary`` and the
    settings ``forensics``, ``causal_check`` and ``advice``."""

    schema_version: Literal[10] = 10
    auditor_version: str
    victim: VictimIdentity
    data: ExamplesUsed
    lexicon: LexiconSummary
    validity: list[str] = Field(description="the checks every candidate of every attack passed, in words")
    resumed: int = 0
    patterns: ExamplesUsed
    patterns_model: ModelIdentity
    settings: AuditSettings
    clean_accuracy: float
    clean_accuracy_interval: Rate
    attack: AttackSummary
    baselines: list[AttackSummary]
    triggers: list[TriggerRow]
    trigger_data: ExamplesUsed
    invariance: list[InvarianceCheck] = Field(default=[], description="one row per invariance check, in settings.invariance order")
    forensics_summary: list[ForensicsSummary] = Field(
        default=[], description="per attack, in report order (attack, then baselines), the forensics of its successes; empty with settings.forensics off"
    )
    causal_check: CausalCheck | None = Field(
        default=None, description="the main attack's implicated heads masked, beside random and attribution-pruned ones (auditor.causal); None: not run"
    )
    causal_check_note: str | None = Field(default=None, description="why the causal check did not run, when it did not")
    advice: list[Advice] = Field(default=[], description="each defence tried in the run, one line with its measures (auditor.defence.spellcheck_advice)")
    defended: list[AttackSummary] | None = Field(
        default=None, description="the adaptive audit: the same attacks against the spell-check front end plus the model (None: not run)"
    )
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
