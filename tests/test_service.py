"""The serving worker's request logic in process (``auditor.service.Service``, what the TorchServe handler
calls): malformed bodies, batched bodies, explanation admission by cost, answer size; and the dtype of pruned
weights. The same behaviour through a real TorchServe is in tests/test_serving.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from auditor.models import load_classifier
from auditor.predict import softmax
from auditor.pruning import prune_model
from auditor.schemas import ErrorResponse, HandlerSettings, Prediction, ServingLimits, json_schemas, visible
from auditor.service import Service, explanation_cost
from auditor.archive import checkpoint_dtype

SST2 = Path(__file__).resolve().parents[2] / "shared" / "models" / "minilm-sst2"


@pytest.fixture(scope="module")
def service() -> Service:
    return Service(load_classifier(SST2, device="cpu"), HandlerSettings(limits=ServingLimits(max_explanation_cost=20_000)))


def error(answer) -> ErrorResponse:
    return ErrorResponse.model_validate_json(answer.body)


def test_visible_drops_invisible_characters() -> None:
    assert visible("\u200b\u200c\u200d\u2060\ufeff \t\u3164\u00a0") == ""
    assert visible("a\u200bb") == "ab"


def test_malformed_bodies_are_400_with_one_line(service: Service) -> None:
    bodies = [b"[" * 100_000, b'{"text": ' + b"1" * 5000 + b"}", b'{"text": "a", "text_pair": "\xe2\x80\x8b"}', {"text": True}]
    for answer in service.handle(bodies, [False] * len(bodies)):
        assert answer.status == 400 and error(answer).type == "InputError" and "\n" not in error(answer).message
    strict = [{"text": "a", "options": {"steps": "3"}}, {"text": "a", "options": {"target": True}}, {"text": "a", "options": {"top_k": 65}}]
    assert [answer.status for answer in service.handle(strict, [True] * 3)] == [400, 400, 400]


def test_batched_body_answers_in_order_and_names_a_bad_input(service: Service) -> None:
    texts = ["a gripping film", "dull", "neither good nor bad, just long"]
    batched, *single = service.handle([{"inputs": [{"text": t} for t in texts]}, *({"text": t} for t in texts)], [False] * 4)
    assert batched.status == 200
    listed = [Prediction.model_validate(item) for item in json.loads(batched.body)]
    for prediction, alone in zip(listed, single):
        assert prediction.probabilities == pytest.approx(Prediction.model_validate_json(alone.body).probabilities, abs=1e-6)
    # and equal to the model's own answer for each text alone
    classifier = service.classifier
    for text, prediction in zip(texts, listed):
        with torch.no_grad():
            logits = classifier.model(**classifier.encode([text])).logits.numpy()
        assert prediction.probabilities == pytest.approx(softmax(logits)[0].tolist(), abs=1e-6)
    bad, fine = service.handle([{"inputs": [{"text": "ok"}, {"text": "word " * 200}]}, {"text": "fine"}], [False, False])
    assert bad.status == 400 and error(bad).message.startswith("inputs[1]: input has") and fine.status == 200
    over = service.handle([{"inputs": [{"text": "ok"}] * 9}], [False])[0]
    assert over.status == 400 and "more than the limit of 8" in error(over).message


def test_explanations_are_admitted_by_cost_per_batch(service: Service) -> None:
    """Limit 20,000: "a fine film" is 5 tokens, 2 steps, 6 layers = 300; 40 words × 2 steps × 6 layers is over."""
    cheap = {"text": "a fine film", "options": {"steps": 2}}
    assert explanation_cost(5, 2, 6) == 300
    expensive = {"text": " ".join(["word"] * 40), "options": {"steps": 2}}
    answer = service.handle([expensive], [True])[0]
    assert answer.status == 400 and "costs 21168 (tokens² × steps × layers = 42² × 2 × 6)" in error(answer).message
    chosen = {"text": " ".join(["word"] * 40), "options": {"steps": 2, "layers": [0]}}  # 42² × 2 × 1 = 3528
    answers = service.handle([chosen] * 6 + [cheap], [True] * 7)
    # 5 × 3528 = 17640 fit into 20,000; the sixth does not (429), the cheap one still does
    assert [a.status for a in answers] == [200] * 5 + [429, 200]
    assert error(answers[5]).type == "Busy"


def test_answers_larger_than_the_limit_are_refused(service: Service) -> None:
    small = Service(service.classifier, HandlerSettings(limits=ServingLimits(max_response_bytes=10_000)))
    matrices = {"text": "a fine film", "options": {"steps": 1, "include_matrices": True, "layers": [0, 1]}}
    answer = small.handle([matrices, {"text": "fine"}], [True, False])
    assert answer[0].status == 400 and "answer limit of 10000" in error(answer[0]).message
    assert answer[1].status == 200
    assert len(service.handle([matrices], [True])[0].body) > 10_000  # the same explanation under the default limit


def test_schema_exports_the_batched_bodies() -> None:
    schemas = json_schemas()
    assert schemas["PredictionBatchRequest"]["properties"]["inputs"]["items"] == {"$ref": "#/$defs/PredictionRequest"}
    assert schemas["PredictionList"]["type"] == "array"
    assert all(name.isidentifier() for name in schemas)


def test_pruned_weights_keep_the_checkpoint_dtype(tmp_path: Path) -> None:
    assert checkpoint_dtype(SST2) == torch.float16
    classifier = load_classifier(SST2, device="cpu")  # float32 in memory
    folder = prune_model(classifier, {0: [1, 2]}, tmp_path / "pruned", dtype=checkpoint_dtype(SST2))
    with (folder / "model.safetensors").open("rb") as weights:
        header = json.loads(weights.read(int.from_bytes(weights.read(8), "little")))
    assert {entry["dtype"] for name, entry in header.items() if name != "__metadata__"} == {"F16"}
    assert checkpoint_dtype(folder) == torch.float16
