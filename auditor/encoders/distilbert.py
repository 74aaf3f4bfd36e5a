"""DistilBERT: ``TransformerBlock`` = multi-head attention (v_lin, out_lin), post-norm residuals, FFN; the
classifier reads [CLS] through ``pre_classifier`` and a ReLU. Layers take the (batch, n) 0/1 mask."""

from __future__ import annotations

import torch
from torch import nn

from auditor.encoders import EncoderClassifier, LayerInputs, attend, register


@register
class DistilBertClassifier(EncoderClassifier):
    model_types = ("distilbert",)
    takes_segments = False

    @property
    def intermediate_size(self) -> int:
        return int(self.config.hidden_dim)

    def _layers(self) -> list[nn.Module]:
        return list(self.base.transformer.layer)

    def _module_heads(self, index: int) -> int:
        return int(self.layers[index].attention.n_heads)

    def layer_inputs(self, attention_mask: torch.Tensor, dtype: torch.dtype) -> LayerInputs:
        return LayerInputs({"attention_mask": attention_mask})

    def _forward(self, index: int, hidden: torch.Tensor, inputs: LayerInputs) -> torch.Tensor:
        return self.layers[index](hidden, attn_mask=inputs["attention_mask"])[-1]

    def _forward_with_attention(self, index: int, hidden: torch.Tensor, inputs: LayerInputs, probs: torch.Tensor) -> torch.Tensor:
        layer = self.layers[index]
        attention = layer.attention.out_lin(attend(probs, layer.attention.v_lin(hidden)))
        attention = layer.sa_layer_norm(attention + hidden)
        return layer.output_layer_norm(layer.ffn(attention) + attention)

    def logits(self, sequence_output: torch.Tensor, inputs: LayerInputs) -> torch.Tensor:
        pooled = torch.relu(self.model.pre_classifier(sequence_output[:, 0]))
        return self.model.classifier(self.model.dropout(pooled))

    def context_module(self, index: int) -> nn.Module:
        return self.layers[index].attention.out_lin
