"""Robustness release to release: two audits of the same examples, under the same settings and validity
checks, paired example by example and tested with the exact McNemar test (``auditor diff``, ``auditor audit
--baseline``). The audits may come from any mix of local model, ONNX graph and endpoint."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from math import comb
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from auditor import __version__
from auditor.errors import InputError, validation_message
from auditor.schemas import (
    OUTCOME_FREE_SETTINGS,
    AttackOutcome,
    AuditSettings,
    InvarianceOutcome,
    ClassChange,
    DiffSide,
    ExampleChange,
    ExamplesUsed,
    LexiconSummary,
    PairedComparison,
    RobustnessDiff,
    RobustnessReport,
)

SCHEMA_VERSION: int = RobustnessReport.model_fields["schema_version"].default


def mcnemar_exact(newly_broken: int, newly_held: int) -> float:
    """Two-sided exact McNemar p-value of ``b`` and ``c`` discordant pairs: under chance each of the n = b + c
    goes either way with probability ½, so p = min(1, 2 · Σ_{k ≤ min(b, c)} C(n, k) / 2ⁿ), computed exactly."""
    if newly_broken < 0 or newly_held < 0:
        raise ValueError("counts of discordant pairs are non-negative")
    n = newly_broken + newly_held
    tail = sum(comb(n, k) for k in range(min(newly_broken, newly_held) + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2**n)))


Correction = Literal["none", "holm"]


def holm_adjusted(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (in the given order): the i-th smallest of m becomes
    max_{j ≤ i} min(1, (m − j + 1) · p_(j)); rejecting those below α keeps the family-wise error at most α."""
    order = sorted(range(len(p_values)), key=p_values.__getitem__)
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


@dataclass(frozen=True)
class AuditScope:
    """What two audits must share to be compared: the examples (by digest), the labels, the settings and
    the validity checks (the label-word lexicon included)."""

    data: ExamplesUsed
    labels: list[str]
    settings: AuditSettings
    lexicon: LexiconSummary
    validity: list[str]

    @classmethod
    def of(cls, report: RobustnessReport) -> AuditScope:
        return cls(report.data, report.victim.labels, report.settings, report.lexicon, report.validity)


def same_examples(a: ExamplesUsed | None, b: ExamplesUsed | None) -> bool:
    """The same examples by content (count and digest of texts and labels), wherever their files are."""
    return (a is None) == (b is None) and (a is None or (a.digest, a.count) == (b.digest, b.count))


def _lexicon_content(lexicon: LexiconSummary) -> tuple[object, ...]:
    return (lexicon.options, lexicon.words, lexicon.phrase_words, lexicon.associated_words, lexicon.user_words)


def scope_differences(base: AuditScope, new: AuditScope) -> list[str]:
    """What keeps two audits from being compared, one phrase per difference (empty when they compare).
    Data are compared by content, so audits made in other checkouts or on other machines compare."""
    problems = []
    if not same_examples(base.data, new.data):
        problems.append(
            f"they audit different examples: base {base.data.count} of {base.data.title} (digest {base.data.digest}), "
            f"new {new.data.count} of {new.data.title} (digest {new.data.digest})"
        )
    if base.labels != new.labels:
        problems.append(f"the models have different labels: base {base.labels}, new {new.labels}")
    base_settings, new_settings = (side.settings.model_dump(exclude=OUTCOME_FREE_SETTINGS) for side in (base, new))  # they change no outcome
    changed = [f"{name} {base_settings[name]} vs {new_settings[name]}" for name in base_settings if base_settings[name] != new_settings[name]]
    if changed:
        problems.append("the settings differ: " + ", ".join(changed))
    if not same_examples(base.lexicon.data, new.lexicon.data) or _lexicon_content(base.lexicon) != _lexicon_content(new.lexicon):
        problems.append(
            f"the label-word lexicons differ: base {base.lexicon.words} words ({_lexicon_source(base.lexicon)}), "
            f"new {new.lexicon.words} words ({_lexicon_source(new.lexicon)})"
        )
    elif base.validity != new.validity:
        problems.append("the validity checks differ (reports of different auditor versions): rerun the base audit")
    return problems


def _lexicon_source(lexicon: LexiconSummary) -> str:
    return f"{lexicon.data.title}, digest {lexicon.data.digest}" if lexicon.data else "user words only"


def check_comparable(base: AuditScope, new: AuditScope) -> None:
    """Raise an ``InputError`` naming every difference that keeps the audits from being compared."""
    problems = scope_differences(base, new)
    if problems:
        raise InputError("the reports cannot be compared: " + "; ".join(problems))


def load_report(path: Path, role: str = "report") -> RobustnessReport:
    """The ``RobustnessReport`` at ``path`` (a ``report.json`` or the folder holding one), or an ``InputError``
    that says what is wrong with it in one line (``role`` names it: 'base', 'new', '--baseline')."""
    file = path / "report.json" if path.is_dir() else path
    if not file.is_file():
        raise InputError(f"{role} report {path}: no such file" + (" (the folder holds no report.json)" if path.is_dir() else ""))
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{role} report {file} is not JSON: {error}") from None
    if not isinstance(raw, dict) or not {"victim", "attack", "settings"} <= raw.keys():
        raise InputError(f"{role} report {file} is not an audit report (the report.json of 'auditor audit')")
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise InputError(
            f"{role} report {file} has schema version {version}; auditor {__version__} compares version {SCHEMA_VERSION} "
            f"(from version 6 every outcome names its example): rerun that audit with this auditor"
        )
    try:
        return RobustnessReport.model_validate(raw)
    except ValidationError as error:
        raise InputError(f"{role} report {file} is not a valid audit report: {validation_message(error)}") from None


@dataclass(frozen=True)
class Observation:
    """One example under one measure, as the diff pairs it: whether it ``held`` (the model was right on the
    clean text; no valid attack succeeded; the perturbation did not flip the prediction), its status, and
    the text the model was shown last with what it answered."""

    example_id: str
    index: int
    label: int
    text: str
    text_pair: str | None
    status: str
    shown_text: str
    shown_pair: str | None
    predicted: int
    held: bool


def attack_observations(outcomes: list[AttackOutcome], clean: bool) -> list[Observation]:
    """Clean accuracy (``clean``: held when the model was right, shown the original) or accuracy under an
    attack (held when it failed, shown the last perturbed text)."""
    return [
        Observation(
            o.example_id, o.index, o.label, o.text, o.text_pair, o.status,
            o.text if clean else o.perturbed_text, o.text_pair if clean else o.perturbed_text_pair,
            o.original_prediction if clean else o.perturbed_prediction, o.status != "skipped" if clean else o.status == "failed",
        )  # fmt: skip
        for o in outcomes
    ]


def invariance_observations(outcomes: list[InvarianceOutcome]) -> list[Observation]:
    """An invariance check: held when the perturbation kept the prediction."""
    return [
        Observation(
            o.example_id, o.index, o.label, o.text, o.text_pair, "flipped" if o.flipped else "kept",
            o.perturbed_text, o.perturbed_text_pair, o.perturbed_prediction, not o.flipped,
        )  # fmt: skip
        for o in outcomes
    ]


def _keyed(observations: list[Observation]) -> dict[tuple[str, int], Observation]:
    """Observations by (example id, occurrence), so that a sentence audited twice pairs up in order."""
    seen: Counter[str] = Counter()
    keyed = {}
    for observation in observations:
        keyed[(observation.example_id, seen[observation.example_id])] = observation
        seen[observation.example_id] += 1
    return keyed


def _tally(pairs: list[tuple[Observation, Observation]]) -> tuple[int, int, int, int]:
    """Over (base, new) pairs: how many hold in the base report, in the new one, newly broken, newly held."""
    return (
        sum(b.held for b, _ in pairs),
        sum(n.held for _, n in pairs),
        sum(b.held and not n.held for b, n in pairs),
        sum(n.held and not b.held for b, n in pairs),
    )


def _change(base: Observation, new: Observation) -> ExampleChange:
    return ExampleChange(
        example_id=new.example_id,
        index=new.index,
        label=new.label,
        text=new.text,
        text_pair=new.text_pair,
        base_status=base.status,
        new_status=new.status,
        base_perturbed_text=base.shown_text,
        base_perturbed_text_pair=base.shown_pair,
        new_perturbed_text=new.shown_text,
        new_perturbed_text_pair=new.shown_pair,
        base_predicted=base.predicted,
        new_predicted=new.predicted,
    )


def paired_comparison(measure: str, base: list[AttackOutcome], new: list[AttackOutcome], labels: list[str]) -> PairedComparison:
    """Clean accuracy (``measure`` 'clean') or accuracy under one attack, example by example, with its exact
    McNemar p-value (not yet gated: ``regression`` False, ``adjusted_p_value`` the p-value; see ``gate``)."""
    clean = measure == "clean"
    return paired_observations(measure, attack_observations(base, clean), attack_observations(new, clean), labels)


def paired_observations(measure: str, base: list[Observation], new: list[Observation], labels: list[str]) -> PairedComparison:
    """Any measure's observations of both reports paired by example (``paired_comparison``); an invariance
    check's ``measure`` is ``invariance:<check>``."""
    base_by_key, new_by_key = _keyed(base), _keyed(new)
    if base_by_key.keys() != new_by_key.keys():
        raise InputError(f"the reports' {measure} outcomes are not of the same examples (example ids differ)")
    pairs = [(base_by_key[key], new_by_key[key]) for key in new_by_key]
    broken = [_change(b, n) for b, n in pairs if b.held and not n.held]
    kept = [_change(b, n) for b, n in pairs if n.held and not b.held]
    base_held, new_held, _, _ = _tally(pairs)
    per_class = []
    for label, name in enumerate(labels):
        members = [(b, n) for b, n in pairs if n.label == label]
        if members:
            class_base, class_new, class_broken, class_kept = _tally(members)
            per_class.append(
                ClassChange(
                    label=label,
                    name=name,
                    examples=len(members),
                    base_accuracy=class_base / len(members),
                    new_accuracy=class_new / len(members),
                    change=(class_new - class_base) / len(members),
                    newly_broken=class_broken,
                    newly_held=class_kept,
                )
            )
    p_value = mcnemar_exact(len(broken), len(kept))
    return PairedComparison(
        measure=measure,
        examples=len(pairs),
        base_accuracy=base_held / len(pairs),
        new_accuracy=new_held / len(pairs),
        change=(new_held - base_held) / len(pairs),
        newly_broken=len(broken),
        newly_held=len(kept),
        p_value=p_value,
        adjusted_p_value=p_value,
        regression=False,
        per_class=per_class,
        broken=broken,
        held=kept,
    )


def gate(comparisons: list[PairedComparison], max_drop: float, alpha: float, correction: Correction) -> list[PairedComparison]:
    """The comparisons with their verdicts: a regression when accuracy fell by more than ``max_drop`` (b − c >
    max_drop · n) and the (adjusted) p-value is below ``alpha``."""
    p_values = [c.p_value for c in comparisons]
    adjusted = holm_adjusted(p_values) if correction == "holm" else p_values
    return [
        c.model_copy(
            update={
                "adjusted_p_value": p,
                "regression": c.newly_broken - c.newly_held > max_drop * c.examples + 1e-9 and p < alpha,
            }
        )
        for c, p in zip(comparisons, adjusted)
    ]


def diff_reports(
    base: RobustnessReport,
    new: RobustnessReport,
    max_drop: float = 0.0,
    alpha: float = 0.05,
    base_path: str = "base",
    new_path: str = "new",
    correction: Correction = "none",
) -> RobustnessDiff:
    """Compare clean accuracy, the accuracy under every attack and the share of predictions every invariance
    check kept, of two audits of the same examples (``check_comparable`` first); see ``PairedComparison``."""
    if not 0 <= max_drop <= 1 or not 0 < alpha < 1:
        raise InputError(f"max_drop must be in [0, 1] and alpha in (0, 1), got {max_drop} and {alpha}")
    check_comparable(AuditScope.of(base), AuditScope.of(new))
    labels = new.victim.labels
    base_attacks = {a.name: a for a in [base.attack, *base.baselines]}
    comparisons = [paired_comparison("clean", base.attack.outcomes, new.attack.outcomes, labels)]
    comparisons += [paired_comparison(a.name, base_attacks[a.name].outcomes, a.outcomes, labels) for a in [new.attack, *new.baselines]]
    base_checks = {c.name: c for c in base.invariance}
    comparisons += [
        paired_observations(f"invariance:{c.name}", invariance_observations(base_checks[c.name].outcomes), invariance_observations(c.outcomes), labels)
        for c in new.invariance
        if c.outcomes or base_checks[c.name].outcomes  # a check that applied to no example has nothing to compare
    ]
    comparisons = gate(comparisons, max_drop, alpha, correction)
    notes = []
    if not same_examples(base.patterns, new.patterns) or base.patterns_model.weights_sha256 != new.patterns_model.weights_sha256:
        notes.append(
            f"the patterns differ (base mined {base.patterns.count} examples of {base.patterns.title} on "
            f"{base.patterns_model.name}, new {new.patterns.count} of {new.patterns.title} on {new.patterns_model.name}): "
            "pattern insertion and the trigger table differ with them"
        )
    if base.data.title != new.data.title:
        notes.append(f"the same examples, named differently: base {base.data.title}, new {new.data.title}")
    return RobustnessDiff(
        auditor_version=__version__,
        base=DiffSide(path=base_path, victim=base.victim, auditor_version=base.auditor_version),
        new=DiffSide(path=new_path, victim=new.victim, auditor_version=new.auditor_version),
        data=new.data,
        settings=new.settings,
        max_drop=max_drop,
        alpha=alpha,
        correction=correction,
        notes=notes,
        comparisons=comparisons,
        regression=any(c.regression for c in comparisons),
    )
