"""Tiny random-weight classifiers of every newly supported encoder family, built on the spot (no download),
and a saved-folder version with a WordPiece tokenizer made from the fixture model's vocabulary."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AlbertConfig,
    AlbertForSequenceClassification,
    BertTokenizerFast,
    DebertaV2Config,
    DebertaV2ForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ModernBertConfig,
    ModernBertForSequenceClassification,
    PreTrainedModel,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
VOCAB = SHARED / "models" / "minilm-sst2" / "vocab.txt"
FAMILIES = ("distilbert", "albert", "deberta-v2", "modernbert")
#: variants exercising per-family options: ALBERT with two layer groups, DeBERTa-v2 with its convolution,
#: ModernBERT with [CLS] pooling
VARIANTS = (*FAMILIES, "albert-groups", "deberta-v2-conv", "modernbert-cls")


def tiny_model(
    variant: str, vocab_size: int = 120, num_labels: int = 3, layers: int = 2, attn_implementation: str = "eager"
) -> PreTrainedModel:
    """A seeded random model: ``layers`` layers (ALBERT: applications of the shared layer), hidden 32, 4 heads."""
    torch.manual_seed(sum(map(ord, variant)))
    common = dict(vocab_size=vocab_size, num_labels=num_labels, attn_implementation=attn_implementation, pad_token_id=0)
    if variant == "distilbert":
        config = DistilBertConfig(dim=32, n_layers=layers, n_heads=4, hidden_dim=40, max_position_embeddings=64, **common)
        return DistilBertForSequenceClassification(config).eval()
    if variant.startswith("albert"):
        groups = 2 if variant == "albert-groups" else 1
        config = AlbertConfig(
            embedding_size=16, hidden_size=32, num_hidden_layers=max(layers, 2 * groups), num_attention_heads=4,
            intermediate_size=40, max_position_embeddings=64, num_hidden_groups=groups, hidden_act="gelu", **common,
        )
        return AlbertForSequenceClassification(config).eval()
    if variant.startswith("deberta-v2"):
        config = DebertaV2Config(
            hidden_size=32, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=40,
            max_position_embeddings=64, relative_attention=True, position_buckets=8, max_relative_positions=-1,
            pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm", share_att_key=True, type_vocab_size=0,
            position_biased_input=False, pooler_hidden_size=32, conv_kernel_size=3 if variant.endswith("conv") else 0,
            **common,
        )
        return DebertaV2ForSequenceClassification(config).eval()
    if variant.startswith("modernbert"):
        config = ModernBertConfig(
            hidden_size=32, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=40,
            max_position_embeddings=64, global_attn_every_n_layers=2, local_attention=4, reference_compile=False,
            classifier_pooling="cls" if variant.endswith("cls") else "mean", **common,
        )
        return ModernBertForSequenceClassification(config).eval()
    raise ValueError(variant)


def tokenizer_for(family: str) -> BertTokenizerFast:
    """A WordPiece tokenizer over the fixture vocabulary; DistilBERT and ModernBERT take no segment ids."""
    segments = [] if family in ("distilbert", "modernbert") else ["token_type_ids"]
    return BertTokenizerFast(
        vocab_file=str(VOCAB), do_lower_case=True, model_max_length=64, model_input_names=["input_ids", *segments, "attention_mask"]
    )


def save_tiny(family: str, directory: Path, num_labels: int = 2) -> Path:
    """A tiny ``family`` classifier saved with its tokenizer and SST-2 labels (what ``auditor`` commands load)."""
    model = tiny_model(family, vocab_size=30522, num_labels=num_labels)
    model.config.id2label = {0: "negative", 1: "positive"} if num_labels == 2 else {i: f"c{i}" for i in range(num_labels)}
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    model.save_pretrained(directory)
    tokenizer_for(family).save_pretrained(directory)
    return directory
