"""Attribution-guided greedy search: TextAttack's greedy word-importance search, with the importance taken
from one self-attention attribution of the input instead of one model query per word.

TextAttack's ``GreedyWordSwapWIR`` ranks words by deleting (or masking) each in turn and querying the model:
a query per word before the first edit. ``AttributionGreedySearch`` asks the victim for one explanation
(``Victim.explain``: the engine for a local or ONNX model, ``POST /explanations`` for an endpoint) and
visits words in order of the attribution drawn from them (``auditor.explain.word_importance``), so ranking
costs no prediction query. It then edits one word at a time like ``GreedyWordSwapWIR``: the best candidate
is kept when it raises the goal score, and the search stops at success or when the query budget is spent;
a word's candidates are queried one by one, so the step that succeeds stops at its first successful one.
Three rules spend the cap on edited words and the queries better: an edit that would reach the cap without
flipping the label is not kept; for that last edit, the next few ranked words are probed with their first
candidate in one batch, and a word whose probe does not close its share of the margin is left after that one
query; and (``sufficient_gain``) a candidate that covers its share of the margin is kept at once.
Unlike ``GreedyWordSwapWIR`` it follows each ranked word through earlier insertions and deletions
(``original_index_map``), so insertion and deletion transformations edit the word that was ranked. Candidates
it holds back (the mined patterns) get a second pass only when the others fail, so they can only add
successes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

import auditor.textattack_env  # noqa: F401  (NLTK_DATA before textattack)
from textattack.goal_function_results import GoalFunctionResult, GoalFunctionResultStatus
from textattack.search_methods import SearchMethod
from textattack.shared import AttackedText

from auditor.edits import word_edit_distance
from auditor.schemas import ExplanationOptions, WordImportance
from auditor.victims import Victim


Candidates = Callable[[AttackedText], bool]


def everything(candidate: AttackedText) -> bool:
    return True


def word_scores(text: AttackedText, words: Sequence[WordImportance]) -> dict[int, float]:
    """Per-word importance keyed by TextAttack's word index in ``text`` (segments joined)."""
    offsets = np.cumsum([0, *(len(column) for column in text.words_per_input)])
    return {int(offsets[w.segment]) + w.index: w.score for w in words}


def margin(result: GoalFunctionResult) -> float:
    """How far the victim is from leaving the gold label: p(gold) − max over the other labels of p(label)."""
    probabilities = np.asarray(result.raw_output, dtype=float)
    return float(probabilities[result.ground_truth_output] - np.delete(probabilities, result.ground_truth_output).max())


class AttributionGreedySearch(SearchMethod):
    """Greedy search over words in descending order of the attribution drawn from them (one explanation per
    example, with ``steps`` quadrature nodes over the encoder ``layers``, all by default; no prediction query
    for the ranking).

    With a cap of ``max_words`` edited words, an edit that reaches the cap without flipping the label is not
    kept: no further edit could follow it, so the search goes on to the next ranked words for one that flips
    the label. In that last-edit sweep (``last_edit_sweep``) the next ``sweep_words`` ranked words are
    probed with their first candidate, in one batch, and a word is left at once when its probe does not close
    its share of the margin: a word's character edits act alike (each breaks the word's pieces). The sweep
    mostly fails (on 100 SST-2 training examples it spent 375 queries in failed attacks and 58 in successful
    ones when every margin-lowering word got its other candidates; the share rule cut the first to 139 for
    one success fewer), so a batch of probes, which costs a fraction of as many single queries, saves time
    where it is spent. With ``sufficient_gain`` = s, a word's candidates are queried
    until one lowers the margin (``margin``) by at least s · margin / (edits left), its share of the way to
    the decision boundary, and that one is kept without querying the rest; without it every candidate is
    queried and the best kept.

    ``edit_words``: the fewest words one edit changes, 1, or 2 when every candidate inserts a token pair
    (the pattern-only attack): an edit is kept only if another fits after it, so under a cap of 3 words a
    pair that does not flip the label is not kept and the pairs are tried at the next ranked words instead
    (the last-edit sweep starts when exactly one edit is left).

    Candidates that ``held_back`` picks (the attack's pattern insertions) wait for the others: the search
    first runs without them, exactly as it would without them; only when that pass fails with queries left
    does a second pass start again from the original text, trying the held-back candidates at each ranked
    word (and every candidate in its last-edit sweep), and the better pass is returned. So holding
    candidates back can only add successes to those of the others alone. (Offered beside the others
    instead, a pattern insertion that lowers the margin most at the first word spends two of the few
    words allowed: on the tuning examples that cost 7.6 points of success on SST-2 and 2.7 on RTE.)
    """

    def __init__(
        self,
        victim: Victim,
        steps: int = 3,
        max_words: int | None = None,
        sufficient_gain: float | None = None,
        layers: list[int] | None = None,
        sweep_words: int | None = None,
        held_back: Callable[[AttackedText], bool] | None = None,
        edit_words: int = 1,
    ) -> None:
        self.victim = victim
        self.steps = steps
        self.max_words = max_words
        self.sufficient_gain = sufficient_gain
        self.layers = layers
        self.sweep_words = sweep_words
        self.held_back = held_back
        self.edit_words = edit_words
        self.options = ExplanationOptions(steps=steps, layers=layers, top_k=0, include_tree=False, include_word_importance=True)

    def word_importance(self, text: AttackedText) -> list[WordImportance]:
        """The words' importance, from one explanation of ``text`` by the victim."""
        return self.victim.explain(text.tokenizer_input, self.options).word_importance or []

    def index_order(self, text: AttackedText) -> list[int]:
        """Words that the pre-transformation constraints let us modify, most important first (ties: earlier)."""
        _, indices = self.get_indices_to_order(text)
        scores = word_scores(text, self.word_importance(text))
        return sorted(indices, key=lambda i: (-scores.get(i, float("-inf")), i))

    def edits_left(self, initial: AttackedText, text: AttackedText) -> int | None:
        return None if self.max_words is None else self.max_words - word_edit_distance(initial.words, text.words)

    def enough(self, current: GoalFunctionResult, edits_left: int | None) -> float | None:
        """The margin at which a candidate is kept without querying the word's others (not for the last edit,
        which is kept only if it flips the label: ``last_edit_sweep``)."""
        if self.sufficient_gain is None or edits_left == self.edit_words:
            return None
        return margin(current) - self.sufficient_gain * max(margin(current), 0.0) / (edits_left or 1)

    def perform_search(self, initial_result):
        order = self.index_order(initial_result.attacked_text)
        if self.held_back is None:
            return self.greedy(initial_result, order, everything, everything)
        held_back = self.held_back

        def others(candidate: AttackedText) -> bool:
            return not held_back(candidate)

        first = self.greedy(initial_result, order, others, others)
        if first.goal_status == GoalFunctionResultStatus.SUCCEEDED or self.goal_function.num_queries >= self.goal_function.query_budget:
            return first
        second = self.greedy(initial_result, order, held_back, everything)
        return max((first, second), key=lambda r: (r.goal_status == GoalFunctionResultStatus.SUCCEEDED, r.score))

    def greedy(self, initial_result, order: list[int], step: Candidates, sweep: Candidates):
        """One greedy pass down the ranked words ``order`` from ``initial_result``: each word gets the
        candidates that ``step`` keeps, the last edit's sweep those that ``sweep`` keeps."""
        initial = initial_result.attacked_text
        current = initial_result
        for position, original_index in enumerate(order):
            edits_left = self.edits_left(initial, current.attacked_text)
            if edits_left == self.edit_words:
                return self.last_edit_sweep(initial, current, order[position:], sweep)
            candidates = [c for c in self.word_candidates(initial, current, original_index) if step(c)]
            if not candidates:
                continue
            results, search_over = self.query_candidates(candidates, current, edits_left)
            if not results:
                break
            best = max(results, key=lambda r: (r.goal_status == GoalFunctionResultStatus.SUCCEEDED, r.score))
            if best.goal_status == GoalFunctionResultStatus.SUCCEEDED:
                return best
            left = self.edits_left(initial, best.attacked_text)
            if best.score > current.score and (left is None or left >= self.edit_words):
                current = best
            if search_over:
                break
        return current

    def word_candidates(self, initial: AttackedText, current: GoalFunctionResult, original_index: int) -> list[AttackedText]:
        """The transformation's candidates for the ranked word ``original_index`` (none once it was deleted)."""
        where = np.flatnonzero(current.attacked_text.attack_attrs["original_index_map"] == original_index)
        if not len(where):
            return []
        return self.get_transformations(current.attacked_text, original_text=initial, indices_to_modify=[int(where[0])])

    def last_edit_sweep(self, initial: AttackedText, current: GoalFunctionResult, words: list[int], keep: Candidates) -> GoalFunctionResult:
        """The last edit allowed: only an edit that flips the label is kept. The next ``sweep_words`` ranked
        words that have candidates (all that remain for ``None``) are probed with their first candidate, in one
        batch; those whose probe closes the sufficient gain s of the margin m (a probe margin <= (1 − s)·m,
        below m when s is None) then get their other candidates, one word (one batch) at a time, the most
        lowered first; the rest are left after the probe. Returns the first success (the best-scoring one of
        its batch), or ``current``."""
        candidates: dict[int, list[AttackedText]] = {}
        for i in words:
            if self.sweep_words is not None and len(candidates) == self.sweep_words:
                break
            if found := [c for c in self.word_candidates(initial, current, i) if keep(c)]:
                candidates[i] = found
        probes, search_over = self.get_goal_results([found[0] for found in candidates.values()])
        batches = [probes]
        close = margin(current) * (1 - (self.sufficient_gain or 0.0))
        lowered = sorted((margin(r), i) for i, r in zip(candidates, probes) if margin(r) < margin(current) and margin(r) <= close)
        for _, i in lowered:
            if search_over or any(r.goal_status == GoalFunctionResultStatus.SUCCEEDED for r in batches[-1]):
                break
            found, search_over = self.get_goal_results(candidates[i][1:])
            batches.append(found)
        succeeded = [r for r in batches[-1] if r.goal_status == GoalFunctionResultStatus.SUCCEEDED]
        return max(succeeded, key=lambda r: r.score) if succeeded else current

    def query_candidates(self, candidates: list[AttackedText], current: GoalFunctionResult, edits_left: int | None) -> tuple[list, bool]:
        """Query the candidates one at a time, in the transformation's order, stopping at the first success
        or the first whose margin is at most ``enough`` (``GreedyWordSwapWIR`` queries them all)."""
        enough = self.enough(current, edits_left)
        results: list = []
        for candidate in candidates:
            found, search_over = self.get_goal_results([candidate])
            results += found
            if search_over or any(r.goal_status == GoalFunctionResultStatus.SUCCEEDED for r in found):
                return results, search_over
            if enough is not None and any(margin(r) <= enough for r in found):
                return results, False
        return results, False

    @property
    def is_black_box(self) -> bool:
        return True  # it needs explanations, not the model's internals: an endpoint serves both

    def extra_repr_keys(self) -> list[str]:
        return ["steps", "layers", "max_words", "sufficient_gain", "sweep_words"]


class LeaveOneOutGreedySearch(AttributionGreedySearch):
    """``AttributionGreedySearch`` with DeepWordBug's word ranking instead of the attribution: each modifiable
    word replaced by ``[UNK]`` in turn (``GreedyWordSwapWIR(wir_method="unk")``), one prediction query each,
    ranked by how much that raises the goal score. Everything else (transformations, rules, constraints) is
    the attribution-guided attack's, so the two differ in the ranking alone: its ablation."""

    def index_order(self, text: AttackedText) -> list[int]:
        _, indices = self.get_indices_to_order(text)
        indices = sorted(indices)
        results, _ = self.get_goal_results([text.replace_word_at_index(i, "[UNK]") for i in indices])
        scores = {i: r.score for i, r in zip(indices, results)}
        return sorted(indices, key=lambda i: (-scores.get(i, float("-inf")), i))
