"""The same held-out sentences kept as a team keeps them (columns ``review``/``sentiment``, labels ``pos``/``neg``)
in CSV, JSON Lines, Parquet and a ``save_to_disk`` folder give the audit of the GLUE TSV: same examples, same
clean accuracy, same attacks, through ``auditor audit`` run as a CI job runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.numerics import differences
from tests.test_audit import SST2, auditor
from tests.test_data import GLUE, held_out, rows, write_formats

pytestmark = pytest.mark.slow  # five audits in subprocesses

AUDIT = ["--examples", "5", "--budget", "8", "--trigger-examples", "5", "--trigger-top-k", "1", "--baselines", "random", "--seed", "3"]
AUDIT += ["--lexicon-data", "sst2"]  # a file is no task: its label-word lexicon comes from SST-2's training split
AUDIT += ["--no-advice", "--no-causal-check"]  # the same for every format; they have their own tests
REVIEWS = ["--text-column", "review", "--label-column", "sentiment", "--label-map", "pos=positive,neg=negative"]
PROBABILITY_ULPS = 8
"""Each audit runs in its own process on this machine: the same computation, which one process repeats bit for
bit; 8 float32 ulps allow for another process's kernel order. Statuses, texts and query counts must be equal."""


def audit(data: Path, out: Path, patterns: Path, *options: str) -> tuple[dict, str]:
    done = auditor("audit", "--model", str(SST2), "--patterns", str(patterns), "--data", str(data), "--out", str(out), *AUDIT, *options)
    assert done.returncode == 0, done.stderr
    return json.loads((out / "report.json").read_text()), done.stderr


def figures(report: dict) -> dict:
    """What must not depend on the file's format: the examples and every attack's results."""
    attacks = [report["attack"], *report["baselines"]]
    return {
        "data": {k: report["data"][k] for k in ("count", "digest", "reference", "sample_seed")},
        "clean_accuracy": report["clean_accuracy"],
        "attacks": [
            {
                "name": a["name"],
                "accuracy_under_attack": a["accuracy_under_attack"],
                "success_rate": a["success_rate"],
                "queries": a["queries"],
                "outcomes": [
                    (o["index"], o["example_id"], o["label"], o["status"], o["perturbed_text"], o["queries"]) for o in a["outcomes"]
                ],
            }
            for a in attacks
        ],
    }


def probabilities(report: dict) -> list[list[float]]:
    return [o["perturbed_probabilities"] for a in [report["attack"], *report["baselines"]] for o in a["outcomes"]]


def test_every_format_gives_the_audit_of_the_glue_file(sst2_patterns: Path, tmp_path: Path) -> None:
    tsv = tmp_path / "held-out.tsv"  # GLUE's layout, read without quoting
    tsv.write_text("sentence\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows(GLUE / "SST-2" / "dev.tsv")[:12]), encoding="utf-8")
    expected, _ = audit(tsv, tmp_path / "tsv", sst2_patterns, "--sample")
    assert expected["data"]["count"] == 5 and expected["data"]["mapping"] is None
    assert expected["data"]["sample_seed"] == 3
    for kind, path in write_formats(tmp_path, held_out()).items():
        report, _ = audit(path, tmp_path / kind, sst2_patterns, "--sample", *REVIEWS)
        assert figures(report) == figures(expected), kind
        assert differences(probabilities(report), probabilities(expected), PROBABILITY_ULPS) == [], kind
        assert report["data"]["mapping"] == "text 'review'; label 'sentiment' (pos=positive, neg=negative)"


def test_a_file_without_labels_is_audited_against_the_models_predictions(sst2_patterns: Path, tmp_path: Path) -> None:
    texts = [r["review"] for r in held_out(5)]
    path = tmp_path / "texts.jsonl"
    path.write_text("".join(json.dumps({"review": text}) + "\n" for text in [*texts[:3], texts[1], *texts[3:]]), encoding="utf-8")
    report, stderr = audit(path, tmp_path / "out", sst2_patterns, "--text-column", "review")
    assert f"warning: 1 repeated texts kept once: {path}:4 repeats {path}:2" in stderr.splitlines(), stderr  # read past it: 5 distinct
    assert f"{path.resolve()} has no labels: each example's reference is the model's own prediction" in stderr
    assert report["data"]["reference"] == "prediction" and report["data"]["duplicates"] == 1 and report["clean_accuracy"] == 1.0
    assert [o["text"] for o in report["attack"]["outcomes"]] == texts
    assert all(o["label"] == max(range(2), key=o["original_probabilities"].__getitem__) for o in report["attack"]["outcomes"])
    assert "each example's reference is the model's own prediction" in (tmp_path / "out" / "report.md").read_text()
