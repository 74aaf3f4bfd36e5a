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
    kept_first = len(_core(edit_pieces[0])) if edit_pieces and word_pieces and edit_pieces[0] == word_pieces[0] else 0
    inside = max((len(_core(p)) for p in edit_pieces if _core(p) and _core(p) in word.lower()), default=0)
    return kept_first, inside, -len(edit_pieces)


class TokenizerCharacterEdit(WordSwap):
    """The ``candidates`` single-character edits of a word (every swap, deletion, substitution and insertion:
    DeepWordBug's kinds, at every position) that keep least of the word's tokenization (``piece_overlap``):
    the word's first piece, which carries most of its meaning to the model, broken first.

    The choice costs no model query, only the tokenizer; ties are broken by a shuffle seeded with the word,
    so the same word always gets the same candidates.
    """

    def __init__(self, tokenizer: Tokenizer, candidates: int = 4) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.candidates = candidates

    def pieces(self, words: list[str]) -> list[list[str]]:
        ids = self.tokenizer(words, add_special_tokens=False)["input_ids"]
        return [self.tokenizer.convert_ids_to_tokens(row) for row in ids]

    def _get_replacement_words(self, word: str) -> list[str]:
        if len(word) < 2:
            return []
        edits = single_character_edits(word)
        random.Random(word).shuffle(edits)
        word_pieces, *edit_pieces = self.pieces([word, *edits])
        overlaps = [piece_overlap(word_pieces, pieces, word) for pieces in edit_pieces]
        order = sorted(range(len(edits)), key=overlaps.__getitem__)
        return [edits[i] for i in order[: self.candidates]]

    def extra_repr_keys(self) -> list[str]:
        return ["candidates"]
