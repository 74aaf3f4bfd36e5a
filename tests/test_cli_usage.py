"""Usage errors of every ``auditor`` command end in one ``error:`` line and exit status 2, on the typer and click
that a fresh install takes (typer >= 0.29 carries its own click), never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from auditor.cli import main
from auditor.errors import InputError
from auditor.models import load_classifier
from auditor.pruning import prune_model
from auditor.schemas import ExplanationOptions

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "models" / "minilm-sst2"

# (command, arguments that are a usage error, what the one line must say)
USAGE_ERRORS = [
    ("explain", ["--model", str(SST2), "x", "--bogus"], "No such option: --bogus"),
    ("explain", ["x"], "Missing option '--model'"),
    ("explain", ["--model", str(SST2), "x", "--steps", "100000"], "'--steps'"),
    ("explain", ["--model", str(SST2), "x", "--top-k", "many"], "'--top-k'"),
    ("schema", ["--bogus"], "No such option: --bogus"),
    ("schema", ["extra"], "unexpected extra argument"),
    ("heads", ["--data", "sst2", "--out", "x.json"], "Missing option '--model'"),
    ("heads", ["--model", str(SST2), "--data", "sst2", "--out", "x.json", "--examples", "0"], "'--examples'"),
    ("heads", ["--model", str(SST2), "--data", "sst2", "--out", "x.json", "--steps", "100000"], "'--steps'"),
    ("prune", ["--model", str(SST2), "--out", "x"], "Missing option '--importance'"),
    ("prune", ["--model", str(SST2), "--importance", "i.json", "--out", "x", "--heads", "-1"], "'--heads'"),
    ("curves", ["--model", str(SST2), "--out", "c.json"], "Missing option '--data'"),
    ("curves", ["--model", str(SST2), "--data", "sst2", "--out", "c.json", "--eval-examples", "0"], "'--eval-examples'"),
    ("package", ["--model", str(SST2)], "Missing option '--name'"),
    ("package", ["--model", str(SST2), "--name", "x", "--backend", "tensorflow"], "'--backend'"),
    ("package", ["--model", str(SST2), "--name", "x", "--threads", "0"], "'--threads'"),
    ("package", ["--model", str(SST2), "--name", "x", "--task", "triple"], "'--task'"),
    ("package", ["--model", str(SST2), "--name", "x", "--explanation-slots", "0"], "'--explanation-slots'"),
    ("package", ["--model", str(SST2), "--name", "x", "--niceness", "20"], "'--niceness'"),
    ("package", ["--model", str(SST2), "--name", "x", "--shadow", "sst2"], "'--shadow-db'"),
    ("package", ["--model", str(SST2), "--name", "x", "--shadow-db", "c.db"], "'--shadow'"),
    ("package", ["--model", str(SST2), "--name", "x", "--shadow", "sst2", "--shadow-db", "c.db", "--shadow-rate", "1.5"], "sample_rate"),
    ("package", ["--model", str(SST2), "--name", "x", "--shadow", "sst2", "--shadow-db", "c.db", "--shadow-url", "localhost:8080"], "url"),
    ("mine", ["--model", str(SST2), "--data", "sst2"], "Missing option '--out'"),
    ("mine", ["--model", str(SST2), "--data", "sst2", "--out", "p.json", "--examples", "0"], "'--examples'"),
    ("mine", ["--model", str(SST2), "--data", "sst2", "--out", "p.json", "--units", "phrases"], "'--units'"),
    ("mine", ["--model", str(SST2), "--data", "sst2", "--out", "p.json", "--min-support", "0"], "'--min-support'"),
    ("mine", ["--model", str(SST2), "--data", "sst2", "--out", "p.json", "--tree-threshold", "0"], "'--tree-threshold'"),
    ("mine", ["--model", str(SST2), "--data", "sst2", "--out", "p.json", "--tree-threshold", "1.5"], "'--tree-threshold'"),
    ("mine", ["--model", str(SST2), "--data", "sst2", "--out", "p.json", "--batch-size", "0"], "'--batch-size'"),
    ("mine", ["--model", str(SST2), "--data", "sst2", "--out", "p.json", "--steps", "0"], "'--steps'"),
    ("audit", ["--data", "sst2"], "Missing option '--out'"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--examples", "0"], "'--examples'"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--budget", "0"], "'--budget'"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--unknown"], "No such option: --unknown"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--fail-under", "70"], "'--fail-under'"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--positions", "middle"], "'--positions'"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--defence", "spelling"], "'--defence'"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--tokenizer", str(SST2)], "--tokenizer is for an endpoint"),
    ("audit", ["--out", "o", "--data", "sst2", "--endpoint", "http://127.0.0.1:9/predictions/x"], "needs the endpoint model's tokenizer"),
    ("audit", ["--out", "o", "--data", "sst2", "--endpoint", "http://127.0.0.1:9/predictions/x", "--transformations", "charedit"],
     "pass --tokenizer DIR, or --no-forensics"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--no-forensics=yes"], "--no-forensics"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--transformations", "tokenedit,spell"], "'tokenedit,spell'"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--sufficient-gain", "1.5"], "'--sufficient-gain'"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--sufficient-gain", "nan"], "'--sufficient-gain'"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--sweep-words", "0"], "'--sweep-words'"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--sweep-words", "some"], "'some'"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--ranking-layers", "last"], "'--ranking-layers'"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--steps", "0"], "'--steps'"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--edits-per-word", "0"], "'--edits-per-word'"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--baselines", "textfooler"], "pattern-only, edits-only"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--top-k", "0"], "'--top-k'"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--invariance", "typo"], "'--invariance'"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--invariance", ""], "'--invariance'"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--typo-rate", "0"], "'--typo-rate'"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--typo-rate", "1.5"], "'--typo-rate'"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--max-flip-rate", "5%"], "'--max-flip-rate'"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--max-flip-rate", "typos=1.5"], "'--max-flip-rate'"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--invariance", "names", "--max-flip-rate", "typos=0.1"],
     "'typos' is not among the checks run (names; see --invariance)"),  # fmt: skip
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--invariance", "none", "--max-flip-rate", "0.1"], "no invariance check runs"),
    ("compare", ["--full", str(SST2), "--data", "sst2", "--out", "o"], "Missing option '--pruned'"),
    ("compare", ["--full", str(SST2), "--pruned", str(SST2), "--data", "sst2", "--out", "o", "--ranking-layers", "1;2"], "'1;2'"),
    ("compare", ["--full", str(SST2), "--pruned", "http://127.0.0.1:9/predictions/x", "--data", "sst2", "--out", "o"], "--tokenizer DIR"),
    ("compare", ["--full", str(SST2), "--pruned", str(SST2), "--data", "sst2", "--out", "o", "--budget", "x"], "'--budget'"),
    ("compare", ["--full", str(SST2), "--pruned", str(SST2), "--data", "sst2", "--out", "o", "--sufficient-gain", "half"], "'half'"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--ray", "bogus"], "a Ray address is local, auto, ray://HOST:PORT"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--ray", "local", "--workers", "0"], "'--workers'"),
    ("mine", ["--model", str(SST2), "--data", "sst2", "--out", "p.json", "--ray", "ray://no-port"], "'--ray'"),
    ("mine", ["--model", str(SST2), "--data", "sst2", "--out", "p.json", "--workers", "many"], "'--workers'"),
    ("heads", ["--model", str(SST2), "--data", "sst2", "--out", "x.json", "--ray", "local;rm -rf"], "'--ray'"),
    ("heads", ["--model", str(SST2), "--data", "sst2", "--out", "x.json", "--ray", "auto", "--workers", "-2"], "'--workers'"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--alpha", "0"], "'--alpha'"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--max-drop", "5"], "'--max-drop'"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--junit"], "'--junit' requires an argument"),
    ("compare", ["--full", str(SST2), "--pruned", str(SST2), "--data", "sst2", "--out", "o", "--junit"], "'--junit' requires an argument"),
    ("diff", [], "Missing argument 'BASE'"),
    ("diff", ["base.json"], "Missing argument 'NEW'"),
    ("diff", ["a", "b", "c"], "unexpected extra argument"),
    ("diff", ["a", "b", "--alpha", "1"], "'--alpha'"),
    ("diff", ["a", "b", "--alpha", "often"], "'--alpha'"),
    ("diff", ["a", "b", "--max-drop", "-0.1"], "'--max-drop'"),
    ("diff", ["a", "b", "--format", "xml"], "'--format'"),
    ("diff", ["a", "b", "--correction", "bonferroni"], "'--correction'"),
    ("diff", ["a", "b", "--bogus"], "No such option: --bogus"),
    ("diff", ["a", "b", "--junit", "."], ". is a folder: give the name of a file to write"),
    ("diff", ["a", "b", "--out", __file__], "is a file: give a folder to write into"),
    ("audit", ["--out", __file__, "--data", "sst2", "--model", str(SST2)], "is a file: give a folder to write into"),
    ("audit", ["--out", "o", "--data", "sst2", "--model", str(SST2), "--junit", "."], "'--junit'"),
    ("compare", ["--full", str(SST2), "--pruned", str(SST2), "--data", "sst2", "--out", __file__], "is a file: give a folder"),
    ("live-report", ["--out", "o", "--tolerance", "0.02"], "Missing argument 'DB...'"),
    ("live-report", ["c.db", "--out", "o"], "Missing option '--tolerance'"),
    ("live-report", ["c.db", "--tolerance", "0.02"], "Missing option '--out'"),
    ("live-report", ["c.db", "--out", "o", "--tolerance", "0"], "'--tolerance'"),
    ("live-report", ["c.db", "--out", "o", "--tolerance", "1.5"], "'--tolerance'"),
    ("live-report", ["c.db", "--out", "o", "--tolerance", "2%"], "'--tolerance'"),
    ("live-report", ["c.db", "--out", "o", "--tolerance", "0.02", "--alpha", "1"], "'--alpha'"),
    ("live-report", ["c.db", "--out", "o", "--tolerance", "0.02", "--candidate", "both"], "'--candidate'"),
    ("live-report", ["c.db", "--out", "o", "--tolerance", "0.02", "--top", "-1"], "'--top'"),
    ("live-report", ["c.db", "--out", "o", "--tolerance", "0.02", "--steps", "0"], "'--steps'"),
    ("live-report", ["c.db", "--out", "o", "--tolerance", "0.02", "--primary-model", str(SST2)], "give both --primary-model and --shadow-model"),
    ("live-report", ["c.db", "--out", __file__, "--tolerance", "0.02"], "is a file: give a folder to write into"),
]


def run_main(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = 0
    try:
        main(arguments)
    except SystemExit as exit_info:
        code = int(exit_info.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("command", "arguments", "message"), USAGE_ERRORS)
def test_usage_errors_exit_2_with_one_line(
    command: str, arguments: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may be written even if an error were missed
    code, out, err = run_main([command, *arguments], capsys)
    assert code == 2, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert f"(see 'auditor {command} --help')" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_unknown_command_and_the_installed_script(tmp_path: Path) -> None:
    """Through the console script itself, as a shell runs it."""
    script = Path(sys.executable).parent / "auditor"
    done = subprocess.run([str(script), "explian", "--model", "x"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == ["error: No such command 'explian'. Did you mean 'explain'? (see 'auditor --help')"]
    done = subprocess.run([str(script), "audit", "--data", "sst2", "--out", "o", "--model", "m", "--examples", "0"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("content", "reason"), [(b"\xff\xfe bad bytes \x80\n", "invalid start byte"), ("caf\u00e9\n".encode("latin-1"), "invalid continuation byte")]
)
@pytest.mark.parametrize("name", ["inputs.txt", "inputs", "inputs.tsv"])
def test_unreadable_input_files_are_one_line_errors(
    content: bytes, reason: str, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    code, out, err = run_main(["explain", "--model", str(SST2), "--input", str(path)], capsys)
    assert code == 2 and out == ""
    first_bad = next(index for index, byte in enumerate(content) if byte > 127)
    assert err.splitlines() == [f"error: --input {path}: not UTF-8 text (byte {first_bad}: {reason})"]
    code, out, err = run_main(["explain", "--model", str(SST2), "--input", str(tmp_path)], capsys)
    assert code == 2 and err.splitlines() == [f"error: --input {tmp_path}: not a file"]


def test_steps_are_bounded_in_the_schema_and_the_engine() -> None:
    from pydantic import ValidationError

    from auditor.quadrature import MAX_STEPS, quadrature

    assert ExplanationOptions(steps=MAX_STEPS).steps == MAX_STEPS
    with pytest.raises(ValidationError, match="less than or equal to 256"):
        ExplanationOptions(steps=100_000)
    with pytest.raises(InputError, match="from 1 to 256"):
        quadrature("riemann_left", 100_000)
    assert len(quadrature("gausslegendre", MAX_STEPS)[0]) == MAX_STEPS


def test_pruning_every_head_of_a_layer_is_refused_and_one_left_runs(tmp_path: Path) -> None:
    classifier = load_classifier(SST2)
    with pytest.raises(InputError, match="layer 2 with no heads.*auditor curves --allow-empty-layers"):
        prune_model(classifier, {2: list(range(12))}, tmp_path / "empty")
    assert not (tmp_path / "empty").exists()
    folder = prune_model(classifier, {2: list(range(11))}, tmp_path / "one")
    pruned = load_classifier(folder)
    encoding = pruned.tokenizer(["a gripping film", "dull"], padding=True, return_tensors="pt")
    mask = torch.ones(6, 12)
    mask[2, :11] = 0
    with torch.no_grad():
        expected = classifier.model(**encoding, head_mask=mask).logits
        torch.testing.assert_close(pruned.model(**encoding).logits, expected, atol=1e-5, rtol=1e-5)


def test_text_the_model_cannot_see_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``explain`` text and ``audit``/``compare`` data rows from which the model's tokenizer produces no token
    (U+FE0F, a variation selector, passes the schemas' visible-text check) exit 2 naming the input or row."""
    code, out, err = run_main(["explain", "--model", str(SST2), "a fine film", "\ufe0f"], capsys)
    assert code == 2 and out == ""
    assert err.splitlines() == ["error: input 1: text produces no token of the model's tokenizer (the model would see only its special tokens); send visible text"]
    data = tmp_path / "dev.tsv"
    data.write_text("sentence\tlabel\na fine film\t1\n\u0301\ue000\t0\n", encoding="utf-8")
    for command in (["audit", "--model", str(SST2)], ["compare", "--full", str(SST2), "--pruned", str(SST2)]):
        code, out, err = run_main([*command, "--data", str(data), "--out", str(tmp_path / "out")], capsys)
        assert code == 2 and out == "", err
        assert err.splitlines() == [f"error: {data}: row 2: text produces no token of the model's tokenizer (the model would see only its special tokens); send visible text"]


def test_package_warns_when_the_configured_workers_exceed_the_machines_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from auditor.serving.memory import EXPLANATION_BYTES, WORKER_BYTES, configured_workers, machine_memory_bytes, memory_warning

    config = tmp_path / "config.properties"
    config.write_text(
        "default_workers_per_model=2\nload_models=a.mar,b.mar\n"
        'models={"b": {"1.0": {"marName": "b.mar", "minWorkers": 4, "maxWorkers": 4}}}\n'
    )
    assert configured_workers(config) == {"a": 2, "b": 4}
    needed = 6 * WORKER_BYTES + 2 * EXPLANATION_BYTES  # one worker of each model explaining
    assert memory_warning(config, machine_bytes=needed) is None
    assert "starts 6 workers (a 2, b 4)" in memory_warning(config, machine_bytes=needed - 1)
    many = tmp_path / "many.properties"  # more workers than any machine here holds
    many.write_text(f"default_workers_per_model={machine_memory_bytes() // WORKER_BYTES + 1}\nload_models=sst2.mar\n")
    code, out, err = run_main(["package", "--model", str(SST2), "--name", "sst2", "--store", str(tmp_path / "store"), "--config", str(many)], capsys)
    assert code == 0 and (tmp_path / "store" / "sst2.mar").is_file()
    lines = (out + err).splitlines()
    assert lines[0].startswith("wrote ") and lines[1].startswith(f"warning: {many} starts") and "lower the workers per model" in lines[1]
    code, out, err = run_main(["package", "--model", str(SST2), "--name", "x", "--config", str(tmp_path / "none")], capsys)
    assert code == 2 and err.splitlines() == [f"error: --config {tmp_path / 'none'}: not a file"]


# (file name, content, extra options, the one line after "error: ", with {path} for the file)
DATA_ERRORS = [
    ("a.csv", b"review,sentiment\nok,pos\n", ["--text-column", "text"], "{path}: no column 'text' (--text-column); the columns are 'review', 'sentiment'"),
    ("a.csv", b"review,sentiment\nok,pos\nfine,meh\n", ["--text-column", "review", "--label-column", "sentiment", "--label-map", "pos=positive"],
     "{path}:3: label 'meh' is not a label of the model (the model's labels are negative, positive, or a class index); --label-map maps pos"),
    ("a.csv", b"text,label\nok,1\n\"\",0\n", [], "{path}:3: empty text in column 'text'"),
    ("a.csv", b"text,label\nok,1\ncaf\xe9,0\n", [], "{path}:3: not UTF-8 (byte 3 of the line: invalid continuation byte)"),
    ("a.tsv", b"text\tlabel\nok\t1\nx\t0\textra\n", [], "{path}:3: 3 fields, the header has 2"),
    ("a.jsonl", b'{"text": "ok", "label": 1}\n{"text": "", "label": 0}\n', [], "{path}:2: empty text in column 'text'"),
    ("a.csv", b"text,label\nok,1\n", ["--label-map", "pos"], "--label-map takes FILE_LABEL=MODEL_LABEL pairs separated by commas, such as pos=positive,neg=negative; got 'pos'"),
]


@pytest.mark.parametrize(("name", "content", "options", "message"), DATA_ERRORS)
def test_data_errors_are_one_line_naming_the_file_and_row(
    name: str, content: bytes, options: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    code, out, err = run_main(["audit", "--model", str(SST2), "--data", str(path), "--out", str(tmp_path / "out"), *options], capsys)
    assert code == 2 and out == "", err
    assert err.splitlines() == [f"error: {message.format(path=path)}"]
    assert not (tmp_path / "out").exists()
