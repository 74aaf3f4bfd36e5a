"""Comparing floats that two model objects, processes, backends or machines computed.

The same model on the same input need not give bit-equal float32 results twice: kernels are picked by CPU
(ATen's AVX-512, AVX2 and default paths, oneDNN, ONNX Runtime's MLAS) and summation order follows memory
layout and thread count. Tests that compare such results allow a few float32 ulps (``EPS32``, the spacing of
float32 numbers in [1, 2)), stated per test with its reason, and run under ``pytest -m numerics`` with
``ATEN_CPU_CAPABILITY=default`` and ``=avx2`` too. Exact equality stays only where one process runs the same
computation twice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np
import torch

EPS32 = 2.0**-23
"""One float32 ulp at 1.0 (float32 machine epsilon)."""

PREDICTION_ATOL = 1e-6
"""A served prediction (or a batched one, in either of two workers) against the model run here: another
process's or ONNX Runtime's float32 kernels differ from this one's in the last bits; about 8.4 ulps of 1."""

SERVED_ULPS = 840
"""What a TorchServe worker (or an audit through one) computed against the library in this process: the worker
batches and pads requests its own way on its own thread count, so float32 sums round in another order; 840
ulps (1e-4) of the value, at least of 1 (and of a matrix's largest entry). Tokens, labels, pairs, edges, outcomes and
texts must be equal."""


MINED_ULPS = 8
"""Patterns mined in other processes (a resumed run, Ray's actors): a pattern's mass and score sum the
normalised attribution of its edges over its supporting examples, each rounded by the kernel path of the
process that mined it. Measured between ``auditor mine`` runs under ATEN_CPU_CAPABILITY=default and =avx2
(48 examples): 0.9 ulps; 8 ulps of the value (at least 1). Words, counts and orders must be equal."""


def ulps_apart(got: float, expected: float, scale: float = 1.0) -> float:
    """|got − expected| in float32 ulps of max(|got|, |expected|, ``scale``).

    ``scale`` is the size of the terms the value was summed from (1 for a probability, the largest entry for
    an attribution matrix): a sum's rounding error follows its terms, not the sum, which may cancel to ~0."""
    if got == expected:  # also equal infinities
        return 0.0
    if math.isnan(got) or math.isnan(expected):
        return 0.0 if math.isnan(got) and math.isnan(expected) else math.inf
    return abs(got - expected) / (EPS32 * max(abs(got), abs(expected), scale))


def _floats(value: object) -> list[float] | None:
    """The entries of a (nested) list of floats only, an array; None for anything else."""
    if isinstance(value, float):
        return [value]
    if not isinstance(value, (list, tuple)) or not value:
        return None
    parts = [_floats(v) for v in value]
    return None if any(p is None for p in parts) else [x for p in parts for x in p]


def _leaves(got: object, expected: object, scale: float, path: str) -> Iterator[tuple[str, object, object, float]]:
    """Pairs of corresponding leaves with the scale of each float (for an array's floats, raised to its largest
    entry); where the structures differ, the two values there as one pair."""
    if isinstance(expected, dict) and set(expected) == {"dtype", "shape", "data"} and isinstance(got, dict) and got.keys() == expected.keys():
        from auditor.schemas.explanations import EncodedArray  # a float32 array dumped as base64

        got, expected = EncodedArray(**got).to_numpy().tolist(), EncodedArray(**expected).to_numpy().tolist()
    if isinstance(expected, dict) and isinstance(got, dict) and got.keys() == expected.keys():
        for key in expected:
            yield from _leaves(got[key], expected[key], scale, f"{path}.{key}")
    elif isinstance(expected, (list, tuple)) and isinstance(got, (list, tuple)) and len(got) == len(expected):
        entries = _floats(expected)
        inner = max(scale, *map(abs, entries)) if entries else scale
        for index, (a, b) in enumerate(zip(got, expected)):
            yield from _leaves(a, b, inner, f"{path}[{index}]")
    else:
        yield path, got, expected, scale


def _apart(got: object, expected: object, scale: float) -> float:
    """ulps_apart for two numbers (one at least a float); inf for other unequal values."""
    numbers = all(isinstance(v, (float, int)) and not isinstance(v, bool) for v in (got, expected))
    if numbers and (isinstance(got, float) or isinstance(expected, float)):
        return ulps_apart(float(got), float(expected), scale)
    return 0.0 if got == expected else math.inf


def differences(got: object, expected: object, ulps: float, scale: float = 1.0) -> list[str]:
    """Where two JSON-like values (``model_dump()``s, parsed answers) differ, one line per path: floats by more
    than ``ulps`` (``ulps_apart`` with ``scale``, raised for the floats of an array, an ``EncodedArray`` dump or
    a list of floats, to its largest entry), anything else by ``!=``. ``ulps=0`` asks for bit-equal floats."""
    lines = []
    for path, a, b, size in _leaves(got, expected, scale, ""):
        apart = _apart(a, b, size)
        if apart > ulps:
            lines.append(f"{path}: {a!r} != {b!r}" + (f" ({apart:.3g} ulps, allowed {ulps:g})" if math.isfinite(apart) else ""))
    return lines


def argmax_margins(scores: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Per row, the gap between its two largest scores: an argmax that two computations agreeing to ``t``
    both take (an accuracy, a label, an attack's flip) is the same on any CPU when the gap exceeds 2·t."""
    top = torch.as_tensor(scores).topk(2, dim=-1).values
    return top[..., 0] - top[..., 1]


def logit_margins(model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]]) -> torch.Tensor:
    """``argmax_margins`` of ``model``'s logits on ``batches``."""
    with torch.no_grad():
        return argmax_margins(torch.cat([model(**batch).logits for batch in batches]))


def assert_close(got: object, expected: object, ulps: float, scale: float = 1.0) -> None:
    """``differences`` is empty; the failure lists the paths (at most 20)."""
    found = differences(got, expected, ulps, scale)
    assert not found, f"{len(found)} differences:\n" + "\n".join(found[:20])
