"""Self-attention attribution (Hao et al., "Self-Attention Attribution", AAAI 2021)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from auditor.encoders import LayerInputs, encoder_for
from auditor.quadrature import QuadratureMethod, quadrature

Target = int | Sequence[int] | torch.Tensor | None


@dataclass
class ExampleAttribution:
    """Attribution of one example, cropped to its n real tokens.

    ``attributions[i]`` and ``attentions[i]`` are (heads, n, n) tensors for encoder layer ``layers[i]``,
    rows indexing the query token and columns the key token; ``head_ids[i]`` names the original index of
    each head (it differs from 0…H−1 after head pruning). ``delta[i]`` is the completeness delta of that
    layer: Σ_{h,q,k} Attr − (F(A) − F(0·A)).
    """

    input_ids: torch.Tensor
    target: int
    probabilities: torch.Tensor
    layers: list[int]
    head_ids: list[list[int]]
    attributions: list[torch.Tensor]
    attentions: list[torch.Tensor]
    baseline_probability: torch.Tensor
    delta: torch.Tensor

    @property
    def predicted(self) -> int:
        return int(self.probabilities.argmax())

    @property
    def target_probability(self) -> float:
        """F(A): the target class's probability under the unmodified model."""
        return float(self.probabilities[self.target])

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass(frozen=True)
class _Rows:
    """Rows of one batched pass that start at encoder layer ``layer``: example index and scale α per row."""

    layer: int
    examples: torch.Tensor
    alphas: torch.Tensor
    weights: torch.Tensor


class SelfAttentionAttribution:
    """Attr_h(A^l) = A^l_h ⊙ ∫₀¹ ∂F(α A^l) / ∂A^l_h dα, for every head h of every requested layer l.

    F is the softmax probability of the target class, and F(α A^l) is the model run with layer l's attention
    probabilities (all heads together) replaced by α A^l while every other layer computes as usual. The
    integral is approximated by a quadrature rule with nodes α_k and weights w_k (``auditor.quadrature``):

        Attr_h(A^l) ≈ A^l_h ⊙ Σ_k w_k ∇_{A^l_h} F(α_k A^l).

    Completeness: Σ_{h,i,j} Attr_h(A^l) = F(A) − F(0·A^l) once the quadrature converges; ``delta`` reports
    the difference per layer, the quadrature's error.

    The computation is exact (no approximation beyond the quadrature) and avoids the naive algorithm's
    waste: the unmodified forward pass is run once and the hidden states below each scaled layer are reused;
    all (example, layer, α) rows go through the upper layers together in one pass, rows of layer l entering
    the batch at layer l; one backward pass gives every gradient; and a Gauss–Legendre rule needs far
    fewer nodes than the paper's 20-step Riemann sum for the same delta. Rows are split into passes whose
    estimated activation memory stays under ``memory_limit_mb`` (or ``internal_batch_size`` rows), so long
    inputs are chunked instead of exhausting memory.
    """

    def __init__(self, model: PreTrainedModel) -> None:
        self.encoder = encoder_for(model)
        self.model = model
        self.passes = 0

    def attribute(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        target: Target = None,
        n_steps: int = 3,
        method: QuadratureMethod = "gausslegendre",
        layers: Sequence[int] | None = None,
        internal_batch_size: int | None = None,
        memory_limit_mb: float = 1024.0,
        after_pass: Callable[[], object] | None = None,
    ) -> list[ExampleAttribution]:
        """Attribute a right-padded batch; ``target`` is a class index, one per example, or None (predicted).
        ``after_pass`` is called after each pass through the encoder (a server's deadline): an exception it raises
        stops the attribution."""
        alphas, weights = quadrature(method, n_steps)
        if input_ids.dim() != 2 or input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
            raise ValueError(f"input_ids must be a non-empty (batch, length) tensor, got shape {tuple(input_ids.shape)}")
        device = next(self.model.parameters()).device
        input_ids = input_ids.to(device)
        attention_mask = (torch.ones_like(input_ids) if attention_mask is None else attention_mask).to(device)
        if token_type_ids is not None:
            token_type_ids = token_type_ids.to(device)
        lengths = attention_mask.sum(1)
        positions = torch.arange(input_ids.shape[1], device=device)
        if bool((lengths == 0).any()) or not torch.equal(attention_mask.bool(), positions[None, :] < lengths[:, None]):
            raise ValueError("attention_mask must be right-padded: each row a non-empty run of ones, then zeros")
        batch = input_ids.shape[0]
        targets = self._targets(target, batch)
        layer_list = self._layers(layers)
        if internal_batch_size is not None and internal_batch_size < 1:
            raise ValueError("internal_batch_size must be a positive integer")
        if memory_limit_mb <= 0:
            raise ValueError("memory_limit_mb must be positive")

        results: list[ExampleAttribution | None] = [None] * batch
        order = sorted(range(batch), key=lambda i: -int(lengths[i]))
        with _evaluation(self.model):
            for group in self._example_groups(order, lengths, layer_list, len(alphas), internal_batch_size, memory_limit_mb):
                index = torch.tensor(group, device=device)
                n = int(lengths[index].max())
                group_results = self._attribute_group(
                    input_ids[index, :n],
                    attention_mask[index, :n],
                    None if token_type_ids is None else token_type_ids[index, :n],
                    None if targets is None else targets[index],
                    layer_list,
                    alphas,
                    weights,
                    internal_batch_size,
                    memory_limit_mb,
                    after_pass,
                )
                for position, result in zip(group, group_results):
                    results[position] = result
        return [r for r in results if r is not None]

    def _targets(self, target: Target, batch: int) -> torch.Tensor | None:
        if target is None:
            return None
        targets = torch.as_tensor(target, dtype=torch.long).flatten()
        if targets.numel() == 1:
            targets = targets.expand(batch)
        if targets.numel() != batch:
            raise ValueError(f"got {targets.numel()} targets for {batch} examples")
        if bool(((targets < 0) | (targets >= self.encoder.num_labels)).any()):
            raise ValueError(f"target must be a class index in [0, {self.encoder.num_labels})")
        return targets.to(next(self.model.parameters()).device)

    def _layers(self, layers: Sequence[int] | None) -> list[int]:
        total = self.encoder.num_layers
        if layers is None:
            return list(range(total))
        chosen = sorted({int(layer) for layer in layers})
        if not chosen or chosen[0] < 0 or chosen[-1] >= total:
            raise ValueError(f"layers must be a non-empty subset of 0…{total - 1}, got {list(layers)}")
        return chosen

    def _row_bytes(self, n: int, layer: int) -> float:
        """Estimated activation memory kept for the backward pass by one row entering at ``layer``."""
        config = self.model.config
        element = torch.finfo(next(self.model.parameters()).dtype).bits // 8
        per_layer = n * (5 * self.encoder.num_heads * n + 12 * config.hidden_size + 3 * self.encoder.intermediate_size)
        return element * per_layer * (self.encoder.num_layers - layer)

    def _example_groups(
        self,
        order: list[int],
        lengths: torch.Tensor,
        layers: list[int],
        n_nodes: int,
        internal_batch_size: int | None,
        memory_limit_mb: float,
    ) -> Iterator[list[int]]:
        """Consecutive examples (sorted by length) whose rows fit in one pass; a long example stands alone."""
        budget = memory_limit_mb * 2**20
        rows_per_example = len(layers) * n_nodes
        group: list[int] = []
        for example in order:
            n = int(lengths[group[0] if group else example])
            example_bytes = n_nodes * sum(self._row_bytes(n, layer) for layer in layers)
            fits_memory = (len(group) + 1) * example_bytes <= budget
            fits_rows = internal_batch_size is None or (len(group) + 1) * rows_per_example <= internal_batch_size
            if group and not (fits_memory and fits_rows):
                yield group
                group = []
            group.append(example)
        if group:
            yield group

    def _attribute_group(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        targets: torch.Tensor | None,
        layers: list[int],
        alphas: list[float],
        weights: list[float],
        internal_batch_size: int | None,
        memory_limit_mb: float,
        after_pass: Callable[[], object] | None,
    ) -> list[ExampleAttribution]:
        segments = {} if token_type_ids is None or not self.encoder.takes_segments else {"token_type_ids": token_type_ids}
        with torch.no_grad():
            output = self.encoder.run(
                input_ids=input_ids, attention_mask=attention_mask, output_attentions=True, output_hidden_states=True, **segments
            )
        probabilities = torch.softmax(output.logits, dim=-1)
        if targets is None:
            targets = probabilities.argmax(-1)
        hidden_states, attentions = output.hidden_states, output.attentions
        layer_inputs = self.encoder.layer_inputs(attention_mask, hidden_states[0].dtype)
        examples = input_ids.shape[0]
        device = input_ids.device

        gradient_sums = {layer: torch.zeros_like(attentions[layer]) for layer in layers}
        zero_probability: dict[int, torch.Tensor] = {}
        rows = [
            _Rows(
                layer,
                torch.arange(examples, device=device).repeat_interleave(len(alphas)),
                torch.tensor(alphas, device=device, dtype=attentions[layer].dtype).repeat(examples),
                torch.tensor(weights, device=device, dtype=attentions[layer].dtype).repeat(examples),
            )
            for layer in layers
        ]
        n = input_ids.shape[1]
        for chunk in self._chunks(rows, n, internal_batch_size, memory_limit_mb):
            with torch.enable_grad():
                probability, leaves = self._scaled_forward(chunk, hidden_states, attentions, layer_inputs, targets, True)
                gradients = torch.autograd.grad(probability.sum(), leaves)
            offset = 0
            for part, gradient in zip(chunk, gradients):
                gradient_sums[part.layer].index_add_(0, part.examples, gradient * part.weights[:, None, None, None])
                at_zero = part.alphas == 0
                if bool(at_zero.any()):
                    zero = torch.zeros(examples, device=device, dtype=probability.dtype)
                    zero[part.examples[at_zero]] = probability[offset : offset + len(part.examples)][at_zero].detach()
                    zero_probability[part.layer] = zero
                offset += len(part.examples)
            if after_pass is not None:
                after_pass()

        missing = [layer for layer in layers if layer not in zero_probability]
        if missing:
            baseline_rows = [
                _Rows(layer, torch.arange(examples, device=device), torch.zeros(examples, device=device), torch.ones(0))
                for layer in missing
            ]
            for chunk in self._chunks(baseline_rows, n, internal_batch_size, memory_limit_mb / 3):
                with torch.no_grad():
                    probability, _ = self._scaled_forward(chunk, hidden_states, attentions, layer_inputs, targets, False)
                offset = 0
                for part in chunk:
                    zero = zero_probability.setdefault(part.layer, torch.zeros(examples, device=device, dtype=probability.dtype))
                    zero[part.examples] = probability[offset : offset + len(part.examples)]
                    offset += len(part.examples)

        lengths = attention_mask.sum(1).tolist()
        results = []
        for e in range(examples):
            m = int(lengths[e])
            attributions = [(attentions[l][e] * gradient_sums[l][e])[:, :m, :m].detach().cpu() for l in layers]
            target_probability = probabilities[e, targets[e]]
            baseline = torch.stack([zero_probability[l][e] for l in layers])
            delta = torch.stack([a.sum() for a in attributions]) - (target_probability - baseline).cpu()
            results.append(
                ExampleAttribution(
                    input_ids=input_ids[e, :m].cpu(),
                    target=int(targets[e]),
                    probabilities=probabilities[e].cpu(),
                    layers=list(layers),
                    head_ids=[list(self.encoder.head_ids[l]) for l in layers],
                    attributions=attributions,
                    attentions=[attentions[l][e, :, :m, :m].cpu() for l in layers],
                    baseline_probability=baseline.cpu(),
                    delta=delta,
                )
            )
        return results

    def _chunks(
        self, rows: list[_Rows], n: int, internal_batch_size: int | None, memory_limit_mb: float
    ) -> Iterator[list[_Rows]]:
        """Split rows (ordered by layer) into passes under the memory budget and the row cap."""
        budget = memory_limit_mb * 2**20
        chunk: list[_Rows] = []
        used_bytes, used_rows = 0.0, 0
        for part in rows:
            row_bytes = self._row_bytes(n, part.layer)
            start = 0
            total = len(part.examples)
            while start < total:
                room = int((budget - used_bytes) // row_bytes)
                if internal_batch_size is not None:
                    room = min(room, internal_batch_size - used_rows)
                if room <= 0 and used_rows > 0:
                    yield chunk
                    chunk, used_bytes, used_rows = [], 0.0, 0
                    continue
                take = max(1, min(room, total - start))
                piece = slice(start, start + take)
                weights = part.weights[piece] if part.weights.numel() else part.weights
                chunk.append(_Rows(part.layer, part.examples[piece], part.alphas[piece], weights))
                used_bytes += take * row_bytes
                used_rows += take
                start += take
        if chunk:
            yield chunk

    def _scaled_forward(
        self,
        rows: list[_Rows],
        hidden_states: tuple[torch.Tensor, ...],
        attentions: tuple[torch.Tensor, ...],
        layer_inputs: LayerInputs,
        targets: torch.Tensor,
        requires_grad: bool,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """F(α A^l) for every row; returns the target probabilities (in row order) and the scaled-attention leaves."""
        self.passes += 1
        entering = {part.layer: part for part in rows}
        hidden: torch.Tensor | None = None
        row_examples = torch.empty(0, dtype=torch.long, device=targets.device)
        leaves: list[torch.Tensor] = []
        for index in range(rows[0].layer, self.encoder.num_layers):
            if hidden is not None:
                hidden = self.encoder.layer_forward(index, hidden, layer_inputs.select(row_examples))
            part = entering.get(index)
            if part is None:
                continue
            scaled = part.alphas.to(attentions[index].dtype)[:, None, None, None] * attentions[index][part.examples]
            scaled.requires_grad_(requires_grad)
            leaves.append(scaled)
            new_hidden = self.encoder.layer_with_attention(
                index, hidden_states[index][part.examples], layer_inputs.select(part.examples), scaled
            )
            hidden = new_hidden if hidden is None else torch.cat([hidden, new_hidden])
            row_examples = torch.cat([row_examples, part.examples])
        assert hidden is not None
        probabilities = torch.softmax(self.encoder.logits(hidden, layer_inputs.select(row_examples)), dim=-1)
        return probabilities.gather(1, targets[row_examples][:, None]).squeeze(1), leaves


@contextlib.contextmanager
def _evaluation(model: torch.nn.Module) -> Iterator[None]:
    """Run with dropout off, restoring the model's training flag afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
