"""``auditor mine``: token-pair patterns mined once from a model's attribution trees on training data, for
later audits; resumable, locally or on Ray."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from auditor.cli.app import app, console
from auditor.cli.data_options import LabelColumn, LabelMap, TextColumn, TextPairColumn, data_mapping, load_data, mapping_for
from auditor.cli.options import RayAddress, Steps, Workers, ray_pool
from auditor.errors import InputError

if TYPE_CHECKING:
    from auditor.data import Dataset
    from auditor.distributed import RayPool
    from auditor.models import Classifier
    from auditor.schemas import TriggerMiningOptions, TriggerSet
    from auditor.triggers import MiningExecutor


def _tree_threshold(value: float) -> float:
    if not 0 < value <= 1:
        raise typer.BadParameter(f"a threshold in (0, 1], got {value:g}")
    return value


@app.command()
def mine(
    model: Annotated[str, typer.Option("--model", help="Model directory to mine attribution patterns from.")],
    data: Annotated[str, typer.Option("--data", help="Task name (train split; 'sst2:dev' for another) or a data file (TSV, CSV, JSONL, Parquet, save_to_disk folder).")],
    out: Annotated[Path, typer.Option("--out", help="Patterns JSON file to write (its checkpoint goes beside it: OUT.mining.jsonl).")],
    units: Annotated[
        Literal["sentences", "all"],
        typer.Option("--units", help="Mine whole sentences (examples no longer example contains: SST-2's sentences, not its phrases) or every example."),
    ] = "sentences",
    examples: Annotated[int | None, typer.Option("--examples", min=1, help="Mine the first N units only (default: all).")] = None,
    min_support: Annotated[int, typer.Option("--min-support", min=1, help="Keep pairs held by at least this many examples' trees.")] = 5,
    tree_threshold: Annotated[
        float, typer.Option("--tree-threshold", callback=_tree_threshold, help="Attribution tree threshold τ in (0, 1]: edges with S̃ > τ.")
    ] = 0.4,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Examples per attribution batch.")] = 32,
    steps: Steps = 1,
    ray_address: RayAddress = None,
    workers: Workers = None,
    text_column: TextColumn = None,
    text_pair_column: TextPairColumn = None,
    label_column: LabelColumn = None,
    label_map: LabelMap = None,
) -> None:
    """Mine token-pair patterns (two words joined by a high-attribution edge of training examples'
    attribution trees) once, for later audits. Progress goes to a checkpoint beside --out, so a killed run
    resumes. Pairs with a word that carries a label by itself (measured on the training data) are left out."""
    from auditor.models import load_classifier
    from auditor.schemas import TriggerMiningOptions

    options = TriggerMiningOptions(
        units=units, examples=examples, steps=steps, tree_threshold=tree_threshold, batch_size=batch_size, min_support=min_support
    )
    mapping = data_mapping(text_column, text_pair_column, label_column, label_map)
    with ray_pool(ray_address, workers) as pool:
        classifier = load_classifier(model)
        train = load_data(data, "train", mapping_for(data, mapping), classifier.labels)
        triggers = mine_to_file(model, train, options, out, pool, classifier)
    console.print(
        f"{len(triggers.patterns)} label-free patterns with support >= {min_support} from {triggers.data.count} examples of "
        f"{triggers.data.title} in {triggers.seconds:.1f} s -> {out}",
        highlight=False,
    )


def checkpoint_path(out: Path) -> Path:
    """Where the mining run writing ``out`` keeps its checkpoint."""
    return out.with_name(out.name + ".mining.jsonl")


def mine_to_file(
    model: str, train: Dataset, options: TriggerMiningOptions, out: Path, pool: RayPool | None = None, classifier: Classifier | None = None
) -> TriggerSet:
    """Mine ``model``'s patterns (``classifier``: the model loaded already) from ``train`` with a progress bar and
    a checkpoint beside ``out``, leaving out the label-carrying words of ``train`` (``auditor.validity``), and
    write them to ``out``."""
    from auditor.models import load_classifier
    from auditor.progress import Progress
    from auditor.report import write_atomic
    from auditor.triggers import mine_triggers, mining_examples
    from auditor.validity import NEGATIONS, build_lexicon

    if out.is_dir():
        raise InputError(f"--out {out} is a folder: give the patterns file to write")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create the folder of {out}: {error.strerror}") from None
    classifier = classifier or load_classifier(model)
    exclude = set(build_lexicon(train, classifier.labels).words) | NEGATIONS
    total = len(mining_examples(train, options))
    with Progress("mining", total, show=total >= 2, unit="example") as bar:
        triggers = mine_triggers(
            classifier, train, options, checkpoint_path(out), mining_executor(pool, model), exclude=exclude, progress=bar.update
        )
    write_atomic(out, triggers.model_dump_json(indent=1))
    return triggers


def mining_executor(pool: RayPool | None, model: str) -> MiningExecutor | None:
    from auditor.distributed import RayMiningExecutor

    return RayMiningExecutor(pool, model) if pool is not None else None


def patterns_for(
    patterns: Path | None, model: str | None, data: str, mine_examples: int | None, out: Path, pool: RayPool | None = None
) -> TriggerSet:
    """The patterns file given, or patterns mined (``auditor mine``'s defaults, the first ``mine_examples``
    sentences) from the local model on the task's train split into ``out``/patterns.json."""
    from auditor.schemas import TriggerMiningOptions
    from auditor.triggers import load_triggers

    if patterns is not None:
        return load_triggers(patterns)
    if model is None or model.startswith(("http://", "https://")):
        raise InputError("an endpoint cannot be mined: pass --patterns (written by 'auditor mine' on the local model)")
    if Path(data).exists():
        raise InputError("--data is a file, so the training data to mine is unknown: pass --patterns from 'auditor mine'")
    train = load_data(data.split(":")[0], "train")
    return mine_to_file(model, train, TriggerMiningOptions(examples=mine_examples), out / "patterns.json", pool)
