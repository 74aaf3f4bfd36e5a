"""``auditor audit`` and ``auditor compare``: robustness audits, gated for CI (``--fail-under``, ``--baseline``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from auditor.cli.app import app, console
from auditor.cli.mine import patterns_for
from auditor.cli.options import (
    Alpha,
    EndpointTokenizer,
    InputsPerRequest,
    JUnit,
    MaxDrop,
    RayAddress,
    Seed,
    Token,
    Workers,
    ray_pool,
)
from auditor.data import load_dataset
from auditor.errors import InputError
from auditor.quadrature import MAX_STEPS

if TYPE_CHECKING:
    from auditor.data import Dataset
    from auditor.schemas import AuditSettings, LabelLexicon, RobustnessReport

Data = Annotated[str, typer.Option("--data", help="Task name (dev split; 'sst2:train' for another) or a GLUE TSV path.")]
Patterns = Annotated[Path | None, typer.Option("--patterns", help="Patterns from 'auditor mine' (default: mine the local model).")]
Examples = Annotated[int, typer.Option("--examples", min=1, help="Examples to attack (the first N).")]
Budget = Annotated[int, typer.Option("--budget", min=1, help="Model queries per attacked example.")]
MaxWords = Annotated[int, typer.Option("--max-words", min=1, help="Most words any attack may insert, change or delete.")]
Transformations = Annotated[
    str | None,
    typer.Option(
        "--transformations",
        help="Edits the attribution-guided attack tries on each ranked word, comma list of tokenedit, charedit, typo, delete, pattern "
        "(default: the combination tuned on training data).",
    ),
]
SufficientGain = Annotated[
    str | None,
    typer.Option(
        "--sufficient-gain",
        help="Keep a word's candidate without querying the rest once it closes this share of the margin per edit left, "
        "in (0, 1], or 'none' to query all (default: tuned on training data).",
    ),
]
EditsPerWord = Annotated[
    int | None,
    typer.Option("--edits-per-word", min=1, help="Character edits 'tokenedit' tries on each word (default: tuned on training data)."),
]
RankingSteps = Annotated[
    int | None,
    typer.Option("--steps", min=1, max=MAX_STEPS, help="Quadrature nodes of the ranking's attribution (default: tuned on training data)."),
]
RankingLayers = Annotated[
    str | None,
    typer.Option(
        "--ranking-layers",
        help="Encoder layers of the ranking's attribution, comma list (-1 is the last) or 'all' (default: tuned on training data).",
    ),
]
SweepWords = Annotated[
    str | None,
    typer.Option("--sweep-words", help="Words probed for the last edit allowed, a number or 'all' (default: tuned on training data)."),
]
Baselines = Annotated[str, typer.Option("--baselines", help="Comma list of random, deepwordbug, leave-one-out (our edits with DeepWordBug's ranking); 'none' for none.")]
LabelWords = Annotated[
    Path | None,
    typer.Option("--label-words", help="Extra label-carrying words (one a line, optionally 'label<TAB>word') no attack may add or delete."),
]
LexiconData = Annotated[
    str | None,
    typer.Option("--lexicon-data", help="Training data for the label-word lexicon (default: the task's train split)."),
]
TopK = Annotated[int, typer.Option("--top-k", min=1, help="Patterns per class the attack tries.")]
TriggerTopK = Annotated[int, typer.Option("--trigger-top-k", min=0, help="Patterns per class in the universal-trigger table.")]
TriggerExamples = Annotated[
    int | None, typer.Option("--trigger-examples", min=1, help="Examples for the trigger table (default all).")
]
MineExamples = Annotated[int, typer.Option("--mine-examples", min=1, help="Training examples to mine when no --patterns.")]


def lexicon_for(
    data: str, dataset: Dataset, labels: list[str], lexicon_data: str | None, label_words: Path | None
) -> LabelLexicon:
    """The label-word lexicon: from ``--lexicon-data``, else the task's train split, plus ``--label-words``."""
    from auditor.data import TASK_DIRECTORIES
    from auditor.validity import build_lexicon, read_word_list

    if lexicon_data is not None:
        train = load_dataset(lexicon_data, split="train")
    elif dataset.name in TASK_DIRECTORIES:
        train = load_dataset(dataset.name, split="train")
    elif label_words is None:
        raise InputError(f"{data} is not a known task: pass --lexicon-data (its training data) and/or --label-words")
    else:
        train = None
    user = read_word_list(label_words, labels) if label_words is not None else {}
    return build_lexicon(train, labels, user_words=user)


def parse_transformations(value: str | None) -> list[str]:
    from auditor.attack import TRANSFORMATIONS
    from auditor.schemas import AuditSettings

    if value is None:
        return list(AuditSettings.model_fields["transformations"].default)
    chosen = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [name for name in chosen if name not in TRANSFORMATIONS]
    if unknown or not chosen:
        raise typer.BadParameter(f"a comma list of {', '.join(TRANSFORMATIONS)}, got {value!r}", param_hint="'--transformations'")
    return chosen


def parse_sufficient_gain(value: str | None) -> float | None:
    from auditor.schemas import AuditSettings

    if value is None:
        return AuditSettings.model_fields["sufficient_gain"].default
    if value.strip().lower() == "none":
        return None
    try:
        gain = float(value)
    except ValueError:
        gain = math.nan
    if not 0 < gain <= 1:
        raise typer.BadParameter(f"a number in (0, 1] or 'none', got {value!r}", param_hint="'--sufficient-gain'")
    return gain


def parse_ranking_layers(value: str | None) -> list[int] | None:
    from auditor.schemas import AuditSettings

    if value is None:
        return AuditSettings.model_fields["layers"].default
    if value.strip().lower() == "all":
        return None
    try:
        return [int(part) for part in value.split(",")]
    except ValueError:
        raise typer.BadParameter(f"a comma list of layer indices (-1 is the last) or 'all', got {value!r}", param_hint="'--ranking-layers'") from None


def parse_sweep_words(value: str | None) -> int | None:
    from auditor.schemas import AuditSettings

    if value is None:
        return AuditSettings.model_fields["sweep_words"].default
    if value.strip().lower() == "all":
        return None
    if not value.strip().isdigit() or int(value) < 1:
        raise typer.BadParameter(f"a positive number or 'all', got {value!r}", param_hint="'--sweep-words'")
    return int(value)


def attack_settings(
    examples: int,
    budget: int,
    max_words: int,
    transformations: str | None,
    edits_per_word: int | None,
    sufficient_gain: str | None,
    steps: int | None,
    ranking_layers: str | None,
    sweep_words: str | None,
    top_k: int,
    positions: str,
    baselines: str,
    trigger_top_k: int,
    trigger_examples: int | None,
    seed: int,
) -> AuditSettings:
    """The ``AuditSettings`` of the options ``audit`` and ``compare`` share, each parsed (a usage error when
    malformed); an option not given takes the default tuned on training data."""
    from auditor.schemas import AuditSettings

    return AuditSettings(
        examples=examples,
        budget=budget,
        max_words=max_words,
        transformations=parse_transformations(transformations),
        candidates=AuditSettings.model_fields["candidates"].default if edits_per_word is None else edits_per_word,
        sufficient_gain=parse_sufficient_gain(sufficient_gain),
        steps=AuditSettings.model_fields["steps"].default if steps is None else steps,
        layers=parse_ranking_layers(ranking_layers),
        sweep_words=parse_sweep_words(sweep_words),
        top_k=top_k,
        positions=positions,
        baselines=parse_baselines(baselines),
        trigger_top_k=trigger_top_k,
        trigger_examples=trigger_examples,
        seed=seed,
    )


def check_tokenizer(locations: list[str], tokenizer: str | None, transformations: list[str]) -> None:
    """``--tokenizer`` goes with an endpoint, and an endpoint needs it for 'tokenedit' (it serves no tokenizer)."""
    from auditor.victims import is_endpoint

    endpoints = [location for location in locations if is_endpoint(location)]
    if tokenizer is not None and not endpoints:
        raise typer.BadParameter("--tokenizer is for an endpoint: a local model uses its own tokenizer", param_hint="'--tokenizer'")
    if endpoints and tokenizer is None and "tokenedit" in transformations:
        raise typer.BadParameter(
            "the 'tokenedit' transformation needs the endpoint model's tokenizer (an endpoint serves none): "
            "pass --tokenizer DIR, or other --transformations",
            param_hint="'--tokenizer'",
        )


def parse_baselines(value: str) -> list[str]:
    chosen = [] if value.strip() == "none" else [b.strip() for b in value.split(",") if b.strip()]
    unknown = sorted(set(chosen) - {"random", "deepwordbug", "leave-one-out"})
    if unknown:
        raise typer.BadParameter(
            f"unknown baseline {unknown[0]!r}: choose from random, deepwordbug, leave-one-out, or none", param_hint="'--baselines'"
        )
    return chosen


def progress_printer(name: str, done: int, total: int) -> None:
    if done == total or done % max(1, total // 10) == 0:
        console.print(f"{name}: {done}/{total}", highlight=False)


@app.command()
def audit(
    out: Annotated[Path, typer.Option("--out", help="Folder for report.json/.md/.html and the checkpoint.")],
    data: Data,
    model: Annotated[str | None, typer.Option("--model", help="Local model directory (or .onnx file beside its tokenizer).")] = None,
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="Deployed model: http://HOST:PORT/predictions/NAME.")] = None,
    token: Token = None,
    tokenizer: EndpointTokenizer = None,
    inputs_per_request: InputsPerRequest = 8,
    patterns: Patterns = None,
    examples: Examples = 200,
    budget: Budget = 100,
    max_words: MaxWords = 3,
    transformations: Transformations = None,
    edits_per_word: EditsPerWord = None,
    sufficient_gain: SufficientGain = None,
    steps: RankingSteps = None,
    ranking_layers: RankingLayers = None,
    sweep_words: SweepWords = None,
    top_k: TopK = 10,
    positions: Annotated[
        Literal["pattern", "all"], typer.Option("--positions", help="Insert patterns where mined ('pattern') or anywhere ('all').")
    ] = "pattern",
    baselines: Baselines = "random,deepwordbug",
    trigger_top_k: TriggerTopK = 3,
    trigger_examples: TriggerExamples = None,
    mine_examples: MineExamples = 500,
    label_words: LabelWords = None,
    lexicon_data: LexiconData = None,
    seed: Seed = 0,
    fail_under: Annotated[
        float | None,
        typer.Option("--fail-under", min=0.0, max=1.0, help="Exit 1 when accuracy under any attack (valid successes only) is below this fraction."),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option("--baseline", help="The last release's report (report.json or its folder): exit 1 on a significant drop against it."),
    ] = None,
    max_drop: MaxDrop = 0.0,
    alpha: Alpha = 0.05,
    junit: JUnit = None,
    ray_address: RayAddress = None,
    workers: Workers = None,
) -> None:
    """Attack a model with the attribution-guided attack and baselines under the same validity constraints;
    write JSON, Markdown and HTML reports. With --baseline, compare it example by example with an earlier
    audit of the same examples (as 'auditor diff') and gate on the regression too."""
    if (model is None) == (endpoint is None):
        raise InputError("give exactly one of --model and --endpoint")
    from auditor.diff import load_report

    baseline_report = load_report(baseline, "--baseline") if baseline is not None else None
    pool_context = ray_pool(ray_address, workers)
    settings = attack_settings(
        examples, budget, max_words, transformations, edits_per_word, sufficient_gain, steps, ranking_layers, sweep_words,
        top_k, positions, baselines, trigger_top_k, trigger_examples, seed,
    )  # fmt: skip
    check_tokenizer([model or endpoint], tokenizer, settings.transformations)
    dataset = load_dataset(data, split="dev")
    settings.examples = min(examples, len(dataset))
    from auditor.audit import checkpoint_identity, lexicon_summary, run_audit, validity_checks
    from auditor.checkpoint import Checkpoint
    from auditor.diff import AuditScope, check_comparable
    from auditor.victims import open_victim

    with pool_context as pool:
        triggers = patterns_for(patterns, model, data, mine_examples, out, pool)
        victim = open_victim(model or endpoint, token=token, inputs_per_request=inputs_per_request, tokenizer=tokenizer)
        lexicon = lexicon_for(data, dataset, victim.labels, lexicon_data, label_words)
        if baseline_report is not None:  # before any attack: a baseline of other examples or settings is refused
            scope = AuditScope(dataset.head(settings.examples).identity(), victim.labels, settings, lexicon_summary(lexicon), validity_checks(settings))
            check_comparable(AuditScope.of(baseline_report), scope)
        checkpoint = Checkpoint(out / "checkpoint.jsonl", checkpoint_identity(victim, dataset, triggers, settings, dataset, lexicon))
        if checkpoint.records:
            console.print(f"resuming: {len(checkpoint.records)} finished results in {checkpoint.path} are kept", highlight=False)
        console.print(
            f"auditing {settings.examples} examples of {dataset.identity().title} ({dataset.source}); "
            f"{len(lexicon.words)} label-carrying words and every non-misspelling rejected for every attack",
            highlight=False,
        )
        executor = None
        if pool is not None:
            from auditor.distributed import RayAttackExecutor, VictimSpec

            spec = VictimSpec(model or endpoint, token, inputs_per_request=inputs_per_request, tokenizer=tokenizer)
            executor = RayAttackExecutor(pool, spec, dataset, triggers, settings, lexicon)
        report = run_audit(victim, dataset, triggers, settings, checkpoint, dataset, lexicon, progress_printer, executor)
    raise typer.Exit(publish_audit(report, out, fail_under, baseline_report, str(baseline), max_drop, alpha, junit))


def publish_audit(
    report: RobustnessReport,
    out: Path,
    fail_under: float | None,
    baseline: RobustnessReport | None,
    baseline_path: str,
    max_drop: float,
    alpha: float,
    junit: Path | None,
) -> int:
    """Write and print the report (and its diff against ``baseline``), the JUnit file and the GitHub job
    summary and annotations; the exit status: 1 when the audit fails ``fail_under`` or regressed, else 0."""
    from auditor.ci import Annotation, audit_suites, diff_annotations, diff_suites, publish_to_github, write_junit
    from auditor.diff import diff_reports
    from auditor.report import percent, render_diff_markdown, render_markdown, write_diff, write_report

    write_report(report, out)
    markdown = render_markdown(report)
    suites = audit_suites(report)
    annotations: list[Annotation] = []
    worst = min([report.attack, *report.baselines], key=lambda a: a.accuracy_under_attack)
    if fail_under is not None and worst.accuracy_under_attack < fail_under:
        message = (
            f"accuracy under the {worst.name} attack (valid successes only) is {percent(worst.accuracy_under_attack)}, "
            f"below --fail-under {percent(fail_under)}"
        )
        markdown += f"\n**Fail:** {message}.\n"
        annotations.append(Annotation("error", "Robustness below --fail-under", message))
    if baseline is not None:
        diff = diff_reports(baseline, report, max_drop, alpha, baseline_path, str(out / "report.json"))
        write_diff(diff, out)
        markdown += "\n" + render_diff_markdown(diff)
        suites += diff_suites(diff)
        annotations += diff_annotations(diff)
    if junit is not None:
        write_junit(junit, f"auditor audit {report.victim.location}", suites)
    print(markdown, end="")
    publish_to_github(markdown, annotations)
    failures = [a for a in annotations if a.level == "error"]
    for failure in failures:
        console.print(f"[bold red]fail:[/] {failure.title}: {failure.message}", highlight=False)
    return 1 if failures else 0


@app.command()
def compare(
    full: Annotated[str, typer.Option("--full", help="The full model: directory or http://HOST:PORT/predictions/NAME.")],
    pruned: Annotated[str, typer.Option("--pruned", help="The pruned model: directory or endpoint.")],
    data: Data,
    out: Annotated[Path, typer.Option("--out", help="Folder for comparison.json/.md/.html.")],
    token: Token = None,
    tokenizer: EndpointTokenizer = None,
    inputs_per_request: InputsPerRequest = 8,
    patterns: Patterns = None,
    examples: Examples = 200,
    budget: Budget = 100,
    max_words: MaxWords = 3,
    transformations: Transformations = None,
    edits_per_word: EditsPerWord = None,
    sufficient_gain: SufficientGain = None,
    steps: RankingSteps = None,
    ranking_layers: RankingLayers = None,
    sweep_words: SweepWords = None,
    top_k: TopK = 10,
    baselines: Baselines = "random,deepwordbug",
    trigger_top_k: TriggerTopK = 3,
    trigger_examples: TriggerExamples = None,
    mine_examples: MineExamples = 500,
    label_words: LabelWords = None,
    lexicon_data: LexiconData = None,
    junit: JUnit = None,
) -> None:
    """Compare a full and a pruned model: agreement, accuracy, robustness to the same attacks (baselines
    and per class included) and triggers, latency."""
    settings = attack_settings(
        examples, budget, max_words, transformations, edits_per_word, sufficient_gain, steps, ranking_layers, sweep_words,
        top_k, "pattern", baselines, trigger_top_k, trigger_examples, 0,
    )  # fmt: skip
    check_tokenizer([full, pruned], tokenizer, settings.transformations)
    dataset = load_dataset(data, split="dev")
    settings.examples = min(examples, len(dataset))
    from auditor.ci import comparison_report_suites, publish_to_github, write_junit
    from auditor.compare import compare_models
    from auditor.report import render_comparison_markdown, write_comparison
    from auditor.victims import is_endpoint, open_victim

    triggers = patterns_for(patterns, full, data, mine_examples, out)
    full_victim, pruned_victim = (
        open_victim(where, token, inputs_per_request=inputs_per_request, tokenizer=tokenizer if is_endpoint(where) else None)
        for where in (full, pruned)
    )
    lexicon = lexicon_for(data, dataset, full_victim.labels, lexicon_data, label_words)
    report = compare_models(full_victim, pruned_victim, dataset, triggers, settings, out, lexicon, progress_printer)
    write_comparison(report, out)
    markdown = render_comparison_markdown(report)
    if junit is not None:
        write_junit(junit, f"auditor compare {full} {pruned}", comparison_report_suites(report))
    print(markdown, end="")
    publish_to_github(markdown, [])
