"""Which perturbations keep the true label, and what a reader sees in them: a lexicon of words that carry a
label by themselves (built from training data only, plus the negations of every task) with the TextAttack
constraint that rejects edits inserting, substituting or deleting such a word; and the reader constraint,
which keeps a changed word only when it is a misspelling a reader undoes.

A perturbation that inserts "clunky" into a positive review, or deletes "great" from it, changes what a
person would answer: the model's new prediction is then right, not a robustness flaw. The lexicon
(``LabelLexicon``) joins three sources:

- **phrases**: training examples that are a single word with a label (the Stanford Sentiment Treebank
  labels single words: SST-2's ``train.tsv`` holds thousands of them);
- **association**: a word carries label c when, over the training examples that contain it (document
  counts n_w, of which n_wc have label c; N_c of all N examples have label c), its smoothed log-odds ratio

      δ_wc = log((n_wc + α) / (n_w − n_wc + α)) − log(N_c / (N − N_c))

  is at least τ and significant, z_wc = δ_wc / sqrt(1/(n_wc + α) + 1/(n_w − n_wc + α)) ≥ z_min, with
  n_w ≥ ``min_count`` (one-vs-rest for more than two labels; single-word examples are left out of the
  counts, so the phrases can calibrate τ; see ``calibrate_threshold``);
- **user**: an optional word list (one word a line, ``label<TAB>word`` or a bare word for "any label").

Negations and intensifiers (``NEGATIONS``) carry the label in every task: "not good" is not "good".

The reader constraint (``ReaderConstraint``) judges each changed word with a real dictionary, pyspellchecker's
English word list (160,572 words with counts from a corpus of 1.6 billion words), never with the model's
vocabulary: an edit is a **misspelling** when it is no word of the dictionary and the spell checker corrects
it back to the original (``Reader``); "good" → "hood" (a word), "charm" → "chart" (a word) and "n't" → "net"
are other words, "great" → "graet" is a misspelling. Every dictionary word counts as a word, however rare:
on SST-2 train 5.5 % of the dictionary words reviewers used (693 of 12,506: "overlong", "blandness",
"youthful") have the dictionary's lowest count, so any frequency threshold above it would let an edit turn a
word into a word that this task's own writers use. The words of the task's training data that the dictionary
lacks ("filmgoers", ``training_vocabulary``, kept in ``LabelLexicon.vocabulary``) count as words too: editing a word
into one of them is a substitution, and the spell checker may correct an edit back to one. Words with a digit
are facts: never edited, deleted or inserted.
"""

from __future__ import annotations

import difflib
import functools
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from spellchecker import SpellChecker

import auditor.textattack_env  # noqa: F401  (NLTK_DATA before textattack)
from textattack.constraints import Constraint
from textattack.shared import AttackedText
from textattack.transformations import Transformation

from auditor.data import Dataset, Example
from auditor.errors import InputError
from auditor.schemas import LabelLexicon, LexiconOptions, WordEdit
from auditor.statistics import log_odds
from auditor.triggers import word_spans

ANY_LABEL = -1

NEGATIONS = frozenset(
    """not no n't never nothing nor neither none nobody nowhere without hardly barely scarcely seldom rarely
    cannot can't won't don't doesn't didn't isn't aren't wasn't weren't haven't hasn't hadn't wouldn't
    shouldn't couldn't ain't very too so really extremely quite most least less more much utterly totally
    completely absolutely highly incredibly""".split()
)
"""Negations and intensifiers: they carry a label in every task (they may be misspelled, not inserted,
deleted or replaced by a word)."""


def example_words(example: Example) -> set[str]:
    """The distinct lower-cased TextAttack words of an example (both segments)."""
    words: set[str] = set()
    for text in (example.text, example.text_pair):
        if text is not None:
            words.update(text[a:b].lower() for a, b in word_spans(text))
    return words


def one_word_phrases(dataset: Dataset) -> dict[str, int]:
    """Labelled single-word examples: word -> label (a word labelled both ways is left out)."""
    found: dict[str, set[int]] = {}
    for example in dataset.examples:
        if example.text_pair is None and example.label is not None:
            spans = word_spans(example.text)
            if len(spans) == 1:
                found.setdefault(example.text[slice(*spans[0])].lower(), set()).add(example.label)
    return {word: labels.pop() for word, labels in found.items() if len(labels) == 1}


def association_scores(dataset: Dataset, num_labels: int, prior: float) -> dict[str, list[tuple[int, float, float]]]:
    """Per word seen in the multi-word examples: (n_w, δ_wc, z_wc) for every label c (module docstring)."""
    totals = Counter()
    counts: dict[str, Counter] = {}
    for example in dataset.examples:
        if example.label is None:
            continue
        words = example_words(example)
        if example.text_pair is None and len(words) < 2:
            continue
        totals[example.label] += 1
        for word in words:
            counts.setdefault(word, Counter())[example.label] += 1
    examples = sum(totals.values())
    scores = {}
    for word, per_label in counts.items():
        n = sum(per_label.values())
        scores[word] = [(n, *log_odds(per_label[label], n - per_label[label], totals[label], examples, prior)) for label in range(num_labels)]
    return scores


def associated_words(scores: dict[str, list[tuple[int, float, float]]], options: LexiconOptions) -> dict[str, int]:
    """Words whose association with one label passes the thresholds of ``options`` -> that label."""
    chosen = {}
    for word, row in scores.items():
        passing = [
            (delta, label)
            for label, (n, delta, z) in enumerate(row)
            if n >= options.min_count and delta >= options.threshold and z >= options.min_z
        ]
        if passing:
            chosen[word] = max(passing)[1]
    return chosen


def calibrate_threshold(dataset: Dataset, num_labels: int, options: LexiconOptions, grid: Sequence[float]) -> dict[float, float]:
    """F1 of the association lexicon at each τ of ``grid``, against the one-word labelled phrases of the same
    training data (over the words with at least ``min_count`` occurrences): how ``LexiconOptions.threshold``
    was chosen (on SST-2 train, ``bench/tune_audit.py``)."""
    phrases = one_word_phrases(dataset)
    scores = association_scores(dataset, num_labels, options.prior)
    eligible = {w for w, row in scores.items() if row[0][0] >= options.min_count}
    truth = {w for w in phrases if w in eligible}
    result = {}
    for threshold in grid:
        found = set(associated_words(scores, options.model_copy(update={"threshold": threshold})))
        hits = len(found & truth)
        precision, recall = hits / max(1, len(found)), hits / max(1, len(truth))
        result[threshold] = 2 * precision * recall / (precision + recall) if hits else 0.0
    return result


def read_word_list(path: Path, labels: Sequence[str]) -> dict[str, int]:
    """A user word list: one word a line, optionally ``label<TAB>word`` (label name or index); ``#`` comments."""
    if not path.is_file():
        raise InputError(f"label word list not found: {path}")
    words = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        label, _, word = line.rpartition("\t")
        if label and label not in labels and not (label.isdigit() and int(label) < len(labels)):
            raise InputError(f"{path}:{number}: unknown label {label!r}; the model's labels are {', '.join(labels)}")
        words[word.strip().lower()] = ANY_LABEL if not label else labels.index(label) if label in labels else int(label)
    return words


def build_lexicon(
    train: Dataset | None, labels: Sequence[str], options: LexiconOptions | None = None, user_words: dict[str, int] | None = None
) -> LabelLexicon:
    """The label-word lexicon of a task from its training split (and/or a user list)."""
    options = options or LexiconOptions()
    if train is not None and any(e.label is None for e in train.examples):
        raise InputError(f"{train.name} {train.split} has unlabelled examples; the label-word lexicon needs labels")
    phrases = one_word_phrases(train) if train is not None and options.phrases else {}
    associated = associated_words(association_scores(train, len(labels), options.prior), options) if train is not None else {}
    user = dict(user_words or {})
    words = {**associated, **phrases, **user}
    return LabelLexicon(
        vocabulary=training_vocabulary(train) if train is not None else [],
        labels=list(labels),
        data=None if train is None else train.identity(),
        options=options,
        words=dict(sorted(words.items())),
        phrase_words=len(phrases),
        associated_words=len(associated),
        user_words=len(user),
    )


def edited_words(original: Sequence[str], perturbed: Sequence[str]) -> tuple[list[str], list[str]]:
    """(words a word alignment marks inserted or substituted in ``perturbed``, words it marks deleted from
    ``original``), lower-cased."""
    before, after = [w.lower() for w in original], [w.lower() for w in perturbed]
    added, removed = [], []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes():
        if tag in ("insert", "replace"):
            added += after[j1:j2]
        if tag == "delete":
            removed += before[i1:i2]
    return added, removed


class LabelWordConstraint(Constraint):
    """Rejects a transformed text that inserts or substitutes in a word of ``lexicon`` or a negation
    (``NEGATIONS``), or deletes one from the original text (compared with the original, so a chain of edits
    is judged as a whole).

    Changing a label word leaves it to ``ReaderConstraint``, which keeps only a misspelling of it ("great" ->
    "graet": a reader still sees the same word). ``rejected`` counts the candidates refused.
    """

    def __init__(self, lexicon: LabelLexicon) -> None:
        super().__init__(compare_against_original=True)
        self.words = frozenset(lexicon.words) | NEGATIONS
        self.size = len(self.words)
        self.rejected = 0

    def carries_label(self, words: Iterable[str]) -> bool:
        return any(w in self.words for w in words)

    def _check_constraint(self, transformed_text: AttackedText, reference_text: AttackedText) -> bool:
        added, removed = edited_words(reference_text.words, transformed_text.words)
        valid = not self.carries_label(added) and not self.carries_label(removed)
        self.rejected += not valid
        return valid

    def check_compatibility(self, transformation: Transformation) -> bool:
        return True

    def extra_repr_keys(self) -> list[str]:
        return ["size"]


def has_digit(word: str) -> bool:
    return any(c.isdigit() for c in word)


@functools.cache
def english_dictionary() -> SpellChecker:
    """pyspellchecker's English dictionary (loaded once per process; case-insensitive)."""
    return SpellChecker(language="en", distance=1)


def training_vocabulary(dataset: Dataset) -> list[str]:
    """The lower-cased words of ``dataset`` (with a letter and no digit) that pyspellchecker's English
    dictionary lacks, sorted: "filmgoers", "actioner", and the writers' own misspellings ("accomodates"),
    which a reader of this task has seen as written."""
    dictionary = english_dictionary()
    words = set().union(*(example_words(example) for example in dataset.examples))
    return sorted(w for w in words if w not in dictionary and any(c.isalpha() for c in w) and not has_digit(w))


class Reader:
    """What a reader makes of a changed word, judged with pyspellchecker's English dictionary and the words
    of the task's training data that it lacks (``vocabulary``, ``training_vocabulary``): both are words.

    ``is_word(w)``: w is a word of the dictionary (any count: see the module docstring) or of ``vocabulary``.
    ``correction(e)``: the spell checker's correction of e, the most frequent word one character edit away
    (a swap, deletion, substitution or insertion, pyspellchecker's candidates), a ``vocabulary`` word ranking
    below every dictionary word; None when no word is that close or two share the top count.
    ``restores(o, e)``: e is one edit from o and its correction is o, or, for an original that is no word (a
    name), no word is that close (the reader's only choice). ``is_misspelling(o, e)``: e differs from o,
    neither holds a digit, e is no other word (a change of case alone is a misspelling), and it restores o.
    Corrections are cached per reader.
    """

    def __init__(self, vocabulary: Iterable[str] = ()) -> None:
        self.dictionary = english_dictionary()
        self.vocabulary = frozenset(w.lower() for w in vocabulary)
        self._nearby: dict[str, list[tuple[int, str]]] = {}
        self._restored: dict[tuple[str, str], bool] = {}

    def is_word(self, word: str) -> bool:
        word = word.lower()
        return word in self.dictionary or word in self.vocabulary

    def nearby_words(self, word: str) -> list[tuple[int, str]]:
        """(dictionary count, word) of every word one character edit from ``word`` (0 for a ``vocabulary`` word)."""
        word = word.lower()
        if word not in self._nearby:
            counts = self.dictionary.word_frequency.dictionary
            self._nearby[word] = sorted((counts.get(w, 0), w) for w in self.dictionary.edit_distance_1(word) if self.is_word(w))
        return self._nearby[word]

    def correction(self, word: str) -> str | None:
        nearby = self.nearby_words(word)
        if not nearby or (len(nearby) > 1 and nearby[-2][0] == nearby[-1][0]):
            return None
        return nearby[-1][1]

    def restores(self, original: str, edited: str) -> bool:
        original, edited = original.lower(), edited.lower()
        if original == edited:
            return True  # a change of case alone
        key = (original, edited)
        if key not in self._restored:
            close = original in self.dictionary.edit_distance_1(edited)
            self._restored[key] = close and (self.correction(edited) == original if self.is_word(original) else not self.nearby_words(edited))
        return self._restored[key]

    def is_other_word(self, original: str, edited: str) -> bool:
        return edited.lower() != original.lower() and self.is_word(edited)

    def is_misspelling(self, original: str, edited: str) -> bool:
        if original == edited or has_digit(original) or has_digit(edited):
            return False
        return not self.is_other_word(original, edited) and self.restores(original, edited)

    def edit(self, original: str, edited: str) -> WordEdit:
        """``original`` changed into ``edited``: a misspelling or a substitution (``WordEdit``)."""
        kind = "misspelling" if self.is_misspelling(original, edited) else "substitution"
        return WordEdit(
            kind=kind, original=original, edited=edited, is_word=self.is_other_word(original, edited), restored=self.restores(original, edited)
        )


def _pairs(before: Sequence[str], after: Sequence[str]) -> list[tuple[int | None, int | None]]:
    """Pair the words of a changed block of an alignment: position by position when both sides have as many
    words, otherwise each original word with the most similar unpaired new word (a character similarity of
    at least 0.5); unpaired words are deletions (``(i, None)``) and insertions (``(None, j)``)."""
    if len(before) == len(after):
        return list(zip(range(len(before)), range(len(after))))
    pairs: list[tuple[int | None, int | None]] = []
    free = set(range(len(after)))
    for i, word in enumerate(before):
        similarity = {j: difflib.SequenceMatcher(a=word, b=after[j]).ratio() for j in free}
        best = max(similarity, key=lambda j: (similarity[j], -j), default=None)
        if best is not None and similarity[best] >= 0.5:
            pairs.append((i, best))
            free.discard(best)
        else:
            pairs.append((i, None))
    return pairs + [(None, j) for j in sorted(free)]


def word_alignment(original: Sequence[str], perturbed: Sequence[str]) -> list[tuple[int | None, int | None]]:
    """The word alignment of ``original`` and ``perturbed``, in order: ``(i, j)`` for word i kept as, or
    changed into, word j; ``(i, None)`` for a deletion and ``(None, j)`` for an insertion. Unchanged runs come
    from a difflib alignment of the words; the words of a changed block are paired by ``_pairs``."""
    lower_a, lower_b = [w.lower() for w in original], [w.lower() for w in perturbed]
    aligned: list[tuple[int | None, int | None]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=list(original), b=list(perturbed), autojunk=False).get_opcodes():
        if tag == "equal":
            aligned += [(i1 + k, j1 + k) for k in range(i2 - i1)]
            continue
        for i, j in _pairs(lower_a[i1:i2], lower_b[j1:j2]):
            aligned.append((None if i is None else i1 + i, None if j is None else j1 + j))
    return aligned


def word_edits(original: Sequence[str], perturbed: Sequence[str], reader: Reader) -> list[WordEdit]:
    """Every word changed between ``original`` and ``perturbed`` (``word_alignment``), in order: insertions,
    deletions, and changed words judged by ``reader`` (a changed block never pairs two equal words: difflib
    would have aligned them)."""
    edits = []
    for i, j in word_alignment(original, perturbed):
        if j is None:
            edits.append(WordEdit(kind="deletion", original=original[i], edited=None))
        elif i is None:
            edits.append(WordEdit(kind="insertion", original=None, edited=perturbed[j]))
        elif original[i] != perturbed[j]:
            edits.append(reader.edit(original[i], perturbed[j]))
    return edits


FILLER_WORDS = frozenset(
    """a an the am is are was were be been being has have had having do does did doing of in on at by with to
    from into through as and that this these those there here it its itself i me my myself we our ours
    ourselves you your yours yourself yourselves he him his himself she her hers herself they them their
    theirs themselves what which who whom""".split()
)
"""The function words of NLTK's English stopword list that state nothing and restrict nothing: articles,
forms of be, have and do, plain prepositions, pronouns. Left out: negations and their fragments ("didn"),
quantifiers (all, some, few, only, both…), comparisons (more, than, same), and temporal, causal and
conditional links (before, after, because, if, or, until…), which change a claim wherever they go."""


def adds_content(word: str) -> bool:
    """Inserted into one text of a pair, ``word`` states or restricts something that the other text must
    support: any word but a filler word (``FILLER_WORDS``)."""
    return word.lower() not in FILLER_WORDS


class ReaderConstraint(Constraint):
    """Keeps a transformed text only when a reader still reads the original in it: every changed word is a
    misspelling that ``Reader`` undoes (no word of the dictionary or training data, corrected back to the original), no word
    with a digit is changed, deleted or inserted, and in a text pair (premise and hypothesis) no inserted word
    adds content (``adds_content``): "Steve Jobs worked for north korea Apple" no longer follows from its
    premise, so the model's new answer would be right. Other whole-word insertions and deletions are left to
    ``LabelWordConstraint``. Compared with the original, so a chain of edits is judged as a whole;
    ``rejected`` counts the candidates refused."""

    def __init__(self, reader: Reader | None = None) -> None:
        super().__init__(compare_against_original=True)
        self.reader = reader or Reader()
        self.rejected = 0

    def admits(self, transformed_text: AttackedText, reference_text: AttackedText) -> bool:
        """Whether a reader still reads ``reference_text`` in ``transformed_text`` (the rule above), uncounted."""
        pair = len(transformed_text.words_per_input) > 1
        return all(
            e.kind in ("misspelling", "insertion", "deletion")
            and not has_digit(e.original or e.edited or "")
            and not (pair and e.kind == "insertion" and adds_content(e.edited or ""))
            for e in word_edits(reference_text.words, transformed_text.words, self.reader)
        )

    def _check_constraint(self, transformed_text: AttackedText, reference_text: AttackedText) -> bool:
        valid = self.admits(transformed_text, reference_text)
        self.rejected += not valid
        return valid

    def check_compatibility(self, transformation: Transformation) -> bool:
        return True


VALIDITY_CHECKS = [
    "no word of the label-word lexicon, and no negation or intensifier, inserted, deleted or replaced by a word",
    "every changed word is a misspelling a reader undoes: no word of pyspellchecker's English dictionary or of the "
    "training data, and the spell checker corrects it back to the original word",
    "no word with a digit edited, deleted or inserted",
    "in a text pair (premise and hypothesis), no inserted word but a filler word (an article, a form of be, have or do, "
    "a plain preposition, a pronoun): any other states or restricts something the other text must support",
]
"""What ``LabelWordConstraint`` and ``ReaderConstraint`` check, in words (``RobustnessReport.validity``)."""
