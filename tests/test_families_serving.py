"""``auditor package`` for DistilBERT, ALBERT (head-pruned through its shared layer), DeBERTa-v2 and
ModernBERT (tiny random models), served by one real TorchServe: predictions equal in-process inference
(ONNX Runtime archives within float32 kernel differences), explanations equal the library's attribution."""

from __future__ import annotations

import json

import pytest
import torch

from auditor.cli import main
from auditor.explain import explain
from auditor.models import load_classifier
from auditor.pruning import prune_model
from auditor.schemas import Explanation, ExplanationOptions, Prediction
from auditor.serving.torchserve import ServedModel, TorchServe
from tests.families import FAMILIES, save_tiny
from tests.numerics import PREDICTION_ATOL, SERVED_ULPS, assert_close

pytestmark = pytest.mark.slow  # a real TorchServe with every family

#: how each family is packaged: backend and heads pruned (ALBERT: the same heads in every layer sharing weights)
PACKAGING = {
    "distilbert": ("onnx", None),
    "albert": ("torch", {0: [1, 2], 1: [1, 2]}),
    "deberta-v2": ("torch", None),
    "modernbert": ("onnx", None),
}
TEXTS = ["a gripping , beautifully acted film", "dull", "it is neither funny nor moving , and it goes on far too long ."]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("families-serving")
    store = work / "store"
    references = {}
    for family in FAMILIES:
        folder = save_tiny(family, work / family)
        backend, pruned = PACKAGING[family]
        spec = ["--pruned", ";".join(f"{layer}:{','.join(map(str, heads))}" for layer, heads in pruned.items())] if pruned else []
        arguments = ["package", "--model", str(folder), "--name", family, "--store", str(store), "--backend", backend,
                     "--max-tokens", "64", *spec]  # fmt: skip
        try:  # the real entry point, in process
            main(arguments)
        except SystemExit as done:
            assert not done.code, f"auditor package exited with {done.code}"
        assert (store / f"{family}.mar").is_file()
        reference = load_classifier(folder, device="cpu")
        references[family] = load_classifier(prune_model(reference, pruned, work / f"{family}-pruned")) if pruned else reference
    with TorchServe(store, [ServedModel(family, workers=1) for family in FAMILIES]) as server:
        yield server, references


@pytest.mark.numerics
@pytest.mark.parametrize("family", FAMILIES)
def test_predictions_equal_in_process_inference(served, family: str) -> None:
    server, references = served
    classifier = references[family]
    with torch.no_grad():
        expected = classifier.model(**classifier.encode(TEXTS)).logits.double().softmax(-1).tolist()
    for text, probabilities in zip(TEXTS, expected):
        answer = server.post(f"/predictions/{family}", {"text": text})
        assert answer.status_code == 200, answer.text
        assert Prediction.model_validate_json(answer.text).probabilities == pytest.approx(probabilities, abs=PREDICTION_ATOL)


@pytest.mark.numerics
@pytest.mark.parametrize("family", FAMILIES)
def test_explanations_equal_library_attribution(served, family: str) -> None:
    server, references = served
    options = {"steps": 2, "top_k": 3, "include_matrices": True, "include_tree": True, "target": 1}
    answer = server.post(f"/explanations/{family}", {"text": TEXTS[0], "options": options})
    assert answer.status_code == 200, answer.text
    local = explain(references[family], TEXTS[0], None, ExplanationOptions(**options)).model_dump(mode="json")
    local["model"]["name"] = family
    assert_close(json.loads(answer.text), local, SERVED_ULPS)
    got = Explanation.model_validate_json(answer.text)
    expected_heads = [0, 3] if family == "albert" else [0, 1, 2, 3]
    assert all(layer.head_ids == expected_heads for layer in got.layers)
