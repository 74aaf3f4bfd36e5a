"""A uniform view of BERT-family sequence classifiers, layer by layer.

The attribution engine needs to run the encoder from any layer upwards and to run one layer with its
attention probabilities given from outside. The BERT, RoBERTa (XLM-R, CamemBERT) and ELECTRA classes of
transformers share one layer structure (``layer.attention.self.value``, ``layer.attention.output``,
``layer.feed_forward_chunk``); they differ in where the classifier reads the sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel


class UnsupportedModelError(ValueError):
    """The model is not a supported BERT-family sequence classifier."""


@dataclass(frozen=True)
class Architecture:
    """How a model type's classification head reads the encoder output."""

    model_type: str
    head_reads_pooler: bool


ARCHITECTURES: dict[str, Architecture] = {
    arch.model_type: arch
    for arch in (
        Architecture("bert", head_reads_pooler=True),
        Architecture("roberta", head_reads_pooler=False),
        Architecture("xlm-roberta", head_reads_pooler=False),
        Architecture("camembert", head_reads_pooler=False),
        Architecture("electra", head_reads_pooler=False),
    )
}


class EncoderClassifier:
    """Layer-level access to a supported ``AutoModelForSequenceClassification``."""

    def __init__(self, model: PreTrainedModel) -> None:
        model_type = getattr(model.config, "model_type", None)
        architecture = ARCHITECTURES.get(model_type)
        if architecture is None or not hasattr(model, "classifier"):
            raise UnsupportedModelError(
                f"{type(model).__name__} (model_type={model_type!r}) is not supported; attribution works for "
                f"sequence classifiers of type {', '.join(sorted(ARCHITECTURES))}"
            )
        if getattr(model.config, "is_decoder", False):
            raise UnsupportedModelError("decoder (causal) configurations are not supported")
        self.model = model
        self.architecture = architecture
        self.base = getattr(model, model.base_model_prefix)
        self.layers: list[nn.Module] = list(self.base.encoder.layer)
        total_heads = model.config.num_attention_heads
        pruned = {int(k): set(v) for k, v in (getattr(model.config, "pruned_heads", None) or {}).items()}
        self.head_ids: list[list[int]] = [
            [h for h in range(total_heads) if h not in pruned.get(i, set())] for i in range(len(self.layers))
        ]
        for i, layer in enumerate(self.layers):
            if layer.attention.self.num_attention_heads != len(self.head_ids[i]):
                raise UnsupportedModelError(
                    f"layer {i} has {layer.attention.self.num_attention_heads} heads but config.pruned_heads "
                    f"implies {len(self.head_ids[i])}"
                )

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def num_labels(self) -> int:
        return int(self.model.config.num_labels)

    @staticmethod
    def additive_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(batch, n) 0/1 mask → (batch, 1, 1, n) additive mask, as BertModel builds it."""
        mask = attention_mask[:, None, None, :].to(dtype)
        return (1.0 - mask) * torch.finfo(dtype).min

    def layer_forward(self, index: int, hidden: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        """The unmodified encoder layer ``index``."""
        out = self.layers[index](hidden, attention_mask=additive_mask)
        return out[0] if isinstance(out, tuple) else out

    def layer_with_attention(self, index: int, hidden: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """Encoder layer ``index`` with its attention probabilities replaced by ``probs`` (batch, heads, n, n)."""
        layer = self.layers[index]
        attention = layer.attention.self
        batch, n, _ = hidden.shape
        heads, head_size = attention.num_attention_heads, attention.attention_head_size
        values = attention.value(hidden).view(batch, n, heads, head_size).transpose(1, 2)
        context = torch.matmul(probs, values).transpose(1, 2).reshape(batch, n, heads * head_size)
        attention_output = layer.attention.output(context, hidden)
        return layer.feed_forward_chunk(attention_output)

    def logits(self, sequence_output: torch.Tensor) -> torch.Tensor:
        """Classification logits from the last layer's hidden states."""
        if self.architecture.head_reads_pooler:
            pooled = self.base.pooler(sequence_output)
            return self.model.classifier(self.model.dropout(pooled))
        return self.model.classifier(sequence_output)
