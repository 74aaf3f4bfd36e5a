"""Choose the invariance checks' two constants on TRAINING data only, and print the figures behind them.

1. The typo rate (``AuditSettings.typo_rate``): the largest rate of the grid at which the typos of the
   ``typos`` check stay an everyday perturbation, i.e. at most 3 words (the audit's default ``--max-words``, the most
   words any attack may edit) in 95 % of SST-2's training sentences (``Dataset.sentences``: its whole
   sentences, not the phrases of its parse trees). The typos per sentence follow the check's rule,
   round(rate × eligible words), at least one. RTE's training pairs (both texts) are printed beside it.
2. ``COMMON_WORD_COUNT`` (``auditor.invariance.entities``): in RTE's training pairs (cased text), a word
   of faker's first-name lists that is written in lower case inside a sentence somewhere is a common word,
   one always capitalised there is a name; the threshold on pyspellchecker's count with the best F1 at
   keeping the names and dropping the words.

    .venv/bin/python bench/tune_invariance.py

Measured (auditor 0.1.0, faker 40.63): typo rate 0.1 (SST-2 train sentences: 1.45 typos on average, 95th
percentile 3; RTE's longer pairs get 4.12 and 9) and COMMON_WORD_COUNT 10,000 (F1 0.975: 545 of 553 names
kept, 20 of 46 common words kept).
"""

from __future__ import annotations

import math
import re

import numpy as np

from auditor.data import load_dataset
from auditor.invariance.entities import name_lists
from auditor.triggers import word_spans
from auditor.validity import english_dictionary

RATES = (0.05, 0.1, 0.15, 0.2, 0.25)
THRESHOLDS = (1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000)


def eligible_words(texts: list[str]) -> int:
    return sum(1 for text in texts for a, b in word_spans(text) if len(text[a:b]) >= 3 and text[a:b].isalpha())


def typos_per_example(eligible: np.ndarray, rate: float) -> np.ndarray:
    return np.maximum(1, np.floor(rate * eligible + 0.5)) * (eligible > 0)


def typo_rate() -> float:
    limit = 3  # the audit's default --max-words: the most words any attack may edit
    sst2 = load_dataset("sst2", split="train").sentences()
    rte = load_dataset("rte", split="train")
    counts = {
        "sst2 train sentences": np.array([eligible_words([e.text]) for e in sst2.examples]),
        "rte train pairs": np.array([eligible_words([e.text, e.text_pair or ""]) for e in rte.examples]),
    }
    for name, eligible in counts.items():
        print(f"{name}: {len(eligible)} examples, eligible words median {np.median(eligible):g}, 95th percentile {np.percentile(eligible, 95):g}")
    print(f"\n| rate | {' | '.join(f'{n}: mean typos, 95th pct' for n in counts)} |")
    chosen = RATES[0]
    for rate in RATES:
        cells = []
        for name, eligible in counts.items():
            typos = typos_per_example(eligible, rate)
            cells.append(f"{typos.mean():.2f}, {np.percentile(typos, 95):g}")
        if np.percentile(typos_per_example(counts["sst2 train sentences"], rate), 95) <= limit:
            chosen = rate
        print(f"| {rate:g} | {' | '.join(cells)} |")
    print(f"\ntypo rate: {chosen:g} (the largest rate whose 95th percentile of typos per SST-2 training sentence is at most {limit})")
    return chosen


def common_word_count() -> int:
    first = name_lists().first
    capitalised: dict[str, int] = {}
    lower: dict[str, int] = {}
    for example in load_dataset("rte", split="train").examples:
        for text in (example.text, example.text_pair or ""):
            for sentence in re.split(r"[.!?]\s+", text):
                for word in re.findall(r"[A-Za-z]+", sentence)[1:]:  # not the sentence's first word
                    if word.lower() in first:
                        counts = capitalised if word[0].isupper() else lower
                        counts[word.lower()] = counts.get(word.lower(), 0) + 1
    words = set(capitalised) | set(lower)
    is_name = {w: w not in lower for w in words}
    frequency = english_dictionary().word_frequency.dictionary
    print(f"\nRTE train: {len(words)} first names of faker's lists inside sentences, {sum(is_name.values())} always capitalised (names)")
    print("| count threshold | names kept | words kept | names lost | F1 |")
    best, best_f1 = THRESHOLDS[0], -math.inf
    for threshold in THRESHOLDS:
        kept = {w for w in words if frequency.get(w, 0) < threshold}
        hits = sum(is_name[w] for w in kept)
        precision, recall = hits / max(1, len(kept)), hits / max(1, sum(is_name.values()))
        f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
        print(f"| {threshold:,} | {hits} | {len(kept) - hits} | {sum(is_name.values()) - hits} | {f1:.3f} |")
        if f1 > best_f1:
            best, best_f1 = threshold, f1
    print(f"\nCOMMON_WORD_COUNT: {best:,} (best F1)")
    return best


if __name__ == "__main__":
    typo_rate()
    common_word_count()
