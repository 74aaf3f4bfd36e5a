"""``auditor heads / prune / curves`` end to end in subprocesses: files written, exit codes, error messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # head importance and pruning in subprocesses

ROOT = Path(__file__).resolve().parents[1]
MODEL = str(ROOT.parent / "shared" / "models" / "minilm-sst2")


def auditor(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AUDITOR_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-m", "auditor", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def importance_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    out = folder / "heads.json"
    done = auditor("heads", "--model", MODEL, "--data", "sst2", "--method", "attention", "--examples", "6", "--out", str(out), cache=folder / "cache")
    assert done.returncode == 0, done.stderr
    return out


def test_heads_writes_importance_with_provenance(importance_file):
    content = json.loads(importance_file.read_text())
    assert content["method"] == "attention" and content["target"] == "gold"
    assert content["examples"]["count"] == 6 and content["examples"]["split"] == "train" and content["examples"]["dataset"] == "sst2"
    assert content["model"]["name"] == "minilm-sst2" and len(content["scores"]) == 6 and len(content["scores"][0]) == 12


def test_prune_errors_exit_2_with_a_clear_message(importance_file, tmp_path):
    out = str(tmp_path / "pruned")
    foreign = json.loads(importance_file.read_text())
    foreign["model"]["weights_sha256"] = "0123456789abcdef"
    (tmp_path / "foreign.json").write_text(json.dumps(foreign))
    cases = [
        (["--fraction", "1.0"], r"in [0, 1)"),
        (["--heads", "70"], "at least 1 head(s) per layer"),
        (["--fraction", "0.5", "--heads", "3"], "exactly one of --fraction"),
    ]
    for extra, message in cases:
        done = auditor("prune", "--model", MODEL, "--importance", str(importance_file), "--out", out, *extra, cache=tmp_path)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, (extra, done.stderr)
    done = auditor("prune", "--model", MODEL, "--importance", str(tmp_path / "foreign.json"), "--out", out, "--heads", "3", cache=tmp_path)
    assert done.returncode == 2 and "computed on another model" in done.stderr
    (tmp_path / "junk.json").write_text("{not json")
    done = auditor("prune", "--model", MODEL, "--importance", str(tmp_path / "junk.json"), "--out", out, "--heads", "3", cache=tmp_path)
    assert done.returncode == 2 and "not an importance file" in done.stderr
    assert not Path(out).exists()


def test_prune_saves_a_reloadable_model(importance_file, tmp_path):
    out = tmp_path / "pruned"
    done = auditor("prune", "--model", MODEL, "--importance", str(importance_file), "--fraction", "0.25", "--out", str(out), cache=tmp_path)
    assert done.returncode == 0, done.stderr
    config = json.loads((out / "config.json").read_text())
    assert sum(len(v) for v in config["pruned_heads"].values()) == 18
    assert all(len(v) < 12 for v in config["pruned_heads"].values())
    report = json.loads((out / "export.json").read_text())
    assert report["heads_removed"] == 18 and "accuracy" not in report


def test_curves_writes_json_and_png_and_rejects_bad_fractions(tmp_path):
    args = ["curves", "--model", MODEL, "--data", "sst2", "--method", "random", "--examples", "4", "--eval-examples", "16"]
    done = auditor(*args, "--fractions", "0,0.5", "--out", str(tmp_path / "c.json"), "--plot", str(tmp_path / "c.png"), cache=tmp_path)
    assert done.returncode == 0, done.stderr
    curves = json.loads((tmp_path / "c.json").read_text())
    points = curves["curves"]["random"]
    assert [p["heads_removed"] for p in points] == [0, 36] and points[0]["accuracy"] == curves["full_accuracy"]
    assert curves["evaluation"]["count"] == 16 and curves["importance_examples"]["split"] == "train"
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    steps = [line.split(" (")[0] for line in done.stderr.splitlines() if line.startswith("random: accuracy per fraction pruned: ")]
    assert steps[0].endswith(": 0/2") and steps[-1].endswith(": 2/2")  # the step's progress, in a log too (stderr no terminal)
    done = auditor(*args, "--fractions", "0,1", "--out", str(tmp_path / "d.json"), cache=tmp_path)
    assert done.returncode == 2 and "in [0, 1)" in done.stderr and not (tmp_path / "d.json").exists()
    done = auditor(*args[:5], "--method", "magic", "--out", str(tmp_path / "d.json"), cache=tmp_path)
    assert done.returncode == 2 and "unknown method 'magic'" in done.stderr
