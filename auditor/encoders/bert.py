"""BERT, RoBERTa (XLM-R, CamemBERT) and ELECTRA: ``layer.attention.self`` computes A·V, ``attention.output``
projects it, ``feed_forward_chunk`` follows; the families differ only in where the classifier reads."""

from __future__ import annotations

import torch
from torch import nn

from auditor.encoders import EncoderClassifier, LayerInputs, additive_mask, attend, register


@register
class BertLikeClassifier(EncoderClassifier):
    model_types = ("bert", "roberta", "xlm-roberta", "camembert", "electra")

    def _layers(self) -> list[nn.Module]:
        return list(self.base.encoder.layer)

    def _module_heads(self, index: int) -> int:
        return int(self.layers[index].attention.self.num_attention_heads)

    def layer_inputs(self, attention_mask: torch.Tensor, dtype: torch.dtype) -> LayerInputs:
        return LayerInputs({"attention_mask": attention_mask, "additive": additive_mask(attention_mask, dtype)})

    def _forward(self, index: int, hidden: torch.Tensor, inputs: LayerInputs) -> torch.Tensor:
        out = self.layers[index](hidden, attention_mask=inputs["additive"])
        return out[0] if isinstance(out, tuple) else out

    def _forward_with_attention(self, index: int, hidden: torch.Tensor, inputs: LayerInputs, probs: torch.Tensor) -> torch.Tensor:
        layer = self.layers[index]
        context = attend(probs, layer.attention.self.value(hidden))
        return layer.feed_forward_chunk(layer.attention.output(context, hidden))

    def logits(self, sequence_output: torch.Tensor, inputs: LayerInputs) -> torch.Tensor:
        if self.config.model_type == "bert":  # BertForSequenceClassification reads the pooler
            return self.model.classifier(self.model.dropout(self.base.pooler(sequence_output)))
        return self.model.classifier(sequence_output)

    def context_module(self, index: int) -> nn.Module:
        return self.layers[index].attention.output
