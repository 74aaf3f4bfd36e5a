"""Issue 30's probe against a real TorchServe in the README's configuration (three workers per model, batches of
one request, one explanation slot): text from which the model's tokenizer produces no token is a 400 naming the
field and input; every suggestion a 4xx message makes is accepted when followed; malformed bodies add at most one
short log line each; and after 20 cheap explanations, the Retry-After of a full-cost explanation refused while
another runs is within 2x of the time its slot actually takes to free."""

from __future__ import annotations

import json
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from auditor.schemas import ServingLimits
from auditor.serving.archive import build_archive
from auditor.serving.torchserve import ServedModel, TorchServe

pytestmark = pytest.mark.slow  # a real TorchServe probed as a hostile client would

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"
RTE_LIMITS = ServingLimits(max_tokens=64, max_steps=8, max_explanation_cost=64 * 8 * 6, max_batch=3)
TOKENLESS = ["\ufe0f", "\U000e0100", "\u17b4", "\u0301", "\ufffd", "\ue000"]
FULL_TEXT = " ".join(["a fine film"] * 42)  # 126 tokens + [CLS] and [SEP]: the default max_tokens, 128
FULL_COST = {"steps": 20, "include_tree": False}  # every layer: 128 x 20 x 21, the default max_explanation_cost


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    store = tmp_path_factory.mktemp("hostile") / "model_store"
    build_archive(MODELS / "minilm-sst2", "sst2", store, archive_format="zip-store", threads=1)
    build_archive(MODELS / "minilm-rte", "rte", store, limits=RTE_LIMITS, archive_format="zip-store", threads=1, task="pair")
    with TorchServe(store, [ServedModel("sst2"), ServedModel("rte", workers=2)]) as served:
        yield served


def message(answer: requests.Response) -> str:
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
    return answer.json()["message"]


def test_text_without_tokens_is_400_naming_field_and_input(server: TorchServe) -> None:
    generator = random.Random(30)
    for char in TOKENLESS:
        text = char * generator.randrange(1, 4)
        assert message(server.post("/predictions/sst2", {"text": text})).startswith("text: produces no token of the model's tokenizer")
        assert message(server.post("/explanations/sst2", {"text": text})).startswith("text: produces no token")
        batch = {"inputs": [{"text": "a fine film"}, {"text": "dull"}, {"text": text}]}
        assert message(server.post("/predictions/sst2", batch)).startswith("inputs[2].text: produces no token")
        pairs = {"inputs": [{"text": "A man sleeps.", "text_pair": "Someone sleeps."}, {"text": "A dog runs.", "text_pair": text}]}
        assert message(server.post("/predictions/rte", pairs)).startswith("inputs[1].text_pair: produces no token")
        assert message(server.post("/explanations/rte", {"text": "A dog runs.", "text_pair": text})).startswith("text_pair: produces no token")
    # what the message suggests: visible text, answered
    assert server.post("/predictions/sst2", {"text": "\u0301a fine film\ufe0f"}).status_code == 200


SUGGESTIONS = {
    r"ask for steps (\d+)": lambda body, value: {**body, "options": {**body.get("options", {}), "steps": int(value)}},
    r"ask for layers (\[[\d, ]+\])": lambda body, value: {**body, "options": {**body.get("options", {}), "layers": json.loads(value)}},
    r'ask for "include_matrices": false': lambda body, _: {**body, "options": {**body.get("options", {}), "include_matrices": False}},
    r"ask for top_k (\d+)": lambda body, value: {**body, "options": {**body.get("options", {}), "top_k": int(value)}},
    r"send a text of at most (\d+) tokens": None,  # shortened with the tokenizer below
    r"shorten it": None,
}


def followed(body: dict, suggestion: str, limit_tokens: int | None) -> dict:
    """``body`` changed as ``suggestion`` says (a shorter text: its first words within ``limit_tokens``)."""
    for pattern, change in SUGGESTIONS.items():
        matched = re.fullmatch(pattern, suggestion)
        if matched and change is not None:
            return change(body, matched.group(1) if matched.groups() else None)
        if matched:
            words = body["text"].split()
            tokens = int(matched.group(1)) if matched.groups() else limit_tokens
            # each word of these texts is one token; [CLS], [SEP] and the pair's tokens come on top
            extra = 2 + (len(body["text_pair"].split()) + 1 if "text_pair" in body else 0)
            return {**body, "text": " ".join(words[: tokens - extra])}
    raise AssertionError(f"a suggestion the test does not know: {suggestion!r}")


def test_every_suggestion_of_a_4xx_message_is_accepted(server: TorchServe) -> None:
    long_text = " ".join(["good"] * 200)
    refused = [
        ("/predictions/sst2", {"text": long_text}, 128),
        ("/explanations/sst2", {"text": long_text, "options": {"include_tree": False}}, 128),
        ("/explanations/sst2", {"text": FULL_TEXT, "options": {"include_matrices": True, "include_tree": False}}, None),  # answer size
        ("/explanations/rte", {"text": " ".join(["good"] * 38), "text_pair": "a film", "options": {"steps": 8}}, None),  # cost
    ]
    followed_count = 0
    for path, body, limit_tokens in refused:
        answer = server.post(path, body)
        assert answer.status_code == 400, (path, answer.text[:300])
        said = message(answer)
        suggestions = "shorten it" if said.endswith("shorten it") else re.split(r"limit of \d+: ", said, maxsplit=1)[1]
        for suggestion in suggestions.split(" or "):
            retried = server.post(path, followed(body, suggestion, limit_tokens))
            assert retried.status_code == 200, (said, suggestion, retried.text[:300])
            followed_count += 1
    assert followed_count == 7  # 1 + 1 + (no matrices, fewer layers) + (steps, layers, a shorter text)
    # the task messages
    assert "send no text_pair" in message(server.post("/predictions/sst2", {"text": "a film", "text_pair": "a film"}))
    assert server.post("/predictions/sst2", {"text": "a film"}).status_code == 200
    assert "send a text_pair with the text" in message(server.post("/predictions/rte", {"text": "A dog runs."}))
    assert server.post("/predictions/rte", {"text": "A dog runs.", "text_pair": "An animal moves."}).status_code == 200


def model_log_lines(server: TorchServe) -> list[str]:
    log = server.logs / "model_log.log"
    return log.read_text(errors="replace").splitlines() if log.is_file() else []


def test_malformed_bodies_add_at_most_one_short_log_line_each(server: TorchServe) -> None:
    bodies = [b'{"text": "a', b"{", b'{"text": }', b"\xff\xfe{}", b'{"text": "a"}}', b"[" * 50, b'{"text": "\\ud800"}', b"nul\x00l"] * 3
    server.post("/predictions/sst2", {"text": "a fine film"})  # flush whatever came before
    time.sleep(1.0)
    before = model_log_lines(server)
    for body in bodies:
        assert server.post("/predictions/sst2", body).status_code == 400
    time.sleep(1.0)  # the frontend copies the worker's output into the log asynchronously
    added = model_log_lines(server)[len(before) :]
    assert len(added) <= len(bodies), "\n".join(added[:40])
    assert not [line for line in added if "Traceback" in line or len(line) > 300], "\n".join(added[:40])


def test_retry_after_follows_the_true_wait_after_cheap_explanations(server: TorchServe) -> None:
    """The probe's scenario: 20 cheap explanations (layers [5], steps 1), then two full-cost ones at once. One
    runs; the other is refused with Retry-After, within 2x of the time until the first one ends (when its slot
    frees); it was 90x before the time model, and up to 3.3x with the suite running beside it while the pace came
    from earlier, cheap explanations (now it is measured on the running one)."""
    for index in range(20):
        assert server.post("/explanations/sst2", {"text": f"a fine film number {index}", "options": {"layers": [5], "steps": 1}}).status_code == 200
    body = {"text": FULL_TEXT, "options": FULL_COST}

    def timed() -> tuple[requests.Response, float]:
        answer = server.post("/explanations/sst2", body)
        return answer, time.monotonic()

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: timed(), range(2)))
    statuses = sorted(answer.status_code for answer, _ in results)
    assert statuses == [200, 429], [answer.text[:200] for answer, _ in results]
    (done, freed_at), (refused, refused_at) = sorted(results, key=lambda result: result[0].status_code)
    retry_after = int(refused.headers["Retry-After"])
    wait = freed_at - refused_at
    print(f"Retry-After {retry_after} s, slot freed {wait:.1f} s after the refusal")
    assert wait > 0
    assert retry_after / 2 <= max(wait, 1.0) <= 2 * retry_after, (retry_after, wait)
