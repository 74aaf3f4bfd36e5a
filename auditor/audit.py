"""Robustness audit: attack every example with the attribution-guided attack and the baselines (random-word
insertion, DeepWordBug) under one query budget and one set of validity constraints (``auditor.validity``:
no label-carrying word inserted, substituted or deleted; at most ``max_words`` words edited), run the
everyday perturbations of ``auditor.invariance`` as invariance checks, explain every success
(``auditor.forensics``), build the universal-trigger table from label-free patterns, and summarise it all in a
``RobustnessReport``. Each finished example, and each success's forensics, goes to a checkpoint first, so an
interrupted audit resumes without losing or redoing work.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from auditor import __version__
from auditor.attack import (
    MaxInsertedWords,
    Ranking,
    attacked_text,
    attribution_attack,
    deepwordbug_attack,
    inserted_words,
    random_insertion_attack,
)
from auditor.checkpoint import Checkpoint
from auditor.data import Dataset, Example
from auditor.defence import defend, spellcheck_advice
from auditor.edits import word_edit_distance
from auditor.errors import InputError
from auditor.explain import validate_layers
from auditor.findings import attack_forensics, audit_causal_check
from auditor.forensics import forensics_summary
from auditor.invariance.checks import perturbations, run_checks
from auditor.schemas import (
    OUTCOME_FREE_SETTINGS,
    AttackOutcome,
    AttackSummary,
    AuditSettings,
    BudgetPoint,
    ClassBreakdown,
    LabelLexicon,
    LexiconSummary,
    Rate,
    RobustnessReport,
    TriggerSet,
)
from auditor.statistics import wilson
from auditor.triggers import patterns_identity
from auditor.universal import top_patterns, trigger_table
from auditor.validity import VALIDITY_CHECKS, LabelWordConstraint, Reader, ReaderConstraint, adds_content, example_words, word_edits
from auditor.victims import Victim
from textattack import Attack
from textattack.attack_results import SkippedAttackResult, SuccessfulAttackResult

Progress = Callable[[str, int, int], None]

DESCRIPTIONS = {
    "attribution": "edit words in order of the attribution drawn from them (one explanation per example, no ranking query)",
    "random": "insert random words from the data's vocabulary (greedy search, random_candidates words per step)",
    "deepwordbug": "TextAttack's DeepWordBug recipe: character edits, greedy leave-one-out word-importance search",
    "leave-one-out": "the attribution attack with DeepWordBug's leave-one-out word ranking (a query per word) instead: "
    "what the attribution ranking contributes",
    "pattern-only": "the attribution attack inserting mined token pairs only: what the patterns do alone",
    "edits-only": "the attribution attack without pattern insertion: what the patterns add to the character edits",
}


def data_vocabulary(dataset: Dataset) -> list[str]:
    """Every distinct lower-cased word of the dataset that may be inserted: what the random-insertion
    baseline draws from (for text pairs, its function words: ``ReaderConstraint`` refuses the others)."""
    words = set().union(*(example_words(example) for example in dataset.examples))
    return sorted(w for w in words if not (dataset.is_pair and adds_content(w)))


def _outcome(index: int, example: Example, result, seconds: float, explanations: int, rejected: int, reader: Reader) -> AttackOutcome:
    original, perturbed = result.original_result, result.perturbed_result
    before, after = original.attacked_text, perturbed.attacked_text
    columns = [after.tokenizer_input] if isinstance(after.tokenizer_input, str) else list(after.tokenizer_input)
    status = (
        "skipped" if isinstance(result, SkippedAttackResult) else "succeeded" if isinstance(result, SuccessfulAttackResult) else "failed"
    )
    return AttackOutcome(
        index=index,
        example_id=example.id,
        label=int(example.label),
        text=example.text,
        text_pair=example.text_pair,
        perturbed_text=columns[0],
        perturbed_text_pair=columns[1] if len(columns) > 1 else None,
        status=status,
        original_probabilities=[float(x) for x in original.raw_output],
        perturbed_probabilities=[float(x) for x in perturbed.raw_output],
        queries=int(perturbed.num_queries),
        explanations=explanations,
        rejected=rejected,
        word_edits=word_edit_distance(before.words, after.words),
        inserted_words=inserted_words(before.words, after.words),
        edits=word_edits(before.words, after.words, reader),
        seconds=seconds,
    )


def attack_key(name: str, index: int, defence: str | None = None) -> str:
    """The checkpoint key of attack ``name``'s outcome on example ``index`` (against the victim behind the
    front end ``defence``, in the adaptive audit of the defence advice)."""
    return f"attack:{name}:{index}" if defence is None else f"attack+{defence}:{name}:{index}"


def attack_example(name: str, attack_for_label: Callable[[int], Attack], index: int, example: Example, seed: int) -> AttackOutcome:
    """Attack one example, counting its explanation calls and the candidates the label-word constraint
    rejected. Its outcome depends on the example, its index and ``seed`` alone: the random generators are
    seeded from (seed, index) and the attack's caches start empty, so a resumed run, or one spread over many
    processes, gives the same outcome as an uninterrupted single-process run."""
    random.seed(seed * 1_000_003 + index)
    np.random.seed((seed * 1_000_003 + index) % 2**32)
    attack = attack_for_label(int(example.label))
    attack.clear_cache()
    validity = [c for c in attack.constraints if isinstance(c, LabelWordConstraint | ReaderConstraint)]
    reader = next((c.reader for c in validity if isinstance(c, ReaderConstraint)), Reader())
    victim = attack.goal_function.model
    explained, rejected = getattr(victim, "explanations", 0), sum(c.rejected for c in validity)
    started = time.perf_counter()
    result = attack.attack(attacked_text(example), int(example.label))
    seconds = time.perf_counter() - started
    explanations = getattr(victim, "explanations", 0) - explained
    return _outcome(index, example, result, seconds, explanations, sum(c.rejected for c in validity) - rejected, reader)


class AttackExecutor(Protocol):
    """Runs (attack, example) pairs elsewhere (e.g. ``auditor.distributed.RayAttackExecutor``)."""

    def attack(self, names: list[str], examples: Sequence[Example], checkpoint: Checkpoint, progress: Progress | None) -> None:
        """Put the outcome of every attack in ``names`` on every example into ``checkpoint`` (under
        ``attack_key``), each exactly once, skipping those already there."""


def attack_examples(
    attacks: dict[str, Callable[[int], Attack]],
    examples: Sequence[Example],
    checkpoint: Checkpoint,
    seed: int,
    progress: Progress | None = None,
    defence: str | None = None,
) -> dict[str, list[AttackOutcome]]:
    """Every attack on each example (see ``attack_example``), interleaved: example by example, every attack
    in turn, so their seconds are measured under the same conditions; outcomes already in the checkpoint are
    reused (``defence``: the attacks target that front end's victim; their own checkpoint keys)."""
    for index, example in enumerate(examples):
        for name, attack_for_label in attacks.items():
            key = attack_key(name, index, defence)
            if key not in checkpoint:
                checkpoint.put(key, attack_example(name, attack_for_label, index, example, seed).model_dump(mode="json"))
            if progress:
                progress(name if defence is None else f"{name} against {defence}", index + 1, len(examples))
    return {name: [AttackOutcome.model_validate(checkpoint[attack_key(name, i, defence)]) for i in range(len(examples))] for name in attacks}


def budget_points(budget: int) -> list[int]:
    points = sorted({b for b in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if b < budget} | {budget})
    return points


def summarise(name: str, outcomes: list[AttackOutcome], labels: list[str], budget: int) -> AttackSummary:
    """Accuracy under attack = examples the model got right whose attack failed, over all examples; every
    rate with its 95 % Wilson interval (``auditor.statistics.wilson``)."""

    def mean(values: list[float]) -> float | None:
        return float(np.mean(values)) if values else None

    total = len(outcomes)
    correct = [o for o in outcomes if o.status != "skipped"]
    succeeded = [o for o in correct if o.status == "succeeded"]
    per_class = []
    for label, name_ in enumerate(labels):
        members = [o for o in outcomes if o.label == label]
        if not members:
            continue
        right = [o for o in members if o.status != "skipped"]
        won = [o for o in right if o.status == "succeeded"]
        per_class.append(ClassBreakdown(label=label, name=name_, examples=len(members), **attack_rates(len(members), len(right), len(won))))
    curve = []
    for b in budget_points(budget):
        held = wilson(sum(1 for o in correct if not (o.status == "succeeded" and o.queries <= b)), total)
        curve.append(BudgetPoint(budget=b, accuracy=held.rate, accuracy_interval=held))
    return AttackSummary(
        name=name,
        description=DESCRIPTIONS[name],
        examples=total,
        **attack_rates(total, len(correct), len(succeeded)),
        mean_queries=mean([o.queries for o in correct]),
        mean_queries_per_success=mean([o.queries for o in succeeded]),
        mean_word_edits=mean([o.word_edits for o in succeeded]),
        queries=sum(o.queries for o in outcomes),
        explanations=sum(o.explanations for o in outcomes),
        rejected=sum(o.rejected for o in outcomes),
        per_class=per_class,
        budget_curve=curve,
        successes_by_edit=dict(sorted(Counter("+".join(sorted({e.kind for e in o.edits})) for o in succeeded).items())),
        seconds=sum(o.seconds for o in outcomes),
        outcomes=outcomes,
    )


def attack_rates(examples: int, correct: int, succeeded: int) -> dict[str, float | Rate | None]:
    """Clean accuracy (``correct`` of ``examples``), accuracy under attack (``correct − succeeded`` of
    ``examples``) and success rate (``succeeded`` of ``correct``; None when the model got none right), each
    with its Wilson interval as the ``*_interval`` field beside it."""
    rates = {
        "clean_accuracy": wilson(correct, examples),
        "accuracy_under_attack": wilson(correct - succeeded, examples),
        "success_rate": wilson(succeeded, correct),
    }
    return {name: r.rate for name, r in rates.items()} | {f"{name}_interval": r for name, r in rates.items()}


def validity_constraints(lexicon: LabelLexicon, max_words: int | None) -> list:
    """The constraints every attack of an audit shares (``VALIDITY_CHECKS``): no label-carrying word or
    negation inserted, substituted or deleted, every changed word a misspelling a reader undoes, no number
    edited, and at most ``max_words`` words edited (``None``: the attack caps them itself). The reader knows
    the lexicon's training vocabulary (``Reader``)."""
    cap = [] if max_words is None else [MaxInsertedWords(max_words)]
    return [LabelWordConstraint(lexicon), ReaderConstraint(Reader(lexicon.vocabulary)), *cap]


def attribution_attacks(
    victim: Victim, triggers: TriggerSet, settings: AuditSettings, lexicon: LabelLexicon, pair: bool, ranking: Ranking = "attribution"
) -> dict[int, Attack]:
    """Per gold label, the attribution-guided attack (pattern insertion tries the top label-free patterns of
    the other labels; ``pair``: the texts are pairs); ``ranking`` as in ``attribution_attack``."""
    return {
        label: attribution_attack(
            victim,
            settings.transformations,
            settings.budget,
            validity_constraints(lexicon, settings.max_words),
            top_patterns(triggers, label, settings.top_k, lexicon, pair),
            settings.steps,
            settings.max_words,
            settings.sufficient_gain,
            Reader(lexicon.vocabulary).is_misspelling,
            ranking,
            settings.layers,
            settings.sweep_words,
            settings.candidates,
            settings.patterns_after_edits,
            settings.positions,
        )
        for label in range(len(victim.labels))
    }


def audit_attacks(
    victim: Victim, triggers: TriggerSet, settings: AuditSettings, lexicon: LabelLexicon, dataset: Dataset
) -> dict[str, Callable[[int], Attack]]:
    """Every attack of the audit on ``dataset``'s examples by name (the attribution-guided attack, then the
    chosen baselines), all under ``validity_constraints``; each maps an example's gold label to the attack to
    run on it."""
    pair = dataset.is_pair
    attacks: dict[str, Callable[[int], Attack]] = {"attribution": attribution_attacks(victim, triggers, settings, lexicon, pair).__getitem__}
    if "random" in settings.baselines:
        random_attack = random_insertion_attack(
            victim, data_vocabulary(dataset), settings.random_candidates, settings.budget, settings.max_words, settings.seed, validity_constraints(lexicon, None)
        )
        attacks["random"] = lambda _: random_attack
    if "deepwordbug" in settings.baselines:
        dwb = deepwordbug_attack(victim, settings.budget, validity_constraints(lexicon, settings.max_words))
        attacks["deepwordbug"] = lambda _: dwb
    if "leave-one-out" in settings.baselines:
        attacks["leave-one-out"] = attribution_attacks(victim, triggers, settings, lexicon, pair, "leave-one-out").__getitem__
    ablations = {"pattern-only": ["pattern"], "edits-only": [t for t in settings.transformations if t != "pattern"]}
    for name, transformations in ablations.items():
        if name in settings.baselines:
            if not transformations:
                raise InputError(f"the {name} baseline needs transformations besides 'pattern'")
            ablated = settings.model_copy(update={"transformations": transformations})
            attacks[name] = attribution_attacks(victim, triggers, ablated, lexicon, pair).__getitem__
    return attacks


def without_unusable_patterns(settings: AuditSettings, triggers: TriggerSet, lexicon: LabelLexicon, pair: bool) -> tuple[AuditSettings, str | None]:
    """``settings`` without pattern insertion (the ``pattern`` transformation, the ``pattern-only`` baseline) when
    ``triggers`` hold no label-free pattern that can be inserted into these texts (``top_patterns``; a text
    pair takes filler words only), and a line saying so; else ``settings`` and None."""
    uses = "pattern" in settings.transformations or "pattern-only" in settings.baselines
    if not uses or top_patterns(triggers, None, 1, lexicon, pair):
        return settings, None
    transformations = [t for t in settings.transformations if t != "pattern"]
    if not transformations:
        raise InputError("the patterns hold no label-free pattern with a word that can be inserted, and --transformations is 'pattern' alone")
    dropped = "pattern insertion" + (" and the pattern-only baseline" if "pattern-only" in settings.baselines else "")
    note = (
        f"note: none of the {len(triggers.patterns)} mined patterns is label-free with a word that can be inserted"
        f"{' into a text pair (filler words only)' if pair else ''}: the audit goes on without {dropped}"
    )
    update = {"transformations": transformations, "baselines": [b for b in settings.baselines if b != "pattern-only"]}
    return settings.model_copy(update=update), note


def validity_checks(settings: AuditSettings) -> list[str]:
    """The checks every candidate of every attack passes, in words (``RobustnessReport.validity``)."""
    return [*VALIDITY_CHECKS, f"at most {settings.max_words} words edited"]


def lexicon_summary(lexicon: LabelLexicon) -> LexiconSummary:
    return LexiconSummary(
        data=lexicon.data,
        options=lexicon.options,
        words=len(lexicon.words),
        phrase_words=lexicon.phrase_words,
        associated_words=lexicon.associated_words,
        user_words=lexicon.user_words,
        vocabulary_words=len(lexicon.vocabulary),
    )


def labelled_by_predictions(victim: Victim, dataset: Dataset) -> Dataset:
    """``dataset`` when it has labels; else its examples labelled by ``victim``'s predictions (arg max), the
    reference each attack must then change (``Dataset.reference`` is ``"prediction"``)."""
    if not dataset.unlabelled:
        return dataset
    inputs = [e.text if e.text_pair is None else (e.text, e.text_pair) for e in dataset.examples]
    return dataset.labelled_by(victim(inputs).argmax(1).tolist())


def checkpoint_identity(
    victim: Victim, dataset: Dataset, triggers: TriggerSet, settings: AuditSettings, trigger_data: Dataset, lexicon: LabelLexicon
) -> dict:
    lexicon_digest = hashlib.sha256(lexicon.model_dump_json().encode()).hexdigest()[:16]
    return {
        "report_schema": RobustnessReport.model_fields["schema_version"].default,
        "lexicon": lexicon_digest,
        "auditor": __version__,
        "victim": victim.identity.model_dump(mode="json"),
        "data": dataset.identity().model_dump(mode="json"),
        "trigger_data": trigger_data.identity().model_dump(mode="json"),
        "patterns": patterns_identity(triggers),  # not their scores: another CPU may round those differently
        "settings": json.loads(settings.model_dump_json(exclude=OUTCOME_FREE_SETTINGS)),  # a resumed run may add or drop them
    }


def run_audit(
    victim: Victim,
    dataset: Dataset,
    triggers: TriggerSet,
    settings: AuditSettings,
    checkpoint: Checkpoint,
    trigger_data: Dataset,
    lexicon: LabelLexicon,
    progress: Progress | None = None,
    executor: AttackExecutor | None = None,
    training: Dataset | None = None,
) -> RobustnessReport:
    """Audit ``victim`` on the first ``settings.examples`` examples of ``dataset`` (the attacks run in this
    process, or by ``executor``; the report is the same). ``training``: the task's training data, which orders
    the causal check's attribution-pruned heads (``auditor.findings``); without it the check does not run."""
    started = time.perf_counter()
    examples = dataset.head(settings.examples).examples
    if any(e.label is None for e in examples) or any(e.label is None for e in trigger_data.examples):
        raise InputError(
            f"{dataset.name} {dataset.split} has unlabelled examples: label them all (or none, to audit against the model's own predictions)"
        )
    labels = victim.labels
    if triggers.model.labels != labels:
        raise InputError(f"the patterns were mined on a model with labels {triggers.model.labels}, the audited model has {labels}")
    if ("pattern" in settings.transformations or "pattern-only" in settings.baselines) and not top_patterns(
        triggers, None, 1, lexicon, dataset.is_pair
    ):
        raise InputError("the patterns file has no label-free pattern with a word that can be inserted")
    if lexicon.labels != labels:
        raise InputError(f"the label-word lexicon has labels {lexicon.labels}, the audited model has {labels}")
    if victim.identity.model is not None:
        validate_layers(settings.layers, victim.identity.model.num_layers)  # the ranking's layers, before any work
    attacks = audit_attacks(victim, triggers, settings, lexicon, dataset)
    resumed = sum(attack_key(name, i) in checkpoint for name in attacks for i in range(len(examples)))
    if executor is not None:
        executor.attack(list(attacks), examples, checkpoint, progress)
    shown = progress if executor is None else None  # the executor reported progress as outcomes arrived
    outcomes = attack_examples(attacks, examples, checkpoint, settings.seed, shown)
    if settings.forensics:
        outcomes = attack_forensics(victim, outcomes, checkpoint, lexicon, progress)
    summaries = [summarise(name, outcomes[name], labels, settings.budget) for name in attacks]
    forensics = [forensics_summary(s.name, [o.forensics for o in s.outcomes if o.status == "succeeded"]) for s in summaries] if settings.forensics else []
    causal, advice, causal_note = None, [], None
    if settings.forensics and settings.causal_check:
        causal, pruning_advice, causal_note = audit_causal_check(victim, summaries[0], forensics[0], training, settings.seed)
        advice += [pruning_advice] if pruning_advice is not None else []
    defended = None
    if settings.advice and victim.identity.defence is None:  # a defended victim's audit is already the adaptive one
        front_end = defend(victim, "spellcheck", lexicon)
        adaptive = attack_examples(audit_attacks(front_end, triggers, settings, lexicon, dataset), examples, checkpoint, settings.seed, progress, "spellcheck")
        defended = [summarise(name, adaptive[name], labels, settings.budget) for name in adaptive]
        advice.insert(0, spellcheck_advice(front_end, examples, outcomes, adaptive, defended))
    typos = perturbations(settings.invariance, settings.typo_rate, Reader(lexicon.vocabulary))
    invariance = run_checks(victim, examples, typos, settings.seed, progress)
    table_examples = trigger_data.head(settings.trigger_examples).examples
    rows = trigger_table(victim, triggers, table_examples, settings.trigger_top_k, checkpoint, lexicon, settings.seed, progress is not None)
    return RobustnessReport(
        auditor_version=__version__,
        victim=victim.identity,
        data=dataset.head(settings.examples).identity(),
        lexicon=lexicon_summary(lexicon),
        validity=validity_checks(settings),
        resumed=resumed,
        patterns=triggers.data,
        patterns_model=triggers.model,
        settings=settings,
        clean_accuracy=summaries[0].clean_accuracy,
        clean_accuracy_interval=summaries[0].clean_accuracy_interval,
        attack=summaries[0],
        baselines=summaries[1:],
        triggers=rows,
        trigger_data=trigger_data.head(settings.trigger_examples).identity(),
        invariance=invariance,
        forensics_summary=forensics,
        causal_check=causal,
        causal_check_note=causal_note,
        advice=advice,
        defended=defended,
        seconds=time.perf_counter() - started,
    )
