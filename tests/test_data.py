"""GLUE-format TSV loading."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from auditor.data import load_dataset, read_tsv
from auditor.errors import DataError

GLUE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glue"


def rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]


def test_single_sentence_task_by_name_matches_the_file():
    dataset = load_dataset("SST-2", split="dev")
    expected = rows(GLUE / "SST-2" / "dev.tsv")
    assert (dataset.name, dataset.split, len(dataset), dataset.is_pair) == ("sst2", "dev", len(expected), False)
    assert [(e.text, e.label) for e in dataset.examples] == [(r[0], int(r[1])) for r in expected]
    assert load_dataset("sst2:train").split == "train"


def test_pair_task_maps_label_names_in_order():
    dataset = load_dataset("rte")
    expected = rows(GLUE / "RTE" / "dev.tsv")
    assert dataset.is_pair and dataset.label_names == ["entailment", "not_entailment"]
    assert [(e.text, e.text_pair, e.label) for e in dataset.examples] == [
        (r[1], r[2], ["entailment", "not_entailment"].index(r[3])) for r in expected
    ]


def test_any_path_and_label_names_recognised_outside_a_task_folder(tmp_path):
    copy = tmp_path / "pairs.tsv"
    copy.write_bytes((GLUE / "RTE" / "dev.tsv").read_bytes())
    dataset = load_dataset(str(copy))
    assert dataset.label_names == ["entailment", "not_entailment"]
    assert dataset.fingerprint == load_dataset("rte").fingerprint
    assert load_dataset(str(tmp_path), split="pairs").examples == dataset.examples


def test_fingerprint_changes_with_the_data(tmp_path):
    path = tmp_path / "a.tsv"
    path.write_text("sentence\tlabel\ngood\t1\n", encoding="utf-8")
    first = read_tsv(path).fingerprint
    path.write_text("sentence\tlabel\nbad\t0\n", encoding="utf-8")
    assert read_tsv(path).fingerprint != first


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"text\tlabel\nx\t1\n", "no text column"),
        (b"sentence\tlabel\nx\t1\textra\n", "expected 2 tab-separated fields"),
        (b"sentence\tlabel\nx\tmaybe\n", "cannot read label"),
        (b"sentence\tlabel\n\xff\xfe\t1\n", "not UTF-8"),
        (b"", "empty"),
    ],
)
def test_bad_files_raise_data_errors(tmp_path, content, message):
    path = tmp_path / "bad.tsv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_tsv(path)


def test_unknown_names_and_missing_files():
    with pytest.raises(DataError, match="neither a file"):
        load_dataset("imdb")
    with pytest.raises(DataError, match="no local copy"):
        load_dataset("sst2", split="test", source="local")
    with pytest.raises(DataError, match="positive"):
        load_dataset("sst2").head(0)
