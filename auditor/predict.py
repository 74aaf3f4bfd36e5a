"""Class predictions of a sequence classifier: softmax over the logits, one ``Prediction`` per input."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import BatchEncoding

from auditor.models import Classifier
from auditor.schemas import Prediction


def softmax(logits: np.ndarray) -> np.ndarray:
    """p_i = exp(z_i − max z) / Σ_j exp(z_j − max z), per row, in float64."""
    scores = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def predictions_from_logits(logits: np.ndarray, labels: Sequence[str]) -> list[Prediction]:
    """p = softmax(z) per row of ``logits`` (batch × classes); the label is argmax p."""
    probabilities = softmax(logits)
    return [
        Prediction(label=labels[int(row.argmax())], label_id=int(row.argmax()), probabilities=row.tolist(), labels=list(labels))
        for row in probabilities
    ]


def torch_logits(classifier: Classifier, encoding: BatchEncoding) -> np.ndarray:
    """The PyTorch model's logits (batch × classes) for an encoded batch, without autograd."""
    inputs = {name: tensor.to(classifier.device) for name, tensor in encoding.items()}
    with torch.inference_mode():
        return classifier.model(**inputs).logits.double().cpu().numpy()

