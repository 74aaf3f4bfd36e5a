"""GLUE-format datasets: tab-separated files with a header row and no quoting.

Single-sentence tasks have a ``sentence`` column, pair tasks ``sentence1``/``sentence2`` (or
``question``/``sentence``, ``question1``/``question2``); the label is in ``label``. Task names such as
``sst2`` or ``SST-2`` resolve to ``<data_dir>/SST-2/<split>.tsv``, where data_dir defaults to
``$AUDITOR_DATA_DIR`` or the ``shared/data/glue`` folder beside the checkout; when no local copy exists and
``source`` allows it, the same task is read from the Hugging Face ``datasets`` hub.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from auditor.errors import DataError
from auditor.schemas import ExamplesUsed

TASK_DIRECTORIES = {"sst2": "SST-2", "rte": "RTE", "mrpc": "MRPC", "qnli": "QNLI", "qqp": "QQP", "cola": "CoLA"}
TASK_LABELS: dict[str, list[str]] = {"rte": ["entailment", "not_entailment"], "qnli": ["entailment", "not_entailment"]}
TEXT_COLUMNS = (("sentence1", "sentence2"), ("question1", "question2"), ("question", "sentence"), ("sentence", None))


@dataclass(frozen=True)
class Example:
    text: str
    text_pair: str | None = None
    label: int | None = None

    @property
    def id(self) -> str:
        """A stable name for the example, from its texts alone: the first 16 hex digits of the SHA-256 of
        ``[text, text_pair]`` as JSON. The same sentence has the same id in every dataset, order and release."""
        return hashlib.sha256(json.dumps([self.text, self.text_pair], ensure_ascii=False).encode()).hexdigest()[:16]


@dataclass
class Dataset:
    """Examples of one split, with what identifies the data they came from."""

    name: str
    split: str
    source: str
    examples: list[Example]
    label_names: list[str] | None = None
    fingerprint: str = field(default="")

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def is_pair(self) -> bool:
        return any(e.text_pair is not None for e in self.examples)

    def identity(self) -> ExamplesUsed:
        """What identifies these examples in artefacts computed from them: the dataset, split and file
        fingerprint, and a digest of the texts and labels themselves, so that any change is noticed."""
        digest = hashlib.sha256()
        for example in self.examples:
            digest.update(repr((example.text, example.text_pair, example.label)).encode())
        return ExamplesUsed(
            dataset=self.name,
            split=self.split,
            source=self.source,
            fingerprint=self.fingerprint,
            count=len(self.examples),
            digest=digest.hexdigest()[:16],
        )

    def sentences(self) -> Dataset:
        """The examples that no longer example of the split contains, word for word (in their order): for a
        treebank's phrases (SST-2's training split labels every phrase of every parse tree) the whole
        sentences; duplicates are dropped. Pair examples are only deduplicated."""
        if self.is_pair:
            seen = set()
            kept = [e for e in self.examples if (e.text, e.text_pair) not in seen and not seen.add((e.text, e.text_pair))]
        else:
            normalised = [f" {' '.join(e.text.split())} " for e in self.examples]
            longest_first = sorted(range(len(self.examples)), key=lambda i: (-len(normalised[i]), i))
            containing: dict[str, list[int]] = {}  # word -> kept examples holding it
            chosen: set[int] = set()
            for i in longest_first:
                words = set(normalised[i].split())
                rarest = min(words, key=lambda w: len(containing.get(w, ())), default=None)
                if rarest is not None and any(normalised[i] in normalised[j] for j in containing.get(rarest, ())):
                    continue
                chosen.add(i)
                for word in words:
                    containing.setdefault(word, []).append(i)
            kept = [e for i, e in enumerate(self.examples) if i in chosen]
        return Dataset(self.name, self.split, self.source, kept, self.label_names, self.fingerprint)

    def head(self, n: int | None) -> Dataset:
        """The first ``n`` examples (all when ``n`` is None), keeping the identity of the data."""
        if n is not None and n < 1:
            raise DataError(f"the number of examples must be positive, got {n}")
        return Dataset(self.name, self.split, self.source, self.examples[:n], self.label_names, self.fingerprint)


def default_data_dir() -> Path:
    if "AUDITOR_DATA_DIR" in os.environ:
        return Path(os.environ["AUDITOR_DATA_DIR"])
    beside_checkout = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"
    return beside_checkout if beside_checkout.is_dir() else Path("../shared/data/glue")


def task_key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def load_dataset(
    spec: str,
    split: str = "dev",
    data_dir: str | Path | None = None,
    source: Literal["auto", "local", "hub"] = "auto",
) -> Dataset:
    """Load ``spec``: a TSV file, a folder holding ``<split>.tsv``, or a GLUE task name (``sst2``, ``RTE``…).

    ``spec`` may carry the split after a colon (``sst2:train``).
    """
    if ":" in spec and not Path(spec).exists():
        spec, split = spec.rsplit(":", 1)
    path = Path(spec)
    if path.is_file():
        return read_tsv(path, split=path.stem)  # a file is its own split: "held-out.tsv" is not "dev"
    if path.is_dir():
        return read_tsv(path / f"{split}.tsv", split=split)
    key = task_key(spec)
    if key not in TASK_DIRECTORIES:
        raise DataError(f"{spec!r} is neither a file, a folder nor a known task ({', '.join(TASK_DIRECTORIES)})")
    local = Path(data_dir or default_data_dir()) / TASK_DIRECTORIES[key] / f"{split}.tsv"
    if source != "hub" and local.is_file():
        return read_tsv(local, split=split, task=key)
    if source == "local":
        raise DataError(f"no local copy of {spec} {split}: {local} does not exist")
    return load_from_hub(key, split)


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
