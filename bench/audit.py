"""Valid attribution-guided attack vs random insertion vs DeepWordBug (and the ablations) on the SST-2 and RTE
fixtures, side by side.

For each task: the label-word lexicon comes from the training split, the token-pair patterns from the default
``auditor mine`` over its sentences (out/patterns/TASK.json, mined here, resumably, when missing); then the
same first --examples dev examples are attacked by every attack
under one query budget and the SAME constraints (``auditor.validity``: no label-carrying word or negation
inserted, substituted or deleted; every changed word a misspelling a reader undoes, judged with
pyspellchecker's English dictionary; no number edited; at most --max-words words edited). The attacks run
interleaved, example by example, so their seconds are measured under the same load. It prints, per attack,
the valid success rate and every cost (prediction queries, explanation calls, seconds, seconds per valid
success), then the goals for the default attribution-guided attack with their gaps: valid success >=
DeepWordBug's, queries per success <= 1/3 of DeepWordBug's, seconds per valid success <= DeepWordBug's; the
ablation ``leave-one-out`` (the attribution attack's transformations and search with DeepWordBug's
leave-one-out ranking) shows what the attribution ranking contributes; ``pattern-only`` (the search inserting
mined patterns alone) against random insertion (goal: + 10 points) and the default against ``edits-only``
(the same search without patterns; goal: >=) what the patterns contribute; then every row of the trigger
table with its support and the 95 % bootstrap interval of its drop. Every success of every attack is then
checked again with the dictionary directly (not through ``auditor.validity``): the count of edits into a
common English word (pyspellchecker frequency >= 1e-6, about once per million words) and into any dictionary
word, both goal 0.
No default is tuned here: the transformations and the search's options were chosen by bench/tune_audit.py
on training examples (its record, out/tune-audit/tuning.json, is printed when present), the lexicon
threshold on SST-2 train.
Results are checkpointed under --out, so an interrupted run resumes.

    .venv/bin/python bench/audit.py [--examples 200] [--budget 100] [--tasks sst2,rte] [--threads N]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import difflib
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import torch
from spellchecker import SpellChecker

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auditor.audit import checkpoint_identity, run_audit  # noqa: E402
from auditor.checkpoint import Checkpoint  # noqa: E402
from auditor.cli.attack_options import parse_sufficient_gain  # noqa: E402
from auditor.data import load_dataset  # noqa: E402
from auditor.models import load_classifier  # noqa: E402
from auditor.report import percent, trigger_verdict, write_report  # noqa: E402
from auditor.cli.mine import mine_to_file  # noqa: E402
from auditor.schemas import AttackSummary, AuditSettings, TriggerMiningOptions  # noqa: E402
from auditor.validity import build_lexicon  # noqa: E402
from auditor.victims import LocalVictim  # noqa: E402
from textattack.shared import AttackedText  # noqa: E402  (after auditor's NLTK set-up)

MODELS = {"sst2": "minilm-sst2", "rte": "minilm-rte"}


def train_one_word_phrases() -> set[str]:
    """SST-2 train.tsv's single-word labelled phrases, read directly (independent of auditor.validity)."""
    path = ROOT.parent / "shared" / "data" / "glue" / "SST-2" / "train.tsv"
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    return {row[0].strip().lower() for row in rows if len(row[0].split()) == 1}


def seconds_per_success(attack: AttackSummary) -> float:
    """All the attack's seconds (every example, failures included) per valid success."""
    won = sum(o.status == "succeeded" for o in attack.outcomes)
    return attack.seconds / won if won else float("inf")


def dictionary_edits(attacks: Iterable[AttackSummary]) -> tuple[list[str], list[str]]:
    """The successes' word changes (a difflib alignment of the words, each replaced word paired with the most
    similar new word of its block) whose
    new word is a common English word (pyspellchecker frequency >= 1e-6) and those that are any word of its
    dictionary, as 'attack: original -> edited', checked here without auditor.validity."""
    english = SpellChecker(language="en")
    common, words = [], []
    for attack in attacks:
        for o in attack.outcomes:
            if o.status != "succeeded":
                continue
            for before, after in ((o.text, o.perturbed_text), (o.text_pair or "", o.perturbed_text_pair or "")):
                a, b = AttackedText(before).words if before else [], AttackedText(after).words if after else []
                for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
                    if tag != "replace":
                        continue
                    # each original word against the new word of the block most like it (an inserted word beside
                    # an edited one is no replacement of it)
                    pairs = [(old, max(b[j1:j2], key=lambda new: difflib.SequenceMatcher(a=old, b=new).ratio())) for old in a[i1:i2]]
                    for old, new in pairs:
                        if old.lower() == new.lower() or new.lower() not in english:
                            continue
                        words.append(f"{attack.name}: {old} -> {new}")
                        if english.word_usage_frequency(new.lower()) >= 1e-6:
                            common.append(words[-1])
    return common, words


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="sst2,rte")
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--max-words", type=int, default=3)
    parser.add_argument("--top-k", type=int, default=None, help="patterns per class (default: AuditSettings' default, tuned on train)")
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
    top_k = AuditSettings.model_fields["top_k"].default if args.top_k is None else args.top_k

    defaults = AuditSettings.model_fields
    print(
        f"examples={args.examples} budget={args.budget} max_words={args.max_words} transformations={','.join(transformations)} "
        f"sufficient_gain={sufficient_gain} edits_per_word={defaults['candidates'].default} steps={defaults['steps'].default} "
        f"ranking_layers={defaults['layers'].default} sweep_words={defaults['sweep_words'].default} "
        f"top_k={top_k} (patterns mined by the default 'auditor mine') threads={torch.get_num_threads()} (attacks interleaved example by example)"
    )
    tuning = ROOT / "out" / "tune-audit" / "tuning.json"
    if tuning.is_file():
        record = json.loads(tuning.read_text())
        spans = ", ".join(f"{task} train[{r['train_indices'][0]}..{r['train_indices'][-1]}] ({len(r['train_indices'])} examples)" for task, r in record["results"].items())
        print(f"tuning: the attack's defaults chosen by bench/tune_audit.py = {record['chosen']} on {spans}; no dev example tuned anything")
    else:
        print("tuning: out/tune-audit/tuning.json not found (run bench/tune_audit.py to record which train examples chose the default)")
    print("tuning: lexicon threshold chosen on SST-2 train (F1 against its one-word phrases); patterns mined from the train split's sentences")
    header = (
        "| task | attack | clean acc | acc under attack | valid success | queries/attack | queries/success | "
        "explanations/attack | rejected | words/success | seconds | seconds/valid success |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    goals = []
    for task in args.tasks.split(","):
        classifier = load_classifier(ROOT.parent / "shared" / "models" / MODELS[task])
        train = load_dataset(task, split="train")
        out = args.out / task
        model = ROOT.parent / "shared" / "models" / MODELS[task]
        triggers = mine_to_file(str(model), train, TriggerMiningOptions(), ROOT / "out" / "patterns" / f"{task}.json")  # the default 'auditor mine'
        lexicon = build_lexicon(train, classifier.labels)
        print(
            f"{task}: {len(triggers.patterns)} label-free patterns with support >= {triggers.options.min_support} mined by the default "
            f"'auditor mine' from {triggers.data.count} train {triggers.options.units}; lexicon {len(lexicon.words)} words "
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
            top_k=top_k,
            positions="pattern",
            baselines=["random", "deepwordbug", "leave-one-out", "pattern-only", "edits-only"],
            trigger_top_k=3,
            trigger_examples=args.trigger_examples,
            seed=0,
            forensics=False,  # this bench measures the attacks; 'auditor audit' adds the forensics, causal check and advice
            causal_check=False,
            advice=False,
        )
        identity = checkpoint_identity(victim, dev, triggers, settings, dev, lexicon)
        digest = hashlib.sha256(settings.model_dump_json().encode()).hexdigest()[:12]
        checkpoint = Checkpoint(out / f"checkpoint-{args.examples}-{digest}.jsonl", identity)
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
                f"{a.mean_word_edits or 0:.2f} | {a.seconds:.1f} | {seconds_per_success(a):.3f} |"
            )
        ours, dwb, loo = attacks["attribution"], attacks["deepwordbug"], attacks["leave-one-out"]
        success, dwb_success, loo_success = (100 * (a.success_rate or 0) for a in (ours, dwb, loo))
        ratio = (ours.mean_queries_per_success or float("nan")) / (dwb.mean_queries_per_success or float("nan"))
        time_ours, time_dwb = seconds_per_success(ours), seconds_per_success(dwb)

        def verdict(met: bool, gap: str) -> str:
            return "met" if met else f"MISSED by {gap}"

        goals.append(
            f"{task}: valid success {success:.1f} % vs DeepWordBug {dwb_success:.1f} % "
            f"(goal >=: {verdict(success >= dwb_success, f'{dwb_success - success:.1f} points')}); "
            f"queries/success {ours.mean_queries_per_success or 0:.1f} = {ratio:.2f} x DeepWordBug's {dwb.mean_queries_per_success or 0:.1f} "
            f"(goal <= 0.33: {verdict(ratio <= 1 / 3, f'{ratio - 1 / 3:.2f}')}); "
            f"seconds/valid success {time_ours:.3f} vs DeepWordBug's {time_dwb:.3f} "
            f"(goal <=: {verdict(time_ours <= time_dwb, f'{time_ours - time_dwb:.3f} s = {time_ours / time_dwb:.2f} x')})"
        )
        goals.append(
            f"{task}: ablation: the same transformations and search with DeepWordBug's leave-one-out ranking reach {loo_success:.1f} % "
            f"at {loo.mean_queries_per_success or 0:.1f} queries/success and {seconds_per_success(loo):.3f} s/success; the attribution "
            f"ranking gives {success - loo_success:+.1f} points and {(ours.mean_queries_per_success or 0) - (loo.mean_queries_per_success or 0):+.1f} queries/success"
        )
        common, words = dictionary_edits(attacks.values())
        goals.append(
            f"{task}: successes (all attacks) editing a word into a common English word: {len(common)} (goal 0: "
            f"{verdict(not common, str(len(common)))}){': ' + ', '.join(common[:10]) if common else ''}; "
            f"into any dictionary word: {len(words)}{': ' + ', '.join(words[:10]) if words else ''}"
        )
        if task == "sst2":
            phrases = train_one_word_phrases()
            won = [o for o in ours.outcomes if o.status == "succeeded"]
            labelled = [o for o in won if any(w.lower() in phrases for w in o.inserted_words)]
            share = 100 * len(labelled) / max(1, len(won))
            goals.append(f"sst2: {len(labelled)} of {len(won)} successes ({share:.1f} %) insert a one-word labelled phrase of train.tsv (goal <= 5 %: {verdict(share <= 5, f'{share - 5:.1f} points')})")
        patterns_only, edits_only, random_words = attacks["pattern-only"], attacks["edits-only"], attacks["random"]
        pattern_success, edits_success, random_success = (100 * (a.success_rate or 0) for a in (patterns_only, edits_only, random_words))
        goals.append(
            f"{task}: pattern-only valid success {pattern_success:.1f} % vs random insertion {random_success:.1f} % "
            f"(goal >= random + 10 points = {random_success + 10:.1f} %: {verdict(pattern_success >= random_success + 10, f'{random_success + 10 - pattern_success:.1f} points')})"
        )
        goals.append(
            f"{task}: default search (character edits + patterns) {success:.1f} % vs character edits alone {edits_success:.1f} % "
            f"(goal >=: {verdict(success >= edits_success, f'{edits_success - success:.1f} points')}); the default's successes by edit: "
            f"{', '.join(f'{kind} {count}' for kind, count in ours.successes_by_edit.items()) or 'none'}"
        )
        for t in report.triggers:
            goals.append(
                f"{task}: trigger {t.pattern!r} ({t.pattern_label}, support {t.support}) into {t.target_class} ({t.examples} dev examples): "
                f"{percent(t.accuracy_before)} -> {percent(t.accuracy_after)}, drop {100 * t.drop:+.1f} points, 95 % CI "
                f"[{100 * t.drop_low:+.1f}, {100 * t.drop_high:+.1f}]{' significant' if t.significant else ''}"
            )
        least = min((t.support for t in report.triggers), default=None)
        goals.append(
            f"{task}: every trigger rests on support >= 5: {verdict(least is None or least >= 5, f'support {least}')} "
            f"(least {least}); {trigger_verdict(report.triggers)}"
        )
    print("\n".join(lines))
    print("\n".join(goals))


if __name__ == "__main__":
    main()
