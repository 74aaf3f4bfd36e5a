"""``auditor mine``, ``auditor audit`` and ``auditor compare``: robustness audits."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from auditor.cli.app import app, console
from auditor.cli.options import EndpointTokenizer, InputsPerRequest, RayAddress, Seed, Steps, Token, Workers, ray_pool
from auditor.data import load_dataset
from auditor.errors import InputError
from auditor.quadrature import MAX_STEPS

if TYPE_CHECKING:
    from auditor.data import Dataset
    from auditor.distributed import RayPool
    from auditor.schemas import AuditSettings, LabelLexicon, TriggerSet
    from auditor.triggers import MiningExecutor

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
    """Mine attribution patterns (adversarial triggers) from a model, once, for later audits; patterns with a
    word that carries a label by itself (measured on the mined data) are left out."""
    from auditor.models import load_classifier
    from auditor.report import write_atomic
    from auditor.triggers import mine_triggers
    from auditor.validity import build_lexicon

    pool_context = ray_pool(ray_address, workers)
    classifier = load_classifier(model)
    dataset = load_dataset(data, split="train")
    lexicon = build_lexicon(dataset, classifier.labels)
    with pool_context as pool, _progress_bar(min(examples, len(dataset)), "mining") as bar:
        triggers = mine_triggers(
            classifier, dataset, examples=examples, threshold=threshold, pairs_per_example=pairs, steps=steps,
            executor=mining_executor(pool, model), exclude=set(lexicon.words), progress=bar.update,
        )  # fmt: skip
    write_atomic(out, triggers.model_dump_json(indent=1))
    console.print(
        f"{len(triggers.patterns)} label-free patterns from {triggers.data.count} examples of {triggers.data.title} "
        f"in {triggers.seconds:.1f} s -> {out}",
        highlight=False,
    )


def _progress_bar(total: int, description: str):  # noqa: ANN202
    import sys

    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="example", file=sys.stderr, disable=total < 2)


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

    from auditor.validity import build_lexicon

    classifier = load_classifier(model)
    train = load_dataset(data.split(":")[0], split="train")
    with _progress_bar(min(mine_examples, len(train)), "mining") as bar:
        exclude = set(build_lexicon(train, classifier.labels).words)
        triggers = mine_triggers(
            classifier, train, examples=mine_examples, executor=mining_executor(pool, model), exclude=exclude, progress=bar.update
        )
    write_atomic(out / "patterns.json", triggers.model_dump_json(indent=1))
    return triggers


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
    ray_address: RayAddress = None,
    workers: Workers = None,
) -> None:
    """Attack a model with the attribution-guided attack and baselines under the same validity constraints;
    write JSON, Markdown and HTML reports."""
    if (model is None) == (endpoint is None):
        raise InputError("give exactly one of --model and --endpoint")
    pool_context = ray_pool(ray_address, workers)
    settings = attack_settings(
        examples, budget, max_words, transformations, edits_per_word, sufficient_gain, steps, ranking_layers, sweep_words,
        top_k, positions, baselines, trigger_top_k, trigger_examples, seed,
    )  # fmt: skip
    check_tokenizer([model or endpoint], tokenizer, settings.transformations)
    dataset = load_dataset(data, split="dev")
    settings.examples = min(examples, len(dataset))
    from auditor.audit import checkpoint_identity, run_audit
    from auditor.checkpoint import Checkpoint
    from auditor.report import render_markdown, write_report
    from auditor.victims import open_victim


    with pool_context as pool:
        triggers = patterns_for(patterns, model, data, mine_examples, out, pool)
        victim = open_victim(model or endpoint, token=token, inputs_per_request=inputs_per_request, tokenizer=tokenizer)
        lexicon = lexicon_for(data, dataset, victim.labels, lexicon_data, label_words)
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
    write_report(report, out)
    print(render_markdown(report))
    worst = min([report.attack, *report.baselines], key=lambda a: a.accuracy_under_attack)
    if fail_under is not None and worst.accuracy_under_attack < fail_under:
        console.print(
            f"[bold red]fail:[/] accuracy under the {worst.name} attack (valid successes only) is {worst.accuracy_under_attack:.3f}, "
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
    print(render_comparison_markdown(report))
