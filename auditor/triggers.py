"""Token-pair patterns mined from attribution trees (Hao et al., AAAI 2021, "Adversarial Attack").

For every training example, the attribution tree (``auditor.tree``, threshold τ) is built from the
head-summed attribution matrices of every layer (target: the predicted label). Each tree edge that joins
two different words (neither a special token) gives the example a word pair, in text order. Over the mined
examples, a pair's **support** is the number of distinct examples whose tree holds it; pairs with support
under ``min_support``, or with a word that carries a label by itself (``exclude``), a digit or nothing
TextAttack would read as one word, are left out. Each remaining pair becomes a ``TriggerPattern`` of the
label whose examples carry the most of its attribution mass beyond their share (``score``), with the
association of the pair with the predicted label measured by a smoothed log-odds ratio.

Mining is the costly part: ``mine_triggers`` mines batches (here, or on Ray through a ``MiningExecutor``)
and puts every finished batch's ``MinedExample`` records into a ``Checkpoint`` before the next, so a killed
run resumes where it stopped; the patterns are aggregated afterwards from the checkpoint, in batch order,
so nothing is lost or counted twice and the result does not depend on where or in which order batches ran.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from auditor import __version__
from auditor.attribution import ExampleAttribution, SelfAttentionAttribution
from auditor.checkpoint import Checkpoint
from auditor.data import Dataset, Example
from auditor.errors import InputError
from auditor.models import Classifier
from auditor.schemas import MinedExample, PatternRanking, TreePair, TriggerMiningOptions, TriggerPattern, TriggerSet
from auditor.statistics import log_odds
from auditor.tree import attribution_tree

WORD_EDGE_CHARACTERS = "'-_*@"
HOMOGLYPHS = "˗৭Ȣ𝟕бƼᏎƷᒿlO`ɑЬϲԁе𝚏ɡհіϳ𝒌ⅼｍոорԛⲅѕ𝚝սѵԝ×уᴢ"  # characters textattack keeps inside words
WORD_PATTERN = re.compile(f"[\\w{re.escape(HOMOGLYPHS)}'\\-_*@]+")


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the words TextAttack sees in ``text`` (its ``words_from_text`` rule: runs of word
    characters, homoglyphs, apostrophes, hyphens, ``_*@``, trimmed of ``'-_*@`` at the ends)."""
    spans = []
    for match in WORD_PATTERN.finditer(text):
        word = match.group()
        start = match.start() + len(word) - len(word.lstrip(WORD_EDGE_CHARACTERS))
        end = match.end() - (len(word) - len(word.rstrip(WORD_EDGE_CHARACTERS)))
        if end > start:
            spans.append((start, end))
    return spans


def is_single_word(word: str) -> bool:
    """TextAttack reads exactly this one word in ``word``, so it can be inserted as one (punctuation alone
    would be no word and break its index bookkeeping)."""
    return word_spans(word) == [(0, len(word))]


def token_words(encoding, index: int, texts: Sequence[str | None]) -> list[tuple[int, int, str] | None]:
    """For each token of example ``index`` of ``encoding``: (segment, word index, lower-cased word) of the
    TextAttack word it lies in, or None for special tokens and characters outside every word."""
    spans = [word_spans(t) if t is not None else [] for t in texts]
    ends = [[end for _, end in s] for s in spans]
    located: list[tuple[int, int, str] | None] = []
    for position, segment in enumerate(encoding.sequence_ids(index)):
        characters = encoding.token_to_chars(index, position) if segment is not None else None
        if characters is None:
            located.append(None)
            continue
        word = bisect.bisect_right(ends[segment], characters.start)
        inside = word < len(spans[segment]) and spans[segment][word][0] <= characters.start
        located.append((segment, word, texts[segment][slice(*spans[segment][word])].lower()) if inside else None)
    return located


def tree_pairs(attribution: ExampleAttribution, words: list[tuple[int, int, str] | None], tree_threshold: float) -> list[TreePair]:
    """The word pairs joined by the edges of the example's attribution tree (head-summed matrices of every
    attributed layer, threshold τ), each pair once with its largest edge, in the order first found."""
    matrices = [layer.sum(0).double().cpu().numpy() for layer in attribution.attributions]
    tokens = [str(i) for i in range(attribution.length)]
    tree = attribution_tree(matrices, tokens, tree_threshold, attribution.layers)
    found: dict[tuple, TreePair] = {}
    for edge in tree.edges:
        ends = [words[int(node.split(":")[1])] for node in (edge.source, edge.target)]
        if ends[0] is None or ends[1] is None or ends[0][:2] == ends[1][:2]:
            continue
        first, second = sorted(ends)
        pair = TreePair(
            words=(first[2], second[2]),
            segments=(first[0], second[0]),
            indices=(first[1], second[1]),
            score=edge.score,
            layer=edge.layer,
        )
        key = (pair.segments, pair.indices)
        if key not in found or found[key].score < pair.score:
            found[key] = pair
    return list(found.values())


class PatternMiner:
    """The ``MinedExample`` of every example of a batch (attribution target: the predicted label). A batch's
    result depends on its examples alone, so batches can be mined anywhere and aggregated in order."""

    def __init__(self, classifier: Classifier, options: TriggerMiningOptions) -> None:
        self.classifier = classifier
        self.options = options
        self.attribution = SelfAttentionAttribution(classifier.model)

    def __call__(self, batch: list[Example]) -> list[MinedExample]:
        pairs = [e.text_pair for e in batch] if batch[0].text_pair is not None else None
        encoding = self.classifier.encode([e.text for e in batch], pairs, truncate=True)
        results = self.attribution.attribute(
            encoding["input_ids"], encoding["attention_mask"], encoding.get("token_type_ids"), n_steps=self.options.steps, method=self.options.method
        )
        mined = []
        for index, (example, result) in enumerate(zip(batch, results)):
            texts = [example.text, example.text_pair]
            mined.append(
                MinedExample(
                    predicted=result.predicted,
                    gold=example.label,
                    lengths=[len(word_spans(t)) for t in texts if t is not None],
                    pairs=tree_pairs(result, token_words(encoding, index, texts), self.options.tree_threshold),
                )
            )
        return mined


class MiningExecutor(Protocol):
    """Mines batches elsewhere (e.g. ``auditor.distributed.RayMiningExecutor``)."""

    def mine(self, batches: dict[int, list[Example]], options: TriggerMiningOptions) -> Iterator[tuple[int, list[MinedExample]]]:
        """(batch index, ``PatternMiner(classifier, options)(batch)``) for every batch, as each finishes."""


def aggregate_patterns(
    mined: Sequence[MinedExample],
    labels: Sequence[str],
    min_support: int,
    exclude: set[str] | None = None,
    ranking: PatternRanking = "excess-mass",
) -> tuple[list[TriggerPattern], int]:
    """The patterns of the mined examples (module docstring; see ``TriggerPattern`` for every statistic),
    sorted by label then best first, and the number of distinct pairs before filtering.

    ``ranking="frequency"`` is the paper's rule instead: a pair is a pattern of every class whose examples'
    trees hold it (the class: the gold label, the predicted one for an unlabelled example), its support and
    ``score`` the number of that class's examples whose tree holds it (its frequency among the trees'
    edges), every other statistic computed over those examples."""
    excluded = exclude or set()
    predicted = Counter(m.predicted for m in mined)
    share = {label: predicted[label] / max(1, len(mined)) for label in range(len(labels))}
    groups: dict[tuple, list[tuple[int, MinedExample, TreePair]]] = {}
    for number, example in enumerate(mined):
        best: dict[tuple, TreePair] = {}
        for pair in example.pairs:
            key = (pair.words, pair.segments)
            if key not in best or best[key].score < pair.score:
                best[key] = pair
        for key, pair in best.items():
            groups.setdefault(key, []).append((number, example, pair))
    patterns = []
    for (words, segments), occurrences in groups.items():
        if any(w in excluded or any(c.isdigit() for c in w) or not is_single_word(w) for w in words):
            continue
        if ranking == "frequency":
            by_class: dict[int, list] = {}
            for occurrence in occurrences:
                example = occurrence[1]
                by_class.setdefault(example.gold if example.gold is not None else example.predicted, []).append(occurrence)
            chosen = [(label, found, float(len(found))) for label, found in sorted(by_class.items())]
        else:
            mass = {label: 0.0 for label in range(len(labels))}
            for _, example, pair in occurrences:
                mass[example.predicted] += pair.score
            total = sum(mass.values())
            excess = {label: mass[label] - share[label] * total for label in mass}
            label = max(excess, key=lambda c: (excess[c], -c))
            chosen = [(label, occurrences, excess[label])]
        for label, found, score in chosen:
            if len(found) >= min_support:
                patterns.append(_pattern(words, segments, found, label, labels, score, predicted[label], len(mined)))
    patterns.sort(key=lambda p: (p.label, -p.score, -p.support, p.words))
    return patterns, len(groups)


def _pattern(
    words: tuple[str, str],
    segments: tuple,
    occurrences: list[tuple[int, MinedExample, TreePair]],
    label: int,
    labels: Sequence[str],
    score: float,
    label_total: int,
    total: int,
) -> TriggerPattern:
    """The ``TriggerPattern`` of a pair of ``label`` over the examples whose trees hold it (``occurrences``)."""
    votes = Counter(example.predicted for _, example, _ in occurrences)
    delta, z = log_odds(votes[label], len(occurrences) - votes[label], label_total, total)
    gaps = Counter(pair.indices[1] - pair.indices[0] for _, _, pair in occurrences if segments[0] == segments[1])
    first_number, _, first_pair = occurrences[0]
    return TriggerPattern(
        words=words,
        segments=segments,
        gap=max(gaps, key=lambda g: (gaps[g], -g)) if gaps else None,
        positions=tuple(
            sum(pair.indices[k] / max(1, example.lengths[segments[k]]) for _, example, pair in occurrences) / len(occurrences)
            for k in range(2)
        ),
        label=label,
        label_name=labels[label],
        support=len(occurrences),
        predicted=dict(sorted(votes.items())),
        gold_labels=dict(sorted(Counter(e.gold for _, e, _ in occurrences if e.gold is not None).items())),
        mass=sum(pair.score for _, _, pair in occurrences),
        score=score,
        log_odds=delta,
        z=z,
        example=first_number,
        layer=first_pair.layer,
    )


def mining_examples(dataset: Dataset, options: TriggerMiningOptions) -> Dataset:
    """The examples ``options`` mines: the split's sentences (or all its examples), the first ``examples``."""
    units = dataset.sentences() if options.units == "sentences" else dataset
    return units.head(options.examples)


def mining_identity(classifier: Classifier, used: Dataset, options: TriggerMiningOptions) -> dict:
    """What a mining checkpoint's records belong to (``min_support`` and ``ranking`` are left out: they only
    filter and rank the aggregated patterns)."""
    return {
        "mining": __version__,
        "model": classifier.identity.model_dump(mode="json"),
        "data": used.identity().model_dump(mode="json"),
        "options": options.model_dump(mode="json", exclude={"min_support", "ranking"}),
    }


def patterns_identity(triggers: TriggerSet) -> str:
    """A digest of what a pattern set is: where it was mined (the model's identity, a digest of its weight files;
    the examples, by content; the options) and which patterns it holds (words, segments, label), never the
    floats computed from the trees (scores, masses, positions, log-odds): mined again on another CPU, with
    another kernel path, they may differ in the last bit, and an audit resumed with them is still the same run."""
    material = {
        "model": triggers.model.model_dump(mode="json"),
        "data": triggers.data.model_dump(mode="json"),
        "options": triggers.options.model_dump(mode="json", exclude={"ranking"} if triggers.options.ranking == "excess-mass" else None),
        "patterns": sorted([list(p.words), list(p.segments), p.label] for p in triggers.patterns),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


def mine_triggers(
    classifier: Classifier,
    dataset: Dataset,
    options: TriggerMiningOptions | None = None,
    checkpoint: Path | None = None,
    executor: MiningExecutor | None = None,
    exclude: set[str] | None = None,
    progress: Callable[[int], object] | None = None,
) -> TriggerSet:
    """Mine the token-pair patterns of ``dataset`` (``mining_examples``) and aggregate them.

    Every finished batch goes to the ``checkpoint`` file first when one is given (a run killed at any moment
    resumes from it: finished batches are read back, the rest mined); the batches are mined here or by
    ``executor``, and the result is the same. ``exclude``: lower-cased words that carry a label by themselves
    (``auditor.validity``); patterns with one are left out. ``progress`` is called with the number of
    examples finished (those resumed first)."""
    options = options or TriggerMiningOptions()
    started = time.perf_counter()
    used = mining_examples(dataset, options)
    if not used.examples:
        raise InputError(f"{used.name} {used.split} has no example to mine")
    batches = [used.examples[start : start + options.batch_size] for start in range(0, len(used.examples), options.batch_size)]
    records: Checkpoint | dict = Checkpoint(checkpoint, mining_identity(classifier, used, options)) if checkpoint else {}
    put = records.put if isinstance(records, Checkpoint) else records.__setitem__

    def keep(index: int, result: list[MinedExample]) -> None:
        put(f"batch:{index}", [m.model_dump(mode="json") for m in result])
        if progress is not None:
            progress(len(batches[index]))

    todo = {i: batch for i, batch in enumerate(batches) if f"batch:{i}" not in records}
    if progress is not None and len(todo) < len(batches):
        progress(sum(len(b) for i, b in enumerate(batches) if i not in todo))
    if executor is None:
        miner = PatternMiner(classifier, options)
        for index, batch in todo.items():
            keep(index, miner(batch))
    else:
        for index, result in executor.mine(todo, options):
            keep(index, result)
    mined = [MinedExample.model_validate(m) for i in range(len(batches)) for m in records[f"batch:{i}"]]
    patterns, pairs = aggregate_patterns(mined, classifier.labels, options.min_support, exclude, options.ranking)
    return TriggerSet(
        model=classifier.identity,
        data=used.identity(),
        options=options,
        predicted=dict(sorted(Counter(m.predicted for m in mined).items())),
        pairs=pairs,
        patterns=patterns,
        auditor_version=__version__,
        seconds=time.perf_counter() - started,
    )


def load_triggers(path: Path) -> TriggerSet:
    """Read a patterns file written by ``auditor mine``; InputError when missing or not a patterns file."""
    if not path.is_file():
        raise InputError(f"patterns file not found: {path}")
    try:
        return TriggerSet.model_validate_json(path.read_bytes())
    except ValidationError as error:
        raise InputError(f"{path} is not a patterns file written by 'auditor mine': {error.errors()[0]['msg']}") from None
