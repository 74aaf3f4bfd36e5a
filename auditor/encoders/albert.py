"""ALBERT: ``num_hidden_groups`` layer modules (usually one) applied ``num_hidden_layers`` times in turn;
layer index l is the l-th application. ``prune_heads`` and ``config.pruned_heads`` are keyed by module, so
pruning a head removes it from every application of its module. The model's own ``head_mask`` cannot
address applications (every application of a group reads row 0), hence masks go through ``scale_heads``."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

from auditor.encoders import EncoderClassifier, LayerInputs, UnsupportedModelError, additive_mask, attend, register


@register
class AlbertClassifier(EncoderClassifier):
    model_types = ("albert",)

    def _layers(self) -> list[nn.Module]:
        if int(self.config.inner_group_num) != 1:
            raise UnsupportedModelError(f"ALBERT with inner_group_num={self.config.inner_group_num} is not supported (only 1)")
        groups = self.base.encoder.albert_layer_groups
        return [groups[self._prune_key(i)].albert_layers[0] for i in range(int(self.config.num_hidden_layers))]

    def _prune_key(self, index: int) -> int:
        return int(index / (self.config.num_hidden_layers / self.config.num_hidden_groups))

    def _module_heads(self, index: int) -> int:
        return int(self.layers[index].attention.num_attention_heads)

    def layer_inputs(self, attention_mask: torch.Tensor, dtype: torch.dtype) -> LayerInputs:
        return LayerInputs({"attention_mask": attention_mask, "additive": additive_mask(attention_mask, dtype)})

    def _forward(self, index: int, hidden: torch.Tensor, inputs: LayerInputs) -> torch.Tensor:
        return self.layers[index](hidden, inputs["additive"])[0]

    def _forward_with_attention(self, index: int, hidden: torch.Tensor, inputs: LayerInputs, probs: torch.Tensor) -> torch.Tensor:
        layer = self.layers[index]
        attention = layer.attention
        projected = attention.output_dropout(attention.dense(attend(probs, attention.value(hidden))))
        attention_output = attention.LayerNorm(hidden + projected)
        return layer.full_layer_layer_norm(layer.ff_chunk(attention_output) + attention_output)

    def logits(self, sequence_output: torch.Tensor, inputs: LayerInputs) -> torch.Tensor:
        pooled = self.base.pooler_activation(self.base.pooler(sequence_output[:, 0]))
        return self.model.classifier(self.model.dropout(pooled))

    def context_module(self, index: int) -> nn.Module:
        return self.layers[index].attention.dense

    def prune_heads(self, model: PreTrainedModel, heads: dict[int, list[int]]) -> None:
        """Prune from the shared modules: every application of a module must name the same heads."""
        by_module: dict[int, set[int]] = {}
        for index in range(self.num_layers):
            key = self._prune_key(index)
            wanted = set(heads.get(index, [])) - self._config_pruned(key)
            if key in by_module and by_module[key] != wanted:
                applications = [i for i in range(self.num_layers) if self._prune_key(i) == key]
                raise UnsupportedModelError(
                    f"ALBERT layers {applications[0]}…{applications[-1]} share one set of weights, so a head can only be "
                    "pruned from all of them: name the same heads for each (or use masked pruning curves)"
                )
            by_module[key] = wanted
        model.prune_heads({key: sorted(ids) for key, ids in by_module.items() if ids})
