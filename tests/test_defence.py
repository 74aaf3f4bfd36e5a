"""The spell-check front end (``auditor.defence``): its corrections against pyspellchecker's own ``correction``
(a code path it does not use); training-data words ("filmgoers") as words for the front end and the reader
rule alike; the defended victim undoing real successes; ``auditor audit --defence spellcheck`` and the
advice of an undefended audit, whose adaptive audit must be the defended audit itself; and ``auditor diff``
of the two."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from spellchecker import SpellChecker

import auditor.textattack_env  # noqa: F401
from textattack.shared import AttackedText

from auditor.audit import validity_constraints
from auditor.data import load_dataset
from auditor.defence import DefendedVictim, SpellCorrector, defend
from auditor.invariance.perturbations import typo_candidates
from auditor.models import load_classifier
from auditor.schemas import LabelLexicon, LexiconOptions, RobustnessDiff, RobustnessReport
from auditor.triggers import word_spans
from auditor.validity import Reader, ReaderConstraint, build_lexicon, training_vocabulary
from auditor.victims import LocalVictim
from tests.test_audit import SST2, auditor

ENGLISH = SpellChecker(language="en", distance=1)
PROBABILITY_ATOL = 1e-5
"""One model in one process on the same text, batched differently: the tolerance of every in-process batching check."""


def reference_correction(word: str) -> str:
    """pyspellchecker's ``correction`` of a lower-case word that it does not know, or the word itself when it
    has none or two candidates share the top count (no unique correction to trust)."""
    candidates = ENGLISH.candidates(word)
    if ENGLISH.known([word]) or not candidates or candidates == {word}:
        return word
    best = ENGLISH.correction(word)
    return word if sum(ENGLISH[c] == ENGLISH[best] for c in candidates) > 1 else best


def lexicon_with(vocabulary: list[str]) -> LabelLexicon:
    options = LexiconOptions()
    return LabelLexicon(labels=["negative", "positive"], data=None, options=options, words={}, phrase_words=0, associated_words=0, user_words=0, vocabulary=vocabulary)


@pytest.fixture(scope="module")
def sst2_vocabulary() -> list[str]:
    return training_vocabulary(load_dataset("sst2", split="train"))


def test_corrector_agrees_with_pyspellchecker_word_by_word() -> None:
    """Typos of the words of 40 SST-2 dev sentences, corrected in their sentence, against the reference;
    case, punctuation and the word count kept."""
    corrector = SpellCorrector(Reader())
    sentences = [e.text for e in load_dataset("sst2", split="dev").head(40).examples]
    checked = changed = 0
    for number, sentence in enumerate(sentences):
        around = AttackedText(corrector.correct(sentence)).words  # what the front end makes of the other words
        for index, (start, end) in enumerate(word_spans(sentence)):
            word = sentence[start:end]
            if not word.isalpha() or len(word) < 4:
                continue
            typo = typo_candidates(word)[number % len(typo_candidates(word))]
            text = f"{sentence[:start]}{typo.capitalize()}{sentence[end:]}"
            expected = reference_correction(typo.lower())
            corrected = AttackedText(corrector.correct(text)).words
            assert corrected == [*around[:index], expected.capitalize(), *around[index + 1 :]], (typo, expected, corrected)
            checked += 1
            changed += expected != typo.lower()
    assert checked > 200 and changed > checked / 2  # enough corrections, and enough words left alone, were judged
    assert corrector.correct("A GRAET , fun-filled movie ... isn't it ?") == "A GREAT , fun-filled movie ... isn't it ?"
    assert corrector.correct("the 4x better cast") == "the 4x better cast"  # a word with a digit is a fact


def test_training_words_are_words_for_the_front_end_and_the_reader(sst2_vocabulary: list[str]) -> None:
    """"filmgoers": in SST-2 train, not in pyspellchecker's dictionary. The front end leaves it alone and
    restores its misspelling; the reader rule takes editing "filmgoer" into it for a substitution (before,
    a misspelling: the hole this closes) and "filmgoers" → "filmgoerz" for a misspelling the correction undoes."""
    assert "filmgoers" not in ENGLISH and "filmgoers" in sst2_vocabulary
    assert set(sst2_vocabulary) == set(build_lexicon(load_dataset("sst2", split="train"), ["negative", "positive"]).vocabulary)
    aware, bare = Reader(sst2_vocabulary), Reader()
    front_end = SpellCorrector(aware)
    assert front_end.correct("Filmgoers will love it") == "Filmgoers will love it"
    assert front_end.correct("filmgoerz will love it") == "filmgoers will love it"
    assert aware.is_word("filmgoers") and not bare.is_word("filmgoers")
    assert aware.edit("filmgoer", "filmgoers").kind == "substitution" and bare.edit("filmgoer", "filmgoers").kind == "misspelling"
    assert aware.is_misspelling("filmgoers", "filmgoerz") and aware.correction("filmgoerz") == "filmgoers"
    # a training word the bare dictionary would "correct" into a dictionary word is kept
    corrected = [w for w in sst2_vocabulary if w.isalpha() and reference_correction(w) != w]
    assert corrected and all(front_end.correct_word(w) == w for w in corrected)
    assert all(SpellCorrector(bare).correct_word(w) == reference_correction(w) for w in corrected[:50])
    # the audit's constraints take the vocabulary from the lexicon
    (reader,) = [c for c in validity_constraints(lexicon_with(sst2_vocabulary), 3) if isinstance(c, ReaderConstraint)]
    before, after = AttackedText("the filmgoer was bored"), AttackedText("the filmgoers was bored")
    assert not reader._check_constraint(after, before) and ReaderConstraint(bare)._check_constraint(after, before)


@pytest.fixture(scope="module")
def audits(tmp_path_factory: pytest.TempPathFactory, sst2_patterns: Path) -> tuple[Path, Path]:
    """One tiny audit of the bare model with the advice, and one of the model behind the front end."""
    work = tmp_path_factory.mktemp("defence")
    options = ["--model", str(SST2), "--data", "sst2", "--patterns", str(sst2_patterns), "--examples", "12", "--budget", "30",
               "--trigger-examples", "4", "--trigger-top-k", "1", "--invariance", "none", "--baselines", "deepwordbug"]  # fmt: skip
    bare, defended = work / "bare", work / "defended"
    for out, extra in ((bare, []), (defended, ["--defence", "spellcheck"])):
        done = auditor("audit", *options, "--out", str(out), *extra)
        assert done.returncode == 0, done.stderr
    return bare, defended


def report_at(folder: Path) -> RobustnessReport:
    return RobustnessReport.model_validate_json((folder / "report.json").read_bytes())


def test_defended_audit_and_advice(audits: tuple[Path, Path]) -> None:
    """The defended audit names its front end and measures no advice; the bare audit's adaptive audit is the
    same attacks on the same victim, so it must give the defended audit's outcomes; the advice's figures are
    recomputed from the outcomes and the model run here."""
    bare, defended = map(report_at, audits)
    assert defended.victim.defence == "spellcheck" and bare.victim.defence is None and not defended.advice and defended.defended is None
    assert "behind the spellcheck front end" in (audits[1] / "report.md").read_text()
    adaptive = {s.name: s for s in bare.defended}
    for summary in [defended.attack, *defended.baselines]:
        pairs = zip(adaptive[summary.name].outcomes, summary.outcomes)
        assert all((a.status, a.perturbed_text, a.queries) == (b.status, b.perturbed_text, b.queries) for a, b in pairs)
    advice = next(a for a in bare.advice if a.defence == "spellcheck")
    measures = {m.name: m for m in advice.measures}
    victim = LocalVictim(load_classifier(SST2))
    front_end = defend(victim, "spellcheck", build_lexicon(load_dataset("sst2", split="train"), victim.labels))
    successes = [o for a in [bare.attack, *bare.baselines] for o in a.outcomes if o.status == "succeeded"]
    assert successes  # the advice has successes to undo
    undone = [int(np.argmax(front_end([o.perturbed_text])[0])) == o.label for o in successes]
    assert (measures["successes undone"].rate.count, measures["successes undone"].rate.total) == (sum(undone), len(successes))
    clean = [e for e in load_dataset("sst2", split="dev").head(12).examples]
    right = [int(np.argmax(victim([front_end.corrector.correct(e.text)])[0])) == e.label for e in clean]
    assert measures["clean accuracy with the front end"].rate.count == sum(right)
    change = measures["clean accuracy change with the front end"]
    assert np.isclose(change.value, (sum(right) - bare.attack.clean_accuracy_interval.count) / 12) and change.low <= change.value <= change.high
    held = measures["accuracy under every attack, change with the front end"]
    assert advice.helps == (held.low > 0)
    assert advice.line.startswith("A spell-check front end " + ("helps" if advice.helps else "does not help"))
    assert "by construction" in advice.line and "adaptive audit" in advice.line
    assert advice.line in (audits[0] / "report.md").read_text() and "Defence advice" in (audits[0] / "report.html").read_text()


def test_defended_victim_undoes_a_real_misspelling_success(audits: tuple[Path, Path]) -> None:
    """Each misspelling of a dictionary or training word in the bare audit's successes is corrected back by
    the front end (the reader rule admitted it because the correction restores it), and a success made of
    such misspellings alone goes back to the original class through the defended victim, whose probabilities
    are the bare model's on the corrected text. A misspelled name (no word of either: "ex-wife" is not in
    SST-2 train) has no correction to restore it, so the front end leaves it."""
    bare = report_at(audits[0])
    victim = LocalVictim(load_classifier(SST2))
    reader = Reader(training_vocabulary(load_dataset("sst2", split="train")))
    front_end = DefendedVictim(victim, SpellCorrector(reader))
    misspellings = [e for a in [bare.attack, *bare.baselines] for o in a.outcomes if o.status == "succeeded" for e in o.edits if e.kind == "misspelling"]
    for edit in misspellings:
        expected = edit.original if reader.is_word(edit.original) else edit.edited
        assert front_end.corrector.correct_word(edit.edited).lower() == expected.lower(), edit
    successes = [
        o
        for a in [bare.attack, *bare.baselines]
        for o in a.outcomes
        if o.status == "succeeded" and all(e.kind == "misspelling" and reader.is_word(e.original) for e in o.edits)
    ]
    assert successes
    for outcome in successes:
        corrected = front_end.corrector.correct(outcome.perturbed_text)
        # by construction: each edit corrected back (up to case: a change of case alone is a misspelling, kept by the
        # front end; the fixture model is uncased)
        assert corrected.lower() == front_end.corrector.correct(outcome.text).lower()
        probabilities = front_end([outcome.perturbed_text])
        assert np.allclose(probabilities, victim([corrected]), atol=PROBABILITY_ATOL)
        assert int(np.argmax(probabilities)) == outcome.label != outcome.perturbed_prediction


def test_diff_compares_defended_with_undefended(audits: tuple[Path, Path], tmp_path: Path) -> None:
    bare, defended = audits
    done = auditor("diff", str(bare), str(defended), "--out", str(tmp_path / "diff"))
    assert done.returncode in (0, 1), done.stderr
    diff = RobustnessDiff.model_validate_json((tmp_path / "diff" / "diff.json").read_bytes())
    assert diff.base.victim.defence is None and diff.new.victim.defence == "spellcheck"
    assert "behind the spellcheck front end" in (tmp_path / "diff" / "diff.md").read_text()
    assert json.loads((defended / "report.json").read_text())["victim"]["defence"] == "spellcheck"
