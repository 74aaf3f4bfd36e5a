"""The options of every command that reads ``--data``: which columns hold the text, its pair and the label, how
the file's labels name the model's, and whether the examples are a seeded random sample; and the one call
that loads the data and says what it left out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from auditor.cli.app import console

if TYPE_CHECKING:
    from auditor.data import Dataset, DataMapping, RowSelection

TextColumn = Annotated[
    str | None, typer.Option("--text-column", help="The data file's text column (default: sentence, sentence1, text… whichever it has).")
]
TextPairColumn = Annotated[str | None, typer.Option("--text-pair-column", help="The data file's second text column, for sentence pairs.")]
LabelColumn = Annotated[
    str | None, typer.Option("--label-column", help="The data file's label column (default: label; none: the model's predictions are the reference).")
]
LabelMap = Annotated[
    str | None,
    typer.Option("--label-map", help="The file's label strings as the model's labels, e.g. pos=positive,neg=negative (names in any case and class indices need none)."),
]
Sample = Annotated[
    bool,
    typer.Option("--sample", help="Take a random sample of --examples rows (seeded by --seed) instead of the first rows; one pass over the file."),
]

DUPLICATES_SHOWN = 5


def data_mapping(text_column: str | None, text_pair_column: str | None, label_column: str | None, label_map: str | None) -> DataMapping:
    from auditor.data import DataMapping, parse_label_map

    return DataMapping(text_column, text_pair_column, label_column, parse_label_map(label_map))


def load_data(
    spec: str,
    split: str,
    mapping: DataMapping | None = None,
    labels: Sequence[str] | None = None,
    selection: RowSelection | None = None,
) -> Dataset:
    """``auditor.data.load_dataset``, saying on stderr (one line) which repeated rows it left out."""
    from auditor.data import load_dataset

    dataset = load_dataset(spec, split, mapping=mapping, labels=labels, selection=selection)
    if dataset.duplicates:
        shown = "; ".join(f"{d.place} repeats {d.first}" for d in dataset.duplicates[:DUPLICATES_SHOWN])
        more = f"; and {len(dataset.duplicates) - DUPLICATES_SHOWN} more" if len(dataset.duplicates) > DUPLICATES_SHOWN else ""
        console.print(f"warning: {len(dataset.duplicates)} repeated texts kept once: {shown}{more}", highlight=False)
    return dataset


def mapping_for(spec: str, mapping: DataMapping) -> DataMapping | None:
    """``mapping`` for a data file or folder, None for a task name (read in GLUE's layout)."""
    return mapping if Path(spec.split(":")[0]).exists() or Path(spec).exists() else None
