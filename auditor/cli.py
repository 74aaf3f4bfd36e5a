"""The ``auditor`` command line. Each command parses options, calls the library, and writes files."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from auditor.data import load_dataset
from auditor.errors import AuditorError, InputError

app = typer.Typer(
    name="auditor",
    help="Audit Transformer text classifiers with self-attention attribution.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)


def main() -> None:
    """Entry point: user errors print one line and exit with status 2, never a traceback."""
    try:
        exit_code = app(standalone_mode=False)  # without standalone mode click returns typer.Exit's code
        if isinstance(exit_code, int) and exit_code:
            sys.exit(exit_code)
    except AuditorError as error:
        console.print(f"[bold red]error:[/] {error}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as error:  # click's usage errors
        import click

        if isinstance(error, click.ClickException):
            error.show()
            sys.exit(error.exit_code)
        raise


# --- robustness audits: auditor mine / audit / compare ------------------------------------------------------


@app.command()
def mine(
    model: str = typer.Option(..., "--model", help="model directory to mine attribution patterns from"),
    data: str = typer.Option(..., "--data", help="task name (sst2, rte…; train split by default, 'sst2:dev' for another) or TSV path"),
    out: Path = typer.Option(..., "--out", help="patterns JSON file to write"),
    examples: int = typer.Option(500, "--examples", min=1, help="examples to mine from (the first N)"),
    threshold: float = typer.Option(0.01, "--threshold", help="drop patterns whose attribution mass is under this"),
    pairs: int = typer.Option(2, "--pairs", min=1, help="top token pairs per example"),
    steps: int = typer.Option(3, "--steps", min=1, help="quadrature nodes of the attribution integral"),
) -> None:
    """Mine attribution patterns (adversarial triggers) from a model, once, for later audits."""
    from auditor.models import load_classifier
    from auditor.report import write_atomic
    from auditor.triggers import mine_triggers

    classifier = load_classifier(model)
    dataset = load_dataset(data, split="train")
    triggers = mine_triggers(classifier, dataset, examples=examples, threshold=threshold, pairs_per_example=pairs, steps=steps)
    write_atomic(out, triggers.model_dump_json(indent=1))
    console.print(f"{len(triggers.patterns)} patterns from {triggers.data.count} examples in {triggers.seconds:.1f} s -> {out}")


def _patterns_for(patterns: Path | None, model: str | None, data: str, mine_examples: int, out: Path):
    """The patterns file given, or patterns mined from the local model on the task's train split."""
    from auditor.triggers import load_triggers, mine_triggers

    if patterns is not None:
        return load_triggers(patterns)
    if model is None or model.startswith(("http://", "https://")):
        raise InputError("an endpoint cannot be mined: pass --patterns (written by 'auditor mine' on the local model)")
    if Path(data).exists():
        raise InputError("--data is a file, so the training data to mine is unknown: pass --patterns from 'auditor mine'")
    from auditor.models import load_classifier
    from auditor.report import write_atomic

    triggers = mine_triggers(load_classifier(model), load_dataset(data.split(":")[0], split="train"), examples=mine_examples)
    write_atomic(out / "patterns.json", triggers.model_dump_json(indent=1))
    return triggers


@app.command()
def audit(
    out: Path = typer.Option(..., "--out", help="folder for report.json/.md/.html and the checkpoint"),
    data: str = typer.Option(..., "--data", help="task name (dev split) or TSV path"),
    model: str | None = typer.Option(None, "--model", help="local model directory (or .onnx file beside its tokenizer)"),
    endpoint: str | None = typer.Option(None, "--endpoint", help="deployed model: http://HOST:PORT/predictions/NAME"),
    token: str | None = typer.Option(None, "--token", envvar="AUDITOR_TOKEN", help="inference key for the endpoint"),
    patterns: Path | None = typer.Option(None, "--patterns", help="patterns from 'auditor mine' (default: mine the local model)"),
    examples: int = typer.Option(200, "--examples", min=1, help="dev examples to attack (the first N)"),
    budget: int = typer.Option(100, "--budget", min=1, help="model queries per attacked example"),
    max_words: int = typer.Option(3, "--max-words", min=1, help="most words an insertion attack may insert"),
    top_k: int = typer.Option(5, "--top-k", min=1, help="patterns per class the attack tries"),
    positions: str = typer.Option("pattern", "--positions", help="'pattern' (where mined) or 'all' positions"),
    baselines: str = typer.Option("random,deepwordbug", "--baselines", help="comma list of random, deepwordbug; 'none' for none"),
    trigger_top_k: int = typer.Option(3, "--trigger-top-k", min=0, help="patterns per class in the universal-trigger table"),
    trigger_examples: int | None = typer.Option(None, "--trigger-examples", min=1, help="dev examples for the trigger table (default all)"),
    mine_examples: int = typer.Option(500, "--mine-examples", min=1, help="training examples to mine when no --patterns"),
    seed: int = typer.Option(0, "--seed"),
    fail_under: float | None = typer.Option(None, "--fail-under", help="exit 1 when accuracy under attack is below this fraction"),
) -> None:
    """Attack a model with attribution triggers and baselines; write JSON, Markdown and HTML reports."""
    if (model is None) == (endpoint is None):
        raise InputError("give exactly one of --model and --endpoint")
    if fail_under is not None and not 0 <= fail_under <= 1:
        raise InputError(f"--fail-under is a fraction between 0 and 1 (e.g. 0.6), got {fail_under}")
    if positions not in ("pattern", "all"):
        raise InputError(f"--positions must be 'pattern' or 'all', got {positions!r}")
    chosen = [] if baselines.strip() == "none" else [b.strip() for b in baselines.split(",") if b.strip()]
    unknown = sorted(set(chosen) - {"random", "deepwordbug"})
    if unknown:
        raise InputError(f"unknown baseline {unknown[0]!r}: choose from random, deepwordbug, or none")
    dataset = load_dataset(data, split="dev")
    from auditor.audit import checkpoint_identity, run_audit
    from auditor.checkpoint import Checkpoint
    from auditor.report import render_markdown, write_report
    from auditor.schemas import AuditSettings
    from auditor.victims import open_victim

    triggers = _patterns_for(patterns, model, data, mine_examples, out)
    victim = open_victim(model or endpoint, token=token)
    settings = AuditSettings(
        examples=min(examples, len(dataset)),
        budget=budget,
        max_words=max_words,
        top_k=top_k,
        positions=positions,
        baselines=chosen,
        trigger_top_k=trigger_top_k,
        trigger_examples=trigger_examples,
        seed=seed,
    )
    checkpoint = Checkpoint(out / "checkpoint.jsonl", checkpoint_identity(victim, dataset, triggers, settings, dataset))

    def progress(name: str, done: int, total: int) -> None:
        if done == total or done % max(1, total // 10) == 0:
            console.print(f"{name}: {done}/{total}", highlight=False)

    report = run_audit(victim, dataset, triggers, settings, checkpoint, dataset, progress)
    write_report(report, out)
    print(render_markdown(report))
    worst = min([report.attack, *report.baselines], key=lambda a: a.accuracy_under_attack)
    if fail_under is not None and worst.accuracy_under_attack < fail_under:
        console.print(
            f"[bold red]fail:[/] accuracy under the {worst.name} attack is {worst.accuracy_under_attack:.3f}, "
            f"below --fail-under {fail_under:g}",
            highlight=False,
        )
        raise typer.Exit(1)


@app.command()
def compare(
    full: str = typer.Option(..., "--full", help="the full model: directory or http://HOST:PORT/predictions/NAME"),
    pruned: str = typer.Option(..., "--pruned", help="the pruned model: directory or endpoint"),
    data: str = typer.Option(..., "--data", help="task name (dev split) or TSV path"),
    out: Path = typer.Option(..., "--out", help="folder for comparison.json/.md/.html"),
    token: str | None = typer.Option(None, "--token", envvar="AUDITOR_TOKEN", help="inference key for endpoints"),
    patterns: Path | None = typer.Option(None, "--patterns", help="patterns from 'auditor mine' (default: mine --full)"),
    examples: int = typer.Option(200, "--examples", min=1),
    budget: int = typer.Option(100, "--budget", min=1),
    max_words: int = typer.Option(3, "--max-words", min=1),
    top_k: int = typer.Option(5, "--top-k", min=1),
    trigger_top_k: int = typer.Option(3, "--trigger-top-k", min=0),
    trigger_examples: int | None = typer.Option(None, "--trigger-examples", min=1),
    mine_examples: int = typer.Option(500, "--mine-examples", min=1),
) -> None:
    """Compare a full and a pruned model: agreement, accuracy, robustness to the same triggers, latency."""
    dataset = load_dataset(data, split="dev")
    from auditor.compare import compare_models
    from auditor.report import render_comparison_markdown, write_comparison
    from auditor.schemas import AuditSettings
    from auditor.victims import open_victim

    triggers = _patterns_for(patterns, full, data, mine_examples, out)
    settings = AuditSettings(
        examples=min(examples, len(dataset)),
        budget=budget,
        max_words=max_words,
        top_k=top_k,
        positions="pattern",
        baselines=[],
        trigger_top_k=trigger_top_k,
        trigger_examples=trigger_examples,
        seed=0,
    )
    report = compare_models(open_victim(full, token), open_victim(pruned, token), dataset, triggers, settings, out)
    write_comparison(report, out)
    print(render_comparison_markdown(report))
