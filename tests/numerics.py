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
from collections.abc import Iterator

EPS32 = 2.0**-23
"""One float32 ulp at 1.0 (float32 machine epsilon)."""


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
    """Pairs of corresponding leaves with the scale of each float (an array's floats: its largest entry);
    where the structures differ, the two values there as one pair."""
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
    than ``ulps`` (``ulps_apart`` with ``scale``; the floats of an array, an ``EncodedArray`` dump or a list of
    floats, on the scale of its largest entry), anything else by ``!=``. ``ulps=0`` asks for bit-equal floats."""
    lines = []
    for path, a, b, size in _leaves(got, expected, scale, ""):
        apart = _apart(a, b, size)
        if apart > ulps:
            lines.append(f"{path}: {a!r} != {b!r}" + (f" ({apart:.3g} ulps, allowed {ulps:g})" if math.isfinite(apart) else ""))
    return lines


def max_ulps(got: object, expected: object, scale: float = 1.0) -> float:
    """The largest float difference between two JSON-like values, in ulps (inf where anything else differs):
    what a comparison's tolerance is measured with."""
    return max((_apart(a, b, size) for _, a, b, size in _leaves(got, expected, scale, "")), default=0.0)


def assert_close(got: object, expected: object, ulps: float, scale: float = 1.0) -> None:
    """``differences`` is empty; the failure lists the paths (at most 20)."""
    found = differences(got, expected, ulps, scale)
    assert not found, f"{len(found)} differences:\n" + "\n".join(found[:20])
