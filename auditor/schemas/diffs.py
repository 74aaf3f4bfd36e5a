"""Release-to-release robustness diffs (``auditor diff``, ``auditor audit --baseline``; auditor.diff)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from auditor.schemas.audits import AuditSettings, VictimIdentity
from auditor.schemas.importance import ExamplesUsed


class ExampleChange(BaseModel):
    """One example whose outcome changed between the two reports: under an attack, ``held`` means the model
    was right and the attack found no valid success; for clean accuracy, that the model was right; under an
    invariance check (status ``flipped`` or ``kept``), that the perturbation kept the prediction. The
    perturbed texts are what each model was shown last (the original when nothing was changed) and
    ``*_predicted`` what it answered."""

    example_id: str
    index: int = Field(description="position of the example in the new report")
    label: int
    text: str
    text_pair: str | None = None
    base_status: Literal["succeeded", "failed", "skipped", "flipped", "kept"]
    new_status: Literal["succeeded", "failed", "skipped", "flipped", "kept"]
    base_perturbed_text: str
    base_perturbed_text_pair: str | None = None
    new_perturbed_text: str
    new_perturbed_text_pair: str | None = None
    base_predicted: int
    new_predicted: int


class ClassChange(BaseModel):
    label: int
    name: str
    examples: int
    base_accuracy: float
    new_accuracy: float
    change: float
    newly_broken: int
    newly_held: int


class PairedComparison(BaseModel):
    """One measure (clean accuracy, or accuracy under one attack counting valid successes only) of the same
    examples in both reports, tested with the exact McNemar test: under chance, each of the ``newly_broken``
    + ``newly_held`` discordant examples is equally likely to go either way, so ``p_value`` is the two-sided
    binomial tail P(min(b, c) or fewer of b + c fair coin flips, either side).

    ``regression``: accuracy fell by more than the gate's ``max_drop`` and ``adjusted_p_value`` < its ``alpha``
    (``adjusted_p_value`` is ``p_value`` unless the gate corrects for testing several measures)."""

    measure: str = Field(description="'clean', the attack's name, or 'invariance:<check>' (accuracy: the share of predictions kept)")
    examples: int
    base_accuracy: float
    new_accuracy: float
    change: float = Field(description="new - base accuracy (fractions)")
    newly_broken: int = Field(description="examples held in the base report and not in the new one (b)")
    newly_held: int = Field(description="examples held in the new report and not in the base one (c)")
    p_value: float = Field(ge=0, le=1)
    adjusted_p_value: float = Field(ge=0, le=1, description="p_value after the gate's correction (Holm's step-down over every measure), or p_value")
    regression: bool
    per_class: list[ClassChange]
    broken: list[ExampleChange]
    held: list[ExampleChange]


class DiffSide(BaseModel):
    """One of the two reports: where it was read from and what it audited."""

    path: str
    victim: VictimIdentity
    auditor_version: str


class RobustnessDiff(BaseModel):
    """``auditor diff BASE NEW``: every measure of two audits of the same examples under the same settings
    and validity checks, paired example by example. ``regression`` is true when any measure regressed; the
    command then exits 1. With ``correction`` 'none' each measure is tested at ``alpha`` on its own; with
    'holm' Holm's step-down procedure keeps the chance of calling any regression when there is none (over
    the clean accuracy and every attack) at most ``alpha``."""

    schema_version: Literal[1] = 1
    auditor_version: str
    base: DiffSide
    new: DiffSide
    data: ExamplesUsed
    settings: AuditSettings
    max_drop: float = Field(ge=0, le=1, description="the largest drop in accuracy (a fraction) that is not a regression")
    alpha: float = Field(gt=0, lt=1, description="significance level of the exact McNemar test")
    correction: Literal["none", "holm"] = "none"
    notes: list[str] = Field(description="differences between the reports that do not prevent the comparison")
    comparisons: list[PairedComparison]
    regression: bool
