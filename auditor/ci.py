"""Audits in the formats CI systems read: JUnit XML (``--junit``: one test case per example and attack, a
failure for each valid successful attack or newly broken example; one per invariance check, a failure when
its flip rate exceeds ``--max-flip-rate``) and, on GitHub Actions, the job summary
(Markdown appended to ``$GITHUB_STEP_SUMMARY``) and workflow annotations (``::error``/``::warning`` lines on
stdout when ``GITHUB_ACTIONS=true``)."""

from __future__ import annotations

import os
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from auditor.report import comparison_summary, edit_text, flip_summary, flip_text, joined_text, measure_name, percent, verdict, write_atomic
from auditor.schemas import AttackSummary, ComparisonReport, PairedComparison, RobustnessDiff, RobustnessReport, VictimIdentity

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""Characters XML 1.0 cannot hold (control characters, lone surrogates): written as U+FFFD."""


def _xml(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


@dataclass(frozen=True)
class TestCase:
    """One JUnit ``<testcase>``: passed, failed (``failure`` = (message, details)) or skipped (``skipped`` = why)."""

    classname: str
    name: str
    seconds: float = 0.0
    failure: tuple[str, str] | None = None
    skipped: str | None = None


@dataclass(frozen=True)
class TestSuite:
    name: str
    cases: list[TestCase]
    properties: dict[str, str]


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def victim_properties(victim: VictimIdentity, prefix: str = "model") -> dict[str, str]:
    """The model's identity as JUnit properties: location, kind, and for a local model its name and weights."""
    values = {f"{prefix}.location": victim.location, f"{prefix}.kind": victim.kind, f"{prefix}.labels": ",".join(victim.labels)}
    if victim.model is not None:
        values |= {f"{prefix}.name": victim.model.name, f"{prefix}.weights_sha256": victim.model.weights_sha256}
        values[f"{prefix}.pruned_heads"] = str(sum(len(heads) for heads in victim.model.pruned_heads.values()))
    if victim.served is not None:
        values |= {f"{prefix}.name": victim.served.name, f"{prefix}.version": victim.served.version, f"{prefix}.weights_sha256": victim.served.weights_sha256}
    return values


def report_properties(report: RobustnessReport) -> dict[str, str]:
    settings = {f"settings.{name}": str(value) for name, value in report.settings.model_dump().items()}
    return {
        "auditor.version": report.auditor_version,
        **victim_properties(report.victim),
        "data": report.data.title,
        "data.digest": report.data.digest,
        **settings,
    }


def attack_suite(attack: AttackSummary, labels: list[str], properties: dict[str, str], prefix: str = "") -> TestSuite:
    """One test case per example: a failure when the attack found a valid success (the original and
    perturbed texts in the message), skipped when the model is already wrong on the clean example."""
    cases = []
    for o in attack.outcomes:
        original, perturbed = joined_text(o.text, o.text_pair), joined_text(o.perturbed_text, o.perturbed_text_pair)
        failure = skipped = None
        if o.status == "succeeded":
            predicted = labels[o.perturbed_prediction]
            failure = (
                f"valid successful attack, {labels[o.label]} → {predicted}: {original!r} → {perturbed!r}",
                f"original:  {original}\nperturbed: {perturbed}\nedits: {'; '.join(map(edit_text, o.edits))}\nqueries: {o.queries}",
            )
        elif o.status == "skipped":
            skipped = f"the model is wrong on the clean example (predicts {labels[o.original_prediction]}, gold {labels[o.label]})"
        name = f"[{o.index}] {_short(original)} ({o.example_id})"
        cases.append(TestCase(f"auditor.{prefix}{attack.name}", name, o.seconds, failure, skipped))
    summary = {"accuracy_under_attack": f"{attack.accuracy_under_attack:.6f}", "clean_accuracy": f"{attack.clean_accuracy:.6f}"}
    return TestSuite(f"{prefix}{attack.name}", cases, properties | summary)


def flip_rate_failures(report: RobustnessReport, limits: dict[str, float]) -> dict[str, str]:
    """Check name -> why it fails the gate, for every invariance check whose flip rate exceeds its limit (a
    check with too few examples for a rate is not gated)."""
    return {
        c.name: f"{flip_summary(c)}, above --max-flip-rate {percent(limits[c.name])}"
        for c in report.invariance
        if c.name in limits and c.flip_rate is not None and c.flip_rate.rate is not None and c.flip_rate.rate > limits[c.name]
    }


def invariance_suite(report: RobustnessReport, limits: dict[str, float]) -> TestSuite:
    """One test case per invariance check, named after it: a failure when its flip rate exceeds its
    ``limits`` entry, skipped when it applied to too few examples for a rate, passed otherwise."""
    failures = flip_rate_failures(report, limits)
    cases = []
    properties = report_properties(report) | {f"max_flip_rate.{name}": f"{limit:g}" for name, limit in limits.items()}
    for check in report.invariance:
        failure = None
        if check.name in failures:
            flips = [flip_text(o, report.victim.labels) for o in check.flip_examples]
            failure = (failures[check.name], "\n".join([failures[check.name], *flips]))
        cases.append(TestCase("auditor.invariance", check.name, check.seconds, failure, check.note))
        properties |= {f"{check.name}.applied": str(check.applied), f"{check.name}.flips": str(check.flips)}
        rate = check.flip_rate
        if rate is not None and rate.rate is not None:
            properties |= {f"{check.name}.flip_rate{part}": f"{value:.6f}" for part, value in (("", rate.rate), (".low", rate.low), (".high", rate.high))}
    return TestSuite("invariance", cases, properties)


def comparison_suite(comparison: PairedComparison, report: RobustnessDiff) -> TestSuite:
    """The gate on one measure (a failure when it regressed), then one case per example whose outcome
    changed: a failure for each newly broken example, a pass for each newly held one."""
    labels = report.new.victim.labels
    classname = f"auditor.diff.{comparison.measure}"
    gate_message = f"{comparison_summary(comparison, report)}: {verdict(comparison, report)}"
    cases = [TestCase(classname, "regression gate", failure=(gate_message, gate_message) if comparison.regression else None)]
    for change in comparison.broken:
        original = joined_text(change.text, change.text_pair)
        new = joined_text(change.new_perturbed_text, change.new_perturbed_text_pair)
        message = f"newly broken, {labels[change.label]} → {labels[change.new_predicted]}: {original!r} → {new!r}"
        cases.append(TestCase(classname, f"[{change.index}] {_short(original)} ({change.example_id})", failure=(message, message)))
    cases += [
        TestCase(classname, f"[{c.index}] {_short(joined_text(c.text, c.text_pair))} ({c.example_id})") for c in comparison.held
    ]
    properties = {
        "auditor.version": report.auditor_version,
        **victim_properties(report.base.victim, "base"),
        **victim_properties(report.new.victim, "new"),
        "data": report.data.title,
        "data.digest": report.data.digest,
        "max_drop": f"{report.max_drop:g}",
        "alpha": f"{report.alpha:g}",
        "base_accuracy": f"{comparison.base_accuracy:.6f}",
        "new_accuracy": f"{comparison.new_accuracy:.6f}",
        "p_value": f"{comparison.p_value:.6g}",
        "adjusted_p_value": f"{comparison.adjusted_p_value:.6g}",
        "correction": report.correction,
    }
    return TestSuite(f"diff.{comparison.measure}", cases, properties)


def audit_suites(report: RobustnessReport) -> list[TestSuite]:
    properties = report_properties(report)
    return [attack_suite(a, report.victim.labels, properties) for a in [report.attack, *report.baselines]]


def diff_suites(report: RobustnessDiff) -> list[TestSuite]:
    return [comparison_suite(c, report) for c in report.comparisons]


def comparison_report_suites(report: ComparisonReport) -> list[TestSuite]:
    """``auditor compare``: the attacks of each model, suites named ``full.<attack>`` and ``pruned.<attack>``."""
    suites = []
    for side, model in (("full", report.full), ("pruned", report.pruned)):
        properties = {"auditor.version": report.auditor_version, **victim_properties(model.victim), "data": report.data.title}
        suites += [attack_suite(a, model.victim.labels, properties, f"{side}.") for a in [model.attack, *model.baselines]]
    return suites


def junit_xml(name: str, suites: Iterable[TestSuite]) -> str:
    """A JUnit XML document (the ``testsuites``/``testsuite``/``testcase`` schema Jenkins, GitLab, GitHub
    test reporters and Azure read) with the counts on every level."""
    root = ET.Element("testsuites", name=name)
    totals = {"tests": 0, "failures": 0, "skipped": 0, "time": 0.0}
    for suite in suites:
        failures = sum(c.failure is not None for c in suite.cases)
        skipped = sum(c.skipped is not None for c in suite.cases)
        seconds = sum(c.seconds for c in suite.cases)
        element = ET.SubElement(
            root, "testsuite", name=_xml(suite.name), tests=str(len(suite.cases)), failures=str(failures), errors="0",
            skipped=str(skipped), time=f"{seconds:.3f}",
        )  # fmt: skip
        properties = ET.SubElement(element, "properties")
        for key, value in suite.properties.items():
            ET.SubElement(properties, "property", name=_xml(key), value=_xml(value))
        for case in suite.cases:
            node = ET.SubElement(element, "testcase", classname=_xml(case.classname), name=_xml(case.name), time=f"{case.seconds:.3f}")
            if case.failure is not None:
                message, details = case.failure
                ET.SubElement(node, "failure", message=_xml(message), type="RobustnessFailure").text = _xml(details)
            elif case.skipped is not None:
                ET.SubElement(node, "skipped", message=_xml(case.skipped))
        totals = {
            "tests": totals["tests"] + len(suite.cases),
            "failures": totals["failures"] + failures,
            "skipped": totals["skipped"] + skipped,
            "time": totals["time"] + seconds,
        }
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failures"]))
    root.set("errors", "0")
    root.set("skipped", str(totals["skipped"]))
    root.set("time", f"{totals['time']:.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(path: Path, name: str, suites: Iterable[TestSuite]) -> None:
    write_atomic(path, junit_xml(name, suites))


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


@dataclass(frozen=True)
class Annotation:
    """A GitHub Actions workflow annotation; an ``error`` is also a reason the command exits 1."""

    level: Literal["error", "warning", "notice"]
    title: str
    message: str

    def command(self) -> str:
        """The workflow command, e.g. ``::error title=Robustness regression::…``, escaped as the runner
        requires (``%``, CR and LF in the message; also ``:`` and ``,`` in the title)."""
        return f"::{self.level} title={_escape_property(self.title)}::{_escape_data(self.message)}"


def diff_annotations(report: RobustnessDiff) -> list[Annotation]:
    """An error for each regressed measure, a warning for each drop the gate let through."""
    lines = []
    for c in report.comparisons:
        message = comparison_summary(c, report)
        if c.regression:
            lines.append(Annotation("error", f"Robustness regression: {measure_name(c)}", message))
        elif c.change < 0:
            lines.append(Annotation("warning", f"Robustness drop not called a regression: {measure_name(c)}", message))
    return lines


def publish_to_github(markdown: str, annotations: list[Annotation]) -> None:
    """On GitHub Actions: append ``markdown`` to the job summary (when ``$GITHUB_STEP_SUMMARY`` is set) and
    print the annotations (when ``GITHUB_ACTIONS=true``). Elsewhere nothing happens."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            with open(summary, "a", encoding="utf-8") as file:
                file.write(markdown + "\n")
        except OSError as error:
            print(f"warning: cannot append to $GITHUB_STEP_SUMMARY ({summary}): {error.strerror}", file=sys.stderr)
    if os.environ.get("GITHUB_ACTIONS") == "true":
        for line in annotations:
            print(line.command(), flush=True)
