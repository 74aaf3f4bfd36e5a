"""Audits in the formats CI systems read: JUnit XML (``--junit``) and, on GitHub Actions, the job summary
(Markdown appended to ``$GITHUB_STEP_SUMMARY``) and workflow annotations (``::error``/``::warning`` lines on
stdout when ``GITHUB_ACTIONS=true``).

In the JUnit file the gate's checks are the test cases, so a CI test tab reads as the job's exit status does:
per attack one case, ``accuracy under ATTACK >= X (--fail-under)`` (failed when the audit fails that check;
without ``--fail-under`` it only informs and passes), per invariance check one case named after it (failed when
its flip rate exceeds ``--max-flip-rate``), and for a diff one case per measure, ``no regression in
MEASURE`` (failed on a regression). What happened to each example (broken by the attack, held, wrong on the
clean text; newly broken, newly held) is the case's ``system-out``, and the rates with their Wilson intervals
are the suite's properties: information, never a failure of its own."""

from __future__ import annotations

import os
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from auditor.diff_report import comparison_summary, measure_name, verdict
from auditor.report import edit_text, flip_summary, flip_text, interval, joined_text, percent, write_atomic
from auditor.schemas import AttackSummary, ComparisonReport, PairedComparison, Rate, RobustnessDiff, RobustnessReport, VictimIdentity
from auditor.statistics import wilson

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""Characters XML 1.0 cannot hold (control characters, lone surrogates): written as U+FFFD."""


def _xml(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


@dataclass(frozen=True)
class TestCase:
    """One JUnit ``<testcase>``: passed, or failed (``failure`` = (message, details)); ``output``: its ``<system-out>``."""

    classname: str
    name: str
    seconds: float = 0.0
    failure: tuple[str, str] | None = None
    output: str | None = None


@dataclass(frozen=True)
class TestSuite:
    name: str
    cases: list[TestCase]
    properties: dict[str, str]


def plain(value: object) -> str | None:
    """A property value as a person writes it: a list or tuple joined with ``, ``, a dict as ``key: value``
    pairs, booleans ``true``/``false``, floats in ``%g``; None when there is no value (the property is left out)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ", ".join(p for p in map(plain, value) if p is not None)
    if isinstance(value, dict):
        return ", ".join(f"{key}: {plain(item)}" for key, item in value.items())
    return str(value)


def properties_of(values: dict[str, object]) -> dict[str, str]:
    """``values`` as plain property strings (``plain``), those without a value left out."""
    return {key: text for key, value in values.items() if (text := plain(value)) is not None}


def rate_properties(name: str, rate: Rate) -> dict[str, str]:
    """A rate as properties: ``name`` (the fraction, 6 decimals, as before intervals existed), ``name.low``,
    ``name.high`` (its Wilson interval at ``name.level``), ``name.count`` and ``name.total``; only the interval
    when the rate is of nothing (total 0)."""
    values = {} if rate.rate is None else {name: f"{rate.rate:.6f}"}
    return values | {
        f"{name}.low": f"{rate.low:.6f}", f"{name}.high": f"{rate.high:.6f}", f"{name}.level": f"{rate.level:g}",
        f"{name}.count": str(rate.count), f"{name}.total": str(rate.total),
    }  # fmt: skip


def victim_properties(victim: VictimIdentity, prefix: str = "model") -> dict[str, str]:
    """The model's identity as JUnit properties: location, kind, and for a local model its name and weights."""
    values: dict[str, object] = {f"{prefix}.location": victim.location, f"{prefix}.kind": victim.kind, f"{prefix}.labels": victim.labels}
    if victim.model is not None:
        values |= {f"{prefix}.name": victim.model.name, f"{prefix}.weights_sha256": victim.model.weights_sha256}
        values[f"{prefix}.pruned_heads"] = sum(len(heads) for heads in victim.model.pruned_heads.values())
    if victim.served is not None:
        values |= {f"{prefix}.name": victim.served.name, f"{prefix}.version": victim.served.version, f"{prefix}.weights_sha256": victim.served.weights_sha256}
    return properties_of(values)


def report_properties(report: RobustnessReport) -> dict[str, str]:
    settings = {f"settings.{name}": value for name, value in report.settings.model_dump().items()}
    return properties_of({
        "auditor.version": report.auditor_version, "data": report.data.title, "data.digest": report.data.digest, **settings,
    }) | victim_properties(report.victim)  # fmt: skip


def attack_properties(attack: AttackSummary) -> dict[str, str]:
    """The attack's rates with their intervals, overall and per class (``class.NAME.clean_accuracy``…)."""
    values = {}
    for prefix, rates in [("", attack), *((f"class.{c.name}.", c) for c in attack.per_class)]:
        for name in ("clean_accuracy", "accuracy_under_attack", "success_rate"):
            values |= rate_properties(prefix + name, getattr(rates, f"{name}_interval"))
    return values


def fail_under_message(attack: AttackSummary, fail_under: float) -> str:
    """Why an attack fails ``--fail-under``, as the log, the annotation and the JUnit failure say it."""
    return (
        f"accuracy under the {attack.name} attack (valid successes only) is {interval(attack.accuracy_under_attack_interval)}, "
        f"below --fail-under {percent(fail_under)}"
    )


def outcome_lines(attack: AttackSummary, labels: list[str]) -> str:
    """One line per example: held, broken by the attack (original → perturbed, the edits) or wrong on the clean text."""
    lines = []
    for o in attack.outcomes:
        original = joined_text(o.text, o.text_pair)
        head = f"[{o.index}] {o.example_id} (gold {labels[o.label]})"
        if o.status == "succeeded":
            perturbed = joined_text(o.perturbed_text, o.perturbed_text_pair)
            edits = "; ".join(map(edit_text, o.edits))
            lines.append(f"{head} broken, → {labels[o.perturbed_prediction]} in {o.queries} queries: {original!r} → {perturbed!r} ({edits})")
        elif o.status == "skipped":
            lines.append(f"{head} wrong on the clean text (predicts {labels[o.original_prediction]}): {original!r}")
        else:
            lines.append(f"{head} held after {o.queries} queries: {original!r}")
    return "\n".join(lines)


def attack_suite(attack: AttackSummary, labels: list[str], properties: dict[str, str], prefix: str = "", fail_under: float | None = None) -> TestSuite:
    """One case, the gate's check on this attack: ``accuracy under ATTACK >= X (--fail-under)``, failed when
    the accuracy under attack is below ``fail_under``; with no ``fail_under`` the case ``accuracy under ATTACK``
    informs and passes. Its output lists every example's outcome (``outcome_lines``); the properties hold
    the rates and their intervals."""
    seconds = sum(o.seconds for o in attack.outcomes)
    accuracy = interval(attack.accuracy_under_attack_interval)
    summary = f"accuracy under {attack.name} {accuracy} on {attack.examples} examples (valid successes only)"
    if fail_under is None:
        name, failure = f"accuracy under {attack.name}", None
    else:
        name = f"accuracy under {attack.name} >= {percent(fail_under)} (--fail-under)"
        failed = attack.accuracy_under_attack < fail_under
        failure = (fail_under_message(attack, fail_under), outcome_lines(attack, labels)) if failed else None
    case = TestCase(f"auditor.{prefix}{attack.name}", name, seconds, failure, output=f"{summary}\n{outcome_lines(attack, labels)}")
    return TestSuite(f"{prefix}{attack.name}", [case], properties | attack_properties(attack))


def flip_rate_failures(report: RobustnessReport, limits: dict[str, float]) -> dict[str, str]:
    """Check name -> why it fails the gate, for every invariance check whose flip rate exceeds its limit (a
    check with too few examples for a rate is not gated)."""
    return {
        c.name: f"{flip_summary(c)}, above --max-flip-rate {percent(limits[c.name])}"
        for c in report.invariance
        if c.name in limits and c.flip_rate is not None and c.flip_rate.rate is not None and c.flip_rate.rate > limits[c.name]
    }


def invariance_suite(report: RobustnessReport, limits: dict[str, float]) -> TestSuite:
    """One case per invariance check, named after it: failed when its flip rate exceeds its ``limits`` entry
    (the failure's message names the limit); a check that applied to too few examples for a rate passes and says so. Its
    output lists the check's example flips; the properties hold each flip rate with its interval."""
    failures = flip_rate_failures(report, limits)
    cases = []
    properties = report_properties(report) | properties_of({f"max_flip_rate.{name}": limit for name, limit in limits.items()})
    for check in report.invariance:
        flips = "\n".join(flip_text(o, report.victim.labels) for o in check.flip_examples)
        failure = (failures[check.name], flips) if check.name in failures else None
        cases.append(TestCase("auditor.invariance", check.name, check.seconds, failure, output="\n".join(filter(None, [flip_summary(check), flips]))))
        properties |= properties_of({f"{check.name}.applied": check.applied, f"{check.name}.flips": check.flips})
        if check.flip_rate is not None:
            properties |= rate_properties(f"{check.name}.flip_rate", check.flip_rate)
    return TestSuite("invariance", cases, properties)


def change_lines(comparison: PairedComparison, report: RobustnessDiff) -> str:
    """The examples whose outcome changed, one line each: newly broken, then newly held."""
    labels = report.new.victim.labels
    lines = []
    for title, changes in (("newly broken", comparison.broken), ("newly held", comparison.held)):
        for change in changes:
            original = joined_text(change.text, change.text_pair)
            new = joined_text(change.new_perturbed_text, change.new_perturbed_text_pair)
            lines.append(
                f"{title}: [{change.index}] {change.example_id} (gold {labels[change.label]}), "
                f"{labels[change.base_predicted]} → {labels[change.new_predicted]}: {original!r} → {new!r}"
            )
    return "\n".join(lines)


def comparison_suite(comparison: PairedComparison, report: RobustnessDiff) -> TestSuite:
    """The gate on one measure: the case ``no regression in MEASURE``, failed when it regressed; its output
    lists the newly broken and newly held examples."""
    gate_message = f"{comparison_summary(comparison, report)}: {verdict(comparison, report)}"
    changes = change_lines(comparison, report)
    failure = (gate_message, changes) if comparison.regression else None
    name = f"no regression in {measure_name(comparison)}"
    case = TestCase(f"auditor.diff.{comparison.measure}", name, failure=failure, output="\n".join(filter(None, [gate_message, changes])))
    base, new = (wilson(round(accuracy * comparison.examples), comparison.examples) for accuracy in (comparison.base_accuracy, comparison.new_accuracy))
    properties = properties_of({
        "auditor.version": report.auditor_version, "data": report.data.title, "data.digest": report.data.digest,
        "max_drop": report.max_drop, "alpha": report.alpha, "p_value": comparison.p_value,
        "adjusted_p_value": comparison.adjusted_p_value, "correction": report.correction,
        "newly_broken": comparison.newly_broken, "newly_held": comparison.newly_held,
    })  # fmt: skip
    properties |= victim_properties(report.base.victim, "base") | victim_properties(report.new.victim, "new")
    properties |= rate_properties("base_accuracy", base) | rate_properties("new_accuracy", new)
    return TestSuite(f"diff.{comparison.measure}", [case], properties)


def audit_suites(report: RobustnessReport, fail_under: float | None = None) -> list[TestSuite]:
    """The audit's suites, one per attack (``attack_suite``), checked against ``fail_under`` when given."""
    properties = report_properties(report)
    return [attack_suite(a, report.victim.labels, properties, fail_under=fail_under) for a in [report.attack, *report.baselines]]


def diff_suites(report: RobustnessDiff) -> list[TestSuite]:
    return [comparison_suite(c, report) for c in report.comparisons]


def comparison_report_suites(report: ComparisonReport) -> list[TestSuite]:
    """``auditor compare`` (no gate, so every case passes): the attacks of each model, suites named
    ``full.<attack>`` and ``pruned.<attack>``."""
    suites = []
    for side, model in (("full", report.full), ("pruned", report.pruned)):
        properties = {"auditor.version": report.auditor_version, **victim_properties(model.victim), "data": report.data.title}
        suites += [attack_suite(a, model.victim.labels, properties, f"{side}.") for a in [model.attack, *model.baselines]]
    return suites


def junit_xml(name: str, suites: Iterable[TestSuite]) -> str:
    """A JUnit XML document (the ``testsuites``/``testsuite``/``testcase`` schema Jenkins, GitLab, GitHub
    test reporters and Azure read) with the counts on every level."""
    root = ET.Element("testsuites", name=name)
    totals = {"tests": 0, "failures": 0, "time": 0.0}
    for suite in suites:
        failures = sum(c.failure is not None for c in suite.cases)
        seconds = sum(c.seconds for c in suite.cases)
        element = ET.SubElement(
            root, "testsuite", name=_xml(suite.name), tests=str(len(suite.cases)), failures=str(failures), errors="0",
            skipped="0", time=f"{seconds:.3f}",
        )  # fmt: skip
        properties = ET.SubElement(element, "properties")
        for key, value in suite.properties.items():
            ET.SubElement(properties, "property", name=_xml(key), value=_xml(value))
        for case in suite.cases:
            node = ET.SubElement(element, "testcase", classname=_xml(case.classname), name=_xml(case.name), time=f"{case.seconds:.3f}")
            if case.failure is not None:
                message, details = case.failure
                ET.SubElement(node, "failure", message=_xml(message), type="RobustnessFailure").text = _xml(details)
            if case.output:
                ET.SubElement(node, "system-out").text = _xml(case.output)
        totals = {
            "tests": totals["tests"] + len(suite.cases),
            "failures": totals["failures"] + failures,
            "time": totals["time"] + seconds,
        }
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failures"]))
    root.set("errors", "0")
    root.set("skipped", "0")
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
