"""Invariance checks: each perturbation run on the audited examples, the model's predictions on the
original and the perturbed texts compared, and the flips summarised with a Wilson interval
(``InvarianceCheck``). The model is anything that maps TextAttack inputs to class probabilities (every
``auditor.victims.Victim``: a local model, an ONNX graph or an endpoint)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence

import numpy as np

from auditor.data import Example
from auditor.invariance.contractions import ContractionsContracted, ContractionsExpanded
from auditor.invariance.entities import LocationSwap, NameSwap
from auditor.invariance.perturbations import LowerCase, Perturbation, PunctuationAdded, PunctuationRemoved, Typos, UpperCase
from auditor.schemas.invariance import MIN_APPLIED, CheckName, InvarianceCheck, InvarianceOutcome
from auditor.statistics import wilson
from auditor.validity import Reader

TextInput = str | tuple[str, ...]
Predict = Callable[[Sequence[TextInput]], np.ndarray]
"""Class probabilities (inputs × classes) for TextAttack inputs: a text, or a (text, text pair) tuple."""
Progress = Callable[[str, int, int], None]

CHECKS: dict[CheckName, Callable[[float], Perturbation]] = {
    "typos": Typos,
    "lowercase": lambda _: LowerCase(),
    "uppercase": lambda _: UpperCase(),
    "punctuation-removed": lambda _: PunctuationRemoved(),
    "punctuation-added": lambda _: PunctuationAdded(),
    "contractions-expanded": lambda _: ContractionsExpanded(),
    "contractions-contracted": lambda _: ContractionsContracted(),
    "names": lambda _: NameSwap(),
    "locations": lambda _: LocationSwap(),
}
"""Check name -> its perturbation, given the typo rate (in ``CHECK_NAMES`` order)."""
FLIP_EXAMPLES = 3


def perturbations(names: Sequence[str], typo_rate: float, reader: Reader | None = None) -> list[Perturbation]:
    """The perturbations of the checks ``names`` (keys of ``CHECKS``), in that order; ``reader`` judges the
    typos (the audit's, with its training vocabulary)."""
    return [Typos(typo_rate, reader) if name == "typos" else CHECKS[name](typo_rate) for name in names]


def example_rng(seed: int, check: str, example: Example) -> random.Random:
    """The random generator of one check on one example: from the seed, the check and the example's id
    alone, so an example is perturbed alike in any order, subset or process."""
    return random.Random(f"{seed}:{check}:{example.id}")


def _input(texts: tuple[str, ...]) -> TextInput:
    return texts[0] if len(texts) == 1 else texts


def _texts(example: Example) -> tuple[str, ...]:
    return (example.text,) if example.text_pair is None else (example.text, example.text_pair)


def summarise_check(perturbation: Perturbation, outcomes: list[InvarianceOutcome], seconds: float) -> InvarianceCheck:
    """Flips over the examples the check applied to, with Wilson's interval; no rate under ``MIN_APPLIED``."""
    flips = [o for o in outcomes if o.flipped]
    enough = len(outcomes) >= MIN_APPLIED
    return InvarianceCheck(
        name=perturbation.name,
        description=perturbation.description,
        applied=len(outcomes),
        flips=len(flips),
        flip_rate=wilson(len(flips), len(outcomes)) if enough else None,
        note=None if enough else f"applied to {len(outcomes)} examples, fewer than {MIN_APPLIED}: no rate",
        flip_examples=flips[:FLIP_EXAMPLES],
        outcomes=outcomes,
        seconds=seconds,
    )


def run_checks(
    predict: Predict, examples: Sequence[Example], checks: Sequence[Perturbation], seed: int, progress: Progress | None = None
) -> list[InvarianceCheck]:
    """Every check on ``examples``: the originals are classified once, then each check's perturbed texts
    (only those it changed) in one call; an example's reference is the model's prediction on its original."""
    if not checks:
        return []
    texts = [_texts(e) for e in examples]
    original = np.asarray(predict([_input(t) for t in texts])).argmax(axis=1)
    results = []
    for done, check in enumerate(checks, start=1):
        started = time.perf_counter()
        changed = []
        for index, (example, before) in enumerate(zip(examples, texts)):
            after = check.perturb(before, example_rng(seed, check.name, example))
            if after != before:
                changed.append((index, example, after))
        predicted = np.asarray(predict([_input(after) for _, _, after in changed])).argmax(axis=1) if changed else []
        outcomes = [
            InvarianceOutcome(
                index=index,
                example_id=example.id,
                label=int(example.label) if example.label is not None else int(original[index]),
                text=example.text,
                text_pair=example.text_pair,
                perturbed_text=after[0],
                perturbed_text_pair=after[1] if len(after) > 1 else None,
                original_prediction=int(original[index]),
                perturbed_prediction=int(label),
            )
            for (index, example, after), label in zip(changed, predicted)
        ]
        results.append(summarise_check(check, outcomes, time.perf_counter() - started))
        if progress:
            progress("invariance", done, len(checks))
    return results
