"""Which rows of a file become examples: the first N in order, or a seeded random sample of N, read in one
pass that holds at most N rows; texts repeated in the rows read are kept once."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from auditor.data.examples import Duplicate, Example

Item = TypeVar("Item")
MASK = (1 << 64) - 1


@dataclass(frozen=True)
class RowSelection:
    """The first ``count`` rows (every row when None), or with ``seed`` a random sample of ``count`` rows."""

    count: int | None = None
    seed: int | None = None


def sample_key(seed: int, index: int) -> int:
    """The sample key of row ``index`` (0-based): SplitMix64 of (seed, index), a function of the two alone.

    A seeded sample of N rows is the N rows with the smallest keys (bottom-k sampling), in increasing key
    order: every format of the same rows gives the same sample, a stream is read once holding N rows, and
    the first k examples of a sample of N are the sample of k."""
    z = (seed * 0x9E3779B97F4A7C15 + (index + 1) * 0xD1B54A32D192ED03) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def select_examples(
    rows: Iterable[tuple[int, str, Item]],
    convert: Callable[[Item, str], Example],
    selection: RowSelection,
    keep_duplicates: bool = False,
) -> tuple[list[Example], list[Duplicate]]:
    """The examples of the rows ``selection`` picks from ``rows`` (row index, place, raw row), each converted
    (and checked) by ``convert``. A row whose text and pair an earlier kept row has is left out and listed
    (unless ``keep_duplicates``); the first N rows are read until N distinct examples are kept, and no further."""
    if selection.seed is None:
        picked: Iterable[tuple[int, str, Item]] = rows
    else:
        count = selection.count if selection.count is not None else 2**62
        heap: list[tuple[int, int, str, Item]] = []  # (-key, index, place, row): the rows of smallest key so far
        for index, place, row in rows:
            key = sample_key(selection.seed, index)
            if len(heap) < count:
                heapq.heappush(heap, (-key, index, place, row))
            elif key < -heap[0][0]:
                heapq.heapreplace(heap, (-key, index, place, row))
        picked = [(index, place, row) for _, index, place, row in sorted(heap, key=lambda entry: (-entry[0], entry[1]))]
    kept: list[Example] = []
    first: dict[tuple[str, str | None], str] = {}
    duplicates: list[Duplicate] = []
    for _, place, row in picked:
        example = convert(row, place)
        key = (example.text, example.text_pair)
        if key in first and not keep_duplicates:
            duplicates.append(Duplicate(place, first[key]))
            continue
        first.setdefault(key, place)
        kept.append(example)
        if selection.seed is None and selection.count is not None and len(kept) == selection.count:
            break
    return kept, duplicates
