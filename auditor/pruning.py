"""Pruning attention heads by importance: global ranking into head sets, accuracy curves under head masks,
and physical pruning (``prune_heads``) saved as a reloadable model."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import torch

from auditor.encoders import UnsupportedModelError, encoder_for
from auditor.errors import InputError
from auditor.heads import LabelledBatch, accuracy, full_mask
from auditor.models import Classifier
from auditor.progress import progress
from auditor.schemas import CurvePoint, HeadImportance

HeadSet = dict[int, list[int]]
DEFAULT_FRACTIONS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(10))


def heads_for_fraction(fraction: float, present_heads: int) -> int:
    """How many heads ``fraction`` of ``present_heads`` is (rounded to the nearest); fraction must be in [0, 1)."""
    if not (isinstance(fraction, (int, float)) and 0.0 <= fraction < 1.0):
        raise InputError(f"the fraction of heads to prune must be in [0, 1), got {fraction}")
    return math.floor(fraction * present_heads + 0.5)


def rank_heads(scores: torch.Tensor, count: int, keep_per_layer: int = 1) -> HeadSet:
    """The ``count`` least important heads in one global ranking (ascending score, ties by layer then head),
    skipping any head whose removal would leave its layer with fewer than ``keep_per_layer`` heads.

    ``scores`` is (layers, heads) over original head indices, NaN for heads already pruned (never chosen,
    and not counted as remaining). Raises InputError when ``count`` heads cannot be removed under the rule.
    """
    if count < 0:
        raise InputError(f"the number of heads to prune must be non-negative, got {count}")
    if keep_per_layer < 0:
        raise InputError(f"keep_per_layer must be non-negative, got {keep_per_layer}")
    present = ~scores.isnan()
    remaining = present.sum(1).tolist()
    removable = sum(max(0, n - keep_per_layer) for n in remaining)
    if count > removable:
        rule = f" while keeping at least {keep_per_layer} head(s) per layer" if keep_per_layer else ""
        raise InputError(f"cannot prune {count} heads{rule}: only {removable} of the model's {int(present.sum())} heads can go")
    candidates = sorted((float(scores[l, h]), l, h) for l, h in present.nonzero().tolist())
    chosen: HeadSet = {}
    removed = 0
    for _, layer, head in candidates:
        if removed == count:
            break
        if remaining[layer] - 1 < keep_per_layer:
            continue
        remaining[layer] -= 1
        removed += 1
        chosen.setdefault(layer, []).append(head)
    return {layer: sorted(heads) for layer, heads in sorted(chosen.items())}


def rank_shared_heads(scores: torch.Tensor, count: int, groups: list[list[int]], keep_per_layer: int = 1) -> HeadSet:
    """``rank_heads`` for a model whose layers share weights in ``groups`` (lists of layer indices, all of one
    size k; ``EncoderClassifier.weight_groups``): a head goes from every layer of its group at once, ranked
    by its mean score over the group, so ``count`` heads (counted per layer, as in ``rank_heads``) are
    ``count // k`` heads of the shared weights, each removed k times. With one layer per group (no sharing)
    it is ``rank_heads``."""
    size = len(groups[0])
    if any(len(group) != size for group in groups):
        raise InputError("layer groups sharing weights must all have the same size")
    if size == 1:
        return rank_heads(scores, count, keep_per_layer)
    shared = torch.stack([scores[group].mean(0) for group in groups])
    chosen = rank_heads(shared, count // size, keep_per_layer)
    return {layer: heads for g, heads in chosen.items() for layer in groups[g]}


def mask_without(model: torch.nn.Module, heads: HeadSet) -> torch.Tensor:
    """The (layers, heads) head mask that removes ``heads`` (0) and keeps every other present head (1)."""
    mask = full_mask(model).nan_to_num(0.0)
    for layer, ids in heads.items():
        mask[layer, ids] = 0.0
    return mask


def pruning_curve(
    model: torch.nn.Module,
    batches: list[LabelledBatch],
    scores: torch.Tensor,
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS,
    keep_per_layer: int = 1,
    description: str = "curve",
    show_progress: bool = False,
) -> list[CurvePoint]:
    """Accuracy on ``batches`` after masking the k least important heads for each fraction (no model copies)."""
    present = int((~scores.isnan()).sum())
    counts = [heads_for_fraction(f, present) for f in fractions]
    points = []
    for fraction, count in progress(list(zip(fractions, counts)), f"{description}: accuracy per fraction pruned", show=show_progress):
        heads = rank_heads(scores, count, keep_per_layer)
        points.append(CurvePoint(fraction=fraction, heads_removed=count, accuracy=accuracy(model, batches, mask_without(model, heads))))
    return points


def check_importance_matches(importance: HeadImportance, classifier: Classifier) -> None:
    """Raise InputError unless ``importance`` was computed on ``classifier``'s weights."""
    theirs, ours = importance.model, classifier.identity
    if (theirs.weights_sha256, theirs.num_layers, theirs.num_heads) != (ours.weights_sha256, ours.num_layers, ours.num_heads):
        raise InputError(
            f"the importance file was computed on another model ({theirs.name}, weights {theirs.weights_sha256}); "
            f"this model is {ours.name}, weights {ours.weights_sha256}: recompute it with auditor heads"
        )


def prune_model(
    classifier: Classifier,
    heads_to_remove: HeadSet,
    out_dir: Path | str,
    metadata: dict | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Remove ``heads_to_remove`` ({layer: [original head index, …]}) from a copy of the model's weights with
    ``prune_heads`` and save it with its tokenizer to ``out_dir`` (``save_pretrained``; ``config.pruned_heads``
    makes ``from_pretrained`` re-prune on load), for families whose adapter can (``InputError`` naming the
    alternatives otherwise; ALBERT prunes its shared layer, so every layer sharing it must name the same
    heads). The classifier passed in is left unchanged. A layer may not lose all its heads: transformers'
    attention cannot run with none (``InputError`` naming the alternatives). ``metadata`` is written to
    ``pruning.json``. The weights are stored in ``dtype`` (default: the model's; pass
    ``auditor.serving.archive.checkpoint_dtype(source folder)`` to keep a float16 checkpoint float16)."""
    model = classifier.model
    encoder = encoder_for(model)
    layers, heads = encoder.num_layers, encoder.num_heads
    present = ~full_mask(model).isnan()
    cleaned: HeadSet = {}
    for layer, ids in heads_to_remove.items():
        if not 0 <= int(layer) < layers:
            raise InputError(f"layer {layer} does not exist: the model has layers 0…{layers - 1}")
        for head in ids:
            if not 0 <= int(head) < heads:
                raise InputError(f"head {head} of layer {layer} does not exist: layers have heads 0…{heads - 1}")
        new = sorted({int(h) for h in ids if present[int(layer), int(h)]})
        if new:
            cleaned[int(layer)] = new
        if int(present[int(layer)].sum()) - len(new) < 1:
            raise InputError(
                f"pruning would leave layer {layer} with no heads, and a layer without heads cannot run; keep at least "
                "one head per layer, or measure empty layers with head masks (auditor curves --allow-empty-layers)"
            )
    pruned = copy.deepcopy(model)
    if cleaned:
        try:
            encoder_for(pruned).prune_heads(pruned, cleaned)
        except UnsupportedModelError as error:
            raise InputError(str(error)) from None
    pruned.to(dtype or next(model.parameters()).dtype)  # prune_heads rebuilds the layers it prunes in float32
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pruned.save_pretrained(out)
    classifier.tokenizer.save_pretrained(out)
    record = {"source": classifier.identity.model_dump(), "removed": {str(k): v for k, v in cleaned.items()}, **(metadata or {})}
    (out / "pruning.json").write_text(json.dumps(record, indent=2) + "\n")
    return out


def plot_curves(curves: dict[str, list[CurvePoint]], path: Path | str, title: str = "") -> Path:
    """A PNG of accuracy vs fraction of heads pruned, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6.4, 4.4))
    for method, points in curves.items():
        axes.plot([p.fraction for p in points], [p.accuracy for p in points], marker="o", label=method)
    axes.set_xlabel("fraction of heads pruned")
    axes.set_ylabel("accuracy")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    pyplot.close(figure)
    return out
