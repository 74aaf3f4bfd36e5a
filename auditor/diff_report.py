"""The Markdown and files of ``auditor diff``'s report (a ``RobustnessDiff``): each measure's verdict under the
gate, its paired comparison, and the examples whose outcome changed."""

from __future__ import annotations

from pathlib import Path

from auditor.report import joined_text, markdown_text, percent, write_files
from auditor.schemas import ExampleChange, PairedComparison, RobustnessDiff


def points(change: float) -> str:
    """A change of accuracy in percentage points, signed: ``-5.0 points``."""
    return f"{100 * change:+.1f} points".replace("+0.0 ", "0.0 ").replace("-0.0 ", "0.0 ")


def verdict(comparison: PairedComparison, report: RobustnessDiff) -> str:
    """How the gate reads one measure: a regression, a drop within chance or within ``max_drop``, or none."""
    if comparison.regression:
        return f"**REGRESSION** (p < {report.alpha:g})"
    if comparison.change >= 0:
        return "no drop"
    if -comparison.change <= report.max_drop + 1e-9:
        return f"drop within --max-drop {100 * report.max_drop:g} points"
    return f"drop not significant (p ≥ {report.alpha:g})"


def holm(comparison: PairedComparison, report: RobustnessDiff) -> str:
    return f" (Holm {comparison.adjusted_p_value:.3g})" if report.correction == "holm" else ""


def comparison_summary(comparison: PairedComparison, report: RobustnessDiff) -> str:
    """One measure's change in a sentence, as the gate's JUnit case and annotations state it."""
    c = comparison
    return (
        f"{measure_name(c)} {percent(c.base_accuracy)} → {percent(c.new_accuracy)} ({points(c.change)}) on "
        f"{c.examples} examples of {report.data.title}: {c.newly_broken} newly broken, {c.newly_held} newly held, "
        f"exact McNemar p = {c.p_value:.3g}{holm(c, report)}"
    )


def measure_name(comparison: PairedComparison) -> str:
    if comparison.measure.startswith("invariance:"):
        return f"predictions kept under {comparison.measure.removeprefix('invariance:')}"
    return "clean accuracy" if comparison.measure == "clean" else f"accuracy under {comparison.measure}"


STATUS_WORDS = {
    "succeeded": "broken by the attack",
    "failed": "held",
    "skipped": "wrong on the clean text",
    "flipped": "prediction flipped by the perturbation",
    "kept": "prediction kept",
}


def _change_line(change: ExampleChange, labels: list[str], clean: bool) -> str:
    original = joined_text(change.text, change.text_pair)
    if clean:
        return f"- `{change.example_id}` [{change.index}] {markdown_text(original)}: {labels[change.base_predicted]} → {labels[change.new_predicted]} (gold {labels[change.label]})"

    def side(status: str, text: str, pair: str | None, predicted: int) -> str:
        shown = "" if status == "skipped" else f": {markdown_text(joined_text(text, pair))}"
        return f"{STATUS_WORDS[status]} ({labels[predicted]}{shown})"

    base = side(change.base_status, change.base_perturbed_text, change.base_perturbed_text_pair, change.base_predicted)
    new = side(change.new_status, change.new_perturbed_text, change.new_perturbed_text_pair, change.new_predicted)
    return f"- `{change.example_id}` [{change.index}] {markdown_text(original)} (gold {labels[change.label]}): base {base}, new {new}"


def render_diff_markdown(report: RobustnessDiff, max_examples: int = 25) -> str:
    """The gate's summary: each measure with its change, discordant examples, McNemar p and verdict; the
    per-class changes; and the examples that newly break and newly hold (at most ``max_examples`` each)."""
    labels = report.new.victim.labels
    settings = report.settings
    lines = [
        f"# Robustness diff: {report.base.victim.title()} → {report.new.victim.title()}",
        "",
        f"Base: `{report.base.path}` (auditor {report.base.auditor_version}); new: `{report.new.path}` (auditor {report.new.auditor_version}).",
        "",
        f"{report.data.count} examples of {report.data.title}, the same settings (query budget {settings.budget}, at most "
        f"{settings.max_words} words edited) and validity checks in both audits; accuracy under attack counts valid successes only. "
        f"Gate: a drop of more than {100 * report.max_drop:g} points with exact McNemar p < {report.alpha:g} is a regression"
        + (" (p adjusted by Holm's step-down over the measures below)." if report.correction == "holm" else "."),
        *(f"Note: {note}." for note in report.notes),
        "",
        "| measure | base | new | change | newly broken | newly held | McNemar p | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in report.comparisons:
        lines.append(
            f"| {measure_name(c)} | {percent(c.base_accuracy)} | {percent(c.new_accuracy)} | {points(c.change)} | "
            f"{c.newly_broken} | {c.newly_held} | {c.p_value:.3g}{holm(c, report)} | {verdict(c, report)} |"
        )
    every_example = [c for c in report.comparisons if not c.measure.startswith("invariance:")]  # the checks' classes are in diff.json
    lines += ["", "| class | examples | " + " | ".join(measure_name(c) for c in every_example) + " |"]
    lines.append("|---|---|" + "---|" * len(every_example))
    for row, first in enumerate(every_example[0].per_class):
        cells = [c.per_class[row] for c in every_example]
        lines.append(
            f"| {first.name} | {first.examples} | "
            + " | ".join(f"{percent(x.base_accuracy)} → {percent(x.new_accuracy)} ({points(x.change)})" for x in cells)
            + " |"
        )
    for c in report.comparisons:
        for title, changes in (("newly broken", c.broken), ("newly held", c.held)):
            if changes:
                lines += ["", f"{measure_name(c).capitalize()}, {title} ({len(changes)}):"]
                lines += [_change_line(change, labels, c.measure == "clean") for change in changes[:max_examples]]
                if len(changes) > max_examples:
                    lines.append(f"- … and {len(changes) - max_examples} more (diff.json lists them all)")
    regressions = [measure_name(c) for c in report.comparisons if c.regression]
    lines += ["", f"**Regression: {', '.join(regressions)}.**" if regressions else "No regression."]
    return "\n".join(lines) + "\n"


def write_diff(report: RobustnessDiff, out_dir: Path) -> list[Path]:
    """Write diff.json and diff.md into ``out_dir``."""
    return write_files(out_dir, {"diff.json": report.model_dump_json(indent=2), "diff.md": render_diff_markdown(report)})
