"""Valid attribution-guided attack vs random insertion vs DeepWordBug on the SST-2 and RTE fixtures, side by side.

For each task: the label-word lexicon comes from the training split, patterns are mined from its first
--mine-examples training examples; then the same first --examples dev examples are attacked by the three
attacks under one query budget and the SAME constraints (no label-carrying word inserted, substituted or
deleted; at most --max-words words edited). It prints, per attack, the valid success rate and every cost
(prediction queries, explanation calls, seconds), then the issue's goals for the default attribution-guided
attack with their gaps: valid success >= DeepWordBug's, queries per success <= 1/3 of DeepWordBug's,
valid success >= random insertion's + 15 points, and (SST-2) at most 5 % of its successes inserting a
one-word labelled phrase of train.tsv (counted here from train.tsv directly, not from the lexicon).
No default is tuned here: the transformations and the search's sufficient gain were chosen by
bench/tune_audit.py on training examples (its record, out/tune-audit/tuning.json, is printed when present),
the lexicon threshold on SST-2 train.
Results are checkpointed under --out, so an interrupted run resumes.

    .venv/bin/python bench/audit.py [--examples 200] [--budget 100] [--tasks sst2,rte] [--threads N]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auditor.audit import checkpoint_identity, run_audit  # noqa: E402
from auditor.checkpoint import Checkpoint  # noqa: E402
from auditor.cli.audit import parse_sufficient_gain  # noqa: E402
from auditor.data import load_dataset  # noqa: E402
from auditor.models import load_classifier  # noqa: E402
from auditor.report import percent, write_atomic, write_report  # noqa: E402
from auditor.schemas import AuditSettings, TriggerSet  # noqa: E402
from auditor.triggers import mine_triggers  # noqa: E402
from auditor.validity import build_lexicon  # noqa: E402
from auditor.victims import LocalVictim  # noqa: E402

MODELS = {"sst2": "minilm-sst2", "rte": "minilm-rte"}


def train_one_word_phrases() -> set[str]:
    """SST-2 train.tsv's single-word labelled phrases, read directly (independent of auditor.validity)."""
    path = ROOT.parent / "shared" / "data" / "glue" / "SST-2" / "train.tsv"
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    return {row[0].strip().lower() for row in rows if len(row[0].split()) == 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="sst2,rte")
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--mine-examples", type=int, default=500)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--max-words", type=int, default=3)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--transformations", default=None, help="comma-separated (default: AuditSettings' default, tuned on train)")
    parser.add_argument("--sufficient-gain", default=None, help="a number in (0, 1] or 'none' (default: AuditSettings' default, tuned on train)")
    parser.add_argument("--trigger-examples", type=int, default=None, help="dev examples of the trigger table (default all)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench-audit")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    default = AuditSettings.model_fields["transformations"].default
    transformations = args.transformations.split(",") if args.transformations else default
    sufficient_gain = parse_sufficient_gain(args.sufficient_gain)

    print(
        f"examples={args.examples} budget={args.budget} max_words={args.max_words} transformations={','.join(transformations)} "
        f"sufficient_gain={sufficient_gain} "
        f"top_k={args.top_k} mine_examples={args.mine_examples} threads={torch.get_num_threads()} (timings measured under load)"
    )
    tuning = ROOT / "out" / "tune-audit" / "tuning.json"
    if tuning.is_file():
        record = json.loads(tuning.read_text())
        spans = ", ".join(f"{task} train[{r['train_indices'][0]}..{r['train_indices'][-1]}] ({len(r['train_indices'])} examples)" for task, r in record["results"].items())
        print(f"tuning: transformations@sufficient_gain chosen by bench/tune_audit.py = {record['chosen']} on {spans}; no dev example tuned anything")
    else:
        print("tuning: out/tune-audit/tuning.json not found (run bench/tune_audit.py to record which train examples chose the default)")
    print("tuning: lexicon threshold chosen on SST-2 train (F1 against its one-word phrases); patterns mined on train[0..mine_examples-1]")
    header = (
        "| task | attack | clean acc | acc under attack | valid success | queries/attack | queries/success | "
        "explanations/attack | rejected | words/success | seconds |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|---|"]
    goals = []
    for task in args.tasks.split(","):
        classifier = load_classifier(ROOT.parent / "shared" / "models" / MODELS[task])
        train = load_dataset(task, split="train")
        out = args.out / task
        patterns_file = out / f"patterns-{args.mine_examples}.json"
        if patterns_file.is_file():
            triggers = TriggerSet.model_validate_json(patterns_file.read_bytes())
        else:
            triggers = mine_triggers(classifier, train, examples=args.mine_examples)
            write_atomic(patterns_file, triggers.model_dump_json(indent=1))
        lexicon = build_lexicon(train, classifier.labels)
        print(
            f"{task}: {len(triggers.patterns)} patterns mined from {triggers.data.count} train examples; lexicon {len(lexicon.words)} words "
            f"({lexicon.phrase_words} one-word phrases, {lexicon.associated_words} by association) from {train.identity().title}"
        )
        dev = load_dataset(task, split="dev")
        victim = LocalVictim(classifier)
        settings = AuditSettings(
            examples=args.examples,
            budget=args.budget,
            max_words=args.max_words,
            transformations=transformations,
            sufficient_gain=sufficient_gain,
            top_k=args.top_k,
            positions="pattern",
            baselines=["random", "deepwordbug"],
            trigger_top_k=3,
            trigger_examples=args.trigger_examples,
            seed=0,
        )
        identity = checkpoint_identity(victim, dev, triggers, settings, dev, lexicon)
        checkpoint = Checkpoint(out / f"checkpoint-{args.examples}-{'-'.join(transformations)}@{sufficient_gain}.jsonl", identity)
        started = time.perf_counter()
        report = run_audit(victim, dev, triggers, settings, checkpoint, dev, lexicon)
        write_report(report, out / f"report-{args.examples}")
        print(f"{task}: audited {report.data.count} examples of {report.data.title} in {time.perf_counter() - started:.1f} s (this run; {report.resumed} outcomes resumed)")
        attacks = {a.name: a for a in [report.attack, *report.baselines]}
        for a in attacks.values():
            attacked = max(1, sum(o.status != "skipped" for o in a.outcomes))
            lines.append(
                f"| {task} | {a.name} | {percent(a.clean_accuracy)} | {percent(a.accuracy_under_attack)} | {percent(a.success_rate)} | "
                f"{a.mean_queries or 0:.1f} | {a.mean_queries_per_success or 0:.1f} | {a.explanations / attacked:.2f} | {a.rejected} | "
                f"{a.mean_word_edits or 0:.2f} | {a.seconds:.1f} |"
            )
        ours, dwb, rnd = attacks["attribution"], attacks["deepwordbug"], attacks["random"]
        success, dwb_success, rnd_success = (100 * (a.success_rate or 0) for a in (ours, dwb, rnd))
        ratio = (ours.mean_queries_per_success or float("nan")) / (dwb.mean_queries_per_success or float("nan"))

        def verdict(met: bool, gap: str) -> str:
            return "met" if met else f"MISSED by {gap}"

        goals.append(
            f"{task}: valid success {success:.1f} % vs DeepWordBug {dwb_success:.1f} % "
            f"(goal >=: {verdict(success >= dwb_success, f'{dwb_success - success:.1f} points')}); "
            f"queries/success {ours.mean_queries_per_success or 0:.1f} = {ratio:.2f} x DeepWordBug's {dwb.mean_queries_per_success or 0:.1f} "
            f"(goal <= 0.33: {verdict(ratio <= 1 / 3, f'{ratio - 1 / 3:.2f}')}); "
            f"vs random insertion {rnd_success:.1f} % + 15 = {rnd_success + 15:.1f} % "
            f"(goal: {verdict(success >= rnd_success + 15, f'{rnd_success + 15 - success:.1f} points')})"
        )
        if task == "sst2":
            phrases = train_one_word_phrases()
            won = [o for o in ours.outcomes if o.status == "succeeded"]
            labelled = [o for o in won if any(w.lower() in phrases for w in o.inserted_words)]
            share = 100 * len(labelled) / max(1, len(won))
            words = sorted({w for o in labelled for w in o.inserted_words if w.lower() in phrases})
            goals.append(
                f"sst2: {len(labelled)} of {len(won)} successes ({share:.1f} %) insert a one-word labelled phrase of train.tsv "
                f"(goal <= 5 %: {verdict(share <= 5, f'{share - 5:.1f} points')}){': ' + ', '.join(words) if words else ''}"
            )
        trigger_best = min(report.triggers, key=lambda t: t.accuracy_after - t.accuracy_before, default=None)
        if trigger_best is not None:
            goals.append(
                f"{task}: strongest label-free universal trigger {trigger_best.pattern!r} ({trigger_best.pattern_label}) takes "
                f"{trigger_best.target_class} from {percent(trigger_best.accuracy_before)} to {percent(trigger_best.accuracy_after)} "
                f"on {trigger_best.examples} dev examples"
            )
    print("\n".join(lines))
    print("\n".join(goals))


if __name__ == "__main__":
    main()
