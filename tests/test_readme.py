"""The README's shell commands run as written on the fixtures.

Every command of the README's ```bash blocks (continuation lines joined, comments dropped) is either in
``FAST`` or in ``NOT_RUN`` with the reason, so a command added to the README must be placed in one of them.
The rule for ``FAST``: the command needs no running server, no Ray cluster, no network and no output of a
command that is not fast, and finishes within ``BUDGET`` seconds on the project's 2-core machine. Those run
here, in README order, in a scratch checkout (the repository's scripts and settings, ``.venv`` this
interpreter's environment, ``../shared`` the fixtures, this tree's ``auditor`` first on the path), each
within ``BUDGET`` seconds and with exit status 0, as the README says they end; files a reader brings
(``reviews.txt``) are written first. The servers, benchmarks and minutes-long runs are tested elsewhere
(tests/test_ci_audit.py runs the worked pipeline's script end to end)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_audit import ROOT, SHARED

pytestmark = pytest.mark.slow  # mining, head importance and pruning in subprocesses

BUDGET = 600
"""Seconds each fast command may take (the slowest, mining 200 sentences, took 230 s beside other work)."""

FAST = [
    'auditor explain --model ../shared/models/minilm-sst2 "a gripping, beautifully acted film" --html out/explain.html --json out/explain.json',
    'auditor explain --model ../shared/models/minilm-rte "A man is sleeping." --pair "Nobody sleeps."',
    "auditor explain --model ../shared/models/minilm-sst2 --input reviews.txt --layers 4,5 --steps 2 --json out/reviews.json",
    ".venv/bin/auditor package --model ../shared/models/minilm-sst2 --name sst2",
    ".venv/bin/auditor package --model ../shared/models/minilm-rte --name rte --task pair",
    'mkdir -p out && .venv/bin/python -c "import pandas as pd; dev = pd.read_csv("../shared/data/glue/SST-2/dev.tsv", sep="\\t", quoting=3); '
    'dev.assign(review=dev.sentence, sentiment=dev.label.map({0: "neg", 1: "pos"}))[["review", "sentiment"]].to_csv("out/reviews.csv", index=False)"',
    ".venv/bin/auditor mine --model ../shared/models/minilm-sst2 --data sst2 --examples 48 --min-support 2 --out out/sst2-patterns-48.json",
    ".venv/bin/auditor audit --model ../shared/models/minilm-sst2 --data out/reviews.csv --text-column review --label-column sentiment "
    "--label-map pos=positive,neg=negative --lexicon-data sst2 --patterns out/sst2-patterns-48.json --examples 20 --sample --budget 30 "
    "--trigger-examples 20 --out out/audit-csv/",
    ".venv/bin/auditor mine --model ../shared/models/minilm-sst2 --data sst2 --examples 200 --min-support 2 --out out/ci-example/patterns.json",
    ".venv/bin/auditor heads --model ../shared/models/minilm-sst2 --data sst2 --method attention --examples 200 --out out/ci-example/heads.json",
    ".venv/bin/auditor prune --model ../shared/models/minilm-sst2 --importance out/ci-example/heads.json --method attention "
    "--fraction 0.5 --out out/ci-example/pruned",
]

NOT_RUN = {
    "bash scripts/setup.sh": "installs the environment the tests run in",
    "pytest": "the test suite itself",
    "auditor heads": "head importance by every method, or on thousands of examples: minutes",
    "auditor curves": "10 fractions x 4 methods on the dev set: tens of minutes (progress: tests/test_cli_heads.py)",
    "auditor prune": "needs the importance of a minutes-long 'heads' run",
    "--backend onnx": "an ONNX export of a pruned model, tested in tests/test_serving.py",
    "torchserve": "a running server (tests/test_serving.py)",
    "curl": "a running server",
    "KEY=": "a running server's key",
    "bench/": "benchmarks: minutes, run by hand",
    "auditor mine": "every training sentence or phrase: 13 minutes and more",
    "auditor audit": "attacks on 200 and more examples, an endpoint or a cluster: minutes to hours",
    "auditor compare": "needs the minutes-long mine's patterns and a pruned model",
    "auditor diff": "needs two audits of releases the reader has",
    "export AUDIT_": "settings for the next commands",
    "scripts/ci-audit.sh": "TorchServe and two endpoint audits (tests/test_ci_audit.py)",
    "auditor live-report": "databases of shadowing servers",
    "echo $?": "prints the previous command's status",
    "ray start": "a Ray cluster",
    "--shadow": "packaging for a server with shadowing",
    "--niceness": "the shadow model of a server with shadowing",
}


def readme_commands() -> dict[str, str]:
    """Every command of the README's bash blocks, in order: its words re-joined (comments dropped, blanks
    squeezed, ``_quoted``) -> the line as the README writes it (continuation lines joined)."""
    text = (ROOT / "README.md").read_text()
    commands = {}
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL):
        line = ""
        for part in re.sub(r"\\\n\s*", " ", block).splitlines():
            line += part
            try:
                words = shlex.split(line, comments=True)
            except ValueError:  # a quoted argument goes on on the next line (curl's JSON)
                line += "\n"
                continue
            if words:
                commands[" ".join(_quoted(word) for word in words)] = line
            line = ""
    return commands


def _quoted(word: str) -> str:
    """A word as the README writes it: double quotes around a word with spaces."""
    return f'"{word}"' if re.search(r"\s", word) else word


def test_every_readme_command_is_fast_or_said_why_not() -> None:
    commands = readme_commands()
    assert len(commands) > 40
    missing = [c for c in FAST if c not in commands]
    assert not missing, f"FAST commands no longer in the README: {missing}"
    unplaced = [c for c in commands if c not in FAST and not any(marker in c for marker in NOT_RUN)]
    assert not unplaced, f"README commands neither FAST nor NOT_RUN: {unplaced}"


def test_the_fast_readme_commands_run_as_written(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("scripts", "config.properties", "log4j2.xml", "handlers", "docs"):
        (checkout / name).symlink_to(ROOT / name)
    (checkout / ".venv").symlink_to(Path(sys.prefix))  # the virtual environment running the tests
    (tmp_path / "shared").symlink_to(SHARED)
    (checkout / "reviews.txt").write_text("a gripping, beautifully acted film\ndull and overlong\n")
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PATH": f"{checkout / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "AUDITOR_CACHE_DIR": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
    }
    for command, line in readme_commands().items():
        if command not in FAST:
            continue
        done = subprocess.run(["bash", "-c", line], cwd=checkout, env=environment, capture_output=True, text=True, timeout=BUDGET)
        assert done.returncode == 0, f"{command}\n{done.stderr[-2000:]}"
        assert "Traceback" not in done.stderr and "torchvision" not in done.stderr, command
    patterns = (checkout / "out" / "ci-example" / "patterns.json").read_text()
    assert patterns.count('"label_name"') >= 4  # the worked pipeline's mining yields patterns to choose from
    assert (checkout / "out" / "ci-example" / "pruned" / "config.json").is_file() and (checkout / "model_store" / "rte.mar").is_file()
