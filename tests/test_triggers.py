"""Token-pair pattern mining on the SST-2 and RTE fixtures: the pairs are the attribution tree's edges between
words (checked against the tree built here from the attribution tensors and the tokenizer's offsets), the
statistics against hand computation, the sentences against brute force, and a killed mining run (locally
and on Ray) resumes with nothing lost or counted twice."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from auditor.attribution import SelfAttentionAttribution
from auditor.data import Dataset, Example, load_dataset
from auditor.errors import InputError
from auditor.models import load_classifier
from auditor.schemas import MinedExample, TreePair, TriggerMiningOptions, TriggerSet
from auditor.tree import attribution_tree
from auditor.triggers import PatternMiner, aggregate_patterns, is_single_word, load_triggers, mine_triggers, word_spans
from tests.numerics import MINED_ULPS, differences
from tests.processes import kill_after_records

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SST2 = SHARED / "models" / "minilm-sst2"


@pytest.fixture(scope="module")
def sst2():
    return load_classifier(SST2, device="cpu")


@pytest.fixture(scope="module")
def rte():
    return load_classifier(SHARED / "models" / "minilm-rte", device="cpu")


def test_word_spans_are_textattack_words() -> None:
    import auditor.textattack_env  # noqa: F401
    from textattack.shared.utils import words_from_text

    texts = [e.text for e in load_dataset("sst2").head(200).examples] + ["it's 'quoted' -- a well-worn, un-*funny* film @home!"]
    for text in texts:
        assert [text[a:b] for a, b in word_spans(text)] == words_from_text(text)
    for word in {w for text in texts for w in text.split()} | {"'s", "--", "x-ray", "@home", "n't", ","}:
        assert is_single_word(word) == (words_from_text(word) == [word]), word


def reference_pairs(classifier, text: str, steps: int, threshold: float) -> set[tuple[str, str, int, int]]:
    """The word pairs of one example's tree, recomputed here: attribution of the single unpadded example,
    the tree over the head sums, each token located in TextAttack's words by a linear scan of the
    tokenizer's character offsets."""
    encoding = classifier.tokenizer(text, return_tensors="pt", return_offsets_mapping=True)
    [result] = SelfAttentionAttribution(classifier.model).attribute(encoding["input_ids"], encoding["attention_mask"], n_steps=steps)
    tree = attribution_tree([a.sum(0).double().numpy() for a in result.attributions], [str(i) for i in range(result.length)], threshold)
    spans = word_spans(text)
    special = set(classifier.tokenizer.all_special_ids)
    located = []
    for token, (start, end) in zip(encoding["input_ids"][0].tolist(), encoding["offset_mapping"][0].tolist()):
        inside = [w for w, (a, b) in enumerate(spans) if a <= start < b]
        located.append(None if token in special or end == start or not inside else inside[0])
    pairs = set()
    for edge in tree.edges:
        a, b = (located[int(node.split(":")[1])] for node in (edge.source, edge.target))
        if a is not None and b is not None and a != b:
            first, second = sorted((a, b))
            pairs.add((text[slice(*spans[first])].lower(), text[slice(*spans[second])].lower(), first, second))
    return pairs


def test_mined_pairs_are_the_trees_word_edges(sst2) -> None:
    texts = ["a gripping , beautifully acted film that never lets go", "the plot is n't worth the price of admission .", "dull"]
    options = TriggerMiningOptions(steps=2)
    mined = PatternMiner(sst2, options)([Example(text, None, 1) for text in texts])  # one padded batch
    for text, example in zip(texts, mined):
        found = {(*p.words, *p.indices) for p in example.pairs}
        assert found == reference_pairs(sst2, text, 2, options.tree_threshold), text
        assert example.lengths == [len(word_spans(text))] and example.gold == 1
        assert all(0.4 < p.score <= 1.0 and p.segments == (0, 0) for p in example.pairs)
    assert sum(len(m.pairs) for m in mined) > 0


def mined(predicted: int, *pairs: tuple[str, str, int, int, float], gold: int | None = None, length: int = 10) -> MinedExample:
    return MinedExample(
        predicted=predicted, gold=gold, lengths=[length],
        pairs=[TreePair(words=(a, b), segments=(0, 0), indices=(i, j), score=s, layer=1) for a, b, i, j, s in pairs],
    )  # fmt: skip


def test_support_counts_distinct_examples_and_the_score_rewards_mass_beyond_the_labels_share() -> None:
    examples = [
        mined(0, ("so", "what", 2, 3, 0.9), ("so", "what", 5, 6, 0.5), gold=0),  # twice in one example: counted once, at 0.9
        mined(0, ("so", "what", 0, 2, 0.7), ("the", "plot", 1, 3, 0.6), gold=1),
        mined(1, ("so", "what", 4, 5, 0.5), ("the", "plot", 0, 1, 0.8)),
        mined(1, ("the", "plot", 2, 4, 0.5), ("a", "bad1", 0, 1, 1.0)),
        mined(1, ("the", "plot", 2, 3, 0.5), ("a", "bad1", 0, 1, 1.0)),
        mined(1, ("great", "fun", 0, 1, 1.0)),
    ]
    patterns, pairs = aggregate_patterns(examples, ["negative", "positive"], min_support=2, exclude={"great"})
    assert pairs == 4
    assert [p.words for p in patterns] == [("so", "what"), ("the", "plot")]  # digit and excluded word left out
    so_what, the_plot = patterns
    # so what: in 3 examples (mass 0.9 + 0.7 predicted 0, 0.5 predicted 1); the labels' shares are 2/6 and 4/6
    assert so_what.support == 3 and so_what.predicted == {0: 2, 1: 1} and so_what.gold_labels == {0: 1, 1: 1}
    assert so_what.mass == pytest.approx(2.1) and so_what.label == 0 and so_what.score == pytest.approx(1.6 - 2 / 6 * 2.1)
    delta = math.log((2 + 1) / (1 + 1)) - math.log(2 / 4)
    assert so_what.log_odds == pytest.approx(delta) and so_what.z == pytest.approx(delta / math.sqrt(1 / 3 + 1 / 2))
    assert so_what.gap == 1 and so_what.positions == pytest.approx(((0.2 + 0.0 + 0.4) / 3, (0.3 + 0.2 + 0.5) / 3))
    assert (so_what.example, so_what.layer, so_what.text) == (0, 1, "so what")
    # the plot: 3 examples predicted 1 (0.8 + 0.5 + 0.5), 1 predicted 0 (0.6); gaps 2, 1, 2, 1: the most common, the smaller on ties
    assert the_plot.label == 1 and the_plot.support == 4 and the_plot.score == pytest.approx(1.8 - 4 / 6 * 2.4)
    assert the_plot.gap == 1 and the_plot.text == "the plot"
    stricter, _ = aggregate_patterns(examples, ["negative", "positive"], min_support=4)
    assert [p.words for p in stricter] == [("the", "plot")]


def test_sentences_are_the_examples_no_other_contains() -> None:
    toy = Dataset("toy", "train", "toy", [Example(t, None, 0) for t in ["the film", "a fine film", "fine", "the film is a fine film", "film is", "fine"]])
    assert [e.text for e in toy.sentences().examples] == ["the film is a fine film"]
    train = load_dataset("sst2", split="train")
    sentences = train.sentences()
    kept = [f" {' '.join(e.text.split())} " for e in sentences.examples]
    assert 6000 < len(kept) < 7500 and len(set(kept)) == len(kept)
    for phrase in [f" {' '.join(e.text.split())} " for e in train.examples[:300]]:
        assert any(phrase in sentence for sentence in kept)  # every phrase lies in a kept sentence (brute force)
    for sentence in kept[:60]:
        assert sum(sentence in other for other in kept) == 1  # no kept sentence lies in another


def test_rte_pairs_keep_their_segments(rte) -> None:
    dataset = load_dataset("rte", split="train")
    triggers = mine_triggers(rte, dataset, TriggerMiningOptions(examples=8, batch_size=4, min_support=1))
    used = dataset.sentences().head(8).examples
    assert triggers.data.count == 8 and triggers.patterns and sum(triggers.predicted.values()) == 8
    assert any(p.gap is None for p in triggers.patterns)  # pairs across premise and hypothesis
    for p in triggers.patterns:
        texts = [(e.text, e.text_pair) for e in used]
        assert any(all(w in t[s].lower() for w, s in zip(p.words, p.segments)) for t in texts)
        assert (p.gap is None) == (p.segments[0] != p.segments[1])


def test_patterns_round_trip_and_a_bad_file_is_refused(sst2, tmp_path: Path) -> None:
    triggers = mine_triggers(sst2, load_dataset("sst2", split="train"), TriggerMiningOptions(examples=16, min_support=1))
    path = tmp_path / "patterns.json"
    path.write_text(triggers.model_dump_json())
    assert load_triggers(path) == triggers  # exact: JSON keeps every float's shortest repr, which reads back to the bit
    assert all(p.support >= 1 for p in triggers.patterns) and triggers.pairs >= len(triggers.patterns)
    path.write_text('{"patterns": 3}')
    with pytest.raises(InputError, match="not a patterns file"):
        load_triggers(path)
    with pytest.raises(InputError, match="not found"):
        load_triggers(tmp_path / "missing.json")


MINE = ["mine", "--model", str(SST2), "--data", "sst2", "--examples", "48", "--batch-size", "4", "--min-support", "2"]


def run_mine(out: Path, *extra: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "auditor", *MINE, "--out", str(out), *extra], capture_output=True, text=True, env=environment, timeout=900)


def batch_keys(checkpoint: Path) -> list[str]:
    return [json.loads(line)["key"] for line in checkpoint.read_bytes().splitlines()[1:]]


@pytest.mark.slow  # mining in subprocesses
@pytest.mark.numerics
@pytest.mark.parametrize("ray", [[], ["--ray", "local", "--workers", "2"]], ids=["local", "ray"])
def test_a_killed_mining_run_resumes_with_nothing_lost_or_counted_twice(tmp_path: Path, ray: list[str]) -> None:
    reference = tmp_path / "reference.json"
    done = run_mine(reference)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "killed.json"
    checkpoint = out.with_name("killed.json.mining.jsonl")
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    kill_after_records([sys.executable, "-m", "auditor", *MINE, "--out", str(out), *ray], environment, checkpoint, 3)  # three batches
    assert not out.exists()
    before = checkpoint.read_bytes()
    finished = batch_keys(checkpoint)
    assert 3 <= len(finished) < 12

    resumed = run_mine(out, *ray)
    assert resumed.returncode == 0, resumed.stderr
    keys = batch_keys(checkpoint)
    assert checkpoint.read_bytes().startswith(before[: before.rfind(b"\n") + 1])  # finished batches were kept, not redone
    assert sorted(keys) == sorted(f"batch:{i}" for i in range(12))  # every batch once
    expected, found = (TriggerSet.model_validate_json(p.read_bytes()).model_dump(exclude={"seconds"}) for p in (reference, out))
    assert differences(found, expected, MINED_ULPS) == [] and expected["patterns"]  # mined in other processes
    again = run_mine(out, *ray)  # a finished run's checkpoint answers at once, with the same patterns
    assert again.returncode == 0 and batch_keys(checkpoint) == keys


@pytest.mark.slow  # mining in subprocesses
def test_mine_refuses_a_folder_and_a_checkpoint_of_other_settings(tmp_path: Path) -> None:
    folder = run_mine(tmp_path)
    assert folder.returncode == 2 and folder.stderr.splitlines()[-1] == f"error: --out {tmp_path} is a folder: give the patterns file to write"
    out = tmp_path / "p.json"
    first = run_mine(out, "--examples", "8")  # overrides MINE's 48: argument parsers keep the last
    assert first.returncode == 0, first.stderr
    other = run_mine(out, "--examples", "8", "--tree-threshold", "0.5")
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert other.stderr.splitlines()[-1].endswith("holds results of a different run (other model, data or settings); use another --out or delete the checkpoint")
    refiltered = run_mine(out, "--examples", "8", "--min-support", "1")  # only filters: the checkpoint serves it
    assert refiltered.returncode == 0 and len(TriggerSet.model_validate_json(out.read_bytes()).patterns) >= 1
