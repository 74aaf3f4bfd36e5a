"""ONNX export of (full or head-pruned) classifiers, inference with ONNX Runtime, and optional int8 dynamic
quantisation, which is only ever used when asked for explicitly and whose accuracy is reported by its callers.

Exported float graphs store every weight that float16 holds exactly as float16 followed by a Cast to float32
(``store_float16``): a float16 checkpoint's graph is half the size, and ONNX Runtime folds the Casts when it
creates the session, so the graph computes in float32 with the same weights and the same speed."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, numpy_helper
from transformers import AutoTokenizer, BatchEncoding

from auditor.errors import InputError, ModelLoadError
from auditor.models import Classifier, quiet_transformers

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class _LogitsOnly(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs))).logits


class _WithoutTorchvisionNotice(logging.Filter):
    """Drops the exporter's ``torchvision is not installed. Skipping torchvision::…`` warnings (four per export):
    a text classifier's graph holds no torchvision operator, so they tell the user nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("torchvision is not installed")


REGISTRATION_LOGGER = "torch.onnx._internal.exporter._registration"
"""The logger of the ONNX exporter's operator registry, which warns about torchvision."""


def export_onnx(classifier: Classifier, path: Path | str, opset: int = 18) -> Path:
    """Export the classifier to one ONNX file with inputs input_ids, attention_mask (and token_type_ids when
    the tokenizer makes them), output ``logits``, and dynamic batch and sequence axes (torch.export.Dim); the
    weights float16 holds exactly are stored in float16 (``store_float16``), and the nodes carry no metadata."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    sample = classifier.encode(["an example sentence to trace", "another one"])
    names = [name for name in INPUT_NAMES if name in sample]
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    wrapper = _LogitsOnly(classifier.model, names).eval()
    registration, notice = logging.getLogger(REGISTRATION_LOGGER), _WithoutTorchvisionNotice()
    registration.addFilter(notice)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                tuple(sample[name] for name in names),
                str(out),
                input_names=names,
                output_names=["logits"],
                dynamic_shapes=(tuple({0: batch, 1: sequence} for _ in names),),  # one entry: the *inputs tuple
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    finally:
        registration.removeFilter(notice)
    model = onnx.load(str(out))
    for node in model.graph.node:  # the exporter's provenance (stack traces with this machine's paths, FX names)
        del node.metadata_props[:]
    store_float16(model)
    onnx.save(model, str(out))
    return out


def store_float16(model: onnx.ModelProto) -> None:
    """Store each float32 initializer of the main graph that converts to float16 and back bit for bit (all the
    weights of a float16 checkpoint) as a float16 initializer ``<name>_float16`` and a ``Cast(to=FLOAT)`` node
    whose output is ``<name>``, in place. Scalars, and tensors float16 would change, stay float32."""
    graph = model.graph
    kept, casts = [], []
    for initializer in graph.initializer:
        values = numpy_helper.to_array(initializer) if initializer.data_type == TensorProto.FLOAT else None
        with np.errstate(over="ignore"):  # a value beyond float16's range becomes inf: not exact, kept float32
            half = None if values is None or values.size < 2 else values.astype(np.float16)
        if half is None or half.astype(np.float32).tobytes() != values.tobytes():
            kept.append(initializer)
            continue
        stored = f"{initializer.name}_float16"
        kept.append(numpy_helper.from_array(half, stored))
        casts.append(onnx.helper.make_node("Cast", [stored], [initializer.name], name=f"{stored}_cast", to=TensorProto.FLOAT))
    nodes = casts + list(graph.node)  # the Casts come first: the graph's nodes stay in topological order
    del graph.initializer[:], graph.node[:]
    graph.initializer.extend(kept)
    graph.node.extend(nodes)


def restore_float32(model: onnx.ModelProto) -> None:
    """Undo ``store_float16`` in place: each Cast(to=FLOAT) of a float16 initializer becomes the float32
    initializer it outputs (tools that look for weights as initializers, such as quantisers, need them so)."""
    graph = model.graph
    halves = {i.name: i for i in graph.initializer if i.data_type == TensorProto.FLOAT16}
    restored, nodes = [], []
    for node in graph.node:
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        if node.op_type == "Cast" and to == TensorProto.FLOAT and node.input[0] in halves:
            restored.append(numpy_helper.from_array(numpy_helper.to_array(halves[node.input[0]]).astype(np.float32), node.output[0]))
        else:
            nodes.append(node)
    used = {name for node in nodes for name in node.input} | {o.name for o in graph.output}
    initializers = [i for i in graph.initializer if i.name not in halves or i.name in used] + restored
    del graph.initializer[:], graph.node[:]
    graph.initializer.extend(initializers)
    graph.node.extend(nodes)


def quantize_dynamic(onnx_path: Path | str, out_path: Path | str) -> Path:
    """Int8 dynamic quantisation of the weights of a plain exported graph (activations quantised at run time),
    from its float32 weights (``restore_float32``).

    Lossy: callers must report its accuracy next to the float model's before anyone uses it.
    """
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    out = Path(out_path)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # silence the "consider pre-processing" notice
    try:
        model = onnx.load(str(onnx_path))
        restore_float32(model)
        ort_quantize_dynamic(model, str(out), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    return out


def default_providers() -> list[str]:
    """CUDA when this ONNX Runtime build and the machine have it, else CPU."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" in available and torch.cuda.is_available():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxClassifier:
    """An exported classifier run by ONNX Runtime, with the tokenizer of ``tokenizer_dir``.

    ``labels`` come from ``tokenizer_dir/config.json`` when it is a saved model folder.
    """

    def __init__(
        self,
        onnx_path: Path | str,
        tokenizer_dir: Path | str,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
    ) -> None:
        import onnxruntime

        path = Path(onnx_path)
        if not path.is_file():
            raise ModelLoadError(f"ONNX model not found: {path}")
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        if threads is not None:  # a fixed thread count that yields the cores between runs (no spin-waiting)
            options.intra_op_num_threads = threads
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=list(providers or default_providers()))
            with quiet_transformers():
                self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        except Exception as error:  # onnxruntime raises its own exception types for unreadable graphs
            raise ModelLoadError(f"cannot load {path} with the tokenizer of {tokenizer_dir}: {error}") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        config = Path(tokenizer_dir) / "config.json"
        id2label = json.loads(config.read_text()).get("id2label", {}) if config.is_file() else {}
        self.labels = [id2label[k] for k in sorted(id2label, key=int)]

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    def encode(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None) -> BatchEncoding:
        """Tokenize a batch (padded, truncated to the tokenizer's limit) as numpy arrays."""
        if not texts:
            raise InputError("no input text given")
        return self.tokenizer(list(texts), None if text_pairs is None else list(text_pairs), padding=True, truncation=True, return_tensors="np")

    def logits(self, encoding: Mapping[str, np.ndarray | torch.Tensor]) -> np.ndarray:
        """(batch, labels) logits for an encoded batch (numpy arrays or torch tensors)."""
        feed = {}
        for name in self.input_names:
            if name not in encoding:
                raise InputError(f"the ONNX model needs input {name!r}")
            value = encoding[name]
            array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            feed[name] = array.astype(np.int64)
        return self.session.run(["logits"], feed)[0]
