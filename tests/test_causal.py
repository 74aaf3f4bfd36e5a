"""The causal check (auditor.causal): flips undone and clean examples broken by masking heads, checked against
transformers' own ``head_mask`` argument of BERT's forward pass (an implementation of head masking the check
does not use), and the pruning advice's rule."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from auditor.causal import MAX_CLEAN_COST, causal_check, prune_advice, random_heads
from auditor.data import Example, load_dataset
from auditor.errors import InputError
from auditor.heads import compute_importance, model_inputs, scores_tensor
from auditor.models import Classifier, load_classifier
from auditor.predict import softmax
from auditor.schemas import AttackOutcome, CausalCheck, CausalRow, CleanDifference, ExamplesUsed
from auditor.statistics import wilson

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
ADVERSARIAL = [39, 3, 24, 46, 13]
"""SST-2 dev sentences standing in for adversarial texts: masking one head flips each of them (layer 2 head 1
flips 39 and 3 from positive to negative; layer 5 head 9 flips 24, 46 and 13 from negative to positive), so
each is a success that one head carries when the victim's original prediction is the other class."""
NOT_REPRODUCED = 0
"""A sentence the model predicts positive, given as a 'success' whose original prediction was positive: the
unmasked model does not reproduce its flip (as an ONNX graph's rounding might), so it is not counted."""
CLEAN = [1, 2, 4, 5, 6, 7, 8, 9, 10, 11]
IMPLICATED = [(2, 1), (5, 9), (0, 4), (1, 3), (3, 0)]
MARGIN = 1e-3
"""Every logit margin the reference compares is at least this far from 0, so that its arg max cannot differ
from the check's (another implementation of the same masking, equal up to float rounding, ~1e-6)."""


@pytest.fixture(scope="module")
def sst2() -> Classifier:
    return load_classifier(SHARED / "models" / "minilm-sst2", device="cpu")


@pytest.fixture(scope="module")
def importance(sst2):
    train = load_dataset("sst2", "train", labels=sst2.labels)
    return compute_importance(sst2, train, "attribution", examples=4, steps=1)


def reference_logits(classifier: Classifier, texts: list[str], heads: list[tuple[int, int]]) -> torch.Tensor:
    """Logits with ``heads`` masked through transformers' ``head_mask`` argument (1 keeps a head, 0 masks it)."""
    mask = torch.ones(6, 12)
    for layer, head in heads:
        mask[layer, head] = 0.0
    with torch.no_grad():
        return classifier.model(**model_inputs(classifier.encode(texts, truncate=True)), head_mask=mask).logits


def reference_predictions(classifier: Classifier, texts: list[str], heads: list[tuple[int, int]]) -> list[int]:
    logits = reference_logits(classifier, texts, heads)
    margins = (logits[:, 1] - logits[:, 0]).abs()
    assert bool((margins > MARGIN).all()), f"a margin too close to 0 to compare: {margins.min():.2e}"
    return logits.argmax(-1).tolist()


def outcome(classifier: Classifier, index: int, example: Example, perturbed: str, status: str) -> AttackOutcome:
    original, after = (softmax(reference_logits(classifier, [t], []).numpy())[0].tolist() for t in (example.text, perturbed))
    return AttackOutcome(
        index=index, example_id=example.id, label=example.label, text=example.text, perturbed_text=perturbed, status=status,
        original_probabilities=original, perturbed_probabilities=after, queries=1, word_edits=0, inserted_words=[],
        edits=[], seconds=0.0,
    )


@pytest.fixture(scope="module")
def outcomes(sst2) -> list[AttackOutcome]:
    """An attack's outcomes: a success per adversarial sentence, whose original text is a clean sentence the
    model gets right with the class the flip left; the rest failed (or skipped when the model is wrong)."""
    dev = load_dataset("sst2", "dev", labels=sst2.labels).examples
    flipped = reference_predictions(sst2, [dev[i].text for i in ADVERSARIAL], [])
    clean = [dev[i] for i in CLEAN]
    predicted = reference_predictions(sst2, [e.text for e in clean], [])
    right = [e for e, p in zip(clean, predicted) if p == e.label]
    found = []
    for n, (i, after) in enumerate(zip([*ADVERSARIAL, NOT_REPRODUCED], [*flipped, 0])):
        source = next(e for e in right if e.label == 1 - after)
        right.remove(source)
        found.append(outcome(sst2, n, source, dev[i].text, "succeeded"))
    for e in right + [e for e, p in zip(clean, predicted) if p != e.label]:
        status = "failed" if e in right else "skipped"
        found.append(outcome(sst2, len(found), e, e.text, status))
    assert [o.original_prediction for o in found[: len(ADVERSARIAL)]] == [1 - p for p in flipped]
    return found


def expected_row(classifier: Classifier, outcomes: list[AttackOutcome], heads: list[tuple[int, int]]) -> tuple[int, int, int, int, int]:
    """(undone, reproduced, broken, clean right, clean right under the mask) by the reference."""
    successes = [o for o in outcomes if o.status == "succeeded"]
    adversarial = reference_predictions(classifier, [o.perturbed_text for o in successes], heads)
    reproduced = [o.perturbed_prediction != o.original_prediction for o in successes]  # the unmasked reference's
    undone = sum(r and a == o.original_prediction for r, a, o in zip(reproduced, adversarial, successes))
    right = [o.status != "skipped" for o in outcomes]  # the unmasked reference's outcomes on the clean texts
    masked = [p == o.label for p, o in zip(reference_predictions(classifier, [o.text for o in outcomes], heads), outcomes)]
    return undone, sum(reproduced), sum(r and not m for r, m in zip(right, masked)), sum(right), sum(masked)


@pytest.fixture(scope="module")
def check(sst2, outcomes, importance) -> CausalCheck:
    return causal_check(sst2, outcomes, IMPLICATED, importance, attack="attribution", k=3, sizes=(0, 1, 3), draws=1)


def test_the_head_that_carries_a_flip_undoes_it(sst2, outcomes, importance, check):
    assert check.successes == len(ADVERSARIAL) + 1 and check.reproduced == len(ADVERSARIAL)  # the stand-in is left out
    one = check.row("implicated", 1)
    assert one.heads == [(2, 1)]
    assert (one.undone.count, one.undone.total) == (2, 5)  # sentences 39 and 3, the two layer 2 head 1 flips
    present = [(l, h) for l in range(6) for h in range(12)]
    scores = scores_tensor(importance)
    for row in check.rows:
        if row.selection == "attribution-pruning":  # the k least important heads by attribution (no layer loses all)
            assert row.heads == sorted(sorted(present, key=lambda x: float(scores[x]))[: row.k])
        undone, reproduced, broken, right, masked = expected_row(sst2, outcomes, row.heads)
        assert (row.undone.count, row.undone.total) == (undone, reproduced), row
        assert (row.clean_broken.count, row.clean_broken.total) == (broken, right), row
        assert (row.clean_accuracy.count, row.clean_accuracy.total) == (masked, len(outcomes)), row
        for rate in (row.undone, row.clean_broken, row.clean_accuracy):
            assert rate == wilson(rate.count, rate.total)  # the Wilson interval of exactly these counts
    assert check.clean_accuracy.count == sum(o.status != "skipped" for o in outcomes)
    assert [(r.k, r.selection) for r in check.rows] == [
        (0, "implicated"), (0, "random"), (0, "attribution-pruning"), (1, "implicated"), (1, "random"), (1, "attribution-pruning"), (3, "implicated"), (3, "random"), (3, "attribution-pruning")
    ]
    assert CausalCheck.model_validate_json(check.model_dump_json()) == check


def test_masking_no_head_undoes_and_breaks_nothing(check):
    assert [r.selection for r in check.rows if r.k == 0] == ["implicated", "random", "attribution-pruning"]
    for row in (r for r in check.rows if r.k == 0):
        assert row.heads == [] and row.undone.count == 0 and row.undone.total == len(ADVERSARIAL)
        assert row.clean_broken.count == 0 and row.clean_accuracy == check.clean_accuracy


def test_random_heads_are_seeded_and_the_row_is_the_median_draw(sst2, outcomes, importance):
    present = [(l, h) for l in range(6) for h in range(12)]
    drawn = random_heads(present, 5, seed=0, draw=2)
    assert drawn == random_heads(present, 5, seed=0, draw=2) and len(set(drawn)) == 5 and set(drawn) <= set(present)
    assert drawn != random_heads(present, 5, seed=1, draw=2) and drawn != random_heads(present, 5, seed=0, draw=3)
    check = causal_check(sst2, outcomes, IMPLICATED, importance, attack="attribution", k=5, sizes=(5,), draws=3, seed=3)
    row = check.row("random")
    assert row.draws == 3 and row.undone.count == sorted(row.draws_undone)[1]
    draws = [random_heads(present, 5, seed=3, draw=d) for d in range(3)]
    assert row.heads == draws[row.draws_undone.index(row.undone.count)] or row.draws_undone.count(row.undone.count) > 1
    assert row.draws_undone == [expected_row(sst2, outcomes, heads)[0] for heads in draws]


def test_bad_inputs_are_refused(sst2, outcomes, importance):
    attention = importance.model_copy(update={"method": "attention"})
    with pytest.raises(InputError, match="attribution importance"):
        causal_check(sst2, outcomes, IMPLICATED, attention, attack="attribution")
    with pytest.raises(InputError, match="not a head of the model"):
        causal_check(sst2, outcomes, [(6, 0), *IMPLICATED], importance, attack="attribution")
    with pytest.raises(InputError, match="masks 3 implicated heads, but the ranking has 2"):
        causal_check(sst2, outcomes, IMPLICATED[:2], importance, attack="attribution", k=3)
    assert causal_check(sst2, outcomes, IMPLICATED[:1], importance, attack="attribution", k=1, draws=1).sizes == [1]  # 3 and 5 left out
    with pytest.raises(InputError, match="names a head twice"):
        causal_check(sst2, outcomes, [(2, 1), (2, 1), (0, 4)], importance, attack="attribution")


def rate(count: int, total: int):
    return wilson(count, total)


def synthetic(undone: tuple[int, int], pruned_undone: tuple[int, int], difference: tuple[float, float, float], reproduced: int = 40) -> CausalCheck:
    """A check whose advice rows hold the given counts (the random row is irrelevant to the advice)."""

    def row(selection, count) -> CausalRow:
        return CausalRow(
            selection=selection, k=3, heads=[(0, 1), (2, 3), (4, 5)], undone=rate(count, reproduced),
            clean_broken=rate(2, 180), clean_accuracy=rate(170, 200),
        )

    return CausalCheck(
        attack="attribution", successes=reproduced, reproduced=reproduced, examples=200, clean_accuracy=rate(178, 200), k=3,
        sizes=[3], draws=1, seed=0, importance=ExamplesUsed(dataset="sst2", split="train", source="local", fingerprint="0", count=200, digest="0" * 64),
        rows=[row("implicated", undone[0]), row("attribution-pruning", pruned_undone[0])],
        clean_difference=CleanDifference(k=3, value=difference[0], low=difference[1], high=difference[2]), seconds=0.0,
    )


def test_the_advice_follows_its_rule():
    helps = prune_advice(synthetic((30, 40), (5, 40), (0.0, -0.01, 0.01)))
    assert helps.helps and helps.defence == "prune-implicated"
    assert "undoes 30 of 40 flips of the attribution attack (75.0 % [" in helps.line and helps.line.endswith("so it helps.")
    overlapping = prune_advice(synthetic((12, 40), (8, 40), (0.0, -0.01, 0.01)))
    assert not overlapping.helps and "does not lie above" in overlapping.line
    costly = prune_advice(synthetic((30, 40), (5, 40), (0.05, 0.03, 0.07)))
    assert not costly.helps and "up to 7.0 points more clean accuracy; limit 2)" in costly.line
    assert math.isclose(costly.measures[-1].high, 0.07) and MAX_CLEAN_COST == 0.02
    nothing = prune_advice(synthetic((0, 0), (0, 0), (0.0, 0.0, 0.0), reproduced=0))
    assert not nothing.helps and "no success to undo" in nothing.line
