"""Head importance methods against independent reference computations, and the importance cache."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch

from auditor.attribution import SelfAttentionAttribution
from auditor.data import load_dataset
from auditor.heads import ImportanceCache, compute_importance, encode_dataset, accuracy, model_inputs, scores_tensor
from auditor.models import Classifier, load_classifier
from tests.numerics import logit_margins

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
EXAMPLES = 12


@pytest.fixture(scope="module")
def sst2() -> Classifier:
    return load_classifier(SHARED / "models" / "minilm-sst2", device="cpu")


@pytest.fixture(scope="module")
def train12():
    return load_dataset(str(SHARED / "data" / "glue" / "SST-2" / "train.tsv")).head(EXAMPLES)


def single(classifier: Classifier, example) -> dict[str, torch.Tensor]:
    """One example encoded alone (no padding)."""
    encoding = classifier.encode([example.text], None if example.text_pair is None else [example.text_pair])
    return {k: v for k, v in encoding.items()}


def test_attention_importance_equals_manual_softmax_maxima(sst2, train12):
    importance = compute_importance(sst2, train12, "attention", examples=None)
    config = sst2.model.config
    head_size = config.hidden_size // config.num_attention_heads
    reference = torch.zeros(config.num_hidden_layers, config.num_attention_heads)
    with torch.no_grad():
        for example in train12.examples:
            hidden_states = sst2.model(**single(sst2, example), output_hidden_states=True).hidden_states
            for index, layer in enumerate(sst2.model.bert.encoder.layer):
                h = hidden_states[index][0]
                n = h.shape[0]
                q = layer.attention.self.query(h).view(n, -1, head_size).transpose(0, 1)
                k = layer.attention.self.key(h).view(n, -1, head_size).transpose(0, 1)
                logits = q @ k.transpose(1, 2) / math.sqrt(head_size)
                probabilities = logits.exp() / logits.exp().sum(-1, keepdim=True)
                reference[index] += probabilities.flatten(1).max(1).values / EXAMPLES
    assert importance.method == "attention" and importance.examples.count == EXAMPLES
    torch.testing.assert_close(scores_tensor(importance).float(), reference, atol=2e-5, rtol=0)


def test_attribution_importance_equals_per_example_engine_maxima(sst2, train12):
    count = 4
    importance = compute_importance(sst2, train12, "attribution", examples=count, steps=2)
    engine = SelfAttentionAttribution(sst2.model)
    reference = torch.zeros(6, 12)
    for example in train12.examples[:count]:
        inputs = single(sst2, example)
        (result,) = engine.attribute(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"], target=example.label, n_steps=2)
        assert result.target == example.label
        for layer, attribution in zip(result.layers, result.attributions):
            reference[layer] += torch.stack([a.max() for a in attribution]) / count
    assert importance.options == {"steps": 2, "quadrature": "gausslegendre"} and importance.examples.count == count
    torch.testing.assert_close(scores_tensor(importance).float(), reference, atol=1e-6, rtol=1e-4)


def test_taylor_importance_equals_context_times_gradient_from_hooks(sst2, train12):
    importance = compute_importance(sst2, train12, "taylor", examples=None)
    layers = sst2.model.bert.encoder.layer
    reference = torch.zeros(6, 12)
    for example in train12.examples:
        contexts: list[torch.Tensor] = []

        def keep(module, args, output):
            output[0].retain_grad()
            contexts.append(output[0])

        handles = [layer.attention.self.register_forward_hook(keep) for layer in layers]
        try:
            logits = sst2.model(**single(sst2, example)).logits
            torch.nn.functional.cross_entropy(logits, torch.tensor([example.label])).backward()
        finally:
            for handle in handles:
                handle.remove()
        for index, context in enumerate(contexts):
            per_head = (context * context.grad)[0].view(context.shape[1], 12, -1).sum((0, 2))
            reference[index] += per_head.abs().detach()
    sst2.model.zero_grad(set_to_none=True)
    reference = reference / reference.norm(dim=1, keepdim=True)
    torch.testing.assert_close(scores_tensor(importance).float(), reference, atol=1e-5, rtol=1e-4)


@pytest.mark.numerics
def test_leave_one_out_equals_accuracy_drop_of_physically_pruned_copies(sst2, train12):
    importance = compute_importance(sst2, train12, "loo", examples=None)
    scores = scores_tensor(importance)
    batches = encode_dataset(sst2, train12)
    full = accuracy(sst2.model, batches)
    most = divmod(int(scores.nan_to_num(-1).argmax()), 12)
    least = divmod(int(scores.nan_to_num(9).argmin()), 12)
    for layer, head in {most, least, (0, 3), (5, 11)}:
        pruned = copy.deepcopy(sst2.model)
        pruned.prune_heads({layer: [head]})
        # a masked head against a pruned copy: logits agree to float32 rounding (~1e-5), and no example's two
        # logits are closer than twice that, so both take the same argmax on any CPU
        assert float(logit_margins(pruned, (model_inputs(b.encoding) for b in batches)).min()) > 2e-5, (layer, head)
        assert float(scores[layer, head]) == pytest.approx(full - accuracy(pruned, batches), abs=1e-9), (layer, head)


def test_random_importance_is_seeded(sst2, train12):
    first = compute_importance(sst2, train12, "random", examples=4, seed=1)
    again = compute_importance(sst2, train12, "random", examples=4, seed=1)
    other = compute_importance(sst2, train12, "random", examples=4, seed=2)
    assert first.scores == again.scores != other.scores  # exact: the same seeded computation twice in this process
    assert all(0 <= v < 1 for row in first.scores for v in row)


@pytest.mark.numerics
def test_importance_of_a_pruned_model_uses_original_head_ids(sst2, train12, tmp_path):
    from auditor.pruning import prune_model

    folder = prune_model(sst2, {0: [1, 4], 3: [0]}, tmp_path / "pruned")
    pruned = load_classifier(folder, device="cpu")
    importance = compute_importance(pruned, train12, "attention", examples=8)
    full = compute_importance(sst2, train12, "attention", examples=8)
    assert [i for i, v in enumerate(importance.scores[0]) if v is None] == [1, 4]
    assert [i for i, v in enumerate(importance.scores[3]) if v is None] == [0]
    # layer 0's attention does not depend on any pruning: the kept heads score as in the full model, to float32
    # rounding (two model objects; attention probabilities ≤ 1, 1e-6 is about 8 ulps of 1)
    kept = [h for h in range(12) if h not in (1, 4)]
    assert [importance.scores[0][h] for h in kept] == pytest.approx([full.scores[0][h] for h in kept], abs=1e-6)
    assert importance.model.pruned_heads == {0: [1, 4], 3: [0]}


def test_cache_hits_and_is_never_stale_when_model_or_data_change(sst2, train12, tmp_path):
    cache = ImportanceCache(tmp_path / "cache")
    first = compute_importance(sst2, train12, "attention", examples=8, cache=cache)
    assert (cache.hits, cache.misses) == (0, 1)
    again = compute_importance(sst2, train12, "attention", examples=8, cache=ImportanceCache(tmp_path / "cache"))
    assert again == first
    reuse = ImportanceCache(tmp_path / "cache")
    compute_importance(sst2, train12, "attention", examples=8, cache=reuse)
    assert (reuse.hits, reuse.misses) == (1, 0)

    other_data = compute_importance(sst2, train12, "attention", examples=7, cache=reuse)
    assert reuse.misses == 1 and other_data.examples.count == 7
    changed_texts = load_dataset(str(SHARED / "data" / "glue" / "SST-2" / "train.tsv")).head(EXAMPLES)
    changed_texts.examples[0] = type(changed_texts.examples[0])("an entirely different first sentence", None, 1)
    changed = compute_importance(sst2, changed_texts, "attention", examples=8, cache=reuse)
    assert reuse.misses == 2 and changed.examples.digest != first.examples.digest
    assert changed.scores != first.scores

    modified = Classifier(copy.deepcopy(sst2.model), sst2.tokenizer, sst2.identity)  # same name and file digest
    with torch.no_grad():
        modified.model.bert.encoder.layer[0].attention.self.query.weight.mul_(1.5)
    after = compute_importance(modified, train12, "attention", examples=8, cache=reuse)
    assert reuse.misses == 3
    assert after.scores != first.scores
    assert len(list((tmp_path / "cache").glob("*.json"))) == 4
