"""The paper's algorithm written plainly, as the reference for tests and benchmarks.

For each layer l and each quadrature node α the whole Hugging Face model runs again, with layer l's
self-attention patched to use α·A^l as its probabilities (as Hao et al.'s code patches BERT), followed by
one backward pass: layers × steps forward+backward passes per example.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def reference_attribution(
    model: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    layer: int,
    target: int,
    nodes: Sequence[float],
    weights: Sequence[float],
    batch_steps: bool = False,
) -> tuple[torch.Tensor, float, float]:
    """(A^l ⊙ Σ_k w_k ∂F(α_k A^l)/∂A^l, F(A), F(0·A^l)) for one unpadded example.

    ``batch_steps`` runs all α of a layer as one batch, as the paper's released code does; otherwise each α
    is its own forward and backward pass.
    """
    with torch.no_grad():
        out = model(**inputs, output_attentions=True)
    attention = out.attentions[layer]
    module = model.base_model.encoder.layer[layer].attention.self
    heads, size = module.num_attention_heads, module.attention_head_size

    def target_probability(scaled: torch.Tensor) -> torch.Tensor:
        def forward(hidden_states, *args, **kwargs):
            b, n, _ = hidden_states.shape
            values = module.value(hidden_states).view(b, n, heads, size).transpose(1, 2)
            return (scaled @ values).transpose(1, 2).reshape(b, n, heads * size), scaled

        module.forward = forward
        copies = scaled.shape[0]
        try:
            batch = {k: v.expand(copies, -1) for k, v in inputs.items()}
            return torch.softmax(model(**batch).logits, -1)[:, target]
        finally:
            del module.forward

    alphas = torch.tensor(list(nodes), dtype=attention.dtype)[:, None, None, None]
    steps = torch.tensor(list(weights), dtype=attention.dtype)[:, None, None, None]
    if batch_steps:
        scaled = (alphas * attention).requires_grad_()
        (gradient,) = torch.autograd.grad(target_probability(scaled).sum(), scaled)
        total = (steps * gradient).sum(0, keepdim=True)
    else:
        total = torch.zeros_like(attention)
        for alpha, weight in zip(alphas, steps):
            scaled = (alpha * attention).requires_grad_()
            (gradient,) = torch.autograd.grad(target_probability(scaled).sum(), scaled)
            total += weight * gradient
    with torch.no_grad():
        at_zero = target_probability(torch.zeros_like(attention))
    return (attention * total)[0], float(torch.softmax(out.logits, -1)[0, target]), float(at_zero)
