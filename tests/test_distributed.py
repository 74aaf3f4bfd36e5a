"""Audits, mining and head importance on a local Ray cluster give the single-process results (the same
outcomes, texts and counts; floats to a few ulps); an actor killed mid-run (``ray.kill`` or SIGKILL of its
process) loses and duplicates nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import ray  # the 'ray' extra, installed by scripts/setup.sh
import torch

from auditor.audit import attack_key, checkpoint_identity, run_audit
from auditor.validity import build_lexicon
from auditor.checkpoint import Checkpoint
from auditor.data import load_dataset
from auditor.distributed import RayAttackExecutor, RayImportanceExecutor, RayMiningExecutor, RayPool, VictimSpec
from auditor.heads import compute_importance
from auditor.models import load_classifier
from auditor.schemas import AuditSettings, RobustnessReport, TriggerMiningOptions
from auditor.triggers import mine_triggers
from auditor.victims import open_victim
from tests import reports
from tests.numerics import MINED_ULPS, differences
from tests.processes import kill_after_records

pytestmark = pytest.mark.slow  # Ray clusters and killed runs

ATTACKS = ("attribution", "random", "deepwordbug")

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "models" / "minilm-sst2"
EXAMPLES = 20


def settings(examples: int) -> AuditSettings:
    return AuditSettings(
        examples=examples, budget=8, max_words=3, top_k=5, positions="pattern", baselines=["random", "deepwordbug"],
        trigger_top_k=1, trigger_examples=8, seed=3, advice=False,  # the advice runs in the driver (tests/test_defence.py)
    )


@pytest.fixture(scope="module")
def cluster():
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])  # the actors import this checkout
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Ray's workers run PyTorch on one intra-op thread (Ray sets OMP_NUM_THREADS=1 for them), so the
    single-process reference does too: with other thread counts, sums round differently (about 1e-8)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory(prefix="auditor-ray-test-") as directory:
        yield Path(directory)


@pytest.fixture(scope="module")
def setup():
    classifier = load_classifier(SST2)
    train = load_dataset("sst2", split="train")
    lexicon = build_lexicon(train, classifier.labels)
    triggers = mine_triggers(classifier, train, TriggerMiningOptions(examples=16, min_support=1), exclude=set(lexicon.words))
    return classifier, triggers, load_dataset("sst2", split="dev"), lexicon


def audit(setup, path: Path, examples: int, executor=None, progress=None) -> RobustnessReport:
    _, triggers, dataset, lexicon = setup
    victim = open_victim(str(SST2))
    checkpoint = Checkpoint(path, checkpoint_identity(victim, dataset, triggers, settings(examples), dataset, lexicon))
    return run_audit(victim, dataset, triggers, settings(examples), checkpoint, dataset, lexicon, progress, executor)


def outcomes(report: RobustnessReport) -> dict[str, list[dict]]:
    untimed = {"seconds": True, "forensics": {"seconds": True}}
    return {a.name: [o.model_dump(exclude=untimed) for o in a.outcomes] for a in [report.attack, *report.baselines]}


def without_timing(report: RobustnessReport) -> dict:
    """The report apart from its timings (and the count of outcomes a resumed run took from its checkpoint)."""
    return reports.without_timing(report.model_dump(mode="json"), "resumed")


RAY_ULPS = 4
"""Ray's actors are other processes: on this machine they run the same kernels on one thread each and agree
to the bit, but a cluster's workers (``--ray auto``, ``ray://``) may have other CPUs, whose kernel paths round
a float32 sum differently by an ulp or two (tests/numerics.py). 4 ulps of the value, at least of 1 (scores
and probabilities are at most 1); outcomes, texts, counts and keys stay exact."""


def checkpoint_keys(path: Path) -> list[str]:
    return [json.loads(line)["key"] for line in path.read_text().splitlines()[1:]]


@pytest.fixture(scope="module")
def single(setup, workdir: Path) -> RobustnessReport:
    return audit(setup, workdir / "single.jsonl", EXAMPLES)


@pytest.mark.numerics
def test_ray_audit_equals_the_single_process_audit(cluster, setup, workdir: Path, single: RobustnessReport) -> None:
    _, triggers, dataset, lexicon = setup
    with RayPool("local", workers=2) as pool:
        executor = RayAttackExecutor(pool, VictimSpec(str(SST2)), dataset, triggers, settings(EXAMPLES), lexicon)
        distributed = audit(setup, workdir / "ray.jsonl", EXAMPLES, executor)
    assert {o["status"] for attack in outcomes(single).values() for o in attack} >= {"succeeded", "failed"}
    assert any(o.perturbed_text != o.text for o in single.attack.outcomes)
    assert differences(without_timing(distributed), without_timing(single), RAY_ULPS) == []  # outcomes, statuses, texts, summaries
    keys = checkpoint_keys(workdir / "ray.jsonl")
    assert sorted(keys) == sorted([attack_key(n, i) for n in ATTACKS for i in range(EXAMPLES)] + checkpoint_keys(workdir / "single.jsonl")[3 * EXAMPLES :])


@pytest.mark.numerics
@pytest.mark.parametrize("how", ["ray.kill", "SIGKILL"])
def test_a_killed_actor_is_replaced_and_nothing_is_lost_or_counted_twice(cluster, setup, workdir: Path, single: RobustnessReport, how: str) -> None:
    _, triggers, dataset, lexicon = setup
    examples = 6
    path = workdir / f"killed-{how}.jsonl"
    with RayPool("local", workers=2) as pool:
        killed = []

        def kill_after_two(name: str, done: int, total: int) -> None:
            if not killed and done == 2:
                slot = pool.slots[0]
                assert slot.pending, "the actor to kill has unfinished items"
                killed.append(list(slot.pending.values()))
                if how == "ray.kill":
                    ray.kill(slot.actor)
                else:
                    os.kill(ray.get(slot.pid), signal.SIGKILL)

        executor = RayAttackExecutor(pool, VictimSpec(str(SST2)), dataset, triggers, settings(examples), lexicon)
        report = audit(setup, path, examples, executor, kill_after_two)
        assert killed and pool.replaced == 1
    keys = checkpoint_keys(path)
    driver = [k for k in keys if k.startswith(("triggers:", "forensics:"))]  # computed by the driver after the attacks
    assert sorted(keys) == sorted([attack_key(n, i) for n in ATTACKS for i in range(examples)] + driver)
    successes = [f"forensics:{name}:{o['index']}" for name, items in outcomes(report).items() for o in items if o["status"] == "succeeded"]
    assert sorted(k for k in driver if k.startswith("forensics:")) == sorted(successes)  # each success's forensics once
    expected = {name: attack[:examples] for name, attack in outcomes(single).items()}
    assert differences(outcomes(report), expected, RAY_ULPS) == []


@pytest.mark.numerics
def test_ray_mining_and_head_importance_equal_the_single_process_results(cluster, setup) -> None:
    classifier, *_ = setup
    train = load_dataset("sst2", split="train")
    options = TriggerMiningOptions(examples=16, batch_size=4, min_support=1)
    mined = mine_triggers(classifier, train, options)
    importances = {m: compute_importance(classifier, train, m, 8, batch_size=4) for m in ("attribution", "taylor", "loo")}
    with RayPool("local", workers=2) as pool:
        distributed = mine_triggers(classifier, train, options, executor=RayMiningExecutor(pool, str(SST2)))
        assert differences(distributed.model_dump(exclude={"seconds"}), mined.model_dump(exclude={"seconds"}), MINED_ULPS) == []
        for method, importance in importances.items():
            executor = RayImportanceExecutor(pool, str(SST2))
            spread = compute_importance(classifier, train, method, 8, batch_size=4, executor=executor)
            assert differences(spread.scores, importance.scores, RAY_ULPS) == [], method  # summed in batch order


def run_cli(*arguments: str) -> tuple[int, bool, str]:
    """Run ``auditor`` in a fresh interpreter: its exit code, whether Ray was imported, its stderr."""
    script = (
        "import sys\nfrom auditor.cli import main\ncode = 0\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as done:\n"
        "    code = done.code or 0\nprint('RAY-IMPORTED' if 'ray' in sys.modules else 'NO-RAY', file=sys.stderr)\nsys.exit(code)\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script, *arguments], capture_output=True, text=True, env=environment, timeout=900)
    return done.returncode, "RAY-IMPORTED" in done.stderr, done.stderr


@pytest.mark.numerics
def test_a_killed_driver_resumes_from_the_checkpoint(setup, workdir: Path) -> None:
    _, triggers, *_ = setup
    patterns = workdir / "patterns.json"
    patterns.write_text(triggers.model_dump_json())
    options = ["audit", "--model", str(SST2), "--data", "sst2", "--patterns", str(patterns), "--examples", "8", "--budget", "8",
               "--top-k", "5", "--trigger-examples", "8", "--trigger-top-k", "1", "--seed", "3"]  # fmt: skip
    code, imported, stderr = run_cli(*options, "--out", str(workdir / "cli-single"))
    assert code == 0, stderr
    assert not imported  # without --ray nothing imports Ray

    out = workdir / "cli-killed"
    checkpoint = out / "checkpoint.jsonl"
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "auditor", *options, "--out", str(out), "--ray", "local", "--workers", "2"]
    kill_after_records(command, environment, checkpoint, 3)  # three outcomes
    before = checkpoint.read_bytes()
    finished = [json.loads(line)["key"] for line in before.splitlines()[1:] if line.endswith(b"}")]
    assert len(finished) >= 3

    code, imported, stderr = run_cli(*options, "--out", str(out), "--ray", "local", "--workers", "2")
    assert code == 0 and imported, stderr
    after = checkpoint.read_bytes()
    keys = checkpoint_keys(checkpoint)
    assert after.startswith(before[: before.rfind(b"\n") + 1])  # what finished before the kill was kept, not redone
    assert len(keys) == len(set(keys)) and set(finished) <= set(keys)
    single = RobustnessReport.model_validate_json((workdir / "cli-single" / "report.json").read_bytes())
    resumed = RobustnessReport.model_validate_json((out / "report.json").read_bytes())
    assert resumed.resumed >= 3 and single.resumed == 0
    assert differences(without_timing(resumed), without_timing(single), RAY_ULPS) == []


@pytest.mark.parametrize(
    "arguments",
    [
        ["audit", "--out", "o", "--data", "sst2", "--model", str(SST2)],
        ["mine", "--model", str(SST2), "--data", "sst2", "--out", "p.json"],
        ["heads", "--model", str(SST2), "--data", "sst2", "--out", "x.json"],
    ],
)
def test_workers_without_ray_is_a_one_line_error(arguments: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from auditor.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main([*arguments, "--workers", "2"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines() == ["error: --workers needs --ray (local, auto or ray://HOST:PORT)"]
    assert list(tmp_path.iterdir()) == []


class FailingJob:
    """A job whose actors cannot start (``at="build"``) or whose item 2 fails (``at="run"``)."""

    def __init__(self, at: str) -> None:
        self.at = at

    def build(self):
        from auditor.errors import InputError

        if self.at == "build":
            raise InputError("model folder not found: /nowhere")

        def run(item: int) -> int:
            if item == 2:
                raise InputError("example 2 is unreadable")
            return item

        return run


@pytest.mark.parametrize(("at", "message"), [("build", "a Ray worker could not start: .*model folder not found"), ("run", "^example 2 is unreadable$")])
def test_worker_errors_reach_the_driver_as_one_line_errors(cluster, at: str, message: str) -> None:
    from auditor.errors import AuditorError

    with RayPool("local", workers=2) as pool:
        with pytest.raises(AuditorError, match=message) as raised:
            pool.map(FailingJob(at), list(range(6)))
        assert "\n" not in str(raised.value)
        assert pool.slots == []  # a failed job leaves no actor behind
