"""``auditor live-report DB [DB ...]``: the report of a primary and its shadow on live traffic, and the decision."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from auditor.cli.app import app, output
from auditor.cli.options import Steps, _significance_level, output_folder


def _tolerance(value: float) -> float:
    if not 0 < value < 1:
        raise typer.BadParameter(f"a disagreement rate between 0 and 1 (exclusive), e.g. 0.02; got {value:g}")
    return value


@app.command("live-report")
def live_report(
    databases: Annotated[list[Path], typer.Argument(metavar="DB...", help="Comparisons databases (one per server behind a load balancer).")],
    out: Annotated[Path, typer.Option("--out", callback=output_folder, help="Folder to write live-report.json, .md and .html into.")],
    tolerance: Annotated[float, typer.Option("--tolerance", callback=_tolerance, help="Largest disagreement rate that allows promotion, e.g. 0.02.")],
    alpha: Annotated[float, typer.Option("--alpha", callback=_significance_level, help="Error level of the decision (time-uniform) and of the intervals.")] = 0.05,
    labels: Annotated[Path | None, typer.Option("--labels", help="CSV 'input_sha256,label' of labels that arrived later.")] = None,
    candidate: Annotated[Literal["shadow", "primary"], typer.Option("--candidate", help="The model that would replace the other (for negative flips).")] = "shadow",
    primary_model: Annotated[Path | None, typer.Option("--primary-model", help="The primary's saved model folder (to explain disagreements).")] = None,
    shadow_model: Annotated[Path | None, typer.Option("--shadow-model", help="The shadow's saved model folder (to explain disagreements).")] = None,
    top: Annotated[int, typer.Option("--top", min=0, help="Disagreements with stored text to explain, largest |Δp| first.")] = 5,
    steps: Steps = 3,
) -> None:
    """Agreement, label transitions, the shift in confidence and agreement over time for the comparisons in DB...;
    with --labels, accuracy, negative flips and the exact McNemar test; with both model folders, the top
    disagreements explained by both models. The decision against --tolerance, valid however often it is
    checked, is the exit status: 0 promote, 1 roll back, 3 keep collecting (2: bad input)."""
    from auditor.live.disagreements import check_model_folder, explain_disagreements
    from auditor.live.labels import read_labels
    from auditor.live.records import read_drops, read_records
    from auditor.live.rendering import render_markdown, write_live_report
    from auditor.live.summary import in_time_order, summarise

    if (primary_model is None) != (shadow_model is None):
        raise typer.BadParameter("give both --primary-model and --shadow-model, or neither")
    records = in_time_order(list(read_records(databases)))
    drops = read_drops(databases)
    known = None if labels is None else read_labels(labels)
    report = summarise(records, [str(d) for d in databases], tolerance, alpha, known, str(labels or ""), candidate, drops)
    if primary_model is not None and shadow_model is not None:
        check_model_folder(report.primary_model, primary_model, "primary")
        check_model_folder(report.shadow_model, shadow_model, "shadow")
        if report.texts_stored and top:
            from auditor.models import load_classifier

            primary, shadow = load_classifier(primary_model, device="cpu"), load_classifier(shadow_model, device="cpu")
            report.explanations = explain_disagreements(records, primary, shadow, top=top, steps=steps)
    write_live_report(report, out)
    output.print(render_markdown(report), end="", markup=False)
    raise typer.Exit(report.decision.exit_code)
