"""Forensics of a success (``auditor.forensics``) against a reference computed here from the engine's attribution
matrices, with the Hugging Face tokenizer's own word ids and a plain loop over token pairs; the kinds of pair;
an inserted word's pairs."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from auditor.attribution import SelfAttentionAttribution
from auditor.checkpoint import Checkpoint
from auditor.errors import RequestRefused
from auditor.findings import attack_forensics
from auditor.forensics import NEGATION_SCOPE, UnitInfo, forensics_summary, implicated_heads, pair_kind, success_forensics
from auditor.schemas import AttackOutcome, ExplanationOptions
from auditor.validity import build_lexicon
from auditor.victims import LocalVictim, open_victim

SST2 = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "minilm-sst2"
ORIGINAL, ADVERSARIAL = "a charming movie .", "a cgharming movie ."  # one misspelled word flips the fixture: 0.99 -> 0.16 positive
ATOL = 1e-6
"""The forensics' sums (float64 matrix products of the float32 matrices an explanation carries) against this
file's float64 loop over the float32 matrices of another attribution call on the same input in the same
process: the same kernels, so only the order of the additions differs, ~1e-16 relative on values below 1."""


@pytest.fixture(scope="module")
def victim() -> LocalVictim:
    return open_victim(str(SST2))


def outcome(victim: LocalVictim, text: str, perturbed: str) -> AttackOutcome:
    before, after = victim([text, perturbed])
    return AttackOutcome(
        index=0, example_id="0", label=int(before.argmax()), text=text, perturbed_text=perturbed, status="succeeded",
        original_probabilities=before.tolist(), perturbed_probabilities=after.tolist(), queries=1, word_edits=1,
        inserted_words=[], edits=[], seconds=0.0,
    )  # fmt: skip


def reference_pairs(victim: LocalVictim, text: str, target: int) -> tuple[dict[tuple[int, int, frozenset[str]], float], dict[tuple[int, int], float]]:
    """Per (layer, head, {unit, unit}): Σ Attr_h(A^l)[i, j] over the token pairs (i, j) whose units are those two
    (both directions), units named by the tokenizer's word ids (its words; special tokens by their text); and
    each head's mass. Attribution as ``explain`` computes it by default: 3 Gauss–Legendre nodes, every layer."""
    classifier = victim.classifier
    encoding = classifier.tokenizer(text, return_tensors="pt")
    tokens = classifier.tokenizer.convert_ids_to_tokens(encoding["input_ids"][0])
    names = [tokens[i] if w is None else text[slice(*encoding.word_to_chars(w))] for i, w in enumerate(encoding.word_ids())]
    defaults = ExplanationOptions()
    [result] = SelfAttentionAttribution(classifier.model).attribute(
        encoding["input_ids"], encoding["attention_mask"], encoding.get("token_type_ids"), target=target, n_steps=defaults.steps, method=defaults.method
    )
    pairs: dict[tuple[int, int, frozenset[str]], float] = defaultdict(float)
    masses = {}
    for layer, heads, matrices in zip(result.layers, result.head_ids, result.attributions):
        values = matrices.double().numpy()
        for k, head in enumerate(heads):
            masses[(layer, head)] = float(values[k].sum())
            for i in range(len(tokens)):
                for j in range(len(tokens)):
                    pairs[(layer, head, frozenset({names[i], names[j]}))] += values[k, i, j]
    return pairs, masses


def test_the_edited_word_carries_the_flip_and_the_head_is_the_reference_largest_fall(victim: LocalVictim) -> None:
    success = outcome(victim, ORIGINAL, ADVERSARIAL)
    assert success.perturbed_prediction != success.original_prediction == 1  # a real flip of 'positive'
    forensics = success_forensics(success, victim.explain, victim.tokenizer, {"charming"})
    before, masses_before = reference_pairs(victim, ORIGINAL, 1)
    after_named, masses_after = reference_pairs(victim, ADVERSARIAL, 1)
    after = {(layer, head, frozenset({"charming" if w == "cgharming" else w for w in words})): v for (layer, head, words), v in after_named.items()}
    change = {key: after[key] - before[key] for key in before}
    ranked = sorted(change, key=change.get)
    largest, runner_up = ranked[0], ranked[1]
    assert change[runner_up] - change[largest] > 100 * ATOL  # no near-tie: the reference names one pair and head
    top = forensics.fallen_pairs[0]
    assert (top.layer, top.head, frozenset(top.original)) == largest
    assert "charming" in top.original and "cgharming" in top.adversarial and top.edited  # the edited word carries the flip
    assert top.kind == "label word + special token"  # [CLS] and a word of the lexicon given
    assert top.before == pytest.approx(before[largest], abs=ATOL) and top.after == pytest.approx(after[largest], abs=ATOL)
    assert [(p.layer, p.head, frozenset(p.original)) for p in forensics.fallen_pairs] == ranked[: len(forensics.fallen_pairs)]
    assert f"layer {top.layer}, head {top.head} (counted from 0)" in forensics.sentence and "*charming* → *cgharming*" in forensics.sentence
    heads = sorted(masses_before, key=lambda h: -abs(masses_after[h] - masses_before[h]))
    assert [(h.layer, h.head) for h in forensics.head_changes] == heads[: len(forensics.head_changes)]
    for h in forensics.head_changes:
        assert h.change == pytest.approx(masses_after[(h.layer, h.head)] - masses_before[(h.layer, h.head)], abs=ATOL)
    assert forensics.probability_before == pytest.approx(success.original_probabilities[1], abs=1e-5)  # two passes, one padded
    summary = forensics_summary("attribution", [forensics, forensics])
    assert implicated_heads(summary) == [(h.layer, h.head) for h in forensics.head_changes[: summary.implicated_per_success]]
    assert all(h.count == 2 and h.rate.rate == 1.0 for h in summary.heads) and summary.edited.count == 2


def test_an_inserted_word_has_no_original_and_its_pairs_rise_from_zero(victim: LocalVictim) -> None:
    forensics = success_forensics(outcome(victim, ORIGINAL, "a charming the movie ."), victim.explain, victim.tokenizer, set())
    with_inserted = [p for p in forensics.fallen_pairs + forensics.risen_pairs if None in p.original]
    assert with_inserted and all(p.before == 0.0 and "the" in p.adversarial and p.edited for p in with_inserted)
    assert {p.kind for p in forensics.fallen_pairs + forensics.risen_pairs} <= {
        "word + word", "word + special token", "word + punctuation", "within one word", "special token + special token",
        "punctuation + special token", "special token with itself", "punctuation with itself",
    }  # fmt: skip


def unit(category: str, position: tuple[int, int] | None = None, word: str = "w") -> UnitInfo:
    return UnitInfo(word, word, category, position, position, False)


def test_pair_kinds() -> None:
    negation, label_word, cls = unit("negation", (0, 2), "not"), unit("label word", (0, 3), "funny"), unit("special token", None, "[CLS]")
    assert pair_kind(negation, label_word) == pair_kind(label_word, negation) == "negation + its scope"
    assert pair_kind(negation, unit("word", (0, 2 + NEGATION_SCOPE))) == "negation + its scope"
    assert pair_kind(negation, unit("word", (0, 3 + NEGATION_SCOPE))) == "negation + word"  # beyond its scope
    assert pair_kind(negation, unit("word", (0, 1))) == "negation + word"  # before it
    assert pair_kind(negation, unit("word", (1, 3))) == "negation + word"  # in the other text of a pair
    assert pair_kind(cls, label_word) == "label word + special token"
    assert pair_kind(label_word, label_word) == "within one word" and pair_kind(cls, cls) == "special token with itself"
    assert pair_kind(unit("punctuation", None, "."), unit("word", (0, 0))) == "word + punctuation"


class RefusingEndpoint(LocalVictim):
    """The fixture model with an endpoint's answer limit: an explanation of a text longer than ``max_chars`` is
    refused as TorchServe's worker refuses one over ``max_response_bytes`` (HTTP 400, ``RequestRefused``)."""

    max_chars = 20

    def _explain(self, text: str, text_pair: str | None, options: ExplanationOptions):
        if len(text) > self.max_chars:
            raise RequestRefused(f"http://127.0.0.1:8080/explanations/sst2 refused the request: HTTP 400: the answer could be more than the limit ({len(text)} chars)")
        return super()._explain(text, text_pair, options)


def test_a_success_whose_explanation_the_endpoint_refuses_keeps_no_forensics_and_the_audit_goes_on(victim: LocalVictim, tmp_path: Path) -> None:
    refusing = RefusingEndpoint(victim.classifier)
    short = outcome(victim, ORIGINAL, ADVERSARIAL)
    long = outcome(victim, "a charming movie , truly charming .", "a cgharming movie , truly cgharming .").model_copy(update={"index": 1})
    lexicon = build_lexicon(None, victim.labels)
    checkpoint = Checkpoint(tmp_path / "checkpoint.jsonl", {})
    explained = attack_forensics(refusing, {"attribution": [short, long]}, checkpoint, lexicon)["attribution"]
    assert explained[0].forensics is not None and explained[1].forensics is None
    assert "HTTP 400" in checkpoint["forensics:attribution:1"]["refused"]
    summary = forensics_summary("attribution", [o.forensics for o in explained])
    assert (summary.successes, summary.refused) == (1, 1) and summary.edited.total == 1
    again = attack_forensics(refusing, {"attribution": [short, long]}, Checkpoint(tmp_path / "checkpoint.jsonl", {}), lexicon)["attribution"]
    assert [o.forensics is None for o in again] == [False, True]  # resumed from the checkpoint, the refusal included
