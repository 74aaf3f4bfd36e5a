"""The ``auditor`` command line. Each command parses options, calls the library, and writes files."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from pydantic import ValidationError
from rich.console import Console

from auditor.data import load_dataset
from auditor.errors import AuditorError, InputError
from auditor.quadrature import QUADRATURE_METHODS

if TYPE_CHECKING:
    from auditor.schemas import Explanation, ExplanationOptions

app = typer.Typer(
    name="auditor",
    help="Audit Transformer text classifiers with self-attention attribution.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True, soft_wrap=True)  # an error stays one line however long
output = Console(highlight=False, soft_wrap=True)


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


@app.command()
def explain(
    model: Annotated[str, typer.Option("--model", help="A saved sequence classifier (folder).")],
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to explain, one input each.", show_default=False)] = None,
    pair: Annotated[str | None, typer.Option("--pair", help="Second sentence, for a pair model (one TEXT).")] = None,
    input_file: Annotated[
        Path | None,
        typer.Option("--input", help="Texts from a file: .tsv in GLUE format, else one per line (a TAB starts the pair)."),
    ] = None,
    steps: Annotated[int, typer.Option(help="Quadrature nodes of the attribution integral.")] = 3,
    method: Annotated[str, typer.Option(help="Quadrature rule: " + ", ".join(QUADRATURE_METHODS) + ".")] = "gausslegendre",
    target: Annotated[str, typer.Option(help="'predicted' or a class index.")] = "predicted",
    layers: Annotated[str | None, typer.Option(help="Encoder layers to attribute, e.g. 0,1,5 (default: all).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Token pairs reported per layer.")] = 5,
    threshold: Annotated[float, typer.Option(help="τ of the attribution tree.")] = 0.4,
    truncate: Annotated[bool, typer.Option("--truncate", help="Cut inputs longer than the model's limit.")] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the explanations (a JSON list) here.")] = None,
    html_path: Annotated[Path | None, typer.Option("--html", help="Write a self-contained HTML page here.")] = None,
    matrices: Annotated[bool, typer.Option("--matrices", help="Put every head's attribution matrix in the JSON.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Inputs attributed together.")] = 8,
) -> None:
    """Explain predictions with self-attention attribution: top token pairs per layer and the attribution tree."""
    from pydantic import TypeAdapter
    from tqdm import tqdm

    from auditor.explain import explain_batch
    from auditor.models import load_classifier
    from auditor.render import render_html
    from auditor.schemas import Explanation

    options = explanation_options(
        target=parse_target(target),
        steps=steps,
        method=method,
        layers=parse_layers(layers),
        top_k=top_k,
        include_matrices=matrices or html_path is not None,
        threshold=threshold,
    )
    inputs, pairs = gather_inputs(texts or [], pair, input_file)
    classifier = load_classifier(model)
    with tqdm(total=len(inputs), unit="input", desc="explaining", disable=len(inputs) < 2, file=sys.stderr) as progress:
        explanations = explain_batch(classifier, inputs, pairs, options, truncate, batch_size, progress.update)
    for explanation in explanations:
        print_explanation(explanation)
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(render_html(explanations), encoding="utf-8")
        console.print(f"wrote {html_path}", highlight=False)
    if json_path is not None:
        saved = explanations if matrices else [without_matrices(explanation) for explanation in explanations]
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_bytes(TypeAdapter(list[Explanation]).dump_json(saved, indent=2))
        console.print(f"wrote {json_path}", highlight=False)


def without_matrices(explanation: Explanation) -> Explanation:
    """The explanation without its per-head matrices (the HTML page needs them, the JSON only on request)."""
    layers = [layer.model_copy(update={"matrices": None}) for layer in explanation.layers]
    return explanation.model_copy(update={"layers": layers})


def explanation_options(**values: object) -> ExplanationOptions:
    from auditor.schemas import ExplanationOptions

    try:
        return ExplanationOptions(**values)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise InputError(f"invalid option: {problems}") from None


def parse_target(value: str) -> str | int:
    """'predicted' or a class index (validated against the model later)."""
    if value == "predicted":
        return value
    try:
        return int(value)
    except ValueError:
        raise InputError(f"--target must be 'predicted' or a class index, got {value!r}") from None


def parse_layers(value: str | None) -> list[int] | None:
    """'0,1,5' → [0, 1, 5]."""
    if value is None:
        return None
    try:
        layers = [int(part) for part in value.split(",")]
    except ValueError:
        raise InputError(f"--layers must be comma-separated layer indices such as 0,1,5, got {value!r}") from None
    return layers


def gather_inputs(texts: list[str], pair: str | None, input_file: Path | None) -> tuple[list[str], list[str | None] | None]:
    """The texts (and pairs) from the arguments and the --input file, in that order."""
    if pair is not None and len(texts) != 1:
        raise InputError("--pair needs exactly one TEXT")
    pairs: list[str | None] = [pair] * len(texts)
    texts = list(texts)
    if input_file is not None:
        if not input_file.is_file():
            raise InputError(f"input file not found: {input_file}")
        if input_file.suffix == ".tsv":
            from auditor.data import read_tsv

            examples = read_tsv(input_file).examples
            texts += [example.text for example in examples]
            pairs += [example.text_pair for example in examples]
        else:
            for line in input_file.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    text, _, second = line.partition("\t")
                    texts.append(text)
                    pairs.append(second or None)
    if not texts:
        raise InputError("nothing to explain: give a TEXT or --input FILE")
    return texts, None if all(p is None for p in pairs) else pairs


def print_explanation(explanation: Explanation) -> None:
    """The prediction, a table of top token pairs per layer and the attribution tree, on stdout."""
    from rich.table import Table
    from rich.text import Text
    from rich.tree import Tree

    prediction = explanation.prediction
    probabilities = ", ".join(f"{label} {p:.4f}" for label, p in zip(prediction.labels, prediction.probabilities))
    pair = f"  [pair: {explanation.text_pair}]" if explanation.text_pair else ""
    output.print(Text.assemble(("\n" + explanation.text, "bold"), pair))
    target = f"target {explanation.target} ({explanation.target_label})"
    output.print(Text(f"prediction: {prediction.label} ({probabilities}); {target}"))
    title = Text(f"top token pairs (query ← key), {explanation.method} {explanation.steps} steps")
    table = Table(title=title, title_justify="left")
    table.add_column("layer", justify="right")
    table.add_column("delta", justify="right")
    table.add_column("F(0·A)", justify="right")
    table.add_column(Text("pairs: Σ_h attribution [largest head]"))
    for layer in explanation.layers:
        pairs = "\n".join(f"{p.query_token} ← {p.key_token}  {p.score:.3g} [h{p.head}]" for p in layer.top_pairs)
        table.add_row(str(layer.layer), f"{layer.delta:.2e}", f"{layer.baseline_probability:.4f}", Text(pairs))
    output.print(table)
    if explanation.tree is not None:
        tree = explanation.tree
        branches: dict[str, Tree] = {}
        nodes = {node.id: node for node in tree.nodes}
        root = tree.nodes[0]
        branches[root.id] = Tree(Text(f"{root.token} (level {root.layer})"))
        for edge in tree.edges:  # parents come before their children
            node = nodes[edge.source]
            label = Text(f"{node.token} (token {node.token_index}) via layer {edge.layer}, S̃ {edge.score:.2f}")
            branches[node.id] = branches[edge.target].add(label)
        output.print(Text(f"attribution tree (τ = {tree.threshold}):"))
        output.print(branches[root.id])


@app.command()
def schema(
    out: Annotated[Path | None, typer.Option("--out", help="Write <Model>.schema.json files into this folder.")] = None,
) -> None:
    """Print (or write) the JSON Schema of every request, response and report model."""
    from auditor.schemas import json_schemas

    schemas = json_schemas()
    if out is None:
        sys.stdout.write(json.dumps(schemas, indent=2, ensure_ascii=False) + "\n")
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, document in schemas.items():
        (out / f"{name}.schema.json").write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    console.print(f"wrote {len(schemas)} schemas to {out}", highlight=False)


@app.command()
def package(
    model: Annotated[Path, typer.Option("--model", help="A saved sequence classifier (folder).")],
    name: Annotated[str, typer.Option("--name", help="Model name on the server; the archive is <name>.mar.")],
    pruned: Annotated[
        str | None, typer.Option("--pruned", help="Prune these heads first: 'layer:head,head;layer:head' or a JSON file.")
    ] = None,
    backend: Annotated[Literal["torch", "onnx"], typer.Option(help="Predictions on PyTorch or ONNX Runtime.")] = "torch",
    store: Annotated[Path, typer.Option("--store", help="Model store folder.")] = Path("model_store"),
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Longest input in tokens.")] = 128,
    max_chars: Annotated[int, typer.Option("--max-chars", help="Longest text + text_pair in characters.")] = 4096,
    max_steps: Annotated[int, typer.Option("--max-steps", help="Most quadrature steps per explanation.")] = 20,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Most inputs per forward pass.")] = 8,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="Intra-op threads of the worker (default: the runtime's).")
    ] = None,
    onnx_file: Annotated[
        Path | None,
        typer.Option("--onnx-file", help="An exported graph to serve (e.g. model.int8.onnx of auditor prune --int8) instead of exporting."),
    ] = None,
) -> None:
    """Build a TorchServe model archive (.mar) for the classifier, optionally head-pruned and on ONNX Runtime."""
    from auditor.serving import ServingLimits, package_model, parse_heads, validation_message

    try:
        limits = ServingLimits(max_tokens=max_tokens, max_chars=max_chars, max_steps=max_steps, max_batch=max_batch)
    except ValidationError as error:
        raise InputError(validation_message(error)) from None
    heads = parse_heads(pruned) if pruned else None
    archive = package_model(model, name, store, heads, backend, limits, threads=threads, onnx_file=onnx_file)
    console.print(f"wrote {archive}", highlight=False)


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
    top_k: int = typer.Option(10, "--top-k", min=1, help="patterns per class the attack tries"),
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
    top_k: int = typer.Option(10, "--top-k", min=1),
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
# --- head importance and pruning ------------------------------------------------------------------------

def _importance_methods(method: str) -> list[str]:
    from auditor.schemas import IMPORTANCE_METHODS

    if method == "all":
        return list(IMPORTANCE_METHODS)
    if method not in IMPORTANCE_METHODS:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(IMPORTANCE_METHODS)} or all")
    return [method]


def _split_free(spec: str) -> str:
    """``sst2:dev`` → ``sst2`` (a spec without its split), leaving file paths alone."""
    return spec.rsplit(":", 1)[0] if ":" in spec and not Path(spec).exists() else spec


def _cache(cache_dir: Path | None, no_cache: bool):  # noqa: ANN202
    from auditor.heads import ImportanceCache

    return None if no_cache else ImportanceCache(cache_dir)


STEPS_OPTION = typer.Option(3, "--steps", help="quadrature nodes of the attribution")
SEED_OPTION = typer.Option(0, "--seed", help="seed of the random baseline")
CACHE_DIR_OPTION = typer.Option(None, "--cache-dir", help="importance cache (default ~/.cache/auditor/heads)")
NO_CACHE_OPTION = typer.Option(False, "--no-cache", help="always recompute importances, store nothing")


@app.command()
def heads(
    model: str = typer.Option(..., "--model", help="saved model folder"),
    data: str = typer.Option(..., "--data", help="task (sst2, rte…) or TSV file/folder; split train unless given as task:split"),
    method: str = typer.Option("attribution", "--method", help="attribution|attention|taylor|loo|random|all"),
    examples: int = typer.Option(200, "--examples", help="number of examples (the first N of the split)"),
    out: Path = typer.Option(..., "--out", help="JSON file to write (a list of results for --method all)"),
    steps: int = STEPS_OPTION,
    seed: int = SEED_OPTION,
    cache_dir: Path | None = CACHE_DIR_OPTION,
    no_cache: bool = NO_CACHE_OPTION,
) -> None:
    """Importance of every attention head, target = gold label (higher = more important)."""
    from auditor.data import load_dataset
    from auditor.heads import compute_importance
    from auditor.models import load_classifier

    methods = _importance_methods(method)
    classifier = load_classifier(model)
    dataset = load_dataset(data, split="train")
    cache = _cache(cache_dir, no_cache)
    results = []
    for name in methods:
        importance = compute_importance(classifier, dataset, name, examples, steps=steps, seed=seed, cache=cache, show_progress=True)
        console.print(f"{name}: {importance.examples.count} examples of {dataset.name} {dataset.split}, {importance.seconds:.1f} s")
        results.append(importance.model_dump(mode="json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results[0] if method != "all" else results, indent=1) + "\n")
    console.print(f"wrote {out}")


def _load_importance(path: Path, method: str | None):  # noqa: ANN202
    from pydantic import TypeAdapter, ValidationError

    from auditor.schemas import HeadImportance

    try:
        content = json.loads(path.read_text())
        found = TypeAdapter(list[HeadImportance]).validate_python(content if isinstance(content, list) else [content])
    except OSError as error:
        raise InputError(f"cannot read importance file {path}: {error.strerror}") from None
    except (ValueError, ValidationError) as error:
        raise InputError(f"{path} is not an importance file written by auditor heads: {str(error).splitlines()[0]}") from None
    chosen = [i for i in found if method is None or i.method == method]
    if not chosen:
        raise InputError(f"{path} has no {method} importance (it has {', '.join(i.method for i in found)})")
    if len(chosen) > 1:
        raise InputError(f"{path} holds several methods ({', '.join(i.method for i in chosen)}); choose one with --method")
    return chosen[0]


@app.command()
def prune(
    model: str = typer.Option(..., "--model", help="saved model folder"),
    importance: Path = typer.Option(..., "--importance", help="JSON written by auditor heads for this model"),
    out: Path = typer.Option(..., "--out", help="folder for the pruned model"),
    fraction: float | None = typer.Option(None, "--fraction", help="fraction of heads to remove, in [0, 1)"),
    heads_count: int | None = typer.Option(None, "--heads", help="number of heads to remove"),
    method: str | None = typer.Option(None, "--method", help="which method of a multi-method importance file"),
    allow_empty_layers: bool = typer.Option(False, "--allow-empty-layers", help="allow removing every head of a layer"),
    onnx: bool = typer.Option(False, "--onnx", help="also export model.onnx (dynamic batch and sequence axes)"),
    int8: bool = typer.Option(False, "--int8", help="also write model.int8.onnx (dynamic quantisation); needs --data"),
    data: str | None = typer.Option(None, "--data", help="evaluation set (dev split unless task:split) for accuracies"),
) -> None:
    """Remove the least important heads from the weights and save a reloadable model (optionally ONNX)."""
    from auditor.data import load_dataset
    from auditor.heads import accuracy, encode_dataset, scores_tensor
    from auditor.models import load_classifier
    from auditor.pruning import check_importance_matches, heads_for_fraction, prune_model, rank_heads

    if (fraction is None) == (heads_count is None):
        raise InputError("give exactly one of --fraction F or --heads K")
    if int8 and data is None:
        raise InputError("--int8 needs --data: a quantised model is only written with its accuracy measured")
    chosen = _load_importance(importance, method)
    scores = scores_tensor(chosen)
    present = int((~scores.isnan()).sum())
    count = heads_for_fraction(fraction, present) if fraction is not None else int(heads_count)  # type: ignore[arg-type]
    removed = rank_heads(scores, count, keep_per_layer=0 if allow_empty_layers else 1)
    classifier = load_classifier(model)
    check_importance_matches(chosen, classifier)
    metadata = {"importance_method": chosen.method, "importance_examples": chosen.examples.model_dump(), "heads_removed": count}
    folder = prune_model(classifier, removed, out, allow_empty_layers=allow_empty_layers, metadata=metadata)
    console.print(f"removed {count} of {present} heads ({chosen.method} order); saved {folder}")
    report: dict[str, object] = {"heads_removed": count, "removed": {str(k): v for k, v in removed.items()}}
    pruned = load_classifier(folder, device=classifier.device)
    batches = None
    if data is not None:
        dataset = load_dataset(data)
        batches = encode_dataset(pruned, dataset)
        report["evaluation"] = {"dataset": dataset.name, "split": dataset.split, "examples": len(dataset)}
        report["accuracy"] = {"full_pytorch": accuracy(classifier.model, encode_dataset(classifier, dataset)), "pruned_pytorch": accuracy(pruned.model, batches)}
    if onnx or int8:
        from auditor.export import OnnxClassifier, export_onnx, quantize_dynamic

        onnx_path = export_onnx(pruned, folder / "model.onnx")
        report["onnx"] = onnx_path.name
        variants = [("pruned_onnx", onnx_path)]
        if int8:
            int8_path = quantize_dynamic(onnx_path, folder / "model.int8.onnx")
            report["onnx_int8"] = int8_path.name
            variants.append(("pruned_onnx_int8", int8_path))
        if batches is not None:
            for name, path in variants:
                runner = OnnxClassifier(path, folder)
                correct = sum(int((runner.logits(b.encoding).argmax(-1) == b.labels.cpu().numpy()).sum()) for b in batches)
                report["accuracy"][name] = correct / sum(b.size for b in batches)  # type: ignore[index]
    if "accuracy" in report:
        for name, value in report["accuracy"].items():  # type: ignore[attr-defined]
            console.print(f"accuracy {name}: {value:.4f}")
    (folder / "export.json").write_text(json.dumps(report, indent=2) + "\n")


@app.command()
def curves(
    model: str = typer.Option(..., "--model", help="saved model folder"),
    data: str = typer.Option(..., "--data", help="evaluation set: task or TSV (dev split unless task:split)"),
    out: Path = typer.Option(..., "--out", help="curves JSON"),
    plot: Path | None = typer.Option(None, "--plot", help="PNG of accuracy vs fraction pruned"),
    method: str = typer.Option("all", "--method", help="attribution|attention|taylor|loo|random|all"),
    examples: int = typer.Option(200, "--examples", help="importance examples (first N)"),
    importance_data: str | None = typer.Option(None, "--importance-data", help="importance examples (default: train split of --data)"),
    eval_examples: int | None = typer.Option(None, "--eval-examples", help="evaluate on the first N only"),
    fractions: str = typer.Option("0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9", "--fractions", help="comma-separated, each in [0, 1)"),
    allow_empty_layers: bool = typer.Option(False, "--allow-empty-layers", help="allow removing every head of a layer"),
    steps: int = STEPS_OPTION,
    seed: int = SEED_OPTION,
    cache_dir: Path | None = CACHE_DIR_OPTION,
    no_cache: bool = NO_CACHE_OPTION,
) -> None:
    """Accuracy after removing the k least important heads (global ranking) for each method, via head masks."""
    from auditor.data import load_dataset
    from auditor.heads import accuracy, compute_importance, encode_dataset, scores_tensor
    from auditor.models import load_classifier
    from auditor.pruning import heads_for_fraction, plot_curves, pruning_curve
    from auditor.schemas import PruningCurves

    methods = _importance_methods(method)
    try:
        points = tuple(float(f) for f in fractions.split(","))
    except ValueError:
        raise InputError(f"--fractions must be comma-separated numbers, got {fractions!r}") from None
    for f in points:
        heads_for_fraction(f, 1)
    classifier = load_classifier(model)
    evaluation = load_dataset(data).head(eval_examples)
    importance_set = load_dataset(importance_data or _split_free(data), split="train")
    batches = encode_dataset(classifier, evaluation)
    cache = _cache(cache_dir, no_cache)
    keep = 0 if allow_empty_layers else 1
    results = {}
    for name in methods:
        importance = compute_importance(classifier, importance_set, name, examples, steps=steps, seed=seed, cache=cache, show_progress=True)
        results[name] = pruning_curve(classifier.model, batches, scores_tensor(importance), points, keep, name, show_progress=True)
        console.print(f"{name}: " + ", ".join(f"{p.fraction:.0%} {p.accuracy:.3f}" for p in results[name]))
    report = PruningCurves(
        model=classifier.identity,
        evaluation=evaluation.identity(),
        importance_examples=importance_set.head(examples).identity(),
        keep_per_layer=keep,
        full_accuracy=accuracy(classifier.model, batches),
        curves=results,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.model_dump_json(indent=1) + "\n")
    console.print(f"wrote {out}")
    if plot is not None:
        plot_curves(results, plot, title=f"{classifier.identity.name} on {evaluation.name} {evaluation.split}")
        console.print(f"wrote {plot}")
