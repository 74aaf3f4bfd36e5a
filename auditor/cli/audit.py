"""``auditor mine``, ``auditor audit`` and ``auditor compare``: robustness audits."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from auditor.cli.app import app, console
from auditor.cli.options import InputsPerRequest, RayAddress, Seed, Steps, Token, Workers, ray_pool
from auditor.data import load_dataset
from auditor.errors import InputError

if TYPE_CHECKING:
    from auditor.distributed import RayPool
    from auditor.schemas import TriggerSet
    from auditor.triggers import MiningExecutor

Data = Annotated[str, typer.Option("--data", help="Task name (dev split; 'sst2:train' for another) or a GLUE TSV path.")]
Patterns = Annotated[Path | None, typer.Option("--patterns", help="Patterns from 'auditor mine' (default: mine the local model).")]
Examples = Annotated[int, typer.Option("--examples", min=1, help="Examples to attack (the first N).")]
Budget = Annotated[int, typer.Option("--budget", min=1, help="Model queries per attacked example.")]
MaxWords = Annotated[int, typer.Option("--max-words", min=1, help="Most words an attack may insert or change.")]
TopK = Annotated[int, typer.Option("--top-k", min=1, help="Patterns per class the attack tries.")]
TriggerTopK = Annotated[int, typer.Option("--trigger-top-k", min=0, help="Patterns per class in the universal-trigger table.")]
TriggerExamples = Annotated[
    int | None, typer.Option("--trigger-examples", min=1, help="Examples for the trigger table (default all).")
]
MineExamples = Annotated[int, typer.Option("--mine-examples", min=1, help="Training examples to mine when no --patterns.")]


@app.command()
def mine(
    model: Annotated[str, typer.Option("--model", help="Model directory to mine attribution patterns from.")],
    data: Annotated[str, typer.Option("--data", help="Task name (train split; 'sst2:dev' for another) or a GLUE TSV path.")],
    out: Annotated[Path, typer.Option("--out", help="Patterns JSON file to write.")],
    examples: Annotated[int, typer.Option("--examples", min=1, help="Examples to mine from (the first N).")] = 500,
    threshold: Annotated[float, typer.Option("--threshold", help="Drop patterns whose attribution mass is under this.")] = 0.01,
    pairs: Annotated[int, typer.Option("--pairs", min=1, help="Top token pairs per example.")] = 2,
    steps: Steps = 3,
    ray_address: RayAddress = None,
    workers: Workers = None,
) -> None:
    """Mine attribution patterns (adversarial triggers) from a model, once, for later audits."""
    from auditor.models import load_classifier
    from auditor.report import write_atomic
    from auditor.triggers import mine_triggers

    pool_context = ray_pool(ray_address, workers)
    classifier = load_classifier(model)
    dataset = load_dataset(data, split="train")
    with pool_context as pool:
        executor = mining_executor(pool, model)
        triggers = mine_triggers(
            classifier, dataset, examples=examples, threshold=threshold, pairs_per_example=pairs, steps=steps, executor=executor
        )
    write_atomic(out, triggers.model_dump_json(indent=1))
    console.print(f"{len(triggers.patterns)} patterns from {triggers.data.count} examples in {triggers.seconds:.1f} s -> {out}")


def mining_executor(pool: RayPool | None, model: str) -> MiningExecutor | None:
    from auditor.distributed import RayMiningExecutor

    return RayMiningExecutor(pool, model) if pool is not None else None


def patterns_for(
    patterns: Path | None, model: str | None, data: str, mine_examples: int, out: Path, pool: RayPool | None = None
) -> TriggerSet:
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

    train = load_dataset(data.split(":")[0], split="train")
    triggers = mine_triggers(load_classifier(model), train, examples=mine_examples, executor=mining_executor(pool, model))
    write_atomic(out / "patterns.json", triggers.model_dump_json(indent=1))
    return triggers


@app.command()
def audit(
    out: Annotated[Path, typer.Option("--out", help="Folder for report.json/.md/.html and the checkpoint.")],
    data: Data,
    model: Annotated[str | None, typer.Option("--model", help="Local model directory (or .onnx file beside its tokenizer).")] = None,
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="Deployed model: http://HOST:PORT/predictions/NAME.")] = None,
    token: Token = None,
    inputs_per_request: InputsPerRequest = 8,
    patterns: Patterns = None,
    examples: Examples = 200,
    budget: Budget = 100,
    max_words: MaxWords = 3,
    top_k: TopK = 10,
    positions: Annotated[
        Literal["pattern", "all"], typer.Option("--positions", help="Insert patterns where mined ('pattern') or anywhere ('all').")
    ] = "pattern",
    baselines: Annotated[
        str, typer.Option("--baselines", help="Comma list of random, deepwordbug; 'none' for none.")
    ] = "random,deepwordbug",
    trigger_top_k: TriggerTopK = 3,
    trigger_examples: TriggerExamples = None,
    mine_examples: MineExamples = 500,
    seed: Seed = 0,
    fail_under: Annotated[
        float | None, typer.Option("--fail-under", min=0.0, max=1.0, help="Exit 1 when accuracy under attack is below this fraction.")
    ] = None,
    ray_address: RayAddress = None,
    workers: Workers = None,
) -> None:
    """Attack a model with attribution triggers and baselines; write JSON, Markdown and HTML reports."""
    if (model is None) == (endpoint is None):
        raise InputError("give exactly one of --model and --endpoint")
    pool_context = ray_pool(ray_address, workers)
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

    def progress(name: str, done: int, total: int) -> None:
        if done == total or done % max(1, total // 10) == 0:
            console.print(f"{name}: {done}/{total}", highlight=False)

    with pool_context as pool:
        triggers = patterns_for(patterns, model, data, mine_examples, out, pool)
        victim = open_victim(model or endpoint, token=token, inputs_per_request=inputs_per_request)
        checkpoint = Checkpoint(out / "checkpoint.jsonl", checkpoint_identity(victim, dataset, triggers, settings, dataset))
        executor = None
        if pool is not None:
            from auditor.distributed import RayAttackExecutor, VictimSpec

            spec = VictimSpec(model or endpoint, token, inputs_per_request=inputs_per_request)
            executor = RayAttackExecutor(pool, spec, dataset, triggers, settings)
        report = run_audit(victim, dataset, triggers, settings, checkpoint, dataset, progress, executor)
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
    full: Annotated[str, typer.Option("--full", help="The full model: directory or http://HOST:PORT/predictions/NAME.")],
    pruned: Annotated[str, typer.Option("--pruned", help="The pruned model: directory or endpoint.")],
    data: Data,
    out: Annotated[Path, typer.Option("--out", help="Folder for comparison.json/.md/.html.")],
    token: Token = None,
    inputs_per_request: InputsPerRequest = 8,
    patterns: Patterns = None,
    examples: Examples = 200,
    budget: Budget = 100,
    max_words: MaxWords = 3,
    top_k: TopK = 10,
    trigger_top_k: TriggerTopK = 3,
    trigger_examples: TriggerExamples = None,
    mine_examples: MineExamples = 500,
) -> None:
    """Compare a full and a pruned model: agreement, accuracy, robustness to the same triggers, latency."""
    dataset = load_dataset(data, split="dev")
    from auditor.compare import compare_models
    from auditor.report import render_comparison_markdown, write_comparison
    from auditor.schemas import AuditSettings
    from auditor.victims import open_victim

    triggers = patterns_for(patterns, full, data, mine_examples, out)
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
    full_victim, pruned_victim = (open_victim(where, token, inputs_per_request=inputs_per_request) for where in (full, pruned))
    report = compare_models(full_victim, pruned_victim, dataset, triggers, settings, out)
    write_comparison(report, out)
    print(render_comparison_markdown(report))
