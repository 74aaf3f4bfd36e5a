"""``scripts/ci-audit.sh`` end to end, as docs/ci/robustness.yml runs it: the full SST-2 model is released
first (its audit through a real TorchServe becomes the baseline), then a candidate with half of its heads
pruned by attention is packaged, served, audited through its endpoint and gated against it, on the 60
held-out sentences and budget of the regression issue. The verdict is checked against an exact McNemar
test computed here from the two reports."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from junitparser import JUnitXml

from auditor.serving.torchserve import free_port
from tests.test_audit import ROOT, SST2, auditor
from tests.test_diff import expected_exit

pytestmark = pytest.mark.slow  # the CI script: packaging, a real TorchServe, endpoint audits

EXAMPLES, BUDGET = 60, 50


def ci_audit(model: Path, out: Path, *baseline: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    ports = ("INFERENCE_PORT", "MANAGEMENT_PORT", "METRICS_PORT", "GRPC_INFERENCE_PORT", "GRPC_MANAGEMENT_PORT")
    variables = {
        **os.environ,
        **{name: str(free_port()) for name in ports},
        "AUDIT_EXAMPLES": str(EXAMPLES),
        "AUDIT_BUDGET": str(BUDGET),
        "AUDIT_BASELINES": "none",
        "OMP_NUM_THREADS": "1",
        **environment,
    }
    variables.pop("GITHUB_ACTIONS", None)
    command = ["bash", str(ROOT / "scripts" / "ci-audit.sh"), str(model), str(out), *map(str, baseline)]
    return subprocess.run(command, capture_output=True, text=True, env=variables, timeout=1200, cwd=ROOT)


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory, sst2_patterns: Path) -> tuple[Path, Path]:
    """The patterns every release uses, and the full model's release audit (no baseline yet)."""
    work = tmp_path_factory.mktemp("ci-audit")
    first = ci_audit(SST2, work / "release-1", AUDIT_PATTERNS=str(sst2_patterns))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return sst2_patterns, work / "release-1"


def test_the_script_gates_a_pruned_candidate_against_the_release(released: tuple[Path, Path], tmp_path: Path) -> None:
    patterns, release = released
    report = release / "audit" / "report.json"
    assert '"kind": "endpoint"' in report.read_text() and (release / "junit.xml").is_file()
    importance, pruned = tmp_path / "heads.json", tmp_path / "pruned"
    for step in (
        ["heads", "--model", str(SST2), "--data", "sst2", "--method", "attention", "--examples", "200", "--out", str(importance), "--no-cache"],
        ["prune", "--model", str(SST2), "--importance", str(importance), "--method", "attention", "--fraction", "0.5", "--out", str(pruned)],
    ):
        done = auditor(*step)
        assert done.returncode == 0, done.stderr
    summary = tmp_path / "summary.md"
    second = ci_audit(pruned, tmp_path / "release-2", report, AUDIT_PATTERNS=str(patterns), GITHUB_STEP_SUMMARY=str(summary))

    base, new = json.loads(report.read_text()), json.loads((tmp_path / "release-2" / "audit" / "report.json").read_text())
    assert second.returncode == expected_exit(base, new), second.stdout[-3000:] + second.stderr[-3000:]
    diff = json.loads((tmp_path / "release-2" / "audit" / "diff.json").read_text())
    changes = {c["measure"]: c for c in diff["comparisons"]}
    checks = {f"invariance:{c['name']}" for c in new["invariance"] if c["outcomes"]}
    assert set(changes) == {"clean", "attribution", *checks}
    text = summary.read_text()
    for measure, name in (("clean", "clean accuracy"), ("attribution", "accuracy under attribution")):
        change = changes[measure]
        row = f"| {name} | {100 * change['base_accuracy']:.1f} % | {100 * change['new_accuracy']:.1f} % | {100 * change['change']:+.1f} points".replace("+0.0 ", "0.0 ")
        assert row in text and row in second.stdout  # both changes shown, in the job summary and the log
    assert new["victim"]["kind"] == "endpoint" and new["victim"]["location"].endswith("/predictions/pruned")
    xml = JUnitXml.fromfile(str(tmp_path / "release-2" / "junit.xml"))
    assert [s.name for s in xml] == ["attribution", "invariance", "diff.clean", "diff.attribution", *(f"diff.{c['measure']}" for c in diff["comparisons"][2:])]
    # the gate's checks: the attack, one per invariance check, one per measure of the diff
    assert xml.tests == 1 + len(new["invariance"]) + len(diff["comparisons"])
    assert (xml.failures > 0) == (second.returncode == 1)
    logs = tmp_path / "release-2" / "server"
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in [*logs.glob("logs/*.log"), logs / "launcher.log"])
    assert (logs / "launcher.log").read_text().rstrip().endswith("TorchServe has stopped.")  # stopped on the way out
    assert not (logs / "tmp" / ".model_server.pid").exists()


def test_the_script_refuses_bad_input_with_status_2(released: tuple[Path, Path], tmp_path: Path) -> None:
    patterns, release = released
    missing_model = ci_audit(tmp_path / "no-model", tmp_path / "out")
    assert missing_model.returncode == 2 and "error: model folder" in missing_model.stderr
    missing_baseline = ci_audit(SST2, tmp_path / "out", tmp_path / "no-report.json")
    assert missing_baseline.returncode == 2 and "error: baseline report" in missing_baseline.stderr
    usage = subprocess.run(["bash", str(ROOT / "scripts" / "ci-audit.sh")], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and usage.stderr.startswith("usage: scripts/ci-audit.sh MODEL_DIR OUT_DIR [BASELINE]")


def test_bad_input_leaves_no_output_folder(tmp_path: Path) -> None:
    """Every input is checked before OUT_DIR is created: a refused run leaves nothing behind."""
    for model, baseline, environment, message in (
        (tmp_path / "no-model", [], {}, "error: model folder"),
        (SST2, [tmp_path / "no-report.json"], {}, "error: baseline report"),
        (SST2, [], {"AUDIT_PATTERNS": str(tmp_path / "no-patterns.json")}, "error: AUDIT_PATTERNS file"),
    ):
        done = ci_audit(model, tmp_path / "out", *baseline, **environment)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert not (tmp_path / "out").exists(), message
