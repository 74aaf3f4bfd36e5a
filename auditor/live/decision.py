"""The promotion decision: an anytime-valid confidence sequence on the disagreement rate, compared with the
operator's tolerance after every record without inflating the error (pure computation, no I/O)."""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import Enum

import numpy as np


class Decision(str, Enum):
    """What the records say about the candidate, with the exit status ``auditor live-report`` returns."""

    promote = "promote"
    roll_back = "roll back"
    keep_collecting = "keep collecting"

    @property
    def exit_code(self) -> int:
        return {"promote": 0, "roll back": 1, "keep collecting": 3}[self.value]


class BetaBinomialConfidenceSequence:
    """Time-uniform confidence sequence for the rate p of a Bernoulli stream (disagree = 1): the conjugate
    (beta-binomial) mixture of Robbins (1970), as in Howard et al. (2021, "Time-uniform, nonparametric,
    nonasymptotic confidence sequences", §3.4 and Prop. 6).

    After t records with S disagreements (F = t − S agreements), for each candidate rate p₀ the mixture of
    likelihood ratios over the prior p ~ Beta(a, b),

        M_t(p₀) = B(a + S, b + F) / B(a, b) / (p₀^S (1 − p₀)^F),

    is a non-negative martingale with M₀ = 1 when p = p₀, so by Ville's inequality P(∃t: M_t(p₀) ≥ 1/α) ≤ α.
    The confidence set C_t = {p₀ : M_t(p₀) < 1/α} therefore holds the true rate at every t at once with
    probability ≥ 1 − α: checking it after every record costs nothing. ln M_t(p₀) is convex in p₀ with its
    minimum at S/t, so C_t is an interval [low, high] around S/t.

    The prior has mean ``prior_mean`` and weight a + b = ``prior_strength`` (pseudo-records); centred on the
    tolerance it spends its power on rates near the decision.
    """

    def __init__(self, alpha: float = 0.05, prior_mean: float = 0.02, prior_strength: float = 10.0) -> None:
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
        if not 0 < prior_mean < 1 or prior_strength <= 0:
            raise ValueError("the prior needs a mean in (0, 1) and a positive strength")
        self.alpha = alpha
        self.a = prior_mean * prior_strength
        self.b = (1 - prior_mean) * prior_strength
        self.threshold = math.log(1 / alpha)

    def log_mixture(self, disagreements: int, records: int) -> float:
        """ln B(a + S, b + F) − ln B(a, b): the log marginal likelihood of the records under the prior."""
        s, f = disagreements, records - disagreements
        return _log_beta(self.a + s, self.b + f) - _log_beta(self.a, self.b)

    def log_wealth(self, disagreements: int, records: int, rate: float) -> float:
        """ln M_t(p₀) for p₀ = ``rate`` (0 < rate < 1)."""
        s, f = disagreements, records - disagreements
        return self.log_mixture(s, records) - s * math.log(rate) - f * math.log1p(-rate)

    def log_wealth_paths(self, streams: np.ndarray, rate: float) -> np.ndarray:
        """ln M_t(``rate``) after every record of each stream (rows of 0/1, one column per record), computed
        as running sums: B(a + S, b + F)/B(a, b) is the product of the prior predictive probabilities
        (a + S_{t−1})/(a + b + t − 1) of each disagreement and (b + F_{t−1})/(a + b + t − 1) of each agreement."""
        x = np.asarray(streams, dtype=bool)
        t = np.arange(x.shape[-1])
        s_before = np.cumsum(x, axis=-1) - x
        f_before = t - s_before
        predictive = np.where(x, self.a + s_before, self.b + f_before) / (self.a + self.b + t)
        null = np.where(x, math.log(rate), math.log1p(-rate))
        return np.cumsum(np.log(predictive) - null, axis=-1)

    def bounds(self, disagreements: int, records: int) -> tuple[float, float]:
        """The interval C_t = [low, high] after ``records`` records with ``disagreements`` disagreements
        (bisection to 1e-12 on each side of S/t); [0, 1] before any record."""
        if not 0 <= disagreements <= records:
            raise ValueError(f"{disagreements} disagreements out of {records} records")
        if records == 0:
            return 0.0, 1.0
        centre = disagreements / records

        def outside(rate: float) -> bool:
            return self.log_wealth(disagreements, records, rate) >= self.threshold

        low = 0.0 if disagreements == 0 or not outside(_TINY) else _bisect(outside, _TINY, centre)
        high = 1.0 if disagreements == records or not outside(1 - _TINY) else _bisect(outside, 1 - _TINY, centre)
        return low, high

    def decide(self, disagreements: int, records: int, tolerance: float) -> Decision:
        """Promote when the whole interval lies below ``tolerance`` (high < tolerance), roll back when it lies
        above (low > tolerance), else keep collecting. Evaluated after every record, a true rate ≥ tolerance is
        wrongly promoted with probability ≤ α, and a true rate ≤ tolerance wrongly rolled back with probability
        ≤ α (the interval misses the true rate at some time with probability ≤ α)."""
        low, high = self.bounds(disagreements, records)
        if high < tolerance:
            return Decision.promote
        if low > tolerance:
            return Decision.roll_back
        return Decision.keep_collecting

    def first_promotions(self, streams: np.ndarray, tolerance: float) -> np.ndarray:
        """For each stream (rows of 0/1), the number of records after which ``decide`` first says promote, or 0
        when it never does: promote ⇔ tolerance lies above S/t and outside C_t ⇔ S/t < tolerance and
        M_t(tolerance) ≥ 1/α (C_t is an interval around S/t), evaluated for every t at once."""
        x = np.asarray(streams, dtype=bool)
        records = np.arange(1, x.shape[-1] + 1)
        promoted = (self.log_wealth_paths(x, tolerance) >= self.threshold) & (np.cumsum(x, axis=-1) < tolerance * records)
        return np.where(promoted.any(axis=-1), promoted.argmax(axis=-1) + 1, 0)


_TINY = 1e-15


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _bisect(outside: Callable[[float], bool], out: float, inside: float, tolerance: float = 1e-12) -> float:
    """The boundary between ``out`` (where ``outside`` holds) and ``inside`` (where it does not)."""
    while abs(out - inside) > tolerance:
        middle = (out + inside) / 2
        if outside(middle):
            out = middle
        else:
            inside = middle
    return inside
