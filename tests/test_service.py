"""The serving worker's request logic in process (``auditor.serving.service.Service``, what the TorchServe handler
calls): malformed bodies, batched bodies, explanation admission by cost, answer size; and the dtype of pruned
weights. The same behaviour through a real TorchServe is in tests/test_serving.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from auditor.models import load_classifier
from auditor.predict import softmax
from auditor.pruning import prune_model
from auditor.serving.archive import checkpoint_dtype
from auditor.serving.capacity import ExplanationSlots, explanation_cost, layer_passes
from auditor.explain import explain, explanation_size_bound
from auditor.schemas import ErrorResponse, ExplanationOptions, HandlerSettings, Prediction, ServingLimits, json_schemas, visible
from auditor.serving.service import Service

SST2 = Path(__file__).resolve().parents[2] / "shared" / "models" / "minilm-sst2"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Service:
    slots = ExplanationSlots(tmp_path_factory.mktemp("slots"), 1)
    return Service(load_classifier(SST2, device="cpu"), HandlerSettings(limits=ServingLimits(max_explanation_cost=1500)), slots)


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
    """Limit 1500. All 6 layers are 6 + 5 + … + 1 = 21 layer passes per step: "a fine film" (5 tokens) with 2
    steps costs 5 × 2 × 21 = 210; 40 words (42 tokens) cost 1764, over. Layer 0 alone is 6 passes, layer 5 one."""
    assert layer_passes(range(6), 6) == 21 and layer_passes([0], 6) == 6 and layer_passes([5], 6) == 1
    cheap = {"text": "a fine film", "options": {"steps": 2}}
    assert explanation_cost(5, 2, 21) == 210
    expensive = {"text": " ".join(["word"] * 40), "options": {"steps": 2}}
    answer = service.handle([expensive], [True])[0]
    assert answer.status == 400 and "costs 1764 (tokens × steps × layer passes = 42 × 2 × 21;" in error(answer).message
    chosen = {"text": " ".join(["word"] * 40), "options": {"steps": 2, "layers": [0]}}  # 42 × 2 × 6 = 504
    answers = service.handle([chosen] * 3 + [cheap], [True] * 4)
    # 2 × 504 = 1008 fit into 1500; the third does not (429, retry after the batch's work), the cheap one still does
    assert [a.status for a in answers] == [200, 200, 429, 200]
    assert error(answers[2]).type == "Busy" and answers[2].retry_after_s >= 1
    assert all(a.retry_after_s is None for a in answers if a.status == 200)


def test_a_batch_with_predictions_computes_no_explanation(service: Service) -> None:
    explanation, prediction = service.handle([{"text": "a fine film", "options": {"steps": 1}}, {"text": "fine"}], [True, False])
    assert prediction.status == 200 and explanation.status == 429 and explanation.retry_after_s == 1
    assert "never wait" in error(explanation).message


def test_an_explanation_past_its_deadline_is_stopped_with_503_and_frees_its_slot(service: Service, tmp_path: Path) -> None:
    """An explanation that runs past ``explanation_timeout_s`` (an overloaded machine) stops between two passes and
    is answered 503 with Retry-After, before TorchServe's response timeout would kill the worker; its slot is free
    again, so the next explanation is computed."""
    slots = ExplanationSlots(tmp_path, 1)
    hurried = Service(service.classifier, HandlerSettings(explanation_timeout_s=1e-6), slots)
    request = {"text": " ".join(["a fine film"] * 10), "options": {"steps": 2}}
    stopped = hurried.handle([request], [True])[0]
    assert stopped.status == 503 and error(stopped).type == "Overloaded" and stopped.retry_after_s >= 1
    assert "stopped after its limit of 1e-06 s" in error(stopped).message
    patient = Service(service.classifier, HandlerSettings(), slots)
    assert patient.handle([request], [True])[0].status == 200


def test_answers_that_could_exceed_the_limit_are_refused_before_computing(service: Service, tmp_path: Path) -> None:
    small = Service(service.classifier, HandlerSettings(limits=ServingLimits(max_response_bytes=10_000)), ExplanationSlots(tmp_path, 1))
    matrices = {"text": " ".join(["a fine film"] * 10), "options": {"steps": 1, "include_matrices": True, "layers": [0, 1]}}
    answer = small.handle([matrices], [True])[0]
    assert answer.status == 400 and "answer limit of 10000" in error(answer).message and answer.explanation_ms is None
    assert len(service.handle([matrices], [True])[0].body) > 10_000  # the same explanation under the default limit
    # the worst case the default limits admit in one layer is computed; four layers of it are refused at once
    default = Service(service.classifier, HandlerSettings(), ExplanationSlots(tmp_path / "default", 1))
    worst = {"text": " ".join(["word"] * 126), "options": {"steps": 20, "include_matrices": True, "layers": [0]}}
    admitted = default.handle([worst], [True])[0]
    assert admitted.status == 200 and 1_000_000 < len(admitted.body) < ServingLimits().max_response_bytes
    started = time.perf_counter()
    refused = default.handle([{**worst, "options": {**worst["options"], "layers": [0, 1, 2, 3]}}], [True])[0]
    assert refused.status == 400 and "could be" in error(refused).message
    assert time.perf_counter() - started < admitted.explanation_ms / 1000 / 4  # decided, not computed


@pytest.mark.parametrize(
    "text,options",
    [
        ("a fine film", {"steps": 1}),
        (" ".join(["word"] * 60), {"steps": 1, "include_matrices": True, "layers": [0, 3]}),
        ("ünïcode ☃ \"quotes\", emoji 🎬 and a\\backslash " * 4, {"steps": 2, "include_word_importance": True, "top_k": 64, "threshold": 0.01}),
        ("the film 's best moments are n't enough", {"steps": 1, "include_tree": False, "top_k": 0, "include_matrices": True}),
    ],
)
def test_the_answer_size_bound_holds_and_is_tight_for_matrices(service: Service, text: str, options: dict) -> None:
    """The bound is computed from the tokens, layers, heads and top_k before any attribution; the real answer
    never exceeds it, and with matrices (the bulk of a large answer) it is within 5 % of it."""
    classifier = service.classifier
    chosen = ExplanationOptions(**options)
    bound = explanation_size_bound(classifier, text, None, classifier.encode([text])["input_ids"][0].tolist(), chosen)
    size = len(explain(classifier, text, None, chosen).model_dump_json().encode("utf-8"))
    assert size <= bound
    if chosen.include_matrices and len(text) > 100:
        assert bound <= 1.05 * size


def test_the_archive_task_decides_text_pair(service: Service, tmp_path: Path) -> None:
    single = service.handle([{"text": "a", "text_pair": "b"}, {"inputs": [{"text": "a"}, {"text": "a", "text_pair": "b"}]}], [False, False])
    assert [a.status for a in single] == [400, 400]
    assert "task: single" in error(single[0]).message and error(single[1]).message.startswith("inputs[1]: ")
    explained = service.handle([{"text": "a", "text_pair": "b", "options": {"steps": 1}}], [True])[0]
    assert explained.status == 400 and "task: single" in error(explained).message
    pair = Service(service.classifier, HandlerSettings(task="pair"), ExplanationSlots(tmp_path, 1))
    answers = pair.handle([{"text": "a man sleeps"}, {"text": "a man sleeps", "text_pair": "nobody sleeps"}], [False, False])
    assert [a.status for a in answers] == [400, 200] and "task: pair" in error(answers[0]).message


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


TOKENLESS = ["\ufe0f", "\U000e0100", "\u17b4", "\u0301", "\ufffd", "\ue000"]
"""Code points that pass the schemas' visible-text check but from which MiniLM's tokenizer produces no token."""


def test_text_without_tokens_is_400_naming_field_and_input(service: Service) -> None:
    for char in TOKENLESS:
        assert visible(char) and service.classifier.tokenizer.tokenize(char) == []  # what makes them hostile
        single, explained, batched = service.handle(
            [{"text": char}, {"text": f"{char} {char}"}, {"inputs": [{"text": "a fine film"}, {"text": char * 3}]}], [False, True, False]
        )
        assert [single.status, explained.status, batched.status] == [400, 400, 400]
        assert error(single).message.startswith("text: produces no token of the model's tokenizer")
        assert error(explained).message.startswith("text: produces no token")
        assert error(batched).message.startswith("inputs[1].text: produces no token")
    assert service.handle([{"text": "\u0301a"}], [False])[0].status == 200  # a token beside it: answered


def unicode_categories() -> dict[str, list[str]]:
    """Every code point by its Unicode general category (30 categories; Cs are lone surrogates)."""
    import unicodedata

    categories: dict[str, list[str]] = {}
    for code in range(0x110000):
        categories.setdefault(unicodedata.category(chr(code)), []).append(chr(code))
    return categories


def test_random_text_from_every_unicode_category_is_refused_exactly_when_it_has_no_token(service: Service) -> None:
    """Property: for random strings of 1 to 4 characters drawn from every general category (seeded), the service
    answers 400 "text: …" exactly when the text holds a lone surrogate (JSON escapes them), shows nothing
    (``visible``) or the model's tokenizer, given the text alone, produces no token; else 200 (never 500)."""
    import random

    categories = unicode_categories()
    assert len(categories) == 30
    tokenizer = service.classifier.tokenizer
    generator = random.Random(30)
    names = sorted(categories)
    texts = []
    for round_ in range(12):
        for name in names:  # each category in every round, mixed with others in some strings
            chars = [generator.choice(categories[name])]
            chars += [generator.choice(categories[generator.choice(names)]) for _ in range(generator.randrange(4) if round_ % 2 else 0)]
            texts.append("".join(chars))
    bodies = [json.dumps({"text": text}).encode() for text in texts]  # ensure_ascii: a surrogate is written as \ud800
    answers = service.handle(bodies, [False] * len(bodies))
    refused = 0
    for text, answer in zip(texts, answers):
        if any(0xD800 <= ord(char) <= 0xDFFF for char in text):
            expected = "text: Input should be a valid string"  # pydantic refuses it
        elif not visible(text):
            expected = "must not be blank"
        elif not tokenizer.tokenize(text):
            expected = "text: produces no token"
        else:
            expected = None
        if expected is None:
            assert answer.status == 200, (ascii(text), answer.body)
        else:
            refused += 1
            assert answer.status == 400 and expected in error(answer).message, (ascii(text), answer.body)
    assert 0 < refused < len(texts)
