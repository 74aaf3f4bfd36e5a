"""``auditor audit`` and ``auditor compare``: robustness audits, gated for CI (``--fail-under``, ``--baseline``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from auditor.cli.app import app, close_gate, console
from auditor.cli.attack_options import (
    TRIGGER_EXAMPLES,
    Baselines,
    Budget,
    Data,
    EditsPerWord,
    Examples,
    ExplainSuccesses,
    Invariance,
    LabelWords,
    LexiconData,
    MaxFlipRate,
    MaxWords,
    MineExamples,
    Patterns,
    RankingLayers,
    RankingSteps,
    SufficientGain,
    SweepWords,
    TopK,
    Transformations,
    TriggerExamples,
    TriggerTopK,
    TypoRate,
    attack_settings,
    check_tokenizer,
    parse_invariance,
    parse_max_flip_rate,
)
from auditor.cli.data_options import LabelColumn, LabelMap, Sample, TextColumn, TextPairColumn, data_mapping, load_data, mapping_for
from auditor.cli.mine import patterns_for
from auditor.cli.options import (
    Alpha,
    Correction,
    EndpointTokenizer,
    InputsPerRequest,
    JUnit,
    MaxDrop,
    RayAddress,
    Seed,
    Token,
    Workers,
    output_folder,
    ray_pool,
)
from auditor.errors import InputError

if TYPE_CHECKING:
    from auditor.data import Dataset, DataMapping
    from auditor.schemas import AuditSettings, LabelLexicon, RobustnessReport
    from auditor.victims import Victim


def training_data(
    data: str, dataset: Dataset, labels: list[str], lexicon_data: str | None, label_words: Path | None, mapping: DataMapping | None = None
) -> Dataset | None:
    """The training data of an audit (its label-word lexicon, and the head importance of the causal check):
    ``--lexicon-data`` (a file read through ``mapping``, as ``--data``), else the task's train split; None when
    ``--label-words`` alone gives the lexicon."""
    from auditor.data import TASK_DIRECTORIES

    if lexicon_data is not None:
        return load_data(lexicon_data, "train", mapping and mapping_for(lexicon_data, mapping), labels)
    if dataset.name in TASK_DIRECTORIES and dataset.mapping is None:
        return load_data(dataset.name, "train")
    if label_words is None:
        raise InputError(f"{data} is not a known task: pass --lexicon-data (its training data) and/or --label-words")
    return None


def lexicon_for(train: Dataset | None, labels: list[str], label_words: Path | None) -> LabelLexicon:
    """The label-word lexicon: from the training data, plus ``--label-words``."""
    from auditor.validity import build_lexicon, read_word_list

    user = read_word_list(label_words, labels) if label_words is not None else {}
    return build_lexicon(train, labels, user_words=user)


def audit_data(
    data: str, victim: Victim, mapping: DataMapping, settings: AuditSettings, sample: bool, examples: int
) -> Dataset:
    """The rows of ``data`` an audit reads (no more than its examples and trigger-table examples need), read
    by ``victim``'s labels; without labels, labelled by its predictions (said on stderr)."""
    from auditor.audit import labelled_by_predictions
    from auditor.data import RowSelection
    from auditor.models import check_examples_have_tokens

    needed = None if settings.trigger_examples is None else max(examples, settings.trigger_examples)
    selection = RowSelection(needed, settings.seed if sample else None)
    dataset = load_data(data, "dev", mapping_for(data, mapping), victim.labels, selection)
    settings.examples = min(examples, len(dataset))
    if victim.tokenizer is not None:  # before mining: a row the model cannot see is a data error
        check_examples_have_tokens(victim.tokenizer, dataset.head(settings.examples).examples, dataset.source)
    if dataset.unlabelled:
        console.print(f"{dataset.source} has no labels: each example's reference is the model's own prediction", highlight=False)
    return labelled_by_predictions(victim, dataset)


def progress_printer(name: str, done: int, total: int) -> None:
    if done == total or done % max(1, total // 10) == 0:
        console.print(f"{name}: {done}/{total}", highlight=False)


@app.command()
def audit(
    out: Annotated[Path, typer.Option("--out", callback=output_folder, help="Folder for report.json/.md/.html and the checkpoint.")],
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
    top_k: TopK = None,
    positions: Annotated[
        Literal["pattern", "all"], typer.Option("--positions", help="Insert a pattern's pair at the ranked word, keeping its mined gap ('pattern'), or anywhere in its text ('all').")
    ] = "pattern",
    baselines: Baselines = "random,deepwordbug",
    trigger_top_k: TriggerTopK = 3,
    trigger_examples: TriggerExamples = TRIGGER_EXAMPLES,
    mine_examples: MineExamples = None,
    label_words: LabelWords = None,
    lexicon_data: LexiconData = None,
    seed: Seed = 0,
    sample: Sample = False,
    text_column: TextColumn = None,
    text_pair_column: TextPairColumn = None,
    label_column: LabelColumn = None,
    label_map: LabelMap = None,
    fail_under: Annotated[
        float | None,
        typer.Option("--fail-under", min=0.0, max=1.0, help="Exit 1 when accuracy under any attack (valid successes only) is below this fraction."),
    ] = None,
    invariance: Invariance = "all",
    typo_rate: TypoRate = None,
    max_flip_rate: MaxFlipRate = None,
    forensics: ExplainSuccesses = True,
    baseline: Annotated[
        Path | None,
        typer.Option("--baseline", help="The last release's report (report.json or its folder): exit 1 on a significant drop against it."),
    ] = None,
    max_drop: MaxDrop = 0.0,
    alpha: Alpha = 0.05,
    correction: Correction = "none",
    junit: JUnit = None,
    ray_address: RayAddress = None,
    workers: Workers = None,
    defence: Annotated[
        Literal["spellcheck"] | None,
        typer.Option(
            "--defence",
            help="Audit the model behind a front end: 'spellcheck' corrects every word that is no dictionary or training-data word first.",
        ),
    ] = None,
    advice: Annotated[
        bool,
        typer.Option(
            "--advice/--no-advice",
            help="Measure the spell-check front end's advice in the same run: successes undone, clean cost, and an adaptive audit of front end plus model.",
        ),
    ] = True,
    causal_check: Annotated[
        bool,
        typer.Option(
            "--causal-check/--no-causal-check",
            help="Mask the heads the forensics implicate most, beside random and attribution-pruned ones, and re-run the successes "
            "(needs --forensics and the model's PyTorch weights).",
        ),
    ] = True,
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
    settings.invariance = parse_invariance(invariance)
    settings.typo_rate = settings.typo_rate if typo_rate is None else typo_rate
    settings.advice = advice
    max_flip_rates = parse_max_flip_rate(max_flip_rate, settings.invariance)
    settings.forensics = forensics
    settings.causal_check = causal_check
    check_tokenizer([model or endpoint], tokenizer, settings.transformations, forensics)
    mapping = data_mapping(text_column, text_pair_column, label_column, label_map)
    from auditor.audit import checkpoint_identity, lexicon_summary, run_audit, validity_checks, without_unusable_patterns
    from auditor.checkpoint import Checkpoint
    from auditor.defence import defend
    from auditor.diff import AuditScope, check_comparable
    from auditor.victims import open_victim

    with pool_context as pool:
        victim = open_victim(model or endpoint, token=token, inputs_per_request=inputs_per_request, tokenizer=tokenizer)
        dataset = audit_data(data, victim, mapping, settings, sample, examples)
        triggers = patterns_for(patterns, model, data, mine_examples, out, pool)
        train = training_data(data, dataset, victim.labels, lexicon_data, label_words, mapping)
        lexicon = lexicon_for(train, victim.labels, label_words)
        victim = defend(victim, defence, lexicon)
        settings, note = without_unusable_patterns(settings, triggers, lexicon, dataset.is_pair)
        if note:
            console.print(note, highlight=False)
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

            spec = VictimSpec(model or endpoint, token, inputs_per_request=inputs_per_request, tokenizer=tokenizer, defence=defence)
            executor = RayAttackExecutor(pool, spec, dataset, triggers, settings, lexicon)
        report = run_audit(victim, dataset, triggers, settings, checkpoint, dataset, lexicon, progress_printer, executor, train)
    raise typer.Exit(publish_audit(report, out, fail_under, max_flip_rates, baseline_report, str(baseline), max_drop, alpha, correction, junit))


def publish_audit(
    report: RobustnessReport,
    out: Path,
    fail_under: float | None,
    max_flip_rates: dict[str, float],
    baseline: RobustnessReport | None,
    baseline_path: str,
    max_drop: float,
    alpha: float,
    correction: Literal["none", "holm"],
    junit: Path | None,
) -> int:
    """Write and print the report (and its diff against ``baseline``, gated by ``max_drop``, ``alpha`` and
    ``correction`` as in ``diff_reports``), the JUnit file and the GitHub job summary and annotations; the
    exit status: 1 when the audit fails ``fail_under``, an invariance check's flip rate exceeds its
    ``max_flip_rates`` limit, or the audit regressed, else 0."""
    from auditor.ci import Annotation, audit_suites, diff_annotations, diff_suites, fail_under_message, flip_rate_failures, invariance_suite, write_junit
    from auditor.diff import diff_reports
    from auditor.diff_report import render_diff_markdown, write_diff
    from auditor.report import render_markdown, write_report

    write_report(report, out)
    markdown = render_markdown(report)
    suites = audit_suites(report, fail_under)
    annotations: list[Annotation] = []
    worst = min([report.attack, *report.baselines], key=lambda a: a.accuracy_under_attack)
    if fail_under is not None and worst.accuracy_under_attack < fail_under:
        message = fail_under_message(worst, fail_under)
        markdown += f"\n**Fail:** {message}.\n"
        annotations.append(Annotation("error", "Robustness below --fail-under", message))
    if report.invariance:
        suites.append(invariance_suite(report, max_flip_rates))
    for name, message in flip_rate_failures(report, max_flip_rates).items():
        markdown += f"\n**Fail:** {message}.\n"
        annotations.append(Annotation("error", f"Invariance check {name} above --max-flip-rate", message))
    if baseline is not None:
        diff = diff_reports(baseline, report, max_drop, alpha, baseline_path, str(out / "report.json"), correction)
        write_diff(diff, out)
        markdown += "\n" + render_diff_markdown(diff)
        suites += diff_suites(diff)
        annotations += diff_annotations(diff)
    if junit is not None:
        write_junit(junit, f"auditor audit {report.victim.location}", suites)
    print(markdown, end="")
    return close_gate(markdown, annotations)


@app.command()
def compare(
    full: Annotated[str, typer.Option("--full", help="The full model: directory or http://HOST:PORT/predictions/NAME.")],
    pruned: Annotated[str, typer.Option("--pruned", help="The pruned model: directory or endpoint.")],
    data: Data,
    out: Annotated[Path, typer.Option("--out", callback=output_folder, help="Folder for comparison.json/.md/.html.")],
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
    top_k: TopK = None,
    baselines: Baselines = "random,deepwordbug",
    trigger_top_k: TriggerTopK = 3,
    trigger_examples: TriggerExamples = TRIGGER_EXAMPLES,
    mine_examples: MineExamples = None,
    label_words: LabelWords = None,
    lexicon_data: LexiconData = None,
    seed: Seed = 0,
    sample: Sample = False,
    text_column: TextColumn = None,
    text_pair_column: TextPairColumn = None,
    label_column: LabelColumn = None,
    label_map: LabelMap = None,
    junit: JUnit = None,
) -> None:
    """Compare a full and a pruned model: agreement, accuracy, robustness to the same attacks (baselines
    and per class included) and triggers, latency."""
    settings = attack_settings(
        examples, budget, max_words, transformations, edits_per_word, sufficient_gain, steps, ranking_layers, sweep_words,
        top_k, "pattern", baselines, trigger_top_k, trigger_examples, seed,
    )  # fmt: skip
    settings.forensics = settings.causal_check = settings.advice = False  # a comparison explains no success and advises nothing
    check_tokenizer([full, pruned], tokenizer, settings.transformations)
    mapping = data_mapping(text_column, text_pair_column, label_column, label_map)
    from auditor.audit import without_unusable_patterns
    from auditor.ci import comparison_report_suites, write_junit
    from auditor.compare import compare_models
    from auditor.models import check_examples_have_tokens
    from auditor.report import render_comparison_markdown, write_comparison
    from auditor.victims import is_endpoint, open_victim

    full_victim, pruned_victim = (
        open_victim(where, token, inputs_per_request=inputs_per_request, tokenizer=tokenizer if is_endpoint(where) else None)
        for where in (full, pruned)
    )
    dataset = audit_data(data, full_victim, mapping, settings, sample, examples)  # unlabelled: the full model's predictions
    if pruned_victim.tokenizer is not None:
        check_examples_have_tokens(pruned_victim.tokenizer, dataset.head(settings.examples).examples, dataset.source)
    triggers = patterns_for(patterns, full, data, mine_examples, out)
    lexicon = lexicon_for(training_data(data, dataset, full_victim.labels, lexicon_data, label_words, mapping), full_victim.labels, label_words)
    settings, note = without_unusable_patterns(settings, triggers, lexicon, dataset.is_pair)
    if note:
        console.print(note, highlight=False)
    report = compare_models(full_victim, pruned_victim, dataset, triggers, settings, out, lexicon, progress_printer)
    write_comparison(report, out)
    markdown = render_comparison_markdown(report)
    if junit is not None:
        write_junit(junit, f"auditor compare {full} {pruned}", comparison_report_suites(report))
    print(markdown, end="")
    close_gate(markdown, [])
