"""Why the two models disagree: the stored-text disagreements explained by both, side by side, with the
token pairs whose attribution changed most and the pruned heads that carried attribution in the full model.
The attribution is ``auditor.explain``'s; this module only pairs the two explanations."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from auditor.errors import InputError
from auditor.explain import explain_batch
from auditor.models import Classifier, weights_digest
from auditor.schemas import ExplanationOptions
from auditor.schemas.explanations import Explanation
from auditor.schemas.live import ComparisonRecord, DisagreementExplanation, PairChange, PrunedHead, ServedModelRef, Side


def check_model_folder(served: ServedModelRef, folder: Path, side: Side) -> None:
    """InputError unless the saved model in ``folder`` has the weights digest the records name for ``side``."""
    if not (Path(folder) / "config.json").is_file():
        raise InputError(f"--{side}-model {folder}: not a saved model (no config.json)")
    digest = weights_digest(Path(folder))
    if digest != served.weights_sha256:
        raise InputError(
            f"--{side}-model {folder} has weights {digest}, but the records' {side} model {served.label()} has "
            f"{served.weights_sha256}: give the folder of the model that was served"
        )


def abs_delta_p(record: ComparisonRecord) -> float:
    """|p_shadow(c) − p_primary(c)|, c the primary's predicted class."""
    c = int(np.argmax(record.primary_probabilities))
    return abs(record.shadow_probabilities[c] - record.primary_probabilities[c])


def pruned_head_count(classifier: Classifier) -> int:
    return sum(len(heads) for heads in classifier.identity.pruned_heads.values())


def explain_disagreements(
    records: Sequence[ComparisonRecord],
    primary: Classifier,
    shadow: Classifier,
    top: int = 5,
    pairs: int = 8,
    heads: int = 8,
    steps: int = 3,
) -> list[DisagreementExplanation]:
    """The ``top`` disagreements with stored text, largest |Δp| first, each explained by both models for the
    full model's answer (the full model: the one with fewer heads pruned; the primary when equal). For each,
    the ``pairs`` (layer, query, key) entries whose head-summed attribution Σ_h Attr_h changed most from the
    full to the pruned model, and the ``heads`` heads the pruned model lacks with the largest |Σ_{i,j} Attr_h|
    in the full model."""
    chosen = sorted((r for r in records if r.primary_label != r.shadow_label and r.text is not None), key=abs_delta_p, reverse=True)[:top]
    if not chosen:
        return []
    full_side: Side = "shadow" if pruned_head_count(shadow) < pruned_head_count(primary) else "primary"
    full, pruned = (shadow, primary) if full_side == "shadow" else (primary, shadow)
    if full.labels != pruned.labels:
        raise InputError(f"the models have different labels: {primary.labels} (primary) and {shadow.labels} (shadow)")
    results = []
    for record in chosen:
        answer = getattr(record, f"{full_side}_label")
        if answer not in full.labels:
            raise InputError(f"the records' label {answer!r} is none of the model's labels {full.labels}")
        options = ExplanationOptions(target=full.labels.index(answer), steps=steps, top_k=0, include_matrices=True, include_tree=False)
        texts, text_pairs = [record.text], [record.text_pair]
        (full_explanation,) = explain_batch(full, texts, text_pairs, options, truncate=True)
        (pruned_explanation,) = explain_batch(pruned, texts, text_pairs, options, truncate=True)
        results.append(
            DisagreementExplanation(
                ts=record.ts, input_sha256=record.input_sha256, text=record.text, text_pair=record.text_pair,
                primary_label=record.primary_label, shadow_label=record.shadow_label, abs_delta_p=abs_delta_p(record),
                full_side=full_side, target_label=answer, full_probability=full_explanation.target_probability,
                pruned_probability=pruned_explanation.target_probability,
                pair_changes=pair_changes(full_explanation, pruned_explanation, pairs),
                pruned_heads=pruned_heads(full_explanation, pruned_explanation, heads),
            )  # fmt: skip
        )
    return results


def pair_changes(full: Explanation, pruned: Explanation, count: int) -> list[PairChange]:
    """The ``count`` (layer, query, key) entries with the largest |Σ_h Attr_h(pruned) − Σ_h Attr_h(full)|."""
    entries = []
    for full_layer, pruned_layer in zip(full.layers, pruned.layers):
        before = full_layer.matrices.to_numpy().astype(np.float64).sum(0)
        after = pruned_layer.matrices.to_numpy().astype(np.float64).sum(0)
        change = after - before
        for index in np.argsort(-np.abs(change), axis=None)[:count]:
            query, key = (int(i) for i in np.unravel_index(index, change.shape))
            entries.append(
                PairChange(
                    layer=full_layer.layer, query_index=query, key_index=key, query_token=full.tokens[query],
                    key_token=full.tokens[key], full=float(before[query, key]), pruned=float(after[query, key]),
                    change=float(change[query, key]),
                )  # fmt: skip
            )
    return sorted(entries, key=lambda entry: abs(entry.change), reverse=True)[:count]


def pruned_heads(full: Explanation, pruned: Explanation, count: int) -> list[PrunedHead]:
    """The ``count`` heads of the full model absent from the pruned one with the largest |Σ_{i,j} Attr_h|."""
    carried = []
    for full_layer, pruned_layer in zip(full.layers, pruned.layers):
        kept = set(pruned_layer.head_ids)
        matrices = full_layer.matrices.to_numpy().astype(np.float64)
        for position, head in enumerate(full_layer.head_ids):
            if head not in kept:
                carried.append(PrunedHead(layer=full_layer.layer, head=head, attribution=float(matrices[position].sum())))
    return sorted(carried, key=lambda head: abs(head.attribution), reverse=True)[:count]
