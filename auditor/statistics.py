"""Small statistics shared by the label lexicon, the pattern miner, the trigger table and every rate a report
prints: a smoothed log-odds association of a feature with a label, a bootstrap interval of an accuracy drop,
Wilson's interval of a proportion, and the examples a paired comparison needs to see a drop."""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

from auditor.schemas.common import Rate


def log_odds(inside: int, outside: int, label_total: int, total: int, prior: float = 1.0) -> tuple[float, float]:
    """(δ, z) of a feature seen in ``inside`` examples of a label and ``outside`` examples of the others, when
    the label holds ``label_total`` of all ``total`` examples:

        δ = log((inside + α) / (outside + α)) − log(label_total / (total − label_total)),
        z = δ / sqrt(1/(inside + α) + 1/(outside + α)),

    with α = ``prior``; (0, 0) when every example, or none, has the label (no contrast to measure)."""
    if not label_total or label_total == total:
        return 0.0, 0.0
    delta = math.log((inside + prior) / (outside + prior)) - math.log(label_total / (total - label_total))
    return delta, delta / math.sqrt(1 / (inside + prior) + 1 / (outside + prior))


def bootstrap_drop(before: Sequence[bool], after: Sequence[bool], resamples: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval at ``level`` of mean(before) − mean(after) for paired per-example
    outcomes (the examples are resampled with replacement, each keeping its pair): the interval of an
    accuracy drop measured on the same examples."""
    if len(before) != len(after) or not len(before):
        raise ValueError("need as many outcomes after as before, and at least one")
    difference = np.asarray(before, dtype=float) - np.asarray(after, dtype=float)
    rng = np.random.default_rng(seed)
    means = difference[rng.integers(0, len(difference), size=(resamples, len(difference)))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def wilson(count: int, total: int, level: float = 0.95) -> Rate:
    """Wilson's score interval for a binomial proportion: (p̂ + z²/2n ± z·sqrt(p̂(1 − p̂)/n + z²/4n²)) / (1 + z²/n),
    z the normal quantile of (1 + level)/2; [0, 1] when total is 0."""
    if total == 0:
        return Rate(count=0, total=0, rate=None, low=0.0, high=1.0, level=level)
    z = NormalDist().inv_cdf((1 + level) / 2)
    p = count / total
    centre = p + z * z / (2 * total)
    spread = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    scale = 1 + z * z / total
    low = 0.0 if count == 0 else max(0.0, (centre - spread) / scale)  # exactly 0 and 1 at the ends, not 0 ± rounding
    high = 1.0 if count == total else min(1.0, (centre + spread) / scale)
    return Rate(count=count, total=total, rate=p, low=low, high=high, level=level)


def mcnemar_sample_size(discordant: float, drop: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Examples a paired comparison of two models on the same examples needs for McNemar's test at two-sided
    level ``alpha`` to detect an accuracy drop of ``drop`` with probability ``power``, when a share
    ``discordant`` of the examples change outcome between the models (Connor, Biometrics 1987):

        n = (z_{1−α/2}·sqrt(p_d) + z_{power}·sqrt(p_d − δ²))² / δ²,  p_d = ``discordant``, δ = ``drop``.

    The normal approximation; the exact test ``auditor diff`` runs is slightly more conservative."""
    if not 0 < drop <= discordant <= 1:
        raise ValueError("need 0 < drop <= discordant <= 1")
    z = NormalDist().inv_cdf
    return math.ceil((z(1 - alpha / 2) * math.sqrt(discordant) + z(power) * math.sqrt(discordant - drop * drop)) ** 2 / drop**2)
