"""The attribution-guided search and the validity constraint: the word ranking against an independent
computation of word importance (the paper's algorithm run plainly, tests/reference.py), no prediction query
spent on ranking, the last edit under the word cap against a brute force over every candidate, the sufficient
gain's threshold, no attack over its query budget, and the label-word lexicon and constraint against
hand-counted examples."""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

import auditor.textattack_env  # noqa: F401
from textattack.attack_results import SuccessfulAttackResult
from textattack.shared import AttackedText

from auditor.attack import attribution_attack, deepwordbug_attack, random_insertion_attack
from auditor.edits import word_edit_distance
from auditor.audit import validity_constraints
from auditor.data import Dataset, Example, load_dataset
from auditor.models import load_classifier
from auditor.schemas import LexiconOptions, TriggerPattern
from auditor.validity import LabelWordConstraint, association_scores, build_lexicon, edited_words, one_word_phrases
from auditor.search import AttributionGreedySearch, margin
from auditor.victims import LocalVictim
from tests.reference import reference_attribution

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="module")
def sst2() -> LocalVictim:
    return LocalVictim(load_classifier(SHARED / "models" / "minilm-sst2", device="cpu"))


def reference_word_importance(victim: LocalVictim, text: str, steps: int) -> list[float]:
    """Σ_l Σ_h Σ_i Σ_{j ∈ word} Attr_h(A^l)[i, j], each layer attributed by re-running the whole model with
    its attention patched (Gauss–Legendre nodes from numpy), words = whitespace words of a plain text."""
    classifier = victim.classifier
    inputs = dict(classifier.tokenizer(text, return_tensors="pt"))
    model = classifier.model.double()
    try:
        with torch.no_grad():
            target = int(model(**inputs).logits.argmax())
        points, weights = np.polynomial.legendre.leggauss(steps)
        nodes, weights = (points + 1) / 2, weights / 2
        drawn = sum(
            reference_attribution(model, inputs, layer, target, nodes.tolist(), weights.tolist())[0].sum((0, 1))
            for layer in range(model.config.num_hidden_layers)
        )
    finally:
        model.float()
    scores = [0.0] * len(text.split())
    for position, word in enumerate(classifier.tokenizer(text).word_ids()):
        if word is not None:
            scores[word] += float(drawn[position])
    return scores


@pytest.mark.parametrize(
    "text",
    ["the plot is thin but the acting is superb and the music lingers", "a dull and lifeless film that wastes a fine cast"],
)
def test_ranking_follows_independent_word_importance(sst2: LocalVictim, text: str) -> None:
    attack = attribution_attack(sst2, ["charedit"], query_budget=50, steps=3)
    before_queries, before_explanations = sst2.inputs, sst2.explanations
    order = attack.search_method.index_order(AttackedText(text))
    assert sst2.inputs == before_queries and sst2.explanations == before_explanations + 1  # no query for the ranking
    words = text.split()
    stopwords = attack.pre_transformation_constraints[1].stopwords
    assert sorted(order) == [i for i, w in enumerate(words) if w not in stopwords]
    scores = reference_word_importance(sst2, text, steps=3)
    assert order == sorted(order, key=lambda i: -scores[i])
    expected = {i: scores[i] for i in order}
    explanation = sst2.explain(text, attack.search_method.options)
    assert {w.index: w.score for w in explanation.word_importance if w.index in expected} == pytest.approx(expected, abs=1e-4)


def test_pair_words_are_ranked_in_both_segments() -> None:
    rte = LocalVictim(load_classifier(SHARED / "models" / "minilm-rte", device="cpu"))
    text = AttackedText(OrderedDict(premise="the cat sat quietly on the warm mat", hypothesis="a cat is sitting"))
    attack = attribution_attack(rte, ["delete"], query_budget=20)
    order = attack.search_method.index_order(text)
    assert {i for i in order if i >= 8} and {i for i in order if i < 8}  # words of both segments, by global index
    assert len(order) == len(set(order))


SST2_DEV = [
    "it 's a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
    "allows us to hope that nolan is poised to embark a major career as a commercial yet inventive filmmaker .",
    "the acting , costumes , music , cinematography and sound are all astounding given the production 's austere locales .",
    "a gorgeous , witty , seductive movie .",
    "it 's slow -- very , very slow .",
]


@pytest.mark.parametrize(("sufficient_gain", "sweep_words"), [(None, None), (0.5, 3)])
def test_the_edit_at_the_word_cap_is_kept_only_when_it_flips_the_label(sst2: LocalVictim, sufficient_gain: float | None, sweep_words: int | None) -> None:
    """With one word allowed, every edit is the last: of the first ``sweep_words`` ranked words (all for None),
    each probed with its first candidate, the search must find a label-flipping edit exactly when some probe
    flips the label or some word whose probe closes the sufficient gain s of the margin m (a margin <= (1 − s)·m;
    below m without s) has a flipping candidate (every candidate queried directly); a failed search keeps no
    edit, and spends one query on each probed word and one per further candidate on the close ones."""
    lexicon = build_lexicon(None, sst2.labels)
    attack = attribution_attack(
        sst2, ["tokenedit"], 1000, validity_constraints(lexicon, 1), max_words=1, sufficient_gain=sufficient_gain, sweep_words=sweep_words
    )
    outcomes, word_kinds = set(), set()
    for text in SST2_DEV:
        original_probabilities = sst2([text])[0]
        label = int(original_probabilities.argmax())

        def margin_of(p: np.ndarray) -> float:
            return float(p[label] - np.delete(p, label).max())

        original = AttackedText(text)
        order = attack.search_method.index_order(original)
        words = [attack.get_transformations(original, original_text=original, indices_to_modify=[i]) for i in order]
        words = [w for w in words if w][: sweep_words or len(words)]
        probabilities = [sst2([c.text for c in w]) for w in words]
        m = margin_of(original_probabilities)
        close = [margin_of(p[0]) < m and margin_of(p[0]) <= (1 - (sufficient_gain or 0)) * m for p in probabilities]
        flips = any(int(p[0].argmax()) != label or (near and any(int(q.argmax()) != label for q in p)) for p, near in zip(probabilities, close))
        result = attack.attack(text, label)
        perturbed = result.perturbed_result.attacked_text
        succeeded = type(result).__name__ == "SuccessfulAttackResult"
        assert succeeded == flips, text
        assert word_edit_distance(original.words, perturbed.words) == (1 if succeeded else 0)
        if not succeeded:
            expected = 1 + sum(len(w) if near else 1 for w, near in zip(words, close))  # the initial query, then the words
            assert result.perturbed_result.num_queries == expected
        outcomes.add(succeeded)
        word_kinds.update(close)
    assert outcomes == {True, False}  # both outcomes were exercised
    assert word_kinds == {True, False}  # and both kinds of word


def test_sufficient_gain_is_a_share_of_the_margin_per_edit_left() -> None:
    class Result:
        raw_output = np.array([0.1, 0.7, 0.2])
        ground_truth_output = 1

    assert margin(Result()) == pytest.approx(0.5)
    search = AttributionGreedySearch(None, max_words=3, sufficient_gain=0.5)  # type: ignore[arg-type]
    assert search.enough(Result(), 2) == pytest.approx(0.5 - 0.5 * 0.5 / 2)
    assert search.enough(Result(), 1) is None  # the last edit must flip the label
    assert AttributionGreedySearch(None, max_words=3).enough(Result(), 3) is None  # type: ignore[arg-type]


def pattern(first: str, second: str) -> TriggerPattern:
    return TriggerPattern(
        words=(first, second), segments=(0, 0), gap=1, positions=(0.5, 0.6), label=0, label_name="negative",
        support=5, predicted={0: 5}, gold_labels={}, mass=2.5, score=1.0, log_odds=1.0, z=2.0, example=0, layer=0,
    )  # fmt: skip


@pytest.mark.parametrize("budget", [1, 4, 9])
def test_no_attack_exceeds_its_query_budget(sst2: LocalVictim, budget: int) -> None:
    lexicon = build_lexicon(None, sst2.labels, user_words={"superb": 1})
    texts = ["a gripping , beautifully acted film that never lets go", "the acting is superb and the story moves along briskly"]
    attacks = [
        attribution_attack(sst2, names, budget, validity_constraints(lexicon, 3), [pattern("meanwhile", "somehow"), pattern("so", "what")])
        for names in (["tokenedit"], ["charedit"], ["typo", "delete"], ["tokenedit", "delete", "pattern"])
    ]
    attacks.append(deepwordbug_attack(sst2, budget, validity_constraints(lexicon, 3)))
    attacks.append(random_insertion_attack(sst2, ["alpha", "beta", "gamma"], 3, budget, 3, constraints=[LabelWordConstraint(lexicon)]))
    for attack in attacks:
        for text in texts:
            result = attack.attack(text, 1)
            assert result.perturbed_result.num_queries <= budget, attack


def test_lexicon_counts_and_constraint() -> None:
    examples = [Example("great", None, 1), Example("dreadful", None, 0), Example("great", None, 0), Example("film", None, 1)]
    examples += [Example("a great film", None, 1)] * 6 + [Example("a dull film", None, 0)] * 6 + [Example("a great mess", None, 0)]
    train = Dataset("toy", "train", "toy", examples, ["negative", "positive"])
    assert one_word_phrases(train) == {"dreadful": 0, "film": 1}  # "great" is labelled both ways
    scores = association_scores(train, 2, prior=1.0)
    n, delta, z = scores["great"][1]  # 7 multi-word examples hold "great", 6 positive; base rate 6 of 13
    expected = math.log((6 + 1) / (1 + 1)) - math.log(6 / 7)
    assert (n, delta, z) == pytest.approx((7, expected, expected / math.sqrt(1 / 7 + 1 / 2)))
    lexicon = build_lexicon(train, ["negative", "positive"], LexiconOptions(min_count=5, threshold=0.5, min_z=1.0), {"meh": -1})
    assert lexicon.words == {"dreadful": 0, "dull": 0, "film": 1, "great": 1, "meh": -1}
    assert (lexicon.phrase_words, lexicon.user_words) == (2, 1)
    constraint = LabelWordConstraint(lexicon)
    original = AttackedText("a good story about a boy")
    for perturbed, valid in [
        ("a good dull story about a boy", False),  # inserts a label word
        ("a good story about a meh", False),  # substitutes one in
        ("a goood story about a boy", True),  # misspelling
        ("a good story about a boy indeed", True),
        ("a great story about a boy", False),
    ]:
        assert constraint._check_constraint(AttackedText(perturbed), original) is valid, perturbed
    with_label_word = AttackedText("a dull story")
    assert constraint._check_constraint(AttackedText("a story"), with_label_word) is False  # deleting a label word changes the label
    assert constraint._check_constraint(AttackedText("a dlul story"), with_label_word) is True
    assert constraint.rejected == 4
    assert edited_words(["a", "B", "c"], ["a", "x", "c", "d"]) == (["x", "d"], [])


def test_patterns_held_back_only_add_successes_to_the_edits_alone(sst2: LocalVictim) -> None:
    """With pattern insertion held back (the default), every attack that the edits alone win is won the same
    way, with the same queries; where they fail, the second pass with the patterns may win."""
    lexicon = build_lexicon(None, sst2.labels)
    patterns = [pattern("awful", "mess"), pattern("so", "what")]
    texts = [e.text for e in load_dataset("sst2").examples if e.label == 1][:10]
    alone = attribution_attack(sst2, ["tokenedit"], 40, validity_constraints(lexicon, 3), patterns, max_words=3)
    held = attribution_attack(sst2, ["tokenedit", "pattern"], 40, validity_constraints(lexicon, 3), patterns, max_words=3)
    beside = attribution_attack(sst2, ["tokenedit", "pattern"], 40, validity_constraints(lexicon, 3), patterns, max_words=3, patterns_after_edits=False)
    assert held.search_method.held_back is not None and beside.search_method.held_back is None
    rescued = 0
    for text in texts:
        results = []
        for attack in (alone, held):
            attack.clear_cache()
            results.append(attack.attack(text, 1))
        edits, both = results
        assert both.perturbed_result.num_queries <= 40
        if isinstance(edits, SuccessfulAttackResult):
            assert both.perturbed_result.attacked_text.text == edits.perturbed_result.attacked_text.text
            assert both.perturbed_result.num_queries == edits.perturbed_result.num_queries
        elif isinstance(both, SuccessfulAttackResult):
            rescued += 1
            assert set(both.perturbed_result.attacked_text.words) >= {"awful", "mess"} or "what" in both.perturbed_result.attacked_text.words
    assert rescued >= 1  # "awful mess" flips positive reviews the character edits did not
