"""Every command on DistilBERT, ALBERT, DeBERTa-v2 and ModernBERT (tiny random models) through the real
entry point ``auditor.cli.main``: explain, heads, curves, prune (or its one-line error), mine and audit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from auditor.cli import main
from auditor.models import load_classifier
from auditor.schemas import Explanation, HeadImportance, PruningCurves, RobustnessReport, TriggerSet
from tests.families import FAMILIES, save_tiny

pytestmark = pytest.mark.slow  # every CLI command on every family


def run(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        main(arguments)
        code = 0
    except SystemExit as done:
        code = int(done.code or 0)
    return code, capsys.readouterr().err


@pytest.fixture(scope="module", params=FAMILIES)
def model(request, tmp_path_factory) -> tuple[str, Path]:
    return request.param, save_tiny(request.param, tmp_path_factory.mktemp(request.param) / "model")


def test_explain_heads_curves_and_prune(model, tmp_path, capsys):
    family, folder = model
    explained = tmp_path / "explain.json"
    code, err = run(["explain", "--model", str(folder), "a gripping film", "dull", "--steps", "2", "--json", str(explained)], capsys)
    assert code == 0, err
    explanations = [Explanation.model_validate(e) for e in json.loads(explained.read_text())]
    assert len(explanations) == 2 and all(len(e.layers) == 2 for e in explanations)

    heads = tmp_path / "heads.json"
    code, err = run(["heads", "--model", str(folder), "--data", "sst2", "--method", "attribution", "--examples", "6",
                     "--steps", "2", "--out", str(heads), "--no-cache"], capsys)  # fmt: skip
    assert code == 0, err
    assert HeadImportance.model_validate_json(heads.read_text()).model.model_type == family

    curves = tmp_path / "curves.json"
    code, err = run(["curves", "--model", str(folder), "--data", "sst2", "--method", "attention", "--examples", "6",
                     "--eval-examples", "8", "--fractions", "0,0.25,0.5", "--out", str(curves), "--no-cache"], capsys)  # fmt: skip
    assert code == 0, err
    points = PruningCurves.model_validate_json(curves.read_text()).curves["attention"]
    assert [p.heads_removed for p in points] == [0, 2, 4]

    pruned = tmp_path / "pruned"
    code, err = run(["prune", "--model", str(folder), "--importance", str(heads), "--heads", "2", "--out", str(pruned)], capsys)
    if family in ("deberta-v2", "modernbert"):
        assert code == 2 and err.count("\n") == 1 and "cannot physically prune heads" in err and "head masks" in err, err
        return
    assert code == 0, err
    removed = {int(k): v for k, v in json.loads((pruned / "export.json").read_text())["removed"].items()}
    if family == "albert":  # one head of the shared layer, removed from both layers that apply it
        assert len(removed) == 2 and removed[0] == removed[1] and len(removed[0]) == 1
    reloaded = load_classifier(pruned, device="cpu")
    assert reloaded.identity.pruned_heads == removed
    assert torch.isfinite(reloaded.model(**reloaded.encode(["a gripping film"])).logits).all()


def test_mine_and_audit(model, tmp_path, capsys):
    family, folder = model
    patterns = tmp_path / "patterns.json"
    # dev sentences: SST-2's first train examples are short phrases whose words mostly carry a label themselves
    arguments = ["mine", "--model", str(folder), "--data", "sst2:dev", "--examples", "8", "--steps", "2", "--min-support", "1"]
    code, err = run([*arguments, "--out", str(patterns)], capsys)
    assert code == 0, err
    assert TriggerSet.model_validate_json(patterns.read_text()).patterns
    out = tmp_path / "audit"
    code, err = run(["audit", "--model", str(folder), "--data", "sst2", "--patterns", str(patterns), "--examples", "4",
                     "--budget", "10", "--baselines", "random", "--trigger-examples", "6", "--out", str(out)], capsys)  # fmt: skip
    assert code == 0, err
    report = RobustnessReport.model_validate_json((out / "report.json").read_text())
    assert report.victim.model is not None and report.victim.model.model_type == family
