"""Forensics of successful attacks (``auditor.forensics``): which heads and token pairs carried each flip,
and over all the successes of an attack, which heads and kinds of pair recur. Layers and heads are counted
from 0, as in every explanation (``LayerExplanation.layer``, ``TokenPair.head``)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from auditor.schemas.common import Rate


class WordPairChange(BaseModel):
    """The attribution to the target class that head ``head`` of layer ``layer`` carried between two units
    of the text, before (original text) and after (adversarial text) the attack: for units a and b,
    P = Σ_{i∈a} Σ_{j∈b} Attr_h(A^l)[i, j] + Σ_{i∈b} Σ_{j∈a} Attr_h(A^l)[i, j] over their tokens (both directions;
    once when a = b, the attribution among one word's own pieces).

    A unit is a word (TextAttack's words, aligned between the two texts by ``auditor.validity.word_alignment``),
    or a token outside every word: a special token ([CLS], [SEP]) or punctuation. ``original`` and
    ``adversarial`` name the two units in each text: None where a unit exists in one text only (an inserted word
    has no original, so its pairs rose from 0; a deleted word has no adversarial counterpart). ``kind``: what
    the pair is (``auditor.forensics.pair_kind``); ``edited``: either unit is a word the attack changed,
    inserted or deleted."""

    layer: int
    head: int
    original: tuple[str | None, str | None]
    adversarial: tuple[str | None, str | None]
    kind: str
    edited: bool
    before: float
    after: float
    change: float = Field(description="after − before")


class HeadChange(BaseModel):
    """A head's attribution mass for the target class, Σ_{i,j} Attr_h(A^l)[i, j] over every token pair, on the
    original text (``before``) and on the adversarial text (``after``)."""

    layer: int
    head: int
    before: float
    after: float
    change: float = Field(description="after − before")


class Forensics(BaseModel):
    """Why one attack succeeded: the attribution to the class the model predicted on the original text
    (``target``), computed on the original and on the adversarial text (every layer, every head, the
    explanations' default quadrature), compared per head and per pair of units.

    ``fallen_pairs``: the (layer, head, pair) entries whose attribution fell most, largest fall first;
    ``risen_pairs``: those that rose most, largest rise first; ``head_changes``: the heads whose attribution
    mass changed most, largest |change| first; ``sentence``: the largest fall in words, drawn from these
    numbers; ``probability_before``/``after``: the target's probability on each text; ``seconds``: the time
    the two explanations and the comparison took."""

    target: int
    target_label: str
    probability_before: float
    probability_after: float
    fallen_pairs: list[WordPairChange]
    risen_pairs: list[WordPairChange]
    head_changes: list[HeadChange]
    sentence: str
    seconds: float


class ImplicatedHead(BaseModel):
    """A head among the first ``ForensicsSummary.implicated_per_success`` of a success's ``head_changes``:
    in how many successes (``count``, and as a ``rate`` over the successes with its 95 % Wilson interval), and
    its mean mass change there."""

    layer: int
    head: int
    count: int
    rate: Rate
    mean_change: float


class BrokenPairKind(BaseModel):
    """A kind of pair (``WordPairChange.kind``) among the first ``ForensicsSummary.broken_per_success`` of a
    success's ``fallen_pairs``: in how many successes, and as a rate over the successes with its 95 % Wilson
    interval."""

    kind: str
    count: int
    rate: Rate


class ForensicsSummary(BaseModel):
    """The forensics of every success of one attack (``attack``, its name in the report): the heads most often
    implicated, most often first; the kinds of pair most often broken, most often first; and ``edited``: the
    successes whose largest fall is a pair holding a word the attack changed, inserted or deleted."""

    attack: str
    successes: int = Field(description="successes with forensics: every rate's total")
    refused: int = Field(default=0, description="successes whose explanation the endpoint refused (over its answer limit): no forensics")
    implicated_per_success: int
    broken_per_success: int
    heads: list[ImplicatedHead]
    pair_kinds: list[BrokenPairKind]
    edited: Rate
    seconds: float = Field(description="the forensics' seconds over these successes")
