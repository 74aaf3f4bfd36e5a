"""The bootstrap interval of an accuracy drop against the normal approximation and its edge cases, and the
log-odds association against hand computation."""

from __future__ import annotations

import math

import pytest

from auditor.diff import mcnemar_exact
from auditor.statistics import bootstrap_drop, log_odds, mcnemar_sample_size


def test_the_bootstrap_interval_of_a_drop_matches_the_normal_approximation() -> None:
    before = [True] * 400
    after = [i % 10 != 0 for i in range(400)]  # 40 of 400 examples broken: a drop of 0.1
    low, high = bootstrap_drop(before, after, resamples=4000)
    half_width = 1.96 * math.sqrt(0.1 * 0.9 / 400)
    assert low == pytest.approx(0.1 - half_width, abs=0.006) and high == pytest.approx(0.1 + half_width, abs=0.006)
    assert bootstrap_drop(before, after, resamples=4000) == (low, high)  # seeded


def test_paired_outcomes_that_cancel_out_give_an_interval_around_zero() -> None:
    before = [True, False] * 100
    after = [False, True] * 100  # as many examples broken as fixed
    low, high = bootstrap_drop(before, after)
    assert low < 0 < high
    assert bootstrap_drop([True] * 5, [True] * 5) == (0.0, 0.0)
    assert bootstrap_drop([True] * 5, [False] * 5) == (1.0, 1.0)
    with pytest.raises(ValueError):
        bootstrap_drop([True], [])


def test_log_odds_by_hand() -> None:
    delta, z = log_odds(8, 2, 50, 100, prior=1.0)
    assert delta == pytest.approx(math.log(9 / 3) - math.log(50 / 50))
    assert z == pytest.approx(delta / math.sqrt(1 / 9 + 1 / 3))
    assert log_odds(3, 0, 100, 100) == (0.0, 0.0)  # no contrast: every example has the label


@pytest.mark.parametrize("discordant", [0.17, 0.27])
def test_the_sample_size_for_a_5_point_drop_gives_the_exact_mcnemar_test_its_power(discordant: float) -> None:
    """The README's answer to "how many examples to see a 5-point drop": at that many examples, a drop of 5
    points among ``discordant`` changed outcomes (17 % clean, 27 % under attack in the README's gate example)
    is found by ``auditor diff``'s exact McNemar test about 80 % of the time (simulated, 2000 draws: ±2 points
    of standard error, and the exact test is a little conservative, hence 0.74)."""
    import numpy as np

    n = mcnemar_sample_size(discordant, 0.05)
    assert n == {0.17: 532, 0.27: 846}[discordant]
    rng = np.random.default_rng(0)
    broken, held = (discordant + 0.05) / 2, (discordant - 0.05) / 2
    draws = rng.multinomial(n, [broken, held, 1 - discordant], size=2000)
    power = float(np.mean([b > c and mcnemar_exact(int(b), int(c)) < 0.05 for b, c, _ in draws]))
    assert 0.74 <= power <= 0.84
    assert mcnemar_sample_size(discordant, 0.05, power=0.5) < n < mcnemar_sample_size(discordant, 0.03)
