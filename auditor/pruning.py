"""Physical pruning of attention heads (``prune_heads``), saved as a reloadable model.

Minimal version written by the serving work to the contract in the brief; the heads work supersedes it.
"""

from __future__ import annotations

import copy
from pathlib import Path

from auditor.errors import InputError
from auditor.models import Classifier

HeadSet = dict[int, list[int]]


def prune_model(classifier: Classifier, heads_to_remove: HeadSet, out_dir: Path | str) -> Path:
    """Remove ``heads_to_remove`` ({layer: [head, …]}) from a copy of the model with ``prune_heads`` and save
    it with its tokenizer to ``out_dir`` (``config.pruned_heads`` makes ``from_pretrained`` re-prune on load).
    InputError for a layer or head that does not exist, or a layer that would lose all its heads."""
    config = classifier.model.config
    layers, heads = config.num_hidden_layers, config.num_attention_heads
    already = {int(k): set(v) for k, v in (config.pruned_heads or {}).items()}
    cleaned: HeadSet = {}
    for layer, ids in heads_to_remove.items():
        if not 0 <= int(layer) < layers:
            raise InputError(f"layer {layer} does not exist: the model has layers 0…{layers - 1}")
        if any(not 0 <= int(head) < heads for head in ids):
            raise InputError(f"layer {layer}: heads are 0…{heads - 1}, got {sorted(ids)}")
        new = sorted({int(head) for head in ids} - already.get(int(layer), set()))
        if len(already.get(int(layer), set())) + len(new) >= heads:
            raise InputError(f"pruning would leave layer {layer} with no heads")
        if new:
            cleaned[int(layer)] = new
    pruned = copy.deepcopy(classifier.model)
    if cleaned:
        pruned.prune_heads(cleaned)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pruned.save_pretrained(out)
    classifier.tokenizer.save_pretrained(out)
    return out
