"""``auditor live-report`` on comparisons of the SST-2 fixture and a head-pruned copy run on dev sentences,
stored as a shadow deployment stores them (two servers, two databases): the report's figures against counts
made here from the models' own outputs, the disagreements explained by both models, the HTML page in
headless Chromium, the three decisions' exit codes and the bad inputs."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats

from auditor.cli import main
from auditor.live.records import RecordStore, input_digest
from auditor.models import Classifier, load_classifier
from auditor.pruning import prune_model
from auditor.schemas import LiveReport, json_schemas
from auditor.schemas.live import ComparisonRecord, ServedModelRef
from tests.test_cli_usage import run_main

pytestmark = pytest.mark.slow  # two models run on 96 sentences, explanations, Chromium

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SST2 = SHARED / "models" / "minilm-sst2"
SENTENCES = 96
REMOVED = {layer: [0, 1, 2] for layer in range(6)}
START = 1_750_000_000.0


@dataclass
class Live:
    folder: Path
    full: Classifier
    pruned: Classifier
    pruned_dir: Path
    texts: list[str]
    gold: list[str]
    full_probabilities: np.ndarray
    pruned_probabilities: np.ndarray
    databases: list[Path]
    labels: Path


def served(classifier: Classifier) -> ServedModelRef:
    return ServedModelRef(name=classifier.identity.name, version="1.0", weights_sha256=classifier.identity.weights_sha256)


def records_of(primary: Classifier, shadow: Classifier, texts: list[str], p: np.ndarray, q: np.ndarray) -> list[ComparisonRecord]:
    labels = primary.labels
    return [
        ComparisonRecord(
            ts=START + 40 * i, primary_model=served(primary), shadow_model=served(shadow),
            primary_label=labels[int(a.argmax())], shadow_label=labels[int(b.argmax())],
            primary_probabilities=a.tolist(), shadow_probabilities=b.tolist(), input_sha256=input_digest(text),
            primary_latency_ms=5.0, shadow_latency_ms=3.0, text=text,
        )  # fmt: skip
        for i, (text, a, b) in enumerate(zip(texts, p, q))
    ]


def store(path: Path, records: list[ComparisonRecord]) -> Path:
    database = RecordStore(path, store_texts=True)
    database.insert(records)
    database.close()
    return path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Live:
    folder = tmp_path_factory.mktemp("live")
    full = load_classifier(SST2, device="cpu")
    pruned_dir = prune_model(full, REMOVED, folder / "pruned")
    pruned = load_classifier(pruned_dir, device="cpu")
    rows = [line.split("\t") for line in (SHARED / "data" / "glue" / "SST-2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1 : SENTENCES + 1]]
    texts, gold = [row[0] for row in rows], [full.labels[int(row[1])] for row in rows]
    with torch.no_grad():
        p = torch.softmax(full.model(**full.encode(texts)).logits, -1).double().numpy()
        q = torch.softmax(pruned.model(**pruned.encode(texts)).logits, -1).double().numpy()
    records = records_of(full, pruned, texts, p, q)
    # two servers behind a load balancer, each with its own database
    databases = [store(folder / "a.db", records[0::2]), store(folder / "b.db", records[1::2])]
    labels = folder / "labels.csv"
    with labels.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["input_sha256", "label"])
        writer.writerows([input_digest(text), label] for text, label in zip(texts, gold))
    return Live(folder, full, pruned, pruned_dir, texts, gold, p, q, databases, labels)


@pytest.fixture(scope="module")
def report_run(live: Live) -> tuple[int, LiveReport]:
    out = live.folder / "report"
    arguments = ["live-report", *map(str, live.databases), "--out", str(out), "--tolerance", "0.01", "--labels", str(live.labels),
                 "--primary-model", str(SST2), "--shadow-model", str(live.pruned_dir), "--top", "3", "--steps", "2"]  # fmt: skip
    code = 0
    try:
        main(arguments)
    except SystemExit as exit_info:
        code = int(exit_info.code or 0)
    return code, LiveReport.model_validate_json((out / "live-report.json").read_text(encoding="utf-8"))


def test_report_counts_what_the_models_answered(live: Live, report_run: tuple[int, LiveReport]) -> None:
    code, report = report_run
    full_answers, pruned_answers = live.full_probabilities.argmax(1), live.pruned_probabilities.argmax(1)
    disagreements = int((full_answers != pruned_answers).sum())
    assert report.records == SENTENCES and report.agreement.count == SENTENCES - disagreements and disagreements >= 4
    assert [w.first_record for w in report.windows][:2] == [1, 6] and sum(w.agreement.total for w in report.windows) == SENTENCES
    names = live.full.labels
    expected = {(names[a], names[b]): int(((full_answers == a) & (pruned_answers == b)).sum()) for a in range(2) for b in range(2)}
    assert {(t.primary_label, t.shadow_label): t.count for t in report.transitions} == expected
    shift = np.abs(live.pruned_probabilities[np.arange(SENTENCES), full_answers] - live.full_probabilities[np.arange(SENTENCES), full_answers])
    # the probabilities went through JSON and back: equal to the last digit float64 keeps
    assert report.confidence_shift.mean == pytest.approx(float(shift.mean()), rel=1e-12)
    assert report.confidence_shift.mean_low < report.confidence_shift.mean < report.confidence_shift.mean_high
    assert sum(report.confidence_shift.histogram_counts) == SENTENCES
    # 8 disagreements in 96 lie well above a 1 % tolerance: the decision is to roll back, exit 1
    assert report.decision.decision == "roll back" and code == 1 and report.decision.low > 0.01
    assert report.drops == [] and report.texts_stored == disagreements
    document = json.loads((live.folder / "report" / "live-report.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(json_schemas()["LiveReport"]).validate(document)  # as `auditor schema` publishes it


def test_labels_give_accuracy_negative_flips_and_mcnemar(live: Live, report_run: tuple[int, LiveReport]) -> None:
    _, report = report_run
    gold = np.array([live.full.labels.index(label) for label in live.gold])
    full_right, pruned_right = live.full_probabilities.argmax(1) == gold, live.pruned_probabilities.argmax(1) == gold
    labelled = report.labelled
    assert labelled is not None and labelled.labelled == SENTENCES and labelled.unmatched_labels == 0
    assert (labelled.candidate, labelled.incumbent) == ("shadow", "primary")
    assert labelled.primary_accuracy.count == int(full_right.sum()) and labelled.shadow_accuracy.count == int(pruned_right.sum())
    negative, positive = int((full_right & ~pruned_right).sum()), int((~full_right & pruned_right).sum())
    assert (labelled.negative_flips.count, labelled.positive_flips.count) == (negative, positive)
    # the exact McNemar test is the two-sided binomial test of the discordant pairs at ½
    reference = stats.binomtest(negative, negative + positive, 0.5).pvalue if negative + positive else 1.0
    assert labelled.mcnemar_p == pytest.approx(reference, rel=1e-9)


def test_disagreements_are_explained_by_both_models(live: Live, report_run: tuple[int, LiveReport]) -> None:
    _, report = report_run
    explanations = report.explanations
    assert explanations is not None and len(explanations) == 3
    shifts = [e.abs_delta_p for e in explanations]
    assert shifts == sorted(shifts, reverse=True)
    for explanation in explanations:
        index = live.texts.index(explanation.text)
        assert explanation.primary_label != explanation.shadow_label and explanation.full_side == "primary"
        assert explanation.target_label == explanation.primary_label
        target = live.full.labels.index(explanation.target_label)
        # the attribution's forward pass against the batched one above: the same weights, another padding
        assert explanation.full_probability == pytest.approx(live.full_probabilities[index, target], abs=1e-4)
        assert explanation.pruned_probability == pytest.approx(live.pruned_probabilities[index, target], abs=1e-4)
        assert explanation.pruned_heads and all(head.head in REMOVED[head.layer] for head in explanation.pruned_heads)
        changes = [abs(change.change) for change in explanation.pair_changes]
        assert changes == sorted(changes, reverse=True) and changes[0] > 0
        assert all(change.change == pytest.approx(change.pruned - change.full, abs=1e-12) for change in explanation.pair_changes)


def test_markdown_and_html_pages(live: Live, report_run: tuple[int, LiveReport], tmp_path: Path) -> None:
    _, report = report_run
    markdown = (live.folder / "report" / "live-report.md").read_text(encoding="utf-8")
    assert "**Decision: roll back** (exit 1)" in markdown and "## Why they disagree" in markdown and "exact McNemar" in markdown
    page = live.folder / "report" / "live-report.html"
    html = page.read_text(encoding="utf-8")
    assert "<script" not in html and "<link rel=\"stylesheet" not in html and "url(http" not in html
    sources = [part.split('"', 1)[0] for part in html.split(' src="')[1:]]
    assert len(sources) == 1 and sources[0].startswith("data:image/png;base64,")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is required (scripts/setup.sh installs it)"
    common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
              "--disable-background-networking", "--disable-component-update", "--no-first-run"]  # fmt: skip
    screenshot = tmp_path / "page.png"
    subprocess.run([*common, f"--screenshot={screenshot}", "--window-size=1200,900", page.as_uri()], check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(screenshot).convert("L"), dtype=np.float64)
    assert pixels.shape == (900, 1200) and pixels.std() > 10 and (pixels < 200).mean() > 0.02
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], check=True, capture_output=True, text=True, timeout=120).stdout
    assert 'data-decision="roll back"' in dom and dom.count('class="disagreement"') == 3


def test_the_full_model_as_shadow_is_recognised(live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    """The reverse deployment: the pruned model answers, the full one shadows it."""
    records = records_of(live.pruned, live.full, live.texts, live.pruned_probabilities, live.full_probabilities)
    database = store(live.folder / "reverse.db", records)
    out = live.folder / "reverse"
    code, _, err = run_main(["live-report", str(database), "--out", str(out), "--tolerance", "0.5", "--primary-model", str(live.pruned_dir),
                             "--shadow-model", str(SST2), "--top", "1", "--steps", "1"], capsys)  # fmt: skip
    report = LiveReport.model_validate_json((out / "live-report.json").read_text(encoding="utf-8"))
    assert code == 0 and report.decision.decision == "promote", err
    (explanation,) = report.explanations or []
    assert explanation.full_side == "shadow" and explanation.target_label == explanation.shadow_label


@pytest.mark.parametrize(
    ("rate", "records", "decision", "code"),
    [(0.0, 2000, "promote", 0), (0.5, 100, "roll back", 1), (0.0, 20, "keep collecting", 3), (0.02, 1000, "keep collecting", 3)],
)
def test_each_decision_has_its_exit_code(
    rate: float, records: int, decision: str, code: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    primary = ServedModelRef(name="sst2", version="1", weights_sha256="1" * 16)
    shadow = ServedModelRef(name="sst2-pruned", version="1", weights_sha256="2" * 16)
    disagreeing = round(rate * records)
    rows = [
        ComparisonRecord(
            ts=START + i, primary_model=primary, shadow_model=shadow, primary_label="positive",
            shadow_label="negative" if i < disagreeing else "positive", primary_probabilities=[0.2, 0.8],
            shadow_probabilities=[0.7, 0.3] if i < disagreeing else [0.25, 0.75], input_sha256=input_digest(str(i)),
            primary_latency_ms=1.0, shadow_latency_ms=1.0,
        )  # fmt: skip
        for i in range(records)
    ]
    database = RecordStore(tmp_path / "c.db")
    database.insert(rows, drops={"queue_full": 2, "shadow_error": 1})
    database.insert([], drops={"queue_full": 1})
    database.close()
    exit_code, out, err = run_main(["live-report", str(tmp_path / "c.db"), "--out", str(tmp_path / "out"), "--tolerance", "0.02"], capsys)
    report = LiveReport.model_validate_json((tmp_path / "out" / "live-report.json").read_text(encoding="utf-8"))
    assert (exit_code, report.decision.decision, report.decision.exit_code) == (code, decision, code), err
    assert f"**Decision: {decision}** (exit {code})" in out
    assert [(d.cause, d.count) for d in report.drops or []] == [("queue_full", 3), ("shadow_error", 1)]


def written(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def foreign_database(path: Path) -> Path:
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE comparisons (id INTEGER, something TEXT)")
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.db", "{db}: no such comparisons database"),
        (lambda d: written(d / "empty.db", b""), "{db}: empty file, not a comparisons database"),
        (lambda d: foreign_database(d / "other.db"), "{db}: not a comparisons database (no table 'comparisons' with its columns)"),
        (lambda d: written(d / "text.db", b"hello, not sqlite\n"), "{db}: not a comparisons database (file is not a database)"),
        (lambda d: store(d / "none.db", []), "the databases hold no comparisons yet"),
    ],
)
def test_missing_empty_or_foreign_database_is_one_line(make, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    db = make(tmp_path)
    code, out, err = run_main(["live-report", str(db), "--out", str(tmp_path / "out"), "--tolerance", "0.02"], capsys)
    assert (code, out) == (2, "") and err.splitlines() == ["error: " + message.format(db=db)]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("digest,label\n", "{path}: a labels file is CSV with the header 'input_sha256,label'"),
        ("input_sha256,label\nabc,positive\n", "{path}, line 2: 'abc' is not a SHA-256 (64 hex digits)"),
        ("input_sha256,label\n" + "a" * 64 + ",positive,extra\n", "{path}, line 2: expected 2 fields (input_sha256,label), found 3"),
        ("input_sha256,label\n" + "a" * 64 + ",\n", "{path}, line 2: empty label"),
        ("input_sha256,label\n" + "a" * 64 + ",positive\n" + "a" * 64 + ",negative\n", "{path}, line 3: input aaaaaaaaaaaa… is labelled both 'positive' and 'negative'"),
        ("input_sha256,label\n", "{path}: the labels file has no labels"),
        (None, "{path}: cannot read the labels file (No such file or directory)"),
        ("LABEL", "{path}: label 'postive' is none of the labels the models answered (negative, positive)"),
    ],
)
def test_bad_labels_file_is_one_line(content: str | None, message: str, live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "labels.csv"
    if content == "LABEL":
        content = f"input_sha256,label\n{input_digest(live.texts[0])},postive\n"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    code, out, err = run_main(["live-report", str(live.databases[0]), "--out", str(tmp_path / "out"), "--tolerance", "0.02", "--labels", str(path)], capsys)
    assert (code, out) == (2, "") and err.splitlines() == ["error: " + message.format(path=path)]


def test_models_that_were_not_served_are_refused(live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arguments = ["live-report", str(live.databases[0]), "--out", str(tmp_path / "out"), "--tolerance", "0.02",
                 "--primary-model", str(live.pruned_dir), "--shadow-model", str(SST2)]  # fmt: skip
    code, out, err = run_main(arguments, capsys)
    digest, served_digest = live.pruned.identity.weights_sha256, live.full.identity.weights_sha256
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"error: --primary-model {live.pruned_dir} has weights {digest}, but the records' primary model minilm-sst2/1.0@{served_digest} "
        f"has {served_digest}: give the folder of the model that was served"
    ]
    mixed = store(tmp_path / "mixed.db", records_of(live.pruned, live.full, live.texts[:2], live.pruned_probabilities[:2], live.full_probabilities[:2]))
    code, out, err = run_main(["live-report", str(live.databases[0]), str(mixed), "--out", str(tmp_path / "out"), "--tolerance", "0.02"], capsys)
    assert (code, out) == (2, "") and err.startswith("error: the databases compare more than one pair of models: ") and len(err.splitlines()) == 1
