"""Examples and the datasets that hold them, with what identifies the data they came from."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Literal

from auditor.errors import DataError
from auditor.schemas import ExamplesUsed


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


@dataclass(frozen=True)
class Duplicate:
    """A row left out because an earlier row has the same text (and text pair)."""

    place: str
    first: str


@dataclass
class Dataset:
    """Examples of one split, with what identifies the data they came from.

    ``mapping`` says how the file's columns and labels were read (None: the GLUE layout); ``reference`` is
    ``"prediction"`` when the file has no labels and each example's label is the audited model's own
    prediction; ``duplicates`` lists the rows left out as repeats of an earlier text; ``sample_seed`` is the
    seed of a random sample of the file's rows (None: its rows in order)."""

    name: str
    split: str
    source: str
    examples: list[Example]
    label_names: list[str] | None = None
    fingerprint: str = field(default="")
    mapping: str | None = None
    reference: Literal["gold", "prediction"] = "gold"
    duplicates: list[Duplicate] = field(default_factory=list)
    sample_seed: int | None = None

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def is_pair(self) -> bool:
        return any(e.text_pair is not None for e in self.examples)

    @property
    def unlabelled(self) -> bool:
        return bool(self.examples) and all(e.label is None for e in self.examples)

    def identity(self) -> ExamplesUsed:
        """What identifies these examples in artefacts computed from them: the dataset, split, file fingerprint
        (which covers the column and label mapping), and a digest of the texts and gold labels themselves, so
        that any change is noticed. Labels that are the model's own predictions are not part of the digest:
        two models audited on the same unlabelled file audited the same examples."""
        digest = hashlib.sha256()
        for example in self.examples:
            label = example.label if self.reference == "gold" else None
            digest.update(repr((example.text, example.text_pair, label)).encode())
        return ExamplesUsed(
            dataset=self.name,
            split=self.split,
            source=self.source,
            fingerprint=self.fingerprint,
            count=len(self.examples),
            digest=digest.hexdigest()[:16],
            mapping=self.mapping,
            reference=self.reference,
            duplicates=len(self.duplicates),
            sample_seed=self.sample_seed,
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
        return replace(self, examples=kept)

    def head(self, n: int | None) -> Dataset:
        """The first ``n`` examples (all when ``n`` is None), keeping the identity of the data."""
        if n is not None and n < 1:
            raise DataError(f"the number of examples must be positive, got {n}")
        return replace(self, examples=self.examples[:n])

    def labelled_by(self, predictions: list[int]) -> Dataset:
        """This unlabelled dataset with each example's label set to the model's prediction on it (in order):
        the reference an attack must change when the data has no gold labels."""
        if len(predictions) != len(self.examples):
            raise ValueError(f"{len(predictions)} predictions for {len(self.examples)} examples")
        examples = [replace(e, label=int(p)) for e, p in zip(self.examples, predictions)]
        return replace(self, examples=examples, reference="prediction")
