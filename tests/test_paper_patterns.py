"""The paper's adversarial-pattern protocol on a model whose answer is known: a 2-layer BERT trained here, in
seconds, on sentences whose label is whether the pair "zebra quartz" stands in them side by side (the two
words alone, or apart, say nothing). The protocol must find the planted pair among the positive class's
patterns, and inserting it into the negative examples must flip more of them than every control."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

from auditor.data import Example
from auditor.models import as_classifier
from auditor.paper_patterns import FrequencyMatcher, Probe, class_patterns, paper_attack, probes, word_attribution
from auditor.schemas import MinedExample, TreePair, TriggerMiningOptions
from auditor.triggers import PatternMiner, aggregate_patterns
from auditor.victims import LocalVictim

TRAIN_PER_CLASS = 200
FILLERS = "the cat sat on a mat while dog ran to park near house with blue door and old tree by river".split()
PLANTED = ("zebra", "quartz")


def sentence(rng: random.Random, label: int) -> str:
    """Eight to twelve filler words; positive: the planted pair side by side, in its order, somewhere; negative:
    nothing, one of its words, the two side by side in the other order, or the two at least two words apart.
    (Order makes a word attend to its neighbour: a sum of what [CLS] reads from both words cannot tell it.)"""
    words = [rng.choice(FILLERS) for _ in range(rng.randint(8, 12))]
    if label == 1:
        place = rng.randint(0, len(words))
        words[place:place] = list(PLANTED)
        return " ".join(words)
    kind = rng.randrange(5)
    if kind in (1, 2):
        words.insert(rng.randint(0, len(words)), PLANTED[kind - 1])
    if kind == 3:
        place = rng.randint(0, len(words))
        words[place:place] = list(reversed(PLANTED))
    if kind == 4:
        first = rng.randint(0, len(words) - 3)
        words.insert(first, PLANTED[0])
        words.insert(rng.randint(first + 3, len(words)), PLANTED[1])
    return " ".join(words)


def examples(seed: int, count: int) -> list[Example]:
    rng = random.Random(seed)
    return [Example(sentence(rng, label), label=label) for label in (0, 1) for _ in range(count)]


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory):
    """The tiny model (its vocabulary: the filler words and the pair), trained on one thread until it gets 99 %
    of its training set right (about 30 s on a loaded core)."""
    vocabulary = tmp_path_factory.mktemp("planted") / "vocab.txt"
    vocabulary.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted({*FILLERS, *PLANTED})]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocabulary))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64, num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1},
        attn_implementation="eager",
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains fastest on one thread; more only wait on each other
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    train = examples(1, TRAIN_PER_CLASS)
    encoded = tokenizer([e.text for e in train], padding=True, return_tensors="pt")
    labels = torch.tensor([e.label for e in train])
    optimiser = torch.optim.AdamW(model.parameters(), lr=5e-3)
    try:
        for _ in range(120):
            model.train()
            for batch in torch.randperm(len(train)).split(32):
                loss = model(input_ids=encoded["input_ids"][batch], attention_mask=encoded["attention_mask"][batch], labels=labels[batch]).loss
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            model.eval()
            with torch.no_grad():
                accuracy = (model(**encoded).logits.argmax(1) == labels).float().mean().item()
            if accuracy >= 0.99:
                break
        yield as_classifier(model, tokenizer, "planted-pair", "0" * 16, device="cpu"), train
    finally:
        torch.set_num_threads(threads)


def test_the_planted_pair_is_found_and_drops_accuracy_more_than_its_controls(planted) -> None:
    classifier, train = planted
    victim = LocalVictim(classifier)

    def predict(texts) -> list[int]:
        return victim([t.tokenizer_input for t in texts]).argmax(1).tolist()

    mined_from = train[:60] + train[TRAIN_PER_CLASS : TRAIN_PER_CLASS + 60]
    mined = PatternMiner(classifier, TriggerMiningOptions(units="all", batch_size=30))(mined_from)
    patterns, _ = aggregate_patterns(mined, classifier.labels, 2, ranking="frequency")
    [top] = class_patterns(patterns, 1, 1)
    assert top.words == PLANTED and top.gap == 1
    # its frequency is the number of positive examples whose tree joins the two words
    assert top.support == sum(any(p.words == PLANTED for p in m.pairs) for m in mined if m.gold == 1)

    dev = examples(2, 150)
    matcher = FrequencyMatcher([e.text for e in train])
    rows = paper_attack("planted", classifier.labels, patterns, mined, dev, predict, matcher, set(), k=1)
    attacked = [r for r in rows if r.direction == "negative -> positive"]
    by_kind = {r.kind: r for r in attacked}
    assert [r.kind for r in attacked] == ["pattern", "random-pair", "apart", "single-word"]
    assert by_kind["pattern"].pattern == "zebra quartz" and by_kind["apart"].pattern == "zebra … quartz"
    assert set(by_kind["random-pair"].pattern.split()).isdisjoint(PLANTED)
    assert by_kind["pattern"].examples > 100  # the negatives the model gets right
    # the pair flips (nearly) every negative; each control leaves most of them right, its interval above the pair's
    assert by_kind["pattern"].accuracy_after < 0.1
    for control in ("random-pair", "apart", "single-word"):
        assert by_kind[control].after_low > by_kind["pattern"].after_high, control
    # a single-sentence insertion of words without digits is what the reader rule admits
    assert all(r.reader_valid == r.examples for r in rows)
    assert not any(r.label_word for r in rows)


def test_controls_are_frequency_matched_apart_and_the_more_attributed_word() -> None:
    letters = [" ".join(chr(ord("a") + i) * 2 for i in range(n)) for n in range(1, 27)]  # "aa" in 26 texts … "zz" in 1
    matcher = FrequencyMatcher(letters, window=2)
    assert matcher.vocabulary[:3] == ["aa", "bb", "cc"]
    mined = [
        MinedExample(predicted=1, gold=1, lengths=[10], pairs=[TreePair(words=("cc", "dd"), segments=(0, 0), indices=(2, 3), score=0.9, layer=0)]),
        MinedExample(predicted=1, gold=1, lengths=[10], pairs=[TreePair(words=("dd", "ee"), segments=(0, 0), indices=(3, 4), score=0.5, layer=1)]),
        MinedExample(predicted=0, gold=0, lengths=[10], pairs=[TreePair(words=("cc", "ee"), segments=(0, 0), indices=(2, 4), score=0.8, layer=1)]),
    ]
    attribution = word_attribution(mined, 1)
    assert attribution == Counter({"dd": pytest.approx(1.4), "cc": pytest.approx(0.9), "ee": pytest.approx(0.5)})
    patterns, _ = aggregate_patterns(mined * 2, ["a", "b"], 2, ranking="frequency")
    pattern = next(p for p in patterns if p.words == ("cc", "dd") and p.label == 1)
    assert pattern.support == 2 and pattern.score == 2
    pattern_probe, random_pair, apart, single = probes(pattern, attribution, matcher, seed=0)
    assert single == Probe("single-word", ("dd",), (pattern.positions[1],))
    assert apart == Probe("apart", ("cc", "dd"), (0.0, 1.0))
    # each random word within the window of ranks around its pattern word, never a pattern word
    for word, drawn in zip(pattern.words, random_pair.words):
        assert abs(matcher.rank[drawn] - matcher.rank[word]) <= 2 and drawn not in pattern.words
    assert random_pair.positions == pattern_probe.positions and random_pair.gap == pattern_probe.gap == 1
    assert probes(pattern, attribution, matcher, seed=0)[1] == random_pair  # seeded

    from auditor.attack import attacked_text

    text = attacked_text(Example("one two three four five six seven eight nine ten"))
    assert Probe("pattern", ("x", "y"), (0.3, 0.9), gap=1).apply(text).text == "one two three x y four five six seven eight nine ten"
    assert Probe("pattern", ("x", "y"), (0.3, 0.9), gap=3).apply(text).text == "one two three x four five y six seven eight nine ten"
    assert apart.apply(text).text == "cc one two three four five six seven eight nine ten dd"
