"""The reader constraint (``auditor.validity``): hand-written (original, edited) pairs a reader refuses or
keeps, judged by ``Reader`` and by every transformation's attack; negations and numbers; and a default audit
of SST-2 dev whose successes are checked word by word against pyspellchecker's own ``correction``, a code
path the constraint does not use."""

from __future__ import annotations

import random
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from spellchecker import SpellChecker

import auditor.textattack_env  # noqa: F401
from textattack.shared import AttackedText

from auditor.attack import attribution_attack, deepwordbug_attack
from auditor.audit import data_vocabulary, run_audit, validity_constraints
from auditor.checkpoint import Checkpoint
from auditor.data import load_dataset
from auditor.models import load_classifier
from auditor.schemas import AuditSettings, LabelLexicon, LexiconOptions, TriggerMiningOptions
from auditor.triggers import mine_triggers
from auditor.validity import NEGATIONS, LabelWordConstraint, Reader, ReaderConstraint, build_lexicon, FILLER_WORDS, word_edits
from auditor.victims import LocalVictim

SST2 = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "minilm-sst2"
REFUSED = [("good", "hood"), ("treat", "threat"), ("n't", "net"), ("worth", "north"), ("fails", "nails"), ("charm", "chart")]
KEPT = [("great", "graet"), ("mishmash", "mjishmash"), ("watchful", "watcjhful"), ("uncompromising", "ufncompromising")]
ENGLISH = SpellChecker(language="en")


def reader_accepts(original: str, edited: str) -> bool:
    """The issue's definition, written independently of ``Reader``: the edit is no dictionary word, and
    pyspellchecker's ``correction`` gives the original back (an original the dictionary lacks, a name, has
    no correction to compare with, and is accepted when no dictionary word is one edit from the edit; a
    change of case alone keeps the word)."""
    original, edited = original.lower(), edited.lower()
    if original == edited:
        return True  # a change of case alone: the same word
    if edited in ENGLISH or any(c.isdigit() for c in original + edited):
        return False
    if original in ENGLISH:
        return ENGLISH.correction(edited) == original
    return not ENGLISH.known(ENGLISH.edit_distance_1(edited)) and original in ENGLISH.edit_distance_1(edited)


def sentence(word: str) -> str:
    return f"the story is {word} and the cast is {word} too"


@pytest.fixture(scope="module")
def empty_lexicon() -> LabelLexicon:
    return LabelLexicon(labels=["negative", "positive"], data=None, options=LexiconOptions(), words={}, phrase_words=0, associated_words=0, user_words=0)


@pytest.fixture(scope="module")
def victim() -> LocalVictim:
    return LocalVictim(load_classifier(SST2))


@pytest.mark.parametrize(("original", "edited"), REFUSED + KEPT)
def test_reader_refuses_other_words_and_keeps_misspellings(original: str, edited: str) -> None:
    expected = (original, edited) in KEPT
    assert reader_accepts(original, edited) is expected  # the hand-written pairs agree with the definition
    reader = Reader()
    assert reader.is_misspelling(original, edited) is expected
    before, after = AttackedText(sentence(original)), AttackedText(sentence(original).replace(f" {original} ", f" {edited} ", 1))
    assert ReaderConstraint(reader)._check_constraint(after, before) is expected
    (edit,) = word_edits(before.words, after.words, reader)
    assert (edit.kind, edit.original, edit.edited) == ("misspelling" if expected else "substitution", original, edited)


@pytest.mark.parametrize("transformation", ["tokenedit", "charedit", "typo", "deepwordbug"])
def test_every_transformation_yields_only_what_a_reader_accepts(victim: LocalVictim, empty_lexicon: LabelLexicon, transformation: str) -> None:
    """Each transformation's candidates for the pairs' words, after the attack's constraints, are all
    misspellings by the independent definition; none is a refused pair; a kept pair passes the attack's
    constraints whichever transformation proposed it."""
    constraints = validity_constraints(empty_lexicon, 3)
    if transformation == "deepwordbug":
        attack = deepwordbug_attack(victim, 100, constraints)
    else:
        attack = attribution_attack(victim, [transformation], 100, constraints, is_misspelling=Reader().is_misspelling)
    seen = 0
    for original, _ in REFUSED + KEPT:
        text = AttackedText(sentence(original))
        for draw in range(20 if transformation != "tokenedit" else 1):  # the random edits: many draws
            random.seed(draw)
            np.random.seed(draw)
            for candidate in attack.get_transformations(text, original_text=text, indices_to_modify={3}):
                (edit,) = word_edits(text.words, candidate.words, Reader())
                assert (edit.original, edit.edited.lower()) not in REFUSED
                assert reader_accepts(edit.original, edit.edited), (transformation, edit)
                seen += 1
    assert seen > 0
    for original, edited in KEPT:
        before = AttackedText(sentence(original))
        after = AttackedText(sentence(original).replace(f" {original} ", f" {edited} ", 1))
        after.attack_attrs["last_transformation"] = attack.transformation
        assert attack.filter_transformations([after], before, before) == [after]


def test_negations_may_be_misspelled_but_not_deleted_inserted_or_replaced(empty_lexicon: LabelLexicon) -> None:
    assert {"not", "no", "n't", "never", "nothing", "nor", "without", "hardly", "barely"} <= NEGATIONS
    labels, reader = LabelWordConstraint(empty_lexicon), ReaderConstraint()
    original = AttackedText("the plot is not clever and never funny")

    def valid(perturbed: str) -> bool:
        text = AttackedText(perturbed)
        return labels._check_constraint(text, original) and reader._check_constraint(text, original)

    assert not valid("the plot is clever and never funny")  # "not" deleted
    assert not valid("the plot is nut clever and never funny")  # replaced by a word
    assert not valid("the plot is not clever and never really funny")  # an intensifier inserted
    assert valid("the plot is not clever and nevre funny")  # misspelled: a reader undoes it
    assert reader_accepts("never", "nevre")


def test_numbers_are_facts(empty_lexicon: LabelLexicon) -> None:
    labels, reader = LabelWordConstraint(empty_lexicon), ReaderConstraint()
    original = AttackedText(OrderedDict(premise="The treaty was signed in 1979 by 12 states.", hypothesis="It was signed in 1979."))
    for premise, hypothesis in [
        ("The treaty was signed in 1799 by 12 states.", "It was signed in 1979."),
        ("The treaty was signed in 1979 by states.", "It was signed in 1979."),
        ("The treaty was signed in 1979 by 12 states.", "It was signed in 2004 1979."),
        ("The treaty was signed in 1979 by 12 states.", "It was signed in 19a79."),
    ]:
        perturbed = AttackedText(OrderedDict(premise=premise, hypothesis=hypothesis))
        assert not reader._check_constraint(perturbed, original), (premise, hypothesis)
    kept = AttackedText(OrderedDict(premise="The treaty was signed in 1979 by 12 stetes.", hypothesis="It was signed in 1979."))
    assert reader._check_constraint(kept, original) and labels._check_constraint(kept, original)


def test_a_text_pair_takes_no_inserted_word_that_adds_content() -> None:
    """Inserted into a premise or hypothesis, a content word states something the other text must support
    ("Steve Jobs worked for north korea Apple" no longer follows), and so does a quantifier or a link ("only",
    "before"); a filler word does not, and a single text is left to the label-word lexicon."""
    reader = ReaderConstraint()
    original = AttackedText(OrderedDict(premise="Jobs resigned from Apple.", hypothesis="Steve Jobs worked for Apple."))
    for premise, hypothesis in [
        ("Jobs resigned from Apple.", "Steve Jobs worked for north korea Apple."),
        ("Jobs resigned from liberty Apple.", "Steve Jobs worked for Apple."),
        ("Jobs resigned from Apple.", "Steve tom Jobs worked for Apple."),
        ("Jobs resigned from Apple.", "Steve Jobs only worked for Apple."),
        ("Jobs resigned from Apple before.", "Steve Jobs worked for Apple."),
    ]:
        assert not reader._check_constraint(AttackedText(OrderedDict(premise=premise, hypothesis=hypothesis)), original), hypothesis
    for premise, hypothesis in [("Jobs resigned from the Apple.", "Steve Jobs is a worked for Apple."), ("Jobs resigned from Apple.", "Steve Jobs wokred for Apple.")]:
        assert reader._check_constraint(AttackedText(OrderedDict(premise=premise, hypothesis=hypothesis)), original), hypothesis
    single = AttackedText("steve jobs worked for apple")
    assert reader._check_constraint(AttackedText("steve jobs worked for north korea apple"), single)
    rte = load_dataset("rte", split="dev").head(20)
    assert data_vocabulary(rte) and set(data_vocabulary(rte)) <= FILLER_WORDS  # what random insertion may draw


def test_no_default_audit_success_on_sst2_dev_edits_a_word_into_another(victim: LocalVictim, tmp_path: Path) -> None:
    """A default audit (every attack, default settings, 16 SST-2 dev examples): every success's every changed
    word is a misspelling by the independent definition, no negation is deleted, no number edited, and the
    report records each edit as the reader sees it."""
    train = load_dataset("sst2", split="train")
    dev = load_dataset("sst2", split="dev")
    triggers = mine_triggers(victim.classifier, train, TriggerMiningOptions(examples=48, min_support=2))
    lexicon = build_lexicon(train, victim.labels)
    defaults = {name: field.default for name, field in AuditSettings.model_fields.items() if not field.is_required()}
    defaults["forensics"] = False  # they change no outcome (tests/test_forensics.py); the suite's time is short
    defaults["advice"] = False  # the defence advice has its own tests (tests/test_defence.py)
    settings = AuditSettings(
        **defaults, examples=16, budget=100, max_words=3, positions="pattern",
        baselines=["random", "deepwordbug", "leave-one-out", "pattern-only"], trigger_top_k=0, trigger_examples=1, seed=0,
    )  # fmt: skip
    report = run_audit(victim, dev, triggers, settings, Checkpoint(tmp_path / "checkpoint.jsonl", {}), dev, lexicon)
    successes = [(a.name, o) for a in [report.attack, *report.baselines] for o in a.outcomes if o.status == "succeeded"]
    assert len({name for name, _ in successes}) >= 3  # the check below has successes of most attacks to judge
    for name, outcome in successes:
        before = AttackedText(outcome.text).words
        after = AttackedText(outcome.perturbed_text).words
        assert outcome.edits == word_edits(before, after, Reader(lexicon.vocabulary))
        for edit in outcome.edits:
            if edit.kind == "deletion":
                assert edit.original.lower() not in NEGATIONS and not any(c.isdigit() for c in edit.original)
            elif edit.kind == "insertion":
                assert edit.edited.lower() not in lexicon.words and edit.edited.lower() not in NEGATIONS
            else:
                assert edit.kind == "misspelling" and edit.restored and not edit.is_word
                assert reader_accepts(edit.original, edit.edited), (name, edit)
    assert report.validity and any("misspelling" in check for check in report.validity)
    assert np.isclose(report.attack.success_rate or 0, sum(n == "attribution" for n, _ in successes) / sum(o.status != "skipped" for o in report.attack.outcomes))
