"""Head ranking with the keep-one-per-layer rule, masked vs physically pruned models, ONNX export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from auditor.attribution import SelfAttentionAttribution
from auditor.data import load_dataset
from auditor.errors import InputError
from auditor.export import OnnxClassifier, export_onnx, quantize_dynamic
from auditor.heads import accuracy, encode_dataset, head_mask, model_inputs
from auditor.models import Classifier, load_classifier
from auditor.pruning import heads_for_fraction, mask_without, prune_model, pruning_curve, rank_heads
from tests.numerics import logit_margins

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TEXTS = ["a gripping, beautifully acted film", "dull", "it is neither funny nor moving , and it goes on far too long ."]


@pytest.fixture(scope="module")
def sst2() -> Classifier:
    return load_classifier(SHARED / "models" / "minilm-sst2", device="cpu")


@pytest.fixture(scope="module")
def half_pruned(sst2, tmp_path_factory) -> tuple[dict[int, list[int]], Path]:
    """36 of 72 heads chosen from seeded random scores, removed physically and saved."""
    scores = torch.rand(6, 12, generator=torch.Generator().manual_seed(7))
    heads = rank_heads(scores, heads_for_fraction(0.5, 72))
    return heads, prune_model(sst2, heads, tmp_path_factory.mktemp("pruned") / "half")


def test_fraction_must_be_in_zero_one():
    assert heads_for_fraction(0.0, 72) == 0
    assert heads_for_fraction(0.3, 72) == 22
    assert heads_for_fraction(0.5, 72) == 36
    for bad in (-0.1, 1.0, 1.5, float("nan")):
        with pytest.raises(InputError, match=r"in \[0, 1\)"):
            heads_for_fraction(bad, 72)


def test_global_ranking_keeps_one_head_per_layer():
    scores = torch.arange(72, dtype=torch.float64).view(6, 12)  # layer 0 holds the 12 least important heads
    assert rank_heads(scores, 3) == {0: [0, 1, 2]}
    chosen = rank_heads(scores, 12)
    assert chosen == {0: list(range(11)), 1: [0]}  # head 11 of layer 0 is kept, the next least important goes
    assert rank_heads(scores, 12, keep_per_layer=0) == {0: list(range(12))}
    assert sum(map(len, rank_heads(scores, 66).values())) == 66
    with pytest.raises(InputError, match="at least 1 head"):
        rank_heads(scores, 67)
    scores[2, 5] = float("nan")  # already pruned: never chosen, not counted as remaining
    assert 5 not in rank_heads(scores, 40).get(2, [])
    with pytest.raises(InputError):
        rank_heads(scores, 66)


def test_prune_model_rejects_empty_layers_and_unknown_heads(sst2, tmp_path):
    with pytest.raises(InputError, match="no heads"):
        prune_model(sst2, {2: list(range(12))}, tmp_path / "a")
    with pytest.raises(InputError, match="layer 6 does not exist"):
        prune_model(sst2, {6: [0]}, tmp_path / "b")
    with pytest.raises(InputError, match="head 12"):
        prune_model(sst2, {0: [12]}, tmp_path / "c")
    assert not (tmp_path / "a").exists()


@pytest.mark.numerics
def test_physically_pruned_model_reloads_with_the_masked_logits(sst2, half_pruned):
    heads, folder = half_pruned
    encoding = sst2.encode(TEXTS)
    with torch.no_grad(), head_mask(sst2.model, mask_without(sst2.model, heads)):
        masked = sst2.model(**model_inputs(encoding)).logits
    with torch.no_grad():
        unpruned = sst2.model(**model_inputs(encoding)).logits
    reloaded = load_classifier(folder, device="cpu")
    with torch.no_grad():
        pruned = reloaded.model(**model_inputs(reloaded.encode(TEXTS))).logits
    # two model objects computing differently (smaller matrices vs zeroed heads): float32 logits of size ~5
    # agree to 1e-5, about 16 ulps of them
    torch.testing.assert_close(pruned, masked, atol=1e-5, rtol=0)
    assert (pruned - unpruned).abs().max() > 1e-3  # pruning changed something
    assert reloaded.identity.pruned_heads == heads
    assert [len(ids) for ids in SelfAttentionAttribution(reloaded.model).encoder.head_ids] == [12 - len(heads.get(l, [])) for l in range(6)]
    assert sst2.model.bert.encoder.layer[0].attention.self.num_attention_heads == 12  # the source is untouched
    assert (folder / "tokenizer.json").is_file() and json.loads((folder / "pruning.json").read_text())["removed"]
    # the pruned model still explains: attribution completeness holds with its fewer heads
    inputs = reloaded.encode(TEXTS[:1])
    (result,) = SelfAttentionAttribution(reloaded.model).attribute(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"], n_steps=4)
    assert [a.shape[0] for a in result.attributions] == [len(ids) for ids in result.head_ids]


@pytest.mark.numerics
def test_curve_points_equal_physically_pruned_accuracy(sst2, half_pruned):
    heads, folder = half_pruned
    dev = load_dataset(str(SHARED / "data" / "glue" / "SST-2" / "dev.tsv")).head(24)
    batches = encode_dataset(sst2, dev)
    scores = torch.rand(6, 12, generator=torch.Generator().manual_seed(7))
    zero, half = pruning_curve(sst2.model, batches, scores, fractions=(0.0, 0.5))
    assert (zero.heads_removed, half.heads_removed) == (0, 36)
    assert zero.accuracy == accuracy(sst2.model, batches)  # exact: the same computation twice in this process
    reloaded = load_classifier(folder, device="cpu")
    # masks against the pruned copy: logits agree to 1e-5 (above), and no example's two logits are closer than
    # twice that, so every argmax, hence the accuracy, is the same on any CPU
    pruned_batches = encode_dataset(reloaded, dev)
    assert float(logit_margins(reloaded.model, (model_inputs(b.encoding) for b in pruned_batches)).min()) > 2e-5
    assert half.accuracy == accuracy(reloaded.model, pruned_batches)


@pytest.mark.numerics
@pytest.mark.parametrize("which", ["full", "pruned"])
def test_onnx_export_matches_pytorch_for_several_batch_sizes_and_lengths(sst2, half_pruned, tmp_path, which):
    classifier = sst2 if which == "full" else load_classifier(half_pruned[1], device="cpu")
    path = export_onnx(classifier, tmp_path / "model.onnx")
    runner = OnnxClassifier(path, SHARED / "models" / "minilm-sst2", providers=["CPUExecutionProvider"])
    assert runner.provider == "CPUExecutionProvider" and runner.labels == ["negative", "positive"]
    long_text = " ".join(["a surprisingly tender and sharply observed comedy"] * 12)
    for texts in (TEXTS[:1], TEXTS, [long_text, "ok"] + TEXTS * 2):
        encoding = classifier.encode(texts)
        with torch.no_grad():
            expected = classifier.model(**model_inputs(encoding)).logits.numpy()
        got = runner.logits(runner.encode(texts))
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)  # ONNX Runtime vs PyTorch: ~200 ulps of logits ~5
    if which == "full":
        quantized = quantize_dynamic(path, tmp_path / "model.int8.onnx")
        assert quantized.stat().st_size < 0.55 * path.stat().st_size  # int8 weights: about half the graph's float16 ones
        int8 = OnnxClassifier(quantized, SHARED / "models" / "minilm-sst2", providers=["CPUExecutionProvider"])
        encoding = runner.encode(TEXTS)
        assert not np.array_equal(int8.logits(encoding), runner.logits(encoding))  # lossy, hence reported, never implicit
