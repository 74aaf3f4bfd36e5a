"""The adversarial-pattern experiment of Hao et al. (AAAI 2021, "Self-Attention Attribution", §"Adversarial
Attack"), run as the paper ran it, with controls and a validity column.

The paper mines token pairs from the attribution trees of training examples of one class, ranks them by their
frequency among the trees' edges (``aggregate_patterns(ranking="frequency")``: the number of that class's
examples whose tree joins the two words), and inserts a top pattern into the dev examples of another class,
each word at its relative position in the text it was mined from (the paper's ``run_adver_evaluate.py`` puts
token i at round((n + m)·r_i) of a text of n tokens receiving m, r_i its relative position). Here the words go
into the same text as the paper's: the sentence of a single-sentence task, the premise of a text pair (only
pairs mined inside the premise qualify), in TextAttack's words (so the reader rule judges them): the first
word before word round(n·r_a) of the n words of that text, the second ``gap`` words after it (the pair's most
common distance in the mined texts, as ``PatternInsertion`` places it: an adjacent pair stays adjacent).

A ``Probe`` is one thing inserted; per pattern P = (a, b) at relative positions (r_a, r_b):

- ``pattern``: a at r_a, b ``gap`` words after it;
- ``random-pair``: words a', b' drawn (seeded) among the ``window`` training words whose frequency rank is
  nearest a's and b's (``FrequencyMatcher``), placed as a and b: is it the attribution, or any words as common?
- ``apart``: a at the start of the text and b at its end: is it the pair, or the two words anywhere?
- ``single-word``: the pattern's more attributed word alone at its position, the more attributed being the
  one with the larger sum of tree-edge attributions S̃ over the class's mined trees (``word_attribution``):
  is it the pair, or one word?

Accuracy after insertion is measured on the examples the model gets right before (so it is 1 before), with
Wilson's 95 % interval. Pure computation: the caller loads models and data and predicts.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import auditor.textattack_env  # noqa: F401  (NLTK_DATA before textattack)
from textattack.shared import AttackedText

from auditor.attack import Insertion, attacked_text, insert_words
from auditor.data import Example
from auditor.schemas import MinedExample, PaperAttackRow, ProbeKind, TriggerPattern
from auditor.statistics import wilson
from auditor.triggers import is_single_word, word_spans
from auditor.validity import NEGATIONS, ReaderConstraint

Predict = Callable[[list[AttackedText]], list[int]]
"""Predicted label ids of a batch of texts."""


@dataclass(frozen=True)
class Probe:
    """Words inserted into the first text of an example, word i before word round(n·positions[i]) of its n
    words (after the last when that is n), in order; with a ``gap``, the second word ``gap`` words after the
    first instead."""

    kind: ProbeKind
    words: tuple[str, ...]
    positions: tuple[float, ...]
    gap: int | None = None

    @property
    def text(self) -> str:
        return " … ".join(self.words) if self.kind == "apart" else " ".join(self.words)

    def apply(self, text: AttackedText) -> AttackedText:
        length = len(text.words_per_input[0])
        places = [round(length * p) for p in self.positions]
        if self.gap is not None:
            places[1] = min(places[0] + self.gap - 1, length)
        return insert_words(text, [Insertion(0, place, word) for word, place in zip(self.words, places)])


def class_patterns(patterns: Sequence[TriggerPattern], label: int, k: int) -> list[TriggerPattern]:
    """The ``k`` most frequent patterns of ``label`` inside the first text (the premise of a pair), most
    frequent first (ties: text order)."""
    inside = [p for p in patterns if p.label == label and p.segments == (0, 0)]
    return sorted(inside, key=lambda p: (-p.support, p.words))[:k]


def word_attribution(mined: Sequence[MinedExample], label: int) -> Counter:
    """Per word, Σ of the normalised attribution S̃ of the tree edges that touch it, over the mined examples of
    ``label`` (gold label; predicted when unlabelled)."""
    total: Counter = Counter()
    for example in mined:
        if (example.gold if example.gold is not None else example.predicted) != label:
            continue
        for pair in example.pairs:
            for word in pair.words:
                total[word] += pair.score
    return total


class FrequencyMatcher:
    """Random words as frequent as a given word: word w of frequency rank ρ (document counts over the training
    texts, ties by text order) is matched by a word drawn uniformly from the ``window`` words of nearest rank
    (ρ ± window/2, shifted inside the vocabulary), never one of ``avoid``. Only single words without a digit are
    drawn. Counts of a word not in the training texts are 0 (rank: the rarest)."""

    def __init__(self, texts: Sequence[str], window: int = 50) -> None:
        counts: Counter = Counter()
        for text in texts:
            counts.update({text[a:b].lower() for a, b in word_spans(text)})
        self.vocabulary = [w for w, _ in sorted(counts.items(), key=lambda item: -item[1]) if is_single_word(w) and not any(c.isdigit() for c in w)]
        self.rank = {w: i for i, w in enumerate(self.vocabulary)}
        self.window = window

    def match(self, word: str, rng: random.Random, avoid: set[str]) -> str:
        rank = self.rank.get(word, len(self.vocabulary) - 1)
        start = max(0, min(rank - self.window // 2, len(self.vocabulary) - self.window - 1))
        candidates = [w for w in self.vocabulary[start : start + self.window + 1] if w not in avoid]
        if not candidates:
            raise ValueError(f"no word as frequent as {word!r} to draw")
        return rng.choice(candidates)


def probes(pattern: TriggerPattern, attribution: Counter, matcher: FrequencyMatcher, seed: int = 0) -> list[Probe]:
    """The pattern and its three controls (module docstring); the random pair seeded by ``seed`` and the
    pattern's words."""
    rng = random.Random(f"{seed}\x00{' '.join(pattern.words)}")
    avoid = set(pattern.words)
    first = matcher.match(pattern.words[0], rng, avoid)
    second = matcher.match(pattern.words[1], rng, avoid | {first})
    strongest = max((0, 1), key=lambda i: (attribution[pattern.words[i]], -i))
    return [
        Probe("pattern", pattern.words, pattern.positions, pattern.gap),
        Probe("random-pair", (first, second), pattern.positions, pattern.gap),
        Probe("apart", pattern.words, (0.0, 1.0)),
        Probe("single-word", (pattern.words[strongest],), (pattern.positions[strongest],)),
    ]


def correct_examples(examples: Sequence[Example], label: int, predict: Predict) -> list[Example]:
    """The examples of gold ``label`` that ``predict`` gets right."""
    members = [e for e in examples if e.label == label]
    predicted = predict([attacked_text(e) for e in members]) if members else []
    return [e for e, p in zip(members, predicted) if p == label]


def probe_row(
    task: str, direction: str, probe: Probe, examples: Sequence[Example], label: int, predict: Predict, label_words: set[str], reader: ReaderConstraint
) -> PaperAttackRow:
    """Insert ``probe`` into every example (all of gold ``label``, predicted right): accuracy after with its
    Wilson interval, whether it inserts a label word (``label_words`` or a negation), how many insertions the
    reader rule admits."""
    originals = [attacked_text(e) for e in examples]
    perturbed = [probe.apply(t) for t in originals]
    still = sum(p == label for p in predict(perturbed)) if perturbed else 0
    after = wilson(still, len(examples))
    return PaperAttackRow(
        task=task,
        direction=direction,
        kind=probe.kind,
        pattern=probe.text,
        examples=len(examples),
        accuracy_before=1.0 if examples else None,
        accuracy_after=after.rate,
        after_low=after.low,
        after_high=after.high,
        label_word=any(w in label_words or w in NEGATIONS for w in probe.words),
        reader_valid=sum(reader.admits(p, o) for p, o in zip(perturbed, originals)),
    )


def paper_attack(
    task: str,
    labels: Sequence[str],
    patterns: Sequence[TriggerPattern],
    mined: Sequence[MinedExample],
    dev: Sequence[Example],
    predict: Predict,
    matcher: FrequencyMatcher,
    label_words: set[str],
    k: int = 3,
    seed: int = 0,
) -> list[PaperAttackRow]:
    """Every direction (attacked class s, pattern class t ≠ s): the top-``k`` frequency patterns of t
    (``class_patterns``), each followed by its controls (``probes``), inserted into the dev examples of s that
    ``predict`` gets right. ``patterns`` and ``mined``: ``aggregate_patterns(mined, …, ranking="frequency")``
    and the mined examples it aggregated."""
    reader = ReaderConstraint()
    rows = []
    for source in range(len(labels)):
        attacked = correct_examples(dev, source, predict)
        for target in range(len(labels)):
            if target == source:
                continue
            direction = f"{labels[source]} -> {labels[target]}"
            attribution = word_attribution(mined, target)
            for pattern in class_patterns(patterns, target, k):
                for probe in probes(pattern, attribution, matcher, seed):
                    rows.append(probe_row(task, direction, probe, attacked, source, predict, label_words, reader))
    return rows
