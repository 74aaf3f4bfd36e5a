"""``auditor compare``: a full and a pruned model (local or deployed) side by side on the same examples:
prediction agreement, accuracy, latency, and robustness to the same attribution patterns (the attack and
the universal-trigger table)."""

from __future__ import annotations

import time
from pathlib import Path

from auditor import __version__
from auditor.audit import attack_examples, attacked_text, checkpoint_identity, pattern_attacks, summarise, trigger_table
from auditor.checkpoint import Checkpoint
from auditor.data import Dataset
from auditor.errors import InputError
from auditor.schemas import AuditSettings, ComparisonReport, ModelComparison, TriggerSet
from auditor.triggers import data_used
from auditor.victims import Victim


def compare_side(
    victim: Victim, dataset: Dataset, triggers: TriggerSet, settings: AuditSettings, checkpoint_dir: Path, side: str
) -> tuple[ModelComparison, list[int]]:
    """Evaluate one model; returns its comparison entry and its predictions on the examples."""
    examples = dataset.head(settings.examples).examples
    inputs = [attacked_text(e).tokenizer_input for e in examples]
    victim(inputs[:1])  # warm-up, not timed
    before = victim.seconds
    predictions = victim(inputs).argmax(1).tolist()
    elapsed = victim.seconds - before
    checkpoint = Checkpoint(checkpoint_dir / f"checkpoint-{side}.jsonl", checkpoint_identity(victim, dataset, triggers, settings, dataset))
    outcomes = attack_examples("attribution", pattern_attacks(victim, triggers, settings).__getitem__, examples, checkpoint, settings.seed)
    entry = ModelComparison(
        victim=victim.identity,
        accuracy=sum(p == e.label for p, e in zip(predictions, examples)) / len(examples),
        ms_per_example=1000 * elapsed / len(examples),
        attack=summarise("attribution", outcomes, victim.labels, settings.budget),
        triggers=trigger_table(victim, triggers, dataset.head(settings.trigger_examples).examples, settings.trigger_top_k, checkpoint),
    )
    return entry, predictions


def compare_models(
    full: Victim, pruned: Victim, dataset: Dataset, triggers: TriggerSet, settings: AuditSettings, checkpoint_dir: Path
) -> ComparisonReport:
    if full.labels != pruned.labels:
        raise InputError(f"the models have different labels: {full.labels} and {pruned.labels}")
    started = time.perf_counter()
    full_entry, full_predictions = compare_side(full, dataset, triggers, settings, checkpoint_dir, "full")
    pruned_entry, pruned_predictions = compare_side(pruned, dataset, triggers, settings, checkpoint_dir, "pruned")
    agreement = sum(a == b for a, b in zip(full_predictions, pruned_predictions)) / len(full_predictions)
    return ComparisonReport(
        auditor_version=__version__,
        data=data_used(dataset.head(settings.examples)),
        patterns=triggers.data,
        settings=settings,
        agreement=agreement,
        full=full_entry,
        pruned=pruned_entry,
        seconds=time.perf_counter() - started,
    )
