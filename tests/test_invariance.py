"""Invariance checks (``auditor.invariance``): for each check a hand-made example on which it must flip the
prediction and one on which it must not, against small deterministic classifiers defined here (test doubles
of the model, whose answer is known from the text alone); the perturbations' contracts (the reader rule for
typos, faker's lists for names and places); and one run on the SST-2 fixture model, whose predictions on the
original texts are checked against the Hugging Face model run directly."""

from __future__ import annotations

import importlib
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from auditor.data import Example, load_dataset
from auditor.invariance.checks import CHECKS, example_rng, perturbations, run_checks, summarise_check
from auditor.invariance.contractions import ContractionsContracted, ContractionsExpanded
from auditor.invariance.entities import NAME_LOCALES, LocationSwap, NameSwap, place_lists
from auditor.invariance.perturbations import PunctuationAdded, PunctuationRemoved, Typos
from auditor.schemas import CHECK_NAMES, MIN_APPLIED, InvarianceCheck, InvarianceOutcome
from auditor.statistics import wilson
from auditor.triggers import word_spans
from auditor.validity import Reader

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "models" / "minilm-sst2"


def rule_model(positive: Callable[[str], bool]) -> Callable[[Sequence[str | tuple[str, ...]]], np.ndarray]:
    """A two-class model (negative, positive) that answers positive exactly when ``positive(text)``."""

    def predict(inputs: Sequence[str | tuple[str, ...]]) -> np.ndarray:
        texts = [item if isinstance(item, str) else " || ".join(item) for item in inputs]
        return np.array([[0.0, 1.0] if positive(text) else [1.0, 0.0] for text in texts])

    return predict


def has_word(word: str) -> Callable[[str], bool]:
    return lambda text: re.search(rf"\b{re.escape(word)}\b", text) is not None


# check -> (model, an example it must flip, an example it applies to and must not flip)
CASES = {
    "typos": (has_word("wonderful"), "a wonderful film", "a 10 out of 10 evening"),
    "lowercase": (has_word("GREAT"), "a GREAT film", "A fine film"),
    "uppercase": (has_word("great"), "a great film", "a great film"),
    "punctuation-removed": (lambda text: "!" in text, "Great fun!", "A grim, long film."),
    "punctuation-added": (lambda text: text.endswith("."), "a fine film", "a fine film"),
    "contractions-expanded": (lambda text: not has_word("not")(text), "I don't like it", "It's a gem"),
    "contractions-contracted": (lambda text: not has_word("not")(text), "I do not like it", "it is a gem"),
    "names": (has_word("John"), "John was brilliant", "Mary Smith was brilliant"),
    "locations": (has_word("France"), "Made in France", "Shot in Germany, a masterpiece"),
}
"""For the no-flip examples of typos, uppercase and punctuation-added the model reads what the perturbation
leaves alone (a number, the text in lower case, a word) and the others' models read a word it does not touch."""
NO_FLIP_MODELS = {
    "typos": has_word("10"),
    "uppercase": lambda text: "great" in text.lower(),
    "punctuation-added": has_word("fine"),
}


def test_every_check_has_a_case() -> None:
    assert tuple(CASES) == CHECK_NAMES == tuple(CHECKS)


@pytest.mark.parametrize("name", CHECK_NAMES)
def test_check_flips_where_it_must_and_not_where_it_must_not(name: str) -> None:
    rule, flipping, keeping = CASES[name]
    check = perturbations([name], 1.0)  # typos: every eligible word, so the model's word is misspelled
    [flipped] = run_checks(rule_model(rule), [Example(flipping)], check, seed=0)
    assert (flipped.applied, flipped.flips) == (1, 1), flipped.outcomes
    assert flipped.flip_examples == flipped.outcomes and flipped.flip_examples[0].perturbed_text != flipping
    [kept] = run_checks(rule_model(NO_FLIP_MODELS.get(name, rule)), [Example(keeping)], check, seed=0)
    assert (kept.applied, kept.flips) == (1, 0), kept.outcomes
    assert kept.outcomes[0].perturbed_text != keeping and kept.flip_examples == []


def test_a_check_applies_only_where_it_changes_the_text() -> None:
    model = rule_model(has_word("good"))
    unchanged = {
        "lowercase": "already lower case",
        "punctuation-added": "Ends with a mark!",
        "contractions-expanded": "No contraction here; John's car stays.",
        "contractions-contracted": "what it is",
        "names": "Will you come? Mark my words, grace and hope.",
        "locations": "Nowhere in particular.",
    }
    for name, text in unchanged.items():
        [check] = run_checks(model, [Example(text)], perturbations([name], 0.1), seed=0)
        assert check.applied == 0 and check.outcomes == [], (name, check.outcomes)
        assert check.flip_rate is None and check.note == f"applied to 0 examples, fewer than {MIN_APPLIED}: no rate"


def test_typos_are_misspellings_a_reader_undoes_at_the_rate() -> None:
    reader = Reader()
    text = "the acting and the music are wonderful but the story is thin and the ending drags on far too long"
    eligible = [text[a:b] for a, b in word_spans(text) if len(text[a:b]) >= 3]
    assert len(eligible) == 18
    for rate, wanted in ((0.01, 1), (0.1, 2), (0.25, 5)):  # round(rate × 18), at least one
        [perturbed] = Typos(rate).perturb((text,), random.Random(7))
        changed = [(a, b) for a, b in zip(text.split(), perturbed.split()) if a != b]
        assert len(perturbed.split()) == len(text.split()) and len(changed) == wanted
        assert all(reader.is_misspelling(a, b) and not reader.is_word(b) for a, b in changed), changed
    for _ in range(50):  # "good" has neighbours that are words (hood, food, goad): never one of them
        [typo] = Typos(1.0).perturb(("good",), random.Random(_))
        assert typo == "good" or (reader.is_misspelling("good", typo) and typo not in {"hood", "food", "goad", "gold", "goof"})


def test_typos_are_seeded_per_example() -> None:
    example = Example("an astonishingly beautiful and moving documentary")
    check = Typos(0.5)
    first = check.perturb((example.text,), example_rng(3, "typos", example))
    assert first == check.perturb((example.text,), example_rng(3, "typos", example))
    assert {check.perturb((example.text,), example_rng(seed, "typos", example)) for seed in range(8)} != {first}


def test_punctuation_keeps_words_and_contractions() -> None:
    rng = random.Random(0)
    assert PunctuationRemoved().perturb_text("``Hello,'' he said -- don't stop; well-made!", rng) == "Hello he said don't stop well-made"
    assert PunctuationRemoved().perturb_text("it 's a fine , warm film . ", rng) == "it 's a fine warm film"
    assert PunctuationAdded().perturb_text("it 's a fine film", rng) == "it 's a fine film ."  # tokenised text: set off
    assert PunctuationAdded().perturb_text('He said "yes."', rng) == 'He said "yes."'


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        ("I don't like it, it's bad.", "I do not like it, it is bad."),
        ("DON'T GO", "DO NOT GO"),
        ("it 's a film that does n't work , wo n't .", "it is a film that does not work , will not ."),
        ("He's been there. She's nice. John's car. I'd go.", "He has been there. She is nice. John's car. I'd go."),
        ("I can't. They're here; we've won; you'll see; I'm fine.", "I cannot. They are here; we have won; you will see; I am fine."),
        ("Won't you?", "Won't you?"),
    ],
)
def test_contractions_expanded(text: str, expanded: str) -> None:
    assert ContractionsExpanded().perturb_text(text, random.Random(0)) == expanded


@pytest.mark.parametrize(
    ("text", "contracted"),
    [
        ("I do not like it, it is bad.", "I don't like it, it's bad."),
        ("that is what it is .", "that 's what it is ."),
        ("it is not good and i am sure they will not do it .", "it is n't good and i 'm sure they wo n't do it ."),
        ("I cannot go. He would say it is what it is. DO NOT GO", "I can't go. He'd say it's what it is. DON'T GO"),
        ("The dog is here and the cat is not.", "The dog is here and the cat isn't."),
    ],
)
def test_contractions_contracted(text: str, contracted: str) -> None:
    assert ContractionsContracted().perturb_text(text, random.Random(0)) == contracted


def faker_names(attribute: str) -> dict[str, set[str]]:
    """Name -> the NAME_LOCALES whose faker ``attribute`` list holds it (read here from faker itself)."""
    found: dict[str, set[str]] = {}
    for locale in NAME_LOCALES:
        for name in getattr(importlib.import_module(f"faker.providers.person.{locale}").Provider, attribute, ()):
            found.setdefault(name, set()).add(locale)
    return found


def test_names_swap_across_genders_and_origins_alike_in_both_texts() -> None:
    male, female, last = faker_names("first_names_male"), faker_names("first_names_female"), faker_names("last_names")
    assert "John" in male and "John" not in female and "Smith" in last
    for seed in range(10):
        text, pair = NameSwap().perturb(("John Smith met Mary.", "Then John Smith left."), random.Random(seed))
        first, surname, other = re.fullmatch(r"(\w+) (\w+) met (\w+)\.", text).groups()
        assert pair == f"Then {first} {surname} left."  # the same replacement in both texts of a pair
        assert first in female and not female[first] & male["John"]  # another gender, another origin
        assert other in male and not male[other] & female["Mary"]
        assert surname in last and not last[surname] & last["Smith"]
    for seed in range(10):  # "Thomas" is a first and a last name: replaced once, as John's last name
        first, surname = NameSwap().perturb(("John Thomas",), random.Random(seed))[0].split()
        assert first in female and surname in last and surname != "Thomas"
    lower = NameSwap().perturb(("jack nicholson and john smith",), random.Random(0))[0]
    assert lower.startswith("jack nicholson and ") and lower == lower.lower() and "john" not in lower  # "jack" is a common word
    assert NameSwap().perturb(("A film set in Georgia.",), random.Random(0)) == ("A film set in Georgia.",)  # a place, not a name


def test_locations_swap_within_their_kind() -> None:
    places = place_lists()
    for seed in range(10):
        text = LocationSwap().perturb(("Shot in New York and Germany, set in India.",), random.Random(seed))[0]
        state, country, country2 = re.fullmatch(r"Shot in (.+) and (.+), set in (.+)\.", text).groups()
        assert state.lower() in places["state"] and state != "New York"
        assert {country.lower(), country2.lower()} <= set(places["country"]) and "Germany" not in text and "India" not in text
    assert "new york" in places["state"] and "germany" in places["country"]


def test_fewer_than_twenty_examples_give_no_rate() -> None:
    def outcome(index: int, flipped: bool) -> InvarianceOutcome:
        return InvarianceOutcome(
            index=index, example_id=f"{index:016x}", label=1, text="t", perturbed_text="u", original_prediction=1,
            perturbed_prediction=0 if flipped else 1,
        )  # fmt: skip

    check = perturbations(["names"], 0.1)[0]
    few = summarise_check(check, [outcome(i, i < 5) for i in range(MIN_APPLIED - 1)], 0.0)
    assert few.flip_rate is None and few.flips == 5 and "fewer than 20" in few.note
    enough = summarise_check(check, [outcome(i, i < 5) for i in range(MIN_APPLIED)], 0.0)
    assert enough.note is None and enough.flip_rate == wilson(5, MIN_APPLIED)
    assert [o.index for o in enough.flip_examples] == [0, 1, 2]


def hf_predictions(texts: list[str]) -> tuple[list[int], list[float]]:
    """The fixture model run directly: each text's predicted class and the gap between its two probabilities."""
    tokenizer = AutoTokenizer.from_pretrained(SST2)
    model = AutoModelForSequenceClassification.from_pretrained(SST2).eval()
    with torch.no_grad():
        probabilities = [torch.softmax(model(**tokenizer(text, return_tensors="pt")).logits[0].double(), -1) for text in texts]
    return [int(p.argmax()) for p in probabilities], [float(abs(p[1] - p[0])) for p in probabilities]


def test_checks_on_the_sst2_fixture_model() -> None:
    from auditor.victims import open_victim

    examples = load_dataset("sst2", split="dev").head(40).examples
    checks = run_checks(open_victim(str(SST2)), examples, perturbations(CHECK_NAMES, 0.1), seed=0)
    assert [c.name for c in checks] == list(CHECK_NAMES)
    for check in checks:
        InvarianceCheck.model_validate(check.model_dump(mode="json"))
        assert check.applied == len(check.outcomes) <= len(examples)
        assert check.flips == sum(o.flipped for o in check.outcomes)
        assert check.flip_examples == [o for o in check.outcomes if o.flipped][:3]
        if check.applied >= MIN_APPLIED:
            assert check.flip_rate is not None and check.flip_rate.low <= check.flip_rate.rate <= check.flip_rate.high
        else:
            assert check.flip_rate is None and check.note
        for o in check.outcomes:
            assert examples[o.index].id == o.example_id and o.perturbed_text != o.text
    typos = checks[0]
    assert typos.applied == len(examples)  # every SST-2 sentence has a word of three letters or more
    # the victim's predictions (batched, padded) against the model run directly, one unpadded text at a time,
    # where the direct run's probability margin is wide enough (1e-4, far above float32 rounding of batching)
    # that the two paths cannot disagree
    sample = typos.outcomes[:8]
    for texts, predicted in (([o.text for o in sample], [o.original_prediction for o in sample]),
                             ([o.perturbed_text for o in sample], [o.perturbed_prediction for o in sample])):  # fmt: skip
        reference, margins = hf_predictions(texts)
        assert [p for p, m in zip(predicted, margins) if m > 1e-4] == [r for r, m in zip(reference, margins) if m > 1e-4]
    uppercase = checks[CHECK_NAMES.index("uppercase")]
    assert uppercase.applied == len(examples) and uppercase.flips == 0  # the fixture's tokenizer lower-cases
