"""Which perturbations keep the true label: a lexicon of words that carry a label by themselves, built from
training data only, and the TextAttack constraint that rejects edits inserting, substituting or deleting
such a word.

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
"""

from __future__ import annotations

import difflib
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import auditor.textattack_env  # noqa: F401  (NLTK_DATA before textattack)
from textattack.constraints import Constraint
from textattack.shared import AttackedText
from textattack.transformations import Transformation

from auditor.data import Dataset, Example
from auditor.errors import InputError
from auditor.schemas import LabelLexicon, LexiconOptions
from auditor.triggers import word_spans

ANY_LABEL = -1


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
        row = []
        for label in range(num_labels):
            inside, outside = per_label[label], n - per_label[label]
            if not totals[label] or totals[label] == examples:
                row.append((n, 0.0, 0.0))
                continue
            delta = math.log((inside + prior) / (outside + prior)) - math.log(totals[label] / (examples - totals[label]))
            row.append((n, delta, delta / math.sqrt(1 / (inside + prior) + 1 / (outside + prior))))
        scores[word] = row
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
    """Rejects a transformed text that inserts or substitutes in a word of ``lexicon``, or deletes one from
    the original text (compared with the original, so a chain of edits is judged as a whole).

    Substituting a label word by a misspelling of it ("great" -> "graet") is allowed: a reader still sees
    the same word. ``rejected`` counts the candidates refused.
    """

    def __init__(self, lexicon: LabelLexicon) -> None:
        super().__init__(compare_against_original=True)
        self.words = frozenset(lexicon.words)
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
