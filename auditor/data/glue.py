"""GLUE-format datasets: tab-separated files with a header row and no quoting (GLUE's sentences hold quote
characters that quote nothing).

Single-sentence tasks have a ``sentence`` column, pair tasks ``sentence1``/``sentence2`` (or
``question``/``sentence``, ``question1``/``question2``); the label is in ``label``. Task names such as
``sst2`` or ``SST-2`` resolve to ``<data_dir>/SST-2/<split>.tsv``, where data_dir defaults to
``$AUDITOR_DATA_DIR`` or the ``shared/data/glue`` folder beside the checkout; when no local copy exists and
``source`` allows it, the same task is read from the Hugging Face ``datasets`` hub.
"""

from __future__ import annotations

import csv
import hashlib
import os
import sys
from pathlib import Path

from auditor.data.examples import Dataset, Example
from auditor.errors import DataError

TASK_DIRECTORIES = {"sst2": "SST-2", "rte": "RTE", "mrpc": "MRPC", "qnli": "QNLI", "qqp": "QQP", "cola": "CoLA"}
TASK_LABELS: dict[str, list[str]] = {"rte": ["entailment", "not_entailment"], "qnli": ["entailment", "not_entailment"]}
TEXT_COLUMNS = (("sentence1", "sentence2"), ("question1", "question2"), ("question", "sentence"), ("sentence", None))


def default_data_dir() -> Path:
    if "AUDITOR_DATA_DIR" in os.environ:
        return Path(os.environ["AUDITOR_DATA_DIR"])
    beside_checkout = Path(__file__).resolve().parents[3] / "shared" / "data" / "glue"
    return beside_checkout if beside_checkout.is_dir() else Path("../shared/data/glue")


def task_key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def task_path(spec: str, split: str, data_dir: str | Path | None = None) -> tuple[str, Path] | None:
    """The task key and local file of a GLUE task name (None: ``spec`` names no task)."""
    key = task_key(spec)
    if key not in TASK_DIRECTORIES:
        return None
    return key, Path(data_dir or default_data_dir()) / TASK_DIRECTORIES[key] / f"{split}.tsv"


def is_glue_header(path: Path) -> bool:
    """Whether the TSV file's header names GLUE's text columns (it is then read as GLUE: no quoting)."""
    with path.open("rb") as handle:
        header = handle.readline().decode("utf-8", errors="replace").rstrip("\r\n").split("\t")
    return any(a in header and (b is None or b in header) for a, b in TEXT_COLUMNS)


def read_tsv(path: Path, split: str = "dev", task: str | None = None) -> Dataset:
    """Parse a GLUE-format TSV file."""
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8: {error}") from None
    csv.field_size_limit(sys.maxsize)
    rows = list(csv.reader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows:
        raise DataError(f"{path} is empty")
    header = rows[0]
    columns = next(((a, b) for a, b in TEXT_COLUMNS if a in header and (b is None or b in header)), None)
    if columns is None:
        raise DataError(f"{path}: no text column in header {header}; expected 'sentence' or 'sentence1'/'sentence2'")
    first, second = header.index(columns[0]), None if columns[1] is None else header.index(columns[1])
    label_column = header.index("label") if "label" in header else None
    task = task or task_key(path.parent.name)
    for line_number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"{path}:{line_number}: expected {len(header)} tab-separated fields, got {len(row)}")
    values = {row[label_column] for row in rows[1:]} if label_column is not None else set()
    label_names = TASK_LABELS.get(task) or _label_vocabulary(values)
    examples = [
        Example(
            row[first],
            None if second is None else row[second],
            None if label_column is None else _parse_label(row[label_column], label_names, path, line_number),
        )
        for line_number, row in enumerate(rows[1:], start=2)
    ]
    return Dataset(
        name=task if task in TASK_DIRECTORIES else path.stem,
        split=split,
        source=str(path.resolve()),
        examples=examples,
        label_names=label_names,
        fingerprint=hashlib.sha256(raw).hexdigest()[:16],
    )


def _label_vocabulary(values: set[str]) -> list[str] | None:
    """The known label list that names every label string in a file of unknown task (None: integer labels)."""
    if all(value.lstrip("-").isdigit() for value in values):
        return None
    return next((names for names in TASK_LABELS.values() if values <= set(names)), None)


def _parse_label(value: str, label_names: list[str] | None, path: Path, line_number: int) -> int:
    if label_names is not None and value in label_names:
        return label_names.index(value)
    try:
        return int(value)
    except ValueError:
        raise DataError(f"{path}:{line_number}: cannot read label {value!r}") from None


def load_from_hub(task: str, split: str) -> Dataset:
    """The GLUE task from the ``datasets`` hub (needs network access); GLUE's dev split is 'validation'."""
    try:
        import datasets

        hub = datasets.load_dataset("nyu-mll/glue", task, split="validation" if split == "dev" else split)
    except Exception as error:  # any failure to reach or read the hub is reported the same way
        raise DataError(f"{task} {split} is not available locally and could not be loaded from the hub: {error}") from None
    features = hub.features
    first, second = next((a, b) for a, b in TEXT_COLUMNS if a in features and (b is None or b in features))
    label_names = list(features["label"].names) if "label" in features else None
    examples = [Example(row[first], None if second is None else row[second], row.get("label")) for row in hub]
    return Dataset(task, split, f"hub:nyu-mll/glue/{task}", examples, label_names, hub._fingerprint[:16])
