"""Universal triggers: which mined token pairs an audit may insert (supported, label-free, and for text pairs
free of content words), and the trigger table, where each is inserted into every example of the other
classes and the accuracy drop gets a bootstrap interval."""

from __future__ import annotations

from collections.abc import Sequence

from auditor.attack import PatternInsertion, attacked_text
from auditor.checkpoint import Checkpoint
from auditor.data import Example
from auditor.schemas import LabelLexicon, TriggerPattern, TriggerRow, TriggerSet
from auditor.statistics import bootstrap_drop, wilson
from auditor.progress import Progress
from auditor.validity import NEGATIONS, adds_content
from auditor.victims import Victim


def label_free(pattern: TriggerPattern, lexicon: LabelLexicon | None, pair: bool = False) -> bool:
    """The pattern inserts no word of the label-word lexicon and no negation (``LabelWordConstraint``'s words),
    and, into a text pair, no word that adds content (``ReaderConstraint``)."""
    return not any(
        w in NEGATIONS or (lexicon is not None and w in lexicon.words) or (pair and adds_content(w)) for w in pattern.words
    )


def insertable_patterns(
    triggers: TriggerSet, label: int, k: int, lexicon: LabelLexicon | None = None, pair: bool = False
) -> list[TriggerPattern]:
    """The ``k`` best label-free patterns of ``label`` (every mined pattern has the mining's ``min_support``)."""
    return [p for p in triggers.ranked(label) if label_free(p, lexicon, pair)][:k]


def top_patterns(
    triggers: TriggerSet, exclude_label: int | None, k: int, lexicon: LabelLexicon | None = None, pair: bool = False
) -> list[TriggerPattern]:
    """The ``k`` best insertable, label-free patterns of every label except ``exclude_label``, interleaved by rank."""
    per_label = [
        insertable_patterns(triggers, label, k, lexicon, pair) for label in range(len(triggers.model.labels)) if label != exclude_label
    ]
    return [p for rank in range(k) for patterns in per_label if rank < len(patterns) for p in [patterns[rank]]]


def trigger_table(
    victim: Victim,
    triggers: TriggerSet,
    examples: Sequence[Example],
    k: int,
    checkpoint: Checkpoint,
    lexicon: LabelLexicon | None = None,
    seed: int = 0,
    show_progress: bool = False,
) -> list[TriggerRow]:
    """Insert each of the top-``k`` label-free patterns of every label (at its mined position) into every
    example of each other class; the accuracy on that class without and with it, and the 95 % bootstrap
    interval of the drop (``auditor.statistics.bootstrap_drop``, paired by example, seeded by ``seed``).
    ``show_progress``: count the examples predicted (``auditor.progress``)."""
    labels = victim.labels
    pair = any(e.text_pair is not None for e in examples)
    texts = [attacked_text(e) for e in examples]
    members_of = {target: [i for i, e in enumerate(examples) if e.label == target] for target in range(len(labels))}
    rows_to_fill = [
        (pattern_label, rank, pattern, target)
        for pattern_label in range(len(labels))
        for rank, pattern in enumerate(insertable_patterns(triggers, pattern_label, k, lexicon, pair))
        for target in range(len(labels))
        if target != pattern_label and members_of[target]
    ]
    total = len(texts) + sum(len(members_of[target]) for *_, target in rows_to_fill)
    with Progress("trigger table: examples predicted", total, show=show_progress, unit="example") as shown:
        if "triggers:clean" not in checkpoint:
            checkpoint.put("triggers:clean", victim([t.tokenizer_input for t in texts]).argmax(1).tolist() if texts else [])
        shown.update(len(texts))
        return [
            _trigger_row(victim, pattern, pattern_label, rank, target, members_of[target], texts, checkpoint, seed, shown)
            for pattern_label, rank, pattern, target in rows_to_fill
        ]


def _trigger_row(
    victim: Victim, pattern: TriggerPattern, pattern_label: int, rank: int, target: int, members: list[int],
    texts: list, checkpoint: Checkpoint, seed: int, shown: Progress,
) -> TriggerRow:  # fmt: skip
    """One row of ``trigger_table``: ``pattern`` inserted into the examples of class ``target`` (``members``)."""
    labels = victim.labels
    clean = checkpoint["triggers:clean"]
    insertion = PatternInsertion([pattern])
    key = f"triggers:{pattern_label}:{rank}:{target}"
    if key not in checkpoint:
        perturbed = [insertion(texts[i]) for i in members]
        applied = [(i, p[0]) for i, p in zip(members, perturbed) if p]
        after = dict(zip([i for i, _ in applied], victim([p.tokenizer_input for _, p in applied]).argmax(1).tolist())) if applied else {}
        checkpoint.put(key, [after.get(i, clean[i]) for i in members])
    shown.update(len(members))
    before = [clean[i] == target for i in members]
    after_correct = [p == target for p in checkpoint[key]]
    low, high = bootstrap_drop(before, after_correct, seed=seed)
    accuracy_before, accuracy_after = wilson(sum(before), len(members)), wilson(sum(after_correct), len(members))
    return TriggerRow(
        pattern=pattern.text,
        pattern_label=labels[pattern_label],
        target_class=labels[target],
        examples=len(members),
        accuracy_before=accuracy_before.rate,
        accuracy_after=accuracy_after.rate,
        accuracy_before_interval=accuracy_before,
        accuracy_after_interval=accuracy_after,
        drop_low=low,
        drop_high=high,
        support=pattern.support,
        score=pattern.score,
    )
