"""Explanations of single predictions: self-attention attribution summarised per layer, plus the attribution tree."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import torch

from auditor.attribution import ExampleAttribution, SelfAttentionAttribution
from auditor.encoders import encoder_for
from auditor.errors import InputError
from auditor.models import Classifier, check_inputs_have_tokens
from auditor.schemas import (
    AttributionTree,
    EncodedArray,
    Explanation,
    ExplanationOptions,
    LayerExplanation,
    Prediction,
    TokenPair,
    TreeEdge,
    TreeNode,
    WordImportance,
)
from auditor.tree import attribution_tree, node_id
from auditor.triggers import word_spans

Progress = Callable[[int], object]
"""Called with the number of inputs finished after each batch (``tqdm.update`` fits)."""


def explain(
    classifier: Classifier,
    text: str,
    text_pair: str | None = None,
    options: ExplanationOptions | None = None,
    truncate: bool = False,
    after_pass: Callable[[], object] | None = None,
) -> Explanation:
    """Explain the classifier's prediction for one text (or sentence pair); see ``explain_batch``."""
    return explain_batch(classifier, [text], None if text_pair is None else [text_pair], options, truncate, after_pass=after_pass)[0]


def explain_batch(
    classifier: Classifier,
    texts: Sequence[str],
    text_pairs: Sequence[str | None] | None = None,
    options: ExplanationOptions | None = None,
    truncate: bool = False,
    batch_size: int = 8,
    progress: Progress | None = None,
    after_pass: Callable[[], object] | None = None,
) -> list[Explanation]:
    """Explain many inputs, ``batch_size`` at a time, each batch one call of ``SelfAttentionAttribution``
    (``after_pass``: see ``SelfAttentionAttribution.attribute``).

    Raises InputError for an empty or over-long text (unless ``truncate``), a target that is not a class
    index, or layers outside the model. Inputs longer than the model's limit are cut when ``truncate`` is set.
    """
    options = options or ExplanationOptions()
    if batch_size < 1:
        raise InputError(f"batch size must be positive, got {batch_size}")
    layers = validate_layers(options.layers, classifier.identity.num_layers)
    target = validate_target(options.target, classifier.labels)
    if not texts:
        raise InputError("no input text given")
    pairs = list(text_pairs) if text_pairs is not None else [None] * len(texts)
    if len(pairs) != len(texts):
        raise InputError(f"{len(texts)} texts but {len(pairs)} text pairs")
    check_inputs_have_tokens(classifier.tokenizer, texts, pairs)
    attributor = SelfAttentionAttribution(classifier.model)
    explanations: list[Explanation] = []
    for start in range(0, len(texts), batch_size):
        batch_texts, batch_pairs = texts[start : start + batch_size], pairs[start : start + batch_size]
        paired = any(pair is not None for pair in batch_pairs)
        encoding = classifier.encode(batch_texts, batch_pairs if paired else None, truncate=truncate)
        results = attributor.attribute(
            encoding["input_ids"],
            encoding["attention_mask"],
            encoding.get("token_type_ids"),
            target=target,
            n_steps=options.steps,
            method=options.method,
            layers=layers,
            after_pass=after_pass,
        )
        for text, pair, result in zip(batch_texts, batch_pairs, results):
            explanations.append(summarise(classifier, text, pair, result, options))
        if progress is not None:
            progress(len(batch_texts))
    return explanations


def validate_layers(layers: Sequence[int] | None, num_layers: int) -> list[int] | None:
    """The requested encoder layers, sorted without repeats, a negative index counting from the last (−1 is
    the last layer, as in Python); InputError when one is outside −num_layers…num_layers−1."""
    if layers is None:
        return None
    if not layers:
        raise InputError("layers must name at least one encoder layer")
    outside = [layer for layer in layers if not -num_layers <= layer < num_layers]
    if outside:
        raise InputError(f"layer {outside[0]} does not exist: the model has layers 0…{num_layers - 1} (or -{num_layers}…-1 from the last)")
    return sorted({layer % num_layers for layer in layers})


def validate_target(target: str | int, labels: Sequence[str]) -> int | None:
    """None for "predicted", else the class index (InputError when it is not one of the model's classes)."""
    if target == "predicted":
        return None
    if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < len(labels):
        choices = ", ".join(f"{i} ({label})" for i, label in enumerate(labels))
        raise InputError(f"target must be 'predicted' or a class index: {choices}; got {target!r}")
    return target


def summarise(
    classifier: Classifier, text: str, text_pair: str | None, result: ExampleAttribution, options: ExplanationOptions
) -> Explanation:
    """Turn one example's attribution tensors into an ``Explanation``."""
    tokens = classifier.tokens(result.input_ids)
    labels = classifier.labels
    probabilities = result.probabilities.double()
    summed = [attribution.double().sum(0) for attribution in result.attributions]
    layers = [
        LayerExplanation(
            layer=layer,
            head_ids=head_ids,
            delta=float(result.delta[k]),
            baseline_probability=float(result.baseline_probability[k]),
            top_pairs=top_pairs(result.attributions[k].double(), head_ids, tokens, options.top_k),
            matrices=EncodedArray.from_numpy(result.attributions[k].numpy()) if options.include_matrices else None,
        )
        for k, (layer, head_ids) in enumerate(zip(result.layers, result.head_ids))
    ]
    tree = (
        attribution_tree(
            [matrix.numpy() for matrix in summed],
            tokens,
            options.threshold,
            layers=result.layers,
            num_layers=classifier.identity.num_layers,
        )
        if options.include_tree
        else None
    )
    return Explanation(
        model=classifier.identity,
        text=text,
        text_pair=text_pair,
        prediction=Prediction(
            label=labels[result.predicted],
            label_id=result.predicted,
            probabilities=probabilities.tolist(),
            labels=list(labels),
        ),
        target=result.target,
        target_label=labels[result.target],
        target_probability=result.target_probability,
        tokens=tokens,
        method=options.method,
        steps=options.steps,
        layers=layers,
        tree=tree,
        word_importance=word_importance(classifier, text, text_pair, result) if options.include_word_importance else None,
    )


def word_importance(classifier: Classifier, text: str, text_pair: str | None, result: ExampleAttribution) -> list[WordImportance]:
    """Each word's attribution drawn on by every token, Σ_l Σ_h Σ_i Σ_{j ∈ word} Attr_h(A^l)[i, j], over the
    layers attributed: the column sums of the attribution matrices, the part of the target probability that
    flowed out of the word's pieces through any attention link (into [CLS] directly, or through the other
    tokens whose states [CLS] reads later).

    Why columns and not only the [CLS] row: an edit of the word changes every link that reads it. On
    training examples (``bench/tune_audit.py``) the column sums ranked the words to edit better than the
    [CLS] row.
    """
    drawn = torch.stack([attribution.double().sum((0, 1)) for attribution in result.attributions]).sum(0)
    return sum_over_words(classifier, text, text_pair, drawn[: result.length].tolist())


def sum_over_words(classifier: Classifier, text: str, text_pair: str | None, token_scores: Sequence[float]) -> list[WordImportance]:
    """Sum per-token scores (one per token of the input's encoding, special tokens included) over each word's
    pieces. Words are TextAttack's; tokens are mapped to them by their character offsets, and special tokens
    and punctuation outside words carry no word."""
    encoding = classifier.tokenizer(text, text_pair, return_offsets_mapping=True, truncation=True, max_length=classifier.max_length)
    segments = encoding.sequence_ids()[: len(token_scores)]
    offsets = encoding["offset_mapping"][: len(token_scores)]
    texts = [text, text_pair]
    scores: dict[tuple[int, int], float] = {}
    for position, (segment, (start, end)) in enumerate(zip(segments, offsets)):
        if segment is None or end <= start:
            continue
        spans = word_spans(texts[segment])
        index = next((i for i, (a, b) in enumerate(spans) if a <= start < b), None)
        if index is not None:
            scores[(segment, index)] = scores.get((segment, index), 0.0) + float(token_scores[position])
    return [
        WordImportance(segment=segment, index=index, word=texts[segment][slice(*word_spans(texts[segment])[index])], score=score)
        for (segment, index), score in sorted(scores.items())
    ]


def top_pairs(attribution: torch.Tensor, head_ids: Sequence[int], tokens: Sequence[str], k: int) -> list[TokenPair]:
    """The ``k`` (query, key) entries with the largest head-summed attribution Σ_h Attr_h, largest first,
    each with the head whose attribution at that entry is largest."""
    summed = attribution.sum(0)
    n = summed.shape[1]
    count = min(k, summed.numel())
    if count == 0:
        return []
    scores, flat = torch.topk(summed.flatten(), count)
    pairs = []
    for score, index in zip(scores.tolist(), flat.tolist()):
        query, key = divmod(index, n)
        head_scores = attribution[:, query, key]
        head = int(head_scores.argmax())
        pairs.append(
            TokenPair(
                query_index=query,
                key_index=key,
                query_token=tokens[query],
                key_token=tokens[key],
                score=score,
                head=int(head_ids[head]),
                head_score=float(head_scores[head]),
            )
        )
    return pairs


WIDEST_FLOAT = -1.7976931348623157e308
"""A float whose JSON is as long as any float's can be (24 characters)."""


def explanation_size_bound(
    classifier: Classifier,
    text: str,
    text_pair: str | None,
    input_ids: Sequence[int],
    options: ExplanationOptions,
) -> int:
    """An upper bound on the bytes of the JSON of ``explain(classifier, text, text_pair, options)``, known before any
    attribution: the length of a worst-case explanation of the same shape. It has the same strings, every
    float as wide as a float prints, every index as wide as its largest value, a tree that holds every token,
    a score for every word, ``min(top_k, tokens²)`` pairs per layer, and the matrices at their exact length
    (``EncodedArray``). ``input_ids`` is the input's encoding.
    """
    tokens = classifier.tokenizer.convert_ids_to_tokens(list(input_ids))
    n = len(tokens)
    num_layers = classifier.identity.num_layers
    layers = validate_layers(options.layers, num_layers) or list(range(num_layers))
    head_ids = encoder_for(classifier.model).head_ids
    labels = list(classifier.labels)
    widest_label = max(labels, key=lambda label: len(json.dumps(label)))
    widest_token = max(tokens, key=lambda token: len(json.dumps(token)))
    last = n - 1
    layer_explanations = []
    matrix_chars = 0
    for layer in layers:
        heads = list(head_ids[layer])
        pair = TokenPair(query_index=last, key_index=last, query_token=widest_token, key_token=widest_token,
                         score=WIDEST_FLOAT, head=max(heads, default=0), head_score=WIDEST_FLOAT)  # fmt: skip
        matrices = None
        if options.include_matrices:
            matrices = EncodedArray(shape=[len(heads), n, n], data="")
            matrix_chars += EncodedArray.encoded_length(len(heads) * n * n)
        layer_explanations.append(
            LayerExplanation(layer=layer, head_ids=heads, delta=WIDEST_FLOAT, baseline_probability=WIDEST_FLOAT,
                             top_pairs=[pair] * min(options.top_k, n * n), matrices=matrices)  # fmt: skip
        )
    tree = None
    if options.include_tree:
        widest_id = node_id(num_layers, last)
        tree = AttributionTree(
            tokens=tokens,
            threshold=options.threshold,
            num_layers=num_layers,
            nodes=[TreeNode(id=widest_id, layer=num_layers, token_index=last, token=token) for token in tokens],
            edges=[TreeEdge(source=widest_id, target=widest_id, layer=num_layers, score=WIDEST_FLOAT, attribution=WIDEST_FLOAT)] * (n - 1),
        )
    importance = None
    if options.include_word_importance:
        importance = [
            WordImportance(segment=segment, index=len(spans), word=words[a:b], score=WIDEST_FLOAT)
            for segment, words in enumerate((text, text_pair or ""))
            for spans in [word_spans(words)]
            for a, b in spans
        ]
    worst = Explanation(
        model=classifier.identity,
        text=text,
        text_pair=text_pair,
        prediction=Prediction(label=widest_label, label_id=len(labels) - 1, probabilities=[WIDEST_FLOAT] * len(labels), labels=labels),
        target=len(labels) - 1,
        target_label=widest_label,
        target_probability=WIDEST_FLOAT,
        tokens=tokens,
        method=options.method,
        steps=options.steps,
        layers=layer_explanations,
        tree=tree,
        word_importance=importance,
    )
    return len(worst.model_dump_json().encode("utf-8")) + matrix_chars
