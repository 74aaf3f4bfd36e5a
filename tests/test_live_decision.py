"""The promotion decision (auditor.live.decision): its mixture checked against numerical integration, its
interval against its definition, and its error under continuous monitoring on simulated streams."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from auditor.live.decision import BetaBinomialConfidenceSequence, Decision
from auditor.live.summary import PRIOR_STRENGTH
from auditor.statistics import wilson

TOLERANCE = 0.02
ALPHA = 0.05
STREAMS = 2000
HORIZON = 10_000


@pytest.fixture(scope="module")
def sequence() -> BetaBinomialConfidenceSequence:
    return BetaBinomialConfidenceSequence(ALPHA, prior_mean=TOLERANCE, prior_strength=PRIOR_STRENGTH)


@pytest.mark.parametrize(("disagreements", "records"), [(0, 1), (1, 1), (3, 200), (40, 3000), (250, 1000)])
def test_mixture_equals_numerical_integration(sequence: BetaBinomialConfidenceSequence, disagreements: int, records: int) -> None:
    prior = stats.beta(sequence.a, sequence.b)
    failures = records - disagreements
    # the integrand peaks at S/t; telling quad where keeps it from missing a narrow peak
    peak = disagreements / records
    value, _ = integrate.quad(lambda p: prior.pdf(p) * p**disagreements * (1 - p) ** failures, 0, 1, points=[peak], limit=200, epsabs=0, epsrel=1e-10)
    assert sequence.log_mixture(disagreements, records) == pytest.approx(math.log(value), abs=1e-6)


def test_running_sums_equal_the_closed_form(sequence: BetaBinomialConfidenceSequence) -> None:
    stream = np.random.default_rng(3).random(500) < 0.05
    paths = sequence.log_wealth_paths(stream[None, :], TOLERANCE)[0]
    running = np.cumsum(stream)
    for t in (1, 7, 100, 499, 500):
        # two summation orders of the same logs: equal to rounding
        assert paths[t - 1] == pytest.approx(sequence.log_wealth(int(running[t - 1]), t, TOLERANCE), abs=1e-9)


@pytest.mark.parametrize(("disagreements", "records"), [(0, 50), (5, 1000), (30, 1000), (999, 1000)])
def test_bounds_are_where_the_wealth_reaches_one_over_alpha(sequence: BetaBinomialConfidenceSequence, disagreements: int, records: int) -> None:
    low, high = sequence.bounds(disagreements, records)
    assert low <= disagreements / records <= high
    for bound in (low, high):
        if 0 < bound < 1:
            assert sequence.log_wealth(disagreements, records, bound) == pytest.approx(math.log(1 / ALPHA), abs=1e-6)
    inside = [low + (high - low) * f for f in (0.01, 0.5, 0.99)]
    assert all(sequence.log_wealth(disagreements, records, p) < math.log(1 / ALPHA) for p in inside)


def test_every_record_decision_agrees_with_the_vectorised_one(sequence: BetaBinomialConfidenceSequence) -> None:
    rng = np.random.default_rng(5)
    streams = rng.random((4, 2500)) < np.array([[0.005], [0.01], [0.02], [0.05]])
    first = sequence.first_promotions(streams, TOLERANCE)
    for stream, expected in zip(streams, first):
        running = np.cumsum(stream)
        decisions = [sequence.decide(int(running[t - 1]), t, TOLERANCE) for t in range(1, len(stream) + 1)]
        promoted = [t for t, decision in enumerate(decisions, start=1) if decision is Decision.promote]
        assert (promoted[0] if promoted else 0) == expected
    assert first[0] > 0 and first[3] == 0


def test_checked_after_every_record_a_rate_at_the_tolerance_is_wrongly_promoted_at_most_alpha(
    sequence: BetaBinomialConfidenceSequence,
) -> None:
    rng = np.random.default_rng(2024)
    promoted = np.concatenate([sequence.first_promotions(rng.random((500, HORIZON)) < TOLERANCE, TOLERANCE) for _ in range(STREAMS // 500)])
    wrong = float((promoted > 0).mean())
    print(f"\nwrong promotions at rate = tolerance {TOLERANCE}: {wrong:.2%} of {STREAMS} streams of {HORIZON} records")
    assert len(promoted) == STREAMS and wrong <= ALPHA
    # the fixed-n alternative, Wilson's 95 % upper bound re-checked after every record, promotes far more often
    streams = rng.random((500, HORIZON)) < TOLERANCE
    n = np.arange(1, HORIZON + 1)
    p, z = np.cumsum(streams, axis=1) / n, stats.norm.ppf(0.975)
    upper = (p + z * z / (2 * n) + z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)
    naive = float((upper < TOLERANCE).any(axis=1).mean())
    print(f"Wilson's upper bound re-checked after every record: {naive:.2%}")
    assert naive > 2 * ALPHA


def test_half_the_tolerance_is_promoted_within_about_a_thousand_records(sequence: BetaBinomialConfidenceSequence) -> None:
    rng = np.random.default_rng(7)
    promoted = np.concatenate([sequence.first_promotions(rng.random((500, HORIZON)) < TOLERANCE / 2, TOLERANCE) for _ in range(2)])
    median = float(np.median(promoted))
    low, high = np.percentile(promoted, [10, 90])
    print(f"\nrecords to promote at rate {TOLERANCE / 2}: median {median:.0f}, 10th–90th percentile {low:.0f}–{high:.0f}")
    assert (promoted > 0).all() and 800 <= median <= 1500


@pytest.mark.parametrize(("count", "total"), [(0, 10), (5, 10), (97, 100), (2980, 3000)])
def test_wilson_interval_matches_scipy(count: int, total: int) -> None:
    rate = wilson(count, total, 0.95)
    reference = stats.binomtest(count, total).proportion_ci(0.95, method="wilson")
    assert rate.rate == count / total
    assert (rate.low, rate.high) == pytest.approx((reference.low, reference.high), abs=1e-12)
