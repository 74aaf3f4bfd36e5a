"""Everyday perturbations: one small class per perturbation, its docstring saying exactly what it changes
(the report's description of the check). Each maps an example's texts (one, or a text pair) to perturbed
texts with a ``random.Random`` the caller seeds per example; returning the texts unchanged means the check
does not apply to that example. Pure computation: no model, no I/O."""

from __future__ import annotations

import inspect
import math
import random
import re
import unicodedata
from abc import ABC, abstractmethod
from typing import ClassVar

from auditor.triggers import word_spans
from auditor.validity import Reader

Texts = tuple[str, ...]


class Perturbation(ABC):
    """A change of an example's texts (``perturb``: one text, or the two of a pair, changed together)."""

    name: ClassVar[str]

    @property
    def description(self) -> str:
        """The class docstring's first paragraph, on one line."""
        return " ".join(inspect.cleandoc(type(self).__doc__ or "").split("\n\n")[0].split())

    @abstractmethod
    def perturb(self, texts: Texts, rng: random.Random) -> Texts: ...


class TextPerturbation(Perturbation):
    """A change each text of an example gets on its own (``perturb_text``)."""

    def perturb(self, texts: Texts, rng: random.Random) -> Texts:
        return tuple(self.perturb_text(text, rng) for text in texts)

    @abstractmethod
    def perturb_text(self, text: str, rng: random.Random) -> str: ...


class LowerCase(TextPerturbation):
    """Every letter in lower case (Python's ``str.lower``)."""

    name = "lowercase"

    def perturb_text(self, text: str, rng: random.Random) -> str:
        return text.lower()


class UpperCase(TextPerturbation):
    """Every letter in upper case (Python's ``str.upper``)."""

    name = "uppercase"

    def perturb_text(self, text: str, rng: random.Random) -> str:
        return text.upper()


TOKENISED = re.compile(r"\s(?:[.,!?;:]|n['’]t\b|['’](?:s|re|m|ve|ll|d)\b)", re.IGNORECASE)
"""A space before a punctuation mark or a clitic: a text set off in tokens (Penn Treebank style, as SST-2)."""


def is_tokenised(text: str) -> bool:
    """``text`` sets punctuation and clitics off with spaces (``it 's good .``), as tokenised corpora do."""
    return TOKENISED.search(text) is not None


class PunctuationRemoved(TextPerturbation):
    """Deletes every punctuation mark (Unicode category P, and the backtick) except an apostrophe before a
    letter and a hyphen touching a letter (contractions and compounds stay: ``don't``, ``'s``,
    ``well-made``), then collapses the spaces left behind."""

    name = "punctuation-removed"

    def perturb_text(self, text: str, rng: random.Random) -> str:
        kept = []
        for i, character in enumerate(text):
            punctuation = character == "`" or unicodedata.category(character).startswith("P")
            if punctuation and character in "'’":
                punctuation = not text[i + 1 : i + 2].isalpha()
            elif punctuation and character == "-":
                punctuation = not any(c.isalpha() for c in text[i - 1 : i] + text[i + 1 : i + 2])
            kept.append(" " if punctuation else character)
        removed = " ".join("".join(kept).split())
        return removed if removed != " ".join(text.split()) else text


SENTENCE_END = ".!?…"


class PunctuationAdded(TextPerturbation):
    """Ends a text that has no sentence-final mark (``. ! ? …``, before any closing quotes or brackets) with
    a full stop, set off by a space when the text sets its punctuation off (``is_tokenised``)."""

    name = "punctuation-added"

    def perturb_text(self, text: str, rng: random.Random) -> str:
        body = text.rstrip()
        if not body or body.rstrip("\"'’”)]} ")[-1:] in tuple(SENTENCE_END):
            return text
        return body + (" ." if is_tokenised(body) else ".")


QWERTY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _keyboard_neighbours() -> dict[str, str]:
    """Letters next to each letter on a QWERTY keyboard (same row, and the row above and below)."""
    position = {c: (r, i) for r, row in enumerate(QWERTY_ROWS) for i, c in enumerate(row)}
    return {
        c: "".join(d for d, (s, j) in position.items() if d != c and abs(s - r) <= 1 and abs(j - i) <= 1)
        for c, (r, i) in position.items()
    }


NEIGHBOURS = _keyboard_neighbours()


def _same_case(template: str, character: str) -> str:
    return character.upper() if template.isupper() else character


def typo_candidates(word: str) -> list[str]:
    """Every one-character typo of ``word``: two neighbouring letters swapped, a letter dropped, a letter
    doubled, or a letter replaced by a neighbouring key (QWERTY)."""
    candidates = [word[:i] + word[i + 1] + word[i] + word[i + 2 :] for i in range(len(word) - 1) if word[i] != word[i + 1]]
    candidates += [word[:i] + word[i + 1 :] for i in range(len(word))]
    candidates += [word[: i + 1] + word[i:] for i in range(len(word))]
    candidates += [word[:i] + _same_case(c, n) + word[i + 1 :] for i, c in enumerate(word) for n in NEIGHBOURS.get(c.lower(), "")]
    return list(dict.fromkeys(c for c in candidates if c != word))


class Typos(Perturbation):
    """Misspells round(``rate`` × n) of the n eligible words of the example (at least one; eligible: words of
    at least three letters and nothing else), each with one character typo (``typo_candidates``: a swap of
    neighbouring letters, a dropped or doubled letter, a neighbouring key) that the reader rule admits
    (``auditor.validity.Reader.is_misspelling``: no other dictionary word, and the spell checker corrects it
    back). Words and typos are drawn at random; a word no typo of which is admitted is passed over."""

    name = "typos"

    def __init__(self, rate: float, reader: Reader | None = None) -> None:
        if not 0 < rate <= 1:
            raise ValueError(f"the typo rate is a fraction of the words in (0, 1], got {rate}")
        self.rate = rate
        self.reader = reader or Reader()

    def perturb(self, texts: Texts, rng: random.Random) -> Texts:
        words = [(t, a, b) for t, text in enumerate(texts) for a, b in word_spans(text) if len(text[a:b]) >= 3 and text[a:b].isalpha()]
        wanted = max(1, math.floor(self.rate * len(words) + 0.5)) if words else 0
        edits: dict[tuple[int, int, int], str] = {}
        for t, a, b in rng.sample(words, len(words)):
            if len(edits) == wanted:
                break
            original = texts[t][a:b]
            candidates = typo_candidates(original)
            typo = next((c for c in rng.sample(candidates, len(candidates)) if self.reader.is_misspelling(original, c)), None)
            if typo is not None:
                edits[(t, a, b)] = typo
        perturbed = list(texts)
        for (t, a, b), typo in sorted(edits.items(), reverse=True):  # right to left: spans stay valid
            perturbed[t] = perturbed[t][:a] + typo + perturbed[t][b:]
        return tuple(perturbed)
