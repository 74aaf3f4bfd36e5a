"""A spell-correcting front end (Pruthi et al., "Combating Adversarial Misspellings with Robust Word
Recognition", ACL 2019, simplified to the spell checker the reader rule uses), the victim that puts it in
front of any model, and the advice an audit draws from it: how many successes it undoes, what it costs on
the clean examples, and how the same attacks fare against front end plus model (the adaptive audit).

The reader rule admits only edits the spell checker corrects back (``auditor.validity.Reader.restores``),
so the front end undoes every edited dictionary or training word of a valid success by construction (a
misspelled name, no word of either, has no correction and stays): that figure says nothing an attacker who
knows the defence would care about. The adaptive audit and the clean cost are the honest
figures.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from auditor.data import Example
from auditor.schemas import Advice, AdviceMeasure, AttackOutcome, AttackSummary, Explanation, ExplanationOptions, LabelLexicon, VictimIdentity
from auditor.statistics import bootstrap_drop, wilson
from auditor.triggers import is_single_word, word_spans
from auditor.validity import Reader, has_digit
from auditor.victims import TextInput, Victim

DEFENCES = ("spellcheck",)
UNDONE = "successes undone"
CLEAN_WITHOUT, CLEAN_WITH = "clean accuracy without the front end", "clean accuracy with the front end"
CLEAN_CHANGE = "clean accuracy change with the front end"
ADAPTIVE = "adaptive success rate: "
HELD_WITHOUT, HELD_WITH = "accuracy under every attack without the front end", "accuracy under every attack with the front end"
HELD_CHANGE = "accuracy under every attack, change with the front end"
"""The names of the spell-check advice's measures (``AdviceMeasure.name``)."""


def same_case(template: str, word: str) -> str:
    """``word`` in the case of ``template``: all capitals (two letters or more), a capital first letter, or lower case."""
    if len(template) > 1 and template.isupper():
        return word.upper()
    return word[:1].upper() + word[1:] if template[:1].isupper() else word


class SpellCorrector:
    """Word recognition in front of a model: every word of a text (TextAttack's words, ``word_spans``) that is
    no word of ``reader`` (pyspellchecker's English dictionary ∪ the training vocabulary) and holds no digit
    becomes the spell checker's correction, ``reader.correction`` (the one ``Reader.restores`` judges with),
    in the word's case; a word without a correction, or whose correction TextAttack would not read as one
    word, is kept. Punctuation and spacing are untouched and the word count is unchanged."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader

    def correct_word(self, word: str) -> str:
        if has_digit(word) or self.reader.is_word(word):
            return word
        correction = self.reader.correction(word)
        return same_case(word, correction) if correction is not None and is_single_word(correction) else word

    def correct(self, text: str) -> str:
        pieces, last = [], 0
        for start, end in word_spans(text):
            pieces += [text[last:start], self.correct_word(text[start:end])]
            last = end
        return "".join([*pieces, text[last:]])


class DefendedVictim(Victim):
    """``victim`` behind a front end: each input (both texts of a pair) is corrected by ``corrector`` before
    ``victim`` classifies or explains it. Its identity is ``victim``'s with ``defence`` set, so reports,
    checkpoints and ``auditor diff`` tell the defended model from the bare one."""

    def __init__(self, victim: Victim, corrector: SpellCorrector, defence: str = "spellcheck") -> None:
        super().__init__()
        self.victim = victim
        self.corrector = corrector
        self.defence = defence
        self.tokenizer = victim.tokenizer
        self.batch_size = victim.batch_size

    @property
    def identity(self) -> VictimIdentity:
        return self.victim.identity.model_copy(update={"defence": self.defence})

    def corrected(self, texts: Sequence[str]) -> list[str]:
        return [self.corrector.correct(text) for text in texts]

    def probabilities(self, texts: list[str], text_pairs: list[str] | None) -> np.ndarray:
        return self.victim.probabilities(self.corrected(texts), None if text_pairs is None else self.corrected(text_pairs))

    def _explain(self, text: str, text_pair: str | None, options: ExplanationOptions) -> Explanation:
        return self.victim._explain(self.corrector.correct(text), None if text_pair is None else self.corrector.correct(text_pair), options)

    def close(self) -> None:
        close = getattr(self.victim, "close", None)
        if close is not None:
            close()


def defend(victim: Victim, defence: str | None, lexicon: LabelLexicon) -> Victim:
    """``victim`` behind the front end ``defence`` (None: ``victim`` itself); the spell checker knows the
    lexicon's training vocabulary, as the reader rule does."""
    if defence is None:
        return victim
    if defence not in DEFENCES:
        raise ValueError(f"unknown defence {defence!r}; known: {', '.join(DEFENCES)}")
    return DefendedVictim(victim, SpellCorrector(Reader(lexicon.vocabulary)), defence)


def _input(text: str, text_pair: str | None) -> TextInput:
    return text if text_pair is None else (text, text_pair)


def undone(defended: Victim, successes: Sequence[AttackOutcome]) -> list[bool]:
    """Per success, whether ``defended`` predicts the originally predicted class on its adversarial text."""
    if not successes:
        return []
    predicted = defended([_input(o.perturbed_text, o.perturbed_text_pair) for o in successes]).argmax(1)
    return [int(p) == int(np.argmax(o.original_probabilities)) for p, o in zip(predicted, successes)]


def held_under_every_attack(outcomes: dict[str, list[AttackOutcome]], examples: int) -> list[bool]:
    """Per example: the model got it right and no attack flipped it (accuracy under every attack at once)."""
    return [all(runs[i].status == "failed" for runs in outcomes.values()) for i in range(examples)]


def _paired(name: str, before: Sequence[bool], after: Sequence[bool]) -> AdviceMeasure:
    """mean(after) − mean(before) with its paired bootstrap 95 % interval (``bootstrap_drop``, negated)."""
    low, high = bootstrap_drop(before, after)
    return AdviceMeasure(name=name, value=float(np.mean(after) - np.mean(before)), low=0.0 - high, high=0.0 - low)  # 0.0 - x: no "-0.0"


def spellcheck_advice(
    defended: Victim,
    examples: Sequence[Example],
    outcomes: dict[str, list[AttackOutcome]],
    adaptive: dict[str, list[AttackOutcome]],
    summaries: Sequence[AttackSummary],
) -> Advice:
    """The spell-check front end's advice: ``outcomes`` of the audit's attacks on ``examples`` and
    ``adaptive``, the same attacks run against ``defended`` (summarised in ``summaries``).

    Measures: the successes the front end undoes (each success's adversarial text through ``defended``, all
    attacks together, with Wilson's interval); clean accuracy with and without it on every example and the
    paired difference; each adaptive attack's success rate; and accuracy under every attack at once (an
    example counts when the model gets it right and no attack flips it) without and with the front end, the
    paired difference with its bootstrap interval. The front end **helps** when that last difference's 95 %
    interval lies above 0: robustness gained, net of its clean cost, against attackers who know it."""
    successes = [o for runs in outcomes.values() for o in runs if o.status == "succeeded"]
    undone_rate = wilson(sum(undone(defended, successes)), len(successes))
    bare_correct = [o.status != "skipped" for o in next(iter(outcomes.values()))]
    predicted = defended([_input(e.text, e.text_pair) for e in examples]).argmax(1)
    defended_correct = [int(p) == int(e.label) for p, e in zip(predicted, examples)]
    bare_held, defended_held = held_under_every_attack(outcomes, len(examples)), held_under_every_attack(adaptive, len(examples))
    held = _paired(HELD_CHANGE, bare_held, defended_held)
    measures = [
        AdviceMeasure(name=UNDONE, rate=undone_rate),
        AdviceMeasure(name=CLEAN_WITHOUT, rate=wilson(sum(bare_correct), len(examples))),
        AdviceMeasure(name=CLEAN_WITH, rate=wilson(sum(defended_correct), len(examples))),
        _paired(CLEAN_CHANGE, bare_correct, defended_correct),
        *(AdviceMeasure(name=ADAPTIVE + s.name, rate=s.success_rate_interval) for s in summaries),
        AdviceMeasure(name=HELD_WITHOUT, rate=wilson(sum(bare_held), len(examples))),
        AdviceMeasure(name=HELD_WITH, rate=wilson(sum(defended_held), len(examples))),
        held,
    ]
    helps = held.low > 0
    return Advice(defence="spellcheck", helps=helps, line=advice_line(helps, measures), measures=measures)


def advice_line(helps: bool, measures: Sequence[AdviceMeasure]) -> str:
    """The advice in one sentence, drawn from ``measures`` (as ``spellcheck_advice`` orders them)."""
    from auditor.report import interval

    def points(m: AdviceMeasure) -> str:
        return f"{100 * m.value:+.1f} points [{100 * m.low:+.1f}, {100 * m.high:+.1f}]"

    m = {measure.name: measure for measure in measures}
    undone_rate = m[UNDONE].rate
    adaptive = "; ".join(f"{name.removeprefix(ADAPTIVE)} {interval(x.rate)}" for name, x in m.items() if name.startswith(ADAPTIVE))
    return (
        f"A spell-check front end {'helps' if helps else 'does not help'}: accuracy under every attack {interval(m[HELD_WITHOUT].rate)} → "
        f"{interval(m[HELD_WITH].rate)} ({points(m[HELD_CHANGE])}, paired). It undoes {undone_rate.count} of {undone_rate.total} successes "
        f"({interval(undone_rate)}), but by construction: the reader rule admits only edits a spell checker restores. The honest figures: "
        f"clean accuracy {interval(m[CLEAN_WITHOUT].rate)} → {interval(m[CLEAN_WITH].rate)} ({points(m[CLEAN_CHANGE])}, paired), and the "
        f"adaptive audit, the same attacks against front end plus model, succeeds at {adaptive}."
    )
