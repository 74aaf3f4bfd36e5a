"""The live report's measures, computed from the comparison records (pure computation, no I/O): agreement,
label transitions, the shift in confidence, agreement over time, the measures on labelled records and the
promotion decision."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from statistics import NormalDist

import numpy as np

from auditor import __version__
from auditor.diff import mcnemar_exact
from auditor.statistics import wilson
from auditor.errors import InputError
from auditor.live.decision import BetaBinomialConfidenceSequence
from auditor.schemas.live import (
    BoundPoint,
    ClassFlips,
    ComparisonRecord,
    ConfidenceShift,
    DecisionSummary,
    DropCount,
    LabelledSummary,
    LiveReport,
    Side,
    Transition,
    Window,
)

TIE = 1e-5
"""Two probabilities closer than this are a tie: the label may differ between backends by rounding alone."""
PRIOR_STRENGTH = 100.0
"""Weight of the confidence sequence's prior, in pseudo-records (its mean is the tolerance). Simulated at a
2 % tolerance, the median number of records to promote at half the tolerance was about 1,130 for strengths
50 to 200, against 1,280 at 10 and 1,675 at 1,000."""
SHIFT_EDGES = [0.0, 0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
HOURLY_SPAN_S = 2 * 3600
"""Records spanning at least this long get agreement per clock hour; shorter runs per N records."""
WINDOWS = 20
PATH_POINTS = 200


def in_time_order(records: Sequence[ComparisonRecord]) -> list[ComparisonRecord]:
    """The records of all databases by time (stable: a database's own order breaks ties); InputError when
    there are none or they compare more than one pair of models."""
    if not records:
        raise InputError("the databases hold no comparisons yet")
    pairs = Counter((r.primary_model.label(), r.shadow_model.label()) for r in records)
    if len(pairs) > 1:
        listed = "; ".join(f"{primary} vs {shadow} ({count} records)" for (primary, shadow), count in pairs.most_common())
        raise InputError(f"the databases compare more than one pair of models: {listed}")
    return sorted(records, key=lambda record: record.ts)


def near_tie(probabilities: Sequence[float]) -> bool:
    top = sorted(probabilities, reverse=True)
    return len(top) > 1 and top[0] - top[1] <= TIE


def confidence_shift(records: Sequence[ComparisonRecord], level: float) -> ConfidenceShift:
    """The distribution of |Δp| (``ConfidenceShift``) over the records."""
    shifts = np.array([abs(r.shadow_probabilities[c] - r.primary_probabilities[c]) for r in records for c in [int(np.argmax(r.primary_probabilities))]])
    z = NormalDist().inv_cdf((1 + level) / 2)
    half = z * float(shifts.std(ddof=1)) / math.sqrt(len(shifts)) if len(shifts) > 1 else math.inf
    mean = float(shifts.mean())
    counts, _ = np.histogram(np.clip(shifts, 0, 1), bins=SHIFT_EDGES)
    median, p90, p99 = (float(q) for q in np.quantile(shifts, [0.5, 0.9, 0.99]))
    return ConfidenceShift(
        records=len(shifts), mean=mean, mean_low=max(0.0, mean - half), mean_high=min(1.0, mean + half), level=level,
        median=median, p90=p90, p99=p99, max=float(shifts.max()), histogram_edges=SHIFT_EDGES, histogram_counts=counts.tolist(),
    )  # fmt: skip


def windows(records: Sequence[ComparisonRecord], level: float) -> tuple[str, list[Window]]:
    """Agreement per clock hour when the records span ``HOURLY_SPAN_S`` or more, else per ⌈n/20⌉ records."""
    if records[-1].ts - records[0].ts >= HOURLY_SPAN_S:
        keys = [math.floor(r.ts / 3600) for r in records]
        kind = "hour"
    else:
        size = math.ceil(len(records) / WINDOWS)
        keys = [i // size for i in range(len(records))]
        kind = "records"
    result, start = [], 0
    for end in range(1, len(records) + 1):
        if end == len(records) or keys[end] != keys[start]:
            part = records[start:end]
            agreeing = sum(r.primary_label == r.shadow_label for r in part)
            result.append(Window(start_ts=part[0].ts, end_ts=part[-1].ts, first_record=start + 1, agreement=wilson(agreeing, len(part), level)))
            start = end
    return kind, result


def decision_summary(disagreeing: Sequence[bool], tolerance: float, alpha: float) -> DecisionSummary:
    """The decision after the last record, and the confidence sequence along the way (``PATH_POINTS`` points)."""
    sequence = BetaBinomialConfidenceSequence(alpha, prior_mean=tolerance, prior_strength=PRIOR_STRENGTH)
    running = np.cumsum(np.asarray(disagreeing, dtype=int))
    n = len(running)
    path = []
    for t in sorted({int(t) for t in np.linspace(1, n, min(n, PATH_POINTS))}):
        low, high = sequence.bounds(int(running[t - 1]), t)
        path.append(BoundPoint(records=t, disagreement_rate=float(running[t - 1]) / t, low=low, high=high))
    disagreements = int(running[-1])
    low, high = sequence.bounds(disagreements, n)
    decision = sequence.decide(disagreements, n, tolerance)
    return DecisionSummary(
        decision=decision.value, exit_code=decision.exit_code, tolerance=tolerance, alpha=alpha, records=n,
        disagreements=disagreements, low=low, high=high,
        method="beta-binomial mixture confidence sequence (Robbins 1970; Howard et al. 2021), time-uniform at level 1 − alpha",
        prior_mean=tolerance, prior_strength=PRIOR_STRENGTH, path=path,
    )  # fmt: skip


def labelled_summary(
    records: Sequence[ComparisonRecord], labels: Mapping[str, str], labels_file: str, candidate: Side, level: float
) -> LabelledSummary:
    """Accuracy of both models, negative and positive flips and the exact McNemar test on the records whose
    ``input_sha256`` the labels file names (each record counts: an input asked twice weighs twice). InputError
    for a label neither model ever answered (a typo would otherwise count as an error of both)."""
    incumbent: Side = "primary" if candidate == "shadow" else "shadow"
    matched = [(r, labels[r.input_sha256]) for r in records if r.input_sha256 in labels]
    answered = {r.primary_label for r in records} | {r.shadow_label for r in records}
    unknown = sorted({label for _, label in matched} - answered)
    if unknown:
        raise InputError(f"{labels_file}: label {unknown[0]!r} is none of the labels the models answered ({', '.join(sorted(answered))})")
    seen = {r.input_sha256 for r in records}
    right = {side: [getattr(r, f"{side}_label") == label for r, label in matched] for side in ("primary", "shadow")}
    negative = sum(old and not new for old, new in zip(right[incumbent], right[candidate]))
    positive = sum(new and not old for old, new in zip(right[incumbent], right[candidate]))
    return LabelledSummary(
        labels_file=labels_file,
        labelled=len(matched),
        unmatched_labels=sum(digest not in seen for digest in labels),
        candidate=candidate,
        incumbent=incumbent,
        primary_accuracy=wilson(sum(right["primary"]), len(matched), level),
        shadow_accuracy=wilson(sum(right["shadow"]), len(matched), level),
        negative_flips=wilson(negative, len(matched), level),
        positive_flips=wilson(positive, len(matched), level),
        mcnemar_p=mcnemar_exact(negative, positive),
    )


def summarise(
    records: Sequence[ComparisonRecord],
    databases: Sequence[str],
    tolerance: float,
    alpha: float = 0.05,
    labels: Mapping[str, str] | None = None,
    labels_file: str = "",
    candidate: Side = "shadow",
    drops: Mapping[str, int] | None = None,
) -> LiveReport:
    """The live report of ``records`` (any order; see ``in_time_order``) without explanations. Intervals are at
    level 1 − ``alpha``."""
    if not 0 < tolerance < 1:
        raise InputError(f"the tolerance is a disagreement rate in (0, 1), got {tolerance}")
    ordered = in_time_order(records)
    level = 1 - alpha
    disagreeing = [r.primary_label != r.shadow_label for r in ordered]
    names = sorted({r.primary_label for r in ordered} | {r.shadow_label for r in ordered})
    transitions = Counter((r.primary_label, r.shadow_label) for r in ordered)
    per_class = [
        ClassFlips(label=name, flips=wilson(sum(n for (p, s), n in transitions.items() if p == name and s != name),
                                            sum(n for (p, _), n in transitions.items() if p == name), level))
        for name in names
    ]  # fmt: skip
    kind, agreement_windows = windows(ordered, level)
    return LiveReport(
        auditor_version=__version__,
        databases=list(databases),
        primary_model=ordered[0].primary_model,
        shadow_model=ordered[0].shadow_model,
        records=len(ordered),
        first_ts=ordered[0].ts,
        last_ts=ordered[-1].ts,
        agreement=wilson(len(ordered) - sum(disagreeing), len(ordered), level),
        near_ties=sum(near_tie(r.primary_probabilities) or near_tie(r.shadow_probabilities) for r in ordered),
        labels=names,
        transitions=[Transition(primary_label=p, shadow_label=s, count=transitions[p, s]) for p in names for s in names],
        per_class=per_class,
        confidence_shift=confidence_shift(ordered, level),
        window_kind=kind,
        windows=agreement_windows,
        decision=decision_summary(disagreeing, tolerance, alpha),
        labelled=None if labels is None else labelled_summary(ordered, labels, labels_file, candidate, level),
        drops=None if drops is None else [DropCount(cause=cause, count=count) for cause, count in sorted(drops.items())],
        texts_stored=sum(d and r.text is not None for d, r in zip(disagreeing, ordered)),
    )
