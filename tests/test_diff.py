"""The robustness regression gate (``auditor diff``, ``audit --baseline``, ``--junit``, GitHub outputs) on real
audits of two models built here: the SST-2 fixture and a candidate that really is less robust. Every verdict
is checked against an exact McNemar test computed independently (SciPy's binomial test on the per-example
outcomes read from the reports), and the JUnit files against a JUnit reader (junitparser)."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml
from scipy.stats import binomtest

from auditor.diff import holm_adjusted, mcnemar_exact
from auditor.diff_report import measure_name
from auditor.schemas import RobustnessDiff, RobustnessReport
from tests.test_audit import SST2, auditor
from tests.test_cli_usage import run_main

EXAMPLES, BUDGET = 60, 40
OPTIONS = ["--data", "sst2", "--examples", str(EXAMPLES), "--budget", str(BUDGET), "--baselines", "random",
           "--trigger-examples", "16", "--trigger-top-k", "1", "--no-advice", "--no-causal-check"]  # fmt: skip


def build_less_robust_candidate(directory: Path) -> Path:
    """The SST-2 fixture with 70 % of its heads (50 of 72) removed in seeded random order (seed 0): the most
    significantly less robust of 28 candidates tried on SST-2 dev 0..59, and the only one still significantly
    less robust on dev 60..259, examples not used to choose it (README, "A regression gate for CI")."""
    importance = directory.parent / "random-heads.json"
    for step in (
        ["heads", "--model", str(SST2), "--data", "sst2", "--method", "random", "--seed", "0", "--examples", "200", "--out", str(importance), "--no-cache"],
        ["prune", "--model", str(SST2), "--importance", str(importance), "--method", "random", "--fraction", "0.7", "--out", str(directory)],
    ):
        done = auditor(*step)
        assert done.returncode == 0, done.stderr
    return directory


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("diff")


@pytest.fixture(scope="module")
def full(workdir: Path, sst2_patterns: Path) -> Path:
    out = workdir / "full"
    done = auditor("audit", "--model", str(SST2), "--patterns", str(sst2_patterns), "--out", str(out), "--junit", str(workdir / "full.xml"), *OPTIONS)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def candidate_model(workdir: Path) -> Path:
    return build_less_robust_candidate(workdir / "candidate-model")


@pytest.fixture(scope="module")
def candidate(workdir: Path, sst2_patterns: Path, candidate_model: Path) -> Path:
    out = workdir / "candidate"
    done = auditor("audit", "--model", str(candidate_model), "--patterns", str(sst2_patterns), "--out", str(out), *OPTIONS)
    assert done.returncode == 0, done.stderr
    return out


def load(path: Path) -> RobustnessReport:
    return RobustnessReport.model_validate_json((path / "report.json").read_bytes())


def held(report: dict, measure: str) -> dict[str, bool]:
    """Per example id, read from the raw JSON: the model right (clean), right after the attack, or its
    prediction kept under an invariance check ('invariance:<check>', the examples the check applied to)."""
    attacks = {a["name"]: a for a in [report["attack"], *report["baselines"]]}
    if measure.startswith("invariance:"):
        check = next(c for c in report["invariance"] if c["name"] == measure.removeprefix("invariance:"))
        return {o["example_id"]: o["original_prediction"] == o["perturbed_prediction"] for o in check["outcomes"]}
    if measure == "clean":
        return {o["example_id"]: o["status"] != "skipped" for o in report["attack"]["outcomes"]}
    return {o["example_id"]: o["status"] == "failed" for o in attacks[measure]["outcomes"]}


def holm_rejections(p_values: list[float], alpha: float) -> list[bool]:
    """Holm's procedure as its paper states it: test the smallest p at alpha/m, the next at alpha/(m - 1), …,
    and stop at the first that is not below its level."""
    rejected = [False] * len(p_values)
    for rank, index in enumerate(sorted(range(len(p_values)), key=p_values.__getitem__)):
        if p_values[index] >= alpha / (len(p_values) - rank):
            break
        rejected[index] = True
    return rejected


def expected_exit(base: dict, new: dict, max_drop: float = 0.0, alpha: float = 0.05, correction: str = "none") -> int:
    """The gate's rule with SciPy's exact binomial test standing in for McNemar's exact test."""
    drops, p_values = [], []
    checks = [f"invariance:{c['name']}" for c in base["invariance"] if c["outcomes"]]
    for measure in ["clean", *(a["name"] for a in [base["attack"], *base["baselines"]]), *checks]:
        before, after = held(base, measure), held(new, measure)
        broken = sum(before[i] and not after[i] for i in before)
        kept = sum(after[i] and not before[i] for i in before)
        p_values.append(binomtest(min(broken, kept), broken + kept).pvalue if broken + kept else 1.0)
        drops.append((broken - kept) / len(before) > max_drop)
    significant = holm_rejections(p_values, alpha) if correction == "holm" else [p < alpha for p in p_values]
    return int(any(drop and rejected for drop, rejected in zip(drops, significant)))


@pytest.mark.parametrize(("b", "c"), [(b, c) for b in range(0, 26, 5) for c in range(0, 26, 3)] + [(300, 350), (1, 0), (0, 7)])
def test_mcnemar_exact_equals_the_binomial_test(b: int, c: int) -> None:
    expected = binomtest(min(b, c), b + c).pvalue if b + c else 1.0
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12, abs=1e-300)
    assert mcnemar_exact(b, c) == mcnemar_exact(c, b)


@pytest.mark.parametrize("seed", range(20))
def test_holm_adjusted_p_values_reject_what_holms_procedure_rejects(seed: int) -> None:
    generator = random.Random(seed)
    p_values = [generator.choice([generator.random() * 0.1, generator.random(), 1.0, 0.01, 0.02]) for _ in range(generator.randint(1, 6))]
    adjusted = holm_adjusted(p_values)
    for alpha in (0.01, 0.025, 0.05, 0.1):
        assert [p < alpha for p in adjusted] == holm_rejections(p_values, alpha)
    assert all(a >= p for a, p in zip(adjusted, p_values)) and max(adjusted) <= 1


@pytest.mark.slow  # audits of 60 examples in subprocesses
def test_diff_names_a_real_significant_regression(full: Path, candidate: Path, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, new = json.loads((full / "report.json").read_text()), json.loads((candidate / "report.json").read_text())
    assert expected_exit(base, new) == 1, "the candidate must really be significantly less robust"
    code, out, err = run_main(["diff", str(full), str(candidate), "--out", str(workdir / "gate"), "--junit", str(workdir / "diff.xml")], capsys)
    assert code == 1, err
    assert "fail: Robustness regression: accuracy under attribution" in err and "Traceback" not in err
    diff = RobustnessDiff.model_validate_json((workdir / "gate" / "diff.json").read_bytes())
    assert diff.regression and (workdir / "gate" / "diff.md").read_text() == out
    for comparison in diff.comparisons:
        before, after = held(base, comparison.measure), held(new, comparison.measure)
        broken = sorted(i for i in before if before[i] and not after[i])
        kept = sorted(i for i in before if after[i] and not before[i])
        assert sorted(c.example_id for c in comparison.broken) == broken
        assert sorted(c.example_id for c in comparison.held) == kept
        assert comparison.base_accuracy == pytest.approx(sum(before.values()) / len(before))
        assert comparison.new_accuracy == pytest.approx(sum(after.values()) / len(before))
        assert comparison.p_value == pytest.approx(binomtest(min(len(broken), len(kept)), len(broken) + len(kept)).pvalue if broken or kept else 1.0)
    attribution = next(c for c in diff.comparisons if c.measure == "attribution")
    assert attribution.regression
    assert attribution.newly_broken <= 25  # the summary lists up to 25 of each, diff.json all
    for change in attribution.broken:  # every newly broken example is named, with its texts
        assert change.example_id in out and change.text.strip()[:40] in out.replace("\\'", "'").replace("\\`", "`")  # repr, Markdown-escaped
        assert change.new_status in ("succeeded", "skipped") and change.base_status == "failed"
    xml = JUnitXml.fromfile(str(workdir / "diff.xml"))
    suites = {suite.name: suite for suite in xml}
    assert list(suites) == [f"diff.{c.measure}" for c in diff.comparisons]
    for comparison in diff.comparisons:
        suite = suites[f"diff.{comparison.measure}"]
        (case,) = list(suite)  # the gate's check; the changed examples are its output
        assert case.name == f"no regression in {measure_name(comparison)}"
        assert suite.failures == int(comparison.regression) == int(any(isinstance(r, Failure) for r in case.result))
        assert len(case.system_out.splitlines()) == 1 + comparison.newly_broken + comparison.newly_held


@pytest.mark.slow  # audits of 60 examples in subprocesses
def test_a_report_against_itself_passes_and_other_data_or_settings_are_refused(
    full: Path, sst2_patterns: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(["diff", str(full), str(full / "report.json")], capsys)
    assert code == 0 and err == "" and out.rstrip().endswith("No regression.")
    code, out, err = run_main(["diff", str(full), str(full), "--junit", str(full / "report.json" / "junit.xml")], capsys)
    assert code == 2 and err.splitlines() == [f"error: cannot write {full / 'report.json' / 'junit.xml'}: {full / 'report.json'} is a file, not a folder"]
    other = workdir / "other-data"  # the same model and settings on the first 4 examples
    done = auditor("audit", "--model", str(SST2), "--patterns", str(sst2_patterns), "--out", str(other), *OPTIONS[:3], "4", *OPTIONS[4:])
    assert done.returncode == 0, done.stderr
    code, out, err = run_main(["diff", str(full), str(other)], capsys)
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.splitlines() == [err.strip()] and err.startswith("error: the reports cannot be compared: they audit different examples: ")
    report = json.loads((full / "report.json").read_text())
    edited = workdir / "edited"
    edited.mkdir()
    moved = json.loads(json.dumps(report))  # the same audit made in another checkout, e.g. on a CI runner
    for used in (moved["data"], moved["lexicon"]["data"], moved["patterns"]):
        used["source"] = "/home/runner/work/models/shared/data/glue/SST-2/" + used["source"].rsplit("/", 1)[-1]
    (edited / "report.json").write_text(json.dumps(moved))
    code, out, err = run_main(["diff", str(full), str(edited)], capsys)
    assert code == 0 and err == "" and "Note:" not in out
    report["settings"]["budget"] = BUDGET + 1
    (edited / "report.json").write_text(json.dumps(report))
    code, out, err = run_main(["diff", str(full), str(edited)], capsys)
    assert code == 2 and err.splitlines() == [f"error: the reports cannot be compared: the settings differ: budget {BUDGET} vs {BUDGET + 1}"]
    report["schema_version"] = 5
    (edited / "report.json").write_text(json.dumps(report))
    code, out, err = run_main(["diff", str(edited), str(full)], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "has schema version 5" in err and "rerun that audit" in err
    for missing, message in ((workdir / "nowhere.json", "no such file"), (workdir, "the folder holds no report.json"), (sst2_patterns, "is not an audit report")):
        code, out, err = run_main(["diff", str(full), str(missing)], capsys)
        assert code == 2 and len(err.splitlines()) == 1 and message in err, err


@pytest.mark.parametrize(
    ("broken", "kept", "max_drop", "alpha", "correction"),
    [
        (6, 0, 0.0, 0.05, "none"), (5, 0, 0.0, 0.05, "none"), (6, 0, 0.0, 0.01, "none"), (8, 1, 0.0, 0.05, "none"),
        (8, 1, 0.2, 0.05, "none"), (1, 8, 0.0, 0.05, "none"), (7, 2, 0.0, 0.2, "none"),
        (6, 0, 0.0, 0.05, "holm"), (8, 0, 0.0, 0.05, "holm"), (7, 0, 0.0, 0.05, "holm"), (9, 1, 0.0, 0.05, "holm"),
    ],
)  # fmt: skip
def test_exit_code_agrees_with_exact_mcnemar(
    full: Path, workdir: Path, broken: int, kept: int, max_drop: float, alpha: float, correction: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The full model's report against copies whose attack outcomes were flipped: ``broken`` held examples
    made successes, ``kept`` successes made failures (the statuses a less or more robust model would give)."""
    base = json.loads((full / "report.json").read_text())
    new = json.loads(json.dumps(base))
    outcomes = new["attack"]["outcomes"]
    holding = [o for o in outcomes if o["status"] == "failed"]
    breaking = [o for o in outcomes if o["status"] == "succeeded"]
    assert len(holding) >= broken and len(breaking) >= kept
    for o in holding[:broken]:
        o["status"] = "succeeded"
    for o in breaking[:kept]:
        o["status"] = "failed"
    path = workdir / f"flipped-{broken}-{kept}-{max_drop}-{alpha}.json"
    path.write_text(json.dumps(new))
    arguments = ["diff", str(full), str(path), "--max-drop", str(max_drop), "--alpha", str(alpha), "--correction", correction, "--format", "json"]
    code, out, err = run_main(arguments, capsys)
    assert code == expected_exit(base, new, max_drop, alpha, correction), out
    diff = RobustnessDiff.model_validate_json(out)
    assert diff.regression == bool(code) and diff.comparisons[1].newly_broken == broken and diff.comparisons[1].newly_held == kept


@pytest.mark.slow  # audits of 60 examples in subprocesses
def test_audit_junit_has_a_passing_case_per_attack_listing_every_example(full: Path, workdir: Path) -> None:
    """Without --fail-under the audit gates nothing, so nothing fails: one informative case per attack whose
    output has a line per example (tests/test_junit.py checks the gate's failures)."""
    report = load(full)
    xml = JUnitXml.fromfile(str(workdir / "full.xml"))
    suites = list(xml)
    assert [s.name for s in suites] == [a.name for a in [report.attack, *report.baselines]] + ["invariance"]
    for suite, attack in zip(suites, [report.attack, *report.baselines]):
        (case,) = list(suite)
        assert case.name == f"accuracy under {attack.name}" and suite.failures == 0 and not case.result
        lines = case.system_out.splitlines()[1:]
        assert len(lines) == EXAMPLES
        for line, outcome in zip(lines, attack.outcomes):
            assert outcome.example_id in line
            if outcome.status == "succeeded":
                assert repr(outcome.text) in line and repr(outcome.perturbed_text) in line
        properties = {p.name: p.value for p in suite.properties()}
        assert properties["model.weights_sha256"] == report.victim.model.weights_sha256
        assert properties["settings.budget"] == str(BUDGET) and properties["data.digest"] == report.data.digest
    assert xml.tests == len(suites) - 1 + len(report.invariance) and xml.failures == 0
    assert [case.name for case in suites[-1]] == [c.name for c in report.invariance]  # one case per check, named after it


@pytest.mark.slow  # audits of 60 examples in subprocesses
def test_audit_with_a_baseline_gates_and_publishes_to_github(full: Path, candidate: Path, candidate_model: Path, sst2_patterns: Path, workdir: Path) -> None:
    """The candidate's audit again (resumed from its checkpoint) with the full model's report as --baseline,
    as on GitHub Actions: the job summary gets the report and the diff, the regression an ::error annotation."""
    summary = workdir / "step-summary.md"
    summary.write_text("earlier step\n")
    environment = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    arguments = ["audit", "--model", str(candidate_model), "--patterns", str(sst2_patterns), "--out", str(candidate), *OPTIONS]
    old = {key: os.environ.get(key) for key in environment}
    os.environ.update(environment)
    try:
        done = auditor(*arguments, "--baseline", str(full), "--junit", str(workdir / "candidate.xml"))
    finally:
        for key, value in old.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    base, new = json.loads((full / "report.json").read_text()), json.loads((candidate / "report.json").read_text())
    assert done.returncode == expected_exit(base, new) == 1, done.stderr
    assert "::error title=Robustness regression%3A accuracy under attribution::" in done.stdout
    text = summary.read_text()
    assert text.startswith("earlier step\n# Robustness audit: ") and "# Robustness diff: " in text and "**Regression: " in text
    assert (candidate / "diff.md").read_text() in text
    xml = JUnitXml.fromfile(str(workdir / "candidate.xml"))
    checks = [c["measure"] for c in json.loads((candidate / "diff.json").read_text())["comparisons"] if c["measure"].startswith("invariance:")]
    assert [s.name for s in xml] == ["attribution", "random", "invariance", "diff.clean", "diff.attribution", "diff.random", *(f"diff.{c}" for c in checks)]
    refused = auditor(*arguments[:-len(OPTIONS)], *OPTIONS[:5], str(BUDGET * 2), *OPTIONS[6:], "--baseline", str(full))
    assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1] == (
        f"error: the reports cannot be compared: the settings differ: budget {BUDGET} vs {BUDGET * 2}"
    )
    missing = auditor(*arguments, "--baseline", str(workdir / "no-such-report"))
    assert missing.returncode == 2 and missing.stderr.strip().splitlines()[-1] == f"error: --baseline report {workdir / 'no-such-report'}: no such file"


def test_workflow_runs_the_script(tmp_path: Path) -> None:
    """docs/ci/robustness.yml is valid YAML whose gate step runs scripts/ci-audit.sh (run end to end in
    tests/test_ci_audit.py)."""
    import yaml

    root = Path(__file__).resolve().parents[1]
    workflow = yaml.safe_load((root / "docs" / "ci" / "robustness.yml").read_text())
    steps = workflow["jobs"]["robustness-gate"]["steps"]
    runs = "\n".join(step.get("run", "") for step in steps)
    assert "scripts/ci-audit.sh" in runs and "scripts/setup.sh" in runs
    assert any(step.get("with", {}).get("report_paths") == "out/ci-audit/junit.xml" for step in steps)
    assert shutil.which("bash") and os.access(root / "scripts" / "ci-audit.sh", os.X_OK)
