"""Person names and places swapped, with faker's offline name and place lists (no hand-written lists).

Finding a name in a text: a word of faker's first-name lists (``NAME_LOCALES``) is a name when it is written
capitalised (or the whole text is in lower case, as uncased corpora are) and is no common English word:
pyspellchecker's corpus counts it fewer than ``COMMON_WORD_COUNT`` times. Faker's lists hold words such as
"Will", "Grace", "Summer" or "Us"; the threshold was chosen on RTE train (``bench/tune_invariance.py``),
where a first name written in lower case inside a sentence is a word and one always capitalised is a
name. A last name counts only right after a first name ("Meryl Streep"): the last-name lists are full of
words ("Cook", "Flowers", "Bishop"). Places: faker's country names, US states and the cities of several
locales (``PLACE_LISTS``), up to three words ("New York"), under the same rule for single words.
"""

from __future__ import annotations

import functools
import importlib
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from auditor.invariance.perturbations import Perturbation, Texts
from auditor.validity import english_dictionary

NAME_LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "pt_BR", "tr_TR", "en_IN", "yo_NG", "sw", "zu_ZA", "id_ID")
"""Faker person locales whose names are written in the Latin script: names of many origins."""
PLACE_LISTS = {
    "country": (("en", "countries"),),
    "state": (("en_US", "states"), ("en_IN", "states"), ("de_DE", "states")),
    "city": (("en_IN", "cities"), ("de_DE", "cities"), ("id_ID", "cities"), ("zu_ZA", "cities")),
}
"""Kind of place -> the (faker address locale, attribute) lists it is drawn from; a place is swapped for one of its kind."""
COMMON_WORD_COUNT = 10_000
"""A single word counted this often by pyspellchecker's corpus is a common word, not a name or place (the
best F1 on RTE train, ``bench/tune_invariance.py``)."""
WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")


def _is_plain(name: str) -> bool:
    """ASCII letters with spaces between words: a replacement any tokenizer reads as it reads English."""
    return name.replace(" ", "").isascii() and name.replace(" ", "").isalpha()


def is_common_word(word: str) -> bool:
    return english_dictionary().word_frequency.dictionary.get(word.lower(), 0) >= COMMON_WORD_COUNT


@dataclass(frozen=True)
class FirstName:
    genders: frozenset[str]
    origins: frozenset[str]


@dataclass(frozen=True)
class NameLists:
    first: dict[str, FirstName]
    last: dict[str, frozenset[str]]
    pool: dict[tuple[str, str], list[str]]
    """(origin, 'male' | 'female' | 'last') -> plain, uncommon names to draw replacements from."""


def _names(provider: type, attribute: str) -> list[str]:
    return sorted(n for n in getattr(provider, attribute, ()) if WORD.fullmatch(n))


@functools.cache
def name_lists() -> NameLists:
    """Faker's first names (with their genders and origins) and last names of ``NAME_LOCALES``."""
    first: dict[str, tuple[set[str], set[str]]] = {}
    last: dict[str, set[str]] = {}
    pool: dict[tuple[str, str], list[str]] = {}
    for locale in NAME_LOCALES:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        for gender in ("male", "female"):
            names = _names(provider, f"first_names_{gender}")
            for name in names:
                genders, origins = first.setdefault(name.lower(), (set(), set()))
                genders.add(gender)
                origins.add(locale)
            pool[(locale, gender)] = [n for n in names if _is_plain(n) and not is_common_word(n)]
        names = _names(provider, "last_names")
        for name in names:
            last.setdefault(name.lower(), set()).add(locale)
        pool[(locale, "last")] = [n for n in names if _is_plain(n) and not is_common_word(n)]
    return NameLists(
        {k: FirstName(frozenset(g), frozenset(o)) for k, (g, o) in first.items()}, {k: frozenset(v) for k, v in last.items()}, pool
    )


@functools.cache
def place_lists() -> dict[str, dict[str, str]]:
    """Kind -> {lower-case place: place as faker writes it} (``PLACE_LISTS``; names of up to three words)."""
    places: dict[str, dict[str, str]] = {}
    for kind, sources in PLACE_LISTS.items():
        for locale, attribute in sources:
            provider = importlib.import_module(f"faker.providers.address.{locale}").Provider
            for place in getattr(provider, attribute):
                words = place.split()
                if 1 <= len(words) <= 3 and all(WORD.fullmatch(w) for w in words):
                    places.setdefault(kind, {})[place.lower()] = place
    return places


def is_place(word: str) -> bool:
    """``word`` names a place of ``place_lists`` ("Georgia" is in faker's first names too: a place wins)."""
    return any(word.lower() in known for known in place_lists().values())


@dataclass(frozen=True)
class Token:
    start: int
    end: int
    text: str


def tokens(text: str) -> list[Token]:
    return [Token(m.start(), m.end(), m.group()) for m in WORD.finditer(text)]


def _written_as_name(token: Token, uncased: bool) -> bool:
    return uncased or (token.text[:1].isupper() and not (len(token.text) > 1 and token.text.isupper()))


def _run(text: str, words: list[Token], start: int, size: int) -> str | None:
    """The ``size`` words from ``start`` when single spaces join them, else None."""
    run = words[start : start + size]
    if len(run) < size or any(text[a.end : b.start] != " " for a, b in zip(run, run[1:])):
        return None
    return " ".join(w.text for w in run)


def _written(replacement: str, uncased: bool) -> str:
    return replacement.lower() if uncased else replacement


def _apply(texts: Texts, spans: list[tuple[int, int, int, str]]) -> Texts:
    """Replace (text index, start, end) spans by their strings, right to left."""
    perturbed = list(texts)
    for t, start, end, replacement in sorted(spans, reverse=True):
        perturbed[t] = perturbed[t][:start] + replacement + perturbed[t][end:]
    return tuple(perturbed)


def _uncased(texts: Iterable[str]) -> bool:
    return not any(c.isupper() for text in texts for c in text)


Span = tuple[int, int, str]
"""(start, end, replacement) in one text."""
Matcher = Callable[[str, list[Token], int, bool, random.Random, dict[str, str]], tuple[int, list[Span]]]
"""(text, its words, the word at which to look, uncased, rng, replacements chosen so far) -> (words the match
covers, 0 for none; the spans to replace), drawing a new entity's replacement into the dict."""


def swap_entities(texts: Texts, rng: random.Random, match: Matcher) -> Texts:
    """Every entity ``match`` finds in each text, left to right (a match's words are not read again),
    replaced; one dict of chosen replacements for all texts, so an entity named in both texts of a pair
    gets the same replacement in both."""
    uncased = _uncased(texts)
    chosen: dict[str, str] = {}
    spans = []
    for t, text in enumerate(texts):
        words = tokens(text)
        i = 0
        while i < len(words):
            size, found = match(text, words, i, uncased, rng, chosen)
            spans += [(t, *span) for span in found]
            i += max(size, 1)
    return _apply(texts, spans)


class NameSwap(Perturbation):
    """Replaces every person's first name (faker's lists, found as the module docstring says; not a place)
    with a first name of the other gender (either, for a name of both) that no faker locale of the original
    name lists, and a last name right after it with a last name no locale of the original lists; the same
    name gets the same replacement in both texts of a pair. Pronouns are left as they are."""

    name = "names"

    def perturb(self, texts: Texts, rng: random.Random) -> Texts:
        return swap_entities(texts, rng, self._match)

    def _match(self, text: str, words: list[Token], i: int, uncased: bool, rng: random.Random, chosen: dict[str, str]) -> tuple[int, list[Span]]:
        """A first name at word ``i``, and a last name right after it (not read again as a first name: "John Thomas")."""
        lists, token = name_lists(), words[i]
        name = lists.first.get(token.text.lower())
        if name is None or not _written_as_name(token, uncased) or is_common_word(token.text) or is_place(token.text):
            return 0, []
        if token.text.lower() not in chosen:
            genders = sorted({"male", "female"} - name.genders) or ["male", "female"]
            chosen[token.text.lower()] = self._draw(rng, name.origins, genders)
        spans = [(token.start, token.end, _written(chosen[token.text.lower()], uncased))]
        surname = words[i + 1] if _run(text, words, i, 2) is not None else None
        if surname is None or surname.text.lower() not in lists.last or not _written_as_name(surname, uncased):
            return 1, spans
        key = "last:" + surname.text.lower()
        if key not in chosen:
            chosen[key] = self._draw(rng, lists.last[surname.text.lower()], ["last"])
        return 2, [*spans, (surname.start, surname.end, _written(chosen[key], uncased))]

    @staticmethod
    def _draw(rng: random.Random, origins: frozenset[str], kinds: list[str]) -> str:
        """A name of ``kinds`` ('male', 'female' or 'last') from a locale drawn at random among those whose
        list has a name no locale of ``origins`` lists."""
        lists = name_lists()

        def own_origins(name: str, kind: str) -> frozenset[str]:
            return lists.last[name.lower()] if kind == "last" else lists.first[name.lower()].origins

        pools = {
            (locale, kind): names
            for locale in NAME_LOCALES
            for kind in kinds
            if (names := [n for n in lists.pool[(locale, kind)] if not own_origins(n, kind) & origins])
        }
        if not pools:  # a name every locale lists: any other name of its kind
            pools = {key: names for key, names in lists.pool.items() if key[1] in kinds and names}
        return rng.choice(pools[rng.choice(sorted(pools))])


class LocationSwap(Perturbation):
    """Replaces every place named in faker's lists (a country, a US, Indian or German state, a city of India,
    Germany, Indonesia or South Africa; found as the module docstring says, longest name first) with
    another place of the same kind drawn from the same lists; the same place gets the same replacement in
    both texts of a pair."""

    name = "locations"

    def perturb(self, texts: Texts, rng: random.Random) -> Texts:
        return swap_entities(texts, rng, self._match)

    def _match(self, text: str, words: list[Token], i: int, uncased: bool, rng: random.Random, chosen: dict[str, str]) -> tuple[int, list[Span]]:
        found = self._place(text, words, i, uncased)
        if found is None:
            return 0, []
        size, kind, place = found
        if place not in chosen:
            candidates = [p for key, p in place_lists()[kind].items() if key != place and _is_plain(p) and not is_common_word(p)]
            chosen[place] = rng.choice(sorted(candidates))
        return size, [(words[i].start, words[i + size - 1].end, _written(chosen[place], uncased))]

    @staticmethod
    def _place(text: str, words: list[Token], start: int, uncased: bool) -> tuple[int, str, str] | None:
        """(words, kind, lower-case place) of the longest place starting at word ``start``, or None."""
        for size in (3, 2, 1):
            run = _run(text, words, start, size)
            if run is None or not all(_written_as_name(w, uncased) for w in words[start : start + size]):
                continue
            if size == 1 and is_common_word(run):
                continue
            kind = next((k for k, known in place_lists().items() if run.lower() in known), None)
            if kind is not None:
                return size, kind, run.lower()
        return None
