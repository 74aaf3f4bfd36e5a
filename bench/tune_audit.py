"""Choose the attribution-guided attack's transformations, its search's sufficient gain and its word ranking
on TRAINING examples only (never the dev examples ``bench/audit.py`` reports), and record the choice.

For each task: the label-word lexicon and the mined patterns come from the training split (the patterns of
the default ``auditor mine``, out/patterns/TASK.json, mined here when missing, as in ``bench/audit.py``);
the tuning examples are training examples too (SST-2: training phrases of at least --min-words words after
the first --offset, since its training split also holds short phrases; RTE: the examples after --offset),
so the mined sentences include them: training data chose everything, dev nothing.
Every candidate (the transformations, the search's sufficient gain and the ranking's cost, written
``tokenedit@0.75/steps=1/layers=5/sweep=4``: ``@none`` queries every candidate of a word and keeps the best;
``steps`` and ``layers`` are the quadrature nodes and encoder layers of the ranking's attribution;
``sweep`` the words probed for the last edit; ``top`` the mined patterns per class that ``pattern`` tries;
``with``: pattern insertions offered beside the edits instead of after them) and DeepWordBug attack them under the same constraints and
budget, interleaved example by example so that their seconds compare; the script prints valid success rate,
queries per success, explanation calls and seconds per valid success, and writes the result to
--out/tuning.json. The defaults (``AuditSettings``) are, among the candidates with pattern insertion (the
default search holds it) when any, the candidate that meets the largest share of the benchmark's goals on
every task (valid success >= DeepWordBug's; queries per success <= 1/3 of DeepWordBug's at the 95 % upper
bound of a paired bootstrap over the tuning examples, since other examples, the benchmark's, will vary;
seconds per valid success <= DeepWordBug's; valid success >= the first candidate without patterns, the
character edits alone), then the highest mean valid success. The word ranking is
checked the same way: each candidate in --row-candidates is also run with the words ranked by the [CLS]
row of the attribution alone, Σ_l Σ_h Attr_h[CLS, j], instead of the product's column sums
Σ_l Σ_h Σ_i Attr_h[i, j] (``auditor.explain.word_importance``), and both are printed and recorded.

    .venv/bin/python bench/tune_audit.py [--examples sst2=200,rte=120 | --examples N] [--tasks sst2,rte] [--threads 1]

Tasks can run as separate processes (--tasks sst2, --tasks rte) to use more cores: every run is
checkpointed under --out, so a last run with all tasks resumes them and writes the record.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auditor.attribution import SelfAttentionAttribution  # noqa: E402
from auditor.audit import attack_examples, attribution_attacks, audit_attacks, summarise  # noqa: E402
from auditor.checkpoint import Checkpoint  # noqa: E402
from auditor.cli.attack_options import parse_sufficient_gain  # noqa: E402
from auditor.data import Dataset, load_dataset  # noqa: E402
from auditor.explain import sum_over_words  # noqa: E402
from auditor.models import load_classifier  # noqa: E402
from auditor.report import percent, write_atomic  # noqa: E402
from auditor.schemas import AttackOutcome, AuditSettings, TriggerMiningOptions  # noqa: E402
from auditor.search import AttributionGreedySearch  # noqa: E402
from auditor.triggers import word_spans  # noqa: E402
from auditor.cli.mine import mine_to_file  # noqa: E402
from auditor.validity import build_lexicon  # noqa: E402
from auditor.victims import LocalVictim  # noqa: E402
from textattack import Attack  # noqa: E402  (after auditor's NLTK set-up)

MODELS = {"sst2": "minilm-sst2", "rte": "minilm-rte"}
CANDIDATES = [
    "tokenedit@0.75/steps=1/layers=-1/sweep=3/k=3",
    "tokenedit,pattern@0.75/steps=1/layers=-1/sweep=3/k=3/top=10/with",
    "tokenedit,pattern@0.75/steps=1/layers=-1/sweep=3/k=3/top=3",
    "tokenedit,pattern@0.75/steps=1/layers=-1/sweep=3/k=3/top=10",
]


def parse_candidate(candidate: str) -> dict:
    """The ``AuditSettings`` fields of a candidate: ``tokenedit,delete@0.5`` -> transformations ["tokenedit",
    "delete"], sufficient gain 0.5 (``@none``: None); options of the search may follow after slashes, e.g.
    ``tokenedit@0.75/steps=1/layers=5/sweep=4/k=3`` (``layers=4+5`` for several, ``layers=all``, ``sweep=all``;
    ``k``: the candidates per word of ``tokenedit``)."""
    head, *options = candidate.split("/")
    names, _, gain = head.partition("@")
    fields: dict = {"transformations": names.split(","), "sufficient_gain": parse_sufficient_gain(gain or "none")}
    for option in options:
        key, _, value = option.partition("=")
        if key == "steps":
            fields["steps"] = int(value)
        elif key == "layers":
            fields["layers"] = None if value == "all" else [int(v) for v in value.split("+")]
        elif key == "k":
            fields["candidates"] = int(value)
        elif key == "top":
            fields["top_k"] = int(value)
        elif key == "with":
            fields["patterns_after_edits"] = False
        elif key == "sweep":
            fields["sweep_words"] = None if value == "all" else int(value)
        else:
            raise SystemExit(f"unknown candidate option {option!r} in {candidate!r}: steps=, layers=, sweep=, k=, top=, with")
    return fields


class ClsRowSearch(AttributionGreedySearch):
    """The product's search with words ranked by the [CLS] row alone, Σ_l Σ_h Σ_{j ∈ word} Attr_h[CLS, j]."""

    def word_importance(self, text):  # noqa: ANN001, ANN201
        classifier = self.victim.classifier
        self.victim.explanations += 1  # one attribution, like the product's explanation call
        columns = [text.tokenizer_input] if isinstance(text.tokenizer_input, str) else list(text.tokenizer_input)
        pair = columns[1] if len(columns) > 1 else None
        encoding = classifier.encode([columns[0]], None if pair is None else [pair], truncate=True)
        result = SelfAttentionAttribution(classifier.model).attribute(
            encoding["input_ids"], encoding["attention_mask"], encoding.get("token_type_ids"), n_steps=self.steps, layers=self.layers
        )[0]
        into_cls = sum(attribution.double()[:, 0, :].sum(0) for attribution in result.attributions)
        return sum_over_words(classifier, columns[0], pair, into_cls[: result.length].tolist())


def row_ranked(victim, triggers, settings, lexicon, pair):  # noqa: ANN001, ANN201
    """The attribution-guided attack of every gold label with ``ClsRowSearch`` in place of its search."""
    attacks = {
        label: Attack(
            attack.goal_function,
            [*attack.pre_transformation_constraints, *attack.constraints],
            attack.transformation,
            ClsRowSearch(victim, settings.steps, settings.max_words, settings.sufficient_gain, settings.layers, settings.sweep_words),
        )
        for label, attack in attribution_attacks(victim, triggers, settings, lexicon, pair).items()
    }
    return attacks.__getitem__


def queries_ratio(ours: list[AttackOutcome], theirs: list[AttackOutcome], resamples: int = 4000, quantile: float = 0.95) -> tuple[float, float]:
    """Mean queries per success of ``ours`` as a multiple of DeepWordBug's (``theirs``, on the same examples),
    and the ``quantile`` of that ratio over a paired bootstrap of the examples (seeded; infinite where either
    attack had no success)."""
    succeeded = np.array([[o.status == "succeeded" for o in outcomes] for outcomes in (ours, theirs)])
    queries = np.array([[o.queries for o in outcomes] for outcomes in (ours, theirs)], dtype=float)

    def ratio(rows: np.ndarray) -> float:
        wins = succeeded[:, rows]
        if not wins.any(axis=1).all():
            return float("inf")
        per_success = (queries[:, rows] * wins).sum(axis=1) / wins.sum(axis=1)
        return float(per_success[0] / per_success[1])

    rng = np.random.default_rng(0)
    boots = [ratio(rng.integers(0, len(ours), len(ours))) for _ in range(resamples)]
    return ratio(np.arange(len(ours))), float(np.quantile(boots, quantile))


def tuning_examples(task: str, train: Dataset, offset: int, count: int, min_words: int) -> tuple[Dataset, list[int]]:
    """Training examples after ``offset`` (SST-2: sentences of at least ``min_words`` words), and their indices."""
    chosen = [
        i
        for i in range(offset, len(train.examples))
        if task != "sst2" or len(word_spans(train.examples[i].text)) >= min_words
    ][:count]
    subset = Dataset(train.name, f"{train.split}[tuning]", train.source, [train.examples[i] for i in chosen], train.label_names, train.fingerprint)
    return subset, chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="sst2,rte")
    parser.add_argument("--examples", default="sst2=200,rte=120", help="tuning examples per task: N, or per task as sst2=200,rte=120")
    parser.add_argument("--offset", type=int, default=1000)
    parser.add_argument("--min-words", type=int, default=10)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--max-words", type=int, default=3)
    parser.add_argument("--candidates", default=";".join(CANDIDATES), help="transformation sets separated by ';'")
    parser.add_argument("--row-candidates", default="", help="candidates also run with the [CLS]-row ranking, separated by ';'")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "tune-audit")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    candidates = args.candidates.split(";")
    row_candidates = [c for c in args.row_candidates.split(";") if c]
    results: dict[str, dict] = {}
    outcomes_of: dict[tuple[str, str], list[AttackOutcome]] = {}
    lines = [
        "| task | attack | valid success | queries/success | explanations/attack | rejected | seconds | seconds/valid success |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task in args.tasks.split(","):
        classifier = load_classifier(ROOT.parent / "shared" / "models" / MODELS[task])
        train = load_dataset(task, split="train")
        lexicon = build_lexicon(train, classifier.labels)
        triggers = mine_to_file(str(ROOT.parent / "shared" / "models" / MODELS[task]), train, TriggerMiningOptions(), ROOT / "out" / "patterns" / f"{task}.json")
        count = int(dict(part.split("=") for part in args.examples.split(","))[task] if "=" in args.examples else args.examples)
        examples, indices = tuning_examples(task, train, args.offset, count, args.min_words)
        print(f"{task}: tuning on train examples {indices[0]}..{indices[-1]} ({len(indices)}), patterns from the default 'auditor mine' of {triggers.data.count} train sentences")
        victim = LocalVictim(classifier)
        results[task] = {"train_indices": indices, "attacks": {}}
        attacks = {}
        for candidate in candidates:
            settings = AuditSettings(
                examples=len(examples), budget=args.budget, max_words=args.max_words, **{"top_k": 10, **parse_candidate(candidate)},
                positions="pattern", baselines=["deepwordbug"], trigger_top_k=0, trigger_examples=None, seed=0,
            )  # fmt: skip
            built = audit_attacks(victim, triggers, settings, lexicon, examples)
            attacks.setdefault("deepwordbug", built["deepwordbug"])
            attacks[f"attribution[{candidate}]"] = built["attribution"]
            if candidate in row_candidates:
                attacks[f"cls-row[{candidate}]"] = row_ranked(victim, triggers, settings, lexicon, examples.is_pair)
        patterns = hashlib.sha256(triggers.model_dump_json(exclude={"seconds"}).encode()).hexdigest()[:16]
        identity = {"task": task, "budget": args.budget, "max_words": args.max_words, "indices": indices, "patterns": patterns}
        checkpoint = Checkpoint(args.out / task / "checkpoint.jsonl", identity)
        outcomes = attack_examples(attacks, examples.examples, checkpoint, 0)  # interleaved: the seconds compare
        for label, found in outcomes.items():
            outcomes_of[task, label] = found
            summary = summarise("deepwordbug" if label == "deepwordbug" else "attribution", found, classifier.labels, args.budget)
            attacked = max(1, sum(o.status != "skipped" for o in summary.outcomes))
            won = sum(o.status == "succeeded" for o in found)
            results[task]["attacks"][label] = {
                "success_rate": summary.success_rate,
                "queries_per_success": summary.mean_queries_per_success,
                "explanations_per_attack": summary.explanations / attacked,
                "rejected": summary.rejected,
                "seconds": summary.seconds,
                "seconds_per_success": summary.seconds / won if won else None,
            }
            lines.append(
                f"| {task} | {label} | {percent(summary.success_rate)} | {summary.mean_queries_per_success or 0:.1f} | "
                f"{summary.explanations / attacked:.2f} | {summary.rejected} | {summary.seconds:.1f} | "
                f"{summary.seconds / won if won else float('inf'):.3f} |"
            )
    ratios = {
        (task, c): queries_ratio(outcomes_of[task, f"attribution[{c}]"], outcomes_of[task, "deepwordbug"]) for task in results for c in candidates
    }

    def attack(task: str, candidate: str) -> dict:
        return results[task]["attacks"][f"attribution[{candidate}]"]

    def seconds_ratio(task: str, candidate: str) -> float:
        ours, theirs = attack(task, candidate)["seconds_per_success"], results[task]["attacks"]["deepwordbug"]["seconds_per_success"]
        return ours / theirs if ours and theirs else float("inf")

    with_patterns = [c for c in candidates if "pattern" in parse_candidate(c)["transformations"]]
    edits_alone = next((c for c in candidates if c not in with_patterns), None)

    def goals(candidate: str) -> dict[str, bool]:
        """The benchmark's goals, per task: valid success >= DeepWordBug's, queries per success <= 1/3 of its
        (at the 95 % bootstrap bound), seconds per valid success <= its; with patterns, valid success >= the
        first candidate without them (character edits alone)."""
        met = {}
        for task in results:
            met[f"{task} success"] = (attack(task, candidate)["success_rate"] or 0) >= (results[task]["attacks"]["deepwordbug"]["success_rate"] or 0)
            met[f"{task} queries"] = ratios[task, candidate][1] <= 1 / 3
            met[f"{task} seconds"] = seconds_ratio(task, candidate) <= 1
            if candidate in with_patterns and edits_alone is not None:
                met[f"{task} >= edits alone"] = (attack(task, candidate)["success_rate"] or 0) >= (attack(task, edits_alone)["success_rate"] or 0)
        return met

    def mean_success(candidate: str) -> float:
        return sum(attack(task, candidate)["success_rate"] or 0 for task in results) / len(results)

    for (task, candidate), (point, upper) in ratios.items():
        attack(task, candidate).update(queries_ratio=point, queries_ratio_upper95=upper, seconds_ratio=seconds_ratio(task, candidate))
    best = max(with_patterns or candidates, key=lambda c: (sum(goals(c).values()) / len(goals(c)), mean_success(c)))
    print("\n".join(lines))
    for candidate in candidates:
        shown = ", ".join(
            f"{task} {ratios[task, candidate][0]:.3f} (95 % bound {ratios[task, candidate][1]:.3f}), "
            f"seconds/success {seconds_ratio(task, candidate):.2f}x"
            for task in results
        )
        missed = [goal for goal, met in goals(candidate).items() if not met]
        print(f"{candidate}: queries/success = {shown} DeepWordBug's; goals missed: {', '.join(missed) or 'none'}")
    print(
        f"chosen default: {best} (among the candidates with pattern insertion, when any: the largest share of goals met on the "
        "training examples, then the highest mean valid success)"
    )
    ranking = {
        f"{task}[{c}]": {"columns": attack(task, c)["success_rate"], "cls_row": results[task]["attacks"][f"cls-row[{c}]"]["success_rate"]}
        for c in row_candidates
        for task in results
    }
    for key, rates in ranking.items():
        print(f"ranking {key}: column sums {percent(rates['columns'])} vs [CLS] row {percent(rates['cls_row'])} valid success")
    record = {"chosen": best, "ranking": ranking, "settings": vars(args) | {"out": str(args.out)}, "results": results}
    write_atomic(args.out / "tuning.json", json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
