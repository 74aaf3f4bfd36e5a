"""Character-level word edits for the attacks: DeepWordBug's four random edits, one random edit, and the
tokenizer-aware choice among every single-character edit.

All three edit a word by one character, with DeepWordBug's four kinds of edit (swap two neighbouring
letters, substitute, delete or insert a letter); they differ in which edits become candidates.
``character_edits`` draws one of each kind at random (DeepWordBug's recipe); ``RandomCharacterEdit`` one
of the four; ``TokenizerCharacterEdit`` enumerates them all and keeps the ones that most change how the
victim's tokenizer splits the word, so the model is less likely to still read the word from its pieces.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Sequence
from typing import Protocol

import auditor.textattack_env  # noqa: F401  (NLTK_DATA before textattack)
from textattack.shared import AttackedText
from textattack.transformations import (
    CompositeTransformation,
    Transformation,
    WordSwap,
    WordSwapNeighboringCharacterSwap,
    WordSwapRandomCharacterDeletion,
    WordSwapRandomCharacterInsertion,
    WordSwapRandomCharacterSubstitution,
)

LETTERS = string.ascii_lowercase
PIECE_MARKS = "#▁Ġ"  # WordPiece continuation, SentencePiece and byte-level BPE word-start marks


class Tokenizer(Protocol):
    def __call__(self, text: list[str], add_special_tokens: bool = ...) -> dict: ...

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]: ...


def _random_edits() -> list[WordSwap]:
    return [
        WordSwapNeighboringCharacterSwap(),
        WordSwapRandomCharacterSubstitution(),
        WordSwapRandomCharacterDeletion(),
        WordSwapRandomCharacterInsertion(),
    ]


def character_edits() -> Transformation:
    """DeepWordBug's four character edits of a word, one random candidate each: swap two neighbouring
    letters, substitute, delete or insert a letter."""
    return CompositeTransformation(_random_edits())


class RandomCharacterEdit(Transformation):
    """One of DeepWordBug's four character edits, drawn at random (``random``, seeded per example by the
    audit) for each word: one candidate per word instead of four."""

    def __init__(self) -> None:
        self.edits = _random_edits()

    def _get_transformations(self, current_text: AttackedText, indices_to_modify: set[int]) -> list[AttackedText]:
        transformed = []
        for index in sorted(indices_to_modify):
            transformed += random.choice(self.edits)._get_transformations(current_text, {index})
        return transformed

    @property
    def deterministic(self) -> bool:
        return False


def single_character_edits(word: str) -> list[str]:
    """Every distinct word one character edit away from ``word`` (lower-case letters substituted or
    inserted), in a fixed order: swaps, deletions, substitutions, insertions, left to right."""
    edits = [word[:i] + word[i + 1] + word[i] + word[i + 2 :] for i in range(len(word) - 1)]
    edits += [word[:i] + word[i + 1 :] for i in range(len(word))]
    edits += [word[:i] + c + word[i + 1 :] for i in range(len(word)) for c in LETTERS if c != word[i].lower()]
    edits += [word[:i] + c + word[i:] for i in range(len(word) + 1) for c in LETTERS]
    return [e for e in dict.fromkeys(edits) if e and e != word]


def _core(piece: str) -> str:
    return piece.lstrip(PIECE_MARKS).lower()


def piece_overlap(word_pieces: list[str], edit_pieces: list[str], word: str) -> tuple[int, int, int]:
    """How much of ``word`` its edit still shows the model, smaller is more disruptive: the length of the
    word's first piece when the edit keeps it, the longest edit piece found inside the word, and minus the
    number of pieces (ties go to the edit split further)."""
    cores = [_core(p) for p in edit_pieces]
    kept_first = len(cores[0]) if edit_pieces and word_pieces and edit_pieces[0] == word_pieces[0] else 0
    lower = word.lower()
    inside = max((len(c) for c in cores if c and c in lower), default=0)
    return kept_first, inside, -len(edit_pieces)


class TokenizerCharacterEdit(WordSwap):
    """The ``candidates`` single-character edits of a word (every swap, deletion, substitution and insertion:
    DeepWordBug's kinds, at every position) that keep least of the word's tokenization (``piece_overlap``):
    the word's first piece, which carries most of its meaning to the model, broken first. With
    ``is_misspelling`` (e.g. ``auditor.validity.Reader.is_misspelling``), only the edits it accepts of the
    word are candidates: those that pass the reader constraint, so no query is spent on one it would refuse.

    The choice costs no model query, only the tokenizer; ties are broken by a shuffle seeded with the word,
    so the same word always gets the same candidates.
    """

    def __init__(self, tokenizer: Tokenizer, candidates: int = 4, is_misspelling: Callable[[str, str], bool] | None = None) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.candidates = candidates
        self.is_misspelling = is_misspelling
        self.chosen: dict[str, list[str]] = {}  # word -> its candidates (the choice depends on the word alone)

    def pieces(self, words: list[str]) -> list[list[str]]:
        """Each word's tokens; a fast tokenizer's Rust backend is called directly (the same tokens, without
        the Python wrapper that costs as much again on a word's few hundred edits). The backend keeps the
        padding its last batch call set, so padding tokens are dropped by their attention mask."""
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is not None:
            encodings = backend.encode_batch(words, add_special_tokens=False)
            return [[t for t, kept in zip(e.tokens, e.attention_mask) if kept] for e in encodings]
        ids = self.tokenizer(words, add_special_tokens=False)["input_ids"]
        return [self.tokenizer.convert_ids_to_tokens(row) for row in ids]

    def _get_replacement_words(self, word: str) -> list[str]:
        if word not in self.chosen:
            self.chosen[word] = self.choose(word)
        return self.chosen[word]

    def choose(self, word: str) -> list[str]:
        if len(word) < 2:
            return []
        edits = single_character_edits(word)
        random.Random(word).shuffle(edits)
        word_pieces, *edit_pieces = self.pieces([word, *edits])
        overlaps = [piece_overlap(word_pieces, pieces, word) for pieces in edit_pieces]
        ranked = (edits[i] for i in sorted(range(len(edits)), key=overlaps.__getitem__))
        accepted = (e for e in ranked if self.is_misspelling is None or self.is_misspelling(word, e))
        return [e for _, e in zip(range(self.candidates), accepted)]

    def extra_repr_keys(self) -> list[str]:
        return ["candidates"]


def word_edit_distance(original: Sequence[str], perturbed: Sequence[str]) -> int:
    """Levenshtein distance over words: the fewest word insertions, deletions and substitutions turning
    ``original`` into ``perturbed`` (an inserted phrase of k words counts k, wherever it lands)."""
    previous = list(range(len(perturbed) + 1))
    for i, word in enumerate(original, start=1):
        current = [i]
        for j, other in enumerate(perturbed, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != other)))
        previous = current
    return previous[-1]
