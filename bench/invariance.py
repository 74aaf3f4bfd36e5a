"""The invariance checks of ``auditor audit`` on a model's first N dev examples, without the attacks: the
README's table (one row per check: examples it applied to, flips, flip rate with its 95 % Wilson interval,
seconds) and the first flip of each check.

    .venv/bin/python bench/invariance.py [--model ../shared/models/minilm-sst2] [--data sst2] [--examples 200]
"""

from __future__ import annotations

import argparse
import time

from auditor.data import load_dataset
from auditor.invariance.checks import perturbations, run_checks
from auditor.report import interval
from auditor.schemas import CHECK_NAMES, AuditSettings
from auditor.victims import open_victim


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="../shared/models/minilm-sst2")
    parser.add_argument("--data", default="sst2")
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    examples = load_dataset(arguments.data, split="dev").head(arguments.examples).examples
    victim = open_victim(arguments.model)
    started = time.perf_counter()
    checks = run_checks(victim, examples, perturbations(CHECK_NAMES, AuditSettings.model_fields["typo_rate"].default), arguments.seed)
    print(f"{len(examples)} examples of {arguments.data} dev, {arguments.model}: {time.perf_counter() - started:.1f} s, {victim.inputs} predictions\n")
    print("| check | applied | flips | flip rate [95 % CI] | seconds |")
    print("|---|---|---|---|---|")
    for check in checks:
        print(f"| {check.name} | {check.applied} | {check.flips} | {interval(check.flip_rate, check.note)} | {check.seconds:.1f} |")
    print()
    for check in checks:
        for flip in check.flip_examples[:1]:
            print(f"{check.name}: {flip.text!r} → {flip.perturbed_text!r} ({victim.labels[flip.original_prediction]} → {victim.labels[flip.perturbed_prediction]})")


if __name__ == "__main__":
    main()
