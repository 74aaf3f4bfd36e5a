"""``auditor mine`` / ``audit`` / ``compare`` end to end on the SST-2 fixture: the report's numbers against
an independent recomputation (the Hugging Face model run directly, TextAttack's own word edit distance),
exit codes for CI gating, resuming from an interrupted checkpoint, the exported schema, and the HTML page
in a real headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from junitparser import JUnitXml
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from auditor.data import load_dataset
from auditor.schemas import ComparisonReport, RobustnessReport, json_schemas
from tests import reports
from tests.numerics import EPS32, argmax_margins, differences

pytestmark = pytest.mark.slow  # mining and audits in subprocesses

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SST2 = SHARED / "models" / "minilm-sst2"
EXAMPLES, BUDGET, TRIGGER_EXAMPLES = 8, 20, 24
AUDIT_OPTIONS = ["--data", "sst2", "--examples", str(EXAMPLES), "--budget", str(BUDGET), "--trigger-examples", str(TRIGGER_EXAMPLES), "--trigger-top-k", "2"]


def auditor(*arguments: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.run([sys.executable, "-m", "auditor", *arguments], capture_output=True, text=True, cwd=ROOT, env=environment, timeout=600)


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory(prefix="auditor-audit-test-") as directory:
        yield Path(directory)


@pytest.fixture(scope="module")
def audited(workdir: Path, sst2_patterns: Path) -> Path:
    out = workdir / "report"
    done = auditor("audit", "--model", str(SST2), "--patterns", str(sst2_patterns), "--out", str(out), *AUDIT_OPTIONS)
    assert done.returncode == 0, done.stderr
    assert "| attribution |" in done.stdout  # the Markdown summary goes to the CI log
    return out


def hf_probabilities(model_dir: Path, texts: list[str]) -> np.ndarray:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    rows = []
    with torch.no_grad():
        for text in texts:
            rows.append(torch.softmax(model(**tokenizer(text, return_tensors="pt")).logits[0].double(), -1).numpy())
    return np.array(rows)


PROBABILITY_ATOL = 1e-5
"""The audit's probabilities (its own process, batched and padded) against the model run here one unpadded
example at a time: about 84 float32 ulps of 1, the tolerance every in-process check of batching uses."""
REPORT_ULPS = 4
"""Two audit processes on one machine run the same kernels and agree to the bit; 4 ulps of 1 (probabilities)
or of the value allow for a resumed run on a CPU whose kernel path rounds differently (tests/numerics.py)."""


@pytest.mark.numerics
def test_report_numbers_recomputed_independently(audited: Path) -> None:
    import auditor.textattack_env  # noqa: F401
    from textattack.shared import AttackedText

    report = RobustnessReport.model_validate_json((audited / "report.json").read_bytes())
    markdown = (audited / "report.md").read_text()
    examples = load_dataset("sst2").head(EXAMPLES).examples
    clean = hf_probabilities(SST2, [e.text for e in examples])
    gold = np.array([e.label for e in examples])
    assert float(argmax_margins(clean).min()) > 2 * PROBABILITY_ATOL  # so the audit's process takes these argmaxes too
    assert report.clean_accuracy == pytest.approx(float((clean.argmax(1) == gold).mean()))
    assert [a.name for a in [report.attack, *report.baselines]] == ["attribution", "random", "deepwordbug"]
    for attack in [report.attack, *report.baselines]:
        outcomes = attack.outcomes
        assert [o.index for o in outcomes] == list(range(EXAMPLES))
        np.testing.assert_allclose([o.original_probabilities for o in outcomes], clean, atol=PROBABILITY_ATOL)
        succeeded = [o for o in outcomes if o.status == "succeeded"]
        attacked = [o for o in outcomes if o.status != "skipped"]
        assert all(o.status == "skipped" for o, p in zip(outcomes, clean.argmax(1)) if p != o.label)
        assert all(o.queries <= BUDGET for o in outcomes)
        assert attack.accuracy_under_attack == pytest.approx((len(attacked) - len(succeeded)) / EXAMPLES)
        if attacked:
            assert attack.success_rate == pytest.approx(len(succeeded) / len(attacked))
        if succeeded:
            after = hf_probabilities(SST2, [o.perturbed_text for o in succeeded])
            np.testing.assert_allclose([o.perturbed_probabilities for o in succeeded], after, atol=PROBABILITY_ATOL)
            # the model really flips: the gold label loses here too, up to the rounding of the recomputation (an
            # attack stops at its first flip, which may be a near-tie)
            assert all(row[o.label] <= np.delete(row, o.label).max() + PROBABILITY_ATOL for row, o in zip(after, succeeded))
            distances = [AttackedText(o.text).words_diff_num(AttackedText(o.perturbed_text)) for o in succeeded]
            assert attack.mean_word_edits == pytest.approx(float(np.mean(distances)))
            assert attack.mean_queries_per_success == pytest.approx(float(np.mean([o.queries for o in succeeded])))
        assert all(o.word_edits <= 3 for o in outcomes)  # the same word cap for every attack
        phrases = {e.text.strip().lower() for e in load_dataset("sst2", split="train").examples if len(e.text.split()) == 1}
        assert not [w for o in succeeded for w in o.inserted_words if w.lower() in phrases]  # valid successes only
        assert [o.explanations for o in outcomes] == [int(attack.name == "attribution" and o.status != "skipped") for o in outcomes]
        assert attack.queries == sum(o.queries for o in outcomes) and attack.explanations == sum(o.explanations for o in outcomes)
        for row in attack.per_class:
            members = [i for i, e in enumerate(examples) if e.label == row.label]
            assert row.examples == len(members)
            assert row.clean_accuracy == pytest.approx(float((clean.argmax(1)[members] == row.label).mean()))
        assert attack.budget_curve[-1].budget == BUDGET
        assert attack.budget_curve[-1].accuracy == pytest.approx(attack.accuracy_under_attack)
    trigger_examples = load_dataset("sst2").head(TRIGGER_EXAMPLES).examples
    trigger_probabilities = hf_probabilities(SST2, [e.text for e in trigger_examples])
    assert float(argmax_margins(trigger_probabilities).min()) > 2 * PROBABILITY_ATOL
    trigger_clean = trigger_probabilities.argmax(1)
    assert report.triggers
    for row in report.triggers:
        target = report.victim.labels.index(row.target_class)
        members = [i for i, e in enumerate(trigger_examples) if e.label == target]
        assert row.pattern_label != row.target_class and row.examples == len(members)
        assert row.accuracy_before == pytest.approx(float((trigger_clean[members] == target).mean()))
        assert row.drop_low <= row.drop <= row.drop_high and row.support >= 2  # the fixture's --min-support
    assert ("No trigger changes the accuracy significantly" in markdown) != any(r.significant for r in report.triggers)


def test_invariance_rows_their_gate_junit_cases_and_diff(audited: Path, tmp_path: Path) -> None:
    """The audit's invariance rows (the originals' predictions against the model run directly), then the gate,
    JUnit cases and diff on rows of 30 hand-made outcomes: the audit's 8 examples are too few for a rate."""
    from auditor.cli.audit import publish_audit
    from auditor.diff import diff_reports
    from auditor.invariance.checks import perturbations, summarise_check
    from auditor.schemas import CHECK_NAMES, InvarianceOutcome

    report = RobustnessReport.model_validate_json((audited / "report.json").read_bytes())
    assert [c.name for c in report.invariance] == report.settings.invariance == list(CHECK_NAMES)  # the default: all
    clean = hf_probabilities(SST2, [e.text for e in load_dataset("sst2").head(EXAMPLES).examples]).argmax(1)
    markdown = (audited / "report.md").read_text()
    for check in report.invariance:
        assert check.applied == len(check.outcomes) <= EXAMPLES and check.flip_rate is None and "fewer than 20" in check.note
        assert [o.original_prediction for o in check.outcomes] == [clean[o.index] for o in check.outcomes]
        assert f"| {check.name} | {check.applied} | {check.flips} | – (applied to {check.applied} examples" in markdown

    def rows(name: str, flips: int):
        outcomes = [
            InvarianceOutcome(
                index=i, example_id=f"{i:016x}", label=0, text=f"text {i}", perturbed_text=f"perturbed {i}", original_prediction=0,
                perturbed_prediction=int(i < flips),
            )  # fmt: skip
            for i in range(30)
        ]
        return summarise_check(perturbations([name], 0.1)[0], outcomes, 0.0)

    gated = report.model_copy(update={"invariance": [rows("typos", 6), rows("names", 0)]})
    junit = tmp_path / "junit.xml"
    assert publish_audit(gated, tmp_path / "fail", None, {"typos": 0.1, "names": 0.1}, None, "", 0.0, 0.05, "none", junit) == 1
    [suite] = [s for s in JUnitXml.fromfile(str(junit)) if s.name == "invariance"]
    cases = {case.name: case for case in suite}
    assert list(cases) == ["typos", "names"] and suite.failures == 1 and cases["names"].is_passed
    assert "typos: 6 of 30 predictions flipped (20.0 % [9.5 %, 37.3 %] at 95 %), above --max-flip-rate 10.0 %" == cases["typos"].result[0].message
    assert publish_audit(gated, tmp_path / "pass", None, {"typos": 0.2}, None, "", 0.0, 0.05, "none", junit) == 0  # 20 % is not above 20 %
    base, new = (report.model_copy(update={"invariance": [rows("typos", flips)]}) for flips in (0, 6))
    [typos] = [c for c in diff_reports(base, new).comparisons if c.measure.startswith("invariance:")]
    assert (typos.measure, typos.newly_broken, typos.newly_held, typos.p_value, typos.regression) == ("invariance:typos", 6, 0, 2 / 2**6, True)


def test_fail_under_gates_ci(audited: Path, sst2_patterns: Path) -> None:
    report = RobustnessReport.model_validate_json((audited / "report.json").read_bytes())
    worst = min(a.accuracy_under_attack for a in [report.attack, *report.baselines])
    resumed = ["audit", "--model", str(SST2), "--patterns", str(sst2_patterns), "--out", str(audited), *AUDIT_OPTIONS]
    failing = auditor(*resumed, "--fail-under", str(min(1.0, worst + 0.01)))
    assert failing.returncode == 1 and "below --fail-under" in failing.stderr
    passing = auditor(*resumed, "--fail-under", str(worst))
    assert passing.returncode == 0, passing.stderr
    for bad in (["--fail-under", "70"], ["--endpoint", "http://127.0.0.1:9/predictions/x"], ["--baselines", "textfooler"]):
        refused = auditor(*resumed, *bad)
        assert refused.returncode == 2 and "error:" in refused.stderr and "Traceback" not in refused.stderr


def test_every_success_carries_its_forensics_and_no_forensics_leaves_them_out(audited: Path, sst2_patterns: Path, workdir: Path) -> None:
    """Each success of each attack has its forensics (``tests/test_forensics.py`` checks their numbers), every
    other outcome none; each attack's summary is the one its successes give; the report round-trips through its
    schema, and the HTML and Markdown show a success's sentence. The same audit resumed with ``--no-forensics``
    has the same outcomes without them; resumed again with them, they come from the checkpoint."""
    from markupsafe import escape

    from auditor.diff import AuditScope, scope_differences
    from auditor.forensics import forensics_summary
    from auditor.report import markdown_escaped

    report = RobustnessReport.model_validate_json((audited / "report.json").read_bytes())
    assert RobustnessReport.model_validate_json(report.model_dump_json()) == report and report.settings.forensics
    attacks = [report.attack, *report.baselines]
    assert [s.attack for s in report.forensics_summary] == [a.name for a in attacks]
    for attack, summary in zip(attacks, report.forensics_summary):
        assert all((o.forensics is not None) == (o.status == "succeeded") for o in attack.outcomes)
        explained = [o.forensics for o in attack.outcomes if o.forensics is not None]
        assert all(o.forensics.target == o.label == o.original_prediction for o in attack.outcomes if o.forensics is not None)
        assert summary.model_dump(exclude={"seconds"}) == forensics_summary(attack.name, explained).model_dump(exclude={"seconds"})
    first = next(o.forensics for o in report.attack.outcomes if o.forensics is not None)  # a success both reports list
    assert str(escape(first.sentence)) in (audited / "report.html").read_text()
    assert markdown_escaped(first.sentence) in (audited / "report.md").read_text()

    out = workdir / "no-forensics"
    shutil.copytree(audited, out)
    options = ["audit", "--model", str(SST2), "--patterns", str(sst2_patterns), "--out", str(out), *AUDIT_OPTIONS]
    done = auditor(*options, "--no-forensics")
    assert done.returncode == 0, done.stderr
    plain = RobustnessReport.model_validate_json((out / "report.json").read_bytes())
    assert not plain.settings.forensics and plain.forensics_summary == [] and "Forensics were not computed" in (out / "report.html").read_text()
    for attack, without in zip(attacks, [plain.attack, *plain.baselines]):
        assert all(o.forensics is None for o in without.outcomes)
        assert [o.model_dump(exclude={"forensics"}) for o in attack.outcomes] == [o.model_dump(exclude={"forensics"}) for o in without.outcomes]
    assert scope_differences(AuditScope.of(report), AuditScope.of(plain)) == []  # `auditor diff` compares them: no outcome changed
    checkpoint = (out / "checkpoint.jsonl").read_bytes()
    again = auditor(*options, "--forensics")
    assert again.returncode == 0, again.stderr
    assert (out / "checkpoint.jsonl").read_bytes() == checkpoint  # nothing computed twice
    resumed = RobustnessReport.model_validate_json((out / "report.json").read_bytes())
    assert [o.forensics for a in [resumed.attack, *resumed.baselines] for o in a.outcomes] == [o.forensics for a in attacks for o in a.outcomes]


def test_a_ranking_layer_outside_the_model_is_refused_before_any_attack(sst2_patterns: Path, workdir: Path) -> None:
    out = workdir / "bad-layer"
    done = auditor("audit", "--model", str(SST2), "--patterns", str(sst2_patterns), "--out", str(out), *AUDIT_OPTIONS, "--ranking-layers", "-7")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == "error: layer -7 does not exist: the model has layers 0…5 (or -6…-1 from the last)"
    assert not (out / "checkpoint.jsonl").exists() and not (out / "report.json").exists()


@pytest.mark.numerics
def test_an_interrupted_audit_resumes_without_losing_finished_examples(audited: Path, sst2_patterns: Path, workdir: Path) -> None:
    out = workdir / "resumed"
    out.mkdir()
    lines = (audited / "checkpoint.jsonl").read_bytes().splitlines(keepends=True)
    kept = lines[:6]  # the header and five finished examples, then a record cut short by a crash
    (out / "checkpoint.jsonl").write_bytes(b"".join(kept) + lines[6][: len(lines[6]) // 2])
    done = auditor("audit", "--model", str(SST2), "--patterns", str(sst2_patterns), "--out", str(out), *AUDIT_OPTIONS)
    assert done.returncode == 0, done.stderr
    resumed_lines = (out / "checkpoint.jsonl").read_bytes().splitlines(keepends=True)
    assert resumed_lines[:6] == kept and all(line.endswith(b"\n") for line in resumed_lines)
    keys = [json.loads(line)["key"] for line in resumed_lines[1:]]
    assert len(keys) == len(set(keys))  # nothing was done twice

    def without_timing(path: Path) -> dict:
        return reports.without_timing(json.loads(path.read_text()))  # the invariance checks run again on resuming

    assert "resuming: 5 finished results" in done.stderr + done.stdout and "Resumed: 5 attack outcomes" in done.stdout
    resumed_report, full_report = without_timing(out / "report.json"), without_timing(audited / "report.json")
    assert resumed_report.pop("resumed") == 5  # (the reference was itself rerun by test_fail_under_gates_ci)
    full_report.pop("resumed")
    assert differences(resumed_report, full_report, REPORT_ULPS) == []  # outcomes, texts and counts exact
    other = auditor("audit", "--model", str(SST2), "--patterns", str(sst2_patterns), "--out", str(out), *AUDIT_OPTIONS[:-2], "--trigger-top-k", "1")
    assert other.returncode == 2 and "different run" in other.stderr
    other_gain = auditor("audit", "--model", str(SST2), "--patterns", str(sst2_patterns), "--out", str(out), *AUDIT_OPTIONS, "--sufficient-gain", "none")
    assert other_gain.returncode == 2 and "different run" in other_gain.stderr  # the search's setting is part of the audit


def test_an_audit_resumes_with_its_patterns_mined_again_with_other_roundings(sst2_patterns: Path, tmp_path: Path) -> None:
    """The checkpoint knows the patterns by where they were mined and which they are, not by their computed
    scores: mined again on another CPU they may differ in the last bit (here: one float32 ulp each), and the
    audit still resumes; a set with a pattern less is another run."""
    from auditor.audit import checkpoint_identity
    from auditor.checkpoint import Checkpoint
    from auditor.errors import InputError
    from auditor.schemas import AuditSettings
    from auditor.triggers import load_triggers
    from auditor.validity import build_lexicon
    from auditor.victims import open_victim

    mined, victim, dataset = load_triggers(sst2_patterns), open_victim(str(SST2)), load_dataset("sst2")
    settings = AuditSettings(
        examples=EXAMPLES, budget=BUDGET, max_words=3, positions="pattern", baselines=["random"], trigger_top_k=2, trigger_examples=8, seed=0
    )
    lexicon = build_lexicon(load_dataset("sst2", split="train"), victim.labels)

    def one_ulp_up(x: float) -> float:
        return x + EPS32 * max(abs(x), 2**-126)

    rounded = [
        p.model_copy(update={"positions": tuple(map(one_ulp_up, p.positions))} | {k: one_ulp_up(getattr(p, k)) for k in ("mass", "score", "log_odds", "z")})
        for p in mined.patterns
    ]
    again = mined.model_copy(update={"patterns": rounded[::-1], "seconds": mined.seconds + 1})  # reversed: an order of near-ties
    fewer = mined.model_copy(update={"patterns": mined.patterns[1:]})
    identity = {name: checkpoint_identity(victim, dataset, t, settings, dataset, lexicon) for name, t in [("mined", mined), ("again", again), ("fewer", fewer)]}
    path = tmp_path / "checkpoint.jsonl"
    Checkpoint(path, identity["mined"]).put("attribution:0", {"status": "failed"})
    assert Checkpoint(path, identity["again"])["attribution:0"] == {"status": "failed"}
    with pytest.raises(InputError, match="holds results of a different run"):
        Checkpoint(path, identity["fewer"])


def test_a_run_that_finished_nothing_leaves_no_checkpoint_in_the_way(tmp_path: Path) -> None:
    from auditor.checkpoint import Checkpoint

    path = tmp_path / "checkpoint.jsonl"
    Checkpoint(path, {"settings": 1})  # a run that fails before its first outcome
    assert not path.exists()
    path.write_text(json.dumps({"checkpoint": {"settings": 1}}) + "\n")  # or one that wrote only its header
    retry = Checkpoint(path, {"settings": 2})
    retry.put("a", 1)
    assert Checkpoint(path, {"settings": 2})["a"] == 1


def test_report_files_and_exported_schema(audited: Path) -> None:
    assert sorted(p.name for p in audited.iterdir() if not p.name.startswith(".")) == [
        "checkpoint.jsonl", "report.html", "report.json", "report.md", "report.schema.json"
    ]  # fmt: skip
    schema = json.loads((audited / "report.schema.json").read_text())
    assert schema == RobustnessReport.model_json_schema() == json_schemas()["RobustnessReport"]  # also in `auditor schema`
    jsonschema.Draft202012Validator(schema).validate(json.loads((audited / "report.json").read_text()))
    assert schema == json.loads((ROOT / "docs" / "robustness-report.schema.json").read_text()), (
        "the report schema changed: bump schema_version and update docs/robustness-report.schema.json"
    )
    markdown = (audited / "report.md").read_text()
    assert len(markdown.splitlines()) < 80 and "| deepwordbug |" in markdown  # short: printed in CI logs (the HTML has the rest)
    html = (audited / "report.html").read_text()
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html and "<script" not in html


def chromium(page: Path, screenshot: Path) -> list[str]:
    """Load ``page`` in headless Chromium, save a screenshot, return the console messages it logged."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "Chromium is not installed (scripts/setup.sh installs Debian's chromium package)"
    with tempfile.TemporaryDirectory(prefix="auditor-chromium-") as profile:
        done = subprocess.run(
            [
                binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                "--disable-background-networking", "--disable-component-update", "--no-first-run", "--enable-logging=stderr",
                "--v=0", f"--screenshot={screenshot}", "--window-size=1200,1600", "--virtual-time-budget=3000", page.as_uri(),
            ],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert screenshot.is_file(), done.stderr[-2000:]
    return [line for line in done.stderr.splitlines() if ":CONSOLE(" in line or "CONSOLE" in line.split("]")[0]]


def test_html_report_renders_in_headless_chromium(audited: Path, tmp_path: Path) -> None:
    from PIL import Image

    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><p>x</p><script>console.error('boom'); undefinedThing();</script></body></html>")
    assert chromium(broken, tmp_path / "broken.png"), "console messages are not detected: the check below would prove nothing"
    messages = chromium(audited / "report.html", tmp_path / "report.png")
    assert messages == []
    pixels = np.asarray(Image.open(tmp_path / "report.png").convert("L"), dtype=float)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.01  # text and plots, not a blank page


@pytest.mark.numerics
def test_compare_full_and_pruned(sst2_patterns: Path, workdir: Path) -> None:
    pruned_dir = workdir / "pruned"
    model = AutoModelForSequenceClassification.from_pretrained(SST2)
    model.prune_heads({0: [0, 1, 2], 3: [4, 5]})
    model.save_pretrained(pruned_dir)
    AutoTokenizer.from_pretrained(SST2).save_pretrained(pruned_dir)
    out = workdir / "compare"
    done = auditor(
        "compare", "--full", str(SST2), "--pruned", str(pruned_dir), "--data", "sst2", "--patterns", str(sst2_patterns),
        "--examples", "8", "--budget", "10", "--trigger-examples", "16", "--trigger-top-k", "1", "--out", str(out),
        "--junit", str(workdir / "compare.xml"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = ComparisonReport.model_validate_json((out / "comparison.json").read_bytes())
    suites = list(JUnitXml.fromfile(str(workdir / "compare.xml")))
    sides = [(side, a) for side, model in (("full", report.full), ("pruned", report.pruned)) for a in [model.attack, *model.baselines]]
    assert [s.name for s in suites] == [f"{side}.{a.name}" for side, a in sides]
    for suite, (_, attack) in zip(suites, sides):
        assert suite.tests == len(list(suite)) == 1 and suite.failures == 0  # compare gates nothing
        assert len(next(iter(suite)).system_out.splitlines()) == 1 + 8  # the summary, a line per example
    examples = load_dataset("sst2").head(8).examples
    full, pruned = (hf_probabilities(folder, [e.text for e in examples]) for folder in (SST2, pruned_dir))
    # the report's argmaxes were taken in another process: no near-tie that its rounding could turn
    assert float(argmax_margins(full).min()) > 2 * PROBABILITY_ATOL and float(argmax_margins(pruned).min()) > 2 * PROBABILITY_ATOL
    full, pruned = full.argmax(1), pruned.argmax(1)
    gold = np.array([e.label for e in examples])
    assert report.agreement == pytest.approx(float((full == pruned).mean()))
    assert report.full.accuracy == pytest.approx(float((full == gold).mean()))
    assert report.pruned.accuracy == pytest.approx(float((pruned == gold).mean()))
    assert report.pruned.victim.model.pruned_heads == {0: [0, 1, 2], 3: [4, 5]}
    assert [t.pattern for t in report.full.triggers] == [t.pattern for t in report.pruned.triggers]
    assert report.full.ms_per_example > 0 and report.pruned.ms_per_example > 0
    assert "| accuracy |" in (out / "comparison.md").read_text() and (out / "comparison.html").is_file()


def test_a_mine_without_an_insertable_pattern_says_so_and_audits_with_the_edits(tmp_path: Path) -> None:
    """``audit --data rte --mine-examples 300`` mined for a minute, then stopped: "the patterns file has no
    label-free pattern with a word that can be inserted" (a text pair takes filler words only). Now one line
    says so and the edit attacks run; 8 pairs mined at the default support 5 hold no pattern at all."""
    out = tmp_path / "rte"
    done = auditor(
        "audit", "--model", str(SHARED / "models" / "minilm-rte"), "--data", "rte", "--mine-examples", "8", "--examples", "2",
        "--budget", "5", "--baselines", "pattern-only", "--trigger-examples", "4", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and notes[0].endswith("the audit goes on without pattern insertion and the pattern-only baseline"), done.stderr
    report = RobustnessReport.model_validate_json((out / "report.json").read_bytes())
    assert report.settings.transformations == ["tokenedit"] and report.settings.baselines == [] and len(report.attack.outcomes) == 2


def test_an_audit_of_a_train_split_bounds_its_trigger_table_and_shows_its_progress(sst2_patterns: Path, tmp_path: Path) -> None:
    """``audit --data sst2:train --examples 10`` printed nothing for 13 minutes after its attacks: the trigger
    table took the whole split (67,349 rows). It takes the first 1000 by default now (TRIGGER_EXAMPLES), and
    says its size before it starts and how far it is (stderr is no terminal here: plain lines)."""
    from auditor.cli.attack_options import TRIGGER_EXAMPLES

    out = tmp_path / "train"
    done = auditor(
        "audit", "--model", str(SST2), "--data", "sst2:train", "--patterns", str(sst2_patterns), "--examples", "1", "--budget", "2",
        "--baselines", "none", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = RobustnessReport.model_validate_json((out / "report.json").read_bytes())
    assert report.settings.trigger_examples == TRIGGER_EXAMPLES == report.trigger_data.count == 1000
    lines = [line.split(" (")[0] for line in done.stderr.splitlines() if line.startswith("trigger table: examples predicted: ")]
    total = TRIGGER_EXAMPLES + sum(row.examples for row in report.triggers)
    assert lines[0] == f"trigger table: examples predicted: 0/{total}" and lines[-1] == f"trigger table: examples predicted: {total}/{total}"
