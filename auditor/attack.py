"""TextAttack components for attribution-guided attacks: insert mined token pairs (or, as a baseline, random
words) into an ``AttackedText``, cap the words edited, and assemble attacks with a query budget: the
attribution-guided attack (``attribution_attack``: words visited in attribution order, edited by any mix
of DeepWordBug's character edits, word deletion and pattern insertion), random insertion and DeepWordBug.
Every attack of an audit takes the same extra constraints (``auditor.validity`` and the word cap).

Every component subclasses TextAttack's own interfaces, so it combines with any of its constraints and
search methods that accept insertions (``GreedySearch``, ``BeamSearch``, ``AttributionGreedySearch``).
"""

from __future__ import annotations

import difflib
import random
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import auditor.textattack_env  # noqa: F401  (NLTK_DATA before textattack)
from textattack import Attack
from textattack.attack_recipes import DeepWordBugGao2018
from textattack.constraints import Constraint
from textattack.constraints.pre_transformation import RepeatModification, StopwordModification
from textattack.goal_functions import UntargetedClassification
from textattack.models.wrappers import ModelWrapper
from textattack.search_methods import BeamSearch
from textattack.shared import AttackedText
from textattack.transformations import CompositeTransformation, Transformation, WordDeletion

from auditor.data import Example
from auditor.edits import RandomCharacterEdit, Tokenizer, TokenizerCharacterEdit, character_edits, word_edit_distance
from auditor.errors import InputError
from auditor.schemas import TriggerPattern
from auditor.triggers import is_single_word
from auditor.search import AttributionGreedySearch, LeaveOneOutGreedySearch
from auditor.victims import Victim

Positions = Literal["pattern", "all"]
Ranking = Literal["attribution", "leave-one-out"]
TRANSFORMATIONS: tuple[str, ...] = ("tokenedit", "charedit", "typo", "delete", "pattern")


def attacked_text(example: Example) -> AttackedText:
    if example.text_pair is None:
        return AttackedText(OrderedDict(text=example.text))
    return AttackedText(OrderedDict(premise=example.text, hypothesis=example.text_pair))


def inserted_words(original: Sequence[str], perturbed: Sequence[str]) -> list[str]:
    """Words of ``perturbed`` that an alignment with ``original`` marks as inserted or replaced."""
    matcher = difflib.SequenceMatcher(a=list(original), b=list(perturbed), autojunk=False)
    return [w for tag, _, _, j1, j2 in matcher.get_opcodes() if tag in ("insert", "replace") for w in perturbed[j1:j2]]


@dataclass(frozen=True)
class Insertion:
    """Insert ``word`` before word ``position`` of input column ``segment`` (at its end when ``position``
    equals the column's word count)."""

    segment: int
    position: int
    word: str


def insert_words(text: AttackedText, insertions: Iterable[Insertion]) -> AttackedText:
    """A new ``AttackedText`` with every insertion applied at once (positions refer to ``text``)."""
    words = list(text.words)
    starts = [0]
    for column in text.words_per_input:
        starts.append(starts[-1] + len(column))
    before: dict[int, list[str]] = {}
    after: dict[int, list[str]] = {}
    for insertion in insertions:
        start, end = starts[insertion.segment], starts[insertion.segment + 1]
        if insertion.position < end - start:
            before.setdefault(start + insertion.position, []).append(insertion.word)
        else:
            after.setdefault(end - 1, []).append(insertion.word)
    for index in set(before) | set(after):
        words[index] = " ".join([*before.get(index, []), words[index], *after.get(index, [])])
    return text.generate_new_attacked_text(words)


def _column_ranges(text: AttackedText) -> list[range]:
    ranges, start = [], 0
    for column in text.words_per_input:
        ranges.append(range(start, start + len(column)))
        start += len(column)
    return ranges


class PatternInsertion(Transformation):
    """Insert each mined token pair (``TriggerPattern``), its two words in their mined order.

    The pair is placed at an anchor word of its segment that the pre-transformation constraints let us
    modify: the first word goes right before the anchor and the second ``gap`` words after the first, so
    the pair keeps its mined gap around the anchor (``gap`` 1: both before it). In the attribution-guided
    search the only word offered is the ranked word, so the pair goes there. Among several words,
    ``positions="pattern"`` anchors at the one nearest the pair's mined relative position (one candidate per
    pattern); ``"all"`` anchors at every word not yet modified of a text that holds an allowed word (in the
    search: anywhere in the ranked word's text). A pair across the two texts is anchored by whichever of its words
    lies in a text with an allowed word (the first such; every one for ``"all"``), its other word going to
    its mined relative position in the other text. A pattern whose segment the text lacks, or whose words
    TextAttack would not read as single words, yields no candidate.
    """

    def __init__(self, patterns: Sequence[TriggerPattern], positions: Positions = "pattern") -> None:
        self.patterns = list(patterns)
        self.positions = positions

    def _get_transformations(self, current_text: AttackedText, indices_to_modify: set[int]) -> list[AttackedText]:
        columns = _column_ranges(current_text)
        transformed = []
        for pattern in self.patterns:
            if any(s >= len(columns) for s in pattern.segments) or not all(is_single_word(w) for w in pattern.words):
                continue
            for anchored in (0, 1) if pattern.gap is None else (0,):
                segment = pattern.segments[anchored]
                column = columns[segment]
                allowed = [p for p in range(len(column)) if column[p] in indices_to_modify]
                if not allowed:
                    continue
                target = round(pattern.positions[anchored] * len(column))
                if self.positions == "all":
                    modified = current_text.attack_attrs.get("modified_indices", set())
                    anchors = [p for p in range(len(column)) if column[p] not in modified]
                else:
                    anchors = [min(allowed, key=lambda p: (abs(p - target), p))]
                for anchor in anchors:
                    transformed.append(insert_words(current_text, self._insertions(pattern, anchored, anchor, columns)))
                if self.positions == "pattern":
                    break
        return transformed

    @staticmethod
    def _insertions(pattern: TriggerPattern, anchored: int, anchor: int, columns: list[range]) -> list[Insertion]:
        segment = pattern.segments[anchored]
        if pattern.gap is not None:
            second = min(anchor + pattern.gap - 1, len(columns[segment]))
            return [Insertion(segment, anchor, pattern.words[0]), Insertion(segment, second, pattern.words[1])]
        other = 1 - anchored
        other_segment = pattern.segments[other]
        position = round(pattern.positions[other] * len(columns[other_segment]))
        return [Insertion(segment, anchor, pattern.words[anchored]), Insertion(other_segment, position, pattern.words[other])]

    def extra_repr_keys(self) -> list[str]:
        return ["positions"]


class RandomWordInsertion(Transformation):
    """Baseline: ``candidates`` single random vocabulary words at random allowed positions.

    The draw is seeded by ``seed`` and the text itself, so the same text always gets the same candidates
    (reproducible runs, resumable audits, and TextAttack's transformation cache stays valid).
    """

    def __init__(self, vocabulary: Sequence[str], candidates: int, seed: int = 0) -> None:
        self.vocabulary = sorted({w for w in vocabulary if is_single_word(w)})
        if not self.vocabulary:
            raise ValueError("the vocabulary has no insertable word")
        self.candidates = candidates
        self.seed = seed

    def _get_transformations(self, current_text: AttackedText, indices_to_modify: set[int]) -> list[AttackedText]:
        rng = random.Random(f"{self.seed}\x00{current_text.text}")
        columns = _column_ranges(current_text)
        slots = [
            (segment, position)
            for segment, column in enumerate(columns)
            for position in range(len(column) + 1)
            if len(column) and column[min(position, len(column) - 1)] in indices_to_modify
        ]
        if not slots:
            return []
        return [
            insert_words(current_text, [Insertion(*rng.choice(slots), rng.choice(self.vocabulary))])
            for _ in range(self.candidates)
        ]

    def extra_repr_keys(self) -> list[str]:
        return ["candidates", "seed"]


class MaxInsertedWords(Constraint):
    """At most ``max_words`` word edits from the original text (word-level edit distance, so k inserted
    words count k wherever they land)."""

    def __init__(self, max_words: int) -> None:
        super().__init__(compare_against_original=True)
        self.max_words = max_words

    def _check_constraint(self, transformed_text: AttackedText, reference_text: AttackedText) -> bool:
        return word_edit_distance(reference_text.words, transformed_text.words) <= self.max_words

    def check_compatibility(self, transformation: Transformation) -> bool:
        return True

    def extra_repr_keys(self) -> list[str]:
        return ["max_words"]


class BudgetedBeamSearch(BeamSearch):
    """TextAttack's ``BeamSearch`` (``GreedySearch`` at width 1), except that it returns the initial result
    when the initial query already spent the budget: TextAttack 0.3.11 would take the argmax of no results.
    (Later steps are safe: the goal function reports the search over when a step spends the last query.)"""

    def perform_search(self, initial_result):
        if self.goal_function.num_queries >= self.goal_function.query_budget:
            return initial_result
        return super().perform_search(initial_result)


def insertion_attack(
    model_wrapper: ModelWrapper,
    transformation: Transformation,
    query_budget: int,
    max_words: int,
    beam_width: int = 1,
    constraints: Sequence[Constraint] = (),
) -> Attack:
    """Untargeted attack inserting words with ``transformation``: no word modified twice, at most
    ``max_words`` inserted, the extra ``constraints``, greedy (or beam) search, ``query_budget`` model
    queries per example."""
    goal = UntargetedClassification(model_wrapper, query_budget=query_budget)
    search = BudgetedBeamSearch(beam_width=beam_width)
    return Attack(goal, [RepeatModification(), MaxInsertedWords(max_words), *constraints], transformation, search)


def pattern_attack(
    model_wrapper: ModelWrapper,
    patterns: Sequence[TriggerPattern],
    query_budget: int,
    max_words: int,
    positions: Positions = "pattern",
    constraints: Sequence[Constraint] = (),
) -> Attack:
    return insertion_attack(model_wrapper, PatternInsertion(patterns, positions), query_budget, max_words, constraints=constraints)


def random_insertion_attack(
    model_wrapper: ModelWrapper,
    vocabulary: Sequence[str],
    candidates: int,
    query_budget: int,
    max_words: int,
    seed: int = 0,
    constraints: Sequence[Constraint] = (),
) -> Attack:
    return insertion_attack(
        model_wrapper, RandomWordInsertion(vocabulary, candidates, seed), query_budget, max_words, constraints=constraints
    )


class AnyStopwordModification(StopwordModification):
    """TextAttack's ``StopwordModification`` for every transformation: its own applies only to word swaps,
    so a word deletion or insertion next to a stopword would get through."""

    def check_compatibility(self, transformation: Transformation) -> bool:
        return True


def word_transformations(
    names: Sequence[str],
    patterns: Sequence[TriggerPattern] = (),
    tokenizer: Tokenizer | None = None,
    is_misspelling: Callable[[str, str], bool] | None = None,
    candidates: int = 4,
    positions: Positions = "pattern",
) -> Transformation:
    """The candidates tried on one ranked word: any of ``tokenedit`` (``TokenizerCharacterEdit``: the
    ``candidates`` single-character edits that most change the word's tokenization, among those
    ``is_misspelling`` accepts; needs the victim's ``tokenizer``),
    ``charedit`` (``character_edits``: DeepWordBug's four random ones), ``typo`` (``RandomCharacterEdit``:
    one), ``delete`` (drop the word) and ``pattern`` (insert each of ``patterns``, a token pair, at the word,
    or anywhere in its text for ``positions="all"``: ``PatternInsertion``)."""
    unknown = [n for n in names if n not in TRANSFORMATIONS]
    if unknown or not names:
        raise ValueError(f"transformations must be some of {', '.join(TRANSFORMATIONS)}, got {', '.join(names) or 'none'}")
    if "tokenedit" in names and tokenizer is None:
        raise InputError("the 'tokenedit' transformation needs the model's tokenizer (an endpoint serves none)")
    parts = {
        "tokenedit": lambda: TokenizerCharacterEdit(tokenizer, candidates, is_misspelling),
        "charedit": character_edits,
        "typo": RandomCharacterEdit,
        "delete": WordDeletion,
        "pattern": lambda: PatternInsertion(patterns, positions),
    }
    chosen = [parts[name]() for name in dict.fromkeys(names)]
    return chosen[0] if len(chosen) == 1 else CompositeTransformation(chosen)


def attribution_attack(
    victim: Victim,
    transformations: Sequence[str],
    query_budget: int,
    constraints: Sequence[Constraint] = (),
    patterns: Sequence[TriggerPattern] = (),
    steps: int = 3,
    max_words: int | None = None,
    sufficient_gain: float | None = None,
    is_misspelling: Callable[[str, str], bool] | None = None,
    ranking: Ranking = "attribution",
    layers: list[int] | None = None,
    sweep_words: int | None = None,
    candidates: int = 4,
    patterns_after_edits: bool = True,
    positions: Positions = "pattern",
) -> Attack:
    """Untargeted attack editing words in order of the attribution drawn from them (``AttributionGreedySearch``:
    one explanation, no query, for the ranking; ``steps``, ``layers``, ``max_words``, ``sufficient_gain`` and
    ``sweep_words`` as there), with ``word_transformations`` (``is_misspelling`` and ``candidates`` as
    there); like DeepWordBug, no word is modified twice and stopwords are left alone; plus the extra ``constraints`` (``max_words`` is the cap that
    ``MaxInsertedWords`` among them enforces). ``ranking="leave-one-out"`` ranks the words by DeepWordBug's
    leave-one-out queries instead (``LeaveOneOutGreedySearch``): the ablation of the attribution ranking.
    ``patterns_after_edits``: pattern insertions among other transformations are held back until the search
    without them fails (``AttributionGreedySearch``'s ``held_back``); otherwise they are offered beside them.
    ``positions``: where ``PatternInsertion`` places a pair."""
    search = {"attribution": AttributionGreedySearch, "leave-one-out": LeaveOneOutGreedySearch}[ranking]
    goal = UntargetedClassification(victim, query_budget=query_budget)
    mixed = "pattern" in transformations and len(set(transformations)) > 1
    held_back = is_pattern_insertion if mixed and patterns_after_edits else None
    return Attack(
        goal,
        [RepeatModification(), AnyStopwordModification(), *constraints],
        word_transformations(transformations, patterns, victim.tokenizer, is_misspelling, candidates, positions),
        search(victim, steps, max_words, sufficient_gain, layers, sweep_words, held_back, 2 if set(transformations) == {"pattern"} else 1),
    )


def is_pattern_insertion(candidate: AttackedText) -> bool:
    """The candidate came from ``PatternInsertion`` (TextAttack records each candidate's transformation)."""
    return isinstance(candidate.attack_attrs.get("last_transformation"), PatternInsertion)


def deepwordbug_attack(model_wrapper: ModelWrapper, query_budget: int, constraints: Sequence[Constraint] = ()) -> Attack:
    """TextAttack's DeepWordBug recipe (character edits, greedy word-importance search) with a query budget
    and the extra ``constraints`` added to the recipe's own."""
    recipe = DeepWordBugGao2018.build(model_wrapper)
    recipe.goal_function.query_budget = query_budget
    own = [*recipe.pre_transformation_constraints, *recipe.constraints]
    return Attack(recipe.goal_function, [*own, *constraints], recipe.transformation, recipe.search_method)
