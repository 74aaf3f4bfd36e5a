"""Head masks, head importance, pruning curves and physical pruning for DistilBERT, ALBERT, DeBERTa-v2 and
ModernBERT (tiny random models): masks against the model's own forward with one layer's probabilities
zeroed per head, leave-one-out against masked accuracies, pruned-and-reloaded models against masks."""

from __future__ import annotations

import pytest
import torch

from auditor.data import load_dataset
from auditor.encoders import encoder_for
from auditor.errors import InputError
from auditor.heads import accuracy, compute_importance, encode_dataset, full_mask, head_mask, scores_tensor
from auditor.models import load_classifier
from auditor.pruning import mask_without, prune_model, pruning_curve, rank_heads, rank_shared_heads
from auditor.schemas import IMPORTANCE_METHODS
from tests.families import FAMILIES, SHARED, VARIANTS, save_tiny, tiny_model
from tests.test_families import padded_batch, probabilities_replaced


@pytest.mark.parametrize("variant", VARIANTS)
def test_head_mask_equals_zeroing_those_heads_probabilities(variant):
    model = tiny_model(variant, layers=3).double()
    inputs = padded_batch([9], seed=2)
    encoder = encoder_for(model)
    with torch.no_grad():
        attentions = model(**inputs, output_attentions=True).attentions
        for layer in range(encoder.num_layers):
            mask = torch.ones(encoder.num_layers, encoder.num_heads, dtype=torch.float64)
            mask[layer, [1, 3]] = 0.0
            with head_mask(model, mask):
                masked = model(**inputs).logits
            keep = mask[layer][None, :, None, None]
            with probabilities_replaced(model, layer, attentions[layer] * keep):
                expected = model(**inputs).logits
            torch.testing.assert_close(masked, expected, rtol=1e-10, atol=1e-12)
            assert not torch.allclose(masked, model(**inputs).logits)


@pytest.fixture(scope="module", params=FAMILIES)
def saved(request, tmp_path_factory):
    family = request.param
    classifier = load_classifier(save_tiny(family, tmp_path_factory.mktemp(family) / "model"), device="cpu")
    dataset = load_dataset(str(SHARED / "data" / "glue" / "SST-2" / "train.tsv")).head(10)
    return family, classifier, dataset, encode_dataset(classifier, dataset, batch_size=4)


def test_every_importance_method_runs_and_leave_one_out_equals_masked_accuracy(saved):
    family, classifier, dataset, batches = saved
    for method in IMPORTANCE_METHODS:
        scores = scores_tensor(compute_importance(classifier, dataset, method, examples=None, batch_size=4))
        assert scores.shape == (2, 4) and bool(torch.isfinite(scores).all()), (family, method)
    loo = scores_tensor(compute_importance(classifier, dataset, "loo", examples=None, batch_size=4))
    model = classifier.model
    base = accuracy(model, batches)
    for layer in range(2):
        for head in range(4):
            assert loo[layer, head] == pytest.approx(base - accuracy(model, batches, mask_without(model, {layer: [head]})), abs=1e-12)


@pytest.mark.numerics
def test_pruning_curve_and_physical_pruning_or_its_clear_error(saved, tmp_path):
    family, classifier, dataset, batches = saved
    scores = torch.arange(8, dtype=torch.float64).view(2, 4)
    points = pruning_curve(classifier.model, batches, scores, fractions=(0.0, 0.25, 0.5))
    assert [p.heads_removed for p in points] == [0, 2, 4]
    assert points[0].accuracy == accuracy(classifier.model, batches)  # exact: the same computation twice in this process
    remove = {0: [1, 3], 1: [1, 3]} if family == "albert" else {0: [1, 3], 1: [0]}
    if family in ("deberta-v2", "modernbert"):
        with pytest.raises(InputError, match="cannot physically prune heads of .* models; measure pruning with head masks instead") as error:
            prune_model(classifier, remove, tmp_path / "pruned")
        assert "\n" not in str(error.value)
        return
    out = prune_model(classifier, remove, tmp_path / "pruned")
    reloaded = load_classifier(out, device="cpu")
    assert reloaded.identity.pruned_heads == remove
    assert torch.equal(full_mask(reloaded.model).isnan(), mask_without(classifier.model, remove) == 0)
    encoding = classifier.encode(["a gripping , beautifully acted film", "dull"])
    with torch.no_grad(), head_mask(classifier.model, mask_without(classifier.model, remove)):
        masked = classifier.model(**encoding).logits
    # a pruned copy against the masked model (two objects, smaller matrices): float32 rounding, ~80 ulps
    torch.testing.assert_close(reloaded.model(**encoding).logits, masked, rtol=1e-5, atol=1e-6)


def test_albert_prunes_its_shared_layer_only_from_every_application(tmp_path):
    classifier = load_classifier(save_tiny("albert", tmp_path / "albert"), device="cpu")
    with pytest.raises(InputError, match="share one set of weights.*same heads") as error:
        prune_model(classifier, {0: [1]}, tmp_path / "pruned")
    assert "\n" not in str(error.value)


def test_shared_ranking_removes_a_head_from_every_layer_of_its_group_by_mean_score():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.4], [0.8, 0.0, 0.5, 0.3], [0.2, 0.2, 0.2, 0.9], [0.3, 0.1, 0.6, 0.9]])
    # groups {0, 1} and {2, 3}; means: [0.45, 0.45, 0.5, 0.35] and [0.25, 0.15, 0.4, 0.9]
    assert rank_shared_heads(scores, 4, [[0, 1], [2, 3]]) == {2: [0, 1], 3: [0, 1]}
    assert rank_shared_heads(scores, 6, [[0, 1], [2, 3]]) == {0: [3], 1: [3], 2: [0, 1], 3: [0, 1]}
    assert rank_shared_heads(scores, 7, [[0, 1], [2, 3]]) == rank_shared_heads(scores, 6, [[0, 1], [2, 3]])
    assert rank_shared_heads(scores, 3, [[0], [1], [2], [3]]) == rank_heads(scores, 3)
