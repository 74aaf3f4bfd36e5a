"""``auditor explain`` and ``auditor schema``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError

from auditor.cli.app import app, console, output
from auditor.cli.options import Method, ModelPath, Steps, parse_layers, parse_target, read_text_file
from auditor.errors import InputError, validation_message

if TYPE_CHECKING:
    from auditor.schemas import Explanation, ExplanationOptions


@app.command()
def explain(
    model: ModelPath,
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to explain, one input each.", show_default=False)] = None,
    pair: Annotated[str | None, typer.Option("--pair", help="Second sentence, for a pair model (one TEXT).")] = None,
    input_file: Annotated[
        Path | None,
        typer.Option("--input", help="Texts from a file: .tsv in GLUE format, else one per line (a TAB starts the pair)."),
    ] = None,
    steps: Steps = 3,
    method: Method = "gausslegendre",
    target: Annotated[str, typer.Option("--target", help="'predicted' or a class index.")] = "predicted",
    layers: Annotated[str | None, typer.Option("--layers", help="Encoder layers to attribute, e.g. 0,1,5 (default: all).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=0, help="Token pairs reported per layer.")] = 5,
    threshold: Annotated[float, typer.Option("--threshold", help="τ of the attribution tree.")] = 0.4,
    truncate: Annotated[bool, typer.Option("--truncate", help="Cut inputs longer than the model's limit.")] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the explanations (a JSON list) here.")] = None,
    html_path: Annotated[Path | None, typer.Option("--html", help="Write a self-contained HTML page here.")] = None,
    matrices: Annotated[bool, typer.Option("--matrices", help="Put every head's attribution matrix in the JSON.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Inputs attributed together.")] = 8,
) -> None:
    """Explain predictions with self-attention attribution: top token pairs per layer and the attribution tree."""
    from pydantic import TypeAdapter

    from auditor.explain import explain_batch
    from auditor.models import check_inputs_have_tokens, load_classifier
    from auditor.progress import Progress
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
    check_inputs_have_tokens(classifier.tokenizer, inputs, pairs)  # before the progress bar: one line
    with Progress("explaining", len(inputs), show=len(inputs) >= 2, unit="input") as progress:
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
        raise InputError(f"invalid option: {validation_message(error)}") from None


def gather_inputs(texts: list[str], pair: str | None, input_file: Path | None) -> tuple[list[str], list[str | None] | None]:
    """The texts (and pairs) from the arguments and the --input file, in that order."""
    if pair is not None and len(texts) != 1:
        raise InputError("--pair needs exactly one TEXT")
    pairs: list[str | None] = [pair] * len(texts)
    texts = list(texts)
    if input_file is not None:
        if input_file.suffix == ".tsv":
            from auditor.data import read_tsv

            read_text_file(input_file, "--input")  # the same one-line errors as for a text file
            examples = read_tsv(input_file).examples
            texts += [example.text for example in examples]
            pairs += [example.text_pair for example in examples]
        else:
            for line in read_text_file(input_file, "--input").splitlines():
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
