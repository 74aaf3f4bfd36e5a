"""Attribution patterns as adversarial triggers (Hao et al., AAAI 2021, section "Adversarial Attack").

For each example, the head holding the largest self-attention attribution over all layers and heads is
found, and its top token pairs (query → key, [CLS]/[SEP] excluded) form a pattern: the pairs' tokens with
their segments and relative word positions. Patterns whose attribution mass (the sum of the pairs'
attributions) is under a threshold are dropped; identical patterns predicted as the same label are
aggregated over examples and ranked per label (``TriggerSet.ranked``): fewer words first, then more
occurrences, then more total mass.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from pydantic import ValidationError

from auditor import __version__
from auditor.attribution import ExampleAttribution, SelfAttentionAttribution
from auditor.data import Dataset, Example
from auditor.errors import InputError
from auditor.models import Classifier
from auditor.quadrature import QuadratureMethod
from auditor.schemas import TriggerElement, TriggerMiningOptions, TriggerPattern, TriggerSet

WORD_EDGE_CHARACTERS = "'-_*@"
HOMOGLYPHS = "˗৭Ȣ𝟕бƼᏎƷᒿlO`ɑЬϲԁе𝚏ɡհіϳ𝒌ⅼｍոорԛⲅѕ𝚝սѵԝ×уᴢ"  # characters textattack keeps inside words
WORD_PATTERN = re.compile(f"[\\w{re.escape(HOMOGLYPHS)}'\\-_*@]+")


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the words TextAttack sees in ``text`` (its ``words_from_text`` rule: runs of word
    characters, homoglyphs, apostrophes, hyphens, ``_*@``, trimmed of ``'-_*@`` at the ends)."""
    spans = []
    for match in WORD_PATTERN.finditer(text):
        word = match.group()
        start = match.start() + len(word) - len(word.lstrip(WORD_EDGE_CHARACTERS))
        end = match.end() - (len(word) - len(word.rstrip(WORD_EDGE_CHARACTERS)))
        if end > start:
            spans.append((start, end))
    return spans


@dataclass(frozen=True)
class HeadPairs:
    """The head with the largest attribution entry of one example and its top (query, key) token pairs."""

    layer: int
    head: int
    pairs: list[tuple[int, int]]
    mass: float


def top_head_pairs(attribution: ExampleAttribution, special: torch.Tensor, pairs: int = 2) -> HeadPairs:
    """argmax over (layer, head) of max_{q,k} Attr_h(A^l)[q, k], then that head's ``pairs`` largest entries
    (fewer when the example has fewer token pairs).

    Rows and columns of special tokens (``special[i]`` true) are excluded from both maxima; ``mass`` is the
    sum of the chosen entries.
    """
    keep = ~special
    mask = keep[:, None] & keep[None, :]
    pairs = min(pairs, int(mask.sum()))
    if pairs == 0:
        raise InputError("an example needs at least one token besides [CLS]/[SEP] to mine a pattern")
    stacked = torch.stack(attribution.attributions)  # (layers, heads, n, n)
    masked = stacked.masked_fill(~mask, float("-inf"))
    per_head = masked.flatten(2).max(-1).values  # (layers, heads)
    flat = int(per_head.flatten().argmax())
    layer, head = divmod(flat, per_head.shape[1])
    values, indices = masked[layer, head].flatten().topk(pairs)
    n = stacked.shape[-1]
    return HeadPairs(
        layer=attribution.layers[layer],
        head=attribution.head_ids[layer][head],
        pairs=[(int(i) // n, int(i) % n) for i in indices],
        mass=float(values.sum()),
    )


@dataclass
class _Occurrences:
    """Running aggregate of one pattern over the examples where it occurs."""

    first: TriggerPattern
    anchor_sums: dict[int, float] = field(default_factory=dict)
    count: int = 0
    mass: float = 0.0
    gold_labels: dict[int, int] = field(default_factory=dict)

    def add(self, pattern: TriggerPattern, gold: int | None) -> None:
        self.count += 1
        self.mass += pattern.mass
        for segment, anchor in pattern.anchors.items():
            self.anchor_sums[segment] = self.anchor_sums.get(segment, 0.0) + anchor
        if gold is not None:
            self.gold_labels[gold] = self.gold_labels.get(gold, 0) + 1

    def pattern(self) -> TriggerPattern:
        anchors = {segment: total / self.count for segment, total in sorted(self.anchor_sums.items())}
        return self.first.model_copy(
            update={"anchors": anchors, "count": self.count, "mass": self.mass, "gold_labels": dict(sorted(self.gold_labels.items()))}
        )


def example_pattern(
    classifier: Classifier, example: Example, encoding_index: int, encoding, head_pairs: HeadPairs, label: int
) -> TriggerPattern:
    """The pattern of one example: the distinct tokens of the head's top pairs, located in words."""
    texts = [example.text, example.text_pair]
    sequence_ids = encoding.sequence_ids(encoding_index)
    tokens = encoding.tokens(encoding_index)
    spans = [word_spans(t) if t is not None else [] for t in texts]
    located = []
    for position in sorted({p for pair in head_pairs.pairs for p in pair}):
        segment = sequence_ids[position]
        characters = encoding.token_to_chars(encoding_index, position)
        segment_spans = spans[segment]
        word_index = next((i for i, (_, end) in enumerate(segment_spans) if characters.start < end), len(segment_spans))
        inside = word_index < len(segment_spans) and segment_spans[word_index][0] <= characters.start
        word = texts[segment][slice(*segment_spans[word_index])] if inside else texts[segment][characters.start : characters.end]
        located.append((segment, word_index, tokens[position], word))
    first_word = {s: min(w for seg, w, _, _ in located if seg == s) for s in {seg for seg, *_ in located}}
    elements = [
        TriggerElement(token=token, word=word, segment=segment, offset=word_index - first_word[segment])
        for segment, word_index, token, word in sorted(located)
    ]
    anchors = {s: first_word[s] / max(1, len(spans[s])) for s in sorted(first_word)}
    return TriggerPattern(
        label=label,
        label_name=classifier.labels[label],
        elements=elements,
        anchors=anchors,
        count=1,
        mass=head_pairs.mass,
        gold_labels={},
    )


MinedPattern = tuple[TriggerPattern, int | None]  # one example's pattern and its gold label


class PatternMiner:
    """The patterns of a batch of examples: each example's top head pairs (target: the predicted label) as a
    pattern, unless their mass is under ``options.threshold``. A batch's result depends on its examples
    alone, so batches can be mined anywhere and aggregated in order (``rank_patterns``)."""

    def __init__(self, classifier: Classifier, options: TriggerMiningOptions) -> None:
        self.classifier = classifier
        self.options = options
        self.attribution = SelfAttentionAttribution(classifier.model)
        self.special_ids = torch.tensor(sorted(set(classifier.tokenizer.all_special_ids)))

    def __call__(self, batch: list[Example]) -> list[MinedPattern]:
        options = self.options
        pairs = [e.text_pair for e in batch] if batch[0].text_pair is not None else None
        encoding = self.classifier.encode([e.text for e in batch], pairs, truncate=True)
        results = self.attribution.attribute(
            encoding["input_ids"], encoding["attention_mask"], encoding.get("token_type_ids"), n_steps=options.steps, method=options.method
        )
        mined = []
        for index, (example, result) in enumerate(zip(batch, results)):
            head_pairs = top_head_pairs(result, torch.isin(result.input_ids, self.special_ids), options.pairs_per_example)
            if head_pairs.mass >= options.threshold:
                mined.append((example_pattern(self.classifier, example, index, encoding, head_pairs, result.predicted), example.label))
        return mined


class MiningExecutor(Protocol):
    """Mines batches elsewhere (e.g. ``auditor.distributed.RayMiningExecutor``)."""

    def mine(self, batches: list[list[Example]], options: TriggerMiningOptions) -> list[list[MinedPattern]]:
        """``PatternMiner(classifier, options)(batch)`` for every batch, in the order of ``batches``."""


def rank_patterns(mined: Iterable[MinedPattern]) -> list[TriggerPattern]:
    """Aggregate identical patterns (in the order given, so float sums are reproducible) and rank them per
    label."""
    aggregated: dict[tuple[object, ...], _Occurrences] = {}
    for pattern, gold in mined:
        aggregated.setdefault(pattern.key, _Occurrences(pattern)).add(pattern, gold)
    return sorted((o.pattern() for o in aggregated.values()), key=lambda p: (p.label, p.rank_key()))


def mine_triggers(
    classifier: Classifier,
    dataset: Dataset,
    examples: int = 500,
    threshold: float = 0.01,
    pairs_per_example: int = 2,
    steps: int = 3,
    method: QuadratureMethod = "gausslegendre",
    batch_size: int = 16,
    executor: MiningExecutor | None = None,
    exclude: set[str] | None = None,
    progress: Callable[[int], object] | None = None,
) -> TriggerSet:
    """Mine attribution patterns from the first ``examples`` examples of ``dataset`` (target: the predicted
    label), drop those with mass under ``threshold`` or with a word of ``exclude`` (lower-cased: the words
    that carry a label by themselves, ``auditor.validity``), aggregate and rank them per label. The batches
    are mined here or by ``executor``; the result is the same. ``progress`` is called with the number of
    examples finished (after each batch mined here; once at the end for an executor)."""
    if examples < 1:
        raise InputError(f"the number of examples must be positive, got {examples}")
    if pairs_per_example < 1:
        raise InputError(f"pairs per example must be positive, got {pairs_per_example}")
    started = time.perf_counter()
    used = dataset.head(examples)
    options = TriggerMiningOptions(examples=len(used), pairs_per_example=pairs_per_example, threshold=threshold, steps=steps, method=method)
    batches = list(_batches(used.examples, batch_size))
    if executor is None:
        miner = PatternMiner(classifier, options)
        mined = []
        for batch in batches:
            mined.append(miner(batch))
            if progress is not None:
                progress(len(batch))
    else:
        mined = executor.mine(batches, options)
        if progress is not None:
            progress(len(used))
    excluded = exclude or set()
    kept = (p for batch in mined for p in batch if not any(e.word.lower() in excluded for e in p[0].elements))
    return TriggerSet(
        model=classifier.identity,
        data=used.identity(),
        options=options,
        patterns=rank_patterns(kept),
        auditor_version=__version__,
        seconds=time.perf_counter() - started,
    )


def _batches(examples: list[Example], size: int) -> Iterator[list[Example]]:
    for start in range(0, len(examples), size):
        yield examples[start : start + size]


def load_triggers(path: Path) -> TriggerSet:
    """Read a patterns file written by ``auditor mine``; InputError when missing or not a patterns file."""
    if not path.is_file():
        raise InputError(f"patterns file not found: {path}")
    try:
        return TriggerSet.model_validate_json(path.read_bytes())
    except ValidationError as error:
        raise InputError(f"{path} is not a patterns file written by 'auditor mine': {error.errors()[0]['msg']}") from None
