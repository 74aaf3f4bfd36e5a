"""Exported float graphs store their weights in float16 and compute in float32: the same logits bit for bit as
the float32 graph, ONNX Runtime folds the Casts away, the file halves, and int8 quantises the float32 weights."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from auditor.data import load_dataset
from auditor.export import OnnxClassifier, export_onnx, quantize_dynamic, restore_float32, store_float16
from auditor.models import load_classifier

SST2 = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "minilm-sst2"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The fixture model exported (float16 storage) and the same graph with its float32 weights restored."""
    folder = tmp_path_factory.mktemp("export")
    stored = export_onnx(load_classifier(SST2, device="cpu"), folder / "model.onnx")
    model = onnx.load(str(stored))
    restore_float32(model)
    onnx.save(model, str(folder / "model.float32.onnx"))
    return stored, folder / "model.float32.onnx"


def optimized_graph(path: Path, out: Path) -> onnx.GraphProto:
    """The graph as ONNX Runtime runs it, after the optimisations of session creation."""
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.optimized_model_filepath = str(out)
    onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return onnx.load(str(out)).graph


@pytest.mark.numerics
def test_float16_storage_computes_the_float32_logits_bit_for_bit(exported, tmp_path):
    stored, float32 = exported
    dtypes = Counter((i.data_type, len(i.dims) > 0) for i in onnx.load(str(stored)).graph.initializer)
    assert dtypes[(TensorProto.FLOAT, True)] == 0 and dtypes[(TensorProto.FLOAT16, True)] > 100  # every weight tensor
    assert stored.stat().st_size < 0.51 * float32.stat().st_size
    texts = [example.text for example in load_dataset("sst2").head(64).examples]
    runners = [OnnxClassifier(path, SST2, providers=["CPUExecutionProvider"], threads=1) for path in (stored, float32)]
    for start in range(0, len(texts), 16):
        encoding = runners[0].encode(texts[start : start + 16])
        half, full = (runner.logits(encoding) for runner in runners)
        assert np.array_equal(half, full)  # exact: one process, and (below) the same graph after optimisation
    # session creation folds the Casts into float32 weights: the graph run is the float32 graph's
    graphs = [optimized_graph(path, tmp_path / f"{path.stem}.optimized.onnx") for path in (stored, float32)]
    assert [node.op_type for node in graphs[0].node] == [node.op_type for node in graphs[1].node]
    assert {i.data_type for i in graphs[0].initializer} == {i.data_type for i in graphs[1].initializer} == {TensorProto.FLOAT, TensorProto.INT64}


@pytest.mark.numerics
def test_int8_quantises_the_float32_weights(exported, tmp_path):
    stored, float32 = exported
    graphs = [onnx.load(str(quantize_dynamic(path, tmp_path / f"{path.stem}.int8.onnx"))).graph for path in (stored, float32)]
    weights = [{i.name: numpy_helper.to_array(i) for i in graph.initializer} for graph in graphs]
    assert weights[0].keys() == weights[1].keys() and any(name.endswith("_quantized") for name in weights[0])
    assert all(np.array_equal(weights[0][name], weights[1][name]) for name in weights[0])  # one process quantises equal weights
    assert [node.op_type for node in graphs[0].node] == [node.op_type for node in graphs[1].node]


def test_only_tensors_float16_holds_exactly_are_stored_so():
    exact, inexact = np.array([0.5, -2.0, 1024.0], np.float32), np.array([0.1, 1.0, 2.0], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "exact"], ["y"]), helper.make_node("Mul", ["y", "inexact"], ["z"]),
         helper.make_node("Mul", ["z", "scalar"], ["out"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])], [helper.make_tensor_value_info("out", TensorProto.FLOAT, [3])],
        [numpy_helper.from_array(exact, "exact"), numpy_helper.from_array(inexact, "inexact"), numpy_helper.from_array(np.float32(0.5), "scalar")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    stored = onnx.ModelProto.FromString(model.SerializeToString())
    store_float16(stored)
    onnx.checker.check_model(stored)
    types = {i.name: i.data_type for i in stored.graph.initializer}
    assert types == {"exact_float16": TensorProto.FLOAT16, "inexact": TensorProto.FLOAT, "scalar": TensorProto.FLOAT}
    x = np.array([1.0, 2.0, 3.0], np.float32)
    run = lambda m: onnxruntime.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.array_equal(run(stored), run(model))  # exact: one process, equal weights, the same kernels
    restore_float32(stored)
    assert {i.name: numpy_helper.to_array(i).tobytes() for i in stored.graph.initializer} == {
        i.name: numpy_helper.to_array(i).tobytes() for i in model.graph.initializer
    }
    assert [node.op_type for node in stored.graph.node] == ["Add", "Mul", "Mul"]


def test_export_says_nothing_about_torchvision(tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    """``prune --onnx`` printed four "torchvision is not installed" warnings from the exporter: not any more."""
    with caplog.at_level("WARNING"):
        export_onnx(load_classifier(SST2, device="cpu"), tmp_path / "model.onnx")
    assert (tmp_path / "model.onnx").is_file()
    assert not [r for r in caplog.records if "torchvision" in r.getMessage()] and "torchvision" not in capfd.readouterr().err
