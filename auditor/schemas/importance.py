"""Head importance and pruning curves (auditor.heads, auditor.pruning), and the examples a computation used."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from auditor.schemas.common import ModelIdentity


ImportanceMethod = Literal["attribution", "attention", "taylor", "loo", "random"]
IMPORTANCE_METHODS: tuple[str, ...] = ("attribution", "attention", "taylor", "loo", "random")


class ExamplesUsed(BaseModel):
    """Which examples a computation used: the dataset, its split and file fingerprint (for a data file, of its
    bytes and the column and label mapping), how many, and a digest of the examples themselves (texts and
    gold labels) so that a change in the data is always noticed."""

    dataset: str
    split: str
    source: str
    fingerprint: str
    count: int
    digest: str
    mapping: str | None = Field(
        default=None, description="how the file's columns and labels were read (--text-column, --label-map…); null: GLUE's layout"
    )
    reference: Literal["gold", "prediction"] = Field(
        default="gold", description="'prediction': the data has no labels, each example's reference is the model's own prediction"
    )
    duplicates: int = Field(default=0, description="rows left out because an earlier row has the same text (and pair)")
    sample_seed: int | None = Field(default=None, description="the seed of a random sample of the rows (null: the first rows in order)")

    @property
    def title(self) -> str:
        """How reports and plots name the data: ``sst2 dev``, ``sst2 held-out.tsv`` for a file of a task's folder
        given by path, ``reviews.csv`` for a file of its own, ``reviews dev`` for a ``save_to_disk`` folder."""
        file = self.source.rsplit("/", 1)[-1]
        if file in (f"{self.split}.tsv", self.dataset) or self.source.startswith("hub:"):
            return f"{self.dataset} {self.split}"
        return file if file.rsplit(".", 1)[0] == self.dataset else f"{self.dataset} {file}"

    def notes(self) -> list[str]:
        """What a report's header says about how the examples were read: the mapping, a sample, the repeated
        rows left out, and a reference that is the model's own prediction."""
        notes = [f"Read as: {self.mapping}."] if self.mapping else []
        if self.sample_seed is not None:
            notes.append(f"A random sample of the rows (seed {self.sample_seed}).")
        if self.duplicates:
            notes.append(f"{self.duplicates} rows repeating an earlier text were left out.")
        if self.reference == "prediction":
            notes.append(
                "The data has no labels: each example's reference is the model's own prediction, so clean accuracy is "
                "100 % by construction and an attack succeeds when it changes that prediction."
            )
        return notes


class HeadImportance(BaseModel):
    """Importance of every attention head of one model, higher = more important.

    ``scores[layer][head]`` is indexed by the *original* head index; heads already pruned from the model
    are ``null``. ``model`` identifies the weights the scores were computed on.
    """

    method: ImportanceMethod
    scores: list[list[float | None]]
    examples: ExamplesUsed
    model: ModelIdentity
    options: dict[str, int | float | str] = {}
    target: Literal["gold"] = "gold"
    auditor_version: str
    seconds: float


class CurvePoint(BaseModel):
    """Accuracy after removing the ``heads_removed`` least important heads (``fraction`` of the model's heads)."""

    fraction: float
    heads_removed: int
    accuracy: float


class PruningCurves(BaseModel):
    """Accuracy vs fraction of heads pruned, one curve per importance method, all on the same evaluation set."""

    model: ModelIdentity
    evaluation: ExamplesUsed
    importance_examples: ExamplesUsed
    keep_per_layer: int
    full_accuracy: float
    curves: dict[str, list[CurvePoint]]
