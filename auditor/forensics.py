"""Forensics of a successful attack: which heads and pairs of words carried the flip.

For one success, the self-attention attribution to the class the model predicted on the original text
(every layer, every head; ``auditor.attribution``) is computed on the original text and on the adversarial
text. Each token belongs to a **unit**: the TextAttack word it lies in (``auditor.triggers.token_words``), or,
outside every word, itself (a special token such as [CLS] or [SEP], or punctuation), numbered by its
occurrences of the same token. Words are aligned between the two texts segment by segment
(``auditor.validity.word_alignment``): an edited word is the same unit before and after; an inserted word
has no original, a deleted word no adversarial counterpart. Tokens outside words are aligned by text and
occurrence. Per head and pair of units the attribution is summed over their tokens (``PairAttribution``),
before and after; the pairs whose attribution fell or rose most and the heads whose attribution mass changed
most make a ``Forensics``, with one sentence drawn from the largest fall. ``forensics_summary`` counts, over
the successes of an attack, the heads most often implicated and the kinds of pair most often broken
(``pair_kind``). Layers and heads are counted from 0, as in every explanation.

Pure computation: the explanations come from a callable (``Victim.explain``), the word pieces from the
victim's tokenizer.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np

from auditor.errors import InputError
from auditor.schemas import (
    AttackOutcome,
    BrokenPairKind,
    Explanation,
    ExplanationOptions,
    Forensics,
    ForensicsSummary,
    HeadChange,
    ImplicatedHead,
    WordPairChange,
)
from auditor.statistics import wilson
from auditor.triggers import token_words, word_spans
from auditor.validity import NEGATIONS, word_alignment

Unit = tuple[str, int | str, int]
"""``("word", segment, word index)`` or ``("token", token, occurrence)`` for a token outside every word."""

Explain = Callable[[str | tuple[str, str], ExplanationOptions], Explanation]
"""``Victim.explain``: the explanation of one input (a text, or a text and its pair)."""

SHOWN = 5
"""Pairs fallen, pairs risen and heads kept per success."""
IMPLICATED_PER_SUCCESS = 3
"""A head is implicated in a success when it is among the first this many of its ``head_changes``."""
BROKEN_PER_SUCCESS = 3
"""A pair is broken in a success when it is among the first this many of its ``fallen_pairs``."""
NEGATION_SCOPE = 5
"""Words after a negation that lie in its scope (NegEx's window, Chapman et al. 2001)."""
CATEGORIES = ("negation", "label word", "word", "punctuation", "special token")
"""What a unit is, in the order a pair's kind names its two units."""


def token_units(words: Sequence[tuple[int, int, str] | None], tokens: Sequence[str]) -> list[Unit]:
    """The unit of each token: its word (``token_words``' (segment, index)) or, outside every word, the token
    itself with the number of the same tokens outside words before it."""
    seen: Counter[str] = Counter()
    units: list[Unit] = []
    for word, token in zip(words, tokens, strict=True):
        if word is not None:
            units.append(("word", word[0], word[1]))
        else:
            units.append(("token", token, seen[token]))
            seen[token] += 1
    return units


@dataclass(frozen=True)
class UnitInfo:
    """One unit of the joint index: its text in the original and in the adversarial text (None where it is
    absent), its category (``CATEGORIES``), its (segment, word index) in each text (words only), and whether
    the attack changed, inserted or deleted it."""

    original: str | None
    adversarial: str | None
    category: str
    original_position: tuple[int, int] | None
    adversarial_position: tuple[int, int] | None
    edited: bool


@dataclass(frozen=True)
class JointUnits:
    """The units of both texts in one index: ``before[t]`` and ``after[t]`` are the joint index of token t of
    the original and of the adversarial text, ``units[k]`` describes unit k."""

    before: list[int]
    after: list[int]
    units: list[UnitInfo]

    def assignment(self, side: str) -> np.ndarray:
        """U: tokens × units, U[t, k] = 1 when token t of the ``side`` ("before" or "after") text lies in unit k."""
        indices = self.before if side == "before" else self.after
        matrix = np.zeros((len(indices), len(self.units)))
        matrix[np.arange(len(indices)), indices] = 1.0
        return matrix


def joint_units(
    before: tuple[Sequence[Unit], Sequence[str | None]],
    after: tuple[Sequence[Unit], Sequence[str | None]],
    label_words: Collection[str],
    special_tokens: Collection[str],
) -> JointUnits:
    """Index the units of the original (``before``) and adversarial (``after``) text together; each side is
    (the units of its tokens, its segments' texts). Words are aligned segment by segment by
    ``word_alignment``, tokens outside words by (token, occurrence)."""
    (units_b, texts_b), (units_a, texts_a) = before, after
    words_b = [[t[a:b] for a, b in word_spans(t)] if t is not None else [] for t in texts_b]
    words_a = [[t[a:b] for a, b in word_spans(t)] if t is not None else [] for t in texts_a]
    counterpart: dict[Unit, Unit | None] = {}
    for segment, (old, new) in enumerate(zip(words_b, words_a)):
        for i, j in word_alignment(old, new):
            if j is not None:
                counterpart[("word", segment, j)] = None if i is None else ("word", segment, i)
    index: dict[tuple, int] = {}  # ("before", *unit) or ("after", *unit) -> joint index
    infos: list[UnitInfo] = []

    def add(unit: tuple, original: Unit | None, adversarial: Unit | None) -> int:
        if unit not in index:
            index[unit] = len(infos)
            infos.append(describe(original, adversarial, words_b, words_a, label_words, special_tokens))
        return index[unit]

    before_index = [add(("before", *unit), unit, None) for unit in units_b]
    after_index = []
    for unit in units_a:
        original = counterpart.get(unit) if unit[0] == "word" else (unit if unit in units_b else None)
        if original is not None and ("before", *original) in index:
            k = index[("before", *original)]
            infos[k] = describe(original, unit, words_b, words_a, label_words, special_tokens)
            after_index.append(k)
        else:
            after_index.append(add(("after", *unit), None, unit))
    return JointUnits(before_index, after_index, infos)


def describe(
    original: Unit | None,
    adversarial: Unit | None,
    words_b: list[list[str]],
    words_a: list[list[str]],
    label_words: Collection[str],
    special_tokens: Collection[str],
) -> UnitInfo:
    """The ``UnitInfo`` of a unit seen as ``original`` in the original text and ``adversarial`` in the
    adversarial one (either None where absent)."""

    def text(unit: Unit | None, words: list[list[str]]) -> str | None:
        if unit is None:
            return None
        return words[unit[1]][unit[2]] if unit[0] == "word" else str(unit[1])

    def position(unit: Unit | None) -> tuple[int, int] | None:
        return (int(unit[1]), unit[2]) if unit is not None and unit[0] == "word" else None

    old, new = text(original, words_b), text(adversarial, words_a)
    shown = (old if old is not None else new) or ""
    if (original or adversarial)[0] == "token":
        category = "special token" if shown in special_tokens else "punctuation"
    else:
        category = "negation" if shown.lower() in NEGATIONS else "label word" if shown.lower() in label_words else "word"
    edited = category not in ("special token", "punctuation") and (old is None or new is None or old != new)
    return UnitInfo(old, new, category, position(original), position(adversarial), edited)


def pair_kind(a: UnitInfo, b: UnitInfo) -> str:
    """What a pair of units is (``a is b``: one unit with itself), by the categories of its units (``CATEGORIES``: a negation or intensifier of
    ``auditor.validity.NEGATIONS``, a word of the audit's label-word lexicon, another word, punctuation, a special
    token), named in that order: ``label word + special token``, ``word + word``…; ``negation + its scope`` when
    the other unit is a word at most ``NEGATION_SCOPE`` words after the negation in the same segment (of the
    original text, or of the adversarial one for an inserted word); ``within one word`` for a word with itself
    (the attribution among its pieces), ``special token with itself`` for [CLS] with itself."""
    if a is b:
        return "within one word" if a.category not in ("special token", "punctuation") else f"{a.category} with itself"
    first, second = sorted((a, b), key=lambda unit: CATEGORIES.index(unit.category))
    if first.category == "negation" and second.category in ("negation", "label word", "word"):
        for side in ("original_position", "adversarial_position"):
            here, there = getattr(first, side), getattr(second, side)
            if here is not None and there is not None and here[0] == there[0] and 1 <= there[1] - here[1] <= NEGATION_SCOPE:
                return "negation + its scope"
    return f"{first.category} + {second.category}"


class PairAttribution:
    """Attribution per head and pair of units: for the attribution matrices Attr_h(A^l) of every head (rows
    query tokens, columns key tokens) and the token-to-unit assignment U (tokens × units),

        M_r = Uᵀ Attr_r U,   P_r(a, b) = M_r[a, b] + M_r[b, a] for a ≠ b,   P_r(a, a) = M_r[a, a],

    r one (layer, head): the attribution carried between the tokens of a and those of b, both directions."""

    def __call__(self, matrices: np.ndarray, assignment: np.ndarray) -> np.ndarray:
        """``matrices``: (heads, n, n); ``assignment``: (n, units); the result: (heads, units, units), symmetric."""
        summed = assignment.T @ matrices @ assignment
        diagonal = np.einsum("rkk->rk", summed)
        symmetric = summed + summed.transpose(0, 2, 1)
        symmetric[:, np.arange(summed.shape[1]), np.arange(summed.shape[1])] = diagonal
        return symmetric


def head_matrices(explanation: Explanation) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Every head's attribution matrix of an explanation with matrices: the (layer, head) of each and the
    matrices stacked, (heads, tokens, tokens)."""
    heads: list[tuple[int, int]] = []
    arrays = []
    for layer in explanation.layers:
        if layer.matrices is None:
            raise InputError("forensics need the explanation's attribution matrices (include_matrices)")
        heads += [(layer.layer, head) for head in layer.head_ids]
        arrays.append(layer.matrices.to_numpy().astype(np.float64))
    return heads, np.concatenate(arrays)


def compare_explanations(before: Explanation, after: Explanation, units: JointUnits, target_label: str, seconds: float = 0.0) -> Forensics:
    """The ``Forensics`` of two explanations of the same target (original and adversarial text) whose tokens
    ``units`` joins."""
    heads, matrices_b = head_matrices(before)
    heads_after, matrices_a = head_matrices(after)
    if heads != heads_after or before.target != after.target:
        raise InputError("the two explanations must attribute the same target with the same heads")
    attribution = PairAttribution()
    pairs_b = attribution(matrices_b, units.assignment("before"))
    pairs_a = attribution(matrices_a, units.assignment("after"))
    first, second = np.triu_indices(len(units.units))
    before_values, after_values = pairs_b[:, first, second], pairs_a[:, first, second]
    change = after_values - before_values

    def pair(flat: int) -> WordPairChange:
        row, column = divmod(flat, len(first))
        a, b = units.units[first[column]], units.units[second[column]]
        return WordPairChange(
            layer=heads[row][0],
            head=heads[row][1],
            original=(a.original, b.original),
            adversarial=(a.adversarial, b.adversarial),
            kind=pair_kind(a, b),
            edited=a.edited or b.edited,
            before=float(before_values.flat[flat]),
            after=float(after_values.flat[flat]),
            change=float(change.flat[flat]),
        )

    order = np.argsort(change, axis=None, kind="stable")
    fallen = [pair(int(i)) for i in order[:SHOWN] if change.flat[i] < 0]
    risen = [pair(int(i)) for i in order[::-1][:SHOWN] if change.flat[i] > 0]
    mass_b, mass_a = matrices_b.sum((1, 2)), matrices_a.sum((1, 2))
    ranked = sorted(range(len(heads)), key=lambda r: (-abs(mass_a[r] - mass_b[r]), heads[r]))[:SHOWN]
    head_changes = [
        HeadChange(layer=heads[r][0], head=heads[r][1], before=float(mass_b[r]), after=float(mass_a[r]), change=float(mass_a[r] - mass_b[r]))
        for r in ranked
    ]
    return Forensics(
        target=before.target,
        target_label=target_label,
        probability_before=before.target_probability,
        probability_after=after.target_probability,
        fallen_pairs=fallen,
        risen_pairs=risen,
        head_changes=head_changes,
        sentence=forensic_sentence(fallen, target_label, before.target_probability, after.target_probability),
        seconds=seconds,
    )


def unit_text(original: str | None, adversarial: str | None) -> str:
    """One unit of a pair for a reader: ``*funny*``, ``*funny* → *fnuny*`` (edited), ``*the* (inserted)``,
    ``*the* (deleted)``."""
    if original is None:
        return f"*{adversarial}* (inserted)"
    if adversarial is None:
        return f"*{original}* (deleted)"
    return f"*{original}*" if original == adversarial else f"*{original}* → *{adversarial}*"


def pair_text(change: WordPairChange) -> str:
    """The two units of a pair for a reader (``unit_text``): ``between *not* and *funny* → *fnuny*``; a word
    with itself: ``within *funny*``; a token with itself: ``from *[CLS]* to itself``."""
    ends = [unit_text(o, a) for o, a in zip(change.original, change.adversarial)]
    if change.kind == "within one word":
        return f"within {ends[0]}"
    return f"from {ends[0]} to itself" if change.kind.endswith(" with itself") else f"between {ends[0]} and {ends[1]}"


def forensic_sentence(fallen: Sequence[WordPairChange], label: str, before: float, after: float) -> str:
    """The largest fall in one sentence: the share of its attribution to ``label`` that the flip removed (its
    values instead when the attribution turned negative, or was not positive to begin with), and the target's
    probability before and after."""
    probability = f"the probability of {label!r} went from {before:.2f} to {after:.2f}"
    if not fallen:
        return f"No head carried less attribution to {label!r} between any two words after the flip; {probability}."
    top = fallen[0]
    head = f"layer {top.layer}, head {top.head} (counted from 0)"
    if top.before > 0 and top.after >= 0:
        lost = f"removed {100 * -top.change / top.before:.0f} % of the attribution to {label!r} that {head} carried {pair_text(top)}"
    else:
        verb = "turned" if top.before > 0 else "lowered"
        lost = f"{verb} the attribution to {label!r} that {head} carried {pair_text(top)} from {top.before:+.3g} to {top.after:+.3g}"
    return f"The flip {lost} (the largest fall, {top.change:+.3g}); {probability}."


def success_forensics(
    outcome: AttackOutcome, explain: Explain, tokenizer, label_words: Collection[str]
) -> Forensics:
    """The ``Forensics`` of one successful attack: ``explain`` (``Victim.explain``) attributes the class
    predicted on the original text, with every head's matrices, on the original and the adversarial text; the
    victim's ``tokenizer`` maps their tokens to words (it must give the explanation's tokens);
    ``label_words``: the audit's label-word lexicon, for ``pair_kind``."""
    if outcome.status != "succeeded":
        raise InputError(f"forensics are for successful attacks; example {outcome.index} {outcome.status}")
    started = time.perf_counter()
    target = outcome.original_prediction
    options = ExplanationOptions(target=target, include_matrices=True, include_tree=False, top_k=0)
    sides = []
    for texts in ((outcome.text, outcome.text_pair), (outcome.perturbed_text, outcome.perturbed_text_pair)):
        explanation = explain(texts[0] if texts[1] is None else (texts[0], texts[1]), options)
        encoding = tokenizer(texts[0], texts[1], truncation=True, max_length=len(explanation.tokens))  # as the model cut it
        if tokenizer.convert_ids_to_tokens(encoding["input_ids"]) != explanation.tokens:
            raise InputError("the tokenizer's tokens differ from the explained model's: give the model's own tokenizer")
        sides.append((explanation, token_units(token_words(encoding, 0, texts), explanation.tokens), texts))
    (before, units_b, texts_b), (after, units_a, texts_a) = sides
    units = joint_units((units_b, texts_b), (units_a, texts_a), label_words, set(tokenizer.all_special_tokens))
    return compare_explanations(before, after, units, before.target_label, time.perf_counter() - started)


def forensics_summary(attack: str, explained: Sequence[Forensics | None]) -> ForensicsSummary:
    """Over one attack's successes (``explained``: their forensics, None where an endpoint refused the
    explanation, counted in ``refused``): the heads most often among the first ``IMPLICATED_PER_SUCCESS`` head changes of a success (ties: the
    larger mean |change|, then layer and head) and the kinds of pair most often among its first
    ``BROKEN_PER_SUCCESS`` fallen pairs (ties: by name), each counted once per success, with Wilson
    intervals over the successes."""
    forensics = [item for item in explained if item is not None]
    successes = len(forensics)
    changes: dict[tuple[int, int], list[float]] = defaultdict(list)
    kinds: Counter[str] = Counter()
    for item in forensics:
        for head in item.head_changes[:IMPLICATED_PER_SUCCESS]:
            changes[(head.layer, head.head)].append(head.change)
        kinds.update({pair.kind for pair in item.fallen_pairs[:BROKEN_PER_SUCCESS]})
    heads = sorted(changes, key=lambda h: (-len(changes[h]), -abs(float(np.mean(changes[h]))), h))
    return ForensicsSummary(
        attack=attack,
        successes=successes,
        refused=len(explained) - successes,
        implicated_per_success=IMPLICATED_PER_SUCCESS,
        broken_per_success=BROKEN_PER_SUCCESS,
        heads=[
            ImplicatedHead(layer=h[0], head=h[1], count=len(changes[h]), rate=wilson(len(changes[h]), successes), mean_change=float(np.mean(changes[h])))
            for h in heads
        ],
        pair_kinds=[BrokenPairKind(kind=k, count=n, rate=wilson(n, successes)) for k, n in sorted(kinds.items(), key=lambda item: (-item[1], item[0]))],
        edited=wilson(sum(1 for item in forensics if item.fallen_pairs and item.fallen_pairs[0].edited), successes),
        seconds=sum(item.seconds for item in forensics),
    )


def implicated_heads(summary: ForensicsSummary) -> list[tuple[int, int]]:
    """The implicated heads as (layer, head), counted from 0, most often implicated first (the order of
    ``ForensicsSummary.heads``): a causal check masks the first k."""
    return [(head.layer, head.head) for head in summary.heads]
