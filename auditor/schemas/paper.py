"""The rows of the paper's adversarial-pattern experiment (``auditor.paper_patterns``, ``bench/paper_attack.py``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from auditor.schemas.common import StrictModel

ProbeKind = Literal["pattern", "random-pair", "apart", "single-word"]
"""What one row inserts: a mined pattern (its two words at their mined relative positions), a random word pair
matched to it for word frequency (same positions), the pattern's two words apart (at the two ends of the text),
or the pattern's more attributed word alone (at its position)."""


class PaperAttackRow(StrictModel):
    """One pattern or control inserted into every dev example of ``direction``'s source class that the model
    gets right (``examples``): the accuracy on them before (1 by construction) and after, with the 95 % Wilson
    interval of the accuracy after; ``label_word``: a word inserted is in the label-word lexicon or a negation;
    ``reader_valid``: how many of the ``examples`` insertions the reader rule (``ReaderConstraint``) admits."""

    task: str
    direction: str = Field(description="'<class attacked> -> <class the pattern was mined from>'")
    kind: ProbeKind
    pattern: str = Field(description="the words inserted, space-separated; ' … ' between words inserted apart")
    examples: int
    accuracy_before: float | None
    accuracy_after: float | None
    after_low: float
    after_high: float
    label_word: bool
    reader_valid: int
