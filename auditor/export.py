"""ONNX export of (full or head-pruned) classifiers and inference with ONNX Runtime.

Minimal version written by the serving work to the contract in the brief; the heads work supersedes it.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from auditor.errors import InputError, ModelLoadError
from auditor.models import Classifier

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class _LogitsOnly(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs))).logits


def export_onnx(classifier: Classifier, path: Path | str) -> Path:
    """Export to one ONNX file: inputs input_ids, attention_mask (, token_type_ids), output ``logits``,
    dynamic batch and sequence axes."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    sample = classifier.encode(["an example sentence to trace", "another one"])
    names = [name for name in INPUT_NAMES if name in sample]
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    wrapper = _LogitsOnly(classifier.model, names).eval()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, tuple(sample[name] for name in names), str(out), input_names=names, output_names=["logits"],
            dynamic_shapes=(tuple({0: batch, 1: sequence} for _ in names),), dynamo=True, external_data=False,
        )  # fmt: skip
    return out


class OnnxClassifier:
    """An exported classifier run by ONNX Runtime (CUDA provider when present, else CPU)."""

    def __init__(self, onnx_path: Path | str, tokenizer_dir: Path | str, threads: int | None = None) -> None:
        import onnxruntime
        from transformers import AutoTokenizer

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        if threads is not None:
            options.intra_op_num_threads = threads
        available = onnxruntime.get_available_providers()
        providers = ["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available and torch.cuda.is_available() else []
        try:
            self.session = onnxruntime.InferenceSession(str(onnx_path), options, providers=[*providers, "CPUExecutionProvider"])
            self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        except Exception as error:  # onnxruntime raises its own exception types
            raise ModelLoadError(f"cannot load {onnx_path} with the tokenizer of {tokenizer_dir}: {error}") from None
        self.input_names = [i.name for i in self.session.get_inputs()]

    def logits(self, encoding: Mapping[str, np.ndarray | torch.Tensor]) -> np.ndarray:
        """(batch, labels) logits for an encoded batch (numpy arrays or torch tensors)."""
        feed = {}
        for name in self.input_names:
            if name not in encoding:
                raise InputError(f"the ONNX model needs input {name!r}")
            value = encoding[name]
            feed[name] = (value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)).astype(np.int64)
        return self.session.run(["logits"], feed)[0]
