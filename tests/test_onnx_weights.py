"""Explanations from an ONNX graph's own weights: the model rebuilt from a float graph (full, head-pruned, and
the tiny DistilBERT and ModernBERT whose zero biases the exporter drops) has exactly the checkpoint's weights
and explains as the original, to a few float32 ulps; from an int8 graph each weight is within half a quantisation step; a
graph of other weights is refused; an ONNX archive carries the graph and the map instead of the PyTorch
weights and is no larger than the full model's PyTorch archive."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from safetensors.torch import load_file

from auditor.serving.archive import MODEL_FILES, WEIGHT_FILES, package_model
from auditor.errors import InputError, ModelLoadError
from auditor.explain import explain
from auditor.export import export_onnx, quantize_dynamic
from auditor.models import Classifier, load_classifier
from auditor.onnx_weights import WEIGHT_MAP_FILE, load_classifier_from_onnx, weight_map
from auditor.pruning import prune_model
from auditor.schemas import ExplanationOptions
from tests.families import save_tiny
from tests.numerics import assert_close

MODELS = Path(__file__).resolve().parents[1].parent / "shared" / "models"
SST2 = MODELS / "minilm-sst2"
PRUNED_HEADS = {0: [0, 3, 7], 2: [1, 2], 5: [4, 5, 6, 11]}
TEXT = "it is neither funny nor moving , and it goes on far too long ."
OPTIONS = ExplanationOptions(steps=4, top_k=4, include_matrices=True, include_tree=True, target=1)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The full fixture model and a head-pruned copy (stored float16, as ``auditor package`` stores it), each
    with its exported graph as model.onnx."""
    work = tmp_path_factory.mktemp("onnx-weights")
    pruned = prune_model(load_classifier(SST2, "cpu", torch.float16), PRUNED_HEADS, work / "pruned")
    full = work / "full"
    full.mkdir()
    for name in MODEL_FILES:
        if (SST2 / name).is_file():
            shutil.copy2(SST2 / name, full / name)
    for folder in (full, pruned):
        export_onnx(load_classifier(folder, device="cpu"), folder / "model.onnx")
    return {"full": full, "pruned": pruned}


def without_weights(folder: Path, graph: Path, out: Path) -> Path:
    """``folder`` as an ONNX archive holds it: its files but the PyTorch weights, and the map of ``graph``."""
    out.mkdir()
    for name in MODEL_FILES:
        if (folder / name).is_file() and name not in WEIGHT_FILES:
            shutil.copy2(folder / name, out / name)
    (out / WEIGHT_MAP_FILE).write_text(weight_map(load_classifier(folder, device="cpu"), graph).model_dump_json())
    return out


EXPLANATION_ULPS = 4
"""Two model objects with bit-equal weights still need not explain bit-equally: the rebuilt model's tensors
lie elsewhere in memory, and ATen's kernels (AVX-512, AVX2, default) may then round a sum differently. Seen
under the three paths here: at most one ulp of a probability of 0.16 (0.125 ulps at 1.0); 4 ulps of the value,
at least of 1, leave room for other CPUs. Tokens, pairs and tree edges must be equal."""


def assert_same_explanation(original: Classifier, rebuilt: Classifier) -> None:
    expected = explain(original, TEXT, None, OPTIONS).model_dump(mode="json")
    got = explain(rebuilt, TEXT, None, OPTIONS).model_dump(mode="json")
    got["model"]["name"] = expected["model"]["name"]  # named after its folder
    assert_close(got, expected, EXPLANATION_ULPS)


@pytest.mark.numerics
@pytest.mark.parametrize("which", ["full", "pruned"])
def test_the_model_rebuilt_from_the_float_graph_has_the_checkpoint_weights(folders, tmp_path, which):
    folder = folders[which]
    rebuilt = load_classifier_from_onnx(without_weights(folder, folder / "model.onnx", tmp_path / "archive"), folder / "model.onnx", "cpu")
    checkpoint = load_file(str(folder / "model.safetensors"))  # float16
    state = rebuilt.model.state_dict()
    assert next(iter(state.values())).dtype == torch.float32
    assert checkpoint.keys() <= state.keys()
    assert all(torch.equal(state[name].to(value.dtype), value) for name, value in checkpoint.items())  # copied, not computed
    original = load_classifier(folder, device="cpu")
    assert rebuilt.identity.model_copy(update={"name": original.identity.name}) == original.identity  # weights digest too
    assert rebuilt.identity.pruned_heads == (PRUNED_HEADS if which == "pruned" else {})
    assert_same_explanation(original, rebuilt)


def test_the_model_rebuilt_from_the_int8_graph_is_within_half_a_quantisation_step(folders, tmp_path):
    folder = folders["pruned"]
    graph = quantize_dynamic(folder / "model.onnx", tmp_path / "model.int8.onnx")
    archive = without_weights(folder, graph, tmp_path / "archive")
    where = json.loads((archive / WEIGHT_MAP_FILE).read_text())["tensors"]
    rebuilt = load_classifier_from_onnx(archive, graph, "cpu").model.state_dict()
    original = load_classifier(folder, device="cpu").model.state_dict()
    scales = {i.name: float(numpy_helper.to_array(i)) for i in onnx.load(str(graph)).graph.initializer if i.name.endswith("_scale")}
    quantized = {name for name, entry in where.items() if entry["quantized"]}
    assert len(quantized) == 41  # every matrix: 6 layers x 6 Linear weights, pooler, classifier, 3 embeddings
    for name in quantized:
        step = scales[f"{where[name]['initializer']}_scale"]
        assert float((rebuilt[name] - original[name]).abs().max()) <= step / 2 * (1 + 1e-5), name
    assert all(torch.equal(rebuilt[name], original[name]) for name in where if name not in quantized)  # biases, LayerNorm


def test_a_graph_of_other_weights_is_refused(folders, tmp_path):
    rte = load_classifier(MODELS / "minilm-rte", device="cpu")  # the same architecture as SST-2's
    with pytest.raises(InputError, match=r"does not hold the weights of minilm-rte \(bert\.embeddings.* more\)"):
        weight_map(rte, folders["full"] / "model.onnx")
    int8 = quantize_dynamic(folders["full"] / "model.onnx", tmp_path / "model.int8.onnx")  # errors beyond a step
    with pytest.raises(InputError, match="does not hold the weights of minilm-rte"):
        weight_map(rte, int8)


def test_loading_without_a_complete_map_is_a_model_load_error(folders, tmp_path):
    folder = folders["pruned"]
    archive = without_weights(folder, folder / "model.onnx", tmp_path / "archive")
    document = json.loads((archive / WEIGHT_MAP_FILE).read_text())
    del document["tensors"]["classifier.weight"]
    (archive / WEIGHT_MAP_FILE).write_text(json.dumps(document))
    with pytest.raises(ModelLoadError, match="does not say where model.onnx holds classifier.weight"):
        load_classifier_from_onnx(archive, folder / "model.onnx", "cpu")
    (archive / WEIGHT_MAP_FILE).unlink()
    with pytest.raises(ModelLoadError, match="cannot read the ONNX weight map"):
        load_classifier_from_onnx(archive, folder / "model.onnx", "cpu")


@pytest.mark.numerics
@pytest.mark.parametrize("family", ["distilbert", "modernbert"])
def test_zero_biases_the_exporter_drops_are_rebuilt(family, tmp_path):
    folder = save_tiny(family, tmp_path / family)  # random weights: float32, classifier biases zero
    graph = export_onnx(load_classifier(folder, device="cpu"), folder / "model.onnx")
    archive = without_weights(folder, graph, tmp_path / "archive")
    assert json.loads((archive / WEIGHT_MAP_FILE).read_text())["tensors"]["classifier.bias"]["initializer"] is None
    original, rebuilt = load_classifier(folder, device="cpu"), load_classifier_from_onnx(archive, graph, "cpu")
    expected = original.model.state_dict()
    assert all(torch.equal(value, expected[name]) for name, value in rebuilt.model.state_dict().items())
    assert_same_explanation(original, rebuilt)


@pytest.mark.numerics
def test_an_onnx_archive_carries_the_graph_and_its_map_and_is_no_larger_than_the_full_one(folders, tmp_path):
    store = tmp_path / "store"
    full = package_model(SST2, "sst2", store, archive_format="zip-store")
    pruned = folders["pruned"]
    onnx_archive = package_model(pruned, "sst2-pruned-onnx", store, backend="onnx", archive_format="zip-store", onnx_file=pruned / "model.onnx")
    assert onnx_archive.stat().st_size < full.stat().st_size
    with zipfile.ZipFile(onnx_archive) as archive:
        assert {"model.onnx", WEIGHT_MAP_FILE, "config.json"} <= set(archive.namelist())
        assert not set(WEIGHT_FILES) & set(archive.namelist())
        archive.extractall(tmp_path / "unpacked")
    graph = onnx.load(str(tmp_path / "unpacked" / "model.onnx")).graph
    assert {numpy_helper.to_array(i).dtype for i in graph.initializer if len(i.dims) > 0} == {np.dtype(np.float16), np.dtype(np.int64)}
    # what the handler loads from the unpacked archive explains as the pruned model does
    served = load_classifier_from_onnx(tmp_path / "unpacked", tmp_path / "unpacked" / "model.onnx", "cpu")
    assert_same_explanation(load_classifier(pruned, device="cpu"), served)
