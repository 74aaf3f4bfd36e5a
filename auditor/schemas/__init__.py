"""Pydantic models: the one definition of every request, response and report that crosses a boundary
(HTTP bodies, JSON files, CLI output), one module per concept; ``auditor schema`` exports their JSON Schema.
Everything is importable from ``auditor.schemas``."""

from __future__ import annotations

from pydantic import BaseModel

from auditor.schemas.common import (  # noqa: F401
    INVISIBLE,
    ModelIdentity,
    Rate,
    RequestModel,
    StrictModel,
    visible,
)
from auditor.schemas.serving import (  # noqa: F401
    Backend,
    Task,
    ErrorResponse,
    HandlerSettings,
    OnnxWeight,
    OnnxWeightMap,
    Prediction,
    PredictionBatchRequest,
    PredictionList,
    PredictionRequest,
    ServingLimits,
)
from auditor.schemas.live import (  # noqa: F401
    IDENTITY_HEADERS,
    ComparisonRecord,
    DisagreementExplanation,
    LiveReport,
    ServedModelRef,
    ShadowSettings,
)
from auditor.schemas.explanations import (  # noqa: F401
    AttributionTree,
    Explanation,
    ExplanationOptions,
    ExplanationRequest,
    EncodedArray,
    LayerExplanation,
    TokenPair,
    TreeEdge,
    TreeNode,
    WordImportance,
)
from auditor.schemas.importance import (  # noqa: F401
    CurvePoint,
    ExamplesUsed,
    HeadImportance,
    IMPORTANCE_METHODS,
    ImportanceMethod,
    PruningCurves,
)
from auditor.schemas.advice import Advice, AdviceMeasure, DefenceName  # noqa: F401
from auditor.schemas.forensics import (  # noqa: F401
    BrokenPairKind,
    Forensics,
    ForensicsSummary,
    HeadChange,
    ImplicatedHead,
    WordPairChange,
)
from auditor.schemas.causal import CausalCheck, CausalRow, CleanDifference, HeadSelection  # noqa: F401
from auditor.schemas.audits import (  # noqa: F401
    AttackOutcome,
    AttackSummary,
    OUTCOME_FREE_SETTINGS,
    AuditSettings,
    BudgetPoint,
    ClassBreakdown,
    ComparisonReport,
    LabelLexicon,
    LexiconOptions,
    LexiconSummary,
    MinedExample,
    ModelComparison,
    PatternRanking,
    RobustnessReport,
    TreePair,
    TriggerMiningOptions,
    TriggerPattern,
    TriggerRow,
    TriggerSet,
    VictimIdentity,
    WordEdit,
)
from auditor.schemas.invariance import (  # noqa: F401
    CHECK_NAMES,
    MIN_APPLIED,
    CheckName,
    InvarianceCheck,
    InvarianceOutcome,
)
from auditor.schemas.paper import PaperAttackRow, ProbeKind  # noqa: F401
from auditor.schemas.diffs import (  # noqa: F401
    ClassChange,
    DiffSide,
    ExampleChange,
    PairedComparison,
    RobustnessDiff,
)


def json_schemas() -> dict[str, dict]:
    """JSON Schema of every public model of the schema modules (new models are included automatically)."""
    return {
        name: value.model_json_schema()
        for name, value in sorted(globals().items())
        if isinstance(value, type)
        and issubclass(value, BaseModel)
        and value.__module__.startswith(f"{__name__}.")
        and not name.startswith("_")
        and name.isidentifier()  # not the parametrised bases pydantic registers, e.g. "RootModel[list[Prediction]]"
        and value.model_fields
    }
