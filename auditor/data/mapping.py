"""How a file's columns and labels become examples: which columns hold the text, its pair and the label, and
how label values name the model's classes (``--text-column``, ``--text-pair-column``, ``--label-column``,
``--label-map``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from auditor.errors import DataError, InputError

DEFAULT_TEXT_COLUMNS = (
    ("sentence1", "sentence2"),
    ("question1", "question2"),
    ("question", "sentence"),
    ("premise", "hypothesis"),
    ("sentence", None),
    ("text", None),
)
"""The text columns looked for, in order, when ``--text-column`` is not given."""
DEFAULT_LABEL_COLUMN = "label"


@dataclass(frozen=True)
class DataMapping:
    """The columns of a file that hold the text, its pair and the label (None: the defaults), and a map from
    the file's label strings to the model's label names."""

    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None
    label_map: tuple[tuple[str, str], ...] = ()

    @property
    def is_default(self) -> bool:
        return self == DataMapping()

    def columns(self, available: Sequence[str], file: str) -> tuple[str, str | None, str | None]:
        """The text, text pair and label columns among ``available`` (the label None: the file has no labels),
        or a ``DataError`` that names the columns there are."""
        names = ", ".join(repr(c) for c in available) or "none"
        for option, column in (("--text-column", self.text_column), ("--text-pair-column", self.text_pair_column),
                               ("--label-column", self.label_column)):  # fmt: skip
            if column is not None and column not in available:
                raise DataError(f"{file}: no column {column!r} ({option}); the columns are {names}")
        if self.text_column is not None:
            text, pair = self.text_column, self.text_pair_column
        else:
            found = next(((a, b) for a, b in DEFAULT_TEXT_COLUMNS if a in available and (b is None or b in available)), None)
            if found is None:
                raise DataError(f"{file}: no text column; the columns are {names}: name one with --text-column")
            text, pair = found[0], self.text_pair_column or found[1]
        label = self.label_column or (DEFAULT_LABEL_COLUMN if DEFAULT_LABEL_COLUMN in available else None)
        return text, pair, label

    def describe(self, text: str, pair: str | None, label: str | None) -> str:
        """The mapping in words, part of the data's identity: ``text 'review'; label 'sentiment' (pos=positive)``."""
        parts = [f"text {text!r}"] + ([f"text pair {pair!r}"] if pair else [])
        parts.append(f"label {label!r}" if label else "no label")
        mapped = ", ".join(f"{k}={v}" for k, v in self.label_map)
        return "; ".join(parts) + (f" ({mapped})" if mapped else "")


def parse_label_map(value: str | None) -> tuple[tuple[str, str], ...]:
    """``'pos=positive,neg=negative'`` → ``(('pos', 'positive'), ('neg', 'negative'))``."""
    if not value:
        return ()
    pairs = []
    for part in value.split(","):
        key, equals, name = (s.strip() for s in part.partition("="))
        if not equals or not key or not name:
            raise InputError(f"--label-map takes FILE_LABEL=MODEL_LABEL pairs separated by commas, such as pos=positive,neg=negative; got {part!r}")
        pairs.append((key, name))
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise InputError(f"--label-map maps {next(k for k in keys if keys.count(k) > 1)!r} twice")
    return tuple(pairs)


class LabelResolver:
    """Reads a row's label as the index of one of the model's labels: a label name in any case, a class
    index (an integer or a string of digits), or a string that ``--label-map`` maps to either."""

    def __init__(self, labels: Sequence[str] | None, label_map: tuple[tuple[str, str], ...] = (), names: Sequence[str] | None = None):
        """``labels``: the model's labels (None: only class indices are read); ``names``: the names a file
        declares for its integer labels (a ``datasets`` ClassLabel), read as the strings they name."""
        self.labels = list(labels) if labels is not None else None
        self.mapped = {key.casefold(): name for key, name in label_map}
        self.names = list(names) if names is not None else None
        if self.labels is not None:
            for key, name in label_map:
                if self._index(name) is None:
                    raise DataError(f"--label-map {key}={name}: {name!r} is not one of the model's labels ({', '.join(self.labels)})")

    def _index(self, value: str) -> int | None:
        if self.labels is not None:
            folded = [label.casefold() for label in self.labels]
            if value.casefold() in folded:
                return folded.index(value.casefold())
        if value.isdigit() and (self.labels is None or int(value) < len(self.labels)):
            return int(value)
        return None

    def __call__(self, value: object, place: str) -> int:
        if value is None or (isinstance(value, str) and not value.strip()):
            raise DataError(f"{place}: empty label")
        if self.names is not None and isinstance(value, int) and 0 <= value < len(self.names):
            value = self.names[value]
        text = str(value).strip()
        if isinstance(value, float) and value.is_integer():
            text = str(int(value))
        index = self._index(self.mapped.get(text.casefold(), text))
        if index is None:
            known = f"the model's labels are {', '.join(self.labels)}" if self.labels is not None else "no model labels to read it by"
            mapped = "; --label-map maps " + ", ".join(sorted(self.mapped)) if self.mapped else ""
            raise DataError(f"{place}: label {value!r} is not a label of the model ({known}, or a class index){mapped}")
        return index
