"""The causal check of an audit's successes (issue 33, ``auditor.causal``): mask a set of attention heads and
re-run each success's adversarial text; how many flips are undone, and what the mask costs on clean examples."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from auditor.schemas.common import Rate
from auditor.schemas.importance import ExamplesUsed

HeadSelection = Literal["implicated", "random", "attribution-pruning"]


class CausalRow(BaseModel):
    """One set of ``k`` heads masked (scaled by 0) in the audited model, and what that does.

    ``selection``: ``implicated`` (the first k heads of the ranking of heads implicated in the successes),
    ``random`` (k heads drawn uniformly from the model's heads, seeded; of ``draws`` draws the row is the
    median draw by flips undone, every draw's count in ``draws_undone``), ``attribution-pruning`` (the k heads
    attribution-based pruning removes first: ``auditor.pruning.rank_heads`` on the attribution importance).
    ``undone``: successes whose adversarial text the masked model classifies as the originally predicted
    class, of the successes the unmasked model reproduces. ``clean_broken``: clean examples the unmasked
    model gets right and the masked model gets wrong. ``clean_accuracy``: the masked model's accuracy on every
    audited clean example. Each a 95 % Wilson interval."""

    selection: HeadSelection
    k: int = Field(ge=0)
    heads: list[tuple[int, int]] = Field(description="(layer, original head index) of every masked head")
    undone: Rate
    clean_broken: Rate
    clean_accuracy: Rate
    draws: int = Field(default=1, ge=1, description="head sets drawn (random rows); the row is the median draw")
    draws_undone: list[int] = Field(default=[], description="flips undone by each random draw, in draw order")


class CleanDifference(BaseModel):
    """Clean accuracy of the attribution-pruned model minus that of the model without the implicated heads,
    both of size k (positive: masking the implicated heads costs more), on the same clean examples, with its
    95 % percentile-bootstrap interval (``auditor.statistics.bootstrap_drop``, the examples resampled with
    their pair of outcomes)."""

    k: int
    value: float
    low: float
    high: float


class CausalCheck(BaseModel):
    """Masking heads against one attack's successes (``attack``): ``rows`` for each selection at each size in
    ``sizes`` (``k`` is the size the pruning advice uses). A flip is **undone** when the masked model's arg max
    on the adversarial text is the class the victim predicted on the original text (arg max of
    ``original_probabilities``); only successes the unmasked model reproduces (its arg max on the adversarial
    text is another class) count: ``reproduced`` of ``successes`` (all of them for a local victim; an ONNX
    graph rounds otherwise). ``clean_accuracy``: the unmasked model on the audited clean examples.
    ``importance``: the training examples of the attribution importance behind the ``attribution-pruning``
    rows. Run on the victim's PyTorch weights (a local model, or those beside an ONNX graph); an endpoint
    has none, and gets no causal check."""

    attack: str
    successes: int
    reproduced: int
    examples: int
    clean_accuracy: Rate
    k: int
    sizes: list[int] = Field(description="the head counts run: those asked for that the implicated ranking is long enough for, and k")
    draws: int
    seed: int
    importance: ExamplesUsed
    rows: list[CausalRow]
    clean_difference: CleanDifference
    seconds: float

    def row(self, selection: HeadSelection, k: int | None = None) -> CausalRow:
        """The row of ``selection`` at size ``k`` (default: the advice's ``k``)."""
        size = self.k if k is None else k
        return next(r for r in self.rows if r.selection == selection and r.k == size)
