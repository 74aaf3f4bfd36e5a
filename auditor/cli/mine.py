"""``auditor mine``: attribution patterns mined once from a model on training data, for later audits."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from auditor.cli.app import app, console
from auditor.cli.options import RayAddress, Steps, Workers, ray_pool
from auditor.data import load_dataset
from auditor.errors import InputError

if TYPE_CHECKING:
    from auditor.distributed import RayPool
    from auditor.schemas import TriggerSet
    from auditor.triggers import MiningExecutor


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
