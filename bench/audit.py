"""Attribution triggers vs random insertion vs DeepWordBug on the SST-2 and RTE fixtures, side by side.

For each task: mine patterns from the first --mine-examples training examples, then attack the same first
--examples dev examples with the three attacks under one query budget (at most --max-words inserted words
for the insertion attacks) and print clean accuracy, accuracy under attack, success rate and queries, plus
the issue's goals: the attribution attack's queries per success as a fraction of DeepWordBug's (goal ≤ 1/3,
at an equal or higher success rate), and the worst class's accuracy drop (goal ≥ 30 points with ≤ 3 words).
Results are checkpointed under --out, so an interrupted run resumes.

    .venv/bin/python bench/audit.py [--examples 200] [--budget 100] [--tasks sst2,rte] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auditor.audit import checkpoint_identity, run_audit  # noqa: E402
from auditor.checkpoint import Checkpoint  # noqa: E402
from auditor.data import load_dataset  # noqa: E402
from auditor.models import load_classifier  # noqa: E402
from auditor.report import percent, write_atomic, write_report  # noqa: E402
from auditor.schemas import AuditSettings, TriggerSet  # noqa: E402
from auditor.triggers import mine_triggers  # noqa: E402
from auditor.victims import LocalVictim  # noqa: E402

MODELS = {"sst2": "minilm-sst2", "rte": "minilm-rte"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="sst2,rte")
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--mine-examples", type=int, default=500)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--max-words", type=int, default=3)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--positions", choices=["pattern", "all"], default="pattern")
    parser.add_argument("--trigger-examples", type=int, default=None, help="dev examples of the trigger table (default all)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench-audit")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print(
        f"examples={args.examples} budget={args.budget} max_words={args.max_words} top_k={args.top_k} "
        f"positions={args.positions} mine_examples={args.mine_examples} threads={torch.get_num_threads()}"
    )
    header = "| task | attack | clean acc | acc under attack | success rate | queries/attack | queries/success | words/success | seconds |"
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    goals = []
    for task in args.tasks.split(","):
        classifier = load_classifier(ROOT.parent / "shared" / "models" / MODELS[task])
        out = args.out / task
        patterns_file = out / f"patterns-{args.mine_examples}.json"
        if patterns_file.is_file():
            triggers = TriggerSet.model_validate_json(patterns_file.read_bytes())
        else:
            triggers = mine_triggers(classifier, load_dataset(task, split="train"), examples=args.mine_examples)
            write_atomic(patterns_file, triggers.model_dump_json(indent=1))
        print(f"{task}: {len(triggers.patterns)} patterns mined from {triggers.data.count} examples in {triggers.seconds:.1f} s")
        dev = load_dataset(task, split="dev")
        victim = LocalVictim(classifier)
        settings = AuditSettings(
            examples=args.examples,
            budget=args.budget,
            max_words=args.max_words,
            top_k=args.top_k,
            positions=args.positions,
            baselines=["random", "deepwordbug"],
            trigger_top_k=3,
            trigger_examples=args.trigger_examples,
            seed=0,
        )
        checkpoint = Checkpoint(out / f"checkpoint-{args.examples}.jsonl", checkpoint_identity(victim, dev, triggers, settings, dev))
        started = time.perf_counter()
        report = run_audit(victim, dev, triggers, settings, checkpoint, dev)
        write_report(report, out / f"report-{args.examples}")
        print(f"{task}: audited in {time.perf_counter() - started:.1f} s (this run)")
        attacks = {a.name: a for a in [report.attack, *report.baselines]}
        for a in attacks.values():
            lines.append(
                f"| {task} | {a.name} | {percent(a.clean_accuracy)} | {percent(a.accuracy_under_attack)} | {percent(a.success_rate)} | "
                f"{a.mean_queries or 0:.1f} | {a.mean_queries_per_success or 0:.1f} | {a.mean_word_edits or 0:.2f} | {a.seconds:.1f} |"
            )
        ours, dwb = attacks["attribution"], attacks["deepwordbug"]
        ratio = (ours.mean_queries_per_success or float("nan")) / (dwb.mean_queries_per_success or float("nan"))
        worst = max(ours.per_class, key=lambda c: c.clean_accuracy - c.accuracy_under_attack)
        drop = 100 * (worst.clean_accuracy - worst.accuracy_under_attack)
        goals.append(
            f"{task}: attribution queries/success = {ratio:.2f} x DeepWordBug's (goal <= 0.33: {'met' if ratio <= 1 / 3 else 'not met'}); "
            f"success rate {percent(ours.success_rate)} vs {percent(dwb.success_rate)} "
            f"({'equal or higher' if (ours.success_rate or 0) >= (dwb.success_rate or 0) else 'lower'}); "
            f"worst class {worst.name} loses {drop:.1f} points with {ours.mean_word_edits or 0:.2f} words per success "
            f"(goal >= 30 with <= 3: {'met' if drop >= 30 and (ours.mean_word_edits or 0) <= 3 else 'not met'})"
        )
        trigger_best = min(report.triggers, key=lambda t: t.accuracy_after - t.accuracy_before, default=None)
        if trigger_best is not None:
            goals.append(
                f"{task}: strongest universal trigger {trigger_best.pattern!r} ({trigger_best.pattern_label}) takes "
                f"{trigger_best.target_class} from {percent(trigger_best.accuracy_before)} to {percent(trigger_best.accuracy_after)} "
                f"on {trigger_best.examples} dev examples"
            )
    print("\n".join(lines))
    print("\n".join(goals))


if __name__ == "__main__":
    main()
