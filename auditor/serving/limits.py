"""What one request may ask of a worker (``ServingLimits``), checked before any work: characters, the archive's
task, steps, ``top_k`` and the cost of an explanation; and, for an explanation refused for its cost or its answer
size, what would fit, so that the 400's message suggests only changes that are accepted (``auditor.serving.service``)."""

from __future__ import annotations

from collections.abc import Sequence

from auditor.errors import InputError
from auditor.explain import explanation_size_bound, validate_layers
from auditor.models import Classifier
from auditor.schemas import ExplanationRequest, ServingLimits, Task
from auditor.serving.capacity import explanation_cost, layer_passes


def check_chars(limits: ServingLimits, text: str, text_pair: str | None) -> None:
    """InputError when text + text_pair are longer than ``max_chars`` (checked before tokenizing)."""
    chars = len(text) + len(text_pair or "")
    if chars > limits.max_chars:
        raise InputError(f"input has {chars} characters, more than the limit of {limits.max_chars}")


def check_task(task: Task, text_pair: str | None) -> None:
    """InputError when a single-sentence model gets a ``text_pair`` or a sentence-pair model lacks one."""
    if task == "single" and text_pair is not None:
        raise InputError("this model classifies single sentences (task: single): send no text_pair")
    if task == "pair" and text_pair is None:
        raise InputError("this model classifies sentence pairs (task: pair): send a text_pair with the text")


def check_explanation(limits: ServingLimits, request: ExplanationRequest, tokens: int, num_layers: int) -> int:
    """The explanation's cost; InputError when a limit refuses it (steps, top_k, cost)."""
    options = request.options
    if options.steps > limits.max_steps:
        raise InputError(f"steps is {options.steps}, more than the limit of {limits.max_steps}")
    if options.top_k > limits.max_top_k:
        raise InputError(f"top_k is {options.top_k}, more than the limit of {limits.max_top_k}")
    layers = validate_layers(options.layers, num_layers)
    passes = layer_passes(range(num_layers) if layers is None else layers, num_layers)
    cost = explanation_cost(tokens, options.steps, passes)
    if cost > limits.max_explanation_cost:
        raise InputError(
            f"this explanation costs {cost} (tokens × steps × layer passes = {tokens} × {options.steps} × {passes}; attributing "
            f"layer l passes through the {num_layers} − l layers from l up), more than the limit of {limits.max_explanation_cost}: "
            f"{' or '.join(cost_alternatives(limits.max_explanation_cost, tokens, options.steps, layers or list(range(num_layers)), num_layers))}"
        )
    return cost


def cost_alternatives(max_cost: int, tokens: int, steps: int, layers: Sequence[int], num_layers: int) -> list[str]:
    """What, changed alone, brings an explanation within ``max_cost``: the most steps, the highest of the
    requested layers, the longest text (in tokens, special tokens included) that fit."""
    layers = sorted(layer % num_layers for layer in layers)
    passes = layer_passes(layers, num_layers)
    alternatives = []
    if max_cost // (tokens * passes) >= 1:
        alternatives.append(f"ask for steps {max_cost // (tokens * passes)}")
    fitting = next((layers[start:] for start in range(1, len(layers)) if explanation_cost(tokens, steps, layer_passes(layers[start:], num_layers)) <= max_cost), None)
    if fitting:
        alternatives.append(f"ask for layers {fitting}")
    if max_cost // (steps * passes) >= 3:
        alternatives.append(f"send a text of at most {max_cost // (steps * passes)} tokens")
    return alternatives or ["ask for fewer steps and layers and send a shorter text"]


def size_alternatives(classifier: Classifier, request: ExplanationRequest, input_ids: Sequence[int], max_bytes: int) -> list[str]:
    """What, changed alone, keeps an explanation's answer within ``max_bytes`` (``explanation_size_bound``): no
    matrices, the highest of the requested layers, the largest top_k that fit; else a shorter text."""
    options = request.options

    def fits(**changes: object) -> bool:
        changed = options.model_copy(update=changes)
        return explanation_size_bound(classifier, request.text, request.text_pair, input_ids, changed) <= max_bytes

    alternatives = []
    if options.include_matrices and fits(include_matrices=False):
        alternatives.append('ask for "include_matrices": false')
    num_layers = classifier.identity.num_layers
    layers = sorted(layer % num_layers for layer in (options.layers or range(num_layers)))
    fitting = next((layers[start:] for start in range(1, len(layers)) if fits(layers=layers[start:])), None)
    if fitting:
        alternatives.append(f"ask for layers {fitting}")
    if options.top_k > 0 and fits(top_k=0):
        low, high = 0, options.top_k - 1  # the largest top_k that fits: fits(low) holds throughout
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if fits(top_k=middle) else (low, middle - 1)
        alternatives.append(f"ask for top_k {low}")
    return alternatives or ["send a shorter text"]
