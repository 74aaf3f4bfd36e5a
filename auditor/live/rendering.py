"""The live report as files: ``live-report.json`` (``LiveReport``), a Markdown summary and a self-contained
HTML page with the plot over time (inline PNG), each written atomically (``auditor.report.write_files``)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from matplotlib.figure import Figure

from auditor.render import TEMPLATES, png_data_uri
from auditor.report import interval, percent, write_files
from auditor.schemas.live import LiveReport

def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def how_to_read(report: LiveReport) -> str:
    """One sentence that says what the decision means and what its exit status is."""
    d = report.decision
    bound = f"the {100 * (1 - d.alpha):g} % confidence sequence on the disagreement rate is [{percent(d.low)}, {percent(d.high)}]"
    if d.decision == "promote":
        meaning = f"its upper bound is below the tolerance {percent(d.tolerance)}: the models agree well enough to swap them"
    elif d.decision == "roll back":
        meaning = f"its lower bound is above the tolerance {percent(d.tolerance)}: the models disagree more than allowed"
    else:
        meaning = f"it still holds the tolerance {percent(d.tolerance)}: collect more records"
    return f"**Decision: {d.decision}** (exit {d.exit_code}) after {d.records} records ({d.disagreements} disagreements): {bound}; {meaning}."


def render_markdown(report: LiveReport) -> str:
    lines = [
        "# Live comparison: primary vs shadow",
        "",
        f"Primary `{report.primary_model.label()}`, shadow `{report.shadow_model.label()}`; {report.records} records "
        f"from {utc(report.first_ts)} to {utc(report.last_ts)} in {len(report.databases)} database(s).",
        "",
        how_to_read(report),
        "",
        f"- Agreement: {interval(report.agreement)} (Wilson)",
        f"- Near ties (two probabilities within 1e-5): {report.near_ties}",
        f"- |Δp| of the primary's class: mean {report.confidence_shift.mean:.4f} "
        f"[{report.confidence_shift.mean_low:.4f}, {report.confidence_shift.mean_high:.4f}], median {report.confidence_shift.median:.4f}, "
        f"p99 {report.confidence_shift.p99:.4f}, max {report.confidence_shift.max:.4f}",
    ]
    if report.drops is not None:
        dropped = ", ".join(f"{d.cause} {d.count}" for d in report.drops) or "none"
        lines.append(f"- Comparisons not made: {dropped}")
    lines += ["", "## Label transitions (rows: primary, columns: shadow)", "", "| primary \\ shadow | " + " | ".join(report.labels) + " | flip rate |",
              "|---|" + "---|" * (len(report.labels) + 1)]  # fmt: skip
    counts = {(t.primary_label, t.shadow_label): t.count for t in report.transitions}
    for row, flips in zip(report.labels, report.per_class):
        lines.append(f"| {row} | " + " | ".join(str(counts[row, column]) for column in report.labels) + f" | {interval(flips.flips)} |")
    if report.labelled is not None:
        l = report.labelled  # noqa: E741
        lines += [
            "", f"## With labels ({l.labelled} labelled records; candidate: {l.candidate})", "",
            f"- Accuracy: primary {interval(l.primary_accuracy)}, shadow {interval(l.shadow_accuracy)}",
            f"- Negative flips ({l.incumbent} right, {l.candidate} wrong): {interval(l.negative_flips)}; "
            f"positive flips: {interval(l.positive_flips)}; exact McNemar p = {l.mcnemar_p:.4g}",
        ]  # fmt: skip
        if l.unmatched_labels:
            lines.append(f"- {l.unmatched_labels} labels match no record")
    lines += ["", f"## Agreement per {'hour' if report.window_kind == 'hour' else 'window of records'}", "", "| from | records | agreement |", "|---|---|---|"]
    lines += [f"| {utc(w.start_ts)} | {w.agreement.total} | {interval(w.agreement)} |" for w in report.windows]
    if report.explanations:
        lines += ["", "## Why they disagree", ""]
        for e in report.explanations:
            lines.append(f"- “{e.text}”{f' / “{e.text_pair}”' if e.text_pair else ''}: primary {e.primary_label}, shadow {e.shadow_label}, "
                         f"|Δp| {e.abs_delta_p:.3f}; p({e.target_label}) full {e.full_probability:.3f}, pruned {e.pruned_probability:.3f}")  # fmt: skip
            lines.append("  - pairs changed most: " + "; ".join(f"L{c.layer} {c.query_token}→{c.key_token} {c.full:+.3f}→{c.pruned:+.3f}" for c in e.pair_changes[:3]))
            if e.pruned_heads:
                lines.append("  - pruned heads that carried attribution: " + ", ".join(f"L{h.layer} h{h.head} {h.attribution:+.3f}" for h in e.pruned_heads[:3]))
    elif report.texts_stored:
        lines += ["", f"{report.texts_stored} disagreements have stored text: give --primary-model and --shadow-model to explain them."]
    return "\n".join(lines) + "\n"


def time_plot(report: LiveReport) -> str:
    """Two panels: the confidence sequence on the disagreement rate against records, with the tolerance; and the
    agreement per window with its Wilson interval."""
    figure = Figure(figsize=(7.5, 6.2), layout="constrained")
    upper, lower = figure.subplots(2, 1)
    path = report.decision.path
    records = [p.records for p in path]
    upper.fill_between(records, [100 * p.low for p in path], [100 * p.high for p in path], alpha=0.3, label=f"{100 * (1 - report.decision.alpha):g} % confidence sequence")
    upper.plot(records, [100 * p.disagreement_rate for p in path], label="disagreement rate")
    upper.axhline(100 * report.decision.tolerance, color="crimson", linestyle="--", label="tolerance")
    upper.set_xlabel("records")
    upper.set_ylabel("disagreement (%)")
    upper.set_ylim(0, min(100, max(4 * 100 * report.decision.tolerance, 100 * max(p.disagreement_rate for p in path) * 1.5)))
    upper.legend(fontsize="small")
    upper.grid(alpha=0.3)
    hours = report.window_kind == "hour"
    x = [(w.start_ts - report.first_ts) / 3600 if hours else w.first_record for w in report.windows]
    values = [100 * (w.agreement.rate or 0) for w in report.windows]
    errors = [[v - 100 * w.agreement.low for v, w in zip(values, report.windows)], [100 * w.agreement.high - v for v, w in zip(values, report.windows)]]
    lower.errorbar(x, values, yerr=errors, fmt="o-", capsize=3)
    lower.set_xlabel("hours since the first record" if hours else "first record of the window")
    lower.set_ylabel("agreement (%)")
    lower.grid(alpha=0.3)
    return png_data_uri(figure)


def render_html(report: LiveReport) -> str:
    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    return environment.get_template("live.html.j2").render(
        report=report,
        counts={(t.primary_label, t.shadow_label): t.count for t in report.transitions},
        plot=time_plot(report),
        decision=how_to_read(report).replace("**", ""),
        percent=percent,
        interval=interval,
        utc=utc,
    )


def write_live_report(report: LiveReport, out_dir: Path) -> list[Path]:
    """Write live-report.json, live-report.md and live-report.html into ``out_dir``."""
    contents = {
        "live-report.json": report.model_dump_json(indent=2),
        "live-report.md": render_markdown(report),
        "live-report.html": render_html(report),
    }
    return write_files(out_dir, contents)
