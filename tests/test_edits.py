"""Character edits: ``single_character_edits`` against a brute-force enumeration, and the tokenizer-aware
choice (``TokenizerCharacterEdit``) against the fixture's own tokenizer called word by word."""

from __future__ import annotations

import functools
import itertools
import string
from pathlib import Path

import pytest
from spellchecker import SpellChecker
from transformers import AutoTokenizer

import auditor.textattack_env  # noqa: F401
from textattack.shared import AttackedText

from auditor.attack import attribution_attack, word_transformations
from auditor.edits import TokenizerCharacterEdit, single_character_edits
from auditor.errors import InputError
from auditor.validity import Reader
from auditor.victims import RemoteVictim, open_victim

SST2 = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "minilm-sst2"


def one_edit_apart(a: str, b: str) -> bool:
    """Optimal-string-alignment distance 1: one substitution, insertion, deletion or neighbour swap."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long = sorted((a, b), key=len)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


@pytest.mark.parametrize("word", ["ab", "Zo"])
def test_single_character_edits_are_exactly_the_words_one_edit_away(word: str) -> None:
    letters = string.ascii_lowercase + word
    brute = {
        "".join(chars)
        for length in (len(word) - 1, len(word), len(word) + 1)
        for chars in itertools.product(sorted(set(letters)), repeat=length)
        if one_edit_apart(word, "".join(chars))
    }
    # lower-case letters are inserted or substituted in, so an upper-case letter is only kept, moved or
    # deleted, and a change of case alone is no edit
    brute = {w for w in brute if w and w.lower() != word.lower() and sum(c.isupper() for c in w) <= sum(c.isupper() for c in word)}
    edits = single_character_edits(word)
    assert len(edits) == len(set(edits))
    assert set(edits) == brute


@pytest.fixture(scope="module")
def tokenizer():  # noqa: ANN201
    return AutoTokenizer.from_pretrained(SST2)


def kept_of(tokenizer, word: str, edit: str) -> tuple[int, int, int]:  # noqa: ANN001
    """(length of the word's first piece if the edit keeps it, longest edit piece inside the word, minus the
    piece count), with the tokenizer called on the edit alone."""
    first, pieces = tokenizer.tokenize(word)[0], tokenizer.tokenize(edit)
    cores = [p.removeprefix("##") for p in pieces]
    return (len(cores[0]) if pieces[0] == first else 0, max((len(c) for c in cores if c in word.lower()), default=0), -len(pieces))


@pytest.mark.parametrize("word", ["wonderful", "boring", "performances", "it's"])
def test_tokenizer_edits_break_the_word_pieces_most(tokenizer, word: str) -> None:  # noqa: ANN001
    """The chosen edits are the four whose tokenization keeps least of the word, scored here with the
    tokenizer called on each word alone: (length of the word's first piece if kept, longest piece found
    inside the word, minus the piece count)."""
    first = tokenizer.tokenize(word)[0]
    kept = functools.partial(kept_of, tokenizer, word)
    transformation = TokenizerCharacterEdit(tokenizer)
    chosen = transformation._get_replacement_words(word)
    assert len(chosen) == 4 and chosen == TokenizerCharacterEdit(tokenizer)._get_replacement_words(word)  # deterministic
    others = [kept(e) for e in single_character_edits(word) if e not in chosen]
    assert max(kept(c) for c in chosen) <= min(others)
    assert all(tokenizer.tokenize(c)[0] != first for c in chosen)  # every chosen edit breaks the first piece
    text = AttackedText(f"a truly {word} film")
    assert [t.words[2] for t in transformation(text, indices_to_modify={2})] == chosen


@pytest.mark.parametrize("word", ["good", "worth", "charm", "treat", "wonderful"])
def test_tokenizer_edits_under_the_reader_are_the_most_disruptive_misspellings(tokenizer, word: str) -> None:  # noqa: ANN001
    """With the reader's test, the chosen edits are misspellings by pyspellchecker's own ``correction`` (no
    dictionary word, corrected back to the word), and none of the misspellings left out disrupts the
    tokenization more."""
    english = SpellChecker(language="en")

    def misspelling(edit: str) -> bool:
        return edit not in english and english.correction(edit) == word

    chosen = TokenizerCharacterEdit(tokenizer, is_misspelling=Reader().is_misspelling)._get_replacement_words(word)
    assert len(chosen) == 4 and all(map(misspelling, chosen)), chosen
    kept = functools.partial(kept_of, tokenizer, word)
    others = [kept(e) for e in single_character_edits(word) if e not in chosen and Reader().is_misspelling(word, e)]
    assert max(kept(c) for c in chosen) <= min(others)


def test_tokenizer_edits_do_not_depend_on_the_last_padded_batch() -> None:
    """A fast tokenizer's backend keeps the padding of its last batch call (a victim's padded queries): the
    edits chosen, and the pieces they are chosen by, must not change with it."""
    fresh, used = AutoTokenizer.from_pretrained(SST2), AutoTokenizer.from_pretrained(SST2)
    used(["a much longer sentence than the word", "a"], padding=True)
    words = ["refreshingly", "wonderful", "it's"]
    assert TokenizerCharacterEdit(used).pieces(words) == [fresh.tokenize(w) for w in words]
    assert [TokenizerCharacterEdit(used).choose(w) for w in words] == [TokenizerCharacterEdit(fresh).choose(w) for w in words]


def test_tokenizer_edits_need_a_tokenizer() -> None:
    remote = RemoteVictim("http://127.0.0.1:9/predictions/x")  # no tokenizer: an endpoint serves none
    with pytest.raises(InputError, match="tokenizer"):
        attribution_attack(remote, ["tokenedit"], query_budget=10)
    assert word_transformations(["charedit"]) is not None


def test_a_tokenizer_goes_with_an_endpoint_and_must_load(tmp_path: Path) -> None:
    endpoint = "http://127.0.0.1:9/predictions/x"  # nothing listens: opening the victim sends no request
    assert open_victim(endpoint, tokenizer=str(SST2)).tokenizer.tokenize("wonderful") == ["wonderful"]
    with pytest.raises(InputError, match="cannot load a tokenizer") as refused:
        open_victim(endpoint, tokenizer=str(tmp_path))  # an empty folder
    assert "\n" not in str(refused.value)
    with pytest.raises(InputError, match="a local model uses its own tokenizer"):
        open_victim(str(SST2), tokenizer=str(SST2))
