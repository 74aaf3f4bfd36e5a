"""Data loading: GLUE tasks and TSV files, and a team's own CSV, TSV, JSON Lines, Parquet and save_to_disk data
read through a column and label mapping, written here by csv, json, pyarrow and datasets themselves."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from auditor.data import DataMapping, Duplicate, LabelResolver, RowSelection, load_dataset, parse_label_map, read_tsv
from auditor.errors import DataError, InputError

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


# ---- a team's own files: formats, mapping, selection, errors with a place ----

LABELS = ["negative", "positive"]
REVIEWS = DataMapping("review", None, "sentiment", parse_label_map("pos=positive,neg=negative"))


def held_out(n: int = 12) -> list[dict[str, str]]:
    """The first ``n`` SST-2 dev sentences as a team keeps them: columns review/sentiment, labels pos/neg."""
    return [{"review": r[0], "sentiment": ["neg", "pos"][int(r[1])]} for r in rows(GLUE / "SST-2" / "dev.tsv")[:n]]


def write_formats(folder: Path, records: list[dict[str, object]]) -> dict[str, Path]:
    """``records`` as CSV, JSON Lines, Parquet and a save_to_disk folder (written by csv, json, pyarrow, datasets)."""
    import datasets
    import pyarrow
    import pyarrow.parquet

    paths = {"csv": folder / "reviews.csv", "jsonl": folder / "reviews.jsonl", "parquet": folder / "reviews.parquet", "arrow": folder / "reviews"}
    with paths["csv"].open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    paths["jsonl"].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(records), paths["parquet"], row_group_size=5)
    datasets.Dataset.from_list(records).save_to_disk(str(paths["arrow"]))
    return paths


def test_every_format_reads_the_same_examples_as_the_glue_file(tmp_path):
    reference = load_dataset("sst2").head(12)
    for kind, path in write_formats(tmp_path, held_out()).items():
        dataset = load_dataset(str(path), mapping=REVIEWS, labels=LABELS)
        assert dataset.examples == reference.examples, kind
        assert dataset.identity().digest == reference.identity().digest and dataset.identity().mapping == (
            "text 'review'; label 'sentiment' (pos=positive, neg=negative)"
        )


def test_labels_in_any_case_class_indices_and_a_class_label_feature(tmp_path):
    import datasets

    records = [{"text": "good", "label": "POSITIVE"}, {"text": "bad", "label": "Negative"}, {"text": "fine", "label": "1"}]
    path = tmp_path / "mixed.csv"
    path.write_text("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in records), encoding="utf-8")
    assert [e.label for e in load_dataset(str(path), labels=LABELS).examples] == [1, 0, 1]
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    datasets.Dataset.from_dict({"text": ["good", "bad"], "label": [1, 0]}, features=features).save_to_disk(str(tmp_path / "named"))
    mapping = DataMapping(label_map=parse_label_map("pos=positive,neg=negative"))
    assert [e.label for e in load_dataset(str(tmp_path / "named"), mapping=mapping, labels=LABELS).examples] == [1, 0]


def test_quoted_csv_fields_hold_commas_quotes_and_line_breaks(tmp_path):
    path = tmp_path / "quoted.csv"
    path.write_text('review,sentiment\n"a ""great"", long\nfilm",pos\nplain,neg\n', encoding="utf-8")
    dataset = load_dataset(str(path), mapping=REVIEWS, labels=LABELS)
    assert [(e.text, e.label) for e in dataset.examples] == [('a "great", long\nfilm', 1), ("plain", 0)]


def test_a_file_without_labels_gives_unlabelled_examples(tmp_path):
    path = tmp_path / "texts.jsonl"
    path.write_text('{"text": "good"}\n{"text": "bad"}\n', encoding="utf-8")
    dataset = load_dataset(str(path), labels=LABELS)
    assert dataset.unlabelled and dataset.identity().mapping == "text 'text'; no label"
    labelled = dataset.labelled_by([1, 0])
    assert [e.label for e in labelled.examples] == [1, 0] and labelled.identity().reference == "prediction"
    assert labelled.identity().digest == dataset.identity().digest  # predictions are not part of the data's identity


def test_the_first_rows_are_read_and_no_further(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("text,label\n" + "".join(f"sentence {i},{i % 2}\n" for i in range(5)) + "broken,row,here\n", encoding="utf-8")
    assert [e.text for e in load_dataset(str(path), labels=LABELS, selection=RowSelection(5)).examples] == [f"sentence {i}" for i in range(5)]
    with pytest.raises(DataError, match=f"^{path}:7: 3 fields, the header has 2$"):
        load_dataset(str(path), labels=LABELS, selection=RowSelection(6))


def test_a_seeded_sample_is_the_same_in_every_format_and_nested(tmp_path):
    records = [{"review": f"review number {i}", "sentiment": ["neg", "pos"][i % 2]} for i in range(200)]
    samples = {
        kind: [e.text for e in load_dataset(str(path), mapping=REVIEWS, labels=LABELS, selection=RowSelection(20, seed=3)).examples]
        for kind, path in write_formats(tmp_path, records).items()
    }
    first = samples["csv"]
    assert all(sample == first for sample in samples.values()) and len(set(first)) == 20
    assert first != [r["review"] for r in records[:20]]  # not the first rows
    smaller = load_dataset(str(tmp_path / "reviews.parquet"), mapping=REVIEWS, labels=LABELS, selection=RowSelection(5, seed=3))
    assert [e.text for e in smaller.examples] == first[:5] and smaller.identity().sample_seed == 3
    other = load_dataset(str(tmp_path / "reviews.csv"), mapping=REVIEWS, labels=LABELS, selection=RowSelection(20, seed=4))
    assert [e.text for e in other.examples] != first


def test_repeated_texts_are_kept_once_and_listed(tmp_path):
    path = tmp_path / "repeats.csv"
    path.write_text("text,label\ngood,1\nbad,0\ngood,1\nfine,1\n", encoding="utf-8")
    dataset = load_dataset(str(path), labels=LABELS, selection=RowSelection(3))
    assert [e.text for e in dataset.examples] == ["good", "bad", "fine"]  # the third distinct text is read past the repeat
    assert dataset.duplicates == [Duplicate(f"{path}:4", f"{path}:2")] and dataset.identity().duplicates == 1


def test_the_fingerprint_covers_the_mapping_and_diff_refuses_other_data(tmp_path):
    from auditor.diff import same_examples

    path = write_formats(tmp_path, held_out())["csv"]
    read = load_dataset(str(path), mapping=REVIEWS, labels=LABELS).identity()
    swapped = load_dataset(str(path), mapping=DataMapping("review", None, "sentiment", parse_label_map("pos=negative,neg=positive")), labels=LABELS).identity()
    assert read.fingerprint != swapped.fingerprint and not same_examples(read, swapped)
    assert same_examples(read, load_dataset(str(tmp_path / "reviews.parquet"), mapping=REVIEWS, labels=LABELS).identity())
    unlabelled = load_dataset(str(path), mapping=DataMapping("review", None, None), labels=LABELS)
    assert unlabelled.unlabelled and not same_examples(read, unlabelled.identity())


@pytest.mark.parametrize(
    ("name", "content", "mapping", "message"),
    [
        ("a.csv", b"review,sentiment\nok,pos\n", DataMapping("text"), "{path}: no column 'text' (--text-column); the columns are 'review', 'sentiment'"),
        ("a.csv", b"review,sentiment\nok,pos\n", None, "{path}: no text column; the columns are 'review', 'sentiment': name one with --text-column"),
        ("a.csv", b"text,label\nok,1\nfine,maybe\n", None, "{path}:3: label 'maybe' is not a label of the model (the model's labels are negative, positive, or a class index)"),
        ("a.csv", b"text,label\nok,1\n  ,0\n", None, "{path}:3: empty text in column 'text'"),
        ("a.csv", b"text,label\nok,1\ncaf\xe9,0\n", None, "{path}:3: not UTF-8 (byte 3 of the line: invalid continuation byte)"),
        ("a.csv", b"text,label\nok,1\nx,0,extra\n", None, "{path}:3: 3 fields, the header has 2"),
        ("a.jsonl", b'{"text": "ok", "label": 1}\n{"text": "x"}\n', None, "{path}:2: no 'label' (the row has 'text')"),
        ("a.jsonl", b'{"text": "ok", "label": 1}\n[1]\n', None, "{path}:2: a JSON object with the columns as keys expected, got list"),
        ("a.parquet", None, None, "{path}: row 2: empty text in column 'text'"),
        ("a.xlsx", b"x", None, "{path}: unknown data format '.xlsx'"),
    ],
)
def test_bad_rows_name_the_file_and_the_row(tmp_path, name, content, mapping, message):
    path = tmp_path / name
    if content is None:
        import pyarrow
        import pyarrow.parquet

        pyarrow.parquet.write_table(pyarrow.table({"text": ["ok", ""], "label": [1, 0]}), path)
    else:
        path.write_bytes(content)
    with pytest.raises(DataError) as raised:
        load_dataset(str(path), mapping=mapping, labels=LABELS)
    assert str(raised.value).startswith(message.format(path=path)), str(raised.value)


def test_label_map_and_task_options_are_checked():
    with pytest.raises(InputError, match="pos=positive,neg=negative; got 'pos'"):
        parse_label_map("pos")
    with pytest.raises(DataError, match="--label-map good=great: 'great' is not one of the model's labels"):
        LabelResolver(LABELS, parse_label_map("good=great"))
    with pytest.raises(DataError, match="sst2 is a GLUE task"):
        load_dataset("sst2", mapping=DataMapping("review"))
