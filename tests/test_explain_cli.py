"""``auditor explain`` and ``auditor schema`` end to end: real subprocesses, the JSON checked against
SelfAttentionAttribution called directly, the HTML page opened in headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from PIL import Image

from auditor.attribution import SelfAttentionAttribution
from auditor.cli import main
from auditor.models import Classifier, load_classifier
from auditor.schemas import EncodedArray

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SST2 = SHARED / "models" / "minilm-sst2"
RTE = SHARED / "models" / "minilm-rte"
SENTENCE = "a gripping, beautifully acted film"
MARKUP = "<b>dull</b> & boring [CLS] film"


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    cwd: Path


def launch(cwd: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(
        [sys.executable, "-m", "auditor", *args], cwd=cwd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """The CLI as a separate process, both runs started together (each pays seconds of interpreter start-up)."""
    work = tmp_path_factory.mktemp("cli")
    (work / "lines.txt").write_text(f"\n{MARKUP}\n\n", encoding="utf-8")
    commands = {
        "sst2": ["explain", "--model", str(SST2), SENTENCE, "--input", "lines.txt", "--top-k", "3", "--matrices",
                 "--html", "out/explain.html", "--json", "out/explain.json"],
        "missing model": ["explain", "--model", str(SHARED / "models" / "no-such-model"), SENTENCE],
    }
    processes = {name: launch(work, *args) for name, args in commands.items()}
    results = {}
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=300)
        results[name] = Run(process.returncode, stdout, stderr, work)
    return results


@pytest.fixture(scope="module")
def sst2() -> Classifier:
    return load_classifier(SST2)


@pytest.mark.numerics
def test_explain_writes_json_matching_direct_attribution(runs: dict[str, Run], sst2: Classifier) -> None:
    run = runs["sst2"]
    assert run.returncode == 0, run.stderr
    assert "prediction: positive" in run.stdout and "attribution tree" in run.stdout and "[CLS]" in run.stdout
    explanations = json.loads((run.cwd / "out" / "explain.json").read_text(encoding="utf-8"))
    assert [e["text"] for e in explanations] == [SENTENCE, MARKUP]
    attributor = SelfAttentionAttribution(sst2.model)
    for explanation in explanations:
        encoding = sst2.encode([explanation["text"]])
        (direct,) = attributor.attribute(encoding["input_ids"], encoding["attention_mask"], encoding["token_type_ids"])
        assert explanation["tokens"] == sst2.tokens(direct.input_ids)
        # written by another process from a batch: probabilities to 1e-5 (84 ulps of 1), the rest to 1e-6
        np.testing.assert_allclose(explanation["prediction"]["probabilities"], direct.probabilities.numpy(), atol=1e-5)
        assert explanation["prediction"]["label_id"] == direct.predicted == explanation["target"]
        assert (explanation["method"], explanation["steps"]) == ("gausslegendre", 3)
        assert [layer["layer"] for layer in explanation["layers"]] == direct.layers
        for k, layer in enumerate(explanation["layers"]):
            np.testing.assert_allclose(EncodedArray(**layer["matrices"]).to_numpy(), direct.attributions[k].numpy(), atol=1e-6)
            assert layer["delta"] == pytest.approx(float(direct.delta[k]), abs=1e-6)
            assert layer["baseline_probability"] == pytest.approx(float(direct.baseline_probability[k]), abs=1e-6)
            summed = direct.attributions[k].sum(0)
            top = torch.topk(summed.flatten(), 3).values.tolist()
            assert [pair["score"] for pair in layer["top_pairs"]] == pytest.approx(top, abs=1e-6)
        assert explanation["tree"]["nodes"][0] == {"id": "6:0", "layer": 6, "token_index": 0, "token": "[CLS]"}


def run_main(arguments: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The ``auditor`` script's entry point, in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["auditor", *arguments])
    code = 0
    try:
        main()
    except SystemExit as exit_info:
        code = int(exit_info.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_explain_pairs_from_a_glue_tsv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = (SHARED / "data" / "glue" / "RTE" / "dev.tsv").read_text(encoding="utf-8").splitlines()[:3]
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "dev.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")  # the GLUE layout
    arguments = ["explain", "--model", str(RTE), "--input", str(tmp_path / "RTE" / "dev.tsv"), "--layers", "5",
                 "--steps", "2", "--target", "1", "--json", str(tmp_path / "rte.json")]
    code, out, err = run_main(arguments, monkeypatch, capsys)
    assert code == 0, err
    explanations = json.loads((tmp_path / "rte.json").read_text(encoding="utf-8"))
    fields = [row.split("\t") for row in rows[1:]]
    assert [(e["text"], e["text_pair"]) for e in explanations] == [(row[1], row[2]) for row in fields]
    rte = load_classifier(RTE)
    for explanation in explanations:
        encoding = rte.tokenizer(explanation["text"], explanation["text_pair"], return_tensors="pt")
        with torch.no_grad():
            expected = torch.softmax(rte.model(**encoding).logits, -1)[0].numpy()
        np.testing.assert_allclose(explanation["prediction"]["probabilities"], expected, atol=1e-5)
        assert explanation["target"] == 1 and explanation["target_label"] == "not_entailment"
        assert [layer["layer"] for layer in explanation["layers"]] == [5] and explanation["steps"] == 2
        assert explanation["layers"][0]["matrices"] is None
        assert f"[pair: {explanation['text_pair']}]" in out


def test_bad_input_process_exits_2_with_one_line(runs: dict[str, Run]) -> None:
    run = runs["missing model"]
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.splitlines() == [f"error: model directory not found: {SHARED / 'models' / 'no-such-model'}"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["", "--model", str(SST2)], "error: input 0: text is empty"),
        (["good " * 600, "--model", str(SST2)], "error: input 0 has 602 tokens, more than the limit of 512; shorten it or pass truncate"),
        ([SENTENCE, "--model", str(SST2), "--layers", "0,9"], "error: layer 9 does not exist: the model has layers 0…5 (or -6…-1 from the last)"),
        ([SENTENCE, "--model", str(SST2), "--layers", "0-5"], "error: --layers must be comma-separated layer indices such as 0,1,5, got '0-5'"),
        ([SENTENCE, "--model", str(SST2), "--target", "7"], "error: target must be 'predicted' or a class index: 0 (negative), 1 (positive); got 7"),
        ([SENTENCE, "--model", str(SST2), "--target", "first"], "error: --target must be 'predicted' or a class index, got 'first'"),
        ([SENTENCE, "--model", str(SST2), "--steps", "0"], "error: Invalid value for '--steps': Input should be greater than or equal to 1 (see 'auditor explain --help')"),
        (["a", "b", "--model", str(SST2), "--pair", "c"], "error: --pair needs exactly one TEXT"),
        (["--model", str(SST2)], "error: nothing to explain: give a TEXT or --input FILE"),
        (["--model", str(SST2), "--input", "missing.txt"], "error: --input missing.txt: no such file"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    arguments: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(["explain", *arguments], monkeypatch, capsys)
    assert code == 2 and out == ""
    assert err.splitlines() == [message]


def test_html_page_is_self_contained_and_escaped(runs: dict[str, Run]) -> None:
    page = (runs["sst2"].cwd / "out" / "explain.html").read_text(encoding="utf-8")
    assert "<script" not in page and "<link" not in page and "url(http" not in page and "@import" not in page
    sources = [part.split('"', 1)[0] for part in page.split(' src="')[1:]]
    assert len(sources) == 2 * 2 and all(source.startswith("data:image/png;base64,") for source in sources)
    assert "&lt;b&gt;dull&lt;/b&gt; &amp; boring [CLS] film" in page and "<b>dull" not in page
    assert page.count("<svg") == 2


def test_html_page_renders_in_chromium(runs: dict[str, Run], tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is required (scripts/setup.sh installs it)"
    page = runs["sst2"].cwd / "out" / "explain.html"
    screenshot = tmp_path / "page.png"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         f"--user-data-dir={tmp_path / 'profile'}", "--disable-background-networking", "--disable-component-update",
         "--no-first-run", f"--screenshot={screenshot}", "--window-size=1200,900", page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    pixels = np.asarray(Image.open(screenshot).convert("L"), dtype=np.float64)
    assert pixels.shape == (900, 1200)
    assert pixels.std() > 10 and (pixels < 200).mean() > 0.02


def test_schema_command_prints_valid_json_schemas(
    runs: dict[str, Run], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(["schema"], monkeypatch, capsys)
    assert code == 0, err
    schemas = json.loads(out)
    assert {"Explanation", "ExplanationOptions", "ExplanationRequest", "Prediction", "AttributionTree"} <= set(schemas)
    for document in schemas.values():
        jsonschema.Draft202012Validator.check_schema(document)
    validator = jsonschema.Draft202012Validator(schemas["Explanation"])
    explanations = json.loads((runs["sst2"].cwd / "out" / "explain.json").read_text(encoding="utf-8"))
    for explanation in explanations:
        validator.validate(explanation)
    assert not validator.is_valid({**explanations[0], "target": "one"})
    code, _, err = run_main(["schema", "--out", str(tmp_path / "schemas")], monkeypatch, capsys)
    assert code == 0, err
    files = {path.name: json.loads(path.read_text(encoding="utf-8")) for path in (tmp_path / "schemas").iterdir()}
    assert files == {f"{name}.schema.json": document for name, document in schemas.items()}
