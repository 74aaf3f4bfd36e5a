"""The causal check of an audit's successes (issue 33): are the heads implicated in the flips the heads that
carry them? Mask them, re-run each success's adversarial text, and count the flips undone, beside k random
heads and the k heads attribution-based pruning removes first, with what each mask costs on clean examples;
then the pruning advice drawn from those numbers. Pure computation on the victim's PyTorch weights.

Masking a head scales its context vector A_h V_h by 0 (``auditor.heads.head_mask``): the model computes
exactly what the model with that head pruned (``prune_heads``) computes, so the rows measure pruning.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from auditor.encoders import encoder_for
from auditor.errors import InputError
from auditor.heads import full_mask, model_inputs, scores_tensor
from auditor.models import Classifier
from auditor.pruning import check_importance_matches, rank_heads
from auditor.report import head_names, interval
from auditor.schemas import Advice, AdviceMeasure, AttackOutcome, CausalCheck, CausalRow, CleanDifference, HeadImportance, HeadSelection
from auditor.statistics import bootstrap_drop, wilson

Head = tuple[int, int]

DEFAULT_K = 3
"""Heads masked for the advice: 3 of MiniLM's 72 (4 %), few enough that the clean examples barely change
under any set of that size (the measured cost, README), so a flip undone is the heads' doing and not a
broken model's; ``DEFAULT_SIZES`` shows how the rows grow with k."""

DEFAULT_SIZES: tuple[int, ...] = (1, 3, 5)
DEFAULT_DRAWS = 5
"""Random head sets per size; odd, so the median draw is one of them."""

MAX_CLEAN_COST = 0.02
"""Pruning the implicated heads helps only if it costs at most this much clean accuracy more than the
attribution-pruned model of the same size, at the upper bound of the paired 95 % interval (2 points: what
pruning work calls keeping accuracy)."""


class MaskedPredictor:
    """arg max_c logits_c(x; ξ) for fixed texts x under head masks ξ ∈ {0, 1}^(layers × heads): the texts are
    tokenized once (truncated as the victim truncates them), in batches of similar length, and each mask is
    one pass over them."""

    def __init__(self, classifier: Classifier, texts: Sequence[str], text_pairs: Sequence[str | None], batch_size: int = 32) -> None:
        self.classifier = classifier
        self.size = len(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]) + len(text_pairs[i] or ""))
        self.batches = []
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            pairs = None if text_pairs[chosen[0]] is None else [text_pairs[i] for i in chosen]
            self.batches.append((chosen, classifier.encode([texts[i] for i in chosen], pairs, truncate=True)))

    def predict(self, mask: torch.Tensor) -> np.ndarray:
        """The predicted class of every text, in the order given, under ``mask`` ((layers, heads), original indices)."""
        model = self.classifier.model
        encoder = encoder_for(model)
        predicted = np.zeros(self.size, dtype=np.int64)
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode(), encoder.scale_heads(mask.to(self.classifier.device)):
                for chosen, encoding in self.batches:
                    predicted[chosen] = encoder.run(**model_inputs(encoding)).logits.argmax(-1).cpu().numpy()
        finally:
            model.train(was_training)
        return predicted


def present_heads(model: torch.nn.Module) -> list[Head]:
    """Every (layer, original head index) the model still has, in layer then head order."""
    return [(layer, head) for layer, head in (~full_mask(model).isnan()).nonzero().tolist()]


def mask_of(model: torch.nn.Module, heads: Sequence[Head]) -> torch.Tensor:
    """The (layers, heads) mask that scales ``heads`` by 0 and keeps every other present head."""
    mask = full_mask(model).nan_to_num(0.0)
    for layer, head in heads:
        mask[layer, head] = 0.0
    return mask


def random_heads(present: Sequence[Head], k: int, seed: int, draw: int) -> list[Head]:
    """``k`` distinct heads of ``present`` drawn uniformly (numpy's generator seeded with (seed, k, draw):
    the same heads whatever other sizes or draws are asked for)."""
    chosen = np.random.default_rng([seed, k, draw]).choice(len(present), size=k, replace=False)
    return sorted(present[int(i)] for i in chosen)


def pruning_heads(importance: HeadImportance, k: int) -> list[Head]:
    """The ``k`` heads attribution-based pruning removes first: ``rank_heads`` (lowest importance first, every
    layer keeping a head, as ``auditor prune`` does) on the importance scores."""
    chosen = rank_heads(scores_tensor(importance), k, keep_per_layer=1)
    return [(layer, head) for layer, heads in chosen.items() for head in heads]


def checked_implicated(implicated: Sequence[Head], present: Sequence[Head], k: int) -> list[Head]:
    """The ranking of implicated heads, checked: heads the model has, each once, at least ``k`` of them."""
    ranked = [(int(layer), int(head)) for layer, head in implicated]
    missing = [head for head in ranked if head not in set(present)]
    if missing:
        raise InputError(f"implicated head {missing[0]} (layer, head) is not a head of the model")
    if len(set(ranked)) != len(ranked):
        raise InputError("the ranking of implicated heads names a head twice")
    if len(ranked) < k:
        raise InputError(f"the causal check masks {k} implicated heads, but the ranking has {len(ranked)}")
    return ranked


def causal_check(
    classifier: Classifier,
    outcomes: Sequence[AttackOutcome],
    implicated: Sequence[Head],
    importance: HeadImportance,
    attack: str,
    k: int = DEFAULT_K,
    sizes: Sequence[int] = DEFAULT_SIZES,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
    batch_size: int = 32,
) -> CausalCheck:
    """Mask heads of ``classifier`` (the victim's PyTorch weights) against the successes of one attack.

    ``outcomes``: every outcome of the attack named ``attack`` (one per audited example: the successes, and
    the clean examples with their reference labels); ``implicated``: (layer, head) pairs, most implicated
    first; ``importance``: the attribution importance of ``classifier``'s heads on training examples
    (``auditor.heads.compute_importance(..., "attribution", ...)``). For each size in ``sizes`` and ``k``,
    three rows (``CausalRow``; sizes beyond the ranking's length are left out): the first k implicated heads, ``draws`` seeded random sets of k (the median
    draw), and the k heads attribution-based pruning removes first. With u_i(ξ) = [arg max f(x̃_i; ξ) = ŷ_i],
    x̃_i a success's adversarial text and ŷ_i the victim's prediction on its original text, a row's
    ``undone`` is Σ_i u_i(ξ) over the successes the unmasked model reproduces (arg max f(x̃_i; 1) ≠ ŷ_i).
    ``clean_difference`` compares the clean accuracy of the two non-random rows of size ``k``.

    An endpoint victim has no weights to mask: the caller skips the check (and says so) rather than calling it.
    """
    started = time.perf_counter()
    if importance.method != "attribution":
        raise InputError(f"the causal check ranks pruning by attribution importance, not {importance.method}")
    check_importance_matches(importance, classifier)
    if k < 1:
        raise InputError(f"the causal check needs at least one head to mask, got k = {k}")
    if draws < 1:
        raise InputError(f"the causal check needs at least one random draw, got {draws}")
    if any(size < 0 for size in sizes):
        raise InputError("head counts to mask must be non-negative")
    if not outcomes:
        raise InputError("the causal check needs the attack's outcomes, got none")
    present = present_heads(classifier.model)
    ranked = checked_implicated(implicated, present, k)
    all_sizes = sorted({size for size in sizes if size <= len(ranked)} | {k})

    successes = [o for o in outcomes if o.status == "succeeded"]
    adversarial = MaskedPredictor(classifier, [o.perturbed_text for o in successes], [o.perturbed_text_pair for o in successes], batch_size)
    clean = MaskedPredictor(classifier, [o.text for o in outcomes], [o.text_pair for o in outcomes], batch_size)
    original = np.array([o.original_prediction for o in successes], dtype=np.int64)
    labels = np.array([o.label for o in outcomes], dtype=np.int64)
    unmasked = mask_of(classifier.model, [])
    reproduced = adversarial.predict(unmasked) != original
    clean_right = clean.predict(unmasked) == labels

    def measure(selection: HeadSelection, heads: list[Head]) -> tuple[CausalRow, np.ndarray]:
        mask = mask_of(classifier.model, heads)
        undone = (adversarial.predict(mask) == original) & reproduced
        right = clean.predict(mask) == labels
        row = CausalRow(
            selection=selection,
            k=len(heads),
            heads=heads,
            undone=wilson(int(undone.sum()), int(reproduced.sum())),
            clean_broken=wilson(int((clean_right & ~right).sum()), int(clean_right.sum())),
            clean_accuracy=wilson(int(right.sum()), len(right)),
        )
        return row, right

    rows: list[CausalRow] = []
    clean_outcomes: dict[tuple[HeadSelection, int], np.ndarray] = {}
    for size in all_sizes:
        for selection, heads in (("implicated", ranked[:size]), ("attribution-pruning", pruning_heads(importance, size))):
            row, right = measure(selection, heads)
            rows.append(row)
            clean_outcomes[selection, size] = right
        drawn = [measure("random", random_heads(present, size, seed, draw))[0] for draw in range(draws)]
        order = sorted(range(draws), key=lambda d: (drawn[d].undone.count, drawn[d].clean_broken.count, d))
        median = drawn[order[(draws - 1) // 2]]
        rows.append(median.model_copy(update={"draws": draws, "draws_undone": [r.undone.count for r in drawn]}))
    order_of: dict[HeadSelection, int] = {"implicated": 0, "random": 1, "attribution-pruning": 2}
    rows.sort(key=lambda r: (r.k, order_of[r.selection]))

    pruned, kept = clean_outcomes["attribution-pruning", k], clean_outcomes["implicated", k]
    low, high = bootstrap_drop(pruned.tolist(), kept.tolist(), seed=seed)
    return CausalCheck(
        attack=attack,
        successes=len(successes),
        reproduced=int(reproduced.sum()),
        examples=len(outcomes),
        clean_accuracy=wilson(int(clean_right.sum()), len(clean_right)),
        k=k,
        sizes=all_sizes,
        draws=draws,
        seed=seed,
        importance=importance.examples,
        rows=rows,
        clean_difference=CleanDifference(k=k, value=float(pruned.mean() - kept.mean()), low=low, high=high),
        seconds=round(time.perf_counter() - started, 3),
    )


def prune_advice(check: CausalCheck) -> Advice:
    """Whether pruning the ``check.k`` most implicated heads is a defence, decided from the check: it **helps**
    when (1) it undoes more flips than pruning the same number of heads by attribution importance, the two
    95 % Wilson intervals apart (implicated low > attribution-pruning high), and (2) its clean accuracy is at
    most ``MAX_CLEAN_COST`` below that model's at the upper bound of the paired 95 % interval. The line
    says which condition failed otherwise. Both models are scored on the same adversarial texts (no new
    attack against the pruned model)."""
    implicated, pruned, difference = check.row("implicated"), check.row("attribution-pruning"), check.clean_difference
    measures = [
        AdviceMeasure(name=f"successes undone by pruning the {check.k} most implicated heads", rate=implicated.undone),
        AdviceMeasure(name=f"successes undone by pruning the {check.k} heads attribution pruning removes first", rate=pruned.undone),
        AdviceMeasure(name="clean accuracy with the implicated heads pruned", rate=implicated.clean_accuracy),
        AdviceMeasure(name="clean accuracy of the attribution-pruned model", rate=pruned.clean_accuracy),
        AdviceMeasure(
            name="clean accuracy lost against the attribution-pruned model (paired)", value=difference.value, low=difference.low, high=difference.high
        ),
    ]
    if not check.reproduced:
        line = f"Pruning the implicated heads cannot be judged: the {check.attack} attack left no success to undo."
        return Advice(defence="prune-implicated", helps=False, line=line, measures=measures)
    more_undone = implicated.undone.low > pruned.undone.high
    cheap = difference.high <= MAX_CLEAN_COST
    helps = more_undone and cheap
    if helps:
        verdict = "so it helps"
    elif not more_undone:
        verdict = "so it does not help (its interval of flips undone does not lie above theirs)"
    else:
        verdict = f"so it does not help (it may cost up to {100 * difference.high:.1f} points more clean accuracy; limit {100 * MAX_CLEAN_COST:.0f})"
    line = (
        f"Pruning the {check.k} most implicated heads ({head_names(implicated.heads)}) undoes {implicated.undone.count} of "
        f"{implicated.undone.total} flips of the {check.attack} attack ({interval(implicated.undone)}) against {pruned.undone.count} "
        f"({interval(pruned.undone)}) for the {check.k} heads attribution pruning removes first, at a clean accuracy of "
        f"{interval(implicated.clean_accuracy)} against {interval(pruned.clean_accuracy)} (it costs "
        f"{100 * difference.value:+.1f} points more, paired 95 % interval [{100 * difference.low:+.1f}, {100 * difference.high:+.1f}]), {verdict}."
    )
    return Advice(defence="prune-implicated", helps=helps, line=line, measures=measures)
