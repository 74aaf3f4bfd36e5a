"""Attribution-pattern mining on the SST-2 and RTE fixtures, checked against brute-force recomputation from
the attribution tensors and the tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from auditor.attribution import SelfAttentionAttribution
from auditor.data import load_dataset
from auditor.errors import InputError
from auditor.models import load_classifier
from auditor.triggers import load_triggers, mine_triggers, top_head_pairs, word_spans

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="module")
def sst2():
    return load_classifier(SHARED / "models" / "minilm-sst2", device="cpu")


@pytest.fixture(scope="module")
def rte():
    return load_classifier(SHARED / "models" / "minilm-rte", device="cpu")


def test_top_head_pairs_match_brute_force(sst2) -> None:
    encoding = sst2.encode(["a gripping , beautifully acted film", "dull and lifeless"])
    results = SelfAttentionAttribution(sst2.model).attribute(encoding["input_ids"], encoding["attention_mask"])
    special = set(sst2.tokenizer.all_special_ids)
    for result in results:
        ids = result.input_ids.tolist()
        entries = [
            (float(result.attributions[l][h, q, k]), l, h, q, k)
            for l in range(len(result.layers))
            for h in range(result.attributions[l].shape[0])
            for q in range(len(ids))
            for k in range(len(ids))
            if ids[q] not in special and ids[k] not in special
        ]
        best = max(entries)
        in_head = sorted((e for e in entries if e[1:3] == best[1:3]), reverse=True)[:2]
        found = top_head_pairs(result, torch.tensor([i in special for i in ids]), pairs=2)
        assert (found.layer, found.head) == (best[1], best[2])
        assert found.pairs == [(e[3], e[4]) for e in in_head]
        assert found.mass == pytest.approx(sum(e[0] for e in in_head), rel=1e-5)


def test_word_spans_are_textattack_words() -> None:
    import auditor.textattack_env  # noqa: F401
    from textattack.shared.utils import words_from_text

    texts = [e.text for e in load_dataset("sst2").head(200).examples] + ["it's 'quoted' -- a well-worn, un-*funny* film @home!"]
    for text in texts:
        assert [text[a:b] for a, b in word_spans(text)] == words_from_text(text)


def test_mined_patterns_come_from_their_examples(sst2) -> None:
    dataset = load_dataset("sst2", split="train").head(12)
    triggers = mine_triggers(sst2, dataset, examples=12, threshold=0.0)
    assert triggers.data.count == 12 and triggers.model == sst2.identity
    assert sum(p.count for p in triggers.patterns) == 12  # no threshold: every example yields one occurrence
    vocabulary = sst2.tokenizer.get_vocab()
    for pattern in triggers.patterns:
        assert pattern.elements and all(e.token in vocabulary for e in pattern.elements)
        assert 1 <= len({(e.segment, e.offset, e.word) for e in pattern.elements}) <= 4
        assert all(e.segment == 0 for e in pattern.elements) and set(pattern.anchors) == {0}
        assert any(all(e.word.lower() in ex.text.lower() for e in pattern.elements) for ex in dataset.examples)
        assert sum(pattern.gold_labels.values()) == pattern.count
    for label in (0, 1):
        ranked = triggers.ranked(label)
        assert [p for p in triggers.patterns if p.label == label] == ranked  # the file keeps the ranking
        keys = [(len({(e.segment, e.offset) for e in p.elements if any(c.isalnum() for c in e.word)}), -p.count, -p.mass) for p in ranked]
        assert keys == sorted(keys)
    strict = mine_triggers(sst2, dataset, examples=12, threshold=sorted(p.mass for p in triggers.patterns)[-3])
    assert 1 <= len(strict.patterns) <= 3


def test_patterns_aggregate_repeated_examples_and_round_trip(sst2, tmp_path: Path) -> None:
    dataset = load_dataset("sst2", split="train").head(3)
    dataset.examples[:] = dataset.examples * 3
    triggers = mine_triggers(sst2, dataset, examples=9, threshold=0.0)
    assert sum(p.count for p in triggers.patterns) == 9
    assert all(p.count % 3 == 0 for p in triggers.patterns)  # each example's pattern, found on all 3 copies
    path = tmp_path / "patterns.json"
    path.write_text(triggers.model_dump_json())
    assert load_triggers(path) == triggers
    path.write_text('{"patterns": 3}')
    with pytest.raises(InputError, match="not a patterns file"):
        load_triggers(path)


def test_pair_patterns_keep_their_segments(rte) -> None:
    dataset = load_dataset("rte", split="train").head(6)
    triggers = mine_triggers(rte, dataset, examples=6, threshold=0.0)
    for pattern in triggers.patterns:
        assert set(pattern.anchors) == {e.segment for e in pattern.elements}
        for segment in pattern.anchors:
            texts = [ex.text if segment == 0 else ex.text_pair for ex in dataset.examples]
            assert any(all(e.word in t for e in pattern.elements if e.segment == segment) for t in texts)
            assert min(e.offset for e in pattern.elements if e.segment == segment) == 0
