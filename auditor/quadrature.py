"""Quadrature rules for path integrals over the scaling factor α ∈ [0, 1].

Every rule returns nodes α_k and weights w_k such that ∫₀¹ g(α) dα ≈ Σ_k w_k g(α_k).
The names follow Captum's ``method`` argument.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from auditor.errors import InputError

QuadratureMethod = Literal["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre"]
QUADRATURE_METHODS: tuple[str, ...] = get_args(QuadratureMethod)
MAX_STEPS = 256
"""The most integrand evaluations a rule may ask for: 3 Gauss–Legendre nodes already beat 20 Riemann steps on
the fixtures, and each step is a forward and backward pass through the layers above (memory and time grow with it)."""


def quadrature(method: QuadratureMethod, n_steps: int) -> tuple[list[float], list[float]]:
    """Nodes and weights of ``method`` with ``n_steps`` evaluations of the integrand.

    - ``riemann_left``: α_k = k/m, k = 0…m−1, w_k = 1/m (the rule of Hao et al.'s code, m = 20); error O(1/m).
    - ``riemann_right``: α_k = k/m, k = 1…m; ``riemann_middle``: α_k = (k + ½)/m; error O(1/m) and O(1/m²).
    - ``riemann_trapezoid``: α_k = k/(m−1), k = 0…m−1, end weights halved; error O(1/m²).
    - ``gausslegendre``: the m Gauss–Legendre nodes mapped to [0, 1]; exact for polynomials of degree 2m−1.
    """
    if method not in QUADRATURE_METHODS:
        raise InputError(f"unknown quadrature method {method!r}; choose one of {', '.join(QUADRATURE_METHODS)}")
    if not isinstance(n_steps, int) or isinstance(n_steps, bool) or not 1 <= n_steps <= MAX_STEPS:
        raise InputError(f"n_steps must be an integer from 1 to {MAX_STEPS}, got {n_steps!r}")
    m = n_steps
    if method == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(m)
        return ((x + 1.0) / 2.0).tolist(), (w / 2.0).tolist()
    if method == "riemann_trapezoid":
        if m < 2:
            raise InputError("riemann_trapezoid needs n_steps >= 2")
        alphas = [k / (m - 1) for k in range(m)]
        weights = [1.0 / (m - 1)] * m
        weights[0] = weights[-1] = 0.5 / (m - 1)
        return alphas, weights
    offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[method]
    return [(k + offset) / m for k in range(m)], [1.0 / m] * m
