"""TextAttack components: pattern insertion, the inserted-word cap, edit-distance counting, and the victims
(local batching equals unpadded single inputs; an unreachable endpoint is a clear error)."""

from __future__ import annotations

import socket
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

import auditor.textattack_env  # noqa: F401
from textattack import Attack
from textattack.constraints.pre_transformation import InputColumnModification, RepeatModification
from textattack.goal_functions import UntargetedClassification
from textattack.search_methods import BeamSearch
from textattack.shared import AttackedText

from auditor.attack import MaxInsertedWords, PatternInsertion, RandomWordInsertion, pattern_attack
from auditor.edits import word_edit_distance
from auditor.errors import AuditorError, InputError
from auditor.models import load_classifier
from auditor.schemas import TriggerPattern
from auditor.victims import LocalVictim, RemoteVictim
from tests.numerics import EPS32, SERVED_ULPS

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def pattern(label: int, first: str, second: str, gap: int | None = 1, segments: tuple[int, int] = (0, 0), positions: tuple[float, float] = (0.0, 0.0)) -> TriggerPattern:
    return TriggerPattern(
        words=(first, second), segments=segments, gap=gap, positions=positions, label=label, label_name=str(label),
        support=5, predicted={label: 5}, gold_labels={}, mass=2.5, score=1.0, log_odds=1.0, z=2.0, example=0, layer=0,
    )  # fmt: skip


@pytest.fixture(scope="module")
def victim() -> LocalVictim:
    return LocalVictim(load_classifier(SHARED / "models" / "minilm-sst2", device="cpu"))


def reference_edit_distance(a: list[str], b: list[str]) -> int:
    if not a or not b:
        return len(a) + len(b)
    if a[0] == b[0]:
        return reference_edit_distance(a[1:], b[1:])
    return 1 + min(reference_edit_distance(a[1:], b), reference_edit_distance(a, b[1:]), reference_edit_distance(a[1:], b[1:]))


@pytest.mark.parametrize(
    ("original", "perturbed"),
    [("a b c d", "x a b c d"), ("a b c d", "a b y c d z"), ("a b c", "a q c"), ("the film is good", "good the film is"), ("", "a b")],
)
def test_word_edit_distance(original: str, perturbed: str) -> None:
    a, b = original.split(), perturbed.split()
    assert word_edit_distance(a, b) == reference_edit_distance(a, b)


def test_edit_distance_counts_one_word_for_an_insertion_where_textattack_diff_counts_every_shift() -> None:
    original = AttackedText("the film is very good")
    perturbed = original.insert_text_before_word_index(0, "awful")
    assert word_edit_distance(original.words, perturbed.words) == 1
    assert len(original.all_words_diff(perturbed)) == 5  # position-wise diff: every word moved


def test_pairs_keep_their_order_and_gap_around_the_anchor_at_their_mined_position() -> None:
    text = AttackedText("one two three four five six seven eight")
    adjacent = pattern(0, "so", "what", gap=1, positions=(0.25, 0.3))
    [result] = PatternInsertion([adjacent])(text)
    assert result.text == "one two so what three four five six seven eight"  # 0.25 × 8 words: before word 2
    apart = pattern(0, "the", "plot", gap=3, positions=(0.5, 0.8))
    [result] = PatternInsertion([apart])(text)
    assert result.text == "one two three four the five six plot seven eight"  # two original words kept between them
    at_end = pattern(0, "the", "plot", gap=4, positions=(1.0, 1.0))
    [result] = PatternInsertion([at_end])(text)
    assert result.text == "one two three four five six seven the eight plot"  # anchored at the last word, the gap clamped to the end
    assert PatternInsertion([pattern(0, ",", "bad")])(text) == []  # a word TextAttack would not read as one word


def test_the_search_places_a_pair_at_the_ranked_word() -> None:
    text = AttackedText("one two three four five six")
    apart = pattern(0, "the", "plot", gap=2, positions=(0.0, 0.1))
    [result] = PatternInsertion([apart])._get_transformations(text, {4})
    assert result.text == "one two three four the five plot six"
    anywhere = PatternInsertion([apart], positions="all")._get_transformations(text, {4})
    assert [c.text for c in anywhere][:2] == ["the one plot two three four five six", "one the two plot three four five six"]
    assert len(anywhere) == 6  # every word of the ranked word's text


def test_pair_patterns_go_to_their_segments_and_respect_column_constraints() -> None:
    text = AttackedText(OrderedDict(premise="a cat sat on the mat", hypothesis="the cat is asleep"))
    across = pattern(0, "where", "when", gap=None, segments=(0, 1), positions=(0.5, 0.0))
    [result] = PatternInsertion([across])(text)
    assert result.tokenizer_input == ("a cat sat where on the mat", "when the cat is asleep")
    hypothesis_only = InputColumnModification(["premise", "hypothesis"], {"premise"})
    [result] = PatternInsertion([across])(text, pre_transformation_constraints=[hypothesis_only])
    assert result.tokenizer_input == ("a cat sat where on the mat", "when the cat is asleep")  # anchored by its hypothesis word
    in_premise = pattern(0, "where", "when", segments=(0, 0), positions=(1.0, 1.0))
    assert PatternInsertion([in_premise])(text, pre_transformation_constraints=[hypothesis_only]) == []
    single = AttackedText("a cat sat")
    assert PatternInsertion([across])(single) == []  # the text has no second segment


def test_all_positions_and_repeat_modification() -> None:
    text = AttackedText("good fun film")
    pair = pattern(0, "so", "what")
    candidates = PatternInsertion([pair], positions="all")(text)
    assert sorted(c.text for c in candidates) == sorted(["so what good fun film", "good so what fun film", "good fun so what film"])
    once = PatternInsertion([pair])(text)[0]
    again = PatternInsertion([pair], positions="all")(once, pre_transformation_constraints=[RepeatModification()])
    assert again and all(c.words.count("what") == 2 for c in again)
    assert "so what so what good fun film" not in [c.text for c in again]  # modified words are left alone


def test_max_inserted_words_filters_candidates(victim) -> None:
    first, second = pattern(1, "so", "what"), pattern(1, "the", "plot")
    goal = UntargetedClassification(victim)
    attack = Attack(goal, [MaxInsertedWords(1)], PatternInsertion([first]), BeamSearch(beam_width=2))
    text = AttackedText("a gripping film")
    assert attack.get_transformations(text, original_text=text) == []  # a pair is two words
    attack = Attack(goal, [MaxInsertedWords(2)], PatternInsertion([first, second]), BeamSearch(beam_width=2))
    assert [c.text for c in attack.get_transformations(text, original_text=text)] == ["so what a gripping film", "the plot a gripping film"]


def test_random_insertion_is_reproducible_per_text() -> None:
    transformation = RandomWordInsertion(["alpha", "beta", "gamma", ",", "x-ray"], candidates=4, seed=3)
    assert "," not in transformation.vocabulary
    text = AttackedText("the movie was fine")
    first = [c.text for c in transformation(text)]
    assert first == [c.text for c in transformation(text)] and len(first) == 4
    assert all(word_edit_distance(text.words, AttackedText(c).words) == 1 for c in first)


def test_greedy_and_beam_attacks_stay_within_the_budget(victim) -> None:
    patterns = [pattern(0, w, "film", positions=(a, a)) for w, a in [("awful", 0.0), ("boring", 0.5), ("worst", 1.0)]]
    text = "a gripping , beautifully acted film"
    greedy = pattern_attack(victim, patterns, query_budget=3, max_words=3)
    result = greedy.attack(text, 1)
    assert result.perturbed_result.num_queries <= 3
    beam = Attack(
        UntargetedClassification(victim, query_budget=40),
        [RepeatModification(), MaxInsertedWords(4)],
        PatternInsertion(patterns, positions="all"),
        BeamSearch(beam_width=2),
    )
    result = beam.attack(text, 1)
    assert result.perturbed_result.num_queries <= 40
    assert word_edit_distance(result.original_result.attacked_text.words, result.perturbed_result.attacked_text.words) <= 4


def test_local_victim_batches_equal_single_unpadded_inputs(victim) -> None:
    texts = ["ok", "a gripping , beautifully acted film that never lets go of you", "dull", "not bad at all"]
    batched = victim(texts)
    tokenizer, model = victim.classifier.tokenizer, victim.classifier.model
    for text, row in zip(texts, batched):
        with torch.no_grad():
            logits = model(**tokenizer(text, return_tensors="pt")).logits[0].double()
        np.testing.assert_allclose(row, torch.softmax(logits, -1).numpy(), atol=1e-5)
    pairs = LocalVictim(load_classifier(SHARED / "models" / "minilm-rte", device="cpu"))([("a cat sat", "a cat is sitting")])
    assert pairs.shape == (1, 2) and pairs.sum() == pytest.approx(1.0)


def test_remote_victim_reports_a_server_that_is_down() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    victim = RemoteVictim(f"http://127.0.0.1:{port}/predictions/sst2", token="k", retries=2, backoff=0.01, timeout=2)
    started = time.perf_counter()
    with pytest.raises(AuditorError, match="unreachable after 3 attempts.*is the server running"):
        victim(["a film"])
    assert time.perf_counter() - started < 10
    with pytest.raises(InputError, match="predictions/MODEL"):
        RemoteVictim("http://127.0.0.1:8080/models/sst2")


def test_remote_victim_times_out_on_a_silent_server() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:  # accepts connections and never answers
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        victim = RemoteVictim(f"http://127.0.0.1:{server.getsockname()[1]}/predictions/sst2", retries=1, backoff=0.01, timeout=0.5)
        with pytest.raises(AuditorError, match="no answer within 0.5 s"):
            victim(["a film"])
    finally:
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()
        server.close()


def test_group_writable_checkout_gets_a_private_stopword_copy(tmp_path: Path, monkeypatch) -> None:
    import auditor.textattack_env as environment

    shipped = tmp_path / "nltk_data"
    (shipped / environment.STOPWORDS.parent).mkdir(parents=True)
    (shipped / environment.STOPWORDS).write_bytes((environment.NLTK_RESOURCES / environment.STOPWORDS).read_bytes())
    for path in (shipped, shipped / "corpora", shipped / environment.STOPWORDS.parent):
        path.chmod(0o755)
    (shipped / environment.STOPWORDS).chmod(0o644)
    monkeypatch.setattr(environment, "NLTK_RESOURCES", shipped)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert environment.nltk_data_directory() == shipped
    (shipped / "corpora").chmod(0o775)  # as a clone made with umask 002 would be: NLTK refuses to read it
    copy = environment.nltk_data_directory()
    assert copy == tmp_path / "cache" / "auditor" / "nltk_data"
    assert (copy / environment.STOPWORDS).read_bytes() == (shipped / environment.STOPWORDS).read_bytes()
    assert all(not p.stat().st_mode & 0o077 for p in (copy, copy / "corpora", copy / environment.STOPWORDS))


@pytest.mark.numerics
def test_onnx_victim_answers_like_the_local_model(victim: LocalVictim, tmp_path: Path) -> None:
    import shutil

    from auditor.export import export_onnx
    from auditor.victims import OnnxVictim, open_victim

    folder = shutil.copytree(SHARED / "models" / "minilm-sst2", tmp_path / "minilm-sst2")
    onnx_file = export_onnx(victim.classifier, folder / "model.onnx")
    onnx_victim = open_victim(str(onnx_file), batch_size=2)
    assert isinstance(onnx_victim, OnnxVictim) and onnx_victim.identity.kind == "onnx"
    texts = ["a gripping, beautifully acted film", "dull", "the plot is thin and the jokes fall flat ."]
    # ONNX Runtime against PyTorch, and a graph with float16-stored weights: other kernels and fusions round
    # each float32 op differently; 1e-4 (about 840 ulps of 1), as for every served or exported model
    np.testing.assert_allclose(onnx_victim(texts), victim(texts), atol=SERVED_ULPS * EPS32)
    assert onnx_victim.inputs == 3
