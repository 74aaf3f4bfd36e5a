"""``auditor heads``, ``auditor prune`` and ``auditor curves``: head importance and pruning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from auditor.cli.app import app, console
from auditor.cli.data_options import LabelColumn, LabelMap, TextColumn, TextPairColumn, data_mapping, load_data, mapping_for
from auditor.cli.options import AllowEmptyLayers, CacheDir, ModelPath, NoCache, RayAddress, Seed, Steps, Workers, parse_fractions, ray_pool
from auditor.errors import InputError

if TYPE_CHECKING:
    from auditor.heads import ImportanceCache
    from auditor.schemas import HeadImportance

ImportanceMethod = Annotated[str, typer.Option("--method", help="attribution|attention|taylor|loo|random|all.")]
ImportanceExamples = Annotated[int, typer.Option("--examples", min=1, help="Importance examples (the first N of the split).")]


def importance_methods(method: str) -> list[str]:
    from auditor.schemas import IMPORTANCE_METHODS

    if method == "all":
        return list(IMPORTANCE_METHODS)
    if method not in IMPORTANCE_METHODS:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(IMPORTANCE_METHODS)} or all")
    return [method]


def without_split(spec: str) -> str:
    """``sst2:dev`` → ``sst2`` (a spec without its split), leaving file paths alone."""
    return spec.rsplit(":", 1)[0] if ":" in spec and not Path(spec).exists() else spec


def importance_cache(cache_dir: Path | None, no_cache: bool) -> ImportanceCache | None:
    from auditor.heads import ImportanceCache

    return None if no_cache else ImportanceCache(cache_dir)


@app.command()
def heads(
    model: ModelPath,
    data: Annotated[str, typer.Option("--data", help="Task (sst2, rte…) or data file (TSV, CSV, JSONL, Parquet, save_to_disk folder); train split unless task:split.")],
    out: Annotated[Path, typer.Option("--out", help="JSON file to write (a list of results for --method all).")],
    method: ImportanceMethod = "attribution",
    examples: ImportanceExamples = 200,
    steps: Steps = 3,
    seed: Seed = 0,
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
    ray_address: RayAddress = None,
    workers: Workers = None,
    text_column: TextColumn = None,
    text_pair_column: TextPairColumn = None,
    label_column: LabelColumn = None,
    label_map: LabelMap = None,
) -> None:
    """Importance of every attention head, target = gold label (higher = more important)."""
    from auditor.heads import compute_importance
    from auditor.models import load_classifier

    methods = importance_methods(method)
    pool_context = ray_pool(ray_address, workers)
    classifier = load_classifier(model)
    mapping = data_mapping(text_column, text_pair_column, label_column, label_map)
    dataset = load_data(data, "train", mapping_for(data, mapping), classifier.labels)
    cache = importance_cache(cache_dir, no_cache)
    results = []
    with pool_context as pool:
        executor = None
        if pool is not None:
            from auditor.distributed import RayImportanceExecutor

            executor = RayImportanceExecutor(pool, model)
        for name in methods:
            importance = compute_importance(
                classifier, dataset, name, examples, steps=steps, seed=seed, cache=cache, show_progress=True, executor=executor
            )
            console.print(f"{name}: {importance.examples.count} examples of {dataset.name} {dataset.split}, {importance.seconds:.1f} s")
            results.append(importance.model_dump(mode="json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results[0] if method != "all" else results, indent=1) + "\n")
    console.print(f"wrote {out}")


def load_importance(path: Path, method: str | None) -> HeadImportance:
    """The one importance of ``method`` (or the only one) in a file written by ``auditor heads``."""
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
    model: ModelPath,
    importance: Annotated[Path, typer.Option("--importance", help="JSON written by auditor heads for this model.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the pruned model.")],
    fraction: Annotated[float | None, typer.Option("--fraction", help="Fraction of heads to remove, in [0, 1).")] = None,
    heads_count: Annotated[int | None, typer.Option("--heads", min=0, help="Number of heads to remove.")] = None,
    method: Annotated[str | None, typer.Option("--method", help="Which method of a multi-method importance file.")] = None,
    onnx: Annotated[bool, typer.Option("--onnx", help="Also export model.onnx (dynamic batch and sequence axes).")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Also write model.int8.onnx (dynamic quantisation); needs --data.")] = False,
    data: Annotated[str | None, typer.Option("--data", help="Evaluation set (dev split unless task:split) for accuracies.")] = None,
    text_column: TextColumn = None,
    text_pair_column: TextPairColumn = None,
    label_column: LabelColumn = None,
    label_map: LabelMap = None,
) -> None:
    """Remove the least important heads from the weights and save a reloadable model (optionally ONNX).

    Every layer keeps at least one head: transformers cannot run a layer without heads (measure that with
    head masks instead: ``auditor curves --allow-empty-layers``)."""
    from auditor.encoders import encoder_for
    from auditor.heads import accuracy, encode_dataset, scores_tensor
    from auditor.models import load_classifier
    from auditor.pruning import check_importance_matches, heads_for_fraction, prune_model, rank_shared_heads

    if (fraction is None) == (heads_count is None):
        raise InputError("give exactly one of --fraction F or --heads K")
    if int8 and data is None:
        raise InputError("--int8 needs --data: a quantised model is only written with its accuracy measured")
    chosen = load_importance(importance, method)
    scores = scores_tensor(chosen)
    present = int((~scores.isnan()).sum())
    count = heads_for_fraction(fraction, present) if fraction is not None else int(heads_count)  # type: ignore[arg-type]
    classifier = load_classifier(model)
    check_importance_matches(chosen, classifier)
    removed = rank_shared_heads(scores, count, encoder_for(classifier.model).weight_groups(), keep_per_layer=1)
    count = sum(map(len, removed.values()))  # fewer when layers share weights and count is not a multiple
    metadata = {"importance_method": chosen.method, "importance_examples": chosen.examples.model_dump(), "heads_removed": count}
    from auditor.serving.archive import checkpoint_dtype

    # stored in the checkpoint's dtype (a float16 model stays float16); evaluated and exported in float32
    folder = prune_model(classifier, removed, out, metadata=metadata, dtype=checkpoint_dtype(Path(model)))
    console.print(f"removed {count} of {present} heads ({chosen.method} order); saved {folder}")
    report: dict[str, object] = {"heads_removed": count, "removed": {str(k): v for k, v in removed.items()}}
    pruned = load_classifier(folder, device=classifier.device)
    batches = None
    if data is not None:
        mapping = data_mapping(text_column, text_pair_column, label_column, label_map)
        dataset = load_data(data, "dev", mapping_for(data, mapping), classifier.labels)
        batches = encode_dataset(pruned, dataset)
        report["evaluation"] = {"dataset": dataset.name, "split": dataset.split, "examples": len(dataset)}
        report["accuracy"] = {
            "full_pytorch": accuracy(classifier.model, encode_dataset(classifier, dataset)),
            "pruned_pytorch": accuracy(pruned.model, batches),
        }
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
    model: ModelPath,
    data: Annotated[str, typer.Option("--data", help="Evaluation set: task or TSV (dev split unless task:split).")],
    out: Annotated[Path, typer.Option("--out", help="Curves JSON.")],
    plot: Annotated[Path | None, typer.Option("--plot", help="PNG of accuracy vs fraction pruned.")] = None,
    method: ImportanceMethod = "all",
    examples: ImportanceExamples = 200,
    importance_data: Annotated[
        str | None, typer.Option("--importance-data", help="Importance examples (default: train split of --data).")
    ] = None,
    eval_examples: Annotated[int | None, typer.Option("--eval-examples", min=1, help="Evaluate on the first N only.")] = None,
    fractions: Annotated[
        str, typer.Option("--fractions", help="Comma-separated, each in [0, 1).")
    ] = "0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9",
    allow_empty_layers: AllowEmptyLayers = False,
    steps: Steps = 3,
    seed: Seed = 0,
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
    text_column: TextColumn = None,
    text_pair_column: TextPairColumn = None,
    label_column: LabelColumn = None,
    label_map: LabelMap = None,
) -> None:
    """Accuracy after removing the k least important heads (global ranking) for each method, via head masks."""
    from auditor.heads import accuracy, compute_importance, encode_dataset, scores_tensor
    from auditor.models import load_classifier
    from auditor.pruning import heads_for_fraction, plot_curves, pruning_curve
    from auditor.schemas import PruningCurves

    methods = importance_methods(method)
    points = parse_fractions(fractions)
    for f in points:
        heads_for_fraction(f, 1)
    classifier = load_classifier(model)
    mapping = data_mapping(text_column, text_pair_column, label_column, label_map)
    evaluation = load_data(data, "dev", mapping_for(data, mapping), classifier.labels).head(eval_examples)
    importance_spec = importance_data or without_split(data)
    importance_set = load_data(importance_spec, "train", mapping_for(importance_spec, mapping), classifier.labels)
    batches = encode_dataset(classifier, evaluation)
    cache = importance_cache(cache_dir, no_cache)
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
        plot_curves(results, plot, title=f"{classifier.identity.name} on {evaluation.identity().title}")
        console.print(f"wrote {plot}")
