"""``auditor compare``: a full and a pruned model (local or deployed) side by side on the same examples:
prediction agreement, accuracy, latency, and robustness to the same attacks under the same validity
constraints (the attribution-guided attack, the requested baselines, per class) and the universal-trigger
table."""

from __future__ import annotations

import time
from pathlib import Path

from auditor import __version__
from auditor.attack import attacked_text
from auditor.audit import Progress, attack_examples, audit_attacks, checkpoint_identity, summarise
from auditor.universal import trigger_table
from auditor.checkpoint import Checkpoint
from auditor.data import Dataset
from auditor.errors import InputError
from auditor.schemas import AuditSettings, ComparisonReport, LabelLexicon, ModelComparison, TriggerSet
from auditor.victims import Victim


def compare_side(
    victim: Victim,
    dataset: Dataset,
    triggers: TriggerSet,
    settings: AuditSettings,
    lexicon: LabelLexicon,
    checkpoint_dir: Path,
    side: str,
    progress: Progress | None = None,
) -> tuple[ModelComparison, list[int]]:
    """Evaluate one model; returns its comparison entry and its predictions on the examples."""
    examples = dataset.head(settings.examples).examples
    inputs = [attacked_text(e).tokenizer_input for e in examples]
    victim(inputs[:1])  # warm-up, not timed
    before = victim.seconds
    predictions = victim(inputs).argmax(1).tolist()
    elapsed = victim.seconds - before
    identity = checkpoint_identity(victim, dataset, triggers, settings, dataset, lexicon)
    checkpoint = Checkpoint(checkpoint_dir / f"checkpoint-{side}.jsonl", identity)
    attacks = audit_attacks(victim, triggers, settings, lexicon, dataset)
    outcomes = attack_examples(attacks, examples, checkpoint, settings.seed, progress and (lambda n, d, t: progress(f"{side} {n}", d, t)))
    summaries = [summarise(name, outcomes[name], victim.labels, settings.budget) for name in attacks]
    entry = ModelComparison(
        victim=victim.identity,
        accuracy=sum(p == e.label for p, e in zip(predictions, examples)) / len(examples),
        ms_per_example=1000 * elapsed / len(examples),
        attack=summaries[0],
        baselines=summaries[1:],
        triggers=trigger_table(
            victim, triggers, dataset.head(settings.trigger_examples).examples, settings.trigger_top_k, checkpoint, lexicon, settings.seed,
            progress is not None,
        ),
    )
    return entry, predictions


def compare_models(
    full: Victim,
    pruned: Victim,
    dataset: Dataset,
    triggers: TriggerSet,
    settings: AuditSettings,
    checkpoint_dir: Path,
    lexicon: LabelLexicon,
    progress: Progress | None = None,
) -> ComparisonReport:
    if full.labels != pruned.labels:
        raise InputError(f"the models have different labels: {full.labels} and {pruned.labels}")
    started = time.perf_counter()
    full_entry, full_predictions = compare_side(full, dataset, triggers, settings, lexicon, checkpoint_dir, "full", progress)
    pruned_entry, pruned_predictions = compare_side(pruned, dataset, triggers, settings, lexicon, checkpoint_dir, "pruned", progress)
    agreement = sum(a == b for a, b in zip(full_predictions, pruned_predictions)) / len(full_predictions)
    return ComparisonReport(
        auditor_version=__version__,
        data=dataset.head(settings.examples).identity(),
        patterns=triggers.data,
        settings=settings,
        agreement=agreement,
        full=full_entry,
        pruned=pruned_entry,
        seconds=time.perf_counter() - started,
    )
