"""DeBERTa-v2 (and DeBERTa-v3 checkpoints): disentangled attention adds relative-position terms before the
softmax; after it, ``value_proj``, ``attention.output``, ``intermediate`` and ``output`` as in BERT, and an
optional convolution after layer 0. transformers cannot prune its heads."""

from __future__ import annotations

import torch
from torch import nn

from auditor.encoders import EncoderClassifier, LayerInputs, attend, register


@register
class DebertaV2Classifier(EncoderClassifier):
    model_types = ("deberta-v2",)
    prunable = False

    def _layers(self) -> list[nn.Module]:
        return list(self.base.encoder.layer)

    def _module_heads(self, index: int) -> int:
        return int(self.layers[index].attention.self.num_attention_heads)

    def layer_inputs(self, attention_mask: torch.Tensor, dtype: torch.dtype) -> LayerInputs:
        encoder = self.base.encoder
        n = attention_mask.shape[1]
        positions = torch.zeros(1, n, 1, device=attention_mask.device)  # only the length matters
        return LayerInputs(
            {"attention_mask": attention_mask, "pair_mask": encoder.get_attention_mask(attention_mask)},
            {"relative_pos": encoder.get_rel_pos(positions), "rel_embeddings": encoder.get_rel_embedding()},
        )

    def _after(self, index: int, hidden: torch.Tensor, output: torch.Tensor, inputs: LayerInputs) -> torch.Tensor:
        conv = self.base.encoder.conv
        return conv(hidden, output, inputs["attention_mask"]) if index == 0 and conv is not None else output

    def _forward(self, index: int, hidden: torch.Tensor, inputs: LayerInputs) -> torch.Tensor:
        output, _ = self.layers[index](
            hidden, inputs["pair_mask"], relative_pos=inputs["relative_pos"], rel_embeddings=inputs["rel_embeddings"]
        )
        return self._after(index, hidden, output, inputs)

    def _forward_with_attention(self, index: int, hidden: torch.Tensor, inputs: LayerInputs, probs: torch.Tensor) -> torch.Tensor:
        layer = self.layers[index]
        attention_output = layer.attention.output(attend(probs, layer.attention.self.value_proj(hidden)), hidden)
        output = layer.output(layer.intermediate(attention_output), attention_output)
        return self._after(index, hidden, output, inputs)

    def logits(self, sequence_output: torch.Tensor, inputs: LayerInputs) -> torch.Tensor:
        return self.model.classifier(self.model.dropout(self.model.pooler(sequence_output)))

    def context_module(self, index: int) -> nn.Module:
        return self.layers[index].attention.output
