"""The attribution engine against a straightforward per-layer reference computed through the Hugging Face
model's own forward pass (the paper's method: patch one layer's attention, one pass per α)."""

from __future__ import annotations

import copy

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from auditor.attribution import SelfAttentionAttribution
from auditor.quadrature import quadrature
from tests.reference import reference_attribution

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SST2 = SHARED / "models" / "minilm-sst2"

SMALL = dict(
    vocab_size=120, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=40,
    max_position_embeddings=80, num_labels=3, attn_implementation="eager",
)


def small_model(kind: str, **overrides) -> torch.nn.Module:
    torch.manual_seed({"bert": 0, "roberta": 1, "electra": 2}[kind])
    options = {**SMALL, **overrides}
    if kind == "bert":
        model = BertForSequenceClassification(BertConfig(**options))
    elif kind == "roberta":
        model = RobertaForSequenceClassification(RobertaConfig(pad_token_id=1, **options))
    else:
        model = ElectraForSequenceClassification(ElectraConfig(embedding_size=24, **options))
    return model.double().eval()


def batch(lengths: list[int], vocab: int = 120, pad: int = 0, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    n = max(lengths)
    input_ids = torch.full((len(lengths), n), pad, dtype=torch.long)
    mask = torch.zeros((len(lengths), n), dtype=torch.long)
    for row, length in enumerate(lengths):
        input_ids[row, :length] = torch.randint(5, vocab, (length,), generator=generator)
        mask[row, :length] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


def gauss_legendre_on_unit_interval(m: int):
    x, w = np.polynomial.legendre.leggauss(m)
    return (x + 1) / 2, w / 2


def assert_matches_reference(model, inputs, results, nodes, weights, targets):
    for e, result in enumerate(results):
        length = int(inputs["attention_mask"][e].sum())
        single = {k: v[e : e + 1, :length] for k, v in inputs.items()}
        for i, layer in enumerate(result.layers):
            expected, f_full, f_zero = reference_attribution(model, single, layer, targets[e], nodes, weights)
            torch.testing.assert_close(result.attributions[i], expected, rtol=1e-6, atol=1e-12)
            assert result.delta[i].item() == pytest.approx(float(expected.sum()) - (f_full - f_zero), abs=1e-10)


@pytest.mark.parametrize("kind", ["bert", "roberta", "electra"])
def test_matches_reference_gauss_legendre(kind):
    model = small_model(kind)
    inputs = batch([7, 11, 4], pad=model.config.pad_token_id)
    results = SelfAttentionAttribution(model).attribute(**inputs, n_steps=4, method="gausslegendre")
    nodes, weights = gauss_legendre_on_unit_interval(4)
    assert_matches_reference(model, inputs, results, nodes, weights, [r.predicted for r in results])


def test_matches_reference_riemann_with_gold_targets():
    model = small_model("bert")
    inputs = batch([9, 5], seed=3)
    targets = [2, 0]
    results = SelfAttentionAttribution(model).attribute(**inputs, target=targets, n_steps=5, method="riemann_left")
    assert [r.target for r in results] == targets
    assert_matches_reference(model, inputs, results, [k / 5 for k in range(5)], [0.2] * 5, targets)


def test_sentence_pairs_use_segment_ids():
    model = small_model("bert")
    inputs = batch([10, 8], seed=4)
    token_type_ids = torch.zeros_like(inputs["input_ids"])
    token_type_ids[0, 6:10] = 1
    token_type_ids[1, 4:8] = 1
    inputs["token_type_ids"] = token_type_ids
    results = SelfAttentionAttribution(model).attribute(**inputs, n_steps=3)
    without_segments = SelfAttentionAttribution(model).attribute(inputs["input_ids"], inputs["attention_mask"], n_steps=3)
    assert not torch.allclose(results[0].attributions[0], without_segments[0].attributions[0])
    nodes, weights = gauss_legendre_on_unit_interval(3)
    assert_matches_reference(model, inputs, results, nodes, weights, [r.predicted for r in results])


def test_pruned_heads_and_layer_subset():
    model = small_model("bert")
    model.prune_heads({0: [1, 3], 2: [0]})
    model.double()
    inputs = batch([8], seed=5)
    (result,) = SelfAttentionAttribution(model).attribute(**inputs, layers=[2, 0], n_steps=3)
    assert result.layers == [0, 2]
    assert result.head_ids == [[0, 2], [1, 2, 3]]
    assert [a.shape for a in result.attributions] == [(2, 8, 8), (3, 8, 8)]
    nodes, weights = gauss_legendre_on_unit_interval(3)
    assert_matches_reference(model, inputs, [result], nodes, weights, [result.predicted])


def test_completeness_delta_falls_as_steps_grow(sst2):
    model, tokenizer = sst2
    engine = SelfAttentionAttribution(copy.deepcopy(model).double())
    inputs = tokenizer(["it 's a charming and often affecting journey .", "a dull , lifeless mess"], padding=True, return_tensors="pt")
    errors: dict[tuple[str, int], torch.Tensor] = {}
    for method, steps in (("riemann_left", [5, 10, 20, 40]), ("gausslegendre", [1, 2, 3, 5, 8])):
        for m in steps:
            results = engine.attribute(**inputs, n_steps=m, method=method)
            errors[method, m] = torch.stack([r.delta.abs() for r in results]).mean(0)
        means = [float(errors[method, m].mean()) for m in steps]
        assert all(b < a for a, b in zip(means, means[1:])), (method, means)
    # The product's claim: 3 Gauss–Legendre nodes beat the paper's 20-step Riemann sum on every layer.
    assert bool((errors["gausslegendre", 3] < errors["riemann_left", 20]).all())


def test_batch_of_different_lengths_equals_one_at_a_time():
    model = small_model("roberta")
    engine = SelfAttentionAttribution(model)
    inputs = batch([3, 14, 9, 14, 6], pad=1, seed=7)
    together = engine.attribute(**inputs, n_steps=3, internal_batch_size=40)
    assert engine.passes > 1
    for e, result in enumerate(together):
        length = int(inputs["attention_mask"][e].sum())
        (alone,) = engine.attribute(**{k: v[e : e + 1, :length] for k, v in inputs.items()}, n_steps=3)
        assert result.length == length
        for a, b in zip(result.attributions, alone.attributions):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(result.delta, alone.delta, rtol=1e-8, atol=1e-12)


def test_memory_limit_splits_passes_without_changing_results():
    model = small_model("bert")
    inputs = batch([40, 33], seed=8)
    unbounded = SelfAttentionAttribution(model)
    reference = unbounded.attribute(**inputs, n_steps=3, memory_limit_mb=4096)
    bounded = SelfAttentionAttribution(model)
    chunked = bounded.attribute(**inputs, n_steps=3, memory_limit_mb=0.5)
    assert bounded.passes > 2 * unbounded.passes
    for a, b in zip(reference, chunked):
        for x, y in zip(a.attributions, b.attributions):
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-14)


def test_float32_batch_matches_float64():
    model = small_model("electra")
    inputs = batch([10, 6], seed=9)
    high = SelfAttentionAttribution(model).attribute(**inputs)
    low = SelfAttentionAttribution(model.float()).attribute(**inputs)
    assert low[0].attributions[0].dtype == torch.float32
    for a, b in zip(high, low):
        for x, y in zip(a.attributions, b.attributions):
            torch.testing.assert_close(y.double(), x, rtol=1e-3, atol=1e-6)


def test_bad_arguments_raise_clear_errors():
    model = small_model("bert")
    engine = SelfAttentionAttribution(model)
    inputs = batch([5], seed=10)
    with pytest.raises(ValueError, match="target"):
        engine.attribute(**inputs, target=7)
    with pytest.raises(ValueError, match="layers"):
        engine.attribute(**inputs, layers=[3])
    with pytest.raises(ValueError, match="quadrature"):
        engine.attribute(**inputs, method="simpson")
    with pytest.raises(ValueError, match="right-padded"):
        engine.attribute(inputs["input_ids"], torch.tensor([[0, 1, 1, 1, 1]]))


@pytest.fixture(scope="module")
def sst2():
    model = AutoModelForSequenceClassification.from_pretrained(SST2, attn_implementation="eager").eval()
    return model, AutoTokenizer.from_pretrained(SST2)


def test_fixture_model_scores_are_finite_and_prediction_matches_inference(sst2):
    model, tokenizer = sst2
    texts = ["a gripping, beautifully acted film", "the plot is thin and the jokes fall flat .", "meh"]
    inputs = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    results = SelfAttentionAttribution(model).attribute(**inputs)
    assert [r.predicted for r in results] == logits.argmax(-1).tolist()
    for result, row in zip(results, torch.softmax(logits, -1)):
        torch.testing.assert_close(result.probabilities, row)
        assert all(torch.isfinite(a).all() for a in result.attributions)
        assert len(result.attributions) == 6 and result.attributions[0].shape[0] == 12
        assert float(result.delta.abs().max()) < 0.05


def test_long_input_is_chunked_not_failed(sst2):
    model, tokenizer = sst2
    text = " ".join(["the film is long but it rewards patience"] * 80)
    inputs = tokenizer(text, truncation=True, max_length=512, return_tensors="pt")
    assert inputs["input_ids"].shape[1] == 512
    engine = SelfAttentionAttribution(model)
    (result,) = engine.attribute(**inputs, layers=[4, 5], memory_limit_mb=256)
    assert engine.passes >= 2
    assert result.attributions[1].shape == (12, 512, 512)
    assert all(torch.isfinite(a).all() for a in result.attributions)


@pytest.mark.parametrize("method", ["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre"])
def test_quadrature_integrates_polynomials(method):
    alphas, weights = quadrature(method, 6)
    assert sum(weights) == pytest.approx(1.0)
    assert all(0.0 <= a <= 1.0 for a in alphas)
    cube = sum(w * a**3 for a, w in zip(alphas, weights))
    tolerance = 1e-12 if method == "gausslegendre" else 0.2
    assert cube == pytest.approx(0.25, abs=tolerance)
