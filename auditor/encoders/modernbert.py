"""ModernBERT: pre-norm layers with a fused ``Wqkv`` (rotary positions on queries and keys only), global
attention every ``global_attn_every_n_layers`` layers and sliding-window attention in between, a final
norm, and CLS or mean pooling. With eager attention the model stays padded; the softmax runs in float32.
transformers cannot prune its heads.

transformers 4.57 masks with the model dtype's minimum, which is -inf once the float32 softmax casts a
float64 model's scores: a padding query whose window holds only padding gets a NaN row, and the NaN reaches
real tokens through the next layer's values (a float64 padded batch gives NaN logits). This adapter masks
with float32's minimum instead, in its layers and (``run``) in the model's own forward; for real tokens the
probabilities are unchanged (exp of either minimum is 0).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from auditor.encoders import EncoderClassifier, LayerInputs, attend, register


@register
class ModernBertClassifier(EncoderClassifier):
    model_types = ("modernbert",)
    takes_segments = False
    prunable = False

    def _layers(self) -> list[nn.Module]:
        return list(self.base.layers)

    def _module_heads(self, index: int) -> int:
        return int(self.layers[index].attn.num_heads)

    def _masks(self, attention_mask: torch.Tensor, output_attentions: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(global, sliding-window) additive masks (batch, 1, n, n), as ``ModernBertModel._update_attention_mask``
        builds them but with a minimum that stays finite in the float32 softmax."""
        dtype = self.base.dtype
        low = torch.finfo(torch.float32 if dtype == torch.float64 else dtype).min
        n = attention_mask.shape[1]
        keys = attention_mask[:, None, None, :].bool().expand(-1, 1, n, n)
        zeros = torch.zeros(keys.shape, dtype=dtype, device=attention_mask.device)
        global_mask = zeros.masked_fill(~keys, low)
        positions = torch.arange(n, device=attention_mask.device)
        window = (positions[:, None] - positions[None, :]).abs() <= self.config.local_attention // 2
        return global_mask, global_mask.masked_fill(~window, low)

    def run(self, **inputs: Any) -> Any:
        self.base._update_attention_mask = self._masks  # instance attribute: shadows the method while inside
        try:
            return self.model(**inputs)
        finally:
            del self.base._update_attention_mask

    def layer_inputs(self, attention_mask: torch.Tensor, dtype: torch.dtype) -> LayerInputs:
        global_mask, window_mask = self._masks(attention_mask)
        positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)[None]
        return LayerInputs(
            {"attention_mask": attention_mask, "global": global_mask, "window": window_mask}, {"position_ids": positions}
        )

    def _forward(self, index: int, hidden: torch.Tensor, inputs: LayerInputs) -> torch.Tensor:
        return self.layers[index](
            hidden, attention_mask=inputs["global"], sliding_window_mask=inputs["window"], position_ids=inputs["position_ids"]
        )[0]

    def _forward_with_attention(self, index: int, hidden: torch.Tensor, inputs: LayerInputs, probs: torch.Tensor) -> torch.Tensor:
        layer = self.layers[index]
        attention = layer.attn
        batch, n, _ = hidden.shape
        qkv = attention.Wqkv(layer.attn_norm(hidden)).view(batch, n, 3, attention.all_head_size)
        hidden = hidden + attention.out_drop(attention.Wo(attend(probs, qkv[:, :, 2])))
        return hidden + layer.mlp(layer.mlp_norm(hidden))

    def logits(self, sequence_output: torch.Tensor, inputs: LayerInputs) -> torch.Tensor:
        hidden = self.base.final_norm(sequence_output)
        if self.config.classifier_pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = inputs["attention_mask"].to(hidden.dtype)
            pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return self.model.classifier(self.model.drop(self.model.head(pooled)))

    def context_module(self, index: int) -> nn.Module:
        return self.layers[index].attn.Wo
