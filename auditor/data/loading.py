"""The one loader behind every ``--data``: a GLUE task name, a GLUE TSV, or a team's own file (CSV, TSV,
JSON Lines, Parquet, a ``save_to_disk`` folder) with its column and label mapping, read no further than the
rows asked for."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from auditor.data.examples import Dataset, Example
from auditor.data.formats import DELIMITED, JSON_LINES, PARQUET, RowSource, is_saved_dataset, open_source, source_fingerprint
from auditor.data.glue import TASK_DIRECTORIES, is_glue_header, load_from_hub, read_tsv, task_path
from auditor.data.mapping import DataMapping, LabelResolver
from auditor.data.selection import RowSelection, select_examples
from auditor.errors import DataError

SUFFIXES = (".tsv", *DELIMITED, *JSON_LINES, *PARQUET)


def load_dataset(
    spec: str,
    split: str = "dev",
    data_dir: str | Path | None = None,
    source: Literal["auto", "local", "hub"] = "auto",
    mapping: DataMapping | None = None,
    labels: Sequence[str] | None = None,
    selection: RowSelection | None = None,
) -> Dataset:
    """Load ``spec``: a GLUE task name (``sst2``, ``RTE``…, the split after a colon: ``sst2:train``), a data
    file, a ``save_to_disk`` folder, or a folder holding ``<split>.tsv`` (or .csv, .jsonl, .parquet).

    A ``.tsv`` file whose header names GLUE's text columns, read without a ``mapping``, is GLUE (no quoting).
    Any other file is read through ``mapping`` (``DataMapping``; default columns ``sentence``/``text`` and
    ``label``), its labels by the model's ``labels`` (``LabelResolver``); a file without a label column gives
    unlabelled examples. ``selection`` picks the rows (default: all); a task's rows are read as published,
    a file's repeated texts are kept once (``Dataset.duplicates``)."""
    mapping = mapping or DataMapping()
    selection = selection or RowSelection()
    if ":" in spec and not Path(spec).exists():
        spec, split = spec.rsplit(":", 1)
    path = Path(spec)
    if path.is_dir() and not is_saved_dataset(path):
        found = [path / f"{split}{suffix}" for suffix in SUFFIXES if (path / f"{split}{suffix}").is_file()]
        if not found:
            raise DataError(f"{path} holds no {split} split ({', '.join(split + s for s in SUFFIXES)}) and is no save_to_disk folder")
        path = found[0]
    elif path.is_file():
        split = path.stem  # a file is its own split: "held-out.tsv" is not "dev"
    elif not path.exists():
        return _load_task(spec, split, data_dir, source, mapping, selection)
    if path.suffix.lower() == ".tsv" and mapping.is_default and is_glue_header(path):
        dataset = read_tsv(path, split=split)
        return _select_read(dataset, selection, keep_duplicates=False)
    return read_file(open_source(path, split), split, mapping, labels, selection)


def _load_task(
    spec: str, split: str, data_dir: str | Path | None, source: str, mapping: DataMapping, selection: RowSelection
) -> Dataset:
    found = task_path(spec, split, data_dir)
    if found is None:
        raise DataError(f"{spec!r} is neither a file, a folder nor a known task ({', '.join(TASK_DIRECTORIES)})")
    if not mapping.is_default:
        raise DataError(f"{spec} is a GLUE task, read in its own layout: --text-column, --label-column and --label-map are for a data file")
    key, local = found
    if source != "hub" and local.is_file():
        dataset = read_tsv(local, split=split, task=key)
    elif source == "local":
        raise DataError(f"no local copy of {spec} {split}: {local} does not exist")
    else:
        dataset = load_from_hub(key, split)
    return _select_read(dataset, selection, keep_duplicates=True)


def _select_read(dataset: Dataset, selection: RowSelection, keep_duplicates: bool) -> Dataset:
    """A dataset read whole (GLUE), narrowed to ``selection`` (its rows are lines 2, 3… of its file)."""
    if selection == RowSelection() and keep_duplicates:
        return dataset
    rows = ((i, f"{dataset.source}:{i + 2}", e) for i, e in enumerate(dataset.examples))
    examples, duplicates = select_examples(rows, lambda example, _: example, selection, keep_duplicates)
    return Dataset(
        dataset.name, dataset.split, dataset.source, examples, dataset.label_names, dataset.fingerprint,
        duplicates=duplicates, sample_seed=selection.seed,
    )  # fmt: skip


def read_file(
    source: RowSource, split: str, mapping: DataMapping, labels: Sequence[str] | None, selection: RowSelection
) -> Dataset:
    """The examples ``selection`` picks from ``source``, through ``mapping``: a row with an empty text, or a
    label that names none of ``labels``, is a ``DataError`` naming its place."""
    file = str(source.path)
    text, pair, label = mapping.columns(source.columns, file)
    resolve = LabelResolver(labels, mapping.label_map, source.class_names(label) if label else None)

    def field(values: dict[str, object], column: str, place: str) -> str:
        value = values[column]
        if not isinstance(value, str):
            raise DataError(f"{place}: column {column!r} holds {type(value).__name__} {value!r}, not text")
        if not value.strip():
            raise DataError(f"{place}: empty text in column {column!r}")
        return value

    def convert(values: dict[str, object], place: str) -> Example:
        return Example(
            field(values, text, place),
            None if pair is None else field(values, pair, place),
            None if label is None else resolve(values[label], place),
        )

    columns = [c for c in (text, pair, label) if c is not None]
    examples, duplicates = select_examples(source.rows(columns), convert, selection)
    if not examples:
        raise DataError(f"{file} has no rows")
    described = mapping.describe(text, pair, label)
    fingerprint = hashlib.sha256(f"{source_fingerprint(source)}\0{described}".encode()).hexdigest()[:16]
    name = source.path.name if source.path.is_dir() else source.path.stem
    label_names = list(labels) if labels is not None and label is not None else None
    return Dataset(
        name, split, str(source.path.resolve()), examples, label_names, fingerprint, mapping=described,
        duplicates=duplicates, sample_seed=selection.seed,
    )  # fmt: skip
