"""End to end over HTTP: archive the SST-2 fixture, serve it with a real TorchServe, audit it through
``--endpoint`` (with the model's tokenizer, which the default tokenizer-aware edits need), and check the
report equals the local audit of the same model and examples; then the
same command against the stopped server fails with a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import reports
from tests.numerics import SERVED_ULPS, assert_close
from tests.test_audit import SST2, auditor

pytestmark = pytest.mark.slow  # a real TorchServe and audits in subprocesses

OPTIONS = ["--data", "sst2", "--examples", "6", "--budget", "15", "--trigger-examples", "16", "--trigger-top-k", "1",
           "--no-advice", "--no-causal-check"]  # an endpoint has no weights to mask; the advice has its own tests
REMOTE = [*OPTIONS, "--tokenizer", str(SST2)]  # the default 'tokenedit' needs the served model's tokenizer


def comparable(path: Path) -> dict:
    """The report without what legitimately differs: timing, and where the model was reached."""
    return reports.without_timing(json.loads(path.read_text()), "victim")


@pytest.mark.numerics
def test_audit_over_http_equals_local_audit(tmp_path: Path, sst2_patterns: Path) -> None:
    from auditor.serving.archive import build_archive
    from auditor.serving.torchserve import ServedModel, TorchServe

    patterns = sst2_patterns
    store = tmp_path / "store"
    build_archive(SST2, "sst2", store, archive_format="zip-store")
    with TorchServe(store, [ServedModel("sst2")]) as server:
        endpoint = f"{server.inference_url}/predictions/sst2"
        remote = auditor("audit", "--endpoint", endpoint, "--token", server.inference_key, "--patterns", str(patterns), "--out", str(tmp_path / "remote"), *REMOTE)
        refused = auditor("audit", "--endpoint", endpoint, "--token", "wrong", "--patterns", str(patterns), "--out", str(tmp_path / "refused"), *REMOTE)
    assert remote.returncode == 0, remote.stderr
    assert refused.returncode == 2 and "refused the request" in refused.stderr and "Traceback" not in refused.stderr
    local = auditor("audit", "--model", str(SST2), "--patterns", str(patterns), "--out", str(tmp_path / "local"), *OPTIONS)
    assert local.returncode == 0, local.stderr
    remote_report = json.loads((tmp_path / "remote" / "report.json").read_text())
    assert remote_report["victim"]["kind"] == "endpoint" and remote_report["victim"]["labels"] == ["negative", "positive"]
    # outcomes, texts and queries equal; probabilities as served answers go (SERVED_ULPS)
    assert_close(comparable(tmp_path / "remote" / "report.json"), comparable(tmp_path / "local" / "report.json"), SERVED_ULPS)
    # the answers' identity headers name the served model: the same weights as the local audit's
    local_report = json.loads((tmp_path / "local" / "report.json").read_text())
    served = {"name": "sst2", "version": "1.0", "weights_sha256": local_report["victim"]["model"]["weights_sha256"]}
    assert remote_report["victim"]["served"] == served
    named = auditor("diff", str(tmp_path / "local" / "report.json"), str(tmp_path / "remote" / "report.json"), "--out", str(tmp_path / "diff"))
    assert f"→ {endpoint} (sst2/1.0@{served['weights_sha256']})" in named.stdout, named.stdout + named.stderr

    down = auditor("audit", "--endpoint", endpoint, "--token", "k", "--patterns", str(patterns), "--out", str(tmp_path / "down"), *REMOTE)
    assert down.returncode == 2 and "unreachable" in down.stderr and "Traceback" not in down.stderr
