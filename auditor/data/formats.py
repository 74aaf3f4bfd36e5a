"""The file formats teams keep their data in, read as a stream of rows (row index, place, values): CSV and TSV
with quoting (the ``csv`` module's dialects), JSON Lines, Parquet (pyarrow, batch by batch, the needed
columns only) and a folder written by ``datasets.Dataset.save_to_disk`` (memory-mapped Arrow). A row's place
is what an error names: ``file:line`` for the text formats, ``file: row N`` (1-based) for the columnar ones."""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from auditor.errors import DataError

Row = tuple[int, str, dict[str, object]]
BATCH_ROWS = 1024
DELIMITED = {".csv": csv.excel, ".tsv": csv.excel_tab}
JSON_LINES = (".jsonl", ".ndjson")
PARQUET = (".parquet", ".pq")
FORMATS = "CSV (.csv), TSV (.tsv), JSON Lines (.jsonl, .ndjson), Parquet (.parquet, .pq), a datasets save_to_disk folder"


class RowSource(Protocol):
    """A file's rows, read lazily: ``rows`` stops reading where its caller stops iterating."""

    path: Path
    columns: list[str]

    def rows(self, columns: list[str]) -> Iterator[Row]:
        """Each row's index, place, and the values of ``columns``."""

    def class_names(self, column: str) -> list[str] | None:
        """The names the file declares for the integer values of ``column`` (a ClassLabel), if any."""


def file_digest(paths: list[Path], root: Path) -> hashlib._Hash:
    """SHA-256 of the files' names (relative to ``root``) and bytes, read in blocks."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path.relative_to(root) if path != root else path.name).encode() + b"\0")
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest


def utf8_lines(path: Path) -> Iterator[tuple[int, str]]:
    """The file's lines (line endings kept) with their 1-based numbers; a line that is not UTF-8 is a
    ``DataError`` naming the file and line."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise DataError(f"{path}:{number}: not UTF-8 (byte {error.start} of the line: {error.reason})") from None


class DelimitedSource:
    """CSV or TSV with a header row and the dialect's quoting (a quoted field may hold the delimiter, quotes
    and line breaks); a blank line is skipped, a row with another number of fields than the header is an error."""

    def __init__(self, path: Path, dialect: type[csv.Dialect]) -> None:
        csv.field_size_limit(sys.maxsize)
        self.path, self.dialect = path, dialect
        lines = utf8_lines(path)
        header = next(csv.reader((line for _, line in lines), dialect), None)
        if not header:
            raise DataError(f"{path} is empty: a header row naming the columns comes first")
        self.columns = header

    def _records(self) -> Iterator[tuple[int, list[str]]]:
        numbered = utf8_lines(self.path)
        current = [0]

        def lines() -> Iterator[str]:
            for number, line in numbered:
                current[0] = number
                yield line

        reader = csv.reader(lines(), self.dialect)
        start = 1
        try:
            for record in reader:
                yield start, record
                start = current[0] + 1
        except csv.Error as error:
            raise DataError(f"{self.path}:{current[0]}: {error}") from None

    def rows(self, columns: list[str]) -> Iterator[Row]:
        positions = [self.columns.index(c) for c in columns]
        records = self._records()
        next(records)  # the header
        index = 0
        for line, record in records:
            if not record:
                continue
            if len(record) != len(self.columns):
                raise DataError(f"{self.path}:{line}: {len(record)} fields, the header has {len(self.columns)}")
            yield index, f"{self.path}:{line}", {c: record[p] for c, p in zip(columns, positions)}
            index += 1

    def class_names(self, column: str) -> list[str] | None:
        return None


class JsonLinesSource:
    """One JSON object per line; its columns are the keys of the first object (every row must have them)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        first = next(self._objects(), None)
        if first is None:
            raise DataError(f"{path} is empty: one JSON object per line expected")
        self.columns = list(first[2])

    def _objects(self) -> Iterator[Row]:
        index = 0
        for number, line in utf8_lines(self.path):
            if not line.strip():
                continue
            place = f"{self.path}:{number}"
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{place}: not JSON ({error.msg} at column {error.colno})") from None
            if not isinstance(value, dict):
                raise DataError(f"{place}: a JSON object with the columns as keys expected, got {type(value).__name__}")
            yield index, place, value
            index += 1

    def rows(self, columns: list[str]) -> Iterator[Row]:
        for index, place, value in self._objects():
            missing = [c for c in columns if c not in value]
            if missing:
                raise DataError(f"{place}: no {', '.join(repr(c) for c in missing)} (the row has {', '.join(repr(k) for k in value)})")
            yield index, place, {c: value[c] for c in columns}

    def class_names(self, column: str) -> list[str] | None:
        return None


class ParquetSource:
    """A Parquet file, read one batch of the needed columns at a time (a row group is the most held)."""

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self.path = path
        try:
            self.file = pq.ParquetFile(path)
        except Exception as error:  # pyarrow raises several types for a file that is not Parquet
            raise DataError(f"{path} is not a Parquet file: {error}") from None
        self.columns = list(self.file.schema_arrow.names)

    def rows(self, columns: list[str]) -> Iterator[Row]:
        index = 0
        for batch in self.file.iter_batches(batch_size=BATCH_ROWS, columns=columns):
            for values in batch.to_pylist():
                yield index, f"{self.path}: row {index + 1}", values
                index += 1

    def class_names(self, column: str) -> list[str] | None:
        return None


class ArrowFolderSource:
    """A folder written by ``datasets.Dataset.save_to_disk`` (memory-mapped by ``datasets.load_from_disk``); a
    ``DatasetDict``'s folder gives the split asked for (``dev`` is its ``validation`` split when it has no ``dev``)."""

    def __init__(self, path: Path, split: str) -> None:
        import datasets

        try:
            loaded = datasets.load_from_disk(str(path))
        except Exception as error:  # datasets raises several types for a folder it cannot read
            raise DataError(f"{path} is not a folder written by datasets' save_to_disk: {error}") from None
        if isinstance(loaded, datasets.DatasetDict):
            name = split if split in loaded else "validation" if split == "dev" and "validation" in loaded else None
            if name is None:
                raise DataError(f"{path} has no split {split!r}; its splits are {', '.join(loaded)}")
            loaded = loaded[name]
        self.path, self.dataset = path, loaded
        self.columns = list(loaded.column_names)

    def rows(self, columns: list[str]) -> Iterator[Row]:
        index = 0
        for batch in self.dataset.select_columns(columns).iter(batch_size=BATCH_ROWS):
            for offset in range(len(batch[columns[0]])):
                yield index, f"{self.path}: row {index + 1}", {c: batch[c][offset] for c in columns}
                index += 1

    def class_names(self, column: str) -> list[str] | None:
        feature = self.dataset.features.get(column)
        return list(feature.names) if hasattr(feature, "names") else None


def is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in ("state.json", "dataset_dict.json"))


def open_source(path: Path, split: str) -> RowSource:
    """The row source for ``path`` by its suffix (or a ``save_to_disk`` folder)."""
    if is_saved_dataset(path):
        return ArrowFolderSource(path, split)
    suffix = path.suffix.lower()
    if suffix in DELIMITED:
        return DelimitedSource(path, DELIMITED[suffix])
    if suffix in JSON_LINES:
        return JsonLinesSource(path)
    if suffix in PARQUET:
        return ParquetSource(path)
    raise DataError(f"{path}: unknown data format {suffix or '(no suffix)'!r}; auditor reads {FORMATS}")


def source_fingerprint(source: RowSource) -> str:
    """SHA-256 of the file's bytes (every file of a folder, with their names)."""
    path = source.path
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return file_digest(files, path).hexdigest()
