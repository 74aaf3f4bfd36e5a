"""Datasets: GLUE tasks and TSV files (``glue``), a team's own CSV, TSV, JSON Lines, Parquet and ``save_to_disk``
data (``formats``) read through a column and label mapping (``mapping``), the rows picked (``selection``),
all through one loader (``loading.load_dataset``)."""

from auditor.data.examples import Dataset, Duplicate, Example
from auditor.data.glue import TASK_DIRECTORIES, TASK_LABELS, TEXT_COLUMNS, default_data_dir, load_from_hub, read_tsv, task_key
from auditor.data.loading import load_dataset, read_file
from auditor.data.mapping import DataMapping, LabelResolver, parse_label_map
from auditor.data.selection import RowSelection, sample_key, select_examples

__all__ = [
    "TASK_DIRECTORIES",
    "TASK_LABELS",
    "TEXT_COLUMNS",
    "DataMapping",
    "Dataset",
    "Duplicate",
    "Example",
    "LabelResolver",
    "RowSelection",
    "default_data_dir",
    "load_dataset",
    "load_from_hub",
    "parse_label_map",
    "read_file",
    "read_tsv",
    "sample_key",
    "select_examples",
    "task_key",
]
