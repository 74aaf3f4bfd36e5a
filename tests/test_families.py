"""Attribution for DistilBERT, ALBERT, DeBERTa-v2 and ModernBERT, in float64, against a naive computation
written here for each family: the model's own forward with one layer's attention probabilities replaced at
the point the family computes them, one forward and backward pass per quadrature node."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification

from auditor.attribution import SelfAttentionAttribution
from auditor.encoders import UnsupportedModelError, encoder_for
from auditor.models import load_classifier
from tests.families import FAMILIES, VARIANTS, save_tiny, tiny_model


@contextlib.contextmanager
def probabilities_replaced(model: torch.nn.Module, layer: int, scaled: torch.Tensor) -> Iterator[None]:
    """Inside, the ``layer``-th attention (execution order) uses ``scaled`` as its post-softmax probabilities.

    DistilBERT, ALBERT and DeBERTa-v2 pass the probabilities through an ``nn.Dropout`` module (ALBERT's is
    shared: its k-th call is layer k); ModernBERT through ``nn.functional.dropout`` inside its eager
    attention function, the only 4-d tensor it drops out: the k-th such call is layer k.
    """
    kind = model.config.model_type
    calls = {"count": 0}

    def pick(probabilities: torch.Tensor) -> torch.Tensor:
        index = calls["count"]
        calls["count"] += 1
        return scaled if index == layer else probabilities

    if kind == "modernbert":
        original = torch.nn.functional.dropout

        def dropout(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
            return pick(x) if x.dim() == 4 else original(x, *args, **kwargs)

        torch.nn.functional.dropout = dropout
        try:
            yield
        finally:
            torch.nn.functional.dropout = original
        return
    if kind == "distilbert":
        sites = {id(m): m for m in (block.attention.dropout for block in model.distilbert.transformer.layer)}
    elif kind == "albert":
        sites = {id(g.albert_layers[0].attention.attention_dropout): g.albert_layers[0].attention.attention_dropout for g in model.albert.encoder.albert_layer_groups}
    else:
        sites = {id(m): m for m in (block.attention.self.dropout for block in model.deberta.encoder.layer)}
    handles = [module.register_forward_hook(lambda m, args, out: pick(out)) for module in sites.values()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def naive_attribution(model, inputs, layer, target, nodes, weights):
    """(A^l ⊙ Σ_k w_k ∂F(α_k A^l)/∂A^l, F(A), F(0·A^l)) for one unpadded example, one pass per node."""
    with torch.no_grad():
        out = model(**inputs, output_attentions=True)
    attention = out.attentions[layer]

    def target_probability(scaled: torch.Tensor) -> torch.Tensor:
        with probabilities_replaced(model, layer, scaled):
            return torch.softmax(model(**inputs).logits, -1)[0, target]

    total = torch.zeros_like(attention)
    for alpha, weight in zip(nodes, weights):
        scaled = (float(alpha) * attention).requires_grad_()
        (gradient,) = torch.autograd.grad(target_probability(scaled), scaled)
        total += float(weight) * gradient
    with torch.no_grad():
        at_zero = target_probability(torch.zeros_like(attention))
        at_one = target_probability(attention.clone())
    assert float(at_one) == pytest.approx(float(torch.softmax(out.logits, -1)[0, target]), rel=1e-12)
    return (attention * total)[0], float(at_one), float(at_zero)


def padded_batch(lengths: list[int], seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.zeros((len(lengths), max(lengths)), dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for row, length in enumerate(lengths):
        input_ids[row, :length] = torch.randint(5, 120, (length,), generator=generator)
        mask[row, :length] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


def gauss_legendre(m: int):
    x, w = np.polynomial.legendre.leggauss(m)
    return (x + 1) / 2, w / 2


# ModernBERT computes its rotary angles as a float32 matmul even in a float64 model (transformers casts them
# up afterwards), whose rounding depends on the shapes (a length-11 batch, a length-7 example) and on the
# CPU's kernels (on an AMD EPYC: 2e-7 relative, 6e-12 absolute). Its padded batch is held to that float32
# rounding; every other family to float64's.
BATCH_TOLERANCE = {"modernbert": {"rtol": 1e-6, "atol": 1e-12}}


@pytest.mark.parametrize("variant", VARIANTS)
def test_padded_batch_matches_naive_per_example_computation(variant):
    model = tiny_model(variant).double()
    inputs = padded_batch([7, 11, 4], seed=len(variant))
    engine = SelfAttentionAttribution(model)
    results = engine.attribute(**inputs, target=[0, 2, 1], n_steps=4, internal_batch_size=20)
    assert engine.passes > 1
    nodes, weights = gauss_legendre(4)
    for e, result in enumerate(results):
        length = int(inputs["attention_mask"][e].sum())
        single = {k: v[e : e + 1, :length] for k, v in inputs.items()}
        assert result.layers == list(range(encoder_for(model).num_layers))
        for i, layer in enumerate(result.layers):
            expected, f_full, f_zero = naive_attribution(model, single, layer, result.target, nodes, weights)
            assert float(expected.abs().max()) > 1e-8
            torch.testing.assert_close(result.attributions[i], expected, rtol=1e-6, atol=1e-12)
            assert result.delta[i].item() == pytest.approx(float(expected.sum()) - (f_full - f_zero), abs=1e-10)
        (alone,) = engine.attribute(**single, target=result.target, n_steps=4)
        for a, b in zip(result.attributions, alone.attributions):
            torch.testing.assert_close(a, b, **BATCH_TOLERANCE.get(variant.split("-")[0], {"rtol": 1e-9, "atol": 1e-14}))


def test_modernbert_local_layers_attend_only_inside_the_window():
    model = tiny_model("modernbert").double()
    (result,) = SelfAttentionAttribution(model).attribute(**padded_batch([12], seed=1), n_steps=2)
    distance = (torch.arange(12)[:, None] - torch.arange(12)[None, :]).abs()
    assert bool((result.attentions[1][:, distance > 2] == 0).all()) and bool((result.attributions[1][:, distance > 2] == 0).all())
    assert bool((result.attentions[0][:, distance > 2] > 0).all())


@pytest.mark.parametrize("family", FAMILIES)
def test_other_attention_implementations_are_refused_and_the_loader_uses_eager(family, tmp_path):
    if family == "deberta-v2":  # transformers itself has no sdpa DeBERTa-v2
        with pytest.raises(ValueError, match="does not support an attention implementation"):
            tiny_model(family, attn_implementation="sdpa")
    else:
        sdpa = tiny_model(family, attn_implementation="sdpa")
        with pytest.raises(UnsupportedModelError, match="attn_implementation='sdpa'.*eager") as error:
            SelfAttentionAttribution(sdpa)
        assert "\n" not in str(error.value)
    save_tiny(family, tmp_path / family)
    classifier = load_classifier(tmp_path / family, device="cpu")
    assert classifier.model.config._attn_implementation == "eager"
    encoding = classifier.encode(["a gripping film", "dull"])
    (result, _) = SelfAttentionAttribution(classifier.model).attribute(**encoding)
    assert all(torch.isfinite(a).all() for a in result.attributions)


def test_decoders_and_unknown_types_get_a_one_line_error():
    decoder = GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=50))
    with pytest.raises(UnsupportedModelError, match=r"model_type='gpt2'.*albert.*deberta-v2.*distilbert.*modernbert") as error:
        SelfAttentionAttribution(decoder)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("family", FAMILIES)
def test_float32_padded_batch_matches_float64(family):
    model = tiny_model(family)
    inputs = padded_batch([9, 5], seed=4)
    low = SelfAttentionAttribution(model).attribute(**inputs, target=1)
    high = SelfAttentionAttribution(model.double()).attribute(**inputs, target=1)
    assert low[0].attributions[0].dtype == torch.float32
    for a, b in zip(high, low):
        for x, y in zip(a.attributions, b.attributions):
            torch.testing.assert_close(y.double(), x, rtol=1e-3, atol=1e-6)
