"""explain()/explain_batch() on the shipped SST-2 and RTE fixtures, checked against plain model inference and
against the explanation's own matrices."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from auditor.errors import InputError
from auditor.explain import explain, explain_batch
from auditor.models import Classifier, load_classifier
from auditor.schemas import Explanation, ExplanationOptions

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SENTENCES = [
    "a gripping, beautifully acted film",
    "the plot is thin and the jokes fall flat",
    "it 's a charming and often affecting journey .",
]


@pytest.fixture(scope="module")
def sst2() -> Classifier:
    return load_classifier(SHARED / "models" / "minilm-sst2")


@pytest.fixture(scope="module")
def explanations(sst2: Classifier) -> list[Explanation]:
    progress: list[int] = []
    result = explain_batch(
        sst2, SENTENCES, options=ExplanationOptions(include_matrices=True, top_k=4), batch_size=2, progress=progress.append
    )
    assert progress == [2, 1]
    return result


def plain_probabilities(classifier: Classifier, text: str, text_pair: str | None = None) -> np.ndarray:
    """The model's softmax output for one unpadded input, straight from transformers."""
    encoding = classifier.tokenizer(text, text_pair, return_tensors="pt")
    with torch.no_grad():
        logits = classifier.model(**encoding).logits
    return torch.softmax(logits, -1)[0].numpy()


def test_prediction_equals_plain_inference(sst2: Classifier, explanations: list[Explanation]) -> None:
    for text, explanation in zip(SENTENCES, explanations):
        expected = plain_probabilities(sst2, text)
        np.testing.assert_allclose(explanation.prediction.probabilities, expected, atol=1e-5)
        assert explanation.prediction.label_id == int(expected.argmax())
        assert explanation.prediction.label == sst2.labels[int(expected.argmax())]
        assert explanation.target == explanation.prediction.label_id
        assert explanation.target_probability == pytest.approx(float(expected.max()), abs=1e-5)
        assert explanation.tokens == sst2.tokenizer.convert_ids_to_tokens(sst2.tokenizer(text)["input_ids"])
        assert explanation.text == text and explanation.model == sst2.identity


def test_completeness_delta_is_small_and_consistent(explanations: list[Explanation]) -> None:
    for explanation in explanations:
        assert [layer.layer for layer in explanation.layers] == list(range(6))
        for layer in explanation.layers:
            total = float(np.asarray(layer.matrices, dtype=np.float64).sum())
            assert math.isfinite(layer.delta) and abs(layer.delta) < 0.05
            assert 0.0 <= layer.baseline_probability <= 1.0
            assert layer.delta == pytest.approx(total - (explanation.target_probability - layer.baseline_probability), abs=1e-6)


def test_top_pairs_match_the_matrices(explanations: list[Explanation]) -> None:
    for explanation in explanations:
        n = len(explanation.tokens)
        for layer in explanation.layers:
            per_head = np.asarray(layer.matrices, dtype=np.float64)
            assert per_head.shape == (12, n, n) and layer.head_ids == list(range(12))
            summed = per_head.sum(0)
            assert [p.score for p in layer.top_pairs] == pytest.approx(sorted(summed.flatten())[::-1][:4], abs=1e-9)
            for pair in layer.top_pairs:
                assert pair.score == pytest.approx(summed[pair.query_index, pair.key_index], abs=1e-9)
                assert (pair.query_token, pair.key_token) == (explanation.tokens[pair.query_index], explanation.tokens[pair.key_index])
                column = per_head[:, pair.query_index, pair.key_index]
                assert pair.head == int(column.argmax()) and pair.head_score == pytest.approx(column.max(), abs=1e-9)


def test_tree_edges_come_from_the_matrices(explanations: list[Explanation]) -> None:
    for explanation in explanations:
        tree = explanation.tree
        assert tree is not None and tree.nodes[0].id == "6:0" and tree.threshold == 0.4
        assert len({node.token_index for node in tree.nodes}) == len(tree.nodes) > 1
        index = {node.id: node.token_index for node in tree.nodes}
        summed = {layer.layer: np.asarray(layer.matrices, dtype=np.float64).sum(0) for layer in explanation.layers}
        for edge in tree.edges:
            assert edge.attribution == pytest.approx(summed[edge.layer][index[edge.target], index[edge.source]], abs=1e-9)
            assert edge.score > 0.4


def test_single_input_and_layer_subset_match_the_batch(sst2: Classifier, explanations: list[Explanation]) -> None:
    """Padding in a batch and the other layers requested change nothing (up to float error)."""
    single = explain(sst2, SENTENCES[1], options=ExplanationOptions(include_matrices=True, top_k=4, layers=[0, 5]))
    batched = explanations[1]
    assert single.tokens == batched.tokens and [layer.layer for layer in single.layers] == [0, 5]
    for mine, theirs in zip(single.layers, [batched.layers[0], batched.layers[5]]):
        np.testing.assert_allclose(mine.matrices, theirs.matrices, atol=1e-6)
        assert mine.delta == pytest.approx(theirs.delta, abs=1e-6)


def test_target_layers_and_defaults(sst2: Classifier) -> None:
    explanation = explain(sst2, SENTENCES[0], options=ExplanationOptions(target=0, layers=[5, 1], steps=2, top_k=2))
    assert explanation.target == 0 and explanation.target_label == "negative"
    assert explanation.target_probability == pytest.approx(explanation.prediction.probabilities[0])
    assert [layer.layer for layer in explanation.layers] == [1, 5]
    assert all(layer.matrices is None and len(layer.top_pairs) == 2 for layer in explanation.layers)
    assert explanation.steps == 2 and explanation.tree is not None and explanation.tree.num_layers == 6
    assert {edge.layer for edge in explanation.tree.edges} <= {1, 5}


def test_sentence_pair(tmp_path: Path) -> None:
    rte = load_classifier(SHARED / "models" / "minilm-rte")
    premise, hypothesis = "The cat sat on the mat.", "A cat is sitting."
    explanation = explain(rte, premise, hypothesis, ExplanationOptions(layers=[5], steps=1, include_tree=False))
    np.testing.assert_allclose(explanation.prediction.probabilities, plain_probabilities(rte, premise, hypothesis), atol=1e-5)
    assert explanation.tokens.count("[SEP]") == 2 and explanation.text_pair == hypothesis and explanation.tree is None


def test_truncate_cuts_to_the_model_limit(sst2: Classifier) -> None:
    long_text = "good " * 600
    with pytest.raises(InputError, match="more than the limit of 512"):
        explain(sst2, long_text)
    explanation = explain(sst2, long_text, options=ExplanationOptions(layers=[5], steps=1, top_k=1), truncate=True)
    assert len(explanation.tokens) == 512 and explanation.tokens[-1] == "[SEP]"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (ExplanationOptions(target=2), "target must be 'predicted' or a class index: 0 \\(negative\\), 1 \\(positive\\)"),
        (ExplanationOptions(target=-1), "target must be"),
        (ExplanationOptions(layers=[0, 6]), "layer 6 does not exist: the model has layers 0…5"),
        (ExplanationOptions(layers=[-7]), "layer -7 does not exist: the model has layers 0…5 \\(or -6…-1 from the last\\)"),
        (ExplanationOptions(layers=[]), "at least one encoder layer"),
    ],
)
def test_bad_options_are_input_errors(sst2: Classifier, options: ExplanationOptions, message: str) -> None:
    with pytest.raises(InputError, match=message):
        explain(sst2, SENTENCES[0], options=options)


def test_negative_layers_count_from_the_last(sst2: Classifier) -> None:
    from_the_end = explain(sst2, SENTENCES[0], options=ExplanationOptions(layers=[-1, -6], steps=1, top_k=1))
    counted = explain(sst2, SENTENCES[0], options=ExplanationOptions(layers=[0, 5], steps=1, top_k=1))
    assert [layer.layer for layer in from_the_end.layers] == [0, 5]
    # exact: the same computation twice in this process
    assert from_the_end.model_dump(exclude={"seconds"}) == counted.model_dump(exclude={"seconds"})


def test_bad_texts_are_input_errors(sst2: Classifier) -> None:
    with pytest.raises(InputError, match="text is empty"):
        explain(sst2, "   ")
    with pytest.raises(InputError, match="no input text"):
        explain_batch(sst2, [])
    with pytest.raises(InputError, match="2 texts but 1 text pairs"):
        explain_batch(sst2, ["a", "b"], ["c"])
