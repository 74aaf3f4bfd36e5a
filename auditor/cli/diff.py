"""``auditor diff BASE NEW``: the robustness regression gate between two audits of the same examples."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from auditor.cli.app import app, close_gate
from auditor.cli.options import Alpha, Correction, JUnit, MaxDrop, output_folder


@app.command()
def diff(
    base: Annotated[Path, typer.Argument(metavar="BASE", help="The baseline audit (e.g. the release in production): report.json or its folder.")],
    new: Annotated[Path, typer.Argument(metavar="NEW", help="The candidate's audit of the same examples with the same settings.")],
    max_drop: MaxDrop = 0.0,
    alpha: Alpha = 0.05,
    correction: Correction = "none",
    output_format: Annotated[Literal["markdown", "json"], typer.Option("--format", help="What to print: the Markdown summary or the diff as JSON.")] = "markdown",
    out: Annotated[Path | None, typer.Option("--out", callback=output_folder, help="Folder to write diff.json and diff.md into.")] = None,
    junit: JUnit = None,
) -> None:
    """Compare two audits example by example: clean accuracy, accuracy under each attack (valid successes
    only) and the predictions each invariance check kept, per class, with the examples that newly break and
    newly hold, each change tested with the exact McNemar test. Exit 1 when a measure fell by more than --max-drop with p < --alpha, 0 otherwise, 2 on bad
    input (a missing file, reports of other examples or settings)."""
    from auditor.ci import diff_annotations, diff_suites, write_junit
    from auditor.diff import diff_reports, load_report
    from auditor.diff_report import render_diff_markdown, write_diff

    report = diff_reports(load_report(base, "base"), load_report(new, "new"), max_drop, alpha, str(base), str(new), correction)
    markdown = render_diff_markdown(report)
    if out is not None:
        write_diff(report, out)
    if junit is not None:
        write_junit(junit, f"auditor diff {base} {new}", diff_suites(report))
    print(report.model_dump_json(indent=2) if output_format == "json" else markdown, end="\n" if output_format == "json" else "")
    raise typer.Exit(close_gate(markdown, diff_annotations(report)))

