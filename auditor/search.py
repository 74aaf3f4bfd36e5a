"""Attribution-guided greedy search: TextAttack's greedy word-importance search, with the importance taken
from one self-attention attribution of the input instead of one model query per word.

TextAttack's ``GreedyWordSwapWIR`` ranks words by deleting (or masking) each in turn and querying the model:
a query per word before the first edit. ``AttributionGreedySearch`` asks the victim for one explanation
(``Victim.explain``: the engine for a local or ONNX model, ``POST /explanations`` for an endpoint) and
visits words in order of the attribution drawn from them (``auditor.explain.word_importance``), so ranking
costs no prediction query. It then edits one word at a time like ``GreedyWordSwapWIR``: the best candidate
is kept when it raises the goal score, and the search stops at success or when the query budget is spent;
a word's candidates are queried one by one, so the step that succeeds stops at its first successful one.
Unlike ``GreedyWordSwapWIR`` it follows each ranked word through earlier insertions and deletions
(``original_index_map``), so insertion and deletion transformations edit the word that was ranked.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

import auditor.textattack_env  # noqa: F401  (NLTK_DATA before textattack)
from textattack.goal_function_results import GoalFunctionResultStatus
from textattack.search_methods import SearchMethod
from textattack.shared import AttackedText

from auditor.schemas import ExplanationOptions, WordImportance
from auditor.victims import Victim


def word_scores(text: AttackedText, words: Sequence[WordImportance]) -> dict[int, float]:
    """Per-word importance keyed by TextAttack's word index in ``text`` (segments joined)."""
    offsets = np.cumsum([0, *(len(column) for column in text.words_per_input)])
    return {int(offsets[w.segment]) + w.index: w.score for w in words}


class AttributionGreedySearch(SearchMethod):
    """Greedy search over words in descending order of the attribution drawn from them (one explanation per example,
    with ``steps`` quadrature steps; no prediction query for the ranking)."""

    def __init__(self, victim: Victim, steps: int = 3) -> None:
        self.victim = victim
        self.steps = steps
        self.options = ExplanationOptions(steps=steps, top_k=0, include_tree=False, include_word_importance=True)

    def word_importance(self, text: AttackedText) -> list[WordImportance]:
        """The words' importance, from one explanation of ``text`` by the victim."""
        return self.victim.explain(text.tokenizer_input, self.options).word_importance or []

    def index_order(self, text: AttackedText) -> list[int]:
        """Words that the pre-transformation constraints let us modify, most important first (ties: earlier)."""
        _, indices = self.get_indices_to_order(text)
        scores = word_scores(text, self.word_importance(text))
        return sorted(indices, key=lambda i: (-scores.get(i, float("-inf")), i))

    def perform_search(self, initial_result):
        order = self.index_order(initial_result.attacked_text)
        current, search_over = initial_result, False
        for original_index in order:
            if search_over:
                break
            where = np.flatnonzero(current.attacked_text.attack_attrs["original_index_map"] == original_index)
            if not len(where):
                continue  # the word was deleted
            candidates = self.get_transformations(
                current.attacked_text, original_text=initial_result.attacked_text, indices_to_modify=[int(where[0])]
            )
            if not candidates:
                continue
            results, search_over = self.query_until_success(candidates)
            if not results:
                break
            best = max(results, key=lambda r: (r.goal_status == GoalFunctionResultStatus.SUCCEEDED, r.score))
            if best.score > current.score:
                current = best
                if current.goal_status == GoalFunctionResultStatus.SUCCEEDED:
                    break
        return current

    def query_until_success(self, candidates: list[AttackedText]) -> tuple[list, bool]:
        """Query the candidates one at a time, in the transformation's order, stopping at the first success
        (``GreedyWordSwapWIR`` queries them all): the same search, fewer queries in its last step."""
        results: list = []
        for candidate in candidates:
            found, search_over = self.get_goal_results([candidate])
            results += found
            if search_over or any(r.goal_status == GoalFunctionResultStatus.SUCCEEDED for r in found):
                return results, search_over
        return results, False

    @property
    def is_black_box(self) -> bool:
        return True  # it needs explanations, not the model's internals: an endpoint serves both

    def extra_repr_keys(self) -> list[str]:
        return ["steps"]
