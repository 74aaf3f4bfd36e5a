"""The JUnit file a CI test tab reads (``--junit``), read back with junitparser: a passing gate has no failed
case, a failing one fails the check that failed it by name, per-example results are output, properties are
plain strings; and the report's rates carry Wilson intervals in every format."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml

from auditor.cli import main
from auditor.report import render_html, render_markdown
from auditor.schemas import RobustnessReport
from auditor.statistics import wilson
from tests.test_audit import SST2
from tests.test_cli_usage import run_main

EXAMPLES = 8
pytestmark = pytest.mark.slow  # an audit of 8 examples, then resumed runs of it

OPTIONS = ["--data", "sst2", "--examples", str(EXAMPLES), "--budget", "20", "--baselines", "random",
           "--trigger-examples", "16", "--trigger-top-k", "1", "--no-advice", "--no-causal-check"]  # fmt: skip


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory, sst2_patterns: Path) -> tuple[Path, list[str]]:
    """An audit of 8 SST-2 dev examples (the attribution attack and random insertion); the command that resumes it."""
    out = tmp_path_factory.mktemp("junit") / "audit"
    command = ["audit", "--model", str(SST2), "--patterns", str(sst2_patterns), "--out", str(out), *OPTIONS]
    try:  # run_main needs capsys, which a module fixture cannot take
        main(command)
    except SystemExit as exit_info:
        assert not exit_info.code, f"the audit failed with status {exit_info.code}"
    return out, command


def load(out: Path) -> RobustnessReport:
    return RobustnessReport.model_validate_json((out / "report.json").read_bytes())


def failed(case) -> bool:  # noqa: ANN001
    return any(isinstance(result, Failure) for result in case.result)


def properties(suite) -> dict[str, str]:  # noqa: ANN001
    return {p.name: p.value for p in suite.properties()}


def test_a_passing_gate_has_no_failed_case_and_a_failing_gate_names_its_check(
    audited: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, command = audited
    report = load(out)
    attacks = [report.attack, *report.baselines]
    assert sum(o.status == "succeeded" for o in report.attack.outcomes) > 0, "no successful attack: the passing gate would prove nothing"
    worst, best = sorted(a.accuracy_under_attack for a in attacks)[:: len(attacks) - 1]
    assert worst < best, "both attacks hold the same accuracy: no threshold fails one check and passes the other"

    code, _, err = run_main([*command, "--fail-under", str(worst), "--junit", str(tmp_path / "pass.xml")], capsys)
    assert code == 0, err
    xml = JUnitXml.fromfile(str(tmp_path / "pass.xml"))
    assert xml.failures == 0 and xml.errors == 0 and xml.tests == len(attacks) + len(report.invariance)  # + one case per invariance check
    for suite, attack in zip(xml, attacks):
        (case,) = list(suite)
        assert suite.name == attack.name and suite.failures == 0 and not failed(case)
        assert case.name == f"accuracy under {attack.name} >= {100 * worst:.1f} % (--fail-under)"
        lines = case.system_out.splitlines()
        assert len(lines) == EXAMPLES + 1  # the summary, then one line per example
        for line, outcome in zip(lines[1:], attack.outcomes):
            assert line.startswith(f"[{outcome.index}] {outcome.example_id} ")
            assert {"succeeded": " broken, ", "failed": " held after ", "skipped": " wrong on the clean text"}[outcome.status] in line
        values = properties(suite)
        assert values["settings.transformations"] == ", ".join(report.settings.transformations)
        assert values["settings.baselines"] == "random" and values["model.labels"] == "negative, positive"
        assert not any(v in ("None", "True", "False") or v.startswith(("[", "{", "(")) for v in values.values()), values
        for name in ("clean_accuracy", "accuracy_under_attack", "success_rate"):
            rate = getattr(attack, f"{name}_interval")
            assert float(values[f"{name}.low"]) == pytest.approx(rate.low, abs=1e-6)  # written with 6 decimals
            assert float(values[f"{name}.high"]) == pytest.approx(rate.high, abs=1e-6)
        for row in attack.per_class:
            assert float(values[f"class.{row.name}.accuracy_under_attack"]) == pytest.approx(row.accuracy_under_attack, abs=1e-6)

    threshold = (worst + best) / 2  # the worst attack fails it, the other passes
    code, _, err = run_main([*command, "--fail-under", str(threshold), "--junit", str(tmp_path / "fail.xml")], capsys)
    assert code == 1, err
    xml = JUnitXml.fromfile(str(tmp_path / "fail.xml"))
    assert xml.failures == 1 and xml.tests == len(attacks) + len(report.invariance)
    weakest = min(attacks, key=lambda a: a.accuracy_under_attack)
    (case,) = [c for suite in xml for c in suite if failed(c)]
    assert case.name == f"accuracy under {weakest.name} >= {100 * threshold:.1f} % (--fail-under)"
    message = case.result[0].message
    assert message.startswith(f"accuracy under the {weakest.name} attack (valid successes only) is ") and "below --fail-under" in message
    assert message in err  # the same sentence as the log's


def test_a_diff_gate_fails_only_its_regressed_measure(audited: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = audited
    code, _, err = run_main(["diff", str(out), str(out), "--junit", str(tmp_path / "same.xml")], capsys)
    assert code == 0, err
    same = JUnitXml.fromfile(str(tmp_path / "same.xml"))
    checks = [c.name for c in load(out).invariance if c.outcomes]  # each applied invariance check is a measure too
    assert same.failures == 0 and [c.name for s in same for c in s] == [
        "no regression in clean accuracy", "no regression in accuracy under attribution", "no regression in accuracy under random",
        *(f"no regression in predictions kept under {name}" for name in checks),
    ]  # fmt: skip

    better = json.loads((out / "report.json").read_text())  # a base in which every attribution attack failed
    broken = [o for o in better["attack"]["outcomes"] if o["status"] == "succeeded"]
    for o in broken:
        o["status"] = "failed"
    (tmp_path / "better.json").write_text(json.dumps(better))
    code, _, err = run_main(["diff", str(tmp_path / "better.json"), str(out), "--junit", str(tmp_path / "worse.xml")], capsys)
    assert len(broken) >= 6, "too few successes for McNemar p < 0.05 (6 against 0 gives 0.031)"
    assert code == 1, err
    xml = JUnitXml.fromfile(str(tmp_path / "worse.xml"))
    failures = [c for s in xml for c in s if failed(c)]
    assert xml.failures == 1 and [c.name for c in failures] == ["no regression in accuracy under attribution"]
    assert failures[0].result[0].message.startswith("accuracy under attribution ")
    assert len(failures[0].system_out.splitlines()) == 1 + len(broken)  # the verdict, then each newly broken example


def rates(node: object, path: str = "") -> list[tuple[str, float, dict]]:
    """Every rate of a report's JSON with the interval beside it: (where, value, interval)."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, float | None) and f"{key}_interval" in node:
                found.append((f"{path}.{key}", value, node[f"{key}_interval"]))
            found += rates(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found += rates(item, f"{path}[{i}]")
    return found


RATE_NAMES = ("accuracy", "rate")


def test_every_rate_of_the_report_has_its_wilson_interval_in_every_format(audited: tuple[Path, list[str]]) -> None:
    out, _ = audited
    raw = json.loads((out / "report.json").read_text())

    def bare(node: object, path: str = "") -> list[str]:
        """Rates (fields named ``*accuracy*``/``*rate*`` holding a fraction) without an interval beside them."""
        missing = []
        if isinstance(node, dict) and set(node) != {"count", "total", "rate", "low", "high", "level"}:  # not a Rate itself
            for key, value in node.items():
                if path == "" and key == "settings":
                    continue  # settings such as typo_rate are chosen, not measured
                if value is None and node.get("note"):
                    continue  # an invariance check with too few examples for a rate, and the note saying so
                if any(n in key for n in RATE_NAMES) and not key.endswith("_interval") and isinstance(value, float | None) and f"{key}_interval" not in node:
                    missing.append(f"{path}.{key}")
                missing += bare(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                missing += bare(item, f"{path}[{i}]")
        return missing

    assert bare(raw) == []
    found = rates(raw)
    assert len(found) > 20 and any(".triggers[" in where for where, _, _ in found) and any(".budget_curve[" in w for w, _, _ in found)
    for where, value, interval in found:
        expected = wilson(interval["count"], interval["total"])  # the interval of the counts it claims
        assert (value is None) == (interval["total"] == 0), where
        if value is not None:
            assert math.isclose(value, interval["count"] / interval["total"], rel_tol=1e-12), where
        assert math.isclose(interval["low"], expected.low, abs_tol=1e-12) and math.isclose(interval["high"], expected.high, abs_tol=1e-12), where
        assert interval["low"] <= (value if value is not None else interval["low"]) <= interval["high"] and interval["level"] == 0.95
    report = load(out)
    shown = f"{100 * report.attack.accuracy_under_attack:.1f} % [{100 * report.attack.accuracy_under_attack_interval.low:.1f} %, "
    shown += f"{100 * report.attack.accuracy_under_attack_interval.high:.1f} %]"
    assert f"| attribution | {shown} |" in render_markdown(report)
    assert f"<td class=\"num\">{shown}</td>" in render_html(report)


def test_backticks_in_the_data_stay_text_in_the_markdown(audited: tuple[Path, list[str]]) -> None:
    """SST-2 writes quotes as two backticks; in the Markdown summary they must not open code spans."""
    report = load(audited[0])
    outcome = next(o for o in report.attack.outcomes if o.status == "succeeded")
    quoted = outcome.model_copy(update={"text": f"`` the good girl '' {outcome.text}", "perturbed_text": f"`` the good girl '' {outcome.perturbed_text}"})
    attack = report.attack.model_copy(update={"outcomes": [quoted]})
    markdown = render_markdown(report.model_copy(update={"attack": attack}))
    line = next(line for line in markdown.splitlines() if "the good girl" in line)
    assert "`" not in line.replace("\\`", "")  # every backtick escaped
    assert line.count("\\`\\` the good girl") == 2  # the original and the perturbed text
