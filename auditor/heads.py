"""Importance of attention heads: self-attention attribution (Hao et al., AAAI 2021) and the baselines it is
compared with (maximum attention, Taylor expansion of Michel et al. 2019, leave-one-head-out, random).

Every method maps a classifier and labelled examples to a (layers, heads) tensor over the *original* head
indices, higher meaning more important; heads already pruned from the model are NaN. The classes are pure
computation; ``compute_importance`` adds the provenance (model, examples, options) and the on-disk cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from transformers import BatchEncoding

import auditor
from auditor.attribution import SelfAttentionAttribution
from auditor.data import Dataset
from auditor.encoders import encoder_for
from auditor.errors import DataError, InputError
from auditor.models import Classifier
from auditor.progress import progress
from auditor.quadrature import QuadratureMethod
from auditor.schemas import IMPORTANCE_METHODS, ExamplesUsed, HeadImportance, ImportanceMethod


@dataclass
class LabelledBatch:
    """One encoded batch (on the model's device) with its gold labels."""

    encoding: BatchEncoding
    labels: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.labels.shape[0])


def encode_dataset(classifier: Classifier, dataset: Dataset, batch_size: int = 32) -> list[LabelledBatch]:
    """Tokenize every example (truncated to the model's limit) into batches of similar length, with labels."""
    if not dataset.examples:
        raise DataError(f"{dataset.name} {dataset.split} has no examples")
    if any(e.label is None for e in dataset.examples):
        raise DataError(f"{dataset.name} {dataset.split} has unlabelled examples; head importance needs gold labels")
    if any(e.label < 0 or e.label >= len(classifier.labels) for e in dataset.examples):  # type: ignore[operator]
        raise DataError(f"{dataset.name} has labels outside the model's {len(classifier.labels)} classes")
    order = sorted(range(len(dataset.examples)), key=lambda i: len(dataset.examples[i].text) + len(dataset.examples[i].text_pair or ""))
    batches = []
    for start in range(0, len(order), batch_size):
        chosen = [dataset.examples[i] for i in order[start : start + batch_size]]
        pairs = None if chosen[0].text_pair is None else [e.text_pair for e in chosen]
        encoding = classifier.encode([e.text for e in chosen], pairs, truncate=True)
        labels = torch.tensor([e.label for e in chosen], device=classifier.device)
        batches.append(LabelledBatch(encoding, labels))
    return batches


def model_inputs(encoding: BatchEncoding) -> dict[str, torch.Tensor]:
    return {k: v for k, v in encoding.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def head_mask(model: torch.nn.Module, mask: torch.Tensor) -> contextlib.AbstractContextManager[None]:
    """Run ``model`` with head h of layer l scaled by ``mask[..., l, h]`` (original head indices).

    ``mask`` is (layers, heads) for the whole batch or (batch, layers, heads) per example. Scaling head h's
    context vector is the same as scaling its attention probabilities (context_h = A_h V_h), i.e. the
    ``head_mask`` of Michel et al., for every family (``EncoderClassifier.scale_heads``, also where the
    model takes no ``head_mask``); it works on head-pruned models too, and a differentiable mask gives
    ∂L/∂ξ_h = Σ context_h · ∂L/∂context_h.
    """
    return encoder_for(model).scale_heads(mask)


def full_mask(model: torch.nn.Module) -> torch.Tensor:
    """Ones over (layers, original heads), NaN where a head is already pruned."""
    encoder = encoder_for(model)
    mask = torch.full((encoder.num_layers, encoder.num_heads), float("nan"))
    for layer, ids in enumerate(encoder.head_ids):
        mask[layer, ids] = 1.0
    return mask


def accuracy(model: torch.nn.Module, batches: list[LabelledBatch], mask: torch.Tensor | None = None) -> float:
    """Share of examples whose argmax prediction equals the gold label, optionally under a head mask."""
    correct = 0
    total = 0
    device = next(model.parameters()).device
    encoder = encoder_for(model)
    context = encoder.scale_heads(mask.to(device)) if mask is not None else contextlib.nullcontext()
    with torch.no_grad(), context:
        for batch in batches:
            logits = encoder.run(**model_inputs(batch.encoding)).logits
            correct += int((logits.argmax(-1) == batch.labels).sum())
            total += batch.size
    return correct / total


class BatchSumImportance:
    """A method whose scores are ``finish(Σ_b batch_sum(batch b), N)``: a sum over batches, in batch order,
    then a final step. Batches can therefore be scored anywhere (``auditor.distributed``) and summed in
    order to the same tensor."""

    name = ""

    def batch_sum(self, model: torch.nn.Module, batch: LabelledBatch) -> torch.Tensor:
        """This batch's (layers, heads) contribution."""
        raise NotImplementedError

    def finish(self, model: torch.nn.Module, total: torch.Tensor, count: int) -> torch.Tensor:
        """The scores from the sum of every batch's contribution over ``count`` examples."""
        raise NotImplementedError

    def __call__(self, model: torch.nn.Module, batches: list[LabelledBatch], show_progress: bool = False) -> torch.Tensor:
        return self.finish(model, sum_in_order(self.batch_sum(model, b) for b in progress(batches, f"{self.name} importance: batches", show=show_progress)), sum(b.size for b in batches))


def sum_in_order(parts: Iterable[torch.Tensor]) -> torch.Tensor:
    """((p₀ + p₁) + p₂) + …: the one summation order, wherever the parts were computed."""
    total: torch.Tensor | None = None
    for part in parts:
        total = part.clone() if total is None else total + part
    if total is None:
        raise DataError("no batch to score")
    return total


class AttributionImportance(BatchSumImportance):
    """I_h = (1/N) Σ_x max_{i,j} Attr_h(A)(x), with Attr the self-attention attribution of the gold label's
    probability (``auditor.attribution.SelfAttentionAttribution``, ``steps`` quadrature nodes) over the
    example's real tokens (Hao et al. 2021, §4.1)."""

    name = "attribution"

    def __init__(self, steps: int = 3, quadrature: QuadratureMethod = "gausslegendre") -> None:
        self.steps = steps
        self.quadrature = quadrature

    def batch_sum(self, model: torch.nn.Module, batch: LabelledBatch) -> torch.Tensor:
        engine = SelfAttentionAttribution(model)
        scores = torch.zeros(len(engine.encoder.layers), model.config.num_attention_heads)
        inputs = model_inputs(batch.encoding)
        results = engine.attribute(
            inputs["input_ids"], inputs["attention_mask"], inputs.get("token_type_ids"),
            target=batch.labels, n_steps=self.steps, method=self.quadrature,
        )
        for result in results:
            for layer, ids, attribution in zip(result.layers, result.head_ids, result.attributions):
                scores[layer, ids] += attribution.flatten(1).max(1).values.float()
        return scores

    def finish(self, model: torch.nn.Module, total: torch.Tensor, count: int) -> torch.Tensor:
        return _with_pruned_as_nan(model, total / count)


class AttentionImportance(BatchSumImportance):
    """I_h = (1/N) Σ_x max_{i,j} A_h(x): the mean over examples of head h's largest attention probability
    between real tokens (padding excluded)."""

    name = "attention"

    def batch_sum(self, model: torch.nn.Module, batch: LabelledBatch) -> torch.Tensor:
        encoder = encoder_for(model)
        scores = torch.zeros(encoder.num_layers, model.config.num_attention_heads)
        with torch.no_grad():
            attentions = encoder.run(**model_inputs(batch.encoding), output_attentions=True).attentions
            real = batch.encoding["attention_mask"].bool()
            pair_mask = (real[:, :, None] & real[:, None, :])[:, None]  # (batch, 1, n, n)
            for layer, ids in enumerate(encoder.head_ids):
                maxima = attentions[layer].masked_fill(~pair_mask, float("-inf")).flatten(2).max(-1).values
                scores[layer, ids] += maxima.sum(0).float().cpu()
        return scores

    def finish(self, model: torch.nn.Module, total: torch.Tensor, count: int) -> torch.Tensor:
        return _with_pruned_as_nan(model, total / count)


class TaylorImportance(BatchSumImportance):
    """Michel et al. (2019): I_h = Σ_x |∂L(x)/∂ξ_h| = Σ_x |Σ_t context_h(x)_t · ∂L(x)/∂context_h(x)_t|, with ξ
    the head mask (all ones), L the cross-entropy loss of the gold label, then normalised per layer:
    I_h ← I_h / ‖I_layer‖₂."""

    name = "taylor"

    def batch_sum(self, model: torch.nn.Module, batch: LabelledBatch) -> torch.Tensor:
        encoder = encoder_for(model)
        device = next(model.parameters()).device
        xi = torch.ones(batch.size, encoder.num_layers, model.config.num_attention_heads, device=device, requires_grad=True)
        with torch.enable_grad(), encoder.scale_heads(xi):
            logits = encoder.run(**model_inputs(batch.encoding)).logits
            loss = torch.nn.functional.cross_entropy(logits, batch.labels, reduction="sum")
            (gradient,) = torch.autograd.grad(loss, xi)
        return gradient.abs().sum(0).float().cpu()

    def finish(self, model: torch.nn.Module, total: torch.Tensor, count: int) -> torch.Tensor:
        scores = _with_pruned_as_nan(model, total)
        norms = scores.nan_to_num(0.0).norm(dim=1, keepdim=True).clamp_min(1e-20)
        return scores / norms


class LeaveOneOutImportance(BatchSumImportance):
    """I_h = acc(model) − acc(model without head h) on the examples: the accuracy lost by masking head h alone.

    Masking a head of layer l leaves layers below l unchanged, so each batch's hidden states are computed
    once and only layers l…L−1 are rerun, for several heads of the layer at a time (``rows`` rows per pass).
    A batch contributes (examples right) − (examples right without head h), a whole number.
    """

    name = "leave-one-out"

    def __init__(self, rows: int = 256) -> None:
        self.rows = rows

    def batch_sum(self, model: torch.nn.Module, batch: LabelledBatch) -> torch.Tensor:
        encoder = encoder_for(model)
        base = full_mask(model).nan_to_num(0.0).to(next(model.parameters()).device)
        correct = torch.zeros(base.shape)
        with torch.no_grad():
            output = encoder.run(**model_inputs(batch.encoding), output_hidden_states=True)
            reference = int((output.logits.argmax(-1) == batch.labels).sum())
            inputs = encoder.layer_inputs(batch.encoding["attention_mask"], output.hidden_states[0].dtype)
            step = max(1, self.rows // batch.size)
            for layer, ids in enumerate(encoder.head_ids):
                for start in range(0, len(ids), step):
                    heads = ids[start : start + step]
                    masks = base.repeat(len(heads), 1, 1)
                    masks[torch.arange(len(heads)), layer, heads] = 0.0
                    rows_mask = masks.repeat_interleave(batch.size, 0)
                    hidden = output.hidden_states[layer].repeat(len(heads), 1, 1)
                    rows = inputs.select(torch.arange(batch.size, device=hidden.device).repeat(len(heads)))
                    with encoder.scale_heads(rows_mask):
                        for index in range(layer, encoder.num_layers):
                            hidden = encoder.layer_forward(index, hidden, rows)
                        predicted = encoder.logits(hidden, rows).argmax(-1).view(len(heads), batch.size)
                    correct[layer, heads] += (predicted == batch.labels).sum(1).float().cpu()
        return reference - correct

    def finish(self, model: torch.nn.Module, total: torch.Tensor, count: int) -> torch.Tensor:
        return _with_pruned_as_nan(model, total / count)


class RandomImportance:
    """I_h ~ U(0, 1), independently per head, from a generator seeded with ``seed`` (the random baseline)."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def __call__(self, model: torch.nn.Module, batches: list[LabelledBatch], show_progress: bool = False) -> torch.Tensor:
        base = full_mask(model)
        generator = torch.Generator().manual_seed(self.seed)
        return torch.rand(base.shape, generator=generator) * base


def _with_pruned_as_nan(model: torch.nn.Module, scores: torch.Tensor) -> torch.Tensor:
    return scores * full_mask(model)


def importance_method(method: ImportanceMethod, steps: int = 3, seed: int = 0):  # noqa: ANN201 (one of the classes above)
    """The importance computation for a method name, with the options it uses."""
    if method == "attribution":
        return AttributionImportance(steps=steps)
    if method == "attention":
        return AttentionImportance()
    if method == "taylor":
        return TaylorImportance()
    if method == "loo":
        return LeaveOneOutImportance()
    if method == "random":
        return RandomImportance(seed=seed)
    raise InputError(f"unknown importance method {method!r}; choose one of {', '.join(IMPORTANCE_METHODS)} or all")


def method_options(method: ImportanceMethod, steps: int = 3, seed: int = 0) -> dict[str, int | float | str]:
    """The options that change a method's result (part of its cache key and of the saved file)."""
    if method == "attribution":
        return {"steps": steps, "quadrature": "gausslegendre"}
    if method == "random":
        return {"seed": seed}
    return {}


def state_digest(model: torch.nn.Module) -> str:
    """SHA-256 of the model's tensors as they are in memory (names, shapes, dtypes and values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def default_cache_dir() -> Path:
    root = os.environ.get("AUDITOR_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "auditor"
    return Path(root) / "heads"


class ImportanceCache:
    """Head importances on disk, keyed by a digest of the model's weights in memory, the digest of the exact
    examples used, the method and its options: a changed model or changed data gets a new key, never an old
    result. ``hits`` and ``misses`` count lookups."""

    FORMAT = 1

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.hits = 0
        self.misses = 0

    @classmethod
    def key(cls, weights: str, examples: ExamplesUsed, method: str, options: dict[str, int | float | str]) -> str:
        material = {"format": cls.FORMAT, "weights": weights, "examples": examples.digest, "count": examples.count, "method": method, "options": options}
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]

    def load(self, key: str) -> HeadImportance | None:
        path = self.directory / f"{key}.json"
        try:
            importance = HeadImportance.model_validate_json(path.read_text())
        except (OSError, ValueError):
            self.misses += 1
            return None
        self.hits += 1
        return importance

    def store(self, key: str, importance: HeadImportance) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.directory / f".{key}.{os.getpid()}.tmp"
        temporary.write_text(importance.model_dump_json())
        temporary.replace(self.directory / f"{key}.json")


class ImportanceExecutor(Protocol):
    """Scores batches elsewhere (e.g. ``auditor.distributed.RayImportanceExecutor``)."""

    def batch_sums(self, method: ImportanceMethod, dataset: Dataset, steps: int, seed: int, batch_size: int) -> list[torch.Tensor]:
        """``importance_method(method, steps, seed).batch_sum`` of every batch of
        ``encode_dataset(classifier, dataset, batch_size)``, in batch order, for the executor's model."""


def compute_importance(
    classifier: Classifier,
    dataset: Dataset,
    method: ImportanceMethod,
    examples: int | None = 200,
    steps: int = 3,
    seed: int = 0,
    batch_size: int = 32,
    cache: ImportanceCache | None = None,
    show_progress: bool = False,
    executor: ImportanceExecutor | None = None,
) -> HeadImportance:
    """Importance of every head of ``classifier`` by ``method`` on the first ``examples`` examples of
    ``dataset`` (all when None), target = gold label; looked up in / stored to ``cache`` when given. The
    batches are scored here or by ``executor``; the result is the same."""
    if method not in IMPORTANCE_METHODS:
        raise InputError(f"unknown importance method {method!r}; choose one of {', '.join(IMPORTANCE_METHODS)} or all")
    if examples is not None and examples < 1:
        raise InputError(f"the number of examples must be positive, got {examples}")
    if steps < 1:
        raise InputError(f"the number of attribution steps must be positive, got {steps}")
    chosen = dataset.head(examples)
    used = chosen.identity()
    options = method_options(method, steps, seed)
    key = ImportanceCache.key(state_digest(classifier.model), used, method, options) if cache is not None else ""
    if cache is not None and (cached := cache.load(key)) is not None:
        return cached
    started = time.perf_counter()
    batches = encode_dataset(classifier, chosen, batch_size)
    was_training = classifier.model.training
    classifier.model.eval()
    try:
        scorer = importance_method(method, steps, seed)
        if executor is not None and isinstance(scorer, BatchSumImportance):
            parts = executor.batch_sums(method, chosen, steps, seed, batch_size)
            scores = scorer.finish(classifier.model, sum_in_order(parts), sum(b.size for b in batches))
        else:
            scores = scorer(classifier.model, batches, show_progress)
    finally:
        classifier.model.train(was_training)
    importance = HeadImportance(
        method=method,
        scores=[[None if value != value else float(value) for value in row] for row in scores.tolist()],
        examples=used,
        model=classifier.identity,
        options=options,
        auditor_version=auditor.__version__,
        seconds=round(time.perf_counter() - started, 3),
    )
    if cache is not None:
        cache.store(key, importance)
    return importance


def scores_tensor(importance: HeadImportance) -> torch.Tensor:
    """The scores as a (layers, heads) float tensor, NaN for heads already pruned."""
    return torch.tensor([[float("nan") if v is None else v for v in row] for row in importance.scores], dtype=torch.float64)
