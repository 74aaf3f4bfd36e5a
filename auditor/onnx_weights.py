"""Explanations from an ONNX graph's own weights, so that an ONNX archive ships the graph without the PyTorch
weights: the explanation model is built from config.json and every tensor of its state dict is read from the
graph.

At package time, with the PyTorch model at hand, ``weight_map`` finds for each floating-point tensor of the
state dict the graph initializer that holds it: under its own name or an anonymous one, possibly transposed
(the exporter's Linear weights of MatMul nodes), stored float16 and cast to float32
(``auditor.export.store_float16``), or quantised by ``auditor.export.quantize_dynamic`` (``<x>_quantized``,
``<x>_scale``, ``<x>_zero_point``); a tensor of zeros needs none (the exporter drops zero biases). The archive
stores the map as ``onnx_weights.json``; ``load_classifier_from_onnx`` reads the model back from it in the
handler.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
import torch
from google.protobuf.message import DecodeError
from onnx import TensorProto, numpy_helper
from pydantic import ValidationError
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from auditor.errors import InputError, ModelLoadError, validation_message
from auditor.models import Classifier, as_classifier, quiet_transformers
from auditor.schemas import OnnxWeight, OnnxWeightMap

WEIGHT_MAP_FILE = "onnx_weights.json"
QUANTIZED_SUFFIX = "_quantized"
FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16)


def _values(initializers: dict[str, onnx.TensorProto], name: str, quantized: bool) -> np.ndarray:
    """The float32 values of initializer ``name``, or for a quantised tensor ``name`` its dequantisation
    ``(q - zero_point) * scale`` (KeyError when an initializer is missing)."""
    if not quantized:
        return numpy_helper.to_array(initializers[name]).astype(np.float32)
    q = numpy_helper.to_array(initializers[name + QUANTIZED_SUFFIX]).astype(np.int32)
    zero_point = numpy_helper.to_array(initializers[f"{name}_zero_point"]).astype(np.int32)
    return (q - zero_point).astype(np.float32) * numpy_helper.to_array(initializers[f"{name}_scale"]).astype(np.float32)


def _candidates(graph: onnx.GraphProto) -> dict[tuple[int, ...], list[tuple[OnnxWeight, np.ndarray, float]]]:
    """Every float and per-tensor quantised initializer of the graph, by the shape it offers a state-dict
    tensor (a matrix offers itself and its transpose): (where, values as offered, scale; 0 when not quantised)."""
    initializers = {i.name: i for i in graph.initializer}
    offered: dict[tuple[int, ...], list[tuple[OnnxWeight, np.ndarray, float]]] = defaultdict(list)
    for name, initializer in initializers.items():
        base = name.removesuffix(QUANTIZED_SUFFIX)
        scale_tensor = initializers.get(f"{base}_scale") if base != name and f"{base}_zero_point" in initializers else None
        quantized = scale_tensor is not None and not scale_tensor.dims  # per-tensor: quantize_dynamic's default
        if quantized:
            values, scale = _values(initializers, base, True), float(numpy_helper.to_array(scale_tensor))
        elif initializer.data_type in FLOAT_TYPES:
            values, scale = _values(initializers, name, False), 0.0
        else:
            continue
        where = base if quantized else name
        offered[values.shape].append((OnnxWeight(initializer=where, quantized=quantized), values, scale))
        if values.ndim == 2:
            offered[values.T.shape].append((OnnxWeight(initializer=where, transposed=True, quantized=quantized), values.T, scale))
    return offered


def _match(target: np.ndarray, offered: list[tuple[OnnxWeight, np.ndarray, float]]) -> OnnxWeight | None:
    """An initializer equal to ``target`` bit for bit, else the quantised one closest to it (by largest absolute
    error) if that error is at most its scale (rounding leaves at most half a step); None when neither."""
    best: tuple[float, OnnxWeight] | None = None
    for where, values, scale in offered:
        if not where.quantized:
            if np.array_equal(values, target):
                return where
            continue
        error = float(np.abs(values - target).max())
        if error <= scale and (best is None or error < best[0]):
            best = (error, where)
    return None if best is None else best[1]


def weight_map(classifier: Classifier, onnx_file: Path | str) -> OnnxWeightMap:
    """Where the graph ``onnx_file`` holds each floating-point tensor of ``classifier``'s state dict.

    InputError naming the tensors the graph does not hold (exactly, or quantised within a scale step):
    the graph was not exported from this model.
    """
    path = Path(onnx_file)
    try:
        offered = _candidates(onnx.load(str(path)).graph)
    except (OSError, DecodeError) as error:
        raise InputError(f"cannot read the ONNX graph {path}: {error}") from None
    tensors, missing = {}, []
    for name, tensor in classifier.model.state_dict().items():
        if not tensor.is_floating_point():
            continue
        target = tensor.detach().cpu().float().numpy()
        where = _match(target, offered.get(target.shape, []))
        if where is None and not target.any():  # the exporter's optimiser drops zero biases
            where = OnnxWeight(initializer=None)
        if where is None:
            missing.append(name)
        else:
            tensors[name] = where
    if missing:
        listed = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise InputError(f"{path} does not hold the weights of {classifier.identity.name} ({listed}): export the graph from this model")
    if any(where.quantized for where in tensors.values()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    else:
        digest = classifier.identity.weights_sha256
    return OnnxWeightMap(weights_sha256=digest, tensors=tensors)


def load_classifier_from_onnx(
    model_dir: Path | str,
    onnx_file: Path | str,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> Classifier:
    """The classifier of a saved folder without PyTorch weights (an ONNX archive): the model built from its
    config.json (pruned heads included), every state-dict tensor read from ``onnx_file`` through the
    folder's ``onnx_weights.json`` (dequantised for an int8 graph), and its tokenizer; as
    ``auditor.models.load_classifier`` otherwise (eager attention, ``device``, ``dtype``, identity).

    ModelLoadError when the folder, its map or the graph cannot be read or a tensor is not in the graph.
    """
    folder, graph_path = Path(model_dir), Path(onnx_file)
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{folder} is not a saved model: it has no config.json")
    try:
        weights = OnnxWeightMap.model_validate_json((folder / WEIGHT_MAP_FILE).read_bytes())
    except OSError as error:
        raise ModelLoadError(f"cannot read the ONNX weight map of {folder}: {error}") from None
    except ValidationError as error:
        raise ModelLoadError(f"invalid {folder / WEIGHT_MAP_FILE}: {validation_message(error)}") from None
    try:
        with quiet_transformers():
            config = AutoConfig.from_pretrained(str(folder))
            # built in float32 whatever config.json's dtype, so that no value read from the graph is rounded
            model = AutoModelForSequenceClassification.from_config(config, attn_implementation="eager", dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
        initializers = {i.name: i for i in onnx.load(str(graph_path)).graph.initializer}
    except (OSError, ValueError, KeyError, DecodeError) as error:
        raise ModelLoadError(f"cannot build a sequence classifier from {folder} and {graph_path}: {error}") from None
    state = {name: tensor for name, tensor in model.state_dict().items() if tensor.is_floating_point()}
    unmapped = sorted(state.keys() - weights.tensors.keys())
    if unmapped:
        raise ModelLoadError(f"{folder / WEIGHT_MAP_FILE} does not say where {graph_path.name} holds {', '.join(unmapped)}")
    with torch.no_grad():
        for name, tensor in state.items():
            where = weights.tensors[name]
            if where.initializer is None:
                tensor.zero_()
                continue
            try:
                values = _values(initializers, where.initializer, where.quantized)
            except KeyError as error:
                raise ModelLoadError(f"{graph_path} has no initializer {error} (for {name})") from None
            values = values.T if where.transposed else values
            if values.shape != tuple(tensor.shape):
                raise ModelLoadError(f"{graph_path}: {where.initializer} has shape {values.shape}, {name} has {tuple(tensor.shape)}")
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(values)))
    return as_classifier(model, tokenizer, folder.name, weights.weights_sha256, device, dtype)
